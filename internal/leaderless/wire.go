package leaderless

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/trireme-db/trireme/internal/vclock"
)

// The peer wire codec: how messages travel between the leaderless engine's
// nodes. Integers are minimal unsigned varints, node ids and byte strings a
// uvarint length then the bytes, a flag one byte (0 or 1), and vectors, sets
// and timestamps use package vclock's (and hlc's) encodings. A message is
//
//	version (wireVersion, 1), type (1 byte), from (node), to (node), fields
//
// where fields are exactly the fields of the message's type (typeFields),
// in this order:
//
//	ReqID    uvarint
//	Key      length 1..MaxKeyLen, bytes
//	Context  vclock.Vector
//	Value    length, bytes (empty when Delete)
//	Delete   flag
//	Time     12-byte hlc.Timestamp
//	Set      vclock.Set
//	Found    flag
//	HintFor  length 0..vclock.MaxNodeIDLen, bytes (empty: the receiver's own copy)
//	Err      1 byte, a Refuse code (RefuseNone..RefuseStopped)
//	OK       flag
//	Depth    uvarint, MerkleDepth (both ends of an exchange must agree)
//	Hashes   length 8 x 2^Depth, bytes: each leaf hash big-endian
//	Buckets  count (<= MaxBuckets), count x uvarint index: below
//	         2^MerkleDepth, strictly increasing
//	Items    count (<= MaxItems), count x (key (length 1..MaxKeyLen, bytes),
//	         vclock.Set)
//	Reply    flag
//
// The type says which fields are present, so a field another type uses has
// no place in the encoding: AppendMessage leaves it out (the receiver's
// core would ignore it), and bytes a decoder does not expect are trailing
// bytes, refused. Every value has one encoding, so a decoder that accepts
// an encoding re-encodes it to the same bytes. The decoder checks the
// structure and the wire bounds; Step checks the protocol (membership, who
// may send what).

// MaxItems bounds the items of one MsgBuckets (the keys an anti-entropy
// reply carries). Part of the wire format's bounds.
const MaxItems = 4096

// MaxBuckets bounds the bucket indexes of one MsgBuckets: every leaf of a
// tree of depth MerkleDepth, each at most once. Part of the wire format's
// bounds.
const MaxBuckets = 1 << MerkleDepth

// wireVersion is the format version byte in front of each message. Part of
// the format.
const wireVersion byte = 1

// minItemLen is the smallest item: key length and one key byte, then an
// empty set (context count, sibling count). Part of the format's bounds.
const minItemLen = 1 + 1 + 1 + 1

// fieldSet is a set of Message fields, one bit each: the fields besides
// Type, From and To (which every message carries).
type fieldSet uint32

const (
	fReqID fieldSet = 1 << iota
	fKey
	fContext
	fValue
	fDelete
	fTime
	fSet
	fFound
	fHintFor
	fErr
	fOK
	fDepth
	fHashes
	fBuckets
	fItems
	fReply
)

// typeFields is, by type, the fields a message of that type carries (the
// field comments of Message). Part of the format: adding a field to a type
// changes its encoding.
var typeFields = [...]fieldSet{
	MsgMint:     fReqID | fKey | fContext | fValue | fDelete | fTime,
	MsgMintAck:  fReqID | fKey | fSet | fErr,
	MsgStore:    fReqID | fKey | fSet | fHintFor,
	MsgStoreAck: fReqID | fErr,
	MsgRead:     fReqID | fKey,
	MsgReadAck:  fReqID | fKey | fSet | fFound,
	MsgPing:     0,
	MsgTree:     fDepth | fHashes,
	MsgBuckets:  fBuckets | fItems | fReply,
	MsgGCProbe:  fReqID | fKey | fSet,
	MsgGCVote:   fReqID | fKey | fOK,
	// GCDrop carries a ReqID (Message: "GC*") though the core sends 0 and
	// nothing answers it: the slot keeps the GC messages alike.
	MsgGCDrop: fReqID | fKey | fSet,
}

// knownType reports whether t is a message type of this format.
func knownType(t MsgType) bool { return t >= MsgMint && t <= MsgGCDrop }

// fieldsOf returns the fields a message of type t carries (none for an
// unknown type).
func fieldsOf(t MsgType) fieldSet {
	if !knownType(t) {
		return 0
	}
	return typeFields[t]
}

// AppendMessage appends m's encoding to b: the fields of m's type only. It
// encodes any message; DecodeMessage refuses the malformed ones.
func AppendMessage(b []byte, m *Message) []byte {
	b = append(b, wireVersion, byte(m.Type))
	b = appendString(b, m.From)
	b = appendString(b, m.To)
	has := fieldsOf(m.Type)
	if has&fReqID != 0 {
		b = binary.AppendUvarint(b, m.ReqID)
	}
	if has&fKey != 0 {
		b = appendString(b, m.Key)
	}
	if has&fContext != 0 {
		b = vclock.AppendVector(b, m.Context)
	}
	if has&fValue != 0 {
		b = appendString(b, m.Value)
	}
	if has&fDelete != 0 {
		b = appendFlag(b, m.Delete)
	}
	if has&fTime != 0 {
		b = m.Time.Append(b)
	}
	if has&fSet != 0 {
		b = vclock.AppendSet(b, m.Set)
	}
	if has&fFound != 0 {
		b = appendFlag(b, m.Found)
	}
	if has&fHintFor != 0 {
		b = appendString(b, m.HintFor)
	}
	if has&fErr != 0 {
		b = append(b, m.Err)
	}
	if has&fOK != 0 {
		b = appendFlag(b, m.OK)
	}
	if has&fDepth != 0 {
		b = binary.AppendUvarint(b, uint64(m.Depth))
	}
	if has&fHashes != 0 {
		b = binary.AppendUvarint(b, 8*uint64(len(m.Hashes)))
		for _, h := range m.Hashes {
			b = binary.BigEndian.AppendUint64(b, h)
		}
	}
	if has&fBuckets != 0 {
		b = binary.AppendUvarint(b, uint64(len(m.Buckets)))
		for _, x := range m.Buckets {
			b = binary.AppendUvarint(b, uint64(x))
		}
	}
	if has&fItems != 0 {
		b = binary.AppendUvarint(b, uint64(len(m.Items)))
		for i := range m.Items {
			b = appendString(b, m.Items[i].Key)
			b = vclock.AppendSet(b, m.Items[i].Set)
		}
	}
	if has&fReply != 0 {
		b = appendFlag(b, m.Reply)
	}
	return b
}

// DecodeMessage decodes exactly one message that fills b. Errors wrap
// ErrMalformed. The message does not alias b; its empty byte strings and
// slices are nil.
func DecodeMessage(b []byte) (Message, error) {
	d := decoder{r: vclock.NewReader(b)}
	m := d.message()
	if d.err == nil {
		if err := d.r.Finish(); err != nil {
			d.fail("%w", err)
		}
	}
	if d.err != nil {
		return Message{}, fmt.Errorf("%w: %v message: %w", ErrMalformed, m.Type, d.err)
	}
	return m, nil
}

// decoder reads a message with a vclock.Reader, whose error is sticky, and
// keeps the first error of either kind: the Reader's (a short or malformed
// encoding) or its own (a value out of the format's bounds).
type decoder struct {
	r   *vclock.Reader
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// ok reports whether nothing failed so far, taking the Reader's error.
func (d *decoder) ok() bool {
	if d.err == nil && d.r.Err() != nil {
		d.err = d.r.Err()
	}
	return d.err == nil
}

// message reads the fields typeFields gives m's type. On failure it returns
// what it has read (for the error's type name), never to be used.
func (d *decoder) message() Message {
	r := d.r
	version, typ := r.Byte(), MsgType(r.Byte())
	m := Message{Type: typ}
	if !d.ok() {
		return m
	}
	if version != wireVersion {
		d.fail("format version %d (this build reads %d)", version, wireVersion)
		return m
	}
	if !knownType(typ) {
		d.fail("unknown type")
		return m
	}
	m.From, m.To = r.Node(), r.Node()
	has := typeFields[typ]
	if has&fReqID != 0 {
		m.ReqID = r.Uvarint()
	}
	if has&fKey != 0 {
		m.Key = d.key("key")
	}
	if has&fContext != 0 {
		m.Context = r.Vector() // validated by the Reader
	}
	if has&fValue != 0 {
		m.Value = clone(r.Bytes())
	}
	if has&fDelete != 0 {
		m.Delete = d.flag("delete")
		if m.Delete && len(m.Value) > 0 {
			// The minted sibling would be a tombstone with a value,
			// which no Set holds.
			d.fail("delete with a value")
		}
	}
	if has&fTime != 0 {
		m.Time = r.Timestamp()
	}
	if has&fSet != 0 {
		m.Set = d.set()
	}
	if has&fFound != 0 {
		m.Found = d.flag("found")
	}
	if has&fHintFor != 0 {
		if h := r.Bytes(); len(h) > vclock.MaxNodeIDLen {
			d.fail("hint for a node id of %d bytes (max %d)", len(h), vclock.MaxNodeIDLen)
		} else {
			m.HintFor = string(h)
		}
	}
	if has&fErr != 0 {
		switch m.Err = r.Byte(); m.Err {
		case RefuseNone, RefuseHintsFull, RefuseNotHome, RefuseStopped:
		default:
			d.fail("unknown refusal code %d", m.Err)
		}
	}
	if has&fOK != 0 {
		m.OK = d.flag("ok")
	}
	if has&fDepth != 0 {
		// Both ends of an exchange must use the same depth: a tree of any
		// other depth is not one this build can compare.
		if depth := r.Uvarint(); d.ok() && depth != MerkleDepth {
			d.fail("tree depth %d (want %d)", depth, MerkleDepth)
		}
		m.Depth = MerkleDepth
	}
	if has&fHashes != 0 {
		m.Hashes = d.hashes(m.Depth)
	}
	if has&fBuckets != 0 {
		m.Buckets = d.buckets()
	}
	if has&fItems != 0 {
		m.Items = d.items()
	}
	if has&fReply != 0 {
		m.Reply = d.flag("reply")
	}
	d.ok()
	return m
}

// key reads a key of 1..MaxKeyLen bytes, copied out of the input.
func (d *decoder) key(what string) []byte {
	k := d.r.Bytes()
	if !d.ok() {
		return nil
	}
	if len(k) == 0 || len(k) > MaxKeyLen {
		d.fail("%s of %d bytes (want 1..%d)", what, len(k), MaxKeyLen)
		return nil
	}
	return clone(k)
}

// flag reads a one-byte boolean: 0 or 1, so that it has one encoding.
func (d *decoder) flag(what string) bool {
	switch f := d.r.Byte(); f {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("%s flag %#x", what, f)
		return false
	}
}

// set reads a Set (the Reader validates it: a sorted, counter-positive
// context covering unique, sorted siblings, no tombstone with a value) and
// copies its sibling values out of the input, which the Reader's alias.
func (d *decoder) set() vclock.Set {
	s := d.r.Set()
	if !d.ok() {
		return vclock.Set{}
	}
	for i := range s.Siblings {
		s.Siblings[i].Value = clone(s.Siblings[i].Value)
	}
	return s
}

// hashes reads the 2^depth leaf hashes of a tree (depth already checked).
func (d *decoder) hashes(depth int) []uint64 {
	raw := d.r.Bytes()
	if !d.ok() {
		return nil
	}
	if want := 8 << depth; len(raw) != want {
		d.fail("%d bytes of hashes (want %d: 8 x 2^%d)", len(raw), want, depth)
		return nil
	}
	hs := make([]uint64, len(raw)/8)
	for i := range hs {
		hs[i] = binary.BigEndian.Uint64(raw[8*i:])
	}
	return hs
}

// buckets reads bucket indexes: leaves of a tree of depth MerkleDepth,
// strictly increasing (so each at most once, and at most MaxBuckets).
func (d *decoder) buckets() []int {
	n := d.r.Count(1)
	if !d.ok() || n == 0 {
		return nil
	}
	if n > MaxBuckets {
		d.fail("%d buckets (max %d)", n, MaxBuckets)
		return nil
	}
	out := make([]int, 0, n)
	for range n {
		x := d.r.Uvarint()
		if !d.ok() {
			return nil
		}
		if x >= 1<<MerkleDepth {
			d.fail("bucket %d out of range (depth %d)", x, MerkleDepth)
			return nil
		}
		if len(out) > 0 && int(x) <= out[len(out)-1] {
			d.fail("bucket %d after %d (want strictly increasing)", x, out[len(out)-1])
			return nil
		}
		out = append(out, int(x))
	}
	return out
}

// items reads at most MaxItems items.
func (d *decoder) items() []Item {
	n := d.r.Count(minItemLen)
	if !d.ok() || n == 0 {
		return nil
	}
	if n > MaxItems {
		d.fail("%d items (max %d)", n, MaxItems)
		return nil
	}
	out := make([]Item, 0, n)
	for i := range n {
		it := Item{Key: d.key("item key"), Set: d.set()}
		if !d.ok() {
			d.err = fmt.Errorf("item %d: %w", i, d.err)
			return nil
		}
		out = append(out, it)
	}
	return out
}

// clone copies b out of the input; empty is nil, so that a decoded message
// has one form.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

// appendString appends a uvarint length and s: the form of node ids and of
// byte strings.
func appendString[S ~string | ~[]byte](b []byte, s S) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFlag(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}
