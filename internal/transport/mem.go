package transport

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/trireme-db/trireme/internal/repl"
)

// Network is an in-memory network of Mem transports for tests. Links can be
// cut one way or both ways and healed. Every message and payload goes through
// the frame codec, so nothing is shared between sender and receiver.
type Network struct {
	mu  sync.Mutex
	eps map[repl.NodeID]*Mem        // guarded by mu
	cut map[[2]repl.NodeID]struct{} // directional cuts {from, to}, guarded by mu
	// streams open between endpoints, by {opener, acceptor}; a cut of the
	// link either way closes them. Guarded by mu.
	streams map[*memStream][2]repl.NodeID
}

// memStream is the pair of ends of one stream (net.Pipe).
type memStream struct{ a, b net.Conn }

func (s *memStream) close() {
	s.a.Close()
	s.b.Close()
}

// NewNetwork returns an empty, fully connected network.
func NewNetwork() *Network {
	return &Network{eps: make(map[repl.NodeID]*Mem), cut: make(map[[2]repl.NodeID]struct{}),
		streams: make(map[*memStream][2]repl.NodeID)}
}

// Endpoint creates (or replaces, for a restarted node) the transport of info.ID.
// queueLen bounds its inbox; beyond it messages and payloads are dropped.
func (n *Network) Endpoint(info PeerInfo, queueLen int) *Mem {
	if queueLen <= 0 {
		queueLen = 1024
	}
	m := &Mem{net: n, info: info, inbox: make(chan []byte, queueLen), closed: make(chan struct{})}
	n.mu.Lock()
	n.eps[info.ID] = m
	n.mu.Unlock()
	return m
}

// Cut drops everything sent from `from` to `to` (one way), and closes the
// streams open between them (a stream needs both ways).
func (n *Network) Cut(from, to repl.NodeID) {
	n.mu.Lock()
	n.cut[[2]repl.NodeID{from, to}] = struct{}{}
	var doomed []*memStream
	for s, ends := range n.streams {
		if ends == [2]repl.NodeID{from, to} || ends == [2]repl.NodeID{to, from} {
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
func (n *Network) closeStreams(id repl.NodeID) {
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
func (n *Network) Partition(a, b repl.NodeID) {
	n.Cut(a, b)
	n.Cut(b, a)
}

// Isolate cuts id from every other endpoint, both ways.
func (n *Network) Isolate(id repl.NodeID) {
	n.mu.Lock()
	ids := make([]repl.NodeID, 0, len(n.eps))
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
func (n *Network) route(from, to repl.NodeID) *Mem {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, cut := n.cut[[2]repl.NodeID{from, to}]; cut {
		return nil
	}
	return n.eps[to]
}

// Mem is one node's endpoint on a Network.
type Mem struct {
	net    *Network
	info   PeerInfo
	inbox  chan []byte
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
			case b := <-m.inbox:
				f, err := DecodeFrame(b, 0)
				switch {
				case err != nil:
				case f.Type == FrameMessage:
					h.HandleMessage(*f.Message)
				case f.Type == FramePayload:
					h.HandlePayload(f.Payload.From, f.Payload.Engine, f.Payload.Data)
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

// Send implements Transport.
func (m *Mem) Send(msg repl.Message) {
	if !m.live() {
		return
	}
	dst := m.net.route(m.info.ID, msg.To)
	if dst == nil || !dst.live() {
		return
	}
	select {
	case dst.inbox <- AppendMessage(nil, &msg):
	default:
	}
}

// SendPayload implements Transport, like Send: the payload shares the
// receiver's inbox with messages. A payload whose frame would exceed
// DefaultMaxFrameBytes (the TCP transport's default limit), or of engine 0,
// is dropped.
func (m *Mem) SendPayload(to repl.NodeID, e Engine, payload []byte) {
	if !m.live() || e == 0 || !payloadFits(m.info.ID, to, len(payload), DefaultMaxFrameBytes) {
		return
	}
	dst := m.net.route(m.info.ID, to)
	if dst == nil || !dst.live() {
		return
	}
	select {
	case dst.inbox <- AppendPayload(nil, &Payload{Engine: e, From: m.info.ID, To: to, Data: payload}):
	default:
	}
}

// Forward implements Transport. The request and response both need the link up.
func (m *Mem) Forward(ctx context.Context, to repl.NodeID, req *ForwardRequest) (*ForwardResponse, error) {
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
func (m *Mem) OpenStream(ctx context.Context, to repl.NodeID) (net.Conn, error) {
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
	m.net.streams[s] = [2]repl.NodeID{m.info.ID, to}
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
func (m *Mem) Peer(id repl.NodeID) (PeerInfo, bool) {
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
