package multileader

import (
	"fmt"
	"slices"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Propose accepts a client write: it becomes the next entry of this node's
// stream and is applied locally at once (visible once its Ready is
// processed). It returns the proposal id echoed in the Result. Errors
// wrap ErrInvalidWrite, vclock.ErrBadToken, vclock.ErrForeignToken or
// ErrContextAhead (nothing changed), or are fatal store errors.
func (c *Core) Propose(w Write) (uint64, error) {
	need, err := c.ackNeed(w)
	if err != nil {
		return 0, err
	}
	st, err := c.get(w.Key)
	if err != nil {
		return 0, err
	}
	var ctx vclock.Context
	hasCtx := w.Context != ""
	if hasCtx {
		if ctx, err = vclock.DecodeToken(c.cfg.ClusterID, w.Key, w.Context); err != nil {
			return 0, err
		}
		if mine, have := ctx.Vector.Get(c.cfg.ID), st.Reg.Context.Get(c.cfg.ID); mine > have {
			return 0, fmt.Errorf("%w: it has %d writes of %s to %q, this node %d", ErrContextAhead, mine, c.cfg.ID, w.Key, have)
		}
	}
	e := Entry{Origin: c.cfg.ID, Seq: c.lastSeq + 1, Key: w.Key}
	var trimmed *Conflict
	switch {
	case w.Incr:
		e.Op = OpIncr
		e.Counter = st.Ctr.IncrDelta(c.cfg.ID, w.IncrBy)
		e.Time = c.clock.Now(c.physical)
	default:
		e.Op = OpPut
		if w.Delete {
			e.Op = OpDelete
			e.Counter = st.Ctr.ResetDelta()
		} else {
			e.Value = slices.Clone(w.Value)
		}
		if !hasCtx && c.cfg.Policy == LWW {
			ctx = st.Reg.ReadContext() // a blind LWW write overwrites what this node has
		}
		e.Dot = vclock.Dot{Node: c.cfg.ID, Counter: st.Reg.Context.Get(c.cfg.ID) + 1}
		e.Context = ctx.Vector
		if c.cfg.Policy == Siblings {
			e.Context, trimmed = c.trim(st.Reg, e)
		}
		e.Time = c.writeTime(st.Reg, e.Context, ctx.MaxTime)
	}
	if trimmed != nil {
		c.recordConflict(*trimmed)
	}
	if err := c.apply(e); err != nil {
		return 0, err
	}
	c.lastSeq = e.Seq
	c.unstable = append(c.unstable, e)
	c.origins[c.cfg.ID].applied = e.Seq
	c.markPos(c.cfg.ID)
	id := c.nextID
	c.nextID++
	if need == 0 {
		c.results = append(c.results, Result{ID: id, Seq: e.Seq})
	} else {
		timeout := w.TimeoutTicks
		if timeout <= 0 {
			timeout = c.cfg.AckTimeoutTicks
		}
		c.pending = append(c.pending, proposal{id: id, seq: e.Seq, need: need, deadline: c.tick + int64(timeout)})
	}
	return id, nil
}

func (c *Core) ackNeed(w Write) (int, error) {
	switch {
	case w.Key == "" || len(w.Key) > MaxKeyLen:
		return 0, fmt.Errorf("%w: key length %d (1..%d)", ErrInvalidWrite, len(w.Key), MaxKeyLen)
	case w.Incr && (w.Delete || len(w.Value) > 0):
		return 0, fmt.Errorf("%w: an increment has no value and is not a delete", ErrInvalidWrite)
	case w.Delete && len(w.Value) > 0:
		return 0, fmt.Errorf("%w: a delete has no value", ErrInvalidWrite)
	}
	switch w.Ack {
	case AckLocal:
		return 0, nil
	case AckAll:
		return len(c.peers), nil
	case AckPeers:
		if w.AckPeers < 1 || w.AckPeers > len(c.peers) {
			return 0, fmt.Errorf("%w: AckPeers %d with %d peers", ErrInvalidWrite, w.AckPeers, len(c.peers))
		}
		return w.AckPeers, nil
	}
	return 0, fmt.Errorf("%w: ack mode %d", ErrInvalidWrite, w.Ack)
}

// writeTime times a write above everything it overwrites: the context's
// MaxTime and the local siblings ctx covers. Then, under LWW, a causally
// later write always outranks what it saw, even when the local clock was
// clamped or is behind the reader's (see DESIGN.md).
func (c *Core) writeTime(reg vclock.Set, ctx vclock.Vector, ctxMax hlc.Timestamp) hlc.Timestamp {
	if c.bugs().wallClockLWW() {
		return hlc.Timestamp{Wall: c.physical}
	}
	bound := ctxMax
	for _, x := range reg.Siblings {
		if ctx.Covers(x.Dot) {
			bound = hlc.Max(bound, x.Time)
		}
	}
	ts := c.clock.Now(c.physical)
	if !bound.Less(ts) {
		ts = bound.Next()
		c.clock.Restore(ts)
	}
	return ts
}

// trim extends a Siblings-policy write's context so that at most
// MaxSiblings siblings remain: the lowest-ranked concurrent ones (and, as
// a vector cannot skip, any sibling of the same node with a lower counter)
// are overwritten by this write, and recorded.
func (c *Core) trim(reg vclock.Set, e Entry) (vclock.Vector, *Conflict) {
	sib := vclock.Sibling{Dot: e.Dot}
	ctx := e.Context
	for {
		next := vclock.Update(reg, ctx, sib)
		if len(next.Siblings) <= c.cfg.MaxSiblings {
			break
		}
		var low *vclock.Sibling
		for i, x := range next.Siblings {
			if x.Dot != e.Dot && (low == nil || vclock.Rank(x, *low) < 0) {
				low = &next.Siblings[i]
			}
		}
		ctx = ctx.With(low.Dot.Node, low.Dot.Counter)
	}
	var dropped []vclock.Sibling
	for _, x := range reg.Siblings {
		if ctx.Covers(x.Dot) && !e.Context.Covers(x.Dot) {
			dropped = append(dropped, x)
		}
	}
	if len(dropped) == 0 {
		return ctx, nil
	}
	cf := &Conflict{Key: e.Key, Versions: dropped, Reason: ReasonSiblingsLimit}
	for _, x := range dropped {
		cf.Losers = append(cf.Losers, x.Dot)
	}
	return ctx, cf
}
