package node

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/wal"
)

// compactWAL is what the compactor needs of the WAL.
type compactWAL interface {
	Segments() []wal.SegmentInfo
	DropBefore(i uint64) error
}

// compactStore is what the compactor needs of the store.
type compactStore interface {
	AppliedIndex() uint64
	DurableIndex() uint64
	Flush() error
}

// compactor drops old WAL segments on its own goroutine, every
// Config.LogCompactInterval, keeping:
//
//   - every entry above the store's DurableIndex (a crash may take the store
//     back to it, and the restart replays the WAL from there), and
//   - the newest segments that together hold at least Config.LogRetainBytes,
//     so that a follower that was away for a while catches up from the log.
//
// The store's DurableIndex moves only when the store is flushed, so when it
// holds back a drop that the retention budget allows, the compactor flushes
// the store first, but only if that lets at least one more segment go
// (about once per segment written beyond the budget). The store's Flush
// holds its writer back while Pebble writes its memtables; that is why it
// runs here and rarely, never on the run loop.
//
// DropBefore does not take the WAL's write path (appends go on meanwhile),
// and the segment list is read from memory: nothing here waits on the run
// loop, and the run loop never waits on this.
type compactor struct {
	wal      compactWAL
	store    compactStore
	retain   int64
	interval time.Duration
	log      *slog.Logger
	m        *metrics
	fault    func(error) // stops the node; called at most once

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newCompactor(w compactWAL, s compactStore, retain int64, interval time.Duration, log *slog.Logger, m *metrics, fault func(error)) *compactor {
	return &compactor{wal: w, store: s, retain: retain, interval: interval, log: log, m: m, fault: fault,
		stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs a step every interval until close.
func (c *compactor) start() {
	c.started.Store(true)
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.interval)
		defer t.Stop()
		for {
			if err := c.step(); err != nil {
				c.fault(err)
				return
			}
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// close stops the goroutine (if started) and waits for a step in
// progress. Call it before closing the WAL and the store.
func (c *compactor) close() {
	c.stopOnce.Do(func() {
		close(c.stop)
		if c.started.Load() {
			<-c.done
		}
	})
}

// step drops what it may (see compactor). An error is a fault that stops
// the node (the WAL failed; it is sticky). A failed store flush is not
// returned: the store fails on its own and the run loop stops on that.
func (c *compactor) step() error {
	segs := c.wal.Segments()
	if len(segs) == 0 {
		return nil // closed
	}
	c.observe(segs)
	point := retainPoint(segs, c.retain)
	durable := c.store.DurableIndex()
	if droppable(segs, min(durable+1, point)) < droppable(segs, min(c.store.AppliedIndex()+1, point)) {
		if err := c.store.Flush(); err != nil {
			c.log.Warn("WAL compaction: could not flush the store", "err", err)
			return nil
		}
		durable = c.store.DurableIndex()
	}
	to := min(durable+1, point)
	n := droppable(segs, to)
	if n == 0 {
		return nil
	}
	if err := c.wal.DropBefore(to); err != nil {
		return fmt.Errorf("node: compact the WAL before index %d: %w", to, err)
	}
	c.m.walCompactions.Inc()
	after := c.wal.Segments()
	c.observe(after)
	if len(after) > 0 {
		c.log.Debug("compacted the WAL", "segments_dropped", n, "first_index", after[0].First,
			"store_durable", durable, "wal_bytes", totalBytes(after))
	}
	return nil
}

// observe sets the WAL gauges.
func (c *compactor) observe(segs []wal.SegmentInfo) {
	c.m.walBytes.Set(float64(totalBytes(segs)))
	c.m.walFirstIndex.Set(float64(segs[0].First))
}

// retainPoint is the first index of the newest segments that together hold
// at least retain bytes (the first segment's first index if the whole log
// holds less). segs is oldest first and not empty.
func retainPoint(segs []wal.SegmentInfo, retain int64) uint64 {
	var sum int64
	for k := len(segs) - 1; k >= 0; k-- {
		sum += segs[k].Bytes
		if sum >= retain {
			return segs[k].First
		}
	}
	return segs[0].First
}

// droppable counts the segments DropBefore(to) removes: those wholly below
// to, never the last.
func droppable(segs []wal.SegmentInfo, to uint64) int {
	k := 0
	for k < len(segs)-1 && segs[k+1].First <= to {
		k++
	}
	return k
}

func totalBytes(segs []wal.SegmentInfo) int64 {
	var sum int64
	for _, s := range segs {
		sum += s.Bytes
	}
	return sum
}
