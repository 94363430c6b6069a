package sim

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	flagSeed    = flag.Int64("sim.seed", -1, "run only this seed")
	flagSeeds   = flag.Int("sim.seeds", 0, "number of seeds (default 300, or $TRIREME_SIM_SEEDS)")
	flagStart   = flag.Int64("sim.start", 1, "first seed of the range")
	flagSteps   = flag.Int("sim.steps", 0, "ticks of the faulty phase per seed (default DefaultSteps)")
	flagVerbose = flag.Bool("sim.v", false, "verbose: print the trace hash (and the trace of a single seed)")
	flagTrace   = flag.String("sim.trace", "", "write the trace of a single seed to this file")
	flagProfile = flag.String("sim.profile", "", "force this fault profile (default: chosen by each seed)")
	flagNodes   = flag.Int("sim.nodes", 0, "force this cluster size, 3 or 5 (default: chosen by each seed)")
	flagViz     = flag.String("sim.viz", "", "write porcupine's HTML visualization of a non-linearizable history to this file")
	flagE2E     = flag.Bool("sim.e2e", false, "end-to-end checks only (skip runtime-internal durability checks)")
	flagBugs    = flag.String("sim.bugs", "", "comma-separated test-only bugs (needs -tags replbugs): vote,commit,lease,adaptive-lease,ack,probe,two-conf,snap-nocheck,compact-undurable,session-early,dup-apply,bounded-nocheck,settle-early")
	flagPause   = flag.Int("sim.adaptive", -1, "force the adaptive failure detector with this many pause ticks (default: chosen by each seed)")
	flagCoord   = flag.Bool("sim.coordinator", false, "force leadership by the modelled external coordinator (default: chosen by each seed)")
)

// seedConfig is the configuration of seed under the command-line flags.
func seedConfig(t testing.TB, seed int64) Config {
	c := ConfigForSeed(seed, *flagSteps)
	if *flagProfile != "" {
		p, ok := ProfileByName(*flagProfile)
		if !ok {
			t.Fatalf("-sim.profile=%q: unknown profile", *flagProfile)
		}
		p.Apply(&c)
	}
	if *flagNodes != 0 {
		c.Nodes = *flagNodes
	}
	if *flagPause >= 0 {
		c.Timing.Adaptive(uint64(*flagPause))
	}
	if *flagCoord {
		c.Timing.UseCoordinator()
	}
	c.VisualizePath = *flagViz
	c.EndToEndOnly = *flagE2E
	if *flagBugs != "" {
		for _, b := range strings.Split(*flagBugs, ",") {
			switch b {
			case "vote":
				c.Bugs.VoteWithoutLogCheck = true
			case "commit":
				c.Bugs.CommitOldTerm = true
			case "lease":
				c.Bugs.LeaseWithoutStickiness = true
			case "adaptive-lease":
				c.Bugs.AdaptiveUnderLease = true
			case "ack":
				c.Bugs.AckBeforeFsync = true
			case "probe":
				c.Bugs.NoProbeResend = true
			case "two-conf":
				c.Bugs.TwoConfChanges = true
			case "snap-nocheck":
				c.Bugs.SnapshotWithoutChecks = true
			case "compact-undurable":
				c.Bugs.CompactUndurable = true
			case "session-early":
				c.Bugs.SessionReadEarly = true
			case "dup-apply":
				c.Bugs.DuplicateApply = true
			case "bounded-nocheck":
				c.Bugs.BoundedNoCheck = true
			case "settle-early":
				c.Bugs.SettleEarly = true
			default:
				t.Fatalf("-sim.bugs: unknown bug %q", b)
			}
		}
	}
	return c
}

// DefaultSeeds is how many seeds `go test ./internal/sim` runs.
const DefaultSeeds = 300

func seedCount(t testing.TB) int {
	if *flagSeeds > 0 {
		return *flagSeeds
	}
	if s := os.Getenv("TRIREME_SIM_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("TRIREME_SIM_SEEDS=%q: want a positive integer", s)
		}
		return n
	}
	return DefaultSeeds
}

// mustRun runs cfg and fails the test on an invalid config.
func mustRun(t testing.TB, cfg Config) *Result {
	t.Helper()
	res, err := Run(cfg)
	if err != nil {
		t.Fatalf("seed %d: %v", cfg.Seed, err)
	}
	return res
}

// reportFailure prints a failed run: the violation, the seed, the replay
// command and the tail of the trace.
func reportFailure(t testing.TB, res *Result, steps int, tags string) {
	t.Helper()
	t.Errorf("seed %d (nodes=%d profile=%s) failed: %v\nreplay: %s%s\ntrace tail:\n%s",
		res.Seed, res.Nodes, res.Profile, res.Err, ReplayCommand(res.Seed, steps, tags), extraFlags(), strings.Join(res.TraceTail, "\n"))
}

// extraFlags are the flags, beyond the seed and steps, that a replay needs.
func extraFlags() string {
	s := ""
	if *flagProfile != "" {
		s += " -sim.profile=" + *flagProfile
	}
	if *flagNodes != 0 {
		s += fmt.Sprintf(" -sim.nodes=%d", *flagNodes)
	}
	if *flagBugs != "" {
		s += " -sim.bugs=" + *flagBugs
	}
	if *flagE2E {
		s += " -sim.e2e"
	}
	return s
}

// TestSimulation runs many seeded simulations (300 by default) and fails on
// the first broken guarantee, printing its seed and the replay command.
func TestSimulation(t *testing.T) {
	if *flagSeed >= 0 {
		cfg := seedConfig(t, *flagSeed)
		cfg.KeepTrace = *flagVerbose || *flagTrace != ""
		res := mustRun(t, cfg)
		if *flagTrace != "" {
			if err := os.WriteFile(*flagTrace, []byte(res.Trace), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if *flagVerbose {
			t.Logf("trace:\n%s", res.Trace)
		}
		t.Logf("seed %d nodes=%d profile=%s trace-sha256=%s lines=%d", res.Seed, res.Nodes, res.Profile, res.TraceHash, res.TraceLines)
		t.Logf("stats: %s", res.Stats)
		if res.Err != nil {
			reportFailure(t, res, *flagSteps, tagsFor(res))
		}
		return
	}
	n := seedCount(t)
	start := time.Now()
	var total Stats
	failures := 0
	for i := 0; i < n; i++ {
		seed := *flagStart + int64(i)
		res := mustRun(t, seedConfig(t, seed))
		total.Add(res.Stats)
		if *flagVerbose {
			t.Logf("seed %d nodes=%d profile=%s trace-sha256=%s", seed, res.Nodes, res.Profile, res.TraceHash)
		}
		if res.Err != nil {
			reportFailure(t, res, *flagSteps, tagsFor(res))
			failures++
			if failures >= 3 {
				t.Fatalf("stopping after %d failures", failures)
			}
		}
	}
	t.Logf("simulated seeds [%d, %d) in %v: %d failures", *flagStart, *flagStart+int64(n), time.Since(start).Round(time.Millisecond), failures)
	t.Logf("summary: %s", total)
	fmt.Fprintf(os.Stderr, "sim summary: seeds=%d start=%d failures=%d elapsed=%v %s\n", n, *flagStart, failures, time.Since(start).Round(time.Millisecond), total)
}

func tagsFor(*Result) string {
	if *flagBugs != "" {
		return "replbugs"
	}
	return ""
}

// TestDeterminism runs the same seeds twice and compares trace hashes.
func TestDeterminism(t *testing.T) {
	for _, seed := range []int64{1, 2, 7, 42} {
		a := mustRun(t, ConfigForSeed(seed, 300))
		b := mustRun(t, ConfigForSeed(seed, 300))
		if a.TraceHash != b.TraceHash || a.TraceLines != b.TraceLines {
			t.Errorf("seed %d: trace differs between runs: %s (%d lines) vs %s (%d lines)", seed, a.TraceHash, a.TraceLines, b.TraceHash, b.TraceLines)
		}
		if a.TraceLines < 100 {
			t.Errorf("seed %d: trace has only %d lines", seed, a.TraceLines)
		}
		c := mustRun(t, ConfigForSeed(seed+1000, 300))
		if c.TraceHash == a.TraceHash {
			t.Errorf("seeds %d and %d give the same trace", seed, seed+1000)
		}
	}
}

// longFaultSeeds are seeds whose long fault phases once left a follower
// catching up one entry per round trip past the liveness bound (issue 21):
// figure8 runs in which a follower held one divergent entry per term of many
// short-lived leaders.
var longFaultSeeds = []struct {
	seed  int64
	steps int
}{{123543, 3000}, {124076, 3000}, {698688, 6000}, {698757, 6000}, {698768, 6000}}

// TestLongFaultPhase runs the seeds above and a range of seeds with a fault
// phase six times the default, where logs diverge furthest and catch-up is
// longest. make sim-long runs many more.
func TestLongFaultPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault phases are not short")
	}
	run := func(seed int64, steps int) {
		res := mustRun(t, ConfigForSeed(seed, steps))
		if res.Err != nil {
			reportFailure(t, res, steps, "")
		}
	}
	for _, s := range longFaultSeeds {
		run(s.seed, s.steps)
	}
	const seeds, steps = 40, 6000
	for i := range int64(seeds) {
		run(7_000_000+i, steps)
	}
}
