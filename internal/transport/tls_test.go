package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/repl"
)

// mustPKI creates a certificate directory for ids (a new CA with clusterID).
func mustPKI(t testing.TB, clusterID string, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := pki.DefaultConfig()
	cfg.ClusterID = clusterID
	if _, err := pki.Ensure(dir, ids, cfg); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustMember(t testing.TB, dir, id string) *pki.Member {
	t.Helper()
	m, err := pki.LoadMember(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func withTLS(m *pki.Member) func(*TCPConfig) {
	return func(c *TCPConfig) { c.TLS = m }
}

// tlsPair starts members a and b of one cluster over TLS; b also knows x.
func tlsPair(t testing.TB, dir string) (a, b *TCP, ha, hb *recHandler) {
	t.Helper()
	la, lb := mustListen(t), mustListen(t)
	a = mustTCP(t, "c", "a", la, map[NodeID]string{"b": lb.Addr().String()}, withTLS(mustMember(t, dir, "a")))
	b = mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String(), "x": "127.0.0.1:1"},
		withTLS(mustMember(t, dir, "b")))
	ha, hb = newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)
	return a, b, ha, hb
}

func TestTLSMessagesAndForward(t *testing.T) {
	dir := mustPKI(t, "c", "a", "b", "x")
	a, b, ha, hb := tlsPair(t, dir)
	m := repl.Message{Type: repl.MsgApp, From: "a", To: "b", Term: 2, Index: 1, LogTerm: 1,
		Entries: []entry.Entry{{Term: 2, Index: 2, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("v")}}}
	if got := sendUntil(t, a, hb, m); got.From != "a" || string(got.Entries[0].Value) != "v" {
		t.Fatalf("got %+v", got)
	}
	sendUntil(t, b, ha, repl.Message{Type: repl.MsgAppResp, From: "b", To: "a", Term: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := a.Forward(ctx, "b", &ForwardRequest{Op: OpGet, Key: []byte("key")})
	if err != nil || string(resp.Read.Value) != "a:key" {
		t.Fatalf("forward: %v %+v", err, resp)
	}
	// Authenticated handshakes: each learned the other's client endpoints.
	for _, c := range []struct {
		tr   *TCP
		peer NodeID
	}{{a, "b"}, {b, "a"}} {
		pi, ok := c.tr.Peer(c.peer)
		if !ok || pi.HTTPAddr != "http-"+string(c.peer) || pi.RESPAddr != "resp-"+string(c.peer) {
			t.Fatalf("peer info for %s: %+v %v", c.peer, pi, ok)
		}
	}
	if a.Refused()+b.Refused() != 0 || a.Forged()+b.Forged() != 0 {
		t.Fatalf("refused %d/%d forged %d/%d", a.Refused(), b.Refused(), a.Forged(), b.Forged())
	}
}

// dialAs opens a peer session to addr the way an outsider would: with cert
// (nil: no client certificate), sends a handshake naming hsID and a heartbeat
// from hsID, and returns what it read back (nil and the error when refused).
func dialAs(t *testing.T, addr string, cert *tls.Certificate, hsID NodeID) (*Frame, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return nil, err
	}
	c.Write(AppendHandshake(nil, &Handshake{ClusterID: "c", NodeID: hsID}))
	c.Write(msgFrame(&repl.Message{Type: repl.MsgHeartbeat, From: repl.NodeID(hsID), To: "b", Term: 1}))
	f, err := ReadFrame(c, MaxHandshakeBytes)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

func TestTLSRefusesNonMembers(t *testing.T) {
	dir := mustPKI(t, "c", "a", "b", "x", "zz")
	other := mustPKI(t, "c", "a") // another CA, even with the same cluster id
	_, b, _, hb := tlsPair(t, dir)
	addr := b.Addr().String()
	certOf := func(dir, id string) *tls.Certificate { return &mustMember(t, dir, id).Cert }
	tests := []struct {
		name string
		cert *tls.Certificate
		id   NodeID
	}{
		{"no client certificate", nil, "a"},
		{"certificate from another CA", certOf(other, "a"), "a"},
		{"certificate of a non-member id", certOf(dir, "zz"), "zz"},
		{"certificate of the acceptor itself", certOf(dir, "b"), "b"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := dialAs(t, addr, tc.cert, tc.id)
			if err == nil {
				t.Fatalf("session opened: got a %s frame", f.Type)
			}
			waitCount(t, "refused", b.Refused, uint64(i+1))
		})
	}
	// Plain TCP to a TLS port: the bytes are not a TLS hello.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(AppendHandshake(nil, &Handshake{ClusterID: "c", NodeID: "a"}))
	c.Write(msgFrame(&repl.Message{Type: repl.MsgApp, From: "a", To: "b", Term: 1}))
	if f, err := ReadFrame(c, MaxHandshakeBytes); err == nil {
		t.Fatalf("plaintext client got a %s frame", f.Type)
	}
	if m, ok := waitMsg(t, hb, 100*time.Millisecond); ok {
		t.Fatalf("message from a non-member delivered: %+v", m)
	}

	// A transport with another CA's certificate never gets a message through.
	la := mustListen(t)
	a2 := mustTCP(t, "c", "a", la, map[NodeID]string{"b": addr}, withTLS(mustMember(t, other, "a")))
	a2.Start(newRec("a"))
	for range 20 {
		sendMsg(a2, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b"})
		time.Sleep(10 * time.Millisecond)
	}
	if m, ok := waitMsg(t, hb, 100*time.Millisecond); ok {
		t.Fatalf("message from another CA delivered: %+v", m)
	}
}

func TestTLSMemberCannotSpeakAsAnother(t *testing.T) {
	dir := mustPKI(t, "c", "a", "b", "x")
	a, b, _, hb := tlsPair(t, dir)
	// The test speaks as a by hand: the real a would redial b and, as a
	// second session of a, replace the test's session at any moment.
	a.Close()
	certA := &mustMember(t, dir, "a").Cert

	// A's certificate, a handshake naming x: refused, and the reason names nothing.
	f, err := dialAs(t, b.Addr().String(), certA, "x")
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != FrameHandshakeReject || f.Reject != "identity mismatch" {
		t.Fatalf("got %s %q, want the reject %q", f.Type, f.Reject, "identity mismatch")
	}

	// A's certificate and handshake, then messages claiming to be from x.
	raw, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*certA}})
	c.Write(AppendHandshake(nil, &Handshake{ClusterID: "c", NodeID: "a"}))
	if f, err := ReadFrame(c, MaxHandshakeBytes); err != nil || f.Type != FrameHandshake || f.Handshake.NodeID != "b" {
		t.Fatalf("handshake reply: %v %+v", err, f)
	}
	// The transport hands each to the handler as a's, whatever it claims:
	// the node drops those that name another sender or recipient
	// (internal/node TestForgedPeerMessagesDropped); payload frames, whose
	// sender the transport reads, are TestTLSPayloadSpeaksForTheMember.
	c.Write(msgFrame(&repl.Message{Type: repl.MsgTimeoutNow, From: "x", To: "b", Term: 5}))
	c.Write(msgFrame(&repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "zz", Term: 6}))
	c.Write(msgFrame(&repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 7}))
	for _, want := range []struct {
		from, to NodeID
		term     uint64
	}{{"x", "b", 5}, {"a", "zz", 6}, {"a", "b", 7}} {
		m, ok := waitMsg(t, hb, 5*time.Second)
		if !ok || m.from != "a" || m.From != repl.NodeID(want.from) || m.To != repl.NodeID(want.to) || m.Term != want.term {
			t.Fatalf("got %+v ok=%v, want the message of term %d, from a's connection", m, ok, want.term)
		}
	}
	if got := b.Forged(); got != 0 {
		t.Fatalf("forged count %d, want 0", got)
	}
	// A forwarded request on this connection is a's, whatever it says.
	c.Write(AppendForwardRequest(nil, &ForwardRequest{ID: 9, Op: OpGet, Key: []byte("k")}))
	if f, err := ReadFrame(c, 1<<20); err != nil || f.Type != FrameForwardResponse || string(f.Response.Read.Value) != "a:k" {
		t.Fatalf("forward response: %v %+v", err, f)
	}

	// A second session of a replaces the first.
	c2 := tls.Client(mustDial(t, b.Addr().String()), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{*certA}})
	defer c2.Close()
	c2.Write(AppendHandshake(nil, &Handshake{ClusterID: "c", NodeID: "a"}))
	if f, err := ReadFrame(c2, MaxHandshakeBytes); err != nil || f.Type != FrameHandshake {
		t.Fatalf("second handshake: %v %+v", err, f)
	}
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("first session still open after a second one: %v", err)
	}
}

func mustDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func TestTLSDialerChecksServerIdentity(t *testing.T) {
	dir := mustPKI(t, "c", "a", "b", "x")
	lb := mustListen(t)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": "127.0.0.1:1"}, withTLS(mustMember(t, dir, "b")))
	hb := newRec("b")
	b.Start(hb)
	// a believes x listens where b does: b's certificate does not name x.
	la := mustListen(t)
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"x": lb.Addr().String()}, withTLS(mustMember(t, dir, "a")))
	a.Start(newRec("a"))
	for range 20 {
		sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "x"})
		time.Sleep(10 * time.Millisecond)
	}
	if m, ok := waitMsg(t, hb, 100*time.Millisecond); ok {
		t.Fatalf("delivered to the wrong member: %+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := a.Forward(ctx, "x", &ForwardRequest{Op: OpGet}); !errors.Is(err, ErrNotSent) {
		t.Fatalf("forward to an impostor: %v", err)
	}
}

// TestPreHandshakeFrameBounded: a length field claiming 16 MiB before the
// handshake is refused at once, without the memory it claims.
func TestPreHandshakeFrameBounded(t *testing.T) {
	lb := mustListen(t)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": "127.0.0.1:1"})
	b.Start(newRec("b"))
	var conns []net.Conn
	for range 40 {
		c := mustDial(t, lb.Addr().String())
		defer c.Close()
		var hdr [5]byte
		binary.LittleEndian.PutUint32(hdr[:], 16<<20)
		hdr[4] = byte(FrameHandshake)
		c.Write(hdr[:])
		conns = append(conns, c)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond)) // well under DialTimeout
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("connection %d: %v, want closed by the acceptor", i, err)
		}
	}
	waitCount(t, "refused", b.Refused, 40)
}

// waitCount waits (up to 5s) until counter reaches want.
func waitCount(t *testing.T, what string, counter func() uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for counter() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := counter(); got != want {
		t.Fatalf("%s count %d, want %d", what, got, want)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestReadFrameAllocatesAsBytesArrive: a frame that claims 16 MiB and sends
// nothing costs at most one chunk.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	var hdr [5]byte
	binary.LittleEndian.PutUint32(hdr[:], 16<<20)
	hdr[4] = byte(FrameMessage)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadFrame(bytes.NewReader(hdr[:]), DefaultMaxFrameBytes); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("ReadFrame: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 10*2*frameChunk {
		t.Fatalf("10 reads of a 16 MiB claim allocated %d bytes", got)
	}
	// A whole large frame still reads correctly.
	m := repl.Message{Type: repl.MsgApp, From: "a", To: "b",
		Entries: []entry.Entry{{Term: 1, Index: 1, Kind: entry.KindPut, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 3*frameChunk+17)}}}
	f, err := ReadFrame(bytes.NewReader(msgFrame(&m)), DefaultMaxFrameBytes)
	if err != nil {
		t.Fatalf("large frame: %v", err)
	}
	if got, err := repl.DecodeMessage(f.Payload.Data); err != nil || len(got.Entries[0].Value) != 3*frameChunk+17 {
		t.Fatalf("large frame's message: %v", err)
	}
	// Before the handshake, the limit is MaxHandshakeBytes.
	binary.LittleEndian.PutUint32(hdr[:], MaxHandshakeBytes+1)
	if _, err := ReadFrame(bytes.NewReader(hdr[:]), MaxHandshakeBytes); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame over MaxHandshakeBytes: %v", err)
	}
}
