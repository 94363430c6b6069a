package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/redcon"

	"github.com/trireme-db/trireme/internal/api/apitest"
)

// recConn is a redcon.Conn that records replies in a buffer.
type recConn struct {
	*redcon.Writer
	buf    *bytes.Buffer
	ctx    any
	closed bool
}

func newRecConn() *recConn {
	b := &bytes.Buffer{}
	return &recConn{Writer: redcon.NewWriter(b), buf: b}
}

func (c *recConn) RemoteAddr() string                  { return "127.0.0.1:1" }
func (c *recConn) Close() error                        { c.closed = true; return nil }
func (c *recConn) Context() any                        { return c.ctx }
func (c *recConn) SetContext(v any)                    { c.ctx = v }
func (c *recConn) SetReadBuffer(int)                   {}
func (c *recConn) Detach() redcon.DetachedConn         { panic("Detach is not used") }
func (c *recConn) ReadPipeline() []redcon.Command      { return nil }
func (c *recConn) PeekPipeline() []redcon.Command      { return nil }
func (c *recConn) NetConn() net.Conn                   { return nil }
func (c *recConn) WriteBulkFrom(n int64, rb io.Reader) { c.Writer.WriteBulkFrom(n, rb) }

// readReply reads one complete RESP2 reply.
func readReply(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasSuffix(line, "\r\n") || len(line) < 3 {
		return fmt.Errorf("bad line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-':
		if strings.ContainsAny(body, "\r\n") {
			return fmt.Errorf("simple string with CR/LF: %q", body)
		}
		return nil
	case ':':
		_, err := strconv.ParseInt(body, 10, 64)
		return err
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return fmt.Errorf("bad bulk length %q", body)
		}
		if n == -1 {
			return nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		if string(b[n:]) != "\r\n" {
			return errors.New("bulk not followed by CRLF")
		}
		return nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return fmt.Errorf("bad array length %q", body)
		}
		for range max(n, 0) {
			if err := readReply(r); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown reply type %q", line[0])
}

var fuzzCommands = []string{"ping", "echo", "get", "mget", "exists", "ttl", "set", "del", "dbsize", "info",
	"role", "wait", "waitaof", "hello", "client", "command", "config", "select", "readonly", "readwrite",
	"trireme.ack", "trireme.consistency", "quit", "nosuch"}

// FuzzCommands runs arbitrary arguments through every command handler and
// checks that each command gets exactly one well-formed reply and nothing
// panics. WAIT and WAITAOF timeouts are bounded by the input's arguments, so
// a zero timeout (block) is replaced to keep runs short.
func FuzzCommands(f *testing.F) {
	f.Add(byte(6), []byte("k\nv\nEX\n10"))
	f.Add(byte(14), []byte("setinfo\nlib-name\nx"))
	f.Add(byte(13), []byte("3\nAUTH\nu"))
	f.Add(byte(11), []byte("1\n5"))
	f.Add(byte(20), []byte("semi-sync\n0"))
	f.Add(byte(16), []byte("get\n*"))
	f.Add(byte(9), []byte("replication\nall"))
	f.Fuzz(func(t *testing.T, which byte, rest []byte) {
		fake := apitest.NewFake("n2", "n3")
		fake.SetMaxValueBytes(64)
		s := New(fake, DefaultConfig())
		defer s.Close()
		args := [][]byte{[]byte(fuzzCommands[int(which)%len(fuzzCommands)])}
		if len(rest) > 0 {
			args = append(args, bytes.Split(rest, []byte("\n"))...)
		}
		name := string(args[0])
		if (name == "wait" || name == "waitaof") && len(args) > 1 {
			args[len(args)-1] = []byte("1") // 1ms: never block
		}
		c := newRecConn()
		s.handle(c, redcon.Command{Args: args})
		s.handle(c, redcon.Command{Args: [][]byte{[]byte("ping")}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		out := c.buf.Bytes()
		r := bufio.NewReader(bytes.NewReader(out))
		// One reply for the command, one for the PING (the handler answers
		// it even after QUIT; redcon would have closed the connection), and
		// nothing more.
		for i := range 2 {
			if err := readReply(r); err != nil {
				t.Fatalf("reply %d to %q is malformed: %v\n%q", i, args, err, out)
			}
		}
		if extra, _ := io.ReadAll(r); len(extra) > 0 {
			t.Fatalf("%q got more than one reply: %q", args, out)
		}
	})
}
