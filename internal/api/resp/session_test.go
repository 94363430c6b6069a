package resp

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// readSpy is the Fake, recording the options of every read; failRead, when
// set, is returned by the next read instead of reading.
type readSpy struct {
	*apitest.Fake
	mu       sync.Mutex
	reads    []api.ReadOptions
	failRead error
}

func (r *readSpy) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	r.mu.Lock()
	r.reads = append(r.reads, o)
	err := r.failRead
	r.failRead = nil
	r.mu.Unlock()
	if err != nil {
		return api.ReadResult{}, err
	}
	return r.Fake.Read(ctx, key, o)
}

// failNextRead makes the next read fail with err.
func (r *readSpy) failNextRead(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failRead = err
}

// mustLastRead checks the options of the last read.
func (r *readSpy) mustLastRead(t *testing.T, want api.ReadOptions) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reads) == 0 || r.reads[len(r.reads)-1] != want {
		t.Fatalf("reads %+v, want the last %+v", r.reads, want)
	}
}

func tok(index uint64) api.Token { return api.Token{Term: 1, Index: index} }

// TestSessionToken: every connection tracks a token that writes and reads
// move on; TRIREME.SESSION returns and adopts it; at read level session,
// reads carry it.
func TestSessionToken(t *testing.T) {
	f := &readSpy{Fake: apitest.NewFake("n2")}
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	const malformed = "-ERR malformed session token"
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.SESSION"}, want: ""},
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"TRIREME.SESSION"}, want: "1.1.1"},
		{args: []string{"INCR", "n"}, want: "1"},
		{args: []string{"TRIREME.SESSION"}, want: "1.1.2"},
		{args: []string{"TRIREME.SESSION", "1.1.1"}, want: "OK"}, // adopting replaces
		{args: []string{"TRIREME.SESSION"}, want: "1.1.1"},
		{args: []string{"GET", "k"}, want: "v"}, // a linearizable read's token
		{args: []string{"TRIREME.SESSION"}, want: "1.1.2"},
		{args: []string{"TRIREME.SESSION", "bogus"}, want: malformed},
		{args: []string{"TRIREME.SESSION", "1.0.5"}, want: malformed},
		{args: []string{"TRIREME.SESSION", "2.1.1"}, want: malformed},
		{args: []string{"TRIREME.SESSION", "1.1"}, want: malformed},
		{args: []string{"TRIREME.SESSION", "1.x.1"}, want: malformed},
		{args: []string{"TRIREME.SESSION", "1.1.-1"}, want: malformed},
		{args: []string{"TRIREME.SESSION"}, want: "1.1.2"},
		{args: []string{"TRIREME.SESSION", ""}, want: "OK"}, // a new session
		{args: []string{"TRIREME.SESSION"}, want: ""},
		{args: []string{"TRIREME.CONSISTENCY", "session"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY"}, want: "session"},
		{args: []string{"GET", "k"}, want: "v"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Session})
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.SESSION"}, want: "1.1.2"},
		{args: []string{"STRLEN", "k"}, want: "1"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Session, Token: tok(2)})
	// Another client's write: the next read's reply covers it.
	if _, err := f.Put(context.Background(), []byte("k"), []byte("w"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	for _, read := range [][]string{{"GET", "k"}, {"MGET", "k", "n"}, {"EXISTS", "k"}, {"TTL", "k"}, {"STRLEN", "k"}} {
		io.WriteString(c, encode(read...))
		if got, err := readValue(rd); err != nil || isErrorReply(got) {
			t.Fatalf("%q: %q %v", read, got, err)
		}
	}
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Session, Token: tok(3)})
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.SESSION"}, want: "1.1.3"},
		{args: []string{"APPEND", "k", "x"}, want: "2"},
		{args: []string{"TRIREME.SESSION"}, want: "1.1.4"},
		{args: []string{"GET", "k"}, want: "wx"},
		{args: []string{"READONLY"}, want: "OK"},
		{args: []string{"GET", "k"}, want: "wx"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Stale})
}

// TestSessionRolledBack: a session read whose token was rolled back is
// answered -ROLLEDBACK; the connection drops its token and its next
// session read is linearizable, unless a write or TRIREME.SESSION gives it
// a token first.
func TestSessionRolledBack(t *testing.T) {
	f := &readSpy{Fake: apitest.NewFake("n2")}
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	rolledBack := fmt.Errorf("%w: index 1 of term 1 was discarded (the entry there is of term 2); the session's write is lost",
		api.ErrRolledBack)
	const wantErr = "-ROLLEDBACK the session's write was rolled back: index 1 of term 1 was discarded"
	mustScript(t, c, rd, []step{
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY", "session"}, want: "OK"},
	})
	f.failNextRead(rolledBack)
	mustScript(t, c, rd, []step{
		{args: []string{"GET", "k"}, want: wantErr, prefix: true},
		{args: []string{"TRIREME.SESSION"}, want: ""},
		{args: []string{"GET", "k"}, want: "v"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Linearizable})
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.SESSION"}, want: "1.1.1"},
		{args: []string{"GET", "k"}, want: "v"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Session, Token: tok(1)})

	// A write re-anchors the session.
	f.failNextRead(rolledBack)
	mustScript(t, c, rd, []step{
		{args: []string{"MGET", "k", "n"}, want: wantErr, prefix: true},
		{args: []string{"INCR", "n"}, want: "1"},
		{args: []string{"GET", "k"}, want: "v"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Session, Token: tok(2)})

	// So does an adopted token.
	f.failNextRead(rolledBack)
	mustScript(t, c, rd, []step{
		{args: []string{"STRLEN", "k"}, want: wantErr, prefix: true},
		{args: []string{"TRIREME.SESSION", "1.1.2"}, want: "OK"},
		{args: []string{"EXISTS", "k"}, want: "1"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Session, Token: tok(2)})
}

// TestSessionReadWaits: a session read whose token is ahead of the node
// waits (here, for the connection's context: the Fake never catches up on
// its own) and is served once the node has applied the token.
func TestSessionReadWaits(t *testing.T) {
	f := apitest.NewFake("n2")
	s := New(f, DefaultConfig())
	defer s.Close()
	c := newRecConn()
	const wait = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c.st = &connState{ctx: ctx, write: api.WriteOptions{Default: true}, who: s.everyone, read: api.Session, token: tok(3)}
	get := [][]byte{[]byte("GET"), []byte("k")}
	start := time.Now()
	s.handle(c.conn, get)
	if d := time.Since(start); d < wait {
		t.Fatalf("a session read ahead of the node was answered after %v, before its context ended (%v)", d, wait)
	}
	c.Flush()
	if got := c.buf.String(); !strings.HasPrefix(got, "-TIMEOUT context deadline exceeded") {
		t.Fatalf("reply %q, want the context's error, a timeout (as HTTP's 504)", got)
	}
	c.buf.Reset()
	for i := range 3 {
		if _, err := f.Put(context.Background(), []byte("k"), []byte(fmt.Sprint(i)), api.WriteOptions{Default: true}); err != nil {
			t.Fatal(err)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	c.st.ctx = ctx2
	s.handle(c.conn, get)
	c.Flush()
	if got := c.buf.String(); got != "$1\r\n2\r\n" {
		t.Fatalf("reply %q once the node has applied the token, want 2", got)
	}
	if c.st.token != tok(3) {
		t.Fatalf("token %v after the read, want %v", c.st.token, tok(3))
	}
}

// TestBoundedConsistency: TRIREME.CONSISTENCY bounded MAXLAG_MS
// [MAXLAG_ENTRIES] sets a bound that reads carry; a bad bound is refused
// and changes nothing.
func TestBoundedConsistency(t *testing.T) {
	f := &readSpy{Fake: apitest.NewFake("n2")}
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.CONSISTENCY"}, want: "linearizable"},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "500"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY"}, want: "bounded 500 0"},
		{args: []string{"GET", "k"}, want: "(nil)"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Bounded, MaxLag: 500 * time.Millisecond})
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.CONSISTENCY", "BOUNDED", "0", "10"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY"}, want: "bounded 0 10"},
		{args: []string{"GET", "k"}, want: "(nil)"},
	})
	f.mustLastRead(t, api.ReadOptions{Consistency: api.Bounded, MaxLagEntries: 10})
	const syntax = "-ERR syntax error: BOUNDED takes MAXLAG_MS [MAXLAG_ENTRIES]"
	mustScript(t, c, rd, []step{
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "250", "3"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "0"}, want: "-" + errBound},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "0", "0"}, want: "-" + errBound},
		{args: []string{"TRIREME.CONSISTENCY", "bounded"}, want: syntax},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "1", "2", "3"}, want: syntax},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "x"}, want: "-" + errNotInteger},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "-1"}, want: "-" + errNotInteger},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "1", "-1"}, want: "-" + errNotInteger},
		{args: []string{"TRIREME.CONSISTENCY", "bounded", "99999999999999"}, want: "-" + errNotInteger},
		{args: []string{"TRIREME.CONSISTENCY", "session", "1"}, want: wrongArgs("trireme.consistency")},
		{args: []string{"TRIREME.CONSISTENCY", "stale", "1"}, want: wrongArgs("trireme.consistency")},
		{args: []string{"TRIREME.CONSISTENCY", "eventual"}, want: "-ERR unknown consistency 'eventual'", prefix: true},
		{args: []string{"TRIREME.CONSISTENCY", ""}, want: "-ERR unknown consistency ''", prefix: true},
		{args: []string{"TRIREME.CONSISTENCY"}, want: "bounded 250 3"},
		{args: []string{"TRIREME.CONSISTENCY", "stale"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY"}, want: "stale"},
		{args: []string{"READWRITE"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY"}, want: "linearizable"},
	})
}

// rolledBackWrites is a service whose writes are refused as rolled back
// while they carry a session token, and records the options it was given.
type rolledBackWrites struct {
	*apitest.Fake
	mu  sync.Mutex
	got []api.WriteOptions
}

func (r *rolledBackWrites) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	r.mu.Lock()
	r.got = append(r.got, w)
	r.mu.Unlock()
	if !w.Session.IsZero() {
		return api.WriteResult{}, fmt.Errorf("%w: index 3 of term 1 was discarded", api.ErrRolledBack)
	}
	return r.Fake.Put(ctx, key, value, w)
}

// TestSessionWritesCarryTheToken: in session mode a write carries the
// connection's token; a write refused as rolled back is answered
// -ROLLEDBACK and the connection re-anchors (its next write carries none).
func TestSessionWritesCarryTheToken(t *testing.T) {
	svc := &rolledBackWrites{Fake: apitest.NewFake("n2")}
	_, addr := mustServeConfig(t, svc, DefaultConfig())
	c, rd := mustDial(t, addr)
	mustScript(t, c, rd, []step{
		{args: []string{"SET", "k", "v"}, want: "OK"}, // not a session yet: no token sent
		{args: []string{"TRIREME.SESSION", "1.1.3"}, want: "OK"},
		{args: []string{"TRIREME.CONSISTENCY", "session"}, want: "OK"},
	})
	io.WriteString(c, encode("SET", "k", "v"))
	if got, err := readValue(rd); err != nil || !strings.HasPrefix(fmt.Sprint(got), "-ROLLEDBACK") {
		t.Fatalf("SET after a lost write: %q %v, want ROLLEDBACK", got, err)
	}
	mustScript(t, c, rd, []step{{args: []string{"SET", "k", "v"}, want: "OK"}})
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if len(svc.got) != 3 || !svc.got[0].Session.IsZero() || svc.got[1].Session != tok(3) || !svc.got[2].Session.IsZero() {
		t.Fatalf("the writes' sessions: %+v, want none, 1.1.3, none (re-anchored)", svc.got)
	}
}
