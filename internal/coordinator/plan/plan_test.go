package plan

import (
	"testing"

	"github.com/trireme-db/trireme/internal/repl"
)

var p = Params{SuspectAfter: 30, Retry: 5, GiveUp: 60, Backoff: 100}

func TestFollowerTakesTheKeyOnlyWhenTheLeaderIsSilent(t *testing.T) {
	var s State
	v := View{Now: 100, Promotable: true, Role: repl.RoleFollower, Term: 4, Lead: "n1", SinceLeader: 10}
	if a := s.Next(v, p); a.Kind != None {
		t.Fatalf("leader heard 10 ago: %+v, want nothing", a)
	}
	v.SinceLeader = 30
	if a := s.Next(v, p); a.Kind != Acquire || a.MinTerm != 5 {
		t.Fatalf("leader silent: %+v, want acquire with a term above 4", a)
	}
	v.Now += 2
	if a := s.Next(v, p); a.Kind != None {
		t.Fatalf("right after an attempt: %+v, want to wait Retry", a)
	}
	v.Now += 5
	if a := s.Next(v, p); a.Kind != Acquire {
		t.Fatalf("after Retry: %+v, want another attempt", a)
	}
	v.Promotable = false
	v.Now += 10
	if a := s.Next(v, p); a.Kind != None {
		t.Fatalf("priority 0: %+v, want nothing", a)
	}
}

func TestHolderCampaignsLeadsAndExtends(t *testing.T) {
	var s State
	v := View{Now: 0, Promotable: true, Role: repl.RoleFollower, Term: 4, Holding: true, HeldTerm: 9, ValidFor: 40}
	if a := s.Next(v, p); a.Kind != Campaign || a.Term != 9 || a.ValidFor != 40 {
		t.Fatalf("new holder: %+v, want campaign at 9 for 40", a)
	}
	v.Role, v.Term, v.Now = repl.RoleCandidate, 9, 1
	if a := s.Next(v, p); a.Kind != None {
		t.Fatalf("candidate right after asking: %+v", a)
	}
	v.Now = 6
	if a := s.Next(v, p); a.Kind != Campaign || a.Term != 9 {
		t.Fatalf("candidate after Retry: %+v, want to ask again", a)
	}
	v.Role, v.Now, v.ValidFor = repl.RoleLeader, 200, 33
	if a := s.Next(v, p); a.Kind != Extend || a.ValidFor != 33 {
		t.Fatalf("leader holding: %+v, want extend", a)
	}
}

func TestHolderGivesUp(t *testing.T) {
	// Refused: a follower at the held term.
	var s State
	v := View{Now: 0, Promotable: true, Role: repl.RoleFollower, Term: 9, Holding: true, HeldTerm: 9, ValidFor: 40}
	if a := s.Next(v, p); a.Kind != Resign {
		t.Fatalf("refused holder: %+v, want resign", a)
	}
	v.Holding, v.Now = false, 50
	if a := s.Next(v, p); a.Kind != None {
		t.Fatalf("within the backoff: %+v, want nothing", a)
	}
	v.Now = 100
	if a := s.Next(v, p); a.Kind != Acquire {
		t.Fatalf("after the backoff: %+v, want acquire", a)
	}
	// Stuck as candidate past GiveUp.
	s = State{}
	v = View{Now: 0, Promotable: true, Role: repl.RoleCandidate, Term: 9, Holding: true, HeldTerm: 9, ValidFor: 40}
	s.Next(v, p)
	v.Now = 60
	if a := s.Next(v, p); a.Kind != Resign {
		t.Fatalf("candidate for GiveUp: %+v, want resign", a)
	}
	// The cluster is past the held term.
	s = State{}
	v = View{Now: 0, Promotable: true, Role: repl.RoleFollower, Term: 12, Lead: "n2", Holding: true, HeldTerm: 9}
	if a := s.Next(v, p); a.Kind != Resign {
		t.Fatalf("term beyond the grant: %+v, want resign", a)
	}
}

func TestLeaderWithoutKeyWaits(t *testing.T) {
	var s State
	v := View{Now: 0, Promotable: true, Role: repl.RoleLeader, Term: 9}
	if a := s.Next(v, p); a.Kind != None {
		t.Fatalf("leader that lost the key: %+v, want nothing (the core steps down at the grant's end)", a)
	}
}
