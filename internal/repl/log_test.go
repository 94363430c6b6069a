package repl

import (
	"bytes"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// countingStorage counts the Entries calls that reach the storage.
type countingStorage struct {
	*MemoryStorage
	reads int
}

func (s *countingStorage) Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	s.reads++
	return s.MemoryStorage.Entries(lo, hi, maxBytes)
}

// putEnts builds puts at indexes from.. with the given terms and values of
// size bytes (each value's first byte is its index, to tell them apart).
func putEnts(from uint64, size int, terms ...uint64) []entry.Entry {
	out := make([]entry.Entry, len(terms))
	for i, t := range terms {
		v := make([]byte, size)
		v[0] = byte(from + uint64(i))
		out[i] = entry.Entry{Term: t, Index: from + uint64(i), Kind: entry.KindPut, Key: []byte("k"), Value: v}
	}
	return out
}

// persist plays the runtime: writes the unhanded entries and confirms them.
func persist(t *testing.T, l *raftLog, st *MemoryStorage) {
	t.Helper()
	ents := l.unhanded()
	if len(ents) == 0 {
		return
	}
	mustAppend(t, st, ents...)
	l.handed = l.lastIndex()
	last := ents[len(ents)-1]
	l.stableTo(last.Index, last.Term)
}

func sameEnts(t *testing.T, got, want []entry.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Index != want[i].Index || got[i].Term != want[i].Term || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Fatalf("entry %d: index %d term %d, want index %d term %d (or another value)", i, got[i].Index, got[i].Term, want[i].Index, want[i].Term)
		}
	}
}

// TestLogKeepsDurableEntriesForApplying checks that entries made durable and
// then committed are handed out for applying from memory, not read back
// from storage, and are let go once handed out.
func TestLogKeepsDurableEntriesForApplying(t *testing.T) {
	st := &countingStorage{MemoryStorage: NewMemoryStorage()}
	l := newRaftLog(st, 0)
	want := putEnts(1, 100, 1, 1, 1, 1, 1)
	l.append(want...)
	persist(t, l, st.MemoryStorage)
	l.commitTo(5)
	got, err := l.entries(l.applying+1, l.applicableTo()+1, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameEnts(t, got, want)
	if st.reads != 0 {
		t.Errorf("%d storage reads for entries just made durable, want 0", st.reads)
	}
	l.applying = 5
	l.trimKept()
	if len(l.kept) != 0 || l.keptBytes != 0 {
		t.Errorf("after handing out: %d entries (%d bytes) still kept", len(l.kept), l.keptBytes)
	}
	// Handed-out entries (e.g. for a lagging follower) come from storage.
	if got, err = l.entries(2, 4, 0); err != nil || st.reads != 1 {
		t.Fatalf("entries 2-3 after applying: %v, %d storage reads (want 1)", err, st.reads)
	}
	sameEnts(t, got, want[1:3])
}

// TestLogKeptTruncation checks that a truncation of durable entries drops
// them from memory too, so the replacement entries are what gets applied.
func TestLogKeptTruncation(t *testing.T) {
	st := &countingStorage{MemoryStorage: NewMemoryStorage()}
	l := newRaftLog(st, 0)
	l.truncateAndAppend(putEnts(1, 10, 1, 1, 1, 1, 1))
	persist(t, l, st.MemoryStorage)
	repl := putEnts(3, 20, 2, 2)
	l.truncateAndAppend(repl)
	if len(l.kept) != 2 || l.keptOff() != 1 {
		t.Fatalf("after truncating at 3: kept %d entries from %d, want 2 from 1", len(l.kept), l.keptOff())
	}
	persist(t, l, st.MemoryStorage)
	l.commitTo(4)
	got, err := l.entries(1, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := append(putEnts(1, 10, 1, 1), repl...)
	sameEnts(t, got, want)
	if st.reads != 0 {
		t.Errorf("%d storage reads, want 0", st.reads)
	}
	// A truncation below everything kept empties it.
	l.truncateAndAppend(putEnts(1, 30, 3))
	if len(l.kept) != 0 || l.keptBytes != 0 {
		t.Errorf("after truncating at 1: %d entries (%d bytes) kept", len(l.kept), l.keptBytes)
	}
}

// TestLogKeptBound checks that memory holds at most maxKeptBytes of durable
// entries (a leader that cannot commit keeps appending) and that the older
// ones are then read from storage.
func TestLogKeptBound(t *testing.T) {
	st := &countingStorage{MemoryStorage: NewMemoryStorage()}
	l := newRaftLog(st, 0)
	const size = 1 << 20
	n := maxKeptBytes/size + 8
	terms := make([]uint64, n)
	for i := range terms {
		terms[i] = 1
	}
	want := putEnts(1, size, terms...)
	for i := range want { // one Ready at a time, as a leader would
		l.append(want[i])
		persist(t, l, st.MemoryStorage)
	}
	if l.keptBytes > maxKeptBytes || len(l.kept) == 0 || len(l.kept) >= n {
		t.Fatalf("kept %d entries, %d bytes (bound %d)", len(l.kept), l.keptBytes, maxKeptBytes)
	}
	l.commitTo(uint64(n))
	got, err := l.entries(1, uint64(n)+1, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameEnts(t, got, want)
	if st.reads != 1 {
		t.Errorf("%d storage reads, want 1 (for the entries no longer kept)", st.reads)
	}
}

// TestLogKeptRealigns checks the guard in append: should the storage's last
// index ever differ from the core's view when nothing is unstable, the kept
// entries are dropped rather than left misaligned.
func TestLogKeptRealigns(t *testing.T) {
	st := &countingStorage{MemoryStorage: NewMemoryStorage()}
	l := newRaftLog(st, 0)
	l.append(putEnts(1, 10, 1, 1)...)
	persist(t, l, st.MemoryStorage)
	mustAppend(t, st.MemoryStorage, putEnts(3, 10, 1)...) // behind the core's back
	l.append(putEnts(4, 10, 1)...)
	if len(l.kept) != 0 || l.offset != 4 {
		t.Fatalf("kept %d entries, offset %d; want none, 4", len(l.kept), l.offset)
	}
	got, err := l.entries(1, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameEnts(t, got, append(putEnts(1, 10, 1, 1, 1), putEnts(4, 10, 1)...))
}
