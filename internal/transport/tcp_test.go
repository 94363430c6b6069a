package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// The transport carries the single-leader engine's messages as opaque
// payloads: its tests encode and decode them as the node does
// (repl.AppendMessage, repl.DecodeMessage).

// wireMsg is a repl.Message as an Encoder.
type wireMsg repl.Message

func (m *wireMsg) AppendPayload(dst []byte) []byte {
	return repl.AppendMessage(dst, (*repl.Message)(m))
}

// sendMsg sends m to m.To as the node does: a single-leader payload that
// the transport encodes.
func sendMsg(tr Transport, m repl.Message) {
	tr.SendEncoder(NodeID(m.To), EngineSingleLeader, (*wireMsg)(&m))
}

// msgFrame is the message frame carrying m.
func msgFrame(m *repl.Message) []byte {
	return AppendPayload(nil, &Payload{Engine: EngineSingleLeader, Data: repl.AppendMessage(nil, m)})
}

// rmsg is a message a recHandler received, with the peer the transport
// said it came from.
type rmsg struct {
	from NodeID
	repl.Message
}

type recHandler struct {
	id    NodeID
	msgs  chan rmsg    // single-leader payloads that decode as messages
	pays  chan Payload // the other payloads; To is left empty: the handler is not told
	downs chan NodeID
}

func newRec(id NodeID) *recHandler {
	return &recHandler{id: id, msgs: make(chan rmsg, 1024), pays: make(chan Payload, 1024),
		downs: make(chan NodeID, 64)}
}

func (h *recHandler) HandlePeerDown(id NodeID) {
	select {
	case h.downs <- id:
	default:
	}
}

func (h *recHandler) HandlePayload(from NodeID, e Engine, payload []byte) {
	if e == EngineSingleLeader {
		if m, err := repl.DecodeMessage(payload); err == nil {
			h.msgs <- rmsg{from: from, Message: m}
			return
		}
	}
	h.pays <- Payload{Engine: e, From: from, Data: payload}
}

// HandleStream echoes the stream back, prefixed with the peer's id and a
// newline, until the stream ends.
func (h *recHandler) HandleStream(from NodeID, c net.Conn) {
	if _, err := c.Write([]byte(string(from) + "\n")); err != nil {
		return
	}
	io.Copy(c, c)
}

func (h *recHandler) HandleForward(ctx context.Context, from NodeID, req *ForwardRequest) *ForwardResponse {
	if string(req.Key) == "block" {
		<-ctx.Done()
		return &ForwardResponse{Code: api.CodeStopped}
	}
	return &ForwardResponse{Leader: h.id, Read: api.ReadResult{Found: true, Value: append([]byte(string(from)+":"), req.Key...)}}
}

func mustListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func mustTCP(t testing.TB, cluster string, id NodeID, ln net.Listener, peers map[NodeID]string, opts ...func(*TCPConfig)) *TCP {
	t.Helper()
	cfg := DefaultTCPConfig()
	cfg.ClusterID = cluster
	cfg.Self = PeerInfo{ID: id, HTTPAddr: "http-" + string(id), RESPAddr: "resp-" + string(id)}
	cfg.Peers = peers
	cfg.Listener = ln
	for _, o := range opts {
		o(&cfg)
	}
	tr, err := NewTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func waitMsg(t testing.TB, h *recHandler, d time.Duration) (rmsg, bool) {
	t.Helper()
	select {
	case m := <-h.msgs:
		return m, true
	case <-time.After(d):
		return rmsg{}, false
	}
}

// sendUntil resends m until h receives something (the first sends may be
// dropped while the connection comes up: the transport is lossy by design).
func sendUntil(t testing.TB, tr Transport, h *recHandler, m repl.Message) rmsg {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		sendMsg(tr, m)
		if got, ok := waitMsg(t, h, 20*time.Millisecond); ok {
			return got
		}
	}
	t.Fatalf("message %v never delivered", m.Type)
	return rmsg{}
}

func TestTCPMessagesAndForward(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": lb.Addr().String()})
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()})
	ha, hb := newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)

	m := repl.Message{Type: repl.MsgApp, From: "a", To: "b", Term: 2, Index: 1, LogTerm: 1,
		Entries: []entry.Entry{{Term: 2, Index: 2, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("v")}}}
	got := sendUntil(t, a, hb, m)
	if got.Type != repl.MsgApp || got.from != "a" || got.From != "a" || len(got.Entries) != 1 || string(got.Entries[0].Value) != "v" {
		t.Fatalf("got %+v", got)
	}
	// In-order delivery over one connection.
	for i := uint64(1); i <= 100; i++ {
		sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: i})
	}
	for i := uint64(1); i <= 100; i++ {
		got, ok := waitMsg(t, hb, 5*time.Second)
		if !ok || got.Term != i {
			t.Fatalf("heartbeat %d: got term %d ok=%v", i, got.Term, ok)
		}
	}
	// The other direction, and forwarding.
	sendUntil(t, b, ha, repl.Message{Type: repl.MsgHeartbeatResp, From: "b", To: "a", Term: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := a.Forward(ctx, "b", &ForwardRequest{Op: OpGet, Key: []byte("key")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Leader != "b" || string(resp.Read.Value) != "a:key" {
		t.Fatalf("forward response %+v", resp)
	}
	// A forward whose handler blocks ends with the caller's context.
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := a.Forward(short, "b", &ForwardRequest{Op: OpGet, Key: []byte("block")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked forward: %v", err)
	}
	if _, err := a.Forward(ctx, "zz", &ForwardRequest{Op: OpGet}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("forward to unknown peer: %v", err)
	}
	// Plaintext handshakes are unauthenticated: their client endpoints are not used.
	if pi, ok := a.Peer("b"); ok {
		t.Fatalf("peer info learned from an unauthenticated handshake: %+v", pi)
	}
	if pi, ok := a.Peer("a"); !ok || pi.HTTPAddr != "http-a" {
		t.Fatalf("own peer info %+v %v", pi, ok)
	}
}

func TestTCPPeerFromConfiguration(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	clients := func(c *TCPConfig) {
		c.Clients = map[NodeID]PeerInfo{"a": {HTTPAddr: "conf-http-a"}, "b": {HTTPAddr: "conf-http-b", RESPAddr: "conf-resp-b"}}
	}
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": lb.Addr().String()}, clients)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()}, clients)
	hb := newRec("b")
	a.Start(newRec("a"))
	b.Start(hb)
	sendUntil(t, a, hb, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b"})
	if pi, ok := a.Peer("b"); !ok || pi.ID != "b" || pi.HTTPAddr != "conf-http-b" || pi.RESPAddr != "conf-resp-b" {
		t.Fatalf("configured peer info: %+v %v", pi, ok)
	}
	if pi, ok := b.Peer("zz"); ok {
		t.Fatalf("peer info for an unknown id: %+v", pi)
	}
}

func TestTCPRefusesHandshake(t *testing.T) {
	tests := []struct {
		name string
		hs   Handshake
		want string
	}{
		{"other cluster", Handshake{ClusterID: "other", NodeID: "a"}, "cluster"},
		{"unknown node", Handshake{ClusterID: "c", NodeID: "zz"}, "not a member"},
		{"own id", Handshake{ClusterID: "c", NodeID: "b"}, "not a member"},
	}
	lb := mustListen(t)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": "127.0.0.1:1"})
	hb := newRec("b")
	b.Start(hb)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", lb.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(AppendHandshake(nil, &tc.hs))
			c.Write(msgFrame(&repl.Message{Type: repl.MsgHeartbeat, From: repl.NodeID(tc.hs.NodeID), To: "b"}))
			f, err := ReadFrame(c, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != FrameHandshakeReject || !strings.Contains(f.Reject, tc.want) {
				t.Fatalf("got %s %q, want a reject containing %q", f.Type, f.Reject, tc.want)
			}
		})
	}
	if m, ok := waitMsg(t, hb, 100*time.Millisecond); ok {
		t.Fatalf("message delivered after a refused handshake: %+v", m)
	}

	// A whole transport of another cluster never gets a message through.
	la := mustListen(t)
	a := mustTCP(t, "other", "a", la, map[NodeID]string{"b": lb.Addr().String()})
	a.Start(newRec("a"))
	for range 20 {
		sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b"})
		time.Sleep(10 * time.Millisecond)
	}
	if m, ok := waitMsg(t, hb, 100*time.Millisecond); ok {
		t.Fatalf("message from another cluster delivered: %+v", m)
	}
}

// TestTCPMessagesAreTheConnectionsMember: the transport does not read the
// sender a single-leader message names: it hands every message frame to the
// handler as the payload of the connection's member (which the node checks
// the message against, internal/node TestForgedPeerMessagesDropped). A
// payload frame naming another sender is dropped and counted.
func TestTCPMessagesAreTheConnectionsMember(t *testing.T) {
	lb := mustListen(t)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": "127.0.0.1:1", "x": "127.0.0.1:1"})
	hb := newRec("b")
	b.Start(hb)
	c, err := net.Dial("tcp", lb.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(AppendHandshake(nil, &Handshake{ClusterID: "c", NodeID: "a"}))
	if f, err := ReadFrame(c, 1<<20); err != nil || f.Type != FrameHandshake || f.Handshake.NodeID != "b" {
		t.Fatalf("handshake reply: %v %+v", err, f)
	}
	c.Write(msgFrame(&repl.Message{Type: repl.MsgHeartbeat, From: "x", To: "b", Term: 1}))
	c.Write(msgFrame(&repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 2}))
	c.Write(AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "x", To: "b", Data: []byte("forged")}))
	c.Write(AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "b", Data: []byte("a's")}))
	for term := uint64(1); term <= 2; term++ {
		m, ok := waitMsg(t, hb, 5*time.Second)
		if !ok || m.from != "a" || m.Term != term {
			t.Fatalf("got %+v ok=%v, want the message of term %d as a's", m, ok, term)
		}
	}
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || p.From != "a" || string(p.Data) != "a's" {
		t.Fatalf("got %+v ok=%v, want only a's own payload", p, ok)
	}
	if got := b.Forged(); got != 1 {
		t.Fatalf("forged count %d, want 1 (the payload frame)", got)
	}
	// Garbage after the handshake closes the connection without harm.
	c.Write([]byte{1, 0, 0, 0, 99})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after a malformed frame")
	}
}

func TestTCPReconnects(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	addrB := lb.Addr().String()
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": addrB})
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()})
	hb := newRec("b")
	a.Start(newRec("a"))
	b.Start(hb)
	sendUntil(t, a, hb, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 1})
	b.Close()

	ln, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Skipf("cannot listen again on %s: %v", addrB, err)
	}
	b2 := mustTCP(t, "c", "b", ln, map[NodeID]string{"a": la.Addr().String()})
	hb2 := newRec("b")
	b2.Start(hb2)
	got := sendUntil(t, a, hb2, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 2})
	if got.Term != 2 {
		t.Fatalf("after reconnect got %+v", got)
	}
}

func TestMemNetwork(t *testing.T) {
	n := NewNetwork()
	a := n.Endpoint(PeerInfo{ID: "a", HTTPAddr: "ha"}, 16)
	b := n.Endpoint(PeerInfo{ID: "b", HTTPAddr: "hb"}, 16)
	ha, hb := newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()

	sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 1})
	if m, ok := waitMsg(t, hb, 5*time.Second); !ok || m.Term != 1 {
		t.Fatalf("connected: %+v %v", m, ok)
	}
	n.Cut("a", "b")
	sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 2})
	if _, err := a.Forward(ctx, "b", &ForwardRequest{Op: OpGet}); !errors.Is(err, ErrNotSent) {
		t.Fatalf("forward over a cut link: %v", err)
	}
	sendMsg(b, repl.Message{Type: repl.MsgHeartbeat, From: "b", To: "a", Term: 3})
	if m, ok := waitMsg(t, ha, 5*time.Second); !ok || m.Term != 3 {
		t.Fatalf("reverse direction of a one-way cut: %+v %v", m, ok)
	}
	if m, ok := waitMsg(t, hb, 50*time.Millisecond); ok {
		t.Fatalf("delivered over a cut link: %+v", m)
	}
	n.Heal()
	resp, err := a.Forward(ctx, "b", &ForwardRequest{Op: OpGet, Key: []byte("k")})
	if err != nil || string(resp.Read.Value) != "a:k" {
		t.Fatalf("forward after heal: %v %+v", err, resp)
	}
	if pi, ok := a.Peer("b"); !ok || pi.HTTPAddr != "hb" {
		t.Fatalf("peer info %+v", pi)
	}
}

// A peer added by SetPeers after Start is dialed and accepted; a new address
// for a known peer is used by the next connection.
func TestTCPSetPeers(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	a := mustTCP(t, "c", "a", la, map[NodeID]string{})
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()})
	ha, hb := newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)
	sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 1})
	if _, ok := waitMsg(t, hb, 100*time.Millisecond); ok {
		t.Fatal("a message reached a peer the sender does not know")
	}
	a.SetPeers(map[NodeID]string{"b": lb.Addr().String(), "a": "ignored:1"})
	if got := sendUntil(t, a, hb, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 2}); got.From != "a" {
		t.Fatalf("got %+v", got)
	}
	// b's inbound check now knows a; and a accepts b's connection.
	sendUntil(t, b, ha, repl.Message{Type: repl.MsgHeartbeatResp, From: "b", To: "a", Term: 2})
	// b moves: a new listener, and a learns the new address.
	lb2 := mustListen(t)
	b2 := mustTCP(t, "c", "b", lb2, map[NodeID]string{"a": la.Addr().String()})
	hb2 := newRec("b")
	b.Close()
	b2.Start(hb2)
	a.SetPeers(map[NodeID]string{"b": lb2.Addr().String()})
	if got := sendUntil(t, a, hb2, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 3}); got.Term != 3 {
		t.Fatalf("got %+v after the address change", got)
	}
}

// TestPeerDownOnRefusal: when a peer's process goes away (its listener
// closes, as the kernel does for a killed process), the connection to it
// drops and redialing is refused: the handler hears it at once, without
// any message queued for the peer. A live peer is never reported.
func TestPeerDownOnRefusal(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	bAddr := lb.Addr().String()
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": bAddr})
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()})
	ha, hb := newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)
	sendUntil(t, a, hb, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 1})
	select {
	case id := <-ha.downs:
		t.Fatalf("live peer %s reported down", id)
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	b.Close() // closes b's listener and its connections
	select {
	case id := <-ha.downs:
		if id != "b" {
			t.Fatalf("reported %q down, want b", id)
		}
		t.Logf("peer down reported %v after the close", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("a closed peer was never reported down")
	}
}

// TestRedialWokenByInbound: a peer that connects to us is up, so our own
// dial to it does not wait out its backoff (a restarted follower would
// otherwise wait up to BackoffMax for the leader's heartbeats and catch-up).
func TestRedialWokenByInbound(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	bAddr := lb.Addr().String()
	lb.Close() // b is down: a's dials are refused, then back off
	slow := func(c *TCPConfig) { c.BackoffMin, c.BackoffMax = 20*time.Second, 20*time.Second }
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": bAddr}, slow)
	ha := newRec("a")
	a.Start(ha)
	select {
	case <-ha.downs: // a's first dial was refused; it now waits 20 s
	case <-time.After(5 * time.Second):
		t.Fatal("a's dial to the closed address was not refused")
	}
	lb2, err := net.Listen("tcp", bAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", bAddr, err)
	}
	b := mustTCP(t, "c", "b", lb2, map[NodeID]string{"a": la.Addr().String()})
	hb := newRec("b")
	b.Start(hb)
	start := time.Now()
	// b dials a when it starts (to send this); a's link to b must follow.
	sendMsg(b, repl.Message{Type: repl.MsgHeartbeatResp, From: "b", To: "a", Term: 1})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 1})
		if _, ok := waitMsg(t, hb, 20*time.Millisecond); ok {
			t.Logf("a reached b %v after b started", time.Since(start).Round(time.Millisecond))
			return
		}
	}
	t.Fatal("a did not redial b within 5 s of b connecting to it (backoff 20 s)")
}
