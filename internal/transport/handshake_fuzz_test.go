package transport

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/repl"
)

// scriptConn is a net.Conn that reads a fixed input and records what is written.
type scriptConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(b []byte) (int, error)      { return c.in.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error)     { return c.out.Write(b) }
func (c *scriptConn) Close() error                    { return nil }
func (c *scriptConn) LocalAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr            { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error     { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error {
	return nil
}

// FuzzAcceptHandshake feeds arbitrary bytes to the acceptor's side of the
// (plaintext) handshake: it never panics, accepts only a handshake of this
// cluster naming a member, and answers a refusal with a reason from a fixed
// set (nothing about this node or cluster).
func FuzzAcceptHandshake(f *testing.F) {
	hs := func(cluster string, id NodeID) []byte {
		return AppendHandshake(nil, &Handshake{ClusterID: cluster, NodeID: id, HTTPAddr: "127.0.0.1:1"})
	}
	claim := func(n uint32, t FrameType) []byte {
		b := binary.LittleEndian.AppendUint32(nil, n)
		return append(b, byte(t))
	}
	f.Add(hs("c", "a"))
	f.Add(append(hs("c", "a"), msgFrame(&repl.Message{Type: repl.MsgApp, From: "a", To: "b", Term: 1})...))
	f.Add(hs("other", "a"))
	f.Add(hs("c", "b"))
	f.Add(hs("c", "zz"))
	f.Add(claim(16<<20, FrameHandshake)) // the 16 MiB claim
	f.Add(claim(MaxHandshakeBytes, FrameHandshake))
	f.Add(msgFrame(&repl.Message{Type: repl.MsgTimeoutNow, From: "a", To: "b", Term: 1}))
	f.Add(AppendForwardRequest(nil, &ForwardRequest{Op: OpPut, Key: []byte("k")}))
	f.Add(AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "b", Data: []byte("p")}))
	f.Add(append(hs("c", "a"), AppendPayload(nil, &Payload{Engine: EngineLeaderless, From: "a", To: "b"})...))
	f.Add([]byte{})
	f.Add(AppendStreamHandshake(nil, &Handshake{ClusterID: "c", NodeID: "a"}))

	tr := mustTCP(f, "c", "b", mustListen(f), map[NodeID]string{"a": "127.0.0.1:1"})
	reasons := []string{"expected a handshake frame", "cluster mismatch", "not a member", "identity mismatch"}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &scriptConn{in: bytes.NewReader(in)}
		_, id, stream, err := tr.accept(c)
		if err == nil {
			if stream != (in[4] == byte(FrameStreamHandshake)) {
				t.Fatalf("stream %v for a frame of type %d", stream, in[4])
			}
			if id != "a" {
				t.Fatalf("accepted a session for %q", id)
			}
			fr, derr := DecodeFrame(in[:4+binary.LittleEndian.Uint32(in)], MaxHandshakeBytes)
			if derr != nil || fr.Handshake.ClusterID != "c" {
				t.Fatalf("accepted %+v (%v)", fr, derr)
			}
			return
		}
		if c.out.Len() == 0 {
			return
		}
		fr, derr := ReadFrame(&c.out, MaxHandshakeBytes)
		if derr != nil || fr.Type != FrameHandshakeReject || !slices.Contains(reasons, fr.Reject) {
			t.Fatalf("refusal answered with %+v (%v)", fr, derr)
		}
	})
}
