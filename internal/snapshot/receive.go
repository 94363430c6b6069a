package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// Staging directory layout: the offer being received (its encoded body, to
// recognize the same snapshot on a new connection) and the files.
const (
	offerFile = "OFFER"
	dataDir   = "data"
)

// Result is what Receive got.
type Result struct {
	// Dir holds the snapshot's files, whole, checked and fsynced: the
	// "data" directory inside the staging directory. Install it (it is then
	// moved away), and remove the staging directory after.
	Dir string
	// ID is the snapshot's identity, as the sender gave it.
	ID Identity
	// Stats counts this transfer (Sent: the bytes received in it).
	Stats Stats
}

// Receive receives one snapshot from the sender at the other end of rw into
// the staging directory (created if needed; use one per source of
// snapshots, on the file system of the store that will install it). If the
// staging directory holds part of the same snapshot (same identity and
// manifest) from an earlier, cut transfer, only the rest is received;
// anything else in it is discarded first. accept, if not nil, sees the
// offered identity and manifest before anything is written: an error refuses
// the snapshot (the sender is told, and Receive returns the error). install,
// if not nil, is called once every file is whole, checked and fsynced (and
// done sent), with the stream still open: a version 2 sender is then told
// whether it succeeded (an error wrapping ErrNotNeeded says the snapshot was
// of no use, anything else that the install failed), and its error is
// returned, wrapped. Without install, a version 2 sender is told "installed"
// at once. A bad stream gives an error wrapping ErrBadStream; nothing is
// ever written outside the staging directory. The caller closes rw.
func Receive(ctx context.Context, rw io.ReadWriter, staging string, cfg Config, accept func(Identity, []FileInfo) error, install func(Result) error) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	c, stop := newConn(ctx, rw, cfg.IdleTimeout)
	defer stop()
	r := &receiver{c: c, staging: staging, data: filepath.Join(staging, dataDir), cfg: cfg}
	res, err := r.run(accept)
	if err != nil {
		err = ctxErr(ctx, err)
		if !errors.Is(err, ErrRefused) {
			c.Write(appendError(nil, refusalReason(err)))
		}
		return res, fmt.Errorf("snapshot: receiving into %s: %w", staging, err)
	}
	cfg.Logger.Info("snapshot: received", "index", res.ID.Index, "term", res.ID.Term, "files", res.Stats.Files,
		"bytes", res.Stats.Total, "held", res.Stats.Held, "received", res.Stats.Sent)
	var ierr error
	if install != nil {
		ierr = install(res)
	}
	if r.o.version >= 2 {
		reply := appendFrame(nil, frameInstalled)
		switch {
		case errors.Is(ierr, ErrNotNeeded):
			reply = appendError(nil, reasonNotNeeded)
		case ierr != nil:
			reply = appendError(nil, reasonNotInstalled)
		}
		if _, err := c.Write(reply); err != nil && ierr == nil {
			cfg.Logger.Warn("snapshot: telling the sender of the install", "index", res.ID.Index, "err", err)
		}
	}
	if ierr != nil {
		return res, fmt.Errorf("snapshot: installing the snapshot at index %d: %w", res.ID.Index, ierr)
	}
	res.Stats.Installed = install != nil
	return res, nil
}

// refusalReason is what the sender is told: the kind of failure, nothing of
// this node's files.
func refusalReason(err error) string {
	if errors.Is(err, errVersion) {
		return reasonVersion
	}
	if errors.Is(err, ErrBadStream) {
		return reasonBadStream
	}
	if errors.Is(err, ErrNotNeeded) {
		return reasonNotNeeded
	}
	return "receiver failed"
}

// receiver is the receiving side of one transfer.
type receiver struct {
	c       *conn
	staging string
	data    string
	cfg     Config
	o       *offer
	next    []int64  // per file: bytes held so far
	crcs    []uint32 // per file: CRC-32C of those bytes
	ended   []bool   // per file: its file-end frame was checked (version 2)
	left    int      // files not yet ended (version 2)
	cur     *rfile   // the file chunks are going to, or nil
	curIdx  int
	out     []byte // frame being written
	// w writes the chunks and acknowledges them, in order, on a goroutine
	// of its own (writer.go).
	w *diskWriter
	// Whole files are fsynced by a goroutine (syncer) while the next ones
	// arrive: the disk flushes one file while the network fills the next.
	syncq   chan *os.File
	syncErr chan error
}

// syncer fsyncs and closes the files sent on syncq, and reports the first
// error when syncq is closed.
func (r *receiver) syncer(q <-chan *os.File) {
	var first error
	for f := range q {
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil && first == nil {
			first = fmt.Errorf("snapshot: fsync %s: %w", f.Name(), err)
		}
	}
	r.syncErr <- first
}

// shutdown stops the disk writer (closing the current file) and waits for
// the fsyncs; it returns the first error. Safe to call twice.
func (r *receiver) shutdown() error {
	var err error
	if r.w != nil {
		r.closeCur()
		err = r.w.stop()
		r.w = nil
	}
	if serr := r.waitSynced(); err == nil {
		err = serr
	}
	return err
}

// waitSynced waits for every whole file's fsync.
func (r *receiver) waitSynced() error {
	if r.syncq == nil {
		return nil
	}
	close(r.syncq)
	r.syncq = nil
	return <-r.syncErr
}

func (r *receiver) run(accept func(Identity, []FileInfo) error) (Result, error) {
	br := bufio.NewReaderSize(r.c, 256<<10)
	fr := &frameReader{r: br}
	typ, body, err := fr.next()
	if err != nil {
		return Result{}, err
	}
	switch typ {
	case frameOffer:
	case frameError:
		return Result{}, decodeError(body)
	default:
		return Result{}, badf("%s frame before the offer", frameName(typ))
	}
	o, err := decodeOffer(body)
	if err != nil {
		return Result{}, err
	}
	r.o = o
	res := Result{Dir: r.data, ID: o.id, Stats: Stats{Files: len(o.files), Total: o.total}}
	if accept != nil {
		if err := accept(o.id, o.files); err != nil {
			return res, err
		}
	}
	if err := r.prepare(body); err != nil {
		return res, err
	}
	r.syncq, r.syncErr = make(chan *os.File, 64), make(chan error, 1)
	go r.syncer(r.syncq)
	r.w = newDiskWriter(r.c, r.cfg.ChunkBytes, r.syncq)
	defer r.shutdown()
	hs := make([]held, len(o.files))
	for i := range hs {
		hs[i] = held{n: r.next[i], crc: r.crcs[i]}
		res.Stats.Held += r.next[i]
	}
	if _, err := r.c.Write(appendFrame(r.out[:0], frameResume, appendResume(nil, hs))); err != nil {
		return res, err
	}
	if err := r.receiveFiles(fr, &res.Stats); err != nil {
		return res, err
	}
	if err := r.shutdown(); err != nil {
		return res, err
	}
	if err := errors.Join(syncDir(r.data), syncDir(r.staging)); err != nil {
		return res, fmt.Errorf("snapshot: fsync of %s: %w", r.data, err)
	}
	if _, err := r.c.Write(appendFrame(nil, frameDone)); err != nil {
		return res, err
	}
	return res, nil
}

// receiveFiles reads chunks (and, in version 2, file-end frames) until
// every file is whole, handing the chunks to the disk writer; st.Sent counts
// the data.
func (r *receiver) receiveFiles(fr *frameReader, st *Stats) error {
	var got uint64
	var ch [chunkHeaderSize]byte
	for !r.complete() {
		h, err := fr.header()
		if err != nil {
			return err
		}
		if h[0] == frameChunk {
			data, err := fr.chunkInto(h, &ch, r.w.buffer)
			if werr := r.w.failure(); errors.Is(err, errWriterStopped) && werr != nil {
				err = werr
			}
			if err != nil {
				return err
			}
			n, err := r.chunk(ch, data, got)
			if err != nil {
				return err
			}
			got += uint64(n)
			st.Sent += int64(n)
			continue
		}
		n := binary.LittleEndian.Uint32(h[1:])
		body, err := readBody(fr.r, int(n), fr.buf)
		fr.buf = body[:0]
		if err != nil {
			return fr.cut(h[0], n, err)
		}
		if err := checkFrame(h, body); err != nil {
			return err
		}
		switch typ := h[0]; typ {
		case frameFileEnd:
			if r.o.version < 2 {
				return badf("file-end frame in a version %d transfer", r.o.version)
			}
			if err := r.fileEnd(body); err != nil {
				return err
			}
			continue
		case frameError:
			return decodeError(body)
		default:
			return badf("unexpected %s frame from the sender", frameName(typ))
		}
	}
	return nil
}

// prepare makes the staging directory hold this offer: it keeps what it
// holds of the same offer and discards anything else. Then it finds, per
// file, how many bytes are held (fsynced now) and their CRC.
func (r *receiver) prepare(offerBody []byte) error {
	if err := os.MkdirAll(r.staging, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	prev, err := os.ReadFile(filepath.Join(r.staging, offerFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snapshot: %w", err)
	}
	if !bytes.Equal(prev, offerBody) {
		if prev != nil {
			r.cfg.Logger.Info("snapshot: a different snapshot is offered; discarding the staged one", "dir", r.staging)
		}
		if err := os.RemoveAll(r.data); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if err := writeFileSync(r.staging, offerFile, offerBody); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(r.data, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := r.removeStrays(); err != nil {
		return err
	}
	r.next = make([]int64, len(r.o.files))
	r.crcs = make([]uint32, len(r.o.files))
	r.ended, r.left = make([]bool, len(r.o.files)), len(r.o.files)
	for i, f := range r.o.files {
		n, crc, err := r.held(f)
		if err != nil {
			return err
		}
		r.next[i], r.crcs[i] = n, crc
	}
	return syncDir(r.data)
}

// removeStrays removes files of the data directory the offer does not name.
func (r *receiver) removeStrays() error {
	names := make(map[string]bool, len(r.o.files))
	for _, f := range r.o.files {
		names[f.Name] = true
	}
	des, err := os.ReadDir(r.data)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	for _, de := range des {
		if !names[de.Name()] || !de.Type().IsRegular() {
			if err := os.RemoveAll(filepath.Join(r.data, de.Name())); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
	}
	return nil
}

// held creates f in the data directory if missing, fsyncs what it holds, and
// returns its length and CRC. A file longer than the manifest says, or a
// whole one whose CRC is wrong, is emptied.
func (r *receiver) held(f FileInfo) (int64, uint32, error) {
	path := filepath.Join(r.data, f.Name)
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot: %w", err)
	}
	defer fh.Close()
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, io.LimitReader(fh, f.Size+1), make([]byte, 256<<10))
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot: reading %s: %w", path, err)
	}
	// A version 2 manifest carries no CRCs: the sender checks what is held.
	if n > f.Size || (n == f.Size && r.o.version < 2 && h.Sum32() != f.CRC) {
		if err := fh.Truncate(0); err != nil {
			return 0, 0, fmt.Errorf("snapshot: %w", err)
		}
		n, h = 0, crc32.New(castagnoli)
	}
	if err := fh.Sync(); err != nil {
		return 0, 0, fmt.Errorf("snapshot: fsync %s: %w", path, err)
	}
	return n, h.Sum32(), nil
}

// complete reports whether every file is whole (version 2: and ended).
func (r *receiver) complete() bool {
	if r.o.version >= 2 {
		return r.left == 0
	}
	for i, f := range r.o.files {
		if r.next[i] != f.Size {
			return false
		}
	}
	return true
}

// chunk checks a chunk (its header ch, its data in a buffer of the disk
// writer) and queues its data to be written and acknowledged; got is the
// data received before it in this transfer. It returns the data's length.
func (r *receiver) chunk(ch [chunkHeaderSize]byte, data []byte, got uint64) (int, error) {
	idx, off := binary.LittleEndian.Uint32(ch[:]), binary.LittleEndian.Uint64(ch[4:])
	if uint64(idx) >= uint64(len(r.o.files)) {
		return 0, badf("chunk for file %d of %d", idx, len(r.o.files))
	}
	f := r.o.files[idx]
	i := int(idx)
	if off != uint64(r.next[i]) && off != 0 {
		return 0, badf("chunk of %q at offset %d, expected %d (or 0)", f.Name, off, r.next[i])
	}
	if r.ended[i] {
		return 0, badf("chunk of %q after its file-end frame", f.Name)
	}
	if uint64(len(data)) > uint64(f.Size)-off {
		return 0, badf("chunk of %q at offset %d with %d bytes passes its size %d", f.Name, off, len(data), f.Size)
	}
	rf, err := r.open(i)
	if err != nil {
		return 0, err
	}
	if off == 0 && r.next[i] != 0 {
		// The sender found the held bytes wrong: start the file again.
		if err := r.truncate(i); err != nil {
			return 0, err
		}
	}
	r.next[i] += int64(len(data))
	r.crcs[i] = crc32.Update(r.crcs[i], castagnoli, data)
	if err := r.w.put(writeJob{f: rf, off: int64(off), data: data, buf: data, ack: got + uint64(len(data))}); err != nil {
		return 0, err
	}
	if r.next[i] == f.Size && r.o.version < 2 {
		if got := r.crcs[i]; got != f.CRC {
			err := badf("file %q has CRC %#08x, the manifest says %#08x", f.Name, got, f.CRC)
			return 0, errors.Join(err, r.truncate(i)) // the next transfer starts it again
		}
		r.finishCur()
	}
	return len(data), nil
}

// truncate empties file i once the writes queued for it are done.
func (r *receiver) truncate(i int) error {
	if err := r.w.wait(); err != nil {
		return err
	}
	if err := os.Truncate(filepath.Join(r.data, r.o.files[i].Name), 0); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	r.next[i], r.crcs[i] = 0, 0
	return nil
}

// finishCur hands the current file, whole, to be fsynced and closed after
// its writes.
func (r *receiver) finishCur() {
	if r.cur != nil {
		if r.w.put(writeJob{f: r.cur, finish: true}) != nil {
			r.cur.close() // the writer failed: shutdown returns its error
		}
		r.cur = nil
	}
}

// fileEnd checks a file-end frame (version 2): the file is whole and its
// CRC-32C is the one the sender computed; then it is handed to the syncer.
func (r *receiver) fileEnd(body []byte) error {
	idx, crc, err := decodeFileEnd(body)
	if err != nil {
		return err
	}
	if uint64(idx) >= uint64(len(r.o.files)) {
		return badf("file-end for file %d of %d", idx, len(r.o.files))
	}
	i, f := int(idx), r.o.files[idx]
	switch {
	case r.ended[i]:
		return badf("second file-end for %q", f.Name)
	case r.next[i] != f.Size:
		return badf("file-end for %q with %d of its %d bytes", f.Name, r.next[i], f.Size)
	}
	if got := r.crcs[i]; got != crc {
		err := badf("file %q has CRC %#08x, the sender says %#08x", f.Name, got, crc)
		return errors.Join(err, r.truncate(i)) // the next transfer starts it again
	}
	r.ended[i] = true
	r.left--
	if r.cur != nil && r.curIdx == i {
		r.finishCur()
	}
	return nil
}

// open returns file i open for writing, closing the previous one.
func (r *receiver) open(i int) (*rfile, error) {
	if r.cur != nil && r.curIdx == i {
		return r.cur, nil
	}
	r.closeCur()
	path := filepath.Join(r.data, r.o.files[i].Name)
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	r.cur, r.curIdx = &rfile{fh: fh, direct: openDirect(path)}, i
	return r.cur, nil
}

// closeCur closes the current file once its writes are done. Unsynced bytes
// of a file cut short are checked by CRC on resume.
func (r *receiver) closeCur() {
	if r.cur != nil {
		if r.w.put(writeJob{f: r.cur, close: true}) != nil {
			r.cur.close()
		}
		r.cur = nil
	}
}

// writeFileSync writes dir/name through a temporary file, fsynced, renamed,
// and fsyncs dir.
func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	err := os.WriteFile(tmp, data, 0o644)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("snapshot: writing %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error { return syncFile(dir) }
