//go:build linux

// Package etcdtest runs a real one-member etcd for tests: the `etcd` binary
// (Debian's etcd-server) on free loopback ports, with its data in the test's
// TempDir, killed when the test ends. Tests can kill it, restart it on the
// same data, and stop and continue it (SIGSTOP, SIGCONT) to play a hung
// server.
//
// Without an etcd on PATH, Start fails the test with a message saying what
// to install, unless TRIREME_SKIP_ETCD=1 asks to skip instead. It is for
// tests only (it takes a testing.TB) and runs on Linux (the parent-death
// signal keeps etcd from outliving a killed test binary).
package etcdtest

import (
	"fmt"
	"io"
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
)

// MinTTL is the shortest lease etcd grants with the timing Start gives it
// (etcd's minimum TTL is 1.5 election timeouts, rounded up to whole seconds).
const MinTTL = time.Second

// SkipEnv is the environment variable that turns a missing etcd binary from a
// test failure into a skip (value "1").
const SkipEnv = "TRIREME_SKIP_ETCD"

// healthyWithin bounds how long a start waits for etcd to report healthy.
const healthyWithin = 15 * time.Second

// Server is one etcd process. Its methods may be called from the test's
// goroutine only (those that fail the test call t.Fatalf), except Endpoint,
// Dir, LogPath and LogTail.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	client  string // host:port
	peer    string // host:port
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd     // guarded by mu; nil when not running
	exited chan struct{} // guarded by mu; closed when cmd has exited
}

// Binary returns the path of the etcd binary on PATH. Without one it fails
// the test, saying what to install, or skips it if TRIREME_SKIP_ETCD=1.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err == nil {
		return bin
	}
	if os.Getenv(SkipEnv) == "1" {
		t.Skip("etcd not on PATH and " + SkipEnv + "=1: skipping the tests against a real etcd")
	}
	t.Fatalf("etcd not on PATH (%v): install Debian's etcd-server (apt-get install -y etcd-server), or set %s=1 to skip these tests", err, SkipEnv)
	return ""
}

// Start starts a one-member etcd cluster, waits until it is healthy, and
// kills it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for range 3 { // a port picked free may be taken before etcd binds it
		s := &Server{t: t, bin: bin, dir: t.TempDir()}
		s.client, s.peer = FreeAddr(t), FreeAddr(t)
		s.logPath = filepath.Join(s.dir, "etcd.log")
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
		s.Kill()
	}
	t.Fatalf("starting etcd: %v", lastErr)
	return nil
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("picking a port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Endpoint is etcd's client address, host:port. It stays the same across
// restarts.
func (s *Server) Endpoint() string { return s.client }

// Dir is the directory holding etcd's data and its log.
func (s *Server) Dir() string { return s.dir }

// LogPath is etcd's log file; restarts append to it.
func (s *Server) LogPath() string { return s.logPath }

// LogTail returns the last few kilobytes of etcd's log.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// start runs etcd on s's ports and data directory (a restart keeps both) and
// waits until it reports healthy.
func (s *Server) start() error {
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
		// Fast enough that etcd grants a 1s lease (MinTTL).
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

	deadline := time.Now().Add(healthyWithin)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("etcd exited during startup; log:\n%s", s.LogTail())
		default:
		}
		if s.healthy() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after %v; log:\n%s", healthyWithin, s.LogTail())
}

func (s *Server) healthy() bool {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get("http://" + s.client + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
}

// Running reports whether the etcd process is alive (possibly stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Kill ends etcd with SIGKILL (a stopped process dies too) and waits for it.
// Killing an etcd that is not running does nothing.
func (s *Server) Kill() {
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

// Restart kills etcd if it runs, starts it again on the same ports and data
// directory, and waits until it is healthy. It fails the test if etcd does
// not come back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting etcd: %v", err)
	}
}

// Pause and Resume stop and continue the etcd process (SIGSTOP, SIGCONT):
// it keeps its sockets but answers nothing, like a hung server. A paused
// etcd is still killed when the test ends.
func (s *Server) Pause()  { s.signal(syscall.SIGSTOP) }
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
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
