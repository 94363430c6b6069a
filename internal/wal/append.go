package wal

import (
	"fmt"
	"runtime"

	"github.com/trireme-db/trireme/internal/entry"
)

// Ticket identifies a submitted append; Wait on it to learn when it is durable.
type Ticket uint64

// batch is a run of submitted entry records, encoded, not yet written.
type batch struct {
	buf     []byte        // the records, back to back
	recs    []recMeta     // one per record
	first   uint64        // index of the first record
	lastSeq uint64        // ticket of the last submission in the batch
	done    chan struct{} // closed when the batch is durable or the log failed
}

type recMeta struct {
	term uint64
	size uint32 // record size, header included
}

// A batch keeps its buffer for reuse up to keepBatchBytes; a larger one (a
// burst: a follower catching up writes batches of many MiB) is kept only
// while the batches that use it fill at least a quarter of it, and is
// capped at maxRetainedBatchBytes, so that a burst does not pin memory
// after it ends.
const (
	keepBatchBytes        = 8 << 20
	maxRetainedBatchBytes = 64 << 20
)

// grow makes room for n more bytes in b.buf, at least doubling it when it
// must move. Submit grows once per call: appending record by record let
// append grow a large buffer by a quarter at a time, copying it each time
// (71% of a catching-up follower's CPU, whose batches of 16 KiB values outgrow
// the retained buffer every time).
func (b *batch) grow(n int) {
	if len(b.buf)+n > cap(b.buf) {
		b.buf = append(make([]byte, 0, max(len(b.buf)+n, 2*cap(b.buf))), b.buf...)
	}
}

func (b *batch) reset() {
	used := len(b.buf)
	b.buf, b.recs, b.first, b.lastSeq, b.done = b.buf[:0], b.recs[:0], 0, 0, nil
	if c := cap(b.buf); c > maxRetainedBatchBytes || (c > keepBatchBytes && used < c/4) {
		b.buf, b.recs = nil, nil
	}
}

// Append appends ents, which must continue the log (the first index is
// LastIndex()+1 counting entries already submitted, the rest consecutive), and
// returns when they are durable. Concurrent calls share fsyncs (group commit).
// It returns ErrNotContiguous, ErrTooLarge or ErrInvalid for bad input, and the
// sticky ErrSyncFailed/ErrWriteFailed after a write-path failure.
//
// Concurrent appenders must agree on who appends which indexes; for that, use
// Submit (which fixes the order) and Wait.
func (l *Log) Append(ents []entry.Entry) error {
	t, err := l.Submit(ents)
	if err != nil {
		return err
	}
	return l.Wait(t)
}

// Submit checks ents and queues them for the log's writer goroutine, after
// everything submitted before, and returns a Ticket for Wait. Submit does not
// wait for I/O, so the caller can do other work (such as sending the entries to
// peers) before it waits. ents is not retained.
func (l *Log) Submit(ents []entry.Entry) (Ticket, error) {
	if len(ents) == 0 {
		return 0, nil
	}
	for k := range ents {
		e := &ents[k]
		switch {
		case !e.Kind.Valid():
			return 0, fmt.Errorf("%w: entry %d has unknown kind %d", ErrInvalid, e.Index, e.Kind)
		case len(e.Value) > l.cfg.MaxValueBytes:
			return 0, fmt.Errorf("%w: entry %d value is %d bytes, limit %d", ErrTooLarge, e.Index, len(e.Value), l.cfg.MaxValueBytes)
		case e.Size() > l.cfg.MaxEntryBytes:
			return 0, fmt.Errorf("%w: entry %d is %d bytes encoded, limit %d", ErrTooLarge, e.Index, e.Size(), l.cfg.MaxEntryBytes)
		case k > 0 && e.Index != ents[k-1].Index+1:
			return 0, fmt.Errorf("%w: entry %d follows entry %d in one append", ErrNotContiguous, e.Index, ents[k-1].Index)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.excl && !l.closed && l.failed == nil {
		l.cond.Wait()
	}
	switch {
	case l.closed:
		return 0, ErrClosed
	case l.failed != nil:
		return 0, l.failed
	case ents[0].Index != l.next:
		return 0, fmt.Errorf("%w: append starts at %d, want %d", ErrNotContiguous, ents[0].Index, l.next)
	}
	b := l.pend
	if len(b.recs) == 0 {
		b.first = ents[0].Index
		b.done = make(chan struct{})
		l.writerCond.Signal()
	}
	need := 0
	for k := range ents {
		need += RecordHeaderSize + ents[k].Size()
	}
	b.grow(need)
	for k := range ents {
		n := len(b.buf)
		b.buf = AppendEntryRecord(b.buf, &ents[k])
		b.recs = append(b.recs, recMeta{term: ents[k].Term, size: uint32(len(b.buf) - n)})
	}
	l.next += uint64(len(ents))
	l.seq++
	b.lastSeq = l.seq
	return Ticket(l.seq), nil
}

// Wait returns when the entries of ticket t are durable, or with the sticky
// write-path error. Only the waiters of a batch are woken when it is done.
func (l *Log) Wait(t Ticket) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		var ch chan struct{}
		switch {
		case uint64(t) <= l.durableSeq:
			return nil
		case l.failed != nil:
			return l.failed
		case l.closed:
			return ErrClosed
		case uint64(t) > l.seq:
			return fmt.Errorf("%w: ticket %d was never issued", ErrInvalid, t)
		case l.inflight != nil && uint64(t) <= l.inflight.lastSeq:
			ch = l.inflight.done
		default:
			ch = l.pend.done
		}
		if ch == nil {
			panic(fmt.Sprintf("wal: ticket %d is neither durable (%d), in flight nor pending", t, l.durableSeq))
		}
		l.mu.Unlock()
		<-ch
		l.mu.Lock()
	}
}

// Done returns a channel that is closed once ticket t is durable, or the log
// has failed or closed: then Wait(t) returns at once with the outcome. It
// lets a caller select on durability alongside other events.
func (l *Log) Done(t Ticket) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case uint64(t) <= l.durableSeq || l.failed != nil || l.closed || uint64(t) > l.seq:
		c := make(chan struct{})
		close(c)
		return c
	case l.inflight != nil && uint64(t) <= l.inflight.lastSeq:
		return l.inflight.done
	default:
		return l.pend.done
	}
}

// runWriter is the writer goroutine: it writes and fsyncs whatever has been
// submitted, one batch at a time, so all appends submitted while one fsync
// runs share the next one (group commit).
func (l *Log) runWriter() {
	defer close(l.writerDone)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for !l.closed && (len(l.pend.recs) == 0 || l.busy || l.failed != nil) {
			l.writerCond.Wait()
		}
		if l.closed {
			return
		}
		l.busy = true
		l.flushLocked()
		l.busy = false
		l.cond.Broadcast()
		// Let the goroutines this flush just released run (and typically
		// submit again) before taking the next batch: one scheduler pass
		// costs microseconds, an fsync hundreds of them.
		l.mu.Unlock()
		runtime.Gosched()
		l.mu.Lock()
	}
}

// flushLocked writes and fsyncs the pending batch and publishes it. The caller
// holds mu and owns the write path (busy); mu is released during I/O.
func (l *Log) flushLocked() {
	b := l.pend
	if len(b.recs) == 0 || l.failed != nil {
		return
	}
	l.pend, l.spare, l.inflight = l.spare, nil, b
	active := l.segs[len(l.segs)-1]
	pos, prevTerm := active.size, l.lastTerm
	l.mu.Unlock()
	chunks, err := l.writeBatch(b, active, pos, prevTerm)
	l.mu.Lock()
	l.inflight = nil
	if err != nil {
		l.failLocked(err)
		close(b.done)
		return
	}
	// Publish: index the records, then advance last and durableSeq.
	r := 0
	for _, c := range chunks {
		off := c.start
		for ; r < c.end; r++ {
			c.seg.offs = append(c.seg.offs, uint32(off))
			off += int64(b.recs[r].size)
		}
		c.seg.size = off
	}
	idx := b.first
	for _, m := range b.recs {
		if len(l.runs) == 0 || l.runs[len(l.runs)-1].term != m.term {
			l.runs = append(l.runs, termRun{start: idx, term: m.term})
		}
		idx++
	}
	l.last = idx - 1
	l.lastTerm = b.recs[len(b.recs)-1].term
	l.durableSeq = b.lastSeq
	l.flushes++
	l.written += uint64(len(b.recs))
	close(b.done)
	b.reset()
	l.spare = b
}

// chunk says that records [.., end) of a batch went to seg starting at start
// (records from the previous chunk's end).
type chunk struct {
	seg   *segment
	start int64
	end   int
}

// writeBatch writes the batch's records at the end of active's data (pos),
// starting new segments as they fill, and fsyncs every segment written. A
// full segment is sealed (cut to its data and fsynced) before the next one is
// created, so that only the last segment ever has zeros after its data.
// Called by the owner of the write path, without mu.
func (l *Log) writeBatch(b *batch, active *segment, pos int64, prevTerm uint64) ([]chunk, error) {
	var chunks []chunk
	seg, start := active, pos
	aOff, bOff := 0, 0 // buffer offsets of the first record not yet written, and of record r
	early := l.rollEarly(seg, pos)
	for r, m := range b.recs {
		if pos > segmentHeaderEnd && (early || pos+int64(m.size) > l.cfg.SegmentBytes) {
			early = false
			if err := l.writeSync(seg, b.buf[aOff:bOff], start, true); err != nil {
				return nil, err
			}
			chunks = append(chunks, chunk{seg: seg, start: start, end: r})
			l.dropSealed(seg)
			if r > 0 {
				prevTerm = b.recs[r-1].term
			}
			// Without a spare ready, a plain segment that grows by
			// extension: zero-filling it here would stall the writer for
			// a whole segment's I/O (and halve a catching-up follower's
			// speed); the writer moves to the spare once it is ready
			// (rollEarly).
			next, err := l.createSegment(segmentHeader{first: b.first + uint64(r), prevTerm: prevTerm}, false)
			if err != nil {
				return nil, err
			}
			l.mu.Lock()
			l.segs = append(l.segs, next)
			l.mu.Unlock()
			seg, start, pos = next, segmentHeaderEnd, segmentHeaderEnd
			aOff = bOff
		}
		pos += int64(m.size)
		bOff += int(m.size)
	}
	if err := l.writeSync(seg, b.buf[aOff:], start, false); err != nil {
		return nil, err
	}
	l.maybePrepareSpare(seg.first, pos, seg.alloc < l.cfg.SegmentBytes)
	return append(chunks, chunk{seg: seg, start: start, end: len(b.recs)}), nil
}

// writeSync writes p at off in seg's file (the end of its data) and fsyncs
// it. With seal, it first cuts the file at the end of p if preallocated
// zeros follow, so that the fsync makes the segment's exact size durable
// before the next segment can appear. It does nothing if there is nothing
// to write or cut.
func (l *Log) writeSync(seg *segment, p []byte, off int64, seal bool) error {
	end := off + int64(len(p))
	dirty := len(p) > 0
	if dirty {
		if _, err := seg.f.WriteAt(p, off); err != nil {
			return fmt.Errorf("%w: append to %s at %d: %v", ErrWriteFailed, seg.path, off, bareErr(err))
		}
		seg.alloc = max(seg.alloc, end)
	}
	if seal && seg.alloc > end {
		if err := seg.f.Truncate(end); err != nil {
			return fmt.Errorf("%w: seal %s at %d: %v", ErrWriteFailed, seg.path, end, bareErr(err))
		}
		seg.alloc, dirty = end, true
	}
	if !dirty {
		return nil
	}
	return l.syncSegment(seg)
}
