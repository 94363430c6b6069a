package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/pki"
)

// TCPConfig configures a TCP transport.
type TCPConfig struct {
	// ClusterID must match the peers' cluster id in every handshake.
	ClusterID string
	// Self is this node: its id and advertised client endpoints.
	Self PeerInfo
	// Peers maps every other member's id to its peer address (host:port).
	Peers map[NodeID]string
	// TLS, if set, runs every peer connection over mutual TLS 1.3 with this
	// member's certificate: a connection is accepted only from a certificate
	// that chains to TLS.Roots and names a member of Peers, and it then
	// speaks for that member only. TLS.ID must be Self.ID. Nil: plaintext,
	// and any process that reaches the peer port can claim to be any member
	// (for tests; Start logs a warning).
	TLS *pki.Member
	// Clients gives other members' client endpoints (HTTP, RESP) from
	// configuration; Peer returns these. For a member or an address missing
	// here, Peer returns what the member's handshake advertised, but only
	// over an authenticated (TLS) connection: an unauthenticated handshake
	// could name anyone's addresses.
	Clients map[NodeID]PeerInfo
	// ListenAddr is this node's peer address; ignored when Listener is set.
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr.
	Listener net.Listener
	// QueueLen is the per-peer outbound queue length, in frames; beyond it
	// SendPayload and SendEncoder drop.
	QueueLen int
	// MaxFrameBytes refuses frames whose length field exceeds it;
	// SendPayload drops a payload whose frame would, and the writer an
	// encoded one (SendEncoder).
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
	case c.TLS != nil && c.TLS.ID != string(c.Self.ID):
		return fmt.Errorf("transport: TCPConfig.TLS is the certificate of %q, not of this node %q", c.TLS.ID, c.Self.ID)
	case c.TLS != nil && (c.TLS.Roots == nil || c.TLS.Cert.Leaf == nil):
		return errors.New("transport: TCPConfig.TLS needs Roots and a certificate with its Leaf")
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
	// peers: copy-on-write, replaced whole by SetPeers under mu; read
	// without a lock.
	peers     atomic.Pointer[map[NodeID]*tcpPeer]
	started   bool        // Start ran; guarded by mu
	serverTLS *tls.Config // nil: plaintext
	closed    chan struct{}
	wg        sync.WaitGroup
	dropped   atomic.Uint64
	forged    atomic.Uint64 // payload frames refused: From is not the connection's peer, or To is not us
	refused   atomic.Uint64 // inbound connections refused at the handshake

	refusedWarn, forgedWarn, oversizeWarn warnLimiter

	mu      sync.Mutex
	info    map[NodeID]PeerInfo   // from authenticated handshakes; guarded by mu
	conns   map[net.Conn]struct{} // open connections, guarded by mu
	inbound map[NodeID]net.Conn   // the one accepted connection per peer; guarded by mu
	streams map[NodeID]int        // accepted streams open per peer; guarded by mu
	isClose bool                  // guarded by mu
}

// outItem is one queued frame: fwd if set, else engine e's payload: enc's
// encoding if enc is set, else data.
type outItem struct {
	fwd  *ForwardRequest
	enc  Encoder
	data []byte
	e    Engine
}

type tcpPeer struct {
	t      *TCP
	id     NodeID
	addr   atomic.Pointer[string] // SetPeers may change it
	tls    *tls.Config            // nil: plaintext
	queue  chan outItem
	nextID atomic.Uint64
	up     atomic.Bool // a connection is established
	// wake cuts a redial backoff short: a peer that just connected to us
	// (authenticated) is up again, so waiting out a backoff of up to
	// BackoffMax before dialing it back only delays what we have to send it
	// (a restarted follower's catch-up, a new leader's heartbeats).
	wake chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan *ForwardResponse // guarded by mu
}

// NewTCP listens on the peer address; call Start to begin.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &TCP{
		cfg:     cfg,
		log:     cfg.Logger,
		closed:  make(chan struct{}),
		info:    make(map[NodeID]PeerInfo),
		conns:   make(map[net.Conn]struct{}),
		inbound: make(map[NodeID]net.Conn),
		streams: make(map[NodeID]int),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.refusedWarn = warnLimiter{log: t.log, every: time.Second}
	t.forgedWarn = warnLimiter{log: t.log, every: time.Second}
	t.oversizeWarn = warnLimiter{log: t.log, every: time.Second}
	peers := make(map[NodeID]*tcpPeer, len(cfg.Peers))
	for id, addr := range cfg.Peers {
		peers[id] = t.newPeer(id, addr)
	}
	t.peers.Store(&peers)
	if cfg.TLS != nil {
		t.serverTLS = t.newServerTLS()
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

func (t *TCP) newPeer(id NodeID, addr string) *tcpPeer {
	p := &tcpPeer{t: t, id: id, queue: make(chan outItem, t.cfg.QueueLen),
		wake: make(chan struct{}, 1), pending: make(map[uint64]chan *ForwardResponse)}
	p.addr.Store(&addr)
	if t.cfg.TLS != nil {
		p.tls = t.newClientTLS(id)
	}
	return p
}

// peer returns the peer with that id, or nil.
func (t *TCP) peer(id NodeID) *tcpPeer { return (*t.peers.Load())[id] }

// SetPeers adds the peers of a new configuration and updates the address of
// known ones (the next connection uses it). A peer is never forgotten while
// the transport runs: a member left out of an uncommitted configuration may
// be back when it is truncated, and a removed member's link only idles (its
// dials back off to BackoffMax, logged at debug level); a restart forgets
// it. The node decides which messages to accept.
func (t *TCP) SetPeers(peers map[NodeID]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClose {
		return
	}
	cur := *t.peers.Load()
	next := make(map[NodeID]*tcpPeer, len(cur)+len(peers))
	for id, p := range cur {
		next[id] = p
	}
	var added []*tcpPeer
	for id, addr := range peers {
		if id == t.cfg.Self.ID || addr == "" {
			continue
		}
		if p, ok := next[id]; ok {
			if old := *p.addr.Load(); old != addr {
				p.addr.Store(&addr)
				t.log.Info("peer address changed", "peer", string(id), "old", old, "new", addr)
			}
			continue
		}
		p := t.newPeer(id, addr)
		next[id] = p
		added = append(added, p)
		t.log.Info("peer added", "peer", string(id), "addr", addr)
	}
	t.peers.Store(&next)
	if t.started {
		for _, p := range added {
			t.wg.Add(1)
			go p.run()
		}
	}
}

// Addr is the address the transport listens on.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Dropped is the number of payloads dropped because a queue was full or the
// peer was not connected, or because they were of engine 0 or their frame
// over MaxFrameBytes.
func (t *TCP) Dropped() uint64 { return t.dropped.Load() }

// Forged is the number of payload frames (type 7) refused because their From
// was not the connection's (authenticated) peer or their To was not this
// node. The transport does not look inside message frames (single-leader
// payloads): the single-leader engine counts its own.
func (t *TCP) Forged() uint64 { return t.forged.Load() }

// Refused is the number of inbound connections refused at the TLS or the
// Trireme handshake.
func (t *TCP) Refused() uint64 { return t.refused.Load() }

// Start implements Transport.
func (t *TCP) Start(h Handler) error {
	if t.cfg.TLS == nil {
		t.log.Warn("peer connections are plaintext and unauthenticated: any process that reaches the peer port can act as a member",
			"addr", t.ln.Addr().String())
	}
	t.handler = h
	t.wg.Add(1)
	go t.acceptLoop()
	t.mu.Lock()
	t.started = true
	for _, p := range *t.peers.Load() {
		t.wg.Add(1)
		go p.run()
	}
	t.mu.Unlock()
	return nil
}

// SendPayload implements Transport: on the peer's queue, in order with its
// other payloads.
func (t *TCP) SendPayload(to NodeID, e Engine, payload []byte) {
	if !frameFits(e, t.cfg.Self.ID, to, len(payload), t.cfg.MaxFrameBytes) {
		t.dropped.Add(1)
		return
	}
	t.enqueue(to, outItem{data: payload, e: e})
}

// SendEncoder implements Transport: on the peer's queue, encoded by the
// connection's writer into its buffer.
func (t *TCP) SendEncoder(to NodeID, e Engine, enc Encoder) {
	t.enqueue(to, outItem{enc: enc, e: e})
}

// enqueue queues a payload for `to` without blocking, or drops it.
func (t *TCP) enqueue(to NodeID, it outItem) {
	p := t.peer(to)
	if p == nil || !p.up.Load() || it.e == 0 {
		// Unknown peer, or no connection: the link is down, the message is lost.
		t.dropped.Add(1)
		return
	}
	select {
	case p.queue <- it:
	default:
		t.dropped.Add(1)
	}
}

// Forward implements Transport.
func (t *TCP) Forward(ctx context.Context, to NodeID, req *ForwardRequest) (*ForwardResponse, error) {
	p := t.peer(to)
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

// Peer implements Transport: id's client endpoints from TCPConfig.Clients,
// else from its handshake on an authenticated connection.
func (t *TCP) Peer(id NodeID) (PeerInfo, bool) {
	if id == t.cfg.Self.ID {
		return t.cfg.Self, true
	}
	t.mu.Lock()
	pi, learned := t.info[id]
	t.mu.Unlock()
	conf, configured := t.cfg.Clients[id]
	if !learned && !configured {
		return PeerInfo{}, false
	}
	pi.ID = id
	if conf.HTTPAddr != "" {
		pi.HTTPAddr = conf.HTTPAddr
	}
	if conf.RESPAddr != "" {
		pi.RESPAddr = conf.RESPAddr
	}
	return pi, true
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

// setInbound makes c (the TCP connection, which closes at once, unlike a TLS
// one) the one inbound connection of peer id, closing the one it replaces: a
// peer dials anew only once its previous connection is gone from its side,
// and a member cannot pile up connections (and frame buffers).
func (t *TCP) setInbound(id NodeID, c net.Conn) {
	t.mu.Lock()
	old := t.inbound[id]
	t.inbound[id] = c
	t.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (t *TCP) clearInbound(id NodeID, c net.Conn) {
	t.mu.Lock()
	if t.inbound[id] == c {
		delete(t.inbound, id)
	}
	t.mu.Unlock()
}

// selfHandshake is this node's handshake frame, of type typ (FrameHandshake
// or FrameStreamHandshake).
func (t *TCP) selfHandshake(typ FrameType) []byte {
	return appendHandshake(nil, typ, &Handshake{ClusterID: t.cfg.ClusterID, NodeID: t.cfg.Self.ID,
		HTTPAddr: t.cfg.Self.HTTPAddr, RESPAddr: t.cfg.Self.RESPAddr})
}

// checkHandshake validates a peer's handshake. want is the id the peer must
// have: the one we dialed, or the one its certificate names ("" when
// accepting without TLS). It returns the reason to send the peer, which names
// nothing of this node or cluster, and an error for the local log.
func (t *TCP) checkHandshake(h *Handshake, want NodeID) (string, error) {
	if h.ClusterID != t.cfg.ClusterID {
		return "cluster mismatch", fmt.Errorf("%w: node %q names another cluster (check --cluster-id, --peer-tls-dir or --cluster on both)",
			ErrHandshake, h.NodeID)
	}
	if t.peer(h.NodeID) == nil {
		return "not a member", fmt.Errorf("%w: node id %q is not a member of this cluster (check --cluster)", ErrHandshake, h.NodeID)
	}
	if want != "" && h.NodeID != want {
		return "identity mismatch", fmt.Errorf("%w: expected %q but the handshake names %q (check --cluster addresses)",
			ErrHandshake, want, h.NodeID)
	}
	return "", nil
}

// learn records the client endpoints an authenticated peer advertised.
func (t *TCP) learn(h *Handshake) {
	if t.cfg.TLS == nil {
		return // anyone could have sent it
	}
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

// accept runs the acceptor's side of the handshakes on raw: TLS (if on),
// then the dialer's handshake frame, at most MaxHandshakeBytes, then ours.
// It returns the connection to use, the peer it speaks for, and whether the
// dialer opened a stream (a stream handshake) rather than a message
// connection.
func (t *TCP) accept(raw net.Conn) (c net.Conn, from NodeID, stream bool, err error) {
	c, from, typ, err := t.acceptHandshake(raw)
	return c, from, typ == FrameStreamHandshake, err
}

func (t *TCP) acceptHandshake(raw net.Conn) (net.Conn, NodeID, FrameType, error) {
	c, want := raw, NodeID("")
	if t.serverTLS != nil {
		tc := tls.Server(raw, t.serverTLS)
		if err := tc.Handshake(); err != nil {
			return nil, "", 0, fmt.Errorf("%w: TLS: %w", ErrHandshake, err)
		}
		c, want = tc, certPeer(tc)
	}
	f, err := ReadFrame(c, MaxHandshakeBytes)
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: reading the handshake: %w", ErrHandshake, err)
	}
	if f.Type != FrameHandshake && f.Type != FrameStreamHandshake {
		c.Write(AppendHandshakeReject(nil, "expected a handshake frame"))
		return nil, "", 0, fmt.Errorf("%w: a %s frame before the handshake", ErrHandshake, f.Type)
	}
	if reason, err := t.checkHandshake(f.Handshake, want); err != nil {
		c.Write(AppendHandshakeReject(nil, reason))
		return nil, "", 0, err
	}
	if _, err := c.Write(t.selfHandshake(FrameHandshake)); err != nil {
		return nil, "", 0, err
	}
	t.learn(f.Handshake)
	return c, f.Handshake.NodeID, f.Type, nil
}

// serveInbound handles one accepted connection: handshake, then frames from the dialer.
func (t *TCP) serveInbound(raw net.Conn) {
	defer t.wg.Done()
	defer t.untrack(raw)
	raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	c, from, stream, err := t.accept(raw)
	if err != nil {
		t.refused.Add(1)
		t.refusedWarn.warn("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	if stream {
		t.serveStream(from, c)
		return
	}
	t.setInbound(from, raw)
	defer t.clearInbound(from, raw)
	if p := t.peer(from); p != nil {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}

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
	br := bufio.NewReaderSize(c, 64<<10)
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
			// A single-leader payload: the sender and recipient it names
			// are inside, and the engine checks them against from.
			t.handler.HandlePayload(from, EngineSingleLeader, f.Payload.Data)
		case FramePayload:
			if f.Payload.From != from || f.Payload.To != t.cfg.Self.ID {
				t.forged.Add(1)
				t.forgedWarn.warn("dropped payload with a forged sender or another recipient", "peer", string(from),
					"from", string(f.Payload.From), "to", string(f.Payload.To), "engine", f.Payload.Engine.String())
				continue
			}
			t.handler.HandlePayload(from, f.Payload.Engine, f.Payload.Data)
		case FrameForwardRequest:
			handlers.Add(1)
			go func(req *ForwardRequest) {
				defer handlers.Done()
				resp := t.handler.HandleForward(ctx, from, req)
				if resp == nil {
					resp = &ForwardResponse{Code: api.CodeOther, Message: "no response"}
				}
				resp.ID = req.ID
				buf := AppendForwardResponse(nil, resp)
				wmu.Lock()
				defer wmu.Unlock()
				c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
				if _, err := c.Write(buf); err != nil {
					raw.Close()
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
		c, raw, err := p.dial()
		if err != nil {
			t.log.Debug("cannot connect to peer", "peer", string(p.id), "addr", *p.addr.Load(), "err", err)
			if errors.Is(err, ErrHandshake) {
				t.log.Warn("peer handshake failed", "peer", string(p.id), "err", err)
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				// The connection to a peer whose process died closes at
				// once, and redialing it is refused: tell the node now
				// rather than let it wait for a heartbeat to be overdue.
				t.handler.HandlePeerDown(p.id)
			}
			timer := time.NewTimer(backoff)
			select {
			case <-t.closed:
				timer.Stop()
				return
			case <-timer.C:
				backoff = min(2*backoff, t.cfg.BackoffMax)
			case <-p.wake:
				timer.Stop()
				backoff = t.cfg.BackoffMin
			}
			continue
		}
		backoff = t.cfg.BackoffMin
		select { // a wake from before this connection is stale
		case <-p.wake:
		default:
		}
		p.serve(c, raw)
	}
}

// dial connects to p and runs the handshakes. It returns the connection to
// use (TLS or plain) and the TCP connection under it (tracked for Close).
func (p *tcpPeer) dial() (c, raw net.Conn, err error) {
	t := p.t
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err = d.Dial("tcp", *p.addr.Load())
	if err != nil {
		return nil, nil, err
	}
	if !t.track(raw) {
		raw.Close()
		return nil, nil, ErrClosed
	}
	raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	if c, err = p.handshake(raw, FrameHandshake); err != nil {
		t.untrack(raw)
		return nil, nil, err
	}
	c.SetDeadline(time.Time{})
	return c, raw, nil
}

// handshake runs the dialer's side of the handshakes on raw: TLS (if on),
// then ours (of type typ: a message connection or a stream), then the
// acceptor's handshake frame (at most MaxHandshakeBytes).
func (p *tcpPeer) handshake(raw net.Conn, typ FrameType) (net.Conn, error) {
	t := p.t
	c := raw
	if p.tls != nil {
		tc := tls.Client(raw, p.tls)
		if err := tc.Handshake(); err != nil {
			return nil, remoteTLSRefusal(err)
		}
		c = tc
	}
	if _, err := c.Write(t.selfHandshake(typ)); err != nil {
		return nil, remoteTLSRefusal(err)
	}
	// In TLS 1.3 the acceptor checks our certificate after our side of the
	// TLS handshake is done: its refusal arrives here, as an alert.
	f, err := ReadFrame(c, MaxHandshakeBytes)
	if err != nil {
		return nil, remoteTLSRefusal(err)
	}
	switch f.Type {
	case FrameHandshake:
		if _, err := t.checkHandshake(f.Handshake, p.id); err != nil {
			return nil, err
		}
		t.learn(f.Handshake)
		return c, nil
	case FrameHandshakeReject:
		return nil, fmt.Errorf("%w by %s: %s", ErrHandshake, p.id, f.Reject)
	default:
		return nil, fmt.Errorf("%w: %s answered with a %s frame", ErrHandshake, p.id, f.Type)
	}
}

// serve writes queued frames to c until an error; a reader goroutine
// dispatches responses. raw is the TCP connection under c.
func (p *tcpPeer) serve(c, raw net.Conn) {
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
		t.untrack(raw)
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
			buf = appendEngineFrame(buf, frameTypeOf(it.e), it.e, t.cfg.Self.ID, p.id, it.enc, it.data)
			if n := uint64(len(buf) - 4); n > uint64(t.cfg.MaxFrameBytes) || n > 0xffffffff {
				// Only an encoder's payload can be too large here
				// (SendPayload checks the others): the peer would close
				// the connection on it.
				t.dropped.Add(1)
				t.oversizeWarn.warn("dropped a payload over the frame limit", "peer", string(p.id),
					"engine", it.e.String(), "bytes", n, "limit", t.cfg.MaxFrameBytes)
				return nil
			}
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
