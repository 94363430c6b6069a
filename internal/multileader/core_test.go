package multileader

import (
	"errors"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

func TestLWWConcurrentWrites(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b", "c")
	tc.tick(1)
	tc.queue = nil // the start-up heartbeats: let the writes race first
	tc.propose("a", Write{Key: "k", Value: []byte("from a")})
	tc.nodes["b"].core.Tick(tc.now + 5) // b's clock is later
	tc.propose("b", Write{Key: "k", Value: []byte("from b")})
	tc.deliverAll(nil)
	tc.tick(30)
	st := tc.mustConverge("k")
	if live := st.Live(); len(live) != 1 || string(live[0].Value) != "from b" {
		t.Fatalf("winner %v, want b's write (later HLC)", st.Reg)
	}
	var found bool
	for _, id := range []string{"a", "b", "c"} {
		for _, c := range tc.nodes[id].confl {
			if c.Key == "k" && c.Reason == ReasonLWW && c.Winner.Node == "b" && len(c.Losers) == 1 && c.Losers[0].Node == "a" && len(c.Versions) == 2 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no LWW conflict record naming both versions: %+v", tc.nodes["c"].confl)
	}
}

// TestCausalWriteOutranksWhatItSaw: a write that read a value from a node
// whose clock is far ahead (beyond MaxOffset, so not followed) still wins
// under LWW, because it is timed above its context's MaxTime.
func TestCausalWriteOutranksWhatItSaw(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b")
	tc.nodes["a"].core.Tick(tc.now + 10_000_000_000) // a is 10 s ahead
	tc.propose("a", Write{Key: "k", Value: []byte("old")})
	tc.tick(10)
	if tc.nodes["b"].core.Stats().ClockClamps == 0 {
		t.Fatal("b followed a clock 10 s ahead")
	}
	tok := tc.nodes["b"].store["k"].Token("test", "k")
	tc.propose("b", Write{Key: "k", Value: []byte("new"), Context: tok})
	tc.tick(10)
	st := tc.mustConverge("k")
	if live := st.Live(); len(live) != 1 || string(live[0].Value) != "new" {
		t.Fatalf("got %v, want the causally later write", st.Reg)
	}
	for _, c := range tc.nodes["a"].confl {
		t.Fatalf("a causal overwrite recorded as a conflict: %+v", c)
	}
}

func TestSiblingsAndContext(t *testing.T) {
	tc := newCluster(t, Siblings, "a", "b")
	tc.propose("a", Write{Key: "k", Value: []byte("x")})
	tc.propose("b", Write{Key: "k", Value: []byte("y")})
	tc.tick(10)
	st := tc.mustConverge("k")
	if len(st.Live()) != 2 {
		t.Fatalf("want two siblings, got %v", st.Reg)
	}
	tc.propose("a", Write{Key: "k", Value: []byte("z"), Context: st.Token("test", "k")})
	tc.tick(10)
	st = tc.mustConverge("k")
	if live := st.Live(); len(live) != 1 || string(live[0].Value) != "z" {
		t.Fatalf("want z only, got %v", st.Reg)
	}
}

func TestSiblingLimit(t *testing.T) {
	tc := newCluster(t, Siblings, "a", "b", "c")
	for i, id := range []string{"a", "b", "c", "a"} {
		tc.propose(id, Write{Key: "k", Value: []byte{byte('0' + i)}})
		tc.tick(10)
	}
	st := tc.mustConverge("k")
	if len(st.Reg.Siblings) != 3 {
		t.Fatalf("want MaxSiblings=3 siblings, got %v", st.Reg)
	}
	var limited bool
	for _, c := range tc.nodes["a"].confl {
		limited = limited || (c.Reason == ReasonSiblingsLimit && len(c.Losers) == 1)
	}
	if !limited {
		t.Fatalf("no sibling-limit record: %+v", tc.nodes["a"].confl)
	}
}

func TestCounterConcurrentIncrementsAndDelete(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b", "c")
	tc.propose("a", Write{Key: "n", Incr: true, IncrBy: 5})
	tc.propose("b", Write{Key: "n", Incr: true, IncrBy: -2})
	tc.propose("c", Write{Key: "n", Incr: true, IncrBy: 10})
	tc.tick(10)
	if v := tc.mustConverge("n").Ctr.Value(); v != 13 {
		t.Fatalf("counter %d, want 13", v)
	}
	// A delete at a and a concurrent increment at b: the increment survives.
	tc.propose("a", Write{Key: "n", Delete: true})
	tc.propose("b", Write{Key: "n", Incr: true, IncrBy: 4})
	tc.tick(10)
	if v := tc.mustConverge("n").Ctr.Value(); v != 4 {
		t.Fatalf("counter after observed reset %d, want 4", v)
	}
}

func TestGapWaitsDuplicatesIgnored(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b")
	tc.tick(2)
	for i := range 3 {
		tc.propose("a", Write{Key: "k", Value: []byte{byte(i)}})
	}
	var msgs []Message
	for _, m := range tc.queue {
		if m.Type == MsgEntries && m.To == "b" {
			msgs = append(msgs, m)
		}
	}
	tc.queue = nil
	if len(msgs) != 3 {
		t.Fatalf("want 3 entry messages, got %d", len(msgs))
	}
	b := tc.nodes["b"].core
	for _, m := range []Message{msgs[2], msgs[1]} { // ahead of a gap: held
		if err := b.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	if b.Applied("a") != 0 || b.Stats().Buffered != 2 {
		t.Fatalf("applied %d buffered %d, want 0 and 2", b.Applied("a"), b.Stats().Buffered)
	}
	tc.flush("b")
	var resend bool
	for _, m := range tc.queue {
		resend = resend || (m.Type == MsgResend && m.Seq == 0)
	}
	if !resend {
		t.Fatalf("no resend request from 0: %+v", tc.queue)
	}
	tc.queue = nil
	for _, m := range []Message{msgs[0], msgs[0], msgs[1]} {
		if err := b.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	if b.Applied("a") != 3 || b.Stats().Duplicates != 2 {
		t.Fatalf("applied %d duplicates %d, want 3 and 2", b.Applied("a"), b.Stats().Duplicates)
	}
}

// TestRestartResumes: a receiver that crashes resumes from its persisted
// position; an origin that crashes re-sends what its peers lack; a write
// persisted but not applied before a crash is replayed.
func TestRestartResumes(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b")
	tc.propose("a", Write{Key: "k1", Value: []byte("1")})
	tc.tick(5)
	// Entries 2, 3 are lost on the way; b crashes and restarts.
	tc.propose("a", Write{Key: "k2", Value: []byte("2")})
	tc.propose("a", Write{Key: "k3", Value: []byte("3")})
	tc.deliverAll(func(m Message) bool { return m.To == "b" })
	tc.crash("b")
	if got := tc.nodes["b"].core.Applied("a"); got != 1 {
		t.Fatalf("b restarted at %d, want 1", got)
	}
	tc.crash("a")
	tc.tick(60)
	for _, k := range []string{"k1", "k2", "k3"} {
		if len(tc.mustConverge(k).Live()) != 1 {
			t.Fatalf("%s missing", k)
		}
	}
	// Persisted in the stream, not in the store: replayed on restart.
	a := tc.nodes["a"]
	if _, err := a.core.Propose(Write{Key: "k4", Value: []byte("4")}); err != nil {
		t.Fatal(err)
	}
	rd, _ := a.core.Ready()
	a.stream = append(a.stream, rd.Entries...)
	tc.crash("a")
	tc.flush("a")
	tc.queue = nil
	if len(a.store["k4"].Live()) != 1 || a.applied["a"] != 4 {
		t.Fatalf("k4 not replayed: %v, applied %d", a.store["k4"].Reg, a.applied["a"])
	}
	tc.tick(60)
	tc.mustConverge("k4")
}

func TestAckModes(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b", "c")
	tc.tick(10)
	id := tc.propose("a", Write{Key: "k", Value: []byte("v"), Ack: AckAll})
	if len(tc.nodes["a"].results) != 0 {
		t.Fatal("AckAll answered before peers applied it")
	}
	tc.deliverAll(nil)
	rs := tc.nodes["a"].results
	if len(rs) != 1 || rs[0].ID != id || rs[0].Peers != 2 || rs[0].Err != nil {
		t.Fatalf("results %+v", rs)
	}
	// A partitioned peer: AckAll times out, AckPeers 1 succeeds.
	tc.nodes["a"].results = nil
	cut := func(m Message) bool { return m.To == "c" || m.From == "c" }
	all := tc.propose("a", Write{Key: "k", Value: []byte("w"), Ack: AckAll, TimeoutTicks: 5})
	one := tc.propose("a", Write{Key: "k", Value: []byte("x"), Ack: AckPeers, AckPeers: 1})
	for range 6 {
		tc.now += 1_000_000
		for _, n := range []string{"a", "b", "c"} {
			tc.nodes[n].core.Tick(tc.now)
			tc.flush(n)
		}
		tc.deliverAll(cut)
	}
	got := map[uint64]error{}
	for _, r := range tc.nodes["a"].results {
		got[r.ID] = r.Err
	}
	if err, ok := got[all]; !ok || !errors.Is(err, ErrTimeout) {
		t.Fatalf("AckAll: %v %v", ok, err)
	}
	if err, ok := got[one]; !ok || err != nil {
		t.Fatalf("AckPeers(1): %v %v", ok, err)
	}
	if _, err := tc.nodes["a"].core.Propose(Write{Key: "k", Ack: AckPeers, AckPeers: 3}); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("AckPeers 3 of 2: %v", err)
	}
}

func TestRejects(t *testing.T) {
	tc := newCluster(t, Siblings, "a", "b")
	a := tc.nodes["a"].core
	good := Entry{Origin: "b", Seq: 1, Key: "k", Op: OpPut, Dot: vclock.Dot{Node: "b", Counter: 1}, Time: hlc.Timestamp{Wall: 1}}
	bad := func(f func(*Entry)) Message {
		e := good
		f(&e)
		return Message{Type: MsgEntries, From: "b", To: "a", Entries: []Entry{e}}
	}
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"unknown peer", Message{Type: MsgHeartbeat, From: "z", To: "a"}, ErrUnknownPeer},
		{"wrong addressee", Message{Type: MsgHeartbeat, From: "b", To: "b"}, ErrMalformed},
		{"unknown type", Message{Type: 99, From: "b", To: "a"}, ErrMalformed},
		{"ack beyond stream", Message{Type: MsgAck, From: "b", To: "a", Seq: 7}, ErrMalformed},
		{"foreign origin", bad(func(e *Entry) { e.Origin = "a" }), ErrMalformed},
		{"dot of another node", bad(func(e *Entry) { e.Dot.Node = "a" }), ErrMalformed},
		{"dot in own context", bad(func(e *Entry) { e.Context = vclock.Vector{{Node: "b", Counter: 1}} }), ErrMalformed},
		{"empty key", bad(func(e *Entry) { e.Key = "" }), ErrMalformed},
		{"delete with value", bad(func(e *Entry) { e.Op, e.Value = OpDelete, []byte("x") }), ErrMalformed},
		{"seq 0", bad(func(e *Entry) { e.Seq = 0 }), ErrMalformed},
		{"bad op", bad(func(e *Entry) { e.Op = 9 }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := a.Step(tt.m); !errors.Is(err, tt.want) {
				t.Fatalf("Step = %v, want %v", err, tt.want)
			}
			if a.Applied("b") != 0 || a.HasReady() {
				t.Fatal("a rejected message changed state")
			}
		})
	}
	foreign := vclock.EncodeToken("other", "k", vclock.Context{})
	if _, err := a.Propose(Write{Key: "k", Context: foreign}); !errors.Is(err, vclock.ErrForeignToken) {
		t.Fatalf("foreign token: %v", err)
	}
	ahead := vclock.EncodeToken("test", "k", vclock.Context{Vector: vclock.Vector{{Node: "a", Counter: 5}}})
	if _, err := a.Propose(Write{Key: "k", Context: ahead}); !errors.Is(err, ErrContextAhead) {
		t.Fatalf("context ahead: %v", err)
	}
	if _, err := a.Propose(Write{Key: "k", Context: "garbage"}); !errors.Is(err, vclock.ErrBadToken) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestPeersStatus(t *testing.T) {
	tc := newCluster(t, LWW, "a", "b")
	a := tc.nodes["a"].core
	if ps := a.Peers(); len(ps) != 1 || ps[0].ID != "b" || ps[0].HeardTicks != -1 || ps[0].Known != 0 {
		t.Fatalf("before any message: %+v", ps)
	}
	tc.propose("b", Write{Key: "k", Value: []byte("v")})
	tc.propose("b", Write{Key: "k2", Value: []byte("v")})
	tc.queue = nil // lost: a hears only the heartbeat below
	// a hears a heartbeat naming the end of b's stream before any entry.
	if err := a.Step(Message{Type: MsgHeartbeat, From: "b", To: "a", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if ps := a.Peers()[0]; ps.Known != 2 || ps.Applied != 0 || ps.HeardTicks != 0 {
		t.Fatalf("after b's heartbeat: %+v", ps)
	}
	a.Tick(tc.now)
	a.Tick(tc.now)
	if ps := a.Peers()[0]; ps.BehindTicks != 2 || ps.HeardTicks != 2 {
		t.Fatalf("two ticks behind: %+v", ps)
	}
	tc.flush("a")
	tc.queue = nil
	tc.tick(60) // b retransmits what a did not ack
	if ps := a.Peers()[0]; ps.Applied != 2 || ps.Known != 2 || ps.BehindTicks != 0 {
		t.Fatalf("after settling: %+v", ps)
	}
	if ps := tc.nodes["b"].core.Peers()[0]; ps.Acked != 2 || ps.ID != "a" {
		t.Fatalf("b's view of a's acks: %+v", ps)
	}
}
