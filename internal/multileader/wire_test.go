package multileader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

var (
	flagWireSeed  = flag.Int64("wire.seed", 0, "run the randomized wire tests on this seed only")
	flagWireSeeds = flag.Int("wire.seeds", 200, "number of seeds for the randomized wire tests")
)

// entryEqual compares entries field by field; nil and empty slices are alike.
func entryEqual(a, b Entry) bool {
	return a.Origin == b.Origin && a.Seq == b.Seq && a.Key == b.Key && a.Op == b.Op &&
		a.Time == b.Time && a.Dot == b.Dot && slices.Equal(a.Context, b.Context) &&
		bytes.Equal(a.Value, b.Value) && a.Counter.Equal(b.Counter)
}

func messageEqual(a, b Message) bool {
	return a.Type == b.Type && a.From == b.From && a.To == b.To && a.Seq == b.Seq &&
		slices.EqualFunc(a.Entries, b.Entries, entryEqual)
}

func testEntries() []struct {
	name string
	e    Entry
} {
	ts := hlc.Timestamp{Wall: 1_700_000_000_000_000_000, Logical: 7}
	ctx := vclock.Vector{{Node: "a", Counter: 3}, {Node: "b", Counter: 1}}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	long := strings.Repeat("n", vclock.MaxNodeIDLen)
	return []struct {
		name string
		e    Entry
	}{
		{"put", Entry{Origin: "a", Seq: 1, Key: "k", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 4}, Context: ctx, Value: []byte("v")}},
		{"put blind", Entry{Origin: "a", Seq: 2, Key: "k", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 1}, Value: []byte("v")}},
		{"put empty value", Entry{Origin: "a", Seq: 3, Key: "k", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 1}, Value: []byte{}}},
		{"put nil value", Entry{Origin: "a", Seq: 3, Key: "k", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 1}}},
		{"put zero time", Entry{Origin: "a", Seq: 1, Key: "k", Op: OpPut, Dot: vclock.Dot{Node: "a", Counter: 1}, Value: []byte("v")}},
		{"delete", Entry{Origin: "b", Seq: 9, Key: "k", Op: OpDelete, Time: ts, Dot: vclock.Dot{Node: "b", Counter: 2}, Context: ctx,
			Counter: vclock.Counter{{Node: "a", P: 5, N: 1, FloorP: 5, FloorN: 1}}}},
		{"incr", Entry{Origin: "c", Seq: math.MaxUint64, Key: "ctr", Op: OpIncr, Time: ts, Counter: vclock.Counter{{Node: "c", P: 10, N: 3}}}},
		{"unicode key", Entry{Origin: "ñodo-é", Seq: 5, Key: "клю́ч/🔑/键", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "ñodo-é", Counter: 1}, Value: []byte("значение")}},
		{"binary key", Entry{Origin: "a", Seq: 5, Key: "\x00\xff\x01", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 1}, Value: []byte{0, 0}}},
		{"large value", Entry{Origin: "a", Seq: 6, Key: "big", Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 9}, Value: big}},
		{"longest key", Entry{Origin: "a", Seq: 7, Key: strings.Repeat("k", MaxKeyBytes), Op: OpPut, Time: ts, Dot: vclock.Dot{Node: "a", Counter: 1}}},
		{"longest node id", Entry{Origin: long, Seq: 8, Key: "k", Op: OpDelete, Time: ts, Dot: vclock.Dot{Node: long, Counter: 1}, Context: vclock.Vector{{Node: long, Counter: 1}}}},
	}
}

func TestWireEntryRoundTrip(t *testing.T) {
	for _, tc := range testEntries() {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendEntry([]byte("prefix"), &tc.e)
			if string(b[:6]) != "prefix" {
				t.Fatalf("AppendEntry changed the bytes before it")
			}
			got, err := DecodeEntry(b[6:])
			if err != nil {
				t.Fatalf("DecodeEntry: %v", err)
			}
			if !entryEqual(got, tc.e) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.e)
			}
			if len(got.Value) == 0 && got.Value != nil {
				t.Fatalf("an empty value decodes as nil, got %#v", got.Value)
			}
			if again := AppendEntry(nil, &got); !bytes.Equal(again, b[6:]) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

func TestWireValueDoesNotAlias(t *testing.T) {
	e := testEntries()[0].e
	b := AppendEntry(nil, &e)
	got, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if string(got.Value) != "v" {
		t.Fatalf("decoded value changed with its input: %q", got.Value)
	}
}

func testMessages() []struct {
	name string
	m    Message
} {
	var all []Entry
	for _, tc := range testEntries() {
		if len(tc.e.Value) < 1<<10 && len(tc.e.Key) < 1<<10 {
			all = append(all, tc.e)
		}
	}
	var many []Entry
	for i := range 300 {
		e := all[i%len(all)]
		e.Seq = uint64(i + 1)
		many = append(many, e)
	}
	var out []struct {
		name string
		m    Message
	}
	for _, typ := range []MsgType{MsgEntries, MsgAck, MsgResend, MsgHeartbeat} {
		for _, es := range [][]Entry{nil, all[:1], many} {
			m := Message{Type: typ, From: "b", To: "a", Seq: uint64(len(es)) * 1000, Entries: es}
			out = append(out, struct {
				name string
				m    Message
			}{fmt.Sprintf("type %d, %d entries", typ, len(es)), m})
		}
	}
	return out
}

func TestWireMessageRoundTrip(t *testing.T) {
	for _, tc := range testMessages() {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendMessage(nil, &tc.m)
			got, err := DecodeMessage(b)
			if err != nil {
				t.Fatalf("DecodeMessage: %v", err)
			}
			if !messageEqual(got, tc.m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.m)
			}
			if again := AppendMessage(nil, &got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

func TestWireMaxMessageEntries(t *testing.T) {
	e := Entry{Origin: "b", Key: "k", Op: OpIncr, Counter: vclock.Counter{{Node: "b", P: 1}}}
	m := Message{Type: MsgEntries, From: "b", To: "a"}
	for i := range MaxMessageEntries + 1 {
		e.Seq = uint64(i + 1)
		m.Entries = append(m.Entries, e)
	}
	if _, err := DecodeMessage(AppendMessage(nil, &m)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d entries: got %v, want ErrMalformed", len(m.Entries), err)
	}
	m.Entries = m.Entries[:MaxMessageEntries]
	if _, err := DecodeMessage(AppendMessage(nil, &m)); err != nil {
		t.Fatalf("%d entries: %v", len(m.Entries), err)
	}
}

func TestWireRefusals(t *testing.T) {
	good := testEntries()[0].e
	entry := func(f func(e *Entry)) []byte {
		e := good
		f(&e)
		return AppendEntry(nil, &e)
	}
	uv := func(b []byte, u uint64) []byte { return binary.AppendUvarint(b, u) }
	// msgHead is a message up to (not including) its entry count.
	msgHead := func(typ MsgType, from, to string) []byte {
		b := []byte{wireVersion, byte(typ)}
		b = appendString(b, from)
		b = appendString(b, to)
		return uv(b, 1)
	}
	goodMsg := AppendMessage(nil, &Message{Type: MsgEntries, From: "a", To: "b", Entries: []Entry{good}})
	// entryUpToContext is the good entry's encoding up to its context.
	entryUpToContext := func() []byte {
		b := []byte{wireVersion, byte(OpPut)}
		b = appendString(b, "a")
		b = uv(b, 1)
		b = appendString(b, "k")
		b = hlc.Timestamp{}.Append(b)
		b = appendString(b, "a")
		return uv(b, 1)
	}
	tests := []struct {
		name string
		b    []byte
		msg  bool // decode as a message
	}{
		{"empty entry", nil, false},
		{"empty message", nil, true},
		{"entry version 0", append([]byte{0}, AppendEntry(nil, &good)[1:]...), false},
		{"entry version 2", append([]byte{2}, AppendEntry(nil, &good)[1:]...), false},
		{"message version 2", append([]byte{2}, goodMsg[1:]...), true},
		{"unknown op 0", entry(func(e *Entry) { e.Op = 0 }), false},
		{"unknown op 9", entry(func(e *Entry) { e.Op = 9 }), false},
		{"seq 0", entry(func(e *Entry) { e.Seq = 0 }), false},
		{"empty origin", entry(func(e *Entry) { e.Origin, e.Dot.Node = "", "" }), false},
		{"origin too long", entry(func(e *Entry) { e.Origin = strings.Repeat("x", 256); e.Dot.Node = e.Origin }), false},
		{"dot of another node", entry(func(e *Entry) { e.Dot.Node = "b" }), false},
		{"put with dot counter 0", entry(func(e *Entry) { e.Dot.Counter = 0 }), false},
		{"delete with dot counter 0", entry(func(e *Entry) { e.Op, e.Value, e.Dot.Counter = OpDelete, nil, 0 }), false},
		{"delete with a value", entry(func(e *Entry) { e.Op = OpDelete }), false},
		{"incr with a dot", entry(func(e *Entry) { e.Op, e.Value = OpIncr, nil }), false},
		{"incr with a dot counter", entry(func(e *Entry) { e.Op, e.Value, e.Dot.Node = OpIncr, nil, "" }), false},
		{"incr with a value", entry(func(e *Entry) { e.Op, e.Dot = OpIncr, vclock.Dot{} }), false},
		{"key too long", entry(func(e *Entry) { e.Key = strings.Repeat("k", MaxKeyBytes+1) }), false},
		{"negative time", entry(func(e *Entry) { e.Time.Wall = -1 }), false},
		{"unsorted context", entry(func(e *Entry) { e.Context = vclock.Vector{{Node: "b", Counter: 1}, {Node: "a", Counter: 1}} }), false},
		{"zero context counter", entry(func(e *Entry) { e.Context = vclock.Vector{{Node: "b", Counter: 0}} }), false},
		{"unsorted counter", entry(func(e *Entry) { e.Counter = vclock.Counter{{Node: "b"}, {Node: "a"}} }), false},
		{"entry trailing byte", append(AppendEntry(nil, &good), 0), false},
		{"message trailing byte", append(slices.Clone(goodMsg), 0), true},
		{"entry as a message", AppendEntry(nil, &good), true},
		{"message as an entry", goodMsg, false},
		{"context count larger than the input", uv(entryUpToContext(), 1<<40), false},
		{"context count of 1000", uv(entryUpToContext(), 1000), false},
		{"value length larger than the input", uv(uv(entryUpToContext(), 0), 1<<62), false},
		{"value length past the end", append(uv(uv(entryUpToContext(), 0), 10), "short"...), false},
		{"counter count larger than the input", uv(uv(uv(entryUpToContext(), 0), 0), 1<<20), false},
		{"key length larger than the input", uv(append([]byte{wireVersion, byte(OpPut)}, 1, 'a', 1), 1<<63), false},
		{"non-minimal varint", append([]byte{wireVersion, byte(OpPut), 1, 'a', 0x81, 0x00}, AppendEntry(nil, &good)[5:]...), false},
		{"overlong varint", append([]byte{wireVersion, byte(OpPut), 1, 'a'}, bytes.Repeat([]byte{0xff}, 11)...), false},
		{"unknown message type 0", append([]byte{wireVersion, 0}, goodMsg[2:]...), true},
		{"unknown message type 5", append([]byte{wireVersion, 5}, goodMsg[2:]...), true},
		{"empty from", uv(msgHead(MsgAck, "", "b"), 0), true},
		{"empty to", uv(msgHead(MsgAck, "a", ""), 0), true},
		{"entry count larger than the input", uv(msgHead(MsgEntries, "a", "b"), 1<<40), true},
		{"entry count of 2 with one entry", append(uv(msgHead(MsgEntries, "a", "b"), 2), AppendEntry(nil, &good)[1:]...), true},
		{"malformed entry in a message", append(uv(msgHead(MsgEntries, "a", "b"), 1), entry(func(e *Entry) { e.Seq = 0 })[1:]...), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.msg {
				_, err = DecodeMessage(tc.b)
			} else {
				_, err = DecodeEntry(tc.b)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
			t.Log(err)
		})
	}
}

// TestWireTruncation cuts valid encodings at every byte offset: each cut
// must be refused (an encoding is never a prefix of another).
func TestWireTruncation(t *testing.T) {
	var entries, msgs [][]byte
	for _, tc := range testEntries() {
		if len(tc.e.Value) < 1<<10 && len(tc.e.Key) < 1<<10 {
			entries = append(entries, AppendEntry(nil, &tc.e))
		}
	}
	for _, tc := range testMessages() {
		if len(tc.m.Entries) <= 1 {
			msgs = append(msgs, AppendMessage(nil, &tc.m))
		}
	}
	for i, b := range entries {
		for n := range len(b) {
			if _, err := DecodeEntry(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("entry %d cut at %d of %d bytes: got %v, want ErrMalformed", i, n, len(b), err)
			}
		}
	}
	for i, b := range msgs {
		for n := range len(b) {
			if _, err := DecodeMessage(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("message %d cut at %d of %d bytes: got %v, want ErrMalformed", i, n, len(b), err)
			}
		}
	}
}

// forWireSeeds runs fn on each seed and, on failure, prints how to replay it.
func forWireSeeds(t *testing.T, name string, fn func(r *rand.Rand) error) {
	t.Helper()
	seeds := []int64{*flagWireSeed}
	if *flagWireSeed == 0 {
		seeds = seeds[:0]
		for s := int64(1); s <= int64(*flagWireSeeds); s++ {
			seeds = append(seeds, s)
		}
	}
	t.Logf("seeds %d..%d; replay one with -wire.seed=N", seeds[0], seeds[len(seeds)-1])
	for _, s := range seeds {
		if err := fn(rand.New(rand.NewSource(s))); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./internal/multileader -run '^%s$' -wire.seed=%d", s, err, name, s)
		}
	}
}

func TestWireRandomRoundTrip(t *testing.T) {
	forWireSeeds(t, "TestWireRandomRoundTrip", func(r *rand.Rand) error {
		m := randMessage(r)
		b := AppendMessage(nil, &m)
		got, err := DecodeMessage(b)
		if err != nil {
			return fmt.Errorf("DecodeMessage of %+v: %w", m, err)
		}
		if !messageEqual(got, m) {
			return fmt.Errorf("message round trip:\n got %+v\nwant %+v", got, m)
		}
		for _, e := range m.Entries {
			eb := AppendEntry(nil, &e)
			ge, err := DecodeEntry(eb)
			if err != nil {
				return fmt.Errorf("DecodeEntry of %+v: %w", e, err)
			}
			if !entryEqual(ge, e) {
				return fmt.Errorf("entry round trip:\n got %+v\nwant %+v", ge, e)
			}
			// A random cut or a flipped byte is refused or decodes to
			// something that re-encodes canonically; never a panic.
			if _, err := DecodeEntry(eb[:r.Intn(len(eb))]); err == nil {
				return fmt.Errorf("a cut entry decoded")
			}
			flip := slices.Clone(eb)
			flip[r.Intn(len(flip))] ^= byte(1 + r.Intn(255))
			if fe, err := DecodeEntry(flip); err == nil && !bytes.Equal(AppendEntry(nil, &fe), flip) {
				return fmt.Errorf("a flipped entry decoded to a non-canonical %+v", fe)
			}
		}
		return nil
	})
}

var randNodes = []string{"a", "b", "c", "node-1", "ñ", strings.Repeat("z", vclock.MaxNodeIDLen)}

func randVector(r *rand.Rand) vclock.Vector {
	var v vclock.Vector
	for _, n := range slices.Sorted(slices.Values(randNodes)) {
		if r.Intn(3) == 0 {
			v = append(v, vclock.Entry{Node: n, Counter: 1 + uint64(r.Int63n(1<<uint(r.Intn(63))))})
		}
	}
	return v
}

func randCounter(r *rand.Rand) vclock.Counter {
	var c vclock.Counter
	for _, n := range slices.Sorted(slices.Values(randNodes)) {
		if r.Intn(3) == 0 {
			c = append(c, vclock.CounterEntry{Node: n, P: r.Uint64(), N: uint64(r.Intn(100)), FloorP: uint64(r.Intn(3)), FloorN: r.Uint64()})
		}
	}
	return c
}

func randBytes(r *rand.Rand, max int) []byte {
	b := make([]byte, r.Intn(max+1))
	r.Read(b)
	return b
}

// randEntry returns a random entry that the decoder accepts.
func randEntry(r *rand.Rand, origin string, seq uint64) Entry {
	e := Entry{
		Origin: origin,
		Seq:    seq,
		Key:    string(randBytes(r, 40)),
		Op:     Op(1 + r.Intn(3)),
		Time:   hlc.Timestamp{Wall: r.Int63(), Logical: r.Uint32()},
	}
	switch e.Op {
	case OpPut, OpDelete:
		e.Dot = vclock.Dot{Node: origin, Counter: 1 + uint64(r.Intn(1000))}
		e.Context = randVector(r)
		if e.Op == OpPut {
			e.Value = randBytes(r, 300)
		} else {
			e.Counter = randCounter(r)
		}
	case OpIncr:
		e.Counter = vclock.Counter{{Node: origin, P: r.Uint64(), N: r.Uint64()}}
	}
	return e
}

func randMessage(r *rand.Rand) Message {
	m := Message{
		Type: MsgType(1 + r.Intn(4)),
		From: randNodes[r.Intn(len(randNodes))],
		To:   randNodes[r.Intn(len(randNodes))],
		Seq:  r.Uint64() >> uint(r.Intn(64)),
	}
	if m.Type == MsgEntries {
		seq := 1 + uint64(r.Intn(1000))
		for i := range r.Intn(20) {
			m.Entries = append(m.Entries, randEntry(r, m.From, seq+uint64(i)))
		}
	}
	return m
}
