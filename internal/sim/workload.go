package sim

import (
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opLinRead
	opStaleRead
)

func (k opKind) String() string {
	return [...]string{"put", "delete", "lin-read", "stale-read"}[k]
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
	// writes: the fewest and the most voters in the accepting leader's
	// configurations while the write was pending (sampled every tick: a
	// configuration change takes effect when appended, and sync means every
	// voting follower of the configuration the core saw when it acked).
	voters, mostVoters int
}

func (o *op) isWrite() bool { return o.kind == opPut || o.kind == opDelete }

type simClient struct {
	id   int
	cur  *op
	hint int // node believed to lead, -1 if unknown
}

// workload drives the clients and records the history.
type workload struct {
	c       *cluster
	clients []*simClient
	ops     []*op // every op that reached a node, in call order
	byID    map[uint64]*op
	nextID  uint64
	written map[string]bool // every value ever proposed, per key+value
}

func newWorkload(c *cluster) *workload {
	w := &workload{c: c, byID: map[uint64]*op{}, written: map[string]bool{}}
	for i := 0; i < c.cfg.Workload.Clients; i++ {
		w.clients = append(w.clients, &simClient{id: i, hint: -1})
	}
	return w
}

// idle reports whether no client has an operation in flight.
func (w *workload) idle() bool {
	for _, cl := range w.clients {
		if cl.cur != nil && cl.cur.state == opPending {
			return false
		}
	}
	return true
}

func (w *workload) step(newOps bool) {
	c := w.c
	wl := c.cfg.Workload
	for _, cl := range w.clients {
		if o := cl.cur; o != nil && o.state == opPending {
			if n := c.nodes[o.node]; o.isWrite() && n.core != nil && n.up {
				v := c.chk.voters(n)
				o.voters, o.mostVoters = min(o.voters, v), max(o.mostVoters, v)
			}
			if c.now-o.callTick > int64(wl.ClientTimeoutTicks) {
				w.abandon(o, "client-timeout")
				cl.cur = nil
			}
			continue
		}
		if cl.cur == nil {
			if !newOps || !c.chance(wl.OpRate) {
				continue
			}
			cl.cur = w.newOp(cl)
			if c.chance(wl.RandomStart) {
				cl.hint = -1
			}
		}
		w.try(cl)
	}
}

func (w *workload) newOp(cl *simClient) *op {
	c := w.c
	wl := c.cfg.Workload
	w.nextID++
	o := &op{id: w.nextID, client: cl.id, key: fmt.Sprintf("k%d", c.rng.Intn(wl.Keys)), node: -1}
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
		modes := []repl.Ack{{Mode: repl.AckAsync}, {Mode: repl.AckSemiSync, Replicas: 1}, {Mode: repl.AckSync}, {Mode: repl.AckMajority}, {Mode: repl.AckMajority}}
		if c.cfg.Nodes == 5 {
			modes = append(modes, repl.Ack{Mode: repl.AckSemiSync, Replicas: 2})
		}
		o.ack = modes[c.rng.Intn(len(modes))]
	}
	return o
}

// try sends cl's unsent operation to the node it believes leads (any node
// for stale reads); on a redirect it retries next tick.
func (w *workload) try(cl *simClient) {
	c := w.c
	o := cl.cur
	o.tries++
	if o.tries > 20 {
		c.tr.add(c.now, "give-up c%d op%d %s", cl.id, o.id, o.kind)
		cl.cur = nil
		return
	}
	var target int
	if o.kind != opStaleRead && cl.hint >= 0 && c.nodes[cl.hint].up && !c.nodes[cl.hint].paused {
		target = cl.hint
	} else {
		var cand []int
		for i, n := range c.nodes {
			if n.up && !n.paused {
				cand = append(cand, i)
			}
		}
		if len(cand) == 0 {
			return
		}
		target = cand[c.rng.Intn(len(cand))]
	}
	n := c.nodes[target]
	var err error
	switch o.kind {
	case opStaleRead:
		v := n.kv[o.key]
		o.node, o.value = target, v
		o.call = c.histNow()
		o.ret = c.histNow()
		o.state = opOK
		c.stats.StaleReads++
		c.tr.add(c.now, "stale-read c%d op%d %s %s=%q applied=%d", cl.id, o.id, n.id, o.key, v, n.applied)
		if v != "" && !w.written[o.key+"\x00"+v] {
			c.fail("stale-read", "op%d read %s=%q from %s, a value never written", o.id, o.key, v, n.id)
		}
		cl.cur = nil
		return
	case opLinRead:
		err = n.core.Read(repl.ReadRequest{ID: o.id, Level: o.level})
	default:
		p := repl.Proposal{ID: o.id, Kind: entry.KindPut, Key: []byte(o.key), Value: []byte(o.value), RequestID: o.id, Ack: o.ack}
		if o.kind == opDelete {
			p.Kind, p.Value = entry.KindDelete, nil
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
		cl.cur = nil
		return
	}
	cl.hint = target
	o.node, o.state, o.call, o.callTick = target, opPending, c.histNow(), c.now
	o.voters = c.chk.voters(n)
	o.mostVoters = o.voters
	w.ops = append(w.ops, o)
	w.byID[o.id] = o
	switch o.kind {
	case opLinRead:
		c.stats.LinReads++
		c.tr.add(c.now, "read c%d op%d %s at %s level=%d", cl.id, o.id, o.key, n.id, o.level)
	case opPut, opDelete:
		w.written[o.key+"\x00"+o.value] = true
		w.countWrite(o)
		c.tr.add(c.now, "propose c%d op%d %s %s=%q ack=%s/%d at %s", cl.id, o.id, o.kind, o.key, o.value, o.ack.Mode, o.ack.Replicas, n.id)
	}
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

func (w *workload) nodeCrashed(n *simNode) {
	for _, cl := range w.clients {
		if o := cl.cur; o != nil && o.state == opPending && o.node == n.idx {
			w.abandon(o, "node crashed")
			cl.cur = nil
		}
	}
}

func (w *workload) readDone(n *simNode, r repl.ReadResult) {
	c := w.c
	o := w.byID[r.ID]
	if o == nil || o.kind != opLinRead || o.node != n.idx {
		c.fail("read-result", "%s returned a read result for unknown read id %d", n.id, r.ID)
		return
	}
	if o.state != opPending {
		c.tr.add(c.now, "late-read op%d err=%v", o.id, r.Err)
		return
	}
	if r.Err != nil {
		o.state = opFailed
		c.stats.LinReadsFailed++
		c.tr.add(c.now, "read-failed c%d op%d at %s: %v", o.client, o.id, n.id, r.Err)
		w.clients[o.client].hint = -1
	} else {
		if r.Index > n.applied {
			c.fail("read-unapplied", "%s: read op%d at index %d but applied only %d", n.id, o.id, r.Index, n.applied)
			return
		}
		o.value = n.kv[o.key]
		o.state, o.ret = opOK, c.histNow()
		c.stats.LinReadsOK++
		c.tr.add(c.now, "read-ok c%d op%d %s=%q at %s index=%d applied=%d", o.client, o.id, o.key, o.value, n.id, r.Index, n.applied)
	}
	w.clients[o.client].cur = nil
}

func (w *workload) resultDone(n *simNode, r repl.Result) {
	c := w.c
	o := w.byID[r.ID]
	if o == nil || !o.isWrite() || o.node != n.idx {
		c.fail("write-result", "%s returned a result for unknown proposal id %d", n.id, r.ID)
		return
	}
	if o.state != opPending {
		c.tr.add(c.now, "late-result op%d %s idx=%d term=%d", o.id, r.Outcome, r.Index, r.Term)
		return
	}
	o.res = r
	c.tr.add(c.now, "result c%d op%d %s idx=%d term=%d dur=%+v at %s", o.client, o.id, r.Outcome, r.Index, r.Term, r.Durability, n.id)
	if r.Outcome == repl.OutcomeOK {
		o.state, o.ret = opOK, c.histNow()
		c.stats.WritesOK++
		c.chk.acked(n, o)
	} else {
		o.state = opOpen
		c.stats.WritesOpen++
		w.clients[o.client].hint = -1
	}
	w.clients[o.client].cur = nil
}
