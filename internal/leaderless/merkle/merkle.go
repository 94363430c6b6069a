// Package merkle owns the hash tree that leaderless replicas compare during
// anti-entropy to find which keys differ, so that only those are repaired.
//
// The tree is pure: no I/O, no clock, no randomness, and the same keys and
// versions give the same hashes in every process, in any insertion order.
//
// # Shape
//
// A tree of depth D (1..MaxDepth) has levels 0..D; level l holds 2^l node
// hashes, level D holds the leaf buckets. A key belongs to the leaf bucket
// given by the top D bits of its bucket hash (see Leaf). Every key contributes
// a 64-bit digest of (key, version); the hash of a node is the XOR of the
// digests of all keys under it. Adding and removing a key are the same
// operation (XOR the digest into the leaf and each ancestor), O(D).
//
// Because node l,i covers exactly the keys whose bucket hash starts with the
// l bits of i, level l of a tree is the same whatever its depth, as long as
// l <= D.
//
// # Wire contract
//
// The hashes are compared across processes and versions, so these are part of
// the wire format and must never change:
//
//	bucket hash(key)         = big-endian uint64 of SHA-256(0x00 || key)[0:8]
//	digest(key, version)     = big-endian uint64 of SHA-256(0x01 || uvarint(len(key)) || key || version)[0:8]
//	leaf bucket at depth D   = bucket hash >> (64 - D)
//	node hash                = XOR of the digests of the keys below it (0 if none)
//
// A level message (AppendLevel, DecodeLevel) is, byte by byte:
//
//	[0]      format version, levelFormat (1)
//	[1]      level l, 0 <= l <= the receiver's depth
//	uvarint  first: index of the first node, first < 2^l (minimal encoding)
//	uvarint  n: number of hashes, first + n <= 2^l (minimal encoding)
//	n x 8    the hashes of nodes first..first+n-1 of level l, big-endian
//
// Nothing may follow the last hash.
package merkle

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// MaxDepth bounds the depth of a tree: 2^20 leaves, 16 MiB of hashes.
	MaxDepth = 20
	// DefaultDepth is the depth engines use unless configured otherwise:
	// 1024 leaf buckets.
	DefaultDepth = 10

	// levelFormat is the first byte of a level message. Part of the wire format.
	levelFormat = 1
	// Domain tags that keep the bucket hash and the digest independent.
	// Part of the wire format.
	tagBucket = 0x00
	tagDigest = 0x01
)

var (
	// ErrDepth reports a depth outside 1..MaxDepth.
	ErrDepth = errors.New("merkle: depth out of range")
	// ErrCorrupt reports a level message that is malformed, truncated,
	// out of range or followed by trailing bytes.
	ErrCorrupt = errors.New("merkle: corrupt level message")
)

// Tree is a Merkle tree over a set of (key, version) pairs. The zero value is
// not usable; call New. A Tree is not safe for concurrent use.
type Tree struct {
	depth int
	// levels[l] holds the 2^l hashes of level l; levels[depth] are the leaves.
	levels [][]uint64
}

// New returns an empty tree of the given depth (1..MaxDepth); every hash is 0.
func New(depth int) (*Tree, error) {
	if depth < 1 || depth > MaxDepth {
		return nil, fmt.Errorf("%w: depth %d, want 1..%d", ErrDepth, depth, MaxDepth)
	}
	t := &Tree{depth: depth, levels: make([][]uint64, depth+1)}
	for l := range t.levels {
		t.levels[l] = make([]uint64, 1<<l)
	}
	return t, nil
}

// Depth returns the depth of the tree; its leaves are level Depth.
func (t *Tree) Depth() int { return t.depth }

// Add records key at version. The tree holds a set: the engine must Add a
// (key, version) pair only when it is absent, since adding it twice cancels
// it out (XOR).
func (t *Tree) Add(key, version []byte) { t.xor(key, Digest(key, version)) }

// Remove forgets key at version. It is Add again: XOR is its own inverse.
// Removing a pair that was never added corrupts the tree silently.
func (t *Tree) Remove(key, version []byte) { t.xor(key, Digest(key, version)) }

// Update replaces key's version oldVersion by newVersion.
func (t *Tree) Update(key, oldVersion, newVersion []byte) {
	t.xor(key, Digest(key, oldVersion)^Digest(key, newVersion))
}

func (t *Tree) xor(key []byte, d uint64) {
	i := t.Leaf(key)
	for l := t.depth; l >= 0; l-- {
		t.levels[l][i] ^= d
		i >>= 1
	}
}

// Root returns the hash of level 0: the XOR of every key's digest.
func (t *Tree) Root() uint64 { return t.levels[0][0] }

// Level returns a copy of the 2^l hashes of level l. It panics if l is not in
// 0..Depth.
func (t *Tree) Level(l int) []uint64 {
	if l < 0 || l > t.depth {
		panic(fmt.Sprintf("merkle: Level(%d) of a tree of depth %d", l, t.depth))
	}
	return append([]uint64(nil), t.levels[l]...)
}

// Leaf returns the leaf bucket of key, in 0..2^Depth-1.
func (t *Tree) Leaf(key []byte) int {
	return int(BucketHash(key) >> (64 - t.depth))
}

// BucketHash is the fixed hash that places a key in the tree: the big-endian
// first 8 bytes of SHA-256(0x00 || key). Part of the wire format.
func BucketHash(key []byte) uint64 {
	h := sha256.New()
	h.Write([]byte{tagBucket})
	h.Write(key)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// Digest is the fixed 64-bit contribution of (key, version) to its leaf: the
// big-endian first 8 bytes of SHA-256(0x01 || uvarint(len(key)) || key ||
// version). The length prefix keeps ("ab","c") and ("a","bc") apart. Part of
// the wire format.
func Digest(key, version []byte) uint64 {
	h := sha256.New()
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = tagDigest
	n := binary.PutUvarint(hdr[1:], uint64(len(key)))
	h.Write(hdr[:1+n])
	h.Write(key)
	h.Write(version)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// Diff returns, in ascending order, the leaf buckets whose hashes differ
// between a and b. It walks top-down and descends only into differing
// subtrees, so it visits O(k*Depth) nodes for k differing buckets. It panics
// if the depths differ: comparing them is a caller bug.
func Diff(a, b *Tree) []int {
	buckets, _ := diff(a, b)
	return buckets
}

// diff is Diff that also counts the nodes it compared.
func diff(a, b *Tree) (buckets []int, visited int) {
	if a.depth != b.depth {
		panic(fmt.Sprintf("merkle: Diff of trees of depth %d and %d", a.depth, b.depth))
	}
	frontier := []int{0}
	for l := 0; l <= a.depth && len(frontier) > 0; l++ {
		var next []int
		for _, i := range frontier {
			visited++
			if a.levels[l][i] == b.levels[l][i] {
				continue
			}
			if l == a.depth {
				buckets = append(buckets, i)
			} else {
				next = append(next, 2*i, 2*i+1)
			}
		}
		frontier = next
	}
	return buckets, visited
}

// AppendLevel appends to dst the level message for hashes, the nodes
// first..first+len(hashes)-1 of level `level` of a tree of depth `depth`.
// It panics on arguments that DecodeLevel would refuse: the caller builds
// them from its own tree.
func AppendLevel(dst []byte, depth, level, first int, hashes []uint64) []byte {
	if depth < 1 || depth > MaxDepth || level < 0 || level > depth ||
		first < 0 || first >= 1<<level || len(hashes) > 1<<level-first {
		panic(fmt.Sprintf("merkle: AppendLevel(depth %d, level %d, first %d, %d hashes) out of range",
			depth, level, first, len(hashes)))
	}
	dst = append(dst, levelFormat, byte(level))
	dst = binary.AppendUvarint(dst, uint64(first))
	dst = binary.AppendUvarint(dst, uint64(len(hashes)))
	for _, h := range hashes {
		dst = binary.BigEndian.AppendUint64(dst, h)
	}
	return dst
}

// DecodeLevel parses a level message from a peer whose tree is compared with
// a local tree of depth maxDepth. Every error wraps ErrCorrupt (or ErrDepth
// for a bad maxDepth); it never panics and allocates only for hashes that are
// present in b.
func DecodeLevel(b []byte, maxDepth int) (level, first int, hashes []uint64, err error) {
	if maxDepth < 1 || maxDepth > MaxDepth {
		return 0, 0, nil, fmt.Errorf("%w: maxDepth %d, want 1..%d", ErrDepth, maxDepth, MaxDepth)
	}
	if len(b) < 2 {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes, header needs 2", ErrCorrupt, len(b))
	}
	if b[0] != levelFormat {
		return 0, 0, nil, fmt.Errorf("%w: format %d, want %d", ErrCorrupt, b[0], levelFormat)
	}
	if int(b[1]) > maxDepth {
		return 0, 0, nil, fmt.Errorf("%w: level %d above depth %d", ErrCorrupt, b[1], maxDepth)
	}
	level, rest := int(b[1]), b[2:]
	width := uint64(1) << level
	f, rest, err := readUvarint(rest, "first")
	if err != nil {
		return 0, 0, nil, err
	}
	if f >= width {
		return 0, 0, nil, fmt.Errorf("%w: first %d, level %d has %d nodes", ErrCorrupt, f, level, width)
	}
	n, rest, err := readUvarint(rest, "count")
	if err != nil {
		return 0, 0, nil, err
	}
	if n > width-f {
		return 0, 0, nil, fmt.Errorf("%w: %d hashes from %d, level %d has %d nodes", ErrCorrupt, n, f, level, width)
	}
	if uint64(len(rest)) != 8*n { // n <= 2^20, no overflow
		return 0, 0, nil, fmt.Errorf("%w: %d hashes need %d bytes, have %d", ErrCorrupt, n, 8*n, len(rest))
	}
	hashes = make([]uint64, n)
	for i := range hashes {
		hashes[i] = binary.BigEndian.Uint64(rest[8*i:])
	}
	return level, int(f), hashes, nil
}

// readUvarint reads one minimally encoded uvarint.
func readUvarint(b []byte, field string) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: %s: truncated or overlong uvarint", ErrCorrupt, field)
	}
	var tmp [binary.MaxVarintLen64]byte
	if binary.PutUvarint(tmp[:], v) != n {
		return 0, nil, fmt.Errorf("%w: %s: non-minimal uvarint", ErrCorrupt, field)
	}
	return v, b[n:], nil
}
