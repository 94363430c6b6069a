package vclock

import (
	"errors"
	"slices"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
)

func vec(kv ...any) Vector {
	var v Vector
	for i := 0; i < len(kv); i += 2 {
		v = v.With(kv[i].(string), uint64(kv[i+1].(int)))
	}
	return v
}

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b Vector
		want Ordering
	}{
		{nil, nil, Equal},
		{vec("a", 1), vec("a", 1), Equal},
		{nil, vec("a", 1), Before},
		{vec("a", 2), vec("a", 1), After},
		{vec("a", 1, "b", 1), vec("a", 1), After},
		{vec("a", 1), vec("b", 1), Concurrent},
		{vec("a", 2, "b", 1), vec("a", 1, "b", 2), Concurrent},
		{vec("a", 1, "c", 3), vec("a", 1, "b", 1, "c", 3), Before},
	}
	for _, tt := range tests {
		t.Run(tt.a.String()+"~"+tt.b.String(), func(t *testing.T) {
			if got := Compare(tt.a, tt.b); got != tt.want {
				t.Fatalf("Compare = %v, want %v", got, tt.want)
			}
			if got := tt.a.Descends(tt.b); got != (tt.want == Equal || tt.want == After) {
				t.Fatalf("Descends = %v", got)
			}
			m := Merge(tt.a, tt.b)
			if !m.Descends(tt.a) || !m.Descends(tt.b) || m.Validate() != nil {
				t.Fatalf("Merge = %v", m)
			}
		})
	}
}

func TestWithKeepsOrder(t *testing.T) {
	v := vec("m", 1).With("a", 2).With("z", 3).With("m", 5).With("m", 4)
	if want := vec("a", 2, "m", 5, "z", 3); !slices.Equal(v, want) || v.Validate() != nil {
		t.Fatalf("got %v, want %v", v, want)
	}
}

func sib(node string, c uint64, wall int64, val string) Sibling {
	return Sibling{Dot: Dot{node, c}, Time: hlc.Timestamp{Wall: wall}, Value: []byte(val)}
}

func TestUpdate(t *testing.T) {
	var s Set
	s = Update(s, nil, sib("a", 1, 1, "x"))
	s = Update(s, nil, sib("b", 1, 2, "y")) // blind: a sibling of x
	if len(s.Siblings) != 2 {
		t.Fatalf("want 2 siblings, got %v", s)
	}
	ctx := s.ReadContext()
	if ctx.MaxTime.Wall != 2 {
		t.Fatalf("MaxTime %v", ctx.MaxTime)
	}
	s = Update(s, ctx.Vector, sib("a", 2, 3, "z")) // saw both: replaces them
	if len(s.Siblings) != 1 || string(s.Siblings[0].Value) != "z" {
		t.Fatalf("want only z, got %v", s)
	}
	if again := Update(s, ctx.Vector, sib("a", 2, 3, "z")); !again.Equal(s) {
		t.Fatalf("Update not idempotent: %v vs %v", again, s)
	}
	// A stale write that saw only x: concurrent with z.
	s = Update(s, vec("a", 1), sib("b", 2, 4, "w"))
	if len(s.Siblings) != 2 {
		t.Fatalf("want z and w, got %v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCounter(t *testing.T) {
	var a, b Counter
	a = JoinCounter(a, a.IncrDelta("a", 5))
	b = JoinCounter(b, b.IncrDelta("b", -2))
	a = JoinCounter(a, a.IncrDelta("a", 1))
	m := JoinCounter(a, b)
	if m.Value() != 4 || !JoinCounter(b, a).Equal(m) || !JoinCounter(m, a).Equal(m) {
		t.Fatalf("join %v value %d", m, m.Value())
	}
	// Delete at a after seeing only a's increments; b increments concurrently.
	reset := a.ResetDelta()
	b = JoinCounter(b, b.IncrDelta("b", 10))
	final := JoinCounter(JoinCounter(m, reset), b)
	if got := final.Value(); got != 8 { // b: -2+10, a's 6 reset
		t.Fatalf("after observed reset value %d, want 8 (%v)", got, final)
	}
	if err := final.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	s := Update(Update(Set{}, nil, sib("a", 1, 1, "x")), nil, Sibling{Dot: Dot{"bb", 1}, Time: hlc.Timestamp{Wall: 9, Logical: 2}, Deleted: true})
	got, err := DecodeSet(AppendSet(nil, s))
	if err != nil || !got.Equal(s) {
		t.Fatalf("set round trip: %v, %v", got, err)
	}
	c := Counter{{"a", 1, 2, 3, 4}, {"b", 5, 0, 0, 0}}
	gc, err := DecodeCounter(AppendCounter(nil, c))
	if err != nil || !gc.Equal(c) {
		t.Fatalf("counter round trip: %v, %v", gc, err)
	}
	ctx := s.ReadContext()
	gx, err := DecodeContext(AppendContext(nil, ctx))
	if err != nil || !slices.Equal(gx.Vector, ctx.Vector) || gx.MaxTime != ctx.MaxTime {
		t.Fatalf("context round trip: %v, %v", gx, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := AppendVector(nil, vec("a", 1, "b", 2))
	tests := []struct {
		name string
		b    []byte
	}{
		{"trailing", append(slices.Clone(good), 0)},
		{"cut", good[:len(good)-1]},
		{"huge count", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"unsorted", AppendVector(nil, Vector{{"b", 1}, {"a", 1}})},
		{"duplicate", AppendVector(nil, Vector{{"a", 1}, {"a", 2}})},
		{"zero counter", AppendVector(nil, Vector{{"a", 0}})},
		{"empty node", AppendVector(nil, Vector{{"", 1}})},
		{"non-minimal varint", []byte{0x81, 0x00, 1, 'a', 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeVector(tt.b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	// A sibling its context does not cover.
	bad := AppendSet(nil, Set{Context: vec("a", 1), Siblings: []Sibling{sib("a", 2, 1, "x")}})
	if _, err := DecodeSet(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("uncovered sibling: %v", err)
	}
}

func TestToken(t *testing.T) {
	ctx := Context{Vector: vec("a", 3, "b", 1), MaxTime: hlc.Timestamp{Wall: 42, Logical: 1}}
	tok := EncodeToken("c1", "k", ctx)
	got, err := DecodeToken("c1", "k", tok)
	if err != nil || !slices.Equal(got.Vector, ctx.Vector) || got.MaxTime != ctx.MaxTime {
		t.Fatalf("round trip %v, %v", got, err)
	}
	if _, err := DecodeToken("c2", "k", tok); !errors.Is(err, ErrForeignToken) {
		t.Fatalf("foreign: %v", err)
	}
	if _, err := DecodeToken("c1", "other", tok); !errors.Is(err, ErrForeignToken) {
		t.Fatalf("other key: %v", err)
	}
	flipped := []byte(tok)
	flipped[3] ^= 1
	for _, bad := range []string{"", "!!", "AAAA", string(flipped), tok + "A"} {
		if _, err := DecodeToken("c1", "k", bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("DecodeToken(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}
