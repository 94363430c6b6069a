package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

// noTmpFiles fails if dir holds a ".tmp" file.
func noTmpFiles(t *testing.T, fs vfs.FS, dir, when string) {
	t.Helper()
	names, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			t.Fatalf("%s: temporary file %s left in %s", when, n, dir)
		}
	}
}

// TestPreallocReopenKeepsAppending checks that a preallocated segment keeps
// its size across a clean close and reopen, that recovery takes the zeros for
// the end of the log without a warning, and that appends continue inside the
// preallocated file. A log written preallocated also opens with
// Preallocate off.
func TestPreallocReopenKeepsAppending(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		capt := &logCapture{}
		cfg := testConfig(fs)
		cfg.Logger = capt.logger()
		l := mustOpen(t, dir, cfg)
		all := makeEntries(1, 5, constTerm(1), 30)
		mustAppend(t, l, all)
		path := l.segs[0].path
		l.Close()
		for round := range 3 {
			if size := fileSize(t, fs, path); size != cfg.SegmentBytes {
				t.Fatalf("round %d: segment is %d bytes after close, want %d", round, size, cfg.SegmentBytes)
			}
			l = mustOpen(t, dir, cfg)
			mustMatch(t, l, all)
			if got := l.segs[len(l.segs)-1].size; got >= cfg.SegmentBytes {
				t.Fatalf("round %d: recovered data end %d is the file size", round, got)
			}
			more := makeEntries(uint64(len(all))+1, 3, constTerm(2), 30)
			mustAppend(t, l, more)
			all = append(all, more...)
			if len(l.segs) != 1 {
				t.Fatalf("round %d: %d segments, want 1", round, len(l.segs))
			}
			if size := fileSize(t, fs, path); size != cfg.SegmentBytes {
				t.Fatalf("round %d: segment is %d bytes after appending, want %d", round, size, cfg.SegmentBytes)
			}
			l.Close()
		}
		if out := capt.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
			t.Fatalf("reopening a cleanly closed log logged:\n%s", out)
		}
		cfg.Preallocate = false
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		mustMatch(t, l, all)
		more := makeEntries(uint64(len(all))+1, 3, constTerm(3), 30)
		mustAppend(t, l, more)
		mustMatch(t, l, append(all, more...))
	})
}

// TestPreallocRecoveryRules damages preallocated logs in crafted ways and
// checks what Open does: zeros are the end of the log, a torn header before
// the zeros is cut, and anything that is not a torn tail is ErrCorrupt naming
// the file and offset, in the last segment or in a sealed one.
func TestPreallocRecoveryRules(t *testing.T) {
	// The last entry's value ends in zeros, so its record does too.
	zeroEnd := func(i uint64) []byte { return append([]byte("value"), make([]byte, 8)...) }
	type layout struct {
		segs []*segment
		data map[string][]byte
	}
	tests := []struct {
		name string
		// damage changes the files and returns the damaged file, the offset a
		// CorruptError must name (-1: Open must succeed) and how many entries
		// must then survive.
		damage    func(l layout) (file string, off int64, keep int)
		wantTorn  bool // a torn-tail warning is logged
		wantClean bool // nothing above Info is logged
	}{
		{"zeros after the data", func(l layout) (string, int64, int) {
			return "", -1, 20
		}, false, true},
		{"torn record header before the zeros", func(l layout) (string, int64, int) {
			s := l.segs[len(l.segs)-1]
			copy(l.data[s.path][s.size:], []byte{7, 1, 0, 0, 5})
			return "", -1, 20
		}, true, false},
		{"non-zero byte in preallocated space", func(l layout) (string, int64, int) {
			s := l.segs[len(l.segs)-1]
			l.data[s.path][s.size+100] = 1
			return s.path, s.size, 0
		}, false, false},
		{"damaged length of a last record ending in zeros", func(l layout) (string, int64, int) {
			s := l.segs[len(l.segs)-1]
			off := int64(s.offs[len(s.offs)-1])
			b := l.data[s.path][off:]
			binary.LittleEndian.PutUint32(b, binary.LittleEndian.Uint32(b)+40)
			return s.path, off, 0
		}, false, false},
		{"damaged record followed by good ones", func(l layout) (string, int64, int) {
			s := l.segs[len(l.segs)-1]
			off := int64(s.offs[0])
			l.data[s.path][off+20] ^= 0x10
			return s.path, off, 0
		}, false, false},
		{"zeros after a sealed segment", func(l layout) (string, int64, int) {
			s := l.segs[0]
			l.data[s.path] = append(l.data[s.path], make([]byte, 300)...)
			return s.path, s.size, 0
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewMem()
			capt := &logCapture{}
			cfg := testConfig(mem)
			cfg.SegmentBytes = 2048
			cfg.inlineSpare = true // the last segment must be a preallocated one, every run
			cfg.Logger = capt.logger()
			l := mustOpen(t, "/wal", cfg)
			all := makeEntries(1, 20, constTerm(1), 100)
			all[19].Value = zeroEnd(20)
			// The last batch has two records, so that the last segment
			// holds at least two even when the writer moved to a spare
			// for it (rollEarly).
			mustAppend(t, l, all[:18])
			mustAppend(t, l, all[18:])
			lay := layout{segs: append([]*segment(nil), l.segs...), data: map[string][]byte{}}
			l.Close()
			if len(lay.segs) < 2 {
				t.Fatalf("want several segments, have %d", len(lay.segs))
			}
			for _, s := range lay.segs {
				b, err := mem.ReadFile(s.path)
				if err != nil {
					t.Fatal(err)
				}
				lay.data[s.path] = b
			}
			file, off, keep := tt.damage(lay)
			for p, b := range lay.data {
				if err := mem.WriteFile(p, b); err != nil {
					t.Fatal(err)
				}
			}
			l, err := Open("/wal", cfg)
			if off >= 0 {
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.File != file || ce.Offset != off {
					if err == nil {
						l.Close()
					}
					t.Fatalf("Open: %v; want a CorruptError for %s at %d", err, file, off)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			mustMatch(t, l, all[:keep])
			out := capt.String()
			if got := strings.Contains(out, "torn tail"); got != tt.wantTorn {
				t.Fatalf("torn-tail warning logged: %v, want %v:\n%s", got, tt.wantTorn, out)
			}
			if tt.wantClean && (strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR")) {
				t.Fatalf("unexpected warning:\n%s", out)
			}
			more := makeEntries(uint64(keep)+1, 30, constTerm(2), 100) // rolls again
			mustAppend(t, l, more)
			mustMatch(t, l, append(all[:keep:keep], more...))
		})
	}
}

// TestPreallocRolling appends across many segments with the background spare
// and checks that sealed segments have exact sizes, the last one is
// preallocated, Close leaves no temporary file, and a reopen recovers
// everything. The inline variant checks deterministically that spares are
// used.
func TestPreallocRolling(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
				cfg := testConfig(fs)
				cfg.SegmentBytes = 8 << 10
				cfg.inlineSpare = inline
				l := mustOpen(t, dir, cfg)
				var all []entry.Entry
				for len(all) < 600 {
					ents := makeEntries(uint64(len(all))+1, 15, constTerm(1), 100)
					mustAppend(t, l, ents)
					all = append(all, ents...)
				}
				if len(l.segs) < 8 {
					t.Fatalf("only %d segments", len(l.segs))
				}
				for k, s := range l.segs {
					want := s.size
					if k == len(l.segs)-1 && (inline || s.alloc == cfg.SegmentBytes) {
						// Preallocated; with the background spare the
						// last segment may also have been started while
						// no spare was ready, and grow by extension.
						want = cfg.SegmentBytes
					}
					if size := fileSize(t, fs, s.path); size != want {
						t.Fatalf("segment %d of %d (%s) is %d bytes, want %d", k+1, len(l.segs), s.path, size, want)
					}
				}
				l.spareMu.Lock()
				used := l.sparesUsed
				l.spareMu.Unlock()
				t.Logf("%d segments, %d made from a prepared spare", len(l.segs), used)
				if inline && used < len(l.segs)-2 {
					t.Fatalf("only %d of %d segments came from a spare", used, len(l.segs))
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				noTmpFiles(t, fs, dir, "after Close")
				l = mustOpen(t, dir, cfg)
				defer l.Close()
				noTmpFiles(t, fs, dir, "after Open")
				mustMatch(t, l, all)
				more := makeEntries(uint64(len(all))+1, 100, constTerm(2), 100)
				mustAppend(t, l, more)
				mustMatch(t, l, append(all, more...))
			})
		})
	}
}

// TestSpareFailureNotFatal makes every write or every fsync of the spare file
// fail: the log warns, creates segments itself, and keeps working.
func TestSpareFailureNotFatal(t *testing.T) {
	isSpare := func(name string) bool { return strings.HasSuffix(name, spareName) }
	tests := []struct {
		name   string
		faults vfs.Faults
	}{
		{"write", vfs.Faults{Write: func(name string, n int) (int, error) {
			if isSpare(name) {
				return n / 2, errInjected
			}
			return n, nil
		}}},
		{"fsync", vfs.Faults{Sync: func(name string) error {
			if isSpare(name) {
				return errInjected
			}
			return nil
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewFaulty(tt.faults)
			capt := &logCapture{}
			cfg := testConfig(mem)
			cfg.inlineSpare = true
			cfg.Logger = capt.logger()
			l := mustOpen(t, "/wal", cfg)
			all := makeEntries(1, 150, constTerm(1), 100)
			for k := 0; k < len(all); k += 10 {
				mustAppend(t, l, all[k:k+10])
			}
			if len(l.segs) < 3 {
				t.Fatalf("only %d segments", len(l.segs))
			}
			if l.sparesUsed != 0 {
				t.Fatalf("%d failed spares were used", l.sparesUsed)
			}
			if !strings.Contains(capt.String(), "could not prepare the next segment") {
				t.Fatalf("no warning about the spare:\n%s", capt)
			}
			l.Close()
			noTmpFiles(t, mem, "/wal", "after Close")
			mem.SetFaults(vfs.Faults{})
			l = mustOpen(t, "/wal", cfg)
			defer l.Close()
			mustMatch(t, l, all)
		})
	}
}

// blockingFS wraps a file system so that writes to the spare file wait for
// release (outside the wrapped file system's locks), after closing started.
type blockingFS struct {
	vfs.FS
	started, release chan struct{}
	once             *sync.Once
}

type blockingFile struct {
	vfs.File
	fs blockingFS
}

func (b blockingFS) OpenFile(name string, flag int, perm iofs.FileMode) (vfs.File, error) {
	f, err := b.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, spareName) {
		return f, err
	}
	return blockingFile{File: f, fs: b}, nil
}

func (f blockingFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.once.Do(func() { close(f.fs.started) })
	<-f.fs.release
	return f.File.WriteAt(p, off)
}

// TestCloseWaitsForSpare checks that Close stops and waits for a spare being
// prepared in the background, and removes its file.
func TestCloseWaitsForSpare(t *testing.T) {
	mem := vfs.NewMem()
	bfs := blockingFS{FS: mem, started: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
	cfg := testConfig(bfs)
	l := mustOpen(t, "/wal", cfg)
	mustAppend(t, l, makeEntries(1, 20, constTerm(1), 100)) // past half the segment
	select {
	case <-bfs.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no spare preparation started")
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		close(bfs.release)
		t.Fatalf("Close returned (%v) while the spare was still being written", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(bfs.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	noTmpFiles(t, mem, "/wal", "after Close")
}

// TestPlainSegmentMovesToSpare: a log whose last segment grows by extension
// (written without preallocation, or started while no spare was ready) moves
// to a prepared spare at the next batch instead of staying slow until the
// segment is full.
func TestPlainSegmentMovesToSpare(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		cfg := testConfig(fs)
		cfg.SegmentBytes = 64 << 10
		cfg.Preallocate = false
		l := mustOpen(t, dir, cfg)
		all := makeEntries(1, 10, constTerm(1), 100)
		mustAppend(t, l, all)
		plain := l.segs[len(l.segs)-1]
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cfg.Preallocate, cfg.inlineSpare = true, true
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		for i := 0; i < 3; i++ {
			ents := makeEntries(uint64(len(all))+1, 5, constTerm(1), 100)
			mustAppend(t, l, ents)
			all = append(all, ents...)
		}
		if len(l.segs) != 2 {
			t.Fatalf("%d segments, want the plain one and the spare it moved to", len(l.segs))
		}
		if size := fileSize(t, fs, plain.path); size != l.segs[0].size {
			t.Fatalf("left plain segment is %d bytes, data %d", size, l.segs[0].size)
		}
		last := l.segs[1]
		if size := fileSize(t, fs, last.path); size != cfg.SegmentBytes {
			t.Fatalf("new segment is %d bytes, want the preallocated %d", size, cfg.SegmentBytes)
		}
		mustMatch(t, l, all)
	})
}

// TestSparePacing checks that a spare prepared in the background pauses after
// each chunk of zeros (Config.SparePace), does not pause once the writer is
// three quarters into its segment or with SparePace 0, and is always
// complete.
func TestSparePacing(t *testing.T) {
	const seg = 8 * zeroChunk // 8 chunks per spare
	tests := []struct {
		name       string
		pace       float64
		firstBatch int // 1 KiB entries in the first append (512 KiB = 1/16 of the segment)
		wantPauses int
	}{
		{"paced", 2, 1100, seg / zeroChunk},        // past 1/8, before 3/4
		{"writer past three quarters", 2, 6300, 0}, // the preparation starts late: no pauses
		{"pacing off", 0, 1100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := testConfig(mem)
			cfg.SegmentBytes = seg
			cfg.SparePace = tt.pace
			var mu sync.Mutex
			var pauses []time.Duration
			cfg.sparePause = func(d time.Duration) {
				mu.Lock()
				pauses = append(pauses, d)
				mu.Unlock()
			}
			l := mustOpen(t, "/wal", cfg)
			defer l.Close()
			mustAppend(t, l, makeEntries(1, 100, constTerm(1), 1000)) // under 1/8: no spare yet
			l.spareMu.Lock()
			busy := l.spareBusy || l.spareF != nil
			l.spareMu.Unlock()
			if busy {
				t.Fatal("a spare is being prepared before the segment is an eighth full")
			}
			mustAppend(t, l, makeEntries(101, tt.firstBatch, constTerm(1), 1000))
			deadline := time.Now().Add(10 * time.Second)
			for {
				l.spareMu.Lock()
				ready := l.spareF != nil
				l.spareMu.Unlock()
				if ready {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the spare was not prepared")
				}
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			got := append([]time.Duration(nil), pauses...)
			mu.Unlock()
			if len(got) != tt.wantPauses {
				t.Fatalf("%d pauses, want %d: %v", len(got), tt.wantPauses, got)
			}
			for _, d := range got {
				if d < 0 || d > maxSparePause {
					t.Errorf("pause %v, want within [0, %v]", d, maxSparePause)
				}
			}
			l.spareMu.Lock()
			st, err := l.spareF.Stat()
			l.spareMu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != seg {
				t.Errorf("spare is %d bytes, want %d", st.Size(), seg)
			}
		})
	}
}

func TestSparePaceValidate(t *testing.T) {
	for _, v := range []float64{-1, 101, math.NaN(), math.Inf(1)} {
		cfg := DefaultConfig()
		cfg.SparePace = v
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SparePace") {
			t.Errorf("SparePace %v: Validate = %v, want an error naming SparePace", v, err)
		}
	}
	cfg := DefaultConfig()
	if cfg.SparePace != 1 {
		t.Errorf("default SparePace %v, want 1", cfg.SparePace)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// dropFS wraps a file system so that its files record DropCache calls.
type dropFS struct {
	vfs.FS
	mu      *sync.Mutex
	dropped map[*int]int // file id -> DropCache calls
}

type dropFile struct {
	vfs.File
	fs dropFS
	id *int
}

func (d dropFS) OpenFile(name string, flag int, perm iofs.FileMode) (vfs.File, error) {
	f, err := d.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return dropFile{File: f, fs: d, id: new(int)}, nil
}

func (f dropFile) DropCache() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.fs.dropped[f.id]++
	return nil
}

// TestSealedSegmentsDropCache checks that every sealed segment's cached pages
// are dropped once, and that the active segment's are not (its tail is still
// being written, and the spare's zeros are what it writes into).
func TestSealedSegmentsDropCache(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inlineSpare=%v", inline), func(t *testing.T) {
			dfs := dropFS{FS: vfs.NewMem(), mu: &sync.Mutex{}, dropped: map[*int]int{}}
			cfg := testConfig(dfs)
			cfg.SegmentBytes = 8 << 10
			cfg.inlineSpare = inline
			l := mustOpen(t, "/wal", cfg)
			var all []entry.Entry
			for len(all) < 400 {
				ents := makeEntries(uint64(len(all))+1, 15, constTerm(1), 100)
				mustAppend(t, l, ents)
				all = append(all, ents...)
			}
			l.mu.Lock()
			var ids []*int
			for _, s := range l.segs {
				ids = append(ids, s.f.(dropFile).id)
			}
			l.mu.Unlock()
			if len(ids) < 5 {
				t.Fatalf("only %d segments; the test should seal several", len(ids))
			}
			if err := l.Close(); err != nil { // waits for the background drops
				t.Fatal(err)
			}
			dfs.mu.Lock()
			defer dfs.mu.Unlock()
			for k, id := range ids {
				want := 1
				if k == len(ids)-1 {
					want = 0
				}
				if got := dfs.dropped[id]; got != want {
					t.Errorf("segment %d of %d: %d DropCache calls, want %d", k+1, len(ids), got, want)
				}
			}
			if total := len(dfs.dropped); total != len(ids)-1 {
				t.Errorf("DropCache was called on %d files, want the %d sealed segments only", total, len(ids)-1)
			}
		})
	}
}
