package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

// Errors. Each is returned wrapped; check with errors.Is.
var (
	ErrClosed        = errors.New("store: closed")
	ErrGap           = errors.New("store: gap in applied entries")
	ErrBadEntry      = errors.New("store: bad entry")
	ErrCorrupt       = errors.New("store: corrupt state")
	ErrIncompatible  = errors.New("store: incompatible format")
	ErrFailed        = errors.New("store: failed (a write or flush error is sticky)")
	ErrBadSnapshot   = errors.New("store: bad snapshot stream")
	ErrStaleSnapshot = errors.New("store: snapshot older than applied state")
	ErrInvalidArg    = errors.New("store: invalid argument")
)

// Config configures a Store.
type Config struct {
	// Logger receives the store's and Pebble's log lines. Required.
	Logger *slog.Logger
	// CacheBytes is the size of Pebble's block cache in bytes. Must be >= 0;
	// 0 gives Pebble's minimum.
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable in bytes: how much
	// applied state may wait in memory before Pebble flushes it on its own.
	// Larger means fewer flushes and compactions (overwrites of a key in
	// the memtable never reach the LSM) but a longer WAL replay after a
	// crash, and slower inserts: every applied key is inserted into a
	// skiplist as large as the memtable, which misses the CPU caches more
	// the larger it is. 16 MiB was the best of 4, 16 and 32 in A/B runs of
	// the benchmark (docs/BENCHMARKS.md); 4 MiB cost up to a third of the
	// throughput at 1 KiB values in flushes and compactions. Must be at
	// least 64 KiB and below 4 GiB.
	MemTableBytes int64
	// WriteBufferBytes bounds the write buffer, the hash table of recently
	// applied writes in front of Pebble (see wbuf.go): keys, values and
	// about 64 bytes per key; the idempotency records of keyed writes
	// count against a second budget of the same size. A key written again
	// while buffered costs a hash-table update instead of a memtable
	// insert. Two tables can be full at once (one being drained into
	// Pebble), so a store holds up to twice this, four times with records. A batch of at least a quarter of it skips the buffer
	// (catch-up, bulk loads). 0 turns the buffer off (every Apply goes to
	// Pebble at once). Must be in [0, 1 GiB].
	WriteBufferBytes int64
	// BackgroundPace spreads Pebble's flushes and compactions out: the
	// goroutine building an sstable pauses BackgroundPace times as long as
	// it worked since its previous write (see pacedFS). 0.5 makes a flush
	// use the processor two thirds of the time while it runs (1 and 2 gave
	// little more p99 and cost throughput: docs/BENCHMARKS.md, sixth
	// round); 0 only yields at each write. The pacing holds off while Pebble
	// stalls writes, while the store waits for a flush, and after a large
	// batch (catch-up). Must be in [0, 100].
	BackgroundPace float64
	// ExportChunkBytes is the default payload size of an exported snapshot
	// chunk, used when Export is given chunkBytes <= 0. Must be in
	// [1, MaxChunkBytes].
	ExportChunkBytes int
	// FS is the file system Pebble's files go through; nil is the
	// operating system's (vfs.Default). Tests wrap it to inject faults (a
	// full disk, I/O errors). The store's own small files (CURRENT) always
	// use the operating system.
	FS vfs.FS

	// drainSeed seeds the choice of drain sizes (pickDrainAt); 0 picks a
	// random seed. Tests set it so that a seed replays.
	drainSeed uint64
}

// DefaultConfig returns a Config with production defaults.
func DefaultConfig() Config {
	return Config{
		Logger:           slog.Default(),
		CacheBytes:       64 << 20,
		MemTableBytes:    16 << 20,
		WriteBufferBytes: 4 << 20,
		BackgroundPace:   0.5,
		ExportChunkBytes: 1 << 20,
	}
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	switch {
	case c.Logger == nil:
		return fmt.Errorf("%w: Config.Logger is nil", ErrInvalidArg)
	case c.CacheBytes < 0:
		return fmt.Errorf("%w: Config.CacheBytes is %d, must be >= 0", ErrInvalidArg, c.CacheBytes)
	case c.MemTableBytes < 64<<10 || c.MemTableBytes >= 4<<30:
		return fmt.Errorf("%w: Config.MemTableBytes is %d, must be in [64 KiB, 4 GiB)", ErrInvalidArg, c.MemTableBytes)
	case c.WriteBufferBytes < 0 || c.WriteBufferBytes > 1<<30:
		return fmt.Errorf("%w: Config.WriteBufferBytes is %d, must be in [0, 1 GiB]", ErrInvalidArg, c.WriteBufferBytes)
	case !(c.BackgroundPace >= 0 && c.BackgroundPace <= 100): // also catches NaN
		return fmt.Errorf("%w: Config.BackgroundPace is %v, must be in [0, 100]", ErrInvalidArg, c.BackgroundPace)
	case c.ExportChunkBytes < 1 || c.ExportChunkBytes > MaxChunkBytes:
		return fmt.Errorf("%w: Config.ExportChunkBytes is %d, must be in [1, %d]", ErrInvalidArg, c.ExportChunkBytes, MaxChunkBytes)
	}
	return nil
}

// handle is one open Pebble database. It is reference counted so that an
// Import can replace the database while Views of the old one are still open:
// the old one is closed (and its directory removed) when the last user
// releases it.
type handle struct {
	db     *pebble.DB
	name   string // directory name under the store directory
	path   string
	refs   atomic.Int64
	remove atomic.Bool // remove the directory after the last release
	log    *slog.Logger
	// chunked is set once the database is known to be marked with
	// FormatVersion (writeIdem marks it before it writes chunks).
	chunked atomic.Bool
}

func (h *handle) release() {
	n := h.refs.Add(-1)
	if n > 0 {
		return
	}
	if n < 0 {
		panic(fmt.Sprintf("store: handle %s released too often (refs %d)", h.name, n))
	}
	if err := h.db.Close(); err != nil {
		h.log.Error("store: closing pebble", "dir", h.path, "err", err)
	}
	if h.remove.Load() {
		if err := os.RemoveAll(h.path); err != nil {
			h.log.Error("store: removing replaced database", "dir", h.path, "err", err)
		}
	}
}

// Store is Trireme's state machine on Pebble. It is safe for concurrent use:
// Apply and Import serialize on a mutex (the node calls Apply from one
// goroutine); Flush and all reads (Get, Count, View, Export, AppliedIndex,
// DurableIndex) may be called from any goroutine at any time. Flush, Count,
// View and Export first write the write buffer out to Pebble, so they wait
// for an Apply in progress (and hold the next one back meanwhile).
type Store struct {
	cfg Config
	dir string
	log *slog.Logger

	// writeMu serializes Apply and Import (the writers), and the writing out
	// of the write buffer (syncBufLocked).
	writeMu sync.Mutex
	// ctr keeps the key count (see counter). Guarded by writeMu.
	ctr counter
	// countMu serializes Count.
	countMu sync.Mutex

	// mu guards h and closed. Readers take it shared to acquire a reference
	// on h; Import takes it exclusive to swap h; Apply reads h under writeMu
	// (h only changes with both locks held).
	mu     sync.RWMutex
	h      *handle
	closed bool

	// The write buffer (wbuf.go). bufMu guards the tables' contents and the
	// active/draining/spare pointers: Get takes it shared, Apply and the
	// drains exclusive. drainDone and drainErr belong to writeMu's holder
	// (drainErr is written by the drain goroutine before it closes drainDone).
	bufMu     sync.RWMutex
	active    *bufTable // Apply adds here
	draining  *bufTable // being written to Pebble; nil if none
	spare     *bufTable // a drained table, for reuse
	drainDone chan struct{}
	drainErr  error

	recoverTo  atomic.Uint64 // set by Open, cleared by Import: see RecoverIndex
	drainChunk int           // keys per Pebble batch of a drain (defaultDrainChunk)
	drainAt    int64         // the active table drains at this size (pickDrainAt); under writeMu
	drainRand  *rand.Rand    // picks drainAt

	pfsOnce sync.Once
	pfs     *pacedFS // Pebble's file system (pacedFS); every database of the store shares it

	applied     atomic.Uint64 // applied index
	appliedTerm atomic.Uint64
	durable     atomic.Uint64 // applied index known to be in flushed sstables
	failed      atomic.Pointer[error]
	failedCh    chan struct{} // closed with the first failure (Failed)
	stuck       atomic.Int32  // writes commit stopped waiting for, still inside Pebble
	closing     atomic.Bool   // Close has flushed and is closing Pebble
	bgErrors    atomic.Int64  // Pebble background errors reported (BackgroundErrors)

	// The term history (commands.go), cached; loaded on first use.
	termsMu sync.Mutex // serializes changes to terms
	terms   atomic.Pointer[[]termStart]
	// The idempotency table's index (idem.go); loaded on first use.
	idemMu   sync.Mutex
	idem     idemIndex
	idemHash func([]byte) uint64 // keys the index (tests set a weak one)

	// crashAt, set by tests, makes Install stop at that step as a crash
	// would (crashPoint), leaving the files as they are.
	crashAt string
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: creating %s: %w", dir, err)
	}
	s := &Store{cfg: cfg, dir: dir, log: cfg.Logger, active: newBufTable(), drainChunk: defaultDrainChunk,
		failedCh: make(chan struct{}), idemHash: newIdemHash()}
	seed := cfg.drainSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.drainRand = rand.New(rand.NewPCG(seed, 0x7472697265))
	s.pickDrainAt()
	name, err := readCurrent(dir)
	if err != nil {
		return nil, err
	}
	if err := removeStrays(dir, name, s.log); err != nil {
		return nil, err
	}
	var h *handle
	if name == "" {
		name = dbName(1)
		h, err = s.createDB(name)
		if err != nil {
			return nil, err
		}
		if err := writeCurrent(dir, name, nil); err != nil {
			h.release()
			return nil, err
		}
	} else {
		h, err = s.openDB(name, false)
		if err != nil {
			return nil, err
		}
	}
	index, term, err := readMeta(h.db, h.path)
	if err != nil {
		h.release()
		return nil, err
	}
	drainTo, err := readDrain(h.db, h.path)
	if err != nil {
		h.release()
		return nil, err
	}
	if drainTo > index {
		s.recoverTo.Store(drainTo)
		s.log.Warn("store: a drain of the write buffer was cut short by a crash: some keys are newer than the applied index until the WAL is replayed through the drain's index",
			"applied", index, "replay_through", drainTo)
	}
	s.h = h
	s.applied.Store(index)
	s.appliedTerm.Store(term)
	// Pebble's WAL is off, so everything Open finds came from flushed sstables.
	s.durable.Store(index)
	s.log.Info("store: opened", "dir", dir, "db", name, "index", index, "term", term)
	return s, nil
}

// pebbleFS returns the store's Pebble file system (a pacedFS), creating it on first use.
func (s *Store) pebbleFS() *pacedFS {
	s.pfsOnce.Do(func() {
		fs := s.cfg.FS
		if fs == nil {
			fs = vfs.Default
		}
		s.pfs = newPacedFS(fs, s.cfg.BackgroundPace)
		s.pfs.failed = s.failure
	})
	return s.pfs
}

// pebbleOptions returns the Pebble options the store always uses.
func (s *Store) pebbleOptions() *pebble.Options {
	opts := &pebble.Options{
		DisableWAL:         true, // the Trireme WAL is the only log
		MemTableSize:       uint64(s.cfg.MemTableBytes),
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s},
		FS:                 s.pebbleFS(),
	}
	opts.EventListener = &pebble.EventListener{
		// Pebble holds writes until a flush or compaction catches up:
		// pausing those now would only lengthen the stall.
		WriteStallBegin: func(pebble.WriteStallBeginInfo) { s.pebbleFS().stalled.Store(true) },
		WriteStallEnd:   func() { s.pebbleFS().stalled.Store(false) },
		// A flush or compaction that failed (a full disk, an I/O error, a
		// vanished or read-only directory). Pebble retries at once and
		// forever, and holds writes once two memtables wait: the store
		// fails instead (see backgroundError).
		BackgroundError: s.backgroundError,
		// Pebble found a file damaged or missing (a directory removed
		// under it, an I/O error on read). Its default is Fatalf.
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			_ = s.fail("pebble found data corruption in "+s.dir, fmt.Errorf("%s", info))
		},
	}
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10) // inherited by lower levels
	return opts
}

func (s *Store) openDB(name string, create bool) (*handle, error) {
	path := filepath.Join(s.dir, name)
	opts := s.pebbleOptions()
	opts.ErrorIfNotExists = !create
	opts.ErrorIfExists = create
	cache := pebble.NewCache(s.cfg.CacheBytes)
	opts.Cache = cache
	db, err := pebble.Open(path, opts)
	cache.Unref() // the DB holds its own reference
	if err != nil {
		return nil, fmt.Errorf("store: opening pebble in %s: %w", path, err)
	}
	h := &handle{db: db, name: name, path: path, log: s.log}
	h.refs.Store(1)
	return h, nil
}

// createDB creates a new Pebble database holding only the format metadata
// (applied index 0, no keys), flushed.
func (s *Store) createDB(name string) (*handle, error) {
	h, err := s.openDB(name, true)
	if err != nil {
		return nil, err
	}
	b := h.db.NewBatch()
	_ = b.Set(metaKeyFormat, encodeFormat(), nil)
	_ = b.Set(metaKeyApplied, encodeApplied(0, 0), nil)
	err = h.db.Apply(b, pebble.NoSync)
	_ = b.Close()
	if err == nil {
		err = s.flushDB(h.db)
	}
	if err != nil {
		h.release()
		_ = os.RemoveAll(h.path)
		return nil, fmt.Errorf("store: initializing %s: %w", h.path, err)
	}
	return h, nil
}

// readMeta reads and checks the metadata of an open database. (Format 1 also
// kept a key count under metaKeyCount; it is ignored.)
func readMeta(r pebble.Reader, path string) (index, term uint64, err error) {
	get := func(k []byte, size int) ([]byte, error) {
		v, c, err := r.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s: metadata key %q missing", ErrCorrupt, path, k)
		}
		if err != nil {
			return nil, fmt.Errorf("store: %s: reading metadata key %q: %w", path, k, err)
		}
		defer c.Close()
		if len(v) != size {
			return nil, fmt.Errorf("%w: %s: metadata key %q is %d bytes, want %d", ErrCorrupt, path, k, len(v), size)
		}
		return append([]byte(nil), v...), nil
	}
	if _, err := readFormat(r, path); err != nil {
		return 0, 0, err
	}
	a, err := get(metaKeyApplied, 16)
	if err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint64(a), binary.LittleEndian.Uint64(a[8:]), nil
}

// readFormat reads the format version of an open database and checks that
// this build reads it.
func readFormat(r pebble.Reader, path string) (uint32, error) {
	v, c, err := r.Get(metaKeyFormat)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s: metadata key %q missing", ErrCorrupt, path, metaKeyFormat)
	}
	if err != nil {
		return 0, fmt.Errorf("store: %s: reading metadata key %q: %w", path, metaKeyFormat, err)
	}
	defer c.Close()
	if len(v) != 4 {
		return 0, fmt.Errorf("%w: %s: metadata key %q is %d bytes, want 4", ErrCorrupt, path, metaKeyFormat, len(v))
	}
	f := binary.LittleEndian.Uint32(v)
	if f < formatVersion1 || f > FormatVersion {
		return 0, fmt.Errorf("%w: %s has format version %d, this build reads %d to %d", ErrIncompatible, path, f, formatVersion1, FormatVersion)
	}
	return f, nil
}

// acquire returns the current database with a reference the caller must release.
func (s *Store) acquire() (*handle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.h.refs.Add(1)
	return s.h, nil
}

func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		<-s.failedCh // closed right after the failure is recorded (fail)
		return *p
	}
	return nil
}

// fail records a sticky failure and returns it. The first one is logged and
// closes Failed.
func (s *Store) fail(op string, err error) error {
	err = fmt.Errorf("%w: %s: %w", ErrFailed, op, err)
	if s.failed.CompareAndSwap(nil, &err) {
		close(s.failedCh)
		s.log.Error("store: failed", "op", op, "dir", s.dir, "err", err)
	}
	return s.failure()
}

// Failed returns a channel that is closed when the store fails: a Pebble
// write, flush or background error (Err says which). From then on every
// Apply, Flush and Import returns ErrFailed, and a goroutine may be stuck
// inside Pebble for good: the owner should stop, and close the store only
// with a bound on the wait (see Close).
func (s *Store) Failed() <-chan struct{} { return s.failedCh }

// Err returns the store's sticky failure, or nil.
func (s *Store) Err() error { return s.failure() }

// backgroundError is Pebble's EventListener.BackgroundError: a flush or a
// compaction failed (or another background task: table statistics, disk
// usage). Pebble would retry the flush at once, forever (a core spinning on
// a full disk, logging each attempt), and once two memtables wait for it,
// it holds every write, Apply included, for good. None of these errors can
// be retried safely by waiting (a full disk, an I/O error, a directory
// removed or read-only), so the first one fails the store; later ones are
// counted and logged at debug level only.
func (s *Store) backgroundError(err error) {
	s.bgErrors.Add(1)
	if s.closing.Load() {
		// A compaction cut short by Close (the flush before it succeeded,
		// or Close reports its error): nothing is lost.
		s.log.Warn("store: pebble background error while closing", "dir", s.dir, "err", err)
		return
	}
	if s.failure() != nil {
		s.log.Debug("store: pebble background error after the store failed", "dir", s.dir, "err", err)
		return
	}
	_ = s.fail("pebble background work (flush or compaction) in "+s.dir, err)
}

// BackgroundErrors counts the errors Pebble's background work reported.
func (s *Store) BackgroundErrors() int64 { return s.bgErrors.Load() }

// Apply applies committed entries in one Pebble batch, with the new applied
// index and key count. Entries at or below the applied index are skipped; the
// rest must be contiguous and start at AppliedIndex()+1, else nothing is
// applied and the error wraps ErrGap. An entry of unknown kind, or a put or
// delete at index 0, gives ErrBadEntry and applies nothing.
func (s *Store) Apply(ents []entry.Entry) error { return s.ApplyReport(ents, nil) }

// ApplyReport is Apply, and calls report (if not nil) with the result of
// each command entry it applies, in order, before it returns.
func (s *Store) ApplyReport(ents []entry.Entry, report CommandReport) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.failure(); err != nil {
		return err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	applied := s.applied.Load()
	for len(ents) > 0 && ents[0].Index <= applied {
		ents = ents[1:]
	}
	if len(ents) == 0 {
		return nil
	}
	next := applied + 1
	for i := range ents {
		e := &ents[i]
		if e.Index != next {
			return fmt.Errorf("%w: entry %d of the batch has index %d, want %d (applied %d)", ErrGap, i, e.Index, next, applied)
		}
		if !e.Kind.Valid() {
			return fmt.Errorf("%w: index %d has unknown kind %d", ErrBadEntry, e.Index, e.Kind)
		}
		next++
	}

	// Without a buffer, and for a large batch (a follower catching up, a
	// bulk load: little to gain from the buffer, and copying the values into
	// it cost catch-up about a sixth of its rate), apply straight to Pebble,
	// after writing out what is buffered (older versions must not land on
	// top of the batch's).
	n := batchBytes(ents)
	if n >= quietBatchBytes {
		// A follower catching up (or a bulk load) wants Pebble's
		// background work done at full speed, not smoothly.
		s.pebbleFS().quiet(quietFor)
	}
	if s.cfg.WriteBufferBytes == 0 || n >= s.cfg.WriteBufferBytes/4 || needsDirect(ents) {
		if err := s.syncBufLocked(); err != nil {
			return err
		}
		return s.applyDirect(ents, report)
	}
	// The entries go to the write buffer (wbuf.go); a Get sees them once
	// the applied index is published below.
	last := &ents[len(ents)-1]
	t := s.active
	var results []command.Result
	s.bufMu.Lock()
	for i := range ents {
		e := &ents[i]
		switch e.Kind {
		case entry.KindPut:
			t.put(e.Key, e.Index, e.Value, false)
		case entry.KindDelete:
			t.put(e.Key, e.Index, nil, true)
		case entry.KindCommand:
			// A blind command (needsDirect): its records go into the
			// table with its values (bufTable.idem).
			r, err := s.applyCommand(&bufSink{s: s, t: t}, s.h.db, e)
			if err != nil {
				s.bufMu.Unlock()
				return s.fail(fmt.Sprintf("apply command at index %d", e.Index), err)
			}
			results = append(results, r)
		default:
			// no-op and config entries only advance the applied index
		}
	}
	t.last, t.term = last.Index, last.Term
	s.bufMu.Unlock()
	s.appliedTerm.Store(last.Term)
	s.applied.Store(last.Index)
	s.reportCommands(ents, results, report)
	if int64(t.size) >= s.drainAt || int64(t.idemSize) >= s.drainAt {
		return s.startDrainLocked()
	}
	return nil
}

// reportCommands calls report with the results of ents' commands, in order.
func (s *Store) reportCommands(ents []entry.Entry, results []command.Result, report CommandReport) {
	if report == nil || len(results) == 0 {
		return
	}
	j := 0
	for i := range ents {
		if ents[i].Kind == entry.KindCommand {
			report(ents[i].Index, ents[i].Term, results[j])
			j++
		}
	}
}

// Conf returns the value of the last configuration entry applied (nil if
// none was): the cluster configuration at the applied index, kept with the
// data so that a checkpoint or snapshot carries it.
func (s *Store) Conf() ([]byte, error) {
	h, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer h.release()
	v, closer, err := h.db.Get(metaKeyConf)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.fail("read the configuration", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// batchBytes is the size of ents' keys and values.
func batchBytes(ents []entry.Entry) int64 {
	var n int64
	for i := range ents {
		n += int64(len(ents[i].Key) + len(ents[i].Value))
	}
	return n
}

// applyDirect applies checked entries in one Pebble batch, with the new
// applied index: Apply without a write buffer. Under writeMu.
func (s *Store) applyDirect(ents []entry.Entry, report CommandReport) error {
	db := s.h.db
	b := db.NewBatch()
	var results []command.Result
	var view *batchView // commands read the batch's own writes through it
	cmds := 0
	for i := range ents {
		if ents[i].Kind == entry.KindCommand {
			cmds++
		}
	}
	var sink *batchSink
	if cmds > 0 {
		results = make([]command.Result, 0, cmds)
		view = &batchView{db: db, user: map[string]viewVal{}}
		sink = &batchSink{s: s, b: b, v: view}
	}
	abandoned := false // b still belongs to Pebble (commit)
	defer func() {
		if !abandoned {
			_ = b.Close()
		}
	}()
	var kbuf, vbuf []byte
	for i := range ents {
		e := &ents[i]
		switch e.Kind {
		case entry.KindPut:
			kbuf = userKey(kbuf[:0], e.Key)
			vbuf = encodeValue(vbuf[:0], e.Index, e.Value)
			_ = b.Set(kbuf, vbuf, nil) // Set copies
			s.ctr.track(e.Key, true)
			if view != nil {
				view.put(e.Key, e.Index, e.Value, false)
			}
		case entry.KindDelete:
			kbuf = userKey(kbuf[:0], e.Key)
			_ = b.Delete(kbuf, nil)
			s.ctr.track(e.Key, false)
			if view != nil {
				view.put(e.Key, e.Index, nil, true)
			}
		case entry.KindConfig:
			_ = b.Set(metaKeyConf, e.Value, nil)
		case entry.KindNoop:
			_ = b.Set(termKey(e.Index), binary.LittleEndian.AppendUint64(nil, e.Term), nil)
		case entry.KindCommand:
			r, err := s.applyCommand(sink, db, e)
			if err != nil {
				s.ctr.drop()
				s.ctr.gen++
				return s.fail(fmt.Sprintf("apply command at index %d", e.Index), err)
			}
			results = append(results, r)
		}
	}
	last := &ents[len(ents)-1]
	if sink != nil {
		if err := s.writeIdem(s.h, b, &sink.idem); err != nil {
			s.ctr.drop()
			s.ctr.gen++
			return s.fail(fmt.Sprintf("apply through index %d (idempotency records)", last.Index), err)
		}
	}
	_ = b.Set(metaKeyApplied, encodeApplied(last.Index, last.Term), nil)
	var err error
	if abandoned, err = s.commit(db, b); err != nil {
		s.ctr.drop() // the dirty keys no longer describe the database
		s.ctr.gen++
		return s.fail(fmt.Sprintf("apply through index %d", last.Index), err)
	}
	s.ctr.afterApply()
	for i := range ents {
		if ents[i].Kind == entry.KindNoop {
			s.noteTermStart(ents[i].Index, ents[i].Term)
		}
	}
	s.appliedTerm.Store(last.Term)
	s.applied.Store(last.Index)
	s.reportCommands(ents, results, report)
	return nil
}

// commit applies b to db and waits for it, or for the store to fail. A
// write can be held inside Pebble for good: once two memtables wait for a
// flush, Pebble stalls every write until the flush succeeds, and it retries a
// failed flush forever (a full disk). So after a failure (Failed) commit stops
// waiting and returns the failure with abandoned set: b then still belongs to
// Pebble, and the caller must neither close nor reuse it. The write goes on
// in its own goroutine, counted in s.stuck, which keeps Close from closing
// the database under it.
func (s *Store) commit(db *pebble.DB, b *pebble.Batch) (abandoned bool, err error) {
	done := make(chan error, 1)
	go func() { done <- db.Apply(b, pebble.NoSync) }()
	select {
	case err := <-done:
		return false, err
	case <-s.failedCh:
	}
	select {
	case err := <-done:
		return false, err
	default:
	}
	s.stuck.Add(1)
	go func() {
		<-done
		s.stuck.Add(-1)
	}()
	s.log.Warn("store: a write is held inside Pebble after the failure; not waiting for it", "dir", s.dir)
	return true, s.failure()
}

func exists(r pebble.Reader, k []byte) (bool, error) {
	_, c, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, c.Close()
}

// AppliedIndex returns the index of the last applied entry (0 if none).
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// AppliedTerm returns the term of the entry at AppliedIndex (0 if none).
func (s *Store) AppliedTerm() uint64 { return s.appliedTerm.Load() }

// Get returns a copy of key's value and its version (the index that last set
// it). found is false if the key does not exist.
func (s *Store) Get(key []byte) (value []byte, version uint64, found bool, err error) {
	h, err := s.acquire()
	if err != nil {
		return nil, 0, false, err
	}
	defer h.release()
	if value, version, found, ok := s.bufGet(key); ok {
		return value, version, found, nil
	}
	return get(h.db, key)
}

func get(r pebble.Reader, key []byte) (value []byte, version uint64, found bool, err error) {
	raw, c, err := r.Get(userKey(nil, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("store: get %q: %w", key, err)
	}
	defer c.Close()
	v, ver, err := decodeValue(key, raw)
	if err != nil {
		return nil, 0, false, err
	}
	return append(make([]byte, 0, len(v)), v...), ver, true, nil
}

// Flush writes all applied state to sstables on disk and advances
// DurableIndex to the applied index read at the start of the call.
func (s *Store) Flush() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.flushLocked()
}

// flushLocked is Flush under writeMu.
func (s *Store) flushLocked() error {
	if err := s.failure(); err != nil {
		return err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := s.syncBufLocked(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	h := s.h
	h.refs.Add(1)
	// Read under mu: Import swaps h and the applied index together.
	index := s.applied.Load()
	s.mu.RUnlock()
	defer h.release()
	// Every batch up to index is in a memtable that this Flush writes out,
	// at full speed: the caller waits for it.
	release := s.pebbleFS().holdPacing()
	defer release()
	if err := s.flushDB(h.db); err != nil {
		return s.fail(fmt.Sprintf("flush at index %d", index), err)
	}
	s.raiseDurable(index)
	return nil
}

// flushDB flushes db's memtables and waits for the flush, or for the store
// to fail: a flush that fails is retried by Pebble forever, and DB.Flush
// would wait for it forever.
func (s *Store) flushDB(db *pebble.DB) error {
	if err := s.failure(); err != nil {
		return err
	}
	done, err := db.AsyncFlush()
	if err != nil {
		return err
	}
	select {
	case <-done:
		return s.failure() // a background error may have come first
	case <-s.failedCh:
		return s.failure()
	}
}

func (s *Store) raiseDurable(index uint64) {
	for {
		cur := s.durable.Load()
		if index <= cur || s.durable.CompareAndSwap(cur, index) {
			return
		}
	}
}

// DurableIndex returns an applied index known to be on disk: after a crash
// the store reopens at this index or later. It is a lower bound (Pebble may
// have flushed more on its own). WAL entries at or below it may be dropped.
func (s *Store) DurableIndex() uint64 { return s.durable.Load() }

// Close flushes the store (unless it has failed) and closes it. Views still
// open keep the underlying database open until they are closed. Close is
// idempotent.
//
// After a failure (Failed), a write may be held inside Pebble for good (see
// commit): then Close leaves the Pebble database open (closing it would wait
// for that write) and returns an error saying so; the process should exit.
func (s *Store) Close() error {
	return s.close(true)
}

// close closes the store, flushing first if flush is set. Tests call
// close(false) to simulate a crash: Pebble's memtable is lost.
func (s *Store) close(flush bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var err error
	if flush && s.failure() == nil {
		err = s.flushLocked()
		if errors.Is(err, ErrClosed) {
			return nil
		}
	}
	// A drain still running holds the database open: let it end. Without
	// a flush (a crash, in tests) the buffered writes are lost, like
	// Pebble's memtable.
	if derr := s.waitDrainLocked(); err == nil && flush {
		err = derr
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	h := s.h
	s.mu.Unlock()
	s.ctr.drop()
	s.ctr.gen++
	if s.stuck.Load() > 0 {
		// DB.Close would wait for the write held inside Pebble (commit).
		return fmt.Errorf("store: %s left open: a write is still held inside Pebble after the failure (%w)", h.path, s.failure())
	}
	s.closing.Store(true)
	h.release()
	return err
}

// Directory management.

const currentFile = "CURRENT"

var dbNameRE = regexp.MustCompile(`^db-[0-9]{6,}$`)

func dbName(n uint64) string { return fmt.Sprintf("db-%06d", n) }

func dbNumber(name string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(name, "db-"), 10, 64)
	return n
}

// readCurrent returns the database directory named by CURRENT, or "" if
// there is no CURRENT file.
func readCurrent(dir string) (string, error) {
	path := filepath.Join(dir, currentFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: reading %s: %w", path, err)
	}
	name := strings.TrimSuffix(string(b), "\n")
	if !dbNameRE.MatchString(name) {
		return "", fmt.Errorf("%w: %s at offset 0: %q is not a database name", ErrCorrupt, path, b)
	}
	return name, nil
}

// writeCurrent atomically points CURRENT at name: temporary file, fsync,
// rename, fsync of the directory. crash, if not nil, is a test's crash point
// (Store.crashPoint), asked between the temporary file and the rename.
func writeCurrent(dir, name string, crash func(step string) error) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", tmp, err)
	}
	_, err = io.WriteString(f, name+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && crash != nil {
		if err = crash("current-written"); err != nil {
			return err
		}
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, currentFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("store: writing %s: %w", filepath.Join(dir, currentFile), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeStrays removes db-* directories other than keep (left by an
// interrupted import or creation) and a stale CURRENT.tmp.
func removeStrays(dir, keep string, log *slog.Logger) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: listing %s: %w", dir, err)
	}
	for _, de := range des {
		n := de.Name()
		if (dbNameRE.MatchString(n) && n != keep) || n == currentFile+".tmp" {
			log.Warn("store: removing leftover from an interrupted import", "path", filepath.Join(dir, n))
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("store: removing %s: %w", filepath.Join(dir, n), err)
			}
		}
	}
	return nil
}

// pebbleLogger sends Pebble's log lines to the store's slog logger.
type pebbleLogger struct{ s *Store }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.s.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.s.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on an error it cannot undo, and it must not
// return. Besides broken invariants, that includes a failed write of the
// MANIFEST (a full disk, an I/O error, a read-only file system). A panic
// would crash the process with a stack trace in place of the message that
// names the file, so the store fails instead (the owner stops and exits with
// that message; the stack is logged) and the calling goroutine waits
// forever: it may hold Pebble's locks, so it counts as a write stuck inside
// Pebble, and Close leaves the database open.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := "pebble: fatal: " + fmt.Sprintf(format, args...)
	p.s.log.Error(msg, "dir", p.s.dir, "stack", string(debug.Stack()))
	p.s.stuck.Add(1)
	_ = p.s.fail("pebble stopped on an error it cannot undo in "+p.s.dir, errors.New(msg))
	select {}
}
