package repl

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// wireSamples are messages with the frames the peer transport sent them in
// before it carried messages as opaque payloads: the hex was taken from
// transport.AppendMessage of that release (commit a5d6d3c). A frame is its
// length (4 bytes), its type (3, a message) and the message's encoding.
var wireSamples = []struct {
	m     Message
	frame string
}{
	{Message{Type: MsgHeartbeat, From: "n1", To: "n2", Term: 3, Index: 9, Commit: 9, Context: 77},
		"4700000003070300000000000000000000000000000009000000000000000900000000000000000000000000000000000000000000004d000000000000000002006e3102006e3200000000"},
	{Message{Type: MsgAppResp, From: "n2", To: "n1", Term: 3, Index: 5, Reject: true, HintTerm: 2, HintIndex: 4},
		"47000000030603000000000000000000000000000000050000000000000000000000000000000200000000000000040000000000000000000000000000000102006e3202006e3100000000"},
	{Message{Type: MsgVote, From: "node-3", To: "n1", Term: 1 << 40, LogTerm: 7, Index: 1 << 33, Context: 1},
		"4b000000030300000000000100000700000000000000000000000200000000000000000000000000000000000000000000000000000001000000000000000006006e6f64652d3302006e3100000000"},
	{Message{Type: MsgTimeoutNow, Term: math.MaxUint64},
		"430000000309ffffffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"},
	{Message{Type: MsgApp, From: "n1", To: "n3", Term: 4, LogTerm: 3, Index: 10, Commit: 9,
		Entries: []entry.Entry{
			{Term: 4, Index: 11, Kind: entry.KindNoop},
			{Term: 4, Index: 12, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("value"), RequestID: 42},
			{Term: 4, Index: 13, Kind: entry.KindDelete, Key: []byte("k")},
			{Term: 4, Index: 14, Kind: entry.KindCommand, Key: []byte("ctr"), Value: []byte{1, 2, 3}},
		}},
		"ec0000000305040000000000000003000000000000000a0000000000000009000000000000000000000000000000000000000000000000000000000000000002006e3102006e330400000022000000010104000000000000000b000000000000000000000000000000000000000000000028000000010204000000000000000c000000000000002a00000000000000010000006b0500000076616c756523000000010304000000000000000d000000000000000000000000000000010000006b0000000028000000010504000000000000000e0000000000000000000000000000000300000063747203000000010203"},
}

// TestMessageWireBytes: a message's encoding is byte for byte the body of
// the message frame of the previous release, so that nodes of both
// releases understand each other; and the old bytes decode to the message.
func TestMessageWireBytes(t *testing.T) {
	for _, c := range wireSamples {
		frame, err := hex.DecodeString(c.frame)
		if err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint32(frame) != uint32(len(frame)-4) || frame[4] != 3 {
			t.Fatalf("%s: not a message frame: %x", c.m.Type, frame[:5])
		}
		body := frame[5:]
		if got := AppendMessage([]byte("prefix"), &c.m)[len("prefix"):]; !bytes.Equal(got, body) {
			t.Errorf("%s encodes as\n%x, the previous release as\n%x", c.m.Type, got, body)
		}
		got, err := DecodeMessage(body)
		if err != nil || !reflect.DeepEqual(got, c.m) {
			t.Errorf("%s: the previous release's bytes decode to %+v, %v; want %+v", c.m.Type, got, err, c.m)
		}
	}
}

func TestMessageWireRoundTrip(t *testing.T) {
	for _, c := range wireSamples {
		b := AppendMessage(nil, &c.m)
		// Every truncation is refused, never a panic.
		for n := range len(b) {
			if m, err := DecodeMessage(b[:n]); !errors.Is(err, ErrMalformedEncoding) {
				t.Fatalf("%s cut to %d of %d bytes: %+v, %v", c.m.Type, n, len(b), m, err)
			}
		}
		// Entries alias the bytes; the ids do not.
		m, err := DecodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.Entries {
			if len(e.Key) > 0 && cap(e.Key) != len(e.Key) {
				t.Fatalf("%s: a key's capacity reaches past it", c.m.Type)
			}
		}
	}
	// A node id over 65535 bytes is cut, not a broken encoding.
	long := Message{Type: MsgHeartbeat, From: NodeID(bytes.Repeat([]byte("x"), 70000)), To: "n2"}
	m, err := DecodeMessage(AppendMessage(nil, &long))
	if err != nil || len(m.From) != 0xffff || m.To != "n2" {
		t.Fatalf("a long id: %d bytes, to %q, %v", len(m.From), m.To, err)
	}
}

// TestDecodeMessageErrors: every bound the transport's decoder enforced
// when it decoded messages itself.
func TestDecodeMessageErrors(t *testing.T) {
	good := AppendMessage(nil, &Message{Type: MsgApp, From: "a", To: "b",
		Entries: []entry.Entry{{Term: 1, Index: 1, Kind: entry.KindPut, Key: []byte("k")}}})
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	countAt := len(good) - (4 + entry.HeaderSize + 1) - 4 // the entry count
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown message type 0", mut(func(b []byte) []byte { b[0] = 0; return b })},
		{"unknown message type 11", mut(func(b []byte) []byte { b[0] = byte(MsgSnapshotNeeded) + 1; return b })},
		{"trailing bytes", mut(func(b []byte) []byte { return append(b, 0) })},
		{"bad entry kind", mut(func(b []byte) []byte { b[len(b)-(entry.HeaderSize+1)+1] = 0; return b })},
		{"bad entry version", mut(func(b []byte) []byte { b[len(b)-(entry.HeaderSize+1)] = 9; return b })},
		{"entry length short of the entry", mut(func(b []byte) []byte { b[countAt+4]--; return b })},
		{"entry length past the bytes", mut(func(b []byte) []byte { b[countAt+4] += 2; return b })},
		{"entry length of 4 GiB", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[countAt+4:], 0xffffffff)
			return b
		})},
		{"two entries in the bytes of one", mut(func(b []byte) []byte { b[countAt] = 2; return b })},
		{"huge entry count", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[countAt:], 0x7fffffff)
			return b
		})},
		{"id length past the bytes", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[1+7*8+1:], 0xffff)
			return b
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := DecodeMessage(tc.b); !errors.Is(err, ErrMalformedEncoding) {
				t.Fatalf("got %+v, %v; want ErrMalformedEncoding", m, err)
			}
		})
	}
	// A count that fits the bytes only as empty entries is bounded before
	// anything is allocated for it.
	huge := mut(func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[countAt:], 0xffffffff)
		return b
	})
	if allocs := testing.AllocsPerRun(10, func() { DecodeMessage(huge) }); allocs > 10 {
		t.Fatalf("decoding a count of 2^32-1 allocated %v times", allocs)
	}
}

// FuzzDecodeMessage: DecodeMessage never panics, allocates for entries only
// what the bytes can hold, and a message that decodes re-encodes to bytes
// that decode to the same message (the same bytes, but for ignored flag
// bits). Seeds: the samples, and the message frames that seeded the
// transport's FuzzDecodeFrame (testdata, bodies of frames of type 3).
func FuzzDecodeMessage(f *testing.F) {
	for _, c := range wireSamples {
		f.Add(AppendMessage(nil, &c.m))
	}
	f.Add([]byte{byte(MsgApp)})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedEncoding) {
				t.Fatalf("error %v does not wrap ErrMalformedEncoding", err)
			}
			return
		}
		if cap(m.Entries) > len(b)/(4+entry.HeaderSize) {
			t.Fatalf("%d entries allocated for %d bytes", cap(m.Entries), len(b))
		}
		b2 := AppendMessage(nil, &m)
		if len(b2) != len(b) {
			t.Fatalf("re-encoded to %d bytes, from %d", len(b2), len(b))
		}
		m2, err := DecodeMessage(b2)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encode changed the message:\n%+v\n%+v", m, m2)
		}
	})
}
