package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
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
