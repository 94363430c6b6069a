package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// MaxInboundStreams is how many streams one member may hold open to a node
// at once; a stream beyond it is closed right after its handshake.
const MaxInboundStreams = 4

// OpenStream implements Transport: a new connection to `to`, with the same
// TLS and handshake checks as the message connection, opened with a stream
// handshake.
func (t *TCP) OpenStream(ctx context.Context, to NodeID) (net.Conn, error) {
	p := t.peer(to)
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, to)
	}
	select {
	case <-t.closed:
		return nil, ErrClosed
	default:
	}
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", *p.addr.Load())
	if err != nil {
		return nil, fmt.Errorf("transport: stream to %s: %w", to, err)
	}
	if !t.track(raw) {
		raw.Close()
		return nil, ErrClosed
	}
	deadline := time.Now().Add(t.cfg.DialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	raw.SetDeadline(deadline)
	// A ctx that ends during the handshake cuts it short.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	c, err := p.handshake(raw, FrameStreamHandshake)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		t.untrack(raw)
		return nil, fmt.Errorf("transport: stream to %s: %w", to, err)
	}
	c.SetDeadline(time.Time{})
	return &streamConn{Conn: c, close: func() { t.untrack(raw) }}, nil
}

// serveStream hands an accepted stream from peer `from` to the handler, on
// the connection's goroutine; serveInbound closes it afterwards.
func (t *TCP) serveStream(from NodeID, c net.Conn) {
	t.mu.Lock()
	n := t.streams[from]
	if n < MaxInboundStreams {
		t.streams[from] = n + 1
	}
	t.mu.Unlock()
	if n >= MaxInboundStreams {
		t.refusedWarn.warn("refused a stream: too many open from this peer", "peer", string(from), "open", n)
		return
	}
	defer func() {
		t.mu.Lock()
		if t.streams[from]--; t.streams[from] == 0 {
			delete(t.streams, from)
		}
		t.mu.Unlock()
	}()
	sc := &streamConn{Conn: c, close: func() {}}
	t.handler.HandleStream(from, sc)
	sc.Close()
}

// streamConn is a stream handed to a user: Close also removes the
// connection from the transport's set.
type streamConn struct {
	net.Conn
	once  sync.Once
	close func()
	err   error
}

func (s *streamConn) Close() error {
	s.once.Do(func() {
		s.err = s.Conn.Close()
		s.close()
	})
	return s.err
}
