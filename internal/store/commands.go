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
// A command's effect depends on the state it applies to, so a batch holding
// one is applied straight to Pebble in an indexed batch (the write buffer is
// written out first): command.Eval reads through the batch and so sees the
// effects of the batch's earlier entries. Everything below is keyed under
// prefixMeta and changes only in the batch of the entry that changes it, so a
// checkpoint (a snapshot) carries it exactly as of its applied index.
//
// The idempotency table: for a command with an idempotency key, the result
// it had, until the record expires. Records expire by log time (the
// leader's clock stamped into each command), never by a local clock:
//
//	0x00 'i' KEY              -> uint64 expiry (unix ns), encoded command.Result
//	0x00 'x' be64(expiry) KEY -> empty (the expiry order, to drop the oldest)
//	0x00 'k'                  -> uint64 number of records
//
// A command whose key has a live record applies nothing and reports the
// record (Duplicate). Each command with a key drops up to
// maxExpirePerCommand expired records, and the oldest records beyond its
// IdemCap, so the table stays near the cap without a scan.
//
// The term history, for session tokens: each no-op entry (the first entry of
// every leader's term) records where its term starts, so the term of any
// applied entry is the term of the last no-op at or below it:
//
//	0x00 't' be64(index)      -> uint64 term
var (
	metaPrefixIdem    = []byte{prefixMeta, 'i'}
	metaPrefixIdemExp = []byte{prefixMeta, 'x'}
	metaKeyIdemCount  = []byte{prefixMeta, 'k'}
	metaPrefixTerm    = []byte{prefixMeta, 't'}
)

// maxExpirePerCommand bounds the records one command drops.
const maxExpirePerCommand = 8

// CommandReport receives the result of each command entry Apply applies.
type CommandReport func(index, term uint64, r command.Result)

// needsDirect reports whether ents must be applied straight to Pebble:
// configuration entries (Conf reads them there), commands (they read the
// state) and no-ops (the term history).
func needsDirect(ents []entry.Entry) bool {
	for i := range ents {
		switch ents[i].Kind {
		case entry.KindConfig, entry.KindCommand, entry.KindNoop:
			return true
		}
	}
	return false
}

func idemKey(dst, k []byte) []byte { return append(append(dst, metaPrefixIdem...), k...) }

func idemExpKey(dst []byte, expiry int64, k []byte) []byte {
	dst = append(dst, metaPrefixIdemExp...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(expiry))
	return append(dst, k...)
}

func termKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), metaPrefixTerm...), index)
}

// applyCommand applies command entry e in batch b (indexed) and returns its
// result. A command that does not decode (the leader validated it, so only
// a bug or a forged entry) applies nothing, on every node alike.
func (s *Store) applyCommand(b *pebble.Batch, e *entry.Entry) (command.Result, error) {
	c, err := command.Decode(e.Value)
	if err != nil {
		s.log.Error("store: a command entry does not decode; applying nothing", "index", e.Index, "err", err)
		return command.Result{Index: e.Index, Code: command.CodeOK}, nil
	}
	if len(c.IdemKey) > 0 {
		if err := expireIdem(b, c.Time, c.IdemCap); err != nil {
			return command.Result{}, err
		}
		r, found, err := lookupIdem(b, c.IdemKey, c.Time)
		if err != nil {
			return command.Result{}, err
		}
		if found {
			r.Duplicate = true
			return r, nil
		}
	}
	var kbuf []byte
	effs, r, err := command.Eval(&c, e.Index, func(key []byte) ([]byte, uint64, bool, error) {
		kbuf = userKey(kbuf[:0], key)
		return get(b, key)
	})
	if err != nil {
		return command.Result{}, err
	}
	var vbuf []byte
	for _, ef := range effs {
		kbuf = userKey(kbuf[:0], ef.Key)
		if ef.Delete {
			_ = b.Delete(kbuf, nil)
			s.ctr.track(ef.Key, false)
			continue
		}
		vbuf = encodeValue(vbuf[:0], e.Index, ef.Value)
		_ = b.Set(kbuf, vbuf, nil)
		s.ctr.track(ef.Key, true)
	}
	if len(c.IdemKey) > 0 {
		if err := recordIdem(b, c.IdemKey, c.Time+c.IdemWindow, &r); err != nil {
			return command.Result{}, err
		}
	}
	return r, nil
}

// lookupIdem returns the live record of key at log time now.
func lookupIdem(b *pebble.Batch, key []byte, now int64) (command.Result, bool, error) {
	raw, closer, err := b.Get(idemKey(nil, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return command.Result{}, false, nil
	}
	if err != nil {
		return command.Result{}, false, err
	}
	defer closer.Close()
	if len(raw) < 8 {
		return command.Result{}, false, fmt.Errorf("%w: idempotency record of %d bytes", ErrCorrupt, len(raw))
	}
	if int64(binary.LittleEndian.Uint64(raw)) <= now {
		return command.Result{}, false, nil // expired, not yet dropped
	}
	r, err := command.DecodeResult(raw[8:])
	if err != nil {
		return command.Result{}, false, fmt.Errorf("%w: idempotency record: %w", ErrCorrupt, err)
	}
	r.Old = bytes.Clone(r.Old)
	return r, true, nil
}

// recordIdem records key's result until expiry, replacing an expired record.
func recordIdem(b *pebble.Batch, key []byte, expiry int64, r *command.Result) error {
	k := idemKey(nil, key)
	raw, closer, err := b.Get(k)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := addIdemCount(b, 1); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if len(raw) >= 8 {
			_ = b.Delete(idemExpKey(nil, int64(binary.LittleEndian.Uint64(raw)), key), nil)
		}
		closer.Close()
	}
	v := binary.LittleEndian.AppendUint64(nil, uint64(expiry))
	v = command.EncodeResult(v, r)
	_ = b.Set(k, v, nil)
	_ = b.Set(idemExpKey(nil, expiry, key), nil, nil)
	return nil
}

func idemCount(r pebble.Reader) (uint64, error) {
	raw, closer, err := r.Get(metaKeyIdemCount)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(raw) != 8 {
		return 0, fmt.Errorf("%w: idempotency count of %d bytes", ErrCorrupt, len(raw))
	}
	return binary.LittleEndian.Uint64(raw), nil
}

func addIdemCount(b *pebble.Batch, d int64) error {
	n, err := idemCount(b)
	if err != nil {
		return err
	}
	_ = b.Set(metaKeyIdemCount, binary.LittleEndian.AppendUint64(nil, uint64(int64(n)+d)), nil)
	return nil
}

// expireIdem drops up to maxExpirePerCommand records, oldest first, that
// expired by now or exceed capRecords (0: no cap) once one more is added.
func expireIdem(b *pebble.Batch, now int64, capRecords uint32) error {
	n, err := idemCount(b)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	upper := append(append([]byte(nil), metaPrefixIdemExp[:1]...), metaPrefixIdemExp[1]+1)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: metaPrefixIdemExp, UpperBound: upper})
	if err != nil {
		return err
	}
	var drop [][]byte
	for ok := it.First(); ok && len(drop) < maxExpirePerCommand; ok = it.Next() {
		k := it.Key()
		if len(k) < len(metaPrefixIdemExp)+8 {
			it.Close()
			return fmt.Errorf("%w: idempotency expiry key of %d bytes", ErrCorrupt, len(k))
		}
		expiry := int64(binary.BigEndian.Uint64(k[len(metaPrefixIdemExp):]))
		over := capRecords > 0 && n-uint64(len(drop)) >= uint64(capRecords)
		if expiry > now && !over {
			break
		}
		drop = append(drop, bytes.Clone(k))
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, k := range drop {
		_ = b.Delete(k, nil)
		_ = b.Delete(idemKey(nil, k[len(metaPrefixIdemExp)+8:]), nil)
	}
	if len(drop) > 0 {
		return addIdemCount(b, -int64(len(drop)))
	}
	return nil
}

// IdempotencyRecords returns the number of records in the idempotency table.
func (s *Store) IdempotencyRecords() (uint64, error) {
	h, err := s.acquire()
	if err != nil {
		return 0, err
	}
	defer h.release()
	return idemCount(h.db)
}

// Idempotent returns the live record for an idempotency key at log time now
// (found=false if there is none): the result of the request that first
// used the key. Reads what Pebble holds (commands never wait in the write
// buffer).
func (s *Store) Idempotent(key []byte, now int64) (r command.Result, found bool, err error) {
	h, err := s.acquire()
	if err != nil {
		return command.Result{}, false, err
	}
	defer h.release()
	raw, closer, err := h.db.Get(idemKey(nil, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return command.Result{}, false, nil
	}
	if err != nil {
		return command.Result{}, false, err
	}
	defer closer.Close()
	if len(raw) < 8 {
		return command.Result{}, false, fmt.Errorf("%w: idempotency record of %d bytes", ErrCorrupt, len(raw))
	}
	if int64(binary.LittleEndian.Uint64(raw)) <= now {
		return command.Result{}, false, nil
	}
	r, err = command.DecodeResult(raw[8:])
	if err != nil {
		return command.Result{}, false, fmt.Errorf("%w: idempotency record: %w", ErrCorrupt, err)
	}
	r.Old = bytes.Clone(r.Old)
	return r, true, nil
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
