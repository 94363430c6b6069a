package leaderless

import (
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/trireme-db/trireme/internal/leaderless/merkle"
	"github.com/trireme-db/trireme/internal/leaderless/ring"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Core is one node's leaderless protocol state machine: it coordinates the
// client requests it is given, serves its peers' requests, holds hints, and
// runs hinted handoff, read repair, anti-entropy and tombstone collection.
// It does no I/O and reads no clock: see DESIGN.md. Not safe for concurrent
// use; the runtime calls it from one goroutine.
type Core struct {
	cfg   Config
	ring  *ring.Ring
	store Store
	peers []string // every member but this one, sorted

	tick      int64
	lastHeard map[string]int64
	// floor is the highest counter this actor drew, for a dot or as the end
	// of a block of request ids; persisted as Ready.MintFloor.
	floor     uint64
	floorDirt bool
	// Request ids: reqTop (the actor's hash in the top 24 bits) | a counter
	// from the block reqNext..reqEnd reserved under the floor, so that no id
	// repeats across restarts (a stale ack must not answer a new request).
	reqTop  uint64
	reqNext uint64
	reqEnd  uint64
	// aeRound counts the anti-entropy replies built; it turns where the
	// next one starts (sharedItems).
	aeRound uint64

	// overlay holds the key states handed out in the current Ready: the
	// store shows them only after Advance.
	overlay map[string]overlayEntry

	hints    map[string]*hint // by hintKey(For, Key)
	handoffs map[uint64]handoff

	writes map[uint64]*writeOp // by ReqID
	reads  map[uint64]*readOp  // by ReqID
	// repairs maps a blocking read repair's ReqID to its read's ReqID.
	repairs map[uint64]uint64

	// trees holds, per peer, the Merkle tree of the keys both replicate.
	trees  map[string]*merkle.Tree
	aeNext int
	aeLast map[string]int // buckets found different in the last exchange, per peer

	// tombs: keys this node is the collector of (first home replica) whose
	// copy holds only tombstones, with the tick it was first seen so.
	tombs map[string]int64
	gcs   map[uint64]*gcOp
	// gcOK: tombstones every member confirmed once (the first round), with
	// the confirmed copy and the tick the last vote came in.
	gcOK map[string]gcConfirm

	rd    Ready
	stats Stats
	err   error // sticky: a store read failed
}

type overlayEntry struct {
	set     vclock.Set
	present bool
	idx     int // its KeyWrite in rd.Keys
}

type hint struct {
	Hint
	ver     uint64 // bumped on every change, so an ack for an older copy keeps it
	sending bool
}

type handoff struct {
	key      string // hintKey
	ver      uint64
	deadline int64
}

type writeOp struct {
	id       uint64 // the client's
	key      []byte
	w        int
	place    []ring.Placement
	minter   string
	minted   bool
	set      vclock.Set
	acked    map[string]bool
	deadline int64
}

type readOp struct {
	id       uint64
	key      []byte
	r        int
	repair   bool
	place    []ring.Placement
	answers  map[string]vclock.Set // by node
	found    bool
	replied  bool
	deadline int64

	// Blocking repair: the merge of the first R answers (what the reply
	// carries), the replicas it was sent to and not yet acked, the request
	// ids of the repairs (forgotten with the read), and the replicas that
	// merged it (repaired counts them).
	waiting  map[string]bool
	fixSet   vclock.Set
	fixFound bool
	fixN     int
	fixIDs   []uint64
	fixed    map[string]bool
	repaired int
}

type gcOp struct {
	key      string
	set      vclock.Set
	votes    map[string]bool
	final    bool // the second round: all yes drops the tombstone
	deadline int64
}

type gcConfirm struct {
	set vclock.Set
	at  int64
}

// Stats are the core's counters, for status and metrics.
type Stats struct {
	HintsStored       uint64 // copies taken as a stand-in
	HintsDelivered    uint64 // hints handed over and dropped
	HintsRefused      uint64 // copies refused for lack of room
	ReadRepairs       uint64 // repairs sent by read repair
	AEExchanges       uint64 // anti-entropy exchanges started
	AEBucketsCompared uint64
	AEBucketsDiffer   uint64 // buckets found different
	AERepairs         uint64 // keys this node changed from an exchange
	TombstonesGC      uint64 // tombstones this node collected
	Timeouts          uint64
}

// State is what the runtime restores at start.
type State struct {
	Hints     []Hint
	MintFloor uint64
}

// New returns a core over store, with the durable state st. The runtime
// then calls Restore for every stored key before the first Tick.
func New(cfg Config, store Store, st State) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	r, err := ring.New(cfg.Nodes, cfg.VNodes)
	if err != nil {
		return nil, fmt.Errorf("leaderless: %w", err)
	}
	c := &Core{
		cfg:       cfg,
		ring:      r,
		store:     store,
		lastHeard: map[string]int64{},
		floor:     st.MintFloor,
		overlay:   map[string]overlayEntry{},
		hints:     map[string]*hint{},
		handoffs:  map[uint64]handoff{},
		writes:    map[uint64]*writeOp{},
		reads:     map[uint64]*readOp{},
		repairs:   map[uint64]uint64{},
		trees:     map[string]*merkle.Tree{},
		aeLast:    map[string]int{},
		tombs:     map[string]int64{},
		gcs:       map[uint64]*gcOp{},
		gcOK:      map[string]gcConfirm{},
	}
	h := fnv.New32a()
	h.Write([]byte(cfg.Actor))
	c.reqTop = uint64(h.Sum32()&(1<<reqTopBits-1)) << (64 - reqTopBits)
	for _, n := range cfg.Nodes {
		if n == cfg.ID {
			continue
		}
		c.peers = append(c.peers, n)
		t, err := merkle.New(MerkleDepth)
		if err != nil {
			return nil, err
		}
		c.trees[n] = t
	}
	slices.Sort(c.peers)
	for _, h := range st.Hints {
		c.hints[hintKey(h.For, h.Key)] = &hint{Hint: h, ver: 1}
	}
	return c, nil
}

// Restore tells the core about one stored key (at start, before any Tick):
// it enters the anti-entropy trees and, if a tombstone, the collector's list.
func (c *Core) Restore(key []byte, s vclock.Set) {
	c.track(key, vclock.Set{}, false, s, true)
}

// Ring returns the ring the core places keys with.
func (c *Core) Ring() *ring.Ring { return c.ring }

// Stats returns the counters.
func (c *Core) Stats() Stats { return c.stats }

// HintsPending returns the number of hints held, per home replica.
func (c *Core) HintsPending() map[string]int {
	out := map[string]int{}
	for _, h := range c.hints {
		out[h.For]++
	}
	return out
}

// Up reports whether node is considered reachable: a message from it
// arrived within PeerDownTicks. A peer not heard from since this core
// started is down: right after a start the connections are still being
// dialed, and a request sent to a peer that cannot receive it would wait
// for its timeout instead of going to a stand-in or failing fast.
func (c *Core) Up(node string) bool {
	if node == c.cfg.ID {
		return true
	}
	t, ok := c.lastHeard[node]
	return ok && c.tick-t <= int64(c.cfg.PeerDownTicks)
}

// AEDiffering returns, per peer, the buckets found different in the last
// exchange with it (-1 if none yet).
func (c *Core) AEDiffering() map[string]int { return c.aeDiff() }

// Err returns the sticky store error, if any.
func (c *Core) Err() error { return c.err }

func hintKey(home string, key []byte) string {
	return home + "\x00" + string(key)
}

func (c *Core) isHome(node string, key []byte) bool {
	return slices.Contains(c.ring.Replicas(key, c.cfg.N), node)
}

// placement is where a request for key goes.
func (c *Core) placement(key []byte) []ring.Placement {
	if c.cfg.Sloppy {
		return c.ring.Sloppy(key, c.cfg.N, c.Up)
	}
	var out []ring.Placement
	for _, n := range c.ring.Replicas(key, c.cfg.N) {
		out = append(out, ring.Placement{Node: n, For: n})
	}
	return out
}

func (c *Core) send(to string, m Message) {
	m.From, m.To = c.cfg.ID, to
	c.rd.Messages = append(c.rd.Messages, Envelope{To: to, Msg: m})
}

// Request ids: the top reqTopBits bits are a hash of the actor (a wiped node
// is a new actor whose floor starts again at 0), the rest a counter drawn
// from blocks of reqBlock reserved by raising the persisted floor. A block
// is in the Ready that sends its first id, and the runtime persists the floor
// before it sends, so after a restart new ids come from above every id the
// previous incarnation sent. Dots draw from the same floor; the holes the
// blocks leave in a key's vector are harmless (dots of nothing).
const (
	reqTopBits = 24
	reqBlock   = 1024
	reqLowMask = 1<<(64-reqTopBits) - 1
)

func (c *Core) reqID() uint64 {
	for {
		if c.reqNext == 0 || c.reqNext > c.reqEnd {
			c.reqNext, c.reqEnd = c.floor+1, c.floor+reqBlock
			c.floor, c.floorDirt = c.reqEnd, true
		}
		id := c.reqTop | c.reqNext&reqLowMask
		c.reqNext++
		if id != 0 {
			return id
		}
	}
}

// get returns this node's copy of key (overlay first).
func (c *Core) get(key []byte) (vclock.Set, bool) {
	if o, ok := c.overlay[string(key)]; ok {
		return o.set, o.present
	}
	if c.err != nil {
		return vclock.Set{}, false
	}
	s, ok, err := c.store.Get(key)
	if err != nil {
		c.err = fmt.Errorf("leaderless: reading %q: %w", key, err)
		return vclock.Set{}, false
	}
	return s, ok
}

// put records key's new state (or its drop) for the Ready and the trees.
func (c *Core) put(key []byte, s vclock.Set, present bool) {
	old, had := c.get(key)
	kw := KeyWrite{Key: key, Set: s, Drop: !present}
	if o, ok := c.overlay[string(key)]; ok {
		// One write per key in a Ready: the runtime need not apply
		// them in order.
		c.rd.Keys[o.idx] = kw
		c.overlay[string(key)] = overlayEntry{set: s, present: present, idx: o.idx}
	} else {
		c.overlay[string(key)] = overlayEntry{set: s, present: present, idx: len(c.rd.Keys)}
		c.rd.Keys = append(c.rd.Keys, kw)
	}
	c.track(key, old, had, s, present)
}

// track updates the trees and the tombstone list for a change of key.
func (c *Core) track(key []byte, old vclock.Set, had bool, s vclock.Set, present bool) {
	homes := c.ring.Replicas(key, c.cfg.N)
	var ov, nv []byte
	if had {
		ov = vclock.AppendSet(nil, old)
	}
	if present {
		nv = vclock.AppendSet(nil, s)
	}
	for _, h := range homes {
		t := c.trees[h]
		if t == nil || !slices.Contains(homes, c.cfg.ID) {
			continue
		}
		if had {
			t.Remove(key, ov)
		}
		if present {
			t.Add(key, nv)
		}
	}
	if len(homes) > 0 && homes[0] == c.cfg.ID && present && tombstone(s) {
		if _, ok := c.tombs[string(key)]; !ok {
			c.tombs[string(key)] = c.tick
		}
	} else {
		delete(c.tombs, string(key))
		delete(c.gcOK, string(key))
	}
}

// tombstone reports whether s holds only deleted siblings.
func tombstone(s vclock.Set) bool {
	if len(s.Siblings) == 0 {
		return false
	}
	for _, x := range s.Siblings {
		if !x.Deleted {
			return false
		}
	}
	return true
}

// merge joins s into this node's copy of key, and reports whether it changed.
func (c *Core) merge(key []byte, s vclock.Set) bool {
	cur, had := c.get(key)
	next := vclock.Sync(cur, s)
	if had && next.Equal(cur) {
		return false
	}
	c.put(key, next, true)
	return true
}

// mergeHint joins s into the hint for (home, key). False: no room.
func (c *Core) mergeHint(home string, key []byte, s vclock.Set) bool {
	hk := hintKey(home, key)
	h := c.hints[hk]
	if h == nil {
		if len(c.hints) >= c.cfg.MaxHints {
			c.stats.HintsRefused++
			return false
		}
		h = &hint{Hint: Hint{For: home, Key: slices.Clone(key)}}
		c.hints[hk] = h
		c.stats.HintsStored++
	}
	next := vclock.Sync(h.Set, s)
	if h.ver > 0 && next.Equal(h.Set) {
		return true
	}
	h.Set = next
	h.ver++
	c.readyHint(h.Hint, false)
	return true
}

// readyHint records a hint's new state (or, done, its deletion) in the
// Ready, replacing what the Ready already says about the same hint: the
// runtime applies puts before deletes, so a hint deleted (handed over) and
// taken again in one Ready must not be listed as both.
func (c *Core) readyHint(h Hint, done bool) {
	same := func(x Hint) bool { return x.For == h.For && string(x.Key) == string(h.Key) }
	c.rd.Hints = slices.DeleteFunc(c.rd.Hints, same)
	c.rd.DoneHints = slices.DeleteFunc(c.rd.DoneHints, same)
	if done {
		c.rd.DoneHints = append(c.rd.DoneHints, Hint{For: h.For, Key: h.Key})
	} else {
		c.rd.Hints = append(c.rd.Hints, h)
	}
}

// hinted returns the merge of every hint this node holds for key (one per
// home replica at most).
func (c *Core) hinted(key []byte) (vclock.Set, bool) {
	var out vclock.Set
	found := false
	for _, home := range c.ring.Replicas(key, c.cfg.N) {
		if h := c.hints[hintKey(home, key)]; h != nil {
			out = vclock.Sync(out, h.Set)
			found = true
		}
	}
	return out, found
}

// mint versions a write at this node (a home replica of its key): it draws
// the next dot of this node's actor, above everything the node and the
// client have seen of it, and applies the write to the node's copy.
//
// A write without a context (a blind write: SET from a Redis client, a PUT
// with no X-Trireme-Context) supersedes what the minter holds, as if the
// client had read it there: successive blind writes overwrite one another
// instead of piling up as siblings. Siblings still arise from writes that
// carry contexts which did not see each other, and from copies minted at
// different home replicas while they were cut off from each other.
func (c *Core) mint(key []byte, ctx vclock.Vector, m Message) vclock.Set {
	cur, _ := c.get(key)
	if len(ctx) == 0 {
		ctx = cur.Context
	}
	n := max(cur.Context.Get(c.cfg.Actor), ctx.Get(c.cfg.Actor), c.floor) + 1
	c.floor, c.floorDirt = n, true
	sib := vclock.Sibling{Dot: vclock.Dot{Node: c.cfg.Actor, Counter: n}, Time: m.Time, Deleted: m.Delete}
	if !m.Delete {
		sib.Value = slices.Clone(m.Value)
	}
	next := vclock.Update(cur, ctx, sib)
	c.put(key, next, true)
	return next
}

// Ready returns what the runtime must do now.
func (c *Core) Ready() (Ready, error) {
	if c.err != nil {
		return Ready{}, c.err
	}
	if c.floorDirt {
		c.rd.MintFloor = c.floor
	}
	return c.rd, nil
}

// Advance tells the core the last Ready was carried out.
func (c *Core) Advance() {
	c.rd = Ready{}
	c.floorDirt = false
	clear(c.overlay)
}

// Tick advances the core's time by one tick.
func (c *Core) Tick() {
	c.tick++
	if c.tick%int64(c.cfg.HeartbeatTicks) == 0 {
		for _, p := range c.peers {
			c.send(p, Message{Type: MsgPing})
		}
	}
	c.expire()
	if c.tick%int64(c.cfg.HandoffTicks) == 0 {
		c.handOff()
	}
	if c.cfg.AETicks > 0 && c.tick%int64(c.cfg.AETicks) == 0 {
		c.startExchange()
	}
	if c.tick%int64(c.cfg.GCTicks) == 0 {
		c.collect()
	}
}

// expire ends the requests whose deadline passed, in request id order (the
// order they were made): results and repair messages must not follow map
// order, or the same inputs would give different Readys.
func (c *Core) expire() {
	for _, id := range expired(c.writes, func(op *writeOp) int64 { return op.deadline }, c.tick) {
		op := c.writes[id]
		c.stats.Timeouts++
		c.finishWrite(id, op, fmt.Errorf("%w: %d of %d replicas acknowledged, W=%d", ErrTimeout, len(op.acked), len(op.place), op.w))
	}
	for _, id := range expired(c.reads, func(op *readOp) int64 { return op.deadline }, c.tick) {
		op := c.reads[id]
		if !op.replied {
			c.stats.Timeouts++
			c.result(Result{ID: op.id, Replicas: len(op.answers), Repaired: op.repaired, Err: fmt.Errorf("%w: %d of %d replicas answered, R=%d", ErrTimeout, len(op.answers), len(op.place), op.r)})
			op.replied = true
		}
		c.endRead(id, op)
	}
	for _, id := range expired(c.handoffs, func(h handoff) int64 { return h.deadline }, c.tick) {
		if x := c.hints[c.handoffs[id].key]; x != nil {
			x.sending = false
		}
		delete(c.handoffs, id)
	}
	for _, id := range expired(c.gcs, func(g *gcOp) int64 { return g.deadline }, c.tick) {
		delete(c.gcs, id)
	}
}

// expired returns the ids in m whose deadline is at or before tick, sorted.
func expired[V any](m map[uint64]V, deadline func(V) int64, tick int64) []uint64 {
	var ids []uint64
	for id, v := range m {
		if tick >= deadline(v) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (c *Core) result(r Result) { c.rd.Results = append(c.rd.Results, r) }

func (c *Core) pending() int { return len(c.writes) + len(c.reads) }

// Propose coordinates a client write. Its Result comes in a later (or this)
// Ready, once W replicas hold it durably, or on an error.
func (c *Core) Propose(w Write) {
	if err := c.checkRequest(w.Key, w.W, "W"); err != nil {
		c.result(Result{ID: w.ID, Err: err})
		return
	}
	place := c.placement(w.Key)
	if len(place) < w.W {
		c.result(Result{ID: w.ID, Err: fmt.Errorf("%w: W=%d, but %d replicas of the key are reachable", ErrUnavailable, w.W, len(place))})
		return
	}
	minter := c.minter(place)
	if minter == "" {
		c.result(Result{ID: w.ID, Err: fmt.Errorf("%w: no home replica of the key is reachable to version the write", ErrUnavailable)})
		return
	}
	req := c.reqID()
	op := &writeOp{id: w.ID, key: slices.Clone(w.Key), w: w.W, place: place, minter: minter,
		acked: map[string]bool{}, deadline: c.tick + int64(c.cfg.RequestTicks)}
	c.writes[req] = op
	m := Message{Type: MsgMint, ReqID: req, Key: op.key, Context: w.Context, Value: w.Value, Delete: w.Delete, Time: w.Time}
	if minter == c.cfg.ID {
		c.minted(req, op, c.cfg.ID, c.mint(op.key, w.Context, m))
		return
	}
	c.send(minter, m)
}

// minter picks the home replica that versions a write: this node if it is
// one, else the first home replica placed as itself that is up (under a
// strict quorum the placements include replicas that are down).
func (c *Core) minter(place []ring.Placement) string {
	minter := ""
	for _, p := range place {
		switch {
		case p.Node != p.For || !c.Up(p.Node):
		case p.Node == c.cfg.ID:
			return p.Node
		case minter == "":
			minter = p.Node
		}
	}
	return minter
}

func (c *Core) checkRequest(key []byte, q int, what string) error {
	switch {
	case c.err != nil:
		return c.err
	case len(key) == 0 || len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes (1..%d)", ErrInvalid, len(key), MaxKeyLen)
	case q < 1 || q > c.cfg.N:
		return fmt.Errorf("%w: %s=%d, must be between 1 and the replication factor %d", ErrInvalid, what, q, c.cfg.N)
	case c.pending() >= c.cfg.MaxPending:
		return fmt.Errorf("%w: %d", ErrOverloaded, c.pending())
	}
	return nil
}

// minted continues a write once its minter holds it: the state goes to the
// other placements.
func (c *Core) minted(req uint64, op *writeOp, minter string, s vclock.Set) {
	op.minted, op.set = true, s
	op.acked[minter] = true
	for _, p := range op.place {
		if p.Node == minter {
			continue
		}
		m := Message{Type: MsgStore, ReqID: req, Key: op.key, Set: s}
		if p.For != p.Node {
			m.HintFor = p.For
		}
		if p.Node == c.cfg.ID {
			if c.storeLocal(m) == RefuseNone {
				op.acked[c.cfg.ID] = true
			}
			continue
		}
		c.send(p.Node, m)
	}
	c.checkWrite(req, op)
}

func (c *Core) checkWrite(req uint64, op *writeOp) {
	if len(op.acked) >= op.w {
		c.finishWrite(req, op, nil)
	}
}

func (c *Core) finishWrite(req uint64, op *writeOp, err error) {
	c.result(Result{ID: op.id, Set: op.set, Found: op.minted, Replicas: len(op.acked), Err: err})
	delete(c.writes, req)
}

// storeLocal applies a MsgStore at this node and returns its refusal code.
func (c *Core) storeLocal(m Message) uint8 {
	if c.err != nil {
		return RefuseStopped
	}
	if m.HintFor == "" {
		if !c.isHome(c.cfg.ID, m.Key) {
			return RefuseNotHome
		}
		c.merge(m.Key, m.Set)
		return RefuseNone
	}
	if m.HintFor == c.cfg.ID || !c.isHome(m.HintFor, m.Key) {
		return RefuseNotHome
	}
	if !c.mergeHint(m.HintFor, m.Key, m.Set) {
		return RefuseHintsFull
	}
	return RefuseNone
}

// ProposeRead coordinates a client read: it asks every placement of the key
// and replies once R answered, with their merge.
func (c *Core) ProposeRead(r Read) {
	if err := c.checkRequest(r.Key, r.R, "R"); err != nil {
		c.result(Result{ID: r.ID, Err: err})
		return
	}
	place := c.placement(r.Key)
	if len(place) < r.R {
		c.result(Result{ID: r.ID, Err: fmt.Errorf("%w: R=%d, but %d replicas of the key are reachable", ErrUnavailable, r.R, len(place))})
		return
	}
	req := c.reqID()
	op := &readOp{id: r.ID, key: slices.Clone(r.Key), r: r.R, repair: r.Repair, place: place,
		answers: map[string]vclock.Set{}, deadline: c.tick + int64(c.cfg.RequestTicks)}
	c.reads[req] = op
	for _, p := range place {
		if p.Node == c.cfg.ID {
			s, ok := c.localCopy(r.Key, p.For)
			c.answer(req, op, c.cfg.ID, s, ok)
			continue
		}
		c.send(p.Node, Message{Type: MsgRead, ReqID: req, Key: op.key})
	}
}

// localCopy is what this node answers for key: its own copy if it is a
// home replica, else its hints for the key.
func (c *Core) localCopy(key []byte, _ string) (vclock.Set, bool) {
	if c.isHome(c.cfg.ID, key) {
		return c.get(key)
	}
	return c.hinted(key)
}

func (c *Core) answer(req uint64, op *readOp, from string, s vclock.Set, found bool) {
	if _, dup := op.answers[from]; dup {
		return
	}
	op.answers[from] = s
	op.found = op.found || found
	if op.repair && op.waiting == nil && len(op.answers) >= op.r {
		// Blocking repair: the reply waits until every stale replica among
		// the first R answers merged their merge. Every repair is marked
		// waiting before any is sent: a repair of this node is acked at
		// once, and must not find the list empty and reply early.
		op.fixSet, op.fixFound, op.fixN = c.mergeAnswers(op), op.found, len(op.answers)
		op.waiting, op.fixed = map[string]bool{}, map[string]bool{}
		stale := c.stale(op, op.fixSet)
		for _, n := range stale {
			op.waiting[n] = true
		}
		for _, n := range stale {
			rid := c.reqID()
			c.repairs[rid] = req
			op.fixIDs = append(op.fixIDs, rid)
			c.sendRepair(n, rid, op.key, op.fixSet)
		}
	}
	c.progressRead(req, op)
}

// progressRead replies to a read once it can (R answers, and with a blocking
// repair every repair acked), and ends it once every placement answered.
// Safe to call more than once.
func (c *Core) progressRead(req uint64, op *readOp) {
	if c.reads[req] != op {
		return
	}
	if !op.replied && len(op.answers) >= op.r {
		switch {
		case !op.repair:
			c.result(Result{ID: op.id, Set: c.mergeAnswers(op), Found: op.found, Replicas: len(op.answers)})
			op.replied = true
		case op.waiting != nil && len(op.waiting) == 0:
			// What was repaired, not the later answers: they are not on
			// the replicas the reply promises hold it.
			c.result(Result{ID: op.id, Set: op.fixSet, Found: op.fixFound, Replicas: op.fixN, Repaired: op.repaired})
			op.replied = true
		}
	}
	if op.replied && len(op.answers) == len(op.place) {
		c.endRead(req, op)
	}
}

func (c *Core) mergeAnswers(op *readOp) vclock.Set {
	var out vclock.Set
	for _, s := range op.answers {
		out = vclock.Sync(out, s)
	}
	return out
}

// stale lists the home replicas among the answers whose copy differs from
// merged, in node order.
func (c *Core) stale(op *readOp, merged vclock.Set) []string {
	var out []string
	for _, p := range op.place {
		s, ok := op.answers[p.Node]
		if ok && p.Node == p.For && !s.Equal(merged) {
			out = append(out, p.Node)
		}
	}
	return out
}

func (c *Core) sendRepair(node string, rid uint64, key []byte, s vclock.Set) {
	c.stats.ReadRepairs++
	m := Message{Type: MsgStore, ReqID: rid, Key: key, Set: s}
	if node == c.cfg.ID {
		code := c.storeLocal(m)
		if rid != 0 {
			c.repairAcked(rid, node, code)
		}
		return
	}
	c.send(node, m)
}

// endRead forgets a read and its blocking repairs, and repairs in the
// background the stale replicas that answered (but not those a blocking
// repair already gave the same merge).
func (c *Core) endRead(req uint64, op *readOp) {
	if c.reads[req] != op {
		return
	}
	delete(c.reads, req)
	for _, rid := range op.fixIDs {
		delete(c.repairs, rid)
	}
	if len(op.answers) == 0 {
		return
	}
	merged := c.mergeAnswers(op)
	same := op.fixed != nil && merged.Equal(op.fixSet)
	for _, n := range c.stale(op, merged) {
		if !same || !op.fixed[n] {
			c.sendRepair(n, 0, op.key, merged)
		}
	}
}

// repairAcked counts a blocking repair's answer: a refusal ends the wait for
// that replica without counting it as repaired.
func (c *Core) repairAcked(rid uint64, from string, code uint8) {
	req, ok := c.repairs[rid]
	if !ok {
		return
	}
	op := c.reads[req]
	if op == nil || !op.waiting[from] {
		return
	}
	delete(c.repairs, rid)
	delete(op.waiting, from)
	if code == RefuseNone {
		op.fixed[from] = true
		op.repaired++
	}
	c.progressRead(req, op)
}

// Step handles one message from a peer. An error means the message was
// refused and changed nothing.
func (c *Core) Step(m Message) error {
	if m.From == c.cfg.ID || !slices.Contains(c.peers, m.From) {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, m.From)
	}
	if m.Type < MsgMint || m.Type > MsgGCDrop {
		return fmt.Errorf("%w: type %v", ErrMalformed, m.Type)
	}
	if m.To != c.cfg.ID {
		return fmt.Errorf("%w: addressed to %q", ErrMalformed, m.To)
	}
	if err := validate(&m); err != nil {
		return err
	}
	c.lastHeard[m.From] = c.tick
	switch m.Type {
	case MsgPing:
	case MsgMint:
		ack := Message{Type: MsgMintAck, ReqID: m.ReqID, Key: m.Key}
		if c.err != nil {
			ack.Err = RefuseStopped
		} else if !c.isHome(c.cfg.ID, m.Key) {
			ack.Err = RefuseNotHome
		} else {
			ack.Set = c.mint(m.Key, m.Context, m)
		}
		c.send(m.From, ack)
	case MsgMintAck:
		op := c.writes[m.ReqID]
		if op == nil || op.minted || op.minter != m.From || string(op.key) != string(m.Key) {
			return nil
		}
		if m.Err != RefuseNone {
			c.finishWrite(m.ReqID, op, fmt.Errorf("%w: the home replica %s refused to version the write (code %d)", ErrUnavailable, m.From, m.Err))
			return nil
		}
		c.minted(m.ReqID, op, m.From, m.Set)
	case MsgStore:
		code := c.storeLocal(m)
		if m.ReqID != 0 {
			c.send(m.From, Message{Type: MsgStoreAck, ReqID: m.ReqID, Err: code})
		}
	case MsgStoreAck:
		c.storeAcked(m)
	case MsgRead:
		s, ok := c.localCopy(m.Key, "")
		c.send(m.From, Message{Type: MsgReadAck, ReqID: m.ReqID, Key: m.Key, Set: s, Found: ok})
	case MsgReadAck:
		op := c.reads[m.ReqID]
		if op == nil || string(op.key) != string(m.Key) || !placed(op.place, m.From) {
			return nil
		}
		c.answer(m.ReqID, op, m.From, m.Set, m.Found)
	case MsgTree:
		c.onTree(m)
	case MsgBuckets:
		c.onBuckets(m)
	case MsgGCProbe:
		c.onGCProbe(m)
	case MsgGCVote:
		c.onGCVote(m)
	case MsgGCDrop:
		if cur, ok := c.get(m.Key); ok && c.isHome(c.cfg.ID, m.Key) && cur.Equal(m.Set) && tombstone(cur) {
			c.put(m.Key, vclock.Set{}, false)
			c.stats.TombstonesGC++
		}
	default:
		return fmt.Errorf("%w: type %v", ErrMalformed, m.Type)
	}
	return nil
}

func placed(place []ring.Placement, node string) bool {
	for _, p := range place {
		if p.Node == node {
			return true
		}
	}
	return false
}

func (c *Core) storeAcked(m Message) {
	if op := c.writes[m.ReqID]; op != nil {
		if m.Err == RefuseNone && placed(op.place, m.From) {
			op.acked[m.From] = true
			c.checkWrite(m.ReqID, op)
		}
		return
	}
	if _, ok := c.repairs[m.ReqID]; ok {
		c.repairAcked(m.ReqID, m.From, m.Err)
		return
	}
	if h, ok := c.handoffs[m.ReqID]; ok {
		delete(c.handoffs, m.ReqID)
		x := c.hints[h.key]
		if x == nil {
			return
		}
		x.sending = false
		if m.Err == RefuseNone && x.ver == h.ver && x.For == m.From {
			delete(c.hints, h.key)
			c.readyHint(x.Hint, true)
			c.stats.HintsDelivered++
		}
	}
}

// validate checks what the codec cannot: the fields a message type needs.
func validate(m *Message) error {
	switch m.Type {
	case MsgMint, MsgMintAck, MsgStore, MsgRead, MsgReadAck, MsgGCProbe, MsgGCVote, MsgGCDrop:
		if len(m.Key) == 0 || len(m.Key) > MaxKeyLen {
			return fmt.Errorf("%w: %v with a key of %d bytes", ErrMalformed, m.Type, len(m.Key))
		}
	}
	if err := m.Set.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := m.Context.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for _, it := range m.Items {
		if len(it.Key) == 0 || len(it.Key) > MaxKeyLen {
			return fmt.Errorf("%w: item with a key of %d bytes", ErrMalformed, len(it.Key))
		}
		if err := it.Set.Validate(); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	return nil
}

// handOff sends each hint whose home replica is up to it, a bounded number
// at a time.
func (c *Core) handOff() {
	const perRound = 256
	sent := 0
	keys := make([]string, 0, len(c.hints))
	for k := range c.hints {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic under the simulator
	for _, k := range keys {
		h := c.hints[k]
		if h.sending || !c.Up(h.For) || h.For == c.cfg.ID {
			continue
		}
		if sent == perRound {
			return
		}
		sent++
		if c.bugs().dropHint() {
			delete(c.hints, k)
			c.readyHint(h.Hint, true)
			continue
		}
		rid := c.reqID()
		h.sending = true
		c.handoffs[rid] = handoff{key: k, ver: h.ver, deadline: c.tick + int64(c.cfg.RequestTicks)}
		c.send(h.For, Message{Type: MsgStore, ReqID: rid, Key: h.Key, Set: h.Set})
	}
}
