package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/trireme-db/trireme/internal/command"
)

// The idempotency table (what it is: the top of commands.go): its layout in
// Pebble, its index in memory, and the reads of its records.
//
// Records are stored in chunks, many records to a Pebble key, so that a
// keyed write costs no memtable insert, flush or compaction of its own, and
// no tombstone when its record dies:
//
//	0x00 'j' be64(I) -> chunk: records in index order, the last one at index I
//	0x00 'w'         -> uint64 W: every record at index <= W is dead
//	0x00 'i' KEY     -> uint64 expiry, encoded command.Result (format 2: loaded, deleted when dropped)
//
// A chunk is the concatenation of records, each:
//
//	0    4  uint32 L, the length of the rest of the record (18+K+R, at most maxIdemRecordBytes)
//	4    8  uint64 index of the command's entry
//	12   2  uint16 K, the idempotency key's length (at most command.MaxIdemKey)
//	14   K  the idempotency key
//	14+K 8  uint64 expiry (unix ns, log time)
//	22+K R  the encoded command.Result (its index, bytes 2..9, is the record's)
//
// Chunks cover disjoint index ranges, ascending: those of one Apply batch
// (applied straight to Pebble) or of one write-buffer table (written in the
// last batch of its drain, the one that carries the applied index), split at
// about idemChunkBytes. A record is never rewritten or deleted on its own.
// Records die from the front of the recording order (expireIdemLocked), so
// after a command every record at index <= W is dead, W being the index of
// the last entry of the order passed; W is written with the command's
// effects, and a chunk whose last index is at most W is deleted (node-local,
// by the next batch that writes W). A key recorded again supersedes its
// earlier record, which W passes later.
//
// Format 2 kept one Pebble key per record ('i'). Such records are still
// loaded (a store of that release keeps them): dropping or superseding one
// deletes its key, as before.

var (
	metaPrefixIdem  = []byte{prefixMeta, 'i'} // format 2 records
	metaPrefixChunk = []byte{prefixMeta, 'j'}
	metaKeyIdemW    = []byte{prefixMeta, 'w'}
)

// Bounds of the chunk format.
const (
	// idemChunkBytes is the size past which the records being written are
	// split into another chunk (a chunk of one record may exceed it).
	idemChunkBytes = 1 << 20
	// maxIdemRecordBytes bounds a record's length field. A record holds a
	// key of at most command.MaxIdemKey bytes and a result whose old value
	// is at most one stored value: far below this. Part of the format.
	maxIdemRecordBytes = 1 << 30
	// idemRecFixed is a record's size without its key and result.
	idemRecFixed = 4 + 8 + 2 + 8
)

// maxExpirePerCommand bounds the records one command drops.
const maxExpirePerCommand = 64

// idemIndex is the in-memory index of the idempotency table. Guarded by
// Store.idemMu.
//
// It is keyed by a 64-bit hash of the idempotency key (Store.idemHash), so
// that its maps and order hold no pointers: no key strings to allocate, to
// chase on a lookup or for the garbage collector to scan. The stored record
// says whose it is, so a hash that is found costs a read of the record: a
// retry (which reads it anyway), a key used again after its record expired,
// or a collision. A key whose hash another key's record holds already goes
// in coll, by the key itself.
type idemIndex struct {
	loaded bool
	db     *pebble.DB // the database it was loaded from
	recs   map[uint64]idemRec
	coll   map[string]idemRec // keys whose hash another key's record holds
	// legacy holds the keys of format-2 records by index: dropping or
	// superseding one deletes its Pebble key.
	legacy map[uint64]string
	order  []idemQ // recording order (log index); entries superseded or dropped are skipped
	head   int     // order[:head] was dropped
	// w is the watermark as of the last command applied: every record at
	// index <= w is dead.
	w uint64
	// chunks holds the last index of each chunk in Pebble (or in a batch
	// being written), ascending. Dead ones stay until a batch that writes
	// the watermark deletes them (writeIdem).
	chunks []uint64
}

type idemRec struct {
	expiry int64
	index  uint64
	legacy bool // a format-2 record (its key is in idemIndex.legacy)
}

// idemQ is an entry of the recording order: the record at index, under
// hash h (in recs, or in coll).
type idemQ struct {
	h     uint64
	index uint64
}

// len returns the number of records.
func (x *idemIndex) len() int { return len(x.recs) + len(x.coll) }

// at returns the record of order entry q, if it is still there: under its
// hash, or in coll (then collKey is its key).
func (x *idemIndex) at(q idemQ) (rec idemRec, collKey string, inColl, ok bool) {
	if r, ok := x.recs[q.h]; ok && r.index == q.index {
		return r, "", false, true
	}
	for k, r := range x.coll {
		if r.index == q.index {
			return r, k, true, true
		}
	}
	return idemRec{}, "", false, false
}

// idemSlot is where the index holds a key's record, or will.
type idemSlot struct {
	h     uint64
	coll  bool    // in coll (else in recs under h)
	found bool    // the index holds a record of the key: rec
	rec   idemRec // (it may have expired)
}

func idemKey(dst, k []byte) []byte { return append(append(dst, metaPrefixIdem...), k...) }

func chunkKey(last uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(metaPrefixChunk)+8), metaPrefixChunk...), last)
}

// appendIdemRecord appends one record, encoded as in a chunk, to dst.
func appendIdemRecord(dst []byte, index uint64, key []byte, expiry int64, r *command.Result) []byte {
	start := len(dst)
	dst = slices.Grow(dst, idemRecFixed+len(key)+32+len(r.Old))
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, index)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(expiry))
	dst = command.EncodeResult(dst, r)
	n := len(dst) - start - 4
	if len(key) > command.MaxIdemKey || n > maxIdemRecordBytes {
		panic(fmt.Sprintf("store: idempotency record at index %d of %d bytes, key of %d bytes", index, n, len(key)))
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	return dst
}

// chunkRec is one decoded record. key and val alias the chunk; val is the
// expiry followed by the encoded result (a format-2 record's value).
type chunkRec struct {
	index  uint64
	key    []byte
	expiry int64
	val    []byte
}

// nextChunkRec decodes the record at the start of b and returns it with its
// encoded length. Every length is checked against b and the format's bounds.
func nextChunkRec(b []byte) (chunkRec, int, error) {
	if len(b) < 4 {
		return chunkRec{}, 0, fmt.Errorf("%d bytes left, a record needs at least %d", len(b), idemRecFixed)
	}
	n := binary.LittleEndian.Uint32(b)
	switch {
	case n > maxIdemRecordBytes:
		return chunkRec{}, 0, fmt.Errorf("record length %d exceeds %d", n, maxIdemRecordBytes)
	case uint64(n) > uint64(len(b)-4):
		return chunkRec{}, 0, fmt.Errorf("record length %d exceeds the %d bytes left", n, len(b)-4)
	case n < idemRecFixed-4:
		return chunkRec{}, 0, fmt.Errorf("record length %d, need at least %d", n, idemRecFixed-4)
	}
	rec := b[4 : 4+n]
	c := chunkRec{index: binary.LittleEndian.Uint64(rec)}
	k := int(binary.LittleEndian.Uint16(rec[8:]))
	if k > command.MaxIdemKey || k > len(rec)-(idemRecFixed-4) {
		return chunkRec{}, 0, fmt.Errorf("key length %d in a record of %d bytes (at most %d)", k, n, command.MaxIdemKey)
	}
	c.key = rec[10 : 10+k]
	c.val = rec[10+k:]
	c.expiry = int64(binary.LittleEndian.Uint64(c.val))
	res := c.val[8:]
	if len(res) < 10 || binary.LittleEndian.Uint64(res[2:]) != c.index {
		return chunkRec{}, 0, fmt.Errorf("the result of the record at index %d does not carry its index", c.index)
	}
	return c, 4 + int(n), nil
}

// walkChunk calls fn with each record of chunk b (stored under last index
// last), in order, until fn returns false. The chunk is checked as far as it
// is walked: every record within bounds, indexes ascending, and a walk to
// the end must end at index last. An error wraps ErrCorrupt.
func walkChunk(last uint64, b []byte, fn func(chunkRec) bool) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: idempotency chunk %d is empty", ErrCorrupt, last)
	}
	var prev uint64
	for off := 0; off < len(b); {
		c, n, err := nextChunkRec(b[off:])
		if err != nil {
			return fmt.Errorf("%w: idempotency chunk %d at byte %d: %s", ErrCorrupt, last, off, err)
		}
		if (off > 0 && c.index <= prev) || c.index > last {
			return fmt.Errorf("%w: idempotency chunk %d at byte %d: record index %d after %d", ErrCorrupt, last, off, c.index, prev)
		}
		if !fn(c) {
			return nil
		}
		prev = c.index
		off += n
	}
	if prev != last {
		return fmt.Errorf("%w: idempotency chunk %d ends at record index %d", ErrCorrupt, last, prev)
	}
	return nil
}

// findInChunk returns the record at index in chunk b (stored under last).
func findInChunk(last uint64, b []byte, index uint64) (rec chunkRec, found bool, err error) {
	err = walkChunk(last, b, func(c chunkRec) bool {
		if c.index >= index {
			rec, found = c, c.index == index
			return false
		}
		return true
	})
	if err != nil {
		return chunkRec{}, false, err
	}
	return rec, found, nil
}

// idemRun is records not in Pebble yet, in index order, encoded as in a
// chunk: those of one write-buffer table, or of one Apply batch.
type idemRun struct {
	buf  []byte
	recs []idemRunRec
}

type idemRunRec struct {
	index uint64
	off   int // the record is buf[off:] up to the next one
}

// add appends a record and returns the bytes it took.
func (r *idemRun) add(index uint64, key []byte, expiry int64, res *command.Result) int {
	n := len(r.buf)
	r.recs = append(r.recs, idemRunRec{index: index, off: n})
	r.buf = appendIdemRecord(r.buf, index, key, expiry, res)
	return len(r.buf) - n + 16
}

func (r *idemRun) empty() bool { return len(r.recs) == 0 }

func (r *idemRun) reset() {
	r.buf, r.recs = r.buf[:0], r.recs[:0]
}

// find returns the record at index (aliasing the run), if the run holds it.
func (r *idemRun) find(index uint64) (chunkRec, bool) {
	i, ok := slices.BinarySearchFunc(r.recs, index, func(x idemRunRec, t uint64) int {
		switch {
		case x.index < t:
			return -1
		case x.index > t:
			return 1
		}
		return 0
	})
	if !ok {
		return chunkRec{}, false
	}
	c, _, err := nextChunkRec(r.buf[r.recs[i].off:])
	if err != nil {
		panic(fmt.Sprintf("store: a pending idempotency record at index %d does not decode: %v", index, err))
	}
	return c, true
}

// chunks calls fn with the run's records at indexes above w, as chunks of
// about idemChunkBytes: each chunk's last index and its value (aliasing
// the run).
func (r *idemRun) chunks(w uint64, fn func(last uint64, val []byte)) {
	i, _ := slices.BinarySearchFunc(r.recs, w+1, func(x idemRunRec, t uint64) int {
		if x.index < t {
			return -1
		}
		return 1
	})
	for i < len(r.recs) {
		start := r.recs[i].off
		j := i + 1 // records i..j-1 make the chunk
		for j < len(r.recs) && r.end(j)-start <= idemChunkBytes {
			j++
		}
		fn(r.recs[j-1].index, r.buf[start:r.end(j-1)])
		i = j
	}
}

// end returns the end of record i in buf.
func (r *idemRun) end(i int) int {
	if i+1 < len(r.recs) {
		return r.recs[i+1].off
	}
	return len(r.buf)
}

// idemChanges is what a batch (of Apply, or the last of a drain) changes in
// the idempotency table: records, the watermark, deleted format-2 records.
type idemChanges struct {
	run  idemRun
	w    uint64 // the watermark, if wSet
	wSet bool
	dels [][]byte // Pebble keys of format-2 records to delete
}

func (c *idemChanges) empty() bool { return c.run.empty() && !c.wSet && len(c.dels) == 0 }

func (c *idemChanges) reset() {
	c.run.reset()
	c.w, c.wSet, c.dels = 0, false, nil
}

// writeIdem adds c to b, a batch of h that carries the applied index of the
// entries that made c: the records above the watermark as chunks, the
// watermark, deletions of the format-2 records dropped and of the chunks
// the watermark made dead, and FormatVersion the first time h gets any of
// it. Under writeMu, or in the drain that holds the table c belongs to.
func (s *Store) writeIdem(h *handle, b *pebble.Batch, c *idemChanges) error {
	if c.empty() {
		return nil
	}
	if !h.chunked.Load() {
		f, err := readFormat(h.db, h.path)
		if err != nil {
			return err
		}
		if f < FormatVersion {
			_ = b.Set(metaKeyFormat, encodeFormat(), nil)
		}
		h.chunked.Store(true) // the batch fails the store if it is not written
	}
	for _, k := range c.dels {
		_ = b.Delete(k, nil)
	}
	w := uint64(0) // records are above the stored watermark unless c moves it
	if c.wSet {
		w = c.w
	}
	var lasts []uint64
	c.run.chunks(w, func(last uint64, val []byte) {
		_ = b.Set(chunkKey(last), val, nil) // Set copies
		lasts = append(lasts, last)
	})
	var dead []uint64
	s.idemMu.Lock()
	if x := &s.idem; x.loaded && x.db == h.db {
		x.chunks = append(x.chunks, lasts...)
		if c.wSet {
			n := 0
			for n < len(x.chunks) && x.chunks[n] <= w {
				n++
			}
			dead = append(dead, x.chunks[:n]...)
			x.chunks = x.chunks[n:]
		}
	}
	s.idemMu.Unlock()
	for _, last := range dead {
		_ = b.Delete(chunkKey(last), nil)
	}
	if c.wSet {
		_ = b.Set(metaKeyIdemW, binary.LittleEndian.AppendUint64(nil, w), nil)
	}
	return nil
}

// loadIdemLocked builds the index from Pebble: the watermark, format-2
// records, and the records of the chunks; records at or below the watermark
// are dead, and a later record of a key supersedes an earlier one. Under
// idemMu.
func (s *Store) loadIdemLocked(db *pebble.DB) error {
	x := idemIndex{loaded: true, db: db, recs: map[uint64]idemRec{}, legacy: map[uint64]string{}}
	var err error
	if x.w, err = readIdemW(db); err != nil {
		return err
	}
	err = scanMeta(db, metaPrefixIdem, func(k, v []byte) error {
		if len(v) < 8+2+8 {
			return fmt.Errorf("%w: idempotency record %x of %d bytes", ErrCorrupt, k, len(v))
		}
		// The result's index, without decoding the whole result (its
		// old value may be large): code, flags, then the index.
		return s.loadRec(&x, k[len(metaPrefixIdem):], idemRec{expiry: int64(binary.LittleEndian.Uint64(v)), index: binary.LittleEndian.Uint64(v[10:]), legacy: true})
	})
	if err != nil {
		return err
	}
	err = scanMeta(db, metaPrefixChunk, func(k, v []byte) error {
		if len(k) != len(metaPrefixChunk)+8 {
			return fmt.Errorf("%w: idempotency chunk key %x", ErrCorrupt, k)
		}
		last := binary.BigEndian.Uint64(k[len(metaPrefixChunk):])
		if n := len(x.chunks); n > 0 && x.chunks[n-1] >= last {
			return fmt.Errorf("%w: idempotency chunk key %x out of order", ErrCorrupt, k)
		}
		x.chunks = append(x.chunks, last)
		if last <= x.w {
			return nil // dead: deleted by the next batch that writes the watermark
		}
		var lerr error
		err := walkChunk(last, v, func(c chunkRec) bool {
			lerr = s.loadRec(&x, c.key, idemRec{expiry: c.expiry, index: c.index})
			return lerr == nil
		})
		return errors.Join(err, lerr)
	})
	if err != nil {
		return err
	}
	x.order = make([]idemQ, 0, x.len())
	for h, rec := range x.recs {
		x.order = append(x.order, idemQ{h: h, index: rec.index})
	}
	for k, rec := range x.coll {
		x.order = append(x.order, idemQ{h: s.idemHash([]byte(k)), index: rec.index})
	}
	slices.SortFunc(x.order, func(a, b idemQ) int {
		switch {
		case a.index < b.index:
			return -1
		case a.index > b.index:
			return 1
		}
		return 0
	})
	s.idem = x
	return nil
}

// loadRec adds a record read from x.db to x (loadIdemLocked): dead at or
// below the watermark; superseding, or superseded by, a record of the same
// key at another index.
func (s *Store) loadRec(x *idemIndex, key []byte, rec idemRec) error {
	if rec.index <= x.w {
		return nil
	}
	put := func(old idemRec, had bool, set func(idemRec)) {
		if had && old.index > rec.index {
			return
		}
		if had && old.legacy {
			delete(x.legacy, old.index)
		}
		if rec.legacy {
			x.legacy[rec.index] = string(key)
		}
		set(rec)
	}
	if old, ok := x.coll[string(key)]; ok {
		put(old, true, func(r idemRec) { x.coll[string(key)] = r })
		return nil
	}
	h := s.idemHash(key)
	old, ok := x.recs[h]
	if ok {
		k, err := x.keyOf(old)
		if err != nil {
			return err
		}
		if !bytes.Equal(k, key) { // another key's
			if x.coll == nil {
				x.coll = map[string]idemRec{}
			}
			put(idemRec{}, false, func(r idemRec) { x.coll[string(key)] = r })
			return nil
		}
	}
	put(old, ok, func(r idemRec) { x.recs[h] = r })
	return nil
}

// keyOf returns the key of rec, a record in Pebble (while loading).
func (x *idemIndex) keyOf(rec idemRec) ([]byte, error) {
	if rec.legacy {
		return []byte(x.legacy[rec.index]), nil
	}
	k, _, found, err := readChunked(x.db, rec.index)
	if err == nil && !found {
		err = fmt.Errorf("%w: idempotency record at index %d vanished while loading", ErrCorrupt, rec.index)
	}
	return k, err
}

// scanMeta calls fn with every key and value under prefix (a two-byte
// metadata prefix).
func scanMeta(db pebble.Reader, prefix []byte, fn func(k, v []byte) error) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: []byte{prefix[0], prefix[1] + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), v)
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// readIdemW returns the stored watermark (0 if none).
func readIdemW(r pebble.Reader) (uint64, error) {
	v, closer, err := r.Get(metaKeyIdemW)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: idempotency watermark %q is %d bytes, want 8", ErrCorrupt, metaKeyIdemW, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// idemReady loads the index from db, the current database, if it is not
// loaded from it already (an Install or Import replaced the database). Under
// writeMu and idemMu.
func (s *Store) idemReady(db *pebble.DB) error {
	if s.idem.loaded && s.idem.db == db {
		return nil
	}
	return s.loadIdemLocked(db)
}

// lockIdem acquires the current database and locks idemMu with the index
// loaded from it; the caller unlocks idemMu and releases h. (A reader must
// not load the index from a database replaced meanwhile: Apply would then
// reload it from the new one, where records still in the write buffer are
// not.)
func (s *Store) lockIdem() (*handle, error) {
	for {
		h, err := s.acquire()
		if err != nil {
			return nil, err
		}
		s.idemMu.Lock()
		if s.idem.loaded && s.idem.db == h.db {
			return h, nil
		}
		s.mu.RLock()
		current := s.h == h
		s.mu.RUnlock()
		if current {
			if err := s.loadIdemLocked(h.db); err != nil {
				s.idemMu.Unlock()
				h.release()
				return nil, err
			}
			return h, nil
		}
		s.idemMu.Unlock()
		h.release()
	}
}

// recordIdemLocked adds the record of a command (at index, its result r)
// to the index, where lookupIdemLocked said (slot), and to x. Under idemMu.
func (s *Store) recordIdemLocked(x cmdSink, slot idemSlot, index uint64, key []byte, expiry int64, r *command.Result) {
	ix := &s.idem
	if slot.found && slot.rec.legacy {
		x.delLegacy(idemKey(nil, key)) // superseded: its key would outlive it
		delete(ix.legacy, slot.rec.index)
	}
	x.addRec(index, key, expiry, r)
	rec := idemRec{expiry: expiry, index: index}
	if slot.coll {
		if ix.coll == nil {
			ix.coll = map[string]idemRec{}
		}
		ix.coll[string(key)] = rec
	} else {
		ix.recs[slot.h] = rec
	}
	ix.order = append(ix.order, idemQ{h: slot.h, index: index})
}

// lookupIdemLocked finds key's record in the index, and returns where it
// is or goes (slot) and, if it is live at log time now, its result (dup).
// A record is read (through x, then Pebble) only under a hash that is
// found: for a duplicate, or to tell whose record it is. Under idemMu.
func (s *Store) lookupIdemLocked(x cmdSink, db *pebble.DB, key []byte, now int64) (slot idemSlot, r command.Result, dup bool, err error) {
	ix := &s.idem
	slot.h = s.idemHash(key)
	var rec idemRec
	ok := false
	if len(ix.coll) > 0 {
		rec, ok = ix.coll[string(key)]
		slot.coll = ok
	}
	if !ok {
		if rec, ok = ix.recs[slot.h]; !ok {
			return slot, r, false, nil
		}
	}
	var k, val []byte
	switch {
	case slot.coll && rec.expiry <= now:
		k = key // expired: nothing to read
	case rec.legacy:
		if k = []byte(ix.legacy[rec.index]); bytes.Equal(k, key) && rec.expiry > now {
			var found bool
			if val, found, err = readLegacy(db, key); err == nil && !found {
				err = fmt.Errorf("%w: idempotency record of %q at index %d indexed but not stored", ErrCorrupt, key, rec.index)
			}
		}
	default:
		if c, ok := x.findRec(rec); ok {
			k, val = c.key, c.val
		} else {
			var found bool
			if k, val, found, err = readChunked(db, rec.index); err == nil && !found {
				err = fmt.Errorf("%w: idempotency record at index %d indexed but not stored", ErrCorrupt, rec.index)
			}
		}
	}
	if err != nil {
		return slot, r, false, err
	}
	if !bytes.Equal(k, key) {
		if slot.coll {
			return slot, r, false, fmt.Errorf("%w: idempotency record at index %d is of %q, indexed as %q's", ErrCorrupt, rec.index, k, key)
		}
		slot.coll = true // the hash is another key's
		return slot, r, false, nil
	}
	slot.found, slot.rec = true, rec
	if rec.expiry <= now {
		return slot, r, false, nil
	}
	if r, err = decodeIdem(val); err != nil {
		return slot, r, false, err
	}
	r.Duplicate = true
	return slot, r, true, nil
}

// readLegacy reads the value of key's format-2 record (a copy).
func readLegacy(db pebble.Reader, key []byte) ([]byte, bool, error) {
	raw, closer, err := db.Get(idemKey(nil, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(raw), true, nil
}

// readChunked reads the record at index from db's chunks: its key and
// value (copies). found is false if no chunk holds it (yet, or any more).
func readChunked(db pebble.Reader, index uint64) (key, val []byte, found bool, err error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: chunkKey(index), UpperBound: []byte{prefixMeta, metaPrefixChunk[1] + 1}})
	if err != nil {
		return nil, nil, false, err
	}
	defer it.Close()
	if !it.First() {
		return nil, nil, false, it.Error()
	}
	k := it.Key()
	if len(k) != len(metaPrefixChunk)+8 {
		return nil, nil, false, fmt.Errorf("%w: idempotency chunk key %x", ErrCorrupt, k)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, nil, false, err
	}
	c, found, err := findInChunk(binary.BigEndian.Uint64(k[len(metaPrefixChunk):]), v, index)
	if err != nil || !found {
		return nil, nil, false, err
	}
	return bytes.Clone(c.key), bytes.Clone(c.val), true, nil
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

// expireIdemLocked drops, through sink, up to maxExpirePerCommand records
// from the front of the recording order that expired by now or exceed
// capRecords (0: no cap) once one more is added, and moves the watermark
// past every entry of the order it passes. Under idemMu.
func (s *Store) expireIdemLocked(sink cmdSink, now int64, capRecords uint32) {
	x := &s.idem
	w := x.w
	for dropped := 0; x.head < len(x.order) && dropped < maxExpirePerCommand; {
		q := x.order[x.head]
		rec, collKey, inColl, ok := x.at(q)
		if !ok {
			x.head++ // superseded or dropped already
			w = q.index
			continue
		}
		over := capRecords > 0 && x.len() >= int(capRecords)
		if rec.expiry > now && !over {
			break
		}
		if rec.legacy {
			sink.delLegacy(idemKey(nil, []byte(x.legacy[rec.index])))
			delete(x.legacy, rec.index)
		}
		if inColl {
			delete(x.coll, collKey)
		} else {
			delete(x.recs, q.h)
		}
		x.head++
		w = q.index
		dropped++
	}
	if w != x.w {
		x.w = w
		sink.setIdemW(w)
	}
	if x.head > 1024 && x.head > len(x.order)/2 {
		x.order = append(x.order[:0:0], x.order[x.head:]...)
		x.head = 0
	}
}

// IdempotencyRecords returns the number of records in the idempotency table.
func (s *Store) IdempotencyRecords() (uint64, error) {
	h, err := s.lockIdem()
	if err != nil {
		return 0, err
	}
	defer h.release()
	defer s.idemMu.Unlock()
	return uint64(s.idem.len()), nil
}

// Idempotent returns the live record for an idempotency key at log time now
// (found=false if there is none): the result of the request that first
// used the key, from the write buffer or Pebble.
func (s *Store) Idempotent(key []byte, now int64) (r command.Result, found bool, err error) {
	h, err := s.lockIdem()
	if err != nil {
		return command.Result{}, false, err
	}
	defer h.release()
	ix := &s.idem
	var rec idemRec
	ok, verified := false, false // verified: the record is key's (else: its hash's)
	if len(ix.coll) > 0 {
		rec, ok = ix.coll[string(key)]
		verified = ok
	}
	if !ok {
		rec, ok = ix.recs[s.idemHash(key)]
	}
	if ok && rec.legacy {
		ok = ix.legacy[rec.index] == string(key)
		verified = ok
	}
	s.idemMu.Unlock()
	if !ok || rec.expiry <= now {
		return command.Result{}, false, nil
	}
	// Not found in Pebble: indexed by an Apply whose batch is not
	// committed yet, or dropped since.
	if rec.legacy {
		val, found, err := readLegacy(h.db, key)
		if err != nil || !found {
			return command.Result{}, false, err
		}
		r, err := decodeIdem(val)
		return r, err == nil, err
	}
	var k, val []byte
	inBuf := false
	s.bufMu.RLock()
	for _, t := range []*bufTable{s.active, s.draining} {
		if t == nil {
			continue
		}
		if c, ok := t.idem.run.find(rec.index); ok {
			k, val, found, inBuf = bytes.Clone(c.key), bytes.Clone(c.val), true, true
			break
		}
	}
	s.bufMu.RUnlock()
	if !inBuf {
		if k, val, found, err = readChunked(h.db, rec.index); err != nil || !found {
			return command.Result{}, false, err
		}
	}
	if !bytes.Equal(k, key) {
		if verified {
			return command.Result{}, false, fmt.Errorf("%w: idempotency record at index %d is of %q, indexed as %q's", ErrCorrupt, rec.index, k, key)
		}
		return command.Result{}, false, nil // another key's, with the same hash
	}
	if r, err = decodeIdem(val); err != nil {
		return command.Result{}, false, err
	}
	return r, true, nil
}

// newIdemHash returns a hash of idempotency keys with a random seed (the
// index is in memory only: nothing depends on the hashes but its maps).
func newIdemHash() func([]byte) uint64 {
	seed := maphash.MakeSeed()
	return func(b []byte) uint64 { return maphash.Bytes(seed, b) }
}

// forgetIdem drops the in-memory index (the database was replaced).
func (s *Store) forgetIdem() {
	s.idemMu.Lock()
	s.idem = idemIndex{}
	s.idemMu.Unlock()
}
