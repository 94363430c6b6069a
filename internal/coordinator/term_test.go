package coordinator

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestParseTerm(t *testing.T) {
	good := []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"1", 1},
		{"42", 42},
		{"18446744073709551615", math.MaxUint64},
	}
	for _, tc := range good {
		got, err := parseTerm([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("parseTerm(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if s := formatTerm(got); s != tc.in {
			t.Errorf("formatTerm(%d) = %q, want %q", got, s, tc.in)
		}
	}
	bad := []string{
		"", " 1", "1 ", "+1", "-1", "01", "00", "1e3", "0x10", "banana", "1_000",
		"18446744073709551616",  // MaxUint64 + 1
		"99999999999999999999",  // 20 digits, overflows
		"100000000000000000000", // 21 bytes
		"\x00", "4\x002",
	}
	for _, in := range bad {
		if got, err := parseTerm([]byte(in)); !errors.Is(err, ErrBadTerm) {
			t.Errorf("parseTerm(%q) = %d, %v; want ErrBadTerm", in, got, err)
		}
	}
}

func TestNextTerm(t *testing.T) {
	cases := []struct{ stored, min, want uint64 }{
		{0, 0, 1},
		{0, 7, 7},
		{5, 0, 6},
		{5, 6, 6},
		{5, 3, 6},
		{5, 100, 100},
		{math.MaxUint64 - 1, 0, math.MaxUint64},
	}
	for _, tc := range cases {
		if got, err := nextTerm(tc.stored, tc.min); err != nil || got != tc.want {
			t.Errorf("nextTerm(%d, %d) = %d, %v; want %d", tc.stored, tc.min, got, err, tc.want)
		}
	}
	if got, err := nextTerm(math.MaxUint64, 0); !errors.Is(err, ErrTermExhausted) {
		t.Errorf("nextTerm(MaxUint64, 0) = %d, %v; want ErrTermExhausted", got, err)
	}
}

func TestValidityIsTTLLessMargin(t *testing.T) {
	sent := time.Unix(1000, 0)
	cases := []struct {
		ttl, margin time.Duration
	}{
		{time.Second, 50 * time.Millisecond}, // 5% is 50ms
		{2 * time.Second, 100 * time.Millisecond},
		{10 * time.Second, 500 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := driftMargin(tc.ttl); got != tc.margin {
			t.Errorf("driftMargin(%v) = %v, want %v", tc.ttl, got, tc.margin)
		}
		if got, want := validity(sent, tc.ttl), sent.Add(tc.ttl-tc.margin); !got.Equal(want) {
			t.Errorf("validity(sent, %v) = sent+%v, want sent+%v", tc.ttl, got.Sub(sent), want.Sub(sent))
		}
	}
	// The floor: a tiny TTL still holds back 50ms.
	if got := driftMargin(200 * time.Millisecond); got != minDriftMargin {
		t.Errorf("driftMargin(200ms) = %v, want %v", got, minDriftMargin)
	}
}

func TestKeys(t *testing.T) {
	k := keysFor("prod-1")
	if k.leader != "/trireme/prod-1/leader" || k.term != "/trireme/prod-1/term" {
		t.Fatalf("keysFor(prod-1) = %+v", k)
	}
}
