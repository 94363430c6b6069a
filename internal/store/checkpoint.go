package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Checkpoints: the store's whole state as a directory of Pebble files, for a
// follower whose next entry the leader has compacted away (see DESIGN.md,
// "Checkpoints"). Checkpoint makes one from the live database with hard
// links; Install switches the store to one received from a peer.

// checkpointAttempts is how many times Checkpoint tries without holding Apply
// back for the whole flush before it does hold it (see Checkpoint).
const checkpointAttempts = 2

// errSimulatedCrash is returned at a crash point set by a test (crashAt).
var errSimulatedCrash = errors.New("store: simulated crash")

// crashPoint returns errSimulatedCrash if a test asked the store to stop at
// step, as a crash there would.
func (s *Store) crashPoint(step string) error {
	if s.crashAt != "" && s.crashAt == step {
		return fmt.Errorf("%w at %q", errSimulatedCrash, step)
	}
	return nil
}

// Checkpoint writes a consistent copy of the store into dir (which must not
// exist; its parent must, on the same file system as the store for hard
// links to be used) and returns the applied index and term it holds: every
// entry applied before the call, and perhaps a few more. The copy is a Pebble
// database of hard-linked sstables and a new MANIFEST, with the applied
// index, term and format metadata in it; Install on another store switches to
// it. The caller removes dir when done.
//
// Apply waits only while the write buffer is written into Pebble and the
// memtable is handed to a flush (as for View); the flush and the links run
// beside it. The database then holds the applied state as of that moment, or
// later if Pebble flushed more meanwhile. A later flush can, rarely, catch a
// drain of the write buffer between two of its batches (keys newer than the
// applied index): the copy is then discarded and taken again, and the last
// attempt holds Apply back until it is done.
func (s *Store) Checkpoint(dir string) (index, term uint64, err error) {
	for attempt := 1; ; attempt++ {
		hold := attempt > checkpointAttempts
		index, term, retry, err := s.checkpointOnce(dir, hold)
		if !retry || hold {
			return index, term, err
		}
		s.log.Info("store: checkpoint caught a drain of the write buffer in the middle; taking it again", "dir", dir)
	}
}

// checkpointOnce takes one checkpoint. retry is set when the copy held a
// drain cut in the middle (it was removed). hold keeps writeMu, and so Apply,
// until the copy is made.
func (s *Store) checkpointOnce(dir string, hold bool) (index, term uint64, retry bool, err error) {
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		return 0, 0, false, fmt.Errorf("%w: checkpoint directory %s exists already (or cannot be checked: %v)", ErrInvalidArg, dir, err)
	}
	s.writeMu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			s.writeMu.Unlock()
		}
	}
	defer unlock()
	if err := s.failure(); err != nil {
		return 0, 0, false, err
	}
	h, err := s.acquire()
	if err != nil {
		return 0, 0, false, err
	}
	defer h.release()
	if err := s.syncBufLocked(); err != nil {
		return 0, 0, false, err
	}
	release := s.pebbleFS().holdPacing() // the caller waits for this flush
	defer release()
	// AsyncFlush hands the memtable, which now holds every applied batch,
	// to a flush at once: batches applied after this go to the next one.
	done, err := h.db.AsyncFlush()
	if err != nil {
		return 0, 0, false, s.fail("checkpoint: flush", err)
	}
	if !hold {
		unlock()
	}
	select {
	case <-done:
	case <-s.failedCh:
	}
	if err := s.failure(); err != nil {
		return 0, 0, false, err
	}
	if err := h.db.Checkpoint(dir); err != nil {
		return 0, 0, false, fmt.Errorf("store: checkpoint into %s: %w", dir, err)
	}
	m, err := readCheckpoint(dir)
	if err == nil && m.drainTo > m.index {
		return 0, 0, true, errors.Join(fmt.Errorf("store: checkpoint %s caught a drain cut short", dir), os.RemoveAll(dir))
	}
	if err != nil {
		return 0, 0, false, errors.Join(err, os.RemoveAll(dir))
	}
	if !hold {
		s.log.Debug("store: checkpoint", "dir", dir, "index", m.index, "term", m.term)
	}
	return m.index, m.term, false, nil
}

// checkpointMeta is what readCheckpoint found in a checkpoint's metadata.
type checkpointMeta struct {
	index, term uint64
	drainTo     uint64 // a drain cut short was bringing the data to this index (0: none)
	conf        []byte // the configuration stored with the data (nil: none)
}

// CheckpointConf returns the cluster configuration stored in the checkpoint
// in dir (see Conf): the one in effect at the checkpoint's applied index, or
// nil if the data never held one.
func CheckpointConf(dir string) ([]byte, error) {
	m, err := readCheckpoint(dir)
	return m.conf, err
}

// readCheckpoint opens the Pebble database in dir read-only and reads its
// metadata: the format version (checked), the applied index and term, and
// the record of a drain cut short. It uses none of the store's hooks, so a
// damaged directory from a peer gives an error and never fails the store.
func readCheckpoint(dir string) (m checkpointMeta, err error) {
	// Pebble reports some damage through Logger.Fatalf; ours panics, and
	// the panic (on this goroutine) becomes an error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: checkpoint %s: %v", ErrCorrupt, dir, r)
		}
	}()
	opts := &pebble.Options{
		ReadOnly:         true,
		ErrorIfNotExists: true,
		FS:               vfs.Default,
		Logger:           quietLogger{},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return m, fmt.Errorf("%w: checkpoint %s does not open as a database: %w", ErrCorrupt, dir, err)
	}
	defer db.Close()
	m.index, m.term, err = readMeta(db, dir)
	if err != nil {
		return m, err
	}
	if m.drainTo, err = readDrain(db, dir); err != nil {
		return m, err
	}
	v, closer, err := db.Get(metaKeyConf)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return m, nil
	case err != nil:
		return m, fmt.Errorf("%w: checkpoint %s: reading the configuration: %w", ErrCorrupt, dir, err)
	}
	m.conf = append([]byte(nil), v...)
	closer.Close()
	return m, nil
}

// CheckpointLookup reads keys from the checkpoint in dir (read-only, with
// none of the store's hooks): for each, its value and version (the index
// that last set it), or found false. A follower uses it to tell which of
// the log entries a snapshot replaces are in the snapshot's state.
func CheckpointLookup(dir string, keys [][]byte) (values [][]byte, versions []uint64, found []bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: checkpoint %s: %v", ErrCorrupt, dir, r)
		}
	}()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, ErrorIfNotExists: true, FS: vfs.Default, Logger: quietLogger{}})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: checkpoint %s does not open as a database: %w", ErrCorrupt, dir, err)
	}
	defer db.Close()
	values, versions, found = make([][]byte, len(keys)), make([]uint64, len(keys)), make([]bool, len(keys))
	for i, k := range keys {
		if values[i], versions[i], found[i], err = get(db, k); err != nil {
			return nil, nil, nil, err
		}
	}
	return values, versions, found, nil
}

// quietLogger drops Pebble's log lines while a checkpoint is read, and turns
// Fatalf into a panic that readCheckpoint recovers.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// Install replaces the store's whole state with the checkpoint in dir (made
// by Checkpoint, typically on another node, and received intact), atomically:
// after a crash at any point the store reopens either in its old state or in
// the checkpoint's, and AppliedIndex then says which.
//
// It checks that dir opens as a database of a format this build reads, with
// an applied index and term and no drain cut short; a checkpoint below the
// applied index gives ErrStaleSnapshot. Then it fsyncs dir's files and dir,
// renames dir into the store directory as the next db-NNNNNN (so dir must be
// on the store's file system, and is gone afterwards), opens it, and points
// CURRENT at it (the atomic step, as in Import). On an error before that
// step, dir is left where it was if it can be, and the store is unchanged.
// Apply waits while Install runs. Afterwards AppliedIndex and DurableIndex
// are the checkpoint's index.
func (s *Store) Install(dir string) (index, term uint64, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.failure(); err != nil {
		return 0, 0, err
	}
	s.mu.RLock()
	closed, cur := s.closed, s.h
	s.mu.RUnlock()
	if closed {
		return 0, 0, ErrClosed
	}
	// The applied state stays whole in the current database if Install fails.
	if err := s.syncBufLocked(); err != nil {
		return 0, 0, err
	}
	m, err := readCheckpoint(dir)
	if err != nil {
		return 0, 0, err
	}
	if m.drainTo > m.index {
		return 0, 0, fmt.Errorf("%w: checkpoint %s holds keys up to index %d beyond its applied index %d (a drain cut short)",
			ErrCorrupt, dir, m.drainTo, m.index)
	}
	if applied := s.applied.Load(); m.index < applied {
		return 0, 0, fmt.Errorf("%w: checkpoint at index %d, store applied %d", ErrStaleSnapshot, m.index, applied)
	}
	if err := syncTree(dir); err != nil {
		return 0, 0, fmt.Errorf("store: install %s: fsync: %w", dir, err)
	}
	if err := s.crashPoint("validated"); err != nil {
		return 0, 0, err
	}
	name := dbName(dbNumber(cur.name) + 1)
	dst := filepath.Join(s.dir, name)
	if err := os.RemoveAll(dst); err != nil {
		return 0, 0, fmt.Errorf("store: install: removing leftover %s: %w", dst, err)
	}
	if err := os.Rename(dir, dst); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return 0, 0, fmt.Errorf("%w: checkpoint %s is on another file system than the store %s: %w", ErrInvalidArg, dir, s.dir, err)
		}
		return 0, 0, fmt.Errorf("store: install: moving %s to %s: %w", dir, dst, err)
	}
	moveBack := func() error {
		if err := os.Rename(dst, dir); err != nil {
			return errors.Join(fmt.Errorf("store: install: moving %s back to %s: %w", dst, dir, err), os.RemoveAll(dst))
		}
		return nil
	}
	if err := errors.Join(syncDir(s.dir), syncDir(filepath.Dir(dir))); err != nil {
		return 0, 0, errors.Join(fmt.Errorf("store: install: fsync after the move: %w", err), moveBack())
	}
	if err := s.crashPoint("moved"); err != nil {
		return 0, 0, err
	}
	release := s.pebbleFS().holdPacing()
	defer release()
	h, err := s.openDB(name, false)
	if err != nil {
		return 0, 0, errors.Join(err, moveBack())
	}
	if gi, gt, err := readMeta(h.db, h.path); err != nil || gi != m.index || gt != m.term {
		h.release()
		return 0, 0, errors.Join(fmt.Errorf("%w: %s reopened at index %d term %d, checked at %d term %d",
			ErrCorrupt, dst, gi, gt, m.index, m.term), err, moveBack())
	}
	if err := s.crashPoint("opened"); err != nil {
		h.release()
		return 0, 0, err
	}
	if err := s.switchLocked(cur, h, m.index, m.term, -1); err != nil {
		h.release() // its directory stays: CURRENT may name it
		return 0, 0, err
	}
	s.log.Info("store: installed checkpoint", "index", m.index, "term", m.term, "db", name)
	return m.index, m.term, nil
}

// switchLocked makes h (a database in the store directory, holding the whole
// state at index and term) the store's database: it points CURRENT at it (the
// atomic step), swaps it in, and drops cur, whose directory is removed when
// its last View closes. keys is the number of user keys in h, or -1 if
// unknown (the next Count scans). On an error the caller still owns h; the
// store has failed unless the error is a simulated crash. Under writeMu.
func (s *Store) switchLocked(cur, h *handle, index, term uint64, keys int64) error {
	if err := writeCurrent(s.dir, h.name, s.crashPoint); err != nil {
		if errors.Is(err, errSimulatedCrash) {
			return err
		}
		// CURRENT may or may not name the new database now: we cannot
		// tell what is on disk, so keep both databases and stop.
		return s.fail("switching CURRENT to "+h.name, err)
	}
	if err := s.crashPoint("switched"); err != nil {
		return err
	}
	s.mu.Lock()
	s.h = h
	s.forgetTerms()
	s.appliedTerm.Store(term)
	s.applied.Store(index)
	s.durable.Store(index)
	s.recoverTo.Store(0)
	s.mu.Unlock()
	s.forgetIdem() // after mu: lockIdem takes mu under idemMu
	if keys >= 0 {
		s.ctr.reset(h, keys)
	} else {
		s.ctr.drop()
		s.ctr.gen++
	}
	cur.remove.Store(true)
	cur.release()
	return nil
}

// syncTree fsyncs every regular file in dir (not recursively) and then dir.
func syncTree(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, de.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return syncDir(dir)
}
