package mlstore

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/vclock"
)

var (
	flagSeed  = flag.Int64("mlstore.seed", 0, "run the model test on this seed only")
	flagSeeds = flag.Int("mlstore.seeds", 16, "number of seeds for the model test")
	flagOps   = flag.Int("mlstore.ops", 250, "operations per seed in the model test")
)

func mustOpen(t *testing.T, dir string, cfg Config) *Store {
	t.Helper()
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func mustPersist(t *testing.T, s *Store, rd multileader.Ready) {
	t.Helper()
	if err := s.Persist(&rd); err != nil {
		t.Fatalf("Persist: %v", err)
	}
}

func mustClose(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// Comparisons that treat nil and empty slices alike.

func entryEqual(a, b multileader.Entry) bool {
	return a.Origin == b.Origin && a.Seq == b.Seq && a.Key == b.Key && a.Op == b.Op &&
		a.Time == b.Time && a.Dot == b.Dot && slices.Equal(a.Context, b.Context) &&
		bytes.Equal(a.Value, b.Value) && a.Counter.Equal(b.Counter)
}

func siblingEqual(a, b vclock.Sibling) bool {
	return a.Dot == b.Dot && a.Time == b.Time && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value)
}

func conflictEqual(a, b multileader.Conflict) bool {
	return a.Node == b.Node && a.Key == b.Key && a.Reason == b.Reason && a.Winner == b.Winner &&
		slices.EqualFunc(a.Versions, b.Versions, siblingEqual) && slices.Equal(a.Losers, b.Losers)
}

func recordsEqual(a, b []Record) bool {
	return slices.EqualFunc(a, b, func(x, y Record) bool { return x.Seq == y.Seq && conflictEqual(x.Conflict, y.Conflict) })
}

func ts(wall int64) hlc.Timestamp { return hlc.Timestamp{Wall: wall} }

func put(seq uint64, key, value string, dot uint64) multileader.Entry {
	return multileader.Entry{Origin: "a", Seq: seq, Key: key, Op: multileader.OpPut, Time: ts(int64(seq)),
		Dot: vclock.Dot{Node: "a", Counter: dot}, Value: []byte(value)}
}

func incr(seq uint64, key string, p uint64) multileader.Entry {
	return multileader.Entry{Origin: "a", Seq: seq, Key: key, Op: multileader.OpIncr, Time: ts(int64(seq)),
		Counter: vclock.Counter{{Node: "a", P: p}}}
}

func valueState(node string, counter uint64, value string) multileader.KeyState {
	sib := vclock.Sibling{Dot: vclock.Dot{Node: node, Counter: counter}, Time: ts(int64(counter)), Value: []byte(value)}
	return multileader.KeyState{Reg: vclock.Set{Context: vclock.Vector{{Node: node, Counter: counter}}, Siblings: []vclock.Sibling{sib}}}
}

func tombstone(node string, counter uint64) multileader.KeyState {
	st := valueState(node, counter, "")
	st.Reg.Siblings[0].Deleted = true
	st.Reg.Siblings[0].Value = nil
	return st
}

func counterState(p, n uint64) multileader.KeyState {
	return multileader.KeyState{Ctr: vclock.Counter{{Node: "a", P: p, N: n}}}
}

func conflict(key string, n uint64) multileader.Conflict {
	v1 := vclock.Sibling{Dot: vclock.Dot{Node: "a", Counter: n}, Time: ts(10), Value: []byte("from a")}
	v2 := vclock.Sibling{Dot: vclock.Dot{Node: "b", Counter: 1}, Time: ts(11), Deleted: true}
	return multileader.Conflict{Node: "a", Key: key, Versions: []vclock.Sibling{v1, v2},
		Winner: v2.Dot, Losers: []vclock.Dot{v1.Dot}, Reason: multileader.ReasonLWW}
}

func TestPersistReopenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Config{})
	if s.LastSeq() != 0 {
		t.Fatalf("new store: LastSeq %d", s.LastSeq())
	}
	entries := []multileader.Entry{
		put(1, "k", "v1", 1),
		{Origin: "a", Seq: 2, Key: "k", Op: multileader.OpDelete, Time: ts(2), Dot: vclock.Dot{Node: "a", Counter: 2},
			Context: vclock.Vector{{Node: "a", Counter: 1}}, Counter: vclock.Counter{{Node: "a", P: 3, FloorP: 3}}},
		incr(3, "ctr", 7),
		put(4, "ключ/🔑", "", 1),
	}
	siblings := vclock.Set{Context: vclock.Vector{{Node: "a", Counter: 2}, {Node: "b", Counter: 5}}, Siblings: []vclock.Sibling{
		{Dot: vclock.Dot{Node: "a", Counter: 2}, Time: ts(4), Value: []byte("x")},
		{Dot: vclock.Dot{Node: "b", Counter: 5}, Time: ts(3), Value: []byte("y")},
	}}
	changes := []multileader.Change{
		{Key: "k", State: tombstone("a", 2)},
		{Key: "ctr", State: counterState(7, 2)},
		{Key: "sib", State: multileader.KeyState{Reg: siblings, Ctr: vclock.Counter{{Node: "b", P: 1, N: 4, FloorP: 1, FloorN: 2}}}},
		{Key: "ключ/🔑", State: valueState("a", 1, "")},
	}
	applied := []multileader.Position{{Origin: "a", Seq: 4}, {Origin: "b", Seq: 17}}
	conflicts := []multileader.Conflict{
		conflict("k", 1),
		{Node: "a", Key: "sib", Versions: siblings.Siblings, Reason: multileader.ReasonSiblings},
	}
	mustPersist(t, s, multileader.Ready{Entries: entries[:2], Changes: changes[:1], Applied: applied[:1], Conflicts: conflicts[:1],
		Messages: []multileader.Message{{Type: multileader.MsgHeartbeat}}, Results: []multileader.Result{{ID: 1}}})
	mustPersist(t, s, multileader.Ready{Entries: entries[2:], Changes: changes[1:], Applied: applied, Conflicts: conflicts[1:]})

	check := func(s *Store) {
		t.Helper()
		if s.LastSeq() != 4 {
			t.Fatalf("LastSeq %d, want 4", s.LastSeq())
		}
		got, err := s.Entries(1, 4)
		if err != nil || !slices.EqualFunc(got, entries, entryEqual) {
			t.Fatalf("Entries(1, 4) = %+v, %v\nwant %+v", got, err, entries)
		}
		for _, c := range changes {
			st, err := s.Get(c.Key)
			if err != nil || !st.Equal(c.State) {
				t.Fatalf("Get(%q) = %v, %v; want %v", c.Key, st, err, c.State)
			}
		}
		if st, err := s.Get("absent"); err != nil || !st.Equal(multileader.KeyState{}) {
			t.Fatalf("Get(absent) = %v, %v", st, err)
		}
		pos, err := s.Applied()
		if err != nil || len(pos) != 2 || pos["a"] != 4 || pos["b"] != 17 {
			t.Fatalf("Applied() = %v, %v", pos, err)
		}
		recs, dropped, err := s.Conflicts(0, 0)
		want := []Record{{Seq: 1, Conflict: conflicts[0]}, {Seq: 2, Conflict: conflicts[1]}}
		if err != nil || dropped != 0 || !recordsEqual(recs, want) {
			t.Fatalf("Conflicts(0, 0) = %+v, %d, %v\nwant %+v", recs, dropped, err, want)
		}
	}
	check(s)
	mustClose(t, s)
	s = mustOpen(t, dir, Config{})
	defer mustClose(t, s)
	check(s)
	mustPersist(t, s, multileader.Ready{Entries: []multileader.Entry{put(5, "k", "v5", 3)}})
	if got, err := s.Entries(5, 5); err != nil || len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("after reopen: Entries(5, 5) = %+v, %v", got, err)
	}
}

func TestEntriesRange(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Config{})
	defer mustClose(t, s)
	if got, err := s.Entries(1, 0); err != nil || got != nil {
		t.Fatalf("empty stream: Entries(1, 0) = %v, %v", got, err)
	}
	if _, err := s.Entries(1, 1); err == nil {
		t.Fatalf("empty stream: Entries(1, 1) did not fail")
	}
	mustPersist(t, s, multileader.Ready{Entries: []multileader.Entry{put(1, "a", "1", 1), put(2, "a", "2", 2), put(3, "a", "3", 3)}})
	tests := []struct {
		lo, hi uint64
		want   []uint64 // nil: an error
	}{
		{0, 3, []uint64{1, 2, 3}},
		{1, 1, []uint64{1}},
		{2, 3, []uint64{2, 3}},
		{3, 2, []uint64{}},
		{2, 4, nil},
		{9, 12, nil},
	}
	for _, tc := range tests {
		got, err := s.Entries(tc.lo, tc.hi)
		if tc.want == nil {
			if err == nil {
				t.Errorf("Entries(%d, %d) did not fail", tc.lo, tc.hi)
			}
			continue
		}
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if err != nil || !slices.Equal(seqs, tc.want) {
			t.Errorf("Entries(%d, %d) = %v, %v; want %v", tc.lo, tc.hi, seqs, err, tc.want)
		}
	}
}

func TestPersistRefusesAndWritesNothing(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Config{})
	defer mustClose(t, s)
	mustPersist(t, s, multileader.Ready{
		Entries: []multileader.Entry{put(1, "k", "v1", 1), put(2, "k", "v2", 2)},
		Changes: []multileader.Change{{Key: "k", State: valueState("a", 2, "v2")}},
		Applied: []multileader.Position{{Origin: "a", Seq: 2}},
	})
	tests := []struct {
		name string
		rd   multileader.Ready
	}{
		{"gap", multileader.Ready{Entries: []multileader.Entry{put(4, "k", "v", 4)}}},
		{"repeat", multileader.Ready{Entries: []multileader.Entry{put(2, "k", "v", 2)}}},
		{"gap inside", multileader.Ready{Entries: []multileader.Entry{put(3, "k", "v", 3), put(5, "k", "v", 4)}}},
		{"empty origin", multileader.Ready{Applied: []multileader.Position{{Origin: "", Seq: 1}}}},
		{"negative conflict time", multileader.Ready{Conflicts: []multileader.Conflict{{Key: "k", Versions: []vclock.Sibling{{Time: ts(-1)}}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd := tc.rd
			rd.Changes = append(rd.Changes, multileader.Change{Key: "k", State: valueState("a", 9, "not written")})
			rd.Applied = append(rd.Applied, multileader.Position{Origin: "b", Seq: 5})
			rd.Conflicts = append(rd.Conflicts, conflict("k", 1))
			if err := s.Persist(&rd); err == nil {
				t.Fatalf("Persist did not fail")
			} else {
				t.Log(err)
			}
			if s.LastSeq() != 2 {
				t.Fatalf("LastSeq %d, want 2", s.LastSeq())
			}
			if _, err := s.Entries(3, 3); err == nil {
				t.Fatalf("entry 3 is readable")
			}
			if st, err := s.Get("k"); err != nil || !st.Equal(valueState("a", 2, "v2")) {
				t.Fatalf("Get(k) = %v, %v", st, err)
			}
			if st, err := s.Get("j"); err != nil || !st.Equal(multileader.KeyState{}) {
				t.Fatalf("Get(j) = %v, %v", st, err)
			}
			if pos, err := s.Applied(); err != nil || len(pos) != 1 || pos["a"] != 2 {
				t.Fatalf("Applied() = %v, %v", pos, err)
			}
			if recs, _, err := s.Conflicts(0, 0); err != nil || len(recs) != 0 {
				t.Fatalf("Conflicts = %v, %v", recs, err)
			}
		})
	}
	mustPersist(t, s, multileader.Ready{Entries: []multileader.Entry{put(3, "k", "v3", 3)}})
	if s.LastSeq() != 3 {
		t.Fatalf("after the refusals: LastSeq %d, want 3", s.LastSeq())
	}
}

func TestConflictLogTrimming(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Config{MaxConflicts: 5})
	var all []multileader.Conflict // every conflict persisted; record i+1 is all[i]
	add := func(n int) {
		t.Helper()
		var cs []multileader.Conflict
		for range n {
			c := conflict(fmt.Sprintf("k%03d", len(all)), uint64(len(all)+1))
			cs = append(cs, c)
			all = append(all, c)
		}
		mustPersist(t, s, multileader.Ready{Conflicts: cs})
	}
	want := func(from, to int) []Record {
		var out []Record
		for seq := from; seq <= to; seq++ {
			out = append(out, Record{Seq: uint64(seq), Conflict: all[seq-1]})
		}
		return out
	}
	check := func(dropped uint64, from, to int) {
		t.Helper()
		recs, d, err := s.Conflicts(0, 0)
		if err != nil || d != dropped || !recordsEqual(recs, want(from, to)) {
			var seqs []uint64
			for _, r := range recs {
				seqs = append(seqs, r.Seq)
			}
			t.Fatalf("Conflicts(0, 0) = records %v, dropped %d, %v; want %d..%d, dropped %d", seqs, d, err, from, to, dropped)
		}
	}
	add(3)
	check(0, 1, 3)
	add(4) // 7 records: 1 and 2 go
	check(2, 3, 7)
	add(12) // more than MaxConflicts in one batch
	check(14, 15, 19)

	// Pages.
	recs, d, err := s.Conflicts(15, 2)
	if err != nil || d != 14 || !recordsEqual(recs, want(16, 17)) {
		t.Fatalf("Conflicts(15, 2) = %+v, %d, %v", recs, d, err)
	}
	if recs, _, _ := s.Conflicts(3, 1); !recordsEqual(recs, want(15, 15)) {
		t.Fatalf("Conflicts(3, 1) = %+v: want record 15", recs)
	}
	if recs, _, _ := s.Conflicts(19, 0); len(recs) != 0 {
		t.Fatalf("Conflicts(19, 0) = %+v", recs)
	}
	if recs, _, _ := s.Conflicts(^uint64(0), 0); len(recs) != 0 {
		t.Fatalf("Conflicts(max, 0) = %+v", recs)
	}

	mustClose(t, s)
	s = mustOpen(t, dir, Config{MaxConflicts: 5})
	check(14, 15, 19)
	add(1)
	check(15, 16, 20)
	mustClose(t, s)

	s = mustOpen(t, dir, Config{MaxConflicts: 2}) // smaller: trimmed on open
	check(18, 19, 20)
	mustClose(t, s)
	s = mustOpen(t, dir, Config{}) // default: nothing more dropped
	check(18, 19, 20)
	add(2)
	check(18, 19, 22)
	mustClose(t, s)

	// Many records dropped at once go by a range deletion.
	s = mustOpen(t, dir, Config{MaxConflicts: 200})
	add(300)
	check(122, 123, 322)
	mustClose(t, s)
	s = mustOpen(t, dir, Config{MaxConflicts: 200})
	defer mustClose(t, s)
	check(122, 123, 322)
}

func TestScan(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Config{})
	defer mustClose(t, s)
	keys := []string{"b", "a", "c", "aa", "\x00", "\xff", "d/1", "d/2", "é"}
	var changes []multileader.Change
	for i, k := range keys {
		changes = append(changes, multileader.Change{Key: k, State: valueState("a", uint64(i+1), k)})
	}
	mustPersist(t, s, multileader.Ready{Changes: changes})
	sorted := slices.Sorted(slices.Values(keys))
	tests := []struct {
		start string
		limit int
		stop  int // fn returns false at this call (1-based); 0: never
		want  []string
	}{
		{"", 0, 0, sorted},
		{"", -1, 0, sorted},
		{"b", 0, 0, []string{"b", "c", "d/1", "d/2", "é", "\xff"}},
		{"ab", 0, 0, []string{"b", "c", "d/1", "d/2", "é", "\xff"}},
		{"a", 2, 0, []string{"a", "aa"}},
		{"d/", 10, 0, []string{"d/1", "d/2", "é", "\xff"}},
		{"", 0, 3, sorted[:3]},
		{"\xff\xff", 0, 0, nil},
	}
	for _, tc := range tests {
		var got []string
		err := s.Scan(tc.start, tc.limit, func(key string, st multileader.KeyState) bool {
			if live := st.Live(); len(live) != 1 || string(live[0].Value) != key {
				t.Errorf("Scan: key %q has state %v", key, st)
			}
			got = append(got, key)
			return len(got) != tc.stop
		})
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Scan(%q, %d, stop at %d) = %q, %v; want %q", tc.start, tc.limit, tc.stop, got, err, tc.want)
		}
	}
}

func TestCount(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Config{})
	defer mustClose(t, s)
	if n, err := s.Count(); err != nil || n != 0 {
		t.Fatalf("empty: Count() = %d, %v", n, err)
	}
	zero := counterState(3, 3)
	reset := multileader.KeyState{Ctr: vclock.Counter{{Node: "a", P: 5, FloorP: 5}}}
	withTomb := tombstone("a", 1)
	withTomb.Ctr = counterState(1, 0).Ctr
	mustPersist(t, s, multileader.Ready{Changes: []multileader.Change{
		{Key: "value", State: valueState("a", 1, "v")},
		{Key: "empty value", State: valueState("a", 1, "")},
		{Key: "deleted", State: tombstone("a", 1)},
		{Key: "counter", State: counterState(2, 0)},
		{Key: "negative", State: counterState(0, 2)},
		{Key: "counter at zero", State: zero},
		{Key: "counter reset", State: reset},
		{Key: "tombstone and counter", State: withTomb},
		{Key: "zero state", State: multileader.KeyState{}},
	}})
	if n, err := s.Count(); err != nil || n != 5 {
		t.Fatalf("Count() = %d, %v; want 5", n, err)
	}
	mustPersist(t, s, multileader.Ready{Changes: []multileader.Change{{Key: "value", State: tombstone("a", 2)}}})
	if n, err := s.Count(); err != nil || n != 4 {
		t.Fatalf("after a delete: Count() = %d, %v; want 4", n, err)
	}
}

// TestCorruptRecords writes bad values under each kind of key with the raw
// Pebble handle: every read of them fails with ErrCorrupt.
func TestCorruptRecords(t *testing.T) {
	goodEntry := multileader.AppendEntry(nil, &multileader.Entry{Origin: "a", Seq: 2, Key: "k", Op: multileader.OpIncr,
		Counter: vclock.Counter{{Node: "a", P: 1}}})
	goodState := appendState(nil, &multileader.KeyState{Ctr: counterState(1, 0).Ctr})
	c := conflict("k", 1)
	goodConflict := appendConflict(nil, &c)
	flagged := multileader.Conflict{Versions: []vclock.Sibling{{Value: []byte("Z")}}}
	badFlags := appendConflict(nil, &flagged)
	badFlags[bytes.Index(badFlags, []byte{0, 1, 'Z'})] = 2
	tests := []struct {
		name  string
		key   []byte
		value []byte
		read  func(s *Store) error
	}{
		{"state garbage", stringKey(prefixState, "k"), []byte{1, 2, 3}, func(s *Store) error { _, err := s.Get("k"); return err }},
		{"state version", stringKey(prefixState, "k"), append([]byte{9}, goodState[1:]...), func(s *Store) error { _, err := s.Get("k"); return err }},
		{"state trailing byte", stringKey(prefixState, "k"), append(goodState, 0), func(s *Store) error { _, err := s.Get("k"); return err }},
		{"state in a scan", stringKey(prefixState, "k"), []byte{stateVersion, 0xff}, func(s *Store) error { return s.Scan("", 0, func(string, multileader.KeyState) bool { return true }) }},
		{"state in a count", stringKey(prefixState, "k"), []byte{1}, func(s *Store) error { _, err := s.Count(); return err }},
		{"entry garbage", seqKey(prefixStream, 1), []byte("garbage"), func(s *Store) error { _, err := s.Entries(1, 1); return err }},
		{"entry of another seq", seqKey(prefixStream, 1), goodEntry, func(s *Store) error { _, err := s.Entries(1, 1); return err }},
		{"entry missing", seqKey(prefixStream, 1), nil, func(s *Store) error { _, err := s.Entries(1, 2); return err }},
		{"position length", stringKey(prefixPosition, "a"), []byte{1, 2, 3}, func(s *Store) error { _, err := s.Applied(); return err }},
		{"conflict garbage", seqKey(prefixConflict, 1), []byte{1, 0xff}, func(s *Store) error { _, _, err := s.Conflicts(0, 0); return err }},
		{"conflict version", seqKey(prefixConflict, 1), append([]byte{2}, goodConflict[1:]...), func(s *Store) error { _, _, err := s.Conflicts(0, 0); return err }},
		{"conflict flags", seqKey(prefixConflict, 1), badFlags, func(s *Store) error { _, _, err := s.Conflicts(0, 0); return err }},
		{"dropped length", keyDropped, []byte{1}, func(s *Store) error { _, _, err := s.Conflicts(0, 0); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpen(t, t.TempDir(), Config{})
			defer mustClose(t, s)
			mustPersist(t, s, multileader.Ready{
				Entries:   []multileader.Entry{incr(1, "k", 1), incr(2, "k", 2)},
				Changes:   []multileader.Change{{Key: "k", State: counterState(2, 0)}},
				Applied:   []multileader.Position{{Origin: "a", Seq: 2}},
				Conflicts: []multileader.Conflict{c},
			})
			var err error
			if tc.value == nil {
				err = s.db.Delete(tc.key, pebble.Sync)
			} else {
				err = s.db.Set(tc.key, tc.value, pebble.Sync)
			}
			if err != nil {
				t.Fatal(err)
			}
			// The state cache holds what Persist wrote; the damage is on
			// disk, where a read finds it once the cache does not.
			s.statesMu.Lock()
			clear(s.states)
			s.statesMu.Unlock()
			err = tc.read(s)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

// TestOpenChecks: Open refuses a database it cannot read, clearly.
func TestOpenChecks(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		value   []byte // nil: delete the key
		corrupt bool   // the error wraps ErrCorrupt
		want    string // in the error
	}{
		{"unknown format", keyFormat, be64(2), false, "format version 2"},
		{"format garbage", keyFormat, []byte{1}, true, "format version"},
		{"no format", keyFormat, nil, true, "no format version"},
		{"last entry garbage", seqKey(prefixStream, 2), []byte{1, 9}, true, "stream entry 2"},
		{"dropped garbage", keyDropped, []byte{7}, true, "dropped"},
		{"conflict log not after the dropped", keyDropped, be64(5), true, "conflict log"},
		{"conflict log with a hole at its start", seqKey(prefixConflict, 1), nil, true, "conflict log"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir, Config{})
			c := conflict("k", 1)
			mustPersist(t, s, multileader.Ready{Entries: []multileader.Entry{incr(1, "k", 1), incr(2, "k", 2)},
				Conflicts: []multileader.Conflict{c, c}})
			var err error
			if tc.value == nil {
				err = s.db.Delete(tc.key, pebble.Sync)
			} else {
				err = s.db.Set(tc.key, tc.value, pebble.Sync)
			}
			if err != nil {
				t.Fatal(err)
			}
			mustClose(t, s)
			s, err = Open(dir, Config{})
			if err == nil {
				s.Close()
				t.Fatalf("Open did not fail")
			}
			if errors.Is(err, ErrCorrupt) != tc.corrupt || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want ErrCorrupt %v and %q", err, tc.corrupt, tc.want)
			}
			t.Log(err)
		})
	}
	if _, err := Open(t.TempDir(), Config{MaxConflicts: -1}); err == nil || !strings.Contains(err.Error(), "MaxConflicts") {
		t.Fatalf("Open with MaxConflicts -1: %v", err)
	}
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Config{})
	mustPersist(t, s, multileader.Ready{Entries: []multileader.Entry{incr(1, "k", 1)}})
	mustClose(t, s)
	if err := s.Close(); err == nil {
		t.Errorf("second Close did not fail")
	}
	if _, err := s.Get("k"); err == nil {
		t.Errorf("Get after Close did not fail")
	}
	if err := s.Persist(&multileader.Ready{Entries: []multileader.Entry{incr(2, "k", 2)}}); err == nil {
		t.Errorf("Persist after Close did not fail")
	}
	if _, err := s.Entries(1, 1); err == nil {
		t.Errorf("Entries after Close did not fail")
	}
	if s.LastSeq() != 1 {
		t.Errorf("LastSeq after Close = %d", s.LastSeq())
	}
}

// TestConcurrentReads reads while Persist writes (for the race detector):
// readers see whole batches only.
func TestConcurrentReads(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Config{MaxConflicts: 10})
	defer mustClose(t, s)
	const n = 100
	done := make(chan error, 3)
	go func() {
		for seq := uint64(1); seq <= n; seq++ {
			rd := multileader.Ready{
				Entries:   []multileader.Entry{incr(seq, "k", seq)},
				Changes:   []multileader.Change{{Key: "k", State: counterState(seq, 0)}},
				Applied:   []multileader.Position{{Origin: "a", Seq: seq}},
				Conflicts: []multileader.Conflict{conflict("k", seq)},
			}
			if err := s.Persist(&rd); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	reader := func(read func() error) {
		for s.LastSeq() < n {
			if err := read(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}
	go reader(func() error {
		last := s.LastSeq()
		st, err := s.Get("k")
		if err == nil && uint64(st.Ctr.Value()) < last {
			err = fmt.Errorf("Get after LastSeq %d: counter %d", last, st.Ctr.Value())
		}
		if err == nil && last > 0 {
			_, err = s.Entries(1, last)
		}
		return err
	})
	go reader(func() error {
		recs, dropped, err := s.Conflicts(0, 0)
		if err == nil && len(recs) > 0 && recs[0].Seq != dropped+1 {
			err = fmt.Errorf("Conflicts: first record %d after %d dropped", recs[0].Seq, dropped)
		}
		if err == nil {
			_, err = s.Count()
		}
		return err
	})
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// The model test: random Persists and reads against a plain in-memory
// reference, with reopens in between.

type model struct {
	stream    []multileader.Entry
	states    map[string]multileader.KeyState
	applied   map[string]uint64
	conflicts []multileader.Conflict // every one persisted: record i+1 is conflicts[i]
	dropped   uint64                 // the records before dropped+1 are gone
}

// trim drops the oldest conflicts beyond max, as Persist and Open do.
func (m *model) trim(max int) {
	if n := len(m.conflicts) - max; n > 0 && uint64(n) > m.dropped {
		m.dropped = uint64(n)
	}
}

func TestModel(t *testing.T) {
	seeds := []int64{*flagSeed}
	if *flagSeed == 0 {
		seeds = seeds[:0]
		for s := int64(1); s <= int64(*flagSeeds); s++ {
			seeds = append(seeds, s)
		}
	}
	t.Logf("seeds %d..%d, %d operations each; replay one with -mlstore.seed=N", seeds[0], seeds[len(seeds)-1], *flagOps)
	for _, seed := range seeds {
		if err := runModel(t, seed, *flagOps); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./internal/multileader/mlstore -run '^TestModel$' -mlstore.seed=%d -mlstore.ops=%d -v",
				seed, err, seed, *flagOps)
		}
	}
}

var modelNodes = []string{"a", "b", "c"}

func runModel(t *testing.T, seed int64, ops int) error {
	r := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	cfg := Config{MaxConflicts: 1 + r.Intn(20)}
	s, err := Open(dir, cfg)
	if err != nil {
		return err
	}
	defer func() { s.Close() }()
	m := &model{states: map[string]multileader.KeyState{}, applied: map[string]uint64{}}
	for op := range ops {
		var err error
		switch k := r.Intn(100); {
		case k < 40:
			err = modelPersist(r, s, m, cfg.MaxConflicts)
		case k < 50:
			err = modelGet(r, s, m)
		case k < 60:
			err = modelEntries(r, s, m)
		case k < 70:
			err = modelConflicts(r, s, m)
		case k < 78:
			err = modelScan(r, s, m)
		case k < 84:
			err = modelCount(s, m)
		case k < 90:
			var pos map[string]uint64
			if pos, err = s.Applied(); err == nil && !mapsEqual(pos, m.applied) {
				err = fmt.Errorf("Applied() = %v, want %v", pos, m.applied)
			}
		default:
			if err = s.Close(); err != nil {
				break
			}
			if r.Intn(3) == 0 {
				cfg.MaxConflicts = 1 + r.Intn(20)
				m.trim(cfg.MaxConflicts)
			}
			s, err = Open(dir, cfg)
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", op, err)
		}
		if s.LastSeq() != uint64(len(m.stream)) {
			return fmt.Errorf("op %d: LastSeq %d, want %d", op, s.LastSeq(), len(m.stream))
		}
	}
	return nil
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func modelKey(r *rand.Rand) string { return fmt.Sprintf("k%d", r.Intn(12)) }

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, r.Intn(n+1))
	r.Read(b)
	return b
}

// randState returns a valid key state built by random writes.
func randState(r *rand.Rand) multileader.KeyState {
	var st multileader.KeyState
	for range r.Intn(4) {
		n := modelNodes[r.Intn(len(modelNodes))]
		sib := vclock.Sibling{Dot: vclock.Dot{Node: n, Counter: st.Reg.Context.Get(n) + 1}, Time: ts(r.Int63n(1 << 40))}
		if r.Intn(4) == 0 {
			sib.Deleted = true
		} else {
			sib.Value = randBytes(r, 20)
		}
		var ctx vclock.Vector
		if r.Intn(2) == 0 {
			ctx = st.Reg.Context
		}
		st.Reg = vclock.Update(st.Reg, ctx, sib)
	}
	for range r.Intn(3) {
		n := modelNodes[r.Intn(len(modelNodes))]
		st.Ctr = vclock.JoinCounter(st.Ctr, st.Ctr.IncrDelta(n, r.Int63n(20)-10))
	}
	if r.Intn(5) == 0 {
		st.Ctr = vclock.JoinCounter(st.Ctr, st.Ctr.ResetDelta())
	}
	return st
}

func randModelEntry(r *rand.Rand, seq uint64) multileader.Entry {
	e := multileader.Entry{Origin: "a", Seq: seq, Key: modelKey(r), Time: ts(r.Int63n(1 << 40))}
	switch r.Intn(3) {
	case 0:
		e.Op = multileader.OpIncr
		e.Counter = vclock.Counter{{Node: "a", P: uint64(r.Intn(100)), N: uint64(r.Intn(100))}}
	case 1:
		e.Op, e.Dot, e.Value = multileader.OpPut, vclock.Dot{Node: "a", Counter: 1 + uint64(r.Intn(9))}, randBytes(r, 30)
		e.Context = vclock.Vector{{Node: "b", Counter: 1 + uint64(r.Intn(9))}}
	default:
		e.Op, e.Dot = multileader.OpDelete, vclock.Dot{Node: "a", Counter: 1 + uint64(r.Intn(9))}
		e.Counter = vclock.Counter{{Node: "c", P: 4, FloorP: 4}}
	}
	return e
}

func randConflict(r *rand.Rand) multileader.Conflict {
	c := multileader.Conflict{Node: "a", Key: modelKey(r), Reason: multileader.ReasonSiblings}
	for range r.Intn(4) {
		x := vclock.Sibling{Dot: vclock.Dot{Node: modelNodes[r.Intn(3)], Counter: uint64(1 + r.Intn(5))}, Time: ts(r.Int63n(100))}
		if r.Intn(3) == 0 {
			x.Deleted = true
		} else {
			x.Value = randBytes(r, 10)
		}
		c.Versions = append(c.Versions, x)
	}
	if len(c.Versions) > 0 && r.Intn(2) == 0 {
		c.Winner, c.Reason = c.Versions[0].Dot, multileader.ReasonLWW
		for _, x := range c.Versions[1:] {
			c.Losers = append(c.Losers, x.Dot)
		}
	}
	return c
}

func modelPersist(r *rand.Rand, s *Store, m *model, maxConflicts int) error {
	var rd multileader.Ready
	next := uint64(len(m.stream)) + 1
	for i := range r.Intn(4) {
		rd.Entries = append(rd.Entries, randModelEntry(r, next+uint64(i)))
	}
	for range r.Intn(4) {
		rd.Changes = append(rd.Changes, multileader.Change{Key: modelKey(r), State: randState(r)})
	}
	for range r.Intn(3) {
		rd.Applied = append(rd.Applied, multileader.Position{Origin: modelNodes[r.Intn(3)], Seq: uint64(r.Intn(1000))})
	}
	for range r.Intn(4) {
		rd.Conflicts = append(rd.Conflicts, randConflict(r))
	}
	refuse := len(rd.Entries) > 0 && r.Intn(8) == 0
	if refuse {
		rd.Entries[r.Intn(len(rd.Entries))].Seq += uint64(1 + r.Intn(3))
	}
	err := s.Persist(&rd)
	if refuse {
		if err == nil {
			return fmt.Errorf("Persist of a broken stream did not fail")
		}
		return nil
	}
	if err != nil {
		return err
	}
	m.stream = append(m.stream, rd.Entries...)
	for _, c := range rd.Changes {
		m.states[c.Key] = c.State
	}
	for _, p := range rd.Applied {
		m.applied[p.Origin] = p.Seq
	}
	if len(rd.Conflicts) > 0 {
		m.conflicts = append(m.conflicts, rd.Conflicts...)
		m.trim(maxConflicts)
	}
	return nil
}

func modelGet(r *rand.Rand, s *Store, m *model) error {
	k := modelKey(r)
	st, err := s.Get(k)
	if err != nil {
		return err
	}
	if !st.Equal(m.states[k]) {
		return fmt.Errorf("Get(%q) = %v, want %v", k, st, m.states[k])
	}
	return nil
}

func modelEntries(r *rand.Rand, s *Store, m *model) error {
	n := len(m.stream)
	lo := uint64(r.Intn(n + 2))
	hi := uint64(r.Intn(n + 1))
	got, err := s.Entries(lo, hi)
	if err != nil {
		return err
	}
	var want []multileader.Entry
	for seq := max(lo, 1); seq <= hi; seq++ {
		want = append(want, m.stream[seq-1])
	}
	if !slices.EqualFunc(got, want, entryEqual) {
		return fmt.Errorf("Entries(%d, %d) = %+v, want %+v", lo, hi, got, want)
	}
	return nil
}

func modelConflicts(r *rand.Rand, s *Store, m *model) error {
	after := uint64(r.Intn(len(m.conflicts) + 2))
	limit := r.Intn(8) - 1
	got, dropped, err := s.Conflicts(after, limit)
	if err != nil {
		return err
	}
	var want []Record
	for seq := max(after, m.dropped) + 1; seq <= uint64(len(m.conflicts)); seq++ {
		if limit > 0 && len(want) == limit {
			break
		}
		want = append(want, Record{Seq: seq, Conflict: m.conflicts[seq-1]})
	}
	if dropped != m.dropped || !recordsEqual(got, want) {
		return fmt.Errorf("Conflicts(%d, %d) = %d records, dropped %d; want %d records, dropped %d",
			after, limit, len(got), dropped, len(want), m.dropped)
	}
	return nil
}

func modelScan(r *rand.Rand, s *Store, m *model) error {
	start := ""
	if r.Intn(2) == 0 {
		start = modelKey(r)
	}
	limit := r.Intn(6) - 1
	var keys []string
	for k := range m.states {
		if k >= start {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	var got []string
	var bad error
	err := s.Scan(start, limit, func(k string, st multileader.KeyState) bool {
		if !st.Equal(m.states[k]) && bad == nil {
			bad = fmt.Errorf("Scan: key %q has %v, want %v", k, st, m.states[k])
		}
		got = append(got, k)
		return true
	})
	if err != nil {
		return err
	}
	if bad != nil {
		return bad
	}
	if !slices.Equal(got, keys) {
		return fmt.Errorf("Scan(%q, %d) = %q, want %q", start, limit, got, keys)
	}
	return nil
}

func modelCount(s *Store, m *model) error {
	want := 0
	for _, st := range m.states {
		if len(st.Live()) > 0 || st.Ctr.Value() != 0 {
			want++
		}
	}
	n, err := s.Count()
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("Count() = %d, want %d", n, want)
	}
	return nil
}
