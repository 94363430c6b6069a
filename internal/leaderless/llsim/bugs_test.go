//go:build llbugs

package llsim

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/leaderless"
)

var flagBugSeeds = flag.Int("sim.bugseeds", 200, "seeds each deliberate bug is run on")

// TestLeaderlessBugsAreCaught proves the checks can fail: each deliberate
// bug is caught within -sim.bugseeds seeds (200). The catch rate is logged.
func TestLeaderlessBugsAreCaught(t *testing.T) {
	cases := []struct {
		name string
		bugs leaderless.Bugs
	}{
		{"DropHint", leaderless.Bugs{DropHint: true}},
		{"SkipMerkleRange", leaderless.Bugs{SkipMerkleRange: true}},
		{"EarlyGC", leaderless.Bugs{EarlyGC: true}},
	}
	maxSeeds := int64(*flagBugSeeds)
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			began := time.Now()
			first, caught := int64(0), 0
			var example string
			for seed := int64(1); seed <= maxSeeds; seed++ {
				cfg := ConfigForSeed(seed)
				cfg.Bugs = bc.bugs
				if res := Run(cfg); res.Failed() {
					caught++
					if first == 0 {
						first, example = seed, res.Violations[0]
					}
				}
			}
			if caught == 0 {
				t.Fatalf("%s not caught in %d seeds", bc.name, maxSeeds)
			}
			t.Logf("%s: first caught by seed %d, caught by %d of %d seeds in %v; first violation: %s",
				bc.name, first, caught, maxSeeds, time.Since(began).Round(time.Millisecond), strings.SplitN(example, "\n", 2)[0])
		})
	}
}
