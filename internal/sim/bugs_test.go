//go:build replbugs

package sim

import (
	"fmt"
	"testing"

	"github.com/trireme-db/trireme/internal/repl"
)

// bugCase is a deliberate protocol bug and the fault mix that exposes it.
type bugCase struct {
	name string
	flag string // -sim.bugs value
	bugs Bugs
	cfg  func(seed int64) Config
}

func bugCases() []bugCase {
	return []bugCase{
		{"VoteWithoutLogCheck", "vote", Bugs{VoteWithoutLogCheck: true}, bugConfig},
		{"CommitOldTerm", "commit", Bugs{CommitOldTerm: true}, profileConfig("figure8", 3, 2000)},
		{"LeaseWithoutStickiness", "lease", Bugs{LeaseWithoutStickiness: true}, profileConfig("lease", 0, 2000)},
		{"AdaptiveUnderLease", "adaptive-lease", Bugs{AdaptiveUnderLease: true}, func(seed int64) Config {
			c := profileConfig("lease", 0, 2000)(seed)
			c.Timing.Adaptive(0)
			return c
		}},
		{"VoteWithoutLogCheck/Coordinator", "vote", Bugs{VoteWithoutLogCheck: true}, func(seed int64) Config {
			c := bugConfig(seed)
			c.Timing.UseCoordinator()
			return c
		}},
		{"AckBeforeFsync", "ack", Bugs{AckBeforeFsync: true}, bugConfig},
		{"NoProbeResend", "probe", Bugs{NoProbeResend: true}, profileConfig("lossy", 0, 0)},
		{"TwoConfChanges", "two-conf", Bugs{TwoConfChanges: true}, bugConfig},
		{"SnapshotWithoutChecks", "snap-nocheck", Bugs{SnapshotWithoutChecks: true}, bugConfig},
		{"CompactUndurable", "compact-undurable", Bugs{CompactUndurable: true}, bugConfig},
		{"SessionReadEarly", "session-early", Bugs{SessionReadEarly: true}, bugConfig},
		{"DuplicateApply", "dup-apply", Bugs{DuplicateApply: true}, bugConfig},
		{"BoundedNoCheck", "bounded-nocheck", Bugs{BoundedNoCheck: true}, bugConfig},
		{"SettleEarly", "settle-early", Bugs{SettleEarly: true}, profileConfig("figure8", 3, 0)},
		{"AckBeforeFsync/EndToEnd", "ack", Bugs{AckBeforeFsync: true}, func(seed int64) Config {
			c := bugConfig(seed)
			c.EndToEndOnly = true
			return c
		}},
	}
}

func bugConfig(seed int64) Config {
	return ConfigForSeed(seed, 0)
}

// profileConfig runs the named profile for steps ticks; nodes 0 = 3 or 5
// from the seed.
func profileConfig(name string, nodes, steps int) func(seed int64) Config {
	return func(seed int64) Config {
		c := ConfigForSeed(seed, steps)
		p, ok := ProfileByName(name)
		if !ok {
			panic("unknown profile " + name)
		}
		p.Apply(&c)
		if nodes != 0 {
			c.Nodes = nodes
		}
		return c
	}
}

// TestBugsAreCaught proves that the checks can fail: each deliberate bug is
// caught within the default number of seeds.
func TestBugsAreCaught(t *testing.T) {
	for _, bc := range bugCases() {
		t.Run(bc.name, func(t *testing.T) {
			n := seedCount(t)
			caught := map[string]int{}
			first := int64(-1)
			for i := 0; i < n; i++ {
				seed := *flagStart + int64(i)
				cfg := bc.cfg(seed)
				cfg.Bugs = bc.bugs
				res := mustRun(t, cfg)
				if res.Err == nil {
					continue
				}
				v, ok := res.Err.(*Violation)
				if !ok {
					t.Fatalf("seed %d: unexpected error %v", seed, res.Err)
				}
				caught[v.Invariant]++
				if first < 0 {
					first = seed
					e2e := ""
					if cfg.EndToEndOnly {
						e2e = " -sim.e2e"
					}
					if cfg.Timing.Detector == repl.DetectorAdaptive {
						e2e += fmt.Sprintf(" -sim.adaptive=%d", cfg.Timing.PauseTicks)
					}
					if cfg.Timing.Coordinator {
						e2e += " -sim.coordinator"
					}
					t.Logf("first caught at seed %d: %v\nreplay: %s -sim.profile=%s -sim.nodes=%d -sim.bugs=%s%s",
						seed, v, ReplayCommand(seed, cfg.Steps, "replbugs"), cfg.Profile, cfg.Nodes, bc.flag, e2e)
				}
			}
			if first < 0 {
				t.Fatalf("bug %s not caught in %d seeds", bc.name, n)
			}
			t.Logf("caught in %d of %d seeds, by invariant: %v", sum(caught), n, caught)
		})
	}
}

func sum(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}
