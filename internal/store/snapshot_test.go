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
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// dump renders a store's whole state (applied index, term, count, records).
func dump(t testing.TB, s *Store) string {
	t.Helper()
	v, err := s.View()
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	defer v.Close()
	var sb strings.Builder
	fmt.Fprintf(&sb, "applied=%d term=%d count=%d\n", v.AppliedIndex(), v.AppliedTerm(), v.Count())
	err = v.Scan(nil, nil, 0, func(k, val []byte, ver uint64) bool {
		fmt.Fprintf(&sb, "%q=%q@%d\n", k, val, ver)
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return sb.String()
}

func fill(t testing.TB, s *Store, n int) {
	t.Helper()
	var ents []entry.Entry
	next := s.AppliedIndex() + 1
	for i := 0; i < n; i++ {
		ents = append(ents, put(next, fmt.Sprintf("key%05d", i), strings.Repeat("v", i%50)))
		next++
		if i%7 == 3 {
			ents = append(ents, del(next, fmt.Sprintf("key%05d", i-1)))
			next++
		}
	}
	ents = append(ents, noop(next))
	mustApply(t, s, ents...)
}

func mustExport(t testing.TB, s *Store, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	idx, err := s.Export(&buf, chunk, nil)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if idx != s.AppliedIndex() {
		t.Fatalf("Export index %d, applied %d", idx, s.AppliedIndex())
	}
	return buf.Bytes()
}

func TestExportImportRoundTrip(t *testing.T) {
	for _, chunk := range []int{0, 1, 100, 4096} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			src := mustOpen(t, t.TempDir())
			defer src.Close()
			fill(t, src, 300)
			var buf bytes.Buffer
			var calls int
			var lastKeys, lastBytes int64
			idx, err := src.Export(&buf, chunk, func(keys, n int64) {
				calls++
				if keys < lastKeys || n <= lastBytes {
					t.Errorf("export progress went from %d/%d to %d/%d", lastKeys, lastBytes, keys, n)
				}
				lastKeys, lastBytes = keys, n
			})
			if err != nil {
				t.Fatal(err)
			}
			cnt, _ := src.Count()
			if lastKeys != cnt || lastBytes != int64(buf.Len()) {
				t.Fatalf("final export progress %d keys %d bytes, want %d keys %d bytes", lastKeys, lastBytes, cnt, buf.Len())
			}
			if chunk == 1 && calls != int(cnt)+1 {
				t.Fatalf("chunk=1: %d progress calls, want one per key plus the end frame (%d)", calls, cnt+1)
			}

			dstDir := t.TempDir()
			dst := mustOpen(t, dstDir)
			mustApply(t, dst, put(1, "old", "gone"))
			v, err := dst.View() // a view of the old state stays valid
			if err != nil {
				t.Fatal(err)
			}
			var ilast int64
			got, err := dst.Import(bytes.NewReader(buf.Bytes()), func(keys, n int64) { ilast = keys })
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if got != idx || dst.AppliedIndex() != idx || dst.DurableIndex() != idx {
				t.Fatalf("Import index %d applied %d durable %d, want %d", got, dst.AppliedIndex(), dst.DurableIndex(), idx)
			}
			if ilast != cnt {
				t.Fatalf("import progress ended at %d keys, want %d", ilast, cnt)
			}
			if a, b := dump(t, src), dump(t, dst); a != b {
				t.Fatalf("imported state differs:\nsource:\n%s\nimported:\n%s", a, b)
			}
			if val, _, found, err := v.Get([]byte("old")); err != nil || !found || string(val) != "gone" {
				t.Fatalf("old view after import: %q %v %v", val, found, err)
			}
			v.Close()
			// The old database directory is gone once its last view closed.
			if _, err := os.Stat(filepath.Join(dstDir, dbName(1))); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("replaced database still on disk: %v", err)
			}
			// Applying continues after the snapshot, and survives reopen.
			mustApply(t, dst, put(idx+1, "after", "x"))
			want := dump(t, dst)
			dst.Close()
			dst = mustOpen(t, dstDir)
			defer dst.Close()
			if got := dump(t, dst); got != want {
				t.Fatalf("after reopen:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestExportEmptyStore(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	defer src.Close()
	b := mustExport(t, src, 0)
	if len(b) != snapHeaderSize+frameHeaderSize+endPayloadSize {
		t.Fatalf("empty export is %d bytes", len(b))
	}
	dst := mustOpen(t, t.TempDir())
	defer dst.Close()
	if _, err := dst.Import(bytes.NewReader(b), nil); err != nil {
		t.Fatal(err)
	}
	if dump(t, dst) != dump(t, src) {
		t.Fatal("empty import differs")
	}
}

func TestExportErrors(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	fill(t, s, 10)
	if _, err := s.Export(io.Discard, MaxChunkBytes+1, nil); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Export with huge chunk = %v, want ErrInvalidArg", err)
	}
	boom := errors.New("disk full")
	if _, err := s.Export(&failingWriter{after: 40, err: boom}, 16, nil); !errors.Is(err, boom) {
		t.Fatalf("Export to a failing writer = %v, want the writer's error", err)
	}
}

type failingWriter struct {
	after int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		n := w.after
		w.after = 0
		return n, w.err
	}
	w.after -= len(p)
	return len(p), nil
}

// TestImportRefusesDamage flips bytes and truncates a valid stream at many
// positions: Import must refuse every one with ErrBadSnapshot and leave the
// store exactly as it was.
func TestImportRefusesDamage(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	defer src.Close()
	fill(t, src, 20)
	good := mustExport(t, src, 64)

	dstDir := t.TempDir()
	dst := mustOpen(t, dstDir)
	defer dst.Close()
	mustApply(t, dst, put(1, "mine", "keep"))
	before := dump(t, dst)

	check := func(name string, b []byte) {
		t.Helper()
		_, err := dst.Import(bytes.NewReader(b), nil)
		if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("%s: Import = %v, want ErrBadSnapshot naming an offset", name, err)
		}
		if got := dump(t, dst); got != before {
			t.Fatalf("%s: store changed by a refused import:\n%s", name, got)
		}
	}
	step := max(1, len(good)/25)
	for off := 0; off < len(good); off += step {
		b := bytes.Clone(good)
		b[off] ^= 0x40
		check(fmt.Sprintf("flip at %d", off), b)
		check(fmt.Sprintf("cut at %d", off), good[:off])
	}
	check("cut before last byte", good[:len(good)-1])
	// No database directories are left behind.
	des, _ := os.ReadDir(dstDir)
	for _, de := range des {
		if de.IsDir() && de.Name() != dbName(1) {
			t.Fatalf("refused imports left %s behind", de.Name())
		}
	}
}

// TestImportSemanticChecks builds streams with valid checksums but wrong content.
func TestImportSemanticChecks(t *testing.T) {
	rec := func(k string, ver uint64, v string) []byte { return appendRecord(nil, []byte(k), ver, []byte(v)) }
	end := func(keys, index, term uint64) []byte {
		b := binary.LittleEndian.AppendUint64(nil, keys)
		b = binary.LittleEndian.AppendUint64(b, index)
		return binary.LittleEndian.AppendUint64(b, term)
	}
	type frame struct {
		typ     byte
		seq     uint32
		payload []byte
	}
	tests := []struct {
		name   string
		index  uint64
		frames []frame
		want   string
	}{
		{"valid", 5, []frame{{frameData, 0, rec("a", 5, "x")}, {frameEnd, 1, end(1, 5, 2)}}, ""},
		{"keys out of order", 5, []frame{{frameData, 0, append(rec("b", 1, ""), rec("a", 1, "")...)}, {frameEnd, 1, end(2, 5, 2)}}, "does not follow"},
		{"duplicate key across frames", 5, []frame{{frameData, 0, rec("a", 1, "")}, {frameData, 1, rec("a", 1, "")}, {frameEnd, 2, end(2, 5, 2)}}, "does not follow"},
		{"version above index", 5, []frame{{frameData, 0, rec("a", 6, "")}, {frameEnd, 1, end(1, 5, 2)}}, "version 6"},
		{"version zero", 5, []frame{{frameData, 0, rec("a", 0, "")}, {frameEnd, 1, end(1, 5, 2)}}, "version 0"},
		{"wrong key total", 5, []frame{{frameData, 0, rec("a", 1, "")}, {frameEnd, 1, end(2, 5, 2)}}, "counts 2 keys"},
		{"end for another index", 5, []frame{{frameEnd, 0, end(0, 4, 2)}}, "index 4"},
		{"sequence gap", 5, []frame{{frameData, 1, rec("a", 1, "")}, {frameEnd, 2, end(1, 5, 2)}}, "sequence 1"},
		{"unknown frame type", 5, []frame{{7, 0, nil}}, "frame type 7"},
		{"empty data frame", 5, []frame{{frameData, 0, nil}, {frameEnd, 1, end(0, 5, 2)}}, "empty data frame"},
		{"short end frame", 5, []frame{{frameEnd, 0, []byte{1}}}, "end frame payload"},
		{"record overruns frame", 5, []frame{{frameData, 0, rec("a", 1, "xyz")[:18]}, {frameEnd, 1, end(1, 5, 2)}}, "exceeds the frame"},
		{"no end frame", 5, []frame{{frameData, 0, rec("a", 1, "")}}, "stream ends"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			ew := &exportWriter{w: &buf}
			ew.writeHeader(tt.index, 2)
			for _, f := range tt.frames {
				ew.seq = f.seq
				ew.writeFrame(f.typ, f.payload, 0)
			}
			s := mustOpen(t, t.TempDir())
			defer s.Close()
			_, err := s.Import(&buf, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Import = %v", err)
				}
				mustGet(t, s, "a", "x", 5)
				return
			}
			if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Import = %v, want ErrBadSnapshot containing %q", err, tt.want)
			}
			if s.AppliedIndex() != 0 {
				t.Fatalf("refused import moved the applied index to %d", s.AppliedIndex())
			}
		})
	}
}

func TestImportHeaderChecks(t *testing.T) {
	hdr := func(magic string, version uint32, index uint64, fixCRC bool) []byte {
		b := append([]byte(nil), magic...)
		b = binary.LittleEndian.AppendUint32(b, version)
		b = binary.LittleEndian.AppendUint64(b, index)
		b = binary.LittleEndian.AppendUint64(b, 1)
		crc := crc32.Checksum(b, crcTable)
		if !fixCRC {
			crc++
		}
		return binary.LittleEndian.AppendUint32(b, crc)
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "stream ends inside the header"},
		{"bad magic", hdr("NOTASNAP", 1, 1, true), "bad magic"},
		{"bad crc", hdr(SnapshotMagic, 1, 1, false), "header checksum"},
		{"future version", hdr(SnapshotMagic, 2, 1, true), "unknown stream version 2"},
	}
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Import(bytes.NewReader(tt.b), nil)
			if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Import = %v, want ErrBadSnapshot containing %q", err, tt.want)
			}
		})
	}
}

func TestImportStale(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	defer src.Close()
	fill(t, src, 5)
	snap := mustExport(t, src, 0)
	dst := mustOpen(t, t.TempDir())
	defer dst.Close()
	fill(t, dst, 50)
	before := dump(t, dst)
	if _, err := dst.Import(bytes.NewReader(snap), nil); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("Import of an older snapshot = %v, want ErrStaleSnapshot", err)
	}
	if dump(t, dst) != before {
		t.Fatal("stale import changed the store")
	}
	// Importing a snapshot at exactly the applied index is allowed.
	same := mustExport(t, dst, 0)
	if _, err := dst.Import(bytes.NewReader(same), nil); err != nil {
		t.Fatalf("Import at the applied index: %v", err)
	}
	if dump(t, dst) != before {
		t.Fatal("re-import of own snapshot changed the state")
	}
}

// TestImportReadsNothingAfterEnd checks that the stream ends at the end frame.
func TestImportReadsNothingAfterEnd(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	defer src.Close()
	fill(t, src, 5)
	snap := mustExport(t, src, 0)
	dst := mustOpen(t, t.TempDir())
	defer dst.Close()
	r := io.MultiReader(bytes.NewReader(snap), errReader{})
	if _, err := dst.Import(r, nil); err != nil {
		t.Fatalf("Import read past the end frame: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read past the end") }
