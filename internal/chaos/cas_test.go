package chaos

import (
	"net/http"
	"testing"
)

// cget is a linearizable read of the CAS register; seq "" is absent.
func cget(val string, idx uint64, call, ret int64) Op {
	return Op{Kind: KindGet, Key: casKey, Consistency: "linearizable", Outcome: OK, Found: val != "", Value: val, Index: idx, Call: call, Return: ret}
}

// cas is a cas of the register at ifIndex; idx is the index of a 200, or
// the current one of a 412 (out Failed).
func cas(ifIndex uint64, val string, out Outcome, idx uint64, call, ret int64) Op {
	op := Op{Kind: KindCAS, Key: casKey, IfIndex: ifIndex, Value: val, Outcome: out, Index: idx, Call: call, Return: ret}
	if out == Failed {
		op.Status = http.StatusPreconditionFailed
	}
	return op
}

func TestCheckCAS(t *testing.T) {
	tests := []struct {
		name    string
		ops     []Op
		illegal bool
	}{
		{"sequential", []Op{cget("", 0, 0, 1), cas(0, "a", OK, 5, 2, 3), cget("a", 5, 4, 5), cas(5, "b", OK, 7, 6, 7),
			cas(5, "c", Failed, 7, 8, 9), cget("b", 7, 10, 11)}, false},
		{"two writers, one wins", []Op{cas(0, "a", OK, 5, -10, -5), cget("a", 5, 0, 1), cget("a", 5, 0, 1), cas(5, "b", OK, 7, 2, 10), cas(5, "c", Failed, 7, 3, 11), cget("b", 7, 12, 13)}, false},
		{"both win at one index", []Op{cas(0, "a", OK, 5, -10, -5), cget("a", 5, 0, 1), cas(5, "b", OK, 7, 2, 10), cas(5, "c", OK, 9, 3, 11)}, true},
		{"must not exist, but it does", []Op{cas(0, "a", OK, 5, -10, -5), cget("a", 5, 0, 1), cas(0, "b", OK, 7, 2, 3)}, true},
		{"412 names the wrong index", []Op{cas(0, "a", OK, 5, 0, 1), cas(3, "b", Failed, 4, 2, 3)}, true},
		{"412 although it matched", []Op{cas(0, "a", OK, 5, 0, 1), cas(5, "b", Failed, 5, 2, 3)}, true},
		{"refused write visible", []Op{cas(0, "a", OK, 5, 0, 1), cas(3, "b", Failed, 5, 2, 3), cget("b", 8, 4, 5)}, true},
		{"unknown write applies later", []Op{cas(0, "a", OK, 5, 0, 1), cas(5, "b", Unknown, 0, 2, 3), cget("a", 5, 4, 5),
			cget("b", 8, 6, 7), cas(8, "c", OK, 10, 8, 9)}, false},
		{"unknown write never applies", []Op{cas(0, "a", OK, 5, 0, 1), cas(5, "b", Unknown, 0, 2, 3), cget("a", 5, 10, 11)}, false},
		{"unknown write applied, then a stale cas wins", []Op{cas(0, "a", OK, 5, 0, 1), cas(5, "b", Unknown, 0, 2, 3),
			cget("b", 8, 4, 5), cas(5, "c", OK, 10, 6, 7)}, true},
		{"read before any write", []Op{cget("a", 5, 0, 1)}, true},
		{"version changes without a write", []Op{cas(0, "a", OK, 5, -10, -5), cget("a", 5, 0, 1), cget("a", 6, 2, 3)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			an, st := CheckCAS(number(tt.ops), 0, dir)
			if got := len(an) > 0; got != tt.illegal {
				t.Fatalf("illegal = %v, want %v (anomalies %v)", got, tt.illegal, an)
			}
			if st.Checked == 0 {
				t.Fatal("nothing checked")
			}
		})
	}
}
