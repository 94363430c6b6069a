package wal

import (
	"fmt"
	"sort"
)

// acquire takes the write path exclusively for TruncateAfter, Reset or
// Close: it waits for the current writer, blocks new submissions, and writes
// everything already submitted. It returns with mu held; release undoes it.
// The error is the sticky failure (the caller still owns the write path and
// must call release).
func (l *Log) acquire() error {
	l.mu.Lock()
	for l.busy {
		l.cond.Wait()
	}
	l.busy, l.excl = true, true
	if l.closed {
		return ErrClosed
	}
	l.flushLocked()
	return l.failed
}

// release gives up the write path taken by acquire. Needs mu; unlocks it.
func (l *Log) release() {
	l.busy, l.excl = false, false
	l.cond.Broadcast()
	l.mu.Unlock()
}

// runHeld runs fn, which does file work on the write path taken by acquire,
// without holding mu; a failure of fn makes the log fail (sticky). Needs mu
// and the write path; releases both.
func (l *Log) runHeld(fn func() error) error {
	l.mu.Unlock()
	err := fn()
	l.mu.Lock()
	if err != nil {
		l.failLocked(err)
		err = l.failed
	}
	l.release()
	return err
}

// TruncateAfter removes entries after index i, durably: when it returns, a crash
// cannot bring them back. Entries submitted but not yet written are written
// first (and then removed if above i). i >= LastIndex() is a no-op; i below
// FirstIndex()-1 is ErrCompacted. Whole segments past i are deleted, newest
// first, so that a crash midway leaves a shorter but valid log.
func (l *Log) TruncateAfter(i uint64) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	if err := l.acquire(); err != nil {
		l.release()
		return err
	}
	if i >= l.last {
		l.release()
		return nil
	}
	if i+1 < l.first {
		first := l.first
		l.release()
		return fmt.Errorf("%w: truncate after %d, first index is %d", ErrCompacted, i, first)
	}
	return l.runHeld(func() error { return l.truncateAfter(i) })
}

// truncateAfter does TruncateAfter's work. The caller owns the write path.
func (l *Log) truncateAfter(i uint64) error {
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	// Update the index first, so readers never see removed entries.
	l.mu.Lock()
	k := sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first > i+1 }) - 1
	keep, removed := l.segs[k], append([]*segment(nil), l.segs[k+1:]...)
	l.segs = l.segs[:k+1]
	n := int(i + 1 - keep.first) // entries kept in keep
	newSize := int64(segmentHeaderEnd)
	if n > 0 {
		newSize = keep.recordEnd(n - 1)
	}
	keep.offs = keep.offs[:n]
	keep.size = newSize
	r := sort.Search(len(l.runs), func(r int) bool { return l.runs[r].start > i })
	l.runs = l.runs[:r]
	l.last, l.next = i, i+1
	if i+1 == l.first {
		l.lastTerm = l.segs[0].prevTerm
	} else {
		l.lastTerm = l.termLocked(i)
	}
	l.mu.Unlock()

	for j := len(removed) - 1; j >= 0; j-- {
		s := removed[j]
		s.f.Close()
		if err := l.fs.Remove(s.path); err != nil {
			return fmt.Errorf("%w: remove %s: %v", ErrWriteFailed, s.path, err)
		}
		if err := l.syncDir(); err != nil {
			return err
		}
	}
	// Cut physically (dropping any preallocated zeros too): zeroing the cut
	// records instead could, after a crash midway, leave zeros before old
	// records, which recovery would take for damage.
	if err := keep.f.Truncate(newSize); err != nil {
		return fmt.Errorf("%w: truncate %s to %d: %v", ErrWriteFailed, keep.path, newSize, bareErr(err))
	}
	keep.alloc = newSize
	return l.syncSegment(keep)
}

// DropBefore discards entries before index i (compaction). Only whole segments
// are deleted, oldest first, and never the last one, so the log may keep
// entries below i: FirstIndex() tells what is left. The term of
// FirstIndex()-1 stays known. i above LastIndex()+1 is treated as
// LastIndex()+1.
//
// DropBefore does not take the write path: appends go on while it removes
// files (it touches only segments the writer has left), so a node can call
// it from a goroutine of its own. It waits for reads of the segments it
// removes, and serializes with TruncateAfter, Reset and Close.
func (l *Log) DropBefore(i uint64) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	l.filesMu.Lock()
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		l.filesMu.Unlock()
		return ErrClosed
	case l.failed != nil:
		err := l.failed
		l.mu.Unlock()
		l.filesMu.Unlock()
		return err
	}
	removed := l.detachBeforeLocked(i)
	l.mu.Unlock()
	for _, s := range removed {
		s.f.Close()
	}
	l.filesMu.Unlock()
	for _, s := range removed {
		if err := l.fs.Remove(s.path); err != nil {
			return l.fail(fmt.Errorf("%w: remove %s: %v", ErrWriteFailed, s.path, err))
		}
		if err := l.syncDir(); err != nil {
			return l.fail(err)
		}
	}
	return nil
}

// detachBeforeLocked takes the segments wholly before i out of the index,
// never the last one, and returns them. Needs filesMu and mu.
//
// The writer may be in the middle of a batch: it appends a segment it
// created to segs (under mu) only after it sealed the previous one, and
// publishes its records (and last) only when the batch is durable. Every
// segment but the last is therefore sealed and never written again, and the
// bound i <= last+1 keeps every segment holding unpublished records: a
// segment just created by the writer starts after last, and the one before
// it can be detached only if all its published records are below i (its
// part of the batch is then empty, and publishing into the detached
// segment changes nothing the log still uses).
func (l *Log) detachBeforeLocked(i uint64) []*segment {
	i = min(i, l.last+1)
	k := 0
	for k < len(l.segs)-1 && l.segs[k+1].first <= i {
		k++
	}
	if k == 0 {
		return nil
	}
	removed := append([]*segment(nil), l.segs[:k]...)
	l.segs = append(l.segs[:0:0], l.segs[k:]...)
	l.first = l.segs[0].first
	r := sort.Search(len(l.runs), func(r int) bool { return l.runs[r].start > l.first }) - 1
	if r > 0 {
		l.runs = append(l.runs[:0:0], l.runs[r:]...)
	}
	return removed
}

// Close writes everything submitted, then closes the files. Later calls on the
// log return ErrClosed (Close itself included).
func (l *Log) Close() error {
	l.hsMu.Lock()
	defer l.hsMu.Unlock()
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	err := l.acquire()
	if err == ErrClosed {
		l.release()
		return ErrClosed
	}
	l.mu.Unlock()
	l.stopSpare() // the write path is held: no roll can be taking the spare
	l.filesMu.Lock()
	l.mu.Lock()
	l.closed = true
	l.writerCond.Signal()
	var cerr error
	for _, s := range l.segs {
		if e := s.f.Close(); e != nil && cerr == nil {
			cerr = fmt.Errorf("wal: close %s: %w", s.path, e)
		}
	}
	if l.hintF != nil {
		if e := l.hintF.Close(); e != nil && cerr == nil {
			cerr = fmt.Errorf("wal: close %s: %w", l.path(commitHintName), e)
		}
		l.hintF = nil
	}
	l.filesMu.Unlock()
	l.release()
	<-l.writerDone
	return cerr
}
