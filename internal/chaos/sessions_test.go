package chaos

import "testing"

// sw and sr build a session's write and read of key q-1-0 (session
// "q1.EPOCH"); tok is the token sent, idx/term the write's entry or the
// version read (0: not known, as over RESP).
func sw(epoch string, seq string, ack string, out Outcome, idx, term uint64) Op {
	return Op{Kind: KindPut, Key: "q-1-0", Value: "q1-" + seq, Ack: ack, Outcome: out, Index: idx, Term: term,
		Session: "q1." + epoch, Worker: 1, RepToken: "1.1.1"}
}

func sr(epoch string, seq string, idx uint64) Op {
	op := Op{Kind: KindGet, Key: "q-1-0", Consistency: "session", Outcome: OK, Index: idx, Session: "q1." + epoch, Worker: 1, RepToken: "1.1.1"}
	if seq != "" {
		op.Found, op.Value = true, "q1-"+seq
	}
	return op
}

func rolled(op Op, tok, err string) Op {
	op.Outcome, op.Token, op.Err, op.Found, op.Value = RolledBack, tok, err, false, ""
	if op.Kind == KindPut {
		op.Value = "q1-99"
	}
	return op
}

func TestCheckSessions(t *testing.T) {
	const gone = "the session's write was rolled back: index 30 of term 2 was discarded (the leader's log ends before it); the session's write is lost"
	journaled := []Rollback{{Term: 2, Index: 30, Op: "put", Key: "q-1-0", Value: "q1-5", Node: "n1"}}
	tests := []struct {
		name string
		ops  []Op
		rbs  []Rollback
		want string // anomaly kind, "" for none
	}{
		{"own write read back", []Op{sw("0", "1", "majority", OK, 10, 1), sr("0", "1", 10)}, nil, ""},
		{"newer than the write", []Op{sw("0", "1", "majority", OK, 10, 1), sr("0", "1", 10), sw("0", "2", "async", OK, 12, 1), sr("0", "2", 12)}, nil, ""},
		{"older than own write", []Op{sw("0", "1", "majority", OK, 10, 1), sw("0", "2", "async", OK, 12, 1), sr("0", "1", 10)}, nil, AnomalyReadYourWrites},
		{"absent after own write", []Op{sw("0", "1", "async", OK, 10, 1), sr("0", "", 0)}, nil, AnomalyReadYourWrites},
		{"older by sequence (RESP)", []Op{sw("0", "1", "majority", OK, 10, 1), sw("0", "2", "majority", OK, 12, 1), sr("0", "1", 0)}, nil, AnomalyReadYourWrites},
		{"unacknowledged write not expected", []Op{sw("0", "1", "majority", OK, 10, 1), sw("0", "2", "majority", Unknown, 0, 0), sr("0", "1", 10)}, nil, ""},
		{"unknown write applied late", []Op{sw("0", "1", "majority", Unknown, 0, 0), sw("0", "2", "majority", OK, 12, 1), sr("0", "1", 14)}, nil, ""},
		{"unknown write below the acked one", []Op{sw("0", "1", "majority", Unknown, 0, 0), sw("0", "2", "majority", OK, 12, 1), sr("0", "1", 9)}, nil, AnomalyReadYourWrites},
		{"token of the write not learned", []Op{sw("0", "1", "majority", OK, 10, 1), func() Op { o := sw("0", "2", "majority", OK, 12, 1); o.RepToken = ""; return o }(), sr("0", "1", 10)}, nil, ""},
		{"token of the read not learned", []Op{func() Op { o := sr("0", "2", 12); o.RepToken = ""; return o }(), sr("0", "1", 10)}, nil, ""},
		{"monotonic", []Op{sr("0", "1", 10), sr("0", "2", 12), sr("0", "2", 12)}, nil, ""},
		{"back in time", []Op{sr("0", "2", 12), sr("0", "1", 10)}, nil, AnomalyMonotonic},
		{"back to absent", []Op{sr("0", "2", 12), sr("0", "", 0)}, nil, AnomalyMonotonic},
		{"same index, other value", []Op{sr("0", "2", 12), sr("0", "3", 12)}, nil, AnomalyMonotonic},
		{"journaled rollback, then a new session", []Op{
			sw("0", "5", "async", OK, 30, 2), rolled(sr("0", "", 0), "1.2.30", gone), sr("1", "4", 25)}, journaled, ""},
		{"rolled-back write refused", []Op{
			sw("0", "5", "semi-sync", Unknown, 30, 2), rolled(sw("0", "6", "majority", OK, 0, 0), "1.2.30", gone)}, journaled, ""},
		{"rollback no journal shows", []Op{
			sw("0", "5", "async", OK, 30, 2), rolled(sr("0", "", 0), "1.2.30", gone)}, nil, AnomalyFalseRollback},
		{"rollback of a majority write", []Op{
			sw("0", "5", "majority", OK, 30, 2), rolled(sr("0", "", 0), "1.2.30", gone)}, journaled, AnomalyFalseRollback},
		{"rollback of a read's token", []Op{
			sr("0", "1", 10), rolled(sr("0", "", 0), "1.2.30", gone)}, journaled, AnomalyFalseRollback},
		{"journal holds another write there", []Op{
			sw("0", "5", "async", OK, 30, 2), rolled(sr("0", "", 0), "1.2.30", gone)},
			[]Rollback{{Term: 2, Index: 30, Op: "put", Key: "q-1-0", Value: "q1-4"}}, AnomalyFalseRollback},
		{"token refused", []Op{func() Op { o := sr("0", "", 0); o.Outcome, o.Status = Failed, 400; return o }()}, nil, AnomalyTokenRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.ops {
				tt.ops[i].ID = i
			}
			an, st := CheckSessions(tt.ops, tt.rbs, 3)
			switch {
			case tt.want == "" && len(an) > 0:
				t.Fatalf("unexpected anomalies %v", an)
			case tt.want != "" && (len(an) != 1 || an[0].Kind != tt.want):
				t.Fatalf("anomalies %v, want one %s", an, tt.want)
			}
			if st.Clients != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestValueSeq(t *testing.T) {
	for v, want := range map[string]int{"q3-17": 17, "x0-2": 2} {
		if got, ok := valueSeq(v); !ok || got != want {
			t.Errorf("valueSeq(%q) = %d, %v", v, got, ok)
		}
	}
	if _, ok := valueSeq("nodash"); ok {
		t.Error("valueSeq accepted a value without a sequence number")
	}
}
