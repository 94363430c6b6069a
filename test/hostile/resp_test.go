package hostile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exchange is what one hostile connection saw.
type exchange struct {
	reply  string        // the first reply line, without its CRLF ("" if none)
	closed bool          // the node ended the connection (EOF or reset)
	after  time.Duration // from the dial to the end of the connection, or to giving up
	sent   int64         // bytes the node's socket accepted
	err    error         // a read error other than the end of the connection
}

func (e exchange) String() string {
	s := fmt.Sprintf("reply %q, ", e.reply)
	if e.closed {
		s += fmt.Sprintf("closed by the node after %v", e.after.Round(time.Millisecond))
	} else {
		s += fmt.Sprintf("still open after %v", e.after.Round(time.Millisecond))
	}
	if e.err != nil {
		s += fmt.Sprintf(" (%v)", e.err)
	}
	return s + fmt.Sprintf(", %s sent", size(e.sent))
}

func size(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// isClosed reports whether err is the peer ending the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// mustExchange dials addr, sends payload and then up to extra filler bytes
// (in 1 MiB writes, until one fails), reads the first line the node sends
// and then waits up to wait (from the dial) for the node to end the
// connection. It returns once the writer has stopped too (at most wait
// after the dial, when the connection is closed under it).
func mustExchange(t *testing.T, addr string, payload []byte, extra int64, filler byte, wait time.Duration) exchange {
	t.Helper()
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := c.Write(payload)
		sent += int64(n)
		chunk := bytes.Repeat([]byte{filler}, 1<<20)
		for left := extra; err == nil && left > 0; left -= int64(len(chunk)) {
			n, err = c.Write(chunk[:min(int64(len(chunk)), left)])
			sent += int64(n)
		}
	})
	c.SetDeadline(start.Add(wait))
	br := bufio.NewReader(c)
	var e exchange
	line, err := br.ReadString('\n')
	e.reply = strings.TrimSuffix(line, "\r\n")
	if err == nil {
		_, err = io.Copy(io.Discard, br)
		if err == nil {
			err = io.EOF // io.Copy swallows EOF
		}
	}
	e.after = time.Since(start)
	if isClosed(err) {
		e.closed = true
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		e.err = err
	}
	wg.Wait() // the write deadline (start+wait) ends a writer the node does not stop
	c.Close()
	e.sent = sent
	return e
}

// respCase is one hostile frame and what the node must answer.
type respCase struct {
	name    string
	payload string
	extra   int64  // filler bytes sent after the payload
	filler  byte   // 'x' if 0
	reply   string // the reply line expected (exactly)
	open    bool   // the connection must stay open (a control case)
}

// maxSentAfterError bounds what the node's socket may accept from a client
// that goes on sending after a protocol error: the documented 1 MiB the
// node discards, plus the loopback socket buffers on both sides (a few MiB
// each with autotuning). A node that kept reading would take all 64 MiB.
const maxSentAfterError = 24 << 20

func respGroup(t *testing.T, x *env) {
	const (
		errBulk      = "-ERR Protocol error: invalid bulk length"
		errMultibulk = "-ERR Protocol error: invalid multibulk length"
		errInline    = "-ERR Protocol error: too big inline request"
	)
	set := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n"
	cases := []respCase{
		{name: "bulk length 2^63-1 (used to panic the node)", payload: "*1\r\n$9223372036854775807\r\n", reply: errBulk},
		{name: "array count 2^63-1 (used to pin a core)", payload: "*9223372036854775807\r\n", reply: errMultibulk},
		{name: "declared 600 MB value, then 64 MiB of it (used to grow the node to 1.9 GB)",
			payload: set + "$600000000\r\n", extra: 64 << 20, reply: errBulk},
		{name: "64 MiB inline line without a newline (200 MB used to take 2.8 GB)", payload: "SET k ", extra: 64 << 20, reply: errInline},
		{name: "array count one over the limit", payload: "*1048577\r\n", reply: errMultibulk},
		{name: "array count over 2^64", payload: "*18446744073709551617\r\n", reply: errMultibulk},
		{name: "bulk length one over the limit", payload: fmt.Sprintf("%s$%d\r\n", set, bulkLimit+1), reply: errBulk},
		{name: "negative array count", payload: "*-5\r\n", reply: errMultibulk},
		{name: "negative bulk length", payload: "*1\r\n$-3\r\n", reply: errBulk},
		{name: "null bulk as an argument", payload: "*1\r\n$-1\r\n", reply: errBulk},
		{name: "non-numeric array count", payload: "*x\r\n", reply: errMultibulk},
		{name: "non-numeric bulk length", payload: "*1\r\n$abc\r\n", reply: errBulk},
		{name: "empty bulk length", payload: "*1\r\n$\r\n", reply: errBulk},
		{name: "array count line without an end", payload: "*", extra: 1 << 20, filler: '9', reply: "-ERR Protocol error: too big mbulk count string"},
		{name: "integer instead of a bulk", payload: "*1\r\n:5\r\n", reply: "-ERR Protocol error: expected '$', got ':'"},
		{name: "bulk longer than declared", payload: "*1\r\n$4\r\nPINGX\r\n", reply: errBulk},
		{name: "empty and null arrays are skipped (control)", payload: "*-1\r\n*0\r\nPING\r\n", reply: "+PONG", open: true},
	}
	leader := x.mustLeader("")
	addr := x.node(leader).RESP
	t.Logf("target: leader %s, RESP %s; bulk limit %d bytes", leader, addr, bulkLimit)

	g := x.beginGroup("resp", respGroupConns, respConnBytes)
	for _, tc := range cases {
		filler := tc.filler
		if filler == 0 {
			filler = 'x'
		}
		wait := 5 * time.Second
		if tc.open {
			wait = 500 * time.Millisecond
		}
		e := mustExchange(t, addr, []byte(tc.payload), tc.extra, filler, wait)
		t.Logf("%s: %v", tc.name, e)
		switch {
		case e.reply != tc.reply:
			t.Errorf("%s: reply %q, want %q", tc.name, e.reply, tc.reply)
		case tc.open && e.closed:
			t.Errorf("%s: the node closed the connection", tc.name)
		case !tc.open && !e.closed:
			t.Errorf("%s: the node kept the connection open for %v after a protocol error", tc.name, e.after)
		case tc.extra > 0 && e.sent > maxSentAfterError:
			t.Errorf("%s: the node took %s after a protocol error (at most %s expected)", tc.name, size(e.sent), size(maxSentAfterError))
		}
		if !x.c.Running(leader) {
			t.Fatalf("%s: node %s died (see %s)", tc.name, leader, x.c.LogPath(leader))
		}
	}
	respIdleCPU(t, x, leader)
	respStalledBulks(t, x, x.follower())
	g.end()
}

// respIdleCPU: clients that declare huge or at-limit counts and leave (or
// stall inside the command) leave the node idle: it uses at most
// idleCPUBound in idleCPUWindow afterwards.
func respIdleCPU(t *testing.T, x *env, id string) {
	addr := x.node(id).RESP
	var stalled []net.Conn
	for range 4 {
		e := mustExchange(t, addr, []byte("*9223372036854775807\r\n"), 0, 0, 5*time.Second)
		if !e.closed {
			t.Errorf("huge count: %v", e)
		}
		// A count at the limit, then nothing: the node waits for the first
		// argument (bounded by its 30 s command timeout).
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("*1048576\r\n$1\r\n"))
		stalled = append(stalled, c)
	}
	time.Sleep(100 * time.Millisecond)
	pid := x.pid(id)
	cpu0, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(idleCPUWindow)
	cpu1, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s CPU over %v after 4 clients sent *2^63-1 and left and 4 stalled after *1048576: %v (bound %v)",
		id, idleCPUWindow, cpu1-cpu0, idleCPUBound)
	if cpu1-cpu0 > idleCPUBound {
		t.Errorf("node %s used %v of CPU in %v after the huge-count clients (bound %v)", id, cpu1-cpu0, idleCPUWindow, idleCPUBound)
	}
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); isClosed(err) {
			t.Errorf("node %s closed a connection stalled inside a command of 1048576 arguments (count at the limit)", id)
		}
	}
}

// stalledConns is how many RESP connections stall in a bulk at the limit;
// respGroupConns is the most the resp group holds open at once.
const (
	stalledConns   = 50
	respGroupConns = stalledConns + 1
)

// respStalledBulks: 50 connections each send a bulk header at the limit
// and all but the last byte of it, then stall. The node must hold them
// open (the length is allowed) and hold no more than the bytes received.
func respStalledBulks(t *testing.T, x *env, id string) {
	addr := x.node(id).RESP
	pid := x.pid(id)
	rss0 := mustRSS(t, pid)
	hdr := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", bulkLimit)
	body := bytes.Repeat([]byte("s"), bulkLimit-1)
	var conns []net.Conn
	for range stalledConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(append([]byte(hdr), body...)); err != nil {
			t.Fatalf("stalled bulk: %v", err)
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isClosed(err) && err != nil {
			open++
		}
	}
	rss1 := mustRSS(t, pid)
	t.Logf("%d connections stalled in a bulk of %d bytes (the limit), 1 byte short, on node %s: %d still open; RSS %s -> %s (%s held by the clients)",
		stalledConns, bulkLimit, id, open, mib(rss0), mib(rss1), size(int64(stalledConns*(bulkLimit-1))))
	if open != stalledConns {
		t.Errorf("node %s closed %d of %d connections stalled in a bulk at the limit", id, stalledConns-open, stalledConns)
	}
	for _, c := range conns {
		c.Close()
	}
	if !x.c.Running(id) {
		t.Fatalf("node %s died with %d stalled bulks (see %s)", id, stalledConns, x.c.LogPath(id))
	}
}
