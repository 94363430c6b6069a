package sim

import (
	"fmt"
	"math"
	"math/rand"
	"strings"

	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// simNode is one node's simulated runtime: it drives a repl.Core through the
// Ready contract against a simulated disk, a per-node KV store and the
// simulated network.
type simNode struct {
	idx  int
	id   repl.NodeID
	core *repl.Core // nil while down
	up   bool

	downUntil int64

	paused     bool
	pausedAt   int64
	pauseUntil int64
	pauseDrop  bool           // messages to the paused node are dropped (else held)
	held       []repl.Message // messages held while paused

	// log is what the core reads through repl.Storage; disk is what survives
	// a crash. They are the same object unless the AckBeforeFsync bug runs.
	log     *memLog
	disk    *memLog
	pending []diskWrite // disk writes not yet durable, in order
	waiting bool        // a Ready is taken and waits for its disk write

	// The store: applied state, the term of the entry at its applied index
	// and the configuration at it (confIdx: the index that set it, 0 for
	// the one the node started with). dur is what survives a crash: the
	// store persists lazily, every 1..StoreFlushMax ticks, and a snapshot
	// install swaps it durably.
	sm          machine
	applied     uint64
	appliedTerm uint64
	conf        repl.ConfState
	confIdx     uint64
	dur         storeState
	initConf    repl.ConfState // the configuration the node was started with
	nextFlush   int64

	journal []entry.Entry // rollback journal (durable)

	// Runtime state that a crash loses: the results of recently applied
	// commands (for their writers' answers, internal/node's cmdWaits), and
	// the bounded-read point this node holds (internal/node's boundedState).
	cmdRecent map[uint64]appliedCmd
	rp        readPoint
	rpAsked   int64 // tick a refresh was asked for, 0 = none in flight

	stopped    bool // removed from the cluster and shut down for good
	everMember bool // was a member of some configuration (may be re-added)

	driftSign int   // +1 fast clock, -1 slow clock, 0 none
	nextDrift int64 // tick of the next drift adjustment

	leaderChecked uint64 // last term whose leader-completeness check ran
	campaigning   bool   // was a (pre-)candidate at the last lease-attack look
	crashAt       int64  // scheduled crash tick, 0 = none

	coord coordNode // its side of the external coordinator (coordinator.go)
}

// storeState is a durable copy of a node's store.
type storeState struct {
	sm      machine
	applied uint64
	term    uint64
	conf    repl.ConfState
	confIdx uint64
}

// flushStore makes n's store durable as it is.
func (n *simNode) flushStore() {
	n.dur = storeState{sm: n.sm.clone(), applied: n.applied, term: n.appliedTerm, conf: n.conf.Clone(), confIdx: n.confIdx}
}

// loadStore reverts n's store to its durable copy (a crash).
func (n *simNode) loadStore() {
	d := n.dur
	n.sm, n.applied, n.appliedTerm, n.conf, n.confIdx = d.sm.clone(), d.applied, d.term, d.conf.Clone(), d.confIdx
}

// diskWrite is a pending persistence of one Ready's hard state and entries.
type diskWrite struct {
	due  int64
	hs   repl.HardState
	ents []entry.Entry
	rd   *repl.Ready // the Ready to finish once durable (nil in AckBeforeFsync mode)
}

// cluster is one simulation run.
type cluster struct {
	cfg   Config
	rng   *rand.Rand
	now   int64
	seq   int64 // history clock: increases at every call and return
	nodes []*simNode
	peers []repl.Peer
	net   *network
	tr    *tracer
	stats Stats
	chk   *checker
	wl    *workload

	snaps   []*snapTransfer // snapshot transfers on their way, in send order
	snapSeq int
	ms      membership

	partUntil int64 // 0 = no partition active
	downs     []downReport
	coord     coordModel
	attacking bool // the active partition is a lease attack
	healing   bool
	err       *Violation
}

// Run runs one simulation and returns its result. It returns an error only
// for an invalid Config; broken guarantees are in Result.Err.
func Run(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Faults.MaxDown == 0 {
		cfg.Faults.MaxDown = cfg.Nodes - 1
	}
	c := &cluster{
		cfg: cfg,
		rng: rand.New(rand.NewSource(cfg.Seed)),
		net: newNetwork(cfg.Nodes + maxAddedNodes),
		tr:  newTracer(cfg.KeepTrace, cfg.TraceTail, cfg.Logger),
	}
	c.chk = newChecker(c)
	c.wl = newWorkload(c)
	for i := 0; i < cfg.Nodes; i++ {
		c.peers = append(c.peers, repl.Peer{ID: nodeID(i), Priority: 1})
	}
	c.tr.add(0, "start seed=%d nodes=%d profile=%s steps=%d bugs=%+v", cfg.Seed, cfg.Nodes, cfg.Profile, cfg.Steps, cfg.Bugs)
	boot := repl.ConfFromPeers(c.peers)
	for i := 0; i < cfg.Nodes; i++ {
		n := c.newNode(boot)
		n.everMember = true
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		c.start(n)
	}
	c.run()
	res := &Result{
		Seed: cfg.Seed, Nodes: cfg.Nodes, Profile: cfg.Profile,
		TraceHash: c.tr.sum(), TraceLines: c.tr.lines, TraceTail: c.tr.tail(),
		Stats: c.stats,
	}
	res.Stats.Runs = 1
	if c.tr.full != nil {
		res.Trace = c.tr.full.String()
	}
	if c.err != nil {
		res.Err = c.err
	}
	return res, nil
}

// newNode makes node number len(c.nodes), empty, whose store starts with
// configuration cs.
func (c *cluster) newNode(cs repl.ConfState) *simNode {
	i := len(c.nodes)
	n := &simNode{idx: i, id: nodeID(i), sm: newMachine(), conf: cs.Clone(), initConf: cs.Clone()}
	n.flushStore()
	n.disk = &memLog{}
	n.log = n.disk
	if c.cfg.Faults.DriftEvery > 0 {
		n.driftSign = c.rng.Intn(3) - 1
		n.nextDrift = c.now + int64(c.cfg.Faults.DriftEvery+c.rng.Intn(c.cfg.Faults.DriftEvery))
	}
	return n
}

func nodeID(i int) repl.NodeID { return repl.NodeID(fmt.Sprintf("n%d", i+1)) }

func (c *cluster) nodeIndex(id repl.NodeID) int {
	for i, n := range c.nodes {
		if n.id == id {
			return i
		}
	}
	return -1
}

// fail records the first violation; later ones are ignored.
func (c *cluster) fail(invariant, format string, args ...any) {
	if c.err != nil {
		return
	}
	c.err = &Violation{Invariant: invariant, Tick: c.now, Detail: fmt.Sprintf(format, args...)}
	c.tr.add(c.now, "VIOLATION %s: %s", invariant, c.err.Detail)
}

// histNow advances and returns the history clock that orders calls and
// returns for porcupine (finer than ticks).
func (c *cluster) histNow() int64 { c.seq++; return c.seq }

func (c *cluster) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	return c.rng.Float64() < p
}

func (c *cluster) run() {
	for c.now = 1; c.now <= int64(c.cfg.Steps) && c.err == nil; c.now++ {
		c.step(true)
	}
	if c.err != nil {
		c.stats.Ticks = int(c.now)
		return
	}
	c.healAll()
	converged := false
	healed := c.now
	bound, why := c.healBound()
	end := c.now + bound
	for ; c.now < end && c.err == nil; c.now++ {
		c.step(false)
		if c.wl.idle() && c.converged() {
			converged = true
			break
		}
	}
	c.stats.Ticks = int(c.now)
	if c.err != nil {
		return
	}
	if !converged {
		c.fail("liveness", "no convergence after %d healed ticks (%s): %s%s", bound, why, c.describeNodes(), c.describeFollowers())
		return
	}
	c.stats.HealTicks = int(c.now - healed)
	c.stats.MaxHealTicks = c.stats.HealTicks
	c.tr.add(c.now, "converged %s", c.describeNodes())
	c.chk.final()
}

// step runs one tick: faults, clocks, network, disk, clients, Ready
// processing, then the per-step checks.
func (c *cluster) step(faulty bool) {
	c.tr.add(c.now, "tick")
	c.expireFaults()
	if faulty {
		c.injectFaults()
	}
	c.reportDown(faulty)
	c.coordStep(faulty)
	for _, n := range c.nodes {
		if n.up && !n.paused {
			c.tickNode(n)
		}
	}
	c.deliver()
	for _, n := range c.nodes {
		c.completeWrites(n)
	}
	c.deliverSnapshots()
	for _, n := range c.nodes {
		c.maintainStore(n)
	}
	if faulty {
		c.membershipStep()
	}
	c.wl.step(faulty)
	for _, n := range c.nodes {
		c.pump(n)
	}
	if c.err == nil {
		c.chk.step()
	}
}

func (c *cluster) tickNode(n *simNode) {
	ticks := 1
	if n.driftSign != 0 && c.now >= n.nextDrift {
		ticks += n.driftSign
		n.nextDrift = c.now + int64(c.cfg.Faults.DriftEvery+c.rng.Intn(c.cfg.Faults.DriftEvery))
		c.stats.DriftTicks++
		c.tr.add(c.now, "drift %s %+d", n.id, n.driftSign)
	}
	for i := 0; i < ticks; i++ {
		n.core.Tick()
	}
}

func (c *cluster) deliver() {
	for {
		f, ok := c.net.popDue(c.now)
		if !ok {
			return
		}
		m := f.m
		from, to := c.nodeIndex(m.From), c.nodeIndex(m.To)
		if from < 0 || to < 0 {
			c.fail("message", "message with unknown endpoint: %s", describeMsg(m))
			return
		}
		if c.net.blocked[from][to] {
			c.stats.Drops++
			c.tr.add(c.now, "drop-partition %s", describeMsg(m))
			continue
		}
		n := c.nodes[to]
		if !n.up {
			c.stats.Drops++
			c.tr.add(c.now, "drop-down %s", describeMsg(m))
			continue
		}
		if n.paused {
			if n.pauseDrop {
				c.stats.Drops++
				c.tr.add(c.now, "drop-paused %s", describeMsg(m))
			} else {
				n.held = append(n.held, m)
				c.tr.add(c.now, "hold %s", describeMsg(m))
			}
			continue
		}
		c.stepNode(n, m)
	}
}

func (c *cluster) stepNode(n *simNode, m repl.Message) {
	c.stats.MsgsDelivered++
	c.tr.add(c.now, "deliver %s", describeMsg(m))
	if err := n.core.Step(m); err != nil {
		c.stats.StepErrors++
		c.tr.add(c.now, "step-error %s: %v", n.id, err)
	}
}

func (c *cluster) send(m repl.Message) {
	c.stats.MsgsSent++
	if c.nodeIndex(m.To) < 0 || c.nodeIndex(m.From) < 0 {
		c.fail("message", "message with unknown endpoint: %s", describeMsg(m))
		return
	}
	f := c.cfg.Faults
	if c.chance(f.Drop) {
		c.stats.Drops++
		c.tr.add(c.now, "drop %s", describeMsg(m))
		return
	}
	copies := 1
	if c.chance(f.Duplicate) {
		copies = 2
		c.stats.Duplicates++
	}
	for k := 0; k < copies; k++ {
		delay := f.DelayMin + c.rng.Intn(f.DelayMax-f.DelayMin+1)
		if c.chance(f.SlowLink) {
			delay += c.rng.Intn(4*f.DelayMax + 1)
			c.stats.SlowMsgs++
		}
		c.net.push(c.now+int64(delay), m)
		c.tr.add(c.now, "send +%d %s", delay, describeMsg(m))
	}
}

// pump processes Ready batches of n until it has none or must wait for disk.
func (c *cluster) pump(n *simNode) {
	for i := 0; i < 16 && c.err == nil; i++ {
		if !n.up || n.paused || n.waiting || !n.core.HasReady() {
			return
		}
		rd := n.core.Ready()
		c.handleReady(n, &rd)
	}
}

func (c *cluster) handleReady(n *simNode, rd *repl.Ready) {
	// Snapshot requests are independent of the steps below.
	for _, id := range rd.Snapshots {
		c.sendSnapshot(n, id)
	}
	// 1. Rollback journal, durable before the truncation is.
	for _, e := range rd.Discarded {
		n.journal = append(n.journal, e)
		c.stats.Discarded++
		c.tr.add(c.now, "discard %s %s", n.id, describeEntry(e))
		c.chk.discarded(n, e)
	}
	persist := !rd.HardState.IsEmpty() || len(rd.Entries) > 0
	if !persist {
		c.finishReady(n, rd)
		return
	}
	due := c.now + int64(c.rng.Intn(c.cfg.Faults.DiskDelayMax+1))
	if bugAckBeforeFsync(c.cfg.Bugs) {
		// Bug: the write reaches the page cache (what the core reads) at
		// once and everything downstream proceeds; the disk catches up later.
		if err := n.log.write(rd.HardState, rd.Entries); err != nil {
			c.fail("storage", "%s: %v", n.id, err)
			return
		}
		n.pending = append(n.pending, diskWrite{due: due, hs: rd.HardState, ents: rd.Entries})
		c.tr.add(c.now, "write-cached %s %s due=%d", n.id, describeWrite(rd.HardState, rd.Entries), due)
		c.finishReady(n, rd)
		return
	}
	n.waiting = true
	n.pending = append(n.pending, diskWrite{due: due, hs: rd.HardState, ents: rd.Entries, rd: rd})
	c.tr.add(c.now, "write %s %s due=%d", n.id, describeWrite(rd.HardState, rd.Entries), due)
	c.completeWrites(n)
}

// completeWrites makes due disk writes durable and finishes their Ready.
func (c *cluster) completeWrites(n *simNode) {
	for c.err == nil && n.up && !n.paused && len(n.pending) > 0 && n.pending[0].due <= c.now {
		w := n.pending[0]
		n.pending = n.pending[1:]
		c.persist(n, w.hs, w.ents)
		if w.rd != nil {
			n.waiting = false
			c.finishReady(n, w.rd)
		}
	}
}

// persist makes a write durable on n's disk and checks log matching.
func (c *cluster) persist(n *simNode, hs repl.HardState, ents []entry.Entry) {
	if err := n.disk.write(hs, ents); err != nil {
		c.fail("storage", "%s: %v", n.id, err)
		return
	}
	c.tr.add(c.now, "durable %s %s", n.id, describeWrite(hs, ents))
	c.chk.persisted(n, ents)
}

// finishReady runs steps 3-6 of the Ready contract. A mid-Ready crash may cut
// it short.
func (c *cluster) finishReady(n *simNode, rd *repl.Ready) {
	crashAt := -1
	if c.chance(c.cfg.Faults.CrashMidReady) && !c.healing && c.downCount() < c.cfg.Faults.MaxDown {
		crashAt = c.rng.Intn(3)
	}
	midCrash := func(point int) bool {
		if crashAt != point {
			return false
		}
		c.stats.CrashesMidReady++
		c.tr.add(c.now, "crash-mid-ready %s point=%d", n.id, point)
		c.crash(n)
		return true
	}
	if midCrash(0) {
		return
	}
	for _, m := range rd.Messages {
		c.send(m)
	}
	if midCrash(1) {
		return
	}
	for _, e := range rd.CommittedEntries {
		c.apply(n, e)
		if c.err != nil {
			return
		}
	}
	if midCrash(2) {
		return
	}
	for _, r := range rd.Reads {
		c.wl.readDone(n, r)
	}
	for _, r := range rd.Results {
		if r.ID >= confIDBase {
			c.confResult(n, r)
			continue
		}
		c.wl.resultDone(n, r)
	}
	n.core.Advance(*rd)
}

func (c *cluster) apply(n *simNode, e entry.Entry) {
	if e.Index != n.applied+1 {
		c.fail("apply-order", "%s applies index %d after %d", n.id, e.Index, n.applied)
		return
	}
	if !bugAckBeforeFsync(c.cfg.Bugs) && !c.cfg.EndToEndOnly {
		if t, err := n.disk.Term(e.Index); err != nil || t != e.Term || e.Index == 0 {
			c.fail("apply-not-durable", "%s applies %s not in its durable log (term %d, %v)", n.id, describeEntry(e), t, err)
			return
		}
	}
	var eff applyEffect
	switch e.Kind {
	case entry.KindPut:
		n.sm.kv[string(e.Key)] = kvVal{val: string(e.Value), ver: e.Index}
		eff.written = []string{string(e.Key)}
	case entry.KindDelete:
		delete(n.sm.kv, string(e.Key))
		eff.written = []string{string(e.Key)}
	case entry.KindNoop:
		n.sm.noteNoop(e.Index, e.Term)
	case entry.KindCommand:
		cmd, err := command.Decode(e.Value)
		if err != nil {
			c.fail("command-entry", "%s applies a command entry that does not decode at %d: %v", n.id, e.Index, err)
			return
		}
		written, r, expired := n.sm.applyCommand(&cmd, e.Index, bugDuplicateApply(c.cfg.Bugs))
		eff = applyEffect{written: written, cmd: &cmd, res: r}
		c.stats.IdemExpired += expired
		if r.Duplicate {
			c.stats.IdemDuplicates++
		}
		if n.cmdRecent == nil {
			n.cmdRecent = map[uint64]appliedCmd{}
		}
		n.cmdRecent[e.Index] = appliedCmd{term: e.Term, r: r}
	case entry.KindConfig:
		cs, err := repl.DecodeConf(e.Value)
		if err != nil {
			c.fail("config-entry", "%s applies a configuration entry that does not decode at %d: %v", n.id, e.Index, err)
			return
		}
		n.conf, n.confIdx = cs, e.Index
	}
	c.chk.appliedWith(n, e, eff)
	n.applied, n.appliedTerm = e.Index, e.Term
	c.stats.Applied++
	if eff.cmd != nil {
		c.tr.add(c.now, "apply %s %s -> %s", n.id, describeEntry(e), describeCmdResult(eff.res))
	} else {
		c.tr.add(c.now, "apply %s %s", n.id, describeEntry(e))
	}
	c.chk.stateAt(n, "apply")
}

func (c *cluster) coreConfig(n *simNode) repl.Config {
	t := c.cfg.Timing
	cs := n.conf.Clone()
	cfg := repl.Config{
		ID:                          n.id,
		Peers:                       c.peers,
		HeartbeatTicks:              t.HeartbeatTicks,
		ElectionTicks:               t.ElectionTicks,
		Detector:                    t.Detector,
		MaxElectionTicks:            t.MaxElectionTicks,
		PauseTicks:                  t.PauseTicks,
		ExternalElection:            t.Coordinator,
		LeaseTicks:                  t.LeaseTicks,
		DriftTicks:                  t.DriftTicks,
		CheckQuorum:                 true,
		PreVote:                     true,
		Conf:                        &cs,
		Applied:                     n.applied,
		MaxMsgBytes:                 c.cfg.MaxMsgBytes,
		MaxInflightMsgs:             c.cfg.MaxInflight,
		DefaultProposalTimeoutTicks: t.ProposalTicks,
		MaxPendingProposals:         256,
		Rand:                        rand.New(rand.NewSource(c.rng.Int63())),
	}
	applyCoreBugs(&cfg, c.cfg.Bugs)
	return cfg
}

// start (re)creates n's core from its durable state.
func (c *cluster) start(n *simNode) {
	if bugAckBeforeFsync(c.cfg.Bugs) {
		n.log = n.disk.clone()
	} else {
		n.log = n.disk
	}
	// The store swap is the atomic point of a snapshot install: a store
	// whose applied (index, term) the log does not hold is a newer state
	// installed before a crash cut the install short. Finish it: reset the
	// log to the store's point. A store below the log's compaction point
	// cannot replay the entries in between: they are gone.
	if n.applied < n.disk.off || (n.applied > 0 && !n.disk.holds(n.applied, n.appliedTerm)) {
		if n.applied < n.disk.off {
			c.fail("compacted-past-store", "%s restarts with its store at %d but its log was compacted up to %d: entries %d..%d are gone (compaction went past the store's durable applied index)",
				n.id, n.applied, n.disk.off, n.applied+1, n.disk.off)
			return
		}
		c.stats.RestartInstalls++
		c.tr.add(c.now, "finish-install %s store=%d/%d log=[%d..%d]", n.id, n.applied, n.appliedTerm, n.disk.FirstIndex(), n.disk.LastIndex())
		n.disk.reset(n.applied, n.appliedTerm)
		if n.log != n.disk {
			n.log.reset(n.applied, n.appliedTerm)
		}
	}
	core, err := repl.New(c.coreConfig(n), n.log)
	if err != nil {
		c.fail("restart", "%s: repl.New: %v", n.id, err)
		return
	}
	n.core, n.up = core, true
	n.paused, n.held, n.waiting, n.pending = false, nil, false, nil
	c.tr.add(c.now, "start %s hs=%+v first=%d last=%d applied=%d conf=%d", n.id, n.disk.hs, n.disk.FirstIndex(), n.disk.LastIndex(), n.applied, n.confIdx)
}

func (c *cluster) crash(n *simNode) {
	c.stats.Crashes++
	c.tr.add(c.now, "crash %s pending=%d", n.id, len(n.pending))
	if len(n.pending) > 0 && c.chance(c.cfg.Faults.TornWrite) {
		// The OS flushed part of the unsynced write: its hard state record
		// and a prefix of its entries.
		w := n.pending[0]
		k := c.rng.Intn(len(w.ents) + 1)
		c.stats.TornWrites++
		c.tr.add(c.now, "torn-write %s keep=%d/%d", n.id, k, len(w.ents))
		c.persist(n, w.hs, w.ents[:k])
	}
	n.pending, n.waiting, n.core, n.up = nil, false, nil, false
	n.paused, n.held = false, nil
	n.cmdRecent, n.rp, n.rpAsked = nil, readPoint{}, 0
	// The store loses what it applied since its last flush. With
	// StoreLoss it is lost entirely (rebuilt from the log, only possible
	// while the log was never compacted).
	if bugAckBeforeFsync(c.cfg.Bugs) || (c.chance(c.cfg.Faults.StoreLoss) && n.disk.off == 0) {
		n.sm, n.applied, n.appliedTerm, n.conf, n.confIdx = newMachine(), 0, 0, n.initConf.Clone(), 0
		n.flushStore()
		c.stats.StoreLosses++
		c.tr.add(c.now, "store-lost %s", n.id)
	} else {
		n.loadStore()
		c.tr.add(c.now, "store-reverted %s applied=%d", n.id, n.applied)
	}
	n.downUntil = c.now + 1 + int64(c.rng.Intn(c.cfg.Faults.DownTicksMax))
	c.wl.nodeCrashed(n)
	cut := n.coord.cutUntil
	n.coord = coordNode{cutUntil: cut} // the key stays until its lease expires
	if c.cfg.Timing.Detector == repl.DetectorAdaptive {
		// The survivors' connections to n close, and redialing it is
		// refused: each learns soon that n's process is gone.
		for _, o := range c.nodes {
			if o != n {
				at := c.now + int64(c.cfg.Faults.DelayMin+c.rng.Intn(c.cfg.Faults.DelayMax-c.cfg.Faults.DelayMin+1))
				c.downs = append(c.downs, downReport{at: at, to: o.id, about: n.id})
			}
		}
	}
}

// downReport is a refused connection to come: node to learns that about's
// process is gone, at tick at.
type downReport struct {
	at        int64
	to, about repl.NodeID
}

// reportDown delivers due refusal reports (adaptive detector only) and,
// in the faulty phase, false ones about live nodes.
func (c *cluster) reportDown(faulty bool) {
	if c.cfg.Timing.Detector != repl.DetectorAdaptive {
		return
	}
	if faulty && c.chance(c.cfg.Faults.FalseDown) {
		to, about := c.nodes[c.rng.Intn(len(c.nodes))], c.nodes[c.rng.Intn(len(c.nodes))]
		if to != about {
			c.downs = append(c.downs, downReport{at: c.now, to: to.id, about: about.id})
			c.tr.add(c.now, "false-down %s about=%s", to.id, about.id)
		}
	}
	k := 0
	for _, r := range c.downs {
		if r.at > c.now {
			c.downs[k] = r
			k++
			continue
		}
		if i := c.nodeIndex(r.to); i >= 0 && c.nodes[i].up && !c.nodes[i].paused {
			n := c.nodes[i]
			c.tr.add(c.now, "peer-down %s about=%s", r.to, r.about)
			n.core.PeerDown(r.about)
		}
	}
	c.downs = c.downs[:k]
}

// logTerm is the term at index i of n's log as its runtime sees it: its
// pending (unsynced) writes laid over the durable log (internal/node asks
// its WAL). ok=false: not in the log (past its end, truncated, compacted).
func (c *cluster) logTerm(n *simNode, i uint64) (uint64, bool) {
	for k := len(n.pending) - 1; k >= 0; k-- {
		ents := n.pending[k].ents
		if len(ents) == 0 || ents[0].Index > i {
			continue
		}
		if last := ents[len(ents)-1].Index; i > last {
			return 0, false // truncated by this write
		}
		return ents[i-ents[0].Index].Term, true
	}
	t, err := n.log.Term(i)
	return t, err == nil && i > 0
}

func (c *cluster) downCount() int {
	k := 0
	for _, n := range c.nodes {
		if !n.up && !n.stopped {
			k++
		}
	}
	return k
}

// leader returns the index of the up node that is leader with the highest
// term, or -1.
func (c *cluster) leader() int {
	best, bestTerm := -1, uint64(0)
	for i, n := range c.nodes {
		if !n.up {
			continue
		}
		st := n.core.Status()
		if st.Role == repl.RoleLeader && (best < 0 || st.Term > bestTerm) {
			best, bestTerm = i, st.Term
		}
	}
	return best
}

func (c *cluster) expireFaults() {
	if c.partUntil > 0 && c.now >= c.partUntil {
		c.net.heal()
		c.partUntil, c.attacking = 0, false
		c.stats.Heals++
		c.tr.add(c.now, "heal")
	}
	for _, n := range c.nodes {
		if !n.up && !n.stopped && c.now >= n.downUntil {
			c.stats.Restarts++
			c.start(n)
		}
	}
	for _, n := range c.nodes {
		if n.up && n.paused && c.now >= n.pauseUntil {
			c.resume(n)
		}
	}
}

func (c *cluster) resume(n *simNode) {
	missed := c.now - n.pausedAt
	c.tr.add(c.now, "resume %s missed=%d held=%d", n.id, missed, len(n.held))
	n.paused = false
	// The runtime measures elapsed time: ticks missed while paused are
	// delivered at once, before any message, capped like internal/node's
	// catch-up at two election timeouts (every timer has expired by then).
	if limit := int64(2 * c.cfg.Timing.ElectionTicks); missed > limit {
		missed = limit
	}
	for i := int64(0); i < missed; i++ {
		n.core.Tick()
	}
	held := n.held
	n.held = nil
	for _, m := range held {
		c.stepNode(n, m)
	}
	c.completeWrites(n)
}

// healBound is how long the healed phase may take before convergence counts
// as a liveness failure: Config.HealTicks for the elections, the backtracking
// and the workload's last operations, plus the time the core's flow control
// needs to ship the backlog. A follower receives at most MaxInflight messages
// per round trip, each of at most MaxMsgBytes of entries (at least one entry),
// so a backlog of B entries takes ceil(B / (perMsg * MaxInflight)) round trips
// at the least. The backlog is bounded by the longest log minus the lowest
// commit index (committed entries are in every later leader's log, so a
// follower never needs them again) plus one entry per client and a no-op. A
// round trip is bounded, without slow links or loss, by two network delays, a
// disk write and the two ticks in which the leader and the follower act; the
// fixed HealTicks absorbs the occasional slow or lost message. With the
// default flow control (8 messages of 16 KiB) the allowance is one round trip;
// with the figure8 profile's (1 message of one entry) it is one round trip per
// entry, which is what that profile asks for: catch-up at the speed the
// configuration allows.
func (c *cluster) healBound() (int64, string) {
	maxLast, minCommit, maxEntry := uint64(0), uint64(math.MaxUint64), 1
	for _, n := range c.nodes {
		maxLast = max(maxLast, n.disk.LastIndex())
		for _, w := range n.pending {
			if k := len(w.ents); k > 0 {
				maxLast = max(maxLast, w.ents[k-1].Index)
			}
		}
		commit := n.disk.hs.Commit
		if n.core != nil {
			st := n.core.Status()
			maxLast = max(maxLast, st.LastIndex)
			commit = max(commit, st.Commit)
		}
		minCommit = min(minCommit, commit)
		for i := range n.disk.ents {
			maxEntry = max(maxEntry, n.disk.ents[i].Size())
		}
	}
	backlog := maxLast - min(minCommit, maxLast) + uint64(c.cfg.Workload.Clients) + 1
	perMsg := uint64(max(1, c.cfg.MaxMsgBytes/maxEntry))
	window := perMsg * uint64(c.cfg.MaxInflight)
	trips := (backlog + window - 1) / window
	rtt := uint64(2*c.cfg.Faults.DelayMax + c.cfg.Faults.DiskDelayMax + 2)
	extra := int64(trips * rtt)
	// Snapshots: a follower behind the leader's compaction point needs one
	// transfer (keys/4 + SnapDelayMax ticks) after a probe round trip, and a
	// failed one (SnapFail, a transfer cut by the heal) is asked again after
	// a heartbeat round; allow three attempts, and the transfers still on
	// their way at the heal.
	snap := int64(0)
	if c.cfg.Retention >= 0 && !bugAckBeforeFsync(c.cfg.Bugs) {
		keys := 0
		for _, n := range c.nodes {
			keys = max(keys, len(n.sm.kv))
		}
		per := int64(keys/4+c.snapDelayMax()) + int64(rtt) + int64(2*c.cfg.Timing.HeartbeatTicks)
		snap = 3 * per
		for _, t := range c.snaps {
			if t.core != nil {
				snap = max(snap, t.due-c.now+3*per)
			}
		}
	}
	return int64(c.cfg.HealTicks) + extra + snap, fmt.Sprintf("bound %d + %d round trips of %d ticks for a backlog of %d entries, %d per trip, + %d for snapshots",
		c.cfg.HealTicks, trips, rtt, backlog, window, snap)
}

func (c *cluster) healAll() {
	c.healing = true
	c.net.heal()
	c.partUntil = 0
	c.tr.add(c.now, "heal-all")
	for _, n := range c.nodes {
		if !n.up && !n.stopped {
			n.downUntil = c.now
		}
		if n.paused {
			n.pauseUntil = c.now
		}
	}
}

// newLeader may schedule a crash of a freshly elected leader (the "figure 8"
// pattern: leaders that die right after election leave divergent logs).
func (c *cluster) newLeader(n *simNode) {
	if c.healing || !c.chance(c.cfg.Faults.NewLeaderCrash) {
		return
	}
	n.crashAt = c.now + 1 + int64(c.rng.Intn(4))
	c.tr.add(c.now, "schedule-crash %s at=%d", n.id, n.crashAt)
}

func (c *cluster) injectFaults() {
	f := c.cfg.Faults
	for _, n := range c.nodes {
		if n.crashAt > 0 && c.now >= n.crashAt {
			n.crashAt = 0
			if n.up && c.downCount() < f.MaxDown {
				c.stats.NewLeaderCrashes++
				c.crash(n)
			}
		}
	}
	if c.partUntil == 0 && c.chance(f.Partition) {
		c.startPartition()
	}
	if c.chance(f.Crash) && c.downCount() < f.MaxDown {
		var cand []int
		if l := c.leader(); l >= 0 && c.chance(f.LeaderCrashBias) {
			cand = []int{l}
		} else {
			for i, n := range c.nodes {
				if n.up {
					cand = append(cand, i)
				}
			}
		}
		if len(cand) > 0 {
			c.crash(c.nodes[cand[c.rng.Intn(len(cand))]])
		}
	}
	if c.chance(f.Pause) {
		// At most one node is paused at a time.
		var cand []int
		for i, n := range c.nodes {
			if n.paused {
				cand = nil
				break
			}
			if n.up {
				cand = append(cand, i)
			}
		}
		if len(cand) > 0 {
			n := c.nodes[cand[c.rng.Intn(len(cand))]]
			n.paused, n.pausedAt = true, c.now
			n.pauseUntil = c.now + 1 + int64(c.rng.Intn(f.PauseTicksMax))
			n.pauseDrop = c.chance(f.PauseDrop)
			c.stats.Pauses++
			c.tr.add(c.now, "pause %s until=%d drop=%t", n.id, n.pauseUntil, n.pauseDrop)
		}
	}
	if c.chance(f.Transfer) {
		if l := c.leader(); l >= 0 && !c.nodes[l].paused {
			to := c.rng.Intn(len(c.nodes) - 1)
			if to >= l {
				to++
			}
			err := c.nodes[l].core.TransferLeadership(c.nodes[to].id)
			c.stats.Transfers++
			c.tr.add(c.now, "transfer %s -> %s: %v", c.nodes[l].id, c.nodes[to].id, err)
		}
	}
	if f.LeaseAttack > 0 && !c.attacking {
		c.leaseAttack()
	}
}

// leaseAttack isolates a leader at the moment another node campaigns against
// it: the situation leader stickiness exists for.
func (c *cluster) leaseAttack() {
	l := c.leader()
	if l < 0 || c.nodes[l].paused {
		return
	}
	ls := c.nodes[l].core.Status()
	if !ls.LeaseValid {
		return
	}
	for i, n := range c.nodes {
		if i == l || !n.up || n.paused {
			continue
		}
		st := n.core.Status()
		campaigning := st.Role == repl.RolePreCandidate || st.Role == repl.RoleCandidate
		fresh := campaigning && !n.campaigning
		n.campaigning = campaigning
		// A fresh campaign by a node whose log is as long as the leader's:
		// only stickiness stops it from winning.
		if fresh && st.Term >= ls.Term && st.LastIndex >= ls.LastIndex && c.chance(c.cfg.Faults.LeaseAttack) {
			var others []int
			for j := range c.nodes {
				if j != l {
					others = append(others, j)
				}
			}
			c.net.cut([]int{l}, others)
			c.partUntil = c.now + int64(c.cfg.Timing.ElectionTicks*3)
			c.attacking = true
			c.stats.LeaseAttacks++
			c.tr.add(c.now, "lease-attack isolate %s (campaigner %s) links: %s", c.nodes[l].id, n.id, c.net.describe())
			return
		}
	}
}

func (c *cluster) startPartition() {
	f := c.cfg.Faults
	kinds := f.PartitionKinds
	if len(kinds) == 0 {
		kinds = []PartitionKind{PartSymmetric, PartOneWay, PartBridge, PartIsolateLeader, PartLeaderOneWay}
	}
	k := kinds[c.rng.Intn(len(kinds))]
	nn := len(c.nodes)
	perm := c.rng.Perm(nn)
	switch k {
	case PartSymmetric:
		size := 1 + c.rng.Intn(nn-1)
		c.net.cut(perm[:size], perm[size:])
		c.stats.PartSymmetric++
	case PartOneWay:
		links := 1 + c.rng.Intn(nn)
		for i := 0; i < links; i++ {
			from, to := c.rng.Intn(nn), c.rng.Intn(nn)
			if from != to {
				c.net.blocked[from][to] = true
			}
		}
		c.stats.PartOneWay++
	case PartBridge:
		rest := perm[1:]
		half := len(rest) / 2
		c.net.cut(rest[:half], rest[half:])
		c.stats.PartBridge++
	case PartIsolateLeader:
		l := c.leader()
		if l < 0 {
			l = perm[0]
		}
		var others []int
		for j := 0; j < nn; j++ {
			if j != l {
				others = append(others, j)
			}
		}
		c.net.cut([]int{l}, others)
		c.stats.PartIsolateLeader++
	case PartLeaderOneWay:
		l := c.leader()
		if l < 0 {
			l = perm[0]
		}
		to := perm[0]
		if to == l {
			to = perm[1]
		}
		c.net.blocked[l][to] = true
		c.stats.PartLeaderOneWay++
	}
	c.partUntil = c.now + 1 + int64(c.rng.Intn(f.PartitionTicksMax))
	c.tr.add(c.now, "partition %s until=%d links: %s", k, c.partUntil, c.net.describe())
}

func (c *cluster) describeNodes() string {
	var parts []string
	for _, n := range c.nodes {
		if n.stopped {
			parts = append(parts, fmt.Sprintf("%s:stopped", n.id))
			continue
		}
		if !n.up {
			parts = append(parts, fmt.Sprintf("%s:down", n.id))
			continue
		}
		st := n.core.Status()
		cs, ci := n.core.Conf()
		parts = append(parts, fmt.Sprintf("%s:%s/t%d/lead=%s/first=%d/last=%d/commit=%d/applied=%d/paused=%t/conf=%d:%s",
			n.id, st.Role, st.Term, st.Lead, st.FirstIndex, st.LastIndex, st.Commit, n.applied, n.paused, ci, describeConf(cs)))
	}
	return strings.Join(parts, " ")
}

// converged reports whether the healed cluster has one leader that every node
// follows, and every node has applied everything the leader committed.
func (c *cluster) converged() bool {
	l := c.leader()
	if l < 0 {
		return false
	}
	ls := c.nodes[l].core.Status()
	if ls.Commit < ls.LastIndex {
		return false
	}
	for _, n := range c.members(l) {
		if n == nil || !n.up || n.paused || n.waiting || len(n.pending) > 0 {
			return false
		}
		st := n.core.Status()
		if st.Term != ls.Term || st.Lead != ls.ID || st.Commit != ls.Commit || n.applied != ls.Commit {
			return false
		}
	}
	return true
}

func describeEntry(e entry.Entry) string {
	if e.Kind == entry.KindCommand {
		if cmd, err := command.Decode(e.Value); err == nil {
			return fmt.Sprintf("%d/%d %s r%d", e.Index, e.Term, describeCmd(&cmd), e.RequestID)
		}
	}
	return fmt.Sprintf("%d/%d %s %q=%q r%d", e.Index, e.Term, e.Kind, e.Key, e.Value, e.RequestID)
}

func describeWrite(hs repl.HardState, ents []entry.Entry) string {
	s := ""
	if !hs.IsEmpty() {
		s = fmt.Sprintf("hs=%d/%s/%d", hs.Term, hs.Vote, hs.Commit)
	}
	if len(ents) > 0 {
		s += fmt.Sprintf(" ents=[%d..%d]t%d", ents[0].Index, ents[len(ents)-1].Index, ents[len(ents)-1].Term)
	}
	return s
}

// describeFollowers is the leader's view of its followers, if there is a leader.
func (c *cluster) describeFollowers() string {
	l := c.leader()
	if l < 0 {
		return ""
	}
	var parts []string
	for _, f := range c.nodes[l].core.Status().Followers {
		parts = append(parts, fmt.Sprintf("%s:%s/match=%d/next=%d/inflight=%d/learner=%t/contact=%d", f.ID, f.State, f.Match, f.Next, f.Inflight, f.Learner, f.TicksSinceContact))
	}
	return fmt.Sprintf("; leader %s sees %s", c.nodes[l].id, strings.Join(parts, " "))
}
