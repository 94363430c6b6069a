package sim

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/session"
)

// End-of-run checks of the counter, session, bounded-read and CAS clients
// (see DESIGN.md, "Commands, sessions and bounded reads").

// lastWriteAt is the index of the newest committed write to key at or
// below index (0: none).
func (k *checker) lastWriteAt(key string, index uint64) uint64 {
	ws := k.keyWrites[key]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].index > index })
	if i == 0 {
		return 0
	}
	return ws[i-1].index
}

// lastWriteBy is the newest committed write to key first applied at or
// before tick (index 0: none).
func (k *checker) lastWriteBy(key string, tick int64) keyWrite {
	ws := k.keyWrites[key]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].tick > tick })
	if i == 0 {
		return keyWrite{}
	}
	return ws[i-1]
}

// observed is the index of the write a served read saw: the version it
// returned, or for an absent key the newest write to it at or below the
// applied index of the state it was served from (a delete).
func (k *checker) observed(o *op) uint64 {
	if o.found {
		return o.ver
	}
	return k.lastWriteAt(o.key, o.at)
}

// committedAs reports whether the entry at tok's index is committed with
// tok's term.
func (k *checker) committedAs(tok api.Token) bool {
	id, ok := k.committed[tok.Index]
	return ok && id.term == tok.Term
}

// counters checks the counter: every increment acknowledged is applied, and
// on every member the final value is the acknowledged increments plus a
// subset of those whose outcome is unknown, never more (double applies are
// caught when they happen, by double-apply).
func (k *checker) counters(li int) {
	c := k.c
	w := c.wl
	if len(w.ctrs) == 0 {
		return
	}
	var acked int64
	var unknown []int64
	for _, r := range w.ctrs {
		first, applied := k.idemFirst[r.idem]
		switch {
		case r.acked:
			if !applied {
				c.fail("counter-acked-missing", "increment %s (+%d) was acknowledged (%s) but no entry applied it", r.idem, r.delta, describeCmdResult(r.res))
				return
			}
			if first.index != r.res.Index {
				c.fail("counter-acked-missing", "increment %s (+%d) was acknowledged as applied at %d, but it was applied at %d", r.idem, r.delta, r.res.Index, first.index)
				return
			}
			acked += r.delta
		case r.sent:
			unknown = append(unknown, r.delta)
		case applied:
			c.fail("counter-phantom", "increment %s was applied at %d but never reached a node", r.idem, first.index)
			return
		}
	}
	sums := subsetSums(unknown)
	for _, n := range c.members(li) {
		if k.counterValue(n, acked, unknown, sums); c.err != nil {
			return
		}
	}
	c.tr.add(c.now, "counter-ok %s acked=%d unknown=%d", ctrKey, acked, len(unknown))
}

// counterValue checks n's counter: acked plus a sum of a subset of unknown
// (sums: which sums are reachable).
func (k *checker) counterValue(n *simNode, acked int64, unknown []int64, sums []bool) {
	c := k.c
	raw, ok := n.sm.kv[ctrKey]
	v := int64(0)
	if ok {
		p, err := strconv.ParseInt(raw.val, 10, 64)
		if err != nil {
			c.fail("counter-value", "%s holds %s=%q, not an integer", n.id, ctrKey, raw.val)
			return
		}
		v = p
	}
	if extra := v - acked; extra < 0 || extra >= int64(len(sums)) || !sums[extra] {
		c.fail("counter-value", "%s holds %s=%d: acknowledged increments sum to %d, and %d increments of unknown outcome (total %d) cannot add %d (a double apply or a lost acknowledged increment)",
			n.id, ctrKey, v, acked, len(unknown), sumOf(unknown), extra)
	}
}

// subsetSums returns which sums a subset of ds (all positive) can reach.
func subsetSums(ds []int64) []bool {
	total := sumOf(ds)
	ok := make([]bool, total+1)
	ok[0] = true
	for _, d := range ds {
		for s := total; s >= d; s-- {
			if ok[s-d] {
				ok[s] = true
			}
		}
	}
	return ok
}

func sumOf(ds []int64) int64 {
	var s int64
	for _, d := range ds {
		s += d
	}
	return s
}

// sessions checks every session read and the sessions' final tokens:
//   - a read served with a token whose entry was discarded (the session's
//     own write is lost) is a silent rollback; an ErrRolledBack for a token
//     whose entry is committed is a false one;
//   - read-your-writes: a read sees at least the newest committed write to
//     its key at or below the token's index;
//   - monotonic reads: within a session, a key never goes back to an older
//     write;
//   - on the converged cluster, the leader decides every session's final
//     token (session.Check, then session.Settle): served if its entry is
//     committed, ErrRolledBack if not, never left waiting.
func (k *checker) sessions(li int) {
	if k.sessionReads(); k.c.err != nil {
		return
	}
	k.sessionTokens(li)
}

// sessionReads checks the session reads served or rolled back.
func (k *checker) sessionReads() {
	c := k.c
	type sk struct {
		client, sess int
		key          string
	}
	seen := map[sk]uint64{}
	for _, o := range c.wl.ops {
		if o.kind != opSessionRead || (o.state != opOK && !o.rolledBack) {
			continue
		}
		c.stats.SessionReadsChecked++
		if o.rolledBack {
			if k.committedAs(o.tok) {
				c.fail("session-false-rollback", "op%d (client %d) got ErrRolledBack for token %d/%d, but that entry is committed", o.id, o.client, o.tok.Term, o.tok.Index)
				return
			}
			continue
		}
		if !o.tok.IsZero() && !k.committedAs(o.tok) {
			id := k.committed[o.tok.Index]
			c.fail("session-rollback-unseen", "op%d (client %d session %d) read %s at %s (applied %d) with token %d/%d, but the entry there was discarded (term %d committed there): the session's write was lost and the read did not say so",
				o.id, o.client, o.sess, o.key, nodeID(o.node), o.at, o.tok.Term, o.tok.Index, id.term)
			return
		}
		obs := k.observed(o)
		if need := k.lastWriteAt(o.key, o.tok.Index); obs < need {
			c.fail("read-your-writes", "op%d (client %d session %d) read %s=%q (write at %d) at %s (applied %d) with token %d/%d, but the write at %d is at or below the token",
				o.id, o.client, o.sess, o.key, o.value, obs, nodeID(o.node), o.at, o.tok.Term, o.tok.Index, need)
			return
		}
		key := sk{o.client, o.sess, o.key}
		if prev := seen[key]; obs < prev {
			c.fail("monotonic-reads", "op%d (client %d session %d) read %s=%q (write at %d) at %s (applied %d), but the session saw the write at %d before",
				o.id, o.client, o.sess, o.key, o.value, obs, nodeID(o.node), o.at, prev)
			return
		}
		seen[key] = obs
	}
}

// sessionTokens checks what the converged leader li decides for each
// session's final token.
func (k *checker) sessionTokens(li int) {
	c := k.c
	l := c.nodes[li]
	st := l.core.Status()
	for _, cl := range c.wl.clients {
		if cl.kind != clientSession || cl.tok.IsZero() {
			continue
		}
		tok := cl.tok
		ok, err := session.Check(tok, l.applied, func(i uint64) (uint64, bool) { return l.sm.termAt(i, l.applied) })
		if !ok && err == nil {
			t, tok2 := c.logTerm(l, st.Commit)
			err = session.Settle(tok, st.Term, st.LastIndex, tok2 && t == st.Term, func(i uint64) (uint64, bool) { return c.logTerm(l, i) })
			if err == nil {
				c.fail("session-stuck", "client %d's token %d/%d: the converged leader %s (term %d, last %d, applied %d) neither serves nor rolls back a read of it: it would wait forever",
					cl.id, tok.Term, tok.Index, l.id, st.Term, st.LastIndex, l.applied)
				return
			}
		}
		committed := k.committedAs(tok)
		switch {
		case committed && !ok:
			c.fail("session-false-rollback", "client %d's token %d/%d is committed but the converged leader %s refuses it: %v", cl.id, tok.Term, tok.Index, l.id, err)
			return
		case !committed && ok:
			c.fail("session-rollback-unseen", "client %d's token %d/%d names a discarded entry, but the converged leader %s would serve it", cl.id, tok.Term, tok.Index, l.id)
			return
		case !committed && !errors.Is(err, api.ErrRolledBack):
			c.fail("session-rollback-unseen", "client %d's token %d/%d names a discarded entry; the converged leader %s answers %v, not ErrRolledBack", cl.id, tok.Term, tok.Index, l.id, err)
			return
		}
		if !committed {
			c.stats.SessionFinalRollbacks++
		}
	}
}

// bounded checks every bounded read: its result is at least as new as every
// write committed (first applied) at or before start - maxLag.
func (k *checker) bounded() {
	c := k.c
	for _, o := range c.wl.ops {
		if o.kind != opBoundedRead || o.state != opOK {
			continue
		}
		c.stats.BoundedChecked++
		need := k.lastWriteBy(o.key, o.startTick-o.maxLag)
		if obs := k.observed(o); obs < need.index {
			c.fail("bounded-staleness", "op%d (client %d) read %s=%q (write at %d) at %s (applied %d, local=%t) with max lag %d ticks, started at tick %d, but the write at %d was committed by tick %d",
				o.id, o.client, o.key, o.value, obs, nodeID(o.node), o.at, !o.leaderPhase, o.maxLag, o.startTick, need.index, need.tick)
			return
		}
	}
}

// casIn and casOut are operations on the CAS register for porcupine. A CAS
// carries the log index it was applied at: the version it sets.
type casIn struct {
	read   bool
	ifVer  uint64
	value  string
	index  uint64
	opID   uint64
	client int
}

type casOut struct {
	value   string
	ver     uint64
	applied bool // CAS: it set the register
}

type casState struct {
	value string
	ver   uint64
}

var casModel = porcupine.Model{
	Init: func() any { return casState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(casState), input.(casIn), output.(casOut)
		if in.read {
			return out.value == st.value && out.ver == st.ver, st
		}
		if st.ver == in.ifVer {
			return out.applied && out.ver == in.index, casState{value: in.value, ver: in.index}
		}
		return !out.applied && out.ver == st.ver, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(casIn), output.(casOut)
		if in.read {
			return fmt.Sprintf("op%d get() -> %q@%d", in.opID, out.value, out.ver)
		}
		return fmt.Sprintf("op%d cas(if %d, %q) at %d -> applied=%t version=%d", in.opID, in.ifVer, in.value, in.index, out.applied, out.ver)
	},
}

// casLinearizable checks the CAS register's history with porcupine: CAS
// commands applied somewhere (their result: the client's answer, or the one
// they had when applied), and the successful linearizable reads of it.
// Returns are bounded by the first apply, as for puts.
func (k *checker) casLinearizable() {
	c := k.c
	var h []porcupine.Operation
	for _, o := range c.wl.ops {
		switch {
		case o.kind == opCAS:
			fa, applied := k.firstApply[o.id]
			if !applied {
				continue
			}
			idx := k.reqIndex[o.id]
			res := k.cmdRes[idx]
			if o.state == opOK {
				res = o.cres
			}
			ret := fa
			if o.state == opOK && o.ret < ret {
				ret = o.ret
			}
			h = append(h, porcupine.Operation{ClientId: o.client, Call: o.call, Return: ret,
				Input:  casIn{ifVer: o.cmd.IfIndex, value: string(o.cmd.Value), index: idx, opID: o.id, client: o.client},
				Output: casOut{applied: res.Applied, ver: res.Version}})
		case o.kind == opCASRead && o.state == opOK:
			h = append(h, porcupine.Operation{ClientId: o.client, Call: o.call, Return: o.ret,
				Input: casIn{read: true, opID: o.id, client: o.client}, Output: casOut{value: o.value, ver: o.ver}})
		}
	}
	if len(h) == 0 {
		return
	}
	c.stats.CASChecked += len(h)
	switch porcupine.CheckOperationsTimeout(casModel, h, 20*time.Second) {
	case porcupine.Illegal:
		viz := ""
		if c.cfg.VisualizePath != "" {
			_, info := porcupine.CheckOperationsVerbose(casModel, h, 20*time.Second)
			if err := porcupine.VisualizePath(casModel, info, c.cfg.VisualizePath); err != nil {
				viz = fmt.Sprintf(" (visualization failed: %v)", err)
			} else {
				viz = " (visualization in " + c.cfg.VisualizePath + ")"
			}
		}
		c.fail("cas-linearizability", "history of the CAS register %s (%d operations) is not linearizable%s", casKey, len(h), viz)
	case porcupine.Unknown:
		c.stats.LinUnknown++
	}
}
