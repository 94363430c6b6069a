package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// both runs f against the real and the in-memory file system.
func both(t *testing.T, f func(t *testing.T, fsys FS, dir string)) {
	t.Run("os", func(t *testing.T) { f(t, OS{}, t.TempDir()) })
	t.Run("mem", func(t *testing.T) {
		m := NewMem()
		if err := m.MkdirAll("/d", 0o755); err != nil {
			t.Fatal(err)
		}
		f(t, m, "/d")
	})
}

func mustWrite(t *testing.T, f File, s string) {
	t.Helper()
	if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func readAll(t *testing.T, f File) string {
	t.Helper()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, info.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return string(b)
}

// TestSemantics checks that Mem behaves like the real file system for the
// operations the WAL uses.
func TestSemantics(t *testing.T) {
	both(t, func(t *testing.T, fsys FS, dir string) {
		p := filepath.Join(dir, "a")
		f, err := fsys.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f, "hello ")
		mustWrite(t, f, "world")
		if got := readAll(t, f); got != "hello world" {
			t.Fatalf("content %q", got)
		}
		buf := make([]byte, 5)
		if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF {
			t.Fatalf("short ReadAt = %d, %v; want 3, EOF", n, err)
		}
		if err := f.Truncate(5); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		// O_APPEND writes at the end, after a truncate too.
		g, err := fsys.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, g, "!")
		if err := g.Truncate(3); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, g, "p")
		if got := readAll(t, g); got != "help" {
			t.Fatalf("content after append/truncate %q, want %q", got, "help")
		}
		g.Close()
		if _, err := fsys.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("O_EXCL on an existing file: %v", err)
		}
		if _, err := fsys.OpenFile(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("opening a missing file: %v", err)
		}
		if err := fsys.Rename(p, filepath.Join(dir, "b")); err != nil {
			t.Fatal(err)
		}
		names, err := fsys.ReadDir(dir)
		if err != nil || len(names) != 1 || names[0] != "b" {
			t.Fatalf("ReadDir = %v, %v", names, err)
		}
		if err := fsys.SyncDir(dir); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Remove(filepath.Join(dir, "b")); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Remove(filepath.Join(dir, "b")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("removing twice: %v", err)
		}
		if err := fsys.MkdirAll(filepath.Join(dir, "x", "y"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := fsys.Create(filepath.Join(dir, "x", "y", "z")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMemCrashKeepsOnlySynced(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o755)
	// synced file, synced dir entry: survives with its synced content.
	f, _ := m.Create("/d/kept")
	mustWrite(t, f, "durable")
	f.Sync()
	m.SyncDir("/d")
	mustWrite(t, f, "-lost")
	// renamed after the last SyncDir: the old name survives.
	h, _ := m.Create("/d/old")
	mustWrite(t, h, "renamed")
	h.Sync()
	m.SyncDir("/d")
	m.Rename("/d/old", "/d/new")
	// file synced but its dir entry never synced: vanishes.
	g, _ := m.Create("/d/nodirsync")
	mustWrite(t, g, "x")
	g.Sync()

	m.Crash(CrashOptions{})
	names, _ := m.ReadDir("/d")
	if len(names) != 2 || names[0] != "kept" || names[1] != "old" {
		t.Fatalf("after crash: %v, want [kept old]", names)
	}
	if b, _ := m.ReadFile("/d/kept"); string(b) != "durable" {
		t.Fatalf("kept = %q, want %q", b, "durable")
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrStale) {
		t.Fatalf("write on a handle from before the crash: %v", err)
	}
}

func TestMemCrashTearsUnsyncedTail(t *testing.T) {
	seen := map[int]bool{}
	for seed := range uint64(50) {
		m := NewMem()
		m.MkdirAll("/d", 0o755)
		f, _ := m.Create("/d/f")
		mustWrite(t, f, "synced|")
		f.Sync()
		m.SyncDir("/d")
		mustWrite(t, f, "0123456789")
		m.Crash(CrashOptions{Rand: rand.New(rand.NewPCG(seed, 1)), TearUnsynced: true})
		b, _ := m.ReadFile("/d/f")
		if !bytes.HasPrefix([]byte("synced|0123456789"), b) || len(b) < len("synced|") {
			t.Fatalf("seed %d: torn content %q is not synced data plus a prefix of the rest", seed, b)
		}
		seen[len(b)] = true
	}
	if len(seen) < 3 {
		t.Fatalf("tearing kept only lengths %v; it should vary", seen)
	}
}

func TestMemFaults(t *testing.T) {
	m := NewFaulty(Faults{})
	m.MkdirAll("/d", 0o755)
	boom := errors.New("boom")
	f, _ := m.Create("/d/f")
	m.SyncDir("/d")
	mustWrite(t, f, "abc")
	m.SetFaults(Faults{
		Sync:  func(name string) error { return boom },
		Write: func(name string, n int) (int, error) { return 1, boom },
	})
	if err := f.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v, want the injected error", err)
	}
	if err := m.SyncDir("/d"); !errors.Is(err, boom) {
		t.Fatalf("SyncDir = %v, want the injected error", err)
	}
	if n, err := f.Write([]byte("xyz")); n != 1 || !errors.Is(err, boom) {
		t.Fatalf("Write = %d, %v; want a 1-byte torn write", n, err)
	}
	m.SetFaults(Faults{})
	if got := readAll(t, f); got != "abcx" {
		t.Fatalf("content %q", got)
	}
	// The failed Sync made nothing durable.
	m.Crash(CrashOptions{})
	if b, _ := m.ReadFile("/d/f"); len(b) != 0 {
		t.Fatalf("after a failed sync and a crash the file holds %q, want nothing", b)
	}
}

// TestWriteAt checks WriteAt on both file systems: overwriting in place,
// extending past the end with zeros in the gap, leaving the file offset
// alone, and refusing files opened with O_APPEND (as os.File does).
func TestWriteAt(t *testing.T) {
	both(t, func(t *testing.T, fsys FS, dir string) {
		p := filepath.Join(dir, "a")
		f, err := fsys.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		mustWrite(t, f, "0123456789")
		tests := []struct {
			name string
			data string
			off  int64
			want string
		}{
			{"overwrite inside", "ab", 3, "012ab56789"},
			{"overwrite at start", "X", 0, "X12ab56789"},
			{"straddle the end", "YZ!", 9, "X12ab5678YZ!"},
			{"past the end, zero gap", "q", 14, "X12ab5678YZ!\x00\x00q"},
			{"empty write past the end", "", 20, "X12ab5678YZ!\x00\x00q"},
		}
		for _, tt := range tests {
			n, err := f.WriteAt([]byte(tt.data), tt.off)
			if err != nil || n != len(tt.data) {
				t.Fatalf("%s: WriteAt = %d, %v", tt.name, n, err)
			}
			if got := readAll(t, f); got != tt.want {
				t.Fatalf("%s: content %q, want %q", tt.name, got, tt.want)
			}
		}
		// WriteAt did not move the offset used by Write (10, after "0123456789").
		mustWrite(t, f, "W")
		if got, want := readAll(t, f), "X12ab5678YW!\x00\x00q"; got != want {
			t.Fatalf("after Write: %q, want %q", got, want)
		}
		if _, err := f.WriteAt([]byte("x"), -1); err == nil {
			t.Fatal("WriteAt at a negative offset succeeded")
		}
		g, err := fsys.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if _, err := g.WriteAt([]byte("x"), 0); err == nil {
			t.Fatal("WriteAt on an O_APPEND file succeeded")
		}
		r, err := fsys.OpenFile(p, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.WriteAt([]byte("x"), 0); err == nil {
			t.Fatal("WriteAt on a read-only file succeeded")
		}
	})
}

// TestMemCrashWriteAt checks the crash model for overwrites: without a Sync
// they are lost; with TearUnsynced, a crash keeps the synced content with a
// prefix (in file order) of the overwritten bytes applied, and the synced
// size; a failed write hook tears WriteAt like Write.
func TestMemCrashWriteAt(t *testing.T) {
	zeros := string(make([]byte, 16))
	setup := func() (*Mem, File) {
		m := NewMem()
		m.MkdirAll("/d", 0o755)
		f, _ := m.Create("/d/f")
		mustWrite(t, f, zeros) // preallocated space
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		m.SyncDir("/d")
		return m, f
	}

	m, f := setup()
	if _, err := f.WriteAt([]byte("abcd"), 4); err != nil {
		t.Fatal(err)
	}
	m.Crash(CrashOptions{})
	if b, _ := m.ReadFile("/d/f"); string(b) != zeros {
		t.Fatalf("unsynced overwrite survived a crash: %q", b)
	}

	m, f = setup()
	f.WriteAt([]byte("abcd"), 4)
	f.Sync()
	f.WriteAt([]byte("efgh"), 8)
	m.Crash(CrashOptions{})
	if b, _ := m.ReadFile("/d/f"); string(b) != zeros[:4]+"abcd"+zeros[:8] {
		t.Fatalf("after sync+crash: %q", b)
	}

	seen := map[string]bool{}
	for seed := range uint64(50) {
		m, f := setup()
		f.WriteAt([]byte("abcdef"), 4)
		m.Crash(CrashOptions{Rand: rand.New(rand.NewPCG(seed, 2)), TearUnsynced: true})
		b, _ := m.ReadFile("/d/f")
		if len(b) != len(zeros) {
			t.Fatalf("seed %d: torn overwrite changed the size to %d", seed, len(b))
		}
		k := len(bytes.TrimRight(b[4:10], "\x00"))
		if want := zeros[:4] + "abcdef"[:k] + zeros[:12-k]; string(b) != want {
			t.Fatalf("seed %d: torn content %q is not synced data with a prefix of the overwrite (%q)", seed, b, want)
		}
		seen[string(b)] = true
	}
	if len(seen) < 3 {
		t.Fatalf("tearing an overwrite gave only %d outcomes; it should vary", len(seen))
	}

	m, f = setup()
	boom := errors.New("boom")
	m.SetFaults(Faults{Write: func(name string, n int) (int, error) { return 2, boom }})
	if n, err := f.WriteAt([]byte("xyz"), 1); n != 2 || !errors.Is(err, boom) {
		t.Fatalf("WriteAt = %d, %v; want a 2-byte torn write", n, err)
	}
	m.SetFaults(Faults{})
	if b, _ := m.ReadFile("/d/f"); string(b) != "\x00xy"+zeros[:13] {
		t.Fatalf("content after a torn WriteAt: %q", b)
	}
}

// TestDropCache: a real file's cached pages can be dropped without changing
// its data; a closed file reports an error; a file that cannot drop its
// cache (the in-memory file system's) is left alone.
func TestDropCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := OS{}.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("trireme "), 4096)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := DropCache(f); err != nil {
		t.Fatalf("DropCache: %v", err)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data changed after DropCache")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" {
		if err := DropCache(f); err == nil {
			t.Fatal("DropCache on a closed file: no error")
		}
	}
	m := NewMem()
	mf, err := m.Create("/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mf.(CacheDropper); ok {
		t.Fatal("the in-memory file system's files claim to drop a cache")
	}
	if err := DropCache(mf); err != nil {
		t.Fatalf("DropCache on a memory file: %v", err)
	}
}
