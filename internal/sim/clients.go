package sim

import (
	"fmt"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/session"
)

// The counter, CAS, session and bounded-read clients, and the runtime
// behaviour they exercise: internal/node's command path (the leader's
// idempotency lookup, stamping, answers that wait for the apply), its
// session reads (wait for the token here, else forward to the leader, which
// settles it) and its bounded reads (a read point the leader confirms,
// cached on the follower). The decisions are internal/session's functions.

// ctrReq is one increment of the counter: every attempt carries the same
// idempotency key and delta.
type ctrReq struct {
	client   int
	idem     string
	delta    int64
	first    int64 // tick the first attempt was made
	attempts []*op
	sent     bool // an attempt was accepted by a node (its outcome may be unknown)
	acked    bool
	res      command.Result
	done     bool
}

// ctrAttempts bounds the attempts of one increment.
const ctrAttempts = 6

// idemCapRecords is the IdemCap the simulated leaders stamp: far more
// records than a run keeps alive, so that only expiry drops a record (a cap
// eviction may legitimately let a late retry apply twice).
const idemCapRecords = 1 << 16

// retrySpan is how long after its first attempt an increment may still be
// proposed: half the idempotency window, so every attempt's stamped time is
// within the window of every other's and a retry is always recognised.
func (w *workload) retrySpan() int64 { return int64(w.c.cfg.Workload.IdemWindowTicks / 2) }

func (w *workload) newIncr(cl *simClient) *op {
	c := w.c
	cl.reqSeq++
	cl.req = &ctrReq{client: cl.id, idem: fmt.Sprintf("c%d-%d", cl.id, cl.reqSeq), delta: int64(1 + c.rng.Intn(9)), first: c.now}
	w.ctrs = append(w.ctrs, cl.req)
	c.stats.Incrs++
	return w.attempt(cl)
}

// attempt makes the next attempt of cl's increment.
func (w *workload) attempt(cl *simClient) *op {
	r := cl.req
	o := w.op(cl, ctrKey)
	o.kind, o.req, o.ack = opIncr, r, w.randomAck()
	o.cmd = &command.Command{Op: command.OpIncr, Key: []byte(ctrKey), Delta: r.delta, IdemKey: []byte(r.idem)}
	r.attempts = append(r.attempts, o)
	if len(r.attempts) > 1 {
		w.c.stats.IncrRetries++
		w.c.tr.add(w.c.now, "incr-retry c%d %s attempt %d op%d", cl.id, r.idem, len(r.attempts), o.id)
	}
	return o
}

func (w *workload) newCASOp(cl *simClient) *op {
	c := w.c
	o := w.op(cl, casKey)
	if cl.hasVer && c.chance(0.7) {
		o.kind, o.ack, o.value = opCAS, w.randomAck(), fmt.Sprintf("c%d", o.id)
		o.cmd = &command.Command{Op: command.OpSet, Cond: command.CondIndex, IfIndex: cl.ver, Key: []byte(casKey), Value: []byte(o.value)}
		c.stats.CASOps++
		return o
	}
	o.kind = opCASRead
	if c.chance(c.cfg.Workload.ReadIndexShare) {
		o.level = repl.ReadIndexOnly
	}
	return o
}

// prepareCommand is the leader's side of a command (internal/node's
// prepareCommand): on the leader, a command whose idempotency key has a
// live record in the applied state is answered from it without a proposal
// (done); otherwise it is stamped with the leader's clock, window and limits.
func (w *workload) prepareCommand(cl *simClient, o *op, target int) (value []byte, done bool) {
	c := w.c
	n := c.nodes[target]
	if len(o.cmd.IdemKey) > 0 && n.core.Status().Role == repl.RoleLeader {
		if r, ok := n.sm.lookupIdem(o.cmd.IdemKey, c.now); ok {
			r.Duplicate = true
			term, _ := n.sm.termAt(r.Index, n.applied)
			o.node, o.state, o.cres = target, opOK, r
			o.res = repl.Result{ID: o.id, Index: r.Index, Term: term, Outcome: repl.OutcomeOK}
			o.call, o.callTick = c.histNow(), c.now
			o.ret = c.histNow()
			if o.req != nil {
				o.req.sent = true
			}
			c.stats.IdemShortcuts++
			c.tr.add(c.now, "command-duplicate c%d op%d %s at %s: %s", cl.id, o.id, describeCmd(o.cmd), n.id, describeCmdResult(r))
			if k := c.chk.cmdRes[r.Index]; !sameCmdResult(k, r) {
				c.fail("cmd-result", "%s answered op%d (%s) from its idempotency table with %s, but the command applied at %d had %s",
					n.id, o.id, describeCmd(o.cmd), describeCmdResult(r), r.Index, describeCmdResult(k))
			}
			w.ended(cl, o)
			return nil, true
		}
	}
	if o.req != nil && c.now-o.req.first >= w.retrySpan() {
		c.tr.add(c.now, "incr-late c%d op%d: past the retry span", cl.id, o.id)
		w.ended(cl, o)
		return nil, true
	}
	cmd := *o.cmd
	cmd.Stamp(c.now, int64(c.cfg.Workload.IdemWindowTicks), idemCapRecords, 0)
	return command.Encode(nil, &cmd), false
}

// parkedStep answers a command whose ack arrived once its entry is applied
// on the node (internal/node's cmdWaits): with the result applied there, or
// an unknown outcome if another entry was applied at its index or its
// result is no longer known (a snapshot covered it).
func (w *workload) parkedStep(cl *simClient, o *op) {
	c := w.c
	n := c.nodes[o.node]
	if n.applied < o.res.Index {
		return
	}
	a, ok := n.cmdRecent[o.res.Index]
	switch {
	case !ok:
		o.state = opOpen
		c.stats.WritesOpen++
		c.tr.add(c.now, "command-unknown c%d op%d at %s: index %d applied without its result here", cl.id, o.id, n.id, o.res.Index)
	case a.term != o.res.Term:
		o.state = opOpen
		c.stats.WritesOpen++
		c.tr.add(c.now, "command-unknown c%d op%d at %s: the entry at %d is of term %d, not %d", cl.id, o.id, n.id, o.res.Index, a.term, o.res.Term)
	default:
		o.state, o.ret, o.cres = opOK, c.histNow(), a.r
		c.stats.WritesOK++
		c.tr.add(c.now, "command-ok c%d op%d at %s: %s", cl.id, o.id, n.id, describeCmdResult(a.r))
		c.chk.acked(n, o)
		if k, ok := c.chk.cmdRes[o.res.Index]; !ok || !sameCmdResult(k, a.r) || k.Duplicate != a.r.Duplicate {
			c.fail("cmd-result", "%s answered op%d (%s) with %s, but the command first applied at %d had %s",
				n.id, o.id, describeCmd(o.cmd), describeCmdResult(a.r), o.res.Index, describeCmdResult(k))
		}
		if o.kind == opCAS {
			if a.r.Applied {
				c.stats.CASApplied++
			} else {
				c.stats.CASCondFailed++
			}
		}
	}
	w.ended(cl, o)
}

// Session clients.

func (w *workload) newSessionOp(cl *simClient) *op {
	c := w.c
	wl := c.cfg.Workload
	key := fmt.Sprintf("k%d", c.rng.Intn(wl.Keys))
	if cl.lastKey != "" && c.chance(0.6) {
		key = cl.lastKey
	}
	o := w.op(cl, key)
	if c.chance(0.4) && !(wl.QuietDuringPartition && c.partUntil > 0) {
		o.kind, o.value = opPut, fmt.Sprintf("v%d", o.id)
		o.ack = repl.Ack{Mode: repl.AckAsync}
		if c.chance(0.5) {
			o.ack = w.randomAck()
		}
		cl.lastKey = key
		c.stats.SessionWrites++
		return o
	}
	o.kind, o.tok, o.sess = opSessionRead, cl.tok, cl.sess
	return o
}

// sessionStep serves a session read as internal/node does: at the node
// asked once session.Check says its applied state includes the token
// (ErrRolledBack if the entry applied there has another term); after
// SessionWaitTicks it is forwarded to the leader, where Check and, while
// not yet applied, session.Settle decide (wait, or ErrRolledBack).
func (w *workload) sessionStep(cl *simClient, o *op) {
	c := w.c
	n := c.nodes[o.node]
	if !n.up || n.paused {
		return
	}
	var ok bool
	var err error
	if bugSessionReadEarly(c.cfg.Bugs) && o.fwd == 0 {
		ok = true // bug: served without waiting for the token
	} else {
		ok, err = session.Check(o.tok, n.applied, func(i uint64) (uint64, bool) { return n.sm.termAt(i, n.applied) })
	}
	if err == nil && !ok && o.fwd > 0 {
		st := n.core.Status()
		if st.Role != repl.RoleLeader {
			w.forwardSession(cl, o, n, "not the leader")
			return
		}
		// Settle decides only once the leader has committed an entry of
		// its own term; before that a leader with an older entry may yet be
		// elected and commit it (seeds 218 and 222 found it).
		// SettleEarly claims the commit to Settle regardless.
		t, ok := c.logTerm(n, st.Commit)
		committedInTerm := bugSettleEarly(c.cfg.Bugs) || (ok && t == st.Term)
		err = session.Settle(o.tok, st.Term, st.LastIndex, committedInTerm, func(i uint64) (uint64, bool) { return c.logTerm(n, i) })
	}
	switch {
	case err != nil:
		o.rolledBack, o.state, o.at = true, opFailed, n.applied
		c.stats.SessionRolledBack++
		c.tr.add(c.now, "session-rolled-back c%d op%d at %s token=%d/%d applied=%d: %v", cl.id, o.id, n.id, o.tok.Term, o.tok.Index, n.applied, err)
		w.ended(cl, o)
	case ok:
		w.serve(o, n)
		reply := api.Token{}
		if n.applied > 0 {
			reply.Index = n.applied
			if t, known := n.sm.termAt(n.applied, n.applied); known {
				reply.Term = t
			} else {
				reply.Term = n.appliedTerm
			}
		}
		o.reply = reply.Max(o.tok)
		if o.fwd > 0 {
			c.stats.SessionForwarded++
		} else {
			c.stats.SessionLocal++
		}
		c.tr.add(c.now, "session-ok c%d op%d %s=%q@%d at %s token=%d/%d applied=%d reply=%d/%d", cl.id, o.id, o.key, o.value, o.ver, n.id, o.tok.Term, o.tok.Index, n.applied, o.reply.Term, o.reply.Index)
		w.ended(cl, o)
	case o.fwd == 0 && c.now >= o.until:
		w.forwardSession(cl, o, n, "token not applied")
	}
}

// forwardSession sends a session read from n to the leader n knows (n
// itself if it leads); it waits while none is known or reachable.
func (w *workload) forwardSession(cl *simClient, o *op, n *simNode, why string) {
	c := w.c
	lead := n.core.Status().Lead
	li := c.nodeIndex(lead)
	if lead == repl.None || li < 0 || !c.nodes[li].up || c.net.blocked[n.idx][li] {
		return
	}
	if o.fwd >= 8 {
		o.state = opFailed
		c.tr.add(c.now, "session-no-leader c%d op%d after %d forwards", cl.id, o.id, o.fwd)
		w.ended(cl, o)
		return
	}
	o.fwd++
	o.node = li
	c.tr.add(c.now, "session-forward c%d op%d %s -> %s (%s)", cl.id, o.id, n.id, lead, why)
}

// Bounded clients.

// boundedLags are the bounds (ticks) a bounded read asks for.
var boundedLags = []int64{20, 40}

func (w *workload) newBoundedRead(cl *simClient) *op {
	c := w.c
	o := w.op(cl, fmt.Sprintf("k%d", c.rng.Intn(c.cfg.Workload.Keys)))
	o.kind, o.maxLag = opBoundedRead, boundedLags[c.rng.Intn(len(boundedLags))]
	return o
}

// readPoint is a read index the leader confirmed, and the tick it was asked
// for (internal/node's readPoint).
type readPoint struct {
	index uint64
	asked int64
}

// rpcMsg is a read-point request from a follower to the leader, or its
// answer, on the simulated wire.
type rpcMsg struct {
	due      int64
	from, to int
	reply    bool
	asked    int64  // tick the follower asked
	index    uint64 // answer: the read point
	ok       bool   // answer: the leader confirmed it
}

// rpIDBase: read ids at or above it are read points asked for by a
// follower (the workload's ids are far below, configuration changes use
// confIDBase for proposals).
const rpIDBase = 1 << 41

// boundedStep serves a bounded read at a follower as internal/node does:
// with a read point young enough (session.WithinBound on its age), or a
// fresh one asked of the leader; once the follower has applied
// session.Need(point) it serves locally if the bound still holds; if no
// point comes within an election timeout, or it is not applied within
// SessionWaitTicks, or the bound no longer holds, the read goes to the
// leader.
func (w *workload) boundedStep(cl *simClient, o *op) {
	c := w.c
	n := c.nodes[o.node]
	if !n.up || n.paused {
		return
	}
	noCheck := bugBoundedNoCheck(c.cfg.Bugs)
	if !o.hasPoint {
		if p := n.rp; p.asked > 0 && (noCheck || session.WithinBound(c.now-p.asked, 1, o.maxLag)) {
			o.point, o.hasPoint = p, true
			o.until = c.now + int64(c.cfg.Workload.SessionWaitTicks)
		} else {
			if n.rpAsked > 0 && c.now-n.rpAsked > int64(c.cfg.Timing.ElectionTicks) {
				n.rpAsked = 0 // the refresh timed out
			}
			if n.rpAsked == 0 && !w.askReadPoint(n) {
				w.toLeader(cl, o, "no leader to ask for a read point")
				return
			}
			if c.now >= o.until {
				w.toLeader(cl, o, "no read point in time")
			}
			return
		}
	}
	if n.applied >= session.Need(o.point.index, true, 0) {
		if !noCheck && !session.WithinBound(c.now-o.point.asked, 1, o.maxLag) {
			w.toLeader(cl, o, "bound no longer met")
			return
		}
		w.serve(o, n)
		c.stats.BoundedLocal++
		c.tr.add(c.now, "bounded-ok c%d op%d %s=%q@%d at %s point=%d asked=%d applied=%d", cl.id, o.id, o.key, o.value, o.ver, n.id, o.point.index, o.point.asked, n.applied)
		w.ended(cl, o)
		return
	}
	if c.now >= o.until {
		w.toLeader(cl, o, "read point not applied in time")
	}
}

// toLeader sends a bounded read to the leader the node asked knows, as a
// linearizable read (the client follows redirects from there).
func (w *workload) toLeader(cl *simClient, o *op, why string) {
	c := w.c
	n := c.nodes[o.node]
	o.leaderPhase, o.state, o.tries = true, opUnsent, 0
	cl.hint = -1
	if n.up {
		if st := n.core.Status(); st.Role == repl.RoleLeader {
			cl.hint = n.idx
		} else if li := c.nodeIndex(st.Lead); li >= 0 {
			cl.hint = li
		}
	}
	c.tr.add(c.now, "bounded-to-leader c%d op%d at %s -> %d: %s", cl.id, o.id, n.id, cl.hint+1, why)
}

// askReadPoint sends n's request for a read point to the leader it knows.
func (w *workload) askReadPoint(n *simNode) bool {
	c := w.c
	st := n.core.Status()
	li := c.nodeIndex(st.Lead)
	if st.Lead == repl.None || st.Role == repl.RoleLeader || li < 0 {
		return false
	}
	n.rpAsked = c.now
	c.stats.ReadPointsAsked++
	w.sendRPC(rpcMsg{from: n.idx, to: li, asked: c.now})
	return true
}

// sendRPC puts m on the simulated wire: dropped with Faults.Drop, delayed
// DelayMin..DelayMax ticks; a partition or a down or paused receiver loses
// it at delivery.
func (w *workload) sendRPC(m rpcMsg) {
	c := w.c
	f := c.cfg.Faults
	what := "ask"
	if m.reply {
		what = fmt.Sprintf("answer ok=%t index=%d", m.ok, m.index)
	}
	if c.chance(f.Drop) {
		c.tr.add(c.now, "read-point-drop %s->%s %s asked=%d", nodeID(m.from), nodeID(m.to), what, m.asked)
		return
	}
	m.due = c.now + int64(f.DelayMin+c.rng.Intn(f.DelayMax-f.DelayMin+1))
	w.rpcs = append(w.rpcs, m)
	c.tr.add(c.now, "read-point-send %s->%s %s asked=%d due=%d", nodeID(m.from), nodeID(m.to), what, m.asked, m.due)
}

// deliverRPCs delivers the read-point messages that are due, in send order.
func (w *workload) deliverRPCs() {
	c := w.c
	k := 0
	due := []rpcMsg(nil)
	for _, m := range w.rpcs {
		if m.due <= c.now {
			due = append(due, m)
			continue
		}
		w.rpcs[k] = m
		k++
	}
	w.rpcs = w.rpcs[:k]
	for _, m := range due {
		to := c.nodes[m.to]
		if c.net.blocked[m.from][m.to] || !to.up || to.paused {
			c.tr.add(c.now, "read-point-lost %s->%s asked=%d", nodeID(m.from), nodeID(m.to), m.asked)
			continue
		}
		if m.reply {
			if m.ok && m.asked > to.rp.asked {
				to.rp = readPoint{index: m.index, asked: m.asked}
			}
			if to.rpAsked == m.asked {
				to.rpAsked = 0
			}
			c.tr.add(c.now, "read-point %s ok=%t index=%d asked=%d", to.id, m.ok, m.index, m.asked)
			continue
		}
		w.rpSeq++
		id := rpIDBase + w.rpSeq
		if err := to.core.Read(repl.ReadRequest{ID: id}); err != nil {
			w.sendRPC(rpcMsg{from: m.to, to: m.from, reply: true, asked: m.asked})
			continue
		}
		w.rpAsks[id] = m
	}
}

// readPointDone answers a follower's read-point request with the leader's
// confirmed read index.
func (w *workload) readPointDone(n *simNode, r repl.ReadResult) {
	m, ok := w.rpAsks[r.ID]
	if !ok {
		w.c.fail("read-result", "%s returned a read result for unknown read-point id %d", n.id, r.ID)
		return
	}
	delete(w.rpAsks, r.ID)
	w.sendRPC(rpcMsg{from: n.idx, to: m.from, reply: true, asked: m.asked, index: r.Index, ok: r.Err == nil})
}
