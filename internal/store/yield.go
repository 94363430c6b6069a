package store

import (
	"runtime"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// yieldFS wraps Pebble's file system so that every write of a new file (an
// sstable a flush or compaction is building, the manifest) first yields the
// processor. Flushes and compactions are long CPU-bound runs; on a node with
// one processor (GOMAXPROCS=1) Go would let one run for up to 10 ms before
// preempting it, holding up the run loop and every connection behind it.
// Yielding at each buffered write (every few KiB) lets them in.
type yieldFS struct{ vfs.FS }

func (fs yieldFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return yieldFile{f}, nil
}

func (fs yieldFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return yieldFile{f}, nil
}

type yieldFile struct{ vfs.File }

// yield gives the processor to other runnable goroutines (a variable so
// that a test can count the calls).
var yield = runtime.Gosched

func (f yieldFile) Write(p []byte) (int, error) {
	yield()
	return f.File.Write(p)
}
