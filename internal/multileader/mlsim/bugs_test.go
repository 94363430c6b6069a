//go:build mlbugs

package mlsim

import (
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/multileader"
)

// TestMultiLeaderBugsAreCaught proves the checks can fail: each deliberate
// bug is caught within 300 seeds.
func TestMultiLeaderBugsAreCaught(t *testing.T) {
	const maxSeeds = 300
	cases := []struct {
		name string
		bugs multileader.Bugs
		lww  bool // force the LWW policy
	}{
		{"WallClockLWW", multileader.Bugs{WallClockLWW: true}, true},
		{"MergeDropsEntry", multileader.Bugs{MergeDropsEntry: true}, false},
		{"SkipGap", multileader.Bugs{SkipGap: true}, false},
	}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			first, caught := int64(0), 0
			var example string
			for seed := int64(1); seed <= maxSeeds; seed++ {
				cfg := ConfigForSeed(seed)
				cfg.Bugs = bc.bugs
				if bc.lww {
					cfg.Policy = multileader.LWW
				}
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
			t.Logf("%s: first caught by seed %d, caught by %d of %d seeds; first violation: %s",
				bc.name, first, caught, maxSeeds, strings.SplitN(example, "\n", 2)[0])
		})
	}
}
