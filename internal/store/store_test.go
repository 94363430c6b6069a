package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/trireme-db/trireme/internal/entry"
)

func testConfig() Config {
	c := DefaultConfig()
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c.CacheBytes = 1 << 20
	c.MemTableBytes = 1 << 20
	return c
}

func mustOpen(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testConfig())
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func mustApply(t testing.TB, s *Store, ents ...entry.Entry) {
	t.Helper()
	if err := s.Apply(ents); err != nil {
		t.Fatalf("Apply(%d entries from %d): %v", len(ents), ents[0].Index, err)
	}
}

func put(i uint64, k, v string) entry.Entry {
	return entry.Entry{Term: 1, Index: i, Kind: entry.KindPut, Key: []byte(k), Value: []byte(v)}
}

func del(i uint64, k string) entry.Entry {
	return entry.Entry{Term: 1, Index: i, Kind: entry.KindDelete, Key: []byte(k)}
}

func noop(i uint64) entry.Entry { return entry.Entry{Term: 1, Index: i, Kind: entry.KindNoop} }

// mustGet checks key's value and version (want == "" and ver == 0: absent).
func mustGet(t testing.TB, s *Store, key, want string, ver uint64) {
	t.Helper()
	v, gotVer, found, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if ver == 0 {
		if found {
			t.Fatalf("Get(%q) = %q@%d, want absent", key, v, gotVer)
		}
		return
	}
	if !found || string(v) != want || gotVer != ver {
		t.Fatalf("Get(%q) = %q@%d found=%v, want %q@%d", key, v, gotVer, found, want, ver)
	}
}

func mustCount(t testing.TB, s *Store, want int64) {
	t.Helper()
	n, err := s.Count()
	if err != nil || n != want {
		t.Fatalf("Count() = %d, %v; want %d", n, err, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"nil logger", func(c *Config) { c.Logger = nil }, "Logger"},
		{"negative cache", func(c *Config) { c.CacheBytes = -1 }, "CacheBytes"},
		{"zero cache ok", func(c *Config) { c.CacheBytes = 0 }, ""},
		{"tiny memtable", func(c *Config) { c.MemTableBytes = 1000 }, "MemTableBytes"},
		{"huge memtable", func(c *Config) { c.MemTableBytes = 4 << 30 }, "MemTableBytes"},
		{"zero chunk", func(c *Config) { c.ExportChunkBytes = 0 }, "ExportChunkBytes"},
		{"huge chunk", func(c *Config) { c.ExportChunkBytes = MaxChunkBytes + 1 }, "ExportChunkBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArg) || !strings.Contains(err.Error(), "Config."+tt.field) {
				t.Fatalf("Validate() = %v, want ErrInvalidArg naming Config.%s", err, tt.field)
			}
			if _, err := Open(t.TempDir(), c); !errors.Is(err, ErrInvalidArg) {
				t.Fatalf("Open with bad config = %v, want ErrInvalidArg", err)
			}
		})
	}
}

func TestOpenFreshAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if s.AppliedIndex() != 0 || s.DurableIndex() != 0 || s.AppliedTerm() != 0 {
		t.Fatalf("fresh store: applied %d durable %d term %d", s.AppliedIndex(), s.DurableIndex(), s.AppliedTerm())
	}
	mustCount(t, s, 0)
	e := put(1, "a", "1")
	e.Term = 7
	mustApply(t, s, e)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if s.AppliedIndex() != 1 || s.DurableIndex() != 1 || s.AppliedTerm() != 7 {
		t.Fatalf("reopened: applied %d durable %d term %d, want 1 1 7", s.AppliedIndex(), s.DurableIndex(), s.AppliedTerm())
	}
	mustGet(t, s, "a", "1", 1)
	mustCount(t, s, 1)
}

func TestApply(t *testing.T) {
	type check struct {
		key, val string
		ver      uint64 // 0: absent
	}
	tests := []struct {
		name    string
		batches [][]entry.Entry
		wantErr error // from the last batch
		applied uint64
		count   int64
		checks  []check
	}{
		{
			name:    "put then overwrite in one batch",
			batches: [][]entry.Entry{{put(1, "a", "x"), put(2, "a", "y")}},
			applied: 2, count: 1,
			checks: []check{{"a", "y", 2}},
		},
		{
			name:    "put and delete in one batch",
			batches: [][]entry.Entry{{put(1, "a", "x"), del(2, "a"), put(3, "b", "z")}},
			applied: 3, count: 1,
			checks: []check{{"a", "", 0}, {"b", "z", 3}},
		},
		{
			name:    "delete then put again across batches",
			batches: [][]entry.Entry{{put(1, "a", "x")}, {del(2, "a")}, {put(3, "a", "w")}},
			applied: 3, count: 1,
			checks: []check{{"a", "w", 3}},
		},
		{
			name:    "delete of missing key",
			batches: [][]entry.Entry{{del(1, "nope")}},
			applied: 1, count: 0,
			checks: []check{{"nope", "", 0}},
		},
		{
			name: "noop and config advance only the index",
			batches: [][]entry.Entry{{noop(1), put(2, "k", "v"),
				{Term: 1, Index: 3, Kind: entry.KindConfig, Key: []byte("k"), Value: []byte("cfg")}}},
			applied: 3, count: 1,
			checks: []check{{"k", "v", 2}},
		},
		{
			name:    "empty key and empty value",
			batches: [][]entry.Entry{{put(1, "", "")}},
			applied: 1, count: 1,
			checks: []check{{"", "", 1}},
		},
		{
			name:    "already applied entries are skipped",
			batches: [][]entry.Entry{{put(1, "a", "x"), put(2, "b", "y")}, {put(1, "a", "OLD"), put(2, "b", "OLD"), put(3, "c", "z")}},
			applied: 3, count: 3,
			checks: []check{{"a", "x", 1}, {"b", "y", 2}, {"c", "z", 3}},
		},
		{
			name:    "wholly applied batch is a no-op",
			batches: [][]entry.Entry{{put(1, "a", "x")}, {put(1, "a", "OLD")}},
			applied: 1, count: 1,
			checks: []check{{"a", "x", 1}},
		},
		{
			name:    "gap at start",
			batches: [][]entry.Entry{{put(1, "a", "x")}, {put(3, "b", "y")}},
			wantErr: ErrGap, applied: 1, count: 1,
			checks: []check{{"b", "", 0}},
		},
		{
			name:    "gap inside batch applies nothing",
			batches: [][]entry.Entry{{put(1, "a", "x"), put(2, "b", "y"), put(4, "c", "z")}},
			wantErr: ErrGap, applied: 0, count: 0,
			checks: []check{{"a", "", 0}},
		},
		{
			name:    "index zero on a fresh store",
			batches: [][]entry.Entry{{put(0, "a", "x")}},
			wantErr: nil, applied: 0, count: 0, // 0 <= applied: skipped
			checks: []check{{"a", "", 0}},
		},
		{
			name:    "unknown kind applies nothing",
			batches: [][]entry.Entry{{put(1, "a", "x"), {Index: 2, Kind: 99}}},
			wantErr: ErrBadEntry, applied: 0, count: 0,
			checks: []check{{"a", "", 0}},
		},
		{
			name:    "empty batch",
			batches: [][]entry.Entry{{}},
			applied: 0, count: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustOpen(t, t.TempDir())
			defer s.Close()
			var err error
			for _, b := range tt.batches {
				err = s.Apply(b)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Apply = %v, want %v", err, tt.wantErr)
			}
			if got := s.AppliedIndex(); got != tt.applied {
				t.Fatalf("AppliedIndex = %d, want %d", got, tt.applied)
			}
			mustCount(t, s, tt.count)
			for _, c := range tt.checks {
				mustGet(t, s, c.key, c.val, c.ver)
			}
		})
	}
}

func TestGetReturnsCopy(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, put(1, "k", "value"))
	v, _, _, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	copy(v, "XXXXX")
	mustGet(t, s, "k", "value", 1)
}

func TestKeysDoNotCollideWithMetadata(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	// User keys that look like metadata keys after the prefix.
	mustApply(t, s, put(1, "\x00a", "x"), put(2, "a", "y"), put(3, "\x00n", "z"), put(4, "\x02", "w"))
	mustCount(t, s, 4)
	if s.AppliedIndex() != 4 {
		t.Fatalf("applied %d", s.AppliedIndex())
	}
	mustGet(t, s, "\x00a", "x", 1)
	mustGet(t, s, "\x02", "w", 4)
}

// TestCrashLosesOnlyUnflushed closes without flushing (Pebble's memtable is
// lost with its WAL off) and checks the crash contract: the store reopens at
// an index between DurableIndex and the last applied index, in exactly the
// state of that prefix, and replay catches it up.
func TestCrashLosesOnlyUnflushed(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	log := []entry.Entry{put(1, "a", "1"), put(2, "b", "2"), noop(3)}
	mustApply(t, s, log...)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if s.DurableIndex() != 3 {
		t.Fatalf("DurableIndex after Flush = %d, want 3", s.DurableIndex())
	}
	more := []entry.Entry{del(4, "a"), put(5, "c", "3")}
	log = append(log, more...)
	mustApply(t, s, more...)
	if s.DurableIndex() != 3 {
		t.Fatalf("DurableIndex before Flush = %d, want 3", s.DurableIndex())
	}
	if err := s.close(false); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if got := s.AppliedIndex(); got != 3 {
		t.Fatalf("after crash AppliedIndex = %d, want 3 (the unflushed memtable is lost)", got)
	}
	mustGet(t, s, "a", "1", 1)
	mustGet(t, s, "c", "", 0)
	mustCount(t, s, 2)
	// Replay the whole log: Apply skips what is already there.
	mustApply(t, s, log...)
	mustGet(t, s, "a", "", 0)
	mustGet(t, s, "c", "3", 5)
	mustCount(t, s, 2)
}

func TestClosedStore(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	mustApply(t, s, put(1, "a", "x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	checks["Apply"] = s.Apply([]entry.Entry{put(2, "b", "y")})
	_, _, _, checks["Get"] = s.Get([]byte("a"))
	_, checks["Count"] = s.Count()
	_, checks["View"] = s.View()
	checks["Flush"] = s.Flush()
	_, checks["Export"] = s.Export(io.Discard, 0, nil)
	_, checks["Import"] = s.Import(bytes.NewReader(nil), nil)
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s on a closed store = %v, want ErrClosed", name, err)
		}
	}
}

func TestStickyFailure(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.close(false)
	mustApply(t, s, put(1, "a", "x"))
	err := s.fail("test", errors.New("injected fsync error"))
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("fail() = %v", err)
	}
	if err := s.Apply([]entry.Entry{put(2, "b", "y")}); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "injected") {
		t.Errorf("Apply after failure = %v, want sticky ErrFailed", err)
	}
	if err := s.Flush(); !errors.Is(err, ErrFailed) {
		t.Errorf("Flush after failure = %v, want ErrFailed", err)
	}
	if _, err := s.Import(bytes.NewReader(nil), nil); !errors.Is(err, ErrFailed) {
		t.Errorf("Import after failure = %v, want ErrFailed", err)
	}
	// Reads still work.
	mustGet(t, s, "a", "x", 1)
}

func TestOpenErrors(t *testing.T) {
	t.Run("corrupt CURRENT", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "CURRENT"), []byte("../evil\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, testConfig())
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "CURRENT") {
			t.Fatalf("Open = %v, want ErrCorrupt naming CURRENT", err)
		}
	})
	t.Run("CURRENT names a missing database", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "CURRENT"), []byte("db-000009\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, testConfig()); err == nil || !strings.Contains(err.Error(), "db-000009") {
			t.Fatalf("Open = %v, want an error naming db-000009", err)
		}
	})
	t.Run("incompatible format", func(t *testing.T) {
		dir := t.TempDir()
		s := mustOpen(t, dir)
		b := s.h.db.NewBatch()
		_ = b.Set(metaKeyFormat, []byte{9, 0, 0, 0}, nil)
		if err := s.h.db.Apply(b, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := Open(dir, testConfig()); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("Open = %v, want ErrIncompatible", err)
		}
	})
	t.Run("missing metadata", func(t *testing.T) {
		dir := t.TempDir()
		s := mustOpen(t, dir)
		if err := s.h.db.Delete(metaKeyApplied, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := Open(dir, testConfig()); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open = %v, want ErrCorrupt", err)
		}
	})
	t.Run("corrupt stored value", func(t *testing.T) {
		s := mustOpen(t, t.TempDir())
		defer s.Close()
		if err := s.h.db.Set(userKey(nil, []byte("k")), []byte{1, 2}, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.Get([]byte("k")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get = %v, want ErrCorrupt", err)
		}
	})
}

func TestOpenRemovesStrays(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustApply(t, s, put(1, "a", "x"))
	s.Close()
	stray := filepath.Join(dir, dbName(2))
	if err := os.MkdirAll(filepath.Join(stray, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "CURRENT.tmp"), []byte("db-000002\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	mustGet(t, s, "a", "x", 1)
	for _, p := range []string{stray, filepath.Join(dir, "CURRENT.tmp")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
}

func TestFlushAdvancesDurable(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for i := uint64(1); i <= 10; i++ {
		mustApply(t, s, put(i, fmt.Sprint(i), "v"))
		if i%3 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if s.DurableIndex() != i {
				t.Fatalf("DurableIndex = %d, want %d", s.DurableIndex(), i)
			}
		}
	}
	if s.DurableIndex() != 9 {
		t.Fatalf("DurableIndex = %d, want 9", s.DurableIndex())
	}
}

// TestCountConcurrent checks Count against a model while another goroutine
// applies puts and deletes, with a small limit on remembered keys so that
// both the incremental and the scanning path run, concurrently with Apply.
func TestCountConcurrent(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	s.ctr.max = 5
	const n = 600
	// Entry i puts key i%37 when (i/37) is even, else deletes it; the live
	// count after applying index i is computed by replaying the same rule.
	ent := func(i uint64) entry.Entry {
		k := fmt.Sprintf("k%02d", i%37)
		if (i/37)%2 == 0 {
			return put(i, k, "v")
		}
		return del(i, k)
	}
	want := make([]int64, n+1)
	live := map[string]bool{}
	for i := uint64(1); i <= n; i++ {
		e := ent(i)
		live[string(e.Key)] = e.Kind == entry.KindPut
		c := int64(0)
		for _, ok := range live {
			if ok {
				c++
			}
		}
		want[i] = c
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(1); i <= n; i++ {
			mustApply(t, s, ent(i))
		}
	}()
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		lo := s.AppliedIndex()
		got, err := s.Count()
		hi := s.AppliedIndex()
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for i := lo; i <= hi; i++ {
			ok = ok || want[i] == got
		}
		if !ok {
			t.Fatalf("Count = %d while applied went %d..%d; want one of %v", got, lo, hi, want[lo:hi+1])
		}
	}
	if got, err := s.Count(); err != nil || got != want[n] {
		t.Fatalf("final Count = %d, %v; want %d", got, err, want[n])
	}
}
