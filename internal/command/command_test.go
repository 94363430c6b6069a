package command

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
)

func sample() []Command {
	return []Command{
		{Op: OpSet, Key: []byte("k"), Value: []byte("v")},
		{Op: OpSet, Key: []byte("k"), Value: []byte("v"), Cond: CondNX, ReturnOld: true},
		{Op: OpSet, Key: []byte("k"), Value: []byte("v"), Cond: CondIndex, IfIndex: 7, IdemKey: []byte("id-1")},
		{Op: OpDelete, Key: []byte("k"), ReturnOld: true},
		{Op: OpIncr, Key: []byte("n"), Delta: -3, Time: 5, IdemWindow: 10, IdemCap: 100, MaxValue: 1 << 20},
		{Op: OpAppend, Key: []byte("s"), Value: []byte("tail")},
		{Op: OpMSet, Keys: [][]byte{[]byte("a"), []byte("b")}, Values: [][]byte{[]byte("1"), nil}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, c := range sample() {
		b := Encode(nil, &c)
		if len(b) != EncodedLen(&c) {
			t.Fatalf("EncodedLen(%+v) = %d, encoding has %d bytes", c, EncodedLen(&c), len(b))
		}
		if a := testing.AllocsPerRun(10, func() { Encode(nil, &c) }); a != 1 {
			t.Fatalf("Encode made %v allocations, want 1", a)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
		for n := 0; n < len(b); n++ {
			if _, err := Decode(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated to %d of %d bytes: err %v", n, len(b), err)
			}
		}
		if _, err := Decode(append(b, 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("a trailing byte was accepted")
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, c := range map[string]Command{
		"unknown op":        {Op: 9, Key: []byte("k")},
		"no key":            {Op: OpSet},
		"mset without keys": {Op: OpMSet},
		"mset odd":          {Op: OpMSet, Keys: [][]byte{[]byte("a")}},
		"mset empty key":    {Op: OpMSet, Keys: [][]byte{nil}, Values: [][]byte{nil}},
		"mset with cond":    {Op: OpMSet, Keys: [][]byte{[]byte("a")}, Values: [][]byte{nil}, Cond: CondNX},
		"bad cond":          {Op: OpSet, Key: []byte("k"), Cond: 7},
		"index without":     {Op: OpSet, Key: []byte("k"), IfIndex: 3},
		"delta on set":      {Op: OpSet, Key: []byte("k"), Delta: 1},
		"value on incr":     {Op: OpIncr, Key: []byte("k"), Value: []byte("1")},
		"old on incr":       {Op: OpIncr, Key: []byte("k"), ReturnOld: true},
		"long idem key":     {Op: OpSet, Key: []byte("k"), IdemKey: bytes.Repeat([]byte("x"), MaxIdemKey+1)},
		"negative window":   {Op: OpSet, Key: []byte("k"), IdemWindow: -1},
	} {
		if err := c.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Validate = %v", name, err)
		}
		if len(c.Keys) != len(c.Values) {
			continue // encodes as pairs with nil values
		}
		if _, err := Decode(Encode(nil, &c)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode accepted it (%v)", name, err)
		}
	}
}

type state map[string]struct {
	v   string
	ver uint64
}

func (s state) get(k []byte) ([]byte, uint64, bool, error) {
	e, ok := s[string(k)]
	if !ok {
		return nil, 0, false, nil
	}
	return []byte(e.v), e.ver, true, nil
}

func TestEval(t *testing.T) {
	st := state{"n": {"41", 3}, "s": {"abc", 4}, "big": {"9223372036854775807", 5}, "lead0": {"007", 6}}
	for _, c := range []struct {
		name string
		cmd  Command
		want Result
		eff  []Effect
	}{
		{"incr", Command{Op: OpIncr, Key: []byte("n"), Delta: 1}, Result{Applied: true, Index: 10, Version: 10, Int: 42}, []Effect{{Key: []byte("n"), Value: []byte("42")}}},
		{"incr absent", Command{Op: OpIncr, Key: []byte("x"), Delta: -2}, Result{Applied: true, Index: 10, Version: 10, Int: -2}, []Effect{{Key: []byte("x"), Value: []byte("-2")}}},
		{"incr string", Command{Op: OpIncr, Key: []byte("s"), Delta: 1}, Result{Code: CodeNotInteger, Index: 10, Version: 4}, nil},
		{"incr leading zero", Command{Op: OpIncr, Key: []byte("lead0"), Delta: 1}, Result{Code: CodeNotInteger, Index: 10, Version: 6}, nil},
		{"incr overflow", Command{Op: OpIncr, Key: []byte("big"), Delta: 1}, Result{Code: CodeOverflow, Index: 10, Version: 5}, nil},
		{"append", Command{Op: OpAppend, Key: []byte("s"), Value: []byte("de")}, Result{Applied: true, Index: 10, Version: 10, Int: 5}, []Effect{{Key: []byte("s"), Value: []byte("abcde")}}},
		{"append too large", Command{Op: OpAppend, Key: []byte("s"), Value: []byte("de"), MaxValue: 4}, Result{Code: CodeTooLarge, Index: 10, Version: 4}, nil},
		{"setnx exists", Command{Op: OpSet, Key: []byte("s"), Value: []byte("v"), Cond: CondNX}, Result{Index: 10, Version: 4}, nil},
		{"set xx absent", Command{Op: OpSet, Key: []byte("x"), Value: []byte("v"), Cond: CondXX}, Result{Index: 10}, nil},
		{"set get", Command{Op: OpSet, Key: []byte("s"), Value: []byte("v"), ReturnOld: true}, Result{Applied: true, Index: 10, Version: 10, Old: []byte("abc"), OldFound: true}, []Effect{{Key: []byte("s"), Value: []byte("v")}}},
		{"cas ok", Command{Op: OpSet, Key: []byte("s"), Value: []byte("v"), Cond: CondIndex, IfIndex: 4}, Result{Applied: true, Index: 10, Version: 10}, []Effect{{Key: []byte("s"), Value: []byte("v")}}},
		{"cas stale", Command{Op: OpSet, Key: []byte("s"), Value: []byte("v"), Cond: CondIndex, IfIndex: 3}, Result{Code: CodeCondFailed, Index: 10, Version: 4}, nil},
		{"getdel", Command{Op: OpDelete, Key: []byte("n"), ReturnOld: true}, Result{Applied: true, Index: 10, Old: []byte("41"), OldFound: true}, []Effect{{Key: []byte("n"), Delete: true}}},
		{"delete absent", Command{Op: OpDelete, Key: []byte("x")}, Result{Applied: true, Index: 10}, []Effect{{Key: []byte("x"), Delete: true}}},
		{"delete absent, old", Command{Op: OpDelete, Key: []byte("x"), ReturnOld: true}, Result{Applied: true, Index: 10}, nil},
		{"blind set", Command{Op: OpSet, Key: []byte("s"), Value: []byte("v")}, Result{Applied: true, Index: 10, Version: 10}, []Effect{{Key: []byte("s"), Value: []byte("v")}}},
	} {
		effs, r, err := Eval(&c.cmd, 10, st.get)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(r, c.want) {
			t.Errorf("%s: result %+v, want %+v", c.name, r, c.want)
		}
		if !reflect.DeepEqual(effs, c.eff) {
			t.Errorf("%s: effects %v, want %v", c.name, effs, c.eff)
		}
	}
}

func TestParseIntMatchesRedis(t *testing.T) {
	for s, ok := range map[string]bool{"0": true, "-1": true, "9223372036854775807": true, "-9223372036854775808": true,
		"9223372036854775808": false, "": false, "+1": false, "01": false, "-0": false, " 1": false, "1.0": false, "0x1": false} {
		if _, got := ParseInt([]byte(s)); got != ok {
			t.Errorf("ParseInt(%q) ok=%v, want %v", s, got, ok)
		}
	}
	if v, _ := ParseInt([]byte("-9223372036854775808")); v != math.MinInt64 {
		t.Errorf("min int64 parsed as %d", v)
	}
}

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{{}, {Code: CodeCondFailed, Version: 9, Index: 3}, {Applied: true, Int: -5, Old: []byte("x"), OldFound: true, Duplicate: true}} {
		got, err := DecodeResult(EncodeResult(nil, &r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip %+v: %+v %v", r, got, err)
		}
	}
	if _, err := DecodeResult([]byte{9, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short result accepted: %v", err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to the
// same bytes and evaluates without panicking.
func FuzzDecode(f *testing.F) {
	for _, c := range sample() {
		f.Add(Encode(nil, &c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		if again := Encode(nil, &c); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
		if n := EncodedLen(&c); n != len(b) {
			t.Fatalf("EncodedLen %d, encoding of %d bytes", n, len(b))
		}
		st := state{"k": {"12", 1}}
		_, _, _ = Eval(&c, 2, st.get)
	})
}

// FuzzDecodeResult: DecodeResult never panics and round-trips what it accepts.
func FuzzDecodeResult(f *testing.F) {
	f.Add(EncodeResult(nil, &Result{Applied: true, Int: 4, Old: []byte("o"), OldFound: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResult(b)
		if err != nil {
			return
		}
		if again := EncodeResult(nil, &r); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// TestBlindCommandsReadNothing: an unconditional set or delete that does not
// return the old value is decided without reading the state.
func TestBlindCommandsReadNothing(t *testing.T) {
	fail := func([]byte) ([]byte, uint64, bool, error) { return nil, 0, false, errors.New("read") }
	for _, c := range []Command{{Op: OpSet, Key: []byte("k"), Value: []byte("v"), IdemKey: []byte("i")}, {Op: OpDelete, Key: []byte("k")}} {
		if _, r, err := Eval(&c, 3, fail); err != nil || !r.Applied {
			t.Errorf("%s: %+v %v", c.Op, r, err)
		}
	}
	for _, c := range []Command{{Op: OpSet, Key: []byte("k"), Cond: CondNX}, {Op: OpDelete, Key: []byte("k"), ReturnOld: true}, {Op: OpIncr, Key: []byte("k"), Delta: 1}} {
		if _, _, err := Eval(&c, 3, fail); err == nil {
			t.Errorf("%s %v: decided without reading the key", c.Op, c.Cond)
		}
	}
}
