package leaderless

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

// messageEqual compares messages field by field; nil and empty slices are
// alike.
func messageEqual(a, b Message) bool {
	return a.Type == b.Type && a.From == b.From && a.To == b.To && a.ReqID == b.ReqID &&
		bytes.Equal(a.Key, b.Key) && slices.Equal(a.Context, b.Context) && bytes.Equal(a.Value, b.Value) &&
		a.Delete == b.Delete && a.Time == b.Time && a.Set.Equal(b.Set) && a.Found == b.Found &&
		a.HintFor == b.HintFor && a.Err == b.Err && a.OK == b.OK && a.Depth == b.Depth &&
		slices.Equal(a.Hashes, b.Hashes) && slices.Equal(a.Buckets, b.Buckets) &&
		slices.EqualFunc(a.Items, b.Items, func(x, y Item) bool { return bytes.Equal(x.Key, y.Key) && x.Set.Equal(y.Set) }) &&
		a.Reply == b.Reply
}

// setFields returns the fields of m that are not zero.
func setFields(m *Message) fieldSet {
	var f fieldSet
	add := func(set bool, x fieldSet) {
		if set {
			f |= x
		}
	}
	add(m.ReqID != 0, fReqID)
	add(len(m.Key) > 0, fKey)
	add(len(m.Context) > 0, fContext)
	add(len(m.Value) > 0, fValue)
	add(m.Delete, fDelete)
	add(!m.Time.IsZero(), fTime)
	add(len(m.Set.Context) > 0 || len(m.Set.Siblings) > 0, fSet)
	add(m.Found, fFound)
	add(m.HintFor != "", fHintFor)
	add(m.Err != 0, fErr)
	add(m.OK, fOK)
	add(m.Depth != 0, fDepth)
	add(len(m.Hashes) > 0, fHashes)
	add(len(m.Buckets) > 0, fBuckets)
	add(len(m.Items) > 0, fItems)
	add(m.Reply, fReply)
	return f
}

// keepFields returns m with the fields not in f zeroed.
func keepFields(m Message, f fieldSet) Message {
	out := Message{Type: m.Type, From: m.From, To: m.To}
	if f&fReqID != 0 {
		out.ReqID = m.ReqID
	}
	if f&fKey != 0 {
		out.Key = m.Key
	}
	if f&fContext != 0 {
		out.Context = m.Context
	}
	if f&fValue != 0 {
		out.Value = m.Value
	}
	if f&fDelete != 0 {
		out.Delete = m.Delete
	}
	if f&fTime != 0 {
		out.Time = m.Time
	}
	if f&fSet != 0 {
		out.Set = m.Set
	}
	if f&fFound != 0 {
		out.Found = m.Found
	}
	if f&fHintFor != 0 {
		out.HintFor = m.HintFor
	}
	if f&fErr != 0 {
		out.Err = m.Err
	}
	if f&fOK != 0 {
		out.OK = m.OK
	}
	if f&fDepth != 0 {
		out.Depth = m.Depth
	}
	if f&fHashes != 0 {
		out.Hashes = m.Hashes
	}
	if f&fBuckets != 0 {
		out.Buckets = m.Buckets
	}
	if f&fItems != 0 {
		out.Items = m.Items
	}
	if f&fReply != 0 {
		out.Reply = m.Reply
	}
	return out
}

// Realistic values: actors are node ids plus an incarnation, as Config.Actor.
var (
	testTime = hlc.Timestamp{Wall: 1_700_000_000_123_456_789, Logical: 3}
	testCtx  = vclock.Vector{{Node: "n1@7", Counter: 4}, {Node: "n2@3", Counter: 2}}
	// testSet: two concurrent values.
	testSet = vclock.Set{
		Context: vclock.Vector{{Node: "n1@7", Counter: 5}, {Node: "n2@3", Counter: 3}},
		Siblings: []vclock.Sibling{
			{Dot: vclock.Dot{Node: "n1@7", Counter: 5}, Time: testTime, Value: []byte("blue")},
			{Dot: vclock.Dot{Node: "n2@3", Counter: 3}, Time: testTime.Next(), Value: []byte("green")},
		},
	}
	// testTomb: a deleted key.
	testTomb = vclock.Set{
		Context:  vclock.Vector{{Node: "n1@7", Counter: 6}, {Node: "n2@3", Counter: 3}},
		Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: "n1@7", Counter: 6}, Time: testTime.Next().Next(), Deleted: true}},
	}
)

// testHashes returns a tree's leaf level: mostly empty buckets, some full.
func testHashes(seed int64) []uint64 {
	r := rand.New(rand.NewSource(seed))
	hs := make([]uint64, 1<<MerkleDepth)
	for i := range hs {
		if r.Intn(4) == 0 {
			hs[i] = r.Uint64()
		}
	}
	hs[len(hs)-1] = math.MaxUint64
	return hs
}

func testMessages() []struct {
	name string
	m    Message
} {
	key := []byte("user:42/profile")
	items := []Item{
		{Key: []byte("a"), Set: testSet},
		{Key: []byte("user:9"), Set: testTomb},
		{Key: []byte{0, 0xff, 1}, Set: vclock.Set{Context: vclock.Vector{{Node: "n3@1", Counter: 1}}}},
	}
	all := make([]int, MaxBuckets)
	for i := range all {
		all[i] = i
	}
	long := strings.Repeat("n", vclock.MaxNodeIDLen)
	return []struct {
		name string
		m    Message
	}{
		{"mint", Message{Type: MsgMint, From: "n1", To: "n2", ReqID: 17, Key: key, Context: testCtx, Value: []byte(`{"name":"ada"}`), Time: testTime}},
		{"mint blind empty value", Message{Type: MsgMint, From: "n1", To: "n2", ReqID: 1, Key: key, Time: testTime}},
		{"mint delete", Message{Type: MsgMint, From: "n1", To: "n2", ReqID: math.MaxUint64, Key: key, Context: testCtx, Delete: true, Time: testTime}},
		{"mint large value", Message{Type: MsgMint, From: "n1", To: "n2", ReqID: 3, Key: key, Value: bytes.Repeat([]byte("0123456789abcdef"), 1<<14), Time: testTime}},
		{"mint longest key", Message{Type: MsgMint, From: "n1", To: "n2", ReqID: 4, Key: bytes.Repeat([]byte("k"), MaxKeyLen), Value: []byte("v"), Time: testTime}},
		{"mint-ack", Message{Type: MsgMintAck, From: "n2", To: "n1", ReqID: 17, Key: key, Set: testSet}},
		{"mint-ack not home", Message{Type: MsgMintAck, From: "n2", To: "n1", ReqID: 17, Key: key, Err: RefuseNotHome}},
		{"mint-ack stopped", Message{Type: MsgMintAck, From: "n2", To: "n1", ReqID: 17, Key: key, Err: RefuseStopped}},
		{"store", Message{Type: MsgStore, From: "n1", To: "n3", ReqID: 18, Key: key, Set: testSet}},
		{"store hint", Message{Type: MsgStore, From: "n1", To: "n4", ReqID: 19, Key: key, Set: testSet, HintFor: "n3"}},
		{"store hint longest node id", Message{Type: MsgStore, From: long, To: long, ReqID: 19, Key: key, Set: testSet, HintFor: long}},
		{"store repair", Message{Type: MsgStore, From: "n1", To: "n3", Key: key, Set: testTomb}},
		{"store-ack", Message{Type: MsgStoreAck, From: "n3", To: "n1", ReqID: 18}},
		{"store-ack hints full", Message{Type: MsgStoreAck, From: "n4", To: "n1", ReqID: 19, Err: RefuseHintsFull}},
		{"read", Message{Type: MsgRead, From: "n1", To: "n2", ReqID: 20, Key: key}},
		{"read-ack", Message{Type: MsgReadAck, From: "n2", To: "n1", ReqID: 20, Key: key, Set: testSet, Found: true}},
		{"read-ack not found", Message{Type: MsgReadAck, From: "n2", To: "n1", ReqID: 20, Key: key}},
		{"ping", Message{Type: MsgPing, From: "n1", To: "n2"}},
		{"tree", Message{Type: MsgTree, From: "n1", To: "n2", Depth: MerkleDepth, Hashes: testHashes(1)}},
		{"tree empty", Message{Type: MsgTree, From: "n1", To: "n2", Depth: MerkleDepth, Hashes: make([]uint64, 1<<MerkleDepth)}},
		{"buckets", Message{Type: MsgBuckets, From: "n2", To: "n1", Buckets: []int{0, 7, 512, MaxBuckets - 1}, Items: items, Reply: true}},
		{"buckets answer", Message{Type: MsgBuckets, From: "n1", To: "n2", Buckets: []int{7}, Items: items[:1]}},
		{"buckets nothing", Message{Type: MsgBuckets, From: "n2", To: "n1", Reply: true}},
		{"buckets all", Message{Type: MsgBuckets, From: "n2", To: "n1", Buckets: all, Reply: true}},
		{"gc-probe", Message{Type: MsgGCProbe, From: "n1", To: "n2", ReqID: 21, Key: key, Set: testTomb}},
		{"gc-vote yes", Message{Type: MsgGCVote, From: "n2", To: "n1", ReqID: 21, Key: key, OK: true}},
		{"gc-vote no", Message{Type: MsgGCVote, From: "n2", To: "n1", ReqID: 21, Key: key}},
		{"gc-drop", Message{Type: MsgGCDrop, From: "n1", To: "n3", Key: key, Set: testTomb}},
		{"gc-drop with req id", Message{Type: MsgGCDrop, From: "n1", To: "n3", ReqID: 22, Key: []byte("ключ/🔑"), Set: testTomb}},
	}
}

func TestWireRoundTrip(t *testing.T) {
	covered := map[MsgType]bool{}
	for _, tc := range testMessages() {
		t.Run(tc.name, func(t *testing.T) {
			covered[tc.m.Type] = true
			if f := setFields(&tc.m) &^ fieldsOf(tc.m.Type); f != 0 {
				t.Fatalf("test message sets fields %#x its type does not carry", f)
			}
			b := AppendMessage([]byte("prefix"), &tc.m)
			if string(b[:6]) != "prefix" {
				t.Fatalf("AppendMessage changed the bytes before it")
			}
			got, err := DecodeMessage(b[6:])
			if err != nil {
				t.Fatalf("DecodeMessage: %v", err)
			}
			if !messageEqual(got, tc.m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.m)
			}
			if again := AppendMessage(nil, &got); !bytes.Equal(again, b[6:]) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
	for typ := MsgMint; typ <= MsgGCDrop; typ++ {
		if !covered[typ] {
			t.Errorf("no round trip of a %v message", typ)
		}
	}
}

// TestWireEmptyIsNil: empty byte strings and slices decode as nil, so a
// decoded message re-encodes and compares the one way.
func TestWireEmptyIsNil(t *testing.T) {
	m := Message{Type: MsgMint, From: "n1", To: "n2", ReqID: 1, Key: []byte("k"), Context: vclock.Vector{}, Value: []byte{}}
	got, err := DecodeMessage(AppendMessage(nil, &m))
	if err != nil {
		t.Fatal(err)
	}
	if got.Context != nil || got.Value != nil {
		t.Fatalf("empty context and value decode as %#v, %#v; want nil", got.Context, got.Value)
	}
	m = Message{Type: MsgBuckets, From: "n1", To: "n2", Buckets: []int{}, Items: []Item{}}
	if got, err = DecodeMessage(AppendMessage(nil, &m)); err != nil {
		t.Fatal(err)
	}
	if got.Buckets != nil || got.Items != nil {
		t.Fatalf("empty buckets and items decode as %#v, %#v; want nil", got.Buckets, got.Items)
	}
}

// TestWireNoAlias: a decoded message keeps its bytes when the input buffer
// is reused (the runtime reads frames into one buffer).
func TestWireNoAlias(t *testing.T) {
	for _, tc := range testMessages() {
		b := AppendMessage(nil, &tc.m)
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i := range b {
			b[i] = 0xa5
		}
		if !messageEqual(got, tc.m) {
			t.Fatalf("%s: decoded message changed with its input:\n got %+v\nwant %+v", tc.name, got, tc.m)
		}
	}
}

// TestWireForeignFieldsNotSent: a field its type does not carry has no
// place in the encoding, so it is not sent and never decoded.
func TestWireForeignFieldsNotSent(t *testing.T) {
	full := Message{
		From: "n1", To: "n2", ReqID: 5, Key: []byte("k"), Context: testCtx, Value: []byte("v"),
		Delete: true, Time: testTime, Set: testSet, Found: true, HintFor: "n3", Err: RefuseStopped,
		OK: true, Depth: MerkleDepth, Hashes: testHashes(2), Buckets: []int{1, 2},
		Items: []Item{{Key: []byte("i"), Set: testSet}}, Reply: true,
	}
	for typ := MsgMint; typ <= MsgGCDrop; typ++ {
		m := full
		m.Type = typ
		if typ == MsgMint {
			m.Value = nil // a delete carries no value
		}
		b := AppendMessage(nil, &m)
		own := keepFields(m, fieldsOf(typ))
		if want := AppendMessage(nil, &own); !bytes.Equal(b, want) {
			t.Fatalf("%v: foreign fields changed the encoding", typ)
		}
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if f := setFields(&got) &^ fieldsOf(typ); f != 0 {
			t.Fatalf("%v: decoded foreign fields %#x", typ, f)
		}
		if !messageEqual(got, own) {
			t.Fatalf("%v:\n got %+v\nwant %+v", typ, got, own)
		}
	}
}

// TestWireBounds: the largest values the format allows decode.
func TestWireBounds(t *testing.T) {
	items := make([]Item, MaxItems)
	for i := range items {
		items[i] = Item{Key: fmt.Appendf(nil, "key-%d", i), Set: testTomb}
	}
	all := make([]int, MaxBuckets)
	for i := range all {
		all[i] = i
	}
	for _, m := range []Message{
		{Type: MsgBuckets, From: "n1", To: "n2", Buckets: all, Items: items, Reply: true},
		{Type: MsgRead, From: "n1", To: "n2", ReqID: math.MaxUint64, Key: bytes.Repeat([]byte{0xff}, MaxKeyLen)},
		{Type: MsgStore, From: "n1", To: "n2", Key: []byte("k"), HintFor: strings.Repeat("h", vclock.MaxNodeIDLen)},
		{Type: MsgMint, From: "n1", To: "n2", Key: []byte("k"), Time: hlc.Timestamp{Wall: math.MaxInt64, Logical: math.MaxUint32}},
	} {
		got, err := DecodeMessage(AppendMessage(nil, &m))
		if err != nil {
			t.Fatalf("%v: %v", m.Type, err)
		}
		if !messageEqual(got, m) {
			t.Fatalf("%v: round trip differs", m.Type)
		}
	}
}

// Builders of hand-made encodings, for the refusals.
func uv(b []byte, u uint64) []byte { return binary.AppendUvarint(b, u) }

// head is a message up to its fields.
func head(typ MsgType) []byte {
	return appendString(appendString([]byte{wireVersion, byte(typ)}, "n1"), "n2")
}

func enc(m Message) []byte { return AppendMessage(nil, &m) }

func TestWireRefusals(t *testing.T) {
	byName := map[string]Message{}
	for _, tc := range testMessages() {
		byName[tc.name] = tc.m
	}
	// mod returns the encoding of the named test message changed by f.
	mod := func(name string, f func(m *Message)) []byte {
		m, ok := byName[name]
		if !ok {
			panic("no test message " + name)
		}
		f(&m)
		return enc(m)
	}
	// patch returns the encoding of the named test message with the byte
	// at i (from the end if negative) set to v.
	patch := func(name string, i int, v byte) []byte {
		b := enc(byName[name])
		if i < 0 {
			i += len(b)
		}
		b[i] = v
		return b
	}
	ping := enc(byName["ping"])
	bad := vclock.Set{Context: vclock.Vector{{Node: "n1@7", Counter: 1}}, Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: "n1@7", Counter: 2}}}}
	type refusal struct {
		name string
		b    []byte
	}
	tests := []refusal{
		// The header.
		{"empty", nil},
		{"version only", []byte{wireVersion}},
		{"version 0", append([]byte{0}, ping[1:]...)},
		{"version 2", append([]byte{2}, ping[1:]...)},
		{"type 0", append([]byte{wireVersion, 0}, ping[2:]...)},
		{"type 13", append([]byte{wireVersion, 13}, ping[2:]...)},
		{"type 255", append([]byte{wireVersion, 255}, ping[2:]...)},
		{"no from", []byte{wireVersion, byte(MsgPing)}},
		{"empty from", mod("ping", func(m *Message) { m.From = "" })},
		{"empty to", mod("ping", func(m *Message) { m.To = "" })},
		{"from too long", mod("ping", func(m *Message) { m.From = strings.Repeat("x", vclock.MaxNodeIDLen+1) })},
		{"to too long", mod("read", func(m *Message) { m.To = strings.Repeat("x", vclock.MaxNodeIDLen+1) })},
		// Fields of another type: bytes past the type's fields.
		{"ping with a req id", uv(head(MsgPing), 7)},
		{"store-ack with a key", appendString(enc(byName["store-ack"]), "k")},
		{"read with a set", vclock.AppendSet(enc(byName["read"]), testSet)},
		{"gc-vote with a set", vclock.AppendSet(enc(byName["gc-vote yes"]), testTomb)},
		{"tree with buckets", uv(uv(enc(byName["tree"]), 1), 3)},
		// Integers and lengths.
		{"non-minimal req id", append(append(head(MsgRead), 0x81, 0x00), enc(byName["read"])[len(head(MsgRead))+1:]...)},
		{"overlong req id", append(head(MsgRead), bytes.Repeat([]byte{0xff}, 11)...)},
		{"key length past the end", append(uv(uv(head(MsgRead), 1), 10), "short"...)},
		{"key length larger than the input", uv(uv(head(MsgRead), 1), 1<<62)},
		{"value length larger than the input", uv(uv(appendString(uv(head(MsgMint), 1), "k"), 0), 1<<40)},
		// Keys.
		{"item key empty", mod("buckets", func(m *Message) { m.Items = []Item{{Key: nil, Set: testSet}} })},
		{"item key too long", mod("buckets", func(m *Message) { m.Items = []Item{{Key: make([]byte, MaxKeyLen+1)}} })},
		// The write.
		{"delete with a value", mod("mint delete", func(m *Message) { m.Value = []byte("v") })},
		{"delete flag 2", patch("mint", -hlc.EncodedLen-1, 2)},
		{"negative time", mod("mint", func(m *Message) { m.Time.Wall = -1 })},
		{"time cut short", enc(byName["mint"])[:len(enc(byName["mint"]))-1]},
		{"context unsorted", mod("mint", func(m *Message) { m.Context = vclock.Vector{testCtx[1], testCtx[0]} })},
		{"context counter 0", mod("mint", func(m *Message) { m.Context = vclock.Vector{{Node: "n1@7", Counter: 0}} })},
		{"context empty node", mod("mint", func(m *Message) { m.Context = vclock.Vector{{Node: "", Counter: 1}} })},
		{"context count larger than the input", uv(appendString(uv(head(MsgMint), 1), "k"), 1<<40)},
		// Sets.
		{"set sibling not covered", mod("store", func(m *Message) { m.Set = bad })},
		{"set siblings unsorted", mod("store", func(m *Message) {
			m.Set = vclock.Set{Context: testSet.Context, Siblings: []vclock.Sibling{testSet.Siblings[1], testSet.Siblings[0]}}
		})},
		{"set tombstone with a value", mod("gc-probe", func(m *Message) {
			s := testTomb
			s.Siblings = []vclock.Sibling{s.Siblings[0]}
			s.Siblings[0].Value = []byte("x")
			m.Set = s
		})},
		{"set sibling flags 2", func() []byte {
			b := enc(byName["gc-drop"])
			// The tombstone is the set's last sibling: flags, then an
			// empty value.
			b[len(b)-2] = 2
			return b
		}()},
		{"sibling count larger than the input", uv(vclock.AppendVector(appendString(uv(head(MsgStore), 1), "k"), testCtx), 1<<30)},
		{"item set invalid", mod("buckets", func(m *Message) { m.Items = []Item{{Key: []byte("k"), Set: bad}} })},
		// Flags and codes.
		{"found flag 2", patch("read-ack", -1, 2)},
		{"ok flag 2", patch("gc-vote yes", -1, 2)},
		{"ok flag 0xff", patch("gc-vote no", -1, 0xff)},
		{"reply flag 2", patch("buckets", -1, 2)},
		{"mint-ack refusal code 4", patch("mint-ack not home", -1, 4)},
		{"store-ack refusal code 255", patch("store-ack", -1, 255)},
		{"hint for too long", mod("store hint", func(m *Message) { m.HintFor = strings.Repeat("h", vclock.MaxNodeIDLen+1) })},
		// Trees.
		{"tree depth 0", mod("tree", func(m *Message) { m.Depth, m.Hashes = 0, []uint64{0} })},
		{"tree depth 9", mod("tree", func(m *Message) { m.Depth, m.Hashes = MerkleDepth-1, m.Hashes[:1<<(MerkleDepth-1)] })},
		{"tree depth 11", mod("tree", func(m *Message) { m.Depth, m.Hashes = MerkleDepth+1, append(m.Hashes, m.Hashes...) })},
		{"tree depth huge", mod("tree", func(m *Message) { m.Depth = math.MaxInt })},
		{"tree depth negative", mod("tree", func(m *Message) { m.Depth = -MerkleDepth })},
		{"tree no hashes", mod("tree", func(m *Message) { m.Hashes = nil })},
		{"tree one hash short", mod("tree", func(m *Message) { m.Hashes = m.Hashes[:len(m.Hashes)-1] })},
		{"tree one hash over", mod("tree", func(m *Message) { m.Hashes = append(m.Hashes, 1) })},
		{"tree hash bytes not a multiple of 8", append(uv(uv(head(MsgTree), MerkleDepth), 8<<MerkleDepth+1), make([]byte, 8<<MerkleDepth+1)...)},
		{"tree hash length larger than the input", uv(uv(head(MsgTree), MerkleDepth), 1<<50)},
		// Buckets and items.
		{"bucket out of range", mod("buckets answer", func(m *Message) { m.Buckets = []int{MaxBuckets} })},
		{"bucket far out of range", mod("buckets answer", func(m *Message) { m.Buckets = []int{0, 1 << 40} })},
		{"bucket negative", mod("buckets answer", func(m *Message) { m.Buckets = []int{-1} })},
		{"bucket repeated", mod("buckets answer", func(m *Message) { m.Buckets = []int{3, 3} })},
		{"buckets decreasing", mod("buckets answer", func(m *Message) { m.Buckets = []int{0, 9, 5} })},
		{"too many buckets", mod("buckets all", func(m *Message) { m.Buckets = append(m.Buckets, MaxBuckets) })},
		{"bucket count larger than the input", uv(head(MsgBuckets), 1<<40)},
		{"bucket count 2 with one bucket", uv(uv(head(MsgBuckets), 2), 5)},
		{"too many items", mod("buckets", func(m *Message) {
			m.Items = make([]Item, MaxItems+1)
			for i := range m.Items {
				m.Items[i].Key = []byte("k")
			}
		})},
		{"item count larger than the input", uv(uv(head(MsgBuckets), 0), 1<<40)},
		{"item count 2 with one item", append(appendString(uv(uv(head(MsgBuckets), 0), 2), "k"), 0, 0, 0)},
	}
	// Every message: one byte more; every key-carrying type: an empty or
	// too long key.
	keyed := map[MsgType]bool{}
	for _, tc := range testMessages() {
		if tc.m.Type == MsgTree && tc.name != "tree" || len(tc.m.Value) > 1<<10 || len(tc.m.Key) > 1<<10 {
			continue
		}
		tests = append(tests, refusal{tc.name + ": trailing byte", append(enc(tc.m), 0)})
		if fieldsOf(tc.m.Type)&fKey != 0 && !keyed[tc.m.Type] {
			keyed[tc.m.Type] = true
			m := tc.m
			m.Key = nil
			tests = append(tests, refusal{tc.name + ": empty key", enc(m)})
			m.Key = make([]byte, MaxKeyLen+1)
			tests = append(tests, refusal{tc.name + ": key too long", enc(m)})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeMessage(tc.b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v (%+v), want ErrMalformed", err, m)
			}
			if !messageEqual(m, Message{}) {
				t.Fatalf("a refused message decoded as %+v", m)
			}
			t.Log(err)
		})
	}
}

// TestWireTruncation cuts valid encodings at every byte offset: each cut is
// refused (an encoding is never a prefix of another).
func TestWireTruncation(t *testing.T) {
	for _, tc := range testMessages() {
		if len(tc.m.Value) > 1<<10 || len(tc.m.Key) > 1<<10 {
			continue
		}
		b := enc(tc.m)
		for n := range len(b) {
			if _, err := DecodeMessage(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut at %d of %d bytes: got %v, want ErrMalformed", tc.name, n, len(b), err)
			}
		}
	}
}

// allocated returns the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBound is what decoding n bytes may allocate: a small multiple of n
// (an Item or a Sibling is about 72 bytes from at least 4 or 16 bytes of
// input) and some slack for the runtime's own allocations and the error.
func allocBound(n int) uint64 { return 32*uint64(n) + 64<<10 }

// TestWireAllocBound: counts and lengths the input cannot back allocate
// nothing for them.
func TestWireAllocBound(t *testing.T) {
	for _, b := range [][]byte{
		uv(uv(head(MsgBuckets), 0), MaxItems),
		uv(uv(head(MsgBuckets), 0), 1<<62),
		uv(head(MsgBuckets), MaxBuckets),
		uv(uv(head(MsgTree), MerkleDepth), 8<<MerkleDepth),
		uv(appendString(uv(head(MsgMint), 1), "k"), 1<<40),
		uv(vclock.AppendVector(appendString(uv(head(MsgStore), 1), "k"), testCtx), 1<<30),
		uv(uv(head(MsgRead), 1), 1<<62),
	} {
		var err error
		if n := allocated(func() { _, err = DecodeMessage(b) }); n > allocBound(len(b)) {
			t.Errorf("%x: allocated %d bytes", b, n)
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: got %v, want ErrMalformed", b, err)
		}
	}
}

var randNodes = []string{"n1", "n2", "n3@9", "ñodo", strings.Repeat("z", vclock.MaxNodeIDLen)}

func randBytes(r *rand.Rand, min, max int) []byte {
	b := make([]byte, min+r.Intn(max-min+1))
	r.Read(b)
	if len(b) == 0 {
		return nil
	}
	return b
}

func randVector(r *rand.Rand) vclock.Vector {
	var v vclock.Vector
	for _, n := range slices.Sorted(slices.Values(randNodes)) {
		if r.Intn(3) == 0 {
			v = append(v, vclock.Entry{Node: n, Counter: 1 + uint64(r.Int63n(1<<uint(r.Intn(63))))})
		}
	}
	return v
}

// randSet returns a valid set: siblings under its context, sorted by dot.
func randSet(r *rand.Rand) vclock.Set {
	s := vclock.Set{Context: randVector(r)}
	for _, e := range s.Context {
		if r.Intn(2) == 0 {
			x := vclock.Sibling{Dot: vclock.Dot{Node: e.Node, Counter: 1 + uint64(r.Int63n(int64(min(e.Counter, math.MaxInt64))))},
				Time: hlc.Timestamp{Wall: r.Int63(), Logical: r.Uint32()}, Deleted: r.Intn(4) == 0}
			if !x.Deleted {
				x.Value = randBytes(r, 0, 40)
			}
			s.Siblings = append(s.Siblings, x)
		}
	}
	return s
}

// randMessage returns a random message that DecodeMessage accepts; small
// (no tree) if small.
func randMessage(r *rand.Rand, small bool) Message {
	m := Message{
		Type: MsgMint + MsgType(r.Intn(int(MsgGCDrop))),
		From: randNodes[r.Intn(len(randNodes))],
		To:   randNodes[r.Intn(len(randNodes))],
	}
	if small && m.Type == MsgTree {
		m.Type = MsgPing
	}
	has := fieldsOf(m.Type)
	if has&fReqID != 0 {
		m.ReqID = r.Uint64() >> uint(r.Intn(64))
	}
	if has&fKey != 0 {
		m.Key = randBytes(r, 1, 30)
	}
	if has&fContext != 0 {
		m.Context = randVector(r)
	}
	if has&fDelete != 0 {
		m.Delete = r.Intn(3) == 0
	}
	if has&fValue != 0 && !m.Delete {
		m.Value = randBytes(r, 0, 100)
	}
	if has&fTime != 0 {
		m.Time = hlc.Timestamp{Wall: r.Int63(), Logical: r.Uint32()}
	}
	if has&fSet != 0 {
		m.Set = randSet(r)
	}
	if has&fFound != 0 {
		m.Found = r.Intn(2) == 0
	}
	if has&fHintFor != 0 && r.Intn(2) == 0 {
		m.HintFor = randNodes[r.Intn(len(randNodes))]
	}
	if has&fErr != 0 {
		m.Err = uint8(r.Intn(int(RefuseStopped) + 1))
	}
	if has&fOK != 0 {
		m.OK = r.Intn(2) == 0
	}
	if has&fDepth != 0 {
		m.Depth = MerkleDepth
		m.Hashes = testHashes(r.Int63())
	}
	if has&fBuckets != 0 {
		for b := range MaxBuckets {
			if r.Intn(100) == 0 {
				m.Buckets = append(m.Buckets, b)
			}
		}
		for range r.Intn(6) {
			m.Items = append(m.Items, Item{Key: randBytes(r, 1, 20), Set: randSet(r)})
		}
		m.Reply = r.Intn(2) == 0
	}
	return m
}

// TestWireRandomRoundTrip: random valid messages round-trip; a random cut
// is refused; a flipped byte is refused or decodes to a message that
// re-encodes to exactly the flipped bytes. Never a panic.
func TestWireRandomRoundTrip(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewSource(seed))
		m := randMessage(r, false)
		b := enc(m)
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("seed %d: DecodeMessage of %+v: %v", seed, m, err)
		}
		if !messageEqual(got, m) {
			t.Fatalf("seed %d: round trip:\n got %+v\nwant %+v", seed, got, m)
		}
		if _, err := DecodeMessage(b[:r.Intn(len(b))]); err == nil {
			t.Fatalf("seed %d: a cut message decoded", seed)
		}
		flip := slices.Clone(b)
		flip[r.Intn(len(flip))] ^= byte(1 + r.Intn(255))
		if fm, err := DecodeMessage(flip); err == nil && !bytes.Equal(enc(fm), flip) {
			t.Fatalf("seed %d: a flipped message decoded to a non-canonical %+v", seed, fm)
		}
	}
}
