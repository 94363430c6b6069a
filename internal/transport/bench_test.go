package transport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// windowHandler releases one send credit per message delivered, so that the
// sender never overruns the transport's lossy queue.
type windowHandler struct {
	credits chan struct{}
}

func (h *windowHandler) handle(repl.Message) { <-h.credits }

// BenchmarkMsgApp measures MsgApp throughput from one node to another over
// loopback TCP, plaintext and mutual TLS 1.3, with batches of 1 KiB entries:
// what peer TLS costs the replication stream (docs/BENCHMARKS.md). cpu-ns/entry
// is the process's CPU time (both ends) per entry, steadier than throughput
// on a shared machine.
func BenchmarkMsgApp(b *testing.B) {
	dir := mustPKI(b, "c", "a", "b")
	for _, secure := range []bool{false, true} {
		for _, batch := range []int{1, 16, 64} {
			name := fmt.Sprintf("tls=%v/entries=%d/value=1KiB", secure, batch)
			b.Run(name, func(b *testing.B) { benchMsgApp(b, dir, secure, batch) })
		}
	}
}

func benchMsgApp(b *testing.B, dir string, secure bool, batch int) {
	const window = 256 // messages in flight; well under the queue length
	la, lb := mustListen(b), mustListen(b)
	optsA, optsB := []func(*TCPConfig){}, []func(*TCPConfig){}
	if secure {
		optsA = append(optsA, withTLS(mustMember(b, dir, "a")))
		optsB = append(optsB, withTLS(mustMember(b, dir, "b")))
	}
	a := mustTCP(b, "c", "a", la, map[NodeID]string{"b": lb.Addr().String()}, optsA...)
	rb := mustTCP(b, "c", "b", lb, map[NodeID]string{"a": la.Addr().String()}, optsB...)
	warm := newRec("b")
	hb := &windowHandler{credits: make(chan struct{}, window)}
	a.Start(newRec("a"))
	// The receiver decodes each message on the connection's reader, as
	// the node does (and as the transport did before it carried messages
	// as opaque payloads).
	rb.Start(handlerFunc{msg: func(from NodeID, m repl.Message) {
		if m.Term == 0 {
			warm.msgs <- rmsg{from: from, Message: m}
			return
		}
		hb.handle(m)
	}})
	sendUntil(b, a, warm, repl.Message{Type: repl.MsgHeartbeat, From: "a", To: "b"})
	dropped := a.Dropped() // while the connection came up

	value := bytes.Repeat([]byte("v"), 1024)
	m := repl.Message{Type: repl.MsgApp, From: "a", To: "b", Term: 1, LogTerm: 1, Commit: 1}
	for i := range batch {
		m.Entries = append(m.Entries, entry.Entry{Term: 1, Index: uint64(i + 1), Kind: entry.KindPut,
			Key: []byte(fmt.Sprintf("key-%06d", i)), Value: value})
	}
	b.SetBytes(int64(len(msgFrame(&m))))
	enc := (*wireMsg)(&m) // encoded by the writer, as the node's messages are
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	for range b.N {
		select {
		case hb.credits <- struct{}{}:
		case <-time.After(10 * time.Second):
			b.Fatalf("no progress (dropped %d)", a.Dropped())
		}
		a.SendEncoder("b", EngineSingleLeader, enc)
	}
	// Wait until every message has been delivered: the window drains.
	for i := 0; i < window; i++ {
		select {
		case hb.credits <- struct{}{}:
		case <-time.After(10 * time.Second):
			b.Fatalf("messages lost (dropped %d)", a.Dropped())
		}
	}
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "entries/s")
	// CPU (sender and receiver, user and system) per entry: the cost of TLS
	// that a busy machine's wall-clock figures hide.
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batch), "cpu-ns/entry")
	}
	if d := a.Dropped() - dropped; d != 0 {
		b.Fatalf("%d messages dropped", d)
	}
}

// handlerFunc adapts a function of single-leader messages to Handler.
type handlerFunc struct {
	msg func(NodeID, repl.Message)
}

func (h handlerFunc) HandleForward(context.Context, NodeID, *ForwardRequest) *ForwardResponse {
	return &ForwardResponse{}
}

func (h handlerFunc) HandlePayload(from NodeID, e Engine, payload []byte) {
	if e != EngineSingleLeader {
		return
	}
	m, err := repl.DecodeMessage(payload)
	if err != nil {
		panic(err)
	}
	h.msg(from, m)
}

func (h handlerFunc) HandleStream(NodeID, net.Conn) {}

func (h handlerFunc) HandlePeerDown(NodeID) {}
