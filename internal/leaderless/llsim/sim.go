// Package llsim is a deterministic simulator of leaderless clusters: 3..5
// real leaderless cores in one goroutine, on a virtual clock, with a seeded
// network (delay, reordering, loss, duplication, partitions), crashes that
// lose what was not persisted, wiped data directories (the node comes back
// as a new actor with nothing), and clients issuing writes, deletes and
// reads with random W, R, contexts and read repair modes. After the faults
// it heals everything, waits for quiescence (anti-entropy, handoff and
// tombstone collection done) and checks the run (check.go). See DESIGN.md.
package llsim

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand"
	"slices"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/merkle"
	"github.com/trireme-db/trireme/internal/leaderless/ring"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Config is one simulated run.
type Config struct {
	Seed       int64
	Nodes      int  // 3..5
	N          int  // replicas per key, 2..3
	Sloppy     bool // sloppy quorums with hinted handoff
	Steps      int  // ticks of the faulty phase
	QuietTicks int  // ticks allowed to converge after healing

	OpRate     float64 // probability of a burst of client operations per tick
	Keys       int
	ReadFrac   float64 // of operations
	DeleteFrac float64 // of writes
	Drop, Dup  float64 // per message (a mint is never duplicated: see DESIGN.md)
	DelayMax   int     // ticks
	SlowLink   float64 // probability of up to 4*DelayMax extra delay (reorders)
	Partition  float64 // per tick: start a partition
	Crash      float64 // per tick: crash a node
	Wipe       float64 // per crash: the node's data directory is lost
	WipeAtHeal bool    // a node loses its data directory as the faults end
	DiskDelay  int     // ticks a Ready's durable writes take

	// The cores' settings.
	RequestTicks int
	GCGraceTicks int
	AETicks      int
	AEKeys       int
	GCTicks      int
	MaxHints     int

	Bugs leaderless.Bugs

	KeepTrace bool // keep the text trace in Result.Trace
	// TraceAll also puts every delivered message and every persisted
	// change in the trace (debugging; slow).
	TraceAll bool
}

// MaxDelay is the longest a message can take: DelayMax plus a slow link.
func (c Config) MaxDelay() int { return 5 * c.DelayMax }

// TickNanos is the virtual time of one tick; Epoch is virtual time 0 (Unix ns).
const (
	TickNanos = 10_000_000
	Epoch     = 1_700_000_000 * 1_000_000_000
)

// ConfigForSeed draws a configuration from the seed.
func ConfigForSeed(seed int64) Config {
	r := rand.New(rand.NewSource(seed ^ 0x6c6c73696d))
	c := Config{
		Seed: seed, Nodes: 3 + r.Intn(3), Steps: 300, QuietTicks: 1500,
		OpRate: 0.2 + r.Float64()*0.6, Keys: 2 + r.Intn(7), ReadFrac: 0.3 + r.Float64()*0.3, DeleteFrac: 0.2 + r.Float64()*0.3,
		Drop: r.Float64() * 0.2, Dup: r.Float64() * 0.05, DelayMax: 1 + r.Intn(6), SlowLink: r.Float64() * 0.1,
		Partition: 0.02, Crash: r.Float64() * 0.02, DiskDelay: r.Intn(3),
		RequestTicks: 30 + r.Intn(30), AETicks: 5 + r.Intn(15), AEKeys: 1 + r.Intn(10), GCTicks: 2 + r.Intn(9),
	}
	c.N = 2 + r.Intn(2)
	c.Sloppy = r.Intn(2) == 0
	if r.Intn(2) == 0 {
		c.Wipe = 0.3
	}
	c.WipeAtHeal = r.Intn(2) == 0
	if r.Intn(5) == 0 {
		c.MaxHints = 1 + r.Intn(3)
	}
	// The grace must outlast a request plus the longest a copy can travel
	// (DESIGN.md of the core): a message delay, and a disk write at each end.
	c.GCGraceTicks = c.RequestTicks + c.MaxDelay() + 2*c.DiskDelay + 10
	return c
}

// Result is the outcome of a run.
type Result struct {
	Violations []string
	TraceHash  string
	Trace      string // with Config.KeepTrace
	Ticks      int64  // ticks simulated

	Writes, Deletes, Reads int // operations proposed
	Acked, ReadsOK         int // successful writes and deletes, reads
	Errors                 int // results with an error
	Lost                   int // no result (the coordinator crashed)
	Crashes, Wipes         int
	Repaired               int // Result.Repaired summed
	Stats                  leaderless.Stats
}

// Failed reports whether a check failed.
func (r *Result) Failed() bool { return len(r.Violations) > 0 }

type message struct {
	seq uint64
	m   leaderless.Message
}

// event is one thing a node's loop handles: a message or a client request.
type event struct {
	msg *leaderless.Message
	op  *op
}

type pendingDisk struct {
	rd   leaderless.Ready
	done int64
}

// node is one simulated process: its durable state (keys, hints, mint
// floor) and, while up, its core, inbox and the Ready being written.
type node struct {
	id       string
	inc      int // incarnation: bumped by a wipe
	actor    string
	core     *leaderless.Core
	keys     map[string]vclock.Set
	hints    map[[2]string]hintRec // (for, key)
	floor    uint64
	disk     *pendingDisk
	owed     int // ticks missed while the disk was busy
	inbox    []event
	downTill int64
	wipeNext bool
	lastWipe int64 // tick of the last wipe, -1 if none
	pending  map[uint64]*op
	// superseded: per key, the value dots this node's copy covered
	// without holding them: they must never come back (check.go).
	superseded map[string]map[vclock.Dot]bool
}

type hintRec struct {
	h  leaderless.Hint
	at int64 // tick of the last change
}

type memStore struct{ n *node }

func (s memStore) Get(key []byte) (vclock.Set, bool, error) {
	v, ok := s.n.keys[string(key)]
	return v, ok, nil
}

func (s memStore) Bucket(b int) ([]leaderless.Item, error) {
	var out []leaderless.Item
	for k, v := range s.n.keys {
		if leaf([]byte(k)) == b {
			out = append(out, leaderless.Item{Key: []byte(k), Set: v})
		}
	}
	slices.SortFunc(out, func(a, b leaderless.Item) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

func leaf(key []byte) int { return int(merkle.BucketHash(key) >> (64 - leaderless.MerkleDepth)) }

// op is one client operation: a write, a delete or a read.
type op struct {
	id    uint64
	node  int
	key   string
	read  bool
	del   bool
	value string
	ctx   vclock.Vector
	time  hlc.Timestamp
	q     int // W or R
	fix   bool

	start     uint64 // event sequence when the core got it
	done      bool
	doneAt    uint64 // event sequence of the result
	doneTick  int64
	ok        bool
	res       leaderless.Result
	dot       vclock.Dot // a write's, once seen
	hasDot    bool
	wipesBase int // wipes before it was proposed
}

type sim struct {
	cfg    Config
	r      *rand.Rand
	ring   *ring.Ring
	tick   int64
	seq    uint64 // event sequence, orders acks before reads
	nodes  []*node
	ids    []string
	net    map[int64][]message
	msgSeq uint64

	blocked map[[2]int]bool
	healAt  int64
	faults  bool

	opSeq  uint64
	ops    []*op
	byTime map[hlc.Timestamp]*op
	// valueDots: per key, the dots of value writes seen so far.
	valueDots map[string][]vclock.Dot
	// collected: per key, the contexts of tombstones some node dropped.
	collectedCtx map[string][]vclock.Vector
	// reads: per key, contexts returned by reads (for later writes).
	tokens map[string][]vclock.Vector
	wipes  []int64 // ticks of the wipes

	res   *Result
	trace []byte
	hash  uint64 // FNV-1a over the trace and every delivered message
}

func (s *sim) logf(format string, args ...any) {
	s.trace = fmt.Appendf(s.trace, "%d ", s.tick)
	s.trace = fmt.Appendf(s.trace, format, args...)
	s.trace = append(s.trace, '\n')
}

func (s *sim) violation(format string, args ...any) {
	if len(s.res.Violations) < 20 {
		s.res.Violations = append(s.res.Violations, fmt.Sprintf("tick %d: ", s.tick)+fmt.Sprintf(format, args...))
	}
}

const fnvPrime = 1099511628211

func (s *sim) mix(parts ...uint64) {
	for _, p := range parts {
		s.hash ^= p
		s.hash *= fnvPrime
	}
}

// Run simulates cfg and checks it.
func Run(cfg Config) *Result {
	s := &sim{cfg: cfg, r: rand.New(rand.NewSource(cfg.Seed)), blocked: map[[2]int]bool{}, net: map[int64][]message{},
		byTime: map[hlc.Timestamp]*op{}, valueDots: map[string][]vclock.Dot{},
		collectedCtx: map[string][]vclock.Vector{}, tokens: map[string][]vclock.Vector{}, res: &Result{}, hash: 14695981039346656037}
	for i := range cfg.Nodes {
		s.ids = append(s.ids, fmt.Sprintf("n%d", i+1))
	}
	rg, err := ring.New(s.ids, vnodes)
	if err != nil {
		s.violation("ring: %v", err)
		return s.res
	}
	s.ring = rg
	for i, id := range s.ids {
		n := &node{id: id, keys: map[string]vclock.Set{}, hints: map[[2]string]hintRec{}, lastWipe: -1,
			superseded: map[string]map[vclock.Dot]bool{}}
		s.nodes = append(s.nodes, n)
		if err := s.start(i); err != nil {
			s.violation("start %s: %v", id, err)
			return s.res
		}
	}
	s.faults = true
	for ; s.tick < int64(cfg.Steps); s.tick++ {
		s.step()
	}
	s.heal()
	quiet, why := 0, ""
	for end := s.tick + int64(cfg.QuietTicks); s.tick < end && quiet < quietNeeded; s.tick++ {
		s.step()
		if why = s.quiescent(); why == "" {
			quiet++
		} else {
			quiet = 0
		}
	}
	s.check(quiet >= quietNeeded, why)
	if !s.res.Failed() {
		s.probeReads()
	}
	s.res.Ticks = s.tick
	for _, n := range s.nodes {
		if n.core != nil {
			st := n.core.Stats()
			s.res.Stats.HintsStored += st.HintsStored
			s.res.Stats.HintsDelivered += st.HintsDelivered
			s.res.Stats.HintsRefused += st.HintsRefused
			s.res.Stats.ReadRepairs += st.ReadRepairs
			s.res.Stats.AEExchanges += st.AEExchanges
			s.res.Stats.AERepairs += st.AERepairs
			s.res.Stats.TombstonesGC += st.TombstonesGC
			s.res.Stats.Timeouts += st.Timeouts
		}
	}
	h := fnv.New64a()
	h.Write(s.trace)
	s.res.TraceHash = fmt.Sprintf("%016x", h.Sum64()^s.hash)
	if cfg.KeepTrace {
		s.res.Trace = string(s.trace)
	}
	return s.res
}

const (
	vnodes      = 8
	quietNeeded = 20
)

func (s *sim) coreConfig(n *node) leaderless.Config {
	return leaderless.Config{
		ID: n.id, Actor: n.actor, Nodes: s.ids, N: s.cfg.N, VNodes: vnodes, Sloppy: s.cfg.Sloppy,
		RequestTicks: s.cfg.RequestTicks, PeerDownTicks: 15, HeartbeatTicks: 4, HandoffTicks: 10,
		MaxHints: s.cfg.MaxHints, MaxPending: 1000, AETicks: s.cfg.AETicks, AEKeys: s.cfg.AEKeys,
		GCTicks: s.cfg.GCTicks, GCGraceTicks: s.cfg.GCGraceTicks, Bugs: s.cfg.Bugs,
	}
}

// start builds node i's core from its durable state (at boot, or a restart
// after a crash; after a wipe the state is empty and the actor new).
func (s *sim) start(i int) error {
	n := s.nodes[i]
	if n.wipeNext {
		n.wipeNext = false
		n.keys, n.hints, n.floor = map[string]vclock.Set{}, map[[2]string]hintRec{}, 0
		n.superseded = map[string]map[vclock.Dot]bool{}
		n.inc++
	}
	n.actor = n.id
	if n.inc > 0 {
		n.actor = fmt.Sprintf("%s.%d", n.id, n.inc)
	}
	st := leaderless.State{MintFloor: n.floor}
	hk := make([][2]string, 0, len(n.hints))
	for k := range n.hints {
		hk = append(hk, k)
	}
	slices.SortFunc(hk, cmpPair)
	for _, k := range hk {
		st.Hints = append(st.Hints, n.hints[k].h)
	}
	c, err := leaderless.New(s.coreConfig(n), memStore{n}, st)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(n.keys) {
		c.Restore([]byte(k), n.keys[k])
	}
	n.core, n.disk, n.owed, n.inbox, n.pending = c, nil, 0, nil, map[uint64]*op{}
	return nil
}

func cmpPair(a, b [2]string) int {
	if c := cmpStr(a[0], b[0]); c != 0 {
		return c
	}
	return cmpStr(a[1], b[1])
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// step runs one tick: faults, workload, deliveries, then each node's loop.
func (s *sim) step() {
	if s.faults {
		s.injectFaults()
		// Operations come in bursts: requests made at one node in one
		// tick share a deadline, and must still time out in order.
		for p := s.cfg.OpRate; s.r.Float64() < p; p = 0.4 {
			s.workload()
		}
	}
	s.deliver()
	for i, n := range s.nodes {
		if n.core == nil {
			if s.tick >= n.downTill {
				wiped := n.wipeNext
				if err := s.start(i); err != nil {
					s.violation("restart %s: %v", n.id, err)
					return
				}
				s.logf("restart %s as %s wiped=%v", n.id, n.actor, wiped)
			}
			continue
		}
		s.runNode(i)
	}
}

// runNode is one turn of node i's loop, as a runtime would run it: finish
// the disk write in flight (persist, send, answer clients, Advance), then
// tick (catching up the ticks the write took), hand the core everything in
// the inbox, and start writing the next Ready. The core is never called
// between Ready and Advance.
func (s *sim) runNode(i int) {
	n := s.nodes[i]
	if n.disk != nil {
		if s.tick < n.disk.done {
			n.owed++
			return
		}
		rd := n.disk.rd
		n.disk = nil
		s.complete(i, rd)
	}
	for range 1 + n.owed {
		n.core.Tick()
	}
	n.owed = 0
	inbox := n.inbox
	n.inbox = nil
	for _, ev := range inbox {
		if ev.msg != nil {
			m := *ev.msg
			s.mix(uint64(m.Type), uint64(s.index(m.From)), uint64(i), m.ReqID)
			if s.cfg.TraceAll && m.Type != leaderless.MsgPing {
				s.logf("  %s <- %s %v req=%x key=%s hintfor=%s err=%d ok=%v set=%v items=%d", n.id, m.From, m.Type, m.ReqID, m.Key, m.HintFor, m.Err, m.OK, m.Set, len(m.Items))
			}
			if err := n.core.Step(m); err != nil {
				s.violation("step %s <- %s %v: %v", n.id, m.From, m.Type, err)
			}
			continue
		}
		o := ev.op
		s.seq++
		o.start = s.seq
		n.pending[o.id] = o
		if o.read {
			n.core.ProposeRead(leaderless.Read{ID: o.id, Key: []byte(o.key), R: o.q, Repair: o.fix})
		} else {
			n.core.Propose(leaderless.Write{ID: o.id, Key: []byte(o.key), Value: []byte(o.value), Delete: o.del, Context: o.ctx, Time: o.time, W: o.q})
		}
	}
	rd, err := n.core.Ready()
	if err != nil {
		s.violation("ready %s: %v", n.id, err)
		return
	}
	if rd.Empty() {
		return
	}
	d := int64(0)
	if s.cfg.DiskDelay > 0 && (len(rd.Keys) > 0 || len(rd.Hints) > 0 || len(rd.DoneHints) > 0 || rd.MintFloor != 0) {
		d = s.r.Int63n(int64(s.cfg.DiskDelay) + 1)
	}
	if d == 0 {
		s.complete(i, rd)
		return
	}
	n.disk = &pendingDisk{rd: rd, done: s.tick + d}
}

// complete carries out a Ready whose durable part is written: persist,
// send, answer, Advance.
func (s *sim) complete(i int, rd leaderless.Ready) {
	n := s.nodes[i]
	s.persist(n, rd)
	for _, e := range rd.Messages {
		if e.To != e.Msg.To || e.Msg.From != n.id {
			s.violation("%s: envelope to %s carries %s -> %s", n.id, e.To, e.Msg.From, e.Msg.To)
			continue
		}
		s.send(e.Msg)
	}
	for _, r := range rd.Results {
		o := n.pending[r.ID]
		if o == nil {
			s.violation("%s: result for unknown request %d", n.id, r.ID)
			continue
		}
		delete(n.pending, r.ID)
		s.seq++
		o.done, o.doneAt, o.doneTick, o.res, o.ok = true, s.seq, s.tick, r, r.Err == nil
		s.finished(o)
	}
	n.core.Advance()
}

func (s *sim) injectFaults() {
	cfg := s.cfg
	if s.healAt > 0 && s.tick >= s.healAt {
		s.blocked, s.healAt = map[[2]int]bool{}, 0
		s.logf("heal")
	}
	if s.healAt == 0 && s.r.Float64() < cfg.Partition {
		s.partition()
	}
	if s.r.Float64() < cfg.Crash {
		s.crash(s.r.Intn(len(s.nodes)))
	}
}

func (s *sim) partition() {
	side := make([]bool, len(s.nodes))
	for i := range side {
		side[i] = s.r.Intn(2) == 0
	}
	oneWay := s.r.Intn(3) == 0
	for i := range side {
		for j := range side {
			if side[i] != side[j] && (!oneWay || side[i]) {
				s.blocked[[2]int{i, j}] = true
			}
		}
	}
	s.healAt = s.tick + 5 + s.r.Int63n(80)
	s.logf("partition %v oneway=%v until %d", side, oneWay, s.healAt)
}

// crash stops node i: the Ready being written, the inbox and the pending
// requests are lost; with probability Wipe so is its data directory.
func (s *sim) crash(i int) {
	n := s.nodes[i]
	if n.core == nil {
		return
	}
	for _, id := range sortedOpIDs(n.pending) {
		s.res.Lost++
		s.logf("lost op %d", id)
	}
	for _, ev := range n.inbox {
		if ev.op != nil {
			s.res.Lost++
		}
	}
	n.core, n.disk, n.inbox, n.pending = nil, nil, nil, nil
	n.downTill = s.tick + 1 + s.r.Int63n(40)
	if s.r.Intn(2) == 0 {
		n.downTill = s.tick + 1 + s.r.Int63n(3) // a quick restart: messages to the old process still on their way
	}
	s.res.Crashes++
	if s.r.Float64() < s.cfg.Wipe {
		n.wipeNext, n.lastWipe = true, s.tick
		s.wipes = append(s.wipes, s.tick)
		s.res.Wipes++
	}
	s.logf("crash %s until %d wipe=%v", n.id, n.downTill, n.wipeNext)
}

func sortedOpIDs(m map[uint64]*op) []uint64 {
	out := make([]uint64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (s *sim) heal() {
	if s.cfg.WipeAtHeal {
		// A disk is replaced: anti-entropy must rebuild the replica.
		i := s.r.Intn(len(s.nodes))
		s.crash(i)
		if n := s.nodes[i]; !n.wipeNext {
			n.wipeNext, n.lastWipe = true, s.tick
			s.wipes = append(s.wipes, s.tick)
			s.res.Wipes++
		}
	}
	s.faults = false
	s.blocked = map[[2]int]bool{}
	s.healAt = 0
	for _, n := range s.nodes {
		if n.core == nil {
			n.downTill = s.tick
		}
	}
	s.logf("heal all")
}

// workload issues one client operation at a random node.
func (s *sim) workload() {
	i := s.r.Intn(len(s.nodes))
	n := s.nodes[i]
	key := fmt.Sprintf("k%d", s.r.Intn(s.cfg.Keys))
	s.opSeq++
	o := &op{id: s.opSeq, node: i, key: key, q: 1 + s.r.Intn(s.cfg.N), wipesBase: len(s.wipes),
		time: hlc.Timestamp{Wall: Epoch + s.tick*TickNanos, Logical: uint32(s.opSeq)}}
	if s.r.Float64() < s.cfg.ReadFrac {
		o.read, o.fix = true, s.r.Intn(2) == 0
	} else {
		o.del = s.r.Float64() < s.cfg.DeleteFrac
		if !o.del {
			o.value = fmt.Sprintf("%s=%d@%d", key, s.opSeq, s.tick)
		}
		ts := s.tokens[key]
		switch x := s.r.Intn(10); {
		case x < 6 && len(ts) > 0: // the latest read of the key
			o.ctx = ts[len(ts)-1]
		case x < 9 && len(ts) > 0: // an older read
			o.ctx = ts[s.r.Intn(len(ts))]
		}
	}
	if n.core == nil {
		return // the client finds the node down
	}
	s.ops = append(s.ops, o)
	if !o.read {
		s.byTime[o.time] = o
		if o.del {
			s.res.Deletes++
		} else {
			s.res.Writes++
		}
	} else {
		s.res.Reads++
	}
	s.logf("op %d at %s: read=%v del=%v %s q=%d fix=%v ctx=%v", o.id, n.id, o.read, o.del, key, o.q, o.fix, o.ctx)
	n.inbox = append(n.inbox, event{op: o})
}

func (s *sim) index(id string) int { return slices.Index(s.ids, id) }

func (s *sim) send(m leaderless.Message) {
	if s.faults && s.r.Float64() < s.cfg.Drop {
		return
	}
	copies := 1
	if s.faults && m.Type != leaderless.MsgMint && s.r.Float64() < s.cfg.Dup {
		copies = 2
	}
	for range copies {
		d := int64(1 + s.r.Intn(s.cfg.DelayMax))
		if s.faults && s.r.Float64() < s.cfg.SlowLink {
			d += s.r.Int63n(int64(4*s.cfg.DelayMax) + 1)
		}
		s.msgSeq++
		s.net[s.tick+d] = append(s.net[s.tick+d], message{seq: s.msgSeq, m: m})
	}
}

// deliver moves the messages due now into their receivers' inboxes (in
// send order), dropping those to a node that is down or cut off.
func (s *sim) deliver() {
	due := s.net[s.tick]
	delete(s.net, s.tick)
	for _, msg := range due {
		from, to := s.index(msg.m.From), s.index(msg.m.To)
		n := s.nodes[to]
		if n.core == nil || s.blocked[[2]int{from, to}] {
			continue
		}
		m := msg.m
		n.inbox = append(n.inbox, event{msg: &m})
	}
}

// inFlight reports whether a message other than a ping or an anti-entropy
// tree is on its way.
func (s *sim) inFlight() bool {
	for _, ms := range s.net {
		for _, m := range ms {
			if m.m.Type != leaderless.MsgPing && m.m.Type != leaderless.MsgTree {
				return true
			}
		}
	}
	return false
}
