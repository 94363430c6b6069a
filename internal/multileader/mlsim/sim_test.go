package mlsim

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"
)

var (
	flagSeed  = flag.Int64("ml.seed", 0, "run only this seed")
	flagSeeds = flag.Int("ml.seeds", 0, "number of seeds (default 200, or $TRIREME_ML_SEEDS)")
	flagStart = flag.Int64("ml.start", 1, "first seed")
	flagSteps = flag.Int("ml.steps", 0, "ticks of the faulty phase (default 300)")
	flagV     = flag.Bool("ml.v", false, "print each seed's outcome (and, with -ml.seed, its trace)")
)

// DefaultSeeds is the number of seeds of a plain `go test`.
const DefaultSeeds = 200

func seeds(t testing.TB) (int64, int) {
	if *flagSeed != 0 {
		return *flagSeed, 1
	}
	n := DefaultSeeds
	if *flagSeeds > 0 {
		n = *flagSeeds
	} else if v := os.Getenv("TRIREME_ML_SEEDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("TRIREME_ML_SEEDS=%q: want a positive integer", v)
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
	var writes, acked, conflicts, crashes int
	for seed := start; seed < start+int64(n); seed++ {
		cfg := configFor(seed)
		cfg.KeepTrace = n == 1 && *flagV
		res := Run(cfg)
		if cfg.KeepTrace {
			t.Log("trace:\n" + res.Trace)
		}
		writes, acked, conflicts, crashes = writes+res.Writes, acked+res.Acked, conflicts+res.Conflicts, crashes+res.Crashes
		if *flagV {
			t.Logf("seed %d: nodes %d %v writes %d acked %d conflicts %d crashes %d clamps %d trace %s",
				seed, cfg.Nodes, cfg.Policy, res.Writes, res.Acked, res.Conflicts, res.Crashes, res.Clamps, res.TraceHash)
		}
		if res.Failed() {
			for _, v := range res.Violations {
				t.Error(v)
			}
			t.Fatalf("seed %d failed (%d nodes, %v)\nreplay: go test ./internal/multileader/mlsim -run 'TestSimulation$' -ml.seed=%d -ml.v", seed, cfg.Nodes, cfg.Policy, seed)
		}
	}
	t.Logf("%d seeds from %d in %v: %d writes, %d acknowledged, %d conflicts, %d crashes", n, start, time.Since(began).Round(time.Millisecond), writes, acked, conflicts, crashes)
}

// TestDeterminism: the same seed gives the same trace.
func TestDeterminism(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		a, b := Run(ConfigForSeed(seed)), Run(ConfigForSeed(seed))
		if a.TraceHash != b.TraceHash {
			t.Fatalf("seed %d: trace %s then %s", seed, a.TraceHash, b.TraceHash)
		}
	}
}
