package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/transport"
)

func incr(key string, by int64, idem string) *command.Command {
	return &command.Command{Op: command.OpIncr, Key: []byte(key), Delta: by, IdemKey: []byte(idem)}
}

// TestCommandsOnLeaderAndFollower: read-modify-write commands apply once each,
// in log order, whether sent to the leader or forwarded by a follower, under
// every ack mode, and report their results and failures.
func TestCommandsOnLeaderAndFollower(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	ctx := ctxT(t)
	acks := []api.Ack{{Mode: api.AckAsync}, {Mode: api.AckMajority}, {Mode: api.AckSemiSync, Replicas: 1}, {Mode: api.AckSync}}
	var last int64
	for i := range 8 {
		n := c.nodes[li]
		if i%2 == 1 {
			n = c.nodes[fi]
		}
		res, err := n.Exec(ctx, incr("ctr", 3, ""), api.WriteOptions{Ack: acks[i%len(acks)]})
		if err != nil {
			t.Fatalf("incr %d on %s: %v", i, n.cfg.ID, err)
		}
		if res.Cmd.Int != last+3 || !res.Committed || res.Cmd.Version != res.Index {
			t.Fatalf("incr %d on %s: %+v (previous value %d)", i, n.cfg.ID, res, last)
		}
		last = res.Cmd.Int
	}
	for i := range c.nodes {
		c.waitStale(i, "ctr", "24")
	}
	// Failures carry their result and change nothing, forwarded or not.
	mustPut(t, c.nodes[li], "s", "text", api.Ack{Mode: api.AckMajority})
	for _, n := range []*Node{c.nodes[li], c.nodes[fi]} {
		if _, err := n.Exec(ctx, incr("s", 1, ""), api.WriteOptions{Default: true}); !errors.Is(err, api.ErrNotInteger) {
			t.Fatalf("incr of a string on %s: %v", n.cfg.ID, err)
		}
		cas := &command.Command{Op: command.OpSet, Key: []byte("s"), Value: []byte("x"), Cond: command.CondIndex, IfIndex: 1}
		res, err := n.Exec(ctx, cas, api.WriteOptions{Default: true})
		if !errors.Is(err, api.ErrConditionFailed) || res.Cmd.Version == 0 {
			t.Fatalf("stale compare-and-set on %s: %+v %v", n.cfg.ID, res, err)
		}
		cas.IfIndex = res.Cmd.Version
		if res, err := n.Exec(ctx, cas, api.WriteOptions{Default: true}); err != nil || !res.Cmd.Applied {
			t.Fatalf("compare-and-set at the current version on %s: %+v %v", n.cfg.ID, res, err)
		}
	}
	mset := &command.Command{Op: command.OpMSet, Keys: [][]byte{[]byte("a"), []byte("b")}, Values: [][]byte{[]byte("1"), []byte("2")}}
	if _, err := c.nodes[fi].Exec(ctx, mset, api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	c.waitStale(li, "a", "1")
	c.waitStale(li, "b", "2")
	if _, err := c.nodes[fi].Exec(ctx, &command.Command{Op: 99, Key: []byte("k")}, api.WriteOptions{Default: true}); !errors.Is(err, api.ErrBadCommand) {
		t.Fatalf("a malformed command: %v", err)
	}
}

// TestIdempotentRetryAppliesOnce: a write retried with its idempotency key
// returns the first result and applies nothing, on any node and after a
// failover.
func TestIdempotentRetryAppliesOnce(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	ctx := ctxT(t)
	first, err := c.nodes[fi].Exec(ctx, incr("n", 5, "req-1"), api.WriteOptions{Default: true})
	if err != nil || first.Cmd.Int != 5 || first.Cmd.Duplicate {
		t.Fatalf("first: %+v %v", first, err)
	}
	for _, n := range []*Node{c.nodes[li], c.nodes[fi]} {
		again, err := n.Exec(ctx, incr("n", 5, "req-1"), api.WriteOptions{Default: true})
		if err != nil || !again.Cmd.Duplicate || again.Cmd.Int != 5 || again.Index != first.Index || again.Term != first.Term {
			t.Fatalf("retry on %s: %+v %v, want the first result (%+v)", n.cfg.ID, again, err, first)
		}
	}
	// The table is replicated state: the next leader has it.
	for i := range c.nodes {
		c.waitStale(i, "n", "5")
	}
	c.stop(li)
	nl := c.leader()
	again, err := c.nodes[nl].Exec(ctx, incr("n", 5, "req-1"), api.WriteOptions{Default: true})
	if err != nil || !again.Cmd.Duplicate || again.Cmd.Int != 5 {
		t.Fatalf("retry on the new leader: %+v %v", again, err)
	}
	other, err := c.nodes[nl].Exec(ctx, incr("n", 5, "req-2"), api.WriteOptions{Default: true})
	if err != nil || other.Cmd.Int != 10 {
		t.Fatalf("another request: %+v %v", other, err)
	}
	if n, err := c.nodes[nl].store.IdempotencyRecords(); err != nil || n != 2 {
		t.Fatalf("idempotency records on the new leader: %d %v, want 2", n, err)
	}
}

// TestSessionReadsSeeOwnWritesAndNeverGoBack: with its token, a session
// reads its own async write on any node, and a read on one node followed by
// one on another never goes back.
func TestSessionReadsSeeOwnWritesAndNeverGoBack(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	ctx := ctxT(t)
	var tok api.Token
	for i := range 30 {
		v := strconv.Itoa(i)
		w, err := c.nodes[li].Put(ctx, []byte("k"), []byte(v), api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}})
		if err != nil {
			t.Fatal(err)
		}
		tok = tok.Max(w.Token())
		n := c.nodes[i%3]
		r, err := n.Read(ctx, []byte("k"), api.ReadOptions{Consistency: api.Session, Token: tok})
		if err != nil || string(r.Value) != v {
			t.Fatalf("session read %d on %s: %q %v, want %q", i, n.cfg.ID, r.Value, err, v)
		}
		if !r.Token.Covers(tok) {
			t.Fatalf("reply token %v does not cover %v", r.Token, tok)
		}
		tok = r.Token
		// The next read, elsewhere, with the reply's token: same or newer.
		m := c.nodes[(i+1)%3]
		r2, err := m.Read(ctx, []byte("k"), api.ReadOptions{Consistency: api.Session, Token: tok})
		if err != nil || string(r2.Value) != v {
			t.Fatalf("monotonic read %d on %s: %q %v, want %q", i, m.cfg.ID, r2.Value, err, v)
		}
	}
	// Every reply carries a token, whatever its level.
	for _, lvl := range []api.Consistency{api.Stale, api.Linearizable} {
		r, err := c.nodes[c.follower(li)].Read(ctx, []byte("k"), api.ReadOptions{Consistency: lvl})
		if err != nil || r.Token.IsZero() {
			t.Fatalf("%v read: %+v %v", lvl, r, err)
		}
	}
	if _, err := api.ParseToken(tok.String()); err != nil {
		t.Fatal(err)
	}
}

// TestSessionReadOfRolledBackWrite: a session whose async write was
// discarded in a failover is told so, on any node.
func TestSessionReadOfRolledBackWrite(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	old := c.nodes[li]
	ctx := ctxT(t)
	mustPut(t, old, "k", "kept", api.Ack{Mode: api.AckMajority})
	c.net.Isolate(transport.NodeID(old.cfg.ID))
	lost, err := old.Put(ctx, []byte("k"), []byte("lost"), api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}})
	if err != nil || lost.Committed {
		t.Fatalf("async put on the isolated leader: %+v %v", lost, err)
	}
	nl := c.newLeaderBesides(li)
	// Before the heal: the new leader settles it from its log.
	if _, err := nl.Read(ctx, []byte("k"), api.ReadOptions{Consistency: api.Session, Token: lost.Token()}); !errors.Is(err, api.ErrRolledBack) {
		t.Fatalf("session read on the new leader: %v, want ErrRolledBack", err)
	}
	mustPut(t, nl, "k2", "v", api.Ack{Mode: api.AckMajority})
	mustPut(t, nl, "k3", "v", api.Ack{Mode: api.AckMajority})
	c.net.Heal()
	for i := range c.nodes {
		c.waitStale(i, "k3", "v")
	}
	for _, n := range c.nodes {
		_, err := n.Read(ctx, []byte("k"), api.ReadOptions{Consistency: api.Session, Token: lost.Token()})
		if !errors.Is(err, api.ErrRolledBack) {
			t.Fatalf("session read on %s: %v, want ErrRolledBack", n.cfg.ID, err)
		}
		// A write of the same session is refused too (on the leader, or
		// forwarded to it), and writes nothing: its token would cover the
		// lost one and hide the loss from the session's next read.
		res, err := n.Put(ctx, []byte("k4"), []byte("x"), api.WriteOptions{Default: true, Session: lost.Token()})
		if !errors.Is(err, api.ErrRolledBack) {
			t.Fatalf("session write on %s: %+v %v, want ErrRolledBack", n.cfg.ID, res, err)
		}
		if _, err := n.Exec(ctx, incr("c", 1, ""), api.WriteOptions{Default: true, Session: lost.Token()}); !errors.Is(err, api.ErrRolledBack) {
			t.Fatalf("session command on %s: %v, want ErrRolledBack", n.cfg.ID, err)
		}
	}
	if r, err := nl.Get(ctx, []byte("k4"), api.Linearizable); err != nil || r.Found {
		t.Fatalf("a refused session write was written: %+v %v", r, err)
	}
	// A session whose writes all survived writes on.
	good := mustPut(t, nl, "k5", "v", api.Ack{Mode: api.AckMajority})
	for _, n := range c.nodes {
		if _, err := n.Put(ctx, []byte("k5"), []byte("w"), api.WriteOptions{Default: true, Session: good.Token()}); err != nil {
			t.Fatalf("session write with a committed token on %s: %v", n.cfg.ID, err)
		}
	}
}

// TestBoundedReads: a follower serves a bounded read itself when it can
// prove the bound, and an isolated one cannot.
func TestBoundedReads(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	f := c.nodes[fi]
	ctx := ctxT(t)
	mustPut(t, c.nodes[li], "k", "v1", api.Ack{Mode: api.AckMajority})
	for _, o := range []api.ReadOptions{
		{Consistency: api.Bounded, MaxLag: time.Second},
		{Consistency: api.Bounded, MaxLagEntries: 1},
		{Consistency: api.Bounded, MaxLag: time.Second, MaxLagEntries: 10},
	} {
		r, err := f.Read(ctx, []byte("k"), o)
		if err != nil || string(r.Value) != "v1" {
			t.Fatalf("bounded %+v: %q %v", o, r.Value, err)
		}
	}
	if got := counterValue(t, f.m.boundedReads.WithLabelValues("local")); got < 1 {
		t.Fatalf("no bounded read was served locally (%v)", got)
	}
	for _, o := range []api.ReadOptions{{Consistency: api.Bounded}, {Consistency: api.Bounded, MaxLag: -time.Second}} {
		if _, err := f.Read(ctx, []byte("k"), o); !errors.Is(err, api.ErrBadBound) {
			t.Fatalf("bounded %+v: %v, want ErrBadBound", o, err)
		}
	}
	// Cut off, it cannot prove any bound, and no leader answers.
	c.net.Isolate(transport.NodeID(f.cfg.ID))
	time.Sleep(100 * time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if r, err := f.Read(short, []byte("k"), api.ReadOptions{Consistency: api.Bounded, MaxLag: 50 * time.Millisecond}); err == nil {
		t.Fatalf("an isolated follower served a bounded read: %+v", r)
	}
	// A stale read still works.
	if r, err := f.Read(ctx, []byte("k"), api.ReadOptions{Consistency: api.Stale}); err != nil || string(r.Value) != "v1" {
		t.Fatalf("stale: %+v %v", r, err)
	}
}

// TestJournalDescribesCommands: a discarded command is journaled by what it
// does, not as its encoding.
func TestJournalDescribesCommands(t *testing.T) {
	for _, c := range []struct {
		cmd            command.Command
		op, key, value string
	}{
		{command.Command{Op: command.OpIncr, Key: []byte("n"), Delta: -4}, "incr", "n", "-4"},
		{command.Command{Op: command.OpAppend, Key: []byte("s"), Value: []byte("x")}, "append", "s", "x"},
		{command.Command{Op: command.OpMSet, Keys: [][]byte{[]byte("a"), []byte("b")}, Values: [][]byte{[]byte("1"), []byte("2")}}, "mset", "a", "a=1 b=2"},
	} {
		e := entry.Entry{Kind: entry.KindCommand, Key: c.cmd.Key, Value: command.Encode(nil, &c.cmd)}
		op, key, value := describeForJournal(&e)
		if op != c.op || string(key) != c.key || string(value) != c.value {
			t.Errorf("%v: journaled as %s %q %q, want %s %q %q", c.cmd.Op, op, key, value, c.op, c.key, c.value)
		}
	}
}

// TestLargestCommandFitsTheLog: a command carrying the largest key, value
// and idempotency key a client may send is accepted and applied (its
// encoding is larger than the value limit: the log must take it), and an
// MSET whose encoding would not fit is refused, not written.
func TestLargestCommandFitsTheLog(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	n := c.nodes[li]
	ctx := ctxT(t)
	big := &command.Command{Op: command.OpSet, Key: make([]byte, MaxKeyBytes), Value: make([]byte, n.cfg.MaxValueBytes),
		IdemKey: make([]byte, command.MaxIdemKey)}
	big.Key[0], big.IdemKey[0] = 'k', 'i'
	if res, err := c.nodes[c.follower(li)].Exec(ctx, big, api.WriteOptions{Default: true}); err != nil || !res.Cmd.Applied {
		t.Fatalf("the largest command: %+v %v", res, err)
	}
	var mset command.Command
	mset.Op = command.OpMSet
	// As many pairs as an MSET may have, of 16 bytes each: within the value
	// limit in total, but the encoding adds 8 bytes per pair.
	for i := range command.MaxPairs {
		mset.Keys = append(mset.Keys, fmt.Appendf(nil, "%08d", i))
		mset.Values = append(mset.Values, []byte("vvvvvvvv"))
	}
	if 16*len(mset.Keys) > n.cfg.MaxValueBytes {
		t.Fatalf("the test's MSET (%d bytes) exceeds the value limit itself", 16*len(mset.Keys))
	}
	if _, err := n.Exec(ctx, &mset, api.WriteOptions{Default: true}); !errors.Is(err, api.ErrValueTooLarge) {
		t.Fatalf("an MSET too large to encode: %v", err)
	}
	mustPut(t, n, "after", "1", api.Ack{Mode: api.AckMajority})
}

// TestConsistentPrefixOnFollowers: every node applies the log in order, so a
// reader never sees a write without the writes committed before it: with
// "a" written before "b" each round, a stale read of "b" followed by one of
// "a" on the same node never finds "a" older than "b".
func TestConsistentPrefixOnFollowers(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	ctx := ctxT(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 200; i++ {
			v := []byte(strconv.Itoa(i))
			for _, k := range []string{"a", "b"} {
				if _, err := c.nodes[li].Put(ctx, []byte(k), v, api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}}); err != nil {
					t.Errorf("put %s=%s: %v", k, v, err)
					return
				}
			}
		}
	}()
	num := func(r api.ReadResult) int {
		if !r.Found {
			return 0
		}
		n, _ := strconv.Atoi(string(r.Value))
		return n
	}
	reads := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		for i, n := range c.nodes {
			if i == li {
				continue
			}
			b, err1 := n.Read(ctx, []byte("b"), api.ReadOptions{Consistency: api.Stale})
			a, err2 := n.Read(ctx, []byte("a"), api.ReadOptions{Consistency: api.Stale})
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if num(a) < num(b) {
				t.Fatalf("%s: b=%d visible but a=%d: not a prefix of the log", n.cfg.ID, num(b), num(a))
			}
			reads++
		}
	}
	if reads == 0 {
		t.Fatal("no reads ran")
	}
}

// TestSessionTokenFromNowhere: a token no node issued (past the leader's
// log in its own term) is refused at once, on the leader and through a
// follower, rather than waited for.
func TestSessionTokenFromNowhere(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	w := mustPut(t, c.nodes[li], "k", "v", api.Ack{Mode: api.AckMajority})
	bogus := api.Token{Term: w.Term, Index: w.Index + 1000}
	for _, n := range []*Node{c.nodes[li], c.nodes[c.follower(li)]} {
		// (A wait that ran out would end in ErrNoLeader instead.)
		_, err := n.Read(ctxT(t), []byte("k"), api.ReadOptions{Consistency: api.Session, Token: bogus})
		if !errors.Is(err, api.ErrBadToken) {
			t.Fatalf("%s: %v, want ErrBadToken", n.cfg.ID, err)
		}
	}
}

// TestSessionWriteRefusedByDeposedLeader: a session that has seen a later
// term than the leader's has met a newer leader; this one is deposed without
// knowing it. It must refuse the session's write (retryable, no leader)
// rather than take a write that will be discarded behind the session's
// newer token (chaos seed 18001 found the loss left untold).
func TestSessionWriteRefusedByDeposedLeader(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	w := mustPut(t, c.nodes[li], "k", "v1", api.Ack{Mode: api.AckMajority})
	newer := api.Token{Term: w.Term + 1, Index: w.Index + 1}
	for _, ack := range []api.Ack{{Mode: api.AckAsync}, {Mode: api.AckMajority}} {
		_, err := c.nodes[li].Put(ctxT(t), []byte("k"), []byte("v2"), api.WriteOptions{Ack: ack, Session: newer})
		if !errors.Is(err, api.ErrNoLeader) {
			t.Fatalf("ack %s: session write with a token of term %d on the leader of term %d: %v, want ErrNoLeader",
				ack.Mode, newer.Term, w.Term, err)
		}
	}
	got, err := c.nodes[li].Get(ctxT(t), []byte("k"), api.Linearizable)
	if err != nil || string(got.Value) != "v1" {
		t.Fatalf("after the refused writes k = %q %v, want v1", got.Value, err)
	}
	// The session's own token is fine.
	if _, err := c.nodes[li].Put(ctxT(t), []byte("k"), []byte("v3"), api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}, Session: w.Token()}); err != nil {
		t.Fatalf("session write with its own token: %v", err)
	}
}
