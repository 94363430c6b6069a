package chaos

import (
	"strconv"
	"testing"
)

// inc is one attempt of increment idem on c-0; value is its answer (200).
func inc(idem string, out Outcome, value int64, dup bool) Op {
	op := Op{Kind: KindIncr, Key: "c-0", IdemKey: idem, Outcome: out, Duplicate: dup}
	if out == OK {
		op.Value = strconv.FormatInt(value, 10)
	}
	return op
}

func counterAt(vs ...int) map[string]map[string]FinalRead {
	final := map[string]map[string]FinalRead{}
	for i, v := range vs {
		final["n"+strconv.Itoa(i+1)] = map[string]FinalRead{"c-0": {Found: v > 0, Value: strconv.Itoa(v)}}
	}
	return final
}

func TestCheckCounters(t *testing.T) {
	// Three acknowledged increments (one after a retry), one unknown, one
	// that certainly failed.
	base := []Op{
		inc("a", OK, 1, false),
		inc("b", Unknown, 0, false), inc("b", OK, 2, true),
		inc("c", OK, 3, false),
		inc("d", Unknown, 0, false), inc("d", Failed, 0, false),
		inc("e", Failed, 0, false),
	}
	tests := []struct {
		name  string
		ops   []Op
		final map[string]map[string]FinalRead
		want  string
	}{
		{"unknown not applied", base, counterAt(3, 3, 3), ""},
		{"unknown applied", base, counterAt(4, 4, 4), ""},
		{"applied twice", base, counterAt(5), AnomalyDuplicated},
		{"lost on one node", base, counterAt(3, 2, 3), AnomalyLostWrite},
		{"replay answered another value", append(append([]Op(nil), base...), inc("c", OK, 4, true)), counterAt(4, 4, 4), AnomalyDuplicated},
		{"two increments, one value", []Op{inc("a", OK, 1, false), inc("b", OK, 1, false), inc("c", Unknown, 0, false)}, counterAt(3), AnomalyDuplicated},
		{"answer above the final value", []Op{inc("a", OK, 1, false), inc("b", OK, 5, false)}, counterAt(2), AnomalyLostWrite},
		{"not a number", []Op{inc("a", OK, 1, false)}, map[string]map[string]FinalRead{"n1": {"c-0": {Found: true, Value: "x"}}}, AnomalyWrongVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an, _ := CheckCounters(number(tt.ops), tt.final, "n1")
			switch {
			case tt.want == "" && len(an) > 0:
				t.Fatalf("unexpected anomalies %v", an)
			case tt.want != "" && (len(an) != 1 || an[0].Kind != tt.want):
				t.Fatalf("anomalies %v, want one %s", an, tt.want)
			}
		})
	}
	_, st := CheckCounters(number(base), counterAt(4), "n1")
	if st.Acked != 3 || st.Unknown != 1 || st.Failed != 1 || st.Attempts != 7 || st.Retried != 2 || st.Duplicates != 1 || st.Final["c-0"] != 4 {
		t.Fatalf("stats %+v", st)
	}
}
