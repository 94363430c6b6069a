// Package hlc is a hybrid logical clock (Kulkarni et al., "Logical Physical
// Clocks", 2014): timestamps that follow physical time closely, never go
// backwards on one node, and order every event after the events it has seen.
//
// It owns only arithmetic. It reads no clock: the caller passes the physical
// time (Unix nanoseconds) into every call, so the clock is deterministic and
// the multi-leader core and its simulator can drive it.
//
// Promises:
//
//   - Now is strictly increasing on one Clock, whatever physical time does
//     (backwards steps, jumps, repeats).
//   - After Observe(r) returns without error, the next Now is above r.
//   - A remote timestamp more than MaxOffset ahead of our physical time is
//     not followed beyond physical+MaxOffset (the clock is clamped there):
//     Observe returns the offset and ErrOffset. The timestamp itself stays
//     valid data (see DESIGN.md: receivers must all treat a write alike).
//
// # Encoding
//
// A Timestamp encodes in EncodedLen (12) bytes, big-endian, so encoded
// timestamps compare like timestamps:
//
//	offset  size  field
//	0       8     Wall, Unix nanoseconds, as uint64 (must be >= 0)
//	8       4     Logical
package hlc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// EncodedLen is the size of an encoded Timestamp. Part of the format.
const EncodedLen = 12

var (
	// ErrOffset: a remote timestamp is ahead of local physical time by more
	// than MaxOffset; the clock was clamped.
	ErrOffset = errors.New("hlc: remote clock ahead by more than max offset")
	// ErrMalformed: an encoded timestamp has the wrong size or a negative wall.
	ErrMalformed = errors.New("hlc: malformed timestamp")
)

// Timestamp is a point of hybrid logical time. The zero value is below every
// timestamp a Clock produces.
type Timestamp struct {
	Wall    int64  // Unix nanoseconds: the highest physical time seen
	Logical uint32 // orders events that share Wall
}

// Compare returns -1, 0 or +1 as t is below, equal to or above u: by Wall,
// then Logical. It is a total order.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// Less reports whether t is below u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Next returns the smallest timestamp above t.
func (t Timestamp) Next() Timestamp {
	if t.Logical == math.MaxUint32 {
		return Timestamp{Wall: t.Wall + 1}
	}
	return Timestamp{Wall: t.Wall, Logical: t.Logical + 1}
}

// Max returns the larger of t and u.
func Max(t, u Timestamp) Timestamp {
	if t.Less(u) {
		return u
	}
	return t
}

func (t Timestamp) String() string { return fmt.Sprintf("%d.%d", t.Wall, t.Logical) }

// Append appends t's 12-byte encoding to b.
func (t Timestamp) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Wall))
	return binary.BigEndian.AppendUint32(b, t.Logical)
}

// Decode decodes exactly EncodedLen bytes.
func Decode(b []byte) (Timestamp, error) {
	if len(b) != EncodedLen {
		return Timestamp{}, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(b), EncodedLen)
	}
	w := binary.BigEndian.Uint64(b)
	if w > math.MaxInt64 {
		return Timestamp{}, fmt.Errorf("%w: negative wall time", ErrMalformed)
	}
	return Timestamp{Wall: int64(w), Logical: binary.BigEndian.Uint32(b[8:])}, nil
}

// Clock is one node's hybrid logical clock. It is not safe for concurrent
// use (the core that owns it is single-threaded). The zero Clock has no
// offset bound.
type Clock struct {
	maxOffset int64 // nanoseconds; <= 0: unbounded
	last      Timestamp
}

// NewClock returns a clock that follows a remote clock at most maxOffset
// nanoseconds ahead of physical time (maxOffset <= 0: no bound).
func NewClock(maxOffset int64) *Clock { return &Clock{maxOffset: maxOffset} }

// Restore makes the clock at least ts: after a restart, the highest
// timestamp the node persisted, so its new timestamps stay above its old ones
// even if physical time went back across the restart.
func (c *Clock) Restore(ts Timestamp) { c.last = Max(c.last, ts) }

// Last returns the highest timestamp issued or observed.
func (c *Clock) Last() Timestamp { return c.last }

// Now returns a timestamp above every one issued or observed before:
// (physical, 0) if physical is ahead, else the last timestamp's successor.
func (c *Clock) Now(physical int64) Timestamp {
	if physical > c.last.Wall {
		c.last = Timestamp{Wall: physical}
	} else {
		c.last = c.last.Next()
	}
	return c.last
}

// Observe merges a remote timestamp into the clock so the next Now is above
// it, and returns the remote's offset (remote.Wall - physical; positive:
// remote ahead). If the offset exceeds MaxOffset, the clock only advances to
// physical+MaxOffset and Observe returns ErrOffset: the caller still accepts
// the remote event (its timestamp is data) and reports the offset.
func (c *Clock) Observe(remote Timestamp, physical int64) (offset int64, err error) {
	offset = remote.Wall - physical
	if c.maxOffset > 0 && offset > c.maxOffset {
		c.last = Max(c.last, Timestamp{Wall: physical + c.maxOffset})
		return offset, fmt.Errorf("%w: %dns ahead, max %dns", ErrOffset, offset, c.maxOffset)
	}
	c.last = Max(c.last, remote)
	return offset, nil
}
