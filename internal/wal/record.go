package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/trireme-db/trireme/internal/entry"
)

// RecordKind is the kind byte of a record. Part of the format.
type RecordKind uint8

// Record kinds. Part of the format.
const (
	RecordEntry         RecordKind = 1 // payload: one entry encoding (package entry)
	RecordSegmentHeader RecordKind = 2 // payload: segment header (see package doc)
)

// RecordHeaderSize is the size of a record's length, checksum and kind.
// Part of the format.
const RecordHeaderSize = 9

// Segment header constants. Part of the format.
const (
	segmentMagic       = "TRWALSEG"
	segmentVersion     = 1
	segmentHeaderBytes = 28                                    // payload size
	segmentHeaderEnd   = RecordHeaderSize + segmentHeaderBytes // offset of the first entry record
)

// crcTable is read-only after initialization.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// AppendRecord appends a record of the given kind and payload to dst.
func AppendRecord(dst []byte, kind RecordKind, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, byte(kind))
	dst = append(dst, payload...)
	finishRecord(dst[start:])
	return dst
}

// AppendEntryRecord appends the entry record of e to dst, encoding e in place.
func AppendEntryRecord(dst []byte, e *entry.Entry) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, byte(RecordEntry))
	dst = entry.AppendEncode(dst, e)
	finishRecord(dst[start:])
	return dst
}

// finishRecord fills in the length and checksum of the record rec.
func finishRecord(rec []byte) {
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(rec)-RecordHeaderSize))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(rec[8:], crcTable))
}

// DecodeRecord decodes the record at the start of b and returns its kind, its
// payload (aliasing b) and its total size. A b shorter than the record it
// starts gives io.ErrUnexpectedEOF; a checksum mismatch or unknown kind gives
// an error wrapping ErrCorrupt. It never panics.
func DecodeRecord(b []byte) (kind RecordKind, payload []byte, n int, err error) {
	if len(b) < RecordHeaderSize {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	length := uint64(binary.LittleEndian.Uint32(b[0:]))
	if length > uint64(len(b)-RecordHeaderSize) {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	n = RecordHeaderSize + int(length)
	if got, want := crc32.Checksum(b[8:n], crcTable), binary.LittleEndian.Uint32(b[4:]); got != want {
		return 0, nil, 0, recordError(fmt.Sprintf("checksum mismatch (stored %08x, computed %08x)", want, got))
	}
	kind = RecordKind(b[8])
	if kind != RecordEntry && kind != RecordSegmentHeader {
		return 0, nil, 0, recordError(fmt.Sprintf("unknown record kind %d", kind))
	}
	return kind, b[RecordHeaderSize:n:n], n, nil
}

// recordError is a record that fails verification. It wraps ErrCorrupt.
type recordError string

func (e recordError) Error() string { return "wal: corrupt record: " + string(e) }
func (e recordError) Unwrap() error { return ErrCorrupt }

// reason returns err's message without a recordError's prefix, for errors
// that name the file and offset themselves.
func reason(err error) string {
	var re recordError
	if errors.As(err, &re) {
		return string(re)
	}
	return err.Error()
}

// DecodeEntryRecords decodes a run of entry records (as returned by
// Log.ReadRaw) and appends the entries to dst. The entries alias raw. Any
// damage, including a partial last record, is an error wrapping ErrCorrupt.
func DecodeEntryRecords(dst []entry.Entry, raw []byte) ([]entry.Entry, error) {
	for off := 0; off < len(raw); {
		kind, payload, n, err := DecodeRecord(raw[off:])
		if err == io.ErrUnexpectedEOF {
			return dst, fmt.Errorf("%w: partial record at offset %d", ErrCorrupt, off)
		}
		if err != nil {
			return dst, fmt.Errorf("record at offset %d: %w", off, err)
		}
		if kind != RecordEntry {
			return dst, fmt.Errorf("%w: record at offset %d has kind %d, want an entry", ErrCorrupt, off, kind)
		}
		e, err := entry.Decode(payload)
		if err != nil {
			return dst, fmt.Errorf("%w: record at offset %d: %v", ErrCorrupt, off, err)
		}
		dst = append(dst, e)
		off += n
	}
	return dst, nil
}

type segmentHeader struct {
	first    uint64 // index of the segment's first entry
	prevTerm uint64 // term of entry first-1
}

func appendSegmentHeader(dst []byte, h segmentHeader) []byte {
	var p [segmentHeaderBytes]byte
	copy(p[:8], segmentMagic)
	binary.LittleEndian.PutUint32(p[8:], segmentVersion)
	binary.LittleEndian.PutUint64(p[12:], h.first)
	binary.LittleEndian.PutUint64(p[20:], h.prevTerm)
	return AppendRecord(dst, RecordSegmentHeader, p[:])
}

func decodeSegmentHeader(p []byte) (segmentHeader, error) {
	if len(p) != segmentHeaderBytes {
		return segmentHeader{}, fmt.Errorf("segment header payload is %d bytes, want %d", len(p), segmentHeaderBytes)
	}
	if string(p[:8]) != segmentMagic {
		return segmentHeader{}, fmt.Errorf("bad segment magic %q", p[:8])
	}
	if v := binary.LittleEndian.Uint32(p[8:]); v != segmentVersion {
		return segmentHeader{}, fmt.Errorf("unknown segment format version %d", v)
	}
	return segmentHeader{
		first:    binary.LittleEndian.Uint64(p[12:]),
		prevTerm: binary.LittleEndian.Uint64(p[20:]),
	}, nil
}

// termRun says that entries from start up to the next run's start have term.
type termRun struct {
	start, term uint64
}

// scanResult is what scanSegment found in one segment file.
type scanResult struct {
	hdr      segmentHeader
	offs     []uint32  // offset of each entry record; entry hdr.first+k at offs[k]
	runs     []termRun // term runs of the entries
	end      int64     // end of the last good record
	dataEnd  int64     // offset after the last non-zero byte (at least end)
	torn     bool      // bytes after end look like a torn write (see isTornTail)
	bad      error     // why the record at end failed; nil if all bytes after end are zero
	lastTerm uint64    // term of the last entry (hdr.prevTerm if none)
}

// scanSegment verifies the segment image buf (the whole file) and indexes it.
// name is used in errors and wantFirst is the first index its name carries.
// Damage in the segment header is an error; a later record that fails stops
// the scan there: if every byte from there on is zero (preallocated space),
// res.bad is nil; otherwise res.bad says why and res.torn whether it looks
// like a torn write.
func scanSegment(buf []byte, name string, wantFirst uint64) (res scanResult, err error) {
	kind, payload, n, err := DecodeRecord(buf)
	if err != nil {
		return res, corruptf(name, 0, "segment header: %s", reason(err))
	}
	if kind != RecordSegmentHeader {
		return res, corruptf(name, 0, "first record has kind %d, want a segment header", kind)
	}
	if res.hdr, err = decodeSegmentHeader(payload); err != nil {
		return res, corruptf(name, 0, "%v", err)
	}
	if res.hdr.first != wantFirst {
		return res, corruptf(name, 0, "segment header says first index %d, file name says %d", res.hdr.first, wantFirst)
	}
	if res.hdr.first == 0 {
		return res, corruptf(name, 0, "segment header has first index 0")
	}
	res.lastTerm = res.hdr.prevTerm
	off := n
	next := res.hdr.first
	for off < len(buf) {
		kind, payload, n, err := DecodeRecord(buf[off:])
		if err == nil && kind != RecordEntry {
			err = fmt.Errorf("record kind %d, want an entry", kind)
		}
		var e entry.Entry
		if err == nil {
			if e, err = entry.Decode(payload); err == nil && e.Index != next {
				err = fmt.Errorf("entry has index %d, want %d", e.Index, next)
			}
		}
		if err != nil {
			res.dataEnd = int64(off + len(bytes.TrimRight(buf[off:], "\x00")))
			if res.dataEnd > int64(off) {
				res.bad = err
				res.torn = isTornTail(buf[off:], int(res.dataEnd)-off, next)
			}
			break
		}
		if uint64(off) > uint64(^uint32(0)) {
			return res, corruptf(name, int64(off), "segment larger than 4 GiB")
		}
		res.offs = append(res.offs, uint32(off))
		if len(res.runs) == 0 || res.runs[len(res.runs)-1].term != e.Term {
			res.runs = append(res.runs, termRun{start: e.Index, term: e.Term})
		}
		res.lastTerm = e.Term
		next++
		off += n
	}
	res.end = int64(off)
	res.dataEnd = max(res.dataEnd, res.end)
	return res, nil
}

// isTornTail reports whether tail, which starts with a record that failed to
// decode and should have held entry next, looks like an interrupted append
// rather than damage to written data. Only tail[:n] holds data: the rest is
// zeros (preallocated space, or nothing). An append that a crash interrupted
// leaves a prefix of what was written: a partial last record and nothing
// after it but zeros.
func isTornTail(tail []byte, n int, next uint64) bool {
	data := tail[:n]
	if len(data) < RecordHeaderSize {
		return true // the header itself was cut
	}
	length := uint64(binary.LittleEndian.Uint32(data[0:]))
	if length <= uint64(len(data)-RecordHeaderSize) {
		// A complete record, with data after or at its end, that fails
		// verification: damage.
		return false
	}
	// Cut short: torn, unless the bytes that are there form a complete
	// record whose length field alone was damaged, or a good record follows
	// (a damaged length field in the middle of the segment).
	if crc32.Checksum(data[8:], crcTable) == binary.LittleEndian.Uint32(data[4:]) {
		return false
	}
	if completeByEncoding(tail) {
		return false
	}
	return !hasEntryRecordAfter(tail, n, next)
}

// completeByEncoding reports whether rec starts with an entry record that is
// complete and verifies when its length is taken from the entry encoding
// (which carries the key and value lengths) instead of the record's length
// field: a record whose length field was damaged and whose last bytes happen
// to be zeros.
func completeByEncoding(rec []byte) bool {
	if RecordKind(rec[8]) != RecordEntry {
		return false
	}
	_, n, err := entry.DecodePrefix(rec[RecordHeaderSize:])
	if err != nil {
		return false
	}
	return crc32.Checksum(rec[8:RecordHeaderSize+n], crcTable) == binary.LittleEndian.Uint32(rec[4:])
}

// hasEntryRecordAfter reports whether a verifiable record of entry next+1
// starts in tail[1:n] (the data; it may extend into the zeros after it): what
// a damaged length field on entry next would hide. (Only next+1: a value that
// happens to embed a record cannot make a torn write look like damage unless
// it guesses that index.)
func hasEntryRecordAfter(tail []byte, n int, next uint64) bool {
	const idxAt = RecordHeaderSize + 10 // offset of the index in an entry record
	for p := 1; p < n && p+RecordHeaderSize+entry.HeaderSize <= len(tail); p++ {
		r := tail[p:]
		// Cheap filters first: kind, encoding version, entry kind, index.
		if RecordKind(r[8]) != RecordEntry || r[9] != entry.EncodingVersion || !entry.Kind(r[10]).Valid() {
			continue
		}
		if binary.LittleEndian.Uint64(r[idxAt:]) != next+1 {
			continue
		}
		n := uint64(binary.LittleEndian.Uint32(r[0:]))
		if n > uint64(len(r)-RecordHeaderSize) {
			continue
		}
		if crc32.Checksum(r[8:RecordHeaderSize+n], crcTable) == binary.LittleEndian.Uint32(r[4:]) {
			return true
		}
	}
	return false
}
