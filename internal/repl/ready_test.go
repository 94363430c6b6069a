package repl

import (
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// follower builds n1 as a follower of n2 at term 2 holding entries with the
// given terms, all durable.
func follower(t *testing.T, terms ...uint64) (*Core, *MemoryStorage) {
	t.Helper()
	st := NewMemoryStorage()
	mustAppend(t, st, ents(terms...)...)
	st.SetHardState(HardState{Term: 2, Commit: 1})
	c := mustCore(t, "n1", st, 3)
	return c, st
}

func put(term, index uint64, key string) entry.Entry {
	return entry.Entry{Term: term, Index: index, Kind: entry.KindPut, Key: []byte(key)}
}

func TestCommittedEntriesOnlyWhenDurable(t *testing.T) {
	c, st := follower(t, 1)
	// Entries 2..3 and a commit index covering them, in one message.
	if err := c.Step(Message{Type: MsgApp, From: "n2", To: "n1", Term: 2, Index: 1, LogTerm: 1, Commit: 3,
		Entries: []entry.Entry{put(2, 2, "a"), put(2, 3, "b")}}); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Entries) != 2 || rd.HardState.Commit > 1 {
		t.Fatalf("Ready: %d entries, hard state %+v (its commit must not cover entries not yet durable)", len(rd.Entries), rd.HardState)
	}
	for _, e := range rd.CommittedEntries {
		if e.Index > 1 {
			t.Fatalf("entry %d handed out for applying before it is durable", e.Index)
		}
	}
	var ack *Message
	for i := range rd.Messages {
		if rd.Messages[i].Type == MsgAppResp {
			ack = &rd.Messages[i]
		}
	}
	if ack == nil || ack.Index != 3 || ack.Reject {
		t.Fatalf("ack %+v: must acknowledge index 3 in the Ready that persists it", ack)
	}
	if err := st.Persist(&rd); err != nil {
		t.Fatal(err)
	}
	c.Advance(rd)
	rd = c.Ready()
	if n := len(rd.CommittedEntries); n == 0 || rd.CommittedEntries[n-1].Index != 3 || rd.HardState.Commit != 3 {
		t.Fatalf("after Advance: committed entries %v, hard state %+v", rd.CommittedEntries, rd.HardState)
	}
	if s := c.Status(); s.StableIndex != 3 || s.LeaderCommit != 3 || s.Lead != "n2" {
		t.Fatalf("status %+v", s)
	}
}

func TestConflictDiscardsDivergentSuffix(t *testing.T) {
	st := NewMemoryStorage()
	mustAppend(t, st, ents(1)...)
	mustAppend(t, st, put(1, 2, "x"), put(1, 3, "y"), put(1, 4, "z"))
	st.SetHardState(HardState{Term: 1, Commit: 1})
	c := mustCore(t, "n1", st, 3)
	// Leader n2 at term 2 holds only entry 1 and 2 of term 1, then its own.
	if err := c.Step(Message{Type: MsgApp, From: "n2", To: "n1", Term: 2, Index: 2, LogTerm: 1, Commit: 1,
		Entries: []entry.Entry{{Term: 2, Index: 3, Kind: entry.KindNoop}}}); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Discarded) != 2 || string(rd.Discarded[0].Key) != "y" || string(rd.Discarded[1].Key) != "z" {
		t.Fatalf("Discarded %+v, want y and z", rd.Discarded)
	}
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 3 || rd.Entries[0].Term != 2 {
		t.Fatalf("Entries %+v: want the new entry 3 (runtime truncates after 2)", rd.Entries)
	}
	if c.Status().StableIndex != 2 {
		t.Fatalf("stable index %d, want 2 until the overwrite is persisted", c.Status().StableIndex)
	}
	if err := st.Persist(&rd); err != nil {
		t.Fatal(err)
	}
	c.Advance(rd)
	if s := c.Status(); s.StableIndex != 3 || s.LastIndex != 3 {
		t.Fatalf("after Advance: %+v", s)
	}
	if tm, _ := st.Term(3); tm != 2 {
		t.Fatalf("storage term(3) = %d", tm)
	}
}

func TestRejectHints(t *testing.T) {
	tests := []struct {
		name                string
		terms               []uint64 // follower log
		index, logTerm      uint64   // probe
		hintTerm, hintIndex uint64
	}{
		// The hint is the largest index <= the probe whose term is at most
		// the probe's LogTerm (no entry above it can match the leader).
		{"follower shorter", []uint64{1, 1}, 5, 2, 1, 2},
		{"follower shorter, last term above the probe's", []uint64{1, 1, 3, 3}, 6, 2, 1, 2},
		{"conflicting term run", []uint64{1, 1, 2, 2, 2, 2}, 5, 3, 2, 5},
		{"skips every term above the probe's", []uint64{1, 1, 4, 5, 5, 6, 7, 7}, 8, 3, 1, 2},
		{"lower term at the probe", []uint64{1, 1, 1, 1}, 4, 2, 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := follower(t, tt.terms...)
			if err := c.Step(Message{Type: MsgApp, From: "n2", To: "n1", Term: 8, Index: tt.index, LogTerm: tt.logTerm}); err != nil {
				t.Fatal(err)
			}
			rd := c.Ready()
			var r *Message
			for i := range rd.Messages {
				if rd.Messages[i].Type == MsgAppResp {
					r = &rd.Messages[i]
				}
			}
			if r == nil || !r.Reject || r.HintTerm != tt.hintTerm || r.HintIndex != tt.hintIndex {
				t.Fatalf("response %+v, want reject with hint term %d index %d", r, tt.hintTerm, tt.hintIndex)
			}
		})
	}
}

func TestBacktrack(t *testing.T) {
	// Leader log terms: 1 1 2 2 2 4 4 4 (indexes 1..8), at term 4.
	st := NewMemoryStorage()
	mustAppend(t, st, ents(1, 1, 2, 2, 2, 4, 4, 4)...)
	st.SetHardState(HardState{Term: 4})
	c := mustCore(t, "n1", st, 3)
	tests := []struct {
		name  string
		match uint64
		m     Message
		want  uint64
	}{
		{"follower shorter, same terms", 0, Message{Index: 8, HintTerm: 2, HintIndex: 4}, 5},
		{"follower's term 3 run: ours above 2 cannot match", 0, Message{Index: 8, HintTerm: 3, HintIndex: 7}, 6},
		{"follower's term 2 ends before ours", 0, Message{Index: 8, HintTerm: 2, HintIndex: 3}, 4},
		{"empty follower", 0, Message{Index: 8, HintTerm: 0, HintIndex: 0}, 1},
		{"never at or above the rejected next", 0, Message{Index: 3, HintTerm: 4, HintIndex: 9}, 3},
		{"never below the known match", 2, Message{Index: 8, HintTerm: 0, HintIndex: 0}, 3},
		{"at least 1", 0, Message{Index: 1, HintTerm: 1, HintIndex: 0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr := newProgress("n2", 9, 4)
			pr.match = tt.match
			if got := c.backtrack(pr, tt.m); got != tt.want {
				t.Fatalf("next %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFlowControl(t *testing.T) {
	nw := newNet(t, 2, 80, func(c *Config) { c.MaxMsgBytes = 1; c.MaxInflightMsgs = 4 })
	l := nw.waitLeader(50)
	f := others(nw, l)[0]
	c := nw.nodes[l].core
	// Hold the follower's answers: nothing is acknowledged.
	nw.cut[[2]NodeID{f, l}] = true
	for i := range 20 {
		nw.mustPropose(l, string(rune('a'+i)), Ack{Mode: AckAsync})
	}
	apps := 0
	for c.HasReady() {
		rd := c.Ready()
		for _, m := range rd.Messages {
			if m.Type == MsgApp {
				apps++
				if len(m.Entries) > 1 {
					t.Fatalf("MsgApp with %d entries despite MaxMsgBytes=1", len(m.Entries))
				}
			}
		}
		_ = nw.nodes[l].st.Persist(&rd)
		c.Advance(rd)
	}
	if apps != 4 {
		t.Fatalf("%d MsgApps in flight, want MaxInflightMsgs=4", apps)
	}
	if s := c.Status(); s.Followers[0].Inflight != 4 {
		t.Fatalf("status inflight %d", s.Followers[0].Inflight)
	}
	nw.heal()
	nw.tick(5)
	nw.checkConverged()
}

func TestReadyPipelining(t *testing.T) {
	nw := newNet(t, 1, 81)
	l := nw.waitLeader(30)
	c, st := nw.nodes[l].core, nw.nodes[l].st
	nw.mustPropose(l, "a", majority())
	rd1 := c.Ready()
	nw.mustPropose(l, "b", majority())
	rd2 := c.Ready() // before Advance(rd1)
	if len(rd1.Entries) != 1 || len(rd2.Entries) != 1 || rd2.Entries[0].Index != rd1.Entries[0].Index+1 {
		t.Fatalf("pipelined Readys: %v then %v", rd1.Entries, rd2.Entries)
	}
	for _, rd := range []*Ready{&rd1, &rd2} {
		if err := st.Persist(rd); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(rd1)
	c.Advance(rd2)
	rd := c.Ready()
	if len(rd.Results) != 2 || len(rd.CommittedEntries) != 2 {
		t.Fatalf("after both Advances: %d results, %d committed", len(rd.Results), len(rd.CommittedEntries))
	}
}

func TestMaxApplyBytes(t *testing.T) {
	st := NewMemoryStorage()
	mustAppend(t, st, ents(1, 1, 1, 1, 1, 1)...)
	st.SetHardState(HardState{Term: 1, Commit: 6})
	c := mustCore(t, "n1", st, 3, func(c *Config) { c.MaxApplyBytes = 2 * entry.HeaderSize })
	total := 0
	for c.HasReady() {
		rd := c.Ready()
		if len(rd.CommittedEntries) > 2 {
			t.Fatalf("%d committed entries in one Ready, limit is 2", len(rd.CommittedEntries))
		}
		total += len(rd.CommittedEntries)
		c.Advance(rd)
	}
	if total != 6 {
		t.Fatalf("applied %d entries, want 6", total)
	}
}

// TestCommitHintNeverCoversAnOverwrittenEntry is a simulator find (seed
// 1009862 at 6,000 steps): a follower received, in one MsgApp, an entry that
// replaced its own at index 5 and a commit index covering it. The Ready's hard
// state said "commit 5" while entry 5 was still the stale one on disk; a crash
// that kept the hard state but not the entries (a torn write) left a node that,
// on restart, applied the stale entry as committed.
func TestCommitHintNeverCoversAnOverwrittenEntry(t *testing.T) {
	c, st := follower(t, 1, 1, 1, 1, 1)
	if err := c.Step(Message{Type: MsgApp, From: "n2", To: "n1", Term: 3, Index: 4, LogTerm: 1, Commit: 5,
		Entries: []entry.Entry{put(3, 5, "new")}}); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 5 {
		t.Fatalf("entries %+v, want the overwrite of 5", rd.Entries)
	}
	if rd.HardState.Commit > 4 {
		t.Fatalf("hard state commit %d covers index 5, which this Ready overwrites", rd.HardState.Commit)
	}
	if err := st.Persist(&rd); err != nil {
		t.Fatal(err)
	}
	c.Advance(rd)
	rd = c.Ready()
	if rd.HardState.Commit != 5 {
		t.Fatalf("after the entries are durable the hard state commit is %d, want 5", rd.HardState.Commit)
	}
}

// TestResultForADiscardedEntryIsNotOK is a simulator find (seed 1006261 at
// 6,000 steps): a leader's async write became durable, its OK result was
// queued, and before the next Ready a newer leader's MsgApp replaced the
// entry. The Ready journaled the entry and answered "ok" for it in the same
// batch.
func TestResultForADiscardedEntryIsNotOK(t *testing.T) {
	nw := newNet(t, 3, 41)
	lid := nw.waitLeader(60)
	nw.tick(2)
	l := nw.nodes[lid].core
	for _, o := range others(nw, lid) {
		nw.cut[[2]NodeID{lid, o}] = true
	}
	id, err := nw.propose(lid, "x", Ack{Mode: AckAsync})
	if err != nil {
		t.Fatal(err)
	}
	idx := l.log.lastIndex()
	rd := l.Ready()
	if err := nw.nodes[lid].st.Persist(&rd); err != nil {
		t.Fatal(err)
	}
	l.Advance(rd) // durable on the leader: the async result is queued
	prevTerm, _ := l.log.term(idx - 1)
	other := others(nw, lid)[0]
	newTerm := l.term + 1
	if err := l.Step(Message{Type: MsgApp, From: other, To: lid, Term: newTerm, Index: idx - 1, LogTerm: prevTerm,
		Entries: []entry.Entry{{Index: idx, Term: newTerm, Kind: entry.KindNoop}}}); err != nil {
		t.Fatal(err)
	}
	rd = l.Ready()
	var res *Result
	for i := range rd.Results {
		if rd.Results[i].ID == id {
			res = &rd.Results[i]
		}
	}
	if res == nil {
		t.Fatalf("no result for the write in %+v", rd.Results)
	}
	if len(rd.Discarded) != 1 || rd.Discarded[0].Index != idx {
		t.Fatalf("discarded %+v, want the write at %d", rd.Discarded, idx)
	}
	if res.Outcome == OutcomeOK {
		t.Fatalf("result %+v: ok for an entry discarded in the same Ready", *res)
	}
}
