package merkle

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

var seedFlag = flag.Int64("merkle.seed", 0, "seed for randomized merkle tests (0: derive from the clock)")

// mustRand returns a seeded source and reports the seed, with the command that
// replays it, if the test fails.
func mustRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; replay: go test ./internal/leaderless/merkle/ -run '^%s$' -merkle.seed %d", seed, t.Name(), seed)
		}
	})
	return rand.New(rand.NewSource(seed))
}

func mustNew(t *testing.T, depth int) *Tree {
	t.Helper()
	tr, err := New(depth)
	if err != nil {
		t.Fatalf("New(%d): %v", depth, err)
	}
	return tr
}

type kv struct{ key, version []byte }

func randomKVs(r *rand.Rand, n int) []kv {
	kvs := make([]kv, n)
	for i := range kvs {
		kvs[i] = kv{[]byte(fmt.Sprintf("key-%d-%d", i, r.Int63())), []byte(fmt.Sprintf("v%d", r.Intn(5)))}
	}
	return kvs
}

func mustEqualTrees(t *testing.T, a, b *Tree) {
	t.Helper()
	if a.Root() != b.Root() {
		t.Fatalf("roots differ: %#x vs %#x", a.Root(), b.Root())
	}
	for l := 0; l <= a.Depth(); l++ {
		if !slices.Equal(a.Level(l), b.Level(l)) {
			t.Fatalf("level %d differs", l)
		}
	}
}

func TestNewDepth(t *testing.T) {
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{-1, false}, {0, false}, {1, true}, {DefaultDepth, true}, {MaxDepth, true}, {MaxDepth + 1, false}} {
		t.Run(fmt.Sprint(tc.depth), func(t *testing.T) {
			tr, err := New(tc.depth)
			if tc.ok != (err == nil) {
				t.Fatalf("New(%d) err = %v, want ok=%v", tc.depth, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrDepth) {
				t.Fatalf("err %v does not wrap ErrDepth", err)
			}
			if err == nil && (tr.Depth() != tc.depth || len(tr.Level(tc.depth)) != 1<<tc.depth || tr.Root() != 0) {
				t.Fatalf("New(%d): depth %d, %d leaves, root %#x", tc.depth, tr.Depth(), len(tr.Level(tc.depth)), tr.Root())
			}
		})
	}
}

// TestHashIsFixed pins the wire contract: changing the bucket hash or the
// digest breaks comparison with replicas running older code.
func TestHashIsFixed(t *testing.T) {
	if got, want := BucketHash([]byte("alpha")), uint64(0x2a158d8afd48e3f8); got != want {
		t.Errorf("BucketHash(alpha) = %#x, want %#x", got, want)
	}
	if got, want := Digest([]byte("alpha"), []byte("v1")), uint64(0x5e4e981f4dd321bd); got != want {
		t.Errorf("Digest(alpha, v1) = %#x, want %#x", got, want)
	}
	if Digest([]byte("ab"), []byte("c")) == Digest([]byte("a"), []byte("bc")) {
		t.Errorf("Digest does not separate key from version")
	}
	tr := mustNew(t, DefaultDepth)
	if got, want := tr.Leaf([]byte("alpha")), int(uint64(0x2a158d8afd48e3f8)>>(64-DefaultDepth)); got != want {
		t.Errorf("Leaf(alpha) = %d, want %d", got, want)
	}
}

func TestOrderIndependent(t *testing.T) {
	r := mustRand(t)
	kvs := randomKVs(r, 500)
	a, b := mustNew(t, 8), mustNew(t, 8)
	for _, e := range kvs {
		a.Add(e.key, e.version)
	}
	r.Shuffle(len(kvs), func(i, j int) { kvs[i], kvs[j] = kvs[j], kvs[i] })
	for _, e := range kvs {
		b.Add(e.key, e.version)
	}
	mustEqualTrees(t, a, b)
	if a.Root() == 0 {
		t.Fatalf("root of 500 keys is 0")
	}
	// Every node is the XOR of its two children.
	for l := 0; l < a.Depth(); l++ {
		up, down := a.Level(l), a.Level(l+1)
		for i := range up {
			if up[i] != down[2*i]^down[2*i+1] {
				t.Fatalf("level %d node %d is not the XOR of its children", l, i)
			}
		}
	}
}

func TestRemoveUndoesAdd(t *testing.T) {
	r := mustRand(t)
	base, extra := randomKVs(r, 200), randomKVs(r, 50)
	tr, want := mustNew(t, 6), mustNew(t, 6)
	for _, e := range base {
		tr.Add(e.key, e.version)
		want.Add(e.key, e.version)
	}
	for _, e := range extra {
		tr.Add(e.key, e.version)
	}
	if tr.Root() == want.Root() {
		t.Fatalf("adding 50 keys left the root unchanged")
	}
	for _, e := range extra {
		tr.Remove(e.key, e.version)
	}
	mustEqualTrees(t, tr, want)
	for _, e := range base {
		tr.Remove(e.key, e.version)
	}
	mustEqualTrees(t, tr, mustNew(t, 6))
}

func TestUpdateChangesOnlyPath(t *testing.T) {
	r := mustRand(t)
	kvs := randomKVs(r, 300)
	before := mustNew(t, DefaultDepth)
	for _, e := range kvs {
		before.Add(e.key, e.version)
	}
	after := mustNew(t, DefaultDepth)
	for _, e := range kvs {
		after.Add(e.key, e.version)
	}
	k := kvs[r.Intn(len(kvs))]
	after.Update(k.key, k.version, append(slices.Clone(k.version), '+'))
	leaf := after.Leaf(k.key)
	for l := 0; l <= after.Depth(); l++ {
		b, a := before.Level(l), after.Level(l)
		onPath := leaf >> (after.Depth() - l)
		for i := range a {
			if (a[i] != b[i]) != (i == onPath) {
				t.Fatalf("level %d node %d: changed=%v, on path of leaf %d=%v", l, i, a[i] != b[i], leaf, i == onPath)
			}
		}
	}
	// Update is Remove then Add.
	manual := mustNew(t, DefaultDepth)
	for _, e := range kvs {
		manual.Add(e.key, e.version)
	}
	manual.Remove(k.key, k.version)
	manual.Add(k.key, append(slices.Clone(k.version), '+'))
	mustEqualTrees(t, after, manual)
}

func TestDiffRandomized(t *testing.T) {
	r := mustRand(t)
	const depth = DefaultDepth
	for round := 0; round < 20; round++ {
		kvs := randomKVs(r, 2000)
		a, b := mustNew(t, depth), mustNew(t, depth)
		for _, e := range kvs {
			a.Add(e.key, e.version)
			b.Add(e.key, e.version)
		}
		want := map[int]bool{}
		for _, ki := range r.Perm(len(kvs))[:r.Intn(5)+1] { // distinct keys
			switch k := kvs[ki]; r.Intn(3) {
			case 0: // b misses a key
				b.Remove(k.key, k.version)
				want[b.Leaf(k.key)] = true
			case 1: // b has a newer version
				b.Update(k.key, k.version, []byte("newer"))
				want[b.Leaf(k.key)] = true
			default: // b has a key a lacks
				nk := []byte(fmt.Sprintf("only-b-%d", r.Int63()))
				b.Add(nk, []byte("v"))
				want[b.Leaf(nk)] = true
			}
		}
		// Check against a brute-force leaf comparison and against the
		// buckets of the keys that were changed.
		la, lb := a.Level(depth), b.Level(depth)
		var brute []int
		for i := range la {
			if la[i] != lb[i] {
				brute = append(brute, i)
			}
		}
		var touched []int
		for i := range want {
			touched = append(touched, i)
		}
		slices.Sort(touched)
		got, visited := diff(a, b)
		if !slices.Equal(got, brute) || !slices.Equal(got, touched) {
			t.Fatalf("round %d: Diff = %v, brute force %v, touched %v", round, got, brute, touched)
		}
		if rev := Diff(b, a); !slices.Equal(rev, got) {
			t.Fatalf("round %d: Diff(b, a) = %v, Diff(a, b) = %v", round, rev, got)
		}
		// At most 5 differing buckets: at most 1 + 2*5*depth nodes, far fewer
		// than the 2^depth leaves of a full scan.
		if max := 1 + 2*len(got)*depth; visited > max || visited >= 1<<depth {
			t.Fatalf("round %d: visited %d nodes for %d buckets, want <= %d and < %d", round, visited, len(got), max, 1<<depth)
		}
	}
}

func TestDiffEqualTrees(t *testing.T) {
	r := mustRand(t)
	a, b := mustNew(t, DefaultDepth), mustNew(t, DefaultDepth)
	for _, e := range randomKVs(r, 100) {
		a.Add(e.key, e.version)
		b.Add(e.key, e.version)
	}
	for _, tc := range []struct {
		name string
		a, b *Tree
	}{{"empty", mustNew(t, DefaultDepth), mustNew(t, DefaultDepth)}, {"same keys", a, b}} {
		t.Run(tc.name, func(t *testing.T) {
			got, visited := diff(tc.a, tc.b)
			if len(got) != 0 || visited != 1 {
				t.Fatalf("Diff = %v after %d nodes, want none after 1", got, visited)
			}
		})
	}
}

func TestDiffDepthMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatalf("Diff of depths 3 and 4 did not panic")
		}
	}()
	Diff(mustNew(t, 3), mustNew(t, 4))
}

func TestLevelRoundTrip(t *testing.T) {
	tr := mustNew(t, 4)
	for i := 0; i < 40; i++ {
		tr.Add([]byte(fmt.Sprint("k", i)), []byte("v"))
	}
	for _, tc := range []struct{ level, first, n int }{
		{0, 0, 1}, {0, 0, 0}, {2, 1, 3}, {4, 0, 16}, {4, 15, 1}, {4, 7, 0},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			hashes := tr.Level(tc.level)[tc.first : tc.first+tc.n]
			b := AppendLevel([]byte("prefix"), 4, tc.level, tc.first, hashes)
			level, first, got, err := DecodeLevel(b[len("prefix"):], 4)
			if err != nil {
				t.Fatalf("DecodeLevel: %v", err)
			}
			if level != tc.level || first != tc.first || !slices.Equal(got, hashes) {
				t.Fatalf("decoded (%d, %d, %v), want (%d, %d, %v)", level, first, got, tc.level, tc.first, hashes)
			}
		})
	}
}

func TestDecodeLevelRefuses(t *testing.T) {
	valid := AppendLevel(nil, 4, 3, 2, []uint64{1, 2, 3})
	t.Run("truncated", func(t *testing.T) {
		for i := 0; i < len(valid); i++ {
			if _, _, _, err := DecodeLevel(valid[:i], 4); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrCorrupt", i, len(valid), err)
			}
		}
	})
	hdr := func(format, level byte, first, n uint64) []byte {
		b := []byte{format, level}
		b = binary.AppendUvarint(b, first)
		return binary.AppendUvarint(b, n)
	}
	for _, tc := range []struct {
		name     string
		b        []byte
		maxDepth int
	}{
		{"trailing byte", append(slices.Clone(valid), 0), 4},
		{"bad format", append([]byte{2}, valid[1:]...), 4},
		{"level above depth", AppendLevel(nil, 5, 5, 0, []uint64{7}), 4},
		{"first past level", hdr(1, 3, 8, 0), 4},
		{"first far past level", hdr(1, 3, 1<<62, 0), 4},
		{"count past level", append(hdr(1, 1, 1, 2), make([]byte, 16)...), 4},
		{"count larger than input", hdr(1, 4, 0, 16), 4},
		{"huge count", hdr(1, 20, 0, 1<<40), 20},
		{"count one short of bytes", append(hdr(1, 2, 0, 2), make([]byte, 24)...), 4},
		{"non-minimal first", []byte{1, 2, 0x81, 0x00, 0}, 4},
		{"overlong uvarint", append([]byte{1, 2}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := DecodeLevel(tc.b, tc.maxDepth); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeLevel(%x) err = %v, want ErrCorrupt", tc.b, err)
			}
		})
	}
	for _, d := range []int{0, -1, MaxDepth + 1} {
		if _, _, _, err := DecodeLevel(valid, d); !errors.Is(err, ErrDepth) {
			t.Fatalf("DecodeLevel(maxDepth %d) err = %v, want ErrDepth", d, err)
		}
	}
}
