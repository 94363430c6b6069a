package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
)

// FrameType says what a frame carries. Part of the wire format.
type FrameType uint8

// Frame types. Part of the wire format (values must not change).
const (
	FrameHandshake       FrameType = 1 // first frame in each direction of a connection
	FrameHandshakeReject FrameType = 2 // the acceptor refuses the handshake; body = reason
	FrameMessage         FrameType = 3 // a single-leader message: an EngineSingleLeader payload
	FrameForwardRequest  FrameType = 4 // a client operation forwarded to the leader
	FrameForwardResponse FrameType = 5 // the answer to a FrameForwardRequest
	FrameStreamHandshake FrameType = 6 // a handshake that opens a stream (Transport.OpenStream)
	FramePayload         FrameType = 7 // another replication engine's opaque message (Payload)
)

func (t FrameType) String() string {
	switch t {
	case FrameHandshake:
		return "handshake"
	case FrameHandshakeReject:
		return "handshake-reject"
	case FrameMessage:
		return "message"
	case FrameForwardRequest:
		return "forward-request"
	case FrameForwardResponse:
		return "forward-response"
	case FrameStreamHandshake:
		return "stream-handshake"
	case FramePayload:
		return "payload"
	}
	return fmt.Sprintf("frame(%d)", uint8(t))
}

// NodeID names a member: the peer a connection speaks for, a payload's
// sender and recipient. The node's engines have ids of their own (such as
// repl.NodeID) with the same strings.
type NodeID string

// Engine names the replication engine that owns a payload. Part of the wire format.
type Engine uint8

// Engines. Part of the wire format (values must not change). 0 is not an
// engine: a payload frame naming it is malformed.
const (
	EngineSingleLeader Engine = 1
	EngineMultiLeader  Engine = 2
	EngineLeaderless   Engine = 3
)

func (e Engine) String() string {
	switch e {
	case EngineSingleLeader:
		return "single-leader"
	case EngineMultiLeader:
		return "multi-leader"
	case EngineLeaderless:
		return "leaderless"
	}
	return fmt.Sprintf("engine(%d)", uint8(e))
}

// Format constants. Part of the wire format.
const (
	// FrameHeaderSize is the length prefix (4) plus the type byte (1).
	FrameHeaderSize = 5
	// HandshakeMagic opens every handshake body ("TRI1").
	HandshakeMagic uint32 = 0x31495254
	// ProtocolVersion is the handshake's protocol version.
	ProtocolVersion = 1
	// DefaultMaxFrameBytes is the default limit on a frame's length field.
	DefaultMaxFrameBytes = 16 << 20
	// MaxHandshakeBytes limits the length field of the frames read before a
	// connection is authenticated (a handshake or a reject): a stranger
	// cannot make a node hold more than this for it.
	MaxHandshakeBytes = 4 << 10
)

// frameChunk is the most ReadFrame allocates ahead of the bytes that
// arrived: a larger frame's buffer grows (doubling) as its body is read, so a
// length field alone never costs the memory it claims. 1 MiB holds a full
// single-leader MsgApp batch (repl.Config.MaxMsgBytes) in one allocation;
// frames before a handshake are limited to MaxHandshakeBytes anyway.
const frameChunk = 1 << 20

// Errors returned (wrapped) by the codec.
var (
	// ErrMalformedFrame: the bytes are not a valid frame.
	ErrMalformedFrame = errors.New("transport: malformed frame")
	// ErrFrameTooLarge: a frame's length exceeds the configured maximum.
	ErrFrameTooLarge = errors.New("transport: frame too large")
)

// Handshake is the first frame each side of a connection sends. It names the
// cluster and the node, and advertises the node's client endpoints.
type Handshake struct {
	ClusterID string
	NodeID    NodeID
	HTTPAddr  string
	RESPAddr  string
}

// ForwardOp is the client operation a ForwardRequest carries. Part of the wire format.
type ForwardOp uint8

// Forwarded operations.
const (
	OpPut      ForwardOp = 1
	OpDelete   ForwardOp = 2
	OpGet      ForwardOp = 3 // linearizable read
	OpTransfer ForwardOp = 4 // leadership transfer to Key (a node id)
	// OpMembers: a membership request. Key is the action ("list", "add",
	// "promote", "remove"); Value is the JSON api.MemberSpec for "add", the
	// member id for "promote" and "remove". The answer's Read.Value is the
	// JSON []api.MemberStatus.
	OpMembers ForwardOp = 5
	// OpCommand: a state-machine command (internal/command); Value is its
	// encoding (unstamped: the leader stamps it). The answer's Write.Cmd
	// (CmdSet) is its result.
	OpCommand ForwardOp = 6
	// OpReadIndex: the leader confirms its leadership and answers a read
	// point in Read.Index (a follower's proof for bounded reads).
	OpReadIndex ForwardOp = 7
)

// ForwardRequest is a client operation a follower hands to the leader.
type ForwardRequest struct {
	ID          uint64 // connection-local request id, set by the transport
	Op          ForwardOp
	Key         []byte
	Value       []byte
	Ack         api.Ack
	DefaultAck  bool   // use the leader's default ack mode
	TimeoutMs   uint64 // 0 = the leader's default
	Consistency api.Consistency
	// Session and bounded reads (OpGet). Encoded in the frame's optional
	// tail, present only when one of them is set, so that the frames of the
	// other operations are those of the previous release.
	Token         api.Token
	MaxLagNanos   uint64
	MaxLagEntries uint64
}

// ForwardResponse is the leader's answer to a ForwardRequest.
type ForwardResponse struct {
	ID      uint64
	Code    api.Code // api.CodeOK, or the error's identity (api.CodeOf)
	Message string   // error text when Code != api.CodeOK
	Leader  NodeID   // the responder's known leader (hint for api.CodeNotLeader)
	Write   api.WriteResult
	Read    api.ReadResult
	// CmdSet: Write.Cmd holds a command's result (OpCommand). With a
	// non-zero Read.Token it makes the frame's optional tail.
	CmdSet bool
}

// Payload is one replication engine's message, opaque to the transport.
type Payload struct {
	Engine Engine // never 0 on the wire; values this node does not know decode
	// From and To: the sender and the recipient, in a payload frame. A
	// message frame (EngineSingleLeader) does not carry them: the
	// single-leader message names them itself, and decodes with both empty.
	From, To NodeID
	Data     []byte
}

// Encoder is an engine's message that the transport encodes when it writes
// it (Transport.SendEncoder), on its own goroutine rather than the sender's.
type Encoder interface {
	// AppendPayload appends the message's encoding (the payload) to dst
	// and returns the extended slice. It must not block.
	AppendPayload(dst []byte) []byte
}

// Frame is one decoded frame; exactly one of the pointer fields matching Type
// is set (Handshake for both handshake types, Payload for message and
// payload frames).
type Frame struct {
	Type      FrameType
	Handshake *Handshake
	Reject    string
	Request   *ForwardRequest
	Response  *ForwardResponse
	Payload   *Payload
}

// AppendHandshake appends a handshake frame to dst.
func AppendHandshake(dst []byte, h *Handshake) []byte {
	return appendHandshake(dst, FrameHandshake, h)
}

// AppendStreamHandshake appends a stream-handshake frame to dst: a handshake
// that opens a stream.
func AppendStreamHandshake(dst []byte, h *Handshake) []byte {
	return appendHandshake(dst, FrameStreamHandshake, h)
}

func appendHandshake(dst []byte, typ FrameType, h *Handshake) []byte {
	start, dst := beginFrame(dst, typ)
	dst = binary.LittleEndian.AppendUint32(dst, HandshakeMagic)
	dst = append(dst, ProtocolVersion)
	dst = appendStr16(dst, h.ClusterID)
	dst = appendStr16(dst, string(h.NodeID))
	dst = appendStr16(dst, h.HTTPAddr)
	dst = appendStr16(dst, h.RESPAddr)
	return endFrame(dst, start)
}

// AppendHandshakeReject appends a handshake-reject frame carrying reason.
func AppendHandshakeReject(dst []byte, reason string) []byte {
	start, dst := beginFrame(dst, FrameHandshakeReject)
	dst = appendStr16(dst, reason)
	return endFrame(dst, start)
}

// AppendPayload appends the frame that carries p on the wire: a message
// frame (type 3) for EngineSingleLeader, whose body is p.Data (p.From and
// p.To are not on the wire: the single-leader message names them), for
// compatibility with nodes that predate payload frames; a payload frame
// (type 7) for the other engines. It encodes engine 0 too, which every
// decoder refuses: senders drop such payloads instead.
func AppendPayload(dst []byte, p *Payload) []byte {
	return appendEngineFrame(dst, frameTypeOf(p.Engine), p.Engine, p.From, p.To, nil, p.Data)
}

// frameTypeOf is the frame type that carries engine e's payloads.
func frameTypeOf(e Engine) FrameType {
	if e == EngineSingleLeader {
		return FrameMessage
	}
	return FramePayload
}

// appendEngineFrame appends a frame of type typ (FrameMessage or
// FramePayload) carrying engine e's payload from `from` to `to`: enc's
// encoding if enc is not nil, else data. A message frame's body is the
// payload alone.
func appendEngineFrame(dst []byte, typ FrameType, e Engine, from, to NodeID, enc Encoder, data []byte) []byte {
	start, dst := beginFrame(dst, typ)
	if typ == FrameMessage {
		if enc != nil {
			dst = enc.AppendPayload(dst)
		} else {
			dst = append(dst, data...)
		}
		return endFrame(dst, start)
	}
	dst = append(dst, byte(e))
	dst = appendStr16(dst, string(from))
	dst = appendStr16(dst, string(to))
	if enc == nil {
		dst = appendBytes32(dst, data)
		return endFrame(dst, start)
	}
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = enc.AppendPayload(dst)
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return endFrame(dst, start)
}

// frameFits reports whether a frame of engine e from `from` to `to`
// carrying an n-byte payload has a length field of at most maxBytes (and of
// a uint32).
func frameFits(e Engine, from, to NodeID, n, maxBytes int) bool {
	l := 1 + uint64(n) // the type byte, the payload
	if frameTypeOf(e) == FramePayload {
		l += 1 + 2 + 2 + 4 + uint64(len(from)) + uint64(len(to))
	}
	return l <= uint64(maxBytes) && l <= 0xffffffff
}

// AppendForwardRequest appends a forward-request frame to dst.
func AppendForwardRequest(dst []byte, r *ForwardRequest) []byte {
	start, dst := beginFrame(dst, FrameForwardRequest)
	dst = binary.LittleEndian.AppendUint64(dst, r.ID)
	dst = append(dst, byte(r.Op), byte(r.Ack.Mode))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(clampInt(r.Ack.Replicas)))
	var flags byte
	if r.DefaultAck {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint64(dst, r.TimeoutMs)
	dst = append(dst, byte(r.Consistency))
	dst = appendBytes32(dst, r.Key)
	dst = appendBytes32(dst, r.Value)
	if !r.Token.IsZero() || r.MaxLagNanos != 0 || r.MaxLagEntries != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, r.Token.Term)
		dst = binary.LittleEndian.AppendUint64(dst, r.Token.Index)
		dst = binary.LittleEndian.AppendUint64(dst, r.MaxLagNanos)
		dst = binary.LittleEndian.AppendUint64(dst, r.MaxLagEntries)
	}
	return endFrame(dst, start)
}

// AppendForwardResponse appends a forward-response frame to dst.
func AppendForwardResponse(dst []byte, r *ForwardResponse) []byte {
	start, dst := beginFrame(dst, FrameForwardResponse)
	dst = binary.LittleEndian.AppendUint64(dst, r.ID)
	dst = append(dst, byte(r.Code))
	dst = appendStr16(dst, r.Message)
	dst = appendStr16(dst, string(r.Leader))
	w := &r.Write
	dst = binary.LittleEndian.AppendUint64(dst, w.Index)
	dst = binary.LittleEndian.AppendUint64(dst, w.Term)
	dst = appendStr16(dst, w.Durability)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(clampInt(w.Replicas)))
	var flags byte
	if w.Committed {
		flags |= 1
	}
	if w.LeaderDurable {
		flags |= 2
	}
	if r.Read.Found {
		flags |= 4
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint64(dst, r.Read.Index)
	dst = binary.LittleEndian.AppendUint64(dst, r.Read.LagEntries)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Read.LagMillis))
	dst = appendBytes32(dst, r.Read.Value)
	if !r.Read.Token.IsZero() || r.CmdSet {
		dst = binary.LittleEndian.AppendUint64(dst, r.Read.Token.Term)
		dst = binary.LittleEndian.AppendUint64(dst, r.Read.Token.Index)
		if r.CmdSet {
			dst = append(dst, 1)
			dst = appendBytes32(dst, command.EncodeResult(nil, &r.Write.Cmd))
		} else {
			dst = append(dst, 0)
		}
	}
	return endFrame(dst, start)
}

// ReadFrame reads one frame from r into a fresh buffer and decodes it. Decoded
// byte fields alias that buffer (which is never reused). io.EOF is returned
// only when r ends cleanly before the first byte of a frame. The buffer grows
// as the body arrives: at most frameChunk bytes are allocated ahead of the
// bytes read.
func ReadFrame(r io.Reader, maxBytes int) (Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n == 0 {
		return Frame{}, fmt.Errorf("%w: zero length", ErrMalformedFrame)
	}
	if maxBytes > 0 && uint64(n) > uint64(maxBytes) {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxBytes)
	}
	total := 4 + int(n)
	buf := make([]byte, 4, min(total, 4+frameChunk))
	copy(buf, hdr[:])
	for len(buf) < total {
		next := min(total, max(cap(buf), 2*len(buf)))
		if next > cap(buf) {
			buf = append(make([]byte, 0, next), buf...)
		}
		if _, err := io.ReadFull(r, buf[len(buf):next]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		buf = buf[:next]
	}
	return DecodeFrame(buf, maxBytes)
}

// DecodeFrame decodes exactly one frame occupying all of b. Byte fields alias b.
// It never panics; bad bytes give an error wrapping ErrMalformedFrame, and a
// length over maxBytes (if > 0) gives ErrFrameTooLarge.
func DecodeFrame(b []byte, maxBytes int) (Frame, error) {
	if len(b) < FrameHeaderSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformedFrame, len(b), FrameHeaderSize)
	}
	n := binary.LittleEndian.Uint32(b)
	if maxBytes > 0 && uint64(n) > uint64(maxBytes) {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxBytes)
	}
	if uint64(n) != uint64(len(b)-4) {
		return Frame{}, fmt.Errorf("%w: length field %d, have %d bytes", ErrMalformedFrame, n, len(b)-4)
	}
	d := decoder{b: b[5:]}
	f := Frame{Type: FrameType(b[4])}
	switch f.Type {
	case FrameHandshake, FrameStreamHandshake:
		h := &Handshake{}
		if magic := d.u32(); magic != HandshakeMagic && d.err == nil {
			return Frame{}, fmt.Errorf("%w: bad handshake magic %#x", ErrMalformedFrame, magic)
		}
		if v := d.u8(); v != ProtocolVersion && d.err == nil {
			return Frame{}, fmt.Errorf("%w: unsupported protocol version %d", ErrMalformedFrame, v)
		}
		h.ClusterID = d.str16()
		h.NodeID = NodeID(d.str16())
		h.HTTPAddr = d.str16()
		h.RESPAddr = d.str16()
		f.Handshake = h
	case FrameHandshakeReject:
		f.Reject = d.str16()
	case FrameMessage:
		// The single-leader engine's message, opaque: its sender and
		// recipient are inside, for the engine to check.
		f.Payload = &Payload{Engine: EngineSingleLeader, Data: d.rest()}
	case FrameForwardRequest:
		r := &ForwardRequest{}
		r.ID = d.u64()
		r.Op = ForwardOp(d.u8())
		r.Ack.Mode = api.AckMode(d.u8())
		r.Ack.Replicas = int(d.u32())
		r.DefaultAck = d.u8()&1 != 0
		r.TimeoutMs = d.u64()
		r.Consistency = api.Consistency(d.u8())
		r.Key = d.bytes32()
		r.Value = d.bytes32()
		if d.err == nil && len(d.b) > 0 {
			r.Token.Term, r.Token.Index = d.u64(), d.u64()
			r.MaxLagNanos, r.MaxLagEntries = d.u64(), d.u64()
			if d.err == nil && r.Token.IsZero() && r.MaxLagNanos == 0 && r.MaxLagEntries == 0 {
				d.fail("an empty read-options tail")
			}
		}
		if d.err == nil && (r.Op < OpPut || r.Op > OpReadIndex) {
			d.fail("unknown forward op %d", r.Op)
		}
		f.Request = r
	case FrameForwardResponse:
		r := &ForwardResponse{}
		r.ID = d.u64()
		r.Code = api.Code(d.u8())
		r.Message = d.str16()
		r.Leader = NodeID(d.str16())
		r.Write.Index = d.u64()
		r.Write.Term = d.u64()
		r.Write.Durability = d.str16()
		r.Write.Replicas = int(d.u32())
		flags := d.u8()
		r.Write.Committed = flags&1 != 0
		r.Write.LeaderDurable = flags&2 != 0
		r.Read.Found = flags&4 != 0
		r.Read.Index = d.u64()
		r.Read.LagEntries = d.u64()
		r.Read.LagMillis = int64(d.u64())
		r.Read.Value = d.bytes32()
		if d.err == nil && len(d.b) > 0 {
			r.Read.Token.Term, r.Read.Token.Index = d.u64(), d.u64()
			switch has := d.u8(); {
			case d.err != nil:
			case has == 1:
				r.CmdSet = true
				if b := d.bytes32(); d.err == nil {
					cr, err := command.DecodeResult(b)
					if err != nil {
						d.fail("command result: %v", err)
					}
					r.Write.Cmd = cr
				}
			case has != 0:
				d.fail("bad command-result flag %d", has)
			case r.Read.Token.IsZero():
				d.fail("an empty tail")
			}
		}
		f.Response = r
	case FramePayload:
		p := &Payload{}
		p.Engine = Engine(d.u8())
		p.From = NodeID(d.str16())
		p.To = NodeID(d.str16())
		p.Data = d.bytes32()
		if d.err == nil && p.Engine == 0 {
			d.fail("engine 0")
		}
		f.Payload = p
	default:
		return Frame{}, fmt.Errorf("%w: unknown frame type %d", ErrMalformedFrame, b[4])
	}
	if d.err != nil {
		return Frame{}, fmt.Errorf("%s frame: %w", f.Type, d.err)
	}
	if len(d.b) != 0 {
		return Frame{}, fmt.Errorf("%w: %s frame has %d trailing bytes", ErrMalformedFrame, f.Type, len(d.b))
	}
	return f, nil
}

func beginFrame(dst []byte, t FrameType) (int, []byte) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(t))
	return start, dst
}

func endFrame(dst []byte, start int) []byte {
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

func clampInt(v int) int {
	if v < 0 {
		return 0
	}
	if uint64(v) > 0xffffffff {
		return 0xffffffff
	}
	return v
}

// appendStr16 appends a string with a uint16 length; longer strings are cut
// (strings on the wire are ids, addresses and error texts).
func appendStr16(dst []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBytes32(dst []byte, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// decoder reads fields from b; the first error sticks and later reads return zeros.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformedFrame}, args...)...)
	}
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail("field of %d bytes, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str16() string {
	n := d.u16()
	return string(d.take(uint64(n)))
}

func (d *decoder) bytes32() []byte {
	n := d.u32()
	v := d.take(uint64(n))
	if len(v) == 0 {
		return nil
	}
	return v
}

// rest takes every byte left (nil if none).
func (d *decoder) rest() []byte {
	v := d.take(uint64(len(d.b)))
	if len(v) == 0 {
		return nil
	}
	return v
}
