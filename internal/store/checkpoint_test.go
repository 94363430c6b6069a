package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
)

// mustCheckpoint checkpoints s into a fresh directory under base and checks
// the index it reports.
func mustCheckpoint(t testing.TB, s *Store, base string) string {
	t.Helper()
	dir := filepath.Join(base, "ckpt")
	index, term, err := s.Checkpoint(dir)
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if index != s.AppliedIndex() || term != s.AppliedTerm() {
		t.Fatalf("Checkpoint at index %d term %d, store applied %d term %d", index, term, s.AppliedIndex(), s.AppliedTerm())
	}
	return dir
}

func TestCheckpointInstallRoundTrip(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	defer src.Close()
	fill(t, src, 3000) // several drains of the write buffer, unflushed memtable data
	mustApply(t, src, entry.Entry{Term: 3, Index: src.AppliedIndex() + 1, Kind: entry.KindConfig, Value: []byte("conf")})
	want := dump(t, src)

	// The copy sits beside the destination store (same file system).
	dstDir := t.TempDir()
	dst := mustOpen(t, filepath.Join(dstDir, "store"))
	defer dst.Close()
	mustApply(t, dst, put(1, "old", "gone"))
	v, err := dst.View() // a view of the old state outlives the install
	if err != nil {
		t.Fatal(err)
	}
	ck := mustCheckpoint(t, src, dstDir)
	index, term, err := dst.Install(ck)
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	if index != src.AppliedIndex() || term != 3 {
		t.Fatalf("Install = index %d term %d, want %d 3", index, term, src.AppliedIndex())
	}
	if got := dump(t, dst); got != want {
		t.Fatalf("installed state differs:\n got %.300s\nwant %.300s", got, want)
	}
	if _, err := os.Stat(ck); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checkpoint directory still there after Install: %v", err)
	}
	if conf, err := dst.Conf(); err != nil || string(conf) != "conf" {
		t.Fatalf("Conf after Install = %q, %v", conf, err)
	}
	if dst.DurableIndex() != index {
		t.Fatalf("DurableIndex %d after Install at %d", dst.DurableIndex(), index)
	}
	if _, _, found, err := v.Get([]byte("old")); !found || err != nil {
		t.Fatalf("the old view lost its key: found %v, %v", found, err)
	}
	v.Close()
	// Apply continues from the checkpoint, and the state survives a reopen.
	mustApply(t, dst, put(index+1, "after", "x"))
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst = mustOpen(t, filepath.Join(dstDir, "store"))
	mustGet(t, dst, "after", "x", index+1)
	mustGet(t, dst, "old", "", 0)
	des, _ := os.ReadDir(filepath.Join(dstDir, "store"))
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	if !slices.Equal(names, []string{"CURRENT", "db-000002"}) {
		t.Fatalf("store directory holds %v, want CURRENT and db-000002", names)
	}
}

func TestCheckpointRefusesExistingDir(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	dir := t.TempDir()
	if _, _, err := s.Checkpoint(dir); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Checkpoint into an existing directory = %v, want ErrInvalidArg", err)
	}
}

func TestInstallRefuses(t *testing.T) {
	base := t.TempDir()
	s := mustOpen(t, filepath.Join(base, "store"))
	defer s.Close()
	fill(t, s, 100)
	before := dump(t, s)

	old := mustOpen(t, t.TempDir())
	mustApply(t, old, put(1, "a", "b"))
	staleDir := mustCheckpoint(t, old, base)
	old.Close()

	garbage := filepath.Join(base, "garbage")
	os.MkdirAll(garbage, 0o755)
	os.WriteFile(filepath.Join(garbage, "MANIFEST-000001"), []byte("not a manifest"), 0o644)

	for _, tc := range []struct {
		name, dir string
		want      error
	}{
		{"stale", staleDir, ErrStaleSnapshot},
		{"missing", filepath.Join(base, "nope"), ErrCorrupt},
		{"garbage", garbage, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.Install(tc.dir); !errors.Is(err, tc.want) {
				t.Fatalf("Install = %v, want %v", err, tc.want)
			}
			if got := dump(t, s); got != before {
				t.Fatal("a refused Install changed the store")
			}
		})
	}
	if _, err := os.Stat(staleDir); err != nil {
		t.Fatalf("a refused checkpoint was not left where it was: %v", err)
	}
}

// TestInstallCrashPoints stops Install at each step, as a crash would (the
// files as they are, nothing cleaned up), reopens the store, and checks it
// holds exactly the old state or exactly the checkpoint's, and which one is
// known from AppliedIndex.
func TestInstallCrashPoints(t *testing.T) {
	for _, tc := range []struct {
		step    string
		wantNew bool
	}{
		{"validated", false},
		{"moved", false},
		{"opened", false},
		{"current-written", false},
		{"switched", true},
		{"", true}, // no crash: Install completes, then the process dies
	} {
		t.Run(fmt.Sprintf("at=%q", tc.step), func(t *testing.T) {
			base := t.TempDir()
			src := mustOpen(t, t.TempDir())
			for i := uint64(1); i <= 200; i++ {
				mustApply(t, src, entry.Entry{Term: 2, Index: i, Kind: entry.KindPut,
					Key: fmt.Appendf(nil, "new%03d", i), Value: []byte("n")})
			}
			newState := dump(t, src)
			ck := mustCheckpoint(t, src, base)
			src.Close()

			dir := filepath.Join(base, "store")
			s := mustOpen(t, dir)
			fill(t, s, 50)
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			oldState, oldIndex := dump(t, s), s.AppliedIndex()
			s.crashAt = tc.step
			_, _, err := s.Install(ck)
			if tc.step != "" && !errors.Is(err, errSimulatedCrash) {
				t.Fatalf("Install = %v, want the simulated crash", err)
			}
			if tc.step == "" && err != nil {
				t.Fatal(err)
			}
			if err := s.close(false); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir)
			defer s.Close()
			got := dump(t, s)
			switch {
			case tc.wantNew && got != newState:
				t.Fatalf("reopened state is not the checkpoint's:\n%.300s", got)
			case !tc.wantNew && got != oldState:
				t.Fatalf("reopened state is not the old one:\n%.300s", got)
			}
			if isNew := s.AppliedIndex() == 200 && s.AppliedTerm() == 2; isNew != tc.wantNew || (!isNew && s.AppliedIndex() != oldIndex) {
				t.Fatalf("reopened at index %d term %d", s.AppliedIndex(), s.AppliedTerm())
			}
			des, _ := os.ReadDir(dir)
			var dbs int
			for _, de := range des {
				if strings.HasPrefix(de.Name(), "db-") {
					dbs++
				}
			}
			if dbs != 1 {
				t.Fatalf("%d database directories after reopening, want 1", dbs)
			}
		})
	}
}

// TestCheckpointConcurrentApply takes checkpoints while entries are applied
// and checks each is a prefix of the log, with its metadata consistent with
// its data.
func TestCheckpointConcurrentApply(t *testing.T) {
	cfg := testConfig()
	cfg.WriteBufferBytes = 64 << 10
	s, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.drainChunk = 16 // split drains, to give the checkpoint a chance to catch one
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var applyErr atomic.Pointer[error]
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Key k%500 holds the index that wrote it: a prefix at index A has
			// key j at the largest i <= A with i%500 == j.
			e := entry.Entry{Term: 1, Index: i, Kind: entry.KindPut, Key: fmt.Appendf(nil, "k%03d", i%500), Value: fmt.Appendf(nil, "%d", i)}
			if err := s.Apply([]entry.Entry{e}); err != nil {
				applyErr.Store(&err)
				return
			}
		}
	}()
	base := t.TempDir()
	for round := 0; round < 5; round++ {
		time.Sleep(20 * time.Millisecond)
		dir := filepath.Join(base, fmt.Sprint(round))
		index, _, err := s.Checkpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := mustOpen(t, filepath.Join(base, fmt.Sprint("store", round)))
		if _, _, err := c.Install(dir); err != nil {
			t.Fatal(err)
		}
		for j := uint64(0); j < 500; j++ {
			var want uint64
			if index >= j && index > 0 {
				want = index - (index-j)%500
			}
			if want == 0 {
				mustGet(t, c, fmt.Sprintf("k%03d", j), "", 0)
			} else {
				mustGet(t, c, fmt.Sprintf("k%03d", j), fmt.Sprint(want), want)
			}
		}
		c.Close()
	}
	close(stop)
	wg.Wait()
	if p := applyErr.Load(); p != nil {
		t.Fatal(*p)
	}
}
