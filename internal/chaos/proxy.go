package chaos

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// LinkState is what a Link currently does to the traffic it carries.
type LinkState struct {
	// Cut blackholes the link: open connections are closed, new ones are
	// accepted but nothing is forwarded until the link heals (then they are closed).
	Cut bool
	// Delay is added to every chunk of data, in each direction; Jitter adds up to
	// that much more, at random (order is kept).
	Delay, Jitter time.Duration
	// Drop is the probability (0..1) that a chunk of data is lost; a TCP stream
	// cannot lose bytes, so losing a chunk resets the connection it was on.
	Drop float64
}

// Link is a TCP proxy for one directed link between two nodes: the dialing
// node (From) sends its peer messages through it to To's real peer address.
type Link struct {
	From, To string
	target   string
	ln       net.Listener
	log      *slog.Logger

	mu     sync.Mutex
	state  LinkState             // guarded by mu
	gen    uint64                // bumped by every state change that cuts; guarded by mu
	conns  map[*proxyConn]bool   // guarded by mu
	held   map[net.Conn]struct{} // blackholed accepted connections; guarded by mu
	rnd    *rand.Rand            // guarded by mu
	closed bool                  // guarded by mu
	wg     sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
}

// NewLink listens on a free loopback port and forwards to target.
func NewLink(from, to, target string, seed uint64, log *slog.Logger) (*Link, error) {
	return NewLinkAt(from, to, "127.0.0.1:0", target, seed, log)
}

// NewLinkAt listens on listen (host:port) and forwards to target.
func NewLinkAt(from, to, listen, target string, seed uint64, log *slog.Logger) (*Link, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy %s->%s: %w", from, to, err)
	}
	l := &Link{From: from, To: to, target: target, ln: ln, log: log,
		conns: map[*proxyConn]bool{}, held: map[net.Conn]struct{}{},
		rnd: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address the From node must use for To.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// State returns the link's current state.
func (l *Link) State() LinkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Set changes the link's behaviour. Cutting closes the open connections;
// healing a cut closes the blackholed ones, so that the nodes redial.
func (l *Link) Set(s LinkState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.state
	l.state = s
	if s.Cut && !was.Cut {
		l.gen++
		for pc := range l.conns {
			pc.client.Close()
			pc.server.Close()
		}
	}
	if !s.Cut && was.Cut {
		for c := range l.held {
			c.Close()
		}
		clear(l.held)
	}
}

// Close stops the proxy and closes every connection.
func (l *Link) Close() error {
	l.mu.Lock()
	l.closed = true
	err := l.ln.Close()
	for pc := range l.conns {
		pc.client.Close()
		pc.server.Close()
	}
	for c := range l.held {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		if l.state.Cut {
			l.held[c] = struct{}{} // blackhole: accept, never answer
			l.mu.Unlock()
			l.wg.Add(1)
			go l.drain(c)
			continue
		}
		l.mu.Unlock()
		l.wg.Add(1)
		go l.serve(c)
	}
}

// drain reads and discards what a blackholed connection sends.
func (l *Link) drain(c net.Conn) {
	defer l.wg.Done()
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	l.mu.Lock()
	delete(l.held, c)
	l.mu.Unlock()
}

func (l *Link) serve(c net.Conn) {
	defer l.wg.Done()
	s, err := net.DialTimeout("tcp", l.target, time.Second)
	if err != nil {
		c.Close() // the target is down: the dialer sees a reset, as it would directly
		return
	}
	pc := &proxyConn{client: c, server: s}
	l.mu.Lock()
	if l.closed || l.state.Cut {
		l.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	l.conns[pc] = true
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(c, s) }()
	go func() { defer wg.Done(); l.pipe(s, c) }()
	wg.Wait()
	l.mu.Lock()
	delete(l.conns, pc)
	l.mu.Unlock()
}

type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst, applying the link's delay and loss. A delivery
// goroutine keeps chunks in order while each waits for its time.
func (l *Link) pipe(src, dst net.Conn) {
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch := range q {
			if d := time.Until(ch.at); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(ch.data); err != nil {
				src.Close()
				dst.Close()
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			st := l.state
			drop := st.Drop > 0 && l.rnd.Float64() < st.Drop
			var jit time.Duration
			if st.Jitter > 0 {
				jit = time.Duration(l.rnd.Int64N(int64(st.Jitter)))
			}
			l.mu.Unlock()
			if st.Cut || drop {
				src.Close()
				dst.Close()
				break
			}
			data := make([]byte, n)
			copy(data, buf[:n])
			q <- chunk{data: data, at: time.Now().Add(st.Delay + jit)}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				l.log.Debug("proxy read", "from", l.From, "to", l.To, "err", err)
			}
			break
		}
	}
	close(q)
	<-done
	// Pass the close on: the other side must notice the connection is gone.
	src.Close()
	dst.Close()
}

// Net is the set of proxies between the members of one cluster: one Link per
// ordered pair of nodes.
type Net struct {
	ids   []string
	links map[[2]string]*Link
}

// NewNet creates a Link for every ordered pair (from, to) of ids; real maps an
// id to the address its node really listens on for peers.
func NewNet(ids []string, real map[string]string, seed uint64, log *slog.Logger) (*Net, error) {
	return NewNetAt(ids, real, nil, seed, log)
}

// NewNetAt is NewNet with the address each Link listens on: listen(from, to)
// (nil: a free port on 127.0.0.1).
func NewNetAt(ids []string, real map[string]string, listen func(from, to string) string, seed uint64, log *slog.Logger) (*Net, error) {
	n := &Net{ids: ids, links: map[[2]string]*Link{}}
	i := uint64(0)
	for _, from := range ids {
		for _, to := range ids {
			if from == to {
				continue
			}
			i++
			addr := "127.0.0.1:0"
			if listen != nil {
				addr = listen(from, to)
			}
			l, err := NewLinkAt(from, to, addr, real[to], seed+i, log)
			if err != nil {
				n.Close()
				return nil, err
			}
			n.links[[2]string{from, to}] = l
		}
	}
	return n, nil
}

// Link returns the proxy carrying from's traffic to to.
func (n *Net) Link(from, to string) *Link { return n.links[[2]string{from, to}] }

// Cut cuts (or heals) the one-way link from -> to.
func (n *Net) Cut(from, to string, cut bool) {
	l := n.Link(from, to)
	s := l.State()
	s.Cut = cut
	l.Set(s)
}

// CutBoth cuts both directions between a and b.
func (n *Net) CutBoth(a, b string) {
	n.Cut(a, b, true)
	n.Cut(b, a, true)
}

// Partition cuts every link between different groups (both directions).
func (n *Net) Partition(groups ...[]string) {
	group := map[string]int{}
	for gi, g := range groups {
		for _, id := range g {
			group[id] = gi
		}
	}
	for k := range n.links {
		ga, oka := group[k[0]]
		gb, okb := group[k[1]]
		if oka && okb && ga != gb {
			n.Cut(k[0], k[1], true)
		}
	}
}

// SetAll applies f to the state of every link.
func (n *Net) SetAll(f func(from, to string, s *LinkState)) {
	for k, l := range n.links {
		s := l.State()
		f(k[0], k[1], &s)
		l.Set(s)
	}
}

// Heal restores every link to full health.
func (n *Net) Heal() {
	for _, l := range n.links {
		l.Set(LinkState{})
	}
}

// Close closes every proxy.
func (n *Net) Close() {
	for _, l := range n.links {
		l.Close()
	}
}
