// Package sim is Trireme's deterministic cluster simulator. It runs whole
// clusters (3 or 5 nodes) of the real protocol core (internal/repl) in one
// goroutine, on a virtual clock counted in ticks, with a seeded network, a
// simulated disk, process faults and a random client workload, and it checks
// the replication guarantees after every step and at the end of a run.
//
// What it promises:
//
//   - Determinism: everything that affects a run comes from one seeded
//     *rand.Rand (Config.Seed). No wall clock, no goroutines, no map iteration
//     order reaches the trace. The same Config gives a byte-identical trace,
//     whose SHA-256 is Result.TraceHash.
//   - Checks: at most one leader per term; log matching over durable logs;
//     leader completeness; committed entries are never lost or changed (every
//     node applies the same entry at the same index); majority-, sync- and
//     quorum-semi-sync-acknowledged writes survive; acknowledged writes that are
//     lost are all in some node's rollback journal; linearizable reads are
//     linearizable (porcupine, per key); stale reads return a written value;
//     after a final healed period, a leader exists and all replicas converge.
//     Commands with idempotency keys apply at most once (retried counter
//     increments: acknowledged ones counted, unknown ones at most once); the
//     compare-and-set register is linearizable; session reads give
//     read-your-writes and monotonic reads and report a lost write as
//     ErrRolledBack; bounded reads are no staler than their bound.
//   - A violation is returned as a *Violation in Result.Err, with the seed and
//     the tail of the trace; ReplayCommand gives the one-line replay command.
//
// See DESIGN.md for the model and the exact rules.
package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/trireme-db/trireme/internal/repl"
)

// ErrInvalidConfig is returned (wrapped) by Config.Validate.
var ErrInvalidConfig = errors.New("sim: invalid config")

// Bugs are deliberate protocol bugs, used only to prove the checks can fail.
// They take effect only in binaries built with the build tag `replbugs`;
// Validate refuses them otherwise.
type Bugs struct {
	VoteWithoutLogCheck    bool // core: grant votes without the up-to-date log check
	CommitOldTerm          bool // core: commit old-term entries by counting replicas
	LeaseWithoutStickiness bool // core: vote while a live leader is heard (breaks leases)
	AckBeforeFsync         bool // simulated runtime: send and acknowledge before the disk write is durable
	NoProbeResend          bool // core: never resend a lost probe (a follower stays behind)
	TwoConfChanges         bool // core: start a configuration change while another is uncommitted
	SnapshotWithoutChecks  bool // core: install stale snapshots, keep the log without the term check
	CompactUndurable       bool // simulated runtime: compact the log up to the applied index, not the durable one
	SessionReadEarly       bool // simulated runtime: serve a session read at the node asked without session.Check
	DuplicateApply         bool // simulated state machine: ignore the idempotency table (a retried command applies again)
	BoundedNoCheck         bool // simulated runtime: serve a bounded read from any read point, without session.WithinBound
	// SettleEarly: the simulated leader consults session.Settle before it
	// has committed an entry of its own term, as internal/node does at the
	// time of writing (see DESIGN.md: a real bug this simulator found).
	SettleEarly bool
	// AdaptiveUnderLease: core: the adaptive detector's deadline is not
	// held at or above ElectionTicks, and stickiness follows it, so the
	// leader's lease outlasts the timeout followers adapted to (needs
	// Timing.Detector adaptive).
	AdaptiveUnderLease bool
}

// Any reports whether any bug is enabled.
func (b Bugs) Any() bool {
	return b.VoteWithoutLogCheck || b.CommitOldTerm || b.LeaseWithoutStickiness || b.AckBeforeFsync || b.NoProbeResend ||
		b.TwoConfChanges || b.SnapshotWithoutChecks || b.CompactUndurable || b.SessionReadEarly || b.DuplicateApply || b.BoundedNoCheck || b.SettleEarly ||
		b.AdaptiveUnderLease
}

// PartitionKind is a shape of network partition.
type PartitionKind uint8

// Partition kinds.
const (
	PartSymmetric     PartitionKind = iota // two halves, no traffic between them
	PartOneWay                             // random directed links blocked
	PartBridge                             // two halves plus one node that sees both
	PartIsolateLeader                      // the current leader cut off from everyone
	PartLeaderOneWay                       // the leader's messages to one follower are lost
)

func (k PartitionKind) String() string {
	switch k {
	case PartSymmetric:
		return "symmetric"
	case PartOneWay:
		return "one-way"
	case PartBridge:
		return "bridge"
	case PartIsolateLeader:
		return "isolate-leader"
	case PartLeaderOneWay:
		return "leader-one-way"
	}
	return fmt.Sprintf("partition(%d)", uint8(k))
}

// Faults is a fault mix. Probabilities are per tick unless said otherwise.
type Faults struct {
	Partition         float64         // start a partition (when none is active)
	PartitionKinds    []PartitionKind // kinds to draw from; empty = all
	PartitionTicksMax int             // a partition lasts 1..this many ticks
	Crash             float64         // crash one node
	LeaderCrashBias   float64         // probability that a crash picks the leader
	MaxDown           int             // at most this many nodes down at once (0 = nodes-1)
	DownTicksMax      int             // a crashed node restarts after 1..this many ticks
	CrashMidReady     float64         // per finished disk write: crash before sending/applying
	TornWrite         float64         // per crash with a pending write: keep a prefix of it
	StoreLoss         float64         // per crash: the applied store is lost (rebuilt from the log)
	Pause             float64         // pause one node (no ticks, no receive)
	PauseTicksMax     int             // a pause lasts 1..this many ticks
	PauseDrop         float64         // per pause: messages to the paused node are dropped (else queued)
	Drop              float64         // per message
	Duplicate         float64         // per message
	DelayMin          int             // per message delay in ticks, >= 1
	DelayMax          int             // per message delay in ticks, >= DelayMin
	SlowLink          float64         // per message: add up to 4*DelayMax ticks (reordering)
	DiskDelayMax      int             // a disk write completes after 0..this many ticks
	DriftEvery        int             // 0 = none; else each node's clock gains or loses a tick every DriftEvery..2*DriftEvery ticks
	LeaseAttack       float64         // targeted: when a follower campaigns against a live leader, isolate that leader
	NewLeaderCrash    float64         // targeted: per new leader, crash it 1..4 ticks after its election
	Transfer          float64         // ask the leader to hand leadership to a random follower
	// Membership, compaction and snapshots (see DESIGN.md).
	Membership       float64 // start a membership change (add, promote, remove, re-add)
	ConfBurst        float64 // per accepted change: try another one at once (must be refused while uncommitted)
	StoreFlushMax    int     // the store persists its applied state every 1..this many ticks (0 = 20)
	SnapFail         float64 // per snapshot transfer: lost in flight (reported as failed)
	SnapDup          float64 // per snapshot transfer: a second copy arrives late (never reported)
	SnapDelayMax     int     // a snapshot transfer takes size/4 + DelayMin..this many ticks (0 = 4*DelayMax)
	CrashMidSnapshot float64 // per snapshot install: crash before the store swap, or after it before the log reset / RestoreSnapshot
	// FalseDown (adaptive detector only): per tick, tell a random node that
	// a live peer's process is gone (a refusal from something in between).
	FalseDown float64
	// CoordCut (coordinator runs only): per tick, cut one node off from the
	// coordinator for 1..2*CoordTTL ticks; CoordDown: the coordinator
	// answers nobody for as long.
	CoordCut  float64
	CoordDown float64
}

// Workload is the client workload.
type Workload struct {
	Clients            int     // concurrent clients, each with at most one operation in flight
	OpRate             float64 // probability per tick that an idle client starts an operation
	Keys               int     // distinct keys
	Puts               int     // weight
	Deletes            int     // weight
	LinReads           int     // weight: linearizable reads through the core
	StaleReads         int     // weight: reads from any node's applied state
	ClientTimeoutTicks int     // an operation with no answer after this long is abandoned
	RandomStart        float64 // probability that an operation starts at a random node, not the last leader
	ReadIndexShare     float64 // share of linearizable reads that ask for a heartbeat round (never the lease)
	// QuietDuringPartition: while a partition (other than a lease attack)
	// is active, clients issue reads instead of writes.
	QuietDuringPartition bool

	// Clients of state-machine commands, sessions and bounded reads (each
	// with at most one operation in flight; see DESIGN.md).
	ExtraOpRate      float64 // probability per tick that an idle one of these starts an operation (0 = OpRate)
	CounterClients   int     // INCR of one counter with idempotency keys, retried through failures
	SessionClients   int     // writes (often async) and session reads at random nodes
	CASClients       int     // compare-and-set (CondIndex) of one register, and linearizable reads of it
	BoundedClients   int     // bounded-staleness reads at random nodes
	IdemWindowTicks  int     // the idempotency window leaders stamp into commands; retries stop after half of it
	SessionWaitTicks int     // a session read waits this long at the node asked before it is forwarded (also a bounded read's wait for its point to be applied)
}

// Timing is the core's timing, in ticks.
type Timing struct {
	HeartbeatTicks int
	ElectionTicks  int
	LeaseTicks     int
	DriftTicks     int
	ProposalTicks  int // DefaultProposalTimeoutTicks
	// Detector is the core's failure detector. With DetectorAdaptive,
	// MaxElectionTicks and PauseTicks are its bounds, crashes are reported
	// to the survivors (repl.Core.PeerDown) as a refused connection would
	// be, and Faults.FalseDown reports live nodes as down.
	Detector         repl.Detector
	MaxElectionTicks int
	PauseTicks       int
	// Coordinator: leadership is chosen by a modelled external coordinator
	// (coordinator.go) whose key lease lasts CoordTTL ticks.
	Coordinator bool
	CoordTTL    int
}

// Config configures one simulation run.
type Config struct {
	Seed      int64  // seeds every random choice of the run
	Nodes     int    // cluster size: 3 or 5
	Steps     int    // ticks of the faulty phase
	HealTicks int    // maximum ticks of the final healed phase (>= 50)
	Profile   string // name of the fault profile (informational)
	Faults    Faults
	Workload  Workload
	Timing    Timing
	Bugs      Bugs
	// MaxMsgBytes is the core's bound on entry bytes per MsgApp (small values
	// force catch-up in many messages).
	MaxMsgBytes int
	// MaxInflight is the core's MaxInflightMsgs.
	MaxInflight int
	// Retention: each node keeps at least the last Retention entries of its
	// log when it compacts (below its store's durable applied index); < 0
	// never compacts. ConfigForSeed draws it in 0..20.
	Retention int
	// EndToEndOnly skips the checks that look inside a node's runtime
	// (ack-not-durable, apply-not-durable), to show that the end-to-end
	// checks alone catch a bug.
	EndToEndOnly bool

	VisualizePath string // if set, a linearizability failure writes porcupine's HTML visualization here

	KeepTrace bool         // keep the whole trace text in Result.Trace
	TraceTail int          // trace lines kept for a failure report
	Logger    *slog.Logger // nil = discard; debug-level trace lines if set
}

// DefaultConfig is a 3-node run with the "mixed" profile.
func DefaultConfig() Config {
	c := Config{
		Seed:      1,
		Nodes:     3,
		Steps:     DefaultSteps,
		HealTicks: 400,
		Timing:    DefaultTiming(),
		Workload:  DefaultWorkload(),
		TraceTail: 60,
		Retention: 10,
	}
	Profiles()[0].Apply(&c)
	return c
}

// DefaultSteps is the length of the faulty phase of a default run.
const DefaultSteps = 1000

// DefaultTiming is the core timing used by the simulator.
func DefaultTiming() Timing {
	return Timing{HeartbeatTicks: 2, ElectionTicks: 12, LeaseTicks: 8, DriftTicks: 2, ProposalTicks: 60}
}

// DefaultWorkload is the default client workload.
func DefaultWorkload() Workload {
	return Workload{Clients: 4, OpRate: 0.3, Keys: 3, Puts: 6, Deletes: 1, LinReads: 4, StaleReads: 2, ClientTimeoutTicks: 80, RandomStart: 0.1, ReadIndexShare: 0.25,
		ExtraOpRate: 0.15, CounterClients: 1, SessionClients: 1, CASClients: 2, BoundedClients: 1, IdemWindowTicks: 400, SessionWaitTicks: 4}
}

// Validate checks c and names the first bad field.
func (c Config) Validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, why) }
	switch {
	case c.Nodes != 3 && c.Nodes != 5:
		return bad("Nodes", "must be 3 or 5")
	case c.Steps < 1:
		return bad("Steps", "must be >= 1")
	case c.HealTicks < 50:
		return bad("HealTicks", "must be >= 50")
	case c.Faults.DelayMin < 1:
		return bad("Faults.DelayMin", "must be >= 1")
	case c.Faults.DelayMax < c.Faults.DelayMin:
		return bad("Faults.DelayMax", "must be >= Faults.DelayMin")
	case c.Faults.DiskDelayMax < 0:
		return bad("Faults.DiskDelayMax", "must be >= 0")
	case c.Faults.PartitionTicksMax < 1:
		return bad("Faults.PartitionTicksMax", "must be >= 1")
	case c.Faults.DownTicksMax < 1:
		return bad("Faults.DownTicksMax", "must be >= 1")
	case c.Faults.PauseTicksMax < 1:
		return bad("Faults.PauseTicksMax", "must be >= 1")
	case c.Faults.MaxDown < 0 || c.Faults.MaxDown >= c.Nodes:
		return bad("Faults.MaxDown", "must be in [0, Nodes)")
	case c.Workload.Clients < 0:
		return bad("Workload.Clients", "must be >= 0")
	case c.Workload.Keys < 1:
		return bad("Workload.Keys", "must be >= 1")
	case c.Workload.Puts+c.Workload.Deletes+c.Workload.LinReads+c.Workload.StaleReads <= 0:
		return bad("Workload", "needs a positive operation weight")
	case c.Workload.ReadIndexShare < 0 || c.Workload.ReadIndexShare > 1:
		return bad("Workload.ReadIndexShare", "must be in [0, 1]")
	case c.Workload.RandomStart < 0 || c.Workload.RandomStart > 1:
		return bad("Workload.RandomStart", "must be in [0, 1]")
	case c.Workload.ClientTimeoutTicks < 1:
		return bad("Workload.ClientTimeoutTicks", "must be >= 1")
	case c.Workload.CounterClients < 0 || c.Workload.SessionClients < 0 || c.Workload.CASClients < 0 || c.Workload.BoundedClients < 0:
		return bad("Workload", "client counts must be >= 0")
	case c.Workload.CounterClients > 0 && c.Workload.IdemWindowTicks < 2:
		return bad("Workload.IdemWindowTicks", "must be >= 2 with counter clients")
	case (c.Workload.SessionClients > 0 || c.Workload.BoundedClients > 0) && c.Workload.SessionWaitTicks < 1:
		return bad("Workload.SessionWaitTicks", "must be >= 1 with session or bounded clients")
	case c.Timing.HeartbeatTicks < 1:
		return bad("Timing.HeartbeatTicks", "must be >= 1")
	case c.Timing.ElectionTicks <= c.Timing.HeartbeatTicks:
		return bad("Timing.ElectionTicks", "must be > HeartbeatTicks")
	case c.Timing.LeaseTicks < 0 || c.Timing.LeaseTicks >= c.Timing.ElectionTicks-c.Timing.DriftTicks:
		return bad("Timing.LeaseTicks", "must be in [0, ElectionTicks-DriftTicks)")
	case c.MaxMsgBytes < 1:
		return bad("MaxMsgBytes", "must be >= 1")
	case c.MaxInflight < 1:
		return bad("MaxInflight", "must be >= 1")
	case c.Timing.ProposalTicks < 1:
		return bad("Timing.ProposalTicks", "must be >= 1")
	case c.Bugs.Any() && !bugsCompiled:
		return bad("Bugs", "need a binary built with -tags replbugs")
	}
	return nil
}

// Profile is a named fault mix, with optional overrides of the core timing,
// the message size bound and the workload.
type Profile struct {
	Name        string
	Faults      Faults
	Timing      *Timing   // nil = DefaultTiming()
	Workload    *Workload // nil = DefaultWorkload()
	MaxMsgBytes int       // 0 = DefaultMaxMsgBytes
	MaxInflight int       // 0 = DefaultMaxInflight
}

// Apply sets c's fault mix and overrides from p.
func (p Profile) Apply(c *Config) {
	c.Profile, c.Faults = p.Name, p.Faults
	c.Timing, c.Workload, c.MaxMsgBytes = DefaultTiming(), DefaultWorkload(), DefaultMaxMsgBytes
	if p.Timing != nil {
		c.Timing = *p.Timing
	}
	if p.Workload != nil {
		c.Workload = *p.Workload
	}
	if p.MaxMsgBytes > 0 {
		c.MaxMsgBytes = p.MaxMsgBytes
	}
	c.MaxInflight = DefaultMaxInflight
	if p.MaxInflight > 0 {
		c.MaxInflight = p.MaxInflight
	}
}

// DefaultMaxMsgBytes is the core's MaxMsgBytes unless a profile says otherwise.
const DefaultMaxMsgBytes = 16 << 10

// DefaultMaxInflight is the core's MaxInflightMsgs unless a profile says otherwise.
const DefaultMaxInflight = 8

// Profiles returns the fault profiles, in a fixed order. A seed picks one
// (see ConfigForSeed).
func Profiles() []Profile {
	base := Faults{
		PartitionTicksMax: 60, DownTicksMax: 50, PauseTicksMax: 30,
		DelayMin: 1, DelayMax: 3, DiskDelayMax: 2,
		TornWrite: 0.5, StoreLoss: 0.3, PauseDrop: 0.5,
		Membership: 0.01, ConfBurst: 0.3, StoreFlushMax: 20,
		SnapFail: 0.1, SnapDup: 0.2, CrashMidSnapshot: 0.05,
		FalseDown: 0.005, CoordCut: 0.004, CoordDown: 0.002,
	}
	with := func(f func(*Faults)) Faults { x := base; f(&x); return x }
	return []Profile{
		{Name: "mixed", Faults: with(func(f *Faults) {
			f.Partition, f.Crash, f.Pause, f.Transfer = 0.02, 0.01, 0.01, 0.005
			f.LeaderCrashBias, f.CrashMidReady = 0.5, 0.002
			f.Drop, f.Duplicate, f.SlowLink = 0.02, 0.02, 0.02
		})},
		{Name: "calm", Faults: with(func(f *Faults) {
			f.Drop, f.Duplicate, f.SlowLink, f.Transfer = 0.005, 0.005, 0.01, 0.01
		})},
		{Name: "lossy", Faults: with(func(f *Faults) {
			f.Drop, f.Duplicate, f.SlowLink = 0.15, 0.1, 0.1
			f.DelayMax = 5
		})},
		{Name: "partitions", Faults: with(func(f *Faults) {
			f.Partition = 0.04
			f.Drop, f.SlowLink = 0.01, 0.02
		})},
		{Name: "crashes", Faults: with(func(f *Faults) {
			f.Crash, f.LeaderCrashBias, f.CrashMidReady, f.DownTicksMax = 0.03, 0.5, 0.01, 40
			f.Drop = 0.01
		})},
		{Name: "leader-crashes", Faults: with(func(f *Faults) {
			f.Crash, f.LeaderCrashBias, f.CrashMidReady, f.DownTicksMax = 0.05, 0.9, 0.01, 25
			f.Partition, f.PartitionKinds, f.PartitionTicksMax = 0.02, []PartitionKind{PartIsolateLeader}, 30
			f.DiskDelayMax = 3
		})},
		{Name: "pauses", Faults: with(func(f *Faults) {
			f.Pause, f.PauseTicksMax = 0.04, 40
			f.DriftEvery = 40
			f.Drop, f.SlowLink = 0.01, 0.02
		})},
		{Name: "figure8", Faults: with(func(f *Faults) {
			f.Crash, f.LeaderCrashBias, f.CrashMidReady, f.DownTicksMax, f.MaxDown = 0.03, 0.9, 0.02, 20, 2
			f.NewLeaderCrash = 0.5
			f.Partition, f.PartitionKinds, f.PartitionTicksMax = 0.04, []PartitionKind{PartIsolateLeader, PartSymmetric}, 25
			f.Drop, f.SlowLink, f.DiskDelayMax = 0.05, 0.05, 3
		}), MaxMsgBytes: 1, MaxInflight: 1},
		{Name: "lease", Faults: with(func(f *Faults) {
			f.Pause, f.PauseTicksMax, f.PauseDrop = 0.005, 30, 1
			f.Partition, f.PartitionKinds, f.PartitionTicksMax = 0.05, []PartitionKind{PartLeaderOneWay, PartLeaderOneWay, PartOneWay}, 150
			f.LeaseAttack, f.DelayMax, f.Transfer = 1, 2, 0.01
		}), Timing: &Timing{HeartbeatTicks: 2, ElectionTicks: 40, LeaseTicks: 34, DriftTicks: 2, ProposalTicks: 60},
			Workload: &Workload{Clients: 8, OpRate: 0.4, Keys: 1, Puts: 3, LinReads: 8, StaleReads: 1, ClientTimeoutTicks: 15, RandomStart: 1, QuietDuringPartition: true}},
		{Name: "chaos", Faults: with(func(f *Faults) {
			f.Partition, f.Crash, f.Pause, f.Transfer = 0.03, 0.02, 0.02, 0.01
			f.LeaderCrashBias, f.CrashMidReady = 0.6, 0.005
			f.Drop, f.Duplicate, f.SlowLink = 0.05, 0.05, 0.05
			f.DiskDelayMax, f.DriftEvery = 3, 50
		})},
	}
}

// ProfileByName returns the named profile.
func ProfileByName(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// ConfigForSeed derives a run's configuration from its seed: the cluster size
// (3 or 5) and the fault profile are chosen by the seed, so one seed is enough
// to replay a run. steps <= 0 means DefaultSteps.
func ConfigForSeed(seed int64, steps int) Config {
	c := DefaultConfig()
	c.Seed = seed
	if steps > 0 {
		c.Steps = steps
	}
	u := uint64(seed)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	u ^= u >> 29
	if u&1 == 1 {
		c.Nodes = 5
	}
	ps := Profiles()
	ps[(u>>8)%uint64(len(ps))].Apply(&c)
	c.Retention = int((u >> 24) % 21)
	if (u>>40)&1 == 1 {
		c.Timing.Adaptive((u >> 41) % 5)
	}
	if (u>>44)%4 == 0 {
		c.Timing.UseCoordinator()
	}
	return c
}

// UseCoordinator makes an external coordinator choose the leaders, with a
// key lease of three election timeouts.
func (t *Timing) UseCoordinator() {
	t.Coordinator = true
	t.CoordTTL = 3 * t.ElectionTicks
}

// Adaptive switches t to the adaptive failure detector, with an upper
// bound of three times the lower one and pause ticks of tolerated silence.
func (t *Timing) Adaptive(pause uint64) {
	t.Detector = repl.DetectorAdaptive
	t.MaxElectionTicks = 3 * t.ElectionTicks
	t.PauseTicks = int(pause)
}

// Violation is a broken guarantee.
type Violation struct {
	Invariant string // short name, e.g. "log-matching"
	Tick      int64
	Detail    string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("sim: invariant %q violated at tick %d: %s", v.Invariant, v.Tick, v.Detail)
}

// Result is the outcome of one run.
type Result struct {
	Seed       int64
	Nodes      int
	Profile    string
	TraceHash  string   // hex SHA-256 of the whole trace
	TraceLines int      // number of trace lines
	Trace      string   // the whole trace, if Config.KeepTrace
	TraceTail  []string // the last Config.TraceTail lines
	Stats      Stats
	Err        error // nil, or a *Violation
}

// ReplayCommand is the one-line command that replays seed.
func ReplayCommand(seed int64, steps int, tags string) string {
	s := "go test ./internal/sim -run 'TestSimulation$' -count=1"
	if tags != "" {
		s = "go test -tags " + tags + " ./internal/sim -run 'TestSimulation$' -count=1"
	}
	s += fmt.Sprintf(" -sim.seed=%d", seed)
	if steps > 0 && steps != DefaultSteps {
		s += fmt.Sprintf(" -sim.steps=%d", steps)
	}
	return s + " -sim.v"
}

// Stats counts what a run exercised. All fields are counts.
type Stats struct {
	Runs                  int
	Ticks                 int
	MsgsSent              int
	MsgsDelivered         int
	Drops                 int
	Duplicates            int
	SlowMsgs              int
	StepErrors            int
	PartSymmetric         int
	PartOneWay            int
	PartLeaderOneWay      int
	PartBridge            int
	PartIsolateLeader     int
	LeaseAttacks          int
	Heals                 int
	Crashes               int
	CrashesMidReady       int
	NewLeaderCrashes      int
	TornWrites            int
	StoreLosses           int
	Restarts              int
	Pauses                int
	DriftTicks            int
	LeaderChanges         int
	Transfers             int
	MaxTerm               int
	HealTicks             int // ticks from heal-all to convergence, summed over runs
	MaxHealTicks          int // the longest of those
	Discarded             int
	PutsAsync             int
	PutsSemi1             int
	PutsSemi2             int
	PutsSync              int
	PutsMajority          int
	Deletes               int
	WritesOK              int
	WritesOpen            int
	WritesRefused         int
	Redirects             int
	LinReads              int
	LinReadsOK            int
	LinReadsFailed        int
	StaleReads            int
	ReadsChecked          int
	LostAcked             int
	JournaledApplied      int
	LinUnknown            int
	Incrs                 int
	IncrRetries           int
	IncrAcked             int
	IncrUnknown           int
	IdemDuplicates        int
	IdemShortcuts         int
	IdemExpired           int
	CASOps                int
	CASApplied            int
	CASCondFailed         int
	CASChecked            int
	SessionWrites         int
	SessionWritesRefused  int // at a leader of an older term than the token
	SessionReads          int
	SessionLocal          int
	SessionForwarded      int
	SessionRolledBack     int
	SessionReadsChecked   int
	SessionFinalRollbacks int
	BoundedReads          int
	BoundedLocal          int
	BoundedForwarded      int
	BoundedChecked        int
	ReadPointsAsked       int
	Applied               int
	StoreFlushes          int
	Compactions           int
	SnapshotsSent         int
	SnapshotsDup          int
	SnapshotsFailed       int
	SnapshotsStale        int
	SnapshotsKeepLog      int
	SnapshotsReset        int
	CrashesMidSnap        int
	RestartInstalls       int
	ConfProposed          int
	ConfRefused           int
	ConfCommitted         int
	LearnersAdded         int
	Promotions            int
	Removals              int
	ReAdds                int
	LeaderRemovals        int
	NodesStopped          int
	MaxVoters             int
}

// Add adds o into s.
func (s *Stats) Add(o Stats) {
	sv, ov := reflect.ValueOf(s).Elem(), reflect.ValueOf(o)
	for i := 0; i < sv.NumField(); i++ {
		if name := sv.Type().Field(i).Name; name == "MaxTerm" || name == "MaxHealTicks" || name == "MaxVoters" {
			if ov.Field(i).Int() > sv.Field(i).Int() {
				sv.Field(i).SetInt(ov.Field(i).Int())
			}
			continue
		}
		sv.Field(i).SetInt(sv.Field(i).Int() + ov.Field(i).Int())
	}
}

// String prints every counter as name=value on one line, in field order.
func (s Stats) String() string {
	var b strings.Builder
	v := reflect.ValueOf(s)
	for i := 0; i < v.NumField(); i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", v.Type().Field(i).Name, v.Field(i).Int())
	}
	return b.String()
}
