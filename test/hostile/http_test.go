package hostile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
)

// httpReply is a raw HTTP exchange's outcome.
type httpReply struct {
	code   int
	body   string
	closed bool          // the node closed the connection after the reply
	after  time.Duration // from the dial to the close
	err    error
}

func (r httpReply) String() string {
	b := strings.TrimSpace(r.body)
	if len(b) > 120 {
		b = b[:120] + "..."
	}
	s := fmt.Sprintf("%d %q", r.code, b)
	if r.closed {
		s += fmt.Sprintf(", closed after %v", r.after.Round(time.Millisecond))
	}
	if r.err != nil {
		s += fmt.Sprintf(" (%v)", r.err)
	}
	return s
}

// rawHTTP sends req on a new connection to addr (in the background: the
// node may stop reading) and reads one reply, then waits for the node to
// close the connection, all within wait of the dial.
func rawHTTP(addr string, req []byte, wait time.Duration) httpReply {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return httpReply{err: err}
	}
	defer c.Close()
	c.SetDeadline(start.Add(wait))
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.Write(req) })
	return readHTTP(c, start)
}

// readHTTP reads one reply from c, then waits for c to end.
func readHTTP(c net.Conn, start time.Time) httpReply {
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return httpReply{err: err, after: time.Since(start), closed: isClosed(err)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := httpReply{code: resp.StatusCode, body: string(b), err: err}
	_, err = io.Copy(io.Discard, br)
	if err == nil || isClosed(err) {
		r.closed = true
	}
	r.after = time.Since(start)
	return r
}

func httpGroup(t *testing.T, x *env) {
	leader := x.mustLeader("")
	g := x.beginGroup("http", 100, httpConnBytes)
	for _, id := range x.ids() {
		httpBadRequests(t, x, id)
	}
	httpStalledBodies(t, x, leader)
	g.end()
}

// httpBadRequests: malformed queries get 400 naming the parameter, keys and
// headers over their limits get 413 and 431; nothing is written.
func httpBadRequests(t *testing.T, x *env, id string) {
	addr := x.node(id).HTTP
	get := func(target string, headers ...string) []byte {
		return []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", target, strings.Join(headers, "")))
	}
	cases := []struct {
		name    string
		req     []byte
		code    int
		mention string // in the body
	}{
		{"undecodable parameter", get("/v1/kv/known-00?consistency=%zz"), 400, "consistency"},
		{"';'-separated parameters", get("/v1/kv/known-00?consistency=stale;raw=1"), 400, "';'"},
		{"repeated parameter", []byte("PUT /v1/kv/hostile-ack?ack=sync&ack=async HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nv"), 400, "more than once"},
		{"key over the key limit (100 KiB)", get("/v1/kv/" + strings.Repeat("k", 100<<10)), 413, "key too large: 102400 bytes, limit 65536"},
		{"1 MB key", get("/v1/kv/" + strings.Repeat("k", 1_000_000)), 431, "Request Header Fields Too Large"},
		{"1 MiB header", get("/v1/status", "X-Pad: "+strings.Repeat("p", 1<<20)+"\r\n"), 431, "Request Header Fields Too Large"},
		{"8192 headers of 64 bytes", get("/v1/status", strings.Repeat("X-Many: "+strings.Repeat("m", 54)+"\r\n", 8192)), 431, "Request Header Fields Too Large"},
		{"chunked value of 1 MiB, over the limit", []byte("PUT /v1/kv/hostile-big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 1<<14, strings.Repeat("b", 1<<14)), 64) + "0\r\n\r\n"), 413, "value too large"},
	}
	for _, tc := range cases {
		r := rawHTTP(addr, tc.req, 5*time.Second)
		t.Logf("%s: %s to %s: %v", id, tc.name, "http://"+addr, r)
		if r.code != tc.code || !strings.Contains(r.body, tc.mention) {
			t.Errorf("%s: %s: %v; want %d mentioning %q", id, tc.name, r, tc.code, tc.mention)
		}
	}
	for _, k := range []string{"hostile-ack", "hostile-big"} {
		if _, err := x.cl.Get(x.ctx(5*time.Second), []byte(k), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("key %s of a refused request: %v, want not found", k, err)
		}
	}
}

// stalledBodies is how many HTTP connections stall inside a body.
const stalledBodies = 100

// httpStalledBodies: 100 connections send a chunked body just under the
// value limit, then the start of a chunk that never ends (issue 15: with 1
// MiB each they grew a node from 40 to 210 MB and held it). Each must get
// 408 and lose its connection once the request deadline passes, not
// before; nothing is stored.
func httpStalledBodies(t *testing.T, x *env, id string) {
	addr := x.node(id).HTTP
	rss0 := mustRSS(t, x.pid(id))
	body := bytes.Repeat([]byte("c"), valueLimit-1024)
	req := fmt.Appendf(nil, "PUT /v1/kv/hostile-stall HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n400\r\nnever-ends", len(body), body)
	replies := make([]httpReply, stalledBodies)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stalledBodies {
		wg.Go(func() {
			t0 := time.Now()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				replies[i] = httpReply{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(t0.Add(httpReadTimeout + 5*time.Second))
			if _, err := c.Write(req); err != nil {
				replies[i] = httpReply{err: err}
				return
			}
			replies[i] = readHTTP(c, t0)
		})
	}
	time.Sleep(time.Second)
	t.Logf("%d connections sent %s of chunked body each to %s (1 KiB under the value limit) and stall: its RSS %s -> %s",
		stalledBodies, size(int64(len(body))), id, mib(rss0), mib(mustRSS(t, x.pid(id))))
	wg.Wait()
	codes := map[int]int{}
	var first, last time.Duration
	for i, r := range replies {
		codes[r.code]++
		if i == 0 || r.after < first {
			first = r.after
		}
		last = max(last, r.after)
		switch {
		case r.code != http.StatusRequestTimeout || !strings.Contains(r.body, "request body not received in time"):
			t.Errorf("stalled body %d: %v, want 408 request body not received in time", i, r)
		case !r.closed:
			t.Errorf("stalled body %d: the node kept the connection after its 408", i)
		case r.after < httpReadTimeout-100*time.Millisecond || r.after > httpReadTimeout+3*time.Second:
			t.Errorf("stalled body %d cut off after %v; the request deadline is %v", i, r.after, httpReadTimeout)
		}
	}
	t.Logf("stalled bodies: replies %v, cut off between %v and %v after their dial (request deadline %v); all done %v after the first dial; first reply: %v",
		codes, first.Round(time.Millisecond), last.Round(time.Millisecond), httpReadTimeout, time.Since(start).Round(time.Millisecond), replies[0])
	if _, err := x.cl.Get(x.ctx(5*time.Second), []byte("hostile-stall"), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("key of a stalled body: %v, want not found", err)
	}
}
