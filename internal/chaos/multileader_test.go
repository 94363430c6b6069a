package chaos

import (
	"strings"
	"testing"
	"time"
)

// mlPut is a multi-leader put for table tests (times in arbitrary units).
func mlPut(key, val string, call, ret int64, out Outcome) Op {
	return Op{Kind: KindPut, Key: key, Value: val, Call: call, Return: ret, Outcome: out, Ack: "local", Node: "n1", Proto: "http"}
}

// timedOut is a put answered 504; with index > 0 the node said it is durable there.
func timedOut(op Op, index uint64) Op {
	op.Outcome, op.Status, op.Index = Unknown, 504, index
	return op
}

func add(key string, by int64, out Outcome, status int, answer string) Op {
	return Op{Kind: KindAdd, Key: key, By: by, Outcome: out, Status: status, Value: answer, Ack: "local", Node: "n1"}
}

func val(v string) MLRead { return MLRead{Found: true, Value: v, Context: "c-" + v} }

func sibs(vs ...string) MLRead {
	r := MLRead{Found: true, Value: vs[0], Context: "c-" + strings.Join(vs, "+")}
	for i, v := range vs {
		r.Siblings = append(r.Siblings, MLSibling{Dot: "n" + string(rune('1'+i)) + ":1", Value: v})
	}
	return r
}

// on gives every node of ids the same state of the keys.
func on(ids []string, kv map[string]MLRead) map[string]map[string]MLRead {
	out := map[string]map[string]MLRead{}
	for _, id := range ids {
		out[id] = map[string]MLRead{}
		for k, v := range kv {
			out[id][k] = v
		}
	}
	return out
}

var three = []string{"n1", "n2", "n3"}

func kinds(an []Anomaly) []string {
	var out []string
	for _, a := range an {
		out = append(out, a.Kind)
	}
	return out
}

func TestCheckMLConverged(t *testing.T) {
	same := on(three, map[string]MLRead{"k-0": sibs("a", "b"), "u-0-1": val("x"), "gone": {Context: "ctx"}})
	if an := CheckMLConverged(same); len(an) != 0 {
		t.Fatalf("identical states: %v", an)
	}
	tests := []struct {
		name string
		edit func(map[string]map[string]MLRead)
	}{
		{"value differs", func(s map[string]map[string]MLRead) { s["n2"]["u-0-1"] = val("y") }},
		{"absent on one node", func(s map[string]map[string]MLRead) { s["n3"]["u-0-1"] = MLRead{Context: "c-x"} }},
		{"sibling missing", func(s map[string]map[string]MLRead) { s["n2"]["k-0"] = sibs("a") }},
		{"sibling dot differs", func(s map[string]map[string]MLRead) {
			r := sibs("a", "b")
			r.Siblings = []MLSibling{{Dot: "n1:1", Value: "a"}, {Dot: "n3:1", Value: "b"}}
			s["n3"]["k-0"] = r
		}},
		{"context differs", func(s map[string]map[string]MLRead) {
			r := val("x")
			r.Context = "other"
			s["n1"]["u-0-1"] = r
		}},
		{"tombstone context differs", func(s map[string]map[string]MLRead) { s["n1"]["gone"] = MLRead{Context: "ctx2"} }},
		{"key unread on one node", func(s map[string]map[string]MLRead) { delete(s["n2"], "gone") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := on(three, map[string]MLRead{"k-0": sibs("a", "b"), "u-0-1": val("x"), "gone": {Context: "ctx"}})
			tt.edit(s)
			an := CheckMLConverged(s)
			if len(an) != 1 || an[0].Kind != AnomalyDiverged {
				t.Fatalf("anomalies %v, want one %s", an, AnomalyDiverged)
			}
		})
	}
}

func TestCheckMLInserts(t *testing.T) {
	tests := []struct {
		name  string
		ops   []Op
		final map[string]MLRead
		want  []string // anomaly kinds
	}{
		{"acknowledged and present", []Op{mlPut("u-0-1", "a", 0, 1, OK)}, map[string]MLRead{"u-0-1": val("a")}, nil},
		{"acknowledged and missing", []Op{mlPut("u-0-1", "a", 0, 1, OK)}, map[string]MLRead{"u-0-1": {}}, []string{AnomalyLostWrite}},
		{"durable 504 missing", []Op{timedOut(mlPut("u-0-1", "a", 0, 1, OK), 7)}, map[string]MLRead{"u-0-1": {}}, []string{AnomalyLostWrite}},
		{"504 without index may be missing", []Op{timedOut(mlPut("u-0-1", "a", 0, 1, OK), 0)}, map[string]MLRead{"u-0-1": {}}, nil},
		{"unknown present", []Op{mlPut("u-0-1", "a", 0, 1, Unknown)}, map[string]MLRead{"u-0-1": val("a")}, nil},
		{"unknown absent", []Op{mlPut("u-0-1", "a", 0, 1, Unknown)}, map[string]MLRead{"u-0-1": {}}, nil},
		{"failed present", []Op{mlPut("u-0-1", "a", 0, 1, Failed)}, map[string]MLRead{"u-0-1": val("a")}, []string{AnomalyFailedWriteSeen}},
		{"failed absent", []Op{mlPut("u-0-1", "a", 0, 1, Failed)}, map[string]MLRead{"u-0-1": {}}, nil},
		{"value nobody wrote", []Op{mlPut("u-0-1", "a", 0, 1, Unknown)}, map[string]MLRead{"u-0-1": val("z")}, []string{AnomalyUnwrittenRead}},
		{"acknowledged with another value", []Op{mlPut("u-0-1", "a", 0, 1, OK)}, map[string]MLRead{"u-0-1": val("z")},
			[]string{AnomalyUnwrittenRead, AnomalyLostWrite}},
		{"applied twice (siblings)", []Op{mlPut("u-0-1", "a", 0, 1, OK)}, map[string]MLRead{"u-0-1": sibs("a", "a")},
			[]string{AnomalyUnwrittenRead, AnomalyLostWrite}},
		{"other keys ignored", []Op{mlPut("k-0", "a", 0, 1, OK)}, map[string]MLRead{"k-0": {}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an, st := CheckMLInserts(number(tt.ops), on(three, tt.final))
			if got := strings.Join(kinds(an), ","); got != strings.Join(tt.want, ",") {
				t.Fatalf("anomalies %v, want kinds %v", an, tt.want)
			}
			if n := st.Acked + st.Durable + st.Unknown + st.Failed; n != 0 && n != len(tt.ops) {
				t.Fatalf("stats %+v for %d ops", st, len(tt.ops))
			}
		})
	}
	// Missing on one node only: reported once, naming it.
	s := on(three, map[string]MLRead{"u-0-1": val("a")})
	s["n2"]["u-0-1"] = MLRead{}
	an, st := CheckMLInserts(number([]Op{mlPut("u-0-1", "a", 0, 1, OK)}), s)
	if len(an) != 1 || !strings.Contains(an[0].Detail, "[n2]") || st.Acked != 1 {
		t.Fatalf("anomalies %v, stats %+v; want one naming n2", an, st)
	}
}

func TestCheckMLContended(t *testing.T) {
	tests := []struct {
		name      string
		ops       []Op
		final     map[string]MLRead
		conflicts map[string]map[string]bool
		siblings  bool
		want      []string
	}{
		{"last write final", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("b")}, nil, false, nil},
		{"LWW: writes overwritten by later ones", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK), mlPut("k-0", "c", 40, 50, OK)},
			map[string]MLRead{"k-0": val("c")}, nil, false, nil},
		{"LWW: the last acknowledged write lost", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("a")}, nil, false, []string{AnomalyLostWrite}},
		{"LWW: the last write lost but in a conflict log", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("a")}, map[string]map[string]bool{"k-0": {"b": true}}, false, nil},
		{"LWW: concurrent writes, the loser overwritten", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 5, 12, OK)},
			map[string]MLRead{"k-0": val("b")}, nil, false, nil},
		{"LWW: acknowledged before the winner was invoked (ack=all answered late)",
			[]Op{mlPut("k-0", "a", 0, 50, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("b")}, nil, false, nil},
		{"LWW: only a failed write came after", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, Failed)},
			map[string]MLRead{"k-0": {}}, nil, false, []string{AnomalyLostWrite}},
		{"LWW: an unknown write may have overwritten it", []Op{mlPut("k-0", "a", 20, 30, OK), mlPut("k-0", "b", 0, 5, Unknown)},
			map[string]MLRead{"k-0": val("b")}, nil, false, nil},
		{"LWW: durable 504 lost", []Op{mlPut("k-0", "a", 0, 10, OK), timedOut(mlPut("k-0", "b", 20, 30, OK), 3)},
			map[string]MLRead{"k-0": val("a")}, nil, false, []string{AnomalyLostWrite}},
		{"final value nobody wrote", []Op{mlPut("k-0", "a", 0, 10, Unknown)},
			map[string]MLRead{"k-0": val("z")}, nil, false, []string{AnomalyUnwrittenRead}},
		{"final value of a failed write", []Op{mlPut("k-0", "a", 0, 10, Failed)},
			map[string]MLRead{"k-0": val("a")}, nil, false, []string{AnomalyFailedWriteSeen}},
		{"sibling nobody wrote", []Op{mlPut("k-0", "a", 0, 10, OK)},
			map[string]MLRead{"k-0": sibs("a", "z")}, nil, true, []string{AnomalyUnwrittenRead}},
		{"siblings: every write a sibling", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": sibs("a", "b")}, nil, true, nil},
		{"siblings: an overwritten write is lost", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("b")}, nil, true, []string{AnomalyLostWrite}},
		{"siblings: a dropped sibling in a conflict log", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("b")}, map[string]map[string]bool{"k-0": {"a": true}}, true, nil},
		{"unknown writes need not survive", []Op{mlPut("k-0", "a", 0, 10, Unknown), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("b")}, nil, true, nil},
		{"conflict log of another key does not count", []Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)},
			map[string]MLRead{"k-0": val("b")}, map[string]map[string]bool{"k-1": {"a": true}}, true, []string{AnomalyLostWrite}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an, st := CheckMLContended(number(tt.ops), on(three, tt.final), tt.conflicts, tt.siblings)
			if got := strings.Join(kinds(an), ","); got != strings.Join(tt.want, ",") {
				t.Fatalf("anomalies %v, want kinds %v", an, tt.want)
			}
			if st.Keys != 1 {
				t.Fatalf("stats %+v, want 1 key", st)
			}
		})
	}
	// A write final on two nodes but not on the third, and in no log: lost there.
	s := on(three, map[string]MLRead{"k-0": val("b")})
	s["n3"]["k-0"] = val("a")
	ops := number([]Op{mlPut("k-0", "a", 0, 10, OK), mlPut("k-0", "b", 20, 30, OK)})
	an, st := CheckMLContended(ops, s, nil, true)
	if len(an) != 2 || !strings.Contains(an[0].Detail+an[1].Detail, "[n1 n2]") || st.Final != 0 {
		t.Fatalf("anomalies %v stats %+v; want op 0 lost on n1 n2 and op 1 on n3", an, st)
	}
}

func TestCheckMLCounters(t *testing.T) {
	ops := []Op{
		add("n-0", 3, OK, 200, "3"),
		add("n-0", 2, OK, 200, "5"),
		add("n-0", 4, Unknown, 0, ""),
		timedOut(add("n-0", 5, OK, 200, ""), 9), // durable 504
		add("n-0", 7, Failed, 400, ""),
	}
	refused := add("n-0", 100, Failed, 400, "")
	refused.IdemKey = "k"
	ops = append(ops, refused)
	// A = 3+2+5 = 10, U = 4.
	tests := []struct {
		name  string
		final MLRead
		extra []Op
		want  []string
	}{
		{"acknowledged only", val("10"), nil, nil},
		{"acknowledged and every unknown", val("14"), nil, nil},
		{"below the acknowledged sum", val("9"), nil, []string{AnomalyLostWrite}},
		{"a failed increment counted", val("17"), nil, []string{AnomalyDuplicated}},
		{"an increment counted twice", val("15"), nil, []string{AnomalyDuplicated}},
		{"absent counter", MLRead{}, nil, []string{AnomalyLostWrite}},
		{"not a number", val("x"), nil, []string{AnomalyUnwrittenRead}},
		{"an answer above the final value", val("11"), []Op{add("n-0", 1, OK, 200, "12")}, []string{AnomalyLostWrite}},
		{"an idempotency key accepted", val("11"), []Op{func() Op { o := add("n-0", 1, OK, 200, "11"); o.IdemKey = "x"; return o }()},
			[]string{AnomalyIdemAccepted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := number(append(append([]Op(nil), ops...), tt.extra...))
			an, st := CheckMLCounters(all, on(three, map[string]MLRead{"n-0": tt.final}))
			got := kinds(an)
			if strings.Join(got, ",") != strings.Join(dup(tt.want), ",") {
				t.Fatalf("anomalies %v, want kinds %v", an, dup(tt.want))
			}
			if tt.extra == nil && (st.AckedSum != 10 || st.UnknownSum != 4 || st.IdemRefused != 1 || st.Failed != 2 || st.Durable != 1) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// dup repeats the per-node kinds (final-state anomalies are per node)
// three times; the idempotency anomaly is per op.
func dup(kinds []string) []string {
	var out []string
	for _, k := range kinds {
		if k == AnomalyIdemAccepted {
			out = append(out, k)
			continue
		}
		out = append(out, k, k, k)
	}
	return out
}

func TestConflictLosers(t *testing.T) {
	recs := []MLConflict{
		{Key: "k-0", Versions: []MLConflictVersion{{Dot: "n1:1", Value: "a"}, {Dot: "n2:1", Value: "b"}}, Winner: "n2:1", Losers: []string{"n1:1"}},
		{Key: "k-1", Versions: []MLConflictVersion{{Dot: "n1:1", Value: "c"}, {Dot: "n2:1", Value: "d"}}}, // siblings kept: no loser
		{Key: "k-2", Versions: []MLConflictVersion{{Dot: "n1:1", Deleted: true}, {Dot: "n3:2", Value: "e"}}, Winner: "n3:2", Losers: []string{"n1:1"}},
	}
	got := ConflictLosers(recs)
	if !got["k-0"]["a"] || got["k-0"]["b"] || len(got["k-1"]) != 0 || len(got["k-2"]) != 0 {
		t.Fatalf("losers %v: want only k-0=a", got)
	}
}

func TestStreamsCaughtUp(t *testing.T) {
	st := func(id string, last uint64, streams ...StreamStatus) MLStatus {
		return MLStatus{ID: id, Mode: ModeMultiLeader, LastIndex: last, Streams: streams}
	}
	s := func(peer string, applied uint64) StreamStatus {
		return StreamStatus{Peer: peer, Applied: applied, Known: applied}
	}
	ok := map[string]MLStatus{
		"n1": st("n1", 5, s("n2", 7)),
		"n2": st("n2", 7, s("n1", 5)),
	}
	if done, why := StreamsCaughtUp(ok, []string{"n1", "n2"}); !done {
		t.Fatalf("caught up: %s", why)
	}
	behind := map[string]MLStatus{"n1": st("n1", 5, s("n2", 6)), "n2": ok["n2"]}
	if done, why := StreamsCaughtUp(behind, []string{"n1", "n2"}); done || !strings.Contains(why, "n1 applied 6/7 of n2") {
		t.Fatalf("behind: %v %q", done, why)
	}
	lag := map[string]MLStatus{"n1": st("n1", 5, StreamStatus{Peer: "n2", Applied: 7, Known: 7, LagMs: 30}), "n2": ok["n2"]}
	if done, _ := StreamsCaughtUp(lag, []string{"n1", "n2"}); done {
		t.Fatal("lag_ms 30 counted as caught up")
	}
	if done, why := StreamsCaughtUp(map[string]MLStatus{"n1": ok["n1"]}, []string{"n1", "n2"}); done || !strings.Contains(why, "n2: no status") {
		t.Fatalf("missing node: %v %q", done, why)
	}
	if done, _ := StreamsCaughtUp(map[string]MLStatus{"n1": st("n1", 5), "n2": ok["n2"]}, []string{"n1", "n2"}); done {
		t.Fatal("a node without the peer's stream counted as caught up")
	}
}

func TestRunConfigValidateMultiLeader(t *testing.T) {
	good := DefaultMultiLeaderRunConfig()
	good.Binary, good.Dir = "/bin/true", "/tmp/x"
	if err := good.Validate(); err != nil {
		t.Fatalf("default multi-leader config: %v", err)
	}
	sib := good
	sib.Conflicts, sib.Faults, sib.Acks = PolicySiblings, MultiLeaderFaultKinds, []string{"local", "2", "all", "majority"}
	if err := sib.Validate(); err != nil {
		t.Fatalf("siblings, every fault kind, every ack: %v", err)
	}
	tests := []struct {
		name string
		edit func(*RunConfig)
		want string
	}{
		{"bad mode", func(c *RunConfig) { c.Mode = "chain-replication" }, "Mode"},
		{"bad policy", func(c *RunConfig) { c.Conflicts = "first-writer" }, "Conflicts"},
		{"one node", func(c *RunConfig) { c.Nodes = 1 }, "Nodes"},
		{"single-leader ack", func(c *RunConfig) { c.Acks = []string{"semi-sync"} }, "Acks"},
		{"ack beyond the peers", func(c *RunConfig) { c.Acks = []string{"3"} }, "Acks"},
		{"membership fault", func(c *RunConfig) { c.Faults = []string{"partition", "membership"} }, "membership"},
		{"leadership transfer", func(c *RunConfig) { c.Faults = []string{"transfer"} }, "transfer"},
		{"session clients", func(c *RunConfig) { c.SessionClients = 1 }, "SessionClients"},
		{"idempotent counter clients", func(c *RunConfig) { c.CounterClients = 1 }, "CounterClients"},
		{"CAS clients", func(c *RunConfig) { c.CASClients = 1 }, "CASClients"},
		{"disk filler", func(c *RunConfig) { c.FillBytesPerSec = 1 << 20 }, "FillBytesPerSec"},
		{"no contended keys", func(c *RunConfig) { c.ContendedKeys = 0 }, "ContendedKeys"},
		{"bad protocol", func(c *RunConfig) { c.Protocols = []string{"grpc"} }, "Protocols"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestReportSummaryMultiLeader(t *testing.T) {
	r := &Report{Seed: 7, Nodes: 3, Ops: 100, Faults: map[string]int{"kill/random": 2},
		ML: &MLStats{Policy: PolicySiblings, Convergence: 1500 * time.Millisecond, Converged: true, Keys: 40,
			ConflictRecords: 12, ConflictKeys: 3,
			MLCheckStats: MLCheckStats{
				Inserts:   MLInsertStats{MLOutcomes: MLOutcomes{Acked: 20, Durable: 1, Unknown: 2}, UnknownPresent: 1},
				Contended: MLContendedStats{Keys: 8, MLOutcomes: MLOutcomes{Acked: 30}, Final: 10, InConflictLog: 20, Values: 10},
				Counters:  MLCounterStats{Acked: 5, AckedSum: 15, UnknownSum: 2, IdemRefused: 1, Final: map[string]int64{"n-0": 16}},
			}}}
	s := r.Summary()
	for _, want := range []string{"seed 7", "kill/random=2", "multi-leader (siblings): converged 1.5s after healing",
		"inserts: acknowledged 20, durable 504 1, unknown 2 (present 1)", "a conflict loser 20",
		"12 records on 3 keys", "acknowledged sum 15, unknown sum 2; final n-0=16", "anomalies: 0"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "linearizability") || strings.Contains(s, "failover") {
		t.Errorf("a multi-leader summary shows single-leader figures:\n%s", s)
	}
}
