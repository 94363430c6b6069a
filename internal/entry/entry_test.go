package entry

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	cases := []Entry{
		{Term: 1, Index: 1, Kind: KindNoop},
		{Term: 3, Index: 42, Kind: KindPut, Key: []byte("k"), Value: []byte("v"), RequestID: 7},
		{Term: 1 << 40, Index: 1<<63 + 5, Kind: KindDelete, Key: []byte("gone")},
		{Term: 2, Index: 9, Kind: KindConfig, Value: bytes.Repeat([]byte{0xff}, 1000)},
	}
	for _, e := range cases {
		t.Run(e.Kind.String(), func(t *testing.T) {
			b := AppendEncode(nil, &e)
			if len(b) != e.Size() {
				t.Fatalf("encoded %d bytes, Size() says %d", len(b), e.Size())
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !got.Equal(&e) {
				t.Fatalf("round trip: got %+v, want %+v", got, e)
			}
		})
	}
}

func TestDecodePrefixConcatenated(t *testing.T) {
	seed := int64(20261126)
	rng := rand.New(rand.NewSource(seed))
	var want []Entry
	var buf []byte
	for i := 0; i < 100; i++ {
		e := Entry{Term: uint64(rng.Intn(5) + 1), Index: uint64(i + 1), Kind: Kind(rng.Intn(4) + 1),
			Key: randBytes(rng, rng.Intn(20)), Value: randBytes(rng, rng.Intn(200)), RequestID: rng.Uint64()}
		want = append(want, e)
		buf = AppendEncode(buf, &e)
	}
	for i := range want {
		got, n, err := DecodePrefix(buf)
		if err != nil {
			t.Fatalf("seed %d: entry %d: %v", seed, i, err)
		}
		if !got.Equal(&want[i]) {
			t.Fatalf("seed %d: entry %d: got %+v want %+v", seed, i, got, want[i])
		}
		buf = buf[n:]
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left over", len(buf))
	}
}

func TestDecodeRejects(t *testing.T) {
	good := AppendEncode(nil, &Entry{Term: 1, Index: 2, Kind: KindPut, Key: []byte("key"), Value: []byte("value")})
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":         nil,
		"short header":  good[:HeaderSize-1],
		"bad version":   mut(func(b []byte) []byte { b[0] = 9; return b }),
		"kind zero":     mut(func(b []byte) []byte { b[1] = 0; return b }),
		"kind unknown":  mut(func(b []byte) []byte { b[1] = 200; return b }),
		"key too long":  mut(func(b []byte) []byte { b[26] = 0xff; return b }),
		"truncated":     good[:len(good)-1],
		"trailing byte": append(append([]byte(nil), good...), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%s) = %v, want ErrMalformed", name, err)
			}
		})
	}
}

func TestCloneDoesNotAlias(t *testing.T) {
	b := AppendEncode(nil, &Entry{Term: 1, Index: 1, Kind: KindPut, Key: []byte("a"), Value: []byte("b")})
	e, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Clone()
	for i := range b {
		b[i] = 0
	}
	if string(c.Key) != "a" || string(c.Value) != "b" {
		t.Fatalf("clone aliased its source: %+v", c)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendEncode(nil, &Entry{Term: 1, Index: 1, Kind: KindNoop}))
	f.Add(AppendEncode(nil, &Entry{Term: 2, Index: 3, Kind: KindPut, Key: []byte("k"), Value: []byte("v")}))
	f.Add([]byte{1, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		again := AppendEncode(nil, &e)
		if !bytes.Equal(again, b) {
			t.Fatalf("decode/encode not identity:\n in %x\nout %x", b, again)
		}
	})
}

func randBytes(rng *rand.Rand, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	rng.Read(b)
	return b
}
