package repl

import (
	"errors"
	"testing"
)

func TestLeadershipTransfer(t *testing.T) {
	nw := newNet(t, 3, 40)
	l := nw.waitLeader(50)
	to := others(nw, l)[0]
	nw.mustPropose(l, "a", majority())
	c := nw.nodes[l].core
	if err := c.TransferLeadership(to); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.Transferring != to || st.LeaseValid {
		t.Fatalf("status during transfer: %+v", st)
	}
	if _, err := nw.propose(l, "b", majority()); !errors.Is(err, ErrTransferring) {
		t.Fatalf("propose during transfer: %v", err)
	}
	nw.deliverAll()
	if got := nw.leader(); got != to {
		t.Fatalf("leader %s after transfer to %s", got, to)
	}
	nw.tick(20)
	if got := nw.leader(); got != to {
		t.Fatalf("leader %s after transfer settled, want %s", got, to)
	}
	nw.mustPropose(to, "c", majority())
	nw.tick(3)
	nw.checkConverged()
}

func TestLeadershipTransferToDownNodeAborts(t *testing.T) {
	nw := newNet(t, 3, 41)
	l := nw.waitLeader(50)
	to := others(nw, l)[0]
	nw.crash(to)
	c := nw.nodes[l].core
	if err := c.TransferLeadership(to); err != nil {
		t.Fatal(err)
	}
	nw.tick(c.cfg.ElectionTicks + 1)
	if st := c.Status(); st.Role != RoleLeader || st.Transferring != None {
		t.Fatalf("after abort: %+v", st)
	}
	nw.mustPropose(l, "a", majority())
}

func TestTransferErrors(t *testing.T) {
	nw := newNet(t, 3, 42, func(c *Config) { c.Peers[2].Priority = 0 })
	l := nw.waitLeader(50)
	c := nw.nodes[l].core
	if err := c.TransferLeadership("n9"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown target: %v", err)
	}
	if err := c.TransferLeadership("n3"); !errors.Is(err, ErrBadTransferTarget) {
		t.Fatalf("priority-0 target: %v", err)
	}
	if err := c.TransferLeadership(l); err != nil || c.transferee != None {
		t.Fatalf("transfer to self: %v", err)
	}
	if err := nw.nodes[others(nw, l)[0]].core.TransferLeadership(l); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("transfer on follower: %v", err)
	}
}

func TestPriorities(t *testing.T) {
	// n1 priority 0: never leads. n3 priority 5: takes over when caught up.
	nw := newNet(t, 3, 43, func(c *Config) {
		c.Peers[0].Priority = 0
		c.Peers[1].Priority = 1
		c.Peers[2].Priority = 5
	})
	nw.tick(80)
	if got := nw.leader(); got != "n3" {
		t.Fatalf("leader %s, want the highest-priority n3", got)
	}
	// With n3 down, n2 leads; n1 never does.
	nw.crash("n3")
	l := nw.waitLeader(60)
	if l != "n2" {
		t.Fatalf("leader %s with n3 down, want n2", l)
	}
	nw.mustPropose(l, "a", majority())
	nw.tick(5)
	// n2 down too: n1 (priority 0) must not campaign.
	nw.crash("n2")
	nw.tick(100)
	if got := nw.nodes["n1"].core.role; got != RoleFollower {
		t.Fatalf("priority-0 node is %v", got)
	}
	nw.restart("n2")
	nw.restart("n3")
	nw.tick(120)
	if got := nw.leader(); got != "n3" {
		t.Fatalf("leader %s after n3 rejoined, want n3", got)
	}
	nw.checkConverged()
}
