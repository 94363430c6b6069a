package snapshot

import (
	"fmt"
	"os"
	"unsafe"
)

// The receiver writes chunk data on a goroutine of its own (diskWriter),
// so that the disk writes one chunk while the next is read, decrypted and
// checked. Where the file system allows it, the writes skip the page cache
// (O_DIRECT): filling fresh page-cache pages costs the receiver much kernel
// CPU per byte, and a snapshot is not read back soon. Such writes need buffers, offsets and lengths aligned to
// directAlign; the rest of a chunk (a file's last bytes, a transfer resumed
// at an unaligned offset) goes through the page cache.

// directAlign is the alignment direct writes need (the largest logical
// block size in use).
const directAlign = 4096

// writerDepth is the number of chunks read ahead of the disk.
const writerDepth = 4

// alignedBuf returns a buffer of n bytes whose start is aligned to
// directAlign.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & (directAlign - 1)
	return b[skip : skip+n : skip+n]
}

// rfile is one file being received: a handle through the page cache and,
// if the file system allows, one that skips it.
type rfile struct {
	fh     *os.File
	direct *os.File
}

// writeJob is one step for the writer, done in order: write data at off,
// and/or finish the file (whole: hand it to the syncer; else just close).
type writeJob struct {
	f      *rfile
	off    int64
	data   []byte // nil: no write
	buf    []byte // returned to the pool after the write
	ack    uint64 // acknowledge this many bytes after the write (0: none)
	finish bool   // the file is whole: fsync and close it (the syncer)
	close  bool   // close the file without a fsync (a transfer cut short)
	drain  chan struct{}
}

// diskWriter does writeJobs in order on its goroutine and acknowledges the
// chunks it wrote. During the data phase it is the only writer to the
// connection.
type diskWriter struct {
	jobs   chan writeJob
	pool   chan []byte
	failed chan struct{} // closed on the first error (err)
	done   chan struct{} // closed when run returns
	err    error         // set before failed is closed
	ackErr error         // the first error sending an ack (the writer's goroutine, then stop)
	c      *conn
	syncq  chan<- *os.File
	direct bool // direct writes still allowed (the writer's goroutine only)
	frame  []byte
}

func newDiskWriter(c *conn, chunkBytes int, syncq chan<- *os.File) *diskWriter {
	w := &diskWriter{
		jobs:   make(chan writeJob, writerDepth),
		pool:   make(chan []byte, writerDepth+2),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
		c:      c,
		syncq:  syncq,
		direct: true,
	}
	for range writerDepth + 2 {
		w.pool <- alignedBuf(chunkBytes)
	}
	go w.run()
	return w
}

// buffer returns a free buffer of n bytes (waiting for the writer to free
// one), or nil if the writer failed.
func (w *diskWriter) buffer(n int) []byte {
	select {
	case b := <-w.pool:
		if cap(b) < n {
			b = alignedBuf(n)
		}
		return b[:n]
	case <-w.failed:
		return nil
	}
}

// put queues a job; it returns the writer's error if it has failed (the job
// may then not be done: the caller closes its file).
func (w *diskWriter) put(j writeJob) error {
	select {
	case <-w.failed:
		return w.err
	default:
	}
	select {
	case w.jobs <- j:
		return nil
	case <-w.failed:
		return w.err
	}
}

// failure returns the writer's error, if it has failed.
func (w *diskWriter) failure() error {
	select {
	case <-w.failed:
		return w.err
	default:
		return nil
	}
}

// wait waits until every job queued so far is done.
func (w *diskWriter) wait() error {
	d := make(chan struct{})
	if err := w.put(writeJob{drain: d}); err != nil {
		return err
	}
	select {
	case <-d:
		return w.failure()
	case <-w.failed:
		return w.err
	}
}

// stop waits for the queued jobs and ends the writer; it returns its error
// (a write's, else an ack's).
func (w *diskWriter) stop() error {
	close(w.jobs)
	<-w.done
	if err := w.failure(); err != nil {
		return err
	}
	return w.ackErr
}

func (w *diskWriter) run() {
	defer close(w.done)
	for j := range w.jobs {
		if w.failure() == nil && j.data != nil {
			if err := w.write(j); err != nil {
				w.err = err
				close(w.failed)
			} else if j.ack > 0 && w.ackErr == nil {
				// A lost connection does not stop the writes: what arrived
				// whole is kept for a resumed transfer.
				w.frame = appendFrame(w.frame[:0], frameAck, appendU64(nil, j.ack))
				_, w.ackErr = w.c.Write(w.frame)
			}
		}
		if j.buf != nil {
			select {
			case w.pool <- j.buf[:cap(j.buf)]:
			default: // a buffer of a larger chunk than the pool's: dropped
			}
		}
		switch {
		case j.finish && w.failure() == nil:
			if j.f.direct != nil {
				j.f.direct.Close()
			}
			w.syncq <- j.f.fh // the syncer fsyncs and closes it
		case j.finish || j.close:
			j.f.close()
		}
		if j.drain != nil {
			close(j.drain)
		}
	}
}

// write writes j's data: the aligned part directly if it can, the rest
// through the page cache.
func (w *diskWriter) write(j writeJob) error {
	data, off := j.data, j.off
	if w.direct && j.f.direct != nil && off%directAlign == 0 {
		if n := len(data) &^ (directAlign - 1); n > 0 {
			_, err := j.f.direct.WriteAt(data[:n], off)
			if err == nil {
				data, off = data[n:], off+int64(n)
			} else {
				// Not allowed after all (some file systems refuse at the
				// first write): the page cache from now on.
				w.direct = false
			}
		}
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := j.f.fh.WriteAt(data, off); err != nil {
		return fmt.Errorf("snapshot: writing %s: %w", j.f.fh.Name(), err)
	}
	return nil
}

func (f *rfile) close() {
	if f.direct != nil {
		f.direct.Close()
	}
	f.fh.Close()
}
