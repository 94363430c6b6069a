package repl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/entry"
)

// The wire encoding of a Message, between nodes: the body of the peer
// transport's message frame (internal/transport, frame type 3), which carries
// it as an opaque single-leader payload. Part of the wire format: the bytes
// are those of earlier releases, whose transport encoded messages itself, so
// that nodes of the previous release interoperate. All integers are
// little-endian:
//
//	1   message type (MsgType)
//	8   term, 8 log term, 8 index, 8 commit, 8 hint term, 8 hint index, 8 context
//	1   flags (bit 0: reject; other bits are ignored)
//	str16 from, str16 to (a uint16 length, then the bytes)
//	4   entry count N, then N times: 4 length E, E bytes of internal/entry encoding
//
// A decoded message uses exactly all of its bytes.

// ErrMalformedEncoding is returned (wrapped) by DecodeMessage for bytes that
// are not a message.
var ErrMalformedEncoding = errors.New("repl: malformed message encoding")

// AppendMessage appends the wire encoding of m to dst and returns the
// extended slice. Node ids longer than 65535 bytes are cut (ids are short).
func AppendMessage(dst []byte, m *Message) []byte {
	dst = append(dst, byte(m.Type))
	dst = binary.LittleEndian.AppendUint64(dst, m.Term)
	dst = binary.LittleEndian.AppendUint64(dst, m.LogTerm)
	dst = binary.LittleEndian.AppendUint64(dst, m.Index)
	dst = binary.LittleEndian.AppendUint64(dst, m.Commit)
	dst = binary.LittleEndian.AppendUint64(dst, m.HintTerm)
	dst = binary.LittleEndian.AppendUint64(dst, m.HintIndex)
	dst = binary.LittleEndian.AppendUint64(dst, m.Context)
	var flags byte
	if m.Reject {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = appendStr16(dst, string(m.From))
	dst = appendStr16(dst, string(m.To))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		dst = binary.LittleEndian.AppendUint32(dst, uint32(e.Size()))
		dst = entry.AppendEncode(dst, e)
	}
	return dst
}

func appendStr16(dst []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// DecodeMessage decodes the message that occupies all of b (AppendMessage's
// encoding). Entries' keys and values alias b; the node ids are copies. It
// never panics: bytes that are not a message (an unknown message type, a
// field or an entry cut short, an entry that does not decode, trailing
// bytes) give an error wrapping ErrMalformedEncoding.
//
// What it allocates is bounded by len(b): the entry count is checked against
// the bytes left (each entry takes at least 4+entry.HeaderSize) before the
// entries are allocated, and every length against the bytes left before it
// is used. Bounding len(b) is the caller's: the transport refuses frames over
// its MaxFrameBytes.
func DecodeMessage(b []byte) (Message, error) {
	d := wireDecoder{b: b}
	var m Message
	m.Type = MsgType(d.u8())
	m.Term = d.u64()
	m.LogTerm = d.u64()
	m.Index = d.u64()
	m.Commit = d.u64()
	m.HintTerm = d.u64()
	m.HintIndex = d.u64()
	m.Context = d.u64()
	m.Reject = d.u8()&1 != 0
	m.From = NodeID(d.str16())
	m.To = NodeID(d.str16())
	count := d.u32()
	if d.err != nil {
		return Message{}, d.err
	}
	if m.Type < MsgPreVote || m.Type > MsgSnapshotNeeded {
		return Message{}, fmt.Errorf("%w: unknown message type %d", ErrMalformedEncoding, m.Type)
	}
	// Each entry needs at least 4+HeaderSize bytes: bound the count before allocating.
	if uint64(count) > uint64(len(d.b))/(4+entry.HeaderSize) {
		return Message{}, fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrMalformedEncoding, count, len(d.b))
	}
	if count > 0 {
		m.Entries = make([]entry.Entry, 0, count)
	}
	for i := uint32(0); i < count; i++ {
		n := d.u32()
		eb := d.take(uint64(n))
		if d.err != nil {
			return Message{}, fmt.Errorf("entry %d: %w", i, d.err)
		}
		e, err := entry.Decode(eb)
		if err != nil {
			return Message{}, fmt.Errorf("%w: entry %d: %w", ErrMalformedEncoding, i, err)
		}
		m.Entries = append(m.Entries, e)
	}
	if len(d.b) != 0 {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformedEncoding, len(d.b))
	}
	return m, nil
}

// wireDecoder reads fields from b; the first error sticks and later reads
// return zeros.
type wireDecoder struct {
	b   []byte
	err error
}

func (d *wireDecoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = fmt.Errorf("%w: field of %d bytes, %d left", ErrMalformedEncoding, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *wireDecoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *wireDecoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (d *wireDecoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *wireDecoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *wireDecoder) str16() string {
	n := d.u16()
	return string(d.take(uint64(n)))
}
