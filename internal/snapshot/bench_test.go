package snapshot

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkTransfer sends a checkpoint of a store of about 256 MiB
// (TRIREME_SNAPSHOT_BENCH_MIB overrides) over a loopback TCP connection into
// a fresh staging directory, fsyncs included, with the default Config. In
// the same run it writes and fsyncs the same number of bytes to one file in
// the same directory, the disk's sequential write bandwidth, and reports
// both and their ratio:
//
//	go test -run '^$' -bench Transfer -benchtime 3x ./internal/snapshot
func BenchmarkTransfer(b *testing.B) {
	mib := 256
	if v := os.Getenv("TRIREME_SNAPSHOT_BENCH_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("TRIREME_SNAPSHOT_BENCH_MIB=%q: %v", v, err)
		}
		mib = n
	}
	base := b.TempDir()
	src := mustStore(b, filepath.Join(base, "src"))
	mustFill(b, src, mib<<10, 1000, 1) // random 1000-byte values: incompressible
	ck := filepath.Join(base, "ckpt")
	index, term, err := src.Checkpoint(ck)
	if err != nil {
		b.Fatal(err)
	}
	_, total := manifestTotal(b, ck)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Logger = testConfig().Logger
	var netTime, diskTime time.Duration
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		staging := filepath.Join(base, "staging"+strconv.Itoa(i))
		start := time.Now()
		var wg sync.WaitGroup
		var serr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				serr = err
				return
			}
			defer c.Close()
			_, serr = Send(context.Background(), c, ck, Identity{Index: index, Term: term}, cfg, nil)
		}()
		c, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		_, rerr := Receive(context.Background(), c, staging, cfg, nil, nil)
		c.Close()
		wg.Wait()
		if serr != nil || rerr != nil {
			b.Fatalf("Send: %v, Receive: %v", serr, rerr)
		}
		netTime += time.Since(start)
		b.StopTimer()
		os.RemoveAll(staging)
		diskTime += timeSequentialWrite(b, filepath.Join(base, "seq"), total)
		b.StartTimer()
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(total) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(netTime), "transfer-MB/s")
	b.ReportMetric(mbps(diskTime), "disk-seq-MB/s")
	b.ReportMetric(mbps(netTime)/mbps(diskTime), "transfer/disk")
}

// timeSequentialWrite writes n bytes to path in 1 MiB writes, fsyncs, and
// returns how long that took.
func timeSequentialWrite(b *testing.B, path string, n int64) time.Duration {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for w := int64(0); w < n; w += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n-w)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	d := time.Since(start)
	os.Remove(path)
	return d
}
