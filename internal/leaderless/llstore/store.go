package llstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/vclock"
)

// ErrCorrupt: a stored record does not decode (or Pebble found a damaged
// file). The error names the record.
var ErrCorrupt = errors.New("llstore: corrupt data")

// ErrFailed: the store failed (a Persist that failed, or Pebble stopped on
// an error it cannot undo). Sticky: every later call returns it.
var ErrFailed = errors.New("llstore: store failed")

// errClosed: a call after Close.
var errClosed = errors.New("llstore: store is closed")

// Config configures a Store.
type Config struct {
	Logger *slog.Logger // nil: discard
}

// Store is the durable state of one leaderless node: every key's copy,
// the hints it holds for other nodes and its mint floor. It implements
// leaderless.Store.
type Store struct {
	dir string
	log *slog.Logger
	db  *pebble.DB

	floor atomic.Uint64 // the stored mint floor, as of the last Persist

	// failed is the sticky failure (nil: none); fatal: Pebble called
	// Fatalf, so it may hold its locks and must not be closed.
	failed atomic.Pointer[error]
	fatal  atomic.Bool

	// life guards closed; users counts the calls using db.
	life    sync.Mutex
	closed  bool
	closing atomic.Bool // closed, for Pebble's event listener
	users   sync.WaitGroup

	// writeMu serializes Persist.
	writeMu sync.Mutex
}

var _ leaderless.Store = (*Store)(nil)

// Open opens or creates the store in dir (created if missing). A database
// of another format version, or bucketed at another Merkle depth, is
// refused.
func Open(dir string, cfg Config) (*Store, error) {
	return openFS(dir, cfg, nil)
}

// openFS is Open on Pebble file system fs (nil: the OS's), for the tests'
// fault injection.
func openFS(dir string, cfg Config, fs vfs.FS) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("llstore: creating %s: %w", dir, err)
	}
	s := &Store{dir: dir, log: log}
	if err := s.open(fs); err != nil {
		return nil, err
	}
	log.Info("llstore: opened", "dir", dir, "mint_floor", s.floor.Load())
	return s, nil
}

// open opens Pebble and loads the metadata.
func (s *Store) open(fs vfs.FS) (err error) {
	defer s.recoverFatal(&err)
	db, err := pebble.Open(s.dir, s.pebbleOptions(fs))
	if err != nil {
		return fmt.Errorf("llstore: opening pebble in %s: %w", s.dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		if !s.fatal.Load() {
			_ = db.Close()
		}
		return err
	}
	return nil
}

// pebbleOptions: Pebble's WAL on (Persist syncs it), a 64 MiB block cache
// and bloom filters (every write on a replica reads its key's copy first,
// and a new key's read must not touch every level's data blocks), 16 MiB
// memtables, one compaction at a time; Pebble's log lines and its
// background errors go to the store.
func (s *Store) pebbleOptions(fs vfs.FS) *pebble.Options {
	opts := &pebble.Options{
		CacheSize:                  64 << 20,
		MemTableSize:               16 << 20,
		CompactionConcurrencyRange: func() (int, int) { return 1, 1 },
		FormatMajorVersion:         pebble.FormatNewest,
		Logger:                     pebbleLogger{s},
		FS:                         fs,
		EventListener: &pebble.EventListener{
			// Pebble found a file damaged or missing. Its default is
			// Fatalf, from whatever goroutine found it.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				_ = s.fail(fmt.Errorf("%w: pebble found data corruption: %s", ErrCorrupt, info))
			},
			BackgroundError: s.backgroundError,
		},
	}
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10) // inherited by lower levels
	return opts
}

// backgroundError is Pebble's EventListener.BackgroundError: a flush or a
// compaction failed (a full disk, an I/O error, a directory removed or
// read-only). Pebble would retry a flush at once and forever, and hold
// every write once two memtables wait for it; none of these errors is
// cured by waiting, so the first one fails the store (as in internal/store).
func (s *Store) backgroundError(err error) {
	switch {
	case s.closing.Load():
		s.log.Warn("llstore: pebble background error while closing", "dir", s.dir, "err", err)
	case s.failure() != nil:
		s.log.Debug("llstore: pebble background error after the store failed", "dir", s.dir, "err", err)
	default:
		_ = s.fail(fmt.Errorf("pebble background work (flush or compaction): %w", err))
	}
}

// load checks the format and the bucket depth (writing both into a new
// database) and loads the mint floor.
func (s *Store) load() error {
	v, err := s.getRaw(keyFormat, "the format version")
	if err != nil {
		return err
	}
	if v == nil {
		return s.create()
	}
	if f, ok := decodeBE64(v); !ok {
		return fmt.Errorf("%w: %s: format version record is %d bytes, want 8", ErrCorrupt, s.dir, len(v))
	} else if f != formatVersion {
		return fmt.Errorf("llstore: %s has format version %d; this build reads only %d", s.dir, f, formatVersion)
	}
	if v, err = s.getRaw(keyDepth, "the bucket depth"); err != nil {
		return err
	}
	if v == nil {
		return fmt.Errorf("%w: %s: a format version record but no bucket depth record", ErrCorrupt, s.dir)
	}
	d, ok := decodeBE64(v)
	if !ok {
		return fmt.Errorf("%w: %s: bucket depth record is %d bytes, want 8", ErrCorrupt, s.dir, len(v))
	}
	if d != bucketDepth {
		return fmt.Errorf("llstore: %s buckets its keys at Merkle depth %d; this build uses %d (no re-bucketing yet)",
			s.dir, d, bucketDepth)
	}
	if v, err = s.getRaw(keyMintFloor, "the mint floor"); err != nil || v == nil {
		return err
	}
	floor, ok := decodeBE64(v)
	if !ok {
		return fmt.Errorf("%w: %s: mint floor record is %d bytes, want 8", ErrCorrupt, s.dir, len(v))
	}
	s.floor.Store(floor)
	return nil
}

// create marks a new database with the format version and the bucket
// depth; a database without a format version that holds anything else is
// refused.
func (s *Store) create() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("llstore: %s: %w", s.dir, err)
	}
	nonEmpty := it.First()
	k := bytes.Clone(it.Key())
	if err := it.Close(); err != nil {
		return s.readErr("the first key", err)
	}
	if nonEmpty {
		return fmt.Errorf("%w: %s: no format version record, but it holds key %x", ErrCorrupt, s.dir, k)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(keyFormat, be64(formatVersion), nil)
	_ = b.Set(keyDepth, be64(bucketDepth), nil)
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("llstore: %s: writing the format version: %w", s.dir, err)
	}
	return nil
}

// getRaw returns a copy of key's value, nil if absent.
func (s *Store) getRaw(key []byte, what string) ([]byte, error) {
	v, c, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.readErr(what, err)
	}
	defer c.Close()
	return append(make([]byte, 0, len(v)), v...), nil
}

// readErr wraps a Pebble read error; Pebble's corruption errors become ErrCorrupt.
func (s *Store) readErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s: reading %s: %w", ErrCorrupt, s.dir, what, err)
	}
	return fmt.Errorf("llstore: %s: reading %s: %w", s.dir, what, err)
}

// fail records the sticky failure (the first one wins and is logged) and
// returns it.
func (s *Store) fail(err error) error {
	err = fmt.Errorf("%w: %s: %w", ErrFailed, s.dir, err)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("llstore: failed", "dir", s.dir, "err", err)
	}
	return s.failure()
}

// failure returns the sticky failure, or nil.
func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// enter registers a call that uses the database; leave ends it. A failed
// store refuses the call with its failure.
func (s *Store) enter() error {
	s.life.Lock()
	defer s.life.Unlock()
	if err := s.failure(); err != nil {
		return err
	}
	if s.closed {
		return errClosed
	}
	s.users.Add(1)
	return nil
}

func (s *Store) leave() { s.users.Done() }

// Close waits for the calls under way and closes the store; later calls
// return an error. If the store failed, Close returns the failure; if it
// failed because Pebble stopped on an error it cannot undo (see
// pebbleLogger.Fatalf), Pebble may hold its locks, so Close neither waits
// nor closes it (the process should exit).
func (s *Store) Close() (err error) {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return errClosed
	}
	s.closed = true
	s.closing.Store(true)
	s.life.Unlock()
	if s.fatal.Load() {
		return fmt.Errorf("llstore: %s left open: %w", s.dir, s.failure())
	}
	s.users.Wait()
	defer s.recoverFatal(&err)
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("llstore: closing %s: %w", s.dir, err)
	}
	return s.failure()
}

// Get implements leaderless.Store: key's stored copy, and whether there is
// one. The Set does not alias the store's memory.
func (s *Store) Get(key []byte) (set vclock.Set, found bool, err error) {
	defer s.recoverFatal(&err)
	if err := s.enter(); err != nil {
		return vclock.Set{}, false, err
	}
	defer s.leave()
	v, err := s.getRaw(stateKey(key), "the copy of key "+quoteKey(key))
	if err != nil || v == nil {
		return vclock.Set{}, false, err
	}
	set, err = s.decodeState(key, v)
	if err != nil {
		return vclock.Set{}, false, err
	}
	return set, true, nil
}

func (s *Store) decodeState(key, v []byte) (vclock.Set, error) {
	set, err := decodeValue(v)
	if err != nil {
		return vclock.Set{}, fmt.Errorf("%w: %s: copy of key %s: %w", ErrCorrupt, s.dir, quoteKey(key), err)
	}
	return set, nil
}

// Bucket implements leaderless.Store: every stored key whose Merkle leaf
// (at leaderless.MerkleDepth) is b, in key order. One range scan.
func (s *Store) Bucket(b int) (items []leaderless.Item, err error) {
	defer s.recoverFatal(&err)
	if b < 0 || b >= numBuckets {
		return nil, fmt.Errorf("llstore: bucket %d out of range 0..%d", b, numBuckets-1)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	err = s.scanStates(bucketPrefix(b), bucketPrefix(b+1), func(it leaderless.Item) error {
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

// Each calls fn with every stored key and its copy, in storage order (by
// bucket, then key), until fn returns an error, which Each returns. The
// items do not alias the store's memory. fn may call the store's readers,
// not Close.
func (s *Store) Each(fn func(leaderless.Item) error) (err error) {
	defer s.recoverFatal(&err)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.scanStates([]byte{prefixState}, []byte{prefixHint}, fn)
}

// scanStates calls fn with each key state in [lo, hi), decoded and copied;
// fn's error ends the scan and is returned as is.
func (s *Store) scanStates(lo, hi []byte, fn func(leaderless.Item) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("llstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k, ok := splitStateKey(it.Key())
		if !ok {
			return fmt.Errorf("%w: %s: key state under Pebble key %x", ErrCorrupt, s.dir, it.Key())
		}
		k = bytes.Clone(k)
		v, err := it.ValueAndErr()
		if err != nil {
			return s.readErr("the copy of key "+quoteKey(k), err)
		}
		set, err := s.decodeState(k, bytes.Clone(v))
		if err != nil {
			return err
		}
		if err := fn(leaderless.Item{Key: k, Set: set}); err != nil {
			return err
		}
	}
	return s.readErr("key states", it.Error())
}

// Count returns the number of stored keys: every key with a copy, a copy
// holding only tombstones included (the core keeps those until it collects
// them). It reads every key (no value is decoded).
func (s *Store) Count() (n int, err error) {
	defer s.recoverFatal(&err)
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixState}, UpperBound: []byte{prefixHint}})
	if err != nil {
		return 0, fmt.Errorf("llstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Error(); err != nil {
		return 0, s.readErr("key states", err)
	}
	return n, nil
}

// Hints returns every stored hint, ordered by home replica (shorter ids
// first), then key. They do not alias the store's memory.
func (s *Store) Hints() (hints []leaderless.Hint, err error) {
	defer s.recoverFatal(&err)
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHint}, UpperBound: []byte{prefixEnd}})
	if err != nil {
		return nil, fmt.Errorf("llstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		home, k, ok := splitHintKey(it.Key())
		if !ok {
			return nil, fmt.Errorf("%w: %s: hint under Pebble key %x", ErrCorrupt, s.dir, it.Key())
		}
		k = bytes.Clone(k)
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, s.readErr(fmt.Sprintf("the hint for %q of key %s", home, quoteKey(k)), err)
		}
		set, err := decodeValue(bytes.Clone(v))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: hint for %q of key %s: %w", ErrCorrupt, s.dir, home, quoteKey(k), err)
		}
		hints = append(hints, leaderless.Hint{For: home, Key: k, Set: set})
	}
	if err := it.Error(); err != nil {
		return nil, s.readErr("hints", err)
	}
	return hints, nil
}

// MintFloor returns the stored mint floor: the highest dot counter this
// node's actor drew, as of the last Persist (0: none yet).
func (s *Store) MintFloor() (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	return s.floor.Load(), nil
}

// Persist writes what rd asks to keep, in ONE atomic Pebble batch fsynced
// before it returns: rd.Keys (a put of Set, or a delete when Drop),
// rd.DoneHints (deletes of (For, Key)), rd.Hints (puts; one per (For,
// Key), a later one replacing it), and rd.MintFloor if it is above the
// stored one. Readers see all of it once Persist returns, and none of it
// before. rd.Messages and rd.Results are ignored. Nothing to write (an
// empty Ready, or a mint floor not above the stored one): no batch.
//
// A hint's deletes go before its puts, so that a hint handed over and then
// stored again within one Ready survives (see DESIGN.md). Within rd.Keys
// and within rd.Hints a later write of the same key wins.
//
// Any failure is sticky: a key or hint Persist refuses (empty key, key
// longer than leaderless.MaxKeyLen, home id not 1..vclock.MaxNodeIDLen
// bytes, a Set that would not decode; nothing is written then) or a batch
// that fails to commit fails the store, and every later call returns the
// error.
func (s *Store) Persist(rd *leaderless.Ready) (err error) {
	defer s.recoverFatal(&err)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.failure(); err != nil {
		return err
	}
	floor := rd.MintFloor > s.floor.Load()
	if len(rd.Keys) == 0 && len(rd.Hints) == 0 && len(rd.DoneHints) == 0 && !floor {
		return nil
	}
	if err := check(rd); err != nil {
		return s.fail(fmt.Errorf("persist refused: %w", err))
	}
	b := s.db.NewBatch()
	defer b.Close()
	var k, v []byte // scratch: the batch copies keys and values
	for i := range rd.Keys {
		w := &rd.Keys[i]
		k = appendStateKey(k[:0], w.Key)
		if w.Drop {
			_ = b.Delete(k, nil)
		} else {
			v = appendValue(v[:0], w.Set)
			_ = b.Set(k, v, nil)
		}
	}
	for i := range rd.DoneHints {
		h := &rd.DoneHints[i]
		_ = b.Delete(appendHintKey(k[:0], h.For, h.Key), nil)
	}
	for i := range rd.Hints {
		h := &rd.Hints[i]
		k = appendHintKey(k[:0], h.For, h.Key)
		v = appendValue(v[:0], h.Set)
		_ = b.Set(k, v, nil)
	}
	if floor {
		_ = b.Set(keyMintFloor, be64(rd.MintFloor), nil)
	}
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return s.fail(fmt.Errorf("a batch failed to commit: %w", err))
	}
	if floor {
		s.floor.Store(rd.MintFloor)
	}
	return nil
}

// check refuses what the format cannot hold, or what would not decode
// when read back: without it, a Set that breaks its invariants would be
// written and then reported as corruption at every read of its key.
func check(rd *leaderless.Ready) error {
	for i := range rd.Keys {
		w := &rd.Keys[i]
		if n := len(w.Key); n == 0 || n > leaderless.MaxKeyLen {
			return fmt.Errorf("key %d of the batch has %d bytes (1..%d)", i, n, leaderless.MaxKeyLen)
		}
		if !w.Drop {
			if err := validSet(w.Set); err != nil {
				return fmt.Errorf("key %s: %w", quoteKey(w.Key), err)
			}
		}
	}
	hint := func(what string, i int, h *leaderless.Hint) error {
		if n := len(h.Key); n == 0 || n > leaderless.MaxKeyLen {
			return fmt.Errorf("%s %d of the batch has a key of %d bytes (1..%d)", what, i, n, leaderless.MaxKeyLen)
		}
		if n := len(h.For); n == 0 || n > vclock.MaxNodeIDLen {
			return fmt.Errorf("%s %d of the batch is for a node id of %d bytes (1..%d)", what, i, n, vclock.MaxNodeIDLen)
		}
		return nil
	}
	for i := range rd.Hints {
		h := &rd.Hints[i]
		if err := hint("hint", i, h); err != nil {
			return err
		}
		if err := validSet(h.Set); err != nil {
			return fmt.Errorf("hint for %q of key %s: %w", h.For, quoteKey(h.Key), err)
		}
	}
	for i := range rd.DoneHints {
		if err := hint("done hint", i, &rd.DoneHints[i]); err != nil {
			return err
		}
	}
	return nil
}

// validSet checks what vclock.DecodeSet checks, without encoding: the
// Set's invariants and its times (a negative wall time does not decode).
func validSet(s vclock.Set) error {
	if err := s.Validate(); err != nil {
		return err
	}
	for _, x := range s.Siblings {
		if x.Time.Wall < 0 {
			return fmt.Errorf("sibling %v has a negative wall time", x.Dot)
		}
	}
	return nil
}

// fatalPanic is what pebbleLogger.Fatalf panics with on a goroutine inside
// one of the store's calls; the call recovers it (recoverFatal) and returns
// the sticky failure.
type fatalPanic struct {
	s   *Store
	msg string
}

// recoverFatal, deferred by each of the store's calls into Pebble (the
// ones in recovering), turns a fatalPanic of this store into the sticky
// failure, returned through err. Any other panic goes on.
func (s *Store) recoverFatal(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(fatalPanic); !ok || f.s != s {
		panic(r)
	}
	*err = s.failure()
}

// recovering names the functions that defer recoverFatal: a Fatalf with
// one of them on its goroutine's stack may panic.
var recovering = func() map[string]bool {
	pkg := reflect.TypeFor[Store]().PkgPath()
	m := map[string]bool{}
	for _, name := range []string{"open", "Close", "Get", "Bucket", "Each", "Count", "Hints", "Persist"} {
		m[pkg+".(*Store)."+name] = true
	}
	return m
}()

// inStoreCall reports whether the calling goroutine is inside a function
// that recovers a fatalPanic.
func inStoreCall() bool {
	pcs := make([]uintptr, 1024)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if recovering[f.Function] {
			return true
		}
		if !more {
			return false
		}
	}
}

// pebbleLogger sends Pebble's log lines to the store's logger.
type pebbleLogger struct{ s *Store }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.s.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.s.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on an error it cannot undo, and it must not
// return: a broken invariant, a failed WAL write or sync (on the goroutine
// of the Persist that committed), a failed MANIFEST write. A crash would
// take the node down with a stack trace in place of the message that
// names the file, so the store fails instead (sticky), and then:
//   - on a goroutine inside one of the store's calls (Persist, Get, ...),
//     Fatalf panics and that call recovers and returns the failure;
//   - on one of Pebble's own goroutines (a flush, a compaction), nothing
//     can recover, so the goroutine waits forever (it may hold Pebble's
//     locks, which is also why Close then leaves Pebble open).
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := "pebble: fatal: " + fmt.Sprintf(format, args...)
	p.s.log.Error(msg, "dir", p.s.dir, "stack", string(debug.Stack()))
	p.s.fatal.Store(true)
	_ = p.s.fail(errors.New(msg))
	if inStoreCall() {
		panic(fatalPanic{s: p.s, msg: msg})
	}
	select {}
}
