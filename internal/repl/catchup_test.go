package repl

import (
	"fmt"
	"testing"
)

// TestBacktrackSkipsEveryDivergentTermInOneRejection is the figure-8 catch-up
// case from the simulator: a follower that led (or followed) many short-lived
// leaders holds a suffix of one entry per term, none of which the new leader
// has. Hinting only the follower's term at the probe cost one round trip per
// divergent term; the follower now skips every entry whose term is above the
// probe's, and the leader every entry whose term is above the follower's.
func TestBacktrackSkipsEveryDivergentTermInOneRejection(t *testing.T) {
	const divergent = 20
	nw := newNet(t, 3, 21)
	for _, id := range nw.ids {
		nw.crash(id)
	}
	// n1: 1 1 1, then 30 entries of term 22. n2: 1 1 1, then terms 2..21,
	// one entry each. n3 stays down, so n1 needs n2's vote and n2 (whose
	// last term is lower) cannot win.
	leaderTerms := []uint64{1, 1, 1}
	for range 30 {
		leaderTerms = append(leaderTerms, 22)
	}
	followerTerms := []uint64{1, 1, 1}
	for i := range divergent {
		followerTerms = append(followerTerms, uint64(2+i))
	}
	mustAppend(t, nw.nodes["n1"].st, ents(leaderTerms...)...)
	nw.nodes["n1"].st.SetHardState(HardState{Term: 22, Commit: 3})
	mustAppend(t, nw.nodes["n2"].st, ents(followerTerms...)...)
	nw.nodes["n2"].st.SetHardState(HardState{Term: 21, Commit: 3})
	nw.restart("n1")
	nw.restart("n2")
	nw.rejects = 0
	if l := nw.waitLeader(100); l != "n1" {
		t.Fatalf("leader %s, want n1", l)
	}
	nw.tick(5)
	l, f := nw.nodes["n1"].core, nw.nodes["n2"].core
	if f.log.lastIndex() != l.log.lastIndex() || f.log.committed != l.log.committed {
		t.Fatalf("follower at last %d commit %d, leader at last %d commit %d", f.log.lastIndex(), f.log.committed, l.log.lastIndex(), l.log.committed)
	}
	if nw.rejects > 2 {
		t.Fatalf("%d rejections to back up over %d divergent terms; want at most 2", nw.rejects, divergent)
	}
	if got := len(nw.nodes["n2"].journal); got != divergent {
		t.Fatalf("follower journaled %d discarded entries, want %d", got, divergent)
	}
}

// takeMessages runs id's Ready and returns the messages it sent instead of
// delivering them.
func takeMessages(nw *tnet, id NodeID) []Message {
	nw.t.Helper()
	before := len(nw.queue)
	for nw.process(nw.nodes[id]) {
	}
	out := append([]Message(nil), nw.queue[before:]...)
	nw.queue = nw.queue[:before]
	return out
}

func appsTo(ms []Message, to NodeID) []Message {
	var out []Message
	for _, m := range ms {
		if m.Type == MsgApp && m.To == to {
			out = append(out, m)
		}
	}
	return out
}

// TestSlowAppendIsNotResentOnAnEarlierHeartbeat is the other half of the slow
// catch-up: when a round trip is longer than the heartbeat interval, answers
// to heartbeats that left before a MsgApp come back while that MsgApp is
// still on its way. Taking them as "no progress, resend" sent an extra empty
// MsgApp after almost every append; on a network that reorders, it often
// overtook the entries, was rejected, and sent the follower back to probing.
// Only an answer to a heartbeat sent after the MsgApp may declare it lost, and
// then the follower must be repaired without waiting for an election.
func TestSlowAppendIsNotResentOnAnEarlierHeartbeat(t *testing.T) {
	nw := newNet(t, 3, 22, func(c *Config) { c.HeartbeatTicks = 2 })
	lid := nw.waitLeader(60)
	nw.mustPropose(lid, "a", majority())
	nw.tick(3)
	fid := others(nw, lid)[0]
	l := nw.nodes[lid].core
	if pr := l.prs[fid]; pr.state != stateReplicate || pr.match != l.log.lastIndex() {
		t.Fatalf("follower %s: state %d match %d, want replicating at %d", fid, pr.state, pr.match, l.log.lastIndex())
	}

	// A heartbeat round leaves; then a write's MsgApp leaves behind it.
	var hbs []Message
	for len(hbs) == 0 {
		l.Tick()
		for _, m := range takeMessages(nw, lid) {
			if m.Type == MsgHeartbeat && m.To == fid {
				hbs = append(hbs, m)
			}
		}
	}
	if _, err := nw.propose(lid, "b", Ack{Mode: AckAsync}); err != nil {
		t.Fatal(err)
	}
	slow := appsTo(takeMessages(nw, lid), fid)
	if len(slow) != 1 || len(slow[0].Entries) != 1 {
		t.Fatalf("MsgApps to %s after the write: %+v, want one with the entry", fid, slow)
	}
	// The earlier heartbeat's answer arrives first (the MsgApp is slow).
	f := nw.nodes[fid].core
	if err := f.Step(hbs[0]); err != nil {
		t.Fatal(err)
	}
	for _, m := range takeMessages(nw, fid) {
		if err := l.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	if extra := appsTo(takeMessages(nw, lid), fid); len(extra) != 0 {
		t.Fatalf("the leader resent to %s on an answer to an earlier heartbeat: %+v", fid, extra)
	}

	// The MsgApp is lost. The next heartbeat leaves after it; its answer
	// proves the MsgApp is overdue, and the leader repairs the follower.
	var resent []Message
	for i := 0; i < 2*l.cfg.HeartbeatTicks && len(resent) == 0; i++ {
		l.Tick()
		for _, m := range takeMessages(nw, lid) {
			if m.To != fid || m.Type != MsgHeartbeat {
				continue
			}
			if err := f.Step(m); err != nil {
				t.Fatal(err)
			}
			for _, r := range takeMessages(nw, fid) {
				if err := l.Step(r); err != nil {
					t.Fatal(err)
				}
			}
			resent = appsTo(takeMessages(nw, lid), fid)
		}
	}
	if len(resent) == 0 {
		t.Fatalf("no MsgApp to %s after a heartbeat round trip that followed the lost one", fid)
	}
	for _, m := range resent {
		nw.deliver(m)
	}
	nw.deliverAll()
	if pr := l.prs[fid]; pr.match != l.log.lastIndex() {
		t.Fatalf("follower %s match %d after the repair, leader last %d", fid, pr.match, l.log.lastIndex())
	}
}

// TestWipedFollowerCaughtUp: a follower restarted with an empty log under
// its old id (its data directory lost) rejects the leader's probe at an
// index the leader had counted as matched. Such a rejection used to be
// dropped as stale, and the follower stayed behind for good; the leader
// now takes the follower's word for where its log ends and catches it up.
func TestWipedFollowerCaughtUp(t *testing.T) {
	nw, l, f := wipeAFollower(t)
	nd := nw.nodes[f]
	nw.tick(5)
	// The leader learns of the loss from the follower's answer to the next
	// append (or to a heartbeat: TestWipedFollowerCaughtUpWhileIdle).
	nw.mustPropose(l, "after", majority())
	nw.tick(30)
	if nw.leader() != l {
		t.Fatalf("leader changed from %s to %s", l, nw.leader())
	}
	lc, fc := nw.nodes[l].core, nw.nodes[f].core
	if fc.log.lastIndex() != lc.log.lastIndex() || len(nd.applied) == 0 || nd.appliedIndex() != lc.log.committed {
		t.Fatalf("wiped follower at last %d applied %d; leader at last %d commit %d",
			fc.log.lastIndex(), nd.appliedIndex(), lc.log.lastIndex(), lc.log.committed)
	}
	nw.checkConverged()
}

// TestWipedFollowerCaughtUpWhileIdle checks that a follower that came back
// with an empty log under its old id is caught up by heartbeats alone: the
// heartbeat carries the index it acknowledged, and it answers that its log
// ends below it. Before, an idle leader learned of the loss only from the
// answer to its next append, so the follower stayed empty while nothing
// was written.
func TestWipedFollowerCaughtUpWhileIdle(t *testing.T) {
	nw, l, f := wipeAFollower(t)
	nd := nw.nodes[f]
	nw.tick(30) // heartbeats only: nothing is written
	if nw.leader() != l {
		t.Fatalf("leader changed from %s to %s", l, nw.leader())
	}
	lc, fc := nw.nodes[l].core, nw.nodes[f].core
	if fc.log.lastIndex() != lc.log.lastIndex() || nd.appliedIndex() != lc.log.committed {
		t.Fatalf("wiped follower at last %d applied %d after heartbeats alone; leader at last %d commit %d",
			fc.log.lastIndex(), nd.appliedIndex(), lc.log.lastIndex(), lc.log.committed)
	}
	nw.checkConverged()
}

// wipeAFollower starts 3 nodes, commits 20 entries, and restarts a
// follower with empty storage under its old id (a wiped data directory).
func wipeAFollower(t *testing.T) (nw *tnet, leader, follower NodeID) {
	t.Helper()
	nw = newNet(t, 3, 5)
	l := nw.waitLeader(100)
	for i := range 20 {
		nw.mustPropose(l, fmt.Sprintf("k%d", i), majority())
	}
	nw.tick(5)
	var f NodeID
	for _, id := range nw.ids {
		if id != l {
			f = id
			break
		}
	}
	if got := nw.nodes[f].core.log.lastIndex(); got < 20 {
		t.Fatalf("follower %s at %d before the wipe", f, got)
	}
	nw.crash(f)
	nd := nw.nodes[f]
	nd.st, nd.applied, nd.journal = NewMemoryStorage(), nil, nil
	nw.restart(f)
	return nw, l, f
}
