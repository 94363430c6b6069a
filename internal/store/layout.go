package store

import (
	"encoding/binary"
	"fmt"
)

// Key layout. Every Pebble key starts with one prefix byte. These constants are
// part of the on-disk format: changing them breaks existing stores.
const (
	prefixMeta byte = 0x00 // internal metadata
	prefixUser byte = 0x01 // user keys
	prefixEnd  byte = 0x02 // exclusive upper bound of the user key space
)

// Metadata keys (prefixMeta followed by one ASCII letter). Part of the format.
var (
	metaKeyFormat  = []byte{prefixMeta, 'f'} // uint32 LE: FormatVersion
	metaKeyApplied = []byte{prefixMeta, 'a'} // uint64 LE applied index, uint64 LE applied term
	metaKeyCount   = []byte{prefixMeta, 'n'} // format 1 only: uint64 LE number of live user keys (now ignored)
	metaKeyConf    = []byte{prefixMeta, 'c'} // the cluster configuration of the last config entry applied (its encoding, opaque here)
	metaKeyDrain   = []byte{prefixMeta, 'd'} // uint64 LE applied index a drain in several batches is bringing the store to, uint64 LE term
	// The idempotency table (idem.go) uses 'i', 'j' and 'w'; the term history (commands.go) 't'.
)

// FormatVersion is the store's on-disk format version, kept under the format
// metadata key. Open (and Install, for a checkpoint) refuses a store with a
// version above it, or 0. Part of the format.
//
// Version 2 no longer maintains a key count under metaKeyCount (Count is
// computed, see counter); a version 1 store opens unchanged (its stale count
// key is ignored).
//
// Version 3 keeps the idempotency table in chunks under a watermark (idem.go),
// which a release that reads version 2 would ignore: it would open the store
// and answer retries as new writes. A version 1 or 2 store opens unchanged
// (its per-record keys are read) and is marked 3 by the first batch that
// writes a chunk or the watermark; a new store is created at 3.
const FormatVersion uint32 = 3

const formatVersion1 uint32 = 1

// versionSize is the size of the version header in front of every stored value.
// Part of the format.
const versionSize = 8

// userKey returns the Pebble key for user key k, appended to dst.
func userKey(dst, k []byte) []byte {
	dst = append(dst, prefixUser)
	return append(dst, k...)
}

// userBounds returns the Pebble bounds [lo, hi) for user keys in [start, end);
// a nil or empty end means no upper bound.
func userBounds(start, end []byte) (lo, hi []byte) {
	lo = userKey(nil, start)
	if len(end) == 0 {
		hi = []byte{prefixEnd}
	} else {
		hi = userKey(nil, end)
	}
	return lo, hi
}

// encodeValue appends a stored value (version, then the value bytes) to dst.
func encodeValue(dst []byte, version uint64, value []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, version)
	return append(dst, value...)
}

// decodeValue splits a stored value. The returned value aliases b.
func decodeValue(key, b []byte) (value []byte, version uint64, err error) {
	if len(b) < versionSize {
		return nil, 0, fmt.Errorf("%w: value of key %q is %d bytes, need at least %d", ErrCorrupt, key, len(b), versionSize)
	}
	return b[versionSize:], binary.LittleEndian.Uint64(b), nil
}

func encodeApplied(index, term uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, index)
	binary.LittleEndian.PutUint64(b[8:], term)
	return b
}

func encodeFormat() []byte { return binary.LittleEndian.AppendUint32(nil, FormatVersion) }
