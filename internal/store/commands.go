package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

// Commands (entry.KindCommand) and the replicated side tables they keep.
//
// A command's effect may depend on the state it applies to, so a batch
// holding one is applied straight to Pebble (the write buffer is written out
// first), and command.Eval reads through an overlay of the batch's own
// earlier writes (batchView), then Pebble. Everything below is keyed under
// prefixMeta and changes only in the batch of the entry that changes it, so a
// checkpoint (a snapshot) carries it exactly as of its applied index.
//
// The idempotency table: for a command with an idempotency key, the result
// it had, until the record expires. Records expire by log time (the
// leader's clock stamped into each command), never by a local clock. Their
// layout in Pebble (chunks of records, and a watermark below which every
// record is dead) is in idem.go.
//
// A command whose key has a live record applies nothing and reports the
// record (Duplicate). The store keeps an index of the table in memory
// (idemIndex: each key's expiry and index, and the keys in the order they
// were recorded), loaded from Pebble on first use and rebuilt in index order,
// so that deciding whether a key is a duplicate, and which records to drop,
// reads nothing. Each command with a key drops up to maxExpirePerCommand
// records from the front of that order: expired ones, and the oldest beyond
// its IdemCap. The order is the log's, the same on every node (and after a
// reload), so every node drops the same records at the same index.
//
// The term history, for session tokens: each no-op entry (the first entry of
// every leader's term) records where its term starts, so the term of any
// applied entry is the term of the last no-op at or below it:
//
//	0x00 't' be64(index) -> uint64 term
var metaPrefixTerm = []byte{prefixMeta, 't'}

// CommandReport receives the result of each command entry Apply applies.
type CommandReport func(index, term uint64, r command.Result)

// needsDirect reports whether ents must be applied straight to Pebble:
// configuration entries (Conf reads them there), commands that read the state
// (their reads go to Pebble and the batch's own writes), and no-ops (the term
// history). A blind command (command.Command.Blind: its effect does not
// depend on the state) can go to the write buffer.
func needsDirect(ents []entry.Entry) bool {
	for i := range ents {
		switch ents[i].Kind {
		case entry.KindConfig, entry.KindNoop:
			return true
		case entry.KindCommand:
			c, err := command.Decode(ents[i].Value)
			if err != nil || !c.Blind() {
				return true
			}
		}
	}
	return false
}

// cmdSink is where a command's effects go and what its reads see: a Pebble
// batch over batchView (applyDirect), or the write buffer (bufSink). The
// changes to the idempotency table wait in the sink's idemChanges until the
// batch that carries their applied index (writeIdem).
type cmdSink interface {
	get(key []byte) ([]byte, uint64, bool, error)
	putUser(key []byte, index uint64, value []byte, del bool)
	// addRec adds a command's idempotency record.
	addRec(index uint64, key []byte, expiry int64, r *command.Result)
	// findRec returns rec if the sink holds it, not yet in Pebble.
	findRec(rec idemRec) (chunkRec, bool)
	// setIdemW moves the watermark (every record at index <= w is dead).
	setIdemW(w uint64)
	// delLegacy deletes a format-2 record (its Pebble key).
	delLegacy(k []byte)
}

// batchSink writes into a Pebble batch and remembers it in a batchView.
type batchSink struct {
	s          *Store
	b          *pebble.Batch
	v          *batchView
	kbuf, vbuf []byte
	idem       idemChanges // written into b by applyDirect (writeIdem)
}

func (x *batchSink) get(key []byte) ([]byte, uint64, bool, error) { return x.v.get(key) }

func (x *batchSink) putUser(key []byte, index uint64, value []byte, del bool) {
	x.v.put(key, index, value, del)
	x.kbuf = userKey(x.kbuf[:0], key)
	x.s.ctr.track(key, !del)
	if del {
		_ = x.b.Delete(x.kbuf, nil)
		return
	}
	x.vbuf = encodeValue(x.vbuf[:0], index, value)
	_ = x.b.Set(x.kbuf, x.vbuf, nil)
}

func (x *batchSink) addRec(index uint64, key []byte, expiry int64, r *command.Result) {
	x.idem.run.add(index, key, expiry, r)
}

func (x *batchSink) findRec(rec idemRec) (chunkRec, bool) {
	if rec.legacy {
		return chunkRec{}, false
	}
	return x.idem.run.find(rec.index)
}

func (x *batchSink) setIdemW(w uint64) { x.idem.w, x.idem.wSet = w, true }

func (x *batchSink) delLegacy(k []byte) { x.idem.dels = append(x.idem.dels, k) }

// bufSink writes blind commands into the active write-buffer table t. Its
// reads are of idempotency records only (blind commands read no user key):
// t, then the draining table (then Pebble, lookupIdemLocked). Under bufMu
// (exclusive).
type bufSink struct {
	s *Store
	t *bufTable
}

func (x *bufSink) get([]byte) ([]byte, uint64, bool, error) {
	return nil, 0, false, errors.New("store: a blind command read the state")
}

func (x *bufSink) putUser(key []byte, index uint64, value []byte, del bool) {
	x.t.put(key, index, value, del)
}

func (x *bufSink) addRec(index uint64, key []byte, expiry int64, r *command.Result) {
	x.t.idemSize += x.t.idem.run.add(index, key, expiry, r)
}

func (x *bufSink) findRec(rec idemRec) (chunkRec, bool) {
	if rec.legacy {
		return chunkRec{}, false
	}
	if c, ok := x.t.idem.run.find(rec.index); ok {
		return c, true
	}
	if d := x.s.draining; d != nil {
		return d.idem.run.find(rec.index)
	}
	return chunkRec{}, false
}

func (x *bufSink) setIdemW(w uint64) { x.t.idem.w, x.t.idem.wSet = w, true }

func (x *bufSink) delLegacy(k []byte) {
	x.t.idem.dels = append(x.t.idem.dels, k)
	x.t.idemSize += len(k) + slotOverhead
}

func termKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), metaPrefixTerm...), index)
}

// batchView is what a batch of Apply has written so far (user keys with
// their versions), over Pebble.
type batchView struct {
	db   *pebble.DB
	user map[string]viewVal
}

type viewVal struct {
	value   []byte
	version uint64
	del     bool
}

func (v *batchView) get(key []byte) ([]byte, uint64, bool, error) {
	if x, ok := v.user[string(key)]; ok {
		if x.del {
			return nil, 0, false, nil
		}
		return x.value, x.version, true, nil
	}
	return get(v.db, key)
}

func (v *batchView) put(key []byte, version uint64, value []byte, del bool) {
	v.user[string(key)] = viewVal{value: bytes.Clone(value), version: version, del: del}
}

// applyCommand applies command entry e into sink x and returns its result.
// A command that does not decode (the leader validated it, so only a bug or
// a forged entry) applies nothing, on every node alike. Under writeMu.
func (s *Store) applyCommand(x cmdSink, db *pebble.DB, e *entry.Entry) (command.Result, error) {
	c, err := command.Decode(e.Value)
	if err != nil {
		s.log.Error("store: a command entry does not decode; applying nothing", "index", e.Index, "err", err)
		return command.Result{Index: e.Index, Code: command.CodeOK}, nil
	}
	var slot idemSlot
	if len(c.IdemKey) > 0 {
		s.idemMu.Lock()
		err := s.idemReady(db)
		var r command.Result
		var dup bool
		if err == nil {
			s.expireIdemLocked(x, c.Time, c.IdemCap)
			slot, r, dup, err = s.lookupIdemLocked(x, db, c.IdemKey, c.Time)
		}
		s.idemMu.Unlock()
		if err != nil {
			return command.Result{}, err
		}
		if dup {
			return r, nil
		}
	}
	effs, r, err := command.Eval(&c, e.Index, x.get)
	if err != nil {
		return command.Result{}, err
	}
	for _, ef := range effs {
		x.putUser(ef.Key, e.Index, ef.Value, ef.Delete)
	}
	if len(c.IdemKey) > 0 {
		s.idemMu.Lock()
		s.recordIdemLocked(x, slot, e.Index, c.IdemKey, c.Time+c.IdemWindow, &r)
		s.idemMu.Unlock()
	}
	return r, nil
}

// termStart is one entry of the term history.
type termStart struct{ index, term uint64 }

// TermAt returns the term of the applied entry at index, from the term
// history. known is false when index is above the applied index, or below
// the first recorded term start (entries applied by a release without the
// history, or before the first no-op). Lock-free once the history is loaded
// (session reads call it on every read).
func (s *Store) TermAt(index uint64) (term uint64, known bool, err error) {
	if index == 0 || index > s.applied.Load() {
		return 0, false, nil
	}
	ts := s.terms.Load()
	if ts == nil {
		if ts, err = s.loadTerms(); err != nil {
			return 0, false, err
		}
	}
	i := sort.Search(len(*ts), func(i int) bool { return (*ts)[i].index > index })
	if i == 0 {
		return 0, false, nil
	}
	return (*ts)[i-1].term, true, nil
}

// loadTerms reads the history from Pebble into the cache.
func (s *Store) loadTerms() (*[]termStart, error) {
	s.termsMu.Lock()
	defer s.termsMu.Unlock()
	if ts := s.terms.Load(); ts != nil {
		return ts, nil
	}
	h, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer h.release()
	upper := []byte{prefixMeta, metaPrefixTerm[1] + 1}
	it, err := h.db.NewIter(&pebble.IterOptions{LowerBound: metaPrefixTerm, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	ts := []termStart{}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(metaPrefixTerm)+8 || len(v) != 8 {
			it.Close()
			return nil, fmt.Errorf("%w: term history record %x", ErrCorrupt, k)
		}
		ts = append(ts, termStart{index: binary.BigEndian.Uint64(k[len(metaPrefixTerm):]), term: binary.LittleEndian.Uint64(v)})
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	s.terms.Store(&ts)
	return &ts, nil
}

// noteTermStart adds a term start applied in Pebble to the cached history
// (copy on write: readers hold the old slice).
func (s *Store) noteTermStart(index, term uint64) {
	s.termsMu.Lock()
	defer s.termsMu.Unlock()
	ts := s.terms.Load()
	if ts == nil || (len(*ts) > 0 && (*ts)[len(*ts)-1].index >= index) {
		return
	}
	next := append(make([]termStart, 0, len(*ts)+1), *ts...)
	next = append(next, termStart{index: index, term: term})
	s.terms.Store(&next)
}

// forgetTerms drops the cached history (the database was replaced).
func (s *Store) forgetTerms() {
	s.termsMu.Lock()
	s.terms.Store(nil)
	s.termsMu.Unlock()
}
