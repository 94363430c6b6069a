package multileader

import (
	"slices"

	"github.com/trireme-db/trireme/internal/vclock"
)

// apply joins entry e into its key's state, records any conflict, and
// leaves the new state in the overlay. The same function serves local
// proposals, remote entries and the restart replay, so every replica
// treats a write identically.
func (c *Core) apply(e Entry) error {
	st, err := c.get(e.Key)
	if err != nil {
		return err
	}
	ns, conf := c.applyEntry(st, e)
	c.put(e.Key, ns)
	if conf != nil {
		c.recordConflict(*conf)
	}
	return nil
}

func (c *Core) recordConflict(cf Conflict) {
	cf.Node = c.cfg.ID
	c.conflicts = append(c.conflicts, cf)
	c.stats.ConflictCount++
}

// applyEntry is the pure join of e into st, resolved by the policy.
func (c *Core) applyEntry(st KeyState, e Entry) (KeyState, *Conflict) {
	switch e.Op {
	case OpIncr:
		st.Ctr = vclock.JoinCounter(st.Ctr, e.Counter)
		return st, nil
	case OpDelete:
		st.Ctr = vclock.JoinCounter(st.Ctr, e.Counter)
	}
	old := st.Reg
	sib := vclock.Sibling{Dot: e.Dot, Time: e.Time, Deleted: e.Op == OpDelete, Value: e.Value}
	st.Reg = c.bugs().dropMergeEntry(vclock.Update(old, e.Context, sib), e.Dot.Node)
	if old.Context.Covers(e.Dot) {
		return st, nil // seen before: a duplicate, or already overwritten
	}
	var concurrent []vclock.Sibling
	for _, x := range old.Siblings {
		if !e.Context.Covers(x.Dot) && x.Dot != e.Dot {
			concurrent = append(concurrent, x)
		}
	}
	if len(concurrent) == 0 {
		return st, nil
	}
	versions := append(slices.Clone(concurrent), sib)
	slices.SortFunc(versions, func(a, b vclock.Sibling) int { return a.Dot.Compare(b.Dot) })
	cf := &Conflict{Key: e.Key, Versions: versions, Reason: ReasonSiblings}
	if c.cfg.Policy == LWW {
		win, tie := c.winner(st.Reg.Siblings)
		cf.Winner, cf.Reason = win.Dot, ReasonLWW
		if tie {
			cf.Reason = ReasonLWWTie
		}
		for _, x := range versions {
			if x.Dot != win.Dot {
				cf.Losers = append(cf.Losers, x.Dot)
			}
		}
		st.Reg.Siblings = []vclock.Sibling{win}
	}
	return st, cf
}

// winner returns the highest-ranked sibling and whether it tied with the
// runner-up on time (decided by node id).
func (c *Core) winner(sibs []vclock.Sibling) (vclock.Sibling, bool) {
	win, tie := sibs[0], false
	for _, x := range sibs[1:] {
		if r := c.bugs().rank(x, win); r > 0 {
			tie = x.Time == win.Time
			win = x
		} else if x.Time == win.Time {
			tie = true
		}
	}
	return win, tie
}
