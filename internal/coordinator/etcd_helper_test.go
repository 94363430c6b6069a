//go:build linux

package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// testTTL is the lease TTL the etcd tests use. testEtcd's timing flags let
// etcd grant it (etcd's minimum TTL is 1.5 election timeouts, rounded up).
const testTTL = time.Second

// testEtcd is one real etcd process, started from the `etcd` binary (Debian's
// etcd-server) on free loopback ports, with its data in a test's TempDir.
type testEtcd struct {
	t       *testing.T
	bin     string
	dir     string
	client  string // host:port
	peer    string // host:port
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// etcdBinary finds etcd on PATH; without it the test fails, saying what to
// install, unless TRIREME_SKIP_ETCD=1 asks to skip.
func etcdBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err == nil {
		return bin
	}
	if os.Getenv("TRIREME_SKIP_ETCD") == "1" {
		t.Skip("etcd not on PATH and TRIREME_SKIP_ETCD=1: skipping the tests against a real etcd")
	}
	t.Fatalf("etcd not on PATH (%v): install Debian's etcd-server (apt-get install -y etcd-server), or set TRIREME_SKIP_ETCD=1 to skip these tests", err)
	return ""
}

// mustStartEtcd starts a one-member etcd cluster and kills it on cleanup.
func mustStartEtcd(t *testing.T) *testEtcd {
	t.Helper()
	bin := etcdBinary(t)
	var lastErr error
	for range 3 { // a port picked free may be taken before etcd binds it
		s := &testEtcd{t: t, bin: bin, dir: t.TempDir()}
		s.client, s.peer = freePort(t), freePort(t)
		s.logPath = filepath.Join(s.dir, "etcd.log")
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.kill)
			return s
		}
		s.kill()
	}
	t.Fatalf("starting etcd: %v", lastErr)
	return nil
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("picking a port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs etcd on s's ports and data directory (a restart keeps both) and
// waits until it reports healthy.
func (s *testEtcd) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	clientURL, peerURL := "http://"+s.client, "http://"+s.peer
	cmd := exec.Command(s.bin,
		"--name", "n1",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "n1="+peerURL,
		// Fast enough that etcd grants a 1s lease (its minimum TTL is
		// 1.5 election timeouts, rounded up to a second).
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, etcd goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("etcd exited during startup; log:\n%s", s.logTail())
		default:
		}
		if s.healthy() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after 15s; log:\n%s", s.logTail())
}

func (s *testEtcd) healthy() bool {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get("http://" + s.client + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
}

func (s *testEtcd) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// kill ends etcd with SIGKILL (a stopped process dies too) and waits for it.
func (s *testEtcd) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// restart kills etcd and starts it again on the same ports and data.
func (s *testEtcd) restart() {
	s.t.Helper()
	s.kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting etcd: %v", err)
	}
}

// pause and resume stop and continue the etcd process (SIGSTOP, SIGCONT): it
// keeps its sockets but answers nothing, like a hung server.
func (s *testEtcd) pause()  { s.signal(syscall.SIGSTOP) }
func (s *testEtcd) resume() { s.signal(syscall.SIGCONT) }

func (s *testEtcd) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("signal %v: etcd is not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v to etcd: %v", sig, err)
	}
}

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
