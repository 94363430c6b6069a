package merkle

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzDecodeLevel feeds peer bytes to DecodeLevel: it must never panic, and
// whatever it accepts must re-encode to the same bytes and decode the same.
func FuzzDecodeLevel(f *testing.F) {
	f.Add(AppendLevel(nil, 4, 3, 2, []uint64{1, 2, 3}), uint8(4))
	f.Add(AppendLevel(nil, 20, 20, 1<<20-1, []uint64{^uint64(0)}), uint8(20))
	f.Add(AppendLevel(nil, 1, 0, 0, nil), uint8(1))
	f.Add([]byte{}, uint8(10))
	f.Add([]byte{1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x80, 0x80, 0x01}, uint8(10))
	f.Fuzz(func(t *testing.T, b []byte, maxDepth uint8) {
		level, first, hashes, err := DecodeLevel(b, int(maxDepth))
		if err != nil {
			return
		}
		enc := AppendLevel(nil, int(maxDepth), level, first, hashes)
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding %x gave %x", b, enc)
		}
		level2, first2, hashes2, err := DecodeLevel(enc, int(maxDepth))
		if err != nil || level2 != level || first2 != first || !slices.Equal(hashes2, hashes) {
			t.Fatalf("round trip: (%d, %d, %v, %v), want (%d, %d, %v)", level2, first2, hashes2, err, level, first, hashes)
		}
	})
}
