//go:build replbugs

package repl

import "testing"

// These tests show that each deliberate bug changes the core's behaviour at
// the point it targets; the simulator shows that its checkers catch them.

func TestBugVoteWithoutLogCheck(t *testing.T) {
	for _, bug := range []bool{false, true} {
		st := NewMemoryStorage()
		mustAppend(t, st, ents(1, 2, 2)...)
		st.SetHardState(HardState{Term: 2})
		c := mustCore(t, "n1", st, 3, func(c *Config) { c.Bugs.VoteWithoutLogCheck = bug })
		c.now = int64(c.cfg.ElectionTicks) // past the start-up stickiness
		if err := c.Step(Message{Type: MsgVote, From: "n2", To: "n1", Term: 3, Index: 1, LogTerm: 1}); err != nil {
			t.Fatal(err)
		}
		granted := false
		for _, m := range c.Ready().Messages {
			granted = granted || (m.Type == MsgVoteResp && !m.Reject)
		}
		if granted != bug {
			t.Fatalf("bug=%v: granted=%v for a candidate with a stale log", bug, granted)
		}
	}
}

func TestBugCommitOldTerm(t *testing.T) {
	for _, bug := range []bool{false, true} {
		st := NewMemoryStorage()
		mustAppend(t, st, ents(1, 2)...)
		st.SetHardState(HardState{Term: 2, Commit: 1})
		c := mustCore(t, "n1", st, 3, func(c *Config) { c.Bugs.CommitOldTerm = bug })
		c.becomeCandidate()
		c.becomeLeader() // no-op at index 3, term 3
		rd := c.Ready()
		if err := st.Persist(&rd); err != nil {
			t.Fatal(err)
		}
		c.Advance(rd)
		// n2 holds the old-term entry 2, not the no-op.
		if err := c.Step(Message{Type: MsgAppResp, From: "n2", To: "n1", Term: c.term, Index: 2}); err != nil {
			t.Fatal(err)
		}
		committed := c.log.committed == 2
		if committed != bug {
			t.Fatalf("bug=%v: old-term entry committed=%v (commit %d)", bug, committed, c.log.committed)
		}
	}
}

func TestBugLeaseWithoutStickiness(t *testing.T) {
	for _, bug := range []bool{false, true} {
		nw := newNet(t, 3, 71, func(c *Config) { c.Bugs.LeaseWithoutStickiness = bug })
		l := nw.waitLeader(50)
		f := others(nw, l)[0]
		c := nw.nodes[f].core
		if err := c.Step(Message{Type: MsgVote, From: others(nw, l, f)[0], To: f, Term: c.term + 1,
			Index: c.log.lastIndex(), LogTerm: c.log.lastTerm()}); err != nil {
			t.Fatal(err)
		}
		granted := false
		for _, m := range c.Ready().Messages {
			granted = granted || (m.Type == MsgVoteResp && !m.Reject)
		}
		if granted != bug {
			t.Fatalf("bug=%v: granted=%v while the leader is live", bug, granted)
		}
	}
}

func TestBugLeaseWithoutStickinessGivesStaleRead(t *testing.T) {
	if !leaseScenario(t, func(c *Config) { c.Bugs.LeaseWithoutStickiness = true }) {
		t.Fatal("with LeaseWithoutStickiness the scenario should produce a stale lease read")
	}
}

func TestBugCommitOldTermLosesCommittedEntry(t *testing.T) {
	if d := figure8(t, func(c *Config) { c.Bugs.CommitOldTerm = true }); d == 0 {
		t.Fatal("with CommitOldTerm the figure 8 scenario should apply divergent entries")
	}
}
