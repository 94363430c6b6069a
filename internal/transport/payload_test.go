package transport

import (
	"bytes"
	"crypto/tls"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"

	"github.com/trireme-db/trireme/internal/repl"
)

func waitPay(t testing.TB, h *recHandler, d time.Duration) (Payload, bool) {
	t.Helper()
	select {
	case p := <-h.pays:
		return p, true
	case <-time.After(d):
		return Payload{}, false
	}
}

// sendPayloadUntil resends a payload until h receives something (the first
// sends may be dropped while the connection comes up).
func sendPayloadUntil(t testing.TB, tr Transport, h *recHandler, to NodeID, e Engine, data []byte) Payload {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tr.SendPayload(to, e, data)
		if got, ok := waitPay(t, h, 20*time.Millisecond); ok {
			return got
		}
	}
	t.Fatalf("%s payload never delivered to %s", e, to)
	return Payload{}
}

// TestTCPPayloads: payloads of every engine go both ways over plaintext TCP,
// in order; a payload to an unknown peer, of engine 0 or over the frame limit
// is dropped and counted, and the link stays up. The limit is the one the
// receiver's decoder applies: a frame of exactly MaxFrameBytes passes.
func TestTCPPayloads(t *testing.T) {
	const limit = 64 << 10
	small := func(c *TCPConfig) { c.MaxFrameBytes = limit }
	la, lb := mustListen(t), mustListen(t)
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": lb.Addr().String()}, small)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()}, small)
	ha, hb := newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)

	got := sendPayloadUntil(t, a, hb, "b", EngineMultiLeader, []byte("from a"))
	if got.From != "a" || got.Engine != EngineMultiLeader || string(got.Data) != "from a" {
		t.Fatalf("a to b: got %+v", got)
	}
	got = sendPayloadUntil(t, b, ha, "a", EngineLeaderless, []byte("from b"))
	if got.From != "b" || got.Engine != EngineLeaderless || string(got.Data) != "from b" {
		t.Fatalf("b to a: got %+v", got)
	}

	// In order, on the queue the messages use, any engine (the handler decides).
	engines := []Engine{EngineSingleLeader, EngineMultiLeader, EngineLeaderless, 9}
	for i := range 100 {
		a.SendPayload("b", engines[i%len(engines)], []byte{byte(i)})
		sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: uint64(i)})
	}
	for i := range 100 {
		p, ok := waitPay(t, hb, 5*time.Second)
		if !ok || p.Engine != engines[i%len(engines)] || !bytes.Equal(p.Data, []byte{byte(i)}) {
			t.Fatalf("payload %d: got %+v ok=%v", i, p, ok)
		}
		if m, ok := waitMsg(t, hb, 5*time.Second); !ok || m.Term != uint64(i) {
			t.Fatalf("heartbeat %d: got %+v ok=%v", i, m, ok)
		}
	}
	if p := sendPayloadUntil(t, b, ha, "a", EngineMultiLeader, nil); p.From != "b" || len(p.Data) != 0 {
		t.Fatalf("empty payload: got %+v", p)
	}

	fits := limit - (1 + 1 + 2 + 1 + 2 + 1 + 4) // type, engine, from "a", to "b", length
	dropped := a.Dropped()
	a.SendPayload("zz", EngineMultiLeader, []byte("unknown peer"))
	a.SendPayload("b", 0, []byte("engine 0"))
	a.SendPayload("b", EngineMultiLeader, make([]byte, fits+1))
	if d := a.Dropped() - dropped; d != 3 {
		t.Fatalf("dropped %d payloads, want 3", d)
	}
	a.SendPayload("b", EngineMultiLeader, make([]byte, fits))
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || len(p.Data) != fits {
		t.Fatalf("a payload of exactly the frame limit: got %d bytes ok=%v", len(p.Data), ok)
	}
	if a.Forged()+b.Forged() != 0 {
		t.Fatalf("forged %d/%d", a.Forged(), b.Forged())
	}
}

// TestTLSPayloadSpeaksForTheMember: over a's authenticated connection, a
// payload from another member or to another node is dropped and counted,
// like a message; a's own payload is delivered as a's.
func TestTLSPayloadSpeaksForTheMember(t *testing.T) {
	dir := mustPKI(t, "c", "a", "b", "x")
	a, b, _, hb := tlsPair(t, dir)
	a.Close() // the test speaks as a by hand (see TestTLSMemberCannotSpeakAsAnother)
	certA := &mustMember(t, dir, "a").Cert

	c := tls.Client(mustDial(t, b.Addr().String()), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{*certA}})
	defer c.Close()
	c.Write(AppendHandshake(nil, &Handshake{ClusterID: "c", NodeID: "a"}))
	if f, err := ReadFrame(c, MaxHandshakeBytes); err != nil || f.Type != FrameHandshake || f.Handshake.NodeID != "b" {
		t.Fatalf("handshake reply: %v %+v", err, f)
	}
	c.Write(AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "x", To: "b", Data: []byte("forged sender")}))
	c.Write(AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "zz", Data: []byte("another recipient")}))
	c.Write(AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "b", Data: []byte("a's")}))
	p, ok := waitPay(t, hb, 5*time.Second)
	if !ok || p.From != "a" || string(p.Data) != "a's" {
		t.Fatalf("got %+v ok=%v, want only a's own payload", p, ok)
	}
	if got := b.Forged(); got != 2 {
		t.Fatalf("forged count %d, want 2", got)
	}
}

// TestMemPayloads: the in-memory network carries payloads like messages:
// cuts, isolation and healing apply, and a full inbox drops.
func TestMemPayloads(t *testing.T) {
	n := NewNetwork()
	a := n.Endpoint(PeerInfo{ID: "a"}, 16)
	b := n.Endpoint(PeerInfo{ID: "b"}, 16)
	ha, hb := newRec("a"), newRec("b")
	a.Start(ha)
	b.Start(hb)
	defer a.Close()
	defer b.Close()
	const quiet = 50 * time.Millisecond // how long a dropped payload is waited for

	a.SendPayload("b", EngineMultiLeader, []byte("p1"))
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || p.From != "a" || p.Engine != EngineMultiLeader || string(p.Data) != "p1" {
		t.Fatalf("connected: %+v %v", p, ok)
	}
	n.Cut("a", "b")
	a.SendPayload("b", EngineMultiLeader, []byte("over a cut link"))
	b.SendPayload("a", EngineLeaderless, []byte("p2"))
	if p, ok := waitPay(t, ha, 5*time.Second); !ok || p.From != "b" || string(p.Data) != "p2" {
		t.Fatalf("reverse direction of a one-way cut: %+v %v", p, ok)
	}
	if p, ok := waitPay(t, hb, quiet); ok {
		t.Fatalf("delivered over a cut link: %+v", p)
	}
	n.Heal()
	n.Isolate("b")
	a.SendPayload("b", EngineMultiLeader, []byte("to an isolated node"))
	if p, ok := waitPay(t, hb, quiet); ok {
		t.Fatalf("delivered to an isolated node: %+v", p)
	}
	n.Heal()
	a.SendPayload("b", EngineMultiLeader, []byte("p3"))
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || string(p.Data) != "p3" {
		t.Fatalf("after heal: %+v %v", p, ok)
	}
	a.SendPayload("b", 0, []byte("engine 0"))
	a.SendPayload("b", EngineMultiLeader, make([]byte, DefaultMaxFrameBytes))
	if p, ok := waitPay(t, hb, quiet); ok {
		t.Fatalf("delivered engine %s, %d bytes; want it dropped", p.Engine, len(p.Data))
	}

	// An inbox of 2, not yet drained: the third payload on is dropped.
	c := n.Endpoint(PeerInfo{ID: "c"}, 2)
	defer c.Close()
	for i := range 5 {
		a.SendPayload("c", EngineLeaderless, []byte{byte(i)})
	}
	hc := newRec("c")
	c.Start(hc)
	for i := range 2 {
		if p, ok := waitPay(t, hc, 5*time.Second); !ok || !bytes.Equal(p.Data, []byte{byte(i)}) {
			t.Fatalf("queued payload %d: %+v %v", i, p, ok)
		}
	}
	if p, ok := waitPay(t, hc, quiet); ok {
		t.Fatalf("delivered beyond the inbox: %+v", p)
	}
}

// heldEncoder encodes data once release is closed, counting its calls.
type heldEncoder struct {
	data    []byte
	release chan struct{}
	calls   atomic.Int32
}

func (e *heldEncoder) AppendPayload(dst []byte) []byte {
	<-e.release
	e.calls.Add(1)
	return append(dst, e.data...)
}

// TestTCPSendEncoder: an encoder's payload is encoded by the transport's
// writer, not by the sender: SendEncoder returns while the encoder cannot
// run yet. It is encoded once, in order with SendPayload's payloads, in a
// message frame for the single-leader engine (which decodes as the message)
// and a payload frame for the others. An encoded payload over the frame
// limit is dropped and counted, and the link stays up.
func TestTCPSendEncoder(t *testing.T) {
	const limit = 64 << 10
	small := func(c *TCPConfig) { c.MaxFrameBytes = limit }
	la, lb := mustListen(t), mustListen(t)
	a := mustTCP(t, "c", "a", la, map[NodeID]string{"b": lb.Addr().String()}, small)
	b := mustTCP(t, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()}, small)
	hb := newRec("b")
	a.Start(newRec("a"))
	b.Start(hb)
	sendUntil(t, a, hb, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b"})

	m := repl.Message{Type: repl.MsgApp, From: "a", To: "b", Term: 3, Entries: []entry.Entry{{Term: 3, Index: 1, Kind: entry.KindPut, Key: []byte("k")}}}
	held := &heldEncoder{data: repl.AppendMessage(nil, &m), release: make(chan struct{})}
	ml := &heldEncoder{data: []byte("multi-leader"), release: make(chan struct{})}
	returned := make(chan struct{})
	go func() {
		a.SendEncoder("b", EngineSingleLeader, held)
		a.SendPayload("b", EngineLeaderless, []byte("after"))
		a.SendEncoder("b", EngineMultiLeader, ml)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("SendEncoder waited for the encoder: it encoded on the caller's goroutine")
	}
	if got, ok := waitMsg(t, hb, 50*time.Millisecond); ok {
		t.Fatalf("delivered before it could be encoded: %+v", got)
	}
	close(held.release)
	close(ml.release)
	if got, ok := waitMsg(t, hb, 5*time.Second); !ok || got.from != "a" || got.Term != 3 || string(got.Entries[0].Key) != "k" {
		t.Fatalf("encoded message: %+v ok=%v", got, ok)
	}
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || p.Engine != EngineLeaderless || string(p.Data) != "after" {
		t.Fatalf("payload after it: %+v ok=%v", p, ok)
	}
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || p.Engine != EngineMultiLeader || p.From != "a" || string(p.Data) != "multi-leader" {
		t.Fatalf("encoded payload: %+v ok=%v", p, ok)
	}
	if held.calls.Load() != 1 || ml.calls.Load() != 1 {
		t.Fatalf("encoded %d and %d times, want once each", held.calls.Load(), ml.calls.Load())
	}

	// Over the limit, once encoded: dropped on the writer, counted, and the
	// connection stays up for what follows.
	dropped := a.Dropped()
	open := make(chan struct{})
	close(open)
	fits := limit - (1 + 1 + 2 + 1 + 2 + 1 + 4)
	a.SendEncoder("b", EngineMultiLeader, &heldEncoder{data: make([]byte, fits+1), release: open})
	a.SendEncoder("b", EngineSingleLeader, &heldEncoder{data: make([]byte, limit), release: open})
	a.SendEncoder("b", EngineMultiLeader, &heldEncoder{data: make([]byte, fits), release: open})
	sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 9})
	if p, ok := waitPay(t, hb, 5*time.Second); !ok || len(p.Data) != fits {
		t.Fatalf("a payload of exactly the limit: %d bytes ok=%v", len(p.Data), ok)
	}
	if got, ok := waitMsg(t, hb, 5*time.Second); !ok || got.Term != 9 {
		t.Fatalf("after the dropped payloads: %+v ok=%v", got, ok)
	}
	if d := a.Dropped() - dropped; d != 2 {
		t.Fatalf("dropped %d, want 2", d)
	}
	a.SendEncoder("b", 0, &heldEncoder{release: open})
	if d := a.Dropped() - dropped; d != 3 {
		t.Fatalf("engine 0: dropped %d, want 3", d)
	}
}
