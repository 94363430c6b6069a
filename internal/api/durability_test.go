package api

import (
	"errors"
	"testing"
)

// The values are part of the peer wire format (internal/transport carries
// the mode as one byte in a forwarded write): they must not change.
func TestAckModeValues(t *testing.T) {
	for _, c := range []struct {
		m    AckMode
		want uint8
	}{{AckMajority, 0}, {AckAsync, 1}, {AckSemiSync, 2}, {AckSync, 3}} {
		if uint8(c.m) != c.want {
			t.Errorf("%v = %d, want %d", c.m, uint8(c.m), c.want)
		}
	}
	if (Ack{}).Mode != AckMajority {
		t.Errorf("the zero Ack asks for %v, want majority", Ack{}.Mode)
	}
}

func TestParseAckMode(t *testing.T) {
	for _, c := range []struct {
		s    string
		want AckMode
	}{
		{"async", AckAsync},
		{"semi-sync", AckSemiSync},
		{"semisync", AckSemiSync},
		{"sync", AckSync},
		{"majority", AckMajority},
		{"local", AckAsync},
		{"all", AckSync},
	} {
		m, err := ParseAckMode(c.s)
		if err != nil || m != c.want {
			t.Errorf("ParseAckMode(%q) = %v, %v; want %v", c.s, m, err, c.want)
		}
	}
	for _, m := range []AckMode{AckMajority, AckAsync, AckSemiSync, AckSync} {
		got, err := ParseAckMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseAckMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	for _, s := range []string{"", "Async", "SYNC", "semi", "semi_sync", "quorum", "All", " sync", "majority ", "0", "ack(0)"} {
		if m, err := ParseAckMode(s); !errors.Is(err, ErrBadAckMode) {
			t.Errorf("ParseAckMode(%q) = %v, %v; want ErrBadAckMode", s, m, err)
		}
	}
	if s := AckMode(9).String(); s != "ack(9)" {
		t.Errorf("AckMode(9).String() = %q", s)
	}
}

func TestQuorum(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want int
		bad  bool
	}{
		{"", 3, 2, false}, {"quorum", 3, 2, false}, {"quorum", 5, 3, false}, {"quorum", 1, 1, false},
		{"one", 3, 1, false}, {"all", 5, 5, false}, {"2", 3, 2, false}, {"3", 3, 3, false},
		{"4", 3, 0, true}, {"0", 3, 0, true}, {"-1", 3, 0, true}, {"two", 3, 0, true}, {"1.5", 3, 0, true},
	} {
		q, err := ParseQuorum(tc.in)
		var got int
		if err == nil {
			got, err = q.Resolve(tc.n)
		}
		if tc.bad {
			if !errors.Is(err, ErrBadQuorum) {
				t.Errorf("%q with N=%d: got %d, %v; want ErrBadQuorum", tc.in, tc.n, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q with N=%d: got %d, %v; want %d", tc.in, tc.n, got, err, tc.want)
		}
		if tc.in != "" {
			if back, _ := ParseQuorum(q.String()); back != q {
				t.Errorf("%q: String %q parses back to %v", tc.in, q.String(), back)
			}
		}
	}
}
