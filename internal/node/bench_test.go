package node

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/store"
)

// BenchmarkClusterPut measures writes through the leader of a 3-node cluster
// over loopback TCP, many concurrent writers (group commit), per ack mode.
// go test -run XXX -bench 'ClusterPut//64' -benchtime 2s ./internal/node/
// (writes/s, and each write's latency: p50-ms, p99-ms).
func BenchmarkClusterPut(b *testing.B) {
	for _, ack := range []api.Ack{{Mode: api.AckAsync}, {Mode: api.AckMajority}, {Mode: api.AckSync}} {
		b.Run(ack.Mode.String()+"/1-client", func(b *testing.B) {
			c := benchCluster(b)
			l := c.nodes[c.leader()]
			value := make([]byte, 100)
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := l.Put(ctx, fmt.Appendf(nil, "key-%d", i), value, api.WriteOptions{Ack: ack}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
		b.Run(ack.Mode.String()+"/64-clients", func(b *testing.B) {
			c := benchCluster(b)
			l := c.nodes[c.leader()]
			value := make([]byte, 100)
			var seq atomic.Uint64
			b.SetParallelism(32) // x GOMAXPROCS (2 here) = 64 writers
			b.ResetTimer()
			start := time.Now()
			var mu sync.Mutex
			var lat []time.Duration
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				var mine []time.Duration
				for pb.Next() {
					k := fmt.Appendf(nil, "key-%d", seq.Add(1))
					t0 := time.Now()
					if _, err := l.Put(ctx, k, value, api.WriteOptions{Ack: ack}); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
			reportLatency(b, lat)
		})
	}
}

// BenchmarkClusterPutKeyed measures what an idempotency key costs a write:
// 64 concurrent majority writes through the leader of a 3-node TCP cluster,
// plain puts against blind SETs carrying a fresh Idempotency-Key each (what
// the HTTP API proposes for PUT with the header). Compare the two in one run:
// go test -run XXX -bench 'ClusterPutKeyed' -benchtime 3s -count 5 ./internal/node/
func BenchmarkClusterPutKeyed(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "plain"
		if keyed {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) {
			c := benchCluster(b)
			l := c.nodes[c.leader()]
			value := make([]byte, 100)
			w := api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}}
			var seq atomic.Uint64
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := seq.Add(1)
					k := fmt.Appendf(nil, "key-%d", i%10000)
					var err error
					if keyed {
						cmd := &command.Command{Op: command.OpSet, Key: k, Value: value, IdemKey: fmt.Appendf(nil, "%016x%016x", i, i*7919)}
						_, err = l.Exec(ctx, cmd, w)
					} else {
						_, err = l.Put(ctx, k, value, w)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

// BenchmarkFailover measures, with the default timings (50 ms heartbeat,
// 300 ms election timeout), the time from stopping the leader of a 3-node TCP
// cluster to the first successful majority write through a surviving node.
// go test -run XXX -bench Failover -benchtime 10x ./internal/node/
func BenchmarkFailover(b *testing.B) {
	c := benchCluster(b)
	var total time.Duration
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		li := c.leader()
		fi := c.follower(li)
		mustPut(b, c.nodes[li], "before", fmt.Sprint(i), api.Ack{Mode: api.AckMajority})
		start := time.Now()
		c.stop(li)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := c.nodes[fi].Put(ctx, []byte("after"), []byte("x"), api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}})
			cancel()
			if err == nil {
				break
			}
			if time.Since(start) > 20*time.Second {
				b.Fatalf("no successful write 20s after the leader stopped: %v", err)
			}
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		c.start(li)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// benchCluster is a 3-node TCP cluster with the default timings (the test
// clusters use shorter ones to run faster) and, unless
// TRIREME_BENCH_SMALL_STORE is set, the default store settings (the test
// clusters use a 1 MiB memtable and block cache, which makes Pebble flush
// and compact all the time).
func benchCluster(b *testing.B) *testCluster {
	c := newTestCluster(b, 3, false)
	for i := range c.cfgs {
		c.stop(i)
		c.cfgs[i].Heartbeat = DefaultConfig().Heartbeat
		c.cfgs[i].ElectionTimeout = DefaultConfig().ElectionTimeout
		if os.Getenv("TRIREME_BENCH_SMALL_STORE") == "" {
			c.cfgs[i].Store = store.DefaultConfig()
		}
		c.start(i)
	}
	return c
}

// reportLatency reports the median and 99th percentile of lat in ms.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
