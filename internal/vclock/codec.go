package vclock

import (
	"encoding/binary"

	"github.com/trireme-db/trireme/internal/hlc"
)

// AppendVector appends v's encoding to b.
func AppendVector(b []byte, v Vector) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	for _, e := range v {
		b = appendNode(b, e.Node)
		b = binary.AppendUvarint(b, e.Counter)
	}
	return b
}

// AppendContext appends c's encoding to b.
func AppendContext(b []byte, c Context) []byte {
	return c.MaxTime.Append(AppendVector(b, c.Vector))
}

// AppendSet appends s's encoding to b.
func AppendSet(b []byte, s Set) []byte {
	b = AppendVector(b, s.Context)
	b = binary.AppendUvarint(b, uint64(len(s.Siblings)))
	for _, x := range s.Siblings {
		b = AppendSibling(b, x)
	}
	return b
}

// MinSiblingLen is the smallest encoding of a Sibling.
const MinSiblingLen = 4 + hlc.EncodedLen

// AppendSibling appends one sibling as a Set encodes it: its dot, time,
// deleted flag and value.
func AppendSibling(b []byte, x Sibling) []byte {
	b = appendNode(b, x.Dot.Node)
	b = binary.AppendUvarint(b, x.Dot.Counter)
	b = x.Time.Append(b)
	var flags byte
	if x.Deleted {
		flags = 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(x.Value)))
	return append(b, x.Value...)
}

// AppendCounter appends c's encoding to b.
func AppendCounter(b []byte, c Counter) []byte {
	b = binary.AppendUvarint(b, uint64(len(c)))
	for _, e := range c {
		b = appendNode(b, e.Node)
		for _, u := range [4]uint64{e.P, e.N, e.FloorP, e.FloorN} {
			b = binary.AppendUvarint(b, u)
		}
	}
	return b
}

func appendNode(b []byte, n string) []byte {
	b = binary.AppendUvarint(b, uint64(len(n)))
	return append(b, n...)
}

// DecodeVector decodes exactly one Vector.
func DecodeVector(b []byte) (Vector, error) {
	r := Reader{b: b}
	v := r.Vector()
	return v, r.Finish()
}

// DecodeContext decodes exactly one Context.
func DecodeContext(b []byte) (Context, error) {
	r := Reader{b: b}
	c := r.Context()
	return c, r.Finish()
}

// DecodeSet decodes exactly one Set and validates its invariants.
func DecodeSet(b []byte) (Set, error) {
	r := Reader{b: b}
	s := r.Set()
	return s, r.Finish()
}

// DecodeCounter decodes exactly one Counter.
func DecodeCounter(b []byte) (Counter, error) {
	r := Reader{b: b}
	c := r.Counter()
	return c, r.Finish()
}

// Reader decodes the vclock types from a byte slice, strictly. Its error is
// sticky: after the first failure every read returns zero values, and Err
// (or Finish) reports it. Other packages' decoders embed these types with it.
type Reader struct {
	b   []byte
	err error
}

// NewReader returns a Reader over b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err returns the first error.
func (r *Reader) Err() error { return r.err }

// Len returns the number of bytes left.
func (r *Reader) Len() int { return len(r.b) }

// Finish returns the first error, or ErrMalformed if bytes remain.
func (r *Reader) Finish() error {
	if r.err == nil && len(r.b) > 0 {
		r.fail(errorf("%d trailing bytes", len(r.b)))
	}
	return r.err
}

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

// Uvarint reads one minimal unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errorf("bad varint"))
		return 0
	}
	if n != len(binary.AppendUvarint(nil, u)) {
		r.fail(errorf("non-minimal varint"))
		return 0
	}
	r.b = r.b[n:]
	return u
}

// Count reads a count of items of at least minSize bytes each, bounded by
// the bytes left, before the caller allocates for them.
func (r *Reader) Count(minSize int) int {
	n := r.Uvarint()
	if r.err == nil && n > uint64(len(r.b)/minSize) {
		r.fail(errorf("count %d exceeds the %d bytes left", n, len(r.b)))
		return 0
	}
	return int(n)
}

// Bytes reads a uvarint length and that many bytes (a sub-slice of the input).
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(errorf("length %d exceeds the %d bytes left", n, len(r.b)))
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail(errorf("unexpected end"))
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Node reads a node id (1..MaxNodeIDLen bytes).
func (r *Reader) Node() string {
	n := r.Uvarint()
	if r.err != nil {
		return ""
	}
	if n == 0 || n > MaxNodeIDLen || n > uint64(len(r.b)) {
		r.fail(errorf("node id length %d (max %d, %d bytes left)", n, MaxNodeIDLen, len(r.b)))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Timestamp reads a 12-byte hlc.Timestamp.
func (r *Reader) Timestamp() hlc.Timestamp {
	if r.err != nil {
		return hlc.Timestamp{}
	}
	if len(r.b) < hlc.EncodedLen {
		r.fail(errorf("timestamp cut short"))
		return hlc.Timestamp{}
	}
	ts, err := hlc.Decode(r.b[:hlc.EncodedLen])
	if err != nil {
		r.fail(errorf("%v", err))
		return hlc.Timestamp{}
	}
	r.b = r.b[hlc.EncodedLen:]
	return ts
}

// Vector reads a Vector and validates it.
func (r *Reader) Vector() Vector {
	n := r.Count(3) // node length, >= 1 node byte, counter
	if r.err != nil || n == 0 {
		return nil
	}
	v := make(Vector, 0, n)
	for range n {
		v = append(v, Entry{Node: r.Node(), Counter: r.Uvarint()})
	}
	if r.err != nil {
		return nil
	}
	if err := v.Validate(); err != nil {
		r.fail(err)
		return nil
	}
	return v
}

// Context reads a Context.
func (r *Reader) Context() Context {
	v := r.Vector()
	ts := r.Timestamp()
	if r.err != nil {
		return Context{}
	}
	return Context{Vector: v, MaxTime: ts}
}

// Set reads a Set and validates it.
func (r *Reader) Set() Set {
	ctx := r.Vector()
	n := r.Count(MinSiblingLen)
	if r.err != nil {
		return Set{}
	}
	s := Set{Context: ctx}
	if n > 0 {
		s.Siblings = make([]Sibling, 0, n)
	}
	for range n {
		s.Siblings = append(s.Siblings, r.Sibling())
	}
	if r.err != nil {
		return Set{}
	}
	if err := s.Validate(); err != nil {
		r.fail(err)
		return Set{}
	}
	return s
}

// Sibling reads one sibling as AppendSibling writes it (its fields only;
// a Set validates its siblings together). Its value aliases the input.
func (r *Reader) Sibling() Sibling {
	x := Sibling{Dot: Dot{Node: r.Node(), Counter: r.Uvarint()}, Time: r.Timestamp()}
	switch f := r.Byte(); f {
	case 0:
	case 1:
		x.Deleted = true
	default:
		r.fail(errorf("sibling flags %#x", f))
	}
	if v := r.Bytes(); len(v) > 0 {
		x.Value = v
	}
	return x
}

// Counter reads a Counter and validates it.
func (r *Reader) Counter() Counter {
	n := r.Count(6)
	if r.err != nil || n == 0 {
		return nil
	}
	c := make(Counter, 0, n)
	for range n {
		c = append(c, CounterEntry{Node: r.Node(), P: r.Uvarint(), N: r.Uvarint(), FloorP: r.Uvarint(), FloorN: r.Uvarint()})
	}
	if r.err != nil {
		return nil
	}
	if err := c.Validate(); err != nil {
		r.fail(err)
		return nil
	}
	return c
}
