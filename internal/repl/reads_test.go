package repl

import (
	"errors"
	"testing"
)

func TestLeaseRead(t *testing.T) {
	nw := newNet(t, 3, 30)
	l := nw.waitLeader(50)
	nw.tick(2) // heartbeat rounds acknowledged: lease valid
	c := nw.nodes[l].core
	if !c.Status().LeaseValid {
		t.Fatal("lease not valid after acknowledged heartbeats")
	}
	pid := nw.mustPropose(l, "a", Ack{Mode: AckAsync})
	// Persist the write on the leader only: it is acknowledged, not committed.
	rd := c.Ready()
	if err := nw.nodes[l].st.Persist(&rd); err != nil {
		t.Fatal(err)
	}
	held := rd.Messages
	c.Advance(rd)
	rd = c.Ready()
	if len(rd.Results) != 1 || rd.Results[0].ID != pid {
		t.Fatalf("async write not acknowledged: %+v", rd.Results)
	}
	held = append(held, rd.Messages...)
	c.Advance(rd)
	if err := c.Read(ReadRequest{ID: 1, Level: ReadLinearizable}); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	if len(rd.Reads) != 0 {
		t.Fatalf("read released before the acknowledged write is committed: %+v", rd.Reads)
	}
	for _, m := range rd.Messages {
		if m.Type == MsgHeartbeat {
			t.Fatal("lease read started a heartbeat round")
		}
	}
	held = append(held, rd.Messages...)
	c.Advance(rd)
	// Deliver the held traffic: the write commits, the read is served at it.
	nw.queue = append(nw.queue, held...)
	nw.deliverAll()
	r, ok := nw.nodes[l].reads[1]
	if !ok || r.Err != nil {
		t.Fatalf("read: %+v present=%v", r, ok)
	}
	res := nw.nodes[l].results[pid]
	if res.Index != 0 && r.Index < res.Index {
		t.Fatalf("read point %d below acknowledged write %d", r.Index, res.Index)
	}
}

func TestReadIndexRound(t *testing.T) {
	nw := newNet(t, 3, 31)
	l := nw.waitLeader(50)
	nw.tick(2)
	c := nw.nodes[l].core
	hb := nw.sent[MsgHeartbeat]
	if err := c.Read(ReadRequest{ID: 7, Level: ReadIndexOnly}); err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	if got := nw.sent[MsgHeartbeat] - hb; got != 2 {
		t.Fatalf("read-index round sent %d heartbeats, want 2", got)
	}
	r, ok := nw.nodes[l].reads[7]
	if !ok || r.Err != nil || r.Index != c.log.lastIndex() {
		t.Fatalf("read %+v present=%v (last index %d)", r, ok, c.log.lastIndex())
	}
	// Reads on a follower are refused.
	if err := nw.nodes[others(nw, l)[0]].core.Read(ReadRequest{ID: 8}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower read: %v", err)
	}
}

// TestReadOnCutOffLeader: without a quorum, a read-index read never
// succeeds, and the lease runs out before any other node can be elected.
func TestReadOnCutOffLeader(t *testing.T) {
	nw := newNet(t, 3, 32)
	l := nw.waitLeader(50)
	nw.tick(2)
	nw.isolate(l)
	c := nw.nodes[l].core
	if err := c.Read(ReadRequest{ID: 1, Level: ReadIndexOnly}); err != nil {
		t.Fatal(err)
	}
	leaseEnd := c.rs.leaseUntil
	for c.now < leaseEnd {
		nw.tick(1)
	}
	if c.Status().LeaseValid {
		t.Fatal("lease still valid past its end")
	}
	// No other node can have been elected while the lease held.
	for _, id := range others(nw, l) {
		if nw.nodes[id].core.term != c.term {
			t.Fatalf("%s moved to term %d while the leader's lease was valid (tick %d, lease end %d)",
				id, nw.nodes[id].core.term, c.now, leaseEnd)
		}
	}
	nw.tick(15)
	r, ok := nw.nodes[l].reads[1]
	if !ok || r.Err == nil {
		t.Fatalf("read on a cut-off leader: %+v present=%v", r, ok)
	}
	if !errors.Is(r.Err, ErrReadTimeout) && !errors.Is(r.Err, ErrLeadershipLost) {
		t.Fatalf("read error %v", r.Err)
	}
}

func TestSingleNodeReadsAndWrites(t *testing.T) {
	nw := newNet(t, 1, 33)
	l := nw.waitLeader(30)
	pid := nw.mustPropose(l, "a", Ack{Mode: AckSync})
	if err := nw.nodes[l].core.Read(ReadRequest{ID: 1, Level: ReadIndexOnly}); err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	if r := nw.nodes[l].results[pid]; r.Outcome != OutcomeOK || !r.Durability.Committed {
		t.Fatalf("result %+v", r)
	}
	if r := nw.nodes[l].reads[1]; r.Err != nil || r.Index < 2 {
		t.Fatalf("read %+v", r)
	}
}

func TestFollowerStaleness(t *testing.T) {
	nw := newNet(t, 3, 34)
	l := nw.waitLeader(50)
	nw.mustPropose(l, "a", majority())
	nw.tick(3)
	f := others(nw, l)[0]
	st := nw.nodes[f].core.Status()
	if st.LeaderCommit != nw.nodes[l].core.log.committed || st.TicksSinceLeader != 0 {
		t.Fatalf("follower status %+v, leader commit %d", st, nw.nodes[l].core.log.committed)
	}
	nw.isolate(f)
	nw.tick(5)
	if got := nw.nodes[f].core.Status().TicksSinceLeader; got != 5 {
		t.Fatalf("TicksSinceLeader %d after 5 ticks cut off", got)
	}
}

// leaseScenario: n3 is cut off from the leader n1 (so its election timer
// runs) while n2 keeps acknowledging n1's heartbeats; then n1 is cut off
// completely and n3 campaigns. It returns whether a lease read on n1 was
// served while n3's cluster had committed a newer write, i.e. a stale read.
func leaseScenario(t *testing.T, opts ...netOpt) (stale bool) {
	t.Helper()
	nw := newNet(t, 3, 35, opts...)
	// Make n1 the leader.
	for nw.leader() != "n1" {
		if l := nw.leader(); l != None {
			_ = nw.nodes[l].core.TransferLeadership("n1")
		}
		nw.tick(1)
	}
	nw.tick(2)
	nw.partition([]NodeID{"n1"}, []NodeID{"n3"})
	n1 := nw.nodes["n1"].core
	for range 100 {
		nw.tick(1)
		if nw.nodes["n3"].core.role != RoleFollower {
			break // n3's timer fired: it is pre-voting / campaigning
		}
	}
	nw.isolate("n1")
	for range 3 * n1.cfg.ElectionTicks {
		nw.tick(1)
		if l := nw.leader(); l == "n3" && n1.role == RoleLeader && n1.leaseValid() {
			// n3 leads while n1 still holds a lease: write on n3, read on n1.
			pid := nw.mustPropose("n3", "new", majority())
			nw.deliverAll()
			if r := nw.nodes["n3"].results[pid]; r.Outcome != OutcomeOK {
				continue
			}
			if err := n1.Read(ReadRequest{ID: 1, Level: ReadLinearizable}); err != nil {
				t.Fatal(err)
			}
			nw.deliverAll()
			if r, ok := nw.nodes["n1"].reads[1]; ok && r.Err == nil {
				return true
			}
		}
	}
	return false
}

func TestLeaseSafeAgainstPartialPartition(t *testing.T) {
	if leaseScenario(t) {
		t.Fatal("stale lease read: a new leader committed a write while the old leader's lease was valid")
	}
}
