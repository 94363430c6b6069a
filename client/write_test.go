package client

import (
	"context"
	"encoding/hex"
	"errors"
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

// lossyService applies every command on its Fake, then answers the first
// `fail` of those that succeeded with err: as a node whose write was
// applied but whose reply said that the outcome is unknown (leadership
// lost, ack mode not met in time). It records each command's idempotency
// key.
type lossyService struct {
	*apitest.Fake
	mu   sync.Mutex
	fail int
	err  error
	keys []string
}

func (s *lossyService) Exec(ctx context.Context, cmd *command.Command, w api.WriteOptions) (api.WriteResult, error) {
	res, err := s.Fake.Exec(ctx, cmd, w)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, string(cmd.IdemKey))
	if err == nil && s.fail > 0 {
		s.fail--
		return res, s.err
	}
	return res, err
}

func (s *lossyService) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func mustLossyNode(t *testing.T, fail int, err error) (*lossyService, string) {
	t.Helper()
	s := &lossyService{Fake: apitest.NewFake("n2"), fail: fail, err: err}
	srv := httptest.NewServer(httpapi.New(s, nil, nil))
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// mustSameKey checks that n attempts carried one idempotency key, 128
// random bits in hex.
func mustSameKey(t *testing.T, keys []string, n int) {
	t.Helper()
	if len(keys) != n {
		t.Fatalf("%d attempts (%q), want %d", len(keys), keys, n)
	}
	if b, err := hex.DecodeString(keys[0]); err != nil || len(b) != 16 {
		t.Fatalf("idempotency key %q is not 128 bits in hex", keys[0])
	}
	for _, k := range keys[1:] {
		if k != keys[0] {
			t.Fatalf("a retry changed the idempotency key: %q", keys)
		}
	}
}

// A write whose outcome is unknown is retried with the same key and gets
// the first attempt's result; it is applied once.
func TestIdempotentRetry(t *testing.T) {
	for _, failure := range []error{api.ErrOutcomeUnknown, api.ErrWriteTimeout} {
		t.Run(failure.Error(), func(t *testing.T) {
			s, ep := mustLossyNode(t, 1, failure)
			c := mustClient(t, ep)
			ctx := context.Background()
			res, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{Ack: "majority"})
			if err != nil || !res.Duplicate || res.Index != 1 || res.Session == "" {
				t.Fatalf("Put: %+v %v, want the first attempt's result (index 1), duplicate", res, err)
			}
			mustSameKey(t, s.seen(), 2)

			s.mu.Lock()
			s.fail, s.keys = 1, nil
			s.mu.Unlock()
			if n, err := c.Incr(ctx, []byte("n"), 5); err != nil || n != 5 {
				t.Fatalf("Incr retried: %d %v, want 5 (applied once)", n, err)
			}
			mustSameKey(t, s.seen(), 2)
			if v, _ := s.Value("n"); string(v) != "5" {
				t.Fatalf("n = %q after one increment retried", v)
			}
			// A new logical write takes a new key.
			if _, err := c.Put(ctx, []byte("k"), []byte("w"), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if keys := s.seen(); keys[2] == keys[0] {
				t.Fatalf("two writes shared a key: %q", keys)
			}
		})
	}
}

// A duplicate proves that the write is committed, not that a sync or
// semi-sync ack mode was met: such a write still fails with ErrWriteTimeout,
// saying that it was found applied.
func TestIdempotentRetrySyncUnconfirmed(t *testing.T) {
	s, ep := mustLossyNode(t, 1, api.ErrOutcomeUnknown)
	c := mustClient(t, ep)
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{Ack: "sync"})
	var e *Error
	if !errors.Is(err, ErrWriteTimeout) || !errors.As(err, &e) || e.Result == nil || e.Result.Index != 1 ||
		!strings.Contains(e.Message, "found the write applied") {
		t.Fatalf("sync write retried: %v (%+v), want ErrWriteTimeout saying it was applied", err, e)
	}
	mustSameKey(t, s.seen(), 2)
}

func TestWriteRetriesBounded(t *testing.T) {
	s, ep := mustLossyNode(t, 100, api.ErrOutcomeUnknown)
	c := mustClientWith(t, Config{Endpoints: []string{ep}, WriteRetries: 2})
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{}); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Put: %v, want ErrOutcomeUnknown after the retries", err)
	}
	mustSameKey(t, s.seen(), 3)

	s, ep = mustLossyNode(t, 100, api.ErrOutcomeUnknown)
	never := mustClientWith(t, Config{Endpoints: []string{ep}, WriteRetries: -1})
	if _, err := never.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{}); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Put: %v, want ErrOutcomeUnknown", err)
	}
	mustSameKey(t, s.seen(), 1)
}

// A retry that would be sent after the idempotency window is not sent.
func TestIdempotencyWindowExpired(t *testing.T) {
	s, ep := mustLossyNode(t, 1, api.ErrOutcomeUnknown)
	c := mustClientWith(t, Config{Endpoints: []string{ep}, IdempotencyWindow: time.Nanosecond})
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{})
	if !errors.Is(err, ErrIdempotencyExpired) || !errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "outcome is unknown") {
		t.Fatalf("Put: %v, want ErrIdempotencyExpired wrapping the unknown outcome", err)
	}
	mustSameKey(t, s.seen(), 1)
}

// Plain async puts and deletes, and every write of a client without keys,
// are plain writes; every other write is a command with a key.
func TestWhichWritesCarryKeys(t *testing.T) {
	f := apitest.NewFake("n2")
	ep := mustNode(t, f)
	c := mustClient(t, ep)
	plain := mustClientWith(t, Config{Endpoints: []string{ep}, NoIdempotencyKeys: true})
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func() error
		key   bool
	}{
		{"put", func() error { _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); return err }, true},
		{"delete sync", func() error { _, err := c.Delete(ctx, []byte("k"), WriteOptions{Ack: "sync"}); return err }, true},
		{"put async", func() error { _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{Ack: "async"}); return err }, false},
		{"delete async", func() error { _, err := c.Delete(ctx, []byte("k"), WriteOptions{Ack: "async"}); return err }, false},
		{"incr", func() error { _, err := c.Incr(ctx, []byte("n"), 1); return err }, true},
		{"put if index async", func() error {
			_, err := c.PutIfIndex(ctx, []byte("new"), []byte("v"), 0, WriteOptions{Ack: "async"})
			return err
		}, true},
		{"no keys: put", func() error { _, err := plain.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); return err }, false},
	} {
		before := f.LastCommand()
		if err := tc.write(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cmd := f.LastCommand()
		if exec := cmd != before; exec != tc.key || exec && len(cmd.IdemKey) != 32 {
			t.Fatalf("%s: command %+v (through Exec: %v), want a key: %v", tc.name, cmd, exec, tc.key)
		}
	}
	// Without keys, a command is still a command, without a key.
	if _, err := plain.Append(ctx, []byte("a"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if cmd := f.LastCommand(); cmd.Op != command.OpAppend || cmd.IdemKey != nil {
		t.Fatalf("append without keys: %+v", cmd)
	}
}

func TestIncrAppend(t *testing.T) {
	f := apitest.NewFake("n2")
	c := mustClient(t, mustNode(t, f))
	ctx := context.Background()
	for _, tc := range []struct{ by, want int64 }{{1, 1}, {5, 6}, {-10, -4}} {
		if n, err := c.Incr(ctx, []byte("n"), tc.by); err != nil || n != tc.want {
			t.Fatalf("Incr %d: %d %v, want %d", tc.by, n, err, tc.want)
		}
	}
	if n, err := c.Append(ctx, []byte("a"), []byte("ab")); err != nil || n != 2 {
		t.Fatalf("Append: %d %v", n, err)
	}
	if n, err := c.Append(ctx, []byte("a"), nil); err != nil || n != 2 {
		t.Fatalf("Append nothing: %d %v", n, err)
	}
	if n, err := c.Append(ctx, []byte("n"), []byte("x")); err != nil || n != 3 {
		t.Fatalf("Append to n: %d %v", n, err)
	}
	if _, err := c.Incr(ctx, []byte("n"), 1); !errors.Is(err, ErrNotInteger) {
		t.Fatalf("Incr of %q: %v, want ErrNotInteger", "-4x", err)
	}
	if _, err := c.Put(ctx, []byte("max"), []byte("9223372036854775807"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Incr(ctx, []byte("max"), 1); !errors.Is(err, ErrOverflow) {
		t.Fatalf("Incr past the largest integer: %v, want ErrOverflow", err)
	}
}

func TestCompareAndSet(t *testing.T) {
	f := apitest.NewFake("n2")
	c := mustClient(t, mustNode(t, f))
	ctx := context.Background()
	res, err := c.PutIfIndex(ctx, []byte("k"), []byte("v1"), 0, WriteOptions{})
	if err != nil || res.Index != 1 {
		t.Fatalf("create: %+v %v", res, err)
	}
	_, err = c.PutIfIndex(ctx, []byte("k"), []byte("v2"), 0, WriteOptions{})
	var e *Error
	if !errors.Is(err, ErrConditionFailed) || !errors.As(err, &e) || e.CurrentIndex != 1 || e.Status != 412 {
		t.Fatalf("create again: %v (%+v), want ErrConditionFailed at index 1", err, e)
	}
	if res, err = c.PutIfIndex(ctx, []byte("k"), []byte("v2"), e.CurrentIndex, WriteOptions{}); err != nil {
		t.Fatalf("put at the current index: %v", err)
	}
	if _, err := c.DeleteIfIndex(ctx, []byte("k"), 1, WriteOptions{}); !errors.As(err, &e) || e.CurrentIndex != res.Index {
		t.Fatalf("delete at an old index: %v, want ErrConditionFailed at %d", err, res.Index)
	}
	if _, err := c.DeleteIfIndex(ctx, []byte("k"), res.Index, WriteOptions{}); err != nil {
		t.Fatalf("delete at the current index: %v", err)
	}
	if _, ok := f.Value("k"); ok {
		t.Fatal("the key survived")
	}
	if _, err := c.PutIfIndex(ctx, []byte("k"), []byte("v"), 9, WriteOptions{}); !errors.As(err, &e) || e.CurrentIndex != 0 {
		t.Fatalf("put of an absent key at an index: %v, want ErrConditionFailed at 0", err)
	}
}
