//go:build linux

package coordinator

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/trireme-db/trireme/internal/coordinator/etcdtest"
)

// testTTL is the lease TTL the etcd tests use: the shortest etcdtest's etcd
// grants.
const testTTL = etcdtest.MinTTL

// mustElector opens an Elector with the test TTL; it is closed on cleanup.
func mustElector(t *testing.T, endpoint, cluster, id string) *Elector {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Cluster, cfg.ID, cfg.TTL = []string{endpoint}, cluster, id, testTTL
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", id, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// mustRawClient is a plain etcd client for reading and tampering with keys.
func mustRawClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testCtx is a context bounded well below the test timeout.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustAcquire calls TryAcquire and fails the test unless it wins.
func mustAcquire(t *testing.T, e *Elector, minTerm uint64) uint64 {
	t.Helper()
	term, won, holder, err := e.TryAcquire(testCtx(t, 5*time.Second), minTerm)
	if err != nil || !won {
		t.Fatalf("%s: TryAcquire(%d) = term %d, won %v, holder %q, err %v; want a win", e.cfg.ID, minTerm, term, won, holder, err)
	}
	return term
}

// acquireWhenFree polls TryAcquire every 10ms until it wins or limit passes,
// and returns the term and the time the winning call returned.
func acquireWhenFree(t *testing.T, e *Elector, minTerm uint64, limit time.Duration) (uint64, time.Time) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		term, won, _, err := e.TryAcquire(ctx, minTerm)
		cancel()
		now := time.Now()
		if err == nil && won {
			return term, now
		}
		if now.After(deadline) {
			t.Fatalf("%s: no win within %v (last: term %d, err %v)", e.cfg.ID, limit, term, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stallProxy forwards TCP connections to an etcd. setStalled(true) makes it
// stop forwarding bytes both ways, on every connection, old and new, without
// closing anything, like a network partition; setStalledAnswers(true) holds
// only what etcd sends back, so requests arrive but answers are lost.
type stallProxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool // guarded by mu
	answers bool // guarded by mu; stall etcd-to-client bytes only
	conns   []net.Conn
	closed  bool
}

func mustStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &stallProxy{target: target, ln: ln}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, u) {
			return
		}
		go p.pipe(c, u, false)
		go p.pipe(u, c, true)
	}
}

func (p *stallProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// pipe copies from src to dst, holding each chunk while the proxy is stalled
// (or, for the answers direction, while answers are stalled).
func (p *stallProxy) pipe(src, dst net.Conn, answers bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for (p.stalled || answers && p.answers) && !p.closed {
				p.cond.Wait()
			}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *stallProxy) setStalled(v bool) {
	p.mu.Lock()
	p.stalled = v
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *stallProxy) setStalledAnswers(v bool) {
	p.mu.Lock()
	p.answers = v
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *stallProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.cond.Broadcast()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}
