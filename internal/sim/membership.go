package sim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// confIDBase: proposal ids at or above it are configuration changes (the
// workload's ids are far below).
const confIDBase = 1 << 40

// maxAddedNodes bounds the nodes a run may add (each add is a new node).
const maxAddedNodes = 6

// maxVoters bounds the voters a run may promote to.
const maxVoters = 7

// membership is the state of the membership schedule: at most one
// multi-step action (promote with retries, remove the leader after a
// transfer) at a time.
type membership struct {
	action  string // "", "promote", "remove"
	target  repl.NodeID
	tries   int
	next    int64 // no attempt before this tick
	nextID  uint64
	pending []confProp // proposed changes awaiting their Result
}

type confProp struct {
	id uint64
	cc repl.ConfChange
}

// maintainStore flushes n's store on its schedule and then compacts n's log
// below min(durable applied index, last index - Retention).
func (c *cluster) maintainStore(n *simNode) {
	if !n.up || n.paused {
		return
	}
	if c.now >= n.nextFlush {
		fm := c.cfg.Faults.StoreFlushMax
		if fm <= 0 {
			fm = 20
		}
		n.nextFlush = c.now + 1 + int64(c.rng.Intn(fm))
		n.flushStore()
		c.stats.StoreFlushes++
	}
	// Compaction runs on every tick, independently of the flushes.
	if c.cfg.Retention < 0 || bugAckBeforeFsync(c.cfg.Bugs) || n.waiting {
		return
	}
	upto := n.dur.applied
	if bugCompactUndurable(c.cfg.Bugs) {
		upto = n.applied // bug: the store may not have persisted it yet
	}
	last := n.disk.LastIndex()
	if last < uint64(c.cfg.Retention) {
		return
	}
	upto = min(upto, last-uint64(c.cfg.Retention))
	if upto <= n.disk.off {
		return
	}
	if err := n.disk.compact(upto); err != nil {
		c.fail("storage", "%s: %v", n.id, err)
		return
	}
	c.stats.Compactions++
	c.tr.add(c.now, "compact %s upto=%d store=%d durable=%d last=%d", n.id, upto, n.applied, n.dur.applied, last)
}

// members returns the nodes of the members of leader l's configuration (nil
// for a member the simulator never started).
func (c *cluster) members(l int) []*simNode {
	cs, _ := c.nodes[l].core.Conf()
	out := make([]*simNode, 0, len(cs.Members))
	for _, m := range cs.Members {
		if i := c.nodeIndex(m.ID); i >= 0 {
			out = append(out, c.nodes[i])
		} else {
			out = append(out, nil)
		}
	}
	return out
}

func describeConf(cs repl.ConfState) string {
	var parts []string
	for _, m := range cs.Members {
		s := string(m.ID)
		if m.Learner {
			s += "(L)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// membershipStep runs the membership schedule for one faulty tick: continue
// the current action, or start a new one with probability Membership.
func (c *cluster) membershipStep() {
	ms := &c.ms
	if c.now < ms.next {
		return
	}
	if ms.action == "" && !c.chance(c.cfg.Faults.Membership) {
		return
	}
	l := c.leader()
	if l < 0 || c.nodes[l].paused {
		return
	}
	ln := c.nodes[l]
	switch ms.action {
	case "promote":
		c.confStep(ln, repl.ConfChange{Type: repl.ConfPromote, Member: repl.Member{ID: ms.target}}, true)
		return
	case "remove":
		if ln.id == ms.target {
			ms.tries++
			if ms.tries > 10 {
				c.tr.add(c.now, "conf-give-up remove %s: still leading", ms.target)
				ms.action = ""
				return
			}
			if ln.core.Status().Transferring == repl.None {
				c.transferAway(ln)
			}
			ms.next = c.now + int64(c.cfg.Timing.ElectionTicks)
			return
		}
		c.confStep(ln, repl.ConfChange{Type: repl.ConfRemove, Member: repl.Member{ID: ms.target}}, true)
		return
	}
	cc, ok := c.chooseChange(ln)
	if !ok {
		return
	}
	if cc.Type == repl.ConfRemove && cc.Member.ID == ln.id {
		ms.action, ms.target, ms.tries = "remove", ln.id, 0
		c.stats.LeaderRemovals++
		c.transferAway(ln)
		ms.next = c.now + int64(c.cfg.Timing.ElectionTicks)
		return
	}
	if c.confStep(ln, cc, false) && c.chance(c.cfg.Faults.ConfBurst) {
		// A second change at once: must be refused while the first is
		// uncommitted.
		if cc2, ok := c.chooseChange(ln); ok && !(cc2.Type == repl.ConfRemove && cc2.Member.ID == ln.id) {
			c.confStep(ln, cc2, false)
		}
	}
}

// transferAway asks leader ln to hand leadership to another up voter.
func (c *cluster) transferAway(ln *simNode) {
	cs, _ := ln.core.Conf()
	var cand []repl.NodeID
	for _, id := range cs.Voters() {
		if i := c.nodeIndex(id); id != ln.id && i >= 0 && c.nodes[i].up {
			cand = append(cand, id)
		}
	}
	if len(cand) == 0 {
		return
	}
	to := cand[c.rng.Intn(len(cand))]
	err := ln.core.TransferLeadership(to)
	c.stats.Transfers++
	c.tr.add(c.now, "conf-transfer %s -> %s: %v", ln.id, to, err)
}

// chooseChange draws a change allowed by leader ln's active configuration:
// add a learner (a new node), promote a learner, remove a learner or a
// voter (never the last), re-add a removed node that still runs.
func (c *cluster) chooseChange(ln *simNode) (repl.ConfChange, bool) {
	cs, _ := ln.core.Conf()
	voters := cs.Voters()
	var learners []repl.NodeID
	for _, m := range cs.Members {
		if m.Learner {
			learners = append(learners, m.ID)
		}
	}
	var readd []repl.NodeID
	for _, n := range c.nodes {
		if _, ok := cs.Member(n.id); !ok && !n.stopped && n.core != nil && n.idx < len(c.nodes) && n.everMember {
			readd = append(readd, n.id)
		}
	}
	type opt struct {
		w  int
		cc func() repl.ConfChange
	}
	pick := func(ids []repl.NodeID) repl.NodeID { return ids[c.rng.Intn(len(ids))] }
	var opts []opt
	if len(c.nodes) < c.cfg.Nodes+maxAddedNodes {
		opts = append(opts, opt{2, func() repl.ConfChange {
			return repl.ConfChange{Type: repl.ConfAddMember, Member: repl.Member{ID: nodeID(len(c.nodes)), Learner: true, Priority: 1}}
		}})
	}
	if len(learners) > 0 && len(voters) < maxVoters {
		opts = append(opts, opt{3, func() repl.ConfChange {
			return repl.ConfChange{Type: repl.ConfPromote, Member: repl.Member{ID: pick(learners)}}
		}})
	}
	if len(learners) > 0 {
		opts = append(opts, opt{1, func() repl.ConfChange {
			return repl.ConfChange{Type: repl.ConfRemove, Member: repl.Member{ID: pick(learners)}}
		}})
	}
	if len(voters) > 1 {
		w := 1
		if len(voters) > 3 {
			w = 3
		}
		opts = append(opts, opt{w, func() repl.ConfChange {
			return repl.ConfChange{Type: repl.ConfRemove, Member: repl.Member{ID: pick(voters)}}
		}})
	}
	if len(readd) > 0 {
		opts = append(opts, opt{1, func() repl.ConfChange {
			return repl.ConfChange{Type: repl.ConfAddMember, Member: repl.Member{ID: pick(readd), Learner: true, Priority: 1}}
		}})
	}
	total := 0
	for _, o := range opts {
		total += o.w
	}
	if total == 0 {
		return repl.ConfChange{}, false
	}
	r := c.rng.Intn(total)
	for _, o := range opts {
		if r < o.w {
			return o.cc(), true
		}
		r -= o.w
	}
	return repl.ConfChange{}, false
}

func describeCC(cc repl.ConfChange) string {
	switch cc.Type {
	case repl.ConfAddMember:
		return "add " + string(cc.Member.ID)
	case repl.ConfPromote:
		return "promote " + string(cc.Member.ID)
	case repl.ConfRemove:
		return "remove " + string(cc.Member.ID)
	}
	return fmt.Sprintf("change(%d)", cc.Type)
}

// confStep proposes cc on leader ln. A promotion refused with
// ErrNotCaughtUp (or any change refused with ErrChangeInProgress) is
// retried later when retry is set or when it starts an action. It reports
// whether the change was accepted.
func (c *cluster) confStep(ln *simNode, cc repl.ConfChange, retry bool) bool {
	ms := &c.ms
	ms.nextID++
	id := confIDBase + ms.nextID
	err := ln.core.ProposeConfChange(repl.Proposal{ID: id}, cc)
	c.tr.add(c.now, "conf-propose %s at %s id=%d: %v", describeCC(cc), ln.id, id, err)
	if err != nil {
		c.stats.ConfRefused++
		again := errors.Is(err, repl.ErrNotCaughtUp) || errors.Is(err, repl.ErrChangeInProgress) || errors.Is(err, repl.ErrTransferring)
		if again && (retry || cc.Type == repl.ConfPromote) {
			if !retry {
				ms.action, ms.target, ms.tries = actionOf(cc), cc.Member.ID, 0
			}
			ms.tries++
			if ms.tries > 40 {
				c.tr.add(c.now, "conf-give-up %s", describeCC(cc))
				ms.action = ""
			}
			ms.next = c.now + 3
			return false
		}
		if retry {
			ms.action = ""
		}
		return false
	}
	ms.action = ""
	c.stats.ConfProposed++
	ms.pending = append(ms.pending, confProp{id: id, cc: cc})
	switch cc.Type {
	case repl.ConfAddMember:
		if i := c.nodeIndex(cc.Member.ID); i >= 0 {
			c.stats.ReAdds++
			c.nodes[i].everMember = true
		} else {
			// A new node, started empty with the configuration that adds it.
			cs, _ := ln.core.Conf()
			n := c.newNode(cs)
			n.everMember = true
			c.nodes = append(c.nodes, n)
			c.stats.LearnersAdded++
			c.start(n)
		}
	case repl.ConfPromote:
		c.stats.Promotions++
	case repl.ConfRemove:
		c.stats.Removals++
	}
	cs, _ := ln.core.Conf()
	c.stats.MaxVoters = max(c.stats.MaxVoters, len(cs.Voters()))
	return true
}

func actionOf(cc repl.ConfChange) string {
	switch cc.Type {
	case repl.ConfPromote:
		return "promote"
	case repl.ConfRemove:
		return "remove"
	}
	return ""
}

// confResult handles the Result of a configuration change. A committed
// removal stops the removed node for good half of the time; otherwise it
// keeps running (and must not disrupt the cluster).
func (c *cluster) confResult(n *simNode, r repl.Result) {
	ms := &c.ms
	k := -1
	for i, p := range ms.pending {
		if p.id == r.ID {
			k = i
			break
		}
	}
	if k < 0 {
		c.fail("write-result", "%s returned a result for unknown configuration change id %d", n.id, r.ID)
		return
	}
	p := ms.pending[k]
	ms.pending = append(ms.pending[:k], ms.pending[k+1:]...)
	c.tr.add(c.now, "conf-result %s %s idx=%d term=%d at %s", describeCC(p.cc), r.Outcome, r.Index, r.Term, n.id)
	if r.Outcome != repl.OutcomeOK {
		return
	}
	c.stats.ConfCommitted++
	if p.cc.Type != repl.ConfRemove {
		return
	}
	i := c.nodeIndex(p.cc.Member.ID)
	if i < 0 || c.healing || !c.chance(0.5) {
		return
	}
	gone := c.nodes[i]
	// Only if no later change re-added it.
	if l := c.leader(); l >= 0 {
		if cs, _ := c.nodes[l].core.Conf(); func() bool { _, ok := cs.Member(gone.id); return ok }() {
			return
		}
	}
	c.stats.NodesStopped++
	c.tr.add(c.now, "stop %s (removed)", gone.id)
	// Its uncommitted suffix (async writes it acknowledged as a deposed
	// leader) stays in its durable log, which the operator keeps: it counts
	// as journaled.
	commit := gone.disk.hs.Commit
	if gone.up {
		commit = gone.core.Status().Commit
	}
	{
		for _, e := range gone.logAbove(commit) {
			if e.RequestID != 0 {
				c.chk.journaled[e.RequestID] = true
			}
		}
	}
	c.wl.nodeCrashed(gone)
	gone.core, gone.up, gone.stopped = nil, false, true
	gone.pending, gone.waiting, gone.paused, gone.held = nil, false, false, nil
}

// confEntries returns the configuration entries of n's log above index lo as
// the node's runtime sees it: the durable log with its pending writes laid
// over it.
func (n *simNode) logAbove(lo uint64) []entry.Entry {
	var out []entry.Entry
	for i := max(lo+1, n.disk.off+1); i <= n.disk.LastIndex(); i++ {
		e, _ := n.disk.at(i)
		out = append(out, e)
	}
	for _, w := range n.pending {
		for _, e := range w.ents {
			if e.Index <= lo {
				continue
			}
			k := len(out)
			for k > 0 && out[k-1].Index >= e.Index {
				k--
			}
			out = append(out[:k], e)
		}
	}
	return out
}
