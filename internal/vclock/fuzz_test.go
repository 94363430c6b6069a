package vclock

import (
	"bytes"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
)

// Each decoder either fails with an error or returns a value that
// re-encodes to exactly its input (the encodings are canonical).

func FuzzDecodeVector(f *testing.F) {
	f.Add(AppendVector(nil, Vector{{"a", 1}, {"b", 300}}))
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeVector(b)
		if err == nil && !bytes.Equal(AppendVector(nil, v), b) {
			t.Fatalf("not canonical: %x -> %v", b, v)
		}
	})
}

func FuzzDecodeContext(f *testing.F) {
	f.Add(AppendContext(nil, Context{Vector: Vector{{"n1", 7}}, MaxTime: hlc.Timestamp{Wall: 5}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeContext(b)
		if err == nil && !bytes.Equal(AppendContext(nil, c), b) {
			t.Fatalf("not canonical: %x -> %v", b, c)
		}
	})
}

func FuzzDecodeSet(f *testing.F) {
	s := Update(Update(Set{}, nil, sib("a", 1, 1, "x")), nil, Sibling{Dot: Dot{"b", 1}, Deleted: true})
	f.Add(AppendSet(nil, s))
	f.Add(AppendSet(nil, Set{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSet(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendSet(nil, s), b) {
			t.Fatalf("not canonical: %x -> %v", b, s)
		}
		if !Sync(s, s).Equal(s) {
			t.Fatalf("Sync not idempotent on decoded %v", s)
		}
	})
}

func FuzzDecodeCounter(f *testing.F) {
	f.Add(AppendCounter(nil, Counter{{"a", 1, 2, 3, 4}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCounter(b)
		if err == nil && !bytes.Equal(AppendCounter(nil, c), b) {
			t.Fatalf("not canonical: %x -> %v", b, c)
		}
	})
}

func FuzzDecodeToken(f *testing.F) {
	f.Add(EncodeToken("c1", "k", Context{Vector: Vector{{"a", 2}}, MaxTime: hlc.Timestamp{Wall: 3}}))
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := DecodeToken("c1", "k", tok)
		if err == nil && EncodeToken("c1", "k", c) != tok {
			t.Fatalf("not canonical: %q -> %v", tok, c)
		}
	})
}
