package hlc

import (
	"errors"
	"math"
	"math/rand"
	"testing"
)

func TestNowMonotonic(t *testing.T) {
	tests := []struct {
		name     string
		physical []int64
	}{
		{"forward", []int64{10, 20, 30}},
		{"repeat", []int64{10, 10, 10, 10}},
		{"backwards", []int64{100, 50, 40, 99, 101}},
		{"jump", []int64{5, 1 << 50, 6, 7}},
		{"zero", []int64{0, 0, -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock(0)
			var prev Timestamp
			for i, p := range tt.physical {
				ts := c.Now(p)
				if !prev.Less(ts) {
					t.Fatalf("step %d: Now(%d)=%v not above %v", i, p, ts, prev)
				}
				if ts.Wall < p {
					t.Fatalf("step %d: Now(%d)=%v below physical", i, p, ts)
				}
				prev = ts
			}
		})
	}
}

func TestNowLogicalOverflow(t *testing.T) {
	c := NewClock(0)
	c.Restore(Timestamp{Wall: 7, Logical: math.MaxUint32})
	if got := c.Now(1); got != (Timestamp{Wall: 8}) {
		t.Fatalf("Now after max logical = %v, want 8.0", got)
	}
}

// TestObserveOrdering: a timestamp observed within MaxOffset is always below
// the next Now, on random interleavings (seeded).
func TestObserveOrdering(t *testing.T) {
	const seed = 19
	r := rand.New(rand.NewSource(seed))
	c := NewClock(1000)
	phys := int64(1_000_000)
	prev := Timestamp{}
	for i := 0; i < 20000; i++ {
		phys += r.Int63n(200) - 60 // drifts forward, sometimes backwards
		remote := Timestamp{Wall: phys + r.Int63n(2000) - 1000, Logical: uint32(r.Intn(5))}
		if _, err := c.Observe(remote, phys); err != nil {
			t.Fatalf("seed %d step %d: Observe(%v, %d) = %v within offset", seed, i, remote, phys, err)
		}
		ts := c.Now(phys)
		if !remote.Less(ts) || !prev.Less(ts) {
			t.Fatalf("seed %d step %d: Now=%v, observed %v, previous %v", seed, i, ts, remote, prev)
		}
		prev = ts
	}
}

func TestObserveClamps(t *testing.T) {
	c := NewClock(100)
	remote := Timestamp{Wall: 10_000, Logical: 3}
	off, err := c.Observe(remote, 1000)
	if !errors.Is(err, ErrOffset) || off != 9000 {
		t.Fatalf("Observe = %d, %v; want 9000, ErrOffset", off, err)
	}
	if got := c.Now(1000); got.Wall != 1100 {
		t.Fatalf("Now after clamped observe = %v, want wall 1100 (physical+MaxOffset)", got)
	}
	// Behind or exactly at the bound: no error, followed exactly.
	off, err = c.Observe(Timestamp{Wall: 1200, Logical: 9}, 1100)
	if err != nil || off != 100 {
		t.Fatalf("Observe at bound = %d, %v", off, err)
	}
	if got := c.Now(0); got != (Timestamp{Wall: 1200, Logical: 10}) {
		t.Fatalf("Now = %v, want 1200.10", got)
	}
	off, err = c.Observe(Timestamp{Wall: 5}, 1100)
	if err != nil || off != -1095 {
		t.Fatalf("Observe behind = %d, %v", off, err)
	}
}

func TestUnboundedFollows(t *testing.T) {
	var c Clock
	if _, err := c.Observe(Timestamp{Wall: 1 << 60}, 0); err != nil {
		t.Fatal(err)
	}
	if got := c.Now(0); got.Wall != 1<<60 {
		t.Fatalf("Now = %v", got)
	}
}

func TestCompareTotal(t *testing.T) {
	ts := []Timestamp{{0, 0}, {0, 1}, {1, 0}, {1, math.MaxUint32}, {2, 0}}
	for i := range ts {
		for j := range ts {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ts[i].Compare(ts[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", ts[i], ts[j], got, want)
			}
		}
	}
}

func TestEncoding(t *testing.T) {
	for _, ts := range []Timestamp{{}, {1, 2}, {math.MaxInt64, math.MaxUint32}} {
		b := ts.Append(nil)
		if len(b) != EncodedLen {
			t.Fatalf("len %d", len(b))
		}
		got, err := Decode(b)
		if err != nil || got != ts {
			t.Fatalf("Decode(%v) = %v, %v", ts, got, err)
		}
	}
	// Encoded order is timestamp order.
	a, b := Timestamp{1, 5}.Append(nil), Timestamp{2, 0}.Append(nil)
	if string(a) >= string(b) {
		t.Fatal("encoding does not preserve order")
	}
	for _, bad := range [][]byte{nil, make([]byte, 11), make([]byte, 13), {0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%x) = %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Timestamp{3, 4}.Append(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := Decode(b)
		if err != nil {
			return
		}
		if got := ts.Append(nil); string(got) != string(b) {
			t.Fatalf("round trip %x -> %v -> %x", b, ts, got)
		}
	})
}
