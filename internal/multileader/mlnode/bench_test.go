package mlnode

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
)

// BenchmarkPutLocal: 64 concurrent ack=local writes spread over the three
// nodes of an in-memory cluster (no sockets: the engine, its store and its
// core). Profile it with -cpuprofile.
func BenchmarkPutLocal(b *testing.B) {
	tc := newCluster(b, 3, func(c *Config) { c.Tick = 10 * time.Millisecond })
	value := make([]byte, 100)
	var seq atomic.Uint64
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := seq.Add(1)
			n := tc.nodes[tc.ids[i%3]]
			if _, err := n.Put(ctx, fmt.Appendf(nil, "key-%d", i%10000), value, api.WriteOptions{Default: true}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}
