package store

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// maxDirtyKeys bounds the keys the counter remembers between two Count calls.
// Past it the counter forgets them (and its base snapshot) and the next Count
// scans. Resolving a dirty key costs one point read (~10 µs); scanning costs
// well under 1 µs per key, so remembering more would rarely pay.
const maxDirtyKeys = 1 << 16

// counter keeps the live key count exact without a read per applied key.
//
// It holds a base: a Pebble snapshot and the exact number of user keys in it
// (known is false while Count is computing it). The write buffer records, for
// every key it writes to Pebble after the base, whether the key exists
// afterwards (dirty). Count then needs one point read in the base per dirty
// key: the key's existence before and after gives its contribution. When
// nothing is tracked (after Open, or when more than maxDirtyKeys were written
// since the last Count), Count scans a fresh snapshot instead. Either way the
// new snapshot becomes the next base.
//
// All fields are guarded by Store.writeMu; Store.countMu serializes Count.
type counter struct {
	h     *handle          // the database snap belongs to (holds a reference)
	snap  *pebble.Snapshot // the base; nil when nothing is tracked
	count int64            // user keys in snap, if known
	known bool             // count is exact for snap
	dirty map[string]bool  // keys written since snap: exists afterwards? nil = not tracking
	busy  bool             // a Count is resolving; do not drop snap or dirty
	gen   uint64           // bumped when the base is replaced other than by Count
	spare map[string]bool  // a cleared map for reuse
	max   int              // maxDirtyKeys unless a test sets it
}

func (c *counter) limit() int {
	if c.max > 0 {
		return c.max
	}
	return maxDirtyKeys
}

// track records that key exists (or not) after the batch being written to
// Pebble. Under writeMu.
func (c *counter) track(key []byte, exists bool) {
	if c.dirty != nil {
		c.trackString(string(key), exists)
	}
}

// tracking reports whether keys written are being recorded. Under writeMu.
func (c *counter) tracking() bool { return c.dirty != nil }

// trackString is track for a string key. Under writeMu.
func (c *counter) trackString(key string, exists bool) {
	if c.dirty == nil {
		return
	}
	c.dirty[key] = exists
}

// afterApply drops the tracked state if it grew too large. Under writeMu.
func (c *counter) afterApply() {
	if c.dirty == nil || len(c.dirty) <= c.limit() || c.busy {
		return
	}
	c.drop()
	c.gen++
}

// drop forgets the base and the dirty keys, closing the snapshot unless a
// Count is using it. Under writeMu.
func (c *counter) drop() {
	if c.snap != nil && !c.busy {
		_ = c.snap.Close()
		c.h.release()
	}
	c.snap, c.h, c.known, c.dirty = nil, nil, false, nil
}

// reset makes h's current state the base with the given exact count (Import).
// Under writeMu.
func (c *counter) reset(h *handle, count int64) {
	c.drop()
	c.gen++
	h.refs.Add(1)
	c.h, c.snap, c.count, c.known, c.dirty = h, h.db.NewSnapshot(), count, true, make(map[string]bool)
}

// Count returns the number of live keys. It is exact as of an applied index
// reached during the call. Cheap when few keys were written since the last
// call; otherwise it scans the key space once.
func (s *Store) Count() (int64, error) {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	for {
		n, retry, err := s.countOnce()
		if err != nil || !retry {
			return n, err
		}
	}
}

// countOnce makes a fresh snapshot the base and computes its count from the
// old base and the dirty keys, or by a scan. retry is set if an Import
// replaced the base meanwhile.
func (s *Store) countOnce() (n int64, retry bool, err error) {
	c := &s.ctr
	// Swap in a new base under writeMu: the dirty keys then describe exactly
	// the difference between the old base and the new snapshot.
	s.writeMu.Lock()
	s.mu.RLock()
	closed, h := s.closed, s.h
	s.mu.RUnlock()
	if closed {
		s.writeMu.Unlock()
		return 0, false, ErrClosed
	}
	// The new base must hold the whole applied state: write the buffer out.
	if err := s.syncBufLocked(); err != nil {
		s.writeMu.Unlock()
		return 0, false, err
	}
	if c.known && len(c.dirty) == 0 {
		n = c.count
		s.writeMu.Unlock()
		return n, false, nil
	}
	oldH, oldSnap, oldCount, oldKnown, dirty := c.h, c.snap, c.count, c.known, c.dirty
	h.refs.Add(1)
	newSnap := h.db.NewSnapshot()
	spare := c.spare
	if spare == nil {
		spare = make(map[string]bool)
	}
	c.h, c.snap, c.known, c.dirty, c.spare, c.busy = h, newSnap, false, spare, nil, true
	gen := c.gen
	s.writeMu.Unlock()

	incremental := oldSnap != nil && oldKnown && dirty != nil && oldH == h
	if incremental {
		n, err = resolveDirty(oldSnap, oldCount, dirty)
	} else {
		n, err = countKeys(newSnap)
	}
	if oldSnap != nil {
		_ = oldSnap.Close()
		oldH.release()
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	c.busy = false
	if dirty != nil && c.spare == nil {
		clear(dirty)
		c.spare = dirty
	}
	if c.gen != gen || c.snap != newSnap {
		// Replaced meanwhile (Import or Close): the snapshot is ours alone.
		// Start over (the next round sees a close).
		_ = newSnap.Close()
		h.release()
		return 0, err == nil, err
	}
	if err != nil {
		c.drop()
		return 0, false, err
	}
	c.count, c.known = n, true
	if len(c.dirty) > c.limit() {
		c.drop()
		c.gen++
	}
	return n, false, nil
}

// resolveDirty returns the count after the dirty keys changed a base that had
// count keys: one point read in the base per key.
func resolveDirty(base *pebble.Snapshot, count int64, dirty map[string]bool) (int64, error) {
	var kbuf []byte
	for k, existsNow := range dirty {
		kbuf = userKey(kbuf[:0], []byte(k))
		existed, err := exists(base, kbuf)
		if err != nil {
			return 0, fmt.Errorf("store: count: reading key %q: %w", k, err)
		}
		switch {
		case existsNow && !existed:
			count++
		case !existsNow && existed:
			count--
		}
	}
	return count, nil
}

// countKeys counts the user keys in r.
func countKeys(r pebble.Reader) (int64, error) {
	lo, hi := userBounds(nil, nil)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}
