package wal

import (
	"fmt"
	"io"
	"sort"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

// span is a run of consecutive records in one segment file.
type span struct {
	path       string
	f          vfs.File
	start, end int64  // byte range
	first      uint64 // index of the first record
	count      int
}

// spansLocked plans the read of entries [lo, hi), stopping before the entries'
// encoded size would exceed maxBytes (but taking at least one). Needs mu.
func (l *Log) spansLocked(lo, hi uint64, maxBytes int) ([]span, error) {
	switch {
	case l.closed:
		return nil, ErrClosed
	case lo > hi:
		return nil, fmt.Errorf("%w: range [%d, %d)", ErrInvalid, lo, hi)
	case lo < l.first:
		return nil, fmt.Errorf("%w: entries from %d, first index is %d", ErrCompacted, lo, l.first)
	case hi > l.last+1:
		return nil, fmt.Errorf("%w: entries up to %d, last index is %d", ErrUnavailable, hi-1, l.last)
	}
	var spans []span
	total := 0
	k := sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first > lo }) - 1
	for i := lo; i < hi && k < len(l.segs); k++ {
		s := l.segs[k]
		j := int(i - s.first)
		sp := span{path: s.path, f: s.f, start: int64(s.offs[j]), first: i}
		for ; i < hi && j < len(s.offs); i, j = i+1, j+1 {
			end := s.recordEnd(j)
			size := int(end-int64(s.offs[j])) - RecordHeaderSize
			if total+size > maxBytes && (total > 0 || len(spans) > 0 || sp.count > 0) {
				hi = i // stop here
				break
			}
			total += size
			sp.end = end
			sp.count++
		}
		if sp.count > 0 {
			spans = append(spans, sp)
		}
	}
	return spans, nil
}

// readSpan appends the bytes of sp to dst.
func readSpan(dst []byte, sp span) ([]byte, error) {
	n := len(dst)
	dst = append(dst, make([]byte, sp.end-sp.start)...)
	if _, err := sp.f.ReadAt(dst[n:], sp.start); err != nil {
		if err == io.EOF {
			return dst, corruptf(sp.path, sp.start, "file ends before offset %d", sp.end)
		}
		return dst, fmt.Errorf("wal: read %s at %d: %w", sp.path, sp.start, err)
	}
	return dst, nil
}

// checkRecords verifies the records of sp held in b and calls fn for each
// entry (decoded only if fn needs it).
func checkRecords(b []byte, sp span, fn func(e entry.Entry)) error {
	idx := sp.first
	for off := 0; off < len(b); idx++ {
		kind, payload, n, err := DecodeRecord(b[off:])
		if err == nil && kind != RecordEntry {
			err = fmt.Errorf("record kind %d, want an entry", kind)
		}
		var e entry.Entry
		if err == nil {
			if e, err = entry.Decode(payload); err == nil && e.Index != idx {
				err = fmt.Errorf("entry has index %d, want %d", e.Index, idx)
			}
		}
		if err != nil {
			return corruptf(sp.path, sp.start+int64(off), "%s", reason(err))
		}
		if fn != nil {
			fn(e)
		}
		off += n
	}
	return nil
}

// Entries returns entries [lo, hi): at least one if lo < hi, and then no more
// than fit in maxBytes of encoded size (entry.Size). Below FirstIndex it returns
// ErrCompacted, above LastIndex ErrUnavailable. Records are verified as they
// are read (ErrCorrupt). The entries share one fresh buffer; the caller may keep
// them but must not modify them.
func (l *Log) Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	l.filesMu.RLock()
	defer l.filesMu.RUnlock()
	l.mu.Lock()
	spans, err := l.spansLocked(lo, hi, maxBytes)
	l.mu.Unlock()
	if err != nil || len(spans) == 0 {
		return nil, err
	}
	count := 0
	size := int64(0)
	for _, sp := range spans {
		count += sp.count
		size += sp.end - sp.start
	}
	ents := make([]entry.Entry, 0, count)
	buf := make([]byte, 0, size)
	for _, sp := range spans {
		n := len(buf)
		if buf, err = readSpan(buf, sp); err != nil {
			return nil, err
		}
		if err := checkRecords(buf[n:], sp, func(e entry.Entry) { ents = append(ents, e) }); err != nil {
			return nil, err
		}
	}
	return ents, nil
}

// ReadRaw appends to dst the stored records (see the package doc) of entries
// [lo, n), where n is the index after the last entry returned, with the same
// range rules and size limit as Entries; each record is verified first. Catch-up
// can send the records as they are; DecodeEntryRecords decodes them.
func (l *Log) ReadRaw(dst []byte, lo, hi uint64, maxBytes int) ([]byte, uint64, error) {
	l.filesMu.RLock()
	defer l.filesMu.RUnlock()
	l.mu.Lock()
	spans, err := l.spansLocked(lo, hi, maxBytes)
	l.mu.Unlock()
	if err != nil {
		return dst, lo, err
	}
	next := lo
	for _, sp := range spans {
		n := len(dst)
		if dst, err = readSpan(dst, sp); err != nil {
			return dst[:n], next, err
		}
		if err := checkRecords(dst[n:], sp, nil); err != nil {
			return dst[:n], next, err
		}
		next += uint64(sp.count)
	}
	return dst, next, nil
}
