package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

// The idempotency table against a reference: the rules of commands.go
// written out plainly over maps, with command.Eval over a map of values.
//
//	TRIREME_IDEM_SEED=<n>   replay one seed
//	TRIREME_IDEM_ITERS=<n>  number of seeds to run (default 4)
//	TRIREME_IDEM_OPS=<n>    operations per seed (default 400)

type idemRef struct {
	kv      map[string]refVal
	recs    map[string]idemRefRec
	order   []idemRefQ
	results map[uint64]command.Result // what each command entry reported
}

type refVal struct {
	v   []byte
	ver uint64
}

type idemRefRec struct {
	expiry int64
	index  uint64
	r      command.Result
}

type idemRefQ struct {
	key   string
	index uint64
}

func newIdemRef() *idemRef {
	return &idemRef{kv: map[string]refVal{}, recs: map[string]idemRefRec{}, results: map[uint64]command.Result{}}
}

func (m *idemRef) get(k []byte) ([]byte, uint64, bool, error) {
	v, ok := m.kv[string(k)]
	return v.v, v.ver, ok, nil
}

func (m *idemRef) apply(e entry.Entry) {
	switch e.Kind {
	case entry.KindPut:
		m.kv[string(e.Key)] = refVal{bytes.Clone(e.Value), e.Index}
	case entry.KindDelete:
		delete(m.kv, string(e.Key))
	case entry.KindCommand:
		c, err := command.Decode(e.Value)
		if err != nil {
			panic(err)
		}
		key := string(c.IdemKey)
		if key != "" {
			m.expire(c.Time, c.IdemCap)
			if rec, ok := m.recs[key]; ok && rec.expiry > c.Time {
				r := rec.r
				r.Duplicate = true
				m.results[e.Index] = r
				return
			}
		}
		effs, r, err := command.Eval(&c, e.Index, m.get)
		if err != nil {
			panic(err)
		}
		for _, ef := range effs {
			if ef.Delete {
				delete(m.kv, string(ef.Key))
			} else {
				m.kv[string(ef.Key)] = refVal{bytes.Clone(ef.Value), e.Index}
			}
		}
		if key != "" {
			m.recs[key] = idemRefRec{expiry: c.Time + c.IdemWindow, index: e.Index, r: r}
			m.order = append(m.order, idemRefQ{key, e.Index})
		}
		m.results[e.Index] = r
	}
}

// expire drops records from the front of the recording order: expired ones
// and the oldest beyond the cap, at most maxExpirePerCommand.
func (m *idemRef) expire(now int64, capRecords uint32) {
	for dropped := 0; len(m.order) > 0 && dropped < maxExpirePerCommand; {
		q := m.order[0]
		rec, ok := m.recs[q.key]
		if !ok || rec.index != q.index {
			m.order = m.order[1:]
			continue
		}
		if rec.expiry > now && !(capRecords > 0 && len(m.recs) >= int(capRecords)) {
			break
		}
		delete(m.recs, q.key)
		m.order = m.order[1:]
		dropped++
	}
}

func fmtResult(r command.Result) string {
	return fmt.Sprintf("{code %d applied %v index %d version %d int %d old %q found %v dup %v}",
		r.Code, r.Applied, r.Index, r.Version, r.Int, r.Old, r.OldFound, r.Duplicate)
}

type idemModelRun struct {
	t      *testing.T
	rng    *rand.Rand
	cfg    Config
	dir    string
	s      *Store
	ref    *idemRef
	log    []entry.Entry
	now    int64
	capRec uint32
	ids    []string
	weak   bool // a hash of 3 values: most keys collide (idemIndex.coll)

	crashes, cuts, installs, restarts, dups int
}

func TestIdempotencyModel(t *testing.T) {
	seeds := modelSeeds(t, "TRIREME_IDEM_SEED", "TRIREME_IDEM_ITERS", 4)
	ops := envInt(t, "TRIREME_IDEM_OPS", 400)
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d; replay: TRIREME_IDEM_SEED=%d TRIREME_IDEM_OPS=%d go test ./internal/store -run 'TestIdempotencyModel$' -v", seed, seed, ops)
			runIdemModel(t, seed, ops)
		})
	}
}

func runIdemModel(t *testing.T, seed uint64, ops int) {
	r := &idemModelRun{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), ref: newIdemRef(), now: 1000 * sec}
	r.cfg = testConfig()
	r.cfg.MemTableBytes = 64 << 10
	r.cfg.WriteBufferBytes = []int64{0, 1 << 10, 8 << 10, 64 << 20}[r.rng.IntN(4)]
	r.cfg.drainSeed = r.rng.Uint64() | 1
	r.capRec = []uint32{0, 6, 12, 1000}[r.rng.IntN(4)]
	r.weak = r.rng.IntN(3) == 0
	for i := range 24 {
		r.ids = append(r.ids, fmt.Sprintf("id-%02d", i))
	}
	r.ids = append(r.ids, strings.Repeat("L", command.MaxIdemKey), "\x00")
	t.Logf("WriteBufferBytes %d, cap %d, weak hash %v", r.cfg.WriteBufferBytes, r.capRec, r.weak)
	r.dir = filepath.Join(t.TempDir(), "store")
	r.s = r.open()
	defer func() { r.s.Close() }()
	for op := 0; op < ops; op++ {
		switch p := r.rng.IntN(100); {
		case p < 55:
			r.applyBatch(op)
		case p < 63:
			r.checkIdempotent(op)
		case p < 67:
			if err := r.s.Close(); err != nil {
				t.Fatalf("op %d: Close: %v", op, err)
			}
			r.s = r.open()
			r.restarts++
		case p < 74:
			r.crash(op)
		case p < 78:
			r.checkpointInstall(op)
		case p < 81:
			if err := r.s.Flush(); err != nil {
				t.Fatalf("op %d: Flush: %v", op, err)
			}
		case p < 83:
			r.capRec = []uint32{0, 6, 12, 1000}[r.rng.IntN(4)]
		default:
			r.checkCount(op)
		}
	}
	for _, id := range r.ids {
		r.checkKey(ops, id)
	}
	r.checkCount(ops)
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	r.s = r.open()
	r.checkCount(ops)
	t.Logf("%d ops, index %d, %d duplicates, %d crashes (%d mid-drain), %d restarts, %d installs",
		ops, len(r.log), r.dups, r.crashes, r.cuts, r.restarts, r.installs)
}

func (r *idemModelRun) open() *Store {
	s, err := Open(r.dir, r.cfg)
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	r.hook(s)
	return s
}

func (r *idemModelRun) hook(s *Store) {
	s.drainChunk = 1 + r.rng.IntN(4)
	if r.weak {
		s.idemHash = func(b []byte) uint64 { return uint64(len(b) % 3) }
	}
}

// randomEntry makes the entry at index i: mostly commands with an
// idempotency key from a small set (so that keys come back, live, expired
// or dropped), blind or not.
func (r *idemModelRun) randomEntry(i uint64, blind bool) entry.Entry {
	r.now += int64(r.rng.IntN(3000)) * int64(time.Millisecond)
	user := []byte(fmt.Sprint("u", r.rng.IntN(20)))
	p := r.rng.IntN(100)
	switch {
	case p < 12:
		return entry.Entry{Term: 1, Index: i, Kind: entry.KindPut, Key: user, Value: fmt.Appendf(nil, "%d", r.rng.IntN(100))}
	case p < 15 && !blind:
		return entry.Entry{Term: 1, Index: i, Kind: entry.KindNoop}
	}
	var c command.Command
	q := r.rng.IntN(100)
	if blind {
		q = r.rng.IntN(70)
	}
	switch {
	case q < 55:
		c = command.Command{Op: command.OpSet, Key: user, Value: fmt.Appendf(nil, "%d", r.rng.IntN(100))}
	case q < 65:
		c = command.Command{Op: command.OpDelete, Key: user}
	case q < 70:
		c = command.Command{Op: command.OpMSet, Keys: [][]byte{user, []byte("m")}, Values: [][]byte{[]byte("1"), []byte("2")}}
	case q < 90:
		c = command.Command{Op: command.OpIncr, Key: user, Delta: int64(r.rng.IntN(5))}
	default:
		c = command.Command{Op: command.OpSet, Key: user, Value: bytes.Repeat([]byte("o"), r.rng.IntN(300)), ReturnOld: true}
	}
	if r.rng.IntN(10) > 0 {
		c.IdemKey = []byte(r.ids[r.rng.IntN(len(r.ids))])
	}
	window := []int64{2, 8, 30}[r.rng.IntN(3)] * sec
	c.Stamp(r.now, window, r.capRec, 1<<20)
	return entry.Entry{Term: 1, Index: i, Kind: entry.KindCommand, Key: c.Key, Value: command.Encode(nil, &c)}
}

func (r *idemModelRun) applyBatch(op int) {
	n := 1 + r.rng.IntN(8)
	blind := r.rng.IntN(2) == 0 // a batch for the write buffer
	var batch []entry.Entry
	for range n {
		e := r.randomEntry(uint64(len(r.log)+1), blind)
		r.log = append(r.log, e)
		r.ref.apply(e)
		batch = append(batch, e)
	}
	r.applyChecked(op, batch)
}

// applyChecked applies ents and checks each command's result against the
// reference's (for a replay: what the entry reported the first time).
func (r *idemModelRun) applyChecked(op int, ents []entry.Entry) {
	got := map[uint64]command.Result{}
	if err := r.s.ApplyReport(ents, func(index, term uint64, res command.Result) { got[index] = res }); err != nil {
		r.t.Fatalf("op %d: Apply(%d..%d): %v", op, ents[0].Index, ents[len(ents)-1].Index, err)
	}
	for _, e := range ents {
		if e.Kind != entry.KindCommand {
			continue
		}
		want := r.ref.results[e.Index]
		if fmtResult(got[e.Index]) != fmtResult(want) {
			c, _ := command.Decode(e.Value)
			r.t.Fatalf("op %d: entry %d (%s, idempotency key %q, time %d): result %s, reference %s",
				op, e.Index, c.Op, c.IdemKey, c.Time, fmtResult(got[e.Index]), fmtResult(want))
		}
		if want.Duplicate {
			r.dups++
		}
	}
}

func (r *idemModelRun) checkKey(op int, id string) {
	got, found, err := r.s.Idempotent([]byte(id), r.now)
	if err != nil {
		r.t.Fatalf("op %d: Idempotent(%q): %v", op, id, err)
	}
	rec, ok := r.ref.recs[id]
	live := ok && rec.expiry > r.now
	if found != live || (live && fmtResult(got) != fmtResult(rec.r)) {
		r.t.Fatalf("op %d: Idempotent(%q) at %d = %s %v; reference %s %v", op, id, r.now, fmtResult(got), found, fmtResult(rec.r), live)
	}
}

func (r *idemModelRun) checkIdempotent(op int) {
	for range 4 {
		r.checkKey(op, r.ids[r.rng.IntN(len(r.ids))])
	}
}

func (r *idemModelRun) checkCount(op int) {
	n, err := r.s.IdempotencyRecords()
	if err != nil || n != uint64(len(r.ref.recs)) {
		r.t.Fatalf("op %d: IdempotencyRecords = %d, %v; reference %d", op, n, err, len(r.ref.recs))
	}
}

// crash loses what Pebble did not flush (sometimes in the middle of a
// drain), reopens and replays the log as the node would.
func (r *idemModelRun) crash(op int) {
	cut := false
	if r.rng.IntN(2) == 0 {
		var err error
		if cut, err = r.s.crashMidDrain(1 + r.rng.IntN(2)); err != nil {
			r.t.Fatalf("op %d: crash in the middle of a drain: %v", op, err)
		}
	}
	if !cut {
		if err := r.s.close(false); err != nil {
			r.t.Fatalf("op %d: crash: %v", op, err)
		}
	} else {
		r.cuts++
	}
	r.s = r.open()
	r.crashes++
	for from := r.s.AppliedIndex(); from < uint64(len(r.log)); {
		to := min(from+uint64(1+r.rng.IntN(10)), uint64(len(r.log)))
		r.applyChecked(op, r.log[from:to])
		from = to
	}
	r.checkCount(op)
}

// checkpointInstall moves the state to a new store through a checkpoint.
func (r *idemModelRun) checkpointInstall(op int) {
	base := r.t.TempDir()
	ck := filepath.Join(base, "ck")
	if _, _, err := r.s.Checkpoint(ck); err != nil {
		r.t.Fatalf("op %d: Checkpoint: %v", op, err)
	}
	dst, err := Open(filepath.Join(base, "store"), r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.hook(dst)
	if _, _, err := dst.Install(ck); err != nil {
		r.t.Fatalf("op %d: Install: %v", op, err)
	}
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.s, r.dir = dst, filepath.Join(base, "store")
	r.installs++
	r.checkCount(op)
}

// TestIdemChunkRoundTrip: records written as chunks decode to the same
// records, chunks split at idemChunkBytes, and dead records (at or below
// the watermark) are left out.
func TestIdemChunkRoundTrip(t *testing.T) {
	type rec struct {
		index  uint64
		key    string
		expiry int64
		r      command.Result
	}
	var recs []rec
	var run idemRun
	for i := uint64(10); i < 40; i++ {
		x := rec{index: i, key: fmt.Sprint("key-", i), expiry: int64(i) * sec, r: command.Result{Index: i, Applied: true, Version: i, Int: -int64(i)}}
		switch {
		case i == 35:
			x.r.Old, x.r.OldFound = bytes.Repeat([]byte{byte(i)}, 1500<<10), true // a chunk of its own, over the size
		case i%7 == 0:
			x.r.Old, x.r.OldFound = bytes.Repeat([]byte{byte(i)}, 700<<10), true // forces splits
		}
		if i == 11 {
			x.key = ""
		}
		recs = append(recs, x)
		run.add(x.index, []byte(x.key), x.expiry, &x.r)
	}
	for _, w := range []uint64{0, 9, 10, 25, 39, 50} {
		var got []rec
		var lasts []uint64
		prevLast := uint64(0)
		run.chunks(w, func(last uint64, val []byte) {
			if _, n, _ := nextChunkRec(val); len(val) > idemChunkBytes && n != len(val) {
				t.Fatalf("w=%d: chunk %d of %d bytes holds more than one record", w, last, len(val))
			}
			if last <= prevLast {
				t.Fatalf("w=%d: chunk %d after %d", w, last, prevLast)
			}
			prevLast = last
			lasts = append(lasts, last)
			err := walkChunk(last, val, func(c chunkRec) bool {
				r, err := decodeIdem(c.val)
				if err != nil {
					t.Fatalf("w=%d: chunk %d: %v", w, last, err)
				}
				got = append(got, rec{index: c.index, key: string(c.key), expiry: c.expiry, r: r})
				return true
			})
			if err != nil {
				t.Fatalf("w=%d: %v", w, err)
			}
			if _, found, err := findInChunk(last, val, last); !found || err != nil {
				t.Fatalf("w=%d: last record of chunk %d not found: %v", w, last, err)
			}
		})
		var want []rec
		for _, x := range recs {
			if x.index > w {
				want = append(want, x)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("w=%d: %d records, want %d", w, len(got), len(want))
		}
		for i := range got {
			if got[i].index != want[i].index || got[i].key != want[i].key || got[i].expiry != want[i].expiry || fmtResult(got[i].r) != fmtResult(want[i].r) {
				t.Fatalf("w=%d: record %d = %+v, want %+v", w, i, got[i], want[i])
			}
		}
		if w == 0 && len(lasts) < 5 {
			t.Fatalf("chunks %v: the large records did not split them", lasts)
		}
	}
	for _, x := range recs {
		c, ok := run.find(x.index)
		if !ok || string(c.key) != x.key {
			t.Fatalf("find(%d) = %q %v", x.index, c.key, ok)
		}
	}
	if _, ok := run.find(9); ok {
		t.Fatal("find(9) found a record")
	}
}

// goodChunk returns a valid chunk of three records and its last index.
func goodChunk() ([]byte, uint64) {
	var b []byte
	for _, i := range []uint64{5, 6, 9} {
		b = appendIdemRecord(b, i, fmt.Appendf(nil, "k%d", i), int64(i)*sec, &command.Result{Index: i, Applied: true, Version: i})
	}
	return b, 9
}

func TestIdemChunkCorrupt(t *testing.T) {
	good, last := goodChunk()
	recLen := len(good) / 3
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, c := range map[string]struct {
		b    []byte
		last uint64
	}{
		"empty":              {nil, last},
		"truncated length":   {good[:2], last},
		"truncated record":   {good[:len(good)-3], last},
		"dropped last":       {good[:2*recLen], last},
		"wrong last index":   {good, 10},
		"huge length":        {mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b, 0xffffffff); return b }), last},
		"length beyond data": {mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b, uint32(len(b))); return b }), last},
		"short length":       {mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b, 3); return b }), last},
		"key too long":       {mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[12:], 0xffff); return b }), last},
		"key past record":    {mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[12:], uint16(recLen)); return b }), last},
		"index out of order": {mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[recLen+4:], 5)
			binary.LittleEndian.PutUint64(b[2*recLen-30+2:], 5) // its result's index too
			return b
		}), last},
		"result index": {mut(func(b []byte) []byte { b[recLen-30+2]++; return b }), last},
	} {
		t.Run(name, func(t *testing.T) {
			err := walkChunk(c.last, c.b, func(chunkRec) bool { return true })
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "idempotency chunk") {
				t.Fatalf("walkChunk = %v, want ErrCorrupt naming the chunk", err)
			}
		})
	}
	if err := walkChunk(last, good, func(chunkRec) bool { return true }); err != nil {
		t.Fatalf("the good chunk: %v", err)
	}
}

// TestCorruptChunkInTheStore: a damaged chunk gives ErrCorrupt when the
// table is loaded, and when a duplicate's record is read from it.
func TestCorruptChunkInTheStore(t *testing.T) {
	setup := func(t *testing.T) (*Store, string) {
		dir := t.TempDir()
		s := mustOpen(t, dir)
		for i := uint64(1); i <= 5; i++ {
			applyCmds(t, s, cmdEntry(i, command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: fmt.Appendf(nil, "id%d", i)}))
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		return s, dir
	}
	damage := func(t *testing.T, s *Store) {
		var keys [][]byte
		if err := scanMeta(s.h.db, metaPrefixChunk, func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil }); err != nil || len(keys) == 0 {
			t.Fatalf("chunks %q: %v", keys, err)
		}
		for _, k := range keys {
			if err := s.h.db.Set(k, []byte{1, 2, 3, 4, 5}, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("load", func(t *testing.T) {
		s, dir := setup(t)
		damage(t, s)
		s.Close()
		s = mustOpen(t, dir)
		defer s.Close()
		if _, err := s.IdempotencyRecords(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("IdempotencyRecords = %v, want ErrCorrupt", err)
		}
		if _, _, err := s.Idempotent([]byte("id1"), 2*sec); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Idempotent = %v, want ErrCorrupt", err)
		}
		err := s.Apply([]entry.Entry{cmdEntry(6, command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: []byte("id1")})})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Apply = %v, want ErrCorrupt", err)
		}
	})
	t.Run("lookup", func(t *testing.T) {
		s, _ := setup(t)
		defer s.Close()
		if n, err := s.IdempotencyRecords(); err != nil || n != 5 {
			t.Fatalf("IdempotencyRecords = %d, %v", n, err)
		}
		damage(t, s) // after the index was loaded
		if _, _, err := s.Idempotent([]byte("id3"), 6*sec); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Idempotent = %v, want ErrCorrupt", err)
		}
		err := s.Apply([]entry.Entry{cmdEntry(6, command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: []byte("id3")})})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Apply of a duplicate = %v, want ErrCorrupt", err)
		}
	})
}

// FuzzIdemChunk feeds arbitrary bytes to the chunk decoder: it never
// panics, refuses with ErrCorrupt, and a chunk it accepts re-encodes to the
// same bytes, each record found by its index.
func FuzzIdemChunk(f *testing.F) {
	good, last := goodChunk()
	f.Add(good, last)
	f.Add(good[:len(good)-1], last)
	one := appendIdemRecord(nil, 1, []byte("k"), 5, &command.Result{Index: 1, Old: []byte("old"), OldFound: true})
	f.Add(one, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, last uint64) {
		var re []byte
		var idx []uint64
		err := walkChunk(last, b, func(c chunkRec) bool {
			re = binary.LittleEndian.AppendUint32(re, uint32(18+len(c.key)+len(c.val)-8))
			re = binary.LittleEndian.AppendUint64(re, c.index)
			re = binary.LittleEndian.AppendUint16(re, uint16(len(c.key)))
			re = append(re, c.key...)
			re = append(re, c.val...)
			idx = append(idx, c.index)
			if int64(binary.LittleEndian.Uint64(c.val)) != c.expiry {
				t.Fatalf("expiry %d, value says %d", c.expiry, binary.LittleEndian.Uint64(c.val))
			}
			return true
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("accepted chunk re-encodes differently:\n%x\n%x", re, b)
		}
		for _, i := range idx {
			if c, found, err := findInChunk(last, b, i); err != nil || !found || c.index != i {
				t.Fatalf("findInChunk(%d) = %d %v %v", i, c.index, found, err)
			}
		}
	})
}

// toFormat2 rewrites s's idempotency table as the previous release kept it
// (one 'i' key per record: expiry, encoded result; no chunks, no
// watermark) and marks the database format 2.
func toFormat2(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	db := s.h.db
	w, err := readIdemW(db)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		index uint64
		val   []byte
	}
	live := map[string]rec{}
	b := db.NewBatch()
	err = scanMeta(db, metaPrefixChunk, func(k, v []byte) error {
		_ = b.Delete(k, nil)
		return walkChunk(binary.BigEndian.Uint64(k[2:]), v, func(c chunkRec) bool {
			if old, ok := live[string(c.key)]; c.index > w && (!ok || old.index < c.index) {
				live[string(c.key)] = rec{c.index, bytes.Clone(c.val)}
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range live {
		_ = b.Set(idemKey(nil, []byte(k)), r.val, nil)
	}
	_ = b.Delete(metaKeyIdemW, nil)
	_ = b.Set(metaKeyFormat, []byte{2, 0, 0, 0}, nil)
	if err := db.Apply(b, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	s.forgetIdem()
	s.h.chunked.Store(false)
}

func diskFormat(t *testing.T, s *Store) uint32 {
	t.Helper()
	f, err := readFormat(s.h.db, s.h.path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func format2Keys(t *testing.T, s *Store) []string {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := scanMeta(s.h.db, metaPrefixIdem, func(k, _ []byte) error { keys = append(keys, string(k[2:])); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestFormat2IdempotencyRecords: a store of the previous release (format 2,
// one Pebble key per record) opens with its records, answers retries and
// drops them (by time and by cap) exactly as a store that kept them in
// chunks, deleting their keys as it does; it is marked format 3 by its first
// chunk. Its checkpoint installs with the records too.
func TestFormat2IdempotencyRecords(t *testing.T) {
	t.Run("hash", func(t *testing.T) { testFormat2IdempotencyRecords(t, nil) })
	// Most keys collide: records of both formats in idemIndex.coll.
	t.Run("weak hash", func(t *testing.T) {
		testFormat2IdempotencyRecords(t, func(b []byte) uint64 { return uint64(len(b) % 3) })
	})
}

func testFormat2IdempotencyRecords(t *testing.T, hash func([]byte) uint64) {
	dirA, dirB := t.TempDir(), t.TempDir()
	open := func(dir string) *Store {
		s := mustOpen(t, dir)
		if hash != nil {
			s.idemHash = hash
		}
		return s
	}
	a, b := open(dirA), open(dirB)
	defer func() { a.Close(); b.Close() }()
	ref := newIdemRef()
	var i uint64
	next := func(id string, now, window int64, capRecords uint32) entry.Entry {
		i++
		c := command.Command{Op: command.OpSet, Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "v%d", i), IdemKey: []byte(id)}
		if i%3 == 0 {
			c = command.Command{Op: command.OpIncr, Key: []byte("n"), Delta: 1, IdemKey: []byte(id)}
		}
		c.Stamp(now, window, capRecords, 1<<20)
		return entry.Entry{Term: 1, Index: i, Kind: entry.KindCommand, Key: c.Key, Value: command.Encode(nil, &c)}
	}
	both := func(e entry.Entry) {
		t.Helper()
		ref.apply(e)
		want := fmtResult(ref.results[e.Index])
		for name, s := range map[string]*Store{"chunked": a, "format 2": b} {
			if got := applyCmds(t, s, e)[e.Index]; fmtResult(got) != want {
				t.Fatalf("entry %d on the %s store: %s, reference %s", e.Index, name, fmtResult(got), want)
			}
		}
	}
	check := func(now int64) {
		t.Helper()
		na, _ := a.IdempotencyRecords()
		nb, err := b.IdempotencyRecords()
		if err != nil || na != nb || nb != uint64(len(ref.recs)) {
			t.Fatalf("records: %d chunked, %d (%v) format 2, reference %d", na, nb, err, len(ref.recs))
		}
		for id, rec := range ref.recs {
			ra, fa, _ := a.Idempotent([]byte(id), now)
			rb, fb, err := b.Idempotent([]byte(id), now)
			if live := rec.expiry > now; err != nil || fa != live || fb != live || fmtResult(ra) != fmtResult(rb) {
				t.Fatalf("Idempotent(%q): %s %v chunked, %s %v (%v) format 2; live %v", id, fmtResult(ra), fa, fmtResult(rb), fb, err, live)
			}
		}
	}
	both(next("long", 1*sec, 1000*sec, 1000))
	both(next("short", 2*sec, 5*sec, 1000))
	for n := int64(3); n <= 20; n++ {
		both(next(fmt.Sprint("p", n), n*sec, 60*sec, 1000))
	}
	toFormat2(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(dirB)
	if f := diskFormat(t, b); f != 2 {
		t.Fatalf("format %d after the rewrite", f)
	}
	if keys := format2Keys(t, b); len(keys) != 20 {
		t.Fatalf("%d format-2 records, want 20", len(keys))
	}
	check(21 * sec)

	// A checkpoint of it carries them.
	cp := filepath.Join(t.TempDir(), "cp")
	if _, _, err := b.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	c := open(filepath.Join(filepath.Dir(cp), "store"))
	if _, _, err := c.Install(cp); err != nil {
		t.Fatal(err)
	}
	if r, found, err := c.Idempotent([]byte("p9"), 21*sec); err != nil || !found || r.Index != 9 {
		t.Fatalf("installed format-2 checkpoint: %+v %v %v", r, found, err)
	}
	c.Close()

	// "short" expired but is not dropped yet ("long" is older): a retry
	// records it again, and its format-2 key goes.
	both(next("short", 30*sec, 60*sec, 1000))
	if keys := format2Keys(t, b); slices.Contains(keys, "short") || len(keys) != 19 {
		t.Fatalf("format-2 records after superseding %q: %q", "short", keys)
	}
	if f := diskFormat(t, b); f != FormatVersion {
		t.Fatalf("format %d after the first chunk, want %d", f, FormatVersion)
	}
	both(next("p10", 31*sec, 60*sec, 1000)) // a duplicate from format 2
	if !ref.results[i].Duplicate {
		t.Fatal("the retry of p10 was not a duplicate")
	}
	check(31 * sec)
	// Time passes the p records by; then the cap drops "long".
	now := int64(31)
	for n := range 150 {
		now++
		both(next(fmt.Sprint("q", n%40), now*sec, 20*sec, uint32(100-n/2)))
		if n == 70 {
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = open(dirB)
			check(now * sec)
		}
	}
	check(now * sec)
	if _, ok := ref.recs["long"]; ok {
		t.Fatal("the cap did not drop the long-lived record")
	}
	if keys := format2Keys(t, b); len(keys) != 0 {
		t.Fatalf("format-2 records left after all were dropped: %q", keys)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(dirB)
	check(now * sec)
}

// TestChunksDieUnderTheWatermark: chunks whose records are all dead are
// deleted, and the watermark is stored.
func TestChunksDieUnderTheWatermark(t *testing.T) {
	for _, wb := range []int64{0, 4 << 10} {
		t.Run(fmt.Sprint("buffer=", wb), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, testBufConfig(wb))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close() }()
			chunks := func() []uint64 {
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				var lasts []uint64
				if err := scanMeta(s.h.db, metaPrefixChunk, func(k, _ []byte) error {
					lasts = append(lasts, binary.BigEndian.Uint64(k[2:]))
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				return lasts
			}
			for i := uint64(1); i <= 400; i++ {
				c := command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: fmt.Appendf(nil, "id%d", i)}
				c.Stamp(int64(i)*sec, 10*sec, 1000, 1<<20)
				applyCmds(t, s, cmdEntry(i, c))
				if i%50 == 0 {
					if err := s.Flush(); err != nil { // chunks reach Pebble now and then
						t.Fatal(err)
					}
				}
			}
			w, err := readIdemW(s.h.db)
			if err != nil || w < 380 {
				t.Fatalf("watermark %d (%v), want at least 380", w, err)
			}
			lasts := chunks()
			if len(lasts) == 0 || lasts[0] <= w {
				t.Fatalf("chunks %v under the watermark %d", lasts, w)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(dir, testBufConfig(wb))
			if err != nil {
				t.Fatal(err)
			}
			if n, err := s.IdempotencyRecords(); err != nil || n != 10 {
				t.Fatalf("%d records after reopening (%v), want 10", n, err)
			}
		})
	}
}

// TestNewerFormatRefused: a database of a format above FormatVersion does
// not open, and its checkpoint does not install.
func TestNewerFormatRefused(t *testing.T) {
	base := t.TempDir()
	s := mustOpen(t, filepath.Join(base, "a"))
	mustApply(t, s, put(1, "a", "1"))
	cp := filepath.Join(base, "cp")
	if _, _, err := s.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	newer := binary.LittleEndian.AppendUint32(nil, FormatVersion+1)
	if err := s.h.db.Set(metaKeyFormat, newer, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := pebble.Open(cp, &pebble.Options{ErrorIfNotExists: true, Logger: quietLogger{}})
	if err == nil {
		err = errors.Join(db.Set(metaKeyFormat, newer, pebble.Sync), db.Flush(), db.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, filepath.Join(base, "b"))
	defer d.Close()
	if _, _, err := d.Install(cp); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Install = %v, want ErrIncompatible", err)
	}
	if _, err := Open(filepath.Join(base, "a"), testConfig()); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open = %v, want ErrIncompatible", err)
	}
}

// TestIdempotentDuringApply: Idempotent, which reads without the write
// lock, finds every record applied before it was called while applies,
// drains of the write buffer and flushes go on.
func TestIdempotentDuringApply(t *testing.T) {
	s, err := Open(t.TempDir(), testBufConfig(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.drainChunk = 3
	var applied atomic.Uint64
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-done:
				return
			default:
			}
			n := applied.Load()
			if n == 0 {
				continue
			}
			i := 1 + rng.Uint64N(n)
			r, found, err := s.Idempotent(fmt.Appendf(nil, "id%d", i), int64(n)*sec)
			if err != nil || !found || r.Index != i {
				errc <- fmt.Errorf("Idempotent(id%d) after %d applied: %+v %v %v", i, n, r, found, err)
				return
			}
		}
	}()
	for i := uint64(1); i <= 3000; i++ {
		c := command.Command{Op: command.OpSet, Key: fmt.Appendf(nil, "k%d", i%50), Value: []byte("v"), IdemKey: fmt.Appendf(nil, "id%d", i)}
		if i%97 == 0 {
			c = command.Command{Op: command.OpIncr, Key: []byte("n"), Delta: 1, IdemKey: c.IdemKey} // straight to Pebble
		}
		c.Stamp(int64(i)*sec, 1e6*sec, 0, 1<<20)
		mustApply(t, s, cmdEntry(i, c))
		applied.Store(i)
		if i%500 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
