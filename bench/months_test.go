package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarizeLearnerRuns(t *testing.T) {
	run := func(setup string, trial int, ops float64, leaderShare float64) LearnerRun {
		return LearnerRun{Setup: setup, Trial: trial, Load: LoadResult{OpsPerSec: ops, P50us: ops / 100, P99us: ops / 10, ServerCPUus: 10},
			Nodes: []NodeReads{{ID: "n1", Role: "leader", Clients: 22, Reads: uint64(ops * leaderShare), ReadsPerSec: ops * leaderShare,
				Share: leaderShare, Cores: 0.5, CPUusPerRead: 10}}}
	}
	runs := []LearnerRun{
		run(SetupVoters, 1, 100, 0.34), run(SetupVoters, 2, 300, 0.33), run(SetupVoters, 3, 200, 0.33),
		run(SetupVotersIdle, 1, 100, 0.34), run(SetupAllLearners, 1, 110, 0.2),
		run(SetupAllLearners, 2, 90, 0.2), run(SetupVotersIdle, 2, 100, 0.34),
	}
	s := summarizeLearnerRuns(SetupVoters, runs)
	if s.Trials != 3 || s.OpsPerSec != 200 || s.MinOps != 100 || s.MaxOps != 300 || s.P99us != 20 {
		t.Errorf("voters: %+v", s)
	}
	if len(s.Nodes) != 1 || s.Nodes[0].ReadsPerSec != 66 || s.Nodes[0].Share != 0.33 || s.Nodes[0].Clients != 22 {
		t.Errorf("voters' leader: %+v", s.Nodes)
	}
	if s := summarizeLearnerRuns("nothing", runs); s.Trials != 0 || len(s.Nodes) != 0 {
		t.Errorf("a setup without runs: %+v", s)
	}
	got := fmt.Sprintf("%.2f", learnerRatios(runs))
	if got != "[1.10 0.90]" {
		t.Errorf("ratios %s, want [1.10 0.90] (paired by round, in the runs' order)", got)
	}
}

func TestCatchUpPathAndBytes(t *testing.T) {
	snap := MemberWatch{SnapshotPolls: 3, MaxSnapshotBytesTotal: 5 << 20}
	tests := []struct {
		name     string
		r        SnapshotTrial
		path     string
		bytes    int64
		fromWord string
	}{
		{"metric", SnapshotTrial{CaughtUp: true, Metrics: map[string]float64{"trireme_snapshot_bytes_received_total": 7 << 20}, LeaderStore: 1},
			PathSnapshot, 7 << 20, "received"},
		{"members", SnapshotTrial{CaughtUp: true, Members: snap, LeaderStore: 1}, PathSnapshot, 5 << 20, "snapshot_bytes_total"},
		{"snapshot without sizes", SnapshotTrial{CaughtUp: true, Members: MemberWatch{SnapshotPolls: 1}, LeaderStore: 9}, PathSnapshot, 9, "leader's store"},
		{"log", SnapshotTrial{CaughtUp: true, Written: 4 << 20, LeaderStore: 1}, PathLog, 4 << 20, "by log"},
		{"stuck in snapshot", SnapshotTrial{Members: snap, LeaderStore: 3}, PathNone, 5 << 20, "snapshot_bytes_total"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Path = catchUpPath(tc.r.Members, tc.r.Metrics, tc.r.CaughtUp)
			if tc.r.Path != tc.path {
				t.Errorf("path %q, want %q", tc.r.Path, tc.path)
			}
			b, from := snapshotBytes(tc.r)
			if b != tc.bytes || !strings.Contains(from, tc.fromWord) {
				t.Errorf("bytes %d from %q, want %d from something with %q", b, from, tc.bytes, tc.fromWord)
			}
		})
	}
}

// sleepDoer is a Doer whose writes take d.
type sleepDoer struct{ d time.Duration }

func (s sleepDoer) Write(ctx context.Context, key string, value []byte) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.d):
		return nil
	}
}
func (s sleepDoer) Read(context.Context, string) error { return nil }
func (s sleepDoer) Close() error                       { return nil }

func TestBackgroundWritesPhases(t *testing.T) {
	v := Variant{Open: func(context.Context, int, int) (Doer, error) { return sleepDoer{time.Millisecond}, nil }}
	bg, err := startBackgroundWrites(context.Background(), v, []string{"before", "during", "unused"})
	if err != nil {
		t.Fatal(err)
	}
	bg.nextPhase()
	time.Sleep(100 * time.Millisecond)
	bg.nextPhase()
	time.Sleep(100 * time.Millisecond)
	ps := bg.stop()
	if len(ps) != 2 || ps[0].Phase != "before" || ps[1].Phase != "during" {
		t.Fatalf("phases %+v, want before and during only", ps)
	}
	for _, p := range ps {
		// Paced at bgRate: about 100 writes in 100ms; no speed asserted
		// beyond "some, and not unpaced".
		if p.Writes == 0 || p.Writes > uint64(bgRate) || p.P50us < 1000 || p.Errors != 0 || p.Seconds <= 0 {
			t.Errorf("phase %+v", p)
		}
	}
}

func TestWALInfoIn(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"00000000000000004097.wal", "00000000000000000513.wal", "00000000000000009000.wal.tmp", "hardstate"} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, 10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := walInfoIn(dir)
	if err != nil || w.Segments != 2 || w.FirstIndex != 513 || w.Bytes != 20 {
		t.Errorf("walInfoIn = %+v, %v; want 2 segments from 513, 20 bytes", w, err)
	}
	if _, err := walInfoIn(t.TempDir()); err == nil {
		t.Error("an empty WAL directory: no error")
	}
}

func TestScrapeMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP trireme_snapshots_sent_total x\n# TYPE trireme_snapshots_sent_total counter\n"+
			"trireme_snapshots_sent_total 2\ntrireme_snapshot_bytes_received_total{peer=\"n1\"} 1.5e+06\ntrireme_writes_total 9\n")
	}))
	defer srv.Close()
	m, err := scrapeMetrics(context.Background(), strings.TrimPrefix(srv.URL, "http://"), "snapshot")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"trireme_snapshots_sent_total": 2, `trireme_snapshot_bytes_received_total{peer="n1"}`: 1.5e6}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("scrapeMetrics = %v, want %v", m, want)
	}
}

func TestMonthsReport(t *testing.T) {
	res := &Results{Machine: Machine{Cores: 2},
		Learners: &LearnersResult{Voters: 3, Learners: 2, Trials: 1, Ratios: []float64{1.1},
			Setups: []LearnerSetup{{Setup: SetupAllLearners, Trials: 1, OpsPerSec: 50000,
				Nodes: []NodeReads{{ID: "r1", Role: "learner", Clients: 13, ReadsPerSec: 10000, Share: 0.2, Cores: 0.2, CPUusPerRead: 20}}}},
			Runs: []LearnerRun{{Setup: SetupAllLearners, Trial: 1, Nodes: []NodeReads{{ID: "n1", Role: "leader", Share: 0.2}}}}},
		Replica: &ReplicaResult{LogRetain: monthsLogRetain, LimitSecs: 57, Trials: []ReplicaTrial{{Replica: "r1", Path: PathNone,
			Members: MemberWatch{Polls: 3, Listed: 3, SnapshotPolls: 3, States: []MemberState{{State: "snapshot", Role: "learner"}}},
			Writes:  []PhaseWrites{{Phase: "before", P99us: 1000}, {Phase: "catch-up", P99us: 3000}}}}},
		Snapshot: &SnapshotResult{DiskMBps: 1000, MBPerSec: 104.9, OfDisk: 0.1049, Trials: []SnapshotTrial{{Follower: "n2", CaughtUp: true,
			Path: PathSnapshot, Secs: 2, ReadySecs: 0.1, StoreBytes: 200 << 20, MBPerSec: 104.9, OfDisk: 0.1049,
			WALs: map[string]WALInfo{"n1": {Segments: 2, FirstIndex: 9000}}}}},
	}
	md := Markdown(res, nil)
	for _, s := range []string{"## Stale reads with read replicas (learners)", "| voters + learners | r1 | learner | 13 | 10000 | 20.0% | 0.20 | 20.0 |",
		"median 1.10x", "## Adding a read replica", "not within 57 s", "learner snapshot (0.0 s)", "| 3.00x |",
		"## Snapshot catch-up", "| snapshot | 2.00 s (0.10 s) | 200 MiB | 104.9 | 0.105x |", "n1 from 9000 (no)", "0.105x the disk's 1000 MB/s (goal: at least 0.5x; met: no)"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

func TestSnapshotSecs(t *testing.T) {
	m := MemberWatch{States: []MemberState{{State: "probe", AtSeconds: 0.1}, {State: "snapshot", AtSeconds: 0.4}, {State: "probe", AtSeconds: 3.9}}}
	if got := m.snapshotSecs(10); fmt.Sprintf("%.1f", got) != "3.5" {
		t.Errorf("snapshot then probe: %v, want 3.5", got)
	}
	m.States = m.States[:2]
	if got := m.snapshotSecs(10); fmt.Sprintf("%.1f", got) != "9.6" {
		t.Errorf("snapshot to the end: %v, want 9.6", got)
	}
	if got := (MemberWatch{}).snapshotSecs(10); got != 0 {
		t.Errorf("never in snapshot: %v", got)
	}
}
