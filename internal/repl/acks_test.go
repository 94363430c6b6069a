package repl

import (
	"errors"
	"testing"
)

func TestAckModes(t *testing.T) {
	tests := []struct {
		name      string
		ack       Ack
		down      int // followers crashed before the write (of 2)
		timeout   int
		outcome   Outcome
		replicas  int
		committed bool
	}{
		{"async all up", Ack{Mode: AckAsync}, 0, 20, OutcomeOK, -1, false},
		{"async followers down", Ack{Mode: AckAsync}, 2, 20, OutcomeOK, 0, false},
		{"semi-sync K=1 one follower down", Ack{Mode: AckSemiSync, Replicas: 1}, 1, 20, OutcomeOK, 1, true},
		{"semi-sync K=2 one follower down", Ack{Mode: AckSemiSync, Replicas: 2}, 1, 20, OutcomeTimeout, 1, true},
		{"sync all up", Ack{Mode: AckSync}, 0, 20, OutcomeOK, 2, true},
		{"sync one follower down", Ack{Mode: AckSync}, 1, 20, OutcomeTimeout, 1, true},
		{"majority one follower down", Ack{Mode: AckMajority}, 1, 20, OutcomeOK, 1, true},
		{"majority two followers down", Ack{Mode: AckMajority}, 2, 20, OutcomeTimeout, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Long election timeouts so that the leader keeps leading
			// with its followers down for the whole test.
			nw := newNet(t, 3, 20, func(c *Config) { c.ElectionTicks = 100; c.LeaseTicks = 50 })
			l := nw.waitLeader(300)
			fs := others(nw, l)
			for i := range tt.down {
				nw.crash(fs[i])
			}
			nw.nextID++
			pid := nw.nextID
			if err := nw.nodes[l].core.Propose(Proposal{ID: pid, Kind: 2, Key: []byte("k"), Ack: tt.ack, TimeoutTicks: tt.timeout}); err != nil {
				t.Fatal(err)
			}
			for range tt.timeout + 2 {
				nw.tick(1)
				if _, ok := nw.nodes[l].results[pid]; ok {
					break
				}
			}
			r, ok := nw.nodes[l].results[pid]
			if !ok {
				t.Fatalf("no result after %d ticks", tt.timeout+2)
			}
			if r.Outcome != tt.outcome {
				t.Fatalf("outcome %v, want %v (%+v)", r.Outcome, tt.outcome, r)
			}
			if !r.Durability.LeaderDurable {
				t.Fatalf("LeaderDurable false: %+v", r)
			}
			if tt.replicas >= 0 && r.Durability.Replicas != tt.replicas {
				t.Fatalf("Replicas %d, want %d", r.Durability.Replicas, tt.replicas)
			}
			if tt.outcome != OutcomeOK || tt.ack.Mode != AckAsync {
				if r.Durability.Committed != tt.committed {
					t.Fatalf("Committed %v, want %v", r.Durability.Committed, tt.committed)
				}
			}
			if r.Index == 0 || r.Term != nw.nodes[l].core.term {
				t.Fatalf("result index %d term %d", r.Index, r.Term)
			}
		})
	}
}

// TestAsyncAckedBeforeReplication checks that an async write is acknowledged
// as soon as the leader made it durable, before any follower has it.
func TestAsyncAckedBeforeReplication(t *testing.T) {
	nw := newNet(t, 3, 21)
	l := nw.waitLeader(50)
	c := nw.nodes[l].core
	pid, _ := nw.propose(l, "a", Ack{Mode: AckAsync})
	rd := c.Ready() // carries the entry
	if len(rd.Entries) != 1 || len(rd.Results) != 0 {
		t.Fatalf("first Ready: %d entries %d results", len(rd.Entries), len(rd.Results))
	}
	if err := nw.nodes[l].st.Persist(&rd); err != nil {
		t.Fatal(err)
	}
	c.Advance(rd) // messages to followers never sent
	rd = c.Ready()
	if len(rd.Results) != 1 || rd.Results[0].ID != pid || rd.Results[0].Outcome != OutcomeOK {
		t.Fatalf("after Advance: results %+v", rd.Results)
	}
	if d := rd.Results[0].Durability; !d.LeaderDurable || d.Replicas != 0 || d.Committed {
		t.Fatalf("durability %+v", d)
	}
}

func TestProposeErrors(t *testing.T) {
	nw := newNet(t, 3, 22)
	l := nw.waitLeader(50)
	f := others(nw, l)[0]
	c := nw.nodes[l].core
	tests := []struct {
		name string
		on   NodeID
		p    Proposal
		want error
	}{
		{"follower", f, Proposal{ID: 1, Kind: 2}, ErrNotLeader},
		{"semi-sync K too big", l, Proposal{ID: 2, Kind: 2, Ack: Ack{Mode: AckSemiSync, Replicas: 3}}, ErrNotEnoughPeers},
		{"semi-sync K=0", l, Proposal{ID: 3, Kind: 2, Ack: Ack{Mode: AckSemiSync}}, ErrBadAckMode},
		{"unknown mode", l, Proposal{ID: 4, Kind: 2, Ack: Ack{Mode: 9}}, ErrBadAckMode},
		{"bad kind", l, Proposal{ID: 5, Kind: 0}, ErrBadProposal},
		{"negative timeout", l, Proposal{ID: 6, Kind: 2, TimeoutTicks: -1}, ErrBadProposal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := nw.nodes[tt.on].core.log.lastIndex()
			err := nw.nodes[tt.on].core.Propose(tt.p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if got := nw.nodes[tt.on].core.log.lastIndex(); got != last {
				t.Fatalf("refused proposal changed the log: %d -> %d", last, got)
			}
		})
	}
	if err := c.Propose(Proposal{ID: 7, Kind: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.Propose(Proposal{ID: 7, Kind: 2}); !errors.Is(err, ErrDuplicateProposal) {
		t.Fatalf("duplicate id: %v", err)
	}
	c.cfg.MaxPendingProposals = 1
	if err := c.Propose(Proposal{ID: 8, Kind: 2}); !errors.Is(err, ErrBusy) {
		t.Fatalf("over MaxPendingProposals: %v", err)
	}
}

func TestLeadershipLossGivesUnknown(t *testing.T) {
	nw := newNet(t, 3, 23)
	l := nw.waitLeader(50)
	nw.isolate(l)
	pids := []uint64{
		nw.mustPropose(l, "a", majority()),
		nw.mustPropose(l, "b", Ack{Mode: AckSync}),
	}
	if err := nw.nodes[l].core.Read(ReadRequest{ID: 99, Level: ReadIndexOnly}); err != nil {
		t.Fatal(err)
	}
	nw.tick(25) // check-quorum steps the leader down
	if nw.nodes[l].core.role == RoleLeader {
		t.Fatal("isolated leader did not step down")
	}
	for _, pid := range pids {
		r, ok := nw.nodes[l].results[pid]
		if !ok || r.Outcome != OutcomeUnknown {
			t.Fatalf("proposal %d: %+v (present=%v), want OutcomeUnknown", pid, r, ok)
		}
		if !r.Durability.LeaderDurable || r.Durability.Committed {
			t.Fatalf("proposal %d durability %+v", pid, r.Durability)
		}
	}
	rr, ok := nw.nodes[l].reads[99]
	if !ok || (!errors.Is(rr.Err, ErrLeadershipLost) && !errors.Is(rr.Err, ErrReadTimeout)) {
		t.Fatalf("read: %+v (present=%v)", rr, ok)
	}
}

// TestHigherTermGivesUnknown: a leader that learns of a higher term answers
// its pending writes with OutcomeUnknown and its reads with ErrLeadershipLost.
func TestHigherTermGivesUnknown(t *testing.T) {
	nw := newNet(t, 3, 24)
	l := nw.waitLeader(50)
	f := others(nw, l)[0]
	c := nw.nodes[l].core
	pid := nw.mustPropose(l, "a", majority())
	if err := c.Read(ReadRequest{ID: 5, Level: ReadIndexOnly}); err != nil {
		t.Fatal(err)
	}
	if err := c.Step(Message{Type: MsgAppResp, From: f, To: l, Term: c.term + 1}); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Results) != 1 || rd.Results[0].ID != pid || rd.Results[0].Outcome != OutcomeUnknown {
		t.Fatalf("results %+v", rd.Results)
	}
	if len(rd.Reads) != 1 || !errors.Is(rd.Reads[0].Err, ErrLeadershipLost) {
		t.Fatalf("reads %+v", rd.Reads)
	}
}
