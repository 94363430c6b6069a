package llsim

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"
)

var (
	flagSeed  = flag.Int64("sim.seed", 0, "run only this seed")
	flagSeeds = flag.Int("sim.seeds", 0, "number of seeds (default 300, or $TRIREME_LL_SEEDS)")
	flagStart = flag.Int64("sim.start", 1, "first seed")
	flagSteps = flag.Int("sim.steps", 0, "ticks of the faulty phase (default 300)")
	flagV     = flag.Bool("sim.v", false, "print each seed's outcome (and, with -sim.seed, its trace)")
	flagVV    = flag.Bool("sim.vv", false, "with -sim.seed: the trace has every message and change")
)

// DefaultSeeds is the number of seeds of a plain `go test`.
const DefaultSeeds = 300

func seeds(t testing.TB) (int64, int) {
	if *flagSeed != 0 {
		return *flagSeed, 1
	}
	n := DefaultSeeds
	if *flagSeeds > 0 {
		n = *flagSeeds
	} else if v := os.Getenv("TRIREME_LL_SEEDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("TRIREME_LL_SEEDS=%q: want a positive integer", v)
		}
	}
	return *flagStart, n
}

func configFor(seed int64) Config {
	c := ConfigForSeed(seed)
	if *flagSteps > 0 {
		c.Steps = *flagSteps
	}
	return c
}

func TestSimulation(t *testing.T) {
	start, n := seeds(t)
	began := time.Now()
	var total Result
	for seed := start; seed < start+int64(n); seed++ {
		cfg := configFor(seed)
		cfg.KeepTrace = n == 1 && (*flagV || *flagVV)
		cfg.TraceAll = n == 1 && *flagVV
		res := Run(cfg)
		if cfg.KeepTrace {
			t.Log("trace:\n" + res.Trace)
		}
		total.Writes += res.Writes
		total.Deletes += res.Deletes
		total.Reads += res.Reads
		total.Acked += res.Acked
		total.ReadsOK += res.ReadsOK
		total.Crashes += res.Crashes
		total.Wipes += res.Wipes
		total.Stats.HintsDelivered += res.Stats.HintsDelivered
		total.Stats.TombstonesGC += res.Stats.TombstonesGC
		total.Stats.AERepairs += res.Stats.AERepairs
		total.Stats.ReadRepairs += res.Stats.ReadRepairs
		if *flagV {
			t.Logf("seed %d: nodes %d N %d sloppy %v: %s trace %s", seed, cfg.Nodes, cfg.N, cfg.Sloppy, res.Summary(), res.TraceHash)
		}
		if res.Failed() {
			for _, v := range res.Violations {
				t.Error(v)
			}
			t.Fatalf("seed %d failed (%d nodes, N=%d, sloppy=%v)\nreplay: go test ./internal/leaderless/llsim -run 'TestSimulation$' -sim.seed=%d -sim.v",
				seed, cfg.Nodes, cfg.N, cfg.Sloppy, seed)
		}
	}
	t.Logf("%d seeds from %d in %v: %d writes, %d deletes, %d acknowledged; %d reads, %d answered; %d crashes, %d wipes; %d hints handed over, %d read repairs, %d anti-entropy repairs, %d tombstones collected",
		n, start, time.Since(began).Round(time.Millisecond), total.Writes, total.Deletes, total.Acked, total.Reads, total.ReadsOK,
		total.Crashes, total.Wipes, total.Stats.HintsDelivered, total.Stats.ReadRepairs, total.Stats.AERepairs, total.Stats.TombstonesGC)
}

// TestDeterminism: the same seed gives the same trace, with every message
// and every persisted change in it.
func TestDeterminism(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		cfg := ConfigForSeed(seed)
		cfg.TraceAll = true
		a, b := Run(cfg), Run(cfg)
		if a.TraceHash != b.TraceHash {
			t.Fatalf("seed %d: trace %s then %s", seed, a.TraceHash, b.TraceHash)
		}
	}
}
