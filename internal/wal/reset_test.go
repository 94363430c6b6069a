package wal

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

// mustBeReset checks that l is the empty log a Reset(index, term) leaves.
func mustBeReset(t *testing.T, l *Log, index, term uint64) {
	t.Helper()
	if f, la := l.FirstIndex(), l.LastIndex(); f != index+1 || la != index {
		t.Fatalf("log holds [%d, %d], want the empty log after %d", f, la, index)
	}
	if got, err := l.Term(index); err != nil || got != term {
		t.Fatalf("Term(%d) = %d, %v; want %d", index, got, err, term)
	}
	if index > 1 {
		_, err := l.Term(index - 1)
		wantErr(t, "Term below the reset point", err, ErrCompacted)
	}
	if index > 0 {
		_, err := l.Entries(index, index+1, 1<<20)
		wantErr(t, "Entries at the reset point", err, ErrCompacted)
	}
	if segs := l.Segments(); len(segs) != 1 || segs[0].First != index+1 || segs[0].Last != index {
		t.Fatalf("segments after reset: %+v", segs)
	}
}

// mustListDir returns the files of dir.
func mustListDir(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestReset(t *testing.T) {
	termOf := func(i uint64) uint64 { return 1 + i/30 }
	tests := []struct {
		name        string
		index, term uint64
	}{
		{"inside the log", 57, 9},
		{"at a segment boundary", 0, 0}, // index set below: first of the second segment - 1
		{"past the end", 500, 12},
		{"at the last entry", 120, termOf(120)},
		{"to zero", 0, 0},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
				cfg := testConfig(fs)
				l := mustOpen(t, dir, cfg)
				mustAppend(t, l, makeEntries(1, 120, termOf, 90))
				index, term := tt.index, tt.term
				if k == 1 {
					// The new segment gets the name of an existing one.
					index, term = l.segs[1].first-1, 4
				}
				if err := l.Reset(index, term); err != nil {
					t.Fatalf("Reset(%d, %d): %v", index, term, err)
				}
				mustBeReset(t, l, index, term)
				for _, name := range mustListDir(t, fs, dir) {
					if name == resetName || (strings.HasSuffix(name, tmpSuffix) && name != spareName) {
						t.Fatalf("%s left in %s after Reset", name, dir)
					}
				}
				// The log continues after the reset point, and survives a reopen.
				more := makeEntries(index+1, 80, constTerm(term+1), 70)
				mustAppend(t, l, more)
				mustMatch(t, l, more)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = mustOpen(t, dir, cfg)
				defer l.Close()
				mustMatch(t, l, more)
				if got, err := l.Term(index); err != nil || got != term {
					t.Fatalf("Term(%d) after reopen = %d, %v; want %d", index, got, err, term)
				}
			})
		})
	}
}

func TestResetInvalid(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	wantErr(t, "Reset(0, 3)", l.Reset(0, 3), ErrInvalid)
	wantErr(t, "Reset(max, 1)", l.Reset(math.MaxUint64, 1), ErrInvalid)
	l.Close()
	wantErr(t, "Reset after Close", l.Reset(5, 1), ErrClosed)
}

// TestResetCrashPoints makes each fsync of a Reset fail in turn and then
// simulates a power loss (keeping a torn prefix of unsynced data): the log
// must reopen as it was or as the new empty log, never as a mix, never with
// an error. It also checks that the last point is reached (a run where no
// fsync failed).
func TestResetCrashPoints(t *testing.T) {
	runSeeded(t, "TestResetCrashPoints", func(t *testing.T, rng *rand.Rand) {
		cfg := testConfig(nil)
		cfg.SegmentBytes = 1024 + rng.Int64N(3000)
		cfg.Preallocate = rng.IntN(2) == 0
		cfg.inlineSpare = true
		n := 1 + rng.IntN(150)
		termOf := func(i uint64) uint64 { return 1 + i/20 }
		old := makeEntries(1, n, termOf, rng.IntN(200))
		drop := uint64(rng.IntN(n))
		index := uint64(rng.IntN(n + 40))
		term := uint64(0)
		if index > 0 {
			term = 1 + rng.Uint64N(10)
		}
		t.Logf("segment bytes %d, preallocate %v, %d entries, drop before %d, reset to (%d, %d)",
			cfg.SegmentBytes, cfg.Preallocate, n, drop, index, term)
		for point := 1; ; point++ {
			mem := vfs.NewMem()
			cfg.FS = mem
			l := mustOpen(t, "/wal", cfg)
			mustAppend(t, l, old)
			if err := l.DropBefore(drop); err != nil {
				t.Fatal(err)
			}
			first := l.FirstIndex()
			countdown := point
			var mu sync.Mutex
			mem.SetFaults(vfs.Faults{Sync: func(string) error {
				mu.Lock()
				defer mu.Unlock()
				if countdown--; countdown == 0 {
					return errInjected
				}
				return nil
			}})
			err := l.Reset(index, term)
			mem.SetFaults(vfs.Faults{})
			mem.Crash(vfs.CrashOptions{Rand: rng, TearUnsynced: true})
			l.Close()
			l, oerr := Open("/wal", cfg)
			if oerr != nil {
				t.Fatalf("fsync %d failed: Open after crash: %v\nfiles:\n%s", point, oerr, mem)
			}
			reset := err == nil || l.FirstIndex() == index+1 && l.LastIndex() == index
			switch {
			case reset:
				mustBeReset(t, l, index, term)
				if names := mustListDir(t, mem, "/wal"); len(names) != 1 {
					t.Fatalf("fsync %d failed: files after a completed reset: %v", point, names)
				}
			default:
				if !errors.Is(err, ErrSyncFailed) {
					t.Fatalf("Reset: %v", err)
				}
				mustMatch(t, l, old[first-1:])
			}
			l.Close()
			if err == nil {
				return // every fsync of the reset was passed
			}
		}
	})
}

// TestResetMarkerDecides: once the reset marker is durable, any mix of old
// segments (removed or not) and the new segment (written or not) recovers
// as the new empty log.
func TestResetMarkerDecides(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 40 {
		mem := vfs.NewMem()
		cfg := testConfig(mem)
		l := mustOpen(t, "/wal", cfg)
		mustAppend(t, l, makeEntries(1, 150, constTerm(3), 60))
		segs := append([]*segment(nil), l.segs...)
		l.Close()
		index := uint64(rng.IntN(200))
		if iter%4 == 0 {
			index = segs[rng.IntN(len(segs))].first - 1 // a name collision
		}
		term := uint64(1 + rng.IntN(5))
		if index == 0 {
			term = 0
		}
		if err := mem.WriteFile("/wal/"+resetName, encodeResetMarker(index, term)); err != nil {
			t.Fatal(err)
		}
		for _, s := range segs {
			if rng.IntN(2) == 0 {
				if err := mem.Remove(s.path); err != nil {
					t.Fatal(err)
				}
			}
		}
		if rng.IntN(2) == 0 {
			if err := mem.WriteFile("/wal/"+segmentName(index+1), appendSegmentHeader(nil, segmentHeader{first: index + 1, prevTerm: term})); err != nil {
				t.Fatal(err)
			}
		}
		l, err := Open("/wal", cfg)
		if err != nil {
			t.Fatalf("iteration %d: Open with a reset marker for (%d, %d): %v\n%s", iter, index, term, err, mem)
		}
		mustBeReset(t, l, index, term)
		if names := mustListDir(t, mem, "/wal"); len(names) != 1 || names[0] != segmentName(index+1) {
			t.Fatalf("iteration %d: files after recovery: %v", iter, names)
		}
		l.Close()
	}
}

func TestResetMarkerDamaged(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	l := mustOpen(t, "/wal", cfg)
	mustAppend(t, l, makeEntries(1, 10, constTerm(1), 10))
	l.Close()
	b := encodeResetMarker(7, 2)
	b[9] ^= 1
	if err := mem.WriteFile("/wal/"+resetName, b); err != nil {
		t.Fatal(err)
	}
	_, err := Open("/wal", cfg)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != "/wal/"+resetName {
		t.Fatalf("Open with a damaged reset marker: %v, want a *CorruptError naming it", err)
	}
}

// TestDropBeforeBesideAppends runs DropBefore on its own goroutine while
// another one appends (run it with -race): nothing the log still holds is
// lost, and the log reopens the same.
func TestDropBeforeBesideAppends(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		mem := vfs.NewMem()
		cfg := testConfig(mem)
		cfg.SegmentBytes = 2048
		cfg.Preallocate = prealloc
		l := mustOpen(t, "/wal", cfg)
		var all []entry.Entry
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(1)
		var dropErr error
		drops := 0
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if last := l.LastIndex(); last > 30 {
					if dropErr = l.DropBefore(last - 30); dropErr != nil {
						return
					}
					drops++
				}
				if _, err := l.Entries(l.FirstIndex(), l.LastIndex()+1, 1<<20); err != nil && !errors.Is(err, ErrCompacted) {
					dropErr = err
					return
				}
			}
		}()
		for i := uint64(1); i <= 2000; i += 5 {
			ents := makeEntries(i, 5, func(i uint64) uint64 { return 1 + i/100 }, 40)
			mustAppend(t, l, ents)
			all = append(all, ents...)
		}
		close(stop)
		wg.Wait()
		if dropErr != nil {
			t.Fatalf("preallocate %v: DropBefore beside appends: %v", prealloc, dropErr)
		}
		// How many drops ran beside the appends depends on the scheduler;
		// one more after them must still free the old segments.
		if err := l.DropBefore(l.LastIndex() - 30); err != nil {
			t.Fatalf("preallocate %v: DropBefore after appends: %v", prealloc, err)
		}
		first := l.FirstIndex()
		t.Logf("preallocate %v: %d drops beside the appends, first index %d", prealloc, drops+1, first)
		if first < 1000 {
			t.Fatalf("preallocate %v: first index %d after DropBefore(%d)", prealloc, first, l.LastIndex()-30)
		}
		mustMatch(t, l, all[first-1:])
		l.Close()
		l = mustOpen(t, "/wal", cfg)
		mustMatch(t, l, all[first-1:])
		if got, err := l.Term(first - 1); err != nil || got != all[first-2].Term {
			t.Fatalf("Term(first-1) = %d, %v", got, err)
		}
		l.Close()
	}
}

func TestSegments(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	cfg.Preallocate = false
	l := mustOpen(t, "/wal", cfg)
	defer l.Close()
	mustAppend(t, l, makeEntries(1, 100, constTerm(1), 100))
	segs := l.Segments()
	if len(segs) < 3 || segs[0].First != 1 || segs[len(segs)-1].Last != 100 {
		t.Fatalf("segments %+v", segs)
	}
	for k, s := range segs {
		data, err := mem.ReadFile(l.segs[k].path)
		if err != nil {
			t.Fatal(err)
		}
		if s.Bytes != int64(len(data)) {
			t.Fatalf("segment %d: Bytes %d, file has %d", k, s.Bytes, len(data))
		}
		if k > 0 && s.First != segs[k-1].Last+1 {
			t.Fatalf("segments not contiguous: %+v", segs)
		}
	}
	if err := l.DropBefore(segs[2].First); err != nil {
		t.Fatal(err)
	}
	if got := l.Segments(); len(got) != len(segs)-2 || got[0] != segs[2] {
		t.Fatalf("after DropBefore(%d): %+v", segs[2].First, got)
	}
}
