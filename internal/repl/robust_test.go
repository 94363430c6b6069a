package repl

import (
	"errors"
	"math/rand"
	"reflect"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

func TestValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.ID = "n1"
		c.Peers = []Peer{{ID: "n1", Priority: 1}, {ID: "n2", Priority: 1}, {ID: "n3", Priority: 1}}
		c.Rand = rand.New(rand.NewSource(1))
		return c
	}
	if c := base(); c.Validate() != nil {
		t.Fatalf("default config invalid: %v", c.Validate())
	}
	tests := []struct {
		field string
		mod   func(*Config)
	}{
		{"ID", func(c *Config) { c.ID = "" }},
		{"ID", func(c *Config) { c.ID = "n9" }},
		{"Peers", func(c *Config) { c.Peers = nil }},
		{"Peers", func(c *Config) { c.Peers = append(c.Peers, Peer{ID: "n2"}) }},
		{"Peers", func(c *Config) { c.Peers[1].ID = "" }},
		{"Peers", func(c *Config) { c.Peers[1].Priority = -1 }},
		{"Peers", func(c *Config) {
			for i := range c.Peers {
				c.Peers[i].Priority = 0
			}
		}},
		{"HeartbeatTicks", func(c *Config) { c.HeartbeatTicks = 0 }},
		{"ElectionTicks", func(c *Config) { c.ElectionTicks = c.HeartbeatTicks }},
		{"LeaseTicks", func(c *Config) { c.LeaseTicks = c.ElectionTicks - c.DriftTicks }},
		{"LeaseTicks", func(c *Config) { c.LeaseTicks = -1 }},
		{"DriftTicks", func(c *Config) { c.DriftTicks = -1 }},
		{"MaxMsgBytes", func(c *Config) { c.MaxMsgBytes = 0 }},
		{"MaxInflightMsgs", func(c *Config) { c.MaxInflightMsgs = 0 }},
		{"DefaultProposalTimeoutTicks", func(c *Config) { c.DefaultProposalTimeoutTicks = 0 }},
		{"MaxPendingProposals", func(c *Config) { c.MaxPendingProposals = 0 }},
		{"MaxApplyBytes", func(c *Config) { c.MaxApplyBytes = -1 }},
		{"Rand", func(c *Config) { c.Rand = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			c := base()
			tt.mod(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			if want := ": " + tt.field + ":"; !contains(err.Error(), want) {
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
			if _, err := New(c, NewMemoryStorage()); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New accepted the config: %v", err)
			}
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// snapshot captures the observable state of a core.
type coreState struct {
	St      Status
	Last    uint64
	HasRd   bool
	NMsgs   int
	NDisc   int
	NRes    int
	NReads  int
	Entries []entry.Entry
}

func snap(c *Core) coreState {
	return coreState{St: c.Status(), Last: c.log.lastIndex(), HasRd: c.HasReady(), NMsgs: len(c.msgs),
		NDisc: len(c.discarded), NRes: len(c.results), NReads: len(c.readResults), Entries: c.entriesForTest()}
}

func TestStepRejectsMalformed(t *testing.T) {
	nw := newNet(t, 3, 50)
	l := nw.waitLeader(50)
	f := others(nw, l)[0]
	for _, on := range []NodeID{l, f} {
		c := nw.nodes[on].core
		peer := others(nw, on)[0]
		term := c.term
		tests := []struct {
			name string
			m    Message
			want error
		}{
			{"zero type", Message{From: peer, To: on, Term: term}, ErrMalformedMessage},
			{"unknown type", Message{Type: 200, From: peer, To: on, Term: term}, ErrMalformedMessage},
			{"answer from an unknown peer", Message{Type: MsgAppResp, From: "x", To: on, Term: term}, ErrUnknownPeer},
			{"empty from", Message{Type: MsgHeartbeat, To: on, Term: term}, ErrUnknownPeer},
			{"from self", Message{Type: MsgHeartbeat, From: on, To: on, Term: term}, ErrMalformedMessage},
			{"wrong to", Message{Type: MsgHeartbeat, From: peer, To: "n9", Term: term}, ErrMalformedMessage},
			{"term 0", Message{Type: MsgApp, From: peer, To: on}, ErrMalformedMessage},
			{"entries on heartbeat", Message{Type: MsgHeartbeat, From: peer, To: on, Term: term + 1,
				Entries: []entry.Entry{{Term: 1, Index: 1, Kind: entry.KindNoop}}}, ErrMalformedMessage},
			{"gap in entries", Message{Type: MsgApp, From: peer, To: on, Term: term + 1, Index: 0,
				Entries: []entry.Entry{{Term: 1, Index: 2, Kind: entry.KindNoop}}}, ErrMalformedMessage},
			{"entry term above message term", Message{Type: MsgApp, From: peer, To: on, Term: term + 1, Index: 0,
				Entries: []entry.Entry{{Term: term + 5, Index: 1, Kind: entry.KindNoop}}}, ErrMalformedMessage},
			{"bad kind", Message{Type: MsgApp, From: peer, To: on, Term: term + 1, Index: 0,
				Entries: []entry.Entry{{Term: 1, Index: 1, Kind: 77}}}, ErrMalformedMessage},
			{"index overflow", Message{Type: MsgApp, From: peer, To: on, Term: term + 1, Index: ^uint64(0),
				Entries: []entry.Entry{{Term: 1, Index: 0, Kind: entry.KindNoop}}}, ErrMalformedMessage},
			{"vote log term above term", Message{Type: MsgVote, From: peer, To: on, Term: term + 1, LogTerm: term + 2}, ErrMalformedMessage},
			{"vote unknown context", Message{Type: MsgVote, From: peer, To: on, Term: term + 1, Context: 7}, ErrMalformedMessage},
		}
		if on == l {
			tests = append(tests, struct {
				name string
				m    Message
				want error
			}{"second leader same term", Message{Type: MsgHeartbeat, From: peer, To: on, Term: term}, ErrMalformedMessage})
		}
		for _, tt := range tests {
			t.Run(string(on)+"/"+tt.name, func(t *testing.T) {
				before := snap(c)
				err := c.Step(tt.m)
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				if after := snap(c); !reflect.DeepEqual(before, after) {
					t.Fatalf("state changed:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}
	}
}

// TestStepNeverPanics feeds random, mostly nonsensical messages to cores in
// every role. Replay a failure with the printed seed.
func TestStepNeverPanics(t *testing.T) {
	const seed = 60
	for s := int64(seed); s < seed+4; s++ {
		rng := rand.New(rand.NewSource(s))
		nw := newNet(t, 3, s)
		nw.waitLeader(50)
		ids := append([]NodeID{"", "zz"}, nw.ids...)
		for i := range 3000 {
			to := nw.ids[rng.Intn(len(nw.ids))]
			c := nw.nodes[to].core
			m := Message{
				Type:      MsgType(rng.Intn(12)),
				From:      ids[rng.Intn(len(ids))],
				To:        to,
				Term:      c.term + uint64(rng.Intn(3)) - 1,
				LogTerm:   uint64(rng.Intn(int(c.term) + 2)),
				Index:     uint64(rng.Intn(int(c.log.lastIndex()) + 3)),
				Commit:    uint64(rng.Intn(int(c.log.lastIndex()) + 3)),
				Reject:    rng.Intn(2) == 0,
				HintTerm:  uint64(rng.Intn(int(c.term) + 2)),
				HintIndex: uint64(rng.Intn(int(c.log.lastIndex()) + 3)),
				Context:   uint64(rng.Intn(3)),
			}
			if rng.Intn(4) == 0 {
				n := rng.Intn(4)
				for j := range n {
					m.Entries = append(m.Entries, entry.Entry{Term: m.LogTerm + uint64(rng.Intn(2)),
						Index: m.Index + 1 + uint64(j), Kind: entry.Kind(rng.Intn(5))})
				}
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("seed %d step %d: panic on %+v: %v (replay: go test -run TestStepNeverPanics ./internal/repl/)", s, i, m, r)
					}
				}()
				_ = c.Step(m)
				if rng.Intn(10) == 0 {
					c.Tick()
				}
			}()
			// Keep the Ready loop going so that state keeps evolving.
			nw.deliverAllLenient()
		}
	}
}

// deliverAllLenient is deliverAll without failing on Step errors or on
// divergent applies (random messages break the protocol's assumptions).
func (nw *tnet) deliverAllLenient() {
	for range 1000 {
		moved := false
		for _, id := range nw.ids {
			nd := nw.nodes[id]
			for nd.core.HasReady() {
				rd := nd.core.Ready()
				_ = nd.st.Persist(&rd)
				nw.queue = append(nw.queue, rd.Messages...)
				nd.core.Advance(rd)
				moved = true
			}
		}
		q := nw.queue
		nw.queue = nil
		for _, m := range q {
			if to := nw.nodes[m.To]; to != nil {
				_ = to.core.Step(m)
				moved = true
			}
		}
		if !moved {
			return
		}
	}
}

func TestMemoryStorage(t *testing.T) {
	st := NewMemoryStorage()
	if st.FirstIndex() != 1 || st.LastIndex() != 0 {
		t.Fatalf("empty storage: first %d last %d", st.FirstIndex(), st.LastIndex())
	}
	mustAppend(t, st, ents(1, 1, 2, 2, 3)...)
	if err := st.Append([]entry.Entry{{Term: 3, Index: 9}}); err == nil {
		t.Fatal("gap accepted")
	}
	got, err := st.Entries(2, 5, 0)
	if err != nil || len(got) != 3 || got[0].Index != 2 {
		t.Fatalf("Entries(2,5): %v %v", got, err)
	}
	got, _ = st.Entries(1, 6, 2*entry.HeaderSize)
	if len(got) != 2 {
		t.Fatalf("size-limited Entries returned %d", len(got))
	}
	got, _ = st.Entries(1, 6, 1)
	if len(got) != 1 {
		t.Fatalf("Entries must return at least one entry, got %d", len(got))
	}
	old, _ := st.Entries(3, 6, 0)
	mustAppend(t, st, entry.Entry{Term: 4, Index: 3, Kind: entry.KindNoop})
	if st.LastIndex() != 3 {
		t.Fatalf("after truncating append: last %d", st.LastIndex())
	}
	if old[0].Term != 2 {
		t.Fatal("truncation overwrote a slice handed out earlier")
	}
	if tm, _ := st.Term(3); tm != 4 {
		t.Fatalf("term(3) = %d", tm)
	}
	if err := st.Compact(2); err != nil {
		t.Fatal(err)
	}
	if st.FirstIndex() != 3 {
		t.Fatalf("first after compact %d", st.FirstIndex())
	}
	if tm, err := st.Term(2); err != nil || tm != 1 {
		t.Fatalf("term at compaction point: %d %v", tm, err)
	}
	if _, err := st.Term(1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("term below compaction: %v", err)
	}
	if _, err := st.Entries(2, 4, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("entries below compaction: %v", err)
	}
}

// TestRestartRestoresState rebuilds a core from its storage alone.
func TestRestartRestoresState(t *testing.T) {
	st := NewMemoryStorage()
	mustAppend(t, st, ents(1, 1, 2)...)
	st.SetHardState(HardState{Term: 2, Vote: "n2", Commit: 2})
	c := mustCore(t, "n1", st, 3)
	s := c.Status()
	if s.Term != 2 || s.Vote != "n2" || s.Commit != 2 || s.LastIndex != 3 || s.StableIndex != 3 || s.Role != RoleFollower {
		t.Fatalf("restored status %+v", s)
	}
	rd := c.Ready()
	if len(rd.CommittedEntries) != 2 {
		t.Fatalf("committed entries to re-apply: %d", len(rd.CommittedEntries))
	}
	// Applied beyond the log is refused.
	cfg := c.cfg
	cfg.Applied = 9
	if _, err := New(cfg, st); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Applied beyond log: %v", err)
	}
}

func TestStrings(t *testing.T) {
	for m, want := range map[AckMode]string{AckAsync: "async", AckSemiSync: "semi-sync", AckSync: "sync", AckMajority: "majority"} {
		if m.String() != want {
			t.Fatalf("%d: %q, want %q", m, m.String(), want)
		}
	}
	if RoleLeader.String() != "leader" || MsgApp.String() != "App" || OutcomeUnknown.String() != "unknown" || Role(9).String() != "role(9)" {
		t.Fatal("String methods")
	}
}

// TestTermAtTheCeilingIsRefused: one heartbeat with term 2^64-1 (an
// outsider's, or a member's with a bug) used to be adopted by every node,
// after which no node could start an election at the next term, even after
// restarts. Terms at the ceiling, and jumps far above the local term, are
// refused and change nothing; a plausible jump is adopted and the cluster
// still elects after it.
func TestTermAtTheCeilingIsRefused(t *testing.T) {
	nw := newNet(t, 3, 31)
	l := nw.waitLeader(60)
	nw.mustPropose(l, "a", majority())
	nw.tick(2)
	f := others(nw, l)[0]
	before := nw.nodes[f].core.term
	for _, term := range []uint64{^uint64(0), MaxTerm, MaxTerm - 2, before + MaxTermJump + 1} {
		err := nw.nodes[f].core.Step(Message{Type: MsgHeartbeat, From: l, To: f, Term: term})
		if !errors.Is(err, ErrMalformedMessage) {
			t.Fatalf("heartbeat at term %d: err %v, want ErrMalformedMessage", term, err)
		}
	}
	if got := nw.nodes[f].core.term; got != before {
		t.Fatalf("term moved from %d to %d", before, got)
	}
	jump := before + MaxTermJump/2
	nw.crash(l)
	if err := nw.nodes[f].core.Step(Message{Type: MsgHeartbeat, From: l, To: f, Term: jump}); err != nil {
		t.Fatal(err)
	}
	nl := nw.waitLeader(200)
	if nl == None || nw.nodes[nl].core.term <= jump {
		t.Fatalf("leader %q at term %d, want one above %d", nl, nw.nodes[nl].core.term, jump)
	}
	nw.mustPropose(nl, "b", majority())
	nw.tick(3)
	nw.restart(l)
	nw.tick(30)
	nw.checkConverged()
}

// TestAckBeyondTheLeadersLogIsAViolation: a follower (or a forger speaking as
// one) that acknowledges an index the leader never sent gets an error, and
// the acknowledgement counts toward nothing.
func TestAckBeyondTheLeadersLogIsAViolation(t *testing.T) {
	nw := newNet(t, 3, 32)
	l := nw.waitLeader(60)
	nw.tick(2)
	lc := nw.nodes[l].core
	f := others(nw, l)[0]
	last, match := lc.log.lastIndex(), lc.prs[f].match
	// An async write the followers have not seen yet (the links are cut).
	for _, o := range others(nw, l) {
		nw.cut[[2]NodeID{l, o}] = true
	}
	id, err := nw.propose(l, "x", Ack{Mode: AckSync})
	if err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	err = lc.Step(Message{Type: MsgAppResp, From: f, To: l, Term: lc.term, Index: last + 5})
	if !errors.Is(err, ErrMalformedMessage) {
		t.Fatalf("ack beyond the log: err %v, want ErrMalformedMessage", err)
	}
	if got := lc.prs[f].match; got != match {
		t.Fatalf("match moved from %d to %d", match, got)
	}
	nw.deliverAll()
	if r, ok := nw.nodes[l].results[id]; ok {
		t.Fatalf("sync write finished on a forged ack: %+v", r)
	}
}
