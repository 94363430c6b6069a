package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// crashMidDrain simulates a crash in the middle of a drain of the active
// table: its first `batches` Pebble batches are applied and flushed to disk
// (as Pebble may do on its own between them), then the store stops without
// a flush. It reports false (and does nothing) if the table is too small to
// be cut there.
func (s *Store) crashMidDrain(batches int) (bool, error) {
	s.writeMu.Lock()
	if err := s.waitDrainLocked(); err != nil {
		s.writeMu.Unlock()
		return false, err
	}
	t := s.active
	if len(t.m) <= s.drainChunk*batches {
		s.writeMu.Unlock()
		return false, nil
	}
	if err := s.drain(s.h, t, batches); err != nil {
		s.writeMu.Unlock()
		return false, err
	}
	if err := s.h.db.Flush(); err != nil {
		s.writeMu.Unlock()
		return false, err
	}
	s.writeMu.Unlock()
	return true, s.close(false)
}

func testBufConfig(bytes int64) Config {
	c := testConfig()
	c.WriteBufferBytes = bytes
	return c
}

// A rewritten key reaches Pebble once per drain, with its latest value; Get
// sees every applied write at once, from the buffer or from Pebble.
func TestWriteBufferKeepsLatest(t *testing.T) {
	s, err := Open(t.TempDir(), testBufConfig(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 100; i++ {
		mustApply(t, s, put(i, fmt.Sprintf("k%d", i%5), fmt.Sprint(i)))
		mustGet(t, s, fmt.Sprintf("k%d", i%5), fmt.Sprint(i), i)
	}
	if n := len(s.active.m); n != 5 {
		t.Fatalf("buffer holds %d keys after 100 writes to 5 keys, want 5", n)
	}
	// Nothing reached Pebble yet.
	if idx, _, err := readMeta(s.h.db, s.h.path); err != nil || idx != 0 {
		t.Fatalf("Pebble's applied index %d (%v) before any drain, want 0", idx, err)
	}
	mustApply(t, s, del(101, "k1"))
	mustGet(t, s, "k1", "", 0)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(s.active.m) != 0 {
		t.Fatalf("buffer holds %d keys after Flush", len(s.active.m))
	}
	if idx, _, err := readMeta(s.h.db, s.h.path); err != nil || idx != 101 {
		t.Fatalf("Pebble's applied index %d (%v) after Flush, want 101", idx, err)
	}
	for i := uint64(96); i <= 100; i++ {
		if i%5 == 1 {
			mustGet(t, s, "k1", "", 0)
			continue
		}
		mustGet(t, s, fmt.Sprintf("k%d", i%5), fmt.Sprint(i), i)
	}
	mustCount(t, s, 4)
}

// A full table drains in the background while writes go on into the next.
func TestWriteBufferDrainsWhenFull(t *testing.T) {
	s, err := Open(t.TempDir(), testBufConfig(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.drainChunk = 7
	var log []entry.Entry
	for i := uint64(1); i <= 2000; i++ {
		e := put(i, fmt.Sprintf("key-%d", i%300), fmt.Sprintf("value-%d", i))
		log = append(log, e)
		mustApply(t, s, e)
	}
	s.writeMu.Lock()
	err = s.waitDrainLocked()
	s.writeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	idx, _, err := readMeta(s.h.db, s.h.path)
	if err != nil || idx == 0 || idx == 2000 {
		t.Fatalf("Pebble's applied index %d (%v): want some drains done and the last writes still buffered", idx, err)
	}
	if got, want := dump(t, s), modelAt(log, 2000).dump(); got != want {
		t.Fatalf("store differs from the log:\n%s\nwant:\n%s", got, want)
	}
}

// A crash in the middle of a drain leaves keys newer than the applied
// index; RecoverIndex says how far to replay, and after that replay the
// state is the log prefix again.
func TestCrashMidDrain(t *testing.T) {
	dir := t.TempDir()
	cfg := testBufConfig(1 << 20)
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var log []entry.Entry
	for i := uint64(1); i <= 10; i++ {
		e := put(i, fmt.Sprintf("a%d", i), "old")
		log = append(log, e)
		mustApply(t, s, e)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := uint64(11); i <= 40; i++ {
		e := put(i, fmt.Sprintf("a%d", i%20), "new")
		if i%7 == 0 {
			e = del(i, fmt.Sprintf("a%d", i%20))
		}
		log = append(log, e)
		mustApply(t, s, e)
	}
	s.drainChunk = 4
	if ok, err := s.crashMidDrain(2); !ok || err != nil {
		t.Fatalf("crashMidDrain = %v, %v", ok, err)
	}
	s, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.AppliedIndex() != 10 || s.RecoverIndex() != 40 {
		t.Fatalf("after the crash AppliedIndex %d, RecoverIndex %d; want 10 and 40", s.AppliedIndex(), s.RecoverIndex())
	}
	// Some keys are newer than the applied index: the state is not the
	// prefix at 10 (this is why the node must replay through 40).
	if dump(t, s) == modelAt(log, 10).dump() {
		t.Fatal("the cut drain left no trace in Pebble; the test does not test anything")
	}
	mustApply(t, s, log[10:]...)
	if got, want := dump(t, s), modelAt(log, 40).dump(); got != want {
		t.Fatalf("after replaying through RecoverIndex:\n%s\nwant:\n%s", got, want)
	}
	if s.RecoverIndex() != 40 {
		t.Fatalf("RecoverIndex %d after the replay, want 40", s.RecoverIndex())
	}
}

func TestWriteBufferConfig(t *testing.T) {
	for _, n := range []int64{-1, 1<<30 + 1} {
		if err := testBufConfig(n).Validate(); err == nil {
			t.Errorf("WriteBufferBytes %d validated", n)
		}
	}
	for _, n := range []int64{0, 1, 1 << 30} {
		if err := testBufConfig(n).Validate(); err != nil {
			t.Errorf("WriteBufferBytes %d: %v", n, err)
		}
	}
}

// A large batch (a follower catching up) goes straight to Pebble, after what
// is buffered; a table that held a huge value does not keep its arena.
func TestWriteBufferLargeBatchAndArena(t *testing.T) {
	s, err := Open(t.TempDir(), testBufConfig(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustApply(t, s, put(1, "a", "small"))
	if len(s.active.m) != 1 {
		t.Fatalf("a small batch was not buffered (%d keys buffered)", len(s.active.m))
	}
	big := string(make([]byte, 20<<10)) // >= a quarter of the buffer
	mustApply(t, s, put(2, "a", big), put(3, "b", "x"))
	if len(s.active.m) != 0 {
		t.Fatalf("%d keys buffered after a large batch, want 0 (written out, then applied directly)", len(s.active.m))
	}
	if idx, _, err := readMeta(s.h.db, s.h.path); err != nil || idx != 3 {
		t.Fatalf("Pebble's applied index %d (%v) after a large batch, want 3", idx, err)
	}
	mustGet(t, s, "a", big, 2)
	// One huge value in a small batch: buffered, then drained; the drained
	// table must not keep an arena of that size.
	huge := string(make([]byte, 1<<20))
	mustApply(t, s, put(4, "c", "y"))
	s.bufMu.Lock()
	s.active.put([]byte("h"), 5, []byte(huge), false)
	s.active.last, s.active.term = 5, 1
	s.bufMu.Unlock()
	s.applied.Store(5)
	s.appliedTerm.Store(1)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := cap(s.active.arena); c > 128<<10 {
		t.Fatalf("the emptied table keeps a %d-byte arena, want at most twice WriteBufferBytes", c)
	}
	mustGet(t, s, "h", huge, 5)
}

// The active table drains at a size picked at random in [3/4 limit, limit]
// each time (so that the nodes of a cluster sharing a machine do not all
// drain at once), replayably from Config.drainSeed.
func TestDrainSizesVary(t *testing.T) {
	const limit = 64 << 10
	sizes := func(seed uint64) []int64 {
		cfg := testBufConfig(limit)
		cfg.drainSeed = seed
		s, err := Open(t.TempDir(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var got []int64
		last := s.drainAt
		got = append(got, last)
		for i := uint64(1); len(got) < 40; i++ {
			// (The test is the only writer, so it may read the active
			// table; a drained one belongs to the drain goroutine.)
			before, size := s.active, int64(s.active.size)
			mustApply(t, s, put(i, fmt.Sprintf("key-%d", i), strings.Repeat("v", 200)))
			if s.active == before {
				if n := int64(s.active.size); n >= last {
					t.Fatalf("table holds %d bytes without draining, its drain size is %d", n, last)
				}
				continue
			}
			// A drain started: with the write that reached the size (each
			// write adds under 1 KiB).
			if size >= last || size+1024 <= last {
				t.Fatalf("table of %d bytes drained with the next write, its drain size is %d", size, last)
			}
			last = s.drainAt
			got = append(got, last)
		}
		return got
	}
	a := sizes(7)
	lo, hi := a[0], a[0]
	for _, n := range a {
		if n < limit/4*3 || n > limit {
			t.Fatalf("drain size %d outside [%d, %d]", n, limit/4*3, limit)
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo < limit/8 {
		t.Errorf("40 drain sizes span only %d..%d, want them spread over [%d, %d]", lo, hi, limit/4*3, limit)
	}
	if b := sizes(7); !slices.Equal(a, b) {
		t.Errorf("the same seed picked different drain sizes:\n%v\n%v", a, b)
	}
}
