package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" means valid
	}{
		{"default", func(*Config) {}, ""},
		{"small segment", func(c *Config) { c.SegmentBytes = 100 }, "SegmentBytes"},
		{"huge segment", func(c *Config) { c.SegmentBytes = 2 << 30 }, "SegmentBytes"},
		{"tiny entry", func(c *Config) { c.MaxEntryBytes = 10 }, "MaxEntryBytes"},
		{"zero value", func(c *Config) { c.MaxValueBytes = 0 }, "MaxValueBytes"},
		{"value exceeds entry", func(c *Config) { c.MaxValueBytes = c.MaxEntryBytes }, "MaxValueBytes"},
		{"nil fs", func(c *Config) { c.FS = nil }, "FS"},
		{"nil logger is fine", func(c *Config) { c.Logger = nil }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), "Config."+tt.field)):
				t.Fatalf("Validate = %v, want an error naming Config.%s", err, tt.field)
			}
			if tt.field != "" {
				if _, err := Open(t.TempDir(), c); err == nil {
					t.Fatalf("Open accepted an invalid config")
				}
			}
		})
	}
}

func TestOpenEmpty(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(vfs.OS{}))
	defer l.Close()
	if l.FirstIndex() != 1 || l.LastIndex() != 0 {
		t.Fatalf("first %d last %d, want 1 0", l.FirstIndex(), l.LastIndex())
	}
	if term, err := l.Term(0); term != 0 || err != nil {
		t.Fatalf("Term(0) = %d, %v", term, err)
	}
	_, err := l.Term(1)
	wantErr(t, "Term(1)", err, ErrUnavailable)
	if got, err := l.Entries(1, 1, 100); got != nil || err != nil {
		t.Fatalf("Entries(1,1) = %v, %v", got, err)
	}
	if (l.HardState() != HardState{}) {
		t.Fatalf("HardState = %+v, want zero", l.HardState())
	}
	if err := l.Append(nil); err != nil {
		t.Fatalf("Append(nil): %v", err)
	}
}

// fileSystems runs f on the real and the in-memory file system.
func fileSystems(t *testing.T, f func(t *testing.T, fs vfs.FS, dir string)) {
	t.Run("os", func(t *testing.T) { f(t, vfs.OS{}, t.TempDir()) })
	t.Run("mem", func(t *testing.T) { f(t, vfs.NewMem(), "/wal") })
}

func TestAppendReadReopen(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		cfg := testConfig(fs)
		l := mustOpen(t, dir, cfg)
		var all []entry.Entry
		termOf := func(i uint64) uint64 { return 1 + i/25 }
		for first := uint64(1); first <= 200; first += 20 {
			ents := makeEntries(first, 20, termOf, int(first%150))
			mustAppend(t, l, ents)
			all = append(all, ents...)
		}
		mustMatch(t, l, all)
		if n := len(l.segs); n < 3 {
			t.Fatalf("only %d segments; the test should cross segments", n)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		mustMatch(t, l, all)
		// Appending continues after reopen.
		more := makeEntries(201, 5, termOf, 10)
		mustAppend(t, l, more)
		mustMatch(t, l, append(all, more...))
		// Every sub-range reads back.
		for lo := uint64(1); lo <= 205; lo += 17 {
			for hi := lo; hi <= 206; hi += 23 {
				got, err := l.Entries(lo, hi, 1<<30)
				if err != nil || len(got) != int(hi-lo) {
					t.Fatalf("Entries(%d,%d) = %d entries, %v", lo, hi, len(got), err)
				}
				for k := range got {
					if got[k].Index != lo+uint64(k) {
						t.Fatalf("Entries(%d,%d)[%d] has index %d", lo, hi, k, got[k].Index)
					}
				}
			}
		}
	})
}

func TestAppendErrors(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, makeEntries(1, 3, constTerm(1), 5))
	big := func(n int) []byte { return make([]byte, n) }
	cfg := l.cfg
	tests := []struct {
		name string
		ents []entry.Entry
		want error
	}{
		{"gap", makeEntries(5, 1, constTerm(1), 1), ErrNotContiguous},
		{"overlap", makeEntries(3, 2, constTerm(1), 1), ErrNotContiguous},
		{"inner gap", []entry.Entry{{Term: 1, Index: 4, Kind: entry.KindNoop}, {Term: 1, Index: 6, Kind: entry.KindNoop}}, ErrNotContiguous},
		{"value too large", []entry.Entry{{Term: 1, Index: 4, Kind: entry.KindPut, Value: big(cfg.MaxValueBytes + 1)}}, ErrTooLarge},
		{"entry too large", []entry.Entry{{Term: 1, Index: 4, Kind: entry.KindPut, Key: big(cfg.MaxEntryBytes), Value: big(1)}}, ErrTooLarge},
		{"bad kind", []entry.Entry{{Term: 1, Index: 4, Kind: 9}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, "Append", l.Append(tt.ents), tt.want)
			if l.LastIndex() != 3 {
				t.Fatalf("LastIndex = %d after a refused append", l.LastIndex())
			}
		})
	}
	// The largest allowed value is accepted.
	mustAppend(t, l, []entry.Entry{{Term: 1, Index: 4, Kind: entry.KindPut, Value: big(cfg.MaxValueBytes)}})
	got, err := l.Entries(4, 5, 0)
	if err != nil || len(got) != 1 || len(got[0].Value) != cfg.MaxValueBytes {
		t.Fatalf("Entries(4,5) = %d entries, %v", len(got), err)
	}
}

func TestTerm(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	defer l.Close()
	ents := makeEntries(1, 100, func(i uint64) uint64 { return 1 + i/10 }, 60)
	mustAppend(t, l, ents)
	if err := l.DropBefore(50); err != nil {
		t.Fatal(err)
	}
	first := l.FirstIndex()
	if first <= 1 || first > 50 {
		t.Fatalf("FirstIndex after DropBefore(50) = %d", first)
	}
	tests := []struct {
		i    uint64
		want uint64
		err  error
	}{
		{0, 0, nil},
		{first - 1, ents[first-2].Term, nil},
		{first, ents[first-1].Term, nil},
		{100, ents[99].Term, nil},
		{101, 0, ErrUnavailable},
		{first - 2, 0, ErrCompacted},
		{first - 2, 0, ErrUnavailable},
	}
	for _, tt := range tests {
		got, err := l.Term(tt.i)
		if tt.err != nil {
			wantErr(t, fmt.Sprintf("Term(%d)", tt.i), err, tt.err)
			continue
		}
		if err != nil || got != tt.want {
			t.Fatalf("Term(%d) = %d, %v; want %d", tt.i, got, err, tt.want)
		}
	}
}

func TestEntriesLimitsAndErrors(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	defer l.Close()
	ents := makeEntries(1, 50, constTerm(2), 100)
	mustAppend(t, l, ents)
	size := ents[0].Size() // all the same size
	tests := []struct {
		name     string
		lo, hi   uint64
		maxBytes int
		want     int
		err      error
	}{
		{"all", 1, 51, 1 << 30, 50, nil},
		{"zero budget gives one", 5, 51, 0, 1, nil},
		{"budget for three", 5, 51, 3*size + size - 1, 3, nil},
		{"exact budget", 5, 51, 4 * size, 4, nil},
		{"empty range", 7, 7, 10, 0, nil},
		{"above last", 45, 52, 1 << 30, 0, ErrUnavailable},
		{"below first", 0, 3, 1 << 30, 0, ErrCompacted},
		{"reversed", 9, 3, 1 << 30, 0, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Entries(tt.lo, tt.hi, tt.maxBytes)
			if tt.err != nil {
				wantErr(t, "Entries", err, tt.err)
				return
			}
			if err != nil || len(got) != tt.want {
				t.Fatalf("Entries(%d,%d,%d) = %d entries, %v; want %d", tt.lo, tt.hi, tt.maxBytes, len(got), err, tt.want)
			}
			raw, next, err := l.ReadRaw(nil, tt.lo, tt.hi, tt.maxBytes)
			if err != nil || next != tt.lo+uint64(tt.want) {
				t.Fatalf("ReadRaw: next %d, %v", next, err)
			}
			var wantRaw []byte
			for k := range got {
				wantRaw = AppendEntryRecord(wantRaw, &ents[tt.lo-1+uint64(k)])
			}
			if !bytes.Equal(raw, wantRaw) {
				t.Fatalf("ReadRaw returned %d bytes, not the records of the entries (%d bytes)", len(raw), len(wantRaw))
			}
			dec, err := DecodeEntryRecords(nil, raw)
			if err != nil || len(dec) != tt.want {
				t.Fatalf("DecodeEntryRecords: %d, %v", len(dec), err)
			}
			for k := range dec {
				if !dec[k].Equal(&got[k]) {
					t.Fatalf("raw entry %d differs", k)
				}
			}
		})
	}
}

func TestReadRawAcrossSegments(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	defer l.Close()
	ents := makeEntries(1, 200, constTerm(3), 80)
	mustAppend(t, l, ents)
	prefix := []byte("prefix")
	raw, next, err := l.ReadRaw(append([]byte(nil), prefix...), 3, 201, 1<<30)
	if err != nil || next != 201 {
		t.Fatalf("ReadRaw: next %d, %v", next, err)
	}
	if !bytes.HasPrefix(raw, prefix) {
		t.Fatalf("ReadRaw did not append to dst")
	}
	dec, err := DecodeEntryRecords(nil, raw[len(prefix):])
	if err != nil || len(dec) != 198 {
		t.Fatalf("decoded %d entries, %v", len(dec), err)
	}
	for k := range dec {
		if !dec[k].Equal(&ents[k+2]) {
			t.Fatalf("entry %d differs", k+3)
		}
	}
	// A damaged raw buffer is reported as corrupt.
	raw[len(prefix)+20] ^= 1
	if _, err := DecodeEntryRecords(nil, raw[len(prefix):]); !IsCorrupt(err) {
		t.Fatalf("DecodeEntryRecords on damaged data: %v", err)
	}
	if _, err := DecodeEntryRecords(nil, raw[len(prefix):len(prefix)+5]); !IsCorrupt(err) {
		t.Fatalf("DecodeEntryRecords on a partial record: %v", err)
	}
}

func TestTruncateAfter(t *testing.T) {
	termOf := func(i uint64) uint64 { return 1 + i/30 }
	tests := []struct {
		name  string
		after uint64
		err   error
	}{
		{"noop at last", 120, nil},
		{"noop above last", 500, nil},
		{"last segment", 118, nil},
		{"across segments", 40, nil},
		{"segment boundary", 0, nil}, // fixed below to a real boundary
		{"everything", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
				cfg := testConfig(fs)
				l := mustOpen(t, dir, cfg)
				ents := makeEntries(1, 120, termOf, 90)
				mustAppend(t, l, ents)
				after := tt.after
				if tt.name == "segment boundary" {
					after = l.segs[2].first - 1
				}
				if err := l.TruncateAfter(after); err != tt.err {
					t.Fatalf("TruncateAfter(%d): %v", after, err)
				}
				want := ents[:min(after, 120)]
				mustMatch(t, l, want)
				if term, _ := l.Term(l.LastIndex()); len(want) > 0 && term != want[len(want)-1].Term {
					t.Fatalf("Term(last) = %d", term)
				}
				// Appending new entries (a new term) after the cut works.
				repl := makeEntries(uint64(len(want))+1, 30, constTerm(99), 70)
				mustAppend(t, l, repl)
				want = append(append([]entry.Entry(nil), want...), repl...)
				mustMatch(t, l, want)
				l.Close()
				l = mustOpen(t, dir, cfg)
				defer l.Close()
				mustMatch(t, l, want)
			})
		})
	}
	t.Run("compacted", func(t *testing.T) {
		l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
		defer l.Close()
		mustAppend(t, l, makeEntries(1, 120, termOf, 90))
		if err := l.DropBefore(100); err != nil {
			t.Fatal(err)
		}
		first := l.FirstIndex()
		wantErr(t, "TruncateAfter below first-1", l.TruncateAfter(first-2), ErrCompacted)
		if err := l.TruncateAfter(first - 1); err != nil {
			t.Fatalf("TruncateAfter(first-1): %v", err)
		}
		if l.LastIndex() != first-1 || l.FirstIndex() != first {
			t.Fatalf("after truncating everything: first %d last %d", l.FirstIndex(), l.LastIndex())
		}
		if term, err := l.Term(first - 1); err != nil || term != termOf(first-1) {
			t.Fatalf("Term(first-1) = %d, %v", term, err)
		}
	})
}

func TestDropBefore(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		cfg := testConfig(fs)
		l := mustOpen(t, dir, cfg)
		termOf := func(i uint64) uint64 { return 1 + i/7 }
		ents := makeEntries(1, 150, termOf, 100)
		mustAppend(t, l, ents)
		if err := l.DropBefore(1); err != nil || l.FirstIndex() != 1 {
			t.Fatalf("DropBefore(1): first %d, %v", l.FirstIndex(), err)
		}
		if err := l.DropBefore(60); err != nil {
			t.Fatal(err)
		}
		first := l.FirstIndex()
		if first == 1 || first > 60 {
			t.Fatalf("FirstIndex after DropBefore(60) = %d", first)
		}
		mustMatch(t, l, ents[first-1:])
		_, err := l.Entries(first-1, first+1, 1<<20)
		wantErr(t, "Entries below first", err, ErrCompacted)
		// Dropping everything keeps the last segment.
		if err := l.DropBefore(10_000); err != nil {
			t.Fatal(err)
		}
		first = l.FirstIndex()
		if first > 150 || l.LastIndex() != 150 {
			t.Fatalf("after DropBefore(10000): first %d last %d", first, l.LastIndex())
		}
		l.Close()
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		if l.FirstIndex() != first {
			t.Fatalf("FirstIndex after reopen %d, want %d", l.FirstIndex(), first)
		}
		mustMatch(t, l, ents[first-1:])
		if term, err := l.Term(first - 1); err != nil || term != termOf(first-1) {
			t.Fatalf("Term(first-1) after reopen = %d, %v; want %d", term, err, termOf(first-1))
		}
	})
}

func TestHardState(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		cfg := testConfig(fs)
		l := mustOpen(t, dir, cfg)
		hs := HardState{Term: 7, Vote: "node-b", Commit: 42}
		if err := l.SetHardState(hs); err != nil {
			t.Fatal(err)
		}
		if got := l.HardState(); got != hs {
			t.Fatalf("HardState = %+v", got)
		}
		if err := l.SetHardState(hs); err != nil {
			t.Fatalf("setting the same state: %v", err)
		}
		wantErr(t, "long vote", l.SetHardState(HardState{Vote: strings.Repeat("x", MaxVoteBytes+1)}), ErrTooLarge)
		l.Close()
		l = mustOpen(t, dir, cfg)
		if got := l.HardState(); got != hs {
			t.Fatalf("HardState after reopen = %+v, want %+v", got, hs)
		}
		hs2 := HardState{Term: 8, Commit: 50}
		if err := l.SetHardState(hs2); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		if got := l.HardState(); got != hs2 {
			t.Fatalf("HardState after second reopen = %+v, want %+v", got, hs2)
		}
	})
}

func TestHardStateCorrupt(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	l := mustOpen(t, "/wal", cfg)
	if err := l.SetHardState(HardState{Term: 3, Vote: "a", Commit: 1}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, _ := mem.ReadFile("/wal/hardstate")
	b[7] ^= 0x10
	mem.WriteFile("/wal/hardstate", b)
	_, err := Open("/wal", cfg)
	var ce *CorruptError
	if !IsCorrupt(err) || !errors.As(err, &ce) || ce.File != "/wal/hardstate" {
		t.Fatalf("Open with a damaged hard state: %v", err)
	}
}

func TestClosed(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	mustAppend(t, l, makeEntries(1, 3, constTerm(1), 3))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Close", l.Close(), ErrClosed)
	wantErr(t, "Append", l.Append(makeEntries(4, 1, constTerm(1), 1)), ErrClosed)
	_, err := l.Entries(1, 2, 100)
	wantErr(t, "Entries", err, ErrClosed)
	_, _, err = l.ReadRaw(nil, 1, 2, 100)
	wantErr(t, "ReadRaw", err, ErrClosed)
	_, err = l.Term(1)
	wantErr(t, "Term", err, ErrClosed)
	wantErr(t, "TruncateAfter", l.TruncateAfter(1), ErrClosed)
	wantErr(t, "DropBefore", l.DropBefore(2), ErrClosed)
	wantErr(t, "SetHardState", l.SetHardState(HardState{Term: 1}), ErrClosed)
	wantErr(t, "SetCommitHint", l.SetCommitHint(9), ErrClosed)
}

func TestLeftoverTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(vfs.OS{})
	l := mustOpen(t, dir, cfg)
	mustAppend(t, l, makeEntries(1, 3, constTerm(1), 3))
	l.Close()
	for _, name := range []string{"00000000000000000004.wal.tmp", "hardstate.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l = mustOpen(t, dir, cfg)
	defer l.Close()
	mustMatch(t, l, makeEntries(1, 3, constTerm(1), 3))
	names, _ := vfs.OS{}.ReadDir(dir)
	for _, n := range names {
		if strings.HasSuffix(n, ".tmp") {
			t.Fatalf("temporary file %s left after Open", n)
		}
	}
}

// TestTornTailRepaired writes a partial record at the end of the last
// segment's data, as a crash in the middle of a write leaves it (followed by
// the preallocated zeros when preallocating), and checks that Open cuts it
// with a warning naming the file, offset and torn bytes, truncating the file
// there, and that the log then takes appends again.
func TestTornTailRepaired(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		t.Run(preallocName(prealloc), func(t *testing.T) {
			fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
				capt := &logCapture{}
				cfg := testConfig(fs)
				cfg.Preallocate = prealloc
				cfg.Logger = capt.logger()
				l := mustOpen(t, dir, cfg)
				ents := makeEntries(1, 10, constTerm(1), 20)
				mustAppend(t, l, ents)
				last := l.segs[len(l.segs)-1]
				good := last.size
				l.Close()
				wantSize := good
				if prealloc {
					wantSize = cfg.SegmentBytes
				}
				if size := fileSize(t, fs, last.path); size != wantSize {
					t.Fatalf("segment is %d bytes, want %d", size, wantSize)
				}
				partial := AppendEntryRecord(nil, &makeEntries(11, 1, constTerm(1), 20)[0])
				partial = partial[:len(partial)-3]
				f, err := fs.OpenFile(last.path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(partial, good); err != nil {
					t.Fatal(err)
				}
				f.Sync()
				f.Close()
				l = mustOpen(t, dir, cfg)
				defer l.Close()
				mustMatch(t, l, ents)
				out := capt.String()
				for _, want := range []string{"torn tail", "file=" + last.path, fmt.Sprintf("offset=%d", good), fmt.Sprintf("bytes=%d", len(partial))} {
					if !strings.Contains(out, want) {
						t.Fatalf("log output lacks %q:\n%s", want, out)
					}
				}
				if size := fileSize(t, fs, last.path); size != good {
					t.Fatalf("torn tail not cut: file is %d bytes, want %d", size, good)
				}
				more := makeEntries(11, 3, constTerm(1), 20)
				mustAppend(t, l, more)
				mustMatch(t, l, append(ents, more...))
			})
		})
	}
}

// preallocName names a subtest by its Config.Preallocate setting (no "=",
// which slog would quote in paths).
func preallocName(prealloc bool) string {
	if prealloc {
		return "prealloc"
	}
	return "extend"
}

func fileSize(t testing.TB, fs vfs.FS, path string) int64 {
	t.Helper()
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

func TestCorruptionRefusesToOpen(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	l := mustOpen(t, "/wal", cfg)
	ents := makeEntries(1, 100, constTerm(1), 100)
	mustAppend(t, l, ents)
	seg := l.segs[1]
	off := int64(seg.offs[3])
	l.Close()
	b, _ := mem.ReadFile(seg.path)
	b[off+15] ^= 4
	mem.WriteFile(seg.path, b)
	_, err := Open("/wal", cfg)
	var ce *CorruptError
	if !IsCorrupt(err) || !errors.As(err, &ce) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if ce.File != seg.path || ce.Offset != off {
		t.Fatalf("CorruptError names %s at %d, want %s at %d", ce.File, ce.Offset, seg.path, off)
	}
	if !strings.Contains(err.Error(), seg.path) || !strings.Contains(err.Error(), fmt.Sprint(off)) {
		t.Fatalf("error text %q does not name the file and offset", err)
	}
	if IsCorrupt(ErrClosed) || IsCorrupt(nil) {
		t.Fatal("IsCorrupt true for a non-corruption error")
	}
}

func TestMissingMiddleSegment(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	l := mustOpen(t, "/wal", cfg)
	mustAppend(t, l, makeEntries(1, 150, constTerm(1), 100))
	gone := l.segs[1].path
	l.Close()
	mem.Remove(gone)
	mem.SyncDir("/wal")
	_, err := Open("/wal", cfg)
	if !IsCorrupt(err) {
		t.Fatalf("Open with a missing segment: %v", err)
	}
}

func TestConcurrentAppendersAndReaders(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		cfg := testConfig(fs)
		cfg.SegmentBytes = 64 << 10
		l := mustOpen(t, dir, cfg)
		const writers, perWriter = 16, 40
		var (
			orderMu sync.Mutex
			next    = uint64(1)
			wg      sync.WaitGroup
			errs    = make(chan error, writers*perWriter+8)
		)
		termOf := func(i uint64) uint64 { return 1 + i/100 }
		for w := 0; w < writers; w++ {
			wg.Go(func() {
				for range perWriter {
					// Submit fixes the order; Wait shares the fsync.
					orderMu.Lock()
					ents := makeEntries(next, 1+int(next%3), termOf, 100)
					tk, err := l.Submit(ents)
					if err == nil {
						next += uint64(len(ents))
					}
					orderMu.Unlock()
					if err == nil {
						err = l.Wait(tk)
					}
					if err == nil && l.LastIndex() < ents[len(ents)-1].Index {
						err = fmt.Errorf("Wait returned before entry %d was durable (last %d)", ents[len(ents)-1].Index, l.LastIndex())
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		stop := make(chan struct{})
		var rg sync.WaitGroup
		rg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				last := l.LastIndex()
				if last == 0 {
					continue
				}
				got, err := l.Entries(1, last+1, 1<<30)
				if err != nil || uint64(len(got)) != last {
					errs <- fmt.Errorf("concurrent Entries(1,%d): %d entries, %v", last+1, len(got), err)
					return
				}
			}
		})
		wg.Wait()
		close(stop)
		rg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		total := next - 1
		want := makeEntries(1, int(total), termOf, 100)
		// Entry sizes depend only on the index, so regenerate and compare.
		mustMatch(t, l, want)
		l.Close()
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		mustMatch(t, l, want)
	})
}

func TestSubmitWait(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	l := mustOpen(t, "/wal", cfg)
	if tk, err := l.Submit(nil); tk != 0 || err != nil {
		t.Fatalf("Submit(nil) = %d, %v", tk, err)
	}
	if err := l.Wait(0); err != nil {
		t.Fatalf("Wait(0): %v", err)
	}
	// Submissions are ordered by Submit, and later ones continue earlier ones
	// before anything is durable.
	var tickets []Ticket
	for i := uint64(1); i <= 30; i += 3 {
		tk, err := l.Submit(makeEntries(i, 3, constTerm(1), 10))
		if err != nil {
			t.Fatalf("Submit(%d): %v", i, err)
		}
		tickets = append(tickets, tk)
	}
	_, err := l.Submit(makeEntries(40, 1, constTerm(1), 1))
	wantErr(t, "Submit with a gap after pending entries", err, ErrNotContiguous)
	wantErr(t, "Wait on a ticket never issued", l.Wait(tickets[len(tickets)-1]+5), ErrInvalid)
	for k := len(tickets) - 1; k >= 0; k-- {
		if err := l.Wait(tickets[k]); err != nil {
			t.Fatalf("Wait(%d): %v", tickets[k], err)
		}
	}
	mustMatch(t, l, makeEntries(1, 30, constTerm(1), 10))
	if st := l.Stats(); st.Entries != 30 || st.Flushes == 0 || st.Flushes > 10 || st.LastIndex != 30 || st.Segments != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	// Close writes what was submitted and not waited for.
	if _, err := l.Submit(makeEntries(31, 5, constTerm(2), 10)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "/wal", cfg)
	defer l.Close()
	mustMatch(t, l, append(makeEntries(1, 30, constTerm(1), 10), makeEntries(31, 5, constTerm(2), 10)...))
}

// TestTruncateWhilePending checks that TruncateAfter writes what was
// submitted before it and that appends continue from the cut.
func TestTruncateWhilePending(t *testing.T) {
	l := mustOpen(t, "/wal", testConfig(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, makeEntries(1, 10, constTerm(1), 10))
	tk, err := l.Submit(makeEntries(11, 10, constTerm(1), 10))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateAfter(15); err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(tk); err != nil {
		t.Fatalf("Wait for entries written before the truncation: %v", err)
	}
	wantErr(t, "append after the old end", l.Append(makeEntries(21, 1, constTerm(2), 1)), ErrNotContiguous)
	mustAppend(t, l, makeEntries(16, 3, constTerm(2), 10))
	mustMatch(t, l, append(makeEntries(1, 15, constTerm(1), 10), makeEntries(16, 3, constTerm(2), 10)...))
}

func TestRecordRoundTrip(t *testing.T) {
	e := entry.Entry{Term: 5, Index: 9, Kind: entry.KindDelete, Key: []byte("k"), RequestID: 77}
	rec := AppendEntryRecord([]byte("x"), &e)[1:]
	if len(rec) != RecordHeaderSize+e.Size() {
		t.Fatalf("record is %d bytes, want %d", len(rec), RecordHeaderSize+e.Size())
	}
	kind, payload, n, err := DecodeRecord(append(rec, 0xff)) // trailing byte ignored
	if err != nil || kind != RecordEntry || n != len(rec) {
		t.Fatalf("DecodeRecord = %d, %d, %v", kind, n, err)
	}
	got, err := entry.Decode(payload)
	if err != nil || !got.Equal(&e) {
		t.Fatalf("payload decodes to %+v, %v", got, err)
	}
	if !bytes.Equal(AppendRecord(nil, RecordEntry, payload), rec) {
		t.Fatal("AppendRecord and AppendEntryRecord differ")
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short header", rec[:8], nil}, // io.ErrUnexpectedEOF, checked below
		{"short payload", rec[:len(rec)-1], nil},
		{"bad checksum", flip(rec, 20), ErrCorrupt},
		{"bad kind", AppendRecord(nil, 7, []byte("p")), ErrCorrupt},
	}
	for _, tt := range tests {
		_, _, _, err := DecodeRecord(tt.b)
		if tt.want == nil {
			if err == nil || IsCorrupt(err) {
				t.Fatalf("%s: %v, want io.ErrUnexpectedEOF", tt.name, err)
			}
			continue
		}
		wantErr(t, tt.name, err, tt.want)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

// TestDone checks that Done's channel closes once the ticket is durable (or
// the log has failed), after which Wait returns at once.
func TestDone(t *testing.T) {
	mem := vfs.NewMem()
	l := mustOpen(t, "/wal", testConfig(mem))
	defer l.Close()
	var tickets []Ticket
	for i := uint64(1); i <= 20; i += 4 {
		tk, err := l.Submit(makeEntries(i, 4, constTerm(1), 10))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	for _, tk := range tickets {
		select {
		case <-l.Done(tk):
		case <-time.After(10 * time.Second):
			t.Fatalf("Done(%d) never closed", tk)
		}
		if st := l.Stats(); st.LastIndex < uint64(tk)*4 {
			t.Fatalf("Done(%d) closed with the log durable only to %d", tk, st.LastIndex)
		}
		if err := l.Wait(tk); err != nil {
			t.Fatalf("Wait(%d) after Done: %v", tk, err)
		}
	}
	select {
	case <-l.Done(tickets[len(tickets)-1] + 1): // never issued: closed, Wait reports it
	default:
		t.Fatal("Done on a ticket never issued should be closed")
	}
	// A failed fsync closes the channel and Wait reports the failure.
	mem.SetFaults(vfs.Faults{Sync: func(string) error { return errInjected }})
	tk, err := l.Submit(makeEntries(21, 1, constTerm(1), 1))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done(tk):
	case <-time.After(10 * time.Second):
		t.Fatal("Done never closed after a failed fsync")
	}
	wantErr(t, "Wait after a failed fsync", l.Wait(tk), ErrSyncFailed)
}

// TestBatchGrow checks that a batch's buffer grows once for a whole Submit
// (the records then fit without moving it) and at least doubles when it moves.
func TestBatchGrow(t *testing.T) {
	b := &batch{}
	ents := make([]entry.Entry, 64)
	need := 0
	for i := range ents {
		ents[i] = entry.Entry{Term: 1, Index: uint64(i + 1), Kind: entry.KindPut, Key: []byte("k"), Value: make([]byte, 16<<10)}
		need += RecordHeaderSize + ents[i].Size()
	}
	b.grow(need)
	c := cap(b.buf)
	if c < need {
		t.Fatalf("cap %d after grow(%d)", c, need)
	}
	for i := range ents {
		b.buf = AppendEntryRecord(b.buf, &ents[i])
	}
	if len(b.buf) != need || cap(b.buf) != c {
		t.Fatalf("after appending: len %d (want %d), cap %d (want %d, unmoved)", len(b.buf), need, cap(b.buf), c)
	}
	b.grow(1)
	if cap(b.buf) < 2*c || len(b.buf) != need {
		t.Fatalf("growing a full buffer: cap %d (want >= %d), len %d (want %d kept)", cap(b.buf), 2*c, len(b.buf), need)
	}
}

// TestBatchReset checks which buffers a batch keeps for reuse: any up to
// keepBatchBytes; a larger one only while the batch that used it filled at
// least a quarter of it, and never one above maxRetainedBatchBytes.
func TestBatchReset(t *testing.T) {
	for _, c := range []struct {
		cap, used int
		kept      bool
	}{
		{1 << 20, 0, true},
		{keepBatchBytes, 1, true},
		{16 << 20, 8 << 20, true},
		{16 << 20, 4 << 20, true},
		{16 << 20, 4<<20 - 1, false},
		{maxRetainedBatchBytes, maxRetainedBatchBytes, true},
		{2 * maxRetainedBatchBytes, 2 * maxRetainedBatchBytes, false},
	} {
		b := &batch{buf: make([]byte, c.used, c.cap), recs: make([]recMeta, 3)}
		b.reset()
		if kept := b.buf != nil; kept != c.kept || len(b.buf) != 0 || len(b.recs) != 0 {
			t.Errorf("cap %d, used %d: kept %v (want %v), len %d, %d records", c.cap, c.used, kept, c.kept, len(b.buf), len(b.recs))
		}
	}
}
