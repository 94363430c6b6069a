package store

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// View is a consistent read-only view of the store at one applied index (a
// Pebble snapshot). It is safe for concurrent use. Close it when done: an open
// View pins old data in Pebble.
type View struct {
	h       *handle
	snap    *pebble.Snapshot
	applied uint64
	term    uint64

	countOnce sync.Once
	count     int64

	mu     sync.RWMutex // guards closed; held shared while reading
	closed bool
}

// View returns a consistent view of the current state.
func (s *Store) View() (*View, error) {
	// Pebble must hold the whole applied state: write the buffer out first
	// (this waits for Apply, briefly).
	s.writeMu.Lock()
	if err := s.failure(); err != nil {
		s.writeMu.Unlock()
		return nil, err
	}
	h, err := s.acquire()
	if err != nil {
		s.writeMu.Unlock()
		return nil, err
	}
	if err := s.syncBufLocked(); err != nil {
		s.writeMu.Unlock()
		h.release()
		return nil, err
	}
	snap := h.db.NewSnapshot()
	s.writeMu.Unlock()
	index, term, err := readMeta(snap, h.path)
	if err != nil {
		_ = snap.Close()
		h.release()
		return nil, err
	}
	return &View{h: h, snap: snap, applied: index, term: term}, nil
}

// AppliedIndex returns the applied index the view reflects.
func (v *View) AppliedIndex() uint64 { return v.applied }

// AppliedTerm returns the term of the entry at AppliedIndex.
func (v *View) AppliedTerm() uint64 { return v.term }

// Count returns the number of live keys in the view, or -1 if the view is
// closed or unreadable. The first call scans the view's keys; later calls
// return the same number.
func (v *View) Count() int64 {
	v.countOnce.Do(func() {
		v.mu.RLock()
		defer v.mu.RUnlock()
		v.count = -1
		if v.closed {
			return
		}
		if n, err := countKeys(v.snap); err == nil {
			v.count = n
		}
	})
	return v.count
}

// Get returns a copy of key's value in the view and its version.
func (v *View) Get(key []byte) (value []byte, version uint64, found bool, err error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return nil, 0, false, ErrClosed
	}
	return get(v.snap, key)
}

// Scan calls fn for each key in [start, end) in ascending byte order, with
// its value and version, until fn returns false or limit keys have been
// visited (limit <= 0: no limit). A nil or empty end means no upper bound.
// key and value are valid only until fn returns; copy them to keep them.
func (v *View) Scan(start, end []byte, limit int, fn func(key, value []byte, version uint64) bool) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return ErrClosed
	}
	return scan(v.snap, start, end, limit, fn)
}

func scan(r pebble.Reader, start, end []byte, limit int, fn func(key, value []byte, version uint64) bool) error {
	lo, hi := userBounds(start, end)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if limit > 0 && n >= limit {
			break
		}
		k := it.Key()[1:]
		raw, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("store: scan at %q: %w", k, err)
		}
		val, ver, err := decodeValue(k, raw)
		if err != nil {
			_ = it.Close()
			return err
		}
		n++
		if !fn(k, val, ver) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	return nil
}

// Close releases the view. It is idempotent.
func (v *View) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	err := v.snap.Close()
	v.h.release()
	return err
}
