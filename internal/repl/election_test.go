package repl

import (
	"math/rand"
	"testing"
)

func TestInitialElection(t *testing.T) {
	for _, n := range []int{1, 3, 5} {
		nw := newNet(t, n, 1)
		l := nw.waitLeader(50)
		term := nw.nodes[l].core.term
		nw.tick(100)
		if got := nw.leader(); got != l {
			t.Fatalf("n=%d: leader changed from %s to %s without failures", n, l, got)
		}
		for _, id := range nw.ids {
			st := nw.nodes[id].core.Status()
			if st.Term != term {
				t.Fatalf("n=%d: %s at term %d, leader term %d", n, id, st.Term, term)
			}
			if st.Lead != l {
				t.Fatalf("n=%d: %s thinks the leader is %q, want %s", n, id, st.Lead, l)
			}
			if st.Commit < 1 || st.Applied != st.Commit {
				t.Fatalf("n=%d: %s commit %d applied %d: the no-op should be committed and applied", n, id, st.Commit, st.Applied)
			}
		}
	}
}

func TestReElection(t *testing.T) {
	nw := newNet(t, 3, 2)
	l1 := nw.waitLeader(50)
	nw.isolate(l1)
	var rest []NodeID
	for _, id := range nw.ids {
		if id != l1 {
			rest = append(rest, id)
		}
	}
	l2 := nw.waitLeader(60, rest...)
	if l2 == l1 {
		t.Fatal("isolated leader re-elected")
	}
	// The old leader stepped down by check-quorum.
	nw.tick(25)
	if r := nw.nodes[l1].core.role; r == RoleLeader {
		t.Fatalf("isolated old leader %s still leader after check-quorum period", l1)
	}
	nw.heal()
	nw.tick(30)
	if got := nw.leader(); got != l2 {
		t.Fatalf("after healing: leader %s, want %s (the old leader must not disrupt)", got, l2)
	}
	// No quorum: no leader.
	nw.isolate(rest[0])
	nw.isolate(rest[1])
	nw.tick(60)
	if got := nw.leader(); got != None {
		t.Fatalf("leader %s elected with every link cut", got)
	}
	nw.heal()
	nw.waitLeader(60)
}

func TestManyElections(t *testing.T) {
	seed := int64(3)
	nw := newNet(t, 7, seed)
	nw.waitLeader(50)
	rng := rand.New(rand.NewSource(seed))
	for iter := range 10 {
		nw.heal()
		// cut off 3 random nodes
		perm := rng.Perm(7)
		var live []NodeID
		for i, p := range perm {
			if i < 3 {
				nw.isolate(nw.ids[p])
			} else {
				live = append(live, nw.ids[p])
			}
		}
		nw.waitLeader(100, live...)
		_ = iter
	}
	nw.heal()
	nw.tick(40)
	if nw.leader() == None {
		t.Fatalf("seed %d: no leader after healing", seed)
	}
}

func TestPreVoteDoesNotDisruptAfterPartition(t *testing.T) {
	nw := newNet(t, 3, 4)
	l := nw.waitLeader(50)
	term := nw.nodes[l].core.term
	var f NodeID
	for _, id := range nw.ids {
		if id != l {
			f = id
			break
		}
	}
	nw.isolate(f)
	nw.tick(100) // f keeps pre-voting, never increments its term
	if got := nw.nodes[f].core.term; got != term {
		t.Fatalf("isolated follower term moved %d -> %d despite pre-vote", term, got)
	}
	nw.heal()
	nw.tick(20)
	if got := nw.leader(); got != l || nw.nodes[l].core.term != term {
		t.Fatalf("leader %s term %d after heal; want %s term %d", got, nw.nodes[got].core.term, l, term)
	}
}

func TestLeaderStickiness(t *testing.T) {
	nw := newNet(t, 3, 5)
	l := nw.waitLeader(50)
	var f NodeID
	for _, id := range nw.ids {
		if id != l {
			f = id
			break
		}
	}
	c := nw.nodes[f].core
	term := c.term
	last, lastTerm := c.log.lastIndex(), c.log.lastTerm()
	var other NodeID
	for _, id := range nw.ids {
		if id != l && id != f {
			other = id
		}
	}
	for _, typ := range []MsgType{MsgPreVote, MsgVote} {
		if err := c.Step(Message{Type: typ, From: other, To: f, Term: term + 1, Index: last + 5, LogTerm: lastTerm}); err != nil {
			t.Fatal(err)
		}
		rd := c.Ready()
		for _, m := range rd.Messages {
			if (m.Type == MsgVoteResp || m.Type == MsgPreVoteResp) && !m.Reject {
				t.Fatalf("%s granted %s while its leader is live", f, typ)
			}
		}
		c.Advance(rd)
		if c.term != term {
			t.Fatalf("%s moved to term %d on a %s while its leader is live", f, c.term, typ)
		}
	}
	// A transfer-triggered vote (Context=1) overrides stickiness.
	if err := c.Step(Message{Type: MsgVote, From: other, To: f, Term: term + 1, Index: last + 5, LogTerm: lastTerm, Context: contextTransfer}); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	granted := false
	for _, m := range rd.Messages {
		if m.Type == MsgVoteResp && !m.Reject && m.To == other {
			granted = true
		}
	}
	if !granted {
		t.Fatalf("%s refused a transfer vote: %+v", f, rd.Messages)
	}
}

func TestVoteRequiresUpToDateLog(t *testing.T) {
	tests := []struct {
		name              string
		candIndex, candLT uint64
		grant             bool
	}{
		{"shorter same term", 1, 2, false},
		{"equal", 3, 2, true},
		{"longer same term", 9, 2, true},
		{"older last term, longer", 10, 1, false},
		{"newer last term, shorter", 1, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewMemoryStorage()
			mustAppend(t, st, ents(1, 2, 2)...) // indexes 1..3 terms 1,2,2
			st.SetHardState(HardState{Term: 2})
			c := mustCore(t, "n1", st, 3)
			c.now = int64(c.cfg.ElectionTicks) // past the start-up stickiness
			if err := c.Step(Message{Type: MsgVote, From: "n2", To: "n1", Term: 3, Index: tt.candIndex, LogTerm: tt.candLT}); err != nil {
				t.Fatal(err)
			}
			rd := c.Ready()
			var resp *Message
			for i := range rd.Messages {
				if rd.Messages[i].Type == MsgVoteResp {
					resp = &rd.Messages[i]
				}
			}
			if resp == nil {
				t.Fatal("no vote response")
			}
			if resp.Reject == tt.grant {
				t.Fatalf("reject=%v, want grant=%v", resp.Reject, tt.grant)
			}
			if tt.grant && (rd.HardState.Vote != "n2" || rd.HardState.Term != 3) {
				t.Fatalf("granted vote not in HardState: %+v", rd.HardState)
			}
		})
	}
}

func TestElectionTimeoutRandomizedPerTerm(t *testing.T) {
	st := NewMemoryStorage()
	c := mustCore(t, "n1", st, 3)
	seen := map[int]bool{}
	for range 50 {
		c.becomeFollower(c.term+1, None)
		rt := c.randomizedElectionTimeout
		if rt < c.cfg.ElectionTicks || rt >= 2*c.cfg.ElectionTicks {
			t.Fatalf("timeout %d outside [%d, %d)", rt, c.cfg.ElectionTicks, 2*c.cfg.ElectionTicks)
		}
		seen[rt] = true
	}
	if len(seen) < 3 {
		t.Fatalf("election timeout barely varies across terms: %v", seen)
	}
}

// TestStartupStickiness: a restarted node may have acknowledged a leader's
// heartbeat just before it crashed, so it refuses votes for an election
// timeout after starting (this protects the leader lease).
func TestStartupStickiness(t *testing.T) {
	st := NewMemoryStorage()
	c := mustCore(t, "n1", st, 3)
	vote := func() bool {
		if err := c.Step(Message{Type: MsgVote, From: "n2", To: "n1", Term: c.term + 1, Index: 5, LogTerm: 1}); err != nil {
			t.Fatal(err)
		}
		rd := c.Ready()
		c.Advance(rd)
		for _, m := range rd.Messages {
			if m.Type == MsgVoteResp && !m.Reject {
				return true
			}
		}
		return false
	}
	if vote() {
		t.Fatal("voted right after start")
	}
	c.now = int64(c.cfg.ElectionTicks)
	if !vote() {
		t.Fatal("refused a vote after the start-up period")
	}
}
