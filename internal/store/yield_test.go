package store

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/trireme-db/trireme/internal/entry"
)

// TestPebbleWritesYield checks that the files Pebble writes for the store
// yield the processor on each write (so a flush or compaction on a node with
// GOMAXPROCS=1 lets the run loop in) and still write what they are given.
func TestPebbleWritesYield(t *testing.T) {
	for _, name := range []string{"000001.sst", "MANIFEST-000001"} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			cfg.BackgroundPace = 0
			s := &Store{cfg: cfg, log: cfg.Logger}
			fs := s.pebbleOptions().FS
			path := filepath.Join(t.TempDir(), name)
			f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.(*pacedFile); !ok {
				t.Fatalf("Pebble's FS creates %T, want a *pacedFile", f)
			}

			// Each write yields first. (Counting the calls rather than
			// watching the scheduler: whom Go runs after a yield is not
			// deterministic.)
			var yields int
			defer func(y func()) { yield = y }(yield)
			yield = func() { yields++; runtime.Gosched() }
			want := bytes.Repeat([]byte("trireme "), 512)
			for range 3 {
				if _, err := f.Write(want); err != nil {
					t.Fatal(err)
				}
			}
			if yields != 3 {
				t.Errorf("3 writes yielded %d times, want 3", yields)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			r, err := fs.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.Repeat(want, 3)) {
				t.Fatalf("read back %d bytes, want the %d written", len(got), 3*len(want))
			}
		})
	}
}

// TestBackgroundPacing checks pacedFS's pauses: an sstable's writer pauses
// BackgroundPace times its work between writes (work counted up to
// maxWorkGap, a pause at most maxPause), and not at all while paced writes
// are held, while Pebble stalls writes, for files other than sstables, or
// with the pacing off.
func TestBackgroundPacing(t *testing.T) {
	const work = 2 * time.Millisecond // simulated work between two writes
	tests := []struct {
		name  string
		file  string
		pace  float64
		setup func(fs *pacedFS) (undo func())
		gap   time.Duration
		// the pauses, if any, must lie in [lo, hi]
		lo, hi  time.Duration
		pausing bool
	}{
		{name: "sstable", file: "000007.sst", pace: 2, gap: work, lo: 2 * work, hi: maxPause, pausing: true},
		{name: "long gap", file: "000007.sst", pace: 2, gap: 30 * time.Millisecond, lo: maxPause, hi: maxPause, pausing: true},
		{name: "held", file: "000007.sst", pace: 2, gap: work, setup: func(fs *pacedFS) func() { return fs.holdPacing() }},
		{name: "write stall", file: "000007.sst", pace: 2, gap: work, setup: func(fs *pacedFS) func() {
			fs.stalled.Store(true)
			return func() { fs.stalled.Store(false) }
		}},
		{name: "quiet", file: "000007.sst", pace: 2, gap: work, setup: func(fs *pacedFS) func() {
			fs.quiet(time.Minute)
			return func() {}
		}},
		{name: "manifest", file: "MANIFEST-000002", pace: 2, gap: work},
		{name: "pacing off", file: "000007.sst", pace: 0, gap: work},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newPacedFS(vfs.Default, tt.pace)
			var pauses []time.Duration
			fs.pause = func(d time.Duration) { pauses = append(pauses, d) }
			if tt.setup != nil {
				defer tt.setup(fs)()
			}
			f, err := fs.Create(filepath.Join(t.TempDir(), tt.file), vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			const writes = 6
			for range writes {
				if _, err := f.Write([]byte("block")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tt.gap)
			}
			if !tt.pausing {
				if len(pauses) != 0 {
					t.Fatalf("paused %v, want no pauses", pauses)
				}
				return
			}
			// Every write after the first owes at least minPause.
			if len(pauses) != writes-1 {
				t.Fatalf("%d pauses over %d writes, want %d: %v", len(pauses), writes, writes-1, pauses)
			}
			for _, d := range pauses {
				if d < tt.lo || d > tt.hi {
					t.Errorf("pause %v, want within [%v, %v]", d, tt.lo, tt.hi)
				}
			}
		})
	}
}

// The store's Pebble reports write stalls to the pacing, which holds off
// while they last; an explicit Flush holds it too.
func TestPacingHoldsOff(t *testing.T) {
	cfg := testConfig()
	s, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	el := s.pebbleOptions().EventListener
	el.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "test"})
	if !s.pebbleFS().stalled.Load() {
		t.Fatal("a write stall did not reach the pacing")
	}
	el.WriteStallEnd()
	if s.pebbleFS().stalled.Load() {
		t.Fatal("the end of a write stall did not reach the pacing")
	}

	fs := s.pebbleFS()
	defer func(p func(time.Duration)) { fs.pause = p }(fs.pause)
	var sawHeld bool
	fs.pause = func(time.Duration) {}
	// Flush writes an sstable; its writes see the hold.
	orig := yield
	defer func() {
		s.Close() // first: its flushes and compactions call yield
		yield = orig
	}()
	yield = func() {
		if fs.hold.Load() > 0 {
			sawHeld = true
		}
		orig()
	}
	mustApply(t, s, put(1, "k", strings.Repeat("v", 1000)))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if !sawHeld {
		t.Fatal("Flush wrote its sstable without holding the pacing")
	}
	if h := fs.hold.Load(); h != 0 {
		t.Fatalf("hold count %d after Flush, want 0", h)
	}

	// A batch of a MiB or more (catch-up) quiets the pacing for a while;
	// smaller ones do not.
	mustApply(t, s, put(2, "k", strings.Repeat("v", 1000)))
	if fs.quietTo.Load() != 0 {
		t.Fatal("a small batch quieted the pacing")
	}
	var big []entry.Entry
	for i := uint64(3); i < 3+300; i++ {
		big = append(big, put(i, fmt.Sprintf("big-%d", i), strings.Repeat("v", 4000)))
	}
	if err := s.Apply(big); err != nil {
		t.Fatal(err)
	}
	if to := fs.quietTo.Load(); to <= time.Now().UnixNano() {
		t.Fatalf("a %d-byte batch did not quiet the pacing", batchBytes(big))
	}
}

func TestBackgroundPaceConfig(t *testing.T) {
	for _, v := range []float64{-1, 101, math.NaN(), math.Inf(1)} {
		c := testConfig()
		c.BackgroundPace = v
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "BackgroundPace") {
			t.Errorf("BackgroundPace %v: Validate = %v, want an error naming the field", v, err)
		}
	}
	if p := DefaultConfig().BackgroundPace; p != 0.5 {
		t.Errorf("default BackgroundPace %v, want 0.5", p)
	}
}
