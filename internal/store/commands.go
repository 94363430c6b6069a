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
// leader's clock stamped into each command), never by a local clock:
//
//	0x00 'i' KEY -> uint64 expiry (unix ns), encoded command.Result
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
var (
	metaPrefixIdem = []byte{prefixMeta, 'i'}
	metaPrefixTerm = []byte{prefixMeta, 't'}
)

// maxExpirePerCommand bounds the records one command drops.
const maxExpirePerCommand = 64

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
// batch over batchView (applyDirect), or the write buffer (bufSink).
type cmdSink interface {
	get(key []byte) ([]byte, uint64, bool, error)
	putUser(key []byte, index uint64, value []byte, del bool)
	getMeta(k []byte) ([]byte, bool, error)
	putMeta(k, value []byte, del bool)
}

// batchSink writes into a Pebble batch and remembers it in a batchView.
type batchSink struct {
	s          *Store
	b          *pebble.Batch
	v          *batchView
	kbuf, vbuf []byte
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

func (x *batchSink) getMeta(k []byte) ([]byte, bool, error) {
	if v, ok := x.v.idem[string(k)]; ok {
		return v, v != nil, nil
	}
	val, closer, err := x.v.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(val), true, nil
}

func (x *batchSink) putMeta(k, value []byte, del bool) {
	if del {
		x.v.idem[string(k)] = nil
		_ = x.b.Delete(k, nil)
		return
	}
	x.v.idem[string(k)] = value
	_ = x.b.Set(k, value, nil)
}

// bufSink writes blind commands into the active write-buffer table t. Its
// reads are of idempotency records only (blind commands read no user key):
// t, then the draining table, then Pebble. Under bufMu (exclusive).
type bufSink struct {
	s  *Store
	t  *bufTable
	db *pebble.DB
}

func (x *bufSink) get([]byte) ([]byte, uint64, bool, error) {
	return nil, 0, false, errors.New("store: a blind command read the state")
}

func (x *bufSink) putUser(key []byte, index uint64, value []byte, del bool) {
	x.t.put(key, index, value, del)
}

func (x *bufSink) getMeta(k []byte) ([]byte, bool, error) {
	if v, found, ok := x.t.getMeta(string(k)); ok {
		return v, found, nil
	}
	if d := x.s.draining; d != nil {
		if v, found, ok := d.getMeta(string(k)); ok {
			return v, found, nil
		}
	}
	val, closer, err := x.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(val), true, nil
}

func (x *bufSink) putMeta(k, value []byte, del bool) { x.t.putMeta(string(k), value, del) }

func idemKey(dst, k []byte) []byte { return append(append(dst, metaPrefixIdem...), k...) }

func termKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), metaPrefixTerm...), index)
}

// idemIndex is the in-memory index of the idempotency table. Guarded by
// Store.idemMu.
type idemIndex struct {
	loaded bool
	db     *pebble.DB // the database it was loaded from
	recs   map[string]idemRec
	order  []idemQ // recording order (log index); entries superseded or dropped are skipped
	head   int     // order[:head] was dropped
}

type idemRec struct {
	expiry int64
	index  uint64
}

type idemQ struct {
	key   string
	index uint64
}

// batchView is what a batch of Apply has written so far (user keys with
// their versions, and idempotency records), over Pebble.
type batchView struct {
	db   *pebble.DB
	user map[string]viewVal
	idem map[string][]byte // raw record values written in this batch
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

// loadIdemLocked builds the index from Pebble. Under idemMu.
func (s *Store) loadIdemLocked(db *pebble.DB) error {
	upper := []byte{prefixMeta, metaPrefixIdem[1] + 1}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: metaPrefixIdem, UpperBound: upper})
	if err != nil {
		return err
	}
	x := idemIndex{loaded: true, db: db, recs: map[string]idemRec{}}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(v) < 8+2+8 {
			it.Close()
			return fmt.Errorf("%w: idempotency record %x of %d bytes", ErrCorrupt, k, len(v))
		}
		key := string(k[len(metaPrefixIdem):])
		// The result's index, without decoding the whole result (its
		// old value may be large): code, flags, then the index.
		rec := idemRec{expiry: int64(binary.LittleEndian.Uint64(v)), index: binary.LittleEndian.Uint64(v[10:])}
		x.recs[key] = rec
		x.order = append(x.order, idemQ{key: key, index: rec.index})
	}
	if err := it.Close(); err != nil {
		return err
	}
	sort.Slice(x.order, func(i, j int) bool { return x.order[i].index < x.order[j].index })
	s.idem = x
	return nil
}

// idemReady loads the index from db if it is not loaded from db already
// (an Install or Import replaced the database). Under idemMu.
func (s *Store) idemReady(db *pebble.DB) error {
	if s.idem.loaded && s.idem.db == db {
		return nil
	}
	return s.loadIdemLocked(db)
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
	if len(c.IdemKey) > 0 {
		s.idemMu.Lock()
		err := s.idemReady(db)
		var r command.Result
		var dup bool
		if err == nil {
			s.expireIdemLocked(x, c.Time, c.IdemCap)
			r, dup, err = s.lookupIdemLocked(x, c.IdemKey, c.Time)
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
		expiry := c.Time + c.IdemWindow
		val := command.EncodeResult(binary.LittleEndian.AppendUint64(make([]byte, 0, 64+len(r.Old)), uint64(expiry)), &r)
		x.putMeta(idemKey(make([]byte, 0, len(metaPrefixIdem)+len(c.IdemKey)), c.IdemKey), val, false)
		s.idemMu.Lock()
		s.idem.recs[string(c.IdemKey)] = idemRec{expiry: expiry, index: e.Index}
		s.idem.order = append(s.idem.order, idemQ{key: string(c.IdemKey), index: e.Index})
		s.idemMu.Unlock()
	}
	return r, nil
}

// lookupIdemLocked returns the live record of key at log time now, read
// through x (only for a duplicate).
func (s *Store) lookupIdemLocked(x cmdSink, key []byte, now int64) (command.Result, bool, error) {
	rec, ok := s.idem.recs[string(key)]
	if !ok || rec.expiry <= now {
		return command.Result{}, false, nil
	}
	raw, found, err := x.getMeta(idemKey(nil, key))
	if err != nil {
		return command.Result{}, false, err
	}
	if !found {
		return command.Result{}, false, fmt.Errorf("%w: idempotency record of %q indexed but not stored", ErrCorrupt, key)
	}
	r, err := decodeIdem(raw)
	if err != nil {
		return command.Result{}, false, err
	}
	r.Duplicate = true
	return r, true, nil
}

func decodeIdem(raw []byte) (command.Result, error) {
	if len(raw) < 8 {
		return command.Result{}, fmt.Errorf("%w: idempotency record of %d bytes", ErrCorrupt, len(raw))
	}
	r, err := command.DecodeResult(raw[8:])
	if err != nil {
		return command.Result{}, fmt.Errorf("%w: idempotency record: %w", ErrCorrupt, err)
	}
	r.Old = bytes.Clone(r.Old)
	return r, nil
}

// expireIdemLocked drops, into b, up to maxExpirePerCommand records from the
// front of the recording order that expired by now or exceed capRecords
// (0: no cap) once one more is added. Under idemMu.
func (s *Store) expireIdemLocked(sink cmdSink, now int64, capRecords uint32) {
	x := &s.idem
	for dropped := 0; x.head < len(x.order) && dropped < maxExpirePerCommand; {
		q := x.order[x.head]
		rec, ok := x.recs[q.key]
		if !ok || rec.index != q.index {
			x.head++ // superseded or dropped already
			continue
		}
		over := capRecords > 0 && len(x.recs) >= int(capRecords)
		if rec.expiry > now && !over {
			break
		}
		sink.putMeta(idemKey(nil, []byte(q.key)), nil, true)
		delete(x.recs, q.key)
		x.head++
		dropped++
	}
	if x.head > 1024 && x.head > len(x.order)/2 {
		x.order = append(x.order[:0:0], x.order[x.head:]...)
		x.head = 0
	}
}

// IdempotencyRecords returns the number of records in the idempotency table.
func (s *Store) IdempotencyRecords() (uint64, error) {
	h, err := s.acquire()
	if err != nil {
		return 0, err
	}
	defer h.release()
	s.idemMu.Lock()
	defer s.idemMu.Unlock()
	if err := s.idemReady(h.db); err != nil {
		return 0, err
	}
	return uint64(len(s.idem.recs)), nil
}

// Idempotent returns the live record for an idempotency key at log time now
// (found=false if there is none): the result of the request that first
// used the key, from the write buffer or Pebble.
func (s *Store) Idempotent(key []byte, now int64) (r command.Result, found bool, err error) {
	h, err := s.acquire()
	if err != nil {
		return command.Result{}, false, err
	}
	defer h.release()
	s.idemMu.Lock()
	if err := s.idemReady(h.db); err != nil {
		s.idemMu.Unlock()
		return command.Result{}, false, err
	}
	rec, ok := s.idem.recs[string(key)]
	s.idemMu.Unlock()
	if !ok || rec.expiry <= now {
		return command.Result{}, false, nil
	}
	k := idemKey(nil, key)
	s.bufMu.RLock()
	var buffered []byte
	inBuf, bufFound := false, false
	for _, t := range []*bufTable{s.active, s.draining} {
		if t == nil {
			continue
		}
		if v, found, ok := t.getMeta(string(k)); ok {
			buffered, bufFound, inBuf = v, found, true
			break
		}
	}
	s.bufMu.RUnlock()
	if inBuf {
		if !bufFound {
			return command.Result{}, false, nil
		}
		r, err := decodeIdem(buffered)
		return r, err == nil, err
	}
	raw, closer, err := h.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		// Indexed by an Apply whose batch is not committed yet.
		return command.Result{}, false, nil
	}
	if err != nil {
		return command.Result{}, false, err
	}
	defer closer.Close()
	r, err = decodeIdem(raw)
	if err != nil {
		return command.Result{}, false, err
	}
	return r, true, nil
}

// forgetIdem drops the in-memory index (the database was replaced).
func (s *Store) forgetIdem() {
	s.idemMu.Lock()
	s.idem = idemIndex{}
	s.idemMu.Unlock()
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
