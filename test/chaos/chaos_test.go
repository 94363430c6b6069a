// Package chaos runs Jepsen-style fault injection against real `trireme node`
// processes (built once in TestMain): clients over HTTP and RESP, faults
// through per-link TCP proxies and signals, and checks of the recorded
// history (see internal/chaos). The short profile runs by default (skipped
// with -short); the long one only when -chaos.duration is given:
//
//	go test ./test/chaos -run TestChaosLong -chaos.duration=10m -chaos.seed=N -chaos.nodes=5 \
//	    -chaos.faults=partition,kill,pause,slow -chaos.ack=majority,sync,semi-sync,async
//
// Beside the workers, both profiles run session clients (session reads from
// random nodes: read-your-writes, monotonic reads, rollbacks checked against
// the journals), counter clients (idempotent increments retried through
// failovers) and compare-and-set clients of one register (porcupine);
// -chaos.sessions, -chaos.counters and -chaos.cas set how many in the long
// profile.
//
// TestChaosMembership (default suite) removes voters and joins them back
// from empty data directories, and adds and removes a learner, beside
// partitions and kills; -chaos.faults=...,membership does the same in the
// long profile. Both need named peers (chaos.CheckNamedPeers) and skip
// without them.
//
// TestChaosMultiLeader (default suite) runs multi-leader clusters (--mode
// multi-leader), one run per conflict policy (-chaos.conflicts=lww or
// siblings runs one): unique inserts, blind writes to contended keys and
// increments on random nodes under partitions, kills and pauses; after
// healing every node must converge to the same state, every acknowledged
// write be final, a sibling, a conflict loser or causally overwritten,
// and every counter lie between the acknowledged and the acknowledged plus
// unknown increments. -chaos.mode=multi-leader runs the long profile so.
//
// TestChaosLeaderless (default suite, leaderless_test.go) runs 5-node
// leaderless clusters (--mode leaderless, N=3), with strict and with
// sloppy quorums: quorum reads after acknowledged writes, acknowledged
// writes on every home replica after quiescence, no superseded value
// alive. -chaos.mode=leaderless [-chaos.sloppy=true] runs the long profile.
//
// Targeted scenarios that random faults rarely produce have tests of their
// own (TestIsolatedLeaderAsyncWritesJournaled, TestPausedLeaderServesNoStaleRead).
// See internal/chaos/DESIGN.md.
package chaos

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/chaos"
	"github.com/trireme-db/trireme/internal/cluster"
)

// quietRedis drops go-redis's own log lines (failed dials while a node is
// down are expected here; the history records every failure).
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

var (
	flagBinary    = flag.String("chaos.binary", "", "use this trireme binary instead of building one")
	flagDuration  = flag.Duration("chaos.duration", 0, "long profile: workload duration (setting it enables TestChaosLong)")
	flagSeed      = flag.Uint64("chaos.seed", 0, "seed (0 = from the clock); printed by every run")
	flagNodes     = flag.Int("chaos.nodes", 5, "long profile: cluster size")
	flagFaults    = flag.String("chaos.faults", "partition,kill,pause,slow,drop,transfer", "long profile: fault kinds, comma-separated (empty = none)")
	flagAck       = flag.String("chaos.ack", "majority,sync,semi-sync,async", "long profile: ack modes")
	flagReads     = flag.String("chaos.reads", "linearizable,stale", "long profile: read levels")
	flagProtocols = flag.String("chaos.protocols", "http,resp", "long profile: client protocols")
	flagWorkers   = flag.Int("chaos.workers", 6, "long profile: concurrent clients")
	flagHold      = flag.String("chaos.hold", "", "long profile: how long a fault lasts, MIN-MAX (default 1.5s-4s)")
	flagGap       = flag.String("chaos.gap", "", "long profile: calm between faults, MIN-MAX (default 500ms-2s)")
	flagKeys      = flag.Int("chaos.keys", 4, "long profile: register keys per ack mode (fewer = more contention)")
	flagKeep      = flag.Bool("chaos.keep", false, "keep every run's folder (data, logs, history), not only failed ones")
	flagDir       = flag.String("chaos.dir", "", "parent folder for run folders (default: the system temp dir)")
	flagVerbose   = flag.Bool("chaos.verbose", false, "log the nemesis's actions")
	flagLogRetain = flag.String("chaos.log-retain", "", "long profile: the nodes' --log-retain (default with membership: 1MiB, else the node's default)")
	flagFill      = flag.Float64("chaos.fill-mib", -1, "long profile: MiB/s of large writes until the WALs of the leader and a majority are compacted (default with membership: 6, else 0)")
	flagSessions  = flag.Int("chaos.sessions", 4, "long profile: session clients (session reads from random nodes, writes with every ack mode)")
	flagCounters  = flag.Int("chaos.counters", 2, "long profile: counter clients (idempotent increments retried through failovers)")
	flagCAS       = flag.Int("chaos.cas", 3, "long profile: compare-and-set clients of one register")
	flagMode      = flag.String("chaos.mode", "single-leader", "long profile: replication mode, single-leader, multi-leader or leaderless (then -chaos.faults, -chaos.ack and -chaos.reads default to that mode's own)")
	flagConflicts = flag.String("chaos.conflicts", "", "multi-leader: the nodes' --conflicts, lww or siblings (TestChaosMultiLeader: only that subtest; long profile: default lww)")
	flagContended = flag.Int("chaos.contended", 8, "multi-leader and leaderless long profiles: keys every node writes (fewer = more conflicts)")
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	redis.SetLogger(quietRedis{})
	if testing.Short() {
		fmt.Println("chaos tests skipped with -short")
		os.Exit(0)
	}
	if *flagBinary != "" {
		binary = *flagBinary
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "trireme-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binary, err = cluster.BuildBinary(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func baseSeed() uint64 {
	if *flagSeed != 0 {
		return *flagSeed
	}
	return uint64(time.Now().UnixNano()%1_000_000_000) + 1
}

// mustRun runs one profile and fails t on anomalies, keeping the run's folder.
func mustRun(t *testing.T, cfg chaos.RunConfig, replay string) *chaos.Report {
	t.Helper()
	dir, err := os.MkdirTemp(*flagDir, fmt.Sprintf("trireme-chaos-%d-", cfg.Seed))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Binary, cfg.Dir = binary, dir
	if *flagVerbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	t.Logf("seed %d; replay with: %s", cfg.Seed, replay)
	t.Logf("run folder: %s", dir)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+5*time.Minute)
	defer cancel()
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("seed %d: harness failed: %v (folder kept: %s; replay: %s)", cfg.Seed, err, dir, replay)
	}
	t.Logf("summary:\n%s", rep.Summary())
	if len(rep.Anomalies) > 0 {
		t.Errorf("seed %d: %d anomalies; history, visualizations and node logs kept in %s\nreplay: %s",
			cfg.Seed, len(rep.Anomalies), dir, replay)
		return rep
	}
	if !*flagKeep {
		os.RemoveAll(dir)
	}
	return rep
}

// TestChaosShort is the CI profile: three runs of about 30 s (3 and 5 nodes,
// HTTP and RESP clients, every ack mode and read level, several fault kinds).
// Beside the six workers, each run has a small share of session clients
// (one per protocol), one counter client and two CAS clients.
func TestChaosShort(t *testing.T) {
	seed := baseSeed()
	profiles := []struct {
		name      string
		nodes     int
		faults    []string
		protocols []string
		dur       time.Duration
	}{
		{"n3-partition-kill-pause", 3, []string{"partition", "kill", "pause"}, []string{"http", "resp"}, 35 * time.Second},
		{"n5-partition-kill-slow-drop", 5, []string{"partition", "kill", "slow", "drop"}, []string{"http", "resp"}, 35 * time.Second},
		{"n3-resp-kill-slow-transfer", 3, []string{"kill", "slow", "partition", "transfer"}, []string{"resp"}, 30 * time.Second},
	}
	for i, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			cfg := chaos.DefaultRunConfig()
			cfg.Seed = seed + uint64(i)
			cfg.Nodes, cfg.Faults, cfg.Protocols, cfg.Duration = p.nodes, p.faults, p.protocols, p.dur
			cfg.SessionClients, cfg.CounterClients, cfg.CASClients = 2, 1, 2
			replay := fmt.Sprintf("go test ./test/chaos -run 'TestChaosShort/%s' -chaos.seed=%d -v", p.name, seed)
			mustRun(t, cfg, replay)
		})
	}
}

// membershipProfile sets up cfg for the membership nemesis: named peers are
// required, WAL compaction under a 1 MiB retention after about 64 MiB of
// large writes (the fill), and rejoins that wait for it, so that a rejoined
// node catches up by snapshot.
func membershipProfile(t *testing.T, cfg *chaos.RunConfig, logRetain string, fillMiB float64) {
	t.Helper()
	if err := chaos.CheckNamedPeers(); err != nil {
		t.Skipf("membership profile: %v", err)
	}
	if logRetain == "" {
		logRetain = "1MiB"
	}
	if fillMiB < 0 {
		fillMiB = 6
	}
	cfg.NodeArgs = append(cfg.NodeArgs, "--log-retain", logRetain)
	cfg.FillBytesPerSec = int64(fillMiB * (1 << 20))
	if fillMiB > 0 {
		cfg.Membership.CompactionWait = 20 * time.Second
	}
}

// TestChaosMembership is the membership profile (about 35 s, 3 voters):
// partitions and kills, and beside them a learner that joins and is
// removed, and voters (followers, and the leader one time in four) that are
// removed, wiped and joined back (by snapshot once the WAL is compacted).
// Beyond the usual checks, the final configuration must have n1..n3 as
// voters and every cycle must have completed.
func TestChaosMembership(t *testing.T) {
	cfg := chaos.DefaultRunConfig()
	cfg.Seed = baseSeed()
	cfg.Nodes, cfg.Duration = 3, 35*time.Second
	cfg.Faults = []string{"partition", "kill", "membership"}
	membershipProfile(t, &cfg, "", -1)
	replay := fmt.Sprintf("go test ./test/chaos -run TestChaosMembership -chaos.seed=%d -v", cfg.Seed)
	mustRun(t, cfg, replay)
}

// TestChaosMultiLeader is the multi-leader profile: 3 nodes, partitions,
// kills and pauses, HTTP and RESP writers; 20 s with LWW and 12 s with
// siblings (about 35 s in all with recovery and checks).
func TestChaosMultiLeader(t *testing.T) {
	seed := baseSeed()
	profiles := []struct {
		policy string
		dur    time.Duration
	}{
		{chaos.PolicyLWW, 20 * time.Second},
		{chaos.PolicySiblings, 12 * time.Second},
	}
	ran := false
	for i, p := range profiles {
		if *flagConflicts != "" && *flagConflicts != p.policy {
			continue
		}
		ran = true
		t.Run(p.policy, func(t *testing.T) {
			cfg := chaos.DefaultMultiLeaderRunConfig()
			cfg.Seed = seed + uint64(i)
			cfg.Conflicts, cfg.Duration = p.policy, p.dur
			replay := fmt.Sprintf("go test ./test/chaos -run 'TestChaosMultiLeader/%s' -chaos.seed=%d -v", p.policy, seed)
			mustRun(t, cfg, replay)
		})
	}
	if !ran {
		t.Fatalf("-chaos.conflicts=%q: want %s or %s", *flagConflicts, chaos.PolicyLWW, chaos.PolicySiblings)
	}
}

// flagGiven reports whether flag name was set on the command line.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// TestChaosLong is the long profile; it runs only when -chaos.duration is set.
func TestChaosLong(t *testing.T) {
	if *flagDuration <= 0 {
		t.Skip("long profile: set -chaos.duration (e.g. -chaos.duration=10m)")
	}
	switch *flagMode {
	case chaos.ModeMultiLeader:
		longMultiLeader(t)
		return
	case chaos.ModeLeaderless:
		longLeaderless(t) // leaderless_test.go
		return
	case chaos.ModeSingleLeader:
	default:
		t.Fatalf("-chaos.mode=%q: want %s, %s or %s", *flagMode, chaos.ModeSingleLeader, chaos.ModeMultiLeader, chaos.ModeLeaderless)
	}
	cfg := chaos.DefaultRunConfig()
	cfg.Seed = baseSeed()
	cfg.Nodes, cfg.Duration, cfg.Workers = *flagNodes, *flagDuration, *flagWorkers
	cfg.Faults, cfg.Acks, cfg.Reads, cfg.Protocols = list(*flagFaults), list(*flagAck), list(*flagReads), list(*flagProtocols)
	cfg.CheckTimeout = 2 * time.Minute
	cfg.KeysPerAck = *flagKeys
	cfg.SessionClients, cfg.CounterClients, cfg.CASClients = *flagSessions, *flagCounters, *flagCAS
	var err error
	if cfg.HoldMin, cfg.HoldMax, err = durRange(*flagHold, cfg.HoldMin, cfg.HoldMax); err != nil {
		t.Fatalf("-chaos.hold: %v", err)
	}
	if cfg.GapMin, cfg.GapMax, err = durRange(*flagGap, cfg.GapMin, cfg.GapMax); err != nil {
		t.Fatalf("-chaos.gap: %v", err)
	}
	extra := ""
	switch {
	case slices.Contains(cfg.Faults, "membership"):
		membershipProfile(t, &cfg, *flagLogRetain, *flagFill)
		extra = fmt.Sprintf(" -chaos.log-retain=%s -chaos.fill-mib=%g", cfg.NodeArgs[len(cfg.NodeArgs)-1], float64(cfg.FillBytesPerSec)/(1<<20))
	default:
		if *flagLogRetain != "" {
			cfg.NodeArgs = append(cfg.NodeArgs, "--log-retain", *flagLogRetain)
			extra += " -chaos.log-retain=" + *flagLogRetain
		}
		if *flagFill > 0 {
			cfg.FillBytesPerSec = int64(*flagFill * (1 << 20))
			extra += fmt.Sprintf(" -chaos.fill-mib=%g", *flagFill)
		}
	}
	replay := fmt.Sprintf("go test ./test/chaos -run TestChaosLong -timeout 0 -chaos.duration=%v -chaos.seed=%d -chaos.nodes=%d -chaos.faults=%s -chaos.ack=%s -chaos.reads=%s -chaos.protocols=%s -chaos.workers=%d -chaos.keys=%d -chaos.sessions=%d -chaos.counters=%d -chaos.cas=%d -chaos.hold=%v-%v -chaos.gap=%v-%v%s -v",
		cfg.Duration, cfg.Seed, cfg.Nodes, *flagFaults, *flagAck, *flagReads, *flagProtocols, cfg.Workers, cfg.KeysPerAck,
		cfg.SessionClients, cfg.CounterClients, cfg.CASClients, cfg.HoldMin, cfg.HoldMax, cfg.GapMin, cfg.GapMax, extra)
	mustRun(t, cfg, replay)
}

// durRange parses "MIN-MAX" (Go durations); empty keeps the defaults.
func durRange(s string, dmin, dmax time.Duration) (time.Duration, time.Duration, error) {
	if s == "" {
		return dmin, dmax, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX, e.g. 300ms-4s", s)
	}
	lo, err := time.ParseDuration(a)
	if err != nil {
		return 0, 0, err
	}
	hi, err := time.ParseDuration(b)
	if err != nil {
		return 0, 0, err
	}
	if lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("%q: want 0 < MIN <= MAX", s)
	}
	return lo, hi, nil
}

// longMultiLeader is the long profile with -chaos.mode=multi-leader.
func longMultiLeader(t *testing.T) {
	cfg := chaos.DefaultMultiLeaderRunConfig()
	cfg.Seed = baseSeed()
	cfg.Nodes, cfg.Duration, cfg.Workers = *flagNodes, *flagDuration, *flagWorkers
	cfg.Faults, cfg.Protocols = chaos.MultiLeaderFaultKinds, list(*flagProtocols)
	faults, acks := strings.Join(cfg.Faults, ","), strings.Join(cfg.Acks, ",")
	if flagGiven("chaos.faults") {
		faults, cfg.Faults = *flagFaults, list(*flagFaults)
	}
	if flagGiven("chaos.ack") {
		acks, cfg.Acks = *flagAck, list(*flagAck)
	}
	if *flagConflicts != "" {
		cfg.Conflicts = *flagConflicts
	}
	cfg.ContendedKeys = *flagContended
	var err error
	if cfg.HoldMin, cfg.HoldMax, err = durRange(*flagHold, cfg.HoldMin, cfg.HoldMax); err != nil {
		t.Fatalf("-chaos.hold: %v", err)
	}
	if cfg.GapMin, cfg.GapMax, err = durRange(*flagGap, cfg.GapMin, cfg.GapMax); err != nil {
		t.Fatalf("-chaos.gap: %v", err)
	}
	replay := fmt.Sprintf("go test ./test/chaos -run TestChaosLong -timeout 0 -chaos.mode=multi-leader -chaos.conflicts=%s -chaos.duration=%v -chaos.seed=%d -chaos.nodes=%d -chaos.faults=%s -chaos.ack=%s -chaos.protocols=%s -chaos.workers=%d -chaos.contended=%d -chaos.hold=%v-%v -chaos.gap=%v-%v -v",
		cfg.Conflicts, cfg.Duration, cfg.Seed, cfg.Nodes, faults, acks, *flagProtocols, cfg.Workers, cfg.ContendedKeys,
		cfg.HoldMin, cfg.HoldMax, cfg.GapMin, cfg.GapMax)
	mustRun(t, cfg, replay)
}
