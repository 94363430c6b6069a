package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FillStats is what the filler wrote.
type FillStats struct {
	Writes, Failed int64
	Bytes          int64
	// Compacted is when the WALs were first seen compacted
	// (Cluster.Compacted), since the filler began; 0 if never.
	Compacted time.Duration
}

// filler grows the WAL with large majority writes to keys the checks
// ignore (chaos-fill-K), at about rate bytes per second, until the
// leader's WAL and a majority's have been compacted (Cluster.Compacted), or
// ctx ends: a node that joins after that must catch up by snapshot. WAL segments are 64 MiB, so compaction
// under a small --log-retain needs a little more than that much log.
type filler struct {
	c     *Cluster
	rate  int64 // bytes per second
	size  int   // bytes per value
	start time.Time

	writes, failed, bytes atomic.Int64
	compacted             atomic.Int64 // ns since start; 0: not yet
}

func newFiller(c *Cluster, rate int64, size int) *filler {
	return &filler{c: c, rate: rate, size: size}
}

// fillWriters is the number of concurrent fill writers: a majority write
// waits for an fsync and a round trip, which one writer alone would make
// the bound.
const fillWriters = 2

func (f *filler) run(ctx context.Context) {
	f.start = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range fillWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.write(ctx, w)
		}()
	}
	for sleepCtx(ctx, time.Second) {
		if ok, _ := f.c.Compacted(ctx); ok {
			f.compacted.Store(int64(time.Since(f.start)))
			break
		}
	}
	cancel()
	wg.Wait()
}

// write writes values of f.size bytes, each writer at its share of f.rate,
// through the leader it last found.
func (f *filler) write(ctx context.Context, w int) {
	unit := fmt.Sprintf("fill-%d-", w)
	value := strings.Repeat(unit, f.size/len(unit)+1)[:f.size]
	every := time.Duration(int64(time.Second) * int64(f.size) * fillWriters / max(f.rate, 1))
	next := time.Now()
	lead := ""
	hc := NewHTTPClient(f.c.httpAddrs())
	defer hc.Close()
	for i := 0; ctx.Err() == nil; i++ {
		if lead == "" {
			if lead, _ = f.c.Leader(ctx); lead == "" {
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
		}
		octx, cancel := context.WithTimeout(ctx, 2*WriteTimeout)
		res := hc.Put(octx, lead, fmt.Sprintf("chaos-fill-%d-%d", w, i%4), value, "majority")
		cancel()
		f.writes.Add(1)
		if res.Outcome == OK {
			f.bytes.Add(int64(f.size))
		} else {
			f.failed.Add(1)
			lead = ""
		}
		next = next.Add(every)
		if d := time.Until(next); d > 0 {
			sleepCtx(ctx, d)
		} else if d < -time.Second {
			next = time.Now() // fell behind (a fault): do not burst to catch up
		}
	}
}

// Stats returns what was written so far.
func (f *filler) Stats() FillStats {
	return FillStats{Writes: f.writes.Load(), Failed: f.failed.Load(), Bytes: f.bytes.Load(),
		Compacted: time.Duration(f.compacted.Load())}
}

// httpAddrs maps every id (spares included) to its HTTP address.
func (c *Cluster) httpAddrs() map[string]string {
	out := map[string]string{}
	for id, a := range c.Addrs {
		out[id] = a.HTTP
	}
	return out
}
