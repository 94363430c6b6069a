package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// Network is an in-memory network of Mem transports for tests. Links can be
// cut one way or both ways and healed. Every payload goes through the frame
// codec, so nothing is shared between sender and receiver.
type Network struct {
	mu  sync.Mutex
	eps map[NodeID]*Mem        // guarded by mu
	cut map[[2]NodeID]struct{} // directional cuts {from, to}, guarded by mu
	// streams open between endpoints, by {opener, acceptor}; a cut of the
	// link either way closes them. Guarded by mu.
	streams map[*memStream][2]NodeID
}

// memStream is the pair of ends of one stream (net.Pipe).
type memStream struct{ a, b net.Conn }

func (s *memStream) close() {
	s.a.Close()
	s.b.Close()
}

// NewNetwork returns an empty, fully connected network.
func NewNetwork() *Network {
	return &Network{eps: make(map[NodeID]*Mem), cut: make(map[[2]NodeID]struct{}),
		streams: make(map[*memStream][2]NodeID)}
}

// Endpoint creates (or replaces, for a restarted node) the transport of info.ID.
// queueLen bounds its inbox; beyond it payloads are dropped.
func (n *Network) Endpoint(info PeerInfo, queueLen int) *Mem {
	if queueLen <= 0 {
		queueLen = 1024
	}
	m := &Mem{net: n, info: info, inbox: make(chan memFrame, queueLen), closed: make(chan struct{})}
	n.mu.Lock()
	n.eps[info.ID] = m
	n.mu.Unlock()
	return m
}

// Cut drops everything sent from `from` to `to` (one way), and closes the
// streams open between them (a stream needs both ways).
func (n *Network) Cut(from, to NodeID) {
	n.mu.Lock()
	n.cut[[2]NodeID{from, to}] = struct{}{}
	var doomed []*memStream
	for s, ends := range n.streams {
		if ends == [2]NodeID{from, to} || ends == [2]NodeID{to, from} {
			doomed = append(doomed, s)
			delete(n.streams, s)
		}
	}
	n.mu.Unlock()
	for _, s := range doomed {
		s.close()
	}
}

// closeStreams closes every stream id opened or accepted.
func (n *Network) closeStreams(id NodeID) {
	n.mu.Lock()
	var doomed []*memStream
	for s, ends := range n.streams {
		if ends[0] == id || ends[1] == id {
			doomed = append(doomed, s)
			delete(n.streams, s)
		}
	}
	n.mu.Unlock()
	for _, s := range doomed {
		s.close()
	}
}

// Partition cuts the link between a and b both ways.
func (n *Network) Partition(a, b NodeID) {
	n.Cut(a, b)
	n.Cut(b, a)
}

// Isolate cuts id from every other endpoint, both ways.
func (n *Network) Isolate(id NodeID) {
	n.mu.Lock()
	ids := make([]NodeID, 0, len(n.eps))
	for o := range n.eps {
		ids = append(ids, o)
	}
	n.mu.Unlock()
	for _, o := range ids {
		if o != id {
			n.Partition(id, o)
		}
	}
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.cut)
	n.mu.Unlock()
}

// route returns the live endpoint for to if the from->to link is up.
func (n *Network) route(from, to NodeID) *Mem {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, cut := n.cut[[2]NodeID{from, to}]; cut {
		return nil
	}
	return n.eps[to]
}

// memFrame is a frame in an inbox, with its sender (as if authenticated).
type memFrame struct {
	from NodeID
	b    []byte
}

// Mem is one node's endpoint on a Network.
type Mem struct {
	net    *Network
	info   PeerInfo
	inbox  chan memFrame
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu      sync.Mutex
	handler Handler // guarded by mu
}

// Start implements Transport.
func (m *Mem) Start(h Handler) error {
	m.mu.Lock()
	m.handler = h
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case <-m.closed:
				return
			case in := <-m.inbox:
				f, err := DecodeFrame(in.b, 0)
				if err == nil && (f.Type == FrameMessage || f.Type == FramePayload) {
					h.HandlePayload(in.from, f.Payload.Engine, f.Payload.Data)
				}
			}
		}
	}()
	return nil
}

func (m *Mem) live() bool {
	select {
	case <-m.closed:
		return false
	default:
		return true
	}
}

// SendPayload implements Transport: every payload to a node shares its
// inbox. A payload whose frame would exceed DefaultMaxFrameBytes (the TCP
// transport's default limit), or of engine 0, is dropped.
func (m *Mem) SendPayload(to NodeID, e Engine, payload []byte) {
	if !frameFits(e, m.info.ID, to, len(payload), DefaultMaxFrameBytes) {
		return
	}
	m.send(to, e, nil, payload)
}

// SendEncoder implements Transport, like SendPayload. It encodes at once,
// on the caller's goroutine.
func (m *Mem) SendEncoder(to NodeID, e Engine, enc Encoder) {
	m.send(to, e, enc, nil)
}

func (m *Mem) send(to NodeID, e Engine, enc Encoder, data []byte) {
	if !m.live() || e == 0 {
		return
	}
	dst := m.net.route(m.info.ID, to)
	if dst == nil || !dst.live() {
		return
	}
	b := appendEngineFrame(nil, frameTypeOf(e), e, m.info.ID, to, enc, data)
	if len(b)-4 > DefaultMaxFrameBytes {
		return
	}
	select {
	case dst.inbox <- memFrame{from: m.info.ID, b: b}:
	default:
	}
}

// Forward implements Transport. The request and response both need the link up.
func (m *Mem) Forward(ctx context.Context, to NodeID, req *ForwardRequest) (*ForwardResponse, error) {
	if !m.live() {
		return nil, ErrClosed
	}
	dst := m.net.route(m.info.ID, to)
	if dst == nil || !dst.live() {
		return nil, fmt.Errorf("%w: %s", ErrNotSent, to)
	}
	dst.mu.Lock()
	h := dst.handler
	dst.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotSent, to)
	}
	f, err := DecodeFrame(AppendForwardRequest(nil, req), 0)
	if err != nil {
		return nil, err
	}
	resp := h.HandleForward(ctx, m.info.ID, f.Request)
	if m.net.route(to, m.info.ID) == nil {
		return nil, fmt.Errorf("%w: response from %s lost", ErrNotConnected, to)
	}
	f, err = DecodeFrame(AppendForwardResponse(nil, resp), 0)
	if err != nil {
		return nil, err
	}
	return f.Response, nil
}

// OpenStream implements Transport with net.Pipe: the peer's HandleStream
// gets the other end on a goroutine of its own. Both ways of the link must be
// up; a later cut either way, or Close of either endpoint, closes the stream.
func (m *Mem) OpenStream(ctx context.Context, to NodeID) (net.Conn, error) {
	if !m.live() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dst := m.net.route(m.info.ID, to)
	if dst == nil || !dst.live() || m.net.route(to, m.info.ID) == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, to)
	}
	dst.mu.Lock()
	h := dst.handler
	dst.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, to)
	}
	a, b := net.Pipe()
	s := &memStream{a: a, b: b}
	m.net.mu.Lock()
	m.net.streams[s] = [2]NodeID{m.info.ID, to}
	m.net.mu.Unlock()
	from := m.info.ID
	dst.wg.Add(1)
	go func() {
		defer dst.wg.Done()
		defer func() {
			b.Close()
			m.net.mu.Lock()
			delete(m.net.streams, s)
			m.net.mu.Unlock()
		}()
		h.HandleStream(from, b)
	}()
	return a, nil
}

// Peer implements Transport.
func (m *Mem) Peer(id NodeID) (PeerInfo, bool) {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	if ep := m.net.eps[id]; ep != nil {
		return ep.info, true
	}
	return PeerInfo{}, false
}

// Close implements Transport.
func (m *Mem) Close() error {
	m.once.Do(func() { close(m.closed) })
	m.net.closeStreams(m.info.ID)
	m.wg.Wait()
	return nil
}
