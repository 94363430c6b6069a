// Package command defines Trireme's state-machine commands: writes whose
// effect depends on the state they apply to (INCR, APPEND, a conditional set,
// a set that returns the old value, an atomic multi-key set) and writes that
// carry an idempotency key. A command travels in the log as the value of an
// entry of kind entry.KindCommand; every node evaluates it with Eval against
// its own applied state, in log order, so every node computes the same
// effect and the same result.
//
// The leader stamps the fields that must be equal everywhere but depend on
// its configuration or clock (Time, IdemWindow, IdemCap, MaxValue) before it
// proposes: no node consults its own clock or flags when applying.
//
// # Encoding
//
// All integers are little-endian; byte strings are a uint32 length and the
// bytes. One command is:
//
//	version   1 byte (EncodingVersion)
//	op        1 byte (Op)
//	cond      1 byte (Cond)
//	flags     1 byte (bit 0: ReturnOld)
//	if index  uint64
//	delta     int64
//	time      int64  (unix nanoseconds, leader's clock; 0 = unstamped)
//	window    int64  (nanoseconds an idempotency record is kept)
//	cap       uint32 (most idempotency records kept)
//	max value uint32 (largest value a command may leave)
//	idem key  bytes
//	key       bytes
//	value     bytes
//	pairs     uint32 n, then n times: key bytes, value bytes (OpMSet)
//
// Decode checks every length against the buffer and every field against its
// domain, refuses trailing bytes, and never panics. The layout is part of the
// on-disk and wire format.
package command

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Op is what a command does.
type Op uint8

// Ops. Part of the format.
const (
	OpSet    Op = 1 // Key = Value, under Cond; ReturnOld: reply with the old value (SET GET, GETSET)
	OpDelete Op = 2 // remove Key, under Cond; ReturnOld: GETDEL
	OpIncr   Op = 3 // Key = Key + Delta, the value read as a base-10 int64 (absent = 0)
	OpAppend Op = 4 // Key = Key || Value (absent = empty)
	OpMSet   Op = 5 // every Keys[i] = Values[i], in one step
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpIncr:
		return "incr"
	case OpAppend:
		return "append"
	case OpMSet:
		return "mset"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cond is the condition a command's key must meet for the command to apply.
type Cond uint8

// Conditions. Part of the format.
const (
	CondNone  Cond = 0
	CondNX    Cond = 1 // the key must not exist
	CondXX    Cond = 2 // the key must exist
	CondIndex Cond = 3 // the key's version must be IfIndex (0: the key must not exist)
)

// EncodingVersion is the first byte of an encoded command. Part of the format.
const EncodingVersion = 1

// Limits on what Decode accepts, so that no encoding can make a node
// allocate much more than its size.
const (
	MaxIdemKey = 256     // bytes of an idempotency key
	MaxPairs   = 1 << 16 // pairs of one MSET
)

// Command is one state-machine command.
type Command struct {
	Op        Op
	Cond      Cond
	IfIndex   uint64 // CondIndex: the version the key must have
	ReturnOld bool   // the result carries the key's value before the command
	Delta     int64  // OpIncr
	Key       []byte // every op but OpMSet
	Value     []byte // OpSet, OpAppend
	Keys      [][]byte
	Values    [][]byte // OpMSet: Values[i] for Keys[i]

	// IdemKey, when set, makes the command exactly-once: a later command
	// with the same key, within the window, is not applied again and
	// replies with the first one's result.
	IdemKey []byte

	// Stamped by the leader (Stamp).
	Time       int64  // unix nanoseconds
	IdemWindow int64  // nanoseconds an idempotency record lives after Time
	IdemCap    uint32 // most idempotency records the state keeps
	MaxValue   uint32 // largest value the command may leave under a key
}

// Stamp sets the leader-decided fields.
func (c *Command) Stamp(now int64, window int64, capRecords uint32, maxValue uint32) {
	c.Time, c.IdemWindow, c.IdemCap, c.MaxValue = now, window, capRecords, maxValue
}

// ErrMalformed is returned (wrapped) for bytes that are not a valid command
// and for a command that fails Validate.
var ErrMalformed = errors.New("command: malformed")

// Validate checks the fields a client could get wrong or a peer could forge.
func (c *Command) Validate() error {
	switch c.Op {
	case OpSet, OpDelete, OpIncr, OpAppend:
		if len(c.Key) == 0 {
			return fmt.Errorf("%w: %s without a key", ErrMalformed, c.Op)
		}
		if len(c.Keys) != 0 || len(c.Values) != 0 {
			return fmt.Errorf("%w: %s with pairs", ErrMalformed, c.Op)
		}
	case OpMSet:
		if len(c.Keys) == 0 || len(c.Keys) != len(c.Values) {
			return fmt.Errorf("%w: mset with %d keys and %d values", ErrMalformed, len(c.Keys), len(c.Values))
		}
		if len(c.Keys) > MaxPairs {
			return fmt.Errorf("%w: mset of %d pairs (at most %d)", ErrMalformed, len(c.Keys), MaxPairs)
		}
		for _, k := range c.Keys {
			if len(k) == 0 {
				return fmt.Errorf("%w: mset with an empty key", ErrMalformed)
			}
		}
		if c.Cond != CondNone || c.ReturnOld || len(c.Key) != 0 || len(c.Value) != 0 {
			return fmt.Errorf("%w: mset takes no condition, key or value", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown op %d", ErrMalformed, c.Op)
	}
	if c.Cond > CondIndex {
		return fmt.Errorf("%w: unknown condition %d", ErrMalformed, c.Cond)
	}
	if c.Cond != CondIndex && c.IfIndex != 0 {
		return fmt.Errorf("%w: an index without CondIndex", ErrMalformed)
	}
	if c.Op != OpIncr && c.Delta != 0 {
		return fmt.Errorf("%w: a delta on %s", ErrMalformed, c.Op)
	}
	if (c.Op == OpDelete || c.Op == OpIncr) && len(c.Value) != 0 {
		return fmt.Errorf("%w: a value on %s", ErrMalformed, c.Op)
	}
	if (c.Op == OpIncr || c.Op == OpAppend) && c.ReturnOld {
		return fmt.Errorf("%w: %s cannot return the old value", ErrMalformed, c.Op)
	}
	if len(c.IdemKey) > MaxIdemKey {
		return fmt.Errorf("%w: idempotency key of %d bytes (at most %d)", ErrMalformed, len(c.IdemKey), MaxIdemKey)
	}
	if c.IdemWindow < 0 || c.Time < 0 {
		return fmt.Errorf("%w: negative time or window", ErrMalformed)
	}
	return nil
}

// Encode appends c's encoding to dst. Validate c first: the encoding of an
// invalid command does not decode (or, for an MSET with fewer values than
// keys, decodes with nil values).
func Encode(dst []byte, c *Command) []byte {
	dst = slices.Grow(dst, EncodedLen(c)) // one allocation, not one per field
	var flags byte
	if c.ReturnOld {
		flags |= 1
	}
	dst = append(dst, EncodingVersion, byte(c.Op), byte(c.Cond), flags)
	dst = binary.LittleEndian.AppendUint64(dst, c.IfIndex)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(c.Delta))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(c.Time))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(c.IdemWindow))
	dst = binary.LittleEndian.AppendUint32(dst, c.IdemCap)
	dst = binary.LittleEndian.AppendUint32(dst, c.MaxValue)
	dst = appendBytes(dst, c.IdemKey)
	dst = appendBytes(dst, c.Key)
	dst = appendBytes(dst, c.Value)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(c.Keys)))
	for i := range c.Keys {
		dst = appendBytes(dst, c.Keys[i])
		var v []byte
		if i < len(c.Values) { // a command that fails Validate still encodes
			v = c.Values[i]
		}
		dst = appendBytes(dst, v)
	}
	return dst
}

// EncodedLen is the length of c's encoding: what Encode appends.
func EncodedLen(c *Command) int {
	n := 4 + 8*4 + 4*2 + 4*3 + len(c.IdemKey) + len(c.Key) + len(c.Value) + 4
	for i := range c.Keys {
		n += 4 + len(c.Keys[i]) + 4
		if i < len(c.Values) {
			n += len(c.Values[i])
		}
	}
	return n
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

const fixedSize = 4 + 8*5 + 4*2

// Decode decodes and validates one command occupying all of b. Byte slices
// alias b.
func Decode(b []byte) (Command, error) {
	var c Command
	if len(b) < fixedSize {
		return c, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformed, len(b), fixedSize)
	}
	if b[0] != EncodingVersion {
		return c, fmt.Errorf("%w: unknown version %d", ErrMalformed, b[0])
	}
	if b[3]&^1 != 0 {
		return c, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, b[3])
	}
	c.Op, c.Cond, c.ReturnOld = Op(b[1]), Cond(b[2]), b[3]&1 != 0
	p := 4
	u64 := func() uint64 { v := binary.LittleEndian.Uint64(b[p:]); p += 8; return v }
	c.IfIndex = u64()
	c.Delta = int64(u64())
	c.Time = int64(u64())
	c.IdemWindow = int64(u64())
	c.IdemCap = binary.LittleEndian.Uint32(b[p:])
	c.MaxValue = binary.LittleEndian.Uint32(b[p+4:])
	p += 8
	r := reader{b: b, p: p}
	c.IdemKey = r.bytes()
	c.Key = r.bytes()
	c.Value = r.bytes()
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(b)-r.p)/8 {
		r.err = fmt.Errorf("%w: %d pairs exceed the buffer", ErrMalformed, n)
	}
	if r.err == nil && n > 0 {
		c.Keys = make([][]byte, 0, n)
		c.Values = make([][]byte, 0, n)
		for i := uint32(0); i < n && r.err == nil; i++ {
			c.Keys = append(c.Keys, r.bytes())
			c.Values = append(c.Values, r.bytes())
		}
	}
	if r.err != nil {
		return Command{}, r.err
	}
	if r.p != len(b) {
		return Command{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-r.p)
	}
	if err := c.Validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.p < 4 {
		r.err = fmt.Errorf("%w: truncated at byte %d", ErrMalformed, r.p)
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.p:])
	r.p += 4
	return v
}

func (r *reader) bytes() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.p) {
		r.err = fmt.Errorf("%w: length %d exceeds the buffer", ErrMalformed, n)
		return nil
	}
	v := r.b[r.p : r.p+int(n) : r.p+int(n)]
	r.p += int(n)
	if n == 0 {
		return nil
	}
	return v
}

// Code is how a command ended. Part of the format (results are recorded).
type Code uint8

// Codes.
const (
	CodeOK         Code = 0 // applied (or, for a condition not met, see Applied)
	CodeCondFailed Code = 1 // CondIndex not met: nothing changed; Version is the key's
	CodeNotInteger Code = 2 // OpIncr on a value that is not a base-10 int64: nothing changed
	CodeOverflow   Code = 3 // OpIncr would overflow int64: nothing changed
	CodeTooLarge   Code = 4 // the value would exceed MaxValue: nothing changed
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeCondFailed:
		return "condition failed"
	case CodeNotInteger:
		return "not an integer"
	case CodeOverflow:
		return "overflow"
	case CodeTooLarge:
		return "too large"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Result is what a command did.
type Result struct {
	Code Code
	// Applied: the command changed the state. False for a failed code and
	// for CondNX/CondXX not met (Code is then CodeOK: SETNX answers 0).
	Applied bool
	// Index is the log index of the entry that applied the command: for a
	// duplicate, the first request's.
	Index uint64
	// Version is the key's version after the command (the current one when
	// it did not apply; 0: absent).
	Version  uint64
	Int      int64  // OpIncr: the new value; OpAppend: the new length
	Old      []byte // ReturnOld: the value before
	OldFound bool
	// Duplicate: this is the recorded result of an earlier command with the
	// same idempotency key; this one changed nothing.
	Duplicate bool
}

// EncodeResult appends r's encoding to dst: code, flags (bit 0 Applied, 1
// OldFound, 2 Duplicate), index, version, int, old (uint32 length + bytes).
func EncodeResult(dst []byte, r *Result) []byte {
	var flags byte
	if r.Applied {
		flags |= 1
	}
	if r.OldFound {
		flags |= 2
	}
	if r.Duplicate {
		flags |= 4
	}
	dst = slices.Grow(dst, resultFixed+len(r.Old))
	dst = append(dst, byte(r.Code), flags)
	dst = binary.LittleEndian.AppendUint64(dst, r.Index)
	dst = binary.LittleEndian.AppendUint64(dst, r.Version)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Int))
	return appendBytes(dst, r.Old)
}

// resultFixed is the length of a result's encoding without its old value.
const resultFixed = 2 + 24 + 4

// DecodeResult decodes one result occupying all of b. Old aliases b.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	if len(b) < resultFixed {
		return r, fmt.Errorf("%w: result of %d bytes", ErrMalformed, len(b))
	}
	if b[0] > byte(CodeTooLarge) || b[1]&^7 != 0 {
		return r, fmt.Errorf("%w: result code %d flags %#x", ErrMalformed, b[0], b[1])
	}
	r.Code = Code(b[0])
	r.Applied, r.OldFound, r.Duplicate = b[1]&1 != 0, b[1]&2 != 0, b[1]&4 != 0
	r.Index = binary.LittleEndian.Uint64(b[2:])
	r.Version = binary.LittleEndian.Uint64(b[10:])
	r.Int = int64(binary.LittleEndian.Uint64(b[18:]))
	rd := reader{b: b, p: 26}
	r.Old = rd.bytes()
	if rd.err != nil {
		return Result{}, rd.err
	}
	if rd.p != len(b) {
		return Result{}, fmt.Errorf("%w: %d trailing bytes after a result", ErrMalformed, len(b)-rd.p)
	}
	return r, nil
}

// Effect is one change Eval asks for: set Key to Value (at the command's
// index), or delete it.
type Effect struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Getter reads a key's current value and version in the state the command
// applies to (including the effects of earlier commands of the same batch).
type Getter func(key []byte) (value []byte, version uint64, found bool, err error)

// Blind reports whether c's effects and result do not depend on the state:
// an unconditional set, delete or multi-key set that does not return the old
// value. Eval reads nothing for it (apart from the idempotency record its
// key may have, which the state machine checks first).
func (c *Command) Blind() bool {
	return c.Cond == CondNone && !c.ReturnOld && (c.Op == OpSet || c.Op == OpDelete || c.Op == OpMSet)
}

// Eval computes c's effects and result at log index index. It is a pure
// function of c, index and what get returns: every node computes the same.
// An error is only ever get's.
func Eval(c *Command, index uint64, get Getter) ([]Effect, Result, error) {
	r := Result{Index: index}
	if c.Op == OpMSet {
		effs := make([]Effect, len(c.Keys))
		for i := range c.Keys {
			if c.MaxValue > 0 && len(c.Values[i]) > int(c.MaxValue) {
				return nil, Result{Index: index, Code: CodeTooLarge}, nil
			}
			effs[i] = Effect{Key: c.Keys[i], Value: c.Values[i]}
		}
		r.Applied, r.Version = true, index
		return effs, r, nil
	}
	if c.Blind() && c.Op != OpMSet {
		// Blind: the effect and the result do not depend on the state, so
		// the state is not read (the common idempotent put costs no read).
		if c.MaxValue > 0 && len(c.Value) > int(c.MaxValue) {
			return nil, Result{Index: index, Code: CodeTooLarge}, nil
		}
		r.Applied = true
		if c.Op == OpDelete {
			return []Effect{{Key: c.Key, Delete: true}}, r, nil
		}
		r.Version = index
		return []Effect{{Key: c.Key, Value: c.Value}}, r, nil
	}
	old, ver, found, err := get(c.Key)
	if err != nil {
		return nil, Result{}, err
	}
	r.Version = ver
	if c.ReturnOld {
		r.Old, r.OldFound = old, found
	}
	switch c.Cond {
	case CondNX:
		if found {
			return nil, r, nil
		}
	case CondXX:
		if !found {
			return nil, r, nil
		}
	case CondIndex:
		if ver != c.IfIndex || (c.IfIndex != 0 && !found) {
			r.Code = CodeCondFailed
			return nil, r, nil
		}
	}
	var eff Effect
	switch c.Op {
	case OpSet:
		eff = Effect{Key: c.Key, Value: c.Value}
	case OpDelete:
		if !found {
			// Nothing to delete: applied (the key is absent, as asked)
			// but the version stays 0.
			r.Applied = true
			return nil, r, nil
		}
		eff = Effect{Key: c.Key, Delete: true}
	case OpIncr:
		var cur int64
		if found {
			v, ok := parseInt(old)
			if !ok {
				r.Code = CodeNotInteger
				return nil, r, nil
			}
			cur = v
		}
		if (c.Delta > 0 && cur > math.MaxInt64-c.Delta) || (c.Delta < 0 && cur < math.MinInt64-c.Delta) {
			r.Code = CodeOverflow
			return nil, r, nil
		}
		r.Int = cur + c.Delta
		eff = Effect{Key: c.Key, Value: strconv.AppendInt(nil, r.Int, 10)}
	case OpAppend:
		v := make([]byte, 0, len(old)+len(c.Value))
		v = append(append(v, old...), c.Value...)
		r.Int = int64(len(v))
		eff = Effect{Key: c.Key, Value: v}
	}
	if c.MaxValue > 0 && len(eff.Value) > int(c.MaxValue) {
		return nil, Result{Index: index, Code: CodeTooLarge, Version: ver}, nil
	}
	r.Applied = true
	if eff.Delete {
		r.Version = 0
	} else {
		r.Version = index
	}
	return []Effect{eff}, r, nil
}

// parseInt parses a value as Redis does for INCR: a base-10 int64 with an
// optional minus sign, no spaces, no plus sign, no leading zeros.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if b[0] == '+' || (len(b) > 1 && b[0] == '0') || (len(b) > 2 && b[0] == '-' && b[1] == '0') || string(b) == "-0" {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// ParseInt is the integer syntax INCR accepts (exported for the RESP layer,
// which must reject the same arguments Redis does).
func ParseInt(b []byte) (int64, bool) { return parseInt(b) }
