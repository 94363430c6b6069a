package store

import (
	"bytes"
	"io"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPebbleWritesYield checks that the files Pebble writes for the store
// yield the processor on each write (so a flush or compaction on a node with
// GOMAXPROCS=1 lets the run loop in) and still write what they are given.
func TestPebbleWritesYield(t *testing.T) {
	cfg := testConfig()
	s := &Store{cfg: cfg, log: cfg.Logger}
	fs := s.pebbleOptions().FS
	name := filepath.Join(t.TempDir(), "000001.sst")
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(yieldFile); !ok {
		t.Fatalf("Pebble's FS creates %T, want a yieldFile", f)
	}

	// With one processor, a goroutine just started runs only when the
	// current one yields: it must have run once Write returns.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var ran atomic.Bool
	go func() { ran.Store(true) }()
	want := bytes.Repeat([]byte("trireme "), 512)
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if !ran.Load() {
		t.Error("Write did not yield the processor to a runnable goroutine")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(want))
	}
}
