package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	RunHelperIfAsked() // the etcd members and reapers are this test binary, re-run
	SilenceRedisLog()
	os.Exit(m.Run())
}

// TestSmoke runs the tiny profile against every system (Redis only if
// redis-server is installed) and checks that every part produced figures
// and a report. It asserts no speed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test starts real clusters; skipped with -short")
	}
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	systems := []string{"trireme", "redis", "etcd"}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Log("SKIPPING Redis: redis-server is not installed (apt-get install redis-server); Trireme and etcd still run")
		systems = []string{"trireme", "etcd"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := Profiles()["tiny"]
	var progress strings.Builder
	cfg := Config{Profile: p, Systems: systems, Repo: repo, WorkDir: t.TempDir(), Progress: &progress, Seed: 1}
	res, err := Run(ctx, cfg)
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	per := map[string]int{"trireme": 8, "redis": 5, "etcd": 4}
	want := 0
	for _, s := range systems {
		want += per[s]
	}
	if len(res.Load) != want {
		t.Errorf("load runs: got %d, want %d", len(res.Load), want)
	}
	if res.PeerTLS != "on" {
		t.Errorf("peer TLS %q by default, want on", res.PeerTLS)
	}
	for _, r := range res.Load {
		if r.System == TriremeNoTLS {
			t.Errorf("a run without peer TLS by default: %s %s", r.Workload, r.Variant)
		}
		if r.Ops == 0 {
			t.Errorf("%s %s %s: no operation completed (errors %d, first: %s)", r.System, r.Variant, r.Workload, r.Errors, r.FirstError)
		}
		if r.P50us <= 0 || r.P99us < r.P50us || r.P999us < r.P99us {
			t.Errorf("%s %s %s: quantiles out of order: p50 %v p99 %v p99.9 %v", r.System, r.Variant, r.Workload, r.P50us, r.P99us, r.P999us)
		}
	}
	pairs := 1 // majority vs etcd put; async and sync need Redis
	if slices.Contains(systems, "redis") {
		pairs = 3
	}
	if len(res.Rounds) != 2*pairs*p.TargetRounds {
		t.Errorf("target rounds: got %d runs, want %d", len(res.Rounds), 2*pairs*p.TargetRounds)
	}
	for _, r := range res.Rounds {
		if r.Ops == 0 || r.Round < 1 || r.Clients != 64 {
			t.Errorf("target round %d, %s %s: %d ops at %d clients (errors %d, first: %s)", r.Round, r.System, r.Variant, r.Ops, r.Clients, r.Errors, r.FirstError)
		}
	}
	for _, tg := range res.Targets {
		if !strings.HasPrefix(tg.Name, "failover") && !strings.HasPrefix(tg.Name, "adaptive") && tg.Met != "not measured" && !strings.Contains(tg.Measured, "interleaved rounds") {
			t.Errorf("target %q not judged on its rounds: %s", tg.Name, tg.Measured)
		}
	}
	// Failover: Trireme's three variants (those the binary lacks a flag
	// for are skipped), etcd, and Redis Sentinel (skipped without
	// redis-sentinel); a row is measured or says why not.
	wantRows := 4
	if slices.Contains(systems, "redis") {
		wantRows++
	}
	if len(res.Failover) != wantRows {
		t.Errorf("failover rows: got %d, want %d", len(res.Failover), wantRows)
	}
	for _, f := range res.Failover {
		mustMeasure := f.System == "etcd" || f.Variant == "fixed"
		switch {
		case f.Skipped != "" && (mustMeasure || !strings.HasPrefix(f.Skipped, "skipped: ")):
			t.Errorf("failover %s skipped: %q", f.Name(), f.Skipped)
		case f.Skipped == "" && (len(f.TrialsMs) != p.FailoverTrials || f.MedianMs <= 0 || f.AckedWrites == 0):
			t.Errorf("failover %s: %+v", f.Name(), f)
		}
	}
	if res.CatchUp == nil || res.CatchUp.MBPerSec <= 0 {
		t.Errorf("catch-up: %+v", res.CatchUp)
	}
	if res.Disk == nil || res.Disk.SeqWriteMBps <= 0 {
		t.Errorf("disk: %+v", res.Disk)
	}
	if len(res.Memory) == 0 || res.Memory[0].RSSMB <= 0 {
		t.Errorf("memory: %+v", res.Memory)
	}
	out := t.TempDir()
	if err := WriteReport(res, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Target rounds", "## Write workload", "## Failover", "## Catch-up", "## Memory", "throughput-write-100.svg"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "throughput-write-100.svg"))
	if err != nil || !strings.Contains(string(svg), "<polyline") {
		t.Errorf("throughput chart: err %v, no line drawn", err)
	}
}

// TestSmokePeerTLS runs Trireme with peer TLS and without (PeerTLS "both")
// on two of the tiny profile's write runs, selected by Only under
// Trireme's name, and checks that each run and target round was made both
// ways, back to back, and that the report compares them. It asserts no
// speed.
func TestSmokePeerTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test starts real clusters; skipped with -short")
	}
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := Profiles()["tiny"]
	var progress strings.Builder
	cfg := Config{Profile: p, Systems: []string{"trireme"}, Parts: []string{"load"}, Repo: repo, WorkDir: t.TempDir(),
		Progress: &progress, Seed: 1, PeerTLS: "both", Only: regexp.MustCompile("trireme/write/(sync|majority)").MatchString}
	res, err := Run(ctx, cfg)
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// Two variants, each on both clusters, back to back.
	check := func(what string, rs []LoadResult, want int) {
		if len(rs) != want {
			t.Errorf("%s: got %d runs, want %d", what, len(rs), want)
			return
		}
		for i := 0; i+1 < len(rs); i += 2 {
			a, b := rs[i], rs[i+1]
			if a.Variant != b.Variant || a.System == b.System || a.Round != b.Round ||
				(a.System != TriremeNoTLS && b.System != TriremeNoTLS) || a.Ops == 0 || b.Ops == 0 {
				t.Errorf("%s %d and %d: %s %s round %d (%d ops), %s %s round %d (%d ops); want the same run with and without TLS",
					what, i, i+1, a.System, a.Variant, a.Round, a.Ops, b.System, b.Variant, b.Round, b.Ops)
			}
		}
	}
	check("main runs", res.Load, 2*2*len(p.Clients))
	check("target rounds", res.Rounds, 2*2*p.TargetRounds)
	out := t.TempDir()
	if err := WriteReport(res, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Peer TLS on vs off", "| sync | 100 B | 1 |", "| majority | 100 B | 1 |", "| write | sync | 100 B |"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
}

// TestSmokeMultiLeader runs the multileader part with the tiny profile (a
// 2 s partition) and checks that each of its three measurements produced
// figures and a report section. It asserts no speed.
func TestSmokeMultiLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test starts real clusters; skipped with -short")
	}
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := Profiles()["tiny"]
	var progress strings.Builder
	cfg := Config{Profile: p, Systems: []string{"trireme"}, Parts: []string{"multileader"}, Repo: repo, WorkDir: t.TempDir(),
		Progress: &progress, Seed: 1}
	res, err := Run(ctx, cfg)
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	x := res.MultiLeader
	if x == nil {
		t.Fatal("no multileader result")
	}
	if len(x.Runs) != 2*p.TargetRounds || len(x.Comparison.Versus) != 1 {
		t.Errorf("write comparison: %d runs, %+v", len(x.Runs), x.Comparison)
	}
	for _, r := range x.Runs {
		if r.Ops == 0 || r.Errors > 0 {
			t.Errorf("%s round %d: %d ops, %d errors (first: %s)", sideName(r), r.Round, r.Ops, r.Errors, r.FirstError)
		}
	}
	if c := x.Contended; c == nil || c.Acked == 0 || !c.Converged || c.KeysChecked != mlHotKeys || c.KeysDiffering != 0 || len(c.Nodes) != 3 {
		t.Errorf("contended: %+v", c)
	}
	if v := x.Convergence; v == nil || len(v.Reps) != p.MLPartitionReps || v.Converged != len(v.Reps) || v.Reps[0].Backlog == 0 || v.Reps[0].Acked == 0 {
		t.Errorf("convergence: %+v", v)
	}
	out := t.TempDir()
	if err := WriteReport(res, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Multi-leader mode", "### Writes: ack=local", "### Conflicts under contention", "### Convergence after a partition heals"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
}

// TestSmokeLeaderless runs the leaderless part with the tiny profile and
// checks that each of its three measurements produced figures and a
// report section. It asserts no speed.
func TestSmokeLeaderless(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test starts real clusters; skipped with -short")
	}
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := Profiles()["tiny"]
	var progress strings.Builder
	cfg := Config{Profile: p, Systems: []string{"trireme"}, Parts: []string{"leaderless"}, Repo: repo, WorkDir: t.TempDir(),
		Progress: &progress, Seed: 1}
	res, err := Run(ctx, cfg)
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	x := res.Leaderless
	if x == nil {
		t.Fatal("no leaderless result")
	}
	// 3 write sides + 2 read sides + 3 mixed, leaderless; 3 single-leader.
	if len(x.Runs) != 11*p.LLRounds || len(x.Workloads) != 3 || len(x.Counters) != 8*p.LLRounds {
		t.Errorf("comparison: %d runs, %d workloads, %d counters", len(x.Runs), len(x.Workloads), len(x.Counters))
	}
	for _, r := range x.Runs {
		if r.Ops == 0 || r.Errors > 0 {
			t.Errorf("%s %s round %d: %d ops, %d errors (first: %s)", sideName(r), r.Workload, r.Round, r.Ops, r.Errors, r.FirstError)
		}
	}
	for _, w := range x.Workloads {
		if len(w.VsSingleLeader) != len(w.Comparison.Sides)-1 || len(w.VsSingleLeader) == 0 {
			t.Errorf("%s: %d sides, %d against the single-leader one", w.Workload, len(w.Comparison.Sides), len(w.VsSingleLeader))
		}
	}
	if x.Settle == nil || !x.Settle.Settled {
		t.Errorf("after the rounds: %+v", x.Settle)
	}
	rep := x.Repair
	if rep == nil || len(rep.Trials) != p.LLRepairTrials || len(rep.SLTrials) != p.LLRepairTrials {
		t.Fatalf("repair: %+v", rep)
	}
	for _, tr := range rep.Trials {
		if !tr.Repaired || tr.Target == 0 || tr.Count < tr.Target || tr.Verified != tr.Sampled || tr.Sampled == 0 || tr.AERepairs == 0 {
			t.Errorf("leaderless repair: %+v", tr)
		}
	}
	for _, tr := range rep.SLTrials {
		if !tr.CaughtUp || tr.Path == PathNone {
			t.Errorf("single-leader catch-up: %+v", tr)
		}
	}
	if rep.WipedFollower == "" || rep.MedianS <= 0 || rep.SLMedianS <= 0 {
		t.Errorf("repair summary: wiped follower %q, medians %v and %v", rep.WipedFollower, rep.MedianS, rep.SLMedianS)
	}
	idle := x.Idle
	if idle == nil || len(idle.Windows) != 3*p.LLRounds || len(idle.Sides) != 3 {
		t.Fatalf("idle: %+v", idle)
	}
	for _, w := range idle.Windows {
		if w.Cores <= 0 || len(w.ByNode) != 5 {
			t.Errorf("idle window %+v", w)
		}
		switch w.Side {
		case IdleAEOn:
			if w.AEExchanges == 0 || w.AERepairs != 0 {
				t.Errorf("anti-entropy on: %+v", w)
			}
		case IdleAEOff:
			if w.AEExchanges != 0 {
				t.Errorf("anti-entropy off: %+v", w)
			}
		}
	}
	out := t.TempDir()
	if err := WriteReport(res, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Leaderless mode", "### Throughput and latency per quorum", "| (1, 1) |", "| (3, 1) |",
		"### Repair of a wiped node", "### What anti-entropy costs an idle cluster in sync"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
}
