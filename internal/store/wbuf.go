package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"github.com/cockroachdb/pebble/v2"
)

// The write buffer: applied writes wait in a hash table in front of Pebble.
//
// Every key Apply writes costs one insert into Pebble's memtable, a skiplist
// search whose nodes mostly miss the CPU caches: in the benchmark it was the
// largest single item of a node's CPU (docs/BENCHMARKS.md, fifth round). A
// key written again before the buffer is drained costs a hash-table update
// instead, and reaches Pebble once, with its latest value.
//
// Apply adds each batch to the active table. When the active table reaches
// its drain size (pickDrainAt: a random size between three quarters of
// Config.WriteBufferBytes and all of it) with its keys and values, or with
// its idempotency records, it becomes the draining table, and
// a goroutine writes its latest versions, with the applied index they bring
// Pebble to, into Pebble (in batches, below); a new active table takes the
// writes meanwhile. If the
// draining table is still being written when the next one fills, Apply waits
// for it. Get looks in the active table, then the draining one, then Pebble.
// Everything that needs Pebble to hold the whole applied state (View, Count,
// Export, Import, Flush, Close) first drains both tables (syncBufLocked).
//
// Nothing about durability changes: Pebble's WAL is off, so the memtable was
// never durable either; after a crash the store reopens at the applied index
// of its last flush, and the node replays the WAL from there.
//
// A drain goes to Pebble in batches of drainChunk keys, yielding the
// processor between them: one batch for a whole table took up to tens of
// milliseconds, a stall on a node with one processor (p99 of sync writes at 1
// KiB rose from 11-13 to 16-18 ms in the benchmark). The first batch records
// the drain's target index under metaKeyDrain; the last one sets the applied
// index to it and deletes the record. If Pebble flushes between two batches
// and the process then crashes, the reopened store holds some keys newer than
// its applied index; Open finds the record, and RecoverIndex tells the node
// to replay the WAL at least that far (those entries were applied, so they
// are committed and in the WAL) before it serves reads. From there on the
// state is a prefix of the log again.
type bufTable struct {
	m map[string]*bufSlot
	// idem holds what the table's commands change in the idempotency table
	// (records, the watermark: idem.go). The drain writes it in its last
	// batch, the one that carries the applied index: a drain cut short by
	// a crash leaves no record of an entry whose write may be missing (a
	// replay would take the entry for a duplicate and skip it).
	idem  idemChanges
	arena []byte // the values, appended
	size  int    // bytes of keys and values counted against Config.WriteBufferBytes
	// idemSize counts the idempotency records (and format-2 deletions)
	// against a budget of their own, the same size: counted with the
	// values, a keyed write's record (about as large as a 100-byte value)
	// drained the table twice as often, and every drain writes each key's
	// latest value to Pebble, so keyed writes of a hot key set cost twice
	// the memtable inserts, flushes and compactions of plain ones.
	idemSize int
	last     uint64 // applied index (and its term) this table brings Pebble to
	term     uint64
}

// bufSlot is the latest version of one key in a table.
type bufSlot struct {
	off, n int    // the value: arena[off:off+n]
	index  uint64 // the entry that wrote it (the version)
	del    bool
}

// slotOverhead approximates the memory of one key's slot and map entry.
const slotOverhead = 64

// defaultDrainChunk is how many keys one Pebble batch of a drain holds
// (about a millisecond of memtable inserts on the benchmark's machine).
// Tests make it smaller (Store.drainChunk).
const defaultDrainChunk = 256

func newBufTable() *bufTable { return &bufTable{m: make(map[string]*bufSlot)} }

func (t *bufTable) empty() bool { return len(t.m) == 0 && t.idem.empty() && t.last == 0 }

// reset empties t for reuse, keeping its arena unless it grew past keep
// bytes (a table that held one huge value should not pin it).
func (t *bufTable) reset(keep int64) {
	clear(t.m)
	t.idem.reset()
	t.arena = t.arena[:0]
	if int64(cap(t.arena)) > keep {
		t.arena = nil
	}
	if int64(cap(t.idem.run.buf)) > keep {
		t.idem.run = idemRun{}
	}
	t.size, t.idemSize, t.last, t.term = 0, 0, 0, 0
}

// put records key's version index (del: a deletion). Under bufMu.
func (t *bufTable) put(key []byte, index uint64, value []byte, del bool) {
	off := len(t.arena)
	t.arena = append(t.arena, value...)
	t.size += len(value)
	if sl, ok := t.m[string(key)]; ok {
		sl.off, sl.n, sl.index, sl.del = off, len(value), index, del
		return
	}
	t.m[string(key)] = &bufSlot{off: off, n: len(value), index: index, del: del}
	t.size += len(key) + slotOverhead
}

// get returns a copy of key's latest value in t. Under bufMu (shared).
func (t *bufTable) get(key []byte) (value []byte, version uint64, found, ok bool) {
	sl, ok := t.m[string(key)]
	if !ok {
		return nil, 0, false, false
	}
	if sl.del {
		return nil, 0, false, true
	}
	return append(make([]byte, 0, sl.n), t.arena[sl.off:sl.off+sl.n]...), sl.index, true, true
}

// bufGet looks key up in the active table, then the draining one. ok is
// false if neither holds it.
func (s *Store) bufGet(key []byte) (value []byte, version uint64, found, ok bool) {
	s.bufMu.RLock()
	defer s.bufMu.RUnlock()
	if value, version, found, ok = s.active.get(key); ok {
		return
	}
	if s.draining != nil {
		return s.draining.get(key)
	}
	return nil, 0, false, false
}

// startDrainLocked hands the active table to a drain goroutine (after the
// previous drain, if any, has ended). Under writeMu.
func (s *Store) startDrainLocked() error {
	if err := s.waitDrainLocked(); err != nil {
		return err
	}
	t := s.active
	s.trackLocked(t)
	next := s.spare
	if next == nil {
		next = newBufTable()
	}
	s.bufMu.Lock()
	s.draining, s.active, s.spare = t, next, nil
	s.bufMu.Unlock()
	s.pickDrainAt()
	h := s.h
	h.refs.Add(1)
	done := make(chan struct{})
	s.drainDone = done
	go func() {
		defer close(done)
		defer h.release()
		s.drainErr = s.drain(h, t, 0)
		s.bufMu.Lock()
		s.draining = nil
		t.reset(2 * s.cfg.WriteBufferBytes)
		s.spare = t
		s.bufMu.Unlock()
	}()
	return nil
}

// pickDrainAt picks the size at which the active table drains: uniformly
// random between three quarters of Config.WriteBufferBytes and all of it.
// The nodes of a cluster apply the same writes, so with one fixed size they
// all drained at the same moment; on a machine they share (the benchmark's, a
// test cluster's) the drains added up to a stall of every write in flight
// (docs/BENCHMARKS.md, sixth round). At random sizes they drift apart. (Half
// to all of the limit was measured too: no better, and smaller tables keep
// fewer rewrites out of Pebble.) Under writeMu (or before the store is
// shared).
func (s *Store) pickDrainAt() {
	limit := s.cfg.WriteBufferBytes
	s.drainAt = limit - s.drainRand.Int64N(limit/4+1)
}

// waitDrainLocked waits for the drain goroutine, if one runs, and returns its
// error. Under writeMu.
func (s *Store) waitDrainLocked() error {
	if s.drainDone == nil {
		return nil
	}
	<-s.drainDone
	s.drainDone = nil
	err := s.drainErr
	s.drainErr = nil
	return err
}

// syncBufLocked writes both tables to Pebble and waits until it is done:
// afterwards Pebble holds the whole applied state. Under writeMu.
func (s *Store) syncBufLocked() error {
	if err := s.waitDrainLocked(); err != nil {
		return err
	}
	t := s.active
	if t.empty() {
		return nil
	}
	s.trackLocked(t)
	if err := s.drain(s.h, t, 0); err != nil {
		return err
	}
	s.bufMu.Lock()
	t.reset(2 * s.cfg.WriteBufferBytes)
	s.bufMu.Unlock()
	return nil
}

// trackLocked tells the key counter which keys t is about to write to Pebble.
// Under writeMu.
func (s *Store) trackLocked(t *bufTable) {
	if !s.ctr.tracking() {
		return
	}
	for k, sl := range t.m {
		s.ctr.trackString(k, !sl.del)
	}
	s.ctr.afterApply()
}

// drain writes t's latest versions, and the applied index they bring Pebble
// to, into h's Pebble in batches of drainChunk keys, yielding the processor
// between batches; see the top of this file for how a crash between batches
// is recovered. t must not change meanwhile; Get may read it. A Pebble error
// is sticky (s.fail).
//
// stopAfter > 0 stops after that many batches, short of the last one: tests
// use it to leave a drain cut short, as a crash would.
func (s *Store) drain(h *handle, t *bufTable, stopAfter int) error {
	db := h.db
	b := db.NewBatch()
	abandoned := false // b still belongs to Pebble (commit)
	defer func() {
		if !abandoned {
			_ = b.Close()
		}
	}()
	var kbuf, vbuf []byte
	target := encodeApplied(t.last, t.term)
	chunk := s.drainChunk
	split := len(t.m) > chunk
	if split {
		_ = b.Set(metaKeyDrain, target, nil)
	}
	n := 0
	for k, sl := range t.m {
		kbuf = append(append(kbuf[:0], prefixUser), k...)
		if sl.del {
			_ = b.Delete(kbuf, nil)
		} else {
			vbuf = encodeValue(vbuf[:0], sl.index, t.arena[sl.off:sl.off+sl.n])
			_ = b.Set(kbuf, vbuf, nil) // Set copies
		}
		if n++; split && n%chunk == 0 && n < len(t.m) {
			var err error
			if abandoned, err = s.commit(db, b); err != nil {
				return s.fail(fmt.Sprintf("apply through index %d (part of a drain)", t.last), err)
			}
			b.Reset()
			if stopAfter > 0 && n/chunk >= stopAfter {
				return nil
			}
			runtime.Gosched()
		}
	}
	if err := s.writeIdem(h, b, &t.idem); err != nil {
		return s.fail(fmt.Sprintf("apply through index %d (idempotency records)", t.last), err)
	}
	_ = b.Set(metaKeyApplied, target, nil)
	if split {
		_ = b.Delete(metaKeyDrain, nil)
	}
	var err error
	if abandoned, err = s.commit(db, b); err != nil {
		return s.fail(fmt.Sprintf("apply through index %d", t.last), err)
	}
	return nil
}

// readDrain returns the target index of a drain that did not finish, or 0.
func readDrain(r pebble.Reader, path string) (uint64, error) {
	v, c, err := r.Get(metaKeyDrain)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: %s: reading metadata key %q: %w", path, metaKeyDrain, err)
	}
	defer c.Close()
	if len(v) != 16 {
		return 0, fmt.Errorf("%w: %s: metadata key %q is %d bytes, want 16", ErrCorrupt, path, metaKeyDrain, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// RecoverIndex returns the index through which the WAL must be applied before
// the store's state is a prefix of the log: AppliedIndex, or more if the
// store reopened after a crash in the middle of a drain (some keys are then
// newer than AppliedIndex). The node replays at least this far before it
// serves reads.
func (s *Store) RecoverIndex() uint64 {
	return max(s.applied.Load(), s.recoverTo.Load())
}
