package sim

import (
	"testing"
)

// scenario is a named cluster-level test: a fault mix, a size, and a check on
// what the runs must have exercised (so a scenario that stops exercising its
// faults fails instead of passing vacuously).
type scenario struct {
	name   string
	nodes  []int
	seeds  int
	steps  int
	faults func(f *Faults)
	expect func(t *testing.T, s Stats)
}

func scenarios() []scenario {
	return []scenario{
		{
			name: "ManyElectionsWithNodesCutOff", nodes: []int{3, 5}, seeds: 20, steps: 800,
			faults: func(f *Faults) {
				f.Partition, f.PartitionTicksMax = 0.08, 40
				f.PartitionKinds = []PartitionKind{PartSymmetric, PartIsolateLeader, PartBridge, PartLeaderOneWay}
			},
			expect: func(t *testing.T, s Stats) {
				if s.LeaderChanges < 5*s.Runs {
					t.Errorf("only %d leader changes in %d runs", s.LeaderChanges, s.Runs)
				}
				if s.PartIsolateLeader == 0 || s.PartSymmetric == 0 || s.PartBridge == 0 {
					t.Errorf("partition kinds not all exercised: %s", s)
				}
			},
		},
		{
			name: "LeadershipTransfers", nodes: []int{3, 5}, seeds: 20, steps: 800,
			faults: func(f *Faults) {
				f.Transfer, f.Drop, f.Pause = 0.03, 0.02, 0.01
			},
			expect: func(t *testing.T, s Stats) {
				if s.Transfers < 10*s.Runs || s.LeaderChanges < 5*s.Runs {
					t.Errorf("transfers not exercised: %s", s)
				}
			},
		},
		{
			name: "UnreliableNetworkAgreement", nodes: []int{3, 5}, seeds: 20, steps: 800,
			faults: func(f *Faults) {
				f.Drop, f.Duplicate, f.SlowLink, f.DelayMax = 0.2, 0.2, 0.2, 6
			},
			expect: func(t *testing.T, s Stats) {
				if s.WritesOK < 20*s.Runs || s.LinReadsOK < 10*s.Runs {
					t.Errorf("too little agreement on an unreliable network: %d writes, %d reads acknowledged in %d runs", s.WritesOK, s.LinReadsOK, s.Runs)
				}
				if s.Drops == 0 || s.Duplicates == 0 {
					t.Errorf("no drops or duplicates: %s", s)
				}
			},
		},
		{
			name: "Churn", nodes: []int{3, 5}, seeds: 20, steps: 800,
			faults: func(f *Faults) {
				f.Crash, f.DownTicksMax, f.CrashMidReady, f.StoreLoss, f.TornWrite = 0.1, 20, 0.02, 0.5, 0.7
				f.Drop = 0.02
			},
			expect: func(t *testing.T, s Stats) {
				if s.Crashes < 20*s.Runs || s.TornWrites == 0 || s.StoreLosses == 0 || s.CrashesMidReady == 0 {
					t.Errorf("churn not exercised: %s", s)
				}
				if s.WritesOK == 0 {
					t.Errorf("no write acknowledged under churn")
				}
			},
		},
		{
			name: "Figure8RepeatedLeaderCrashes", nodes: []int{3, 5}, seeds: 20, steps: 1000,
			faults: func(f *Faults) {
				p, _ := ProfileByName("figure8")
				*f = p.Faults
			},
			expect: func(t *testing.T, s Stats) {
				if s.NewLeaderCrashes < 5*s.Runs || s.Discarded == 0 {
					t.Errorf("figure 8 pattern not exercised: %s", s)
				}
			},
		},
		{
			name: "CommandsAndSessionsThroughFailover", nodes: []int{3, 5}, seeds: 20, steps: 800,
			faults: func(f *Faults) {
				f.Crash, f.LeaderCrashBias, f.DownTicksMax = 0.03, 0.7, 30
				f.Partition, f.PartitionTicksMax = 0.02, 60
				f.Drop = 0.02
			},
			expect: func(t *testing.T, s Stats) {
				if s.IncrRetries == 0 || s.IdemDuplicates == 0 || s.IncrAcked < 10*s.Runs {
					t.Errorf("retried increments not exercised: %s", s)
				}
				if s.CASApplied == 0 || s.CASCondFailed == 0 || s.CASChecked < 20*s.Runs {
					t.Errorf("compare-and-set not exercised: %s", s)
				}
				if s.SessionLocal == 0 || s.SessionForwarded == 0 || s.SessionRolledBack == 0 {
					t.Errorf("session reads not exercised (local, forwarded, rolled back): %s", s)
				}
				if s.BoundedLocal == 0 || s.BoundedForwarded == 0 || s.BoundedChecked < 10*s.Runs {
					t.Errorf("bounded reads not exercised (local and at the leader): %s", s)
				}
			},
		},
		{
			name: "PausesAndClockDrift", nodes: []int{3, 5}, seeds: 20, steps: 800,
			faults: func(f *Faults) {
				f.Pause, f.PauseTicksMax, f.DriftEvery = 0.05, 40, 30
			},
			expect: func(t *testing.T, s Stats) {
				if s.Pauses < 10*s.Runs || s.DriftTicks == 0 || s.LinReadsOK == 0 {
					t.Errorf("pauses not exercised: %s", s)
				}
			},
		},
	}
}

// TestScenarios runs the named cluster-level scenarios.
func TestScenarios(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			var total Stats
			for _, nodes := range sc.nodes {
				for i := 0; i < sc.seeds; i++ {
					seed := int64(1000*nodes + i)
					cfg := ConfigForSeed(seed, sc.steps)
					p, _ := ProfileByName("calm")
					p.Apply(&cfg)
					cfg.Profile = "scenario:" + sc.name
					cfg.Nodes = nodes
					sc.faults(&cfg.Faults)
					res := mustRun(t, cfg)
					total.Add(res.Stats)
					if res.Err != nil {
						t.Errorf("seed %d nodes %d: %v\ntrace tail:\n%s", seed, nodes, res.Err, joinLines(res.TraceTail))
						return
					}
				}
			}
			sc.expect(t, total)
			t.Logf("%s", total)
		})
	}
}

func joinLines(ls []string) string {
	s := ""
	for _, l := range ls {
		s += l + "\n"
	}
	return s
}
