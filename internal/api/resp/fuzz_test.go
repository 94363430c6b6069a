package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api/apitest"
)

// recConn is a conn that records replies in buf.
type recConn struct {
	*conn
	buf *bytes.Buffer
}

func newRecConn() *recConn {
	b := &bytes.Buffer{}
	return &recConn{conn: &conn{writer: writer{w: b}, addr: "127.0.0.1:1"}, buf: b}
}

func (c *recConn) Flush() error { return c.flush() }

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
	"trireme.ack", "trireme.consistency", "quit", "nosuch", "auth", "trireme.transfer",
	"incr", "incrby", "decr", "decrby", "append", "strlen", "setnx", "getset", "getdel", "mset", "trireme.session",
	"trireme.getctx", "trireme.setctx", "trireme.w", "trireme.r"}

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
	f.Add(byte(6), []byte("k\nv\nNX\nGET"))
	f.Add(byte(6), []byte("k\nv\nXX\nKEEPTTL\nNX"))
	f.Add(byte(21), []byte("bounded\n0\n5"))
	f.Add(byte(26), []byte(""))
	f.Add(byte(27), []byte("k\n-9223372036854775808"))
	f.Add(byte(29), []byte("k\n-9223372036854775808"))
	f.Add(byte(30), []byte("k\n"+strings.Repeat("x", 100)))
	f.Add(byte(35), []byte("a\n1\nb"))
	f.Add(byte(35), []byte("a\n1\n\n2"))
	f.Add(byte(36), []byte("1.1.5"))
	f.Add(byte(36), []byte("1.0.5"))
	f.Add(byte(20), []byte("local"))
	f.Add(byte(20), []byte("ALL"))
	f.Add(byte(20), []byte("3"))
	f.Add(byte(20), []byte("3\n2"))
	f.Add(byte(20), []byte("1001"))
	f.Add(byte(14), []byte("ack\n0"))
	f.Add(byte(37), []byte("k"))
	f.Add(byte(37), []byte("k\nextra"))
	f.Add(byte(38), []byte("k\nctx\nv"))
	f.Add(byte(38), []byte("\n\nv"))
	f.Add(byte(38), []byte("k\nctx"))
	f.Add(byte(39), []byte("quorum"))
	f.Add(byte(39), []byte("0"))
	f.Add(byte(40), []byte("2\nblocking"))
	f.Add(byte(40), []byte("one\nsoon\nx"))
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
		s.handle(c.conn, args)
		s.handle(c.conn, [][]byte{[]byte("ping")})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		out := c.buf.Bytes()
		r := bufio.NewReader(bytes.NewReader(out))
		// One reply for the command, one for the PING (the handler answers
		// it even after QUIT; the server would have closed the connection), and
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

// readerSeeds are the frames of issue 15 (shortened where they are long,
// over the fuzz limits below all the same) and their relatives.
var readerSeeds = []string{
	"*1\r\n$9223372036854775807\r\n",
	"*9223372036854775807\r\n",
	"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\nxxxxxxxxxxxxxxxx",
	"SET k " + strings.Repeat("x", 300),
	"*-1\r\n", "*0\r\n", "*-5\r\n", "*1\r\n$-1\r\n", "*1\r\n$-3\r\n",
	"*x\r\n", "*1\r\n$abc\r\n", "*1\r\n$\r\n", "*18446744073709551617\r\n",
	"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
	"*1\n$4\r\nPING\r\n", "*1\r\n$4\nPING\r\n", "*1\r\n$4\r\nPINGX\r\n", "*2\r\n$3\r\nGET\n$1\r\nk\r\n",
	"*2\r\n$3\r\nGET\r\n:5\r\n",
	"PING\r\nGET k\r\nQUIT\r\n",
	"SET \"unbalanced v\r\n",
	`ECHO "a\x41\n" 'it\'s' a"b c"` + "\r\n",
	"*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
}

// parseAll parses everything from src and returns the commands and the
// error that ended the stream.
func parseAll(t *testing.T, src io.Reader, lim limits) ([][]string, error) {
	t.Helper()
	r := newReader(src, lim)
	var out [][]string
	for {
		cmds, err := r.readBatch()
		if err != nil {
			return out, err
		}
		if len(cmds) == 0 {
			t.Fatal("readBatch returned no command and no error")
		}
		for _, args := range cmds {
			if len(args) == 0 || len(args) > lim.maxArgs {
				t.Fatalf("command of %d arguments (limit %d)", len(args), lim.maxArgs)
			}
			charged := 0
			cmd := make([]string, len(args))
			for i, a := range args {
				if len(a) > max(lim.maxBulk, lim.maxInline) {
					t.Fatalf("argument of %d bytes over the limits %+v", len(a), lim)
				}
				charged += len(a) + argOverhead
				cmd[i] = string(a)
			}
			if charged > lim.maxCommand {
				t.Fatalf("command of %d counted bytes (limit %d)", charged, lim.maxCommand)
			}
			out = append(out, cmd)
		}
	}
}

// FuzzReader feeds arbitrary bytes to the command reader, with small limits,
// whole and in small reads. It checks that nothing panics, every command is
// within the limits, the stream ends in EOF, an unexpected EOF or a
// protocol error, that how the bytes arrive changes neither the commands
// nor the error (batches built from the buffer and commands read as they
// arrive agree), and that the commands, written back as multibulk arrays,
// read back unchanged.
func FuzzReader(f *testing.F) {
	for _, s := range readerSeeds {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		lim := limits{maxArgs: 8, maxBulk: 64, maxInline: 128, maxCommand: 8*argOverhead + 200}
		whole, err := parseAll(t, bytes.NewReader(data), lim)
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("stream ended with %v", err)
		}
		size := int(chunk)%7 + 1
		chunked, err2 := parseAll(t, &chunkReader{data: data, size: size}, lim)
		if fmt.Sprintf("%q", chunked) != fmt.Sprintf("%q", whole) || err2.Error() != err.Error() {
			t.Fatalf("reads of %d bytes: %q, %v; whole: %q, %v", size, chunked, err2, whole, err)
		}
		var w writer
		for _, cmd := range whole {
			w.WriteArray(len(cmd))
			for _, a := range cmd {
				w.WriteBulkString(a)
			}
		}
		lim.maxBulk = lim.maxInline // inline arguments may be longer than maxBulk
		again, err := parseAll(t, bytes.NewReader(w.out), lim)
		if !errors.Is(err, io.EOF) || fmt.Sprintf("%q", again) != fmt.Sprintf("%q", whole) {
			t.Fatalf("written back and read again: %q, %v; want %q", again, err, whole)
		}
	})
}
