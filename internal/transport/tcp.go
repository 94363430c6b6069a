package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/repl"
)

// TCPConfig configures a TCP transport.
type TCPConfig struct {
	// ClusterID must match the peers' cluster id in every handshake.
	ClusterID string
	// Self is this node: its id and advertised client endpoints.
	Self PeerInfo
	// Peers maps every other member's id to its peer address (host:port).
	Peers map[repl.NodeID]string
	// ListenAddr is this node's peer address; ignored when Listener is set.
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr.
	Listener net.Listener
	// QueueLen is the per-peer outbound queue length, in frames; beyond it Send drops.
	QueueLen int
	// MaxFrameBytes refuses frames whose length field exceeds it.
	MaxFrameBytes int
	// DialTimeout bounds one connection attempt including the handshake.
	DialTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay, doubled per failure.
	BackoffMin, BackoffMax time.Duration
	// WriteTimeout bounds one flush to a peer; a stuck peer is disconnected.
	WriteTimeout time.Duration
	// Logger receives connection events; nil discards.
	Logger *slog.Logger
}

// DefaultTCPConfig returns defaults for everything but ids and addresses.
func DefaultTCPConfig() TCPConfig {
	return TCPConfig{
		QueueLen:      4096,
		MaxFrameBytes: DefaultMaxFrameBytes,
		DialTimeout:   time.Second,
		BackoffMin:    10 * time.Millisecond,
		BackoffMax:    500 * time.Millisecond,
		WriteTimeout:  5 * time.Second,
	}
}

// Validate reports the first bad field.
func (c *TCPConfig) Validate() error {
	switch {
	case c.ClusterID == "":
		return errors.New("transport: TCPConfig.ClusterID is empty")
	case c.Self.ID == "":
		return errors.New("transport: TCPConfig.Self.ID is empty")
	case c.Listener == nil && c.ListenAddr == "":
		return errors.New("transport: TCPConfig.ListenAddr is empty")
	case c.QueueLen <= 0:
		return fmt.Errorf("transport: TCPConfig.QueueLen %d must be > 0", c.QueueLen)
	case c.MaxFrameBytes < 1024:
		return fmt.Errorf("transport: TCPConfig.MaxFrameBytes %d must be >= 1024", c.MaxFrameBytes)
	case c.DialTimeout <= 0 || c.WriteTimeout <= 0:
		return errors.New("transport: TCPConfig.DialTimeout and WriteTimeout must be > 0")
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return errors.New("transport: TCPConfig.BackoffMin must be > 0 and <= BackoffMax")
	}
	if _, ok := c.Peers[c.Self.ID]; ok {
		return fmt.Errorf("transport: TCPConfig.Peers contains this node %q", c.Self.ID)
	}
	return nil
}

// TCP is the TCP transport.
type TCP struct {
	cfg     TCPConfig
	log     *slog.Logger
	ln      net.Listener
	handler Handler
	peers   map[repl.NodeID]*tcpPeer
	closed  chan struct{}
	wg      sync.WaitGroup
	dropped atomic.Uint64

	mu      sync.Mutex
	info    map[repl.NodeID]PeerInfo // guarded by mu
	conns   map[net.Conn]struct{}    // open connections, guarded by mu
	isClose bool                     // guarded by mu
}

type outItem struct {
	msg repl.Message
	fwd *ForwardRequest
}

type tcpPeer struct {
	t      *TCP
	id     repl.NodeID
	addr   string
	queue  chan outItem
	nextID atomic.Uint64
	up     atomic.Bool // a connection is established

	mu      sync.Mutex
	pending map[uint64]chan *ForwardResponse // guarded by mu
}

// NewTCP listens on the peer address; call Start to begin.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &TCP{
		cfg:    cfg,
		log:    cfg.Logger,
		peers:  make(map[repl.NodeID]*tcpPeer, len(cfg.Peers)),
		closed: make(chan struct{}),
		info:   make(map[repl.NodeID]PeerInfo),
		conns:  make(map[net.Conn]struct{}),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.info[cfg.Self.ID] = cfg.Self
	for id, addr := range cfg.Peers {
		t.peers[id] = &tcpPeer{t: t, id: id, addr: addr, queue: make(chan outItem, cfg.QueueLen),
			pending: make(map[uint64]chan *ForwardResponse)}
	}
	t.ln = cfg.Listener
	if t.ln == nil {
		ln, err := net.Listen("tcp", cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen on peer address %s: %w", cfg.ListenAddr, err)
		}
		t.ln = ln
	}
	return t, nil
}

// Addr is the address the transport listens on.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Dropped is the number of messages dropped because a queue was full.
func (t *TCP) Dropped() uint64 { return t.dropped.Load() }

// Start implements Transport.
func (t *TCP) Start(h Handler) error {
	t.handler = h
	t.wg.Add(1)
	go t.acceptLoop()
	for _, p := range t.peers {
		t.wg.Add(1)
		go p.run()
	}
	return nil
}

// Send implements Transport.
func (t *TCP) Send(m repl.Message) {
	p := t.peers[m.To]
	if p == nil || !p.up.Load() {
		// Unknown peer, or no connection: the link is down, the message is lost.
		t.dropped.Add(1)
		return
	}
	select {
	case p.queue <- outItem{msg: m}:
	default:
		t.dropped.Add(1)
	}
}

// Forward implements Transport.
func (t *TCP) Forward(ctx context.Context, to repl.NodeID, req *ForwardRequest) (*ForwardResponse, error) {
	p := t.peers[to]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, to)
	}
	if !p.up.Load() {
		return nil, fmt.Errorf("%w: %s", ErrNotSent, to)
	}
	r := *req
	r.ID = p.nextID.Add(1)
	ch := make(chan *ForwardResponse, 1)
	p.mu.Lock()
	p.pending[r.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, r.ID)
		p.mu.Unlock()
	}()
	select {
	case p.queue <- outItem{fwd: &r}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.closed:
		return nil, ErrClosed
	}
	select {
	case resp := <-ch:
		if resp == nil {
			return nil, fmt.Errorf("%w: connection to %s lost", ErrNotConnected, to)
		}
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.closed:
		return nil, ErrClosed
	}
}

// Peer implements Transport.
func (t *TCP) Peer(id repl.NodeID) (PeerInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pi, ok := t.info[id]
	return pi, ok
}

// Close implements Transport.
func (t *TCP) Close() error {
	t.mu.Lock()
	if t.isClose {
		t.mu.Unlock()
		return nil
	}
	t.isClose = true
	close(t.closed)
	err := t.ln.Close()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}

// track registers c for Close; false if the transport is closed.
func (t *TCP) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClose {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *TCP) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

func (t *TCP) selfHandshake() []byte {
	return AppendHandshake(nil, &Handshake{ClusterID: t.cfg.ClusterID, NodeID: t.cfg.Self.ID,
		HTTPAddr: t.cfg.Self.HTTPAddr, RESPAddr: t.cfg.Self.RESPAddr})
}

// checkHandshake validates a peer's handshake; expect is the id we dialed ("" when accepting).
func (t *TCP) checkHandshake(h *Handshake, expect repl.NodeID) error {
	if h.ClusterID != t.cfg.ClusterID {
		return fmt.Errorf("%w: node %q is in cluster %q, this node %q is in cluster %q (check --cluster on both)",
			ErrHandshake, h.NodeID, h.ClusterID, t.cfg.Self.ID, t.cfg.ClusterID)
	}
	if _, ok := t.peers[h.NodeID]; !ok {
		return fmt.Errorf("%w: node id %q is not a member of this cluster (check --cluster)", ErrHandshake, h.NodeID)
	}
	if expect != "" && h.NodeID != expect {
		return fmt.Errorf("%w: dialed %q but %q answered (check --cluster addresses)", ErrHandshake, expect, h.NodeID)
	}
	return nil
}

func (t *TCP) learn(h *Handshake) {
	t.mu.Lock()
	t.info[h.NodeID] = PeerInfo{ID: h.NodeID, HTTPAddr: h.HTTPAddr, RESPAddr: h.RESPAddr}
	t.mu.Unlock()
}

func (t *TCP) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.log.Error("peer listener failed", "err", err)
			return
		}
		if !t.track(c) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go t.serveInbound(c)
	}
}

// serveInbound handles one accepted connection: handshake, then frames from the dialer.
func (t *TCP) serveInbound(c net.Conn) {
	defer t.wg.Done()
	defer t.untrack(c)
	c.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	br := bufio.NewReaderSize(c, 64<<10)
	f, err := ReadFrame(br, t.cfg.MaxFrameBytes)
	if err != nil {
		t.log.Warn("peer handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	if f.Type != FrameHandshake {
		t.log.Warn("peer sent no handshake", "remote", c.RemoteAddr().String(), "frame", f.Type.String())
		c.Write(AppendHandshakeReject(nil, "expected a handshake frame"))
		return
	}
	if err := t.checkHandshake(f.Handshake, ""); err != nil {
		t.log.Warn("refused peer handshake", "remote", c.RemoteAddr().String(), "err", err)
		c.Write(AppendHandshakeReject(nil, err.Error()))
		return
	}
	if _, err := c.Write(t.selfHandshake()); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	from := f.Handshake.NodeID
	t.learn(f.Handshake)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-t.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wmu sync.Mutex // serializes response writes
	var handlers sync.WaitGroup
	defer func() {
		cancel()
		handlers.Wait()
	}()
	for {
		f, err := ReadFrame(br, t.cfg.MaxFrameBytes)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.log.Warn("peer connection closed", "peer", string(from), "err", err)
			}
			return
		}
		switch f.Type {
		case FrameMessage:
			if f.Message.From != from {
				t.log.Warn("dropped message with forged sender", "peer", string(from), "from", string(f.Message.From))
				continue
			}
			t.handler.HandleMessage(*f.Message)
		case FrameForwardRequest:
			handlers.Add(1)
			go func(req *ForwardRequest) {
				defer handlers.Done()
				resp := t.handler.HandleForward(ctx, from, req)
				if resp == nil {
					resp = &ForwardResponse{Code: CodeOther, Message: "no response"}
				}
				resp.ID = req.ID
				buf := AppendForwardResponse(nil, resp)
				wmu.Lock()
				defer wmu.Unlock()
				c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
				if _, err := c.Write(buf); err != nil {
					c.Close()
				}
			}(f.Request)
		default:
			t.log.Warn("unexpected frame from peer", "peer", string(from), "frame", f.Type.String())
			return
		}
	}
}

// run keeps one outbound connection to p alive and feeds it from p.queue.
func (p *tcpPeer) run() {
	t := p.t
	defer t.wg.Done()
	backoff := t.cfg.BackoffMin
	for {
		select {
		case <-t.closed:
			return
		default:
		}
		c, err := p.dial()
		if err != nil {
			t.log.Debug("cannot connect to peer", "peer", string(p.id), "addr", p.addr, "err", err)
			if errors.Is(err, ErrHandshake) {
				t.log.Warn("peer refused handshake", "peer", string(p.id), "err", err)
			}
			select {
			case <-t.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, t.cfg.BackoffMax)
			continue
		}
		backoff = t.cfg.BackoffMin
		p.serve(c)
	}
}

func (p *tcpPeer) dial() (net.Conn, error) {
	t := p.t
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if !t.track(c) {
		c.Close()
		return nil, ErrClosed
	}
	c.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	if _, err := c.Write(t.selfHandshake()); err != nil {
		t.untrack(c)
		return nil, err
	}
	f, err := ReadFrame(c, t.cfg.MaxFrameBytes)
	if err != nil {
		t.untrack(c)
		return nil, err
	}
	switch f.Type {
	case FrameHandshake:
		if err := t.checkHandshake(f.Handshake, p.id); err != nil {
			t.untrack(c)
			return nil, err
		}
		t.learn(f.Handshake)
	case FrameHandshakeReject:
		t.untrack(c)
		return nil, fmt.Errorf("%w by %s: %s", ErrHandshake, p.id, f.Reject)
	default:
		t.untrack(c)
		return nil, fmt.Errorf("%w: %s answered with a %s frame", ErrHandshake, p.id, f.Type)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// serve writes queued frames to c until an error; a reader goroutine dispatches responses.
func (p *tcpPeer) serve(c net.Conn) {
	t := p.t
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		br := bufio.NewReaderSize(c, 64<<10)
		for {
			f, err := ReadFrame(br, t.cfg.MaxFrameBytes)
			if err != nil {
				return
			}
			if f.Type != FrameForwardResponse {
				t.log.Warn("unexpected frame from peer", "peer", string(p.id), "frame", f.Type.String())
				return
			}
			p.mu.Lock()
			ch := p.pending[f.Response.ID]
			delete(p.pending, f.Response.ID)
			p.mu.Unlock()
			if ch != nil {
				ch <- f.Response
			}
		}
	}()
	p.up.Store(true)
	defer func() {
		p.up.Store(false)
		t.untrack(c)
		<-readerDone
		p.mu.Lock()
		for id, ch := range p.pending {
			ch <- nil
			delete(p.pending, id)
		}
		p.mu.Unlock()
		// What was queued for the lost connection is lost with it: stale
		// messages must not pile up (or flood the peer) while it is away.
		for {
			select {
			case <-p.queue:
				t.dropped.Add(1)
			default:
				return
			}
		}
	}()
	bw := bufio.NewWriterSize(c, 256<<10)
	var buf []byte
	write := func(it outItem) error {
		buf = buf[:0]
		if it.fwd != nil {
			buf = AppendForwardRequest(buf, it.fwd)
		} else {
			buf = AppendMessage(buf, &it.msg)
		}
		_, err := bw.Write(buf)
		return err
	}
	for {
		var it outItem
		select {
		case <-t.closed:
			return
		case <-readerDone:
			return
		case it = <-p.queue:
		}
		c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		if err := write(it); err != nil {
			return
		}
	drain:
		for range 1024 {
			select {
			case it = <-p.queue:
				if err := write(it); err != nil {
					return
				}
			default:
				break drain
			}
		}
		if err := bw.Flush(); err != nil {
			t.log.Debug("write to peer failed", "peer", string(p.id), "err", err)
			return
		}
	}
}
