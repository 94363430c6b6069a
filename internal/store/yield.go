package store

import (
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// pacedFS wraps Pebble's file system so that Pebble's background work
// (flushes and compactions, the CPU-bound runs that build sstables) gives way
// to the node's foreground work:
//
//   - Every write of a file Pebble creates first yields the processor. On a
//     node with one processor (GOMAXPROCS=1) Go would let a flush run for up
//     to 10 ms before preempting it, holding up the run loop and every
//     connection behind it. Yielding at each buffered write (every few KiB)
//     lets them in.
//   - With Config.BackgroundPace > 0, the writer of an sstable also pauses in
//     proportion to the time it worked since its previous write: pace 0.5
//     makes a flush take about half as long again, and use the processor two
//     thirds of the time while it runs. A flush of a 16 MiB memtable took 20-45 ms of CPU, and
//     every node on a machine flushed at the same moment (they apply the
//     same writes); write latency spiked with each one (docs/BENCHMARKS.md,
//     sixth round).
//
// The pacing holds off whenever waiting would cost writes: while Pebble
// stalls them (too many memtables or L0 files waiting, reported by its event
// listener), while the store itself waits for a flush (Flush, Close,
// snapshots), and for a second after each batch of at least a MiB (a
// follower catching up, a bulk load: in the benchmark's catch-up, paced
// flushes and compactions cost a third of the rate). It paces only sstables;
// the manifest and the rest are small.
type pacedFS struct {
	vfs.FS
	pace    float64             // Config.BackgroundPace
	hold    atomic.Int32        // > 0: do not pause (the store waits for a flush)
	stalled atomic.Bool         // Pebble stalls writes: do not pause
	quietTo atomic.Int64        // do not pause before this time (Unix nanoseconds; quiet)
	pause   func(time.Duration) // time.Sleep; tests record the pauses instead
	// failed, if set, returns the store's failure. After one, Pebble's
	// file creations first wait failedBackoff: Pebble retries a failed
	// flush at once and forever (on a full disk, a core spinning for as
	// long as the process lives, and in a test binary for the rest of the
	// run, since a store with a write stuck inside it cannot close).
	failed func() error
}

// failedBackoff is how long a file creation waits after the store failed
// (Close waits for the flush that waits here).
const failedBackoff = 250 * time.Millisecond

// Pacing limits (pacedFile.Write).
const (
	// minPause: debts below it are carried to the next write (shorter
	// sleeps cost more than they give back).
	minPause = 500 * time.Microsecond
	// maxPause caps one pause.
	maxPause = 5 * time.Millisecond
	// quietBatchBytes: an applied batch at least this large holds the
	// pacing off for quietFor.
	quietBatchBytes = 1 << 20
	quietFor        = time.Second
	// maxWorkGap caps the time between two writes counted as work: a longer
	// gap means the writer waited (for input, or for a processor), and must
	// not turn into one long pause.
	maxWorkGap = 5 * time.Millisecond
)

func newPacedFS(fs vfs.FS, pace float64) *pacedFS {
	return &pacedFS{FS: fs, pace: pace, pause: time.Sleep}
}

// backoff waits failedBackoff once the store has failed.
func (fs *pacedFS) backoff() {
	if fs.failed != nil && fs.failed() != nil {
		time.Sleep(failedBackoff)
	}
}

func (fs *pacedFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	fs.backoff()
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return fs.wrap(f, name), nil
}

func (fs *pacedFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	fs.backoff()
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return fs.wrap(f, newname), nil
}

func (fs *pacedFS) wrap(f vfs.File, name string) *pacedFile {
	return &pacedFile{File: f, fs: fs, paced: fs.pace > 0 && strings.HasSuffix(name, ".sst")}
}

// holdPacing stops the pacing until the returned function is called.
func (fs *pacedFS) holdPacing() (release func()) {
	fs.hold.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			fs.hold.Add(-1)
		}
	}
}

// quiet holds the pacing off for d from now.
func (fs *pacedFS) quiet(d time.Duration) {
	to := time.Now().Add(d).UnixNano()
	for {
		cur := fs.quietTo.Load()
		if cur >= to || fs.quietTo.CompareAndSwap(cur, to) {
			return
		}
	}
}

// pacedFile is a file Pebble writes (one writer at a time).
type pacedFile struct {
	vfs.File
	fs    *pacedFS
	paced bool
	last  time.Time     // when the previous write returned
	debt  time.Duration // pause owed and not yet taken
}

// yield gives the processor to other runnable goroutines (a variable so
// that a test can count the calls).
var yield = runtime.Gosched

func (f *pacedFile) Write(p []byte) (int, error) {
	if !f.paced {
		yield()
		return f.File.Write(p)
	}
	now := time.Now()
	if !f.last.IsZero() {
		f.debt += time.Duration(float64(min(now.Sub(f.last), maxWorkGap)) * f.fs.pace)
	}
	switch {
	case f.fs.hold.Load() > 0 || f.fs.stalled.Load() || now.UnixNano() < f.fs.quietTo.Load():
		f.debt = 0
		yield()
	case f.debt >= minPause:
		f.fs.pause(min(f.debt, maxPause))
		f.debt = 0
	default:
		yield()
	}
	n, err := f.File.Write(p)
	f.last = time.Now()
	return n, err
}
