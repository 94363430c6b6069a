package repl

import (
	"fmt"
	"sync"

	"github.com/trireme-db/trireme/internal/entry"
)

// MemoryStorage is an in-memory Storage for tests and the simulator. The
// runtime-side methods (SetHardState, Append, Compact) play the part of the
// WAL: call them while processing a Ready, before Advance. It is safe for
// concurrent use.
//
// Entries passed to Append are retained (not copied): callers must not modify
// them afterwards. Entries returned by Entries must not be modified.
type MemoryStorage struct {
	mu sync.Mutex
	hs HardState
	// ents[0] is a sentinel at the compaction point: Index = FirstIndex()-1,
	// Term = the term of that entry.
	ents []entry.Entry
}

// NewMemoryStorage returns an empty storage (FirstIndex 1, LastIndex 0).
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]entry.Entry, 1)}
}

// InitialState implements Storage.
func (s *MemoryStorage) InitialState() (HardState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hs, nil
}

// SetHardState records hs as the persisted hard state.
func (s *MemoryStorage) SetHardState(hs HardState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hs = hs
}

// HardState returns the persisted hard state.
func (s *MemoryStorage) HardState() HardState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hs
}

// FirstIndex implements Storage.
func (s *MemoryStorage) FirstIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ents[0].Index + 1
}

// LastIndex implements Storage.
func (s *MemoryStorage) LastIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastIndex()
}

func (s *MemoryStorage) lastIndex() uint64 { return s.ents[0].Index + uint64(len(s.ents)) - 1 }

// Term implements Storage.
func (s *MemoryStorage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i == 0 {
		return 0, nil
	}
	off := s.ents[0].Index
	if i < off || i > s.lastIndex() {
		return 0, fmt.Errorf("%w: term of %d (log holds %d..%d)", ErrUnavailable, i, off+1, s.lastIndex())
	}
	return s.ents[i-off].Term, nil
}

// Entries implements Storage.
func (s *MemoryStorage) Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.ents[0].Index
	if lo <= off || hi > s.lastIndex()+1 || lo > hi {
		return nil, fmt.Errorf("%w: entries [%d, %d) (log holds %d..%d)", ErrUnavailable, lo, hi, off+1, s.lastIndex())
	}
	ents := s.ents[lo-off : hi-off]
	if maxBytes > 0 {
		size := 0
		for i := range ents {
			size += ents[i].Size()
			if i > 0 && size > maxBytes {
				ents = ents[:i]
				break
			}
		}
	}
	return ents[:len(ents):len(ents)], nil
}

// Append truncates the log after ents[0].Index-1 and appends ents, which must
// be contiguous. Appending past LastIndex()+1 (a gap) or at or below the
// compaction point is an error.
func (s *MemoryStorage) Append(ents []entry.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("repl: MemoryStorage.Append: entries not contiguous at %d", ents[i].Index)
		}
	}
	first, off := ents[0].Index, s.ents[0].Index
	if first <= off {
		return fmt.Errorf("repl: MemoryStorage.Append: index %d at or below compaction point %d", first, off)
	}
	if first > s.lastIndex()+1 {
		return fmt.Errorf("repl: MemoryStorage.Append: gap: index %d after last %d", first, s.lastIndex())
	}
	if keep := first - off; keep < uint64(len(s.ents)) {
		// Truncation: copy, so slices handed out earlier (possibly inside
		// in-flight messages) never see their entries overwritten.
		s.ents = append(append(make([]entry.Entry, 0, int(keep)+len(ents)), s.ents[:keep]...), ents...)
	} else {
		s.ents = append(s.ents, ents...)
	}
	return nil
}

// Compact drops entries up to and including i (i <= LastIndex()).
func (s *MemoryStorage) Compact(i uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.ents[0].Index
	if i <= off {
		return nil
	}
	if i > s.lastIndex() {
		return fmt.Errorf("repl: MemoryStorage.Compact: %d beyond last index %d", i, s.lastIndex())
	}
	rest := make([]entry.Entry, 1, 1+s.lastIndex()-i)
	rest[0] = entry.Entry{Index: i, Term: s.ents[i-off].Term}
	s.ents = append(rest, s.ents[i-off+1:]...)
	return nil
}

// Reset replaces the whole log with an empty one that starts after index,
// whose compaction point has term (a snapshot was installed).
func (s *MemoryStorage) Reset(index, term uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ents = []entry.Entry{{Index: index, Term: term}}
}

// Persist applies the durable part of rd to s (hard state, then entries), as
// a runtime would in step 2 of Ready processing.
func (s *MemoryStorage) Persist(rd *Ready) error {
	if !rd.HardState.IsEmpty() {
		s.SetHardState(rd.HardState)
	}
	return s.Append(rd.Entries)
}
