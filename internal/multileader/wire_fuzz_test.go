package multileader

import (
	"bytes"
	"math/rand"
	"testing"
)

// The decoders either refuse their input or return a value that re-encodes
// to exactly the input (the encodings are canonical) and decodes again to
// an equal value.

// addSmall adds b to the seed corpus if it is small: the fuzzer minimizes
// each input it finds in time quadratic in its size, and the mutations of a
// large seed stall it for up to -fuzzminimizetime each.
func addSmall(f *testing.F, b []byte) {
	if len(b) <= 256 {
		f.Add(b)
	}
}

// shrink cuts a random entry's key and value short.
func shrink(e Entry) Entry {
	e.Key = e.Key[:min(len(e.Key), 8)]
	e.Value = e.Value[:min(len(e.Value), 8)]
	return e
}

func FuzzDecodeEntry(f *testing.F) {
	for _, tc := range testEntries() {
		addSmall(f, AppendEntry(nil, &tc.e))
	}
	r := rand.New(rand.NewSource(1))
	for i := range 16 {
		e := shrink(randEntry(r, "n", uint64(i+1)))
		addSmall(f, AppendEntry(nil, &e))
	}
	f.Add([]byte{wireVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		again := AppendEntry(nil, &e)
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %x -> %+v -> %x", b, e, again)
		}
		e2, err := DecodeEntry(again)
		if err != nil || !entryEqual(e, e2) {
			t.Fatalf("second decode: %v\n got %+v\nwant %+v", err, e2, e)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, tc := range testMessages() {
		addSmall(f, AppendMessage(nil, &tc.m))
	}
	r := rand.New(rand.NewSource(1))
	for range 16 {
		m := randMessage(r)
		m.Entries = m.Entries[:min(len(m.Entries), 3)]
		for i := range m.Entries {
			m.Entries[i] = shrink(m.Entries[i])
		}
		addSmall(f, AppendMessage(nil, &m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
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
