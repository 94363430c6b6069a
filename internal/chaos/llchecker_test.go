package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Hand-made leaderless histories: N = 3, every key's home replicas are
// n1, n2, n3 (n4 and n5 are not homes); times in arbitrary units.

var llHomes3 = func(string) []string { return []string{"n1", "n2", "n3"} }

func llPut(id int, key, val, node string, w int, call, ret int64, out Outcome) LLOp {
	return LLOp{Op: Op{ID: id, Kind: KindPut, Key: key, Value: val, Node: node, Ack: "w=" + string(rune('0'+w)),
		Call: call, Return: ret, Outcome: out, Status: map[Outcome]int{OK: 200, Failed: 503}[out]}, LLExtra: LLExtra{W: w, Replicas: w}}
}

func llDel(id int, key, node string, w int, call, ret int64, out Outcome) LLOp {
	op := llPut(id, key, "", node, w, call, ret, out)
	op.Kind = KindDelete
	return op
}

// withCtx makes a write carry the context of a read that returned saw.
func withCtx(op LLOp, saw ...string) LLOp {
	op.Context, op.Saw = true, saw
	return op
}

// timedOutLL is a write answered 504 naming replicas that hold it (0: none named).
func timedOutLL(op LLOp, replicas int) LLOp {
	op.Outcome, op.Status, op.Replicas = Unknown, 504, replicas
	return op
}

func llGet(id int, key, node string, r int, call, ret int64, vals ...string) LLOp {
	op := LLOp{Op: Op{ID: id, Kind: KindGet, Key: key, Node: node, Consistency: "r=" + string(rune('0'+r)),
		Call: call, Return: ret, Outcome: OK, Found: len(vals) > 0}, LLExtra: LLExtra{R: r, Values: vals}}
	if len(vals) > 0 {
		op.Value = vals[0]
	}
	return op
}

// dotted names a write's minter and version counter.
func dotted(op LLOp, minter string, counter uint64) LLOp {
	op.Minter, op.Counter = minter, counter
	return op
}

// withSeen gives a read its decoded context: actor, counter, actor, counter, ...
func withSeen(op LLOp, kv ...any) LLOp {
	op.Seen = map[string]uint64{}
	for i := 0; i < len(kv); i += 2 {
		op.Seen[kv[i].(string)] = uint64(kv[i+1].(int))
	}
	return op
}

// homesHold gives n1..n3 the same final state of key.
func homesHold(key string, r MLRead) map[string]map[string]MLRead {
	return on(three, map[string]MLRead{key: r})
}

func absent(ctx string) MLRead { return MLRead{Context: ctx} }

// cleanLL is a history every check accepts, with its final states.
func cleanLL() ([]LLOp, map[string]map[string]MLRead) {
	ops := []LLOp{
		llPut(0, "l-0", "a", "n1", 2, 0, 10, OK),
		llGet(1, "l-0", "n4", 2, 20, 30, "a"),
		llPut(2, "l-0", "b", "n2", 1, 40, 50, OK),
		llPut(3, "l-0", "c", "n3", 1, 45, 55, OK), // concurrent with b: siblings
		llGet(4, "l-0", "n5", 3, 60, 70, "b", "c"),
		withCtx(llPut(5, "l-0", "d", "n4", 3, 80, 90, OK), "b", "c"),
		llGet(6, "l-0", "n1", 1, 100, 110, "d"),
		llPut(7, "l-1", "x", "n1", 3, 0, 10, OK),
		llGet(8, "l-1", "n2", 1, 15, 25, "x"),
		withCtx(llDel(9, "l-1", "n2", 2, 30, 40, OK), "x"),
		llGet(10, "l-1", "n3", 2, 50, 60),
		llDel(11, "l-2", "n4", 1, 0, 10, Failed),
		llPut(12, "l-2", "f", "n4", 1, 20, 30, Failed), // 503: nothing written
		timedOutLL(llPut(13, "l-2", "u", "n5", 3, 40, 3000, Unknown), 0),
		llGet(14, "l-2", "n5", 3, 50, 60), // the unknown put may not have happened
		timedOutLL(llPut(15, "l-3", "dur", "n2", 3, 0, 3000, Unknown), 1),
		llPut(16, "l-3", "old", "n1", 1, 0, 10, OK),
		llGet(17, "l-3", "n1", 2, 20, 30, "dur", "old"),
	}
	final := homesHold("l-0", val("d"))
	for _, id := range three {
		final[id]["l-1"] = absent("ctx-l1")
		final[id]["l-2"] = val("u")
		final[id]["l-3"] = sibs("dur", "old")
	}
	return ops, final
}

func TestCheckLeaderlessClean(t *testing.T) {
	ops, final := cleanLL()
	for _, strict := range []bool{true, false} {
		an, st := CheckLeaderless(ops, final, llHomes3, LLCheckConfig{N: 3, Strict: strict, NoGC: true})
		if len(an) != 0 {
			t.Fatalf("strict=%v: clean history: %v", strict, an)
		}
		if st.Pairs == 0 || st.PairsSeen == 0 || st.PairsNewer == 0 || st.Stale != 0 {
			t.Errorf("strict=%v: quorum read figures %+v", strict, st)
		}
		if st.Puts.Acked != 6 || st.Puts.Durable != 1 || st.Puts.Unknown != 1 || st.Puts.Failed != 1 || st.Deletes.Acked != 1 || st.Deletes.Failed != 1 {
			t.Errorf("strict=%v: outcomes puts %+v deletes %+v", strict, st.Puts, st.Deletes)
		}
		if st.FinalLost != 0 || st.FinalPresent == 0 || st.FinalNewer == 0 || st.Superseded != 3 {
			t.Errorf("strict=%v: final figures %+v", strict, st)
		}
		if st.KeysValue != 2 || st.KeysSiblings != 1 || st.KeysAbsent != 1 || st.SiblingReads != 2 || st.ContextWrites != 2 {
			t.Errorf("strict=%v: key and read figures %+v", strict, st)
		}
	}
}

func TestCheckLeaderlessAnomalies(t *testing.T) {
	tests := []struct {
		name   string
		strict bool
		gc     bool // a tombstone may have been collected (LLCheckConfig.NoGC false)
		ops    []LLOp
		final  map[string]map[string]MLRead
		want   string // an anomaly kind; "" = none
		detail string // in that anomaly's detail
	}{
		{"stale quorum read: an older value", true, false, []LLOp{
			llPut(0, "k", "old", "n1", 3, 0, 10, OK),
			llPut(1, "k", "new", "n2", 2, 20, 30, OK),
			llGet(2, "k", "n3", 2, 40, 50, "old"),
		}, homesHold("k", val("new")), AnomalyStaleRead, `put "new"`},
		{"stale quorum read: absent without a delete", true, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, OK),
			llGet(1, "k", "n4", 2, 20, 30),
		}, homesHold("k", val("a")), AnomalyStaleRead, "missing acknowledged writes"},
		{"stale read with sloppy quorums is allowed", false, false, []LLOp{
			llPut(0, "k", "old", "n1", 3, 0, 10, OK),
			llPut(1, "k", "new", "n2", 2, 20, 30, OK),
			llGet(2, "k", "n3", 2, 40, 50, "old"),
		}, homesHold("k", val("new")), "", ""},
		{"R+W <= N is not checked", true, false, []LLOp{
			llPut(0, "k", "old", "n1", 3, 0, 10, OK),
			llPut(1, "k", "new", "n2", 1, 20, 30, OK),
			llGet(2, "k", "n3", 2, 40, 50, "old"),
		}, homesHold("k", val("new")), "", ""},
		{"a read that overlaps the write is not checked", true, false, []LLOp{
			llPut(0, "k", "old", "n1", 3, 0, 10, OK),
			llPut(1, "k", "new", "n2", 3, 20, 45, OK),
			llGet(2, "k", "n3", 3, 40, 50, "old"),
		}, homesHold("k", val("new")), "", ""},
		{"a value written concurrently may supersede it", true, false, []LLOp{
			llPut(0, "k", "a", "n1", 3, 0, 10, OK),
			timedOutLL(llPut(1, "k", "b", "n4", 3, 5, 3000, Unknown), 0),
			llGet(2, "k", "n3", 1, 20, 30, "b"),
		}, homesHold("k", val("b")), "", ""},
		{"a delete of unknown outcome may have removed it", true, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, OK),
			timedOutLL(llDel(1, "k", "n4", 3, 15, 3000, Unknown), 0),
			llGet(2, "k", "n3", 2, 20, 30),
		}, homesHold("k", absent("t")), "", ""},
		{"a delete acknowledged before the write began does not excuse it", true, false, []LLOp{
			llDel(0, "k", "n4", 3, 0, 5, OK),
			llPut(1, "k", "a", "n1", 2, 10, 20, OK),
			llGet(2, "k", "n3", 2, 30, 40),
		}, homesHold("k", val("a")), AnomalyStaleRead, `put "a"`},
		{"a quorum read returns a value a context delete superseded", true, false, []LLOp{
			llPut(0, "k", "a", "n1", 1, 0, 10, OK),
			withCtx(llDel(1, "k", "n5", 3, 20, 30, OK), "a"),
			llGet(2, "k", "n2", 1, 40, 50, "a"),
		}, homesHold("k", absent("t")), AnomalyStaleRead, "had superseded"},
		{"a blind overwrite through the same home replica supersedes", true, false, []LLOp{
			llPut(0, "k", "a", "n1", 1, 0, 10, OK),
			llPut(1, "k", "b", "n1", 2, 20, 30, OK),
			llGet(2, "k", "n2", 2, 40, 50, "a", "b"),
		}, homesHold("k", val("b")), AnomalyStaleRead, "had superseded"},
		{"a quorum read's context does not cover an acknowledged write's version", true, false, []LLOp{
			dotted(llPut(0, "k", "a", "n1", 2, 0, 10, OK), "n1", 5),
			timedOutLL(llPut(1, "k", "b", "n4", 3, 5, 3000, Unknown), 0),
			withSeen(llGet(2, "k", "n3", 2, 20, 30, "b"), "n1.aa", 4, "n2.bb", 9),
		}, homesHold("k", val("b")), AnomalyStaleRead, "does not cover"},
		{"a quorum read's context covers the version", true, false, []LLOp{
			dotted(llPut(0, "k", "a", "n1", 2, 0, 10, OK), "n1", 5),
			timedOutLL(llPut(1, "k", "b", "n4", 3, 5, 3000, Unknown), 0),
			withSeen(llGet(2, "k", "n3", 2, 20, 30, "b"), "n1.aa", 5, "n2.bb", 9),
		}, homesHold("k", val("b")), "", ""},
		{"contexts are not compared once tombstones may be collected", true, true, []LLOp{
			dotted(llPut(0, "k", "a", "n1", 2, 0, 10, OK), "n1", 5),
			timedOutLL(llPut(1, "k", "b", "n4", 3, 5, 3000, Unknown), 0),
			withSeen(llGet(2, "k", "n3", 2, 20, 30, "b"), "n1.aa", 4, "n2.bb", 9),
		}, homesHold("k", val("b")), "", ""},
		{"contexts are not compared with sloppy quorums", false, false, []LLOp{
			dotted(llPut(0, "k", "a", "n1", 2, 0, 10, OK), "n1", 5),
			timedOutLL(llPut(1, "k", "b", "n4", 3, 5, 3000, Unknown), 0),
			withSeen(llGet(2, "k", "n3", 2, 20, 30, "b"), "n1.aa", 4, "n2.bb", 9),
		}, homesHold("k", val("b")), "", ""},
		{"a quorum read's context does not cover an acknowledged delete", true, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, OK),
			dotted(llDel(1, "k", "n2", 3, 20, 30, OK), "n2", 7),
			withSeen(llGet(2, "k", "n3", 1, 40, 50), "n1.aa", 4, "n2.bb", 6),
		}, homesHold("k", absent("t")), AnomalyStaleRead, "version n2.bb:7"},
		{"lost write: a home replica lacks an acknowledged put", false, false, []LLOp{
			llPut(0, "k", "old", "n1", 3, 0, 10, OK),
			llPut(1, "k", "new", "n4", 1, 20, 30, OK),
		}, func() map[string]map[string]MLRead {
			f := homesHold("k", val("new"))
			f["n2"]["k"] = val("old")
			return f
		}(), AnomalyLostWrite, "home replicas n2"},
		{"lost write: a durable 504 vanished", false, false, []LLOp{
			timedOutLL(llPut(0, "k", "a", "n4", 3, 0, 3000, Unknown), 1),
		}, homesHold("k", absent("")), AnomalyLostWrite, "durable on 1"},
		{"a 504 naming no replica may vanish", false, false, []LLOp{
			timedOutLL(llPut(0, "k", "a", "n4", 3, 0, 3000, Unknown), 0),
		}, homesHold("k", absent("")), "", ""},
		{"home replicas diverged (context)", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 3, 0, 10, OK),
		}, func() map[string]map[string]MLRead {
			f := homesHold("k", val("a"))
			r := val("a")
			r.Context = "other"
			f["n3"]["k"] = r
			return f
		}(), AnomalyDiverged, "n3="},
		{"home replicas diverged (tombstone against nothing)", false, false, []LLOp{
			llDel(0, "k", "n1", 3, 0, 10, OK),
		}, func() map[string]map[string]MLRead {
			f := homesHold("k", absent("tomb"))
			f["n2"]["k"] = absent("")
			return f
		}(), AnomalyDiverged, "n2="},
		{"a non-home replica's state is not compared", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 3, 0, 10, OK),
		}, func() map[string]map[string]MLRead {
			f := homesHold("k", val("a"))
			f["n4"] = map[string]MLRead{"k": absent("")}
			return f
		}(), "", ""},
		{"resurrection: a value a context delete superseded is back", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, OK),
			withCtx(llDel(1, "k", "n4", 2, 20, 30, OK), "a"),
		}, homesHold("k", val("a")), AnomalyResurrected, "deleted by op 1"},
		{"resurrection: a blind delete through the home replica that minted the value", false, false, []LLOp{
			llPut(0, "k", "a", "n2", 1, 0, 10, OK),
			llDel(1, "k", "n2", 1, 20, 30, OK),
		}, homesHold("k", val("a")), AnomalyResurrected, "deleted by op 1"},
		{"resurrection: a durable 504 delete counts", false, false, []LLOp{
			llPut(0, "k", "a", "n2", 1, 0, 10, OK),
			timedOutLL(llDel(1, "k", "n2", 3, 20, 3000, Unknown), 1),
		}, homesHold("k", val("a")), AnomalyResurrected, "deleted by op 1"},
		{"a blind delete through a non-home node may leave a sibling", false, false, []LLOp{
			llPut(0, "k", "a", "n2", 1, 0, 10, OK),
			llDel(1, "k", "n4", 3, 20, 30, OK),
		}, homesHold("k", val("a")), "", ""},
		{"a blind delete through another home replica may leave a sibling", false, false, []LLOp{
			llPut(0, "k", "a", "n2", 1, 0, 10, OK),
			llDel(1, "k", "n3", 3, 20, 30, OK),
		}, homesHold("k", val("a")), "", ""},
		{"an overwritten value is back", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 1, 0, 10, OK),
			withCtx(llPut(1, "k", "b", "n5", 1, 20, 30, OK), "a"),
		}, homesHold("k", sibs("a", "b")), AnomalyResurrected, "overwritten by op 1"},
		{"a failed write is visible", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, Failed),
			llGet(1, "k", "n2", 1, 20, 30, "a"),
		}, homesHold("k", absent("")), AnomalyFailedWriteSeen, "answered as failed"},
		{"a failed write is in the final state", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, Failed),
		}, homesHold("k", val("a")), AnomalyFailedWriteSeen, "final state"},
		{"a value nobody wrote", false, false, []LLOp{
			llGet(0, "k", "n2", 1, 20, 30, "zz"),
		}, homesHold("k", absent("")), AnomalyUnwrittenRead, `"zz"`},
		{"a read from the future", false, false, []LLOp{
			llGet(0, "k", "n2", 1, 0, 10, "a"),
			timedOutLL(llPut(1, "k", "a", "n1", 2, 20, 3000, Unknown), 0),
		}, homesHold("k", val("a")), AnomalyFutureRead, "before op 1"},
		{"one write minted twice", false, false, []LLOp{
			llPut(0, "k", "a", "n1", 2, 0, 10, OK),
		}, homesHold("k", sibs("a", "a")), AnomalyDuplicated, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an, _ := CheckLeaderless(tt.ops, tt.final, llHomes3, LLCheckConfig{N: 3, Strict: tt.strict, NoGC: !tt.gc})
			if tt.want == "" {
				if len(an) != 0 {
					t.Fatalf("want no anomaly, got %v", an)
				}
				return
			}
			i := slices.IndexFunc(an, func(a Anomaly) bool { return a.Kind == tt.want && strings.Contains(a.Detail, tt.detail) })
			if i < 0 {
				t.Fatalf("want a %s anomaly naming %q, got %v", tt.want, tt.detail, an)
			}
		})
	}
}

func TestLLHomes(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	homes, err := LLHomes(ids, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Reversed ids give the same ring: placement depends on the ids only.
	again, err := LLHomes([]string{"n5", "n4", "n3", "n2", "n1"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 50 {
		k := llKey(i)
		h := homes(k)
		if len(h) != 3 || h[0] == h[1] || h[1] == h[2] || h[0] == h[2] || !slices.Equal(h, again(k)) {
			t.Fatalf("homes(%s) = %v (again %v)", k, h, again(k))
		}
		for _, id := range h {
			seen[id] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("50 keys are homed on %v only", seen)
	}
	if _, err := LLHomes([]string{"n1", "n1"}, 1); err == nil {
		t.Fatal("duplicate ids accepted")
	}
}

func TestLLQuiet(t *testing.T) {
	ids := []string{"n1", "n2"}
	mk := func(hints int, diff int, down ...string) LLStatus {
		var st LLStatus
		st.Mode = ModeLeaderless
		st.Leaderless = &LLInfo{HintsPending: map[string]int{"n3": hints}, AEDiffering: map[string]int{"n1": diff, "n2": diff}, Down: down}
		return st
	}
	if ok, why := LLQuiet(map[string]LLStatus{"n1": mk(0, 0), "n2": mk(0, 0)}, ids); !ok {
		t.Fatalf("quiet cluster: %s", why)
	}
	for name, sts := range map[string]map[string]LLStatus{
		"hints":       {"n1": mk(2, 0), "n2": mk(0, 0)},
		"differing":   {"n1": mk(0, 0), "n2": mk(0, 3)},
		"no exchange": {"n1": mk(0, -1), "n2": mk(0, 0)},
		"down":        {"n1": mk(0, 0, "n2"), "n2": mk(0, 0)},
		"no status":   {"n1": mk(0, 0)},
	} {
		if ok, _ := LLQuiet(sts, ids); ok {
			t.Errorf("%s: quiet", name)
		}
	}
}

func TestLeaderlessRunConfig(t *testing.T) {
	good := DefaultLeaderlessRunConfig()
	good.Binary, good.Dir = "/bin/true", "/tmp/x"
	if err := good.Validate(); err != nil {
		t.Fatalf("default leaderless config: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(*RunConfig)
		field string
	}{
		{"N above the nodes", func(c *RunConfig) { c.ReplicationFactor = 6 }, "ReplicationFactor"},
		{"W above N", func(c *RunConfig) { c.Acks = []string{"4"} }, "Acks"},
		{"single-leader ack", func(c *RunConfig) { c.Acks = []string{"majority"} }, "Acks"},
		{"bad R", func(c *RunConfig) { c.Reads = []string{"linearizable"} }, "Reads"},
		{"RESP", func(c *RunConfig) { c.Protocols = []string{"resp"} }, "Protocols"},
		{"transfer", func(c *RunConfig) { c.Faults = []string{"transfer"} }, "Faults"},
		{"no keys", func(c *RunConfig) { c.ContendedKeys = 0 }, "ContendedKeys"},
		{"CAS clients", func(c *RunConfig) { c.CASClients = 1 }, "CASClients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	r := &Report{Seed: 7, Nodes: 5, Faults: map[string]int{"kill/random": 1},
		LL: &LLStats{N: 3, Quiet: true, Quiescence: 2 * time.Second, Keys: 6,
			LLCheckStats: LLCheckStats{Puts: LLOutcomes{Acked: 10}, Pairs: 4, PairsSeen: 3, Stale: 1}}}
	s := r.Summary()
	for _, want := range []string{"seed 7", "N=3, strict quorums", "quiet 2s", "acknowledged 10", "put pairs 4: saw it 3", "stale 1", "(anomalies)"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}
