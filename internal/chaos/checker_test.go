package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// w and r build operations for table tests: times are in arbitrary units.
func w(key, val string, call, ret int64, out Outcome) Op {
	return Op{Kind: KindPut, Key: key, Value: val, Call: call, Return: ret, Outcome: out, Ack: "majority"}
}

func r(key, val string, found bool, call, ret int64, level string) Op {
	return Op{Kind: KindGet, Key: key, Value: val, Found: found, Call: call, Return: ret, Outcome: OK, Consistency: level}
}

func del(key string, call, ret int64, out Outcome) Op {
	return Op{Kind: KindDelete, Key: key, Call: call, Return: ret, Outcome: out, Ack: "majority"}
}

func withIndex(op Op, i uint64) Op { op.Index = i; return op }

func number(ops []Op) []Op {
	for i := range ops {
		ops[i].ID = i
		ops[i].Worker = i % 3
	}
	return ops
}

func TestCheckLinearizable(t *testing.T) {
	all := func(string) bool { return true }
	tests := []struct {
		name    string
		ops     []Op
		illegal bool
	}{
		{"sequential", []Op{w("k", "a", 0, 10, OK), r("k", "a", true, 20, 30, "linearizable")}, false},
		{"absent before any write", []Op{r("k", "", false, 0, 5, "linearizable"), w("k", "a", 10, 20, OK)}, false},
		{"stale read after a write returned", []Op{
			w("k", "a", 0, 10, OK), w("k", "b", 20, 30, OK), r("k", "a", true, 40, 50, "linearizable")}, true},
		{"concurrent read may see either", []Op{
			w("k", "a", 0, 10, OK), w("k", "b", 20, 60, OK), r("k", "a", true, 30, 40, "linearizable"),
			r("k", "b", true, 45, 50, "linearizable")}, false},
		{"value flips back", []Op{
			w("k", "a", 0, 10, OK), w("k", "b", 0, 10, OK), r("k", "a", true, 20, 30, "linearizable"),
			r("k", "b", true, 40, 50, "linearizable"), r("k", "a", true, 60, 70, "linearizable")}, true},
		{"unknown write takes effect much later", []Op{
			w("k", "a", 0, 10, OK), w("k", "x", 15, 16, Unknown), r("k", "a", true, 100, 110, "linearizable"),
			r("k", "x", true, 200, 210, "linearizable")}, false},
		{"failed write is not in the history", []Op{
			w("k", "a", 0, 10, OK), w("k", "x", 15, 16, Failed), r("k", "x", true, 200, 210, "linearizable")}, true},
		{"stale reads are not checked", []Op{
			w("k", "a", 0, 10, OK), w("k", "b", 20, 30, OK), r("k", "a", true, 40, 50, "stale")}, false},
		{"delete then absent", []Op{
			w("k", "a", 0, 10, OK), del("k", 20, 30, OK), r("k", "", false, 40, 50, "linearizable")}, false},
		{"value back after a delete", []Op{
			w("k", "a", 0, 10, OK), del("k", 20, 30, OK), r("k", "a", true, 40, 50, "linearizable")}, true},
		{"unknown delete later", []Op{
			w("k", "a", 0, 10, OK), del("k", 20, 21, Unknown), r("k", "a", true, 40, 50, "linearizable"),
			r("k", "", false, 60, 70, "linearizable")}, false},
		{"keys are independent", []Op{
			w("k", "a", 0, 10, OK), w("j", "b", 20, 30, OK), r("k", "a", true, 40, 50, "linearizable")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			an, st := CheckLinearizable(number(tt.ops), all, 0, dir)
			if got := len(an) > 0; got != tt.illegal {
				t.Fatalf("illegal = %v, want %v (anomalies %v)", got, tt.illegal, an)
			}
			if st.Keys == 0 {
				t.Fatalf("no key checked")
			}
			if tt.illegal {
				html, _ := filepath.Glob(filepath.Join(dir, "lin-*.html"))
				if len(html) != 1 {
					t.Fatalf("want one visualization, got %v", html)
				}
				if b, _ := os.ReadFile(html[0]); !strings.Contains(string(b), "<html") {
					t.Fatalf("visualization %s is not HTML", html[0])
				}
			}
		})
	}
}

func TestCheckReadsWritten(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want string // anomaly kind, "" for none
	}{
		{"written value", []Op{w("k", "a", 0, 10, OK), r("k", "a", true, 5, 20, "stale")}, ""},
		{"unknown write's value", []Op{w("k", "a", 0, 10, Unknown), r("k", "a", true, 50, 60, "stale")}, ""},
		{"absent", []Op{r("k", "", false, 0, 10, "stale")}, ""},
		{"never written", []Op{w("k", "a", 0, 10, OK), r("k", "zz", true, 5, 20, "stale")}, AnomalyUnwrittenRead},
		{"other key's value", []Op{w("j", "a", 0, 10, OK), r("k", "a", true, 20, 30, "stale")}, AnomalyUnwrittenRead},
		{"failed write visible", []Op{w("k", "a", 0, 10, Failed), r("k", "a", true, 20, 30, "linearizable")}, AnomalyFailedWriteSeen},
		{"from the future", []Op{r("k", "a", true, 0, 10, "stale"), w("k", "a", 20, 30, OK)}, AnomalyFutureRead},
		{"same version", []Op{withIndex(w("k", "a", 0, 10, OK), 7), withIndex(r("k", "a", true, 20, 30, "stale"), 7)}, ""},
		{"other version", []Op{withIndex(w("k", "a", 0, 10, OK), 7), withIndex(r("k", "a", true, 20, 30, "stale"), 9)}, AnomalyWrongVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an := CheckReadsWritten(number(tt.ops))
			switch {
			case tt.want == "" && len(an) > 0:
				t.Fatalf("unexpected anomalies %v", an)
			case tt.want != "" && (len(an) != 1 || an[0].Kind != tt.want):
				t.Fatalf("anomalies %v, want one %s", an, tt.want)
			}
		})
	}
}

func TestCheckSet(t *testing.T) {
	put := func(key, ack string, out Outcome) Op {
		return Op{Kind: KindPut, Key: key, Value: "v-" + key, Ack: ack, Outcome: out}
	}
	present := func(keys ...string) map[string]FinalRead {
		m := map[string]FinalRead{}
		for _, k := range keys {
			m[k] = FinalRead{Found: true, Value: "v-" + k}
		}
		return m
	}
	tests := []struct {
		name   string
		nodes  int
		op     Op
		final  map[string]FinalRead
		journ  []Rollback
		want   string
		wantOK bool
	}{
		{"majority present", 3, put("s1", "majority", OK), present("s1"), nil, "", true},
		{"majority lost", 3, put("s1", "majority", OK), map[string]FinalRead{"s1": {}}, nil, AnomalyLostWrite, false},
		{"sync lost even if journaled", 5, put("s1", "sync", OK), map[string]FinalRead{"s1": {}},
			[]Rollback{{Key: "s1", Value: "v-s1"}}, AnomalyLostWrite, false},
		{"semi-sync is a majority of 3", 3, put("s1", "semi-sync", OK), map[string]FinalRead{"s1": {}},
			[]Rollback{{Key: "s1", Value: "v-s1"}}, AnomalyLostWrite, false},
		{"semi-sync of 5 journaled", 5, put("s1", "semi-sync", OK), map[string]FinalRead{"s1": {}},
			[]Rollback{{Key: "s1", Value: "v-s1"}}, "", true},
		{"async journaled", 3, put("s1", "async", OK), map[string]FinalRead{"s1": {}},
			[]Rollback{{Key: "s1", Value: "v-s1"}}, "", true},
		{"async silently lost", 3, put("s1", "async", OK), map[string]FinalRead{"s1": {}},
			[]Rollback{{Key: "s1", Value: "other"}}, AnomalySilentLoss, false},
		{"async overwritten value", 3, put("s1", "async", OK), map[string]FinalRead{"s1": {Found: true, Value: "x"}},
			nil, AnomalySilentLoss, false},
		{"failed but present", 3, put("s1", "majority", Failed), present("s1"), nil, AnomalyFailedWriteSeen, false},
		{"unknown absent", 3, put("s1", "majority", Unknown), map[string]FinalRead{"s1": {}}, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an, st := CheckSet([]Op{tt.op}, tt.final, tt.journ, tt.nodes)
			switch {
			case tt.want == "" && len(an) > 0:
				t.Fatalf("unexpected anomalies %v", an)
			case tt.want != "" && (len(an) != 1 || an[0].Kind != tt.want):
				t.Fatalf("anomalies %v, want one %s", an, tt.want)
			}
			if tt.op.Outcome == OK && st.Acked[tt.op.Ack] != 1 {
				t.Fatalf("acked stats %v", st.Acked)
			}
			if tt.wantOK && st.Lost[tt.op.Ack] > st.Journaled[tt.op.Ack] {
				t.Fatalf("lost %v journaled %v", st.Lost, st.Journaled)
			}
		})
	}
}

func TestCheckConverged(t *testing.T) {
	same := map[string]map[string]FinalRead{
		"n1": {"a": {true, "1"}, "b": {}},
		"n2": {"a": {true, "1"}, "b": {}},
	}
	if an := CheckConverged(same); len(an) != 0 {
		t.Fatalf("equal states reported %v", an)
	}
	diff := map[string]map[string]FinalRead{
		"n1": {"a": {true, "1"}, "b": {}},
		"n2": {"a": {true, "2"}},
		"n3": {"a": {true, "1"}, "b": {true, "x"}},
	}
	an := CheckConverged(diff)
	if len(an) != 2 || an[0].Key != "a" || an[1].Key != "b" {
		t.Fatalf("got %v, want divergence on a and b", an)
	}
}

func TestKeyMode(t *testing.T) {
	for key, want := range map[string]string{
		registerKey("majority", 3): "majority", registerKey("semi-sync", 0): "semi-sync",
		"s-async-2-17": "async", "s-sync-0-1": "sync", "probe": "",
	} {
		if got := keyMode(key); got != want {
			t.Errorf("keyMode(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if got := Percentile(ds, 50); got != 3 {
		t.Fatalf("p50 = %v", got)
	}
	if got := Percentile(ds, 99); got != 5 {
		t.Fatalf("p99 = %v", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Fatalf("empty p50 = %v", got)
	}
}

func TestCheckRollbacks(t *testing.T) {
	put := func(key, val, ack string, out Outcome) Op {
		return Op{Kind: KindPut, Key: key, Value: val, Ack: ack, Outcome: out, Index: 5, Term: 2}
	}
	rb := func(key, val string) Rollback { return Rollback{Key: key, Value: val, Op: "put", Index: 5, Term: 2} }
	tests := []struct {
		name  string
		ops   []Op
		final map[string]FinalRead
		rbs   []Rollback
		want  string
	}{
		{"async rolled back", []Op{put("s-async-0-1", "a", "async", OK)}, map[string]FinalRead{"s-async-0-1": {}},
			[]Rollback{rb("s-async-0-1", "a")}, ""},
		{"unknown majority rolled back", []Op{put("r-majority-0", "a", "majority", Unknown)}, nil,
			[]Rollback{rb("r-majority-0", "a")}, ""},
		{"harness keys skipped", nil, nil, []Rollback{rb("chaos-probe", "p1")}, ""},
		{"acknowledged majority rolled back", []Op{put("r-majority-0", "a", "majority", OK)}, nil,
			[]Rollback{rb("r-majority-0", "a")}, AnomalyDurableRolled},
		{"semi-sync of 3 rolled back", []Op{put("r-semi-sync-0", "a", "semi-sync", OK)}, nil,
			[]Rollback{rb("r-semi-sync-0", "a")}, AnomalyDurableRolled},
		{"value nobody wrote", nil, nil, []Rollback{rb("s-async-0-1", "zz")}, AnomalyJournalUnknown},
		{"applied and rolled back", []Op{put("s-async-0-1", "a", "async", Unknown)},
			map[string]FinalRead{"s-async-0-1": {Found: true, Value: "a"}}, []Rollback{rb("s-async-0-1", "a")}, AnomalyDuplicated},
		{"majority replaced by a snapshot, uncertain", []Op{put("r-majority-0", "a", "majority", OK)}, nil,
			[]Rollback{{Key: "r-majority-0", Value: "a", Op: "put", Index: 5, Term: 2, Cause: "snapshot"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an := CheckRollbacks(number(tt.ops), tt.final, tt.rbs, 3)
			switch {
			case tt.want == "" && len(an) > 0:
				t.Fatalf("unexpected anomalies %v", an)
			case tt.want != "" && (len(an) != 1 || an[0].Kind != tt.want):
				t.Fatalf("anomalies %v, want one %s", an, tt.want)
			}
		})
	}
}

// TestJournalOfMovedAsideNode: the journal of a data directory a membership
// cycle moved aside is read with each record's cause, so that a record a
// snapshot left uncertain is not reported as a lost durable write (it was,
// in TestChaosMembership seed 545422624, before the cause was read).
func TestJournalOfMovedAsideNode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rollbacks.jsonl")
	lines := `{"term":3,"index":1011,"op":"put","key":"ci1tYWpvcml0eS0x","value":"dzEtMjAy","at":"2026-12-05T13:44:46Z","cause":"snapshot"}
{"term":3,"index":1012,"op":"put","key":"ci1tYWpvcml0eS0x","value":"dzEtMjAz","at":"2026-12-05T13:44:46Z","cause":"conflict"}
`
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	rbs, err := readJournal(path)
	if err != nil || len(rbs) != 2 || rbs[0].Cause != "snapshot" || rbs[1].Cause != "conflict" || rbs[0].Key != "r-majority-1" {
		t.Fatalf("read %+v, %v", rbs, err)
	}
	ops := []Op{
		{ID: 1, Kind: KindPut, Key: "r-majority-1", Value: "w1-202", Ack: "majority", Outcome: OK},
		{ID: 2, Kind: KindPut, Key: "r-majority-1", Value: "w1-203", Ack: "majority", Outcome: OK},
	}
	got := CheckRollbacks(ops, nil, rbs, 3)
	if len(got) != 1 || got[0].Kind != AnomalyDurableRolled || !strings.Contains(got[0].Detail, "op 2") {
		t.Fatalf("anomalies %+v: want only the conflict record's acknowledged write", got)
	}
}
