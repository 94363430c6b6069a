package ring

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

var (
	flagSeed  = flag.Int64("ring.seed", 0, "run the property test on this seed only")
	flagSeeds = flag.Int("ring.seeds", 100, "number of seeds for the property test")
)

func mustNew(t *testing.T, nodes []string, vnodes int) *Ring {
	t.Helper()
	r, err := New(nodes, vnodes)
	if err != nil {
		t.Fatalf("New(%q, %d): %v", nodes, vnodes, err)
	}
	return r
}

func nodeIDs(k int) []string {
	ids := make([]string, k)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i)
	}
	return ids
}

func testKey(i int) []byte { return fmt.Appendf(nil, "key-%d", i) }

func TestNewErrors(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	tests := []struct {
		name   string
		nodes  []string
		vnodes int
		want   string // substring of the error; "" means no error
	}{
		{"ok", []string{"a", "b"}, 1, ""},
		{"longest id", []string{strings.Repeat("x", MaxIDLen)}, DefaultVnodes, ""},
		{"max vnodes", []string{"a"}, MaxVnodes, ""},
		{"no nodes", nil, DefaultVnodes, "no nodes"},
		{"empty id", []string{"a", ""}, DefaultVnodes, "node 1 has an empty id"},
		{"duplicate", []string{"a", "b", "a"}, DefaultVnodes, `duplicate node id "a"`},
		{"too long", []string{long}, DefaultVnodes, "256 bytes, longer than 255"},
		{"vnodes zero", []string{"a"}, 0, "vnodes 0"},
		{"vnodes negative", []string{"a"}, -1, "vnodes -1"},
		{"vnodes too many", []string{"a"}, MaxVnodes + 1, "vnodes 65537"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.nodes, tt.vnodes)
			if tt.want == "" {
				if err != nil || r == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want ErrInvalid naming %q", err, tt.want)
			}
		})
	}
}

// TestHashPinned pins the position function, which is part of the wire
// contract: expected values come from `printf ... | sha256sum`.
func TestHashPinned(t *testing.T) {
	if got, want := keyPos(nil), uint64(0xe3b0c44298fc1c14); got != want {
		t.Errorf("keyPos(empty) = %#x, want %#x", got, want)
	}
	if got, want := keyPos([]byte("hello")), uint64(0x2cf24dba5fb0a30e); got != want {
		t.Errorf("keyPos(hello) = %#x, want %#x", got, want)
	}
	if got, want := tokenPos("a", 0), uint64(0xf0b6d5f851bbca8c); got != want { // \x01a\x00\x00\x00\x00
		t.Errorf("tokenPos(a, 0) = %#x, want %#x", got, want)
	}
	if got, want := tokenPos("node-1", 63), uint64(0xb944f2aee5edc9a1); got != want { // \x06node-1\x00\x00\x00\x3f
		t.Errorf("tokenPos(node-1, 63) = %#x, want %#x", got, want)
	}
}

func TestDeterministicAcrossOrder(t *testing.T) {
	ids := nodeIDs(7)
	rev := slices.Clone(ids)
	slices.Reverse(rev)
	shuf := []string{ids[3], ids[0], ids[6], ids[2], ids[5], ids[1], ids[4]}
	a := mustNew(t, ids, DefaultVnodes)
	for _, other := range [][]string{rev, shuf} {
		b := mustNew(t, other, DefaultVnodes)
		if !slices.Equal(a.Nodes(), b.Nodes()) {
			t.Fatalf("Nodes differ: %q vs %q", a.Nodes(), b.Nodes())
		}
		for i := range 5000 {
			k := testKey(i)
			if ra, rb := a.Replicas(k, 3), b.Replicas(k, 3); !slices.Equal(ra, rb) {
				t.Fatalf("key %q: %q from %q, %q from %q", k, ra, ids, rb, other)
			}
		}
	}
}

func TestReplicasDistinctAndSuccessor(t *testing.T) {
	r := mustNew(t, nodeIDs(5), DefaultVnodes)
	for n := 1; n <= 7; n++ {
		for i := range 2000 {
			k := testKey(i)
			got := r.Replicas(k, n)
			if want := min(n, 5); len(got) != want {
				t.Fatalf("Replicas(%q, %d) = %q, want %d nodes", k, n, got, want)
			}
			if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
				t.Fatalf("Replicas(%q, %d) = %q: not distinct", k, n, got)
			}
			if succ := successorNode(r, keyPos(k)); got[0] != succ {
				t.Fatalf("Replicas(%q, %d)[0] = %s, successor token's node is %s", k, n, got[0], succ)
			}
		}
	}
	if got := r.Replicas([]byte("k"), 0); len(got) != 0 {
		t.Fatalf("Replicas(n=0) = %q, want none", got)
	}
}

// successorNode finds, by linear scan, the owner of the first token at or
// after p, wrapping to the smallest token.
func successorNode(r *Ring, p uint64) string {
	best, lowest := -1, 0
	for i, tp := range r.pos {
		if tp >= p && (best < 0 || tp < r.pos[best]) {
			best = i
		}
		if tp < r.pos[lowest] {
			lowest = i
		}
	}
	if best < 0 {
		best = lowest
	}
	return r.nodes[r.owner[best]]
}

func TestAddNodeMovesFewKeys(t *testing.T) {
	const keys = 20000
	for _, k := range []int{3, 5, 9} {
		t.Run(fmt.Sprintf("%d+1", k), func(t *testing.T) {
			before := mustNew(t, nodeIDs(k), DefaultVnodes)
			after := mustNew(t, nodeIDs(k+1), DefaultVnodes)
			added := nodeIDs(k + 1)[k]
			moved := 0
			for i := range keys {
				key := testKey(i)
				was, is := before.Replicas(key, 1)[0], after.Replicas(key, 1)[0]
				if was == is {
					continue
				}
				moved++
				if is != added {
					t.Fatalf("key %q moved from %s to %s, not to the new node %s", key, was, is, added)
				}
			}
			frac, ideal := float64(moved)/keys, 1/float64(k+1)
			t.Logf("%d -> %d nodes: %.4f of primaries moved (ideal %.4f)", k, k+1, frac, ideal)
			if frac < 0.5*ideal || frac > 1.5*ideal {
				t.Fatalf("%.4f of primaries moved, want within [%.4f, %.4f]", frac, 0.5*ideal, 1.5*ideal)
			}
		})
	}
}

func TestOwnershipBalance(t *testing.T) {
	tests := []struct {
		n        int
		min, max float64 // band around the ideal n/5
	}{
		{1, 0.15, 0.25},
		{3, 0.50, 0.70},
	}
	for _, names := range [][]string{nodeIDs(5), {"alpha", "bravo", "charlie", "delta", "echo"}} {
		r := mustNew(t, names, DefaultVnodes)
		for _, tt := range tests {
			own := r.Ownership(tt.n)
			sum := 0.0
			for _, id := range names {
				f := own[id]
				sum += f
				t.Logf("%s Ownership(%d) = %.4f", id, tt.n, f)
				if f < tt.min || f > tt.max {
					t.Errorf("%s Ownership(%d) = %.4f, want within [%.2f, %.2f]", id, tt.n, f, tt.min, tt.max)
				}
			}
			if math.Abs(sum-float64(tt.n)) > 1e-9 {
				t.Errorf("Ownership(%d) sums to %v, want %d", tt.n, sum, tt.n)
			}
		}
	}
}

// TestOwnershipMatchesSampling checks Ownership against the share of sampled
// keys each node replicates.
func TestOwnershipMatchesSampling(t *testing.T) {
	const keys = 20000
	r := mustNew(t, nodeIDs(4), 8) // few vnodes: uneven, so errors show
	for _, n := range []int{1, 2, 4, 6} {
		own := r.Ownership(n)
		count := map[string]int{}
		for i := range keys {
			for _, id := range r.Replicas(testKey(i), n) {
				count[id]++
			}
		}
		for _, id := range r.Nodes() {
			sampled := float64(count[id]) / keys
			if math.Abs(sampled-own[id]) > 0.02 {
				t.Errorf("n=%d %s: Ownership %.4f, sampled %.4f", n, id, own[id], sampled)
			}
		}
	}
	single := mustNew(t, []string{"solo"}, 1).Ownership(3)
	if single["solo"] != 1 {
		t.Errorf("one token: Ownership = %v, want solo: 1", single)
	}
}

func upExcept(down ...string) func(string) bool {
	return func(id string) bool { return !slices.Contains(down, id) }
}

func TestSloppy(t *testing.T) {
	r := mustNew(t, nodeIDs(6), DefaultVnodes)
	key := []byte("user:42")
	walk := r.Replicas(key, 6) // home replicas are walk[:3]
	tests := []struct {
		name string
		n    int
		down []string
		want []Placement
	}{
		{"all up", 3, nil, []Placement{{walk[0], walk[0]}, {walk[1], walk[1]}, {walk[2], walk[2]}}},
		{"second home down", 3, []string{walk[1]},
			[]Placement{{walk[0], walk[0]}, {walk[3], walk[1]}, {walk[2], walk[2]}}},
		{"primary down, first spare down", 3, []string{walk[0], walk[3]},
			[]Placement{{walk[4], walk[0]}, {walk[1], walk[1]}, {walk[2], walk[2]}}},
		{"two homes down", 3, []string{walk[0], walk[2]},
			[]Placement{{walk[3], walk[0]}, {walk[1], walk[1]}, {walk[4], walk[2]}}},
		{"too few up", 3, walk[:5], []Placement{{walk[5], walk[0]}}},
		{"all down", 3, walk, nil},
		{"n above node count", 8, []string{walk[2]},
			[]Placement{{walk[0], walk[0]}, {walk[1], walk[1]}, {walk[3], walk[3]}, {walk[4], walk[4]}, {walk[5], walk[5]}}},
		{"n zero", 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Sloppy(key, tt.n, upExcept(tt.down...))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Sloppy(n=%d, down=%q) = %v, want %v", tt.n, tt.down, got, tt.want)
			}
		})
	}
}

// TestProperties checks Replicas against a naive reference and the Sloppy
// contract on random rings, keys and failures.
func TestProperties(t *testing.T) {
	seeds := []int64{*flagSeed}
	if *flagSeed == 0 {
		seeds = seeds[:0]
		for s := int64(1); s <= int64(*flagSeeds); s++ {
			seeds = append(seeds, s)
		}
	}
	for _, s := range seeds {
		if err := checkSeed(rand.New(rand.NewSource(s))); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./internal/leaderless/ring -run '^TestProperties$' -ring.seed=%d", s, err, s)
		}
	}
}

func checkSeed(rng *rand.Rand) error {
	ids := make([]string, 1+rng.Intn(8))
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d-%x", i, rng.Int63n(1<<20))
	}
	vnodes := 1 + rng.Intn(40)
	r, err := New(ids, vnodes)
	if err != nil {
		return fmt.Errorf("New(%q, %d): %w", ids, vnodes, err)
	}
	ref := naiveWalks(ids, vnodes)
	for range 50 {
		key := fmt.Appendf(nil, "k%d", rng.Int63())
		n := rng.Intn(len(ids) + 2)
		walk := ref(keyPos(key))
		want := walk[:min(n, len(walk))]
		if got := r.Replicas(key, n); !slices.Equal(got, want) {
			return fmt.Errorf("Replicas(%q, %d) = %q, reference %q", key, n, got, want)
		}
		up := map[string]bool{}
		for _, id := range ids {
			up[id] = rng.Intn(3) > 0
		}
		calls := map[string]int{}
		got := r.Sloppy(key, n, func(id string) bool { calls[id]++; return up[id] })
		if err := checkSloppy(got, want, walk, up); err != nil {
			return fmt.Errorf("Sloppy(%q, %d, up=%v) = %v: %w", key, n, up, got, err)
		}
		for id, c := range calls {
			if c > 1 {
				return fmt.Errorf("Sloppy called up(%s) %d times", id, c)
			}
		}
	}
	return nil
}

// checkSloppy checks placements against the contract: home replicas that are
// up stand for themselves, down ones are replaced in order by the earliest
// up nodes after the home replicas in the walk, and nodes are distinct.
func checkSloppy(got []Placement, home, walk []string, up map[string]bool) error {
	var spares []string
	for _, id := range walk[len(home):] {
		if up[id] {
			spares = append(spares, id)
		}
	}
	var want []Placement
	for _, h := range home {
		switch {
		case up[h]:
			want = append(want, Placement{h, h})
		case len(spares) > 0:
			want = append(want, Placement{spares[0], h})
			spares = spares[1:]
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("want %v", want)
	}
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p.Node] || !up[p.Node] {
			return fmt.Errorf("node %s repeated or down", p.Node)
		}
		seen[p.Node] = true
	}
	return nil
}

// naiveWalks returns a function giving the full walk from a position,
// computed from a freshly sorted token list by linear scan.
func naiveWalks(ids []string, vnodes int) func(p uint64) []string {
	type tok struct {
		pos  uint64
		id   string
		v    int
		dist uint64
	}
	var toks []tok
	for _, id := range ids {
		for v := range vnodes {
			toks = append(toks, tok{pos: tokenPos(id, v), id: id, v: v})
		}
	}
	return func(p uint64) []string {
		// Clockwise distance from p; ties by id then vnode.
		for i := range toks {
			toks[i].dist = toks[i].pos - p
		}
		slices.SortFunc(toks, func(a, b tok) int {
			if a.dist != b.dist {
				if a.dist < b.dist {
					return -1
				}
				return 1
			}
			if c := strings.Compare(a.id, b.id); c != 0 {
				return c
			}
			return a.v - b.v
		})
		var out []string
		for _, t := range toks {
			if !slices.Contains(out, t.id) {
				out = append(out, t.id)
			}
		}
		return out
	}
}
