package store

import (
	"bytes"
	"io"
	"path/filepath"
	"runtime"
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

	// Each write yields first. (Counting the calls rather than watching
	// the scheduler: whom Go runs after a yield is not deterministic.)
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

	r, err := fs.Open(name)
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
}
