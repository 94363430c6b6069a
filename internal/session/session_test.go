package session

import (
	"errors"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
)

func TestCheck(t *testing.T) {
	// Terms: 1 from index 1, 3 from index 10.
	termAt := func(i uint64) (uint64, bool) {
		switch {
		case i == 0:
			return 0, false
		case i < 10:
			return 1, true
		default:
			return 3, true
		}
	}
	for _, c := range []struct {
		tok      api.Token
		applied  uint64
		ok, back bool
	}{
		{api.Token{}, 0, true, false},
		{api.Token{Term: 1, Index: 5}, 4, false, false},
		{api.Token{Term: 1, Index: 5}, 5, true, false},
		{api.Token{Term: 1, Index: 5}, 50, true, false},
		{api.Token{Term: 2, Index: 5}, 50, false, true},
		{api.Token{Term: 2, Index: 12}, 50, false, true},
		{api.Token{Term: 3, Index: 12}, 50, true, false},
		{api.Token{Index: 12}, 50, true, false},
	} {
		ok, err := Check(c.tok, c.applied, termAt)
		if ok != c.ok || errors.Is(err, api.ErrRolledBack) != c.back {
			t.Errorf("Check(%v, applied %d) = %v %v, want ok %v rolled back %v", c.tok, c.applied, ok, err, c.ok, c.back)
		}
	}
	unknown := func(uint64) (uint64, bool) { return 0, false }
	if ok, err := Check(api.Token{Term: 9, Index: 3}, 5, unknown); !ok || err != nil {
		t.Errorf("an index without history: %v %v", ok, err)
	}
}

func TestSettle(t *testing.T) {
	logTerm := func(i uint64) (uint64, bool) {
		if i < 10 {
			return 1, true
		}
		return 4, true
	}
	for _, c := range []struct {
		tok  api.Token
		last uint64
		back bool
	}{
		{api.Token{Term: 4, Index: 20}, 15, false}, // this term: may still come
		{api.Token{Term: 1, Index: 5}, 15, false},  // in the log with its term
		{api.Token{Term: 2, Index: 12}, 15, true},  // another term there
		{api.Token{Term: 2, Index: 30}, 15, true},  // past the log of a later leader
		{api.Token{Term: 5, Index: 30}, 15, false}, // a later term than this leader's: not its call
		{api.Token{Term: 0, Index: 30}, 15, false}, // index only
	} {
		err := Settle(c.tok, 4, c.last, true, logTerm)
		if errors.Is(err, api.ErrRolledBack) != c.back {
			t.Errorf("Settle(%v, last %d) = %v, want rolled back %v", c.tok, c.last, err, c.back)
		}
		// Before the leader commits in its term, an older entry it lacks
		// may still be committed by another leader: never rolled back.
		if err := Settle(c.tok, 4, c.last, false, logTerm); errors.Is(err, api.ErrRolledBack) {
			t.Errorf("Settle(%v, last %d) before a commit in the term = %v, want nil", c.tok, c.last, err)
		}
	}
	if err := Settle(api.Token{Term: 4, Index: 16}, 4, 15, false, logTerm); !errors.Is(err, api.ErrBadToken) {
		t.Errorf("a token of the leader's term past its log: %v, want ErrBadToken", err)
	}
}

func TestBounds(t *testing.T) {
	if !WithinBound(0, 10, 10) || WithinBound(1, 10, 10) || !WithinBound(100, 10, 120) || WithinBound(100, 11, 120) {
		t.Error("WithinBound margin: age + tick + age/10 <= maxLag")
	}
	if !WithinBound(1e9, 1, 0) {
		t.Error("no time bound")
	}
	if Need(100, true, 5) != 100 || Need(100, false, 5) != 95 || Need(3, false, 5) != 0 {
		t.Error("Need")
	}
}

func TestNewerTerm(t *testing.T) {
	for _, c := range []struct {
		tok     api.Token
		term    uint64
		refused bool
	}{
		{api.Token{}, 3, false},                  // no session yet
		{api.Token{Term: 2, Index: 9}, 3, false}, // seen an older leader
		{api.Token{Term: 3, Index: 9}, 3, false}, // this leader's term
		{api.Token{Term: 4, Index: 1}, 3, true},  // a newer leader exists
	} {
		err := NewerTerm(c.tok, c.term)
		if (err != nil) != c.refused || (err != nil && !errors.Is(err, api.ErrNoLeader)) {
			t.Errorf("NewerTerm(%+v, %d) = %v, refused want %v", c.tok, c.term, err, c.refused)
		}
	}
}

// TestWriteMustWait: a session write whose token is of an earlier term
// waits on a leader that has not committed in its own term (chaos seed
// 562545032: accepted at once, it hid the session's rolled-back write).
func TestWriteMustWait(t *testing.T) {
	for _, c := range []struct {
		tok       api.Token
		term      uint64
		committed bool
		want      bool
	}{
		{api.Token{Term: 4, Index: 2403}, 5, false, true},
		{api.Token{Term: 4, Index: 2403}, 5, true, false},
		{api.Token{Term: 5, Index: 2409}, 5, false, false}, // its own term: in its log or refused by Settle
		{api.Token{Index: 7}, 5, false, false},             // index only
		{api.Token{}, 5, false, false},                     // no session
	} {
		if got := WriteMustWait(c.tok, c.term, c.committed); got != c.want {
			t.Errorf("WriteMustWait(%v, term %d, committed %v) = %v, want %v", c.tok, c.term, c.committed, got, c.want)
		}
	}
}
