// Package transport owns peer messaging between Trireme nodes: the binary frame
// format, a TCP transport (one outbound connection per peer, bounded lossy
// queues, reconnect with backoff, mutual TLS 1.3 with member certificates from
// internal/pki) and an in-memory transport for tests that can cut links.
//
// It carries each replication engine's messages as payloads it does not
// interpret (Engine, SendPayload, SendEncoder, Handler.HandlePayload): the
// engines own their encodings (the single-leader engine's is
// repl.AppendMessage). It promises: SendPayload and SendEncoder never block
// (a full queue drops, like a lossy network; the protocol retries). With TLS
// (TCPConfig.TLS), a connection is accepted only from a certificate that
// chains to the cluster CA and names a current member id, and a dialed peer
// must show the certificate of the member dialed; the connection then speaks
// for that member only: its handshake must name it, every payload is handed
// to the handler as that member's (the from of HandlePayload; a payload
// frame whose From is another member or whose To is not this node is dropped
// and counted, Forged; an engine checks what its own messages claim against
// from), and forwarded client operations are attributed to it. Without TLS
// (plaintext, for tests) the handshake's node id is taken on trust. Either
// way: frames read before the handshake completes are at most
// MaxHandshakeBytes; a frame's buffer is allocated at most 1 MiB ahead of the
// bytes that arrived, never to the size a length field claims; a refusal sent
// to the peer names nothing of this node or cluster; client endpoints come
// from configuration or from an authenticated handshake (Peer); each member
// has at most one inbound connection (a new one replaces the old); the
// decoder never panics on bad bytes and refuses frames over the limit. See
// DESIGN.md.
//
// # Frame format
//
// All integers are little-endian. Every frame is:
//
//	offset  size  field
//	0       4     length L (uint32): bytes after this field (type + body); 1 <= L <= max
//	4       1     frame type (FrameType)
//	5       L-1   body
//
// Strings are str16: a uint16 length then the bytes. Byte strings are bytes32: a
// uint32 length then the bytes.
//
// With TLS, the frames below are the TLS connection's application data, after
// the TLS handshake.
//
// Handshake (type 1), sent first by each side (dialer first, acceptor replies);
// its length field is at most MaxHandshakeBytes (4096):
//
//	4   magic 0x31495254 ("TRI1")
//	1   protocol version (1)
//	str16 cluster id, str16 node id, str16 HTTP address, str16 RESP address
//
// Stream handshake (type 6): the same body and limits as a handshake, sent
// first by the dialer of a stream (Transport.OpenStream) in place of the
// handshake. The acceptor checks it in the same way and replies with a
// handshake (type 1) or a reject; after that the connection is a plain byte
// stream owned by Handler.HandleStream (no frames, no MaxFrameBytes: the
// user of the stream frames and bounds its own data). A stream does not
// replace the member's message connection; each member may hold at most
// MaxInboundStreams streams open to a node.
//
// Handshake reject (type 2), sent by the acceptor before closing: str16 reason
// (one of "expected a handshake frame", "cluster mismatch", "not a member",
// "identity mismatch"); at most MaxHandshakeBytes.
//
// Message (type 3), one single-leader payload (EngineSingleLeader): the body
// is the payload, opaque to the transport. It is the encoding of one
// repl.Message (repl.AppendMessage, documented there), byte for byte the body
// of this frame in releases whose transport encoded messages itself: its
// sender and recipient are inside it, and the single-leader engine checks
// them against the connection's member.
//
// Forward request (type 4), follower to leader:
//
//	8   request id (connection-local)
//	1   op (ForwardOp: 1 put, 2 delete, 3 linearizable get, 4 leadership
//	    transfer to key, 5 membership request, 6 state-machine command,
//	    7 read index)
//	1   ack mode (api.AckMode), 4 replicas (uint32)
//	1   flags (bit 0: use the leader's default ack)
//	8   timeout in ms (0 = leader's default)
//	1   consistency (api.Consistency)
//	bytes32 key, bytes32 value
//
// Forward response (type 5), leader to follower, on the same connection:
//
//	8   request id
//	1   error code (api.Code; one this node does not know, from a newer
//	    node, is kept: api.ErrorOf makes it an internal error with its text),
//	    str16 error text, str16 known leader id
//	8   write index, 8 write term, str16 durability, 4 replicas (uint32)
//	1   flags (bit 0 committed, bit 1 leader durable, bit 2 found)
//	8   read version index, 8 lag entries, 8 lag ms (int64 bits)
//	bytes32 read value
//
// Payload (type 7), the opaque message (Payload) of an engine other than the
// single-leader one, on the same connection and queue as message frames:
//
//	1   engine (Engine: 1 single-leader, 2 multi-leader, 3 leaderless; 0 is
//	    malformed, other values decode and the handler refuses them)
//	str16 from, str16 to
//	bytes32 payload
//
// The transport sends single-leader payloads in message frames (type 3),
// which the previous release understands; a payload frame naming engine 1
// (which no release sends) is delivered like any other. A node that predates
// payload frames refuses one as malformed and closes the connection.
//
// A decoded frame must use exactly L bytes. The constants and values above are
// part of the wire format.
package transport

import (
	"context"
	"errors"
	"net"
)

// Handler receives what peers send. HandlePayload must not block for long
// (it may wait for the engine: the connection's reads wait with it, which is
// TCP back-pressure); HandleForward runs on its own goroutine and may block
// until ctx ends.
//
// HandleStream gets a byte stream a peer opened (Transport.OpenStream), for
// bulk transfers such as snapshots; from is the authenticated peer. It runs
// on its own goroutine, and the transport closes c when it returns (or when
// the transport closes).
type Handler interface {
	// HandlePayload receives engine e's message from peer `from`: with TLS
	// the connection's authenticated member, whatever the payload claims
	// (the engine must refuse a message that names another sender). It is
	// called on the goroutine that reads from's connection, one payload at
	// a time, in the order sent. payload is the handler's to keep. e may be
	// an engine this node does not know (never 0): the handler decides.
	HandlePayload(from NodeID, e Engine, payload []byte)
	HandleForward(ctx context.Context, from NodeID, req *ForwardRequest) *ForwardResponse
	HandleStream(from NodeID, c net.Conn)
	// HandlePeerDown: connecting to the peer was refused (nothing listens
	// at its address: its process is gone). A hint for failure detection,
	// never proof: something in between may refuse for a live peer.
	HandlePeerDown(id NodeID)
}

// PeerInfo is what a node learned about a peer from its handshake.
type PeerInfo struct {
	ID       NodeID
	HTTPAddr string
	RESPAddr string
}

// Transport carries engines' payloads and forwarded client requests between
// nodes.
//
// A payload travels in a message frame (type 3) for EngineSingleLeader and in
// a payload frame (type 7) for the other engines. Payloads to one peer keep
// their order, whichever of SendPayload and SendEncoder sent them. A payload
// whose frame would exceed the frame limit (TCPConfig.MaxFrameBytes), or of
// engine 0, is dropped: the peer would close the connection on it.
type Transport interface {
	// Start begins accepting and delivering to h. Called once.
	Start(h Handler) error
	// SendPayload queues engine e's already encoded message for node `to`
	// without blocking: it is dropped if the queue is full or the peer
	// unknown. The transport owns payload after the call.
	SendPayload(to NodeID, e Engine, payload []byte)
	// SendEncoder is SendPayload for a message the transport encodes
	// itself, when it writes the frame: enc.AppendPayload runs at most once
	// (never if the message is dropped), on a goroutine of the transport,
	// possibly after SendEncoder returns; enc and what it refers to must
	// not change until then. This keeps encoding off the sender's
	// goroutine (the node's run loop).
	SendEncoder(to NodeID, e Engine, enc Encoder)
	// Forward sends req to node `to` and waits for its response or ctx.
	Forward(ctx context.Context, to NodeID, req *ForwardRequest) (*ForwardResponse, error)
	// OpenStream opens a byte stream to node `to`, authenticated like the
	// message connections (the same TLS and handshake) but separate from
	// them: bulk bytes never wait behind, or hold up, protocol messages.
	// The peer's Handler.HandleStream gets the other end. ctx bounds the
	// connection and the handshake only. The caller closes the stream;
	// Close of the transport closes it too.
	OpenStream(ctx context.Context, to NodeID) (net.Conn, error)
	// Peer returns the client endpoints learned from to's handshake.
	Peer(id NodeID) (PeerInfo, bool)
	// Close stops everything; sends then drop and Forward fails.
	Close() error
}

// Errors returned (wrapped) by transports.
var (
	ErrUnknownPeer  = errors.New("transport: unknown peer")
	ErrClosed       = errors.New("transport: closed")
	ErrNotConnected = errors.New("transport: connection to peer lost")
	// ErrNotSent: a forwarded request was certainly not sent (no connection).
	ErrNotSent   = errors.New("transport: request not sent, peer not connected")
	ErrHandshake = errors.New("transport: handshake refused")
)
