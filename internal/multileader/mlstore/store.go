package mlstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/vclock"
)

// ErrCorrupt: a stored record does not decode (or Pebble found a damaged
// file). The error names the record.
var ErrCorrupt = errors.New("mlstore: corrupt data")

// errClosed: a call after Close.
var errClosed = errors.New("mlstore: store is closed")

// DefaultMaxConflicts is the conflict log's bound when Config.MaxConflicts is 0.
const DefaultMaxConflicts = 100000

// Config configures a Store.
type Config struct {
	// MaxConflicts bounds the conflict log: beyond it the oldest records
	// are dropped (and counted). 0 = DefaultMaxConflicts (100000).
	MaxConflicts int
	Logger       *slog.Logger // nil: discard
}

// Store is one node's durable multi-leader state. It implements
// multileader.Store and multileader.Log.
type Store struct {
	dir string
	cfg Config
	log *slog.Logger
	db  *pebble.DB

	lastSeq atomic.Uint64 // the own stream's last seq, as of the last Persist

	// life guards closed; users counts the calls using db.
	life   sync.Mutex
	closed bool
	users  sync.WaitGroup

	// writeMu serializes Persist and guards the fields below.
	writeMu      sync.Mutex
	lastConflict uint64 // the highest conflict seq given out (dropped if none)
	dropped      uint64 // conflict records dropped: those present are dropped+1..lastConflict
	failed       error  // sticky: a batch that failed to commit

	// states caches the encoded states of recently written keys, filled
	// only by Persist after its batch committed (never by a read, which
	// could race a Persist and cache a superseded state): every write on
	// every node reads its key's state first, and Pebble's read path is
	// most of a write's cost without it.
	statesMu sync.RWMutex
	states   map[string][]byte
}

// stateCacheKeys bounds the state cache; beyond it, an eighth of the
// entries (Go's map order: arbitrary ones) is dropped.
const stateCacheKeys = 1 << 16

// Open opens or creates the store in dir (created if missing).
func Open(dir string, cfg Config) (*Store, error) {
	if cfg.MaxConflicts < 0 {
		return nil, fmt.Errorf("mlstore: Config.MaxConflicts %d: want >= 0 (0: %d)", cfg.MaxConflicts, DefaultMaxConflicts)
	}
	if cfg.MaxConflicts == 0 {
		cfg.MaxConflicts = DefaultMaxConflicts
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mlstore: creating %s: %w", dir, err)
	}
	s := &Store{dir: dir, cfg: cfg, log: log}
	db, err := pebble.Open(dir, s.pebbleOptions())
	if err != nil {
		return nil, fmt.Errorf("mlstore: opening pebble in %s: %w", dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	log.Info("mlstore: opened", "dir", dir, "seq", s.lastSeq.Load(),
		"conflicts", s.lastConflict-s.dropped, "dropped", s.dropped)
	return s, nil
}

// pebbleOptions keeps Pebble modest but fast to read: Pebble's WAL on
// (Persist syncs it), a 64 MiB block cache and bloom filters (every write
// on every node reads its key's state first, and a new key's read must
// not touch every level's data blocks), 16 MiB memtables, one compaction
// at a time.
func (s *Store) pebbleOptions() *pebble.Options {
	opts := &pebble.Options{
		CacheSize:                  64 << 20,
		MemTableSize:               16 << 20,
		CompactionConcurrencyRange: func() (int, int) { return 1, 1 },
		FormatMajorVersion:         pebble.FormatNewest,
		Logger:                     pebbleLogger{s.log},
	}
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10) // inherited by lower levels
	return opts
}

// load checks the format (writing it into a new database) and loads the
// stream's last seq and the conflict log's bounds; it trims the conflict log
// if MaxConflicts shrank.
func (s *Store) load() error {
	v, err := s.getRaw(keyFormat, "format version")
	if err != nil {
		return err
	}
	if v == nil {
		if err := s.create(); err != nil {
			return err
		}
	} else if f, ok := decodeBE64(v); !ok {
		return fmt.Errorf("%w: %s: format version record is %d bytes, want 8", ErrCorrupt, s.dir, len(v))
	} else if f != formatVersion {
		return fmt.Errorf("mlstore: %s has format version %d; this build reads only %d", s.dir, f, formatVersion)
	}
	last, err := s.loadLastSeq()
	if err != nil {
		return err
	}
	s.lastSeq.Store(last)
	if err := s.loadConflictBounds(); err != nil {
		return err
	}
	if s.lastConflict-s.dropped > uint64(s.cfg.MaxConflicts) {
		b := s.db.NewBatch()
		defer b.Close()
		keepFrom := s.trim(b, s.lastConflict)
		if err := s.db.Apply(b, pebble.Sync); err != nil {
			return fmt.Errorf("mlstore: %s: trimming the conflict log: %w", s.dir, err)
		}
		s.log.Info("mlstore: conflict log trimmed to Config.MaxConflicts", "dir", s.dir,
			"max", s.cfg.MaxConflicts, "dropped", keepFrom-1-s.dropped)
		s.dropped = keepFrom - 1
	}
	return nil
}

// create marks a new database with the format version; a database without
// one that holds anything else is refused.
func (s *Store) create() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	nonEmpty := it.First()
	k := bytes.Clone(it.Key())
	if err := it.Close(); err != nil {
		return s.readErr("the first key", err)
	}
	if nonEmpty {
		return fmt.Errorf("%w: %s: no format version record, but it holds key %x", ErrCorrupt, s.dir, k)
	}
	if err := s.db.Set(keyFormat, be64(formatVersion), pebble.Sync); err != nil {
		return fmt.Errorf("mlstore: %s: writing the format version: %w", s.dir, err)
	}
	return nil
}

// loadLastSeq reads the last stream entry and checks that it decodes.
func (s *Store) loadLastSeq() (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixState}})
	if err != nil {
		return 0, fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, s.readErr("the stream's last entry", it.Error())
	}
	seq, ok := keySeq(it.Key())
	if !ok {
		return 0, fmt.Errorf("%w: %s: stream key %x", ErrCorrupt, s.dir, it.Key())
	}
	if _, err := s.decodeEntry(seq, it.Value()); err != nil {
		return 0, err
	}
	return seq, nil
}

// loadConflictBounds reads the dropped count and the conflict log's last
// seq, and checks that the first record present follows the dropped ones.
func (s *Store) loadConflictBounds() error {
	v, err := s.getRaw(keyDropped, "dropped conflicts")
	if err != nil {
		return err
	}
	if v != nil {
		d, ok := decodeBE64(v)
		if !ok {
			return fmt.Errorf("%w: %s: dropped-conflicts record is %d bytes, want 8", ErrCorrupt, s.dir, len(v))
		}
		s.dropped = d
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixConflict}, UpperBound: []byte{prefixEnd}})
	if err != nil {
		return fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	s.lastConflict = s.dropped
	if !it.First() {
		return s.readErr("the conflict log", it.Error())
	}
	first, ok1 := keySeq(it.Key())
	it.Last()
	last, ok2 := keySeq(it.Key())
	if !ok1 || !ok2 || first != s.dropped+1 || last < first {
		return fmt.Errorf("%w: %s: conflict log holds records %d..%d (keys ok: %v, %v) after %d dropped",
			ErrCorrupt, s.dir, first, last, ok1, ok2, s.dropped)
	}
	s.lastConflict = last
	return it.Error()
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
	return fmt.Errorf("mlstore: %s: reading %s: %w", s.dir, what, err)
}

// enter registers a call that uses the database; leave ends it.
func (s *Store) enter() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return errClosed
	}
	s.users.Add(1)
	return nil
}

func (s *Store) leave() { s.users.Done() }

// Close waits for the calls under way and closes the store. Later calls
// return an error.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return errClosed
	}
	s.closed = true
	s.life.Unlock()
	s.users.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("mlstore: closing %s: %w", s.dir, err)
	}
	return nil
}

// Get implements multileader.Store: key's durable state (zero KeyState if absent).
func (s *Store) Get(key string) (multileader.KeyState, error) {
	if err := s.enter(); err != nil {
		return multileader.KeyState{}, err
	}
	defer s.leave()
	s.statesMu.RLock()
	v, ok := s.states[key]
	s.statesMu.RUnlock()
	if !ok {
		var err error
		if v, err = s.getRaw(stringKey(prefixState, key), "the state of a key"); err != nil {
			return multileader.KeyState{}, fmt.Errorf("%w (key %q)", err, key)
		}
		if v == nil {
			return multileader.KeyState{}, nil
		}
	}
	return s.decodeStateRecord(key, v)
}

func (s *Store) decodeStateRecord(key string, v []byte) (multileader.KeyState, error) {
	st, err := decodeState(v)
	if err != nil {
		return multileader.KeyState{}, fmt.Errorf("%w: %s: state of key %q: %w", ErrCorrupt, s.dir, key, err)
	}
	return st, nil
}

// LastSeq implements multileader.Log: the own stream's last seq (0: empty).
func (s *Store) LastSeq() uint64 { return s.lastSeq.Load() }

// Entries implements multileader.Log: the own stream's entries with
// lo <= Seq <= hi, all of them, in order. hi beyond LastSeq is an error.
func (s *Store) Entries(lo, hi uint64) ([]multileader.Entry, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	lo = max(lo, 1)
	if lo > hi {
		return nil, nil
	}
	if last := s.LastSeq(); hi > last {
		return nil, fmt.Errorf("mlstore: entries %d..%d asked for, the stream ends at %d", lo, hi, last)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: seqKey(prefixStream, lo), UpperBound: seqKey(prefixStream, hi+1)})
	if err != nil {
		return nil, fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	out := make([]multileader.Entry, 0, min(hi-lo+1, 1024))
	want := lo
	for ok := it.First(); ok; ok = it.Next() {
		seq, _ := keySeq(it.Key())
		if seq != want {
			return nil, fmt.Errorf("%w: %s: stream entry %d missing (next is %d)", ErrCorrupt, s.dir, want, seq)
		}
		e, err := s.decodeEntry(seq, it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		want++
	}
	if err := it.Error(); err != nil {
		return nil, s.readErr(fmt.Sprintf("stream entries %d..%d", lo, hi), err)
	}
	if want != hi+1 {
		return nil, fmt.Errorf("%w: %s: stream entry %d missing (the stream ends at %d)", ErrCorrupt, s.dir, want, s.LastSeq())
	}
	return out, nil
}

// decodeEntry decodes the stream entry stored under seq.
func (s *Store) decodeEntry(seq uint64, v []byte) (multileader.Entry, error) {
	e, err := multileader.DecodeEntry(v)
	if err == nil && e.Seq != seq {
		err = fmt.Errorf("it holds seq %d", e.Seq)
	}
	if err != nil {
		return multileader.Entry{}, fmt.Errorf("%w: %s: stream entry %d: %w", ErrCorrupt, s.dir, seq, err)
	}
	return e, nil
}

// Applied returns the durable positions, origin -> seq (for multileader.Config.Applied).
func (s *Store) Applied() (map[string]uint64, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPosition}, UpperBound: []byte{prefixConflict}})
	if err != nil {
		return nil, fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	out := map[string]uint64{}
	for ok := it.First(); ok; ok = it.Next() {
		origin := string(it.Key()[1:])
		seq, ok := decodeBE64(it.Value())
		if !ok {
			return nil, fmt.Errorf("%w: %s: position of origin %q is %d bytes, want 8", ErrCorrupt, s.dir, origin, len(it.Value()))
		}
		out[origin] = seq
	}
	if err := it.Error(); err != nil {
		return nil, s.readErr("the positions", err)
	}
	return out, nil
}

// Record is one conflict in the conflict log, numbered from 1.
type Record struct {
	Seq uint64
	multileader.Conflict
}

// Conflicts returns up to limit records with Seq > after, oldest first, and
// how many records were dropped so far to respect MaxConflicts (limit <= 0:
// no limit). The records and the count are of one moment.
func (s *Store) Conflicts(after uint64, limit int) ([]Record, uint64, error) {
	if err := s.enter(); err != nil {
		return nil, 0, err
	}
	defer s.leave()
	snap := s.db.NewSnapshot()
	defer snap.Close()
	var dropped uint64
	v, c, err := snap.Get(keyDropped)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, 0, s.readErr("dropped conflicts", err)
	default:
		d, ok := decodeBE64(v)
		c.Close()
		if !ok {
			return nil, 0, fmt.Errorf("%w: %s: dropped-conflicts record is %d bytes, want 8", ErrCorrupt, s.dir, len(v))
		}
		dropped = d
	}
	if after == ^uint64(0) {
		return nil, dropped, nil
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: seqKey(prefixConflict, after+1), UpperBound: []byte{prefixEnd}})
	if err != nil {
		return nil, 0, fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	var out []Record
	for ok := it.First(); ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		seq, ok := keySeq(it.Key())
		if !ok {
			return nil, 0, fmt.Errorf("%w: %s: conflict key %x", ErrCorrupt, s.dir, it.Key())
		}
		cf, err := decodeConflict(bytes.Clone(it.Value()))
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: conflict record %d: %w", ErrCorrupt, s.dir, seq, err)
		}
		out = append(out, Record{Seq: seq, Conflict: cf})
	}
	if err := it.Error(); err != nil {
		return nil, 0, s.readErr("the conflict log", err)
	}
	return out, dropped, nil
}

// Scan calls fn for keys >= start in key order with their state, until fn
// returns false or limit keys (limit <= 0: no limit). The keys and states
// are of one moment (a Pebble iterator). fn must not call Close.
func (s *Store) Scan(start string, limit int, fn func(key string, st multileader.KeyState) bool) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: stringKey(prefixState, start), UpperBound: []byte{prefixPosition}})
	if err != nil {
		return fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok && (limit <= 0 || n < limit); ok = it.Next() {
		key := string(it.Key()[1:])
		st, err := s.decodeStateRecord(key, bytes.Clone(it.Value()))
		if err != nil {
			return err
		}
		n++
		if !fn(key, st) {
			return nil
		}
	}
	return s.readErr("key states", it.Error())
}

// Count returns how many keys have a live value (a non-deleted sibling) or a
// non-zero counter. It reads every key's state.
func (s *Store) Count() (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixState}, UpperBound: []byte{prefixPosition}})
	if err != nil {
		return 0, fmt.Errorf("mlstore: %s: %w", s.dir, err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		st, err := s.decodeStateRecord(string(it.Key()[1:]), it.Value()) // not kept: may alias the iterator
		if err != nil {
			return 0, err
		}
		if live(st) {
			n++
		}
	}
	return n, s.readErr("key states", it.Error())
}

func live(st multileader.KeyState) bool {
	for _, x := range st.Reg.Siblings {
		if !x.Deleted {
			return true
		}
	}
	return st.Ctr.Value() != 0
}

// Persist writes everything durable in rd in ONE atomic, fsynced Pebble
// batch: rd.Entries (the own stream; each must have Seq == LastSeq()+1, +2,
// ... else an error and nothing written), rd.Changes (key states),
// rd.Applied (positions), rd.Conflicts (appended to the conflict log with
// the next conflict sequence numbers; the log trimmed to MaxConflicts in the
// same batch). After it returns nil, Get/Entries/LastSeq/Applied/Conflicts
// see it. rd.Messages and rd.Results are ignored.
//
// A record that would not decode (an invalid entry, state or position) is
// refused before anything is written. After a failed commit every later
// Persist returns its error.
func (s *Store) Persist(rd *multileader.Ready) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	if len(rd.Entries) == 0 && len(rd.Changes) == 0 && len(rd.Applied) == 0 && len(rd.Conflicts) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	last := s.LastSeq()
	states := make([][]byte, len(rd.Changes)) // the changes' encodings, for the cache
	if err := s.batchRecords(b, rd, last, states); err != nil {
		return err
	}
	keepFrom := s.dropped + 1
	if len(rd.Conflicts) > 0 {
		keepFrom = s.trim(b, s.lastConflict+uint64(len(rd.Conflicts)))
		for i := range rd.Conflicts {
			if seq := s.lastConflict + 1 + uint64(i); seq >= keepFrom {
				_ = b.Set(seqKey(prefixConflict, seq), appendConflict(nil, &rd.Conflicts[i]), nil)
			}
		}
	}
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		s.failed = fmt.Errorf("mlstore: %s: a batch failed to commit, the store must be reopened: %w", s.dir, err)
		s.log.Error("mlstore: persist failed", "dir", s.dir, "err", err)
		return s.failed
	}
	s.lastSeq.Store(last + uint64(len(rd.Entries)))
	s.lastConflict += uint64(len(rd.Conflicts))
	s.cacheStates(rd.Changes, states)
	if keepFrom-1 > s.dropped {
		s.log.Debug("mlstore: conflict records dropped", "dir", s.dir, "dropped", keepFrom-1-s.dropped, "max", s.cfg.MaxConflicts)
		s.dropped = keepFrom - 1
	}
	return nil
}

// batchRecords checks and adds rd's entries, changes and positions to b,
// and checks its conflicts. Entries and key states, the hot path (every
// write, on every node), are not decoded again: the core only produces
// valid ones, and the codecs' round trips are fuzzed
// (multileader.FuzzDecodeEntry, vclock's set and counter targets). A
// conflict record (rare) is checked by decoding it.
func (s *Store) batchRecords(b *pebble.Batch, rd *multileader.Ready, last uint64, states [][]byte) error {
	for i := range rd.Entries {
		e := &rd.Entries[i]
		if want := last + 1 + uint64(i); e.Seq != want {
			return fmt.Errorf("mlstore: entry %d of the batch has seq %d, want %d (the stream ends at %d)", i, e.Seq, want, last)
		}
		_ = b.Set(seqKey(prefixStream, e.Seq), multileader.AppendEntry(nil, e), nil)
	}
	for i := range rd.Changes {
		c := &rd.Changes[i]
		v := appendState(nil, &c.State)
		states[i] = v
		_ = b.Set(stringKey(prefixState, c.Key), v, nil)
	}
	for _, p := range rd.Applied {
		if p.Origin == "" || len(p.Origin) > vclock.MaxNodeIDLen {
			return fmt.Errorf("mlstore: position of origin %q: want 1..%d bytes", p.Origin, vclock.MaxNodeIDLen)
		}
		_ = b.Set(stringKey(prefixPosition, p.Origin), be64(p.Seq), nil)
	}
	for i := range rd.Conflicts {
		if _, err := decodeConflict(appendConflict(nil, &rd.Conflicts[i])); err != nil {
			return fmt.Errorf("mlstore: conflict %d of the batch (key %q): %w", i, rd.Conflicts[i].Key, err)
		}
	}
	return nil
}

// cacheStates records the committed states of changes (encoded) in the
// state cache.
func (s *Store) cacheStates(changes []multileader.Change, states [][]byte) {
	if len(changes) == 0 {
		return
	}
	s.statesMu.Lock()
	defer s.statesMu.Unlock()
	if s.states == nil {
		s.states = make(map[string][]byte)
	}
	if len(s.states)+len(changes) > stateCacheKeys {
		drop := max(stateCacheKeys/8, len(s.states)+len(changes)-stateCacheKeys)
		for k := range s.states {
			if drop == 0 {
				break
			}
			delete(s.states, k)
			drop--
		}
	}
	for i, c := range changes {
		s.states[c.Key] = states[i]
	}
}

// trim adds to b the deletions that bound the conflict log to MaxConflicts
// once it ends at newLast, and the new dropped count; it returns the first
// seq kept. Few records go one by one, many by a range deletion.
func (s *Store) trim(b *pebble.Batch, newLast uint64) (keepFrom uint64) {
	keepFrom = s.dropped + 1
	if newLast-s.dropped > uint64(s.cfg.MaxConflicts) {
		keepFrom = newLast - uint64(s.cfg.MaxConflicts) + 1
	}
	end := min(keepFrom, s.lastConflict+1) // records present below keepFrom: [dropped+1, end)
	switch {
	case end <= s.dropped+1:
	case end-(s.dropped+1) <= 64:
		for seq := s.dropped + 1; seq < end; seq++ {
			_ = b.Delete(seqKey(prefixConflict, seq), nil)
		}
	default:
		_ = b.DeleteRange(seqKey(prefixConflict, s.dropped+1), seqKey(prefixConflict, end), nil)
	}
	if keepFrom-1 != s.dropped {
		_ = b.Set(keyDropped, be64(keepFrom-1), nil)
	}
	return keepFrom
}

// pebbleLogger sends Pebble's log lines to the store's logger.
type pebbleLogger struct{ log *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf must not return (Pebble's contract): a broken invariant or a
// failed MANIFEST write inside Pebble.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := "pebble: fatal: " + fmt.Sprintf(format, args...)
	p.log.Error(msg)
	panic(msg)
}
