package sim

import (
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/session"
)

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opLinRead
	opStaleRead
	opIncr        // counter client: one attempt of an INCR with an idempotency key
	opCAS         // CAS client: SET of the register under CondIndex
	opCASRead     // CAS client: linearizable read of the register
	opSessionRead // session client: read with the session's token, at a random node
	opBoundedRead // bounded client: bounded-staleness read, at a random node
)

func (k opKind) String() string {
	return [...]string{"put", "delete", "lin-read", "stale-read", "incr", "cas", "cas-read", "session-read", "bounded-read"}[k]
}

type opState uint8

const (
	opUnsent  opState = iota // not yet accepted by a node
	opPending                // accepted, waiting for its answer
	opOK                     // answered successfully
	opOpen                   // write with unknown outcome (timeout, leadership lost, crash)
	opFailed                 // definitely had no effect (refused read, read error)
)

// op is one client operation. Times are history-clock values (cluster.seq).
type op struct {
	id       uint64
	client   int
	kind     opKind
	key      string
	value    string // put: the unique value written; reads: the value read
	ack      repl.Ack
	level    repl.ReadLevel
	node     int
	state    opState
	call     int64
	ret      int64
	callTick int64
	tries    int
	res      repl.Result
	inOps    bool // recorded in workload.ops (a forwarded read is sent again)
	// writes: the fewest and the most voters in the accepting leader's
	// configurations while the write was pending (sampled every tick: a
	// configuration change takes effect when appended, and sync means every
	// voting follower of the configuration the core saw when it acked).
	voters, mostVoters int

	// Commands (opIncr, opCAS): the command as the client sends it (the
	// leader stamps it), its result once answered, and whether the
	// acknowledgement waits for the entry to be applied on the node.
	cmd    *command.Command
	cres   command.Result
	parked bool
	req    *ctrReq // opIncr: the increment this attempt belongs to

	// Reads that were served: what they saw.
	found bool
	ver   uint64 // the key's version (0: absent)
	at    uint64 // the applied index of the state served

	// Session reads.
	tok        api.Token // the session's token when the read began
	reply      api.Token // the reply's token
	sess       int       // the client's session number
	rolledBack bool      // ended with ErrRolledBack
	fwd        int       // forwards so far (0: at the node asked)
	until      int64     // session: serve locally until this tick; bounded: wait for a point (or its apply) until then

	// Bounded reads.
	maxLag      int64 // ticks
	startTick   int64
	point       readPoint
	hasPoint    bool
	leaderPhase bool // sent to the leader as a linearizable read
}

// isWrite: the op is a proposal (a write or a command).
func (o *op) isWrite() bool {
	return o.kind == opPut || o.kind == opDelete || o.kind == opIncr || o.kind == opCAS
}

// coreRead: the op is served by Core.Read on the node it was sent to.
func (o *op) coreRead() bool {
	return o.kind == opLinRead || o.kind == opCASRead || (o.kind == opBoundedRead && o.leaderPhase)
}

// clientKind says what a client does.
type clientKind uint8

const (
	clientPlain   clientKind = iota // puts, deletes, linearizable and stale reads
	clientCounter                   // INCR with idempotency keys, retried
	clientSession                   // writes and session reads with a token
	clientCAS                       // compare-and-set on one register
	clientBounded                   // bounded-staleness reads on followers
)

type simClient struct {
	id   int
	kind clientKind
	cur  *op
	hint int // node believed to lead, -1 if unknown

	req    *ctrReq // counter: the increment in progress
	reqSeq int

	tok     api.Token // session: the newest (term, index) written or read
	sess    int       // session: restarted after a rollback
	lastKey string    // session: the key last written

	ver    uint64 // cas: the register's version last learned
	hasVer bool
}

// workload drives the clients and records the history.
type workload struct {
	c       *cluster
	clients []*simClient
	ops     []*op // every op that reached a node, in call order
	byID    map[uint64]*op
	nextID  uint64
	written map[string]bool // every value ever proposed, per key+value
	ctrs    []*ctrReq       // every increment started

	rpcs   []rpcMsg          // read-point requests and answers on the wire, in send order
	rpSeq  uint64            //
	rpAsks map[uint64]rpcMsg // read id at the leader -> the request it answers
}

// Keys of the command clients (the plain and session clients use k0, k1, ...).
const (
	ctrKey = "ctr"
	casKey = "cas"
)

func newWorkload(c *cluster) *workload {
	w := &workload{c: c, byID: map[uint64]*op{}, written: map[string]bool{}, rpAsks: map[uint64]rpcMsg{}}
	wl := c.cfg.Workload
	add := func(kind clientKind, n int) {
		for i := 0; i < n; i++ {
			w.clients = append(w.clients, &simClient{id: len(w.clients), kind: kind, hint: -1})
		}
	}
	add(clientPlain, wl.Clients)
	add(clientCounter, wl.CounterClients)
	add(clientSession, wl.SessionClients)
	add(clientCAS, wl.CASClients)
	add(clientBounded, wl.BoundedClients)
	return w
}

// idle reports whether no client has an operation in flight.
func (w *workload) idle() bool {
	for _, cl := range w.clients {
		if cl.cur != nil && cl.cur.state == opPending {
			return false
		}
		if cl.req != nil && !cl.req.done {
			return false
		}
	}
	return true
}

func (w *workload) step(newOps bool) {
	c := w.c
	wl := c.cfg.Workload
	w.deliverRPCs()
	for _, cl := range w.clients {
		if o := cl.cur; o != nil && o.state == opPending {
			if n := c.nodes[o.node]; o.isWrite() && n.core != nil && n.up {
				v := c.chk.voters(n)
				o.voters, o.mostVoters = min(o.voters, v), max(o.mostVoters, v)
			}
			if c.now-o.callTick > int64(wl.ClientTimeoutTicks) {
				w.abandon(o, "client-timeout")
				w.ended(cl, o)
				continue
			}
			switch {
			case o.parked:
				w.parkedStep(cl, o)
			case o.kind == opSessionRead:
				w.sessionStep(cl, o)
			case o.kind == opBoundedRead && !o.leaderPhase:
				w.boundedStep(cl, o)
			}
			continue
		}
		if cl.cur == nil {
			if cl.kind == clientCounter && cl.req != nil && !cl.req.done {
				cl.cur = w.attempt(cl) // a retry of the same increment
			} else {
				rate := wl.OpRate
				if cl.kind != clientPlain && wl.ExtraOpRate > 0 {
					rate = wl.ExtraOpRate
				}
				if !newOps || !c.chance(rate) {
					continue
				}
				cl.cur = w.newOp(cl)
				if c.chance(wl.RandomStart) {
					cl.hint = -1
				}
			}
		}
		w.try(cl)
	}
}

func (w *workload) newOp(cl *simClient) *op {
	switch cl.kind {
	case clientCounter:
		return w.newIncr(cl)
	case clientSession:
		return w.newSessionOp(cl)
	case clientCAS:
		return w.newCASOp(cl)
	case clientBounded:
		return w.newBoundedRead(cl)
	}
	c := w.c
	wl := c.cfg.Workload
	o := w.op(cl, fmt.Sprintf("k%d", c.rng.Intn(wl.Keys)))
	r := c.rng.Intn(wl.Puts + wl.Deletes + wl.LinReads + wl.StaleReads)
	switch {
	case r < wl.Puts+wl.Deletes && wl.QuietDuringPartition && c.partUntil > 0 && !c.attacking:
		o.kind = opLinRead
	case r < wl.Puts:
		o.kind = opPut
		o.value = fmt.Sprintf("v%d", o.id)
	case r < wl.Puts+wl.Deletes:
		o.kind = opDelete
	case r < wl.Puts+wl.Deletes+wl.LinReads:
		o.kind = opLinRead
		if c.chance(wl.ReadIndexShare) {
			o.level = repl.ReadIndexOnly
		}
	default:
		o.kind = opStaleRead
	}
	if o.isWrite() {
		o.ack = w.randomAck()
	}
	return o
}

// op makes a new operation of cl on key.
func (w *workload) op(cl *simClient, key string) *op {
	w.nextID++
	return &op{id: w.nextID, client: cl.id, key: key, node: -1}
}

// randomAck draws an ack mode (async, semi-sync K=1, sync, majority twice,
// and semi-sync K=2 on 5 nodes).
func (w *workload) randomAck() repl.Ack {
	modes := []repl.Ack{{Mode: repl.AckAsync}, {Mode: repl.AckSemiSync, Replicas: 1}, {Mode: repl.AckSync}, {Mode: repl.AckMajority}, {Mode: repl.AckMajority}}
	if w.c.cfg.Nodes == 5 {
		modes = append(modes, repl.Ack{Mode: repl.AckSemiSync, Replicas: 2})
	}
	return modes[w.c.rng.Intn(len(modes))]
}

// upNodes are the nodes that are up and not paused.
func (w *workload) upNodes() []int {
	var cand []int
	for i, n := range w.c.nodes {
		if n.up && !n.paused {
			cand = append(cand, i)
		}
	}
	return cand
}

// try sends cl's unsent operation to the node it believes leads (any node
// for stale, session and bounded reads); on a redirect it retries next tick.
func (w *workload) try(cl *simClient) {
	c := w.c
	o := cl.cur
	o.tries++
	if o.tries > 20 {
		c.tr.add(c.now, "give-up c%d op%d %s", cl.id, o.id, o.kind)
		if o.inOps {
			o.state = opFailed // a forwarded read that found no leader
		}
		w.ended(cl, o)
		return
	}
	anyNode := o.kind == opStaleRead || ((o.kind == opSessionRead || o.kind == opBoundedRead) && !o.leaderPhase)
	var target int
	if !anyNode && cl.hint >= 0 && c.nodes[cl.hint].up && !c.nodes[cl.hint].paused {
		target = cl.hint
	} else {
		cand := w.upNodes()
		if len(cand) == 0 {
			return
		}
		target = cand[c.rng.Intn(len(cand))]
	}
	n := c.nodes[target]
	var err error
	switch {
	case o.kind == opStaleRead:
		v := n.sm.kv[o.key].val
		o.node, o.value = target, v
		o.call = c.histNow()
		o.ret = c.histNow()
		o.state = opOK
		c.stats.StaleReads++
		c.tr.add(c.now, "stale-read c%d op%d %s %s=%q applied=%d", cl.id, o.id, n.id, o.key, v, n.applied)
		if v != "" && !w.written[o.key+"\x00"+v] {
			c.fail("stale-read", "op%d read %s=%q from %s, a value never written", o.id, o.key, v, n.id)
		}
		w.ended(cl, o)
		return
	case o.kind == opSessionRead, o.kind == opBoundedRead && !o.leaderPhase:
		w.accepted(cl, o, target)
		if o.kind == opSessionRead {
			o.until = c.now + int64(c.cfg.Workload.SessionWaitTicks)
			c.stats.SessionReads++
			c.tr.add(c.now, "session-read c%d op%d %s at %s token=%d/%d applied=%d", cl.id, o.id, o.key, n.id, o.tok.Term, o.tok.Index, n.applied)
			w.sessionStep(cl, o)
		} else {
			o.until = c.now + int64(c.cfg.Timing.ElectionTicks)
			o.startTick = c.now
			c.stats.BoundedReads++
			c.tr.add(c.now, "bounded-read c%d op%d %s at %s max-lag=%d applied=%d", cl.id, o.id, o.key, n.id, o.maxLag, n.applied)
			if n.core.Status().Role == repl.RoleLeader {
				w.toLeader(cl, o, "asked the leader")
				return
			}
			w.boundedStep(cl, o)
		}
		return
	case o.coreRead():
		err = n.core.Read(repl.ReadRequest{ID: o.id, Level: o.level})
	case o.cmd != nil:
		var value []byte
		var done bool
		if value, done = w.prepareCommand(cl, o, target); done {
			return
		}
		err = n.core.Propose(repl.Proposal{ID: o.id, Kind: entry.KindCommand, Key: o.cmd.Key, Value: value, RequestID: o.id, Ack: o.ack})
	default:
		p := repl.Proposal{ID: o.id, Kind: entry.KindPut, Key: []byte(o.key), Value: []byte(o.value), RequestID: o.id, Ack: o.ack}
		if o.kind == opDelete {
			p.Kind, p.Value = entry.KindDelete, nil
		}
		if cl.kind == clientSession {
			// internal/node's checkSessionWrite: a leader of an older term
			// than the session's token is deposed; refused, like a redirect.
			if st := n.core.Status(); st.Role == repl.RoleLeader {
				if rerr := session.NewerTerm(cl.tok, st.Term); rerr != nil {
					c.stats.SessionWritesRefused++
					cl.hint = -1
					c.tr.add(c.now, "session-write-refused c%d op%d at %s: %v", cl.id, o.id, n.id, rerr)
					return
				}
			}
		}
		err = n.core.Propose(p)
	}
	if err != nil {
		if errors.Is(err, repl.ErrNotLeader) {
			c.stats.Redirects++
			cl.hint = -1
			if lead := n.core.Status().Lead; lead != repl.None && lead != n.id {
				cl.hint = c.nodeIndex(lead)
			}
			c.tr.add(c.now, "redirect c%d op%d %s at %s -> %d", cl.id, o.id, o.kind, n.id, cl.hint+1)
			return
		}
		c.stats.WritesRefused++
		c.tr.add(c.now, "refused c%d op%d %s at %s: %v", cl.id, o.id, o.kind, n.id, err)
		if o.inOps {
			o.state = opFailed
		}
		w.ended(cl, o)
		return
	}
	cl.hint = target
	w.accepted(cl, o, target)
	switch {
	case o.coreRead():
		if o.kind == opLinRead {
			c.stats.LinReads++
		}
		c.tr.add(c.now, "read c%d op%d %s %s at %s level=%d", cl.id, o.id, o.kind, o.key, n.id, o.level)
	case o.cmd != nil:
		if o.req != nil {
			o.req.sent = true
		}
		c.tr.add(c.now, "propose c%d op%d %s ack=%s/%d at %s", cl.id, o.id, describeCmd(o.cmd), o.ack.Mode, o.ack.Replicas, n.id)
	default:
		w.written[o.key+"\x00"+o.value] = true
		w.countWrite(o)
		c.tr.add(c.now, "propose c%d op%d %s %s=%q ack=%s/%d at %s", cl.id, o.id, o.kind, o.key, o.value, o.ack.Mode, o.ack.Replicas, n.id)
	}
}

// accepted records that node target took o.
func (w *workload) accepted(cl *simClient, o *op, target int) {
	c := w.c
	o.node, o.state = target, opPending
	if o.inOps {
		return
	}
	o.call, o.callTick = c.histNow(), c.now
	o.voters = c.chk.voters(c.nodes[target])
	o.mostVoters = o.voters
	o.inOps = true
	w.ops = append(w.ops, o)
	w.byID[o.id] = o
}

func (w *workload) countWrite(o *op) {
	s := &w.c.stats
	if o.kind == opDelete {
		s.Deletes++
	}
	switch {
	case o.ack.Mode == repl.AckAsync:
		s.PutsAsync++
	case o.ack.Mode == repl.AckSemiSync && o.ack.Replicas == 1:
		s.PutsSemi1++
	case o.ack.Mode == repl.AckSemiSync:
		s.PutsSemi2++
	case o.ack.Mode == repl.AckSync:
		s.PutsSync++
	default:
		s.PutsMajority++
	}
}

// abandon ends a pending operation without an answer: a write's outcome is
// unknown, a read had no effect.
func (w *workload) abandon(o *op, why string) {
	c := w.c
	if o.isWrite() {
		o.state = opOpen
		c.stats.WritesOpen++
	} else {
		o.state = opFailed
	}
	c.tr.add(c.now, "abandon c%d op%d %s: %s", o.client, o.id, o.kind, why)
	w.clients[o.client].hint = -1
}

// ended finishes cl's current operation o, whatever its outcome, and
// updates what the client knows: the counter's increment (done when
// acknowledged, else retried), the session's token, the register's version.
func (w *workload) ended(cl *simClient, o *op) {
	c := w.c
	cl.cur = nil
	switch cl.kind {
	case clientCounter:
		r := o.req
		switch {
		case o.state == opOK:
			r.acked, r.res, r.done = true, o.cres, true
			c.stats.IncrAcked++
			c.tr.add(c.now, "incr-acked c%d %s +%d after %d attempts: %s", cl.id, r.idem, r.delta, len(r.attempts), describeCmdResult(o.cres))
		case len(r.attempts) >= ctrAttempts || c.now-r.first >= w.retrySpan():
			r.done = true
			if r.sent {
				c.stats.IncrUnknown++
			}
			c.tr.add(c.now, "incr-give-up c%d %s +%d after %d attempts (reached a node: %t)", cl.id, r.idem, r.delta, len(r.attempts), r.sent)
		}
	case clientSession:
		switch {
		case o.kind == opPut && o.state == opOK:
			cl.tok = cl.tok.Max(api.Token{Term: o.res.Term, Index: o.res.Index})
		case o.kind == opSessionRead && o.state == opOK:
			cl.tok = cl.tok.Max(o.reply)
		case o.rolledBack:
			// The session's write is lost: the client starts a new session.
			cl.tok, cl.sess = api.Token{}, cl.sess+1
		}
	case clientCAS:
		switch {
		case o.kind == opCAS && o.state == opOK:
			cl.ver, cl.hasVer = o.cres.Version, true
		case o.kind == opCASRead && o.state == opOK:
			cl.ver, cl.hasVer = o.ver, true
		default:
			cl.hasVer = false
		}
	}
}

func (w *workload) nodeCrashed(n *simNode) {
	for _, cl := range w.clients {
		if o := cl.cur; o != nil && o.state == opPending && o.node == n.idx {
			w.abandon(o, "node crashed")
			w.ended(cl, o)
		}
	}
}

// serve records that o was served from n's applied state.
func (w *workload) serve(o *op, n *simNode) {
	v, found := n.sm.kv[o.key]
	o.value, o.found, o.ver, o.at = v.val, found, v.ver, n.applied
	o.state, o.ret = opOK, w.c.histNow()
}

func (w *workload) readDone(n *simNode, r repl.ReadResult) {
	c := w.c
	if r.ID >= rpIDBase {
		w.readPointDone(n, r)
		return
	}
	o := w.byID[r.ID]
	if o == nil || !o.coreRead() || o.node != n.idx {
		c.fail("read-result", "%s returned a read result for unknown read id %d", n.id, r.ID)
		return
	}
	if o.state != opPending {
		c.tr.add(c.now, "late-read op%d err=%v", o.id, r.Err)
		return
	}
	cl := w.clients[o.client]
	if r.Err != nil {
		o.state = opFailed
		if o.kind == opLinRead {
			c.stats.LinReadsFailed++
		}
		c.tr.add(c.now, "read-failed c%d op%d at %s: %v", o.client, o.id, n.id, r.Err)
		cl.hint = -1
	} else {
		if r.Index > n.applied {
			c.fail("read-unapplied", "%s: read op%d at index %d but applied only %d", n.id, o.id, r.Index, n.applied)
			return
		}
		w.serve(o, n)
		switch o.kind {
		case opLinRead:
			c.stats.LinReadsOK++
		case opBoundedRead:
			c.stats.BoundedForwarded++
		}
		c.tr.add(c.now, "read-ok c%d op%d %s %s=%q@%d at %s index=%d applied=%d", o.client, o.id, o.kind, o.key, o.value, o.ver, n.id, r.Index, n.applied)
	}
	w.ended(cl, o)
}

func (w *workload) resultDone(n *simNode, r repl.Result) {
	c := w.c
	o := w.byID[r.ID]
	if o == nil || !o.isWrite() || o.node != n.idx {
		c.fail("write-result", "%s returned a result for unknown proposal id %d", n.id, r.ID)
		return
	}
	if o.state != opPending || o.parked {
		c.tr.add(c.now, "late-result op%d %s idx=%d term=%d", o.id, r.Outcome, r.Index, r.Term)
		return
	}
	o.res = r
	c.tr.add(c.now, "result c%d op%d %s idx=%d term=%d dur=%+v at %s", o.client, o.id, r.Outcome, r.Index, r.Term, r.Durability, n.id)
	cl := w.clients[o.client]
	switch {
	case r.Outcome == repl.OutcomeOK && o.cmd != nil:
		// A command's answer needs its result: it waits until the entry
		// is applied here (internal/node's cmdWaits).
		o.parked = true
		w.parkedStep(cl, o)
		return
	case r.Outcome == repl.OutcomeOK:
		o.state, o.ret = opOK, c.histNow()
		c.stats.WritesOK++
		c.chk.acked(n, o)
	default:
		o.state = opOpen
		c.stats.WritesOpen++
		cl.hint = -1
	}
	w.ended(cl, o)
}
