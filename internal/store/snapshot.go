package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// Snapshot stream constants. Part of the snapshot format (see the package doc).
const (
	// SnapshotMagic opens every snapshot stream.
	SnapshotMagic = "TRSNAP\x00\x01"
	// SnapshotVersion is the stream format version in the header.
	SnapshotVersion uint32 = 1
	// MaxChunkBytes bounds the payload of one frame.
	MaxChunkBytes = 64 << 20

	snapHeaderSize  = 32
	frameHeaderSize = 13
	frameData       = 1
	frameEnd        = 2
	endPayloadSize  = 24
	// recordOverhead is the fixed part of one data record.
	recordOverhead = 4 + 8 + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Export writes a consistent snapshot of the store at its applied index to w,
// in frames of about chunkBytes of payload (<= 0: Config.ExportChunkBytes; a
// frame holds at least one record). progress, if not nil, is called after
// each frame with the keys and bytes written so far. It returns the snapshot's
// applied index. Export blocks Apply only while the write buffer is written
// out to Pebble (see View).
func (s *Store) Export(w io.Writer, chunkBytes int, progress func(keys int64, bytes int64)) (index uint64, err error) {
	if chunkBytes <= 0 {
		chunkBytes = s.cfg.ExportChunkBytes
	}
	if chunkBytes > MaxChunkBytes {
		return 0, fmt.Errorf("%w: chunkBytes %d exceeds MaxChunkBytes %d", ErrInvalidArg, chunkBytes, MaxChunkBytes)
	}
	v, err := s.View()
	if err != nil {
		return 0, err
	}
	defer v.Close()
	ew := &exportWriter{w: w, progress: progress}
	ew.writeHeader(v.applied, v.term)
	payload := make([]byte, 0, min(chunkBytes, 1<<20)+recordOverhead)
	var recs int64
	var prev []byte
	scanErr := scan(v.snap, nil, nil, 0, func(k, val []byte, ver uint64) bool {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			err = fmt.Errorf("%w: keys out of order in the store at %q", ErrCorrupt, k)
			return false
		}
		prev = append(prev[:0], k...)
		if len(k) > MaxChunkBytes-recordOverhead || len(val) > MaxChunkBytes-recordOverhead-len(k) {
			err = fmt.Errorf("%w: key %q with a %d-byte value does not fit in a snapshot frame", ErrInvalidArg, k, len(val))
			return false
		}
		if len(payload) > 0 && len(payload)+recordOverhead+len(k)+len(val) > chunkBytes {
			ew.writeFrame(frameData, payload, recs)
			payload = payload[:0]
		}
		payload = appendRecord(payload, k, ver, val)
		recs++
		return ew.err == nil
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return 0, err
	}
	if len(payload) > 0 {
		ew.writeFrame(frameData, payload, recs)
	}
	end := make([]byte, 0, endPayloadSize)
	end = binary.LittleEndian.AppendUint64(end, uint64(recs))
	end = binary.LittleEndian.AppendUint64(end, v.applied)
	end = binary.LittleEndian.AppendUint64(end, v.term)
	ew.writeFrame(frameEnd, end, recs)
	if ew.err != nil {
		return 0, fmt.Errorf("store: export at index %d: %w", v.applied, ew.err)
	}
	return v.applied, nil
}

func appendRecord(dst, k []byte, ver uint64, val []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(k)))
	dst = append(dst, k...)
	dst = binary.LittleEndian.AppendUint64(dst, ver)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(val)))
	return append(dst, val...)
}

type exportWriter struct {
	w        io.Writer
	progress func(keys, bytes int64)
	seq      uint32
	n        int64
	err      error
}

func (ew *exportWriter) write(b []byte) {
	if ew.err != nil {
		return
	}
	n, err := ew.w.Write(b)
	ew.n += int64(n)
	ew.err = err
}

func (ew *exportWriter) writeHeader(index, term uint64) {
	h := make([]byte, 0, snapHeaderSize)
	h = append(h, SnapshotMagic...)
	h = binary.LittleEndian.AppendUint32(h, SnapshotVersion)
	h = binary.LittleEndian.AppendUint64(h, index)
	h = binary.LittleEndian.AppendUint64(h, term)
	h = binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, crcTable))
	ew.write(h)
}

func (ew *exportWriter) writeFrame(typ byte, payload []byte, keys int64) {
	var fh [frameHeaderSize]byte
	fh[0] = typ
	binary.LittleEndian.PutUint32(fh[1:], ew.seq)
	binary.LittleEndian.PutUint32(fh[5:], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(fh[:9], crcTable), crcTable, payload)
	binary.LittleEndian.PutUint32(fh[9:], crc)
	ew.seq++
	ew.write(fh[:])
	ew.write(payload)
	if ew.err == nil && ew.progress != nil {
		ew.progress(keys, ew.n)
	}
}

// snapshotHeader is the decoded stream header.
type snapshotHeader struct {
	index, term uint64
}

// snapshotReader decodes and verifies a snapshot stream. It never panics on
// bad input; every error wraps ErrBadSnapshot and names the stream offset.
type snapshotReader struct {
	r    io.Reader // read exactly: no read-ahead past the end frame
	off  int64     // bytes consumed
	hdr  snapshotHeader
	seq  uint32
	keys int64
	prev []byte
	buf  bytes.Buffer
	done bool
}

func newSnapshotReader(r io.Reader) *snapshotReader {
	return &snapshotReader{r: r}
}

func (sr *snapshotReader) errorf(off int64, format string, args ...any) error {
	return fmt.Errorf("%w: at offset %d: %s", ErrBadSnapshot, off, fmt.Sprintf(format, args...))
}

func (sr *snapshotReader) readFull(b []byte, what string) error {
	n, err := io.ReadFull(sr.r, b)
	sr.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return sr.errorf(sr.off, "stream ends inside the %s", what)
		}
		return fmt.Errorf("store: reading snapshot %s at offset %d: %w", what, sr.off, err)
	}
	return nil
}

// readHeader reads and checks the stream header.
func (sr *snapshotReader) readHeader() error {
	var h [snapHeaderSize]byte
	if err := sr.readFull(h[:], "header"); err != nil {
		return err
	}
	if string(h[:8]) != SnapshotMagic {
		return sr.errorf(0, "bad magic %q", h[:8])
	}
	if got, want := binary.LittleEndian.Uint32(h[28:]), crc32.Checksum(h[:28], crcTable); got != want {
		return sr.errorf(0, "header checksum %#08x, computed %#08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != SnapshotVersion {
		return sr.errorf(8, "unknown stream version %d (this build reads %d)", v, SnapshotVersion)
	}
	sr.hdr = snapshotHeader{index: binary.LittleEndian.Uint64(h[12:]), term: binary.LittleEndian.Uint64(h[20:])}
	return nil
}

// nextChunk reads one frame. For a data frame it calls fn for each record
// (key and value alias an internal buffer, valid until fn returns). It returns
// io.EOF after the end frame has been read and verified.
func (sr *snapshotReader) nextChunk(fn func(key []byte, version uint64, value []byte) error) error {
	if sr.done {
		return io.EOF
	}
	start := sr.off
	var fh [frameHeaderSize]byte
	if err := sr.readFull(fh[:], "frame header"); err != nil {
		return err
	}
	typ := fh[0]
	seq := binary.LittleEndian.Uint32(fh[1:])
	size := binary.LittleEndian.Uint32(fh[5:])
	if typ != frameData && typ != frameEnd {
		return sr.errorf(start, "unknown frame type %d", typ)
	}
	if seq != sr.seq {
		return sr.errorf(start, "frame sequence %d, want %d (frame lost, repeated or reordered)", seq, sr.seq)
	}
	if size > MaxChunkBytes {
		return sr.errorf(start, "frame payload of %d bytes exceeds %d", size, MaxChunkBytes)
	}
	// Grow the buffer only as bytes actually arrive, so a bad length cannot
	// make us allocate more than the stream holds.
	sr.buf.Reset()
	n, err := io.CopyN(&sr.buf, sr.r, int64(size))
	sr.off += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			return sr.errorf(sr.off, "stream ends inside a %d-byte frame payload that starts at %d", size, start+frameHeaderSize)
		}
		return fmt.Errorf("store: reading snapshot frame at offset %d: %w", start, err)
	}
	payload := sr.buf.Bytes()
	crc := crc32.Update(crc32.Checksum(fh[:9], crcTable), crcTable, payload)
	if got := binary.LittleEndian.Uint32(fh[9:]); got != crc {
		return sr.errorf(start, "frame checksum %#08x, computed %#08x", got, crc)
	}
	sr.seq++
	pstart := start + frameHeaderSize
	if typ == frameEnd {
		if len(payload) != endPayloadSize {
			return sr.errorf(pstart, "end frame payload is %d bytes, want %d", len(payload), endPayloadSize)
		}
		keys := binary.LittleEndian.Uint64(payload)
		index := binary.LittleEndian.Uint64(payload[8:])
		term := binary.LittleEndian.Uint64(payload[16:])
		if keys != uint64(sr.keys) {
			return sr.errorf(pstart, "end frame counts %d keys, stream holds %d", keys, sr.keys)
		}
		if index != sr.hdr.index || term != sr.hdr.term {
			return sr.errorf(pstart, "end frame is for index %d term %d, header for index %d term %d", index, term, sr.hdr.index, sr.hdr.term)
		}
		sr.done = true
		return io.EOF
	}
	if len(payload) == 0 {
		return sr.errorf(pstart, "empty data frame")
	}
	for p := 0; p < len(payload); {
		roff := pstart + int64(p)
		rest := payload[p:]
		if len(rest) < 4 {
			return sr.errorf(roff, "truncated record")
		}
		kl := uint64(binary.LittleEndian.Uint32(rest))
		if uint64(len(rest)) < 4+kl+12 {
			return sr.errorf(roff, "key length %d exceeds the frame", kl)
		}
		key := rest[4 : 4+kl]
		ver := binary.LittleEndian.Uint64(rest[4+kl:])
		vl := uint64(binary.LittleEndian.Uint32(rest[12+kl:]))
		if uint64(len(rest)) < 16+kl+vl {
			return sr.errorf(roff, "value length %d exceeds the frame", vl)
		}
		val := rest[16+kl : 16+kl+vl]
		if ver == 0 || ver > sr.hdr.index {
			return sr.errorf(roff, "key %q has version %d, outside [1, %d]", key, ver, sr.hdr.index)
		}
		if sr.keys > 0 && bytes.Compare(sr.prev, key) >= 0 {
			return sr.errorf(roff, "key %q does not follow %q", key, sr.prev)
		}
		sr.prev = append(sr.prev[:0], key...)
		sr.keys++
		if err := fn(key, ver, val); err != nil {
			return err
		}
		p += int(16 + kl + vl)
	}
	return nil
}

// decodeSnapshot verifies a whole stream and calls fn for each record. It
// returns the header. Import uses the same reader; the fuzz target uses this.
func decodeSnapshot(r io.Reader, fn func(key []byte, version uint64, value []byte) error) (snapshotHeader, error) {
	sr := newSnapshotReader(r)
	if err := sr.readHeader(); err != nil {
		return snapshotHeader{}, err
	}
	for {
		err := sr.nextChunk(fn)
		if err == io.EOF {
			return sr.hdr, nil
		}
		if err != nil {
			return snapshotHeader{}, err
		}
	}
}

// Import replaces the store's whole state with the snapshot read from r (as
// written by Export), atomically: it builds a new database beside the current
// one, verifies the entire stream, flushes, and only then switches to it. On
// any error the store is unchanged; a corrupt stream gives an error wrapping
// ErrBadSnapshot with the stream offset, and a snapshot below the applied
// index gives ErrStaleSnapshot. progress, if not nil, is called after each
// verified chunk with the keys and bytes read so far. Apply waits while an
// Import runs. After Import, AppliedIndex and DurableIndex equal the
// snapshot's index.
func (s *Store) Import(r io.Reader, progress func(keys int64, bytes int64)) (index uint64, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.failure(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	closed, cur := s.closed, s.h
	s.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	// Write the buffer out to the current database, so that a failed
	// Import leaves the applied state whole.
	if err := s.syncBufLocked(); err != nil {
		return 0, err
	}

	sr := newSnapshotReader(r)
	if err := sr.readHeader(); err != nil {
		return 0, err
	}
	if applied := s.applied.Load(); sr.hdr.index < applied {
		return 0, fmt.Errorf("%w: snapshot at index %d, store applied %d", ErrStaleSnapshot, sr.hdr.index, applied)
	}

	// The caller waits for the whole import: Pebble's flushes and
	// compactions meanwhile run unpaced.
	release := s.pebbleFS().holdPacing()
	defer release()
	name := dbName(dbNumber(cur.name) + 1)
	_ = os.RemoveAll(filepath.Join(s.dir, name))
	h, err := s.openDB(name, true)
	if err != nil {
		return 0, err
	}
	ok, keepDir := false, false
	abandoned := false // a write into h is held inside Pebble (commit): leave h open
	defer func() {
		if !ok && !abandoned {
			h.remove.Store(!keepDir)
			h.release()
		}
	}()

	b := h.db.NewBatch()
	defer func() {
		if !abandoned {
			_ = b.Close()
		}
	}()
	var kbuf, vbuf []byte
	add := func(k []byte, ver uint64, val []byte) error {
		kbuf = userKey(kbuf[:0], k)
		vbuf = encodeValue(vbuf[:0], ver, val)
		return b.Set(kbuf, vbuf, nil)
	}
	for {
		err := sr.nextChunk(add)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		if abandoned, err = s.commit(h.db, b); err != nil {
			return 0, fmt.Errorf("store: import into %s: %w", h.path, err)
		}
		b.Reset()
		if progress != nil {
			progress(sr.keys, sr.off)
		}
	}
	_ = b.Set(metaKeyFormat, encodeFormat(), nil)
	_ = b.Set(metaKeyApplied, encodeApplied(sr.hdr.index, sr.hdr.term), nil)
	if abandoned, err = s.commit(h.db, b); err != nil {
		return 0, fmt.Errorf("store: import into %s: %w", h.path, err)
	}
	if err := s.flushDB(h.db); err != nil {
		return 0, fmt.Errorf("store: import into %s: flush: %w", h.path, err)
	}
	if err := s.switchLocked(cur, h, sr.hdr.index, sr.hdr.term, sr.keys); err != nil {
		keepDir = true // CURRENT may name it
		return 0, err
	}
	ok = true
	s.log.Info("store: imported snapshot", "index", sr.hdr.index, "term", sr.hdr.term, "keys", sr.keys, "bytes", sr.off, "db", name)
	return sr.hdr.index, nil
}
