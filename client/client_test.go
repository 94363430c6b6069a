package client

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
)

func mustNode(t *testing.T, f *apitest.Fake) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(f, nil, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

func mustClient(t *testing.T, endpoints ...string) *Client {
	t.Helper()
	return mustClientWith(t, Config{Endpoints: endpoints, RetryFor: 2 * time.Second})
}

func mustClientWith(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPutGetDelete runs with idempotency keys (the default: writes are
// commands) and without (plain puts and deletes, whose ack modes the Fake
// models).
func TestPutGetDelete(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			f := apitest.NewFake("n2", "n3")
			c := mustClientWith(t, Config{Endpoints: []string{mustNode(t, f)}, NoIdempotencyKeys: plain})
			testPutGetDelete(t, f, c, plain)
		})
	}
}

func testPutGetDelete(t *testing.T, f *apitest.Fake, c *Client, plain bool) {
	ctx := context.Background()
	key := []byte("a/b c")
	res, err := c.Put(ctx, key, []byte{0xff, 1}, WriteOptions{Ack: "semi-sync", Replicas: 2})
	if err != nil || res.Index != 1 || res.Session != "1.1.1" || plain && (res.Durability != "semi-sync" || res.Replicas != 2) {
		t.Fatalf("Put: %+v %v", res, err)
	}
	if w, _ := f.LastWrite(); w.Ack.Mode.String() != "semi-sync" || w.Ack.Replicas != 2 {
		t.Fatalf("the node saw ack %+v", w)
	}
	if cmd := f.LastCommand(); plain != (cmd == nil) {
		t.Fatalf("plain %v, command %+v", plain, cmd)
	}
	if v, ok := f.Value("a/b c"); !ok || string(v) != "\xff\x01" {
		t.Fatalf("stored %q %v", v, ok)
	}
	r, err := c.Get(ctx, key, ReadOptions{})
	if err != nil || string(r.Value) != "\xff\x01" || r.Index != 1 || r.Session != "1.1.1" {
		t.Fatalf("Get: %+v %v", r, err)
	}
	r, err = c.Get(ctx, key, ReadOptions{Consistency: "stale"})
	if err != nil || string(r.Value) != "\xff\x01" {
		t.Fatalf("stale Get: %+v %v", r, err)
	}
	if _, err := c.Delete(ctx, key, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, key, ReadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete: %v, want ErrNotFound", err)
	}
}

func TestFollowsLeader(t *testing.T) {
	leader := apitest.NewFakeID("n2", "n1")
	leaderURL := mustNode(t, leader)
	follower := apitest.NewFakeID("n1", "n2")
	follower.SetLeader("n2")
	follower.SetLeaderAddrs(strings.TrimPrefix(leaderURL, "http://"), "")
	followerURL := mustNode(t, follower)
	ctx := context.Background()

	// Only the follower is known: the client follows the leader it names.
	c := mustClient(t, followerURL)
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.Value("k"); !ok {
		t.Fatal("write did not reach the leader")
	}
	if ep, _ := c.Leader(ctx); ep != leaderURL {
		t.Fatalf("leader %q, want %q", ep, leaderURL)
	}
	// Both known, follower first.
	c = mustClient(t, followerURL, leaderURL)
	if r, err := c.Get(ctx, []byte("k"), ReadOptions{}); err != nil || string(r.Value) != "v" || r.Endpoint != leaderURL {
		t.Fatalf("Get: %+v %v", r, err)
	}
}

func TestRetriesWithoutLeader(t *testing.T) {
	f := apitest.NewFake("n2")
	f.SetLeader("")
	c := mustClient(t, mustNode(t, f))
	go func() {
		time.Sleep(150 * time.Millisecond)
		f.SetLeader("n1")
	}()
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("Put across an election: %v", err)
	}

	f.SetLeader("")
	short, _ := New(Config{Endpoints: c.Endpoints(), RetryFor: 100 * time.Millisecond})
	if _, err := short.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{}); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Put with no leader: %v, want ErrNoLeader", err)
	}
}

func TestTypedErrors(t *testing.T) {
	f := apitest.NewFake("n2")
	ep := mustNode(t, f)
	c := mustClient(t, ep)
	plain := mustClientWith(t, Config{Endpoints: []string{ep}, NoIdempotencyKeys: true})
	ctx := context.Background()

	// Plain writes: the Fake models ack modes for them.
	f.SetDown("n2", true)
	_, err := plain.Put(ctx, []byte("k"), []byte("v"), WriteOptions{Ack: "sync", Timeout: 30 * time.Millisecond})
	var e *Error
	if !errors.Is(err, ErrWriteTimeout) || !errors.As(err, &e) || e.Result == nil || e.Result.Index != 1 {
		t.Fatalf("sync write with the follower down: %v (%+v)", err, e)
	}
	f.SetDown("n2", false)
	f.FailNext(api.ErrOutcomeUnknown)
	if _, err := plain.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("outcome unknown: %v", err)
	}
	// With an idempotency key, an unknown outcome is retried.
	f.FailNext(api.ErrOutcomeUnknown)
	if _, err := c.Put(ctx, []byte("k"), []byte("v2"), WriteOptions{}); err != nil {
		t.Fatalf("outcome unknown, retried: %v", err)
	}
	if v, _ := f.Value("k"); string(v) != "v2" {
		t.Fatalf("value %q after the retry", v)
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{Ack: "fast"}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad ack: %v", err)
	}
	if _, err := c.Put(ctx, nil, []byte("v"), WriteOptions{}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty key: %v", err)
	}
	dead, _ := New(Config{Endpoints: []string{"127.0.0.1:1"}, RetryFor: 50 * time.Millisecond})
	if _, err := dead.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dead endpoint: %v", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("no endpoints: %v", err)
	}
	if _, err := New(Config{Endpoints: []string{ep}, IdempotencyWindow: -time.Second}); err == nil {
		t.Fatal("a negative idempotency window was accepted")
	}
}

func TestStatusRollbacksTransfer(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	ep := mustNode(t, f)
	c := mustClient(t, ep)
	ctx := context.Background()
	f.AddRollback(api.Rollback{Term: 1, Index: 3, Op: "put", Key: "k", Value: "v"})
	rbs, err := c.Rollbacks(ctx, ep)
	if err != nil || len(rbs) != 1 || rbs[0].Index != 3 {
		t.Fatalf("Rollbacks: %v %v", rbs, err)
	}
	st, err := c.Status(ctx, ep)
	if err != nil || st.Role != "leader" || len(st.Followers) != 2 {
		t.Fatalf("Status: %+v %v", st, err)
	}
	if err := c.Transfer(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	if f.Status().Leader != "n3" {
		t.Fatal("transfer did not happen")
	}
}
