package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/vfs"
)

const (
	segmentSuffix = ".wal"
	tmpSuffix     = ".tmp"
	hardStateName = "hardstate"
	// spareName is the zero-filled file prepared for the next segment
	// (Config.Preallocate); a leftover is removed on open like any ".tmp".
	spareName = "spare" + segmentSuffix + tmpSuffix
	// zeroChunk is the size of the writes that zero-fill a segment.
	zeroChunk = 1 << 20
	// maxSparePause caps one pause of the spare's preparation (paceSpare).
	maxSparePause = 50 * time.Millisecond
)

// Log is an open write-ahead log. All methods are safe for concurrent use.
//
// Locking: removeMu is taken before the write path, filesMu before mu. Readers hold filesMu shared while they
// read segment files; operations that truncate, remove or close segment files
// hold it exclusively. The write path (appending and fsyncing) is owned by
// whichever goroutine set busy (the writer goroutine, or an exclusive operation
// such as TruncateAfter); it writes without holding mu and takes mu only to
// publish what became durable.
type Log struct {
	dir    string
	cfg    Config
	fs     vfs.FS
	logger *slog.Logger

	hsMu    sync.Mutex // serializes SetHardState, SetCommitHint and Close
	hintF   vfs.File   // the commit hint, opened by the first SetCommitHint; under hsMu
	hintBuf []byte     // under hsMu
	filesMu sync.RWMutex
	// removeMu serializes the operations that remove segments: DropBefore
	// (which runs beside appends), TruncateAfter, Reset and Close. Taken
	// after hsMu, before the write path.
	removeMu sync.Mutex

	mu         sync.Mutex
	cond       *sync.Cond    // on mu; broadcast when busy, excl, failed or closed change
	writerCond *sync.Cond    // on mu; signalled when the writer goroutine has work
	writerDone chan struct{} // closed when the writer goroutine exits

	// Guarded by mu.
	segs       []*segment // ordered by first index; the last one is appended to
	runs       []termRun  // terms of entries [first, last]
	first      uint64     // FirstIndex
	last       uint64     // LastIndex (durable)
	lastTerm   uint64     // term of last (or of first-1 if the log is empty)
	hs         HardState
	closed     bool
	failed     error  // sticky write-path failure
	busy       bool   // a goroutine owns the write path
	excl       bool   // an exclusive operation runs: Submit waits
	next       uint64 // index the next submitted entry must have
	seq        uint64 // last ticket issued
	durableSeq uint64 // all tickets <= durableSeq are durable
	pend       *batch // submitted, not yet written
	inflight   *batch // being written, or nil
	spare      *batch // an empty batch to reuse (nil while one is in flight)
	flushes    uint64 // batches written
	written    uint64 // entries written

	// The spare segment file (Config.Preallocate), guarded by spareMu.
	spareMu     sync.Mutex
	spareF      vfs.File      // zero-filled and fsynced under spareName; nil if none
	spareBusy   bool          // a preparation runs
	spareFor    uint64        // first index of the segment whose fill started the last preparation
	spareClosed bool          // Close has begun: start nothing, keep nothing
	sparesUsed  int           // spares that became segments (for tests)
	spareStop   chan struct{} // closed by Close: a running preparation stops early
	spareWG     sync.WaitGroup
	writePos    atomic.Int64 // where the writer last wrote in the active segment (paceSpare)
}

// segment is one segment file.
type segment struct {
	first    uint64 // index of its first entry (also in its name)
	prevTerm uint64 // term of entry first-1
	path     string
	f        vfs.File // opened O_RDWR; written with WriteAt at size
	offs     []uint32 // guarded by Log.mu: offset of entry first+k's record
	size     int64    // guarded by Log.mu: end of the last durable record
	// alloc is the file's physical size: size, or more while the segment
	// has preallocated zeros after its data. Owned by the write path.
	alloc int64
}

func (s *segment) lastIndex() uint64 { return s.first + uint64(len(s.offs)) - 1 }

// recordEnd returns the end offset of the k-th record. Needs Log.mu.
func (s *segment) recordEnd(k int) int64 {
	if k+1 < len(s.offs) {
		return int64(s.offs[k+1])
	}
	return s.size
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }

func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	return first, err == nil
}

// Open opens (creating if needed) the log in dir and recovers it: every record
// is verified, a torn tail of the last segment is cut off (and logged), and any
// other damage fails with an error wrapping ErrCorrupt.
func Open(dir string, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		dir:       filepath.Clean(dir),
		cfg:       cfg,
		fs:        cfg.FS,
		logger:    cfg.Logger,
		pend:      &batch{},
		spare:     &batch{},
		spareStop: make(chan struct{}),
	}
	l.cond = sync.NewCond(&l.mu)
	l.writerCond = sync.NewCond(&l.mu)
	l.writerDone = make(chan struct{})
	if err := l.fs.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", l.dir, err)
	}
	if err := l.recover(); err != nil {
		for _, s := range l.segs {
			s.f.Close()
		}
		return nil, err
	}
	go l.runWriter()
	return l, nil
}

func (l *Log) path(name string) string { return filepath.Join(l.dir, name) }

func (l *Log) recover() error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", l.dir, err)
	}
	var firsts []uint64
	removedTmp, resetting := false, false
	for _, name := range names {
		if name == resetName {
			resetting = true
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			l.logger.Info("wal: removing leftover temporary file", "file", l.path(name))
			if err := l.fs.Remove(l.path(name)); err != nil {
				return fmt.Errorf("wal: remove %s: %w", l.path(name), err)
			}
			removedTmp = true
			continue
		}
		if first, ok := parseSegmentName(name); ok {
			firsts = append(firsts, first)
		}
	}
	if removedTmp {
		if err := l.syncDir(); err != nil {
			return err
		}
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	if resetting {
		first, err := l.redoReset(firsts)
		if err != nil {
			return err
		}
		firsts = []uint64{first}
	}

	if l.hs, err = l.loadHardState(); err != nil {
		return err
	}
	hint, err := l.loadCommitHint()
	if err != nil {
		return err
	}
	l.hs.Commit = max(l.hs.Commit, hint)
	if len(firsts) == 0 {
		s, err := l.createSegment(segmentHeader{first: 1}, l.cfg.Preallocate)
		if err != nil {
			return err
		}
		l.segs = []*segment{s}
		l.first, l.last, l.next = 1, 0, 1
		return nil
	}

	var buf []byte
	for k, first := range firsts {
		path := l.path(segmentName(first))
		f, err := l.fs.OpenFile(path, os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("wal: open %s: %w", path, err)
		}
		s := &segment{first: first, path: path, f: f}
		l.segs = append(l.segs, s)
		info, err := f.Stat()
		if err != nil {
			return fmt.Errorf("wal: stat %s: %w", path, err)
		}
		if info.Size() > maxSegmentBytes+maxEntryBytesCap+segmentHeaderEnd {
			return corruptf(path, 0, "segment is %d bytes, larger than any segment this log writes", info.Size())
		}
		if int64(cap(buf)) < info.Size() {
			buf = make([]byte, info.Size())
		}
		buf = buf[:info.Size()]
		if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		res, err := scanSegment(buf, path, first)
		if err != nil {
			return err
		}
		isLast := k == len(firsts)-1
		s.alloc = int64(len(buf))
		switch {
		case res.end == s.alloc:
			// The file ends with its last record.
		case res.bad == nil && isLast:
			// Only zeros follow: preallocated space, the end of the log.
			// Appends continue there.
		case res.bad == nil:
			// Sealed segments are cut to their data before the next one is
			// created, so zeros here are not preallocated space.
			return corruptf(path, res.end, "%d zero bytes after the last record of a segment that is not the last", s.alloc-res.end)
		case !isLast || !res.torn:
			return corruptf(path, res.end, "%s", reason(res.bad))
		default:
			if err := l.repairTail(s, res, s.alloc); err != nil {
				return err
			}
			s.alloc = res.end
		}
		s.prevTerm, s.offs, s.size = res.hdr.prevTerm, res.offs, res.end
		if k == 0 {
			l.first, l.last, l.lastTerm = first, first-1, s.prevTerm
		} else {
			prev := l.segs[k-1]
			if first != l.last+1 {
				return corruptf(prev.path, prev.size, "segment ends at index %d but the next segment %s starts at %d", l.last, path, first)
			}
			if s.prevTerm != l.lastTerm {
				return corruptf(path, 0, "segment header says entry %d has term %d, but it has term %d", first-1, s.prevTerm, l.lastTerm)
			}
		}
		l.runs = appendRuns(l.runs, res.runs)
		l.last += uint64(len(res.offs))
		l.lastTerm = res.lastTerm
	}
	l.next = l.last + 1
	return nil
}

// appendRuns appends runs to dst, merging a run that continues dst's last term.
func appendRuns(dst, runs []termRun) []termRun {
	for _, r := range runs {
		if len(dst) > 0 && dst[len(dst)-1].term == r.term {
			continue
		}
		dst = append(dst, r)
	}
	return dst
}

// repairTail cuts the torn tail off the last segment, durably: it truncates
// the file (of size bytes) at res.end. Truncation, not zeroing, because a
// crash midway through zeroing could leave zeros before torn bytes, which
// recovery would take for damage; the segment then grows by extension until
// the next one.
func (l *Log) repairTail(s *segment, res scanResult, size int64) error {
	end := res.end
	l.logger.Warn("wal: cutting torn tail of last segment",
		"file", s.path, "offset", end, "bytes", res.dataEnd-end, "file_size", size, "err", res.bad)
	if err := s.f.Truncate(end); err != nil {
		return fmt.Errorf("wal: truncate torn tail of %s at %d: %w", s.path, end, err)
	}
	if err := l.syncFile(s.f); err != nil {
		return err
	}
	return nil
}

// createSegment creates a segment file holding its header (followed, with
// Config.Preallocate, by zeros up to SegmentBytes): written under a temporary
// name, fsynced, renamed, and the directory fsynced. With a spare file ready
// it only writes the header into the spare; otherwise it fills a new file
// itself. Either way the I/O is one file fsync and one directory fsync.
func (l *Log) createSegment(h segmentHeader, fill bool) (*segment, error) {
	path := l.path(segmentName(h.first))
	tmp, alloc := path+tmpSuffix, int64(segmentHeaderEnd)
	f := l.takeSpare()
	if f != nil {
		tmp, alloc = l.path(spareName), l.cfg.SegmentBytes
	} else {
		var err error
		if f, err = l.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return nil, fmt.Errorf("%w: create %s: %v", ErrWriteFailed, tmp, err)
		}
		if fill {
			if err := zeroFill(f, segmentHeaderEnd, l.cfg.SegmentBytes, nil, nil, nil); err != nil {
				f.Close()
				return nil, fmt.Errorf("%w: zero-fill %s: %v", ErrWriteFailed, tmp, err)
			}
			alloc = l.cfg.SegmentBytes
		}
	}
	fail := func(err error) (*segment, error) {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt(appendSegmentHeader(nil, h), 0); err != nil {
		return fail(fmt.Errorf("%w: write %s: %v", ErrWriteFailed, tmp, err))
	}
	if err := l.syncFile(f); err != nil {
		return fail(err)
	}
	if err := l.fs.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("%w: rename %s: %v", ErrWriteFailed, tmp, err))
	}
	if err := l.syncDir(); err != nil {
		return fail(err)
	}
	return &segment{first: h.first, prevTerm: h.prevTerm, path: path, f: f, size: segmentHeaderEnd, alloc: alloc}, nil
}

// zeroFill writes zeros to f over [from, to) in chunks of zeroChunk, stopping
// early (with an error) once stop is closed. With sync it fsyncs after every
// chunk: a background fill must never leave a whole segment's worth of dirty
// pages for one fsync (or the kernel's writeback) to push through the device
// queue at once, where the log's own small fsyncs would wait behind it. With
// pace, it calls pace after each chunk with the time the chunk took (the
// spare's pacing, paceSpare).
func zeroFill(f vfs.File, from, to int64, stop <-chan struct{}, sync func(vfs.File) error, pace func(took time.Duration)) error {
	zeros := make([]byte, min(zeroChunk, max(to-from, 0)))
	for off := from; off < to; off += int64(len(zeros)) {
		select {
		case <-stop:
			return errors.New("stopped")
		default:
		}
		start := time.Now()
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off); err != nil {
			return err
		}
		if sync != nil {
			if err := sync(f); err != nil {
				return err
			}
		}
		if pace != nil {
			pace(time.Since(start))
		}
	}
	return nil
}

// paceSpare spreads the spare's preparation out: after a chunk that took
// took, it waits Config.SparePace times as long (at most maxSparePause), so
// that filling 64 MiB is not one burst of CPU, page-cache allocation and
// disk writes that the log's own appends and fsyncs queue behind. It does not
// wait once the active segment is three quarters full (the spare must be
// ready when it is needed), nor after Close began.
func (l *Log) paceSpare(took time.Duration) {
	if l.cfg.SparePace <= 0 || l.writePos.Load() >= l.cfg.SegmentBytes/4*3 {
		return
	}
	if l.cfg.inlineSpare && l.cfg.sparePause == nil {
		return // never pause the writer itself
	}
	d := min(time.Duration(float64(took)*l.cfg.SparePace), maxSparePause)
	if l.cfg.sparePause != nil {
		l.cfg.sparePause(d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.spareStop:
	}
}

// maybePrepareSpare starts preparing a spare segment file when preallocation
// is on, the active segment (first index first) is an eighth full at pos
// (early, so that a paced preparation has time), and no spare is ready or
// being prepared for it. Called by the write-path owner, which it also tells
// where it writes (for paceSpare).
func (l *Log) maybePrepareSpare(first uint64, pos int64, plain bool) {
	l.writePos.Store(pos)
	if !l.cfg.Preallocate || (pos < l.cfg.SegmentBytes/8 && !plain) {
		return
	}
	l.spareMu.Lock()
	if l.spareF != nil || l.spareBusy || l.spareClosed || l.spareFor == first {
		l.spareMu.Unlock()
		return
	}
	l.spareBusy, l.spareFor = true, first
	if l.cfg.inlineSpare {
		l.spareMu.Unlock()
		l.prepareSpare()
		return
	}
	l.spareWG.Add(1) // under spareMu, so never after Close's Wait began
	l.spareMu.Unlock()
	go func() {
		defer l.spareWG.Done()
		l.prepareSpare()
	}()
}

// prepareSpare creates spareName, zero-fills it to SegmentBytes and fsyncs
// it. A failure is logged and otherwise ignored: the next segment is then
// created by createSegment's own path, which reports errors as usual. The
// spare's name is never fsynced into the directory: createSegment renames it
// and fsyncs the directory when it becomes a segment.
func (l *Log) prepareSpare() {
	path := l.path(spareName)
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err == nil {
		if err = zeroFill(f, 0, l.cfg.SegmentBytes, l.spareStop, l.syncFile, l.paceSpare); err == nil {
			err = l.syncFile(f)
		}
		if err != nil {
			f.Close()
			l.fs.Remove(path) // best effort: Open removes leftovers
			f = nil
		}
	}
	l.spareMu.Lock()
	defer l.spareMu.Unlock()
	l.spareBusy = false
	switch {
	case l.spareClosed:
		if f != nil {
			f.Close()
			l.fs.Remove(path)
		}
	case err != nil:
		l.logger.Warn("wal: could not prepare the next segment file; it will be created when needed",
			"file", path, "err", err)
	default:
		l.spareF = f
	}
}

// dropSealed drops the cached pages of seg, a segment just sealed (its data
// is durable), in the background. Nothing on the write path reads a sealed
// segment again (readers that need it, a lagging follower's catch-up, read
// it from disk), and left cached, every segment ever written would stay in
// the page cache until the kernel needed memory. That cost throughput, not
// just memory: in the benchmark, each new spare's zero-fill then copied
// into pages the kernel had to find elsewhere, and its CPU grew from about
// 15 ms to 140 ms per 64 MiB within a minute of load (docs/BENCHMARKS.md,
// seventh round); with the sealed segments' pages freed, the fill reuses
// them. Best effort: an error is logged at debug level and changes nothing.
func (l *Log) dropSealed(seg *segment) {
	l.spareMu.Lock()
	if l.spareClosed {
		l.spareMu.Unlock()
		return
	}
	l.spareWG.Add(1) // under spareMu, so never after Close's Wait began
	l.spareMu.Unlock()
	f, path := seg.f, seg.path
	go func() {
		defer l.spareWG.Done()
		if err := vfs.DropCache(f); err != nil {
			l.logger.Debug("wal: could not drop a sealed segment's cached pages", "file", path, "err", err)
		}
	}()
}

// rollEarly reports whether the writer should leave seg, a plain (not
// preallocated) segment holding records, for the spare that is ready.
func (l *Log) rollEarly(seg *segment, pos int64) bool {
	if !l.cfg.Preallocate || seg.alloc >= l.cfg.SegmentBytes || pos <= segmentHeaderEnd {
		return false
	}
	l.spareMu.Lock()
	defer l.spareMu.Unlock()
	return l.spareF != nil
}

// takeSpare returns the prepared spare file, if any, and forgets it.
func (l *Log) takeSpare() vfs.File {
	l.spareMu.Lock()
	defer l.spareMu.Unlock()
	f := l.spareF
	l.spareF = nil
	if f != nil {
		l.sparesUsed++
	}
	return f
}

// stopSpare stops a running preparation, waits for it, and removes the spare
// file (best effort: Open removes leftovers).
func (l *Log) stopSpare() {
	l.spareMu.Lock()
	if !l.spareClosed {
		l.spareClosed = true
		close(l.spareStop)
	}
	f := l.spareF
	l.spareF = nil
	l.spareMu.Unlock()
	l.spareWG.Wait()
	if f != nil {
		f.Close()
		l.fs.Remove(l.path(spareName))
	}
}

func (l *Log) syncFile(f vfs.File) error {
	if l.cfg.NoSync {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: %v", ErrSyncFailed, err)
	}
	return nil
}

// syncSegment fsyncs seg's file; an error names the segment.
func (l *Log) syncSegment(seg *segment) error {
	if l.cfg.NoSync {
		return nil
	}
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("%w: fsync %s: %v", ErrSyncFailed, seg.path, bareErr(err))
	}
	return nil
}

// bareErr returns the cause of an *fs.PathError, for messages that name the
// file themselves: a segment's handle keeps the temporary name it was
// created under (createSegment renames the file), which the operating
// system's error would give instead.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (l *Log) syncDir() error {
	if l.cfg.NoSync {
		return nil
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("%w: %v", ErrSyncFailed, err)
	}
	return nil
}

// failLocked makes err the sticky failure (if none yet). Needs mu.
func (l *Log) failLocked(err error) {
	if l.failed == nil {
		l.failed = err
		l.logger.Error("wal: write path failed; the log is now read-only", "err", err)
		if l.pend.done != nil {
			close(l.pend.done) // its waiters learn of the failure
		}
	}
	l.cond.Broadcast()
}

// fail is failLocked for callers that do not hold mu.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failLocked(err)
	return l.failed
}

// FirstIndex returns the index of the first entry held (1 for a log never
// compacted). An empty log has LastIndex() == FirstIndex()-1.
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// LastIndex returns the index of the last durable entry (0 when empty).
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Term returns the term of entry i for i in [FirstIndex()-1, LastIndex()];
// Term(0) is 0. Below that range the error wraps both ErrCompacted and
// ErrUnavailable; above it, ErrUnavailable.
func (l *Log) Term(i uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case i == 0:
		return 0, nil
	case l.closed:
		return 0, ErrClosed
	case i == l.first-1:
		return l.segs[0].prevTerm, nil
	case i < l.first:
		return 0, fmt.Errorf("%w: %w: term of %d, first index is %d", ErrUnavailable, ErrCompacted, i, l.first)
	case i > l.last:
		return 0, fmt.Errorf("%w: term of %d, last index is %d", ErrUnavailable, i, l.last)
	}
	return l.termLocked(i), nil
}

// termLocked returns the term of i in [first, last]. Needs mu.
func (l *Log) termLocked(i uint64) uint64 {
	k := sort.Search(len(l.runs), func(k int) bool { return l.runs[k].start > i }) - 1
	if k < 0 {
		panic(fmt.Sprintf("wal: no term run for index %d (first %d, last %d, runs %v)", i, l.first, l.last, l.runs))
	}
	return l.runs[k].term
}

// HardState returns the last hard state set (zero for a new log).
func (l *Log) HardState() HardState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hs
}

// Stats are counters for monitoring.
type Stats struct {
	FirstIndex, LastIndex uint64
	Segments              int
	Flushes               uint64 // group commits written (one fdatasync each, plus one per segment roll)
	Entries               uint64 // entries written since Open
}

// Stats returns current counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{FirstIndex: l.first, LastIndex: l.last, Segments: len(l.segs), Flushes: l.flushes, Entries: l.written}
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
