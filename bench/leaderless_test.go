package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/leaderless/ring"
)

func TestLeaderlessHomeCounts(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	const keys = 5000
	homes, err := homeCounts(ids, 3, keys)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, id := range ids {
		// Each node holds about 3/5 of the keys.
		if n := homes[id]; n < keys*2/5 || n > keys*4/5 {
			t.Errorf("%s: home of %d of %d keys", id, n, keys)
		}
		total += homes[id]
	}
	if total != 3*keys {
		t.Errorf("home replicas in all: %d, want %d", total, 3*keys)
	}
	rg, err := ring.New(ids, 64)
	if err != nil {
		t.Fatal(err)
	}
	sample, err := homeKeys(ids, 3, keys, "n2", 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(sample) != 50 {
		t.Fatalf("%d sampled keys, want 50", len(sample))
	}
	for _, k := range sample {
		if !slices.Contains(rg.Replicas([]byte(k), 3), "n2") {
			t.Errorf("%s is not one of n2's keys", k)
		}
	}
}

// llStatuses decodes leaderless /v1/status replies.
func llStatuses(t *testing.T, replies ...string) map[string]llStatus {
	t.Helper()
	out := map[string]llStatus{}
	for _, r := range replies {
		var st llStatus
		if err := json.Unmarshal([]byte(r), &st); err != nil {
			t.Fatal(err)
		}
		out[st.ID] = st
	}
	return out
}

func llReply(id string, exchanges uint64, diff map[string]int, hints map[string]int, down ...string) string {
	d, _ := json.Marshal(diff)
	h, _ := json.Marshal(hints)
	dn, _ := json.Marshal(down)
	return fmt.Sprintf(`{"id":%q,"role":"leaderless","mode":"leaderless","leaderless":{"replication_factor":3,"hints_pending":%s,"read_repairs":4,"ae_exchanges":%d,"ae_buckets_compared":9,"ae_buckets_differ":1,"ae_repairs":2,"ae_differing":%s,"down":%s}}`,
		id, h, exchanges, d, dn)
}

func TestLLSynced(t *testing.T) {
	nodes := []mlNode{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}
	zero := func(self string) map[string]int {
		m := map[string]int{}
		for _, n := range nodes {
			if n.ID != self {
				m[n.ID] = 0
			}
		}
		return m
	}
	base := map[string]uint64{"n1": 10, "n2": 10, "n3": 10}
	ok := llStatuses(t, llReply("n1", 13, zero("n1"), nil), llReply("n2", 13, zero("n2"), map[string]int{"n3": 0}), llReply("n3", 20, zero("n3"), nil))
	if s, why := llSynced(nodes, base, ok); !s {
		t.Fatalf("in sync: %s", why)
	}
	tests := []struct {
		name string
		sts  map[string]llStatus
		want string
	}{
		{"a node missing", llStatuses(t, llReply("n1", 13, zero("n1"), nil), llReply("n2", 13, zero("n2"), nil)), "no status from n3"},
		{"a peer down", llStatuses(t, llReply("n1", 13, zero("n1"), nil, "n3"), llReply("n2", 13, zero("n2"), nil), llReply("n3", 13, zero("n3"), nil)), "n1 sees n3 down"},
		{"hints held", llStatuses(t, llReply("n1", 13, zero("n1"), map[string]int{"n2": 4}), llReply("n2", 13, zero("n2"), nil), llReply("n3", 13, zero("n3"), nil)), "n1 holds 4 hints for n2"},
		{"too few exchanges", llStatuses(t, llReply("n1", 12, zero("n1"), nil), llReply("n2", 13, zero("n2"), nil), llReply("n3", 13, zero("n3"), nil)), "n1 started 2 exchanges"},
		{"a bucket differs", llStatuses(t, llReply("n1", 13, zero("n1"), nil), llReply("n2", 13, map[string]int{"n1": 0, "n3": 2}, nil), llReply("n3", 13, zero("n3"), nil)), "n2: last exchange with n3: 2 buckets differ"},
		{"no exchange yet", llStatuses(t, llReply("n1", 13, zero("n1"), nil), llReply("n2", 13, map[string]int{"n1": 0, "n3": -1}, nil), llReply("n3", 13, zero("n3"), nil)), "n2: last exchange with n3: -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, why := llSynced(nodes, base, tc.sts)
			if s || !strings.Contains(why, tc.want) {
				t.Fatalf("llSynced = %v, %q; want false, %q", s, why, tc.want)
			}
		})
	}
	if !llAllZero(zero("n2"), "n2", nodes) || llAllZero(map[string]int{"n1": 0}, "n2", nodes) || llAllZero(map[string]int{"n1": 0, "n3": 1}, "n2", nodes) {
		t.Error("llAllZero")
	}
}

func TestLLCountsMinus(t *testing.T) {
	a := llCounts{readRepairs: 10, aeRepairs: 5, aeBucketsDiffer: 3, hintsStored: 1, dropped: 7, writeTimeouts: 2}
	b := llCounts{readRepairs: 4, aeRepairs: 5, aeBucketsDiffer: 4, dropped: 1, err: "no status from n2"}
	d := a.minus(b)
	if d.readRepairs != 6 || d.aeRepairs != 0 || d.aeBucketsDiffer != 0 || d.hintsStored != 1 || d.dropped != 6 || d.writeTimeouts != 2 || d.err == "" {
		t.Fatalf("minus: %+v", d)
	}
}

func TestLLWorkloadAndSummaries(t *testing.T) {
	run := func(system, variant string, round int, ops, p99 float64) LoadResult {
		return LoadResult{System: system, Variant: variant, Workload: "write", Round: round, OpsPerSec: ops, P50us: 1000, P99us: p99}
	}
	sides := []Variant{{System: LLSystem, Name: llWriteSide(1)}, {System: LLSystem, Name: llWriteSide(3)}, {System: SLSystem, Name: SideLLSLWrite}}
	runs := []LoadResult{
		run(LLSystem, llWriteSide(1), 1, 2000, 4000), run(LLSystem, llWriteSide(3), 1, 1000, 8000), run(SLSystem, SideLLSLWrite, 1, 4000, 2000),
		run(SLSystem, SideLLSLWrite, 2, 2000, 2000), run(LLSystem, llWriteSide(3), 2, 1000, 8000), run(LLSystem, llWriteSide(1), 2, 2000, 4000),
	}
	w := llWorkload("write", runs, sides)
	if len(w.Comparison.Sides) != 3 || len(w.VsSingleLeader) != 2 {
		t.Fatalf("%+v", w)
	}
	v := w.VsSingleLeader[0]
	if v.Side != "leaderless SET W=1" || v.Other != "single-leader "+SideLLSLWrite || !slices.Equal(v.Ratios, []float64{0.5, 1}) || v.Median != 0.75 || v.P99Ratio != 2 {
		t.Errorf("W=1 vs single-leader: %+v", v)
	}
	rep := LLRepair{Trials: []LLRepairTrial{{Repaired: true, Secs: 4, KeysPerSec: 1000}, {Repaired: true, Secs: 6, KeysPerSec: 800}, {Secs: 99}},
		SLTrials: []SLRepairTrial{{CaughtUp: true, Secs: 2}, {CaughtUp: false, Secs: 50}}}
	rep.summarize()
	if rep.MedianS != 5 || rep.SLMedianS != 2 || rep.Ratio != 2.5 || rep.KeysPerSec != 900 {
		t.Errorf("repair summary: %+v", rep)
	}
	idle := LLIdle{Windows: []LLIdleWindow{{Round: 1, Side: IdleAEOn, Cores: 0.2}, {Round: 1, Side: IdleAEOff, Cores: 0.1}, {Round: 1, Side: IdleSL, Cores: 0.05},
		{Round: 2, Side: IdleAEOff, Cores: 0.1}, {Round: 2, Side: IdleAEOn, Cores: 0.3}}}
	idle.summarize([]string{IdleAEOn, IdleAEOff, IdleSL})
	if len(idle.Sides) != 3 || idle.Sides[0].Cores != 0.25 || idle.OnOverOff != 2.5 || idle.ExtraCores < 0.149 || idle.ExtraCores > 0.151 ||
		len(idle.RoundDiffs) != 2 || idle.RoundDiffs[1] < 0.199 || idle.MedianDiff < 0.149 || idle.MedianDiff > 0.151 {
		t.Errorf("idle summary: %+v", idle)
	}
}

func TestWriteLeaderless(t *testing.T) {
	run := func(system, variant, workload string, ops float64) LoadResult {
		return LoadResult{System: system, Variant: variant, Workload: workload, Round: 1, OpsPerSec: ops, P50us: 1000, P99us: 3000, P999us: 6000, ServerCPUus: 300}
	}
	var runs []LoadResult
	var ws, rs, ms []Variant
	for _, w := range []int{1, 2, 3} {
		runs = append(runs, run(LLSystem, llWriteSide(w), "write", 1000*float64(w)))
		ws = append(ws, Variant{System: LLSystem, Name: llWriteSide(w)})
	}
	for _, r := range []int{1, 2} {
		runs = append(runs, run(LLSystem, llReadSide(r), "read", 5000))
		rs = append(rs, Variant{System: LLSystem, Name: llReadSide(r)})
	}
	for _, q := range LLQuorums {
		runs = append(runs, run(LLSystem, llMixedSide(q[0], q[1]), "mixed", 2000))
		ms = append(ms, Variant{System: LLSystem, Name: llMixedSide(q[0], q[1])})
	}
	runs = append(runs, run(SLSystem, SideLLSLWrite, "write", 4000), run(SLSystem, SideLLSLRead, "read", 20000), run(SLSystem, SideLLSLMixed, "mixed", 8000))
	ws = append(ws, Variant{System: SLSystem, Name: SideLLSLWrite})
	rs = append(rs, Variant{System: SLSystem, Name: SideLLSLRead})
	ms = append(ms, Variant{System: SLSystem, Name: SideLLSLMixed})
	x := &LeaderlessResult{Nodes: 5, N: 3, ValueBytes: 100, Keys: 1000, Clients: 64, Rounds: 1, Warmup: 0.2, Duration: 1, PeerTLS: true, NodeProcs: 1, AERate: 4000,
		Quorums: LLQuorums, Runs: runs,
		Workloads: []LLWorkload{llWorkload("write", runs, ws), llWorkload("read", runs, rs), llWorkload("mixed", runs, ms)},
		Counters:  []LLRunCounters{{Round: 1, Side: "leaderless SET W=1", AERepairs: 21, AEBucketsDiffer: 145}},
		Settle:    &LLSettle{Ms: 2500, Settled: true},
		Repair: &LLRepair{Keys: 2000, ValueBytes: 100, Bytes: 200000, LLPreloadS: 1.2, LogRetain: "0", WipedFollower: "had NOT applied",
			Trials:   []LLRepairTrial{{Trial: 1, Node: "n2", Home: 1186, Before: 1186, Target: 1186, ReadySecs: 0.1, Repaired: true, Secs: 1.61, InSync: true, InSyncSecs: 2.01, KeysPerSec: 787, Sampled: 100, Verified: 100}},
			SLTrials: []SLRepairTrial{{Trial: 1, Follower: "n2", Leader: "n1", LeaderAfter: "n1", Target: 2001, CaughtUp: true, Secs: 0.45, Path: PathLog}},
			MedianS:  1.61, SLMedianS: 0.45, Ratio: 3.58, KeysPerSec: 787},
		Idle: &LLIdle{WindowS: 2, SettleS: 2, Rounds: 1, Keys: 2000, Rate: 4000, Windows: []LLIdleWindow{{Round: 1, Side: IdleAEOn, Seconds: 2, Cores: 0.2, ByNode: map[string]float64{"n1": 0.04}}},
			Sides:     []LLIdleSide{{Side: IdleAEOn, Windows: 1, Cores: 0.2, MinCores: 0.2, MaxCores: 0.2}, {Side: IdleAEOff, Windows: 1, Cores: 0.1, MinCores: 0.1, MaxCores: 0.1}},
			OnOverOff: 2, ExtraCores: 0.1},
	}
	var b strings.Builder
	writeLeaderless(&b, &Results{Leaderless: x})
	md := b.String()
	for _, s := range []string{"## Leaderless mode", "### Throughput and latency per quorum",
		"| (1, 1) | 1000 | 1.00 | 3.00 | 5000 | 1.00 | 3.00 | 2000 | 1.00 | 3.00 | 300, 300, 300 |",
		"| (3, 1) | 3000 |", "| single-leader: majority writes, stale reads | 4000 |",
		"| write | leaderless SET W=3 | single-leader SET ack=majority, leader | 0.75x | **0.75x** | 1.00x |",
		"| 1 | leaderless SET W=1 | 0 | 21 | 145 | 0 | 0 | 0 |",
		"anti-entropy found every replica in sync after 2500 ms",
		"### Repair of a wiped node", "leaderless repair **1.61 s** (787 keys/s from the node answering), single-leader catch-up **0.45 s**; leaderless over single-leader **3.58x**",
		"| 1 | n2 | 1186 (1186) | 0.10 | 1.61 | 2.01 | 787 |", "checked in this run: had NOT applied",
		"### What anti-entropy costs an idle cluster in sync", "Anti-entropy on over off (medians): **2.00x**, **+0.100 cores**",
		"| leaderless, anti-entropy on (default rate) | 1 | 0.200 (0.200-0.200) | 200 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
}

func TestLeaderlessProfileValidate(t *testing.T) {
	c := DefaultConfig()
	c.Repo = "/somewhere"
	c.Parts = []string{"leaderless"}
	for name, p := range Profiles() {
		c.Profile = p
		if err := c.Validate(); err != nil {
			t.Errorf("profile %s: %v", name, err)
		}
	}
	c.Profile.LLIdleWindow = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "LLIdleWindow") {
		t.Errorf("no idle window: %v", err)
	}
	c.Parts = []string{"load"} // the fields matter only to the leaderless part
	if err := c.Validate(); err != nil {
		t.Errorf("load part without leaderless settings: %v", err)
	}
}

func TestFillValue(t *testing.T) {
	a, b, c := make([]byte, 1024), make([]byte, 1024), make([]byte, 1024)
	fillValue(a, 1, Key(1))
	fillValue(b, 1, Key(2))
	fillValue(c, 2, Key(1))
	if string(a) == string(b) || string(a) == string(c) {
		t.Fatal("values repeat across keys or generations")
	}
	d := make([]byte, 1024)
	fillValue(d, 1, Key(1))
	if string(a) != string(d) {
		t.Fatal("not deterministic")
	}
	for _, x := range a {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", rune(x)) {
			t.Fatalf("byte %q is not alphanumeric", x)
		}
	}
}
