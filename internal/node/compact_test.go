package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/vfs"
	"github.com/trireme-db/trireme/internal/wal"
)

func TestRetainPoint(t *testing.T) {
	segs := []wal.SegmentInfo{
		{First: 1, Last: 99, Bytes: 100},
		{First: 100, Last: 199, Bytes: 100},
		{First: 200, Last: 299, Bytes: 100},
		{First: 300, Last: 349, Bytes: 50},
	}
	tests := []struct {
		retain int64
		want   uint64
	}{
		{0, 300},
		{50, 300},
		{51, 200},
		{150, 200},
		{151, 100},
		{350, 1},
		{10_000, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.retain), func(t *testing.T) {
			if got := retainPoint(segs, tt.retain); got != tt.want {
				t.Fatalf("retainPoint(%d) = %d, want %d", tt.retain, got, tt.want)
			}
		})
	}
	for to, want := range map[uint64]int{0: 0, 1: 0, 99: 0, 100: 1, 299: 2, 300: 3, 10_000: 3} {
		if got := droppable(segs, to); got != want {
			t.Errorf("droppable(%d) = %d, want %d", to, got, want)
		}
	}
}

// fakeStore is a compactStore whose indexes the test sets; Flush makes the
// applied index durable unless flushes are off.
type fakeStore struct {
	applied, durable uint64
	flushOff         bool
	flushes          int
}

func (s *fakeStore) AppliedIndex() uint64 { return s.applied }
func (s *fakeStore) DurableIndex() uint64 { return s.durable }
func (s *fakeStore) Flush() error {
	s.flushes++
	if !s.flushOff {
		s.durable = s.applied
	}
	return nil
}

func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestCompactionKeepsWhatTheStoreNeeds: whatever the retention budget, the
// compactor never drops an entry above the store's DurableIndex; it flushes
// the store only when that lets a segment go; and with the store durable it
// keeps at least the budget.
func TestCompactionKeepsWhatTheStoreNeeds(t *testing.T) {
	cfg := wal.DefaultConfig()
	cfg.FS = vfs.NewMem()
	cfg.SegmentBytes = 4 << 10
	cfg.Preallocate = false
	log, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var last uint64
	appendN := func(n int) {
		ents := make([]entry.Entry, n)
		for k := range ents {
			last++
			ents[k] = entry.Entry{Term: 1, Index: last, Kind: entry.KindPut, Key: fmt.Appendf(nil, "k%d", last), Value: bytes.Repeat([]byte("v"), 200)}
		}
		if err := log.Append(ents); err != nil {
			t.Fatal(err)
		}
	}
	appendN(400) // about 22 segments
	m, err := newMetrics(nil, "n1")
	if err != nil {
		t.Fatal(err)
	}
	const retain = 10 << 10
	st := &fakeStore{applied: last, durable: 37, flushOff: true}
	c := newCompactor(log, st, retain, time.Hour, testLogger(t), m, func(err error) { t.Errorf("fault: %v", err) })
	checkKept := func(what string) {
		t.Helper()
		if first := log.FirstIndex(); first > st.durable+1 {
			t.Fatalf("%s: WAL first index %d is past the store's durable index %d", what, first, st.durable)
		}
		if got := gaugeValue(t, m.walFirstIndex); uint64(got) != log.FirstIndex() {
			t.Fatalf("%s: trireme_wal_first_index = %v, WAL first index %d", what, got, log.FirstIndex())
		}
	}
	for _, durable := range []uint64{0, 37, 38, 150, 151} {
		st.durable = durable
		if err := c.step(); err != nil {
			t.Fatal(err)
		}
		checkKept(fmt.Sprintf("durable %d, flushes not advancing it", durable))
		if log.FirstIndex() == 1 && durable > 100 {
			t.Fatalf("nothing compacted with the store durable at %d", durable)
		}
	}
	// Flushing moves the durable index: down to the retention budget.
	st.flushOff = false
	flushes := st.flushes
	if err := c.step(); err != nil {
		t.Fatal(err)
	}
	if st.flushes != flushes+1 {
		t.Fatalf("%d flushes, want 1", st.flushes-flushes)
	}
	checkKept("after a flush")
	segs := log.Segments()
	if total := totalBytes(segs); total < retain || total-segs[0].Bytes >= retain {
		t.Fatalf("WAL holds %d bytes in %d segments; want the fewest newest segments holding %d", total, len(segs), retain)
	}
	if got := gaugeValue(t, m.walBytes); int64(got) != totalBytes(segs) {
		t.Fatalf("trireme_wal_bytes = %v, want %d", got, totalBytes(segs))
	}
	if counterValue(t, m.walCompactions) == 0 {
		t.Fatal("trireme_wal_compactions_total is 0")
	}
	// Nothing more to drop: no flush, no compaction.
	compactions := counterValue(t, m.walCompactions)
	flushes = st.flushes
	if err := c.step(); err != nil {
		t.Fatal(err)
	}
	if st.flushes != flushes || counterValue(t, m.walCompactions) != compactions {
		t.Fatalf("an idle step flushed (%d) or compacted (%v)", st.flushes-flushes, counterValue(t, m.walCompactions)-compactions)
	}
	// Entries beyond the store's applied index are never dropped, flush or not.
	appendN(200)
	st.applied, st.durable = last-150, 0
	if err := c.step(); err != nil {
		t.Fatal(err)
	}
	checkKept("store behind the log")
	if first := log.FirstIndex(); first > last-150+1 {
		t.Fatalf("first index %d past the store's applied index %d", first, last-150)
	}
}

// walDirBytes is the size of the files in a WAL directory.
func walDirBytes(t *testing.T, dir string) (int64, int) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	files := 0
	for _, de := range des {
		fi, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // the compactor removed it since ReadDir: not there any more
		}
		if err != nil {
			t.Fatal(err)
		}
		sum += fi.Size()
		files++
	}
	return sum, files
}

// TestLogCompaction writes many segments' worth to a node with 1 MiB
// segments and a 2 MiB budget: the WAL directory stays within the budget
// plus a few segments, and a restart replays from the store's state and
// serves every key.
func TestLogCompaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	members := []Member{{"n1", "127.0.0.1:7001"}}
	cfg := soloConfig(t, dir, members)
	cfg.WAL.SegmentBytes = 1 << 20
	cfg.LogRetainBytes = 2 << 20
	cfg.LogCompactInterval = 20 * time.Millisecond
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Stop() }()
	mustLead(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const keys, batch = 800, 40
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 16<<10) }
	walDir := filepath.Join(dir, walDir)
	const slack = 4 << 20 // the oldest segment kept, the active one and its spare (1 MiB each), and a segment written between two checks
	var maxBytes int64
	for i := 0; i < keys; i += batch {
		var ks, vs [][]byte
		for j := i; j < i+batch; j++ {
			ks = append(ks, fmt.Appendf(nil, "key-%04d", j))
			vs = append(vs, value(j))
		}
		if _, errs := n.PutBatch(ctx, ks, vs, api.WriteOptions{Default: true}); errs != nil {
			for _, err := range errs {
				if err != nil {
					t.Fatalf("put batch at %d: %v", i, err)
				}
			}
		}
		size, _ := walDirBytes(t, walDir)
		maxBytes = max(maxBytes, size)
	}
	// Written: about 13 MiB. Let the compactor catch up with the last writes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		size, files := walDirBytes(t, walDir)
		if size <= cfg.LogRetainBytes+slack {
			t.Logf("WAL directory: %d bytes in %d files (at most %d seen while writing)", size, files, maxBytes)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL directory holds %d bytes in %d files, want at most %d", size, files, cfg.LogRetainBytes+slack)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if maxBytes > cfg.LogRetainBytes+2*slack {
		t.Errorf("WAL directory reached %d bytes while writing, want at most %d", maxBytes, cfg.LogRetainBytes+2*slack)
	}
	first := n.wal.FirstIndex()
	if first <= 1 || first > n.store.DurableIndex()+1 {
		t.Fatalf("WAL first index %d; store durable index %d", first, n.store.DurableIndex())
	}
	if c := counterValue(t, n.m.walCompactions); c == 0 {
		t.Fatal("trireme_wal_compactions_total is 0")
	}
	if g := gaugeValue(t, n.m.walFirstIndex); g <= 1 {
		t.Fatalf("trireme_wal_first_index = %v", g)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	// A restart replays from the store's applied index: the WAL no longer
	// starts at 1.
	if n, err = Start(cfg); err != nil {
		t.Fatal(err)
	}
	if first, applied := n.wal.FirstIndex(), n.store.AppliedIndex(); first <= 1 || first > applied+1 {
		t.Fatalf("after restart: WAL first index %d, store applied index %d", first, applied)
	}
	for i := range keys {
		got, err := n.Get(ctx, fmt.Appendf(nil, "key-%04d", i), api.Stale)
		if err != nil || !got.Found || !bytes.Equal(got.Value, value(i)) {
			t.Fatalf("key-%04d after restart: found %v, %d bytes, %v", i, got.Found, len(got.Value), err)
		}
	}
	mustLead(t, n)
	if _, err := n.Put(ctx, []byte("after"), []byte("restart"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	first = n.wal.FirstIndex()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	// A store that lost what it had made durable (here: all of it) cannot
	// be rebuilt from a compacted WAL: the node refuses to start, naming
	// both indexes and both directories.
	if err := os.RemoveAll(filepath.Join(dir, storeDir)); err != nil {
		t.Fatal(err)
	}
	n2, err := Start(cfg)
	if err == nil {
		n2.Stop()
		t.Fatal("started with a WAL compacted past an empty store")
	}
	for _, want := range []string{fmt.Sprintf("starts at index %d", first), "through index 0", walDir, filepath.Join(dir, storeDir)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("start error %q does not name %q", err, want)
		}
	}
}

// TestWALStorageCompacted: reads below the compacted WAL's first index are
// repl.ErrUnavailable (the core then asks for a snapshot), never a fatal
// storage error.
func TestWALStorageCompacted(t *testing.T) {
	cfg := wal.DefaultConfig()
	cfg.FS = vfs.NewMem()
	cfg.SegmentBytes = 2 << 10
	cfg.Preallocate = false
	log, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ents := make([]entry.Entry, 100)
	for k := range ents {
		ents[k] = entry.Entry{Term: 2, Index: uint64(k + 1), Kind: entry.KindPut, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100)}
	}
	if err := log.Append(ents); err != nil {
		t.Fatal(err)
	}
	if err := log.DropBefore(60); err != nil {
		t.Fatal(err)
	}
	first := log.FirstIndex()
	if first <= 2 {
		t.Fatalf("first index %d: nothing compacted", first)
	}
	var fatal error
	s := walStorage{log: log, fatal: func(err error) { fatal = err }}
	if term, err := s.Term(first - 1); err != nil || term != 2 {
		t.Fatalf("Term(first-1) = %d, %v", term, err)
	}
	if _, err := s.Term(first - 2); !errors.Is(err, repl.ErrUnavailable) {
		t.Fatalf("Term below the first index: %v, want repl.ErrUnavailable", err)
	}
	if _, err := s.Entries(first-1, first+1, 1<<20); !errors.Is(err, repl.ErrUnavailable) {
		t.Fatalf("Entries below the first index: %v, want repl.ErrUnavailable", err)
	}
	if fatal != nil {
		t.Fatalf("a read below the first index was reported fatal: %v", fatal)
	}
}
