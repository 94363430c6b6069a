package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
)

// llInfo is a leaderless status for the tests.
var llInfo = api.LeaderlessInfo{ReplicationFactor: 3, SloppyQuorum: true,
	Ownership: map[string]float64{"n1": 1, "n2": 1, "n3": 1}, HintsPending: map[string]int{"n3": 2}, ReadRepairs: 4}

// llRequest is what a leaderless node saw of one request.
type llRequest struct {
	method, path string
	query        url.Values
	idemKey      string
}

// llNode serves a service (a leaderless Fake, or one over it) over HTTP,
// recording each request to /v1/kv/.
type llNode struct {
	url string

	mu   sync.Mutex
	reqs []llRequest
	// hangUp, if set, says which requests to answer by closing the
	// connection without a reply (after the service applied them).
	hangUp func(r *http.Request) bool
}

func mustLLNode(t *testing.T, svc api.Service) *llNode {
	t.Helper()
	n := &llNode{}
	h := httpapi.New(svc, nil, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			n.reqs = append(n.reqs, llRequest{method: r.Method, path: r.URL.Path, query: r.URL.Query(), idemKey: r.Header.Get("Idempotency-Key")})
		}
		hangUp := n.hangUp
		n.mu.Unlock()
		if hangUp != nil && hangUp(r) {
			h.ServeHTTP(httptest.NewRecorder(), r)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

// kv returns the requests to /v1/kv/ the node saw.
func (n *llNode) kv() []llRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]llRequest(nil), n.reqs...)
}

func (n *llNode) last(t *testing.T) llRequest {
	t.Helper()
	rs := n.kv()
	if len(rs) == 0 {
		t.Fatalf("%s saw no request to /v1/kv/", n.url)
	}
	return rs[len(rs)-1]
}

func newLLFake(up int) *apitest.Fake {
	f := apitest.NewFake()
	f.SetLeaderless(llInfo)
	f.SetReplicasUp(up)
	return f
}

// TestLeaderlessWritesAndReads: against leaderless nodes the client needs
// no leader: writes and reads go round-robin over the nodes, carry W, R
// and the read repair, no idempotency key and no consistency for a
// default read, and their results say how many replicas answered.
func TestLeaderlessWritesAndReads(t *testing.T) {
	f := newLLFake(3)
	f.SetRepaired(1)
	nodes := []*llNode{mustLLNode(t, f), mustLLNode(t, f), mustLLNode(t, f)} // one service: one key space
	c := mustClient(t, nodes[0].url, nodes[1].url, nodes[2].url)
	ctx := context.Background()

	used := map[string]int{}
	for i, w := range []string{"2", "", "all"} {
		res, err := c.Put(ctx, []byte("k"), []byte(fmt.Sprint("v", i)), WriteOptions{W: w})
		if err != nil || res.Replicas != 3 || !res.Leaderless() || res.Session != "" || res.Term != 0 {
			t.Fatalf("Put W=%q: %+v %v", w, res, err)
		}
		if got, _ := f.LastWrite(); got.W.String() != w {
			t.Fatalf("Put W=%q: the node saw W %v", w, got.W)
		}
		if res.Reached() != "durable on 3 replica(s) of the key" {
			t.Fatalf("Reached: %q", res.Reached())
		}
		used[res.Endpoint]++
	}
	if len(used) != 3 {
		t.Fatalf("three writes went to %v, want one on each node", used)
	}
	for _, n := range nodes {
		if r := n.last(t); r.idemKey != "" {
			t.Fatalf("a leaderless write carried an idempotency key: %+v", r)
		}
	}
	if m, err := c.Mode(ctx); err != nil || m != ModeLeaderless {
		t.Fatalf("Mode: %q %v", m, err)
	}
	if _, err := c.Leader(ctx); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Leader on a leaderless cluster: %v, want ErrNotSupported", err)
	}

	// Reads: R and repair sent; "" and linearizable without a consistency.
	for _, tc := range []struct {
		o                      ReadOptions
		consistency, r, repair string
		repaired               int
	}{
		{ReadOptions{}, "", "", "", 0},
		{ReadOptions{Consistency: "linearizable", R: "one"}, "", "one", "", 0},
		{ReadOptions{R: "quorum", Repair: "blocking"}, "", "quorum", "blocking", 1},
		{ReadOptions{Consistency: "stale", R: "3", Repair: "background"}, "stale", "3", "background", 0},
	} {
		r, err := c.Get(ctx, []byte("k"), tc.o)
		if err != nil || string(r.Value) != "v2" || r.Replicas != 3 || r.Repaired != tc.repaired {
			t.Fatalf("Get %+v: %+v %v", tc.o, r, err)
		}
		var sent llRequest
		for _, n := range nodes {
			if n.url == r.Endpoint {
				sent = n.last(t)
			}
		}
		if _, has := sent.query["consistency"]; has != (tc.consistency != "") || sent.query.Get("consistency") != tc.consistency ||
			sent.query.Get("r") != tc.r || sent.query.Get("repair") != tc.repair {
			t.Fatalf("Get %+v was sent as %v", tc.o, sent.query)
		}
		want := api.ReadOptions{Repair: tc.repair == "blocking"}
		want.R, _ = api.ParseQuorum(tc.r)
		want.Consistency, _ = api.ParseConsistency(tc.consistency)
		if got, _ := f.LastRead(); got != want {
			t.Fatalf("Get %+v: the node saw %+v, want %+v", tc.o, got, want)
		}
	}
	// A missing key: the replicas that answered all the same.
	if r, err := c.Get(ctx, []byte("absent"), ReadOptions{R: "2"}); !errors.Is(err, ErrNotFound) || r.Replicas != 3 {
		t.Fatalf("Get of a missing key: %+v %v", r, err)
	}
	// A named node coordinates the read, whatever the consistency.
	before := len(nodes[1].kv())
	if r, err := c.Get(ctx, []byte("k"), ReadOptions{Endpoint: nodes[1].url}); err != nil || r.Endpoint != nodes[1].url || len(nodes[1].kv()) != before+1 {
		t.Fatalf("Get from a named node: %+v %v", r, err)
	}

	// Delete and Incr carry W too.
	if _, err := c.Delete(ctx, []byte("k"), WriteOptions{W: "one"}); err != nil {
		t.Fatal(err)
	}
	if w, _ := f.LastWrite(); w.W != api.QuorumOne {
		t.Fatalf("Delete: W %v", w.W)
	}
	if v, err := c.Incr(ctx, []byte("n"), 2); err != nil || v != 2 {
		t.Fatalf("Incr: %d %v", v, err)
	}

	// The status has the ring.
	st, err := c.Status(ctx, nodes[0].url)
	if err != nil || st.Mode != ModeLeaderless || st.Leaderless == nil || st.Leaderless.Ownership["n2"] != 1 ||
		st.Leaderless.HintsPending["n3"] != 2 || st.Leaderless.ReadRepairs != 4 || st.Leaderless.ReplicationFactor != 3 {
		t.Fatalf("Status: %+v %v", st, err)
	}
}

// TestLeaderlessFailover: a node that cannot reach enough replicas, or
// cannot be reached, is passed over for the next; when none can serve the
// request the client retries up to RetryFor and returns
// ErrQuorumUnavailable, having written nothing.
func TestLeaderlessFailover(t *testing.T) {
	cut, good := newLLFake(1), newLLFake(3) // cut off from two of each key's replicas
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	nc, ng := mustLLNode(t, cut), mustLLNode(t, good)
	c := mustClient(t, down.URL, nc.url, ng.url)
	ctx := context.Background()
	for i := range 6 { // every start of the round-robin
		res, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{})
		if err != nil || res.Endpoint != ng.url {
			t.Fatalf("Put %d: %+v %v, want it taken by the node that reaches the replicas", i, res, err)
		}
		r, err := c.Get(ctx, []byte("k"), ReadOptions{})
		if err != nil || r.Endpoint != ng.url {
			t.Fatalf("Get %d: %+v %v", i, r, err)
		}
	}
	if _, n := cut.LastWrite(); n != 0 {
		t.Fatalf("the cut-off node wrote %d times", n)
	}
	// W=one: the cut-off node can take it.
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{W: "one"}); err != nil {
		t.Fatal(err)
	}

	// No node reaches a quorum: ErrQuorumUnavailable (an ErrUnavailable)
	// after RetryFor, nothing written.
	c = mustClientWith(t, Config{Endpoints: []string{nc.url, down.URL}, RetryFor: 150 * time.Millisecond})
	_, before := cut.LastWrite()
	start := time.Now()
	_, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{W: "quorum"})
	if !errors.Is(err, ErrQuorumUnavailable) || !errors.Is(err, ErrUnavailable) || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("Put with no quorum anywhere: %v after %v, want ErrQuorumUnavailable after the retries", err, time.Since(start))
	}
	if _, n := cut.LastWrite(); n != before {
		t.Fatalf("a refused write was written %d times", n-before)
	}
	if _, err := c.Get(ctx, []byte("k"), ReadOptions{R: "all"}); !errors.Is(err, ErrQuorumUnavailable) {
		t.Fatalf("Get R=all with no quorum anywhere: %v", err)
	}
	if v, err := c.Incr(ctx, []byte("n"), 1); !errors.Is(err, ErrQuorumUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Incr with no quorum anywhere: %d %v, want ErrQuorumUnavailable (nothing written)", v, err)
	}
}

// TestLeaderlessBrokenConnection: a write whose connection broke after the
// node took it is sent to the next node (the same value, applied twice);
// an increment is not (its outcome is unknown).
func TestLeaderlessBrokenConnection(t *testing.T) {
	f1, f2 := newLLFake(3), newLLFake(3)
	n1, n2 := mustLLNode(t, f1), mustLLNode(t, f2)
	n1.hangUp = func(r *http.Request) bool { return r.Method != http.MethodGet }
	c := mustClient(t, n1.url, n2.url)
	ctx := context.Background()
	if _, err := c.Mode(ctx); err != nil { // the round-robin starts at n1 next
		t.Fatal(err)
	}
	res, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{})
	if err != nil || res.Endpoint != n2.url {
		t.Fatalf("Put after a broken connection: %+v %v, want it sent again to n2", res, err)
	}
	if _, n := f1.LastWrite(); n != 1 {
		t.Fatalf("n1 applied %d writes", n)
	}
	c.next.Store(0) // n1 first again
	_, err = c.Incr(ctx, []byte("n"), 1)
	if !errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "leaderless node cannot tell a retry") {
		t.Fatalf("Incr after a broken connection: %v, want ErrOutcomeUnknown", err)
	}
	if _, n := f2.LastWrite(); n != 1 {
		t.Fatalf("the increment was sent again: n2 saw %d writes", n)
	}
}

// timeoutService answers every write as a leaderless write that met one
// replica of its W in time.
type timeoutService struct{ *apitest.Fake }

func (s timeoutService) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	res, err := s.Fake.Put(ctx, key, value, w)
	if err != nil {
		return res, err
	}
	res.Replicas = 1
	return res, fmt.Errorf("%w: 1 of W=2 replicas in time", api.ErrWriteTimeout)
}

// TestLeaderlessWriteTimeout: a write that met fewer replicas than W in
// time is returned at once, with the replicas that hold it: without an
// idempotency key, a retry would write it again.
func TestLeaderlessWriteTimeout(t *testing.T) {
	n := mustLLNode(t, timeoutService{newLLFake(3)})
	c := mustClient(t, n.url)
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{W: "2"})
	var e *Error
	if !errors.Is(err, ErrWriteTimeout) || !errors.As(err, &e) || e.Result == nil || e.Result.Replicas != 1 || !e.Result.Leaderless() ||
		e.Result.Reached() != "durable on 1 replica(s) of the key" {
		t.Fatalf("Put: %v (%+v)", err, e)
	}
	if len(n.kv()) != 1 {
		t.Fatalf("the write was sent %d times", len(n.kv()))
	}
}

// TestBadQuorum: a W, R or repair the client cannot send is refused before
// any request; a W the cluster cannot meet comes back from the node as
// ErrBadQuorum, not retried; other clusters refuse W and R.
func TestBadQuorum(t *testing.T) {
	f := newLLFake(3)
	n := mustLLNode(t, f)
	c := mustClient(t, n.url)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"W two":    func() error { _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{W: "two"}); return err },
		"W 0":      func() error { _, err := c.Delete(ctx, []byte("k"), WriteOptions{W: "0"}); return err },
		"R -1":     func() error { _, err := c.Get(ctx, []byte("k"), ReadOptions{R: "-1"}); return err },
		"R QUORUM": func() error { _, err := c.Get(ctx, []byte("k"), ReadOptions{R: "QUORUM"}); return err },
	} {
		if err := call(); !errors.Is(err, ErrBadQuorum) || !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadQuorum", name, err)
		}
	}
	if _, err := c.Get(ctx, []byte("k"), ReadOptions{Repair: "eager"}); !errors.Is(err, ErrBadRequest) || errors.Is(err, ErrBadQuorum) {
		t.Errorf("Repair eager: %v, want ErrBadRequest", err)
	}
	if len(n.kv()) != 0 {
		t.Fatalf("refused options reached the node: %+v", n.kv())
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{W: "4"}); !errors.Is(err, ErrBadQuorum) || len(n.kv()) != 1 {
		t.Fatalf("W 4 of 3 replicas: %v after %d requests, want ErrBadQuorum at once", err, len(n.kv()))
	}
	if _, err := c.Get(ctx, []byte("k"), ReadOptions{R: "9"}); !errors.Is(err, ErrBadQuorum) {
		t.Fatalf("R 9 of 3 replicas: %v", err)
	}

	sl := mustClient(t, mustNode(t, apitest.NewFake("n2")))
	if _, err := sl.Put(ctx, []byte("k"), []byte("v"), WriteOptions{W: "2"}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("W on a single-leader cluster: %v, want ErrNotSupported", err)
	}
	if _, err := sl.Get(ctx, []byte("k"), ReadOptions{R: "one"}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("R on a single-leader cluster: %v, want ErrNotSupported", err)
	}
	if m, err := sl.Mode(ctx); err != nil || m != ModeSingleLeader {
		t.Fatalf("Mode: %q %v", m, err)
	}
}
