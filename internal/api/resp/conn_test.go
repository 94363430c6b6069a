package resp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// mustServeConfig serves svc with cfg and returns the server and its address.
func mustServeConfig(t *testing.T, svc api.Service, cfg Config) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(svc, cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after Close", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return s, ln.Addr().String()
}

func mustDial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// mustPing checks that a new connection to addr is served.
func mustPing(t *testing.T, addr string) {
	t.Helper()
	c, rd := mustDial(t, addr)
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := rd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING on a new connection: %q %v", line, err)
	}
}

// mustBeClosed checks that the server has closed c (after anything already
// sent, which is discarded).
func mustBeClosed(t *testing.T, rd *bufio.Reader) {
	t.Helper()
	if n, err := io.Copy(io.Discard, rd); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("connection not closed by the server: %v (after %d more bytes)", err, n)
	}
}

// TestHostileFramesOverTCP sends each frame of issue 15 to a real server:
// each gets Redis's protocol error and the connection closes, and the
// server goes on answering new connections.
func TestHostileFramesOverTCP(t *testing.T) {
	f := apitest.NewFake("n2")
	_, addr := mustServeConfig(t, f, DefaultConfig())
	tests := []struct {
		name    string
		frame   []byte
		wantErr string
	}{
		{"panic frame", []byte("*1\r\n$9223372036854775807\r\n"), "invalid bulk length"},
		{"huge count", []byte("*9223372036854775807\r\n"), "invalid multibulk length"},
		{"huge bulk", append([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n"), bytes.Repeat([]byte("x"), 4<<20)...),
			"invalid bulk length"},
		{"long inline line without newline", bytes.Repeat([]byte("a"), 200<<10), "too big inline request"},
		{"negative count", []byte("*-2\r\n"), "invalid multibulk length"},
		{"not a number", []byte("*1\r\n$4x\r\nPING\r\n"), "invalid bulk length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, rd := mustDial(t, addr)
			go c.Write(tc.frame) // the server may stop reading long before the end
			line, err := rd.ReadString('\n')
			if want := "-ERR Protocol error: " + tc.wantErr + "\r\n"; err != nil || line != want {
				t.Fatalf("reply %q %v, want %q", line, err, want)
			}
			mustBeClosed(t, rd)
			mustPing(t, addr)
		})
	}
}

// TestStalledCommandClosed: a command whose bytes stop arriving for
// CommandTimeout closes its connection; an idle connection (between
// commands) stays open for longer than that.
func TestStalledCommandClosed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CommandTimeout = 100 * time.Millisecond
	_, addr := mustServeConfig(t, apitest.NewFake("n2"), cfg)
	idle, idleRd := mustDial(t, addr)
	if _, err := io.WriteString(idle, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := idleRd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q %v", line, err)
	}
	stalled, stalledRd := mustDial(t, addr)
	start := time.Now()
	if _, err := io.WriteString(stalled, "*1\r\n$4\r\nPI"); err != nil {
		t.Fatal(err)
	}
	if _, err := stalledRd.ReadByte(); err == nil {
		t.Fatal("the stalled connection got a reply")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server did not close the stalled connection: %v", err)
	}
	if d := time.Since(start); d < cfg.CommandTimeout {
		t.Fatalf("the stalled connection closed after %v, before CommandTimeout %v", d, cfg.CommandTimeout)
	}
	// The idle connection has now been idle for more than CommandTimeout.
	if _, err := io.WriteString(idle, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := idleRd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING on the idle connection: %q %v", line, err)
	}
}

// panicService panics on a read of the key "boom".
type panicService struct{ *apitest.Fake }

func (p panicService) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if string(key) == "boom" {
		panic("planted panic")
	}
	return p.Fake.Read(ctx, key, o)
}

// syncBuffer is a bytes.Buffer safe for concurrent use (a log sink).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHandlerPanic: a panic in one command's handler answers that command
// with an error, closes its connection only and is logged with its stack.
func TestHandlerPanic(t *testing.T) {
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	_, addr := mustServeConfig(t, panicService{apitest.NewFake("n2")}, cfg)
	other, otherRd := mustDial(t, addr)
	c, rd := mustDial(t, addr)
	// SET is answered, GET boom panics while the reply to SET waits in the
	// same batch, PING after it is not run.
	if _, err := io.WriteString(c, "SET a 1\r\nGET boom\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+OK\r\n", "-ERR internal error\r\n"} {
		if line, err := rd.ReadString('\n'); err != nil || line != want {
			t.Fatalf("reply %q %v, want %q", line, err, want)
		}
	}
	mustBeClosed(t, rd)
	if _, err := io.WriteString(other, "GET a\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"$1\r\n", "1\r\n"} {
		if line, err := otherRd.ReadString('\n'); err != nil || line != want {
			t.Fatalf("other connection: %q %v, want %q", line, err, want)
		}
	}
	mustPing(t, addr)
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "planted panic") || !strings.Contains(out, "cmdGet") {
		t.Fatalf("the panic was not logged at error level with its stack:\n%s", out)
	}
}

// TestCloseEndsConnections: Close closes every connection, cancels the
// requests in flight (a WAIT that would wait for ever) and makes Serve
// return; the INFO connection count follows connections opening and
// closing.
func TestCloseEndsConnections(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	s, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	mustClients(t, addr, 2) // c and the one asking
	if _, err := io.WriteString(c, "WAIT 5 0\r\n"); err != nil {
		t.Fatal(err)
	}
	idle, idleRd := mustDial(t, addr)
	if _, err := io.WriteString(idle, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := idleRd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q %v", line, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mustBeClosed(t, rd)
	mustBeClosed(t, idleRd)
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the server still accepts connections after Close")
	}
}

// mustClients waits (up to 5s) until INFO clients, asked on a new
// connection (counted, and closed on return), reports want connected
// clients.
func mustClients(t *testing.T, addr string, want int) {
	t.Helper()
	c, rd := mustDial(t, addr)
	defer c.Close()
	wantLine := fmt.Sprintf("connected_clients:%d\r\n", want)
	var body []byte
	for start := time.Now(); time.Since(start) < 5*time.Second; {
		if _, err := io.WriteString(c, "INFO clients\r\n"); err != nil {
			t.Fatal(err)
		}
		header, err := rd.ReadString('\n')
		if err != nil || header[0] != '$' {
			t.Fatalf("INFO reply %q %v", header, err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(header[1:]))
		body = make([]byte, n+2)
		if _, err := io.ReadFull(rd, body); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(body, []byte(wantLine)) {
			return
		}
	}
	t.Fatalf("INFO clients says %q, want %q", body, wantLine)
}

// TestConnectionCount: the INFO count goes up when a client comes and down
// when it leaves.
func TestConnectionCount(t *testing.T) {
	_, addr := mustServeConfig(t, apitest.NewFake("n2"), DefaultConfig())
	c, rd := mustDial(t, addr)
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	mustClients(t, addr, 2)
	c.Close()
	mustClients(t, addr, 1)
}

// pipeConn is a net.Conn that serves one scripted input and records each
// Write.
type pipeConn struct {
	net.Conn // nil: only the methods below are used
	in       io.Reader
	mu       sync.Mutex
	writes   [][]byte
}

func (p *pipeConn) Read(b []byte) (int, error) { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes = append(p.writes, bytes.Clone(b))
	return len(b), nil
}
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// TestPipelineOneWritePerBatch: the replies to a batch of pipelined
// commands leave in one write (what redis-benchmark -P relies on), and in
// order; QUIT stops the batch.
func TestPipelineOneWritePerBatch(t *testing.T) {
	s := New(apitest.NewFake("n2"), DefaultConfig())
	defer s.Close()
	var in strings.Builder
	var want strings.Builder
	for i := range 100 {
		fmt.Fprintf(&in, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$1\r\nv\r\n", len(fmt.Sprint(i))+1, i)
		want.WriteString("+OK\r\n")
	}
	in.WriteString("GET k7\r\nQUIT\r\nPING\r\n")
	want.WriteString("$1\r\nv\r\n+OK\r\n")
	pc := &pipeConn{in: strings.NewReader(in.String())}
	s.serveConn(s.newConn(pc))
	if len(pc.writes) != 1 {
		t.Fatalf("%d writes for one batch, want 1", len(pc.writes))
	}
	if got := string(pc.writes[0]); got != want.String() {
		t.Fatalf("replies %q, want %q", got, want.String())
	}
}

// TestWriterReleasesLargeBuffer: a large reply's buffer is not kept.
func TestWriterReleasesLargeBuffer(t *testing.T) {
	var sink bytes.Buffer
	w := writer{w: &sink}
	w.WriteBulk(make([]byte, 1<<20))
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if cap(w.out) > keepBytes {
		t.Fatalf("reply buffer of %d bytes kept after flush", cap(w.out))
	}
	w.WriteString("a\r\nb")
	w.WriteError("ERR x\ny")
	w.WriteInt(-3)
	w.WriteArray(2)
	w.WriteNull()
	w.WriteBulkString("")
	w.flush()
	if want := "+a  b\r\n-ERR x y\r\n:-3\r\n*2\r\n$-1\r\n$0\r\n\r\n"; !strings.HasSuffix(sink.String(), want) {
		t.Fatalf("replies end with %q, want %q", sink.String()[max(0, sink.Len()-40):], want)
	}
}

// TestBulkLimitFollowsValueLimit: by default the bulk limit is the value
// limit plus DefaultBulkSlackBytes. A value just over the value limit gets
// the service's error on a live connection; a length over the bulk limit
// is refused from its header.
func TestBulkLimitFollowsValueLimit(t *testing.T) {
	f := apitest.NewFake("n2")
	f.SetMaxValueBytes(1000)
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	fmt.Fprintf(c, "CONFIG GET proto-max-bulk-len\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n%s\r\nPING\r\n", strings.Repeat("v", 1001))
	limit := strconv.Itoa(1000 + DefaultBulkSlackBytes)
	for _, want := range []string{"*2\r\n", "$18\r\n", "proto-max-bulk-len\r\n", fmt.Sprintf("$%d\r\n", len(limit)), limit + "\r\n"} {
		if line, err := rd.ReadString('\n'); err != nil || line != want {
			t.Fatalf("CONFIG GET proto-max-bulk-len: %q %v, want %q", line, err, want)
		}
	}
	for _, prefix := range []string{"-ERR value too large", "+PONG"} {
		if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, prefix) {
			t.Fatalf("reply %q %v, want %q...", line, err, prefix)
		}
	}
	fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", 1000+DefaultBulkSlackBytes+1)
	if line, err := rd.ReadString('\n'); err != nil || line != "-ERR Protocol error: invalid bulk length\r\n" {
		t.Fatalf("bulk over the limit: %q %v", line, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero limits (defaults)", func(c *Config) { *c = Config{} }, ""},
		{"negative MaxArgs", func(c *Config) { c.MaxArgs = -1 }, "Config.MaxArgs"},
		{"negative MaxBulkBytes", func(c *Config) { c.MaxBulkBytes = -1 }, "Config.MaxBulkBytes"},
		{"negative MaxInlineBytes", func(c *Config) { c.MaxInlineBytes = -1 }, "Config.MaxInlineBytes"},
		{"negative MaxCommandBytes", func(c *Config) { c.MaxCommandBytes = -1 }, "Config.MaxCommandBytes"},
		{"negative CommandTimeout", func(c *Config) { c.CommandTimeout = -time.Second }, "Config.CommandTimeout"},
		{"negative MaxClients", func(c *Config) { c.MaxClients = -1 }, "Config.MaxClients"},
		{"negative MaxPendingBytes", func(c *Config) { c.MaxPendingBytes = -1 }, "Config.MaxPendingBytes"},
		{"budget smaller than two commands", func(c *Config) { c.MaxCommandBytes, c.MaxPendingBytes = 8<<20, 12<<20 }, "Config.MaxPendingBytes"},
		{"budget smaller than two derived commands", func(c *Config) { c.MaxBulkBytes, c.MaxPendingBytes = 4<<20, 12<<20 }, "Config.MaxPendingBytes"},
		{"budget of two commands", func(c *Config) { c.MaxCommandBytes, c.MaxPendingBytes = 8<<20, 16<<20 }, ""},
		{"command smaller than a SET", func(c *Config) { c.MaxBulkBytes, c.MaxCommandBytes = 1<<20, 1<<20 }, "Config.MaxCommandBytes"},
		{"bad peer", func(c *Config) { c.PeerRESP = map[string]string{"n2": "nowhere"} }, "Config.PeerRESP"},
		{"negative TLSHandshakeTimeout", func(c *Config) { c.TLSHandshakeTimeout = -time.Second }, "Config.TLSHandshakeTimeout"},
		{"TLS without a certificate", func(c *Config) { c.TLS = &tls.Config{} }, "Config.TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestMaxClients: a connection beyond Config.MaxClients gets Redis's error
// and is closed; once a client leaves, a new one is served.
func TestMaxClients(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxClients = 2
	s, addr := mustServeConfig(t, apitest.NewFake("n2"), cfg)
	first, _ := mustDial(t, addr)
	mustPing(t, addr) // the second connection (closed at the end of the test)
	if _, err := io.WriteString(first, "CONFIG GET maxclients\r\n"); err != nil {
		t.Fatal(err)
	}
	over, overRd := mustDial(t, addr)
	io.WriteString(over, "PING\r\n") // not read: the reply must still arrive
	if line, err := overRd.ReadString('\n'); err != nil || line != "-ERR max number of clients reached\r\n" {
		t.Fatalf("third connection with MaxClients 2: %q %v", line, err)
	}
	mustBeClosed(t, overRd)
	if n := s.rejected.Load(); n != 1 {
		t.Fatalf("%d connections counted as rejected, want 1", n)
	}
	first.Close()
	for start := time.Now(); ; {
		c, rd := mustDial(t, addr)
		io.WriteString(c, "PING\r\n")
		line, _ := rd.ReadString('\n')
		c.Close()
		if line == "+PONG\r\n" {
			break
		}
		if line != "-ERR max number of clients reached\r\n" || time.Since(start) > 5*time.Second {
			t.Fatalf("after a client left: %q", line)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPending waits (up to 5 s) until the server's budget for commands has
// want bytes in use, and fails otherwise.
func waitPending(t *testing.T, s *Server, want func(int64) bool, what string) int64 {
	t.Helper()
	start := time.Now()
	for {
		n := s.pending.inUse()
		if want(n) {
			return n
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: budget in use %d", what, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSettled waits until the budget in use satisfies want and has stayed
// the same for 100 ms, and returns it.
func waitSettled(t *testing.T, s *Server, want func(int64) bool, what string) int64 {
	t.Helper()
	start, last, same := time.Now(), int64(-1), 0
	for {
		n := s.pending.inUse()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
		if want(n) && same >= 20 {
			return n
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: budget in use %d", what, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPendingBudget: commands being received take from the server-wide
// budget (Config.MaxPendingBytes); a connection whose command would go
// over it gets an error and is closed, and what each connection took is
// given back exactly: when its command's batch is done, when it leaves in
// the middle of a command, and when its handler panics.
func TestPendingBudget(t *testing.T) {
	const bulk = 128 << 10
	cfg := DefaultConfig()
	cfg.MaxBulkBytes, cfg.MaxCommandBytes, cfg.MaxPendingBytes = bulk, 1<<20, 2<<20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, addr := mustServeConfig(t, panicService{apitest.NewFake("n2")}, cfg)
	// MGET of 7 keys of 128 KiB each (0.9 MiB) sends all but its last key
	// (it declares 8).
	value := strings.Repeat("v", bulk)
	partial := "*9\r\n$4\r\nMGET\r\n" + strings.Repeat(fmt.Sprintf("$%d\r\n%s\r\n", bulk, value), 7)
	var held []net.Conn
	var one int64
	for i := range 2 {
		c, _ := mustDial(t, addr)
		if _, err := io.WriteString(c, partial); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if i == 0 {
			// Settled: the connection may still be reading when the
			// budget first reaches 7 values.
			one = waitSettled(t, s, func(n int64) bool { return n >= 7*bulk }, "a connection holding 0.9 MiB")
		} else {
			waitPending(t, s, func(n int64) bool { return n == 2*one }, fmt.Sprintf("two connections holding the same partial command (want 2 x %d)", one))
		}
	}
	t.Logf("a connection holding %d bytes of a partial command takes %d of the budget", len(partial), one)
	// A third does not fit in 2 MiB.
	c, rd := mustDial(t, addr)
	go io.WriteString(c, partial)
	if line, err := rd.ReadString('\n'); err != nil || line != "-ERR server is out of memory for incoming commands, try again\r\n" {
		t.Fatalf("third partial command: %q %v", line, err)
	}
	mustBeClosed(t, rd)
	waitPending(t, s, func(n int64) bool { return n == 2*one }, "after the refused connection closed")
	// A small command still works.
	mustPing(t, addr)
	// Leaving in the middle of a command gives its part back.
	for _, c := range held {
		c.Close()
	}
	waitPending(t, s, func(n int64) bool { return n == 0 }, "after the partial commands' connections closed")
	// A complete command holds the budget until its batch is answered.
	c, rd = mustDial(t, addr)
	if _, err := io.WriteString(c, partial+"$1\r\nk\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := rd.ReadString('\n'); err != nil || line != "*8\r\n" {
		t.Fatalf("MGET of 8 keys: %q %v", line, err)
	}
	waitPending(t, s, func(n int64) bool { return n == 0 }, "after the command was answered")
	// A handler that panics in a batch holding the budget: given back when
	// its connection closes.
	c, rd = mustDial(t, addr)
	if _, err := io.WriteString(c, partial+"$1\r\nk\r\nGET boom\r\n"); err != nil {
		t.Fatal(err)
	}
	mustBeClosed(t, rd)
	waitPending(t, s, func(n int64) bool { return n == 0 }, "after a handler panicked")
}
