package repl

import (
	"errors"
	"testing"
)

func external(cfg *Config) { cfg.ExternalElection = true }

// campaignUntil asks id to campaign at term until it leads (voters that
// still heard the old leader ignore the first requests), at most maxTicks.
func campaignUntil(t *testing.T, nw *tnet, id NodeID, term uint64, maxTicks int) {
	t.Helper()
	for range maxTicks {
		if err := nw.nodes[id].core.Campaign(term, 1000); err != nil {
			t.Fatalf("Campaign(%d) on %s: %v", term, id, err)
		}
		nw.deliverAll()
		if nw.nodes[id].core.role == RoleLeader {
			return
		}
		nw.tick(1)
	}
	t.Fatalf("%s did not win term %d within %d ticks", id, term, maxTicks)
}

// TestExternalElection: only the node the coordinator names campaigns, at
// the term it was granted; nobody campaigns on a timeout, and a planned
// transfer is refused.
func TestExternalElection(t *testing.T) {
	nw := newNet(t, 3, 1, external)
	nw.tick(100)
	if l := nw.leader(); l != None {
		t.Fatalf("%s became leader without the coordinator", l)
	}
	campaignUntil(t, nw, "n2", 7, 30)
	if got := nw.nodes["n2"].core.term; got != 7 {
		t.Fatalf("leader term %d, want the granted 7", got)
	}
	nw.mustPropose("n2", "k", majority())
	nw.tick(5)
	if err := nw.nodes["n2"].core.TransferLeadership("n3"); !errors.Is(err, ErrExternalElection) {
		t.Fatalf("transfer: %v, want ErrExternalElection", err)
	}
	if err := nw.nodes["n3"].core.Campaign(7, 100); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("a second campaign at the same term: %v, want ErrStaleTerm", err)
	}
	// The leader dies: nobody replaces it until the coordinator grants
	// the next term, and the followers stop naming it.
	nw.crash("n2")
	nw.tick(100)
	if l := nw.leader(); l != None {
		t.Fatalf("%s became leader without the coordinator", l)
	}
	for _, id := range []NodeID{"n1", "n3"} {
		if lead := nw.nodes[id].core.Status().Lead; lead != None {
			t.Fatalf("%s still names %s as leader 100 ticks after it died", id, lead)
		}
	}
	campaignUntil(t, nw, "n3", 8, 30)
	nw.checkConverged()
}

// TestExternalGrantEnds: a leader whose grant is not extended steps down
// when it ends (and stops serving lease reads with it); one that is
// extended keeps leading.
func TestExternalGrantEnds(t *testing.T) {
	nw := newNet(t, 3, 2, external)
	nw.tick(20)
	if err := nw.nodes["n1"].core.Campaign(3, 100); err != nil { // clamped to ElectionTicks (10)
		t.Fatal(err)
	}
	nw.deliverAll()
	nw.tick(1)
	if nw.leader() != "n1" {
		t.Fatalf("leader %s, want n1", nw.leader())
	}
	for range 5 {
		nw.tick(5)
		nw.nodes["n1"].core.ExtendLeadership(8)
	}
	if nw.leader() != "n1" || !nw.nodes["n1"].core.Status().LeaseValid {
		t.Fatal("an extended leader lost its leadership or its lease")
	}
	nw.tick(7)
	if !nw.nodes["n1"].core.Status().LeaseValid {
		t.Fatal("lease lapsed before the grant ended")
	}
	nw.tick(1)
	if st := nw.nodes["n1"].core.Status(); st.Role == RoleLeader || st.LeaseValid {
		t.Fatalf("grant over: role %s lease %v, want a follower without lease", st.Role, st.LeaseValid)
	}
}

// TestExternalHolderBehind: a holder whose log is behind a majority's loses
// its election: the coordinator's choice never overrides the log check.
func TestExternalHolderBehind(t *testing.T) {
	nw := newNet(t, 3, 3, external)
	nw.tick(20)
	campaignUntil(t, nw, "n1", 2, 30)
	nw.isolate("n3")
	for i := range 5 {
		nw.mustPropose("n1", string(rune('a'+i)), majority())
	}
	nw.tick(2)
	nw.crash("n1")
	nw.heal()
	nw.isolate("n1")
	nw.tick(20) // stickiness over everywhere
	if err := nw.nodes["n3"].core.Campaign(3, 100); err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	nw.tick(1)
	if st := nw.nodes["n3"].core.Status(); st.Role == RoleLeader {
		t.Fatal("a holder missing committed entries won the election")
	}
	// Asking again changes nothing (n1, the one vote not yet refused, is
	// away); the coordinator's side gives up the key after a while.
	if err := nw.nodes["n3"].core.Campaign(3, 100); err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	nw.tick(5)
	if st := nw.nodes["n3"].core.Status(); st.Role == RoleLeader {
		t.Fatal("a holder missing committed entries won the election when it asked again")
	}
	campaignUntil(t, nw, "n2", 4, 30)
	nw.tick(10)
	if got := len(appliedKeys(nw.nodes["n3"])); got < 5 {
		t.Fatalf("n3 applied %d keys after the new leader caught it up, want the 5 committed", got)
	}
}

func TestCampaignNeedsExternalElection(t *testing.T) {
	nw := newNet(t, 3, 4)
	if err := nw.nodes["n1"].core.Campaign(5, 10); !errors.Is(err, ErrExternalElection) {
		t.Fatalf("Campaign without ExternalElection: %v", err)
	}
}
