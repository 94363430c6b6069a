package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

type kv struct {
	key, val string
	ver      uint64
}

func mustScan(t testing.TB, v *View, start, end []byte, limit int) []kv {
	t.Helper()
	var out []kv
	err := v.Scan(start, end, limit, func(k, val []byte, ver uint64) bool {
		out = append(out, kv{string(k), string(val), ver})
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q, %d): %v", start, end, limit, err)
	}
	return out
}

func TestViewIsConsistent(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, put(1, "a", "1"), put(2, "b", "2"))
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, del(3, "a"), put(4, "b", "22"), put(5, "c", "3"))
	if v.AppliedIndex() != 2 || v.Count() != 2 || v.AppliedTerm() != 1 {
		t.Fatalf("view: applied %d count %d term %d, want 2 2 1", v.AppliedIndex(), v.Count(), v.AppliedTerm())
	}
	got := mustScan(t, v, nil, nil, 0)
	want := []kv{{"a", "1", 1}, {"b", "2", 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("view scan = %v, want %v", got, want)
	}
	val, ver, found, err := v.Get([]byte("a"))
	if err != nil || !found || string(val) != "1" || ver != 1 {
		t.Fatalf("view Get(a) = %q@%d %v %v", val, ver, found, err)
	}
	if _, _, found, _ := v.Get([]byte("c")); found {
		t.Fatal("view sees a key applied after it was taken")
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, _, err := v.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on closed view = %v, want ErrClosed", err)
	}
	if err := v.Scan(nil, nil, 0, func([]byte, []byte, uint64) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan on closed view = %v, want ErrClosed", err)
	}
}

func TestScan(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	var ents []entry.Entry
	for i, k := range []string{"", "a", "ab", "b", "ba", "c", "\xff", "\xff\xff"} {
		ents = append(ents, put(uint64(i+1), k, strings.ToUpper(k)))
	}
	mustApply(t, s, ents...)
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	keys := func(kvs []kv) string {
		var ks []string
		for _, x := range kvs {
			ks = append(ks, fmt.Sprintf("%q", x.key))
		}
		return strings.Join(ks, " ")
	}
	tests := []struct {
		name       string
		start, end []byte
		limit      int
		want       string
	}{
		{"all", nil, nil, 0, `"" "a" "ab" "b" "ba" "c" "\xff" "\xff\xff"`},
		{"empty end is unbounded", []byte("c"), []byte{}, 0, `"c" "\xff" "\xff\xff"`},
		{"half open", []byte("a"), []byte("b"), 0, `"a" "ab"`},
		{"start between keys", []byte("aa"), []byte("c"), 0, `"ab" "b" "ba"`},
		{"limit", []byte("a"), nil, 2, `"a" "ab"`},
		{"negative limit is no limit", []byte("ba"), nil, -1, `"ba" "c" "\xff" "\xff\xff"`},
		{"empty range", []byte("b"), []byte("b"), 0, ``},
		{"inverted range", []byte("c"), []byte("a"), 0, ``},
		{"high keys", []byte("\xff"), nil, 0, `"\xff" "\xff\xff"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keys(mustScan(t, v, tt.start, tt.end, tt.limit)); got != tt.want {
				t.Fatalf("Scan = %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("stop early", func(t *testing.T) {
		n := 0
		err := v.Scan(nil, nil, 0, func(k, val []byte, ver uint64) bool {
			n++
			return n < 3
		})
		if err != nil || n != 3 {
			t.Fatalf("Scan stopped after %d calls (%v), want 3", n, err)
		}
	})
	t.Run("values and versions", func(t *testing.T) {
		got := mustScan(t, v, []byte("b"), []byte("c"), 0)
		want := []kv{{"b", "B", 4}, {"ba", "BA", 5}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Scan = %v, want %v", got, want)
		}
	})
}

func TestConcurrentReadsDuringApply(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	const n = 300
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				v, err := s.View()
				if err != nil {
					errc <- err
					return
				}
				// Invariant of this workload: key k%03d holds value k at
				// version k, and index i applied means keys 1..i exist.
				idx := v.AppliedIndex()
				cnt := 0
				err = v.Scan(nil, nil, 0, func(k, val []byte, ver uint64) bool {
					cnt++
					if string(k) != fmt.Sprintf("k%03d", ver) || string(val) != fmt.Sprint(ver) {
						errc <- fmt.Errorf("inconsistent record %q=%q@%d", k, val, ver)
					}
					return true
				})
				vc := v.Count()
				v.Close()
				if err != nil {
					errc <- err
					return
				}
				if uint64(cnt) != idx || int64(cnt) != vc {
					errc <- fmt.Errorf("view at index %d has %d keys, count %d", idx, cnt, vc)
					return
				}
			}
		}()
	}
	for i := uint64(1); i <= n; i++ {
		mustApply(t, s, put(i, fmt.Sprintf("k%03d", i), fmt.Sprint(i)))
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// TestConcurrentImportAndReads runs readers (Get, View, Scan, Count, Export)
// while the writer alternates Apply and Import; run it with -race.
func TestConcurrentImportAndReads(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	defer src.Close()
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, _, err := s.Get([]byte("key00001")); err != nil {
					errc <- err
					return
				}
				if _, err := s.Count(); err != nil {
					errc <- err
					return
				}
				v, err := s.View()
				if err != nil {
					errc <- err
					return
				}
				n := int64(0)
				err = v.Scan(nil, nil, 0, func([]byte, []byte, uint64) bool { n++; return true })
				if err == nil && n != v.Count() {
					err = fmt.Errorf("view at %d: scanned %d keys, count %d", v.AppliedIndex(), n, v.Count())
				}
				v.Close()
				if err == nil && r == 1 && i%5 == 0 {
					_, err = s.Export(io.Discard, 256, nil)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}(r)
	}
	for round := 0; round < 4; round++ {
		fill(t, src, 50)
		var buf bytes.Buffer
		if _, err := src.Export(&buf, 512, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Import(&buf, nil); err != nil {
			t.Fatalf("round %d: Import: %v", round, err)
		}
		next := s.AppliedIndex() + 1
		mustApply(t, s, put(next, "extra", "x"), del(next+1, "key00001"))
		// Keep the source in step so its next snapshot is newer.
		mustApply(t, src, put(next, "extra", "x"), del(next+1, "key00001"))
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if a, b := dump(t, s), dump(t, src); a != b {
		t.Fatalf("final state differs:\n%s\nsource:\n%s", a, b)
	}
}
