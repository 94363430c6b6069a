package wal

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

func fuzzSeeds() [][]byte {
	e := entry.Entry{Term: 3, Index: 7, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("value"), RequestID: 9}
	rec := AppendEntryRecord(nil, &e)
	hdr := appendSegmentHeader(nil, segmentHeader{first: 7, prevTerm: 2})
	bad := append([]byte(nil), rec...)
	bad[12] ^= 1
	return [][]byte{nil, rec, hdr, bad, rec[:5], rec[:len(rec)-1], append(append([]byte(nil), hdr...), rec...)}
}

// FuzzDecodeRecord checks that the record decoder never panics, that what it
// accepts re-encodes to the same bytes, and that its errors are either a short
// buffer or corruption.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, payload, n, err := DecodeRecord(b)
		if err != nil {
			if err != io.ErrUnexpectedEOF && !IsCorrupt(err) {
				t.Fatalf("DecodeRecord error %v is neither short nor corrupt", err)
			}
			return
		}
		if n < RecordHeaderSize || n > len(b) {
			t.Fatalf("DecodeRecord used %d of %d bytes", n, len(b))
		}
		if re := AppendRecord(nil, kind, payload); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, b[:n])
		}
		if kind == RecordEntry {
			if e, err := entry.Decode(payload); err == nil {
				if re := AppendEntryRecord(nil, &e); !bytes.Equal(re, b[:n]) {
					t.Fatalf("entry re-encoding differs")
				}
			}
			ents, err := DecodeEntryRecords(nil, b[:n])
			if err == nil && len(ents) != 1 {
				t.Fatalf("DecodeEntryRecords returned %d entries for one record", len(ents))
			}
		}
	})
}

// FuzzScanSegment checks that recovery's segment scanner never panics on any
// file content, that what it indexes is consistent, and that rescanning the
// good prefix it reports gives the same result with nothing left over.
func FuzzScanSegment(f *testing.F) {
	hdr := appendSegmentHeader(nil, segmentHeader{first: 7, prevTerm: 2})
	seg := append([]byte(nil), hdr...)
	for i := uint64(7); i < 10; i++ {
		e := entry.Entry{Term: 2 + i/9, Index: i, Kind: entry.KindPut, Key: []byte("key"), Value: []byte("v")}
		seg = AppendEntryRecord(seg, &e)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-4])
	f.Add(hdr)
	// Preallocated: zeros after the data, whole or torn.
	f.Add(append(append([]byte(nil), seg...), make([]byte, 64)...))
	f.Add(append(append([]byte(nil), seg[:len(seg)-4]...), make([]byte, 64)...))
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := scanSegment(b, "seg", 7)
		if err != nil {
			if !IsCorrupt(err) {
				t.Fatalf("scanSegment error %v does not wrap ErrCorrupt", err)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.File != "seg" {
				t.Fatalf("scanSegment error %v does not name the file", err)
			}
			return
		}
		if res.end > int64(len(b)) || res.end < segmentHeaderEnd {
			t.Fatalf("end %d outside [%d, %d]", res.end, segmentHeaderEnd, len(b))
		}
		if res.bad != nil && res.end == int64(len(b)) {
			t.Fatalf("end %d of %d but bad = %v", res.end, len(b), res.bad)
		}
		if res.dataEnd < res.end || res.dataEnd > int64(len(b)) {
			t.Fatalf("data end %d outside [%d, %d]", res.dataEnd, res.end, len(b))
		}
		if rest := b[res.end:]; res.bad == nil && len(bytes.TrimLeft(rest, "\x00")) != 0 {
			t.Fatalf("bad = nil but the %d bytes after end %d are not all zero", len(rest), res.end)
		}
		if res.bad != nil && res.dataEnd == res.end {
			t.Fatalf("bad = %v but nothing but zeros follows end %d", res.bad, res.end)
		}
		again, err := scanSegment(b[:res.end], "seg", 7)
		if err != nil || again.end != res.end || len(again.offs) != len(res.offs) || again.bad != nil {
			t.Fatalf("rescanning the good prefix: %+v, %v", again, err)
		}
		ents, err := DecodeEntryRecords(nil, b[segmentHeaderEnd:res.end])
		if err != nil || len(ents) != len(res.offs) {
			t.Fatalf("good prefix decodes to %d entries (%v), index has %d", len(ents), err, len(res.offs))
		}
	})
}
