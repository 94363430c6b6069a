package resp

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// batchFake is the fake service with PutBatch (as internal/node has), which
// records the size of each batch.
type batchFake struct {
	*apitest.Fake
	mu      sync.Mutex
	batches []int
}

func (f *batchFake) PutBatch(ctx context.Context, keys, values [][]byte, w api.WriteOptions) ([]api.WriteResult, []error) {
	f.mu.Lock()
	f.batches = append(f.batches, len(keys))
	f.mu.Unlock()
	res := make([]api.WriteResult, len(keys))
	errs := make([]error, len(keys))
	for i := range keys {
		res[i], errs[i] = f.Put(ctx, keys[i], values[i], w)
	}
	return res, errs
}

func serveService(t *testing.T, svc api.Service) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(svc, DefaultConfig())
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// TestPipelinedSetsBatched sends SETs mixed with other commands in one
// pipeline and checks that runs of plain SETs are batched while replies and
// effects keep command order.
func TestPipelinedSetsBatched(t *testing.T) {
	f := &batchFake{Fake: apitest.NewFake("n2")}
	rdb := mustClient(t, serveService(t, f))
	ctx := context.Background()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "a", "1", 0)
		p.Set(ctx, "a", "2", 0)
		p.Set(ctx, "b", "1", 0)
		p.Get(ctx, "a") // must see the second SET
		p.Set(ctx, "a", "3", 0)
		p.Set(ctx, "", "x", 0) // a bad key fails alone
		p.Set(ctx, "c", "1", 0)
		p.Do(ctx, "SET", "d", "1", "KEEPTTL") // not plain: served on its own
		p.Set(ctx, "a", "4", 0)
		p.Get(ctx, "a")
		p.DBSize(ctx)
		return nil
	})
	if len(cmds) != 11 {
		t.Fatalf("%d replies, want 11 (err %v)", len(cmds), err)
	}
	wantErr := map[int]bool{5: true}
	for i, c := range cmds {
		if got := c.Err() != nil; got != wantErr[i] {
			t.Fatalf("reply %d (%v): err %v", i, c.Args(), c.Err())
		}
	}
	if v := cmds[3].(*redis.StringCmd).Val(); v != "2" {
		t.Fatalf("GET a between the SETs = %q, want 2", v)
	}
	if v := cmds[9].(*redis.StringCmd).Val(); v != "4" {
		t.Fatalf("GET a at the end = %q, want 4", v)
	}
	if v := cmds[10].(*redis.IntCmd).Val(); v != 4 {
		t.Fatalf("DBSIZE = %d, want 4 (a b c d)", v)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) == 0 || f.batches[0] != 3 {
		t.Fatalf("batches %v: want the first three SETs in one batch", f.batches)
	}
}

// TestPipelinedSetErrorsInOrder checks that a failed write inside a batch is
// answered in its own position.
func TestPipelinedSetErrorsInOrder(t *testing.T) {
	f := &batchFake{Fake: apitest.NewFake("n2")}
	rdb := mustClient(t, serveService(t, f))
	ctx := context.Background()
	f.SetMaxValueBytes(4)
	cmds, _ := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "k1", "ok", 0)
		p.Set(ctx, "k2", "too long", 0)
		p.Set(ctx, "k3", "ok", 0)
		return nil
	})
	if len(cmds) != 3 || cmds[0].Err() != nil || cmds[1].Err() == nil || cmds[2].Err() != nil {
		for _, c := range cmds {
			t.Log(c.Args(), c.Err())
		}
		t.Fatal("want OK, error, OK")
	}
	if v, ok := f.Value("k3"); !ok || string(v) != "ok" {
		t.Fatalf("k3 = %q, %v after the batch", v, ok)
	}
}
