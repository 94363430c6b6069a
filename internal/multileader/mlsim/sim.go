// Package mlsim is a deterministic simulator of multi-leader clusters: N
// real multileader cores in one goroutine, on a virtual clock, with a
// seeded network (delay, reordering, loss, duplication, partitions), crashes
// that lose what was not persisted, skewed and jumping node clocks, and a
// random workload of puts, deletes and increments with fresh, stale and
// missing causal contexts. After the faults it heals everything, waits for
// quiescence and checks convergence and that no acknowledged write was lost
// silently (check.go). See DESIGN.md.
package mlsim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sort"

	"github.com/trireme-db/trireme/internal/multileader"
)

// Config is one simulated run.
type Config struct {
	Seed        int64
	Nodes       int // 2..5
	Policy      multileader.Policy
	MaxSiblings int
	Steps       int // ticks of the faulty phase
	QuietTicks  int // ticks allowed to converge after healing

	WriteRate   float64 // writes per tick
	RegKeys     int     // register keys
	CtrKeys     int     // counter keys
	Drop, Dup   float64 // per message
	DelayMax    int     // ticks
	SlowLink    float64 // probability of up to 4*DelayMax extra delay (reorders)
	Partition   float64 // per tick: start a partition
	Crash       float64 // per tick: crash a node
	CrashMid    float64 // per crash: the node dies between stream and store writes
	DiskDelay   int     // ticks a Ready's writes take
	SkewMaxMs   int64   // node clock skew, +-
	JumpProb    float64 // per tick: a node's clock jumps
	MaxOffsetMs int64

	Bugs multileader.Bugs

	KeepTrace bool // keep the text trace in Result.Trace
}

// TickNanos is the virtual time of one tick; Epoch is virtual time 0 (Unix ns).
const (
	TickNanos = 1_000_000
	Epoch     = 1_700_000_000 * 1_000_000_000
)

// ConfigForSeed draws a configuration from the seed.
func ConfigForSeed(seed int64) Config {
	r := rand.New(rand.NewSource(seed ^ 0x6d6c73696d))
	c := Config{
		Seed: seed, Nodes: 2 + r.Intn(4), Steps: 300, QuietTicks: 2000,
		WriteRate: 0.2 + r.Float64()*0.6, RegKeys: 1 + r.Intn(4), CtrKeys: 1 + r.Intn(2),
		Drop: r.Float64() * 0.1, Dup: r.Float64() * 0.1, DelayMax: 1 + r.Intn(8), SlowLink: r.Float64() * 0.1,
		Partition: 0.01, Crash: r.Float64() * 0.02, CrashMid: 0.3, DiskDelay: r.Intn(3),
		SkewMaxMs: int64(r.Intn(100)), JumpProb: 0.002, MaxOffsetMs: 10 + int64(r.Intn(50)),
		MaxSiblings: 1 + r.Intn(4),
	}
	if r.Intn(2) == 0 {
		c.Policy = multileader.Siblings
	}
	return c
}

// Result is the outcome of a run.
type Result struct {
	Violations []string
	TraceHash  string
	Trace      string // with Config.KeepTrace
	Writes     int    // proposals accepted
	Acked      int
	Conflicts  int
	Crashes    int
	Clamps     uint64
}

// Failed reports whether a check failed.
func (r *Result) Failed() bool { return len(r.Violations) > 0 }

type message struct {
	at  int64
	seq uint64
	m   multileader.Message
}

type pendingDisk struct {
	rd   multileader.Ready
	done int64
}

// node is one simulated process: its durable state and, while up, its core.
type node struct {
	id       string
	core     *multileader.Core
	stream   []multileader.Entry // durable own stream
	store    map[string]multileader.KeyState
	applied  map[string]uint64
	confl    []multileader.Conflict
	disk     *pendingDisk
	skew     int64 // ns
	downTill int64
	props    map[uint64]uint64 // proposal id -> seq, pending
}

type memStore struct{ n *node }

func (s memStore) Get(k string) (multileader.KeyState, error) { return s.n.store[k], nil }

type memLog struct{ n *node }

func (l memLog) LastSeq() uint64 { return uint64(len(l.n.stream)) }
func (l memLog) Entries(lo, hi uint64) ([]multileader.Entry, error) {
	if lo < 1 || hi > uint64(len(l.n.stream)) || lo > hi {
		return nil, fmt.Errorf("entries %d..%d of %d", lo, hi, len(l.n.stream))
	}
	return l.n.stream[lo-1 : hi], nil
}

type sim struct {
	cfg     Config
	r       *rand.Rand
	tick    int64
	nodes   []*node
	ids     []string
	net     []message
	msgSeq  uint64
	blocked map[[2]int]bool
	healAt  int64
	tokens  map[string][]string // per key: contexts read at some point (stale ones for later writes)
	acked   map[[2]string]bool  // (node, seq as string) -> acknowledged
	incrs   map[[2]string]int64 // (node, seq) -> amount of the increment proposed there last
	res     *Result
	trace   []byte
	faults  bool
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

// Run simulates cfg and checks it.
func Run(cfg Config) *Result {
	s := &sim{cfg: cfg, r: rand.New(rand.NewSource(cfg.Seed)), blocked: map[[2]int]bool{}, acked: map[[2]string]bool{}, incrs: map[[2]string]int64{}, tokens: map[string][]string{}, res: &Result{}}
	for i := range cfg.Nodes {
		s.ids = append(s.ids, fmt.Sprintf("n%d", i+1))
	}
	for i, id := range s.ids {
		n := &node{id: id, store: map[string]multileader.KeyState{}, applied: map[string]uint64{}, props: map[uint64]uint64{}}
		if cfg.SkewMaxMs > 0 {
			n.skew = (s.r.Int63n(2*cfg.SkewMaxMs+1) - cfg.SkewMaxMs) * 1_000_000
		}
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
	quiet := 0
	for end := s.tick + int64(cfg.QuietTicks); s.tick < end && quiet < 60; s.tick++ {
		s.step()
		if s.quiescent() {
			quiet++
		} else {
			quiet = 0
		}
	}
	s.check(quiet >= 60)
	h := sha256.Sum256(s.trace)
	s.res.TraceHash = fmt.Sprintf("%x", h[:8])
	if cfg.KeepTrace {
		s.res.Trace = string(s.trace)
	}
	return s.res
}

func (s *sim) start(i int) error {
	n := s.nodes[i]
	c := multileader.DefaultConfig()
	c.ID, c.ClusterID, c.Policy, c.MaxSiblings = n.id, "sim", s.cfg.Policy, s.cfg.MaxSiblings
	c.MaxOffsetNanos = s.cfg.MaxOffsetMs * 1_000_000
	c.HeartbeatTicks, c.RetryTicks, c.MaxBatch, c.MaxInflight = 3, 12, 8, 32
	for _, id := range s.ids {
		if id != n.id {
			c.Peers = append(c.Peers, id)
		}
	}
	c.Applied = map[string]uint64{}
	for k, v := range n.applied {
		c.Applied[k] = v
	}
	c.Store, c.Log, c.Bugs = memStore{n}, memLog{n}, s.cfg.Bugs
	core, err := multileader.New(c)
	if err != nil {
		return err
	}
	n.core = core
	n.props = map[uint64]uint64{}
	return nil
}

func (n *node) physical(tick int64) int64 { return Epoch + tick*TickNanos + n.skew }

// step runs one tick: faults, workload, deliveries, ticks and Ready loops.
func (s *sim) step() {
	if s.faults {
		s.injectFaults()
		s.workload()
	}
	s.deliver()
	for i, n := range s.nodes {
		if n.core == nil {
			if s.tick >= n.downTill {
				if err := s.start(i); err != nil {
					s.violation("restart %s: %v", n.id, err)
					return
				}
				s.logf("restart %s", n.id)
			}
			continue
		}
		n.core.Tick(n.physical(s.tick))
		s.runReady(i)
	}
}

func (s *sim) injectFaults() {
	cfg := s.cfg
	if s.r.Float64() < cfg.JumpProb {
		n := s.nodes[s.r.Intn(len(s.nodes))]
		n.skew += (s.r.Int63n(401) - 200) * 1_000_000
		s.logf("clock %s skew %dms", n.id, n.skew/1_000_000)
	}
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

func (s *sim) crash(i int) {
	n := s.nodes[i]
	if n.core == nil {
		return
	}
	if n.disk != nil && s.r.Float64() < s.cfg.CrashMid {
		// The stream write made it, the store batch did not.
		n.stream = append(n.stream, n.disk.rd.Entries...)
	}
	n.core, n.disk = nil, nil
	n.downTill = s.tick + 1 + s.r.Int63n(40)
	s.res.Crashes++
	s.logf("crash %s until %d", n.id, n.downTill)
}

func (s *sim) heal() {
	s.faults = false
	s.blocked = map[[2]int]bool{}
	for _, n := range s.nodes {
		if n.core == nil {
			n.downTill = s.tick
		}
	}
	s.logf("heal all")
}

func (s *sim) workload() {
	if s.r.Float64() >= s.cfg.WriteRate {
		return
	}
	i := s.r.Intn(len(s.nodes))
	n := s.nodes[i]
	if n.core == nil {
		return
	}
	var w multileader.Write
	if s.r.Intn(3) == 0 {
		w = multileader.Write{Key: fmt.Sprintf("c%d", s.r.Intn(s.cfg.CtrKeys)), Incr: true, IncrBy: s.r.Int63n(16) - 5}
	} else {
		w.Key = fmt.Sprintf("r%d", s.r.Intn(s.cfg.RegKeys))
		if s.r.Intn(5) == 0 {
			w.Delete = true
		} else {
			w.Value = fmt.Appendf(nil, "%s@%d", n.id, s.tick)
		}
		switch s.r.Intn(3) {
		case 0: // a fresh read at this node (its durable store)
			w.Context = n.store[w.Key].Token("sim", w.Key)
			s.tokens[w.Key] = append(s.tokens[w.Key], w.Context)
			if len(s.tokens[w.Key]) > 16 {
				s.tokens[w.Key] = s.tokens[w.Key][1:]
			}
		case 1: // a stale read, possibly from another node
			if ts := s.tokens[w.Key]; len(ts) > 0 {
				w.Context = ts[s.r.Intn(len(ts))]
			}
		}
	}
	switch s.r.Intn(4) {
	case 1:
		w.Ack, w.AckPeers = multileader.AckPeers, 1
	case 2:
		w.Ack = multileader.AckAll
	}
	id, err := n.core.Propose(w)
	if errors.Is(err, multileader.ErrContextAhead) && w.Context != "" {
		// A stale token from another node can be ahead of this one only if
		// this node lost writes it had acknowledged.
		s.violation("%s refused a context: %v", n.id, err)
		return
	}
	if err != nil {
		s.violation("propose at %s: %v", n.id, err)
		return
	}
	n.props[id] = n.core.LastSeq()
	if w.Incr {
		s.incrs[[2]string{n.id, fmt.Sprint(n.core.LastSeq())}] = w.IncrBy
	} else {
		delete(s.incrs, [2]string{n.id, fmt.Sprint(n.core.LastSeq())})
	}
	s.res.Writes++
	s.logf("propose %s seq %d %s incr=%v del=%v ctx=%v", n.id, n.core.LastSeq(), w.Key, w.Incr, w.Delete, w.Context != "")
	s.runReady(i)
}

// runReady follows the Ready contract: stream entries, then the store
// batch, then messages and results, then Advance.
func (s *sim) runReady(i int) {
	n := s.nodes[i]
	for n.core != nil {
		if n.disk != nil {
			if s.tick < n.disk.done {
				return
			}
			rd := n.disk.rd
			n.disk = nil
			s.persist(n, rd)
			for _, m := range rd.Messages {
				s.send(m)
			}
			for _, r := range rd.Results {
				if r.Err == nil {
					s.acked[[2]string{n.id, fmt.Sprint(r.Seq)}] = true
					s.res.Acked++
				}
				delete(n.props, r.ID)
			}
			n.core.Advance()
			continue
		}
		if !n.core.HasReady() {
			return
		}
		rd, err := n.core.Ready()
		if err != nil {
			s.violation("ready %s: %v", n.id, err)
			return
		}
		d := int64(0)
		if s.cfg.DiskDelay > 0 && (len(rd.Entries) > 0 || len(rd.Changes) > 0) {
			d = s.r.Int63n(int64(s.cfg.DiskDelay) + 1)
		}
		n.disk = &pendingDisk{rd: rd, done: s.tick + d}
	}
}

func (s *sim) persist(n *node, rd multileader.Ready) {
	for _, e := range rd.Entries {
		if e.Seq != uint64(len(n.stream))+1 {
			s.violation("%s appends seq %d to a stream of %d", n.id, e.Seq, len(n.stream))
		}
		n.stream = append(n.stream, e)
	}
	for _, c := range rd.Changes {
		n.store[c.Key] = c.State
	}
	for _, p := range rd.Applied {
		if p.Seq < n.applied[p.Origin] {
			s.violation("%s position of %s goes back %d -> %d", n.id, p.Origin, n.applied[p.Origin], p.Seq)
		}
		n.applied[p.Origin] = p.Seq
	}
	n.confl = append(n.confl, rd.Conflicts...)
	s.res.Conflicts += len(rd.Conflicts)
}

func (s *sim) index(id string) int { return slices.Index(s.ids, id) }

func (s *sim) send(m multileader.Message) {
	if s.faults && s.r.Float64() < s.cfg.Drop {
		return
	}
	copies := 1
	if s.faults && s.r.Float64() < s.cfg.Dup {
		copies = 2
	}
	for range copies {
		d := int64(1 + s.r.Intn(s.cfg.DelayMax))
		if s.faults && s.r.Float64() < s.cfg.SlowLink {
			d += s.r.Int63n(int64(4*s.cfg.DelayMax) + 1)
		}
		s.msgSeq++
		s.net = append(s.net, message{at: s.tick + d, seq: s.msgSeq, m: m})
	}
}

func (s *sim) deliver() {
	sort.Slice(s.net, func(a, b int) bool {
		if s.net[a].at != s.net[b].at {
			return s.net[a].at < s.net[b].at
		}
		return s.net[a].seq < s.net[b].seq
	})
	k := 0
	for k < len(s.net) && s.net[k].at <= s.tick {
		k++
	}
	due := s.net[:k]
	s.net = slices.Clone(s.net[k:])
	for _, msg := range due {
		from, to := s.index(msg.m.From), s.index(msg.m.To)
		n := s.nodes[to]
		if n.core == nil || s.blocked[[2]int{from, to}] {
			continue
		}
		if err := n.core.Step(msg.m); err != nil {
			s.violation("step %s <- %s: %v", n.id, msg.m.From, err)
		}
		s.runReady(to)
	}
}

// quiescent: every node is up, idle, and has applied every stream to its end.
func (s *sim) quiescent() bool {
	for _, n := range s.nodes {
		if n.core == nil || n.disk != nil || n.core.HasReady() {
			return false
		}
		for _, o := range s.nodes {
			if n.applied[o.id] != uint64(len(o.stream)) {
				return false
			}
		}
	}
	return true
}
