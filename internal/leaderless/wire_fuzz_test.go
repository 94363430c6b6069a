package leaderless

import (
	"bytes"
	"math/rand"
	"runtime/metrics"
	"testing"
)

// heapAllocs reads the bytes allocated so far without stopping the world
// (runtime.ReadMemStats does, which slowed the fuzzer tenfold on a busy
// machine). The count lags: small objects are counted when their span
// leaves its P's cache, so a reading may take in allocations made before.
func heapAllocs(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// FuzzDecodeMessage feeds peer bytes to DecodeMessage. It never panics,
// allocates at most a small multiple of its input, and what it accepts
// carries only its type's fields, re-encodes to exactly the input (the
// encoding is canonical) and decodes again to an equal message.
func FuzzDecodeMessage(f *testing.F) {
	// Seeds: every type. Only small encodings: the fuzzer minimizes each
	// new input in time quadratic in its size, so mutations of an 8 KiB
	// tree stall it. A tree's leaves alone are 8 KiB: its seeds are the
	// tree cut after the hash length and after one hash (the unit tests
	// cover whole trees).
	for _, tc := range testMessages() {
		b := AppendMessage(nil, &tc.m)
		if len(b) <= 256 {
			f.Add(b)
		}
		if tc.name == "tree" {
			n := len(head(MsgTree)) + 1 + 2 // depth, hash length (2-byte uvarint)
			f.Add(b[:n])
			f.Add(b[:n+8])
		}
	}
	r := rand.New(rand.NewSource(1))
	for range 32 {
		m := randMessage(r, true)
		if b := AppendMessage(nil, &m); len(b) <= 256 {
			f.Add(b)
		}
	}
	f.Add([]byte{wireVersion})
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		before := heapAllocs(sample)
		m, err := DecodeMessage(b)
		if heapAllocs(sample)-before > allocBound(len(b)) {
			// Perhaps the metric caught up with older allocations (it
			// did, by 350 KiB, at testdata/fuzz/FuzzDecodeMessage/
			// 74de4384ad53dc19): measure again, exactly.
			if n := allocated(func() { DecodeMessage(b) }); n > allocBound(len(b)) {
				t.Fatalf("decoding %d bytes allocated %d", len(b), n)
			}
		}
		if err != nil {
			return
		}
		if foreign := setFields(&m) &^ fieldsOf(m.Type); foreign != 0 {
			t.Fatalf("decoded fields %#x a %v does not carry: %+v", foreign, m.Type, m)
		}
		again := AppendMessage(nil, &m)
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %x -> %+v -> %x", b, m, again)
		}
		m2, err := DecodeMessage(again)
		if err != nil || !messageEqual(m, m2) {
			t.Fatalf("second decode: %v\n got %+v\nwant %+v", err, m2, m)
		}
	})
}
