// Package entry defines a Trireme log entry and its binary encoding.
//
// The same encoding is used on disk (inside WAL records) and on the wire (inside
// replication messages), so catch-up can stream stored records without
// re-encoding them.
//
// # Encoding
//
// All integers are little-endian. The encoding of one entry is, byte by byte:
//
//	offset  size  field
//	0       1     version      (EncodingVersion, currently 1)
//	1       1     kind         (Kind: 1 no-op, 2 put, 3 delete, 4 config, 5 command)
//	2       8     term         (uint64)
//	10      8     index        (uint64)
//	18      8     request id   (uint64, 0 = none)
//	26      4     key length   (uint32, K)
//	30      K     key bytes
//	30+K    4     value length (uint32, V)
//	34+K    V     value bytes
//
// Total size: HeaderSize + K + V. Decoding checks every length against the buffer
// and refuses unknown versions and kinds with ErrMalformed; it never panics.
// The constants EncodingVersion and HeaderSize, and the Kind values, are part of
// the on-disk and wire format: changing them breaks existing data.
package entry

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says what an entry does to the state.
type Kind uint8

// Kind values. Part of the on-disk and wire format.
const (
	KindNoop   Kind = 1 // appended by a new leader at the start of its term
	KindPut    Kind = 2 // set Key to Value
	KindDelete Kind = 3 // remove Key
	KindConfig Kind = 4 // cluster configuration (Value holds it)
	// KindCommand: a state-machine command (internal/command) encoded in
	// Value; Key is the command's key (the first one of a multi-key
	// command), for logs and the rollback journal only.
	KindCommand Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindNoop:
		return "noop"
	case KindPut:
		return "put"
	case KindDelete:
		return "delete"
	case KindConfig:
		return "config"
	case KindCommand:
		return "command"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k >= KindNoop && k <= KindCommand }

// EncodingVersion is the first byte of every encoded entry. Part of the format.
const EncodingVersion = 1

// HeaderSize is the encoded size of an entry with an empty key and value.
// Part of the format.
const HeaderSize = 1 + 1 + 8 + 8 + 8 + 4 + 4

// ErrMalformed is returned (wrapped) for bytes that are not a valid entry.
var ErrMalformed = errors.New("entry: malformed encoding")

// Entry is one log entry. (Term, Index) identifies it; Index alone orders the log.
type Entry struct {
	Term      uint64
	Index     uint64
	Kind      Kind
	Key       []byte
	Value     []byte
	RequestID uint64 // client request id, 0 if none
}

// Size returns the encoded size of e in bytes.
func (e *Entry) Size() int { return HeaderSize + len(e.Key) + len(e.Value) }

// AppendEncode appends the encoding of e to dst and returns the extended slice.
func AppendEncode(dst []byte, e *Entry) []byte {
	dst = append(dst, EncodingVersion, byte(e.Kind))
	dst = binary.LittleEndian.AppendUint64(dst, e.Term)
	dst = binary.LittleEndian.AppendUint64(dst, e.Index)
	dst = binary.LittleEndian.AppendUint64(dst, e.RequestID)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Key)))
	dst = append(dst, e.Key...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Value)))
	dst = append(dst, e.Value...)
	return dst
}

// Decode decodes one entry that occupies all of b. Key and Value alias b; copy
// them (or b) if b will be reused.
func Decode(b []byte) (Entry, error) {
	e, n, err := DecodePrefix(b)
	if err != nil {
		return Entry{}, err
	}
	if n != len(b) {
		return Entry{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-n)
	}
	return e, nil
}

// DecodePrefix decodes one entry from the start of b and returns it with the
// number of bytes it used. Key and Value alias b.
func DecodePrefix(b []byte) (Entry, int, error) {
	if len(b) < HeaderSize {
		return Entry{}, 0, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformed, len(b), HeaderSize)
	}
	if b[0] != EncodingVersion {
		return Entry{}, 0, fmt.Errorf("%w: unknown version %d", ErrMalformed, b[0])
	}
	e := Entry{Kind: Kind(b[1])}
	if !e.Kind.Valid() {
		return Entry{}, 0, fmt.Errorf("%w: unknown kind %d", ErrMalformed, b[1])
	}
	e.Term = binary.LittleEndian.Uint64(b[2:])
	e.Index = binary.LittleEndian.Uint64(b[10:])
	e.RequestID = binary.LittleEndian.Uint64(b[18:])
	p := 26
	kl := uint64(binary.LittleEndian.Uint32(b[p:]))
	p += 4
	if uint64(len(b)-p) < kl+4 {
		return Entry{}, 0, fmt.Errorf("%w: key length %d exceeds buffer", ErrMalformed, kl)
	}
	e.Key = b[p : p+int(kl) : p+int(kl)]
	p += int(kl)
	vl := uint64(binary.LittleEndian.Uint32(b[p:]))
	p += 4
	if uint64(len(b)-p) < vl {
		return Entry{}, 0, fmt.Errorf("%w: value length %d exceeds buffer", ErrMalformed, vl)
	}
	e.Value = b[p : p+int(vl) : p+int(vl)]
	p += int(vl)
	if len(e.Key) == 0 {
		e.Key = nil
	}
	if len(e.Value) == 0 {
		e.Value = nil
	}
	return e, p, nil
}

// Clone returns a deep copy of e that shares no memory with it.
func (e Entry) Clone() Entry {
	if e.Key != nil {
		e.Key = append([]byte(nil), e.Key...)
	}
	if e.Value != nil {
		e.Value = append([]byte(nil), e.Value...)
	}
	return e
}

// Equal reports whether two entries are identical in every field.
func (e *Entry) Equal(o *Entry) bool {
	return e.Term == o.Term && e.Index == o.Index && e.Kind == o.Kind &&
		e.RequestID == o.RequestID && string(e.Key) == string(o.Key) &&
		string(e.Value) == string(o.Value)
}
