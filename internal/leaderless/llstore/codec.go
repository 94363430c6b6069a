package llstore

import (
	"encoding/binary"
	"fmt"

	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/merkle"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Key prefixes and metadata keys. Part of the format.
const (
	prefixMeta  byte = 0x00
	prefixState byte = 0x01
	prefixHint  byte = 0x02
	prefixEnd   byte = 0x03 // exclusive upper bound of the hints
)

var (
	keyFormat    = []byte{prefixMeta, 'f'}
	keyDepth     = []byte{prefixMeta, 'b'}
	keyMintFloor = []byte{prefixMeta, 'm'}
)

// Format versions. Part of the format.
const (
	formatVersion uint64 = 1 // the database (under keyFormat)
	valueVersion  byte   = 1 // a key state or hint value
)

// bucketDepth is the Merkle depth of the bucket numbers in state keys,
// stored under keyDepth: a database bucketed at another depth is refused.
const bucketDepth = leaderless.MerkleDepth

// numBuckets is the number of leaf buckets: Bucket's b is in 0..numBuckets-1.
const numBuckets = 1 << bucketDepth

// bucketLen is the length of the bucket number in a state key (big-endian
// uint32: room for merkle.MaxDepth).
const bucketLen = 4

// stateKeyMin is the shortest state key: prefix, bucket, one key byte.
const stateKeyMin = 1 + bucketLen + 1

// bucketOf returns key's Merkle leaf bucket at MerkleDepth. It must stay
// the same function as leaf in internal/leaderless/entropy.go (the core
// compares buckets by that number); TestBucketOf checks it.
func bucketOf(key []byte) int { return int(merkle.BucketHash(key) >> (64 - bucketDepth)) }

// bucketPrefix returns the first bytes of every state key in bucket b.
func bucketPrefix(b int) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixState}, uint32(b))
}

// stateKey returns key's Pebble key: prefix, bucket, key.
func stateKey(key []byte) []byte {
	return appendStateKey(nil, key)
}

func appendStateKey(dst, key []byte) []byte {
	dst = append(dst, prefixState)
	dst = binary.BigEndian.AppendUint32(dst, uint32(bucketOf(key)))
	return append(dst, key...)
}

// splitStateKey returns the user key of a state key (aliasing k).
func splitStateKey(k []byte) ([]byte, bool) {
	if len(k) < stateKeyMin || k[0] != prefixState {
		return nil, false
	}
	return k[1+bucketLen:], true
}

// appendHintKey appends the Pebble key of the hint for (home, key): prefix,
// uvarint length of home, home, key.
func appendHintKey(dst []byte, home string, key []byte) []byte {
	dst = append(dst, prefixHint)
	dst = binary.AppendUvarint(dst, uint64(len(home)))
	dst = append(dst, home...)
	return append(dst, key...)
}

// splitHintKey returns the home replica and the user key of a hint key
// (the key aliasing k).
func splitHintKey(k []byte) (string, []byte, bool) {
	if len(k) < 1 || k[0] != prefixHint {
		return "", nil, false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || w != len(binary.AppendUvarint(nil, n)) || n == 0 || n > vclock.MaxNodeIDLen {
		return "", nil, false
	}
	rest := k[1+w:]
	if uint64(len(rest)) <= n { // the key is at least one byte
		return "", nil, false
	}
	return string(rest[:n]), rest[n:], true
}

func be64(u uint64) []byte { return binary.BigEndian.AppendUint64(nil, u) }

func decodeBE64(v []byte) (uint64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// appendValue appends the encoding of a key state or hint: the version
// byte, then vclock.AppendSet.
func appendValue(b []byte, s vclock.Set) []byte {
	return vclock.AppendSet(append(b, valueVersion), s)
}

// decodeValue decodes a key state or hint, strictly (vclock.DecodeSet
// validates the Set). Its values alias b.
func decodeValue(b []byte) (vclock.Set, error) {
	if len(b) == 0 {
		return vclock.Set{}, fmt.Errorf("empty value")
	}
	if b[0] != valueVersion {
		return vclock.Set{}, fmt.Errorf("value version %d (this build reads %d)", b[0], valueVersion)
	}
	return vclock.DecodeSet(b[1:])
}

// quoteKey formats a user key for an error message, cut to its first 64
// bytes.
func quoteKey(k []byte) string {
	const limit = 64
	if len(k) <= limit {
		return fmt.Sprintf("%q", k)
	}
	return fmt.Sprintf("%q... (%d bytes)", k[:limit], len(k))
}
