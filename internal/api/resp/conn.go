package resp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"time"

	"github.com/trireme-db/trireme/internal/api"
)

// conn is one client connection as the command handlers see it: replies
// are buffered (writer) and written once the batch is done.
type conn struct {
	writer
	addr    string
	st      *connState
	rd      *reader  // nil for a conn that only records replies (tests)
	nc      net.Conn // the client's connection (a *tls.Conn with TLS); nil likewise
	raw     net.Conn // the TCP connection under nc (nc itself without TLS)
	pending [][][]byte
	mark    int  // len(out) when the running command started
	closing bool // QUIT: answer, then close
}

// RemoteAddr is the client's address.
func (c *conn) RemoteAddr() string { return c.addr }

// closeAfterReply makes the connection close once the replies so far are
// written; the commands after it in the batch are not run.
func (c *conn) closeAfterReply() { c.closing = true }

// peekPipeline returns the commands that follow the running one in its
// batch (already received, not yet run).
func (c *conn) peekPipeline() [][][]byte { return c.pending }

// takePipeline returns the same commands and makes the caller responsible
// for running them: the connection will not.
func (c *conn) takePipeline() [][][]byte {
	p := c.pending
	c.pending = nil
	return p
}

// stallReader is what a connection's reader reads from: while a command is
// partly received (busy), every read must make progress within timeout or
// fails; between commands a connection may stay idle for ever, as with
// Redis's default timeout 0.
type stallReader struct {
	conn    net.Conn
	timeout time.Duration // 0 = no limit
	busy    bool
	armed   bool // a read deadline is set
}

func (s *stallReader) Read(p []byte) (int, error) {
	switch {
	case s.busy && s.timeout > 0:
		s.conn.SetReadDeadline(time.Now().Add(s.timeout))
		s.armed = true
	case s.armed:
		s.conn.SetReadDeadline(time.Time{})
		s.armed = false
	}
	return s.conn.Read(p)
}

// acceptLoop accepts connections until ln fails, then closes them all. A
// failed Accept that is not the listener closing is retried after a pause
// that doubles up to a second (as net/http does), so a lack of file
// descriptors does not spin a core.
func (s *Server) acceptLoop(ln net.Listener) error {
	defer s.closeConns()
	var pause time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Warn("resp accept failed; retrying", "err", err, "pause", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		if s.conns.Load() >= int64(s.cfg.MaxClients) {
			s.reject(nc)
			continue
		}
		c := s.newConn(nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.conns.Add(1)
		go s.serveConn(c)
	}
}

// errMaxClients answers a connection over Config.MaxClients (Redis's words).
const errMaxClients = "ERR max number of clients reached"

// maxRejecting bounds the connections over MaxClients that are being
// answered at once: each takes a goroutine for at most its TLS handshake
// and lingerTime. Beyond it a connection is closed without a reply, so that
// a flood of connections costs no more than the cap allows.
const maxRejecting = 64

// reject turns away a connection over Config.MaxClients: it answers
// errMaxClients (after the TLS handshake, with TLS) and closes it, on a
// goroutine of its own so that the accept loop never waits.
func (s *Server) reject(nc net.Conn) {
	s.rejected.Add(1)
	s.warnRarely("resp connection refused: max number of clients reached", "remote", nc.RemoteAddr().String(),
		"max_clients", s.cfg.MaxClients, "refused_so_far", s.rejected.Load())
	if s.rejecting.Add(1) > maxRejecting {
		s.rejecting.Add(-1)
		nc.Close()
		return
	}
	go func() {
		defer s.rejecting.Add(-1)
		defer nc.Close()
		c := nc
		if s.cfg.TLS != nil {
			tc := tls.Server(nc, s.cfg.TLS)
			tc.SetDeadline(time.Now().Add(s.cfg.TLSHandshakeTimeout))
			if tc.Handshake() != nil {
				return
			}
			c = tc
		}
		c.SetWriteDeadline(time.Now().Add(lingerTime))
		if _, err := c.Write([]byte("-" + errMaxClients + "\r\n")); err == nil {
			lingerClose(c)
		}
	}()
}

// warnRarely logs a warning about refused clients at most once a second,
// so that a flood of them does not flood the log.
func (s *Server) warnRarely(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, args...)
}

func (s *Server) newConn(raw net.Conn) *conn {
	nc := raw
	if s.cfg.TLS != nil {
		nc = tls.Server(raw, s.cfg.TLS) // handshakes in serveConn
	}
	st := &connState{id: s.nextID.Add(1), write: api.WriteOptions{Default: true}, who: s.everyone}
	st.ctx, st.cancel = context.WithCancel(s.ctx)
	stall := &stallReader{conn: nc, timeout: s.cfg.CommandTimeout}
	return &conn{
		writer: writer{w: nc},
		addr:   nc.RemoteAddr().String(),
		st:     st,
		rd:     newReader(stall, s.limits()),
		nc:     nc,
		raw:    raw,
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// closeConns closes every open connection; their goroutines then end. It
// closes the TCP connections, since closing a TLS one first sends an alert,
// which a client that does not read could make wait.
func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.open {
		c.raw.Close()
	}
}

// serveConn runs one connection: read a batch, run its commands in order,
// write the replies, until the client leaves, breaks the protocol or the
// server closes.
func (s *Server) serveConn(c *conn) {
	defer s.dropConn(c)
	defer s.recoverConn(c)
	if !s.handshake(c) {
		return
	}
	for {
		cmds, err := c.rd.readBatch()
		if err != nil {
			s.readFailed(c, err)
			return
		}
		for len(cmds) > 0 && !c.closing && c.err == nil {
			c.mark, c.pending = len(c.out), cmds[1:]
			s.handle(c, cmds[0])
			cmds = c.pending
			if len(c.out) >= flushBytes {
				c.flush()
			}
		}
		c.pending, c.mark = nil, 0
		if err := c.flush(); err != nil || c.closing {
			return
		}
	}
}

// handshake runs a TLS connection's handshake (on the connection's own
// goroutine, so the accept loop never waits for it), within
// TLSHandshakeTimeout: a client that connects and says nothing is dropped
// then. A client that speaks plain RESP to the TLS port gets a plain error
// line saying so. It reports whether the connection may go on.
func (s *Server) handshake(c *conn) bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	tc.SetDeadline(time.Now().Add(s.cfg.TLSHandshakeTimeout))
	err := tc.Handshake()
	if err != nil {
		var plain tls.RecordHeaderError
		if errors.As(err, &plain) && plain.Conn != nil {
			plain.Conn.Write([]byte("-" + errNotTLS + "\r\n"))
			lingerClose(plain.Conn)
		}
		s.log.Debug("resp TLS handshake failed", "remote", c.addr, "err", err)
		return false
	}
	tc.SetDeadline(time.Time{})
	return true
}

// errNotTLS answers, in plain text, a client that does not speak TLS to a
// TLS port.
const errNotTLS = "ERR Protocol error: this port speaks TLS only; connect with TLS (redis-cli --tls)"

// readFailed answers a protocol error or a command refused for lack of
// memory; other read errors (the client left, a stalled command, the server
// closing) just end the connection.
func (s *Server) readFailed(c *conn, err error) {
	switch {
	case errors.Is(err, ErrProtocol), errors.Is(err, errPendingFull):
		if errors.Is(err, errPendingFull) {
			s.warnRarely("resp command refused: commands being received hold the memory budget; closing the connection",
				"remote", c.addr, "max_pending_bytes", s.pending.limit)
		} else {
			s.log.Debug("resp protocol error; closing the connection", "remote", c.addr, "err", err)
		}
		c.WriteError("ERR " + err.Error())
		if c.flush() == nil {
			lingerClose(c.nc)
		}
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.log.Debug("resp client left in the middle of a command", "remote", c.addr)
	default:
		s.log.Debug("resp connection read failed", "remote", c.addr, "err", err)
	}
}

// Closing a socket with unread input resets it, and the reset can destroy
// the error reply before the client reads it. So after a protocol error
// the server stops sending, then discards what the client still sends, for
// at most lingerTime and lingerBytes, before it closes.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

func lingerClose(nc net.Conn) {
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	nc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, nc, lingerBytes)
}

// recoverConn keeps a panic in one connection's handler from ending the
// process: it is logged with its stack, the client gets an error in place
// of the reply the command was writing, and the connection closes.
func (s *Server) recoverConn(c *conn) {
	p := recover()
	if p == nil {
		return
	}
	s.log.Error("resp command panicked; closing its connection", "remote", c.addr,
		"err", fmt.Sprint(p), "stack", string(debug.Stack()))
	if c.mark <= len(c.out) {
		c.out = c.out[:c.mark]
	}
	c.WriteError("ERR internal error")
	c.flush()
}

func (s *Server) dropConn(c *conn) {
	c.rd.release() // the budget of a batch cut short (a handler that panicked)
	c.nc.Close()
	c.st.cancel()
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
	s.conns.Add(-1)
}
