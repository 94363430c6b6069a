package multileader

import (
	"encoding/binary"
	"fmt"

	"github.com/trireme-db/trireme/internal/vclock"
)

// The wire codec: how entries and peer messages travel between nodes (and
// how the runtime stores its own stream). Integers are minimal unsigned
// varints, node ids and byte strings a uvarint length then the bytes, and
// vectors, counters and timestamps use package vclock's encodings. Each
// encoding starts with its format version (wireVersion, 1):
//
//	Entry   = version, EntryBody
//	Message = version, type (1 byte), from (node), to (node), seq,
//	          count (<= MaxMessageEntries), count x EntryBody
//	EntryBody = op (1 byte), origin (node), seq, key (length <= MaxKeyBytes,
//	          bytes), time (12-byte hlc.Timestamp), dot node (length 0..255,
//	          bytes: empty for an increment), dot counter, context
//	          (vclock.Vector), value (length, bytes), counter (vclock.Counter)
//
// Every field is always present, so an encoding says exactly what the entry
// held: a decoder that accepts it re-encodes it to the same bytes. The
// decoders check the structure only (see validWireEntry); Step checks the
// protocol.

// MaxKeyBytes bounds a key in an entry.
const MaxKeyBytes = 64 << 10

// MaxMessageEntries bounds the entries of one decoded Message.
const MaxMessageEntries = 4096

// wireVersion is the format version byte in front of each encoding. Part of
// the format.
const wireVersion byte = 1

// minEntryBody is the smallest EntryBody: op, origin (length and one byte),
// seq, key length, time, dot node length, dot counter, context count, value
// length and counter count. Part of the format's bounds.
const minEntryBody = 1 + 2 + 1 + 1 + 12 + 1 + 1 + 1 + 1 + 1

// AppendEntry appends e's encoding to b. It encodes any entry; DecodeEntry
// refuses the malformed ones.
func AppendEntry(b []byte, e *Entry) []byte {
	b = append(b, wireVersion)
	return appendEntryBody(b, e)
}

// DecodeEntry decodes exactly one entry that fills b. Errors wrap ErrMalformed.
// The entry does not alias b.
func DecodeEntry(b []byte) (Entry, error) {
	r := vclock.NewReader(b)
	if err := readVersion(r, "entry"); err != nil {
		return Entry{}, err
	}
	e, err := readEntryBody(r)
	if err != nil {
		return Entry{}, err
	}
	if err := r.Finish(); err != nil {
		return Entry{}, fmt.Errorf("%w: entry: %w", ErrMalformed, err)
	}
	return e, nil
}

// AppendMessage appends m's encoding to b.
func AppendMessage(b []byte, m *Message) []byte {
	b = append(b, wireVersion, byte(m.Type))
	b = appendString(b, m.From)
	b = appendString(b, m.To)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		b = appendEntryBody(b, &m.Entries[i])
	}
	return b
}

// DecodeMessage decodes exactly one message that fills b. Errors wrap ErrMalformed.
// The message does not alias b.
func DecodeMessage(b []byte) (Message, error) {
	r := vclock.NewReader(b)
	if err := readVersion(r, "message"); err != nil {
		return Message{}, err
	}
	m := Message{Type: MsgType(r.Byte()), From: r.Node(), To: r.Node(), Seq: r.Uvarint()}
	n := r.Count(minEntryBody)
	if err := r.Err(); err != nil {
		return Message{}, fmt.Errorf("%w: message: %w", ErrMalformed, err)
	}
	switch m.Type {
	case MsgEntries, MsgAck, MsgResend, MsgHeartbeat:
	default:
		return Message{}, fmt.Errorf("%w: message type %d", ErrMalformed, m.Type)
	}
	if n > MaxMessageEntries {
		return Message{}, fmt.Errorf("%w: message of %d entries (max %d)", ErrMalformed, n, MaxMessageEntries)
	}
	if n > 0 {
		m.Entries = make([]Entry, 0, n)
	}
	for i := range n {
		e, err := readEntryBody(r)
		if err != nil {
			return Message{}, fmt.Errorf("message entry %d: %w", i, err)
		}
		m.Entries = append(m.Entries, e)
	}
	if err := r.Finish(); err != nil {
		return Message{}, fmt.Errorf("%w: message: %w", ErrMalformed, err)
	}
	return m, nil
}

func readVersion(r *vclock.Reader, what string) error {
	v := r.Byte()
	if err := r.Err(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	if v != wireVersion {
		return fmt.Errorf("%w: %s format version %d (this build reads %d)", ErrMalformed, what, v, wireVersion)
	}
	return nil
}

func appendEntryBody(b []byte, e *Entry) []byte {
	b = append(b, byte(e.Op))
	b = appendString(b, e.Origin)
	b = binary.AppendUvarint(b, e.Seq)
	b = appendString(b, e.Key)
	b = e.Time.Append(b)
	b = appendString(b, e.Dot.Node)
	b = binary.AppendUvarint(b, e.Dot.Counter)
	b = vclock.AppendVector(b, e.Context)
	b = binary.AppendUvarint(b, uint64(len(e.Value)))
	b = append(b, e.Value...)
	return vclock.AppendCounter(b, e.Counter)
}

// readEntryBody reads and checks one EntryBody. An empty value decodes as nil.
func readEntryBody(r *vclock.Reader) (Entry, error) {
	e := Entry{Op: Op(r.Byte()), Origin: r.Node(), Seq: r.Uvarint()}
	key := r.Bytes()
	if r.Err() == nil && len(key) > MaxKeyBytes {
		return Entry{}, fmt.Errorf("%w: entry key of %d bytes (max %d)", ErrMalformed, len(key), MaxKeyBytes)
	}
	e.Key = string(key)
	e.Time = r.Timestamp()
	dotNode := r.Bytes()
	if r.Err() == nil && len(dotNode) > vclock.MaxNodeIDLen {
		return Entry{}, fmt.Errorf("%w: entry dot node of %d bytes", ErrMalformed, len(dotNode))
	}
	e.Dot = vclock.Dot{Node: string(dotNode), Counter: r.Uvarint()}
	e.Context = r.Vector()
	if v := r.Bytes(); len(v) > 0 {
		e.Value = append([]byte(nil), v...)
	}
	e.Counter = r.Counter()
	if err := r.Err(); err != nil {
		return Entry{}, fmt.Errorf("%w: entry: %w", ErrMalformed, err)
	}
	if err := validWireEntry(&e); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// validWireEntry is the decoder's structural check of an entry; Step checks
// the rest (validEntry).
func validWireEntry(e *Entry) error {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("%w: entry %s/%d: "+why, append([]any{ErrMalformed, e.Origin, e.Seq}, args...)...)
	}
	if e.Seq == 0 {
		return bad("seq 0")
	}
	switch e.Op {
	case OpPut, OpDelete:
		if e.Dot.Node != e.Origin || e.Dot.Counter == 0 {
			return bad("%v dot %v", e.Op, e.Dot)
		}
		if e.Op == OpDelete && len(e.Value) > 0 {
			return bad("delete with a value")
		}
	case OpIncr:
		if e.Dot != (vclock.Dot{}) {
			return bad("increment with dot %v", e.Dot)
		}
		if len(e.Value) > 0 {
			return bad("increment with a value")
		}
	default:
		return bad("unknown op %d", uint8(e.Op))
	}
	return nil
}

// appendString appends a uvarint length and s: the form of vclock's node ids
// and of byte strings.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
