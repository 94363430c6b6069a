package store

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/trireme-db/trireme/internal/entry"
)

// faultFS is Pebble's file system with a switch that makes every file
// creation and every write fail with err, as a full disk (ENOSPC), a dead
// device (EIO) or a read-only file system (EROFS) would.
type faultFS struct {
	vfs.FS
	err atomic.Pointer[syscall.Errno]
}

func (fs *faultFS) fault(op, name string) error {
	if e := fs.err.Load(); e != nil {
		return &os.PathError{Op: op, Path: name, Err: *e}
	}
	return nil
}

func (fs *faultFS) set(e syscall.Errno) { fs.err.Store(&e) }

func (fs *faultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault("open", name); err != nil {
		return nil, err
	}
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs, name: name}, nil
}

func (fs *faultFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault("open", newname); err != nil {
		return nil, err
	}
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs, name: newname}, nil
}

type faultFile struct {
	vfs.File
	fs   *faultFS
	name string
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.fault("write", f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.fault("write", f.name); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if err := f.fs.fault("sync", f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

// TestBackgroundErrorFailsStore: once Pebble's flushes fail (a full disk, an
// I/O error, a read-only file system), the store fails within a bounded time,
// with an error that names the store's directory and the errno; Apply stops
// instead of stalling behind the flush Pebble would retry forever; reads go
// on; and Close returns.
func TestBackgroundErrorFailsStore(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO, syscall.EROFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.MemTableBytes = 64 << 10 // flushes come soon
			cfg.WriteBufferBytes = 0     // every Apply reaches Pebble
			ffs := &faultFS{FS: vfs.Default}
			cfg.FS = ffs
			s, err := Open(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			mustApply(t, s, put(1, "before", "x"))
			ffs.set(errno)
			value := strings.Repeat("v", 1024)
			start := time.Now()
			var applyErr error
			i := uint64(2)
			for ; time.Since(start) < 10*time.Second; i++ {
				if applyErr = s.Apply([]entry.Entry{put(i, fmt.Sprint("k", i%500), value)}); applyErr != nil {
					break
				}
			}
			if applyErr == nil {
				t.Fatalf("Apply kept succeeding for 10s (%d entries) with every Pebble write failing with %v", i, errno)
			}
			if !errors.Is(applyErr, ErrFailed) || !errors.Is(applyErr, errno) {
				t.Fatalf("Apply = %v, want ErrFailed wrapping %v", applyErr, errno)
			}
			select {
			case <-s.Failed():
			default:
				t.Fatal("Failed() not closed after a failed Apply")
			}
			msg := s.Err().Error()
			if !strings.Contains(msg, dir) || !strings.Contains(msg, errno.Error()) {
				t.Fatalf("the failure does not name the directory %s and %q: %s", dir, errno.Error(), msg)
			}
			t.Logf("failed after %d entries, %v: %v", i-2, time.Since(start).Round(time.Millisecond), msg)
			if err := s.Flush(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Flush after the failure = %v, want ErrFailed", err)
			}
			mustGet(t, s, "before", "x", 1) // reads still work
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					// A write was held inside Pebble (a write stall
					// behind the failing flush): the database stays open
					// and cannot be reopened in this process.
					if !strings.Contains(err.Error(), "left open") {
						t.Fatalf("Close = %v", err)
					}
					t.Logf("Close: %v", err)
					releaseStuck(t, s, ffs)
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return within 10s of the failure")
			}
			// The disk is healthy again: the store reopens at a log prefix.
			ffs.err.Store(nil)
			s2, err := Open(dir, cfg)
			if err != nil {
				t.Fatalf("reopen after the fault: %v", err)
			}
			defer s2.Close()
			if a := s2.AppliedIndex(); a >= i {
				t.Fatalf("reopened at applied index %d, beyond the last entry %d", a, i-1)
			}
		})
	}
}

// TestFlushReturnsOnFailure: a Flush waiting for a flush that fails returns
// ErrFailed instead of waiting forever (Pebble retries a failed flush).
func TestFlushReturnsOnFailure(t *testing.T) {
	cfg := testConfig()
	ffs := &faultFS{FS: vfs.Default}
	cfg.FS = ffs
	dir := t.TempDir()
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, put(1, "a", "x"), put(2, "b", "y"))
	ffs.set(syscall.ENOSPC)
	done := make(chan error, 1)
	go func() { done <- s.Flush() }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Flush = %v, want ErrFailed wrapping ENOSPC", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flush did not return within 10s while every flush failed")
	}
	if s.DurableIndex() != 0 {
		t.Fatalf("DurableIndex = %d after a failed flush, want 0", s.DurableIndex())
	}
	// Nothing is held inside Pebble: Close closes it (within the backoff of
	// the flush it retries), and with the disk healthy again the store
	// reopens at a prefix of what was applied (here: nothing was flushed).
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close after a failed flush: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	ffs.err.Store(nil)
	s2, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("reopen with the disk healthy again: %v", err)
	}
	defer s2.Close()
	if a := s2.AppliedIndex(); a != 0 {
		t.Fatalf("reopened at applied index %d, want 0 (nothing was flushed)", a)
	}
}

// releaseStuck lets the write held inside Pebble finish (the disk recovers,
// Pebble's next flush succeeds), then closes the database that Close left
// open, so that its goroutines do not outlive the test.
func releaseStuck(t *testing.T, s *Store, ffs *faultFS) {
	t.Helper()
	ffs.err.Store(nil)
	deadline := time.Now().Add(10 * time.Second)
	for s.stuck.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the write held inside Pebble did not finish once the disk recovered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.closing.Store(true)
	s.h.release()
}
