package resp

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/api/apitest"
)

// BenchmarkRESPSet measures the RESP layer's cost per SET with pipelines of
// 64 commands over one connection, against the in-memory fake service.
func BenchmarkRESPSet(b *testing.B) {
	benchmarkSet(b, DefaultConfig(), redis.Options{})
}

// BenchmarkRESPSetAuth is BenchmarkRESPSet with auth on: the connection
// authenticates once (default password), then each command costs one role
// comparison.
func BenchmarkRESPSetAuth(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Auth, _ = mustAuthenticator(b)
	benchmarkSet(b, cfg, redis.Options{Password: testDefaultPassword})
}

func benchmarkSet(b *testing.B, cfg Config, opt redis.Options) {
	f := apitest.NewFake("n2", "n3")
	opt.Addr, opt.PoolSize = mustServeB(b, f, cfg), 1
	rdb := redis.NewClient(&opt)
	defer rdb.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		p := rdb.Pipeline()
		for j := range 64 {
			p.Set(ctx, fmt.Sprintf("k%d", j), "value", 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		n += 64
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
}

func mustServeB(b *testing.B, f *apitest.Fake, cfg Config) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := New(f, cfg)
	go s.Serve(ln)
	b.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}
