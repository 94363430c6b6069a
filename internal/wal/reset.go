package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
)

// Reset-marker file constants. Part of the format.
const (
	resetName    = "reset"
	resetMagic   = "TRRS"
	resetVersion = 1
	resetBytes   = 4 + 1 + 8 + 8 + 4
)

func encodeResetMarker(index, term uint64) []byte {
	b := make([]byte, 0, resetBytes)
	b = append(b, resetMagic...)
	b = append(b, resetVersion)
	b = binary.LittleEndian.AppendUint64(b, index)
	b = binary.LittleEndian.AppendUint64(b, term)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeResetMarker(b []byte, path string) (index, term uint64, err error) {
	switch {
	case len(b) != resetBytes:
		return 0, 0, corruptf(path, 0, "reset marker is %d bytes, want %d", len(b), resetBytes)
	case string(b[:4]) != resetMagic:
		return 0, 0, corruptf(path, 0, "bad reset marker magic %q", b[:4])
	case b[4] != resetVersion:
		return 0, 0, corruptf(path, 4, "unknown reset marker version %d", b[4])
	}
	if got, want := crc32.Checksum(b[:21], crcTable), binary.LittleEndian.Uint32(b[21:]); got != want {
		return 0, 0, corruptf(path, 21, "reset marker checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	index, term = binary.LittleEndian.Uint64(b[5:]), binary.LittleEndian.Uint64(b[13:])
	if index == math.MaxUint64 || (index == 0 && term != 0) {
		return 0, 0, corruptf(path, 5, "reset marker names index %d with term %d", index, term)
	}
	return index, term, nil
}

// Reset discards every entry and leaves an empty log whose FirstIndex() is
// index+1, LastIndex() is index and Term(index) is term: the log of a node
// that installs a snapshot of the state through index. Entries submitted
// before are written first, then discarded with the rest. When Reset returns
// nil the new log is durable; after a crash at any point the log opens
// either as it was before the call or as the new empty log (see the package
// documentation, "Reset").
//
// Reset does not change the hard state or the commit hint: the caller sets
// them (a commit index below index is harmless to the log, but a commit hint
// above index would name entries that no longer exist until they are
// appended again). index 0 needs term 0; index math.MaxUint64 is invalid.
// I/O failures are sticky, as on the append path.
func (l *Log) Reset(index, term uint64) error {
	if index == math.MaxUint64 || (index == 0 && term != 0) {
		return fmt.Errorf("%w: reset to index %d with term %d", ErrInvalid, index, term)
	}
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	if err := l.acquire(); err != nil {
		l.release()
		return err
	}
	return l.runHeld(func() error { return l.reset(index, term) })
}

// reset does Reset's work. The caller owns the write path and removeMu.
func (l *Log) reset(index, term uint64) error {
	// The durable marker decides the reset: from here on, recovery
	// completes it whatever else happened.
	if err := l.writeFileAtomic(resetName, encodeResetMarker(index, term)); err != nil {
		return err
	}
	// A segment of the old log may have the new one's name: the rename
	// replaces it atomically, and readers keep the handle they hold.
	seg, err := l.createSegment(segmentHeader{first: index + 1, prevTerm: term}, false)
	if err != nil {
		return err
	}
	l.filesMu.Lock()
	l.mu.Lock()
	old := l.segs
	l.segs = []*segment{seg}
	l.runs = nil
	l.first, l.last, l.next, l.lastTerm = index+1, index, index+1, term
	l.mu.Unlock()
	var paths []string
	for _, s := range old {
		s.f.Close()
		if s.path != seg.path {
			paths = append(paths, s.path)
		}
	}
	l.filesMu.Unlock()
	l.spareMu.Lock()
	l.spareFor = 0 // the new segment may have an old one's first index
	l.spareMu.Unlock()
	return l.finishReset(paths)
}

// finishReset removes the old segments at paths (in any order: the marker
// is still there), then the marker, fsyncing the directory after each step.
func (l *Log) finishReset(paths []string) error {
	for _, p := range paths {
		if err := l.fs.Remove(p); err != nil && !isNotExist(err) {
			return fmt.Errorf("%w: remove %s: %v", ErrWriteFailed, p, err)
		}
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	marker := l.path(resetName)
	if err := l.fs.Remove(marker); err != nil {
		return fmt.Errorf("%w: remove %s: %v", ErrWriteFailed, marker, err)
	}
	return l.syncDir()
}

// redoReset completes a reset that a crash interrupted, during recovery:
// firsts are the segment files present. It writes the new empty segment
// again (replacing the one the reset may have written, which holds no
// entries: Reset returns before anything is appended), removes every other
// segment and the marker, and returns the new segment's first index.
func (l *Log) redoReset(firsts []uint64) (uint64, error) {
	path := l.path(resetName)
	b, err := readSmallFile(l, path, resetBytes)
	if err != nil {
		return 0, err
	}
	index, term, err := decodeResetMarker(b, path)
	if err != nil {
		return 0, err
	}
	l.logger.Warn("wal: completing a reset that a crash interrupted",
		"index", index, "term", term, "old_segments", len(firsts))
	seg, err := l.createSegment(segmentHeader{first: index + 1, prevTerm: term}, false)
	if err != nil {
		return 0, err
	}
	seg.f.Close() // recovery opens it like any segment
	var paths []string
	for _, first := range firsts {
		if first != index+1 {
			paths = append(paths, l.path(segmentName(first)))
		}
	}
	if err := l.finishReset(paths); err != nil {
		return 0, err
	}
	return index + 1, nil
}

// readSmallFile reads the file at path, which must not exceed limit bytes
// (larger is corruption).
func readSmallFile(l *Log, path string, limit int64) ([]byte, error) {
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	if info.Size() > limit {
		return nil, corruptf(path, 0, "file is %d bytes, at most %d expected", info.Size(), limit)
	}
	b := make([]byte, info.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("wal: read %s: %w", path, err)
	}
	return b, nil
}

// SegmentInfo describes one segment file (Log.Segments).
type SegmentInfo struct {
	First uint64 // index of its first entry
	Last  uint64 // index of its last durable entry; First-1 if it holds none
	// Bytes is the size of its header and durable records. The last
	// segment's file may be larger (preallocated zeros, up to
	// Config.SegmentBytes); earlier ones are exactly this size.
	Bytes int64
}

// Segments describes the log's segments, oldest first (nil once closed). It
// takes the log's mutex once and does no I/O, so a caller can poll it to
// pick a compaction point by size: DropBefore(s.First) removes exactly the
// segments before s.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	out := make([]SegmentInfo, len(l.segs))
	for k, s := range l.segs {
		out[k] = SegmentInfo{First: s.first, Last: s.lastIndex(), Bytes: s.size}
	}
	return out
}
