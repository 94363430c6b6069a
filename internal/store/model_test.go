package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
)

// The property test drives a Store and a trivial in-memory model with the same
// random operations (applies, reads, scans, flushes, crashes with WAL replay,
// clean restarts, views, snapshot export and import) and compares them.
//
//	TRIREME_STORE_SEED=<n>   replay one seed
//	TRIREME_STORE_ITERS=<n>  number of seeds to run (default 2)
//	TRIREME_STORE_OPS=<n>    operations per seed (default 300)

type modelVal struct {
	val string
	ver uint64
}

type model struct {
	kv      map[string]modelVal
	applied uint64
	term    uint64
}

func newModel() *model { return &model{kv: map[string]modelVal{}} }

func (m *model) apply(e entry.Entry) {
	if e.Index <= m.applied {
		return
	}
	switch e.Kind {
	case entry.KindPut:
		m.kv[string(e.Key)] = modelVal{string(e.Value), e.Index}
	case entry.KindDelete:
		delete(m.kv, string(e.Key))
	}
	m.applied, m.term = e.Index, e.Term
}

// dump renders the model like dump renders a store.
func (m *model) dump() string {
	keys := make([]string, 0, len(m.kv))
	for k := range m.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	fmt.Fprintf(&sb, "applied=%d term=%d count=%d\n", m.applied, m.term, len(m.kv))
	for _, k := range keys {
		fmt.Fprintf(&sb, "%q=%q@%d\n", k, m.kv[k].val, m.kv[k].ver)
	}
	return sb.String()
}

func (m *model) scan(start, end string, limit int) []kv {
	var out []kv
	for k, v := range m.kv {
		if k >= start && (end == "" || k < end) {
			out = append(out, kv{k, v.val, v.ver})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// modelAt replays the first n log entries into a fresh model.
func modelAt(log []entry.Entry, n uint64) *model {
	m := newModel()
	for _, e := range log[:n] {
		m.apply(e)
	}
	return m
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

// modelSeeds returns the seeds of a randomized model test: the one in the
// environment variable seedEnv (a replay), else itersEnv (default iters)
// seeds from the clock.
func modelSeeds(t *testing.T, seedEnv, itersEnv string, iters int) []uint64 {
	t.Helper()
	if s := os.Getenv(seedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, s, err)
		}
		return []uint64{seed}
	}
	base := uint64(time.Now().UnixNano())
	seeds := make([]uint64, 0, iters)
	for i := 0; i < envInt(t, itersEnv, iters); i++ {
		seeds = append(seeds, base+uint64(i))
	}
	return seeds
}

func TestModel(t *testing.T) {
	seeds := modelSeeds(t, "TRIREME_STORE_SEED", "TRIREME_STORE_ITERS", 2)
	ops := envInt(t, "TRIREME_STORE_OPS", 300)
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d; replay: TRIREME_STORE_SEED=%d TRIREME_STORE_OPS=%d go test ./internal/store -run 'TestModel$' -v", seed, seed, ops)
			runModel(t, seed, ops)
		})
	}
}

type modelRun struct {
	t    *testing.T
	rng  *rand.Rand
	dir  string
	cfg  Config
	s    *Store
	m    *model
	log  []entry.Entry // every applied entry, as the WAL would keep it
	term uint64
	keys []string

	crashes, crashesAboveDurable, imports int
	recovered                             int // crashes in the middle of a drain
}

func runModel(t *testing.T, seed uint64, ops int) {
	cfg := testConfig()
	cfg.MemTableBytes = 64 << 10 // small, so Pebble also flushes on its own
	r := &modelRun{
		t:    t,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		dir:  t.TempDir(),
		cfg:  cfg,
		m:    newModel(),
		term: 1,
	}
	for i := 0; i < 40; i++ {
		r.keys = append(r.keys, fmt.Sprintf("k%02d", i))
	}
	r.keys = append(r.keys, "", "\x00", "\xff\xff")
	// The write buffer: off, tiny (drains all the time, in the background
	// while applies go on), or larger than everything written.
	r.cfg.WriteBufferBytes = []int64{0, 256, 2048, 64 << 10, 64 << 20}[r.rng.IntN(5)]
	r.cfg.drainSeed = r.rng.Uint64() | 1 // drain sizes replay with the seed
	t.Logf("WriteBufferBytes %d", r.cfg.WriteBufferBytes)
	r.s = r.open()
	defer func() { r.s.Close() }()

	var view *View
	var viewDump string
	for op := 0; op < ops; op++ {
		switch p := r.rng.IntN(100); {
		case p < 45:
			r.applyRandom()
		case p < 60:
			r.checkGet(op)
		case p < 70:
			r.checkScan(op)
		case p < 74:
			if n, err := r.s.Count(); err != nil || n != int64(len(r.m.kv)) {
				t.Fatalf("op %d: Count = %d, %v; model %d", op, n, err, len(r.m.kv))
			}
		case p < 78:
			if err := r.s.Flush(); err != nil {
				t.Fatalf("op %d: Flush: %v", op, err)
			}
			if r.s.DurableIndex() != r.m.applied {
				t.Fatalf("op %d: DurableIndex %d after Flush, applied %d", op, r.s.DurableIndex(), r.m.applied)
			}
		case p < 84:
			if view != nil {
				view.Close()
			}
			r.crash(op)
			view = nil
		case p < 86:
			if view != nil {
				view.Close()
				view = nil
			}
			if err := r.s.Close(); err != nil {
				t.Fatalf("op %d: Close: %v", op, err)
			}
			r.s = r.open()
			r.checkAll(op, "clean restart")
			if r.s.DurableIndex() != r.m.applied {
				t.Fatalf("op %d: DurableIndex %d after clean restart, applied %d", op, r.s.DurableIndex(), r.m.applied)
			}
		case p < 90:
			if view != nil {
				view.Close()
				view = nil
			}
			r.exportImport(op)
		case p < 95:
			if view == nil {
				var err error
				if view, err = r.s.View(); err != nil {
					t.Fatalf("op %d: View: %v", op, err)
				}
				viewDump = r.m.dump()
			} else {
				if got := dumpView(t, view); got != viewDump {
					t.Fatalf("op %d: view changed under later applies:\n%s\nwant:\n%s", op, got, viewDump)
				}
				view.Close()
				view = nil
			}
		default:
			r.checkAll(op, "check")
		}
	}
	if view != nil {
		view.Close()
	}
	r.checkAll(ops, "final")
	t.Logf("%d ops, final index %d, %d crashes (%d recovered above DurableIndex, %d in the middle of a drain), %d imports",
		ops, r.m.applied, r.crashes, r.crashesAboveDurable, r.recovered, r.imports)
}

func (r *modelRun) open() *Store {
	s, err := Open(r.dir, r.cfg)
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	// A small limit on remembered keys, so that Count takes both of its
	// paths (resolving written keys, and scanning after the limit).
	s.ctr.max = 1 + r.rng.IntN(24)
	// Small drain batches, so that drains split and crashes can cut them.
	s.drainChunk = 1 + r.rng.IntN(4)
	return s
}

func (r *modelRun) key() string { return r.keys[r.rng.IntN(len(r.keys))] }

// applyRandom applies a random batch, sometimes resending already-applied entries.
func (r *modelRun) applyRandom() {
	if r.rng.IntN(10) == 0 {
		r.term++
	}
	n := 1 + r.rng.IntN(20)
	var batch []entry.Entry
	if overlap := r.rng.IntN(4); overlap > 0 && len(r.log) > 0 {
		from := max(0, len(r.log)-overlap)
		batch = append(batch, r.log[from:]...)
	}
	next := r.m.applied + 1
	for i := 0; i < n; i++ {
		e := entry.Entry{Term: r.term, Index: next, Key: []byte(r.key()), RequestID: uint64(r.rng.Int64())}
		switch p := r.rng.IntN(10); {
		case p < 6:
			e.Kind = entry.KindPut
			size := r.rng.IntN(300)
			if r.rng.IntN(8) == 0 {
				size = 2000 + r.rng.IntN(6000) // fills memtables, so Pebble flushes on its own
			}
			e.Value = make([]byte, size)
			for j := range e.Value {
				e.Value[j] = byte('a' + r.rng.IntN(26))
			}
		case p < 9:
			e.Kind = entry.KindDelete
		default:
			e.Kind = entry.KindNoop
			e.Key = nil
		}
		batch = append(batch, e)
		next++
	}
	if err := r.s.Apply(batch); err != nil {
		r.t.Fatalf("Apply(%d..%d): %v", batch[0].Index, batch[len(batch)-1].Index, err)
	}
	for _, e := range batch {
		if e.Index > r.m.applied {
			r.log = append(r.log, e)
		}
		r.m.apply(e)
	}
	if r.s.AppliedIndex() != r.m.applied {
		r.t.Fatalf("AppliedIndex %d, model %d", r.s.AppliedIndex(), r.m.applied)
	}
}

func (r *modelRun) checkGet(op int) {
	k := r.key()
	v, ver, found, err := r.s.Get([]byte(k))
	want, ok := r.m.kv[k]
	if err != nil || found != ok || string(v) != want.val || ver != want.ver {
		r.t.Fatalf("op %d: Get(%q) = %q@%d found=%v err=%v; model %q@%d found=%v", op, k, v, ver, found, err, want.val, want.ver, ok)
	}
}

func (r *modelRun) checkScan(op int) {
	start, end := r.key(), r.key()
	if r.rng.IntN(3) == 0 {
		end = ""
	}
	limit := r.rng.IntN(10) - 2
	v, err := r.s.View()
	if err != nil {
		r.t.Fatalf("op %d: View: %v", op, err)
	}
	defer v.Close()
	got := mustScan(r.t, v, []byte(start), []byte(end), limit)
	want := r.m.scan(start, end, limit)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		r.t.Fatalf("op %d: Scan(%q, %q, %d) = %v; model %v", op, start, end, limit, got, want)
	}
}

func (r *modelRun) checkAll(op int, what string) {
	if got, want := dump(r.t, r.s), r.m.dump(); got != want {
		r.t.Fatalf("op %d (%s): store differs from model:\nstore:\n%s\nmodel:\n%s", op, what, got, want)
	}
}

// crash drops Pebble's unflushed memtable, checks the crash contract, and
// replays the log from the recovered applied index in random batches.
func (r *modelRun) crash(op int) {
	durable, applied := r.s.DurableIndex(), r.s.AppliedIndex()
	cut := false
	if r.rng.IntN(2) == 0 {
		var err error
		if cut, err = r.s.crashMidDrain(1 + r.rng.IntN(2)); err != nil {
			r.t.Fatalf("op %d: crash in the middle of a drain: %v", op, err)
		}
	}
	if !cut {
		if err := r.s.close(false); err != nil {
			r.t.Fatalf("op %d: crash close: %v", op, err)
		}
	}
	r.s = r.open()
	got := r.s.AppliedIndex()
	if got < durable || got > applied {
		r.t.Fatalf("op %d: after crash applied %d, want within [durable %d, applied %d]", op, got, durable, applied)
	}
	// A drain cut short: replay through RecoverIndex first, as the node
	// does; from there the state must be the log prefix.
	if rec := r.s.RecoverIndex(); rec > got {
		if rec > applied {
			r.t.Fatalf("op %d: after crash RecoverIndex %d > applied %d before it", op, rec, applied)
		}
		if err := r.s.Apply(r.log[got:rec]); err != nil {
			r.t.Fatalf("op %d: replay %d..%d to RecoverIndex: %v", op, got+1, rec, err)
		}
		r.recovered++
		got = rec
	}
	if want := modelAt(r.log, got).dump(); dump(r.t, r.s) != want {
		r.t.Fatalf("op %d: state after crash at index %d is not the log prefix:\n%s\nwant:\n%s", op, got, dump(r.t, r.s), want)
	}
	r.crashes++
	if got > durable {
		r.crashesAboveDurable++
	}
	// Replay, starting a little before the recovered index (Apply skips).
	from := uint64(0)
	if got > 3 {
		from = got - 3
	}
	for from < uint64(len(r.log)) {
		n := uint64(1 + r.rng.IntN(30))
		to := min(from+n, uint64(len(r.log)))
		if err := r.s.Apply(r.log[from:to]); err != nil {
			r.t.Fatalf("op %d: replay %d..%d: %v", op, from+1, to, err)
		}
		from = to
	}
	r.checkAll(op, fmt.Sprintf("crash recovered at %d of %d (durable %d) and replayed", got, applied, durable))
}

// exportImport moves the state into a new store directory through a snapshot
// and continues on the new store (a follower installing a snapshot).
func (r *modelRun) exportImport(op int) {
	var buf bytes.Buffer
	chunk := 1 + r.rng.IntN(2000)
	idx, err := r.s.Export(&buf, chunk, nil)
	if err != nil {
		r.t.Fatalf("op %d: Export: %v", op, err)
	}
	if idx != r.m.applied {
		r.t.Fatalf("op %d: Export index %d, model %d", op, idx, r.m.applied)
	}
	dir := r.t.TempDir()
	dst, err := Open(dir, r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	if got, err := dst.Import(&buf, nil); err != nil || got != idx {
		r.t.Fatalf("op %d: Import = %d, %v; want %d", op, got, err, idx)
	}
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.s, r.dir = dst, dir
	r.imports++
	r.checkAll(op, "after import")
}

func dumpView(t testing.TB, v *View) string {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "applied=%d term=%d count=%d\n", v.AppliedIndex(), v.AppliedTerm(), v.Count())
	err := v.Scan(nil, nil, 0, func(k, val []byte, ver uint64) bool {
		fmt.Fprintf(&sb, "%q=%q@%d\n", k, val, ver)
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return sb.String()
}
