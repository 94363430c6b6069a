package coordinator

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParseEndpoints: never panics; what it accepts is non-empty, has no
// duplicates, and parses back to itself when written as a flag value.
func FuzzParseEndpoints(f *testing.F) {
	for _, s := range []string{
		"etcd://127.0.0.1:2379", "etcd://a:1,etcd://b:2", "etcd://[::1]:1,h:2",
		"http://a:1", "etcd://a", "etcd://a:99999", "etcd://,", "etcd://u@h:1/p?q#f",
		"etcd://[fe80::1%eth0]:1", "ETCD://A:01 , b:2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ParseEndpoints(s)
		if err != nil {
			if !errors.Is(err, ErrBadEndpoint) {
				t.Fatalf("ParseEndpoints(%q) error %v is not ErrBadEndpoint", s, err)
			}
			return
		}
		if len(eps) == 0 {
			t.Fatalf("ParseEndpoints(%q) accepted nothing", s)
		}
		again, err := ParseEndpoints("etcd://" + strings.Join(eps, ","))
		if err != nil || !slices.Equal(again, eps) {
			t.Fatalf("ParseEndpoints(%q) = %q; written back it parses to %q, %v", s, eps, again, err)
		}
		for _, ep := range eps {
			if _, err := parseHostPort(ep); err != nil {
				t.Fatalf("ParseEndpoints(%q) returned %q, which Config.Validate refuses: %v", s, ep, err)
			}
		}
	})
}

// FuzzParseTerm: never panics; accepts exactly what formatTerm writes, and
// formatTerm's output always parses back.
func FuzzParseTerm(f *testing.F) {
	for _, s := range []string{"0", "1", "42", "18446744073709551615", "18446744073709551616", "01", "-1", "", "banana"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseTerm(b); err == nil {
			if got := formatTerm(n); got != string(b) {
				t.Fatalf("parseTerm(%q) = %d, which formats as %q", b, n, got)
			}
		} else if !errors.Is(err, ErrBadTerm) {
			t.Fatalf("parseTerm(%q) error %v is not ErrBadTerm", b, err)
		}
		// The other direction, with a term taken from the input's bytes.
		var buf [8]byte
		copy(buf[:], b)
		n := binary.LittleEndian.Uint64(buf[:])
		if got, err := parseTerm([]byte(formatTerm(n))); err != nil || got != n {
			t.Fatalf("parseTerm(formatTerm(%d)) = %d, %v", n, got, err)
		}
	})
}
