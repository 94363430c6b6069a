package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// Tests of what a hostile or careless client can send: bad query strings,
// oversized keys and headers, bodies that stall, replies nobody reads.

// mustServe serves srv on a loopback listener and returns its address.
func mustServe(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func mustNewServer(t *testing.T, f *apitest.Fake, cfg Config) *http.Server {
	t.Helper()
	srv, err := NewServer(f, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// mustRawExchange writes req on a fresh connection to addr (in the
// background, so that a server that stops reading does not block it) and
// returns everything the server sends until it closes the connection. It
// fails if the server keeps the connection open for longer than wait.
func mustRawExchange(t *testing.T, addr string, req []byte, wait time.Duration) []byte {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = conn.Write(req) }()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(conn)
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("the server did not close the connection within %v: %v (got %q)", wait, err, b)
	}
	return b
}

func mustStatusLine(t *testing.T, reply []byte) int {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(reply)), nil)
	if err != nil {
		t.Fatalf("not an HTTP reply: %q: %v", reply, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Every parameter is validated: undecodable, ';'-separated, repeated,
// empty, unknown and misplaced parameters are refused with a 400 that names
// the parameter, and the service never sees the request.
func TestQueryIsStrict(t *testing.T) {
	tests := []struct {
		method, target string
		mention        []string
	}{
		{"GET", "/v1/kv/k?consistency=%zz", []string{"consistency", "%zz"}},
		{"GET", "/v1/kv/k?consistency=stale;raw=1", []string{"consistency", "';'"}},
		{"GET", "/v1/kv/k?%zz=stale", []string{"%zz"}},
		{"PUT", "/v1/kv/k?ack=sync&ack=async", []string{`"ack"`, "more than once"}},
		{"PUT", "/v1/kv/k?ack=sync&a%63k=async", []string{`"ack"`, "more than once"}},
		{"DELETE", "/v1/kv/k?timeout=1s&timeout=2s", []string{`"timeout"`, "more than once"}},
		{"GET", "/v1/kv/k?raw=1&raw=0", []string{`"raw"`, "more than once"}},
		{"PUT", "/v1/kv/k?ack=", []string{`"ack"`, "without a value"}},
		{"GET", "/v1/kv/k?raw", []string{`"raw"`, "without a value"}},
		{"GET", "/v1/kv/k?consistency=", []string{`"consistency"`, "without a value"}},
		{"PUT", "/v1/kv/k?acks=sync", []string{`"acks"`, "ack, replicas, timeout"}},
		{"PUT", "/v1/kv/k?ACK=sync", []string{`"ACK"`}},
		{"GET", "/v1/kv/k?ack=sync", []string{`"ack"`, "consistency, raw"}},
		{"PUT", "/v1/kv/k?consistency=stale", []string{`"consistency"`}},
		{"GET", "/v1/kv/k?timeout=1s", []string{`"timeout"`}},
		{"GET", "/v1/status?verbose=1", []string{`"verbose"`, "takes none"}},
		{"GET", "/v1/rollbacks?limit=3", []string{`"limit"`}},
		{"GET", "/v1/conflicts?limit=3;after=1", []string{"';'"}},
		{"GET", "/v1/conflicts?limit=%zz", []string{`"limit"`, "%zz"}},
		{"POST", "/v1/leader/transfer?to=n2&to=n3", []string{`"to"`, "more than once"}},
		{"POST", "/v1/leader/transfer?to=n2&ack=sync", []string{`"ack"`, "to, timeout"}},
		{"POST", "/v1/leader/transfer?to=n2;timeout=1s", []string{"';'"}},
		// The parameters of sessions, bounds, commands and conditions.
		{"GET", "/v1/kv/k?consistency=session&session=1.1.1&session=1.1.2", []string{`"session"`, "more than once"}},
		{"GET", "/v1/kv/k?consistency=session&session=", []string{`"session"`, "without a value"}},
		{"GET", "/v1/kv/k?consistency=bounded&max_lag=1s;max_lag_entries=1", []string{"';'"}},
		{"GET", "/v1/kv/k?consistency=bounded&max_lag_entries", []string{`"max_lag_entries"`, "without a value"}},
		{"GET", "/v1/kv/k?op=incr", []string{`"op"`, "consistency, raw, session, max_lag, max_lag_entries"}},
		{"GET", "/v1/kv/k?if_index=1", []string{`"if_index"`}},
		{"PUT", "/v1/kv/k?op=incr", []string{`"op"`, "ack, replicas, timeout, if_index"}},
		{"PUT", "/v1/kv/k?session=1.1.1&session=1.1.2", []string{`"session"`, "more than once"}},
		{"PUT", "/v1/kv/k?session=bogus", []string{"session", "malformed"}},
		{"DELETE", "/v1/kv/k?by=1", []string{`"by"`}},
		{"DELETE", "/v1/kv/k?if_index=1&if_index=2", []string{`"if_index"`, "more than once"}},
		{"POST", "/v1/kv/k?op=incr&op=append", []string{`"op"`, "more than once"}},
		{"POST", "/v1/kv/k?op=incr&by=%zz", []string{`"by"`, "%zz"}},
		{"POST", "/v1/kv/k?op=incr&max_lag=1s", []string{`"max_lag"`, "ack, replicas, timeout, if_index, session, op, by"}},
		{"POST", "/v1/leader/transfer?to=n2&if_index=1", []string{`"if_index"`}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			f := apitest.NewFake("n2", "n3")
			srv := mustServer(t, f)
			code, b, _ := mustDo(t, srv.Client(), tc.method, srv.URL+tc.target, []byte("v"))
			if code != http.StatusBadRequest {
				t.Fatalf("code %d, want 400: %s", code, b)
			}
			e, _ := mustJSON(t, b)["error"].(string)
			for _, m := range tc.mention {
				if !strings.Contains(e, m) {
					t.Fatalf("error %q should mention %s", e, m)
				}
			}
			if _, n := f.LastWrite(); n != 0 {
				t.Fatalf("the service saw %d writes", n)
			}
			if f.Status().Leader != "n1" {
				t.Fatal("the leadership moved")
			}
		})
	}
}

// The parameters the repository's clients send are accepted.
func TestQueryAccepted(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	srv := mustServer(t, f)
	for _, target := range []string{
		"PUT /v1/kv/k?",
		"PUT /v1/kv/k?ack=semi-sync&replicas=1&timeout=2s",
		"PUT /v1/kv/k?ack=majority&timeout=900ms",
		"PUT /v1/kv/k?timeout=1s&&ack=async",
		"GET /v1/kv/k?consistency=linearizable",
		"GET /v1/kv/k?consistency=stale&raw=1",
		"GET /v1/kv/k?consistency=st%61le",
		"DELETE /v1/kv/k?ack=async",
		"POST /v1/kv/n?op=incr&by=-2&ack=majority",
		"POST /v1/kv/a?op=append&timeout=1s",
		"DELETE /v1/kv/absent?if_index=0",
		"PUT /v1/kv/new?if_index=0&ack=majority",
		"GET /v1/kv/n?consistency=session&session=1.1.1",
		"GET /v1/kv/n?consistency=session",
		"GET /v1/kv/n?consistency=bounded&max_lag=1s&max_lag_entries=10&raw=1",
		"GET /v1/kv/n?consistency=bounded&max_lag_entries=1",
		"GET /v1/status",
		"PUT /v1/kv/k?ack=local&context=abc",
		"DELETE /v1/kv/k?ack=all&context=abc",
		"POST /v1/kv/n?op=incr&ack=1&context=abc",
		"GET /v1/conflicts",
		"GET /v1/conflicts?after=0&limit=1000",
		"POST /v1/leader/transfer?to=n2&timeout=3s",
	} {
		method, path, _ := strings.Cut(target, " ")
		body := []byte("v")
		if strings.Contains(path, "op=incr") {
			body = nil // an increment takes no body
		}
		code, b, _ := mustDo(t, srv.Client(), method, srv.URL+path, body)
		if code != http.StatusOK {
			t.Fatalf("%s: code %d: %s", target, code, b)
		}
	}
}

// The key limit applies to every endpoint that takes a key, with the reply a
// write over the limit gets; keys too long for the header limit get 431.
func TestKeyLimitOnEveryMethod(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	cfg := DefaultConfig()
	addr := mustServe(t, mustNewServer(t, f, cfg))
	base := "http://" + addr + "/v1/kv/"
	c := &http.Client{}

	atLimit := strings.Repeat("k", cfg.MaxKeyBytes)
	if code, b, _ := mustDo(t, c, "GET", base+atLimit, nil); code != http.StatusNotFound {
		t.Fatalf("GET of an absent key at the limit: %d %s", code, b)
	}
	if code, b, _ := mustDo(t, c, "PUT", base+atLimit, []byte("v")); code != http.StatusOK {
		t.Fatalf("PUT of a key at the limit: %d %s", code, b)
	}
	// A key at the limit fully escaped (3 bytes a byte) fits the header limit.
	escaped := strings.Repeat("%FF", cfg.MaxKeyBytes)
	if code, b, _ := mustDo(t, c, "PUT", base+escaped+"?ack=majority", []byte("v")); code != http.StatusOK {
		t.Fatalf("PUT of an escaped key at the limit: %d %s", code, b)
	}

	over := strings.Repeat("k", cfg.MaxKeyBytes+1)
	want := fmt.Sprintf(`{"error":"key too large: %d bytes, limit %d"}`+"\n", cfg.MaxKeyBytes+1, cfg.MaxKeyBytes)
	for _, method := range []string{"GET", "PUT", "POST", "DELETE", "HEAD"} {
		code, b, _ := mustDo(t, c, method, base+over, []byte("v"))
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s of a key over the limit: %d %s", method, code, b)
		}
		if method != "HEAD" && string(b) != want {
			t.Fatalf("%s of a key over the limit: body %s, want %s", method, b, want)
		}
	}
	if _, n := f.LastWrite(); n != 2 {
		t.Fatalf("the service saw %d writes, want the 2 at the limit", n)
	}

	huge := strings.Repeat("k", 1_000_000)
	for _, method := range []string{"GET", "PUT", "DELETE"} {
		req := fmt.Sprintf("%s /v1/kv/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", method, huge)
		reply := mustRawExchange(t, addr, []byte(req), 5*time.Second)
		if code := mustStatusLine(t, reply); code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%s of a 1 MB key: %d, want 431: %q", method, code, reply)
		}
	}
}

// Headers over MaxHeaderBytes get 431.
func TestMaxHeaderBytes(t *testing.T) {
	f := apitest.NewFake("n2")
	cfg := DefaultConfig()
	addr := mustServe(t, mustNewServer(t, f, cfg))
	pad := strings.Repeat("p", cfg.MaxHeaderBytes+8<<10)
	req := "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad + "\r\n\r\n"
	reply := mustRawExchange(t, addr, []byte(req), 5*time.Second)
	if code := mustStatusLine(t, reply); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers of %d bytes: %d, want 431", len(req), code)
	}
	// Headers well under the limit are fine.
	req = "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: " + pad[:cfg.MaxHeaderBytes/2] + "\r\n\r\n"
	if code := mustStatusLine(t, mustRawExchange(t, addr, []byte(req), 5*time.Second)); code != http.StatusOK {
		t.Fatalf("headers of %d bytes: %d, want 200", len(req), code)
	}
}

// A body that stops mid-way is cut off by the body deadline: the client gets
// a 408 and the server closes the connection, releasing what it had read.
func TestStalledBodyIsCutOff(t *testing.T) {
	f := apitest.NewFake("n2")
	cfg := DefaultConfig()
	cfg.ReadHeaderTimeout = 300 * time.Millisecond
	cfg.ReadTimeout = 300 * time.Millisecond
	cfg.MinBytesPerSecond = 1 << 30 // no allowance for the value size
	addr := mustServe(t, mustNewServer(t, f, cfg))

	chunk := strings.Repeat("a", 1000)
	req := "PUT /v1/kv/stalled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk) +
		fmt.Sprintf("%x\r\n%s", len(chunk), chunk[:10]) // a chunk that never ends
	start := time.Now()
	reply := mustRawExchange(t, addr, []byte(req), 10*time.Second)
	if code := mustStatusLine(t, reply); code != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %d, want 408: %q", code, reply)
	}
	if el := time.Since(start); el < cfg.ReadTimeout {
		t.Fatalf("the body was cut off after %v, before its deadline %v", el, cfg.ReadTimeout)
	}
	if !bytes.Contains(reply, []byte(`"error":"`)) || !bytes.Contains(reply, []byte("body")) {
		t.Fatalf("408 reply should be a JSON error about the body: %q", reply)
	}
	if _, ok := f.Value("stalled"); ok {
		t.Fatal("a stalled body was stored")
	}
}

// The read deadline ends with the body, and the write deadline starts with
// the reply: a write that waits for its ack mode longer than both gets its
// full wait and its reply.
func TestLongWaitOutlivesReadTimeout(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	f.SetDown("n3", true)
	cfg := DefaultConfig()
	cfg.ReadHeaderTimeout = 100 * time.Millisecond
	cfg.ReadTimeout = 100 * time.Millisecond
	cfg.ReplyTimeout = 100 * time.Millisecond
	cfg.MinBytesPerSecond = 1 << 30
	addr := mustServe(t, mustNewServer(t, f, cfg))
	wait := 700 * time.Millisecond

	for _, tc := range []struct {
		method string
		body   []byte
	}{{"PUT", []byte("v")}, {"DELETE", nil}} { // with a body and without
		method := tc.method
		start := time.Now()
		code, b, _ := mustDo(t, &http.Client{}, method,
			fmt.Sprintf("http://%s/v1/kv/k?ack=sync&timeout=%v", addr, wait), tc.body)
		if code != http.StatusGatewayTimeout || !strings.Contains(string(b), "not final") {
			t.Fatalf("%s: %d %s, want 504 saying the outcome is not final", method, code, b)
		}
		if el := time.Since(start); el < wait {
			t.Fatalf("%s: the wait for the ack mode ended after %v, before its timeout %v", method, el, wait)
		}
	}
}

// A client that does not read its reply is cut off by the reply deadline.
func TestUnreadReplyIsCutOff(t *testing.T) {
	f := apitest.NewFake("n2")
	const size = 16 << 20 // more than the loopback socket buffers hold
	f.SetMaxValueBytes(size)
	if _, err := f.Put(context.Background(), []byte("big"), bytes.Repeat([]byte("v"), size), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ReplyTimeout = 300 * time.Millisecond
	cfg.MinBytesPerSecond = 1 << 30
	srv := mustNewServer(t, f, cfg)
	closed := make(chan struct{})
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			close(closed)
		}
	}
	addr := mustServe(t, srv)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET /v1/kv/big?raw=1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the server still holds a connection whose client reads nothing")
	}
}

// Oversized and repeated headers of the write and read options are refused
// with a 400 that names them, before the service sees anything.
func TestHostileHeaders(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	srv := mustServer(t, f)
	c := srv.Client()
	huge := strings.Repeat("k", 100<<10)
	for _, tc := range []struct {
		method, target string
		headers        []string
		mention        string
	}{
		{"PUT", "/v1/kv/k", []string{IdempotencyKeyHeader + ": " + huge}, IdempotencyKeyHeader},
		{"POST", "/v1/kv/k?op=append", []string{IdempotencyKeyHeader + ": a", IdempotencyKeyHeader + ": a"}, "more than once"},
		{"DELETE", "/v1/kv/k", []string{"If-Match: " + huge}, "If-Match"},
		{"DELETE", "/v1/kv/k", []string{"If-Match: 18446744073709551616"}, "If-Match"},
		{"PUT", "/v1/kv/k", []string{`If-Match: "`}, "If-Match"},
		{"GET", "/v1/kv/k?consistency=session", []string{SessionHeader + ": " + huge}, "malformed session token"},
		{"GET", "/v1/kv/k?consistency=session", []string{SessionHeader + ": 1.18446744073709551615.18446744073709551616"}, "malformed session token"},
		{"PUT", "/v1/kv/k", []string{ContextHeader + ": " + huge}, ContextHeader},
		{"POST", "/v1/kv/k?op=append", []string{ContextHeader + ": a", ContextHeader + ": a"}, "more than once"},
	} {
		code, b, _ := mustDoH(t, c, tc.method, srv.URL+tc.target, []byte("v"), tc.headers...)
		if e, _ := mustJSON(t, b)["error"].(string); code != http.StatusBadRequest || !strings.Contains(e, tc.mention) {
			t.Fatalf("%s %s with %.60q: %d %.200s, want 400 naming %s", tc.method, tc.target, tc.headers, code, b, tc.mention)
		}
	}
	if _, n := f.LastWrite(); n != 0 || f.LastCommand() != nil {
		t.Fatalf("the service saw %d writes and command %+v", n, f.LastCommand())
	}
}
