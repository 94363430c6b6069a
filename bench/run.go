package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
)

// Profile sets how much the benchmark measures and for how long.
type Profile struct {
	Name           string
	ValueSizes     []int         // bytes
	Clients        []int         // concurrent closed-loop clients
	Warmup         time.Duration // per load run, not measured
	Duration       time.Duration // per load run, measured
	Keys           int           // key space of the load runs (preloaded)
	FailoverTrials int
	CatchUpBytes   int64
	CatchUpValue   int // value size of the catch-up writes, bytes
	MemoryValues   int // 100-byte values for the memory figure
	DiskBytes      int64
	Fsyncs         int
	// TargetRounds is how many interleaved rounds of each target pair (a
	// Trireme write variant and its peer, 64 clients) run after a value
	// size's main load runs; the targets are judged on their medians. 0:
	// judged on the main runs alone.
	TargetRounds int
	// The parts of issue 16 (running for months). LearnerTrials is how
	// many runs of each stale-read setup the learners part makes (at
	// the first value size, Warmup and Duration each). ReplicaBytes is
	// what the cluster holds when the replica part adds a read replica,
	// SnapshotBytes what the snapshot part writes while a follower is
	// down before its first catch-up (both in values of CatchUpValue
	// bytes). CatchUpTrials is how many read replicas the replica part
	// adds, and how many times the snapshot part's follower catches up,
	// one after the other on the same cluster. PhaseWindow is how long
	// their background writes are measured before each catch-up starts.
	LearnerTrials int
	ReplicaBytes  int64
	SnapshotBytes int64
	CatchUpTrials int
	PhaseWindow   time.Duration
	// The false-failover part (issue 18): FalseFailoverDuration is how
	// long each of its runs writes at full load; in the run with stalls,
	// the leader is stopped for 200 ms every StallEvery (the first after
	// half of it).
	FalseFailoverDuration time.Duration
	StallEvery            time.Duration
	// The multileader part: MLWriteRate is the paced writer's rate
	// (writes/s over the nodes) while one node is cut off from the others
	// for MLPartition, MLPartitionReps times.
	MLWriteRate     int
	MLPartition     time.Duration
	MLPartitionReps int
	// The leaderless part (issue 20): LLRounds is how many interleaved
	// rounds its throughput comparison and its idle-CPU windows run.
	// LLRepairKeys keys of LLRepairValue bytes are what a wiped
	// leaderless node gets back by anti-entropy, and a single-leader
	// follower that missed them by catch-up, LLRepairTrials times each.
	// LLIdleWindow is each idle-CPU window.
	LLRounds       int
	LLRepairKeys   int
	LLRepairValue  int
	LLRepairTrials int
	LLIdleWindow   time.Duration
}

// Profiles returns the named profiles: "tiny" (the CI smoke test),
// "short" (about a minute) and "full" (under 20 minutes).
func Profiles() map[string]Profile {
	return map[string]Profile{
		"tiny": {Name: "tiny", ValueSizes: []int{100}, Clients: []int{4}, Warmup: 100 * time.Millisecond,
			Duration: time.Second, Keys: 1000, FailoverTrials: 1, CatchUpBytes: 2 << 20, CatchUpValue: 16 << 10,
			MemoryValues: 2000, DiskBytes: 16 << 20, Fsyncs: 50, TargetRounds: 1,
			LearnerTrials: 1, ReplicaBytes: 4 << 20, SnapshotBytes: 4 << 20, CatchUpTrials: 1, PhaseWindow: 500 * time.Millisecond,
			FalseFailoverDuration: 3 * time.Second, StallEvery: 2 * time.Second,
			MLWriteRate: 500, MLPartition: 2 * time.Second, MLPartitionReps: 1,
			LLRounds: 1, LLRepairKeys: 2000, LLRepairValue: 100, LLRepairTrials: 1, LLIdleWindow: 2 * time.Second},
		"short": {Name: "short", ValueSizes: []int{100}, Clients: []int{1, 64}, Warmup: 200 * time.Millisecond,
			Duration: time.Second, Keys: 10000, FailoverTrials: 3, CatchUpBytes: 32 << 20, CatchUpValue: 16 << 10,
			MemoryValues: 20000, DiskBytes: 64 << 20, Fsyncs: 200,
			LearnerTrials: 3, ReplicaBytes: 256 << 20, SnapshotBytes: 256 << 20, CatchUpTrials: 3, PhaseWindow: 3 * time.Second,
			FalseFailoverDuration: 20 * time.Second, StallEvery: 10 * time.Second,
			MLWriteRate: 500, MLPartition: 10 * time.Second, MLPartitionReps: 3,
			LLRounds: 3, LLRepairKeys: 80000, LLRepairValue: 1024, LLRepairTrials: 3, LLIdleWindow: 10 * time.Second},
		"full": {Name: "full", ValueSizes: []int{100, 1024}, Clients: []int{1, 16, 64, 256}, Warmup: 500 * time.Millisecond,
			Duration: 3 * time.Second, Keys: 10000, FailoverTrials: 20, CatchUpBytes: 1 << 30, CatchUpValue: 16 << 10,
			MemoryValues: 1000000, DiskBytes: 1 << 30, Fsyncs: 1000, TargetRounds: 5,
			LearnerTrials: 5, ReplicaBytes: 2 << 30, SnapshotBytes: 1 << 30, CatchUpTrials: 3, PhaseWindow: 5 * time.Second,
			FalseFailoverDuration: 5 * time.Minute, StallEvery: 30 * time.Second,
			MLWriteRate: 500, MLPartition: 10 * time.Second, MLPartitionReps: 5,
			LLRounds: 5, LLRepairKeys: 200000, LLRepairValue: 1024, LLRepairTrials: 3, LLIdleWindow: 30 * time.Second},
	}
}

// Config configures a benchmark run.
type Config struct {
	Profile Profile
	// Systems to measure: any of AllSystems. "patroni" (PostgreSQL with
	// Patroni) takes part in the failover part only; in it, "redis" is
	// Redis with Sentinel.
	Systems []string
	// Parts to run: any of AllParts.
	Parts []string
	// TriremeBin is the trireme binary; empty = build it from Repo.
	TriremeBin string
	// NodeProcs is the GOMAXPROCS of each Trireme node and each etcd
	// member: 0 = Go's default (every core), as `trireme up` does; -1 =
	// this machine's cores shared among a cluster's processes (less CPU
	// per operation, longer latency tails; the command's default); N > 0
	// = N. Redis is single-threaded either way.
	NodeProcs int
	// Repo is the checkout of github.com/trireme-db/trireme (to build the binary).
	Repo string
	// WorkDir holds every system's data (a temporary directory if empty;
	// removed at the end unless Keep).
	WorkDir string
	Keep    bool
	// Progress receives one line per step.
	Progress io.Writer
	// Seed seeds the load generator.
	Seed uint64
	// Only, if set, keeps the load runs for which it returns true, given
	// "system/workload/variant" (e.g. "trireme/write/async"). A run of the
	// cluster without peer TLS (TriremeNoTLS) is kept if it returns true
	// for its own name or for its twin's ("trireme/..."), so a selection
	// of Trireme's runs is measured both ways.
	Only func(run string) bool
	// PeerTLS is how the Trireme nodes talk to each other: "on" (mutual
	// TLS, as `trireme up` runs them; also for ""), "off"
	// (--insecure-peers, for every Trireme part), or "both": a second
	// cluster without peer TLS, system TriremeNoTLS, runs next to the one
	// with it, every selected Trireme load run and target round runs on
	// both back to back, and the report compares them. Failover, catch-up
	// and memory run with TLS only.
	PeerTLS string
}

// AllSystems lists the systems a run may measure.
var AllSystems = []string{"trireme", "redis", "etcd", "patroni"}

// AllParts lists the parts, in the order they run.
var AllParts = []string{"disk", "load", "failover", "catchup", "memory", "learners", "replica", "snapshot", "sessions", "idempotency", "rmw", "falsefailover", "multileader", "leaderless"}

// DefaultParts are the parts run when none are named.
var DefaultParts = []string{"disk", "load", "failover", "catchup", "memory"}

// PeerTLSModes are the values of Config.PeerTLS.
var PeerTLSModes = []string{"on", "off", "both"}

// peerTLS returns Config.PeerTLS, "on" if empty.
func (c Config) peerTLS() string {
	if c.PeerTLS == "" {
		return "on"
	}
	return c.PeerTLS
}

// DefaultConfig returns the short profile, every system and every part,
// seed 1, progress discarded.
func DefaultConfig() Config {
	return Config{Profile: Profiles()["short"], Systems: []string{"trireme", "redis", "etcd"},
		Parts: slices.Clone(DefaultParts), Seed: 1}
}

// Validate checks the fields and names the bad one.
func (c Config) Validate() error {
	p := c.Profile
	switch {
	case len(p.ValueSizes) == 0 || slices.ContainsFunc(p.ValueSizes, func(n int) bool { return n < 1 }):
		return fmt.Errorf("bench: Config.Profile.ValueSizes %v: want positive sizes", p.ValueSizes)
	case len(p.Clients) == 0 || slices.ContainsFunc(p.Clients, func(n int) bool { return n < 1 }):
		return fmt.Errorf("bench: Config.Profile.Clients %v: want positive counts", p.Clients)
	case p.Duration <= 0 || p.Warmup < 0:
		return fmt.Errorf("bench: Config.Profile.Duration %v / Warmup %v: want > 0 / >= 0", p.Duration, p.Warmup)
	case p.Keys < 1:
		return fmt.Errorf("bench: Config.Profile.Keys %d: want >= 1", p.Keys)
	case p.TargetRounds < 0:
		return fmt.Errorf("bench: Config.Profile.TargetRounds %d: want >= 0", p.TargetRounds)
	case p.FailoverTrials < 1 || p.CatchUpBytes < 1 || p.CatchUpValue < 1 || p.MemoryValues < 1 || p.DiskBytes < 1 || p.Fsyncs < 1:
		return fmt.Errorf("bench: Config.Profile %q: FailoverTrials, CatchUpBytes, CatchUpValue, MemoryValues, DiskBytes and Fsyncs must be >= 1", p.Name)
	case p.LearnerTrials < 1 || p.ReplicaBytes < 1 || p.SnapshotBytes < 1 || p.CatchUpTrials < 1 || p.PhaseWindow <= 0:
		return fmt.Errorf("bench: Config.Profile %q: LearnerTrials, ReplicaBytes, SnapshotBytes, CatchUpTrials and PhaseWindow must be >= 1", p.Name)
	case p.FalseFailoverDuration <= 0 || p.StallEvery <= 0:
		return fmt.Errorf("bench: Config.Profile %q: FalseFailoverDuration %v and StallEvery %v must be > 0", p.Name, p.FalseFailoverDuration, p.StallEvery)
	case p.MLWriteRate < 1 || p.MLPartition <= 0 || p.MLPartitionReps < 1:
		return fmt.Errorf("bench: Config.Profile %q: MLWriteRate %d, MLPartition %v and MLPartitionReps %d must be > 0", p.Name, p.MLWriteRate, p.MLPartition, p.MLPartitionReps)
	case slices.Contains(c.Parts, "leaderless") && (p.LLRounds < 1 || p.LLRepairKeys < 1 || p.LLRepairValue < 1 || p.LLRepairTrials < 1 || p.LLIdleWindow <= 0):
		return fmt.Errorf("bench: Config.Profile %q: LLRounds %d, LLRepairKeys %d, LLRepairValue %d, LLRepairTrials %d and LLIdleWindow %v must be > 0",
			p.Name, p.LLRounds, p.LLRepairKeys, p.LLRepairValue, p.LLRepairTrials, p.LLIdleWindow)
	}
	for _, s := range c.Systems {
		if !slices.Contains(AllSystems, s) {
			return fmt.Errorf("bench: Config.Systems: unknown system %q", s)
		}
	}
	for _, s := range c.Parts {
		if !slices.Contains(AllParts, s) {
			return fmt.Errorf("bench: Config.Parts: unknown part %q", s)
		}
	}
	if c.PeerTLS != "" && !slices.Contains(PeerTLSModes, c.PeerTLS) {
		return fmt.Errorf("bench: Config.PeerTLS %q: want on, off or both", c.PeerTLS)
	}
	if _, err := cluster.Procs(c.NodeProcs, 3); err != nil {
		return fmt.Errorf("bench: Config.NodeProcs: %w", err)
	}
	if slices.Contains(c.Systems, "trireme") && c.TriremeBin == "" && c.Repo == "" {
		return errors.New("bench: Config.TriremeBin and Config.Repo are both empty: one is needed to run Trireme")
	}
	return nil
}

// Results is everything a run measured.
type Results struct {
	Profile string       `json:"profile"`
	Started time.Time    `json:"started"`
	Seconds float64      `json:"seconds"`
	Machine Machine      `json:"machine"`
	Disk    *DiskResult  `json:"disk,omitempty"`
	Load    []LoadResult `json:"load"`
	// Rounds are the interleaved target rounds (Profile.TargetRounds).
	Rounds   []LoadResult     `json:"rounds,omitempty"`
	Failover []FailoverResult `json:"failover"`
	// FalseFailover are the runs of the false-failover part: elections
	// under full load with jittery peer links, without and with stalls of
	// the leader.
	FalseFailover []FalseFailoverRun `json:"false_failover,omitempty"`
	CatchUp       *CatchUpResult     `json:"catch_up,omitempty"`
	Memory        []MemoryResult     `json:"memory"`
	// The parts of issue 16: stale reads with read replicas, adding a
	// read replica, a snapshot catch-up.
	Learners *LearnersResult `json:"learners,omitempty"`
	Replica  *ReplicaResult  `json:"replica,omitempty"`
	Snapshot *SnapshotResult `json:"snapshot,omitempty"`
	// The parts of issue 17: session reads on the followers against
	// linearizable reads on the leader, the cost of idempotency keys,
	// INCR and MSET against Redis.
	Sessions    *SessionsResult    `json:"sessions,omitempty"`
	Idempotency *IdempotencyResult `json:"idempotency,omitempty"`
	RMW         *RMWResult         `json:"rmw,omitempty"`
	// MultiLeader is the multileader part: multi-leader writes against
	// single-leader async ones, conflicts under contention, convergence
	// after a partition heals.
	MultiLeader *MultiLeaderResult `json:"multi_leader,omitempty"`
	// Leaderless is the leaderless part (issue 20): W/R quorums against
	// single-leader writes and stale reads, a wiped node's repair by
	// anti-entropy against a follower's catch-up, and what
	// anti-entropy costs an idle cluster.
	Leaderless *LeaderlessResult `json:"leaderless,omitempty"`
	// NodeProcs is the GOMAXPROCS each Trireme node and etcd member ran
	// with (0: Go's default, every core).
	NodeProcs int `json:"node_procs"`
	// PeerTLS is Config.PeerTLS ("on", "off" or "both").
	PeerTLS string   `json:"peer_tls,omitempty"`
	Skipped []string `json:"skipped,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	Targets []Target `json:"targets"`
	Command string   `json:"command"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGiB int    `json:"memory_gib"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	Redis     string `json:"redis"`
	Etcd      string `json:"etcd"`
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Etcd: "v3.7.3 (embedded, go.etcd.io/etcd/server/v3)"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.MemoryGiB = int((kb + 1<<19) >> 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(out))
	}
	return m
}

func (c Config) has(list []string, x string) bool {
	for _, s := range list {
		if s == x {
			return true
		}
	}
	return false
}

// runner carries one run's state.
type runner struct {
	cfg     Config
	res     *Results
	start   time.Time
	total   int // load runs planned
	done    int
	nameW   int // width of the system names in progress lines
	progErr error
}

// progress shows a line from a measurement; lines with "NOTE:" also go
// into the results' notes.
func (r *runner) progress(s string) {
	if _, rest, ok := strings.Cut(s, "NOTE: "); ok {
		r.res.Notes = append(r.res.Notes, rest)
	}
	r.say("%s", s)
}

// note records a remark in the results and shows it.
func (r *runner) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.res.Notes = append(r.res.Notes, s)
	r.say("NOTE: %s", s)
}

func (r *runner) say(format string, args ...any) {
	el := time.Since(r.start).Round(time.Second)
	fmt.Fprintf(r.cfg.Progress, "[%6s] %s\n", el, fmt.Sprintf(format, args...))
}

// Run runs the benchmark and returns its results (also on a partial
// failure, with the error).
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if len(cfg.Systems) == 0 {
		cfg.Systems = []string{"trireme", "redis", "etcd"}
	}
	if len(cfg.Parts) == 0 {
		cfg.Parts = slices.Clone(DefaultParts)
	}
	res := &Results{Profile: cfg.Profile.Name, Started: time.Now().UTC(), Machine: describeMachine(), PeerTLS: cfg.peerTLS()}
	res.NodeProcs, _ = cluster.Procs(cfg.NodeProcs, 3) // Validate below reports a bad one
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {       // it wins (cluster.Config.NodeProcs)
		res.NodeProcs, _ = strconv.Atoi(v)
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	r := &runner{cfg: cfg, res: res, start: time.Now()}
	defer func() { res.Seconds = time.Since(r.start).Seconds() }()
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "trireme-bench-")
		if err != nil {
			return res, err
		}
		cfg.WorkDir = d
		r.cfg.WorkDir = d
		if !cfg.Keep {
			defer os.RemoveAll(d)
		}
	}
	r.say("profile %s, systems %v, parts %v, peer TLS %s, data in %s", cfg.Profile.Name, cfg.Systems, cfg.Parts, cfg.peerTLS(), cfg.WorkDir)
	needTrireme := cfg.has(cfg.Systems, "trireme")
	insecure := cfg.peerTLS() == "off" // catch-up and memory: with TLS for "both"
	if needTrireme && cfg.TriremeBin == "" {
		r.say("building cmd/trireme from %s", cfg.Repo)
		bin, err := BuildTrireme(ctx, cfg.Repo, cfg.WorkDir)
		if err != nil {
			return res, err
		}
		r.cfg.TriremeBin = bin
	}
	var errs []error
	step := func(name string, f func() error) {
		if ctx.Err() != nil {
			return
		}
		if err := f(); err != nil {
			r.say("%s: ERROR: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if cfg.has(cfg.Parts, "disk") {
		step("disk", func() error {
			d, err := MeasureDisk(cfg.WorkDir, cfg.Profile.DiskBytes, cfg.Profile.Fsyncs)
			if err != nil {
				return err
			}
			res.Disk = &d
			r.say("disk: sequential write %.0f MB/s; 4 KiB write+fsync p50 %.0f µs, %.0f/s", d.SeqWriteMBps, d.FsyncP50us, d.FsyncPerSecond)
			return nil
		})
	}
	if cfg.has(cfg.Parts, "load") {
		step("systems", func() error { return r.systems(ctx) })
	}
	if cfg.has(cfg.Parts, "failover") {
		r.failoverPart(ctx, step)
	}
	if needTrireme && cfg.has(cfg.Parts, "catchup") {
		step("catch-up", func() error {
			c, err := TriremeCatchUp(ctx, r.cfg.TriremeBin, filepath.Join(cfg.WorkDir, "trireme-catchup"), r.cfg.NodeProcs, insecure,
				cfg.Profile.CatchUpBytes, cfg.Profile.CatchUpValue, r.progress)
			if err != nil {
				return err
			}
			res.CatchUp = &c
			if !cfg.Keep {
				os.RemoveAll(filepath.Join(cfg.WorkDir, "trireme-catchup"))
			}
			return nil
		})
	}
	if cfg.has(cfg.Parts, "memory") {
		if needTrireme {
			step("memory trireme", func() error {
				m, err := TriremeMemory(ctx, r.cfg.TriremeBin, filepath.Join(cfg.WorkDir, "trireme-memory"), r.cfg.NodeProcs, insecure,
					cfg.Profile.MemoryValues, 100, r.progress)
				res.Memory = append(res.Memory, m...)
				for _, x := range m {
					r.say("memory: trireme %s: %.1f MiB resident (%.1f MiB empty) with %d values", x.Role, x.RSSMB, x.EmptyRSSMB, x.Values)
				}
				if !cfg.Keep {
					os.RemoveAll(filepath.Join(cfg.WorkDir, "trireme-memory"))
				}
				return err
			})
		}
		if cfg.has(cfg.Systems, "redis") && !cfg.has(res.Skipped, "redis") {
			step("memory redis", func() error {
				m, err := RedisMemory(ctx, filepath.Join(cfg.WorkDir, "redis-memory"), cfg.Profile.MemoryValues, 100)
				if errors.Is(err, ErrNoRedis) {
					r.say("memory redis: SKIPPED: %v", err)
					return nil
				}
				res.Memory = append(res.Memory, m...)
				for _, x := range m {
					r.say("memory: redis %s: %.1f MiB resident (%.1f MiB empty) with %d values", x.Role, x.RSSMB, x.EmptyRSSMB, x.Values)
				}
				return err
			})
		}
	}
	if needTrireme {
		r.monthsParts(ctx, step)
		r.issue17Parts(ctx, step)
		if cfg.has(cfg.Parts, "falsefailover") {
			r.falseFailoverPart(ctx, step)
		}
		if cfg.has(cfg.Parts, "multileader") {
			r.multiLeaderPart(ctx, step)
		}
		if cfg.has(cfg.Parts, "leaderless") {
			r.leaderlessPart(ctx, step)
		}
	}
	AddPeers(res.Load)
	res.Targets = CheckTargets(res)
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// loadVariants lists, per workload, the variants of one system.
type loadVariants map[Workload][]Variant

// system is one started system with its load variants.
type system struct {
	name    string
	vs      loadVariants
	preload Variant
	stop    func()
	// twin is, for Trireme with Config.PeerTLS "both", the cluster without
	// peer TLS, whose runs go right next to this one's; twinOf is the
	// reverse link, on the twin.
	twin, twinOf *system
}

// variant returns the system's variant named name in workload w.
func (sy *system) variant(w Workload, name string) (Variant, bool) {
	for _, v := range sy.vs[w] {
		if v.Name == name {
			return v, true
		}
	}
	return Variant{}, false
}

// selected reports whether Config.Only keeps the load run
// system/w/variant; a run of the cluster without peer TLS is also kept
// when its twin on the cluster with TLS is.
func (r *runner) selected(system string, w Workload, variant string) bool {
	if r.cfg.Only == nil || r.cfg.Only(system+"/"+string(w)+"/"+variant) {
		return true
	}
	return system == TriremeNoTLS && r.cfg.Only("trireme/"+string(w)+"/"+variant)
}

// runLoads preloads every system's key space and runs every (size,
// workload, clients) cell on each system in turn, so that peers are
// measured minutes apart at most, under the same background load. A twin
// (Trireme without peer TLS) runs each of its variants right before or
// after the same variant with TLS, alternately.
func (r *runner) runLoads(ctx context.Context, systems []*system) error {
	p := r.cfg.Profile
	r.total = r.done
	r.nameW = 7 // "trireme"
	for _, sy := range systems {
		r.nameW = max(r.nameW, len(sy.name))
		for w, vs := range sy.vs {
			for _, v := range vs {
				if r.selected(sy.name, w, v.Name) {
					r.total += len(p.ValueSizes) * len(p.Clients)
				}
			}
		}
	}
	pairs := r.targetPairs(systems)
	for _, pair := range pairs {
		r.total += len(p.ValueSizes) * len(pair.sides) * p.TargetRounds
	}
	type run struct {
		sy *system
		v  Variant
	}
	for _, size := range p.ValueSizes {
		for _, sy := range systems {
			r.say("%s: preloading %d keys of %d B", sy.name, p.Keys, size)
			retries, err := Preload(ctx, sy.preload, p.Keys, size, 16, 30*time.Second)
			if err != nil {
				return fmt.Errorf("%s: %w", sy.name, err)
			}
			if retries > 0 {
				r.note("%s: %d preload writes were retried", sy.name, retries)
			}
		}
		for _, w := range []Workload{WorkWrite, WorkRead, WorkMixed} {
			for ci, c := range p.Clients {
				for _, sy := range systems {
					if sy.twinOf != nil {
						continue // runs next to its twin
					}
					for vi, v := range sy.vs[w] {
						runs := []run{{sy, v}}
						if sy.twin != nil {
							if tv, ok := sy.twin.variant(w, v.Name); ok {
								runs = append(runs, run{sy.twin, tv})
								if (ci+vi)%2 == 1 {
									runs[0], runs[1] = runs[1], runs[0]
								}
							}
						}
						for _, x := range runs {
							if !r.selected(x.sy.name, w, x.v.Name) {
								continue
							}
							lr, err := RunLoad(ctx, x.v, r.spec(w, size, c))
							if err != nil {
								return err
							}
							r.done++
							r.res.Load = append(r.res.Load, lr)
							r.sayLoad(lr, "")
						}
					}
				}
			}
		}
		if err := r.runRounds(ctx, pairs, size); err != nil {
			return err
		}
	}
	return nil
}

// spec is the load of the next run: the profile's timing and key space, a
// seed that differs from run to run.
func (r *runner) spec(w Workload, size, clients int) LoadSpec {
	p := r.cfg.Profile
	return LoadSpec{Workload: w, ValueBytes: size, Clients: clients, Keys: p.Keys, Warmup: p.Warmup,
		Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: r.cfg.Seed + uint64(r.done)}
}

// sayLoad prints one load run's figures as progress.
func (r *runner) sayLoad(lr LoadResult, prefix string) {
	msg := ""
	if lr.Errors > 0 {
		msg = fmt.Sprintf("  %d errors, first: %s", lr.Errors, lr.FirstError)
	}
	r.say("[%d/%d] %s%-*s %-5s %-20s %4d B %3d clients: %8.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms  cpu/op %4.0f+%3.0f µs%s",
		r.done, r.total, prefix, max(7, r.nameW), lr.System, lr.Workload, lr.Variant, lr.ValueBytes, lr.Clients, lr.OpsPerSec, lr.P50us/1000, lr.P99us/1000,
		lr.P999us/1000, lr.ServerCPUus, lr.ClientCPUus, msg)
}

// targetPair is what one target's rounds run, in the order of odd rounds:
// Trireme's variant without peer TLS (Config.PeerTLS "both"), the variant,
// and the peer variant its target compares it with. Either end may be
// missing, not both.
type targetPair struct{ sides []Variant }

// targetPairs lists the target pairs of which Trireme's side and at least
// one other are running (and selected by Only).
func (r *runner) targetPairs(systems []*system) []targetPair {
	if r.cfg.Profile.TargetRounds <= 0 {
		return nil
	}
	find := func(system, variant string) (Variant, bool) {
		for _, sy := range systems {
			if sy.name != system {
				continue
			}
			if v, ok := sy.variant(WorkWrite, variant); ok && r.selected(system, WorkWrite, variant) {
				return v, true
			}
		}
		return Variant{}, false
	}
	var out []targetPair
	for _, name := range targetVariants {
		t, ok := find("trireme", name)
		if !ok {
			continue
		}
		var sides []Variant
		if n, ok := find(TriremeNoTLS, name); ok {
			sides = append(sides, n)
		}
		sides = append(sides, t)
		psys, pvar, _ := peerOf(string(WorkWrite), name)
		if p, ok := find(psys, pvar); ok {
			sides = append(sides, p)
		}
		if len(sides) >= 2 {
			out = append(out, targetPair{sides})
		}
	}
	return out
}

// runRounds runs Profile.TargetRounds rounds of every target pair at one
// value size, the sides back to back, Trireme before the peer in rounds 1,
// 3, ... and the peer first in rounds 2, 4, ..., so that both meet the
// machine's slow and fast moments alike. Trireme without peer TLS, if
// running, goes on Trireme's other side (first in odd rounds, last in
// even ones), so that both comparisons are back to back and alternate.
// The key space holds values of this size already.
func (r *runner) runRounds(ctx context.Context, pairs []targetPair, size int) error {
	p := r.cfg.Profile
	for round := range p.TargetRounds {
		for _, pair := range pairs {
			order := slices.Clone(pair.sides)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, v := range order {
				lr, err := RunLoad(ctx, v, r.spec(WorkWrite, size, targetClients))
				if err != nil {
					return err
				}
				lr.Round = round + 1
				r.done++
				r.res.Rounds = append(r.res.Rounds, lr)
				r.sayLoad(lr, fmt.Sprintf("round %d/%d: ", round+1, p.TargetRounds))
			}
		}
	}
	return nil
}

// startTrireme starts a Trireme cluster and its variants, under the
// system name name; insecure runs its nodes without peer TLS.
func (r *runner) startTrireme(ctx context.Context, name string, insecure bool) (*Trireme, *system, error) {
	dir := filepath.Join(r.cfg.WorkDir, name)
	how := "mutual TLS between them"
	if insecure {
		how = "no peer TLS: --insecure-peers"
	}
	r.say("%s: starting 3 node processes (%s)", name, how)
	t, err := StartTrireme(ctx, r.cfg.TriremeBin, dir, 3, r.cfg.NodeProcs, insecure, nil)
	if err != nil {
		return nil, nil, err
	}
	t.System = name
	sy := &system{name: name, stop: func() {
		t.Stop()
		if !r.cfg.Keep {
			os.RemoveAll(dir)
		}
	}}
	mk := func(name, ack string, k int, cons string) Variant {
		if err != nil {
			return Variant{}
		}
		var v Variant
		v, err = t.Variant(ctx, name, ack, k, cons)
		return v
	}
	sy.vs = loadVariants{
		WorkWrite: {mk("async", "async", 0, "linearizable"), mk("semi-sync K=1", "semi-sync", 1, "linearizable"),
			mk("sync", "sync", 0, "linearizable"), mk("majority", "majority", 0, "linearizable")},
		WorkRead: {mk("linearizable", "majority", 0, "linearizable"), mk("stale", "majority", 0, "stale")},
		WorkMixed: {mk("majority + linearizable", "majority", 0, "linearizable"),
			mk("async + stale", "async", 0, "stale")},
	}
	sy.preload = mk("majority", "majority", 0, "linearizable")
	if err != nil {
		sy.stop()
		return nil, nil, err
	}
	return t, sy, nil
}

// startRedis starts Redis and its variants; nil, nil, nil if redis-server
// is not installed.
func (r *runner) startRedis(ctx context.Context) (*system, error) {
	dir := filepath.Join(r.cfg.WorkDir, "redis")
	r.say("redis: starting a primary and 2 replicas (appendonly yes, appendfsync always)")
	rd, err := StartRedis(ctx, dir, 2)
	if errors.Is(err, ErrNoRedis) {
		r.say("redis: SKIPPED: %v", err)
		r.res.Skipped = append(r.res.Skipped, "redis")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &system{name: "redis", stop: func() {
		rd.Stop()
		if !r.cfg.Keep {
			os.RemoveAll(dir)
		}
	}, vs: loadVariants{
		WorkWrite: {rd.Variant("SET", 0), rd.Variant("SET+WAIT 1", 1), rd.Variant("SET+WAIT 2", 2)},
		WorkRead:  {rd.Variant("GET", 0)},
		WorkMixed: {rd.Variant("SET + GET", 0)},
	}, preload: rd.Variant("SET", 0)}, nil
}

// startEtcd starts etcd and its variants.
func (r *runner) startEtcd(ctx context.Context) (*Etcd, *system, error) {
	dir := filepath.Join(r.cfg.WorkDir, "etcd")
	r.say("etcd: starting 3 member processes (embedded etcd, fsync on)")
	e, err := StartEtcd(ctx, dir, 3, r.cfg.NodeProcs)
	if err != nil {
		return nil, nil, err
	}
	sy := &system{name: "etcd", stop: func() {
		e.Stop()
		if !r.cfg.Keep {
			os.RemoveAll(dir)
		}
	}}
	mk := func(name string, ser bool) Variant {
		if err != nil {
			return Variant{}
		}
		var v Variant
		v, err = e.Variant(ctx, name, ser)
		return v
	}
	sy.vs = loadVariants{
		WorkWrite: {mk("put", false)},
		WorkRead:  {mk("linearizable get", false), mk("serializable get", true)},
		WorkMixed: {mk("put + linearizable get", false)},
	}
	sy.preload = mk("put", false)
	if err != nil {
		sy.stop()
		return nil, nil, err
	}
	return e, sy, nil
}

// systems starts the selected systems, runs the load part, and stops them.
// (The failover part starts fresh clusters of its own: failover.go.)
func (r *runner) systems(ctx context.Context) error {
	var started []*system
	defer func() {
		for _, sy := range started {
			sy.stop()
		}
	}()
	var triremes []*Trireme // with peer TLS unless PeerTLS is "off"; for "both", its twin without TLS too
	if r.cfg.has(r.cfg.Systems, "trireme") {
		tt, sy, err := r.startTrireme(ctx, "trireme", r.cfg.peerTLS() == "off")
		if err != nil {
			return fmt.Errorf("trireme: %w", err)
		}
		started, triremes = append(started, sy), append(triremes, tt)
		if r.cfg.peerTLS() == "both" {
			tn, syn, err := r.startTrireme(ctx, TriremeNoTLS, true)
			if err != nil {
				return fmt.Errorf("%s: %w", TriremeNoTLS, err)
			}
			sy.twin, syn.twinOf = syn, sy
			started, triremes = append(started, syn), append(triremes, tn)
		}
	}
	if r.cfg.has(r.cfg.Systems, "redis") {
		sy, err := r.startRedis(ctx)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		if sy != nil {
			started = append(started, sy)
		}
	}
	if r.cfg.has(r.cfg.Systems, "etcd") {
		_, sy, err := r.startEtcd(ctx)
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		started = append(started, sy)
	}
	st0 := make([]uint64, len(triremes))
	for i, tt := range triremes {
		if _, st, err := tt.Cluster().Leader(ctx); err == nil {
			st0[i] = st.Term
		}
	}
	if err := r.runLoads(ctx, started); err != nil {
		return err
	}
	for i, tt := range triremes {
		if _, st1, err := tt.Cluster().Leader(ctx); err == nil && st0[i] != 0 {
			if st1.Term != st0[i] {
				r.note("%s: the term changed from %d to %d during the load runs (leader elections under load)", tt.System, st0[i], st1.Term)
			} else {
				r.say("%s: no leader election during the load runs (term %d throughout)", tt.System, st0[i])
			}
		}
	}
	return nil
}
