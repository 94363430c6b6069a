package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/repl"
)

// mustEcho writes msg to a stream served by recHandler and checks the echo
// (the peer's id line, then msg).
func mustEcho(t *testing.T, c net.Conn, wantFrom NodeID, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != string(wantFrom)+"\n" {
		t.Fatalf("stream greeting %q, %v; want %q", line, err, wantFrom)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q, %v", got, err)
	}
}

func TestTCPStream(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "plaintext", true: "tls"}[secure], func(t *testing.T) {
			var a, b *TCP
			var hb *recHandler
			if secure {
				a, b, _, hb = tlsPair(t, mustPKI(t, "c1", "a", "b"))
			} else {
				la, lb := mustListen(t), mustListen(t)
				a = mustTCP(t, "c1", "a", la, map[NodeID]string{"b": lb.Addr().String()})
				b = mustTCP(t, "c1", "b", lb, map[NodeID]string{"a": la.Addr().String()})
				hb = newRec("b")
				a.Start(newRec("a"))
				b.Start(hb)
			}
			// The message connection comes up first; a stream must not replace it.
			sendUntil(t, a, hb, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := a.OpenStream(ctx, "b")
			if err != nil {
				t.Fatalf("OpenStream: %v", err)
			}
			mustEcho(t, c, "a", strings.Repeat("x", 1<<20)) // larger than any frame buffer
			sendMsg(a, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b", Term: 2})
			if m, ok := waitMsg(t, hb, 5*time.Second); !ok || m.Term != 2 {
				t.Fatalf("message after a stream: %+v %v", m, ok)
			}
			c.Close()
			if _, err := a.OpenStream(ctx, "nobody"); !errors.Is(err, ErrUnknownPeer) {
				t.Fatalf("OpenStream to an unknown peer = %v", err)
			}
			// Close of the transport ends the streams it holds.
			c2, err := a.OpenStream(ctx, "b")
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
			c2.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(c2); err != nil && !isReset(err) {
				t.Fatalf("stream after the peer closed: %v", err)
			}
			c2.Close()
		})
	}
}

// TestTCPStreamLimit: a member holds at most MaxInboundStreams streams open.
func TestTCPStreamLimit(t *testing.T) {
	la, lb := mustListen(t), mustListen(t)
	a := mustTCP(t, "c1", "a", la, map[NodeID]string{"b": lb.Addr().String()})
	b := mustTCP(t, "c1", "b", lb, map[NodeID]string{"a": la.Addr().String()})
	a.Start(newRec("a"))
	b.Start(newRec("b"))
	ctx := context.Background()
	var open []net.Conn
	for range MaxInboundStreams {
		c, err := a.OpenStream(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		mustEcho(t, c, "a", "hi")
		open = append(open, c)
	}
	c, err := a.OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("stream beyond the limit was served: %d, %v", n, err)
	}
	c.Close()
	open[0].Close()
	// A slot frees once the handler returns.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := a.OpenStream(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err == nil && string(buf) == "a\n" {
			c.Close()
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("no stream slot freed after closing one")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range open[1:] {
		c.Close()
	}
}

// TestTCPStreamRefusedWithoutMembership: a stream handshake gets the same
// checks as a message handshake.
func TestTCPStreamRefusedWithoutMembership(t *testing.T) {
	lb := mustListen(t)
	b := mustTCP(t, "c1", "b", lb, map[NodeID]string{"a": "127.0.0.1:1"})
	b.Start(newRec("b"))
	c, err := net.Dial("tcp", lb.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(AppendStreamHandshake(nil, &Handshake{ClusterID: "c1", NodeID: "mallory"}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ReadFrame(c, MaxHandshakeBytes)
	if err != nil || f.Type != FrameHandshakeReject || f.Reject != "not a member" {
		t.Fatalf("answer to a stranger's stream handshake: %+v, %v", f, err)
	}
}

func TestMemStream(t *testing.T) {
	n := NewNetwork()
	a := n.Endpoint(PeerInfo{ID: "a"}, 0)
	b := n.Endpoint(PeerInfo{ID: "b"}, 0)
	a.Start(newRec("a"))
	b.Start(newRec("b"))
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	c, err := a.OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, c, "a", "hello")
	// A cut either way closes the stream.
	n.Cut("b", "a")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("read from a cut stream = %v, want closed", err)
	}
	if _, err := a.OpenStream(ctx, "b"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("OpenStream over a cut link = %v", err)
	}
	n.Heal()
	c, err = a.OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, c, "a", "again")
	c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
