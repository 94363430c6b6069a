package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
	"github.com/trireme-db/trireme/internal/command"
)

// mlService is a multi-leader node over an apitest.Fake: its status says
// "multi-leader" (no leader, peer streams), its writes have no term (so no
// session token) and durability "local", every read is local, and it
// refuses what a multi-leader node refuses: session and bounded reads,
// conditional writes, APPEND, an idempotency key on an increment,
// leadership transfer. The Fake's siblings, read context and conflict log
// make the rest of the multi-leader replies.
type mlService struct {
	*apitest.Fake
	id string

	mu          sync.Mutex
	streams     []api.StreamInfo
	clamps      uint64
	timeoutNext bool // the next write is applied, then answered as a timeout (durable here)
}

func newMLService(id string, peers ...string) *mlService {
	s := &mlService{Fake: apitest.NewFakeID(id), id: id}
	for _, p := range peers {
		s.streams = append(s.streams, api.StreamInfo{Peer: p, LastContactMs: 5})
	}
	return s
}

func (s *mlService) Status() api.NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	conflicts, _, _ := s.Fake.Conflicts(context.Background(), 0, 1<<20)
	last := s.Fake.Status().LastIndex
	return api.NodeStatus{ID: s.id, ClusterID: apitest.FakeClusterID, Role: "multi-leader", Mode: "multi-leader",
		LastIndex: last, CommitIndex: last, AppliedIndex: last,
		Streams: append([]api.StreamInfo(nil), s.streams...), Conflicts: uint64(len(conflicts)), ClockClamps: s.clamps}
}

// local makes a Fake write result a multi-leader one; with a pending
// timeout, the write's ack mode was not met but it is durable here.
func (s *mlService) local(res api.WriteResult, err error) (api.WriteResult, error) {
	res.Term, res.Committed, res.LeaderDurable, res.Durability = 0, false, true, "local"
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.timeoutNext {
		s.timeoutNext = false
		return res, fmt.Errorf("%w: durable here and on 0 other nodes; it will still replicate", api.ErrWriteTimeout)
	}
	return res, err
}

func (s *mlService) checkContext(o api.WriteOptions) error {
	if o.Context == "bad" {
		return api.ErrBadContext
	}
	return nil
}

func (s *mlService) Put(ctx context.Context, key, value []byte, o api.WriteOptions) (api.WriteResult, error) {
	if err := s.checkContext(o); err != nil {
		return api.WriteResult{}, err
	}
	return s.local(s.Fake.Put(ctx, key, value, o))
}

func (s *mlService) Delete(ctx context.Context, key []byte, o api.WriteOptions) (api.WriteResult, error) {
	if err := s.checkContext(o); err != nil {
		return api.WriteResult{}, err
	}
	return s.local(s.Fake.Delete(ctx, key, o))
}

func (s *mlService) Exec(ctx context.Context, cmd *command.Command, o api.WriteOptions) (api.WriteResult, error) {
	switch {
	case cmd.Cond != command.CondNone:
		return api.WriteResult{}, fmt.Errorf("%w: conditional writes need a single leader", api.ErrNotSupported)
	case cmd.Op == command.OpIncr && len(cmd.IdemKey) > 0:
		return api.WriteResult{}, fmt.Errorf("%w: exactly-once increments need a single leader; retry without an idempotency key", api.ErrNotSupported)
	case cmd.Op == command.OpAppend:
		return api.WriteResult{}, fmt.Errorf("%w: append needs a single leader", api.ErrNotSupported)
	}
	if err := s.checkContext(o); err != nil {
		return api.WriteResult{}, err
	}
	return s.local(s.Fake.Exec(ctx, cmd, o))
}

func (s *mlService) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if o.Consistency == api.Session || o.Consistency == api.Bounded {
		return api.ReadResult{}, fmt.Errorf("%w: %s reads need a single leader; multi-leader reads are local", api.ErrNotSupported, o.Consistency)
	}
	r, err := s.Fake.Get(ctx, key, api.Stale)
	r.Token = api.Token{}
	return r, err
}

func (s *mlService) Get(ctx context.Context, key []byte, c api.Consistency) (api.ReadResult, error) {
	return s.Read(ctx, key, api.ReadOptions{Consistency: c})
}

func (s *mlService) TransferLeadership(context.Context, string) error {
	return fmt.Errorf("%w: every node of a multi-leader cluster accepts writes; there is no leader", api.ErrNotSupported)
}

// mlRequest is what a multi-leader node saw of one request.
type mlRequest struct {
	method, path, consistency, idemKey, context string
}

// mlNode serves an mlService over HTTP, recording each request.
type mlNode struct {
	*mlService
	url string
	srv *httptest.Server

	mu   sync.Mutex
	reqs []mlRequest
	// hangUp, if set, says which requests to answer by closing the
	// connection without a reply (after the service applied them).
	hangUp func(r *http.Request) bool
}

func mustMLNode(t *testing.T, id string, peers ...string) *mlNode {
	t.Helper()
	n := &mlNode{mlService: newMLService(id, peers...)}
	h := httpapi.New(n.mlService, nil, nil)
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.reqs = append(n.reqs, mlRequest{method: r.Method, path: r.URL.Path, consistency: r.URL.Query().Get("consistency"),
			idemKey: r.Header.Get("Idempotency-Key"), context: r.Header.Get("X-Trireme-Context")})
		hangUp := n.hangUp
		n.mu.Unlock()
		if hangUp != nil && hangUp(r) {
			h.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(n.srv.Close)
	n.url = n.srv.URL
	return n
}

// kvRequests returns the requests to /v1/kv/ the node saw.
func (n *mlNode) kvRequests() []mlRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []mlRequest
	for _, r := range n.reqs {
		if strings.HasPrefix(r.path, "/v1/kv/") {
			out = append(out, r)
		}
	}
	return out
}

func lastKV(t *testing.T, n *mlNode) mlRequest {
	t.Helper()
	rs := n.kvRequests()
	if len(rs) == 0 {
		t.Fatalf("%s saw no request to /v1/kv/", n.id)
	}
	return rs[len(rs)-1]
}

// TestMultiLeaderWritesAndReads: against multi-leader nodes the client needs
// no leader: writes and reads go to the preferred node (the first
// endpoint), every read is local, and reads return the key's context and
// siblings, which a write can send back.
func TestMultiLeaderWritesAndReads(t *testing.T) {
	n1, n2 := mustMLNode(t, "n1", "n2"), mustMLNode(t, "n2", "n1")
	c := mustClient(t, n1.url, n2.url)
	ctx := context.Background()

	res, err := c.Put(ctx, []byte("k"), []byte("v1"), WriteOptions{})
	if err != nil || res.Endpoint != n1.url || res.Index != 1 || res.Term != 0 || res.Durability != "local" || res.Session != "" {
		t.Fatalf("Put: %+v %v, want index 1 on n1, no term", res, err)
	}
	if r := lastKV(t, n1); r.idemKey == "" {
		t.Fatalf("a put should carry an idempotency key (multi-leader nodes accept one): %+v", r)
	}
	if !strings.Contains(res.Reached(), "durable on the node that took it and 0 other node(s), at index 1") {
		t.Fatalf("Reached: %q", res.Reached())
	}
	if m, err := c.Mode(ctx); err != nil || m != ModeMultiLeader {
		t.Fatalf("Mode: %q %v", m, err)
	}
	if _, err := c.Leader(ctx); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Leader on a multi-leader cluster: %v, want ErrNotSupported", err)
	}

	// Every read word but session and bounded is a local read of the
	// preferred node.
	n1.SetReadContext("ctx-1")
	for _, cons := range []string{"", "linearizable", "stale", "local"} {
		r, err := c.Get(ctx, []byte("k"), ReadOptions{Consistency: cons})
		if err != nil || string(r.Value) != "v1" || r.Endpoint != n1.url || r.Context != "ctx-1" || r.Siblings != nil {
			t.Fatalf("Get %q: %+v %v", cons, r, err)
		}
		if got := lastKV(t, n1).consistency; got != "local" {
			t.Fatalf("Get %q was sent as consistency=%q, want local", cons, got)
		}
	}
	// A node named: read there, whatever the consistency.
	n2.SetReadContext("ctx-2")
	if r, err := c.Get(ctx, []byte("k"), ReadOptions{Endpoint: n2.url}); !errors.Is(err, ErrNotFound) || r.Context != "ctx-2" || r.Endpoint != n2.url {
		t.Fatalf("Get from n2 (which does not have k): %+v %v, want ErrNotFound with n2's context", r, err)
	}

	// Siblings, and a write that sends the context back.
	n1.SetSiblings("k", api.Sibling{Value: []byte("a"), Node: "n1", Counter: 2, Time: "100.0"},
		api.Sibling{Value: []byte{0xff}, Node: "n2", Counter: 1, Time: "101.3"})
	r, err := c.Get(ctx, []byte("k"), ReadOptions{})
	want := []Sibling{{Value: []byte("a"), Dot: "n1:2", Node: "n1", Time: "100.0"}, {Value: []byte{0xff}, Dot: "n2:1", Node: "n2", Time: "101.3"}}
	if err != nil || string(r.Value) != "a" || fmt.Sprint(r.Siblings) != fmt.Sprint(want) {
		t.Fatalf("Get of a key with siblings: %+v %v, want siblings %v", r, err, want)
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("merged"), WriteOptions{Context: r.Context}); err != nil {
		t.Fatal(err)
	}
	if w, _ := n1.LastWrite(); w.Context != "ctx-1" || lastKV(t, n1).context != "ctx-1" {
		t.Fatalf("the write's context: node saw %q, header %q", w.Context, lastKV(t, n1).context)
	}
	if _, err := c.Delete(ctx, []byte("k"), WriteOptions{Context: "bad"}); !errors.Is(err, ErrBadContext) || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a context the node refuses: %v, want ErrBadContext (an ErrBadRequest)", err)
	}
	if len(n2.kvRequests()) != 1 {
		t.Fatalf("n2 got %d requests to /v1/kv/, want only the one read that named it", len(n2.kvRequests()))
	}
}

// TestMultiLeaderIncr: an increment carries no idempotency key on a
// multi-leader cluster (the node refuses one); on a single-leader one it
// still does.
func TestMultiLeaderIncr(t *testing.T) {
	n1 := mustMLNode(t, "n1")
	c := mustClient(t, n1.url)
	ctx := context.Background()
	for i, want := range []int64{5, 2} {
		v, err := c.Incr(ctx, []byte("visits"), []int64{5, -3}[i])
		if err != nil || v != want {
			t.Fatalf("Incr %d: %d %v, want %d", i, v, err, want)
		}
		if r := lastKV(t, n1); r.idemKey != "" {
			t.Fatalf("Incr on a multi-leader node sent an idempotency key: %+v", r)
		}
	}
	// A write first, on a fresh client: the mode is learned on the way.
	c = mustClient(t, n1.url)
	if v, err := c.Incr(ctx, []byte("visits"), 1); err != nil || v != 3 {
		t.Fatalf("Incr on a fresh client: %d %v", v, err)
	}
	if v, err := c.Session().Incr(ctx, []byte("visits"), 1); err != nil || v != 4 {
		t.Fatalf("Session.Incr: %d %v", v, err)
	}

	f := apitest.NewFake("n2")
	sl := mustClient(t, mustNode(t, f))
	if _, err := sl.Incr(ctx, []byte("n"), 1); err != nil {
		t.Fatal(err)
	}
	if cmd := f.LastCommand(); cmd == nil || len(cmd.IdemKey) == 0 {
		t.Fatalf("Incr on a single-leader node without an idempotency key: %+v", cmd)
	}
}

// TestMultiLeaderRefused: what a multi-leader node does not offer comes
// back as ErrNotSupported (an ErrBadRequest), at once.
func TestMultiLeaderRefused(t *testing.T) {
	n1 := mustMLNode(t, "n1", "n2")
	c := mustClient(t, n1.url)
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for name, call := range map[string]func() error{
		"session read": func() error { _, err := c.Get(ctx, []byte("k"), ReadOptions{Consistency: "session"}); return err },
		"bounded read": func() error {
			_, err := c.Get(ctx, []byte("k"), ReadOptions{Consistency: "bounded", MaxLag: time.Second})
			return err
		},
		"Session.Get": func() error { _, err := c.Session().Get(ctx, []byte("k")); return err },
		"PutIfIndex":  func() error { _, err := c.PutIfIndex(ctx, []byte("k"), []byte("v"), 1, WriteOptions{}); return err },
		"Append":      func() error { _, err := c.Append(ctx, []byte("k"), []byte("v")); return err },
		"Transfer":    func() error { return c.Transfer(ctx, "n2") },
	} {
		err := call()
		var e *Error
		if !errors.Is(err, ErrNotSupported) || !errors.Is(err, ErrBadRequest) || !errors.As(err, &e) || e.Status != http.StatusBadRequest {
			t.Errorf("%s: %v, want ErrNotSupported (400)", name, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the refusals took %v: they should not be retried", d)
	}
}

// TestMultiLeaderFailover: the preferred node is the first endpoint that
// answers; when it goes down, writes and reads move to the next one.
func TestMultiLeaderFailover(t *testing.T) {
	ctx := context.Background()
	t.Run("first down from the start", func(t *testing.T) {
		n1, n2 := mustMLNode(t, "n1", "n2"), mustMLNode(t, "n2", "n1")
		n1.srv.Close()
		c := mustClient(t, n1.url, n2.url)
		res, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{})
		if err != nil || res.Endpoint != n2.url {
			t.Fatalf("Put with n1 down: %+v %v, want it on n2", res, err)
		}
		if v, err := c.Incr(ctx, []byte("n"), 2); err != nil || v != 2 {
			t.Fatalf("Incr with n1 down: %d %v", v, err)
		}
		if r, err := c.Get(ctx, []byte("k"), ReadOptions{}); err != nil || r.Endpoint != n2.url || string(r.Value) != "v" {
			t.Fatalf("Get with n1 down: %+v %v", r, err)
		}
	})
	t.Run("first goes down", func(t *testing.T) {
		n1, n2 := mustMLNode(t, "n1", "n2"), mustMLNode(t, "n2", "n1")
		c := mustClient(t, n1.url, n2.url)
		if res, err := c.Put(ctx, []byte("k"), []byte("v1"), WriteOptions{}); err != nil || res.Endpoint != n1.url {
			t.Fatalf("Put: %+v %v, want it on n1", res, err)
		}
		n1.srv.Close()
		res, err := c.Put(ctx, []byte("k"), []byte("v2"), WriteOptions{})
		if err != nil || res.Endpoint != n2.url {
			t.Fatalf("Put after n1 went down: %+v %v, want it on n2", res, err)
		}
		if v, ok := n2.Value("k"); !ok || string(v) != "v2" {
			t.Fatalf("n2 has k = %q %v", v, ok)
		}
		if v, err := c.Incr(ctx, []byte("n"), 1); err != nil || v != 1 {
			t.Fatalf("Incr after n1 went down: %d %v", v, err)
		}
		if r, err := c.Get(ctx, []byte("k"), ReadOptions{Consistency: "stale"}); err != nil || r.Endpoint != n2.url {
			t.Fatalf("Get after n1 went down: %+v %v", r, err)
		}
		// Every node down: ErrUnavailable once RetryFor has passed.
		n2.srv.Close()
		short := mustClientWith(t, Config{Endpoints: c.Endpoints(), RetryFor: 100 * time.Millisecond})
		if _, err := short.Put(ctx, []byte("k"), []byte("v3"), WriteOptions{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Put with every node down: %v, want ErrUnavailable", err)
		}
	})
}

// TestMultiLeaderUnknownOutcome: an increment whose connection broke after
// it was sent is not retried (it would count twice): ErrOutcomeUnknown. A
// put is retried, with its idempotency key, on the next node. A write that
// timed out but is durable on its node is not retried.
func TestMultiLeaderUnknownOutcome(t *testing.T) {
	ctx := context.Background()
	n1, n2 := mustMLNode(t, "n1", "n2"), mustMLNode(t, "n2", "n1")
	c := mustClient(t, n1.url, n2.url)
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	n1.mu.Lock()
	n1.hangUp = func(r *http.Request) bool { return r.Method != http.MethodGet }
	n1.mu.Unlock()

	_, err := c.Incr(ctx, []byte("n"), 1)
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Incr whose connection broke: %v, want ErrOutcomeUnknown", err)
	}
	if v, _ := n1.Value("n"); string(v) != "1" {
		t.Fatalf("n1 has n = %q, want the increment applied once", v)
	}
	if _, ok := n2.Value("n"); ok {
		t.Fatal("the increment was retried on n2")
	}

	// A put is retried on the next node, with the same key. (A fresh
	// client: c has moved on to n2 already.)
	c = mustClient(t, n1.url, n2.url)
	res, err := c.Put(ctx, []byte("k"), []byte("v2"), WriteOptions{})
	if err != nil || res.Endpoint != n2.url {
		t.Fatalf("Put whose connection broke: %+v %v, want it retried on n2", res, err)
	}
	k1, k2 := lastKV(t, n1).idemKey, lastKV(t, n2).idemKey
	if k1 == "" || k1 != k2 {
		t.Fatalf("the retry's idempotency key %q, the first attempt's %q", k2, k1)
	}

	// A timeout on a node that has the write durably: returned at once.
	n2.mu.Lock()
	n2.timeoutNext = true
	n2.mu.Unlock()
	before := len(n2.kvRequests())
	_, err = c.Put(ctx, []byte("k"), []byte("v3"), WriteOptions{Ack: "all", Timeout: 50 * time.Millisecond})
	var e *Error
	if !errors.Is(err, ErrWriteTimeout) || !errors.As(err, &e) || e.Result == nil || !e.Result.LeaderDurable {
		t.Fatalf("Put that timed out: %v (%+v), want ErrWriteTimeout with what it reached", err, e)
	}
	if n := len(n2.kvRequests()) - before; n != 1 {
		t.Fatalf("the timed-out write was sent %d times, want once", n)
	}
	if !strings.Contains(e.Result.Reached(), "durable on the node that took it") {
		t.Fatalf("Reached: %q", e.Result.Reached())
	}
}

// TestMultiLeaderConflictsAndStatus: the conflict log, paged, with binary
// keys and values, and the multi-leader fields of the status.
func TestMultiLeaderConflictsAndStatus(t *testing.T) {
	ctx := context.Background()
	n1, n2 := mustMLNode(t, "n1", "n2"), mustMLNode(t, "n2", "n1")
	n1.AddConflict(api.ConflictRecord{Node: "n1", Key: []byte("k"), Winner: "n2:1", Losers: []string{"n1:1"},
		Reason: "lww: higher hybrid timestamp wins", Versions: []api.ConflictVersion{
			{Dot: "n1:1", Node: "n1", Time: "100.0", Value: []byte("a")},
			{Dot: "n2:1", Node: "n2", Time: "101.0", Value: []byte("b")}}})
	n1.AddConflict(api.ConflictRecord{Node: "n1", Key: []byte{0xfe, 0x01}, Reason: "siblings: concurrent values kept",
		Versions: []api.ConflictVersion{
			{Dot: "n1:2", Node: "n1", Time: "102.0", Value: []byte{0xff}},
			{Dot: "n2:2", Node: "n2", Time: "102.5", Deleted: true}}})
	n1.mu.Lock()
	n1.streams[0] = api.StreamInfo{Peer: "n2", PeerAcked: 3, Applied: 2, Known: 6, LagEntries: 4, LagMillis: 120, LastContactMs: 7, ClockOffsetMs: -1.5}
	n1.clamps = 2
	n1.mu.Unlock()
	c := mustClient(t, n1.url, n2.url)

	page, err := c.Conflicts(ctx, 0, 0)
	if err != nil || page.Endpoint != n1.url || page.Next != 2 || len(page.Conflicts) != 2 {
		t.Fatalf("Conflicts: %+v %v", page, err)
	}
	c1, c2 := page.Conflicts[0], page.Conflicts[1]
	if c1.Seq != 1 || string(c1.Key) != "k" || c1.Winner != "n2:1" || fmt.Sprint(c1.Losers) != "[n1:1]" ||
		len(c1.Versions) != 2 || string(c1.Versions[1].Value) != "b" || c1.Versions[1].Time != "101.0" || c1.Reason == "" {
		t.Fatalf("first conflict: %+v", c1)
	}
	if string(c2.Key) != "\xfe\x01" || c2.Winner != "" || len(c2.Losers) != 0 || string(c2.Versions[0].Value) != "\xff" ||
		!c2.Versions[1].Deleted || c2.Versions[1].Value != nil {
		t.Fatalf("second conflict (binary key and value, a delete): %+v", c2)
	}
	page, err = c.ConflictsAt(ctx, n1.url, 1, 1)
	if err != nil || len(page.Conflicts) != 1 || page.Conflicts[0].Seq != 2 || page.Next != 2 {
		t.Fatalf("ConflictsAt after 1, limit 1: %+v %v", page, err)
	}
	n1.DropConflicts(1)
	if page, err = c.ConflictsAt(ctx, n1.url, 2, 10); err != nil || len(page.Conflicts) != 0 || page.Next != 2 || page.Dropped != 1 {
		t.Fatalf("ConflictsAt past the end: %+v %v", page, err)
	}
	if page, err = c.ConflictsAt(ctx, n2.url, 0, 0); err != nil || len(page.Conflicts) != 0 || page.Endpoint != n2.url {
		t.Fatalf("ConflictsAt n2: %+v %v", page, err)
	}
	if _, err := c.ConflictsAt(ctx, n1.url, 0, -1); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a negative limit: %v", err)
	}

	st, err := c.Status(ctx, n1.url)
	wantStream := StreamInfo{Peer: "n2", PeerAcked: 3, Applied: 2, Known: 6, LagEntries: 4, LagMillis: 120, LastContactMs: 7, ClockOffsetMs: -1.5}
	if err != nil || !st.MultiLeader() || st.Mode != ModeMultiLeader || st.Role != "multi-leader" || st.Leader != "" ||
		len(st.Streams) != 1 || st.Streams[0] != wantStream || st.Conflicts != 1 || st.ClockClamps != 2 {
		t.Fatalf("Status: %+v %v", st, err)
	}

	// A single-leader node keeps no conflict log.
	f := apitest.NewFake()
	srv := httptest.NewServer(httpapi.New(struct{ api.Service }{f}, nil, nil))
	t.Cleanup(srv.Close)
	sl := mustClient(t, srv.URL)
	if _, err := sl.Conflicts(ctx, 0, 0); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Conflicts on a single-leader node: %v, want ErrNotSupported", err)
	}
	if st, err := sl.Status(ctx, srv.URL); err != nil || st.MultiLeader() || len(st.Streams) != 0 {
		t.Fatalf("single-leader Status: %+v %v", st, err)
	}
	if m, err := sl.Mode(ctx); err != nil || m != ModeSingleLeader {
		t.Fatalf("Mode of a single-leader cluster: %q %v", m, err)
	}
}
