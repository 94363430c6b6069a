package llstore

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/merkle"
	"github.com/trireme-db/trireme/internal/vclock"
)

var (
	flagSeed  = flag.Int64("llstore.seed", 0, "run the model test on this seed only")
	flagSeeds = flag.Int("llstore.seeds", 8, "number of seeds for the model test")
	flagOps   = flag.Int("llstore.ops", 200, "operations per seed in the model test")
)

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func mustPersist(t *testing.T, s *Store, rd leaderless.Ready) {
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

func mustGet(t *testing.T, s *Store, key string) (vclock.Set, bool) {
	t.Helper()
	set, ok, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return set, ok
}

// value is a one-sibling Set: node's write counter of v.
func value(node string, counter uint64, v string) vclock.Set {
	return vclock.Set{
		Context:  vclock.Vector{{Node: node, Counter: counter}},
		Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: node, Counter: counter}, Time: hlc.Timestamp{Wall: int64(counter)}, Value: []byte(v)}},
	}
}

// tombstone is a Set holding only node's delete counter.
func tombstone(node string, counter uint64) vclock.Set {
	return vclock.Set{
		Context:  vclock.Vector{{Node: node, Counter: counter}},
		Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: node, Counter: counter}, Time: hlc.Timestamp{Wall: int64(counter)}, Deleted: true}},
	}
}

// siblings is a Set with two concurrent values, of a and b.
func siblings(counter uint64) vclock.Set {
	return vclock.Sync(value("a", counter, "from-a"), value("b", counter, "from-b"))
}

func put(key string, s vclock.Set) leaderless.KeyWrite {
	return leaderless.KeyWrite{Key: []byte(key), Set: s}
}

func drop(key string) leaderless.KeyWrite { return leaderless.KeyWrite{Key: []byte(key), Drop: true} }

func hint(home, key string, s vclock.Set) leaderless.Hint {
	return leaderless.Hint{For: home, Key: []byte(key), Set: s}
}

func done(home, key string) leaderless.Hint { return leaderless.Hint{For: home, Key: []byte(key)} }

// allItems returns Each's items, checking that they come in storage order
// (bucket, then key).
func allItems(t *testing.T, s *Store) []leaderless.Item {
	t.Helper()
	var out []leaderless.Item
	if err := s.Each(func(it leaderless.Item) error {
		out = append(out, it)
		return nil
	}); err != nil {
		t.Fatalf("Each: %v", err)
	}
	for i := 1; i < len(out); i++ {
		if c := cmpStorage(out[i-1].Key, out[i].Key); c >= 0 {
			t.Fatalf("Each: %q then %q, not in (bucket, key) order", out[i-1].Key, out[i].Key)
		}
	}
	return out
}

func cmpStorage(a, b []byte) int {
	if c := bucketOf(a) - bucketOf(b); c != 0 {
		return c
	}
	return bytes.Compare(a, b)
}

// TestRoundTripAcrossReopen: what Persist wrote reads back the same from
// every reader, before and after a Close and Open.
func TestRoundTripAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	keys := map[string]vclock.Set{
		"alpha":                   value("a", 1, "one"),
		"beta":                    siblings(3),
		"gamma":                   tombstone("b", 7),
		"\x00binary\xff":          value("c", 2, ""),
		strings.Repeat("k", 1000): value("a", 9, strings.Repeat("v", 5000)),
	}
	for i := range 300 {
		keys[fmt.Sprintf("key-%03d", i)] = value("a", uint64(i+1), fmt.Sprint("v", i))
	}
	var rd leaderless.Ready
	for k, v := range keys {
		rd.Keys = append(rd.Keys, put(k, v))
	}
	hints := []leaderless.Hint{
		hint("n2", "alpha", value("a", 1, "one")),
		hint("n3", "alpha", value("a", 2, "two")),
		hint("node-long-id", "zeta", tombstone("a", 4)),
	}
	rd.Hints = hints
	rd.MintFloor = 42
	rd.Messages = []leaderless.Envelope{{To: "n2"}} // ignored
	mustPersist(t, s, rd)

	check := func(s *Store) {
		t.Helper()
		for k, want := range keys {
			got, ok := mustGet(t, s, k)
			if !ok || !got.Equal(want) {
				t.Fatalf("Get(%q) = %v, %v; want %v", k, got, ok, want)
			}
		}
		if _, ok := mustGet(t, s, "missing"); ok {
			t.Fatalf("Get of a missing key found it")
		}
		// Each bucket holds exactly its keys.
		seen := 0
		for b := range 1 << leaderless.MerkleDepth {
			items, err := s.Bucket(b)
			if err != nil {
				t.Fatalf("Bucket(%d): %v", b, err)
			}
			for i, it := range items {
				if bucketOf(it.Key) != b {
					t.Fatalf("Bucket(%d) holds %q of bucket %d", b, it.Key, bucketOf(it.Key))
				}
				if i > 0 && bytes.Compare(items[i-1].Key, it.Key) >= 0 {
					t.Fatalf("Bucket(%d) not in key order", b)
				}
				if want, ok := keys[string(it.Key)]; !ok || !it.Set.Equal(want) {
					t.Fatalf("Bucket(%d): %q = %v, want %v", b, it.Key, it.Set, want)
				}
			}
			seen += len(items)
		}
		if seen != len(keys) {
			t.Fatalf("the buckets hold %d keys, want %d", seen, len(keys))
		}
		items := allItems(t, s)
		if len(items) != len(keys) {
			t.Fatalf("Each gave %d keys, want %d", len(items), len(keys))
		}
		for _, it := range items {
			if !it.Set.Equal(keys[string(it.Key)]) {
				t.Fatalf("Each: %q = %v", it.Key, it.Set)
			}
		}
		if n, err := s.Count(); err != nil || n != len(keys) {
			t.Fatalf("Count = %d, %v; want %d", n, err, len(keys))
		}
		got, err := s.Hints()
		if err != nil {
			t.Fatalf("Hints: %v", err)
		}
		if !hintsEqual(got, hints) {
			t.Fatalf("Hints = %v, want %v", got, hints)
		}
		if f, err := s.MintFloor(); err != nil || f != 42 {
			t.Fatalf("MintFloor = %d, %v; want 42", f, err)
		}
	}
	check(s)
	mustClose(t, s)
	s = mustOpen(t, dir)
	defer mustClose(t, s)
	check(s)
}

// hintsEqual compares hints as sets.
func hintsEqual(a, b []leaderless.Hint) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y leaderless.Hint) bool {
			return x.For == y.For && bytes.Equal(x.Key, y.Key) && x.Set.Equal(y.Set)
		}) {
			return false
		}
	}
	return true
}

// TestReturnedValuesDoNotAlias: what a reader returns is the caller's: a
// later Persist or read does not change it.
func TestReturnedValuesDoNotAlias(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer mustClose(t, s)
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("k", value("a", 1, "first"))}})
	got, _ := mustGet(t, s, "k")
	items, err := s.Bucket(bucketOf([]byte("k")))
	if err != nil || len(items) != 1 {
		t.Fatalf("Bucket: %v, %v", items, err)
	}
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("k", value("a", 2, "other"))}})
	for i := range 50 { // churn Pebble's buffers
		mustGet(t, s, "k")
		mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put(fmt.Sprint("x", i), value("a", 1, "zzzzz"))}})
	}
	if string(got.Siblings[0].Value) != "first" || string(items[0].Set.Siblings[0].Value) != "first" || string(items[0].Key) != "k" {
		t.Fatalf("returned values changed: %v, %v", got, items)
	}
}

// TestDropDeletes: a KeyWrite with Drop removes the key from every reader;
// a later write brings it back.
func TestDropDeletes(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("a", tombstone("n", 1)), put("b", value("n", 1, "B"))}})
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{drop("a"), drop("never-there")}})
	check := func(s *Store) {
		t.Helper()
		if _, ok := mustGet(t, s, "a"); ok {
			t.Fatalf("dropped key still there")
		}
		items, err := s.Bucket(bucketOf([]byte("a")))
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if string(it.Key) == "a" {
				t.Fatalf("dropped key in its bucket")
			}
		}
		if n, err := s.Count(); err != nil || n != 1 {
			t.Fatalf("Count = %d, %v; want 1", n, err)
		}
		if items := allItems(t, s); len(items) != 1 || string(items[0].Key) != "b" {
			t.Fatalf("Each = %v", items)
		}
	}
	check(s)
	mustClose(t, s)
	s = mustOpen(t, dir)
	check(s)
	// Within one Ready, the last write of a key wins.
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("c", value("n", 1, "C")), drop("c"), drop("b"), put("b", value("n", 2, "B2"))}})
	if _, ok := mustGet(t, s, "c"); ok {
		t.Fatalf("put then drop in one Ready: key still there")
	}
	if got, ok := mustGet(t, s, "b"); !ok || !got.Equal(value("n", 2, "B2")) {
		t.Fatalf("drop then put in one Ready: %v, %v", got, ok)
	}
	mustClose(t, s)
}

// TestDoneHintsDelete: DoneHints delete exactly their (For, Key); a hint
// stored again after its deletion in the same Ready survives.
func TestDoneHintsDelete(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustPersist(t, s, leaderless.Ready{Hints: []leaderless.Hint{
		hint("n2", "k", value("a", 1, "x")),
		hint("n3", "k", value("a", 1, "x")),
		hint("n2", "j", value("a", 2, "y")),
		hint("n2", "k", value("a", 3, "z")), // replaces the first
	}})
	got, err := s.Hints()
	if err != nil || !hintsEqual(got, []leaderless.Hint{hint("n2", "k", value("a", 3, "z")), hint("n3", "k", value("a", 1, "x")), hint("n2", "j", value("a", 2, "y"))}) {
		t.Fatalf("Hints = %v, %v", got, err)
	}
	mustPersist(t, s, leaderless.Ready{DoneHints: []leaderless.Hint{done("n2", "k"), done("n9", "k"), done("n2", "nothing")}})
	want := []leaderless.Hint{hint("n3", "k", value("a", 1, "x")), hint("n2", "j", value("a", 2, "y"))}
	if got, err := s.Hints(); err != nil || !hintsEqual(got, want) {
		t.Fatalf("after DoneHints: %v, %v; want %v", got, err, want)
	}
	// Handed over (done) and then stored again, in one Ready: the new copy
	// stays.
	mustPersist(t, s, leaderless.Ready{Hints: []leaderless.Hint{hint("n3", "k", value("a", 5, "again"))}, DoneHints: []leaderless.Hint{done("n3", "k"), done("n2", "j")}})
	want = []leaderless.Hint{hint("n3", "k", value("a", 5, "again"))}
	if got, err := s.Hints(); err != nil || !hintsEqual(got, want) {
		t.Fatalf("after done and stored again: %v, %v; want %v", got, err, want)
	}
	mustClose(t, s)
	s = mustOpen(t, dir)
	defer mustClose(t, s)
	if got, err := s.Hints(); err != nil || !hintsEqual(got, want) {
		t.Fatalf("after reopening: %v, %v; want %v", got, err, want)
	}
	// Hints are not key copies.
	if n, err := s.Count(); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v; want 0", n, err)
	}
}

// TestMintFloorNeverDecreases: a lower or equal mint floor is not written,
// across reopening too.
func TestMintFloorNeverDecreases(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if f, err := s.MintFloor(); err != nil || f != 0 {
		t.Fatalf("new store: MintFloor = %d, %v", f, err)
	}
	for _, step := range []struct{ persist, want uint64 }{{5, 5}, {3, 5}, {5, 5}, {0, 5}, {9, 9}, {1, 9}} {
		mustPersist(t, s, leaderless.Ready{MintFloor: step.persist, Keys: []leaderless.KeyWrite{put("k", value("a", 1, "v"))}})
		if f, err := s.MintFloor(); err != nil || f != step.want {
			t.Fatalf("after persisting %d: MintFloor = %d, %v; want %d", step.persist, f, err, step.want)
		}
	}
	mustClose(t, s)
	s = mustOpen(t, dir)
	defer mustClose(t, s)
	mustPersist(t, s, leaderless.Ready{MintFloor: 2})
	if f, err := s.MintFloor(); err != nil || f != 9 {
		t.Fatalf("after reopening: MintFloor = %d, %v; want 9", f, err)
	}
}

// walBytes is how many bytes Pebble's WAL took in.
func walBytes(s *Store) uint64 { return s.db.Metrics().WAL.BytesIn }

// TestEmptyReadyWritesNothing: a Ready without anything to keep (or only a
// mint floor not above the stored one) writes no batch.
func TestEmptyReadyWritesNothing(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer mustClose(t, s)
	mustPersist(t, s, leaderless.Ready{MintFloor: 10})
	before := walBytes(s)
	for _, rd := range []leaderless.Ready{
		{},
		{Messages: []leaderless.Envelope{{To: "n2", Msg: leaderless.Message{Type: leaderless.MsgPing}}}},
		{Results: []leaderless.Result{{ID: 1}}},
		{MintFloor: 10},
		{MintFloor: 3},
	} {
		mustPersist(t, s, rd)
	}
	if after := walBytes(s); after != before {
		t.Fatalf("empty Readies wrote %d WAL bytes", after-before)
	}
	mustPersist(t, s, leaderless.Ready{MintFloor: 11})
	if walBytes(s) == before {
		t.Fatalf("a higher mint floor wrote nothing (the check above proves nothing)")
	}
}

// TestBucketOf checks the store's bucket function against the Merkle
// package's, as the core's leaf (internal/leaderless/entropy.go) computes it.
func TestBucketOf(t *testing.T) {
	if bucketDepth != leaderless.MerkleDepth {
		t.Fatalf("bucketDepth %d, MerkleDepth %d", bucketDepth, leaderless.MerkleDepth)
	}
	tree, err := merkle.New(leaderless.MerkleDepth)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	keys := [][]byte{{0}, {0xff}, []byte("k"), bytes.Repeat([]byte{'x'}, leaderless.MaxKeyLen)}
	for range 20000 {
		k := make([]byte, 1+r.Intn(64))
		r.Read(k)
		keys = append(keys, k)
	}
	used := map[int]bool{}
	for _, k := range keys {
		want := int(merkle.BucketHash(k) >> (64 - leaderless.MerkleDepth))
		got := bucketOf(k)
		if got != want || got != tree.Leaf(k) {
			t.Fatalf("bucketOf(%x) = %d, want %d (tree: %d)", k, got, want, tree.Leaf(k))
		}
		if got < 0 || got >= numBuckets {
			t.Fatalf("bucketOf(%x) = %d out of range", k, got)
		}
		sk := stateKey(k)
		if !bytes.HasPrefix(sk, bucketPrefix(got)) {
			t.Fatalf("stateKey(%x) = %x, not under bucket %d", k, sk, got)
		}
		if uk, ok := splitStateKey(sk); !ok || !bytes.Equal(uk, k) {
			t.Fatalf("splitStateKey(stateKey(%x)) = %x, %v", k, uk, ok)
		}
		used[got] = true
	}
	if len(used) < numBuckets*9/10 {
		t.Fatalf("only %d of %d buckets used by %d keys", len(used), numBuckets, len(keys))
	}
}

func TestBucketOutOfRange(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer mustClose(t, s)
	for _, b := range []int{-1, numBuckets, 1 << 30} {
		if _, err := s.Bucket(b); err == nil {
			t.Fatalf("Bucket(%d) did not fail", b)
		}
	}
	if items, err := s.Bucket(numBuckets - 1); err != nil || len(items) != 0 {
		t.Fatalf("Bucket(last) of an empty store = %v, %v", items, err)
	}
}

func TestHintKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct{ home, key string }{{"n", "k"}, {strings.Repeat("h", vclock.MaxNodeIDLen), "\x00"}, {"a\x00b", "c\xffd"}} {
		home, key, ok := splitHintKey(appendHintKey(nil, tc.home, []byte(tc.key)))
		if !ok || home != tc.home || string(key) != tc.key {
			t.Fatalf("hint key (%q, %q) came back as (%q, %q), %v", tc.home, tc.key, home, key, ok)
		}
	}
	for _, k := range [][]byte{{prefixHint}, {prefixHint, 0, 'k'}, {prefixHint, 1, 'n'}, {prefixHint, 0x81, 0x00, 'n', 'k'}, {prefixHint, 2, 'n'}} {
		if h, key, ok := splitHintKey(k); ok {
			t.Fatalf("splitHintKey(%x) = %q, %q: want a refusal", k, h, key)
		}
	}
}

// TestCorruptRecords writes bad records with the raw Pebble handle: every
// read of them fails with ErrCorrupt naming the record, and nothing panics.
func TestCorruptRecords(t *testing.T) {
	good := appendValue(nil, value("a", 1, "v"))
	unsorted := appendValue(nil, vclock.Set{Context: vclock.Vector{{Node: "b", Counter: 1}, {Node: "a", Counter: 1}}})
	get := func(s *Store) error { _, _, err := s.Get([]byte("key-1")); return err }
	bucket := func(s *Store) error { _, err := s.Bucket(bucketOf([]byte("key-1"))); return err }
	each := func(s *Store) error { return s.Each(func(leaderless.Item) error { return nil }) }
	hints := func(s *Store) error { _, err := s.Hints(); return err }
	tests := []struct {
		name  string
		key   []byte
		value []byte
		read  func(s *Store) error
		want  string // in the error
	}{
		{"state garbage", stateKey([]byte("key-1")), []byte{valueVersion, 0xff, 0xff}, get, `"key-1"`},
		{"state empty", stateKey([]byte("key-1")), []byte{}, get, `"key-1"`},
		{"state version", stateKey([]byte("key-1")), append([]byte{9}, good[1:]...), get, "version 9"},
		{"state trailing byte", stateKey([]byte("key-1")), append(slices.Clone(good), 0), get, "trailing"},
		{"state invalid set", stateKey([]byte("key-1")), unsorted, get, "not sorted"},
		{"state in a bucket", stateKey([]byte("key-1")), []byte{valueVersion}, bucket, `"key-1"`},
		{"state in Each", stateKey([]byte("key-1")), []byte{valueVersion, 1}, each, `"key-1"`},
		{"state key too short", []byte{prefixState, 0, 0, 0}, good, each, "key state under"},
		{"hint garbage", appendHintKey(nil, "n2", []byte("key-1")), []byte{valueVersion, 3}, hints, `hint for "n2" of key "key-1"`},
		{"hint version", appendHintKey(nil, "n2", []byte("key-1")), append([]byte{0}, good[1:]...), hints, "version 0"},
		{"hint key", []byte{prefixHint, 5, 'n'}, good, hints, "hint under"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			mustPersist(t, s, leaderless.Ready{
				Keys:  []leaderless.KeyWrite{put("key-1", value("a", 1, "v")), put("key-2", value("a", 2, "w"))},
				Hints: []leaderless.Hint{hint("n2", "key-1", value("a", 1, "v"))},
			})
			if err := s.db.Set(tc.key, tc.value, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			for round := range 2 { // then again after reopening
				err := tc.read(s)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("round %d: got %v, want ErrCorrupt naming %s", round, err, tc.want)
				}
				if round == 0 {
					t.Log(err)
					mustClose(t, s)
					s = mustOpen(t, dir)
				}
			}
			// A corrupt record is not a failure of the store: the rest reads.
			if got, ok := mustGet(t, s, "key-2"); !ok || !got.Equal(value("a", 2, "w")) {
				t.Fatalf("Get(key-2) = %v, %v", got, ok)
			}
			mustClose(t, s)
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
		{"unknown format version", keyFormat, be64(2), false, "has format version 2; this build reads only 1"},
		{"format garbage", keyFormat, []byte{1}, true, "format version record is 1 bytes"},
		{"no format", keyFormat, nil, true, "no format version"},
		{"another bucket depth", keyDepth, be64(12), false, "Merkle depth 12; this build uses 10"},
		{"no bucket depth", keyDepth, nil, true, "no bucket depth record"},
		{"mint floor garbage", keyMintFloor, []byte{1, 2}, true, "mint floor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("k", value("a", 1, "v"))}, MintFloor: 1})
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
			if errors.Is(err, ErrCorrupt) != tc.corrupt || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open: %v; want ErrCorrupt %v, %q and the directory", err, tc.corrupt, tc.want)
			}
			t.Log(err)
			// The refusal changed nothing: the database still opens once fixed.
			if tc.name == "unknown format version" {
				db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Set(keyFormat, be64(formatVersion), pebble.Sync); err != nil {
					t.Fatal(err)
				}
				db.Close()
				s := mustOpen(t, dir)
				if got, ok := mustGet(t, s, "k"); !ok || !got.Equal(value("a", 1, "v")) {
					t.Fatalf("after fixing the format version: %v, %v", got, ok)
				}
				mustClose(t, s)
			}
		})
	}
	// A directory that cannot be created.
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file+"/db", Config{}); err == nil {
		t.Fatalf("Open under a file did not fail")
	}
}

// quietLogger drops the log lines of a raw Pebble handle.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("k", value("a", 1, "v"))}})
	mustClose(t, s)
	if err := s.Close(); err == nil {
		t.Errorf("second Close did not fail")
	}
	for name, call := range allCalls(s) {
		if err := call(); !errors.Is(err, errClosed) {
			t.Errorf("%s after Close = %v, want errClosed", name, err)
		}
	}
}

// allCalls returns a call of every method but Close.
func allCalls(s *Store) map[string]func() error {
	return map[string]func() error{
		"Get":    func() error { _, _, err := s.Get([]byte("k")); return err },
		"Bucket": func() error { _, err := s.Bucket(0); return err },
		"Each":   func() error { return s.Each(func(leaderless.Item) error { return nil }) },
		"Count":  func() error { _, err := s.Count(); return err },
		"Hints":  func() error { _, err := s.Hints(); return err },
		"MintFloor": func() error {
			_, err := s.MintFloor()
			return err
		},
		"Persist": func() error {
			return s.Persist(&leaderless.Ready{Keys: []leaderless.KeyWrite{put("k", value("a", 2, "w"))}})
		},
	}
}

func TestEachStops(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer mustClose(t, s)
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("a", value("n", 1, "A")), put("b", value("n", 1, "B")), put("c", value("n", 1, "C"))}})
	stop := errors.New("stop")
	calls := 0
	err := s.Each(func(it leaderless.Item) error {
		calls++
		if _, _, err := s.Get(it.Key); err != nil { // readers may be called from fn
			return err
		}
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("Each = %v after %d calls; want fn's error, unwrapped, after 1", err, calls)
	}
}

// TestRefusedPersistIsSticky: a Ready the format cannot hold is refused,
// nothing of it is written, and the store is failed from then on.
func TestRefusedPersistIsSticky(t *testing.T) {
	for _, tc := range []struct {
		name string
		rd   leaderless.Ready
	}{
		{"empty key", leaderless.Ready{Keys: []leaderless.KeyWrite{put("ok", value("a", 1, "v")), put("", value("a", 1, "v"))}}},
		{"key too long", leaderless.Ready{Keys: []leaderless.KeyWrite{put(strings.Repeat("k", leaderless.MaxKeyLen+1), value("a", 1, "v"))}}},
		{"hint without home", leaderless.Ready{Keys: []leaderless.KeyWrite{put("ok", value("a", 1, "v"))}, Hints: []leaderless.Hint{hint("", "k", value("a", 1, "v"))}}},
		{"hint home too long", leaderless.Ready{Hints: []leaderless.Hint{hint(strings.Repeat("n", vclock.MaxNodeIDLen+1), "k", value("a", 1, "v"))}}},
		{"done hint without key", leaderless.Ready{DoneHints: []leaderless.Hint{done("n2", "")}, MintFloor: 7}},
		{"set not covered by its context", leaderless.Ready{Keys: []leaderless.KeyWrite{put("ok", value("a", 1, "v")), put("k", vclock.Set{
			Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: "a", Counter: 1}}}})}}},
		{"hint with a negative time", leaderless.Ready{Keys: []leaderless.KeyWrite{put("ok", value("a", 1, "v"))}, Hints: []leaderless.Hint{hint("n2", "k", vclock.Set{
			Context:  vclock.Vector{{Node: "a", Counter: 1}},
			Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: "a", Counter: 1}, Time: hlc.Timestamp{Wall: -1}}}})}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			err := s.Persist(&tc.rd)
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("Persist = %v, want ErrFailed", err)
			}
			t.Log(err)
			for name, call := range allCalls(s) {
				if got := call(); got == nil || got.Error() != err.Error() {
					t.Fatalf("%s after the failure = %v, want %v", name, got, err)
				}
			}
			if got := s.Close(); got == nil || got.Error() != err.Error() {
				t.Fatalf("Close after the failure = %v, want %v", got, err)
			}
			s = mustOpen(t, dir)
			defer mustClose(t, s)
			if _, ok := mustGet(t, s, "ok"); ok {
				t.Fatalf("part of a refused Ready was written")
			}
			if f, _ := s.MintFloor(); f != 0 {
				t.Fatalf("the mint floor of a refused Ready was written")
			}
		})
	}
}

// faultFS is Pebble's file system with a switch that makes every file
// write and sync fail with an errno, as a dead device or a full disk would.
type faultFS struct {
	vfs.FS
	err atomic.Pointer[syscall.Errno]
}

func (fs *faultFS) fault(op, name string) error {
	if e := fs.err.Load(); e != nil {
		return &os.PathError{Op: op, Path: name, Err: *e}
	}
	return nil
}

func (fs *faultFS) set(e syscall.Errno) { fs.err.Store(&e) }

func (fs *faultFS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs, name: name}, nil
}

func (fs *faultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault("open", name); err != nil {
		return nil, err
	}
	f, err := fs.FS.Create(name, c)
	return fs.wrap(f, name, err)
}

func (fs *faultFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault("open", newname); err != nil {
		return nil, err
	}
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(f, newname, err)
}

func (fs *faultFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(f, name, err)
}

type faultFile struct {
	vfs.File
	fs   *faultFS
	name string
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.fault("write", f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.fault("write", f.name); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if err := f.fs.fault("sync", f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) SyncData() error {
	if err := f.fs.fault("sync", f.name); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *faultFile) SyncTo(length int64) (bool, error) {
	if err := f.fs.fault("sync", f.name); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

// TestFailedCommitIsSticky: a WAL write that fails under Persist makes
// Pebble call Fatalf on Persist's goroutine; the store turns it into a
// sticky failure naming the errno instead of crashing, and every later
// call returns it.
func TestFailedCommitIsSticky(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{FS: vfs.Default}
	s, err := openFS(dir, Config{}, ffs)
	if err != nil {
		t.Fatal(err)
	}
	mustPersist(t, s, leaderless.Ready{Keys: []leaderless.KeyWrite{put("before", value("a", 1, "v"))}})
	ffs.set(syscall.EIO)
	err = s.Persist(&leaderless.Ready{Keys: []leaderless.KeyWrite{put("after", value("a", 2, "w"))}, MintFloor: 5})
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), syscall.EIO.Error()) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Persist with a failing disk = %v, want ErrFailed naming %v and %s", err, syscall.EIO, dir)
	}
	t.Log(err)
	for name, call := range allCalls(s) {
		if got := call(); got == nil || got.Error() != err.Error() {
			t.Fatalf("%s after the failure = %v, want %v", name, got, err)
		}
	}
	// Pebble stopped inside a commit: Close reports the failure and
	// leaves it open (it may hold its locks).
	if got := s.Close(); !errors.Is(got, ErrFailed) {
		t.Fatalf("Close after the failure = %v, want ErrFailed", got)
	}
}

// TestFatalOffCall: Pebble's Fatalf on a goroutine of its own (not inside
// a store call) fails the store and parks that goroutine; nothing crashes.
func TestFatalOffCall(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	returned := make(chan struct{})
	go func() {
		pebbleLogger{s}.Fatalf("MANIFEST sync failed: %v", syscall.EIO)
		close(returned) // never
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.failure() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the store did not fail")
		}
		time.Sleep(time.Millisecond)
	}
	_, err := s.MintFloor()
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "MANIFEST sync failed") {
		t.Fatalf("MintFloor after Fatalf = %v", err)
	}
	select {
	case <-returned:
		t.Fatal("Fatalf returned")
	case <-time.After(20 * time.Millisecond):
	}
	if got := s.Close(); !errors.Is(got, ErrFailed) {
		t.Fatalf("Close = %v, want ErrFailed", got)
	}
}

// TestConcurrentReads reads while Persist writes (for the race detector):
// readers see whole batches only.
func TestConcurrentReads(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer mustClose(t, s)
	const rounds = 100
	keys := []string{"p", "q", "r"}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 3)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// One batch writes all keys at the same counter: a
				// reader's Each sees them equal.
				var ctrs []uint64
				err := s.Each(func(it leaderless.Item) error {
					ctrs = append(ctrs, it.Set.Siblings[0].Dot.Counter)
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				if len(ctrs) > 0 && (len(ctrs) != len(keys) || slices.Min(ctrs) != slices.Max(ctrs)) {
					errs <- fmt.Errorf("Each saw a partial batch: %v", ctrs)
					return
				}
				if _, _, err := s.Get([]byte("p")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range rounds {
		var rd leaderless.Ready
		for _, k := range keys {
			rd.Keys = append(rd.Keys, put(k, value("a", uint64(i+1), k)))
		}
		rd.MintFloor = uint64(i + 1)
		mustPersist(t, s, rd)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// model is what the store should hold.
type model struct {
	keys  map[string]vclock.Set
	hints map[[2]string]vclock.Set
	floor uint64
}

// TestModel applies random Readies to a store and to a model, reopening
// the store now and then, and compares every reader with the model.
func TestModel(t *testing.T) {
	seeds := []int64{*flagSeed}
	if *flagSeed == 0 {
		seeds = nil
		for i := range *flagSeeds {
			seeds = append(seeds, int64(i+1))
		}
	}
	for _, seed := range seeds {
		if err := runModel(t, seed, *flagOps); err != nil {
			t.Fatalf("seed %d: %v (rerun with -llstore.seed=%d)", seed, err, seed)
		}
	}
}

func runModel(t *testing.T, seed int64, ops int) error {
	r := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	s, err := Open(dir, Config{})
	if err != nil {
		return err
	}
	defer func() { s.Close() }()
	m := &model{keys: map[string]vclock.Set{}, hints: map[[2]string]vclock.Set{}}
	key := func() string { return fmt.Sprint("k", r.Intn(40)) }
	home := func() string { return fmt.Sprint("n", r.Intn(3)) }
	ctr := uint64(0)
	set := func() vclock.Set {
		ctr++
		switch r.Intn(3) {
		case 0:
			return tombstone("a", ctr)
		case 1:
			return siblings(ctr)
		}
		return value("a", ctr, strings.Repeat("v", r.Intn(20)))
	}
	for op := range ops {
		var rd leaderless.Ready
		for range r.Intn(4) {
			k := key()
			if r.Intn(4) == 0 {
				rd.Keys = append(rd.Keys, drop(k))
				delete(m.keys, k)
			} else {
				v := set()
				rd.Keys = append(rd.Keys, put(k, v))
				m.keys[k] = v
			}
		}
		// Deletes before puts, as Persist applies them.
		for range r.Intn(2) {
			h, k := home(), key()
			rd.DoneHints = append(rd.DoneHints, done(h, k))
			delete(m.hints, [2]string{h, k})
		}
		for range r.Intn(3) {
			h, k, v := home(), key(), set()
			rd.Hints = append(rd.Hints, hint(h, k, v))
			m.hints[[2]string{h, k}] = v
		}
		if r.Intn(3) == 0 {
			f := uint64(r.Intn(100))
			rd.MintFloor = f
			m.floor = max(m.floor, f)
		}
		if err := s.Persist(&rd); err != nil {
			return fmt.Errorf("op %d: Persist: %w", op, err)
		}
		if r.Intn(20) == 0 {
			if err := s.Close(); err != nil {
				return err
			}
			if s, err = Open(dir, Config{}); err != nil {
				return err
			}
		}
		if err := m.check(r, s); err != nil {
			return fmt.Errorf("op %d: %w", op, err)
		}
	}
	return nil
}

func (m *model) check(r *rand.Rand, s *Store) error {
	k := fmt.Sprint("k", r.Intn(40))
	got, ok, err := s.Get([]byte(k))
	want, wantOK := m.keys[k]
	if err != nil || ok != wantOK || !got.Equal(want) {
		return fmt.Errorf("Get(%s) = %v, %v, %v; want %v, %v", k, got, ok, err, want, wantOK)
	}
	b := bucketOf([]byte(k))
	items, err := s.Bucket(b)
	if err != nil {
		return err
	}
	n := 0
	for mk, mv := range m.keys {
		if bucketOf([]byte(mk)) != b {
			continue
		}
		n++
		if !slices.ContainsFunc(items, func(it leaderless.Item) bool { return string(it.Key) == mk && it.Set.Equal(mv) }) {
			return fmt.Errorf("Bucket(%d) lacks %s = %v: %v", b, mk, mv, items)
		}
	}
	if n != len(items) {
		return fmt.Errorf("Bucket(%d) holds %d keys, want %d", b, len(items), n)
	}
	if c, err := s.Count(); err != nil || c != len(m.keys) {
		return fmt.Errorf("Count = %d, %v; want %d", c, err, len(m.keys))
	}
	hints, err := s.Hints()
	if err != nil {
		return err
	}
	if len(hints) != len(m.hints) {
		return fmt.Errorf("Hints: %d, want %d", len(hints), len(m.hints))
	}
	for _, h := range hints {
		if want, ok := m.hints[[2]string{h.For, string(h.Key)}]; !ok || !h.Set.Equal(want) {
			return fmt.Errorf("hint (%s, %s) = %v, want %v (%v)", h.For, h.Key, h.Set, want, ok)
		}
	}
	if f, err := s.MintFloor(); err != nil || f != m.floor {
		return fmt.Errorf("MintFloor = %d, %v; want %d", f, err, m.floor)
	}
	return nil
}
