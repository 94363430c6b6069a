package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

const sec = int64(time.Second)

func cmdEntry(i uint64, c command.Command) entry.Entry {
	if c.Time == 0 {
		c.Stamp(int64(i)*sec, 600*sec, 1000, 1<<20)
	}
	return entry.Entry{Term: 1, Index: i, Kind: entry.KindCommand, Key: c.Key, Value: command.Encode(nil, &c)}
}

// applyCmds applies ents in one batch and returns the reported results by index.
func applyCmds(t *testing.T, s *Store, ents ...entry.Entry) map[uint64]command.Result {
	t.Helper()
	got := map[uint64]command.Result{}
	if err := s.ApplyReport(ents, func(index, term uint64, r command.Result) { got[index] = r }); err != nil {
		t.Fatalf("ApplyReport: %v", err)
	}
	return got
}

func TestCommandsApplyInOrderWithinABatch(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, put(1, "n", "41"))
	res := applyCmds(t, s,
		cmdEntry(2, command.Command{Op: command.OpIncr, Key: []byte("n"), Delta: 1}),
		put(3, "x", "a"),
		cmdEntry(4, command.Command{Op: command.OpAppend, Key: []byte("x"), Value: []byte("bc")}),
		cmdEntry(5, command.Command{Op: command.OpIncr, Key: []byte("n"), Delta: -2}),
		cmdEntry(6, command.Command{Op: command.OpSet, Key: []byte("x"), Value: []byte("z"), Cond: command.CondNX}),
		cmdEntry(7, command.Command{Op: command.OpSet, Key: []byte("x"), Value: []byte("v7"), Cond: command.CondIndex, IfIndex: 4, ReturnOld: true}),
		cmdEntry(8, command.Command{Op: command.OpIncr, Key: []byte("x"), Delta: 1}),
		cmdEntry(9, command.Command{Op: command.OpMSet, Keys: [][]byte{[]byte("m1"), []byte("m2")}, Values: [][]byte{[]byte("1"), []byte("2")}}),
	)
	if r := res[2]; r.Int != 42 || !r.Applied || r.Version != 2 {
		t.Errorf("incr at 2: %+v", r)
	}
	if r := res[4]; r.Int != 3 || !r.Applied {
		t.Errorf("append at 4 (must see the put at 3 of the same batch): %+v", r)
	}
	if r := res[5]; r.Int != 40 {
		t.Errorf("incr at 5 (must see the incr at 2): %+v", r)
	}
	if r := res[6]; r.Applied || r.Code != command.CodeOK || r.Version != 4 {
		t.Errorf("setnx on an existing key: %+v", r)
	}
	if r := res[7]; !r.Applied || string(r.Old) != "abc" || !r.OldFound || r.Version != 7 {
		t.Errorf("set if_index=4: %+v", r)
	}
	if r := res[8]; r.Code != command.CodeNotInteger || r.Applied {
		t.Errorf("incr on a string: %+v", r)
	}
	mustGet(t, s, "n", "40", 5)
	mustGet(t, s, "x", "v7", 7)
	mustGet(t, s, "m1", "1", 9)
	mustGet(t, s, "m2", "2", 9)
	if s.AppliedIndex() != 9 {
		t.Fatalf("applied %d, want 9", s.AppliedIndex())
	}
	mustCount(t, s, 4)
}

func TestConditionFailedChangesNothing(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, put(1, "k", "v"))
	res := applyCmds(t, s,
		cmdEntry(2, command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("w"), Cond: command.CondIndex, IfIndex: 9}),
		cmdEntry(3, command.Command{Op: command.OpDelete, Key: []byte("k"), Cond: command.CondIndex, IfIndex: 0}),
		cmdEntry(4, command.Command{Op: command.OpSet, Key: []byte("new"), Value: []byte("w"), Cond: command.CondIndex, IfIndex: 0}))
	if r := res[2]; r.Code != command.CodeCondFailed || r.Version != 1 {
		t.Errorf("if_index=9 on version 1: %+v", r)
	}
	if r := res[3]; r.Code != command.CodeCondFailed {
		t.Errorf("delete if_index=0 on an existing key: %+v", r)
	}
	if r := res[4]; !r.Applied {
		t.Errorf("set if_index=0 on a new key: %+v", r)
	}
	mustGet(t, s, "k", "v", 1)
	mustGet(t, s, "new", "w", 4)
}

func TestIdempotentCommandAppliesOnce(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	incr := command.Command{Op: command.OpIncr, Key: []byte("c"), Delta: 5, IdemKey: []byte("req-1")}
	res := applyCmds(t, s, cmdEntry(1, incr), cmdEntry(2, incr))
	if r := res[1]; r.Int != 5 || r.Duplicate {
		t.Fatalf("first: %+v", r)
	}
	if r := res[2]; r.Int != 5 || !r.Duplicate || r.Index != 1 {
		t.Fatalf("retry in the same batch: %+v, want the first result (index 1) marked duplicate", r)
	}
	mustGet(t, s, "c", "5", 1)
	// Across a restart: the table is in the store.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	res = applyCmds(t, s, cmdEntry(3, incr))
	if r := res[3]; !r.Duplicate || r.Int != 5 {
		t.Fatalf("retry after a restart: %+v", r)
	}
	mustGet(t, s, "c", "5", 1)
	if r, found, err := s.Idempotent([]byte("req-1"), 3*sec); err != nil || !found || r.Int != 5 {
		t.Fatalf("Idempotent = %+v %v %v", r, found, err)
	}
}

func TestIdempotencyRecordsExpireByLogTime(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	incr := command.Command{Op: command.OpIncr, Key: []byte("c"), Delta: 1, IdemKey: []byte("r")}
	at := func(i uint64, now int64) entry.Entry {
		c := incr
		c.Stamp(now, 10*sec, 1000, 1<<20)
		return cmdEntry(i, c)
	}
	applyCmds(t, s, at(1, 100*sec))
	if r := applyCmds(t, s, at(2, 109*sec))[2]; !r.Duplicate {
		t.Fatalf("retry within the window applied again: %+v", r)
	}
	// Past the window the id is forgotten: applied again (the client is
	// told not to retry that late).
	if r := applyCmds(t, s, at(3, 111*sec))[3]; r.Duplicate || r.Int != 2 {
		t.Fatalf("retry after the window: %+v", r)
	}
	// Other keys' commands drop expired records.
	for i := uint64(4); i < 20; i++ {
		c := command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: []byte(fmt.Sprint("id", i))}
		c.Stamp(int64(200+i)*sec, 100*sec, 1000, 1<<20)
		applyCmds(t, s, cmdEntry(i, c))
	}
	n, err := s.IdempotencyRecords()
	if err != nil {
		t.Fatal(err)
	}
	if n != 16 {
		t.Fatalf("%d records, want 16 (the 16 live ones; the expired one dropped)", n)
	}
}

func TestIdempotencyTableIsCapped(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for i := uint64(1); i <= 50; i++ {
		c := command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: []byte(fmt.Sprint("id", i))}
		c.Stamp(int64(i)*sec, 3600*sec, 10, 1<<20)
		applyCmds(t, s, cmdEntry(i, c))
	}
	n, err := s.IdempotencyRecords()
	if err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("%d records with a cap of 10", n)
	}
	if _, found, _ := s.Idempotent([]byte("id50"), 51*sec); !found {
		t.Fatal("the newest record was dropped")
	}
	if _, found, _ := s.Idempotent([]byte("id1"), 51*sec); found {
		t.Fatal("the oldest record survived the cap")
	}
}

func TestTermHistory(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, known, _ := s.TermAt(1); known {
		t.Fatal("term known before anything was applied")
	}
	mustApply(t, s, entry.Entry{Term: 1, Index: 1, Kind: entry.KindNoop}, put(2, "a", "1"))
	mustApply(t, s, entry.Entry{Term: 3, Index: 3, Kind: entry.KindNoop}, entry.Entry{Term: 3, Index: 4, Kind: entry.KindPut, Key: []byte("b"), Value: []byte("2")})
	check := func(s *Store) {
		t.Helper()
		beyond := struct {
			index, term uint64
			known       bool
		}{s.AppliedIndex() + 1, 0, false}
		for _, c := range []struct {
			index, term uint64
			known       bool
		}{{1, 1, true}, {2, 1, true}, {3, 3, true}, {4, 3, true}, beyond} {
			term, known, err := s.TermAt(c.index)
			if err != nil || term != c.term || known != c.known {
				t.Errorf("TermAt(%d) = %d %v %v, want %d %v", c.index, term, known, err, c.term, c.known)
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	check(s)
	// A checkpoint carries the history and the idempotency table.
	applyCmds(t, s, cmdEntry(5, command.Command{Op: command.OpSet, Key: []byte("c"), Value: []byte("v"), IdemKey: []byte("k1")}))
	cp := filepath.Join(t.TempDir(), "cp")
	if _, _, err := s.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := mustOpen(t, t.TempDir())
	defer s2.Close()
	if _, _, err := s2.Install(cp); err != nil {
		t.Fatal(err)
	}
	check(s2)
	if term, known, _ := s2.TermAt(5); term != 3 || !known {
		t.Errorf("TermAt(5) after Install = %d %v, want 3", term, known)
	}
	if _, found, err := s2.Idempotent([]byte("k1"), 5*sec); err != nil || !found {
		t.Fatalf("idempotency record after Install: %v %v", found, err)
	}
}

func TestMalformedCommandEntryAppliesNothing(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	res := applyCmds(t, s, entry.Entry{Term: 1, Index: 1, Kind: entry.KindCommand, Key: []byte("k"), Value: []byte{9, 9, 9}})
	if r := res[1]; r.Applied {
		t.Fatalf("a malformed command applied: %+v", r)
	}
	if s.AppliedIndex() != 1 {
		t.Fatal("the applied index did not advance past a malformed command")
	}
	if _, _, found, err := s.Get([]byte("k")); found || err != nil {
		t.Fatalf("found=%v err=%v", found, err)
	}
	_ = errors.New
}

// TestIdempotencyEvictionIsTheSameAfterARestart: the records a store drops
// (cap and expiry) depend only on the log, not on whether the in-memory
// index was rebuilt from disk in between, so replicas never disagree on
// which retries are duplicates.
func TestIdempotencyEvictionIsTheSameAfterARestart(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := mustOpen(t, dirA), mustOpen(t, dirB)
	defer func() { a.Close(); b.Close() }()
	cmdAt := func(i uint64) entry.Entry {
		// Keys reused (id i%12), windows of varying length, cap 10.
		c := command.Command{Op: command.OpSet, Key: []byte("k"), Value: []byte(fmt.Sprint(i)), IdemKey: []byte(fmt.Sprint("id", i%12))}
		c.Stamp(int64(i)*sec, int64(5+i%7)*sec, 10, 1<<20)
		return cmdEntry(i, c)
	}
	for i := uint64(1); i <= 40; i++ {
		ra := applyCmds(t, a, cmdAt(i))[i]
		rb := applyCmds(t, b, cmdAt(i))[i]
		if ra.Duplicate != rb.Duplicate || ra.Index != rb.Index {
			t.Fatalf("entry %d: %+v on the store that was not restarted, %+v on the other", i, ra, rb)
		}
		if i%9 == 0 {
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = mustOpen(t, dirB)
		}
	}
	na, _ := a.IdempotencyRecords()
	nb, _ := b.IdempotencyRecords()
	if na != nb || na > 10 {
		t.Fatalf("records: %d and %d (cap 10)", na, nb)
	}
	for id := range 12 {
		_, fa, _ := a.Idempotent([]byte(fmt.Sprint("id", id)), 40*sec)
		_, fb, _ := b.Idempotent([]byte(fmt.Sprint("id", id)), 40*sec)
		if fa != fb {
			t.Fatalf("id%d: live %v on one store, %v on the other", id, fa, fb)
		}
	}
}

// TestBlindIdempotentPutsInTheWriteBuffer: a blind put with an idempotency
// key goes to the write buffer with its record; a retry finds the record
// there (and Idempotent does). A crash in the middle of the buffer's drain
// leaves values newer than the applied index but none of their records (the
// records go in the drain's last batch, with the applied index), so the
// replay applies those entries again instead of taking them for duplicates.
func TestBlindIdempotentPutsInTheWriteBuffer(t *testing.T) {
	dir := t.TempDir()
	cfg := testBufConfig(1 << 20)
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	keyed := func(i uint64, id string) entry.Entry {
		return cmdEntry(i, command.Command{Op: command.OpSet, Key: []byte(fmt.Sprint("k", i%25)), Value: []byte(fmt.Sprint("v", i)), IdemKey: []byte(id)})
	}
	var log []entry.Entry
	for i := uint64(1); i <= 40; i++ {
		e := keyed(i, fmt.Sprint("id", i))
		log = append(log, e)
		if r := applyCmds(t, s, e)[i]; !r.Applied || r.Duplicate {
			t.Fatalf("entry %d: %+v", i, r)
		}
	}
	if n := len(s.active.idem.run.recs); n != 40 {
		t.Fatalf("%d records in the write buffer, want 40", n)
	}
	// A retry, found in the buffer.
	retry := keyed(41, "id7")
	log = append(log, retry)
	if r := applyCmds(t, s, retry)[41]; !r.Duplicate || r.Index != 7 {
		t.Fatalf("retry: %+v", r)
	}
	if r, found, err := s.Idempotent([]byte("id7"), 41*sec); err != nil || !found || r.Index != 7 {
		t.Fatalf("Idempotent from the buffer: %+v %v %v", r, found, err)
	}
	s.drainChunk = 4
	if cut, err := s.crashMidDrain(2); err != nil || !cut {
		t.Fatalf("crashMidDrain = %v, %v", cut, err)
	}
	s, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, rec := s.AppliedIndex(), s.RecoverIndex(); a != 0 || rec != 41 {
		t.Fatalf("after the cut drain: applied %d, recover through %d; want 0 and 41", a, rec)
	}
	if n, err := s.IdempotencyRecords(); err != nil || n != 0 {
		t.Fatalf("%d records (%v) after the cut drain, want none", n, err)
	}
	// Replay what the store lacks, as the node does, and compare with a
	// store that never crashed.
	res := applyCmds(t, s, log[s.AppliedIndex():]...)
	for i := uint64(1); i <= 40; i++ {
		if r := res[i]; !r.Applied || r.Duplicate {
			t.Fatalf("replayed entry %d: %+v, want applied again", i, r)
		}
	}
	if r := res[41]; !r.Duplicate || r.Index != 7 {
		t.Fatalf("replayed retry: %+v", r)
	}
	ref := mustOpen(t, t.TempDir())
	defer ref.Close()
	mustApply(t, ref, log...)
	if got, want := dump(t, s), dump(t, ref); got != want {
		t.Fatalf("after the crash and the replay:\n%s\nwant:\n%s", got, want)
	}
	for i := 1; i <= 40; i++ {
		_, f1, _ := s.Idempotent([]byte(fmt.Sprint("id", i)), 41*sec)
		_, f2, _ := ref.Idempotent([]byte(fmt.Sprint("id", i)), 41*sec)
		if !f1 || !f2 {
			t.Fatalf("id%d: record %v after the crash, %v without", i, f1, f2)
		}
	}
}

// TestIdempotencyRecordsHaveTheirOwnBudget checks that keyed blind puts
// count their records against a write-buffer budget of their own: the
// table drains when its values, or its records, reach the drain size, not
// when the two together do (which drained keyed writes of a hot key set
// twice as often as plain ones, each drain writing every key again).
func TestIdempotencyRecordsHaveTheirOwnBudget(t *testing.T) {
	s, err := Open(t.TempDir(), testBufConfig(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	val := bytes.Repeat([]byte("v"), 100)
	apply := func(i uint64, idem string) {
		c := command.Command{Op: command.OpSet, Key: []byte(fmt.Sprint("k", i%10)), Value: val}
		if idem != "" {
			c.IdemKey = []byte(idem)
		}
		applyCmds(t, s, cmdEntry(i, c))
	}
	// Keyed writes until the table's values alone are just below the
	// drain size: together with the records they are well above it.
	i := uint64(1)
	first := s.active
	for ; s.active == first && int64(s.active.size+len(val)) < s.drainAt; i++ {
		apply(i, fmt.Sprintf("%032x", i))
	}
	if s.active != first || s.draining != nil || s.active.size == 0 || s.active.idemSize == 0 {
		t.Fatalf("after %d keyed writes: table drained %v, values %d, records %d bytes (drain at %d)",
			i-1, s.active != first || s.draining != nil, s.active.size, s.active.idemSize, s.drainAt)
	}
	if int64(s.active.size+s.active.idemSize) < s.drainAt {
		t.Fatalf("values %d + records %d bytes do not reach the drain size %d: the test proves nothing",
			s.active.size, s.active.idemSize, s.drainAt)
	}
	// Records alone drain the table once they reach the drain size:
	// keyed writes of tiny values, one key.
	before := s.active
	for n := 0; s.active == before && n < 100_000; n++ {
		c := command.Command{Op: command.OpSet, Key: []byte("k0"), Value: []byte("x"), IdemKey: []byte(fmt.Sprintf("%032x", i))}
		applyCmds(t, s, cmdEntry(i, c))
		i++
	}
	if s.active == before {
		t.Fatalf("records of %d bytes never drained the table (drain at %d)", before.idemSize, s.drainAt)
	}
}
