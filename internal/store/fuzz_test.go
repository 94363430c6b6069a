package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Fuzz targets for the snapshot stream decoder. Seed corpora live in
// testdata/fuzz/<target>; regenerate them with
//
//	TRIREME_STORE_WRITE_CORPUS=1 go test ./internal/store -run TestWriteFuzzCorpus
//
// and fuzz with, for example,
//
//	go test ./internal/store -run '^$' -fuzz FuzzSnapshotDecode -fuzztime 60s
//	go test ./internal/store -run '^$' -fuzz FuzzImport -fuzztime 60s -fuzzminimizetime 3s
//
// FuzzImport opens a Pebble database per accepted header, so it is slow
// (a few thousand execs/s); without a short -fuzzminimizetime the fuzzer
// spends most of its time minimizing new inputs and reports no execs.

// seedStreams returns a few valid and damaged snapshot streams.
func seedStreams(t testing.TB) map[string][]byte {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	seeds := map[string][]byte{"empty": mustExport(t, s, 0)}
	mustApply(t, s, put(1, "a", "1"), put(2, "bb", "22"), del(3, "a"), put(4, "", "empty key"), put(5, "c", ""))
	small := mustExport(t, s, 16)
	seeds["small-chunks"] = small
	seeds["one-chunk"] = mustExport(t, s, 0)
	seeds["truncated"] = small[:len(small)-7]
	flipped := bytes.Clone(small)
	flipped[snapHeaderSize+frameHeaderSize+2] ^= 1
	seeds["bitflip"] = flipped
	return seeds
}

func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("TRIREME_STORE_WRITE_CORPUS") == "" {
		t.Skip("set TRIREME_STORE_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	for _, target := range []string{"FuzzSnapshotDecode", "FuzzImport"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seedStreams(t) {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzSnapshotDecode feeds arbitrary bytes to the stream decoder: it must
// never panic, and what it accepts must be well formed.
func FuzzSnapshotDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var prev []byte
		n := 0
		_, err := decodeSnapshot(bytes.NewReader(data), func(k []byte, ver uint64, v []byte) error {
			if n > 0 && bytes.Compare(prev, k) >= 0 {
				t.Fatalf("decoder passed key %q after %q", k, prev)
			}
			if ver == 0 {
				t.Fatalf("decoder passed version 0 for %q", k)
			}
			prev = append(prev[:0], k...)
			n++
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("decode error %v does not wrap ErrBadSnapshot", err)
			}
		}
	})
}

// FuzzImport runs Import on arbitrary bytes against one store: it must never
// panic, a refused stream must leave the store unchanged, and an accepted one
// must leave exactly what the stream held.
func FuzzImport(f *testing.F) {
	s := mustOpen(f, f.TempDir())
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		before := dump(t, s)
		idx, err := s.Import(bytes.NewReader(data), nil)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, ErrStaleSnapshot) {
				t.Fatalf("Import error %v is neither ErrBadSnapshot nor ErrStaleSnapshot", err)
			}
			if after := dump(t, s); after != before {
				t.Fatalf("refused Import changed the store:\n%s\nwas:\n%s", after, before)
			}
			return
		}
		if s.AppliedIndex() != idx {
			t.Fatalf("Import returned %d, applied %d", idx, s.AppliedIndex())
		}
		// Export must reproduce a stream the decoder accepts with the same records.
		var buf bytes.Buffer
		if _, err := s.Export(&buf, 0, nil); err != nil {
			t.Fatalf("Export after Import: %v", err)
		}
		var want, got bytes.Buffer
		rec := func(w *bytes.Buffer) func(k []byte, ver uint64, v []byte) error {
			return func(k []byte, ver uint64, v []byte) error {
				fmt.Fprintf(w, "%q=%q@%d\n", k, v, ver)
				return nil
			}
		}
		if _, err := decodeSnapshot(bytes.NewReader(data), rec(&want)); err != nil {
			t.Fatalf("Import accepted a stream the decoder refuses: %v", err)
		}
		if _, err := decodeSnapshot(&buf, rec(&got)); err != nil {
			t.Fatalf("re-export does not decode: %v", err)
		}
		if got.String() != want.String() {
			t.Fatalf("re-export differs:\n%s\nwant:\n%s", got.String(), want.String())
		}
	})
}
