package store

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

// benchStore opens a store with production-like settings.
func benchStore(b *testing.B) *Store {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Logger = testConfig().Logger
	if v := os.Getenv("TRIREME_STORE_BENCH_MEMTABLE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("TRIREME_STORE_BENCH_MEMTABLE=%q: %v", v, err)
		}
		cfg.MemTableBytes = n
	}
	if v := os.Getenv("TRIREME_STORE_BENCH_WBUF"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("TRIREME_STORE_BENCH_WBUF=%q: %v", v, err)
		}
		cfg.WriteBufferBytes = n
	}
	s, err := Open(b.TempDir(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

const benchKeys = 50_000

func benchKey(dst []byte, i int) []byte { return fmt.Appendf(dst[:0], "key%08d", i) }

// preload writes benchKeys keys with 100-byte values and flushes.
func preload(b *testing.B, s *Store) {
	b.Helper()
	val := bytes.Repeat([]byte("v"), 100)
	ents := make([]entry.Entry, 0, 1000)
	for i := 0; i < benchKeys; i++ {
		ents = append(ents, entry.Entry{Term: 1, Index: uint64(i + 1), Kind: entry.KindPut, Key: benchKey(nil, i), Value: val})
		if len(ents) == cap(ents) {
			mustApply(b, s, ents...)
			ents = ents[:0]
		}
	}
	if len(ents) > 0 {
		mustApply(b, s, ents...)
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApply applies batches of puts with 100-byte values over a keyspace
// of 1M keys (mostly inserts, some overwrites), and over 10,000 keys (the
// benchmark's: mostly overwrites, where the write buffer saves memtable
// inserts). TRIREME_STORE_BENCH_WBUF sets Config.WriteBufferBytes (0: off).
func BenchmarkApply(b *testing.B) {
	for _, c := range []struct{ batch, keys int }{{1, 1_000_000}, {64, 1_000_000}, {512, 1_000_000}, {64, 10_000}} {
		batch := c.batch
		b.Run(fmt.Sprintf("batch=%d/keys=%d", batch, c.keys), func(b *testing.B) {
			s := benchStore(b)
			rng := rand.New(rand.NewPCG(1, 2))
			val := bytes.Repeat([]byte("v"), 100)
			ents := make([]entry.Entry, batch)
			keys := make([][]byte, batch)
			for i := range ents {
				keys[i] = make([]byte, 0, 16)
				ents[i] = entry.Entry{Term: 1, Kind: entry.KindPut, Value: val}
			}
			next := uint64(1)
			b.SetBytes(int64(batch * 100))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range ents {
					keys[i] = benchKey(keys[i], rng.IntN(c.keys))
					ents[i].Key = keys[i]
					ents[i].Index = next
					next++
				}
				if err := s.Apply(ents); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkApplyCommands applies batches of 64 entries of 100-byte values
// over 1M keys as commands: a blind put with an idempotency key (what the Go
// client sends), and INCR of 10,000 counters. Compare with
// BenchmarkApply/batch=64/keys=1000000 (plain puts).
func BenchmarkApplyCommands(b *testing.B) {
	for _, kind := range []string{"idempotent-put", "incr"} {
		b.Run(kind, func(b *testing.B) {
			s := benchStore(b)
			rng := rand.New(rand.NewPCG(1, 2))
			val := bytes.Repeat([]byte("v"), 100)
			const batch = 64
			ents := make([]entry.Entry, batch)
			next := uint64(1)
			var key []byte
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range ents {
					var c command.Command
					if kind == "incr" {
						key = benchKey(key[:0], rng.IntN(10_000))
						c = command.Command{Op: command.OpIncr, Key: key, Delta: 1}
					} else {
						key = benchKey(key[:0], rng.IntN(1_000_000))
						c = command.Command{Op: command.OpSet, Key: key, Value: val, IdemKey: fmt.Appendf(nil, "%032x", next)}
					}
					c.Stamp(int64(next)*int64(time.Millisecond), int64(10*time.Minute), 1_000_000, 1<<20)
					ents[i] = entry.Entry{Term: 1, Index: next, Kind: entry.KindCommand, Key: c.Key, Value: command.Encode(nil, &c)}
					next++
				}
				if err := s.Apply(ents); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkGet reads random existing keys (flushed to sstables, warm cache).
func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	preload(b, s)
	rng := rand.New(rand.NewPCG(3, 4))
	key := make([]byte, 0, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		key = benchKey(key, rng.IntN(benchKeys))
		_, _, found, err := s.Get(key)
		if err != nil || !found {
			b.Fatalf("Get(%s): found=%v err=%v", key, found, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}

// BenchmarkScan scans 100 keys from a random start in a View.
func BenchmarkScan(b *testing.B) {
	s := benchStore(b)
	preload(b, s)
	rng := rand.New(rand.NewPCG(5, 6))
	start := make([]byte, 0, 16)
	const limit = 100
	var keys int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := s.View()
		if err != nil {
			b.Fatal(err)
		}
		start = benchKey(start, rng.IntN(benchKeys-limit))
		err = v.Scan(start, nil, limit, func(k, val []byte, ver uint64) bool {
			keys++
			return true
		})
		v.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	if keys != b.N*limit {
		b.Fatalf("scanned %d keys, want %d", keys, b.N*limit)
	}
	b.ReportMetric(float64(keys)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkExport measures snapshot export throughput.
func BenchmarkExport(b *testing.B) {
	s := benchStore(b)
	preload(b, s)
	var n int64
	b.ResetTimer()
	for b.Loop() {
		cw := &countWriter{}
		if _, err := s.Export(cw, 0, nil); err != nil {
			b.Fatal(err)
		}
		n = cw.n
	}
	b.SetBytes(n)
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// BenchmarkCount measures Count over 50,000 keys: "scan" with nothing
// remembered (after Open, or after more than 65,536 keys were written since
// the last Count), "after-64-writes" when 64 keys were written since the
// last Count (one point read each).
func BenchmarkCount(b *testing.B) {
	b.Run("scan", func(b *testing.B) {
		s := benchStore(b)
		preload(b, s)
		b.ResetTimer()
		for b.Loop() {
			s.writeMu.Lock()
			s.ctr.drop()
			s.writeMu.Unlock()
			if n, err := s.Count(); err != nil || n != benchKeys {
				b.Fatalf("Count = %d, %v", n, err)
			}
		}
	})
	b.Run("after-64-writes", func(b *testing.B) {
		s := benchStore(b)
		preload(b, s)
		if _, err := s.Count(); err != nil {
			b.Fatal(err)
		}
		val := bytes.Repeat([]byte("v"), 100)
		ents := make([]entry.Entry, 64)
		next := uint64(benchKeys + 1)
		rng := rand.New(rand.NewPCG(3, 4))
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			for i := range ents {
				ents[i] = entry.Entry{Term: 1, Index: next, Kind: entry.KindPut, Key: benchKey(nil, rng.IntN(2*benchKeys)), Value: val}
				next++
			}
			mustApply(b, s, ents...)
			b.StartTimer()
			if _, err := s.Count(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCheckpoint takes checkpoints of a store of about 64 MiB while
// another goroutine applies single-entry batches, and reports how long a
// checkpoint takes and the longest Apply during checkpoints (against the
// longest Apply without one, over the same time).
func BenchmarkCheckpoint(b *testing.B) {
	s := benchStore(b)
	value := bytes.Repeat([]byte("v"), 1000)
	const keys = 64 << 10
	next := uint64(1)
	for i := 0; i < keys; i += 256 {
		ents := make([]entry.Entry, 0, 256)
		for j := i; j < i+256; j++ {
			ents = append(ents, entry.Entry{Term: 1, Index: next, Kind: entry.KindPut, Key: []byte(fmt.Sprintf("key%08d", j)), Value: value})
			next++
		}
		if err := s.Apply(ents); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	var worst time.Duration
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := next; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := entry.Entry{Term: 1, Index: i, Kind: entry.KindPut, Key: []byte(fmt.Sprintf("key%08d", rng.IntN(keys))), Value: value}
			start := time.Now()
			if err := s.Apply([]entry.Entry{e}); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(start)
			mu.Lock()
			worst = max(worst, d)
			mu.Unlock()
		}
	}()
	takeWorst := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		w := worst
		worst = 0
		return w
	}
	base := b.TempDir()
	var total, stalled, quiet time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		time.Sleep(50 * time.Millisecond)
		quiet = max(quiet, takeWorst())
		dir := filepath.Join(base, strconv.Itoa(i))
		start := time.Now()
		if _, _, err := s.Checkpoint(dir); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		stalled = max(stalled, takeWorst())
		os.RemoveAll(dir)
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/checkpoint")
	b.ReportMetric(float64(stalled.Microseconds())/1000, "max-apply-ms-during")
	b.ReportMetric(float64(quiet.Microseconds())/1000, "max-apply-ms-between")
}
