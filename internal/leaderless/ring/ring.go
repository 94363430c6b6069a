// Package ring is the consistent-hash ring of the leaderless engine: it maps
// a key to the ordered list of nodes that hold it (its preference list), and,
// under a sloppy quorum, to the nodes that stand in for unreachable replicas.
//
// The package is pure: no I/O, no clock, no randomness. A Ring is immutable
// and safe for concurrent use. Placement is a function of the node ids, the
// vnode count and the key only, so every process and every release computes
// the same placement from the same membership.
//
// # Positions (wire and on-disk contract)
//
// Positions are points on a 64-bit circle. The position of a byte string is
// the first 8 bytes of its SHA-256 digest, read big-endian:
//
//	pos(b) = binary.BigEndian.Uint64(sha256(b)[0:8])
//
// A key's position is pos(key). The position of vnode i (0 <= i < vnodes) of
// node id is pos of the 1+len(id)+4 byte string
//
//	[len(id) as one byte] [id] [i as uint32 big-endian]
//
// A key belongs to the first token clockwise at or after its position
// (wrapping past 2^64-1 to 0); tokens at the same position are ordered by
// node id, then vnode index. Changing any of this moves keys between nodes,
// so all nodes of a cluster must agree on it; it is pinned by tests.
package ring

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

const (
	// DefaultVnodes is the suggested number of tokens per node.
	DefaultVnodes = 64
	// MaxVnodes bounds the tokens per node, and so the ring's memory.
	MaxVnodes = 1 << 16
	// MaxIDLen is the longest node id in bytes; its length is encoded in one
	// byte of the token hash input.
	MaxIDLen = 255
)

// ErrInvalid is wrapped by every error New returns; the message names the
// problem.
var ErrInvalid = errors.New("ring: invalid configuration")

// Ring is an immutable consistent-hash ring with virtual nodes.
type Ring struct {
	nodes []string // sorted, distinct
	pos   []uint64 // token positions, ascending
	owner []int    // owner[i] is the index in nodes of token i
}

// Placement is where one copy of a write goes under a sloppy quorum: Node
// stores it, on behalf of the home replica For. For == Node for a home
// replica that is up; otherwise Node holds a hint to hand the write to For.
type Placement struct {
	Node string
	For  string
}

// New builds a ring of vnodes tokens for each of nodes. Node ids must be
// distinct, non-empty and at most MaxIDLen bytes; 1 <= vnodes <= MaxVnodes.
// The order of nodes does not matter.
func New(nodes []string, vnodes int) (*Ring, error) {
	if err := validate(nodes, vnodes); err != nil {
		return nil, err
	}
	sorted := slices.Clone(nodes)
	slices.Sort(sorted)
	type token struct {
		pos   uint64
		node  int
		vnode int
	}
	toks := make([]token, 0, len(sorted)*vnodes)
	for ni, id := range sorted {
		for v := range vnodes {
			toks = append(toks, token{tokenPos(id, v), ni, v})
		}
	}
	// Node indexes follow id order, so this is (position, id, vnode) order.
	slices.SortFunc(toks, func(a, b token) int {
		switch {
		case a.pos != b.pos:
			return cmp.Compare(a.pos, b.pos)
		case a.node != b.node:
			return a.node - b.node
		default:
			return a.vnode - b.vnode
		}
	})
	r := &Ring{nodes: sorted, pos: make([]uint64, len(toks)), owner: make([]int, len(toks))}
	for i, t := range toks {
		r.pos[i], r.owner[i] = t.pos, t.node
	}
	return r, nil
}

func validate(nodes []string, vnodes int) error {
	if len(nodes) == 0 {
		return fmt.Errorf("%w: no nodes", ErrInvalid)
	}
	if vnodes < 1 || vnodes > MaxVnodes {
		return fmt.Errorf("%w: vnodes %d outside 1..%d", ErrInvalid, vnodes, MaxVnodes)
	}
	seen := make(map[string]bool, len(nodes))
	for i, id := range nodes {
		switch {
		case id == "":
			return fmt.Errorf("%w: node %d has an empty id", ErrInvalid, i)
		case len(id) > MaxIDLen:
			return fmt.Errorf("%w: node id %.16q... is %d bytes, longer than %d", ErrInvalid, id, len(id), MaxIDLen)
		case seen[id]:
			return fmt.Errorf("%w: duplicate node id %q", ErrInvalid, id)
		}
		seen[id] = true
	}
	return nil
}

// Nodes returns the node ids in sorted order. The caller owns the slice.
func (r *Ring) Nodes() []string { return slices.Clone(r.nodes) }

// Replicas returns the key's preference list: the first n distinct nodes met
// walking clockwise from the key's position, the owner of the key's successor
// token first. If n exceeds the number of nodes, it returns every node; if
// n <= 0, none.
func (r *Ring) Replicas(key []byte, n int) []string {
	var out []string
	r.walk(keyPos(key), func(ni int) bool {
		if len(out) >= n {
			return false
		}
		out = append(out, r.nodes[ni])
		return true
	})
	return out
}

// Sloppy places the n copies of a write to key under a sloppy quorum. The
// home replicas are Replicas(key, n). In home order, each home replica that
// is up is placed as itself; each that is down is replaced by the next node
// further along the walk that is up and not a home replica or an earlier
// substitute, with For naming the home replica. Nodes are all distinct; if
// too few nodes are up, there are fewer than n placements (none if all are
// down). up is called at most once per node.
func (r *Ring) Sloppy(key []byte, n int, up func(node string) bool) []Placement {
	if n <= 0 {
		return nil
	}
	var order []int // every node, in walk order
	r.walk(keyPos(key), func(ni int) bool {
		order = append(order, ni)
		return true
	})
	home := order[:min(n, len(order))]
	spare := order[len(home):]
	var out []Placement
	for _, h := range home {
		id := r.nodes[h]
		if up(id) {
			out = append(out, Placement{Node: id, For: id})
			continue
		}
		for len(spare) > 0 {
			s := r.nodes[spare[0]]
			spare = spare[1:]
			if up(s) {
				out = append(out, Placement{Node: s, For: id})
				break
			}
		}
	}
	return out
}

// Ownership returns, for each node, the fraction of the hash space for which
// it is one of the n replicas. The fractions sum to min(n, node count); each
// is in [0, 1]. It is meant for status pages, not for placement.
func (r *Ring) Ownership(n int) map[string]float64 {
	out := make(map[string]float64, len(r.nodes))
	for _, id := range r.nodes {
		out[id] = 0
	}
	for i := range r.pos {
		// Token i owns the arc (pos[i-1], pos[i]]; for i == 0 the arc wraps.
		arc := float64(r.pos[i]-r.pos[(i+len(r.pos)-1)%len(r.pos)]) / (1 << 64)
		if len(r.pos) == 1 {
			arc = 1
		}
		if arc == 0 {
			continue
		}
		count := 0
		r.walkFrom(i, func(ni int) bool {
			if count >= n {
				return false
			}
			count++
			out[r.nodes[ni]] += arc
			return true
		})
	}
	for id, f := range out {
		out[id] = math.Min(f, 1)
	}
	return out
}

// walk calls visit with each node's index once, in clockwise order from the
// successor token of position p, until visit returns false.
func (r *Ring) walk(p uint64, visit func(node int) bool) {
	i := sort.Search(len(r.pos), func(i int) bool { return r.pos[i] >= p })
	r.walkFrom(i%len(r.pos), visit)
}

// walkFrom is walk starting at token index start.
func (r *Ring) walkFrom(start int, visit func(node int) bool) {
	seen := make([]bool, len(r.nodes))
	found := 0
	for k := 0; k < len(r.pos) && found < len(r.nodes); k++ {
		ni := r.owner[(start+k)%len(r.pos)]
		if seen[ni] {
			continue
		}
		seen[ni] = true
		found++
		if !visit(ni) {
			return
		}
	}
}

// keyPos is the position of a key. Part of the wire contract; see the
// package comment.
func keyPos(key []byte) uint64 {
	sum := sha256.Sum256(key)
	return binary.BigEndian.Uint64(sum[:8])
}

// tokenPos is the position of vnode v of node id. Part of the wire contract;
// see the package comment.
func tokenPos(id string, v int) uint64 {
	buf := make([]byte, 0, 1+len(id)+4)
	buf = append(buf, byte(len(id)))
	buf = append(buf, id...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(v))
	return keyPos(buf)
}
