package wal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
)

// benchConfigs runs f with preallocated segments (the default) and with
// segments that grow by extension.
func benchConfigs(b *testing.B, f func(b *testing.B, cfg Config)) {
	for _, prealloc := range []bool{true, false} {
		b.Run(preallocName(prealloc), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Preallocate = prealloc
			f(b, cfg)
		})
	}
}

// BenchmarkAppendSync measures durable appends (fdatasync on the real file
// system) of one entry with a 100-byte value per call, from 1 to 256
// concurrent writers sharing fsyncs through group commit, with and without
// preallocated segments. Creating the log (and zero-filling its first
// segment) is not timed.
func BenchmarkAppendSync(b *testing.B) {
	benchConfigs(b, benchAppendSync)
}

func benchAppendSync(b *testing.B, cfg Config) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := mustOpen(b, b.TempDir(), cfg)
			defer l.Close()
			value := make([]byte, 100)
			var (
				orderMu   sync.Mutex
				next      uint64 = 1
				remaining atomic.Int64
				wg        sync.WaitGroup
				failed    atomic.Value
			)
			remaining.Store(int64(b.N))
			b.SetBytes(int64((&entry.Entry{Key: []byte("key-000000"), Value: value}).Size()))
			b.ResetTimer()
			start, cpu0 := time.Now(), processCPU()
			for range writers {
				wg.Go(func() {
					ents := []entry.Entry{{Term: 1, Kind: entry.KindPut, Key: []byte("key-000000"), Value: value}}
					for remaining.Add(-1) >= 0 {
						orderMu.Lock()
						ents[0].Index = next
						next++
						tk, err := l.Submit(ents)
						orderMu.Unlock()
						if err == nil {
							err = l.Wait(tk)
						}
						if err != nil {
							failed.Store(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed, cpu := time.Since(start), processCPU()-cpu0
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			st := l.Stats()
			b.ReportMetric(float64(st.Entries)/float64(max(st.Flushes, 1)), "entries/fsync")
			reportCPU(b, cpu, st.Flushes)
		})
	}
}

// BenchmarkAppendBatch measures one writer appending batches of 64 entries (as
// the node does with a Ready batch), durably, with and without preallocated
// segments.
func BenchmarkAppendBatch(b *testing.B) {
	benchConfigs(b, benchAppendBatch)
}

func benchAppendBatch(b *testing.B, cfg Config) {
	l := mustOpen(b, b.TempDir(), cfg)
	defer l.Close()
	ents := makeEntries(1, 64, constTerm(1), 100)
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	next := uint64(1)
	for range b.N {
		for k := range ents {
			ents[k].Index = next + uint64(k)
		}
		if err := l.Append(ents); err != nil {
			b.Fatal(err)
		}
		next += uint64(len(ents))
	}
	b.ReportMetric(float64(b.N*len(ents))/time.Since(start).Seconds(), "entries/s")
	reportCPU(b, processCPU()-cpu0, l.Stats().Flushes)
}

// reportCPU reports the process CPU time (user + system, all goroutines) per
// fsync (group commit), when the platform measures it.
func reportCPU(b *testing.B, cpu time.Duration, flushes uint64) {
	if cpu > 0 && flushes > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(flushes), "cpu-µs/fsync")
	}
}

// filledLog returns a log (real file system, 1 MiB segments) holding n
// entries with 100-byte values.
func filledLog(b *testing.B, n int) *Log {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 1 << 20
	cfg.NoSync = true // filling only
	l := mustOpen(b, b.TempDir(), cfg)
	for first := 1; first <= n; first += 1000 {
		mustAppend(b, l, makeEntries(uint64(first), min(1000, n-first+1), constTerm(1), 100))
	}
	return l
}

// BenchmarkEntries measures reading (and verifying and decoding) ranges of
// 100 entries at random places in a 100,000-entry log.
func BenchmarkEntries(b *testing.B) {
	const total, span = 100_000, 100
	l := filledLog(b, total)
	defer l.Close()
	b.ResetTimer()
	start := time.Now()
	lo := uint64(1)
	for range b.N {
		ents, err := l.Entries(lo, lo+span, 1<<30)
		if err != nil || len(ents) != span {
			b.Fatalf("Entries: %d, %v", len(ents), err)
		}
		lo = (lo+7919)%(total-span) + 1
	}
	b.ReportMetric(float64(b.N*span)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkReadRaw measures reading (and verifying) the raw records of ranges
// of 100 entries, reusing the destination buffer, as catch-up does.
func BenchmarkReadRaw(b *testing.B) {
	const total, span = 100_000, 100
	l := filledLog(b, total)
	defer l.Close()
	var buf []byte
	b.ResetTimer()
	start := time.Now()
	lo := uint64(1)
	for range b.N {
		var next uint64
		var err error
		buf, next, err = l.ReadRaw(buf[:0], lo, lo+span, 1<<30)
		if err != nil || next != lo+span {
			b.Fatalf("ReadRaw: next %d, %v", next, err)
		}
		lo = (lo+7919)%(total-span) + 1
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N*span)/time.Since(start).Seconds(), "entries/s")
}
