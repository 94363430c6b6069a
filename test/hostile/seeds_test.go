package hostile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// respReaderSeeds are the seeds of internal/api/resp's FuzzReader
// (readerSeeds in its fuzz_test.go, which a test of another package cannot
// import): issue 15's frames, shortened, and their relatives. Keep the two
// lists the same; a seed added there belongs here.
var respReaderSeeds = []string{
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

// respCommandNames and respCommandSeeds are FuzzCommands's command table
// and seeds (fuzzCommands and its f.Add calls): a seed (which, rest) is the
// command respCommandNames[which % len] with the lines of rest as arguments.
var respCommandNames = []string{"ping", "echo", "get", "mget", "exists", "ttl", "set", "del", "dbsize", "info",
	"role", "wait", "waitaof", "hello", "client", "command", "config", "select", "readonly", "readwrite",
	"trireme.ack", "trireme.consistency", "quit", "nosuch", "auth", "trireme.transfer",
	"incr", "incrby", "decr", "decrby", "append", "strlen", "setnx", "getset", "getdel", "mset", "trireme.session"}

var respCommandSeeds = []struct {
	which byte
	rest  string
}{
	{6, "k\nv\nEX\n10"}, {14, "setinfo\nlib-name\nx"}, {13, "3\nAUTH\nu"}, {11, "1\n5"},
	{20, "semi-sync\n0"}, {16, "get\n*"}, {9, "replication\nall"},
	{6, "k\nv\nNX\nGET"}, {6, "k\nv\nXX\nKEEPTTL\nNX"}, {21, "bounded\n0\n5"}, {26, ""},
	{27, "k\n-9223372036854775808"}, {29, "k\n-9223372036854775808"}, {30, "k\nxxxxxxxx"},
	{35, "a\n1\nb"}, {35, "a\n1\n\n2"}, {36, "1.1.5"}, {36, "1.0.5"},
}

// commandFrame is the multibulk frame FuzzCommands's input stands for.
// As there, a WAIT or WAITAOF timeout becomes 1 ms.
func commandFrame(which byte, rest []byte) []byte {
	args := [][]byte{[]byte(respCommandNames[int(which)%len(respCommandNames)])}
	if len(rest) > 0 {
		args = append(args, bytes.Split(rest, []byte("\n"))...)
	}
	if name := string(args[0]); (name == "wait" || name == "waitaof") && len(args) > 1 {
		args[len(args)-1] = []byte("1")
	}
	out := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		out = fmt.Appendf(out, "$%d\r\n%s\r\n", len(a), a)
	}
	return out
}

// parseCorpus parses a Go fuzzing corpus file: "go test fuzz v1", then one
// value a line: []byte("..."), string("..."), byte('x'), or an integer type
// with a number. Byte strings and strings give []byte, the others int64.
func parseCorpus(b []byte) ([]any, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a fuzz corpus file")
	}
	var vals []any
	for _, l := range lines[1:] {
		typ, lit, ok := strings.Cut(strings.TrimSpace(l), "(")
		if !ok || !strings.HasSuffix(lit, ")") {
			return nil, fmt.Errorf("corpus line %q", l)
		}
		lit = strings.TrimSuffix(lit, ")")
		switch typ {
		case "[]byte", "string":
			s, err := strconv.Unquote(lit)
			if err != nil {
				return nil, fmt.Errorf("corpus line %q: %w", l, err)
			}
			vals = append(vals, []byte(s))
		case "byte", "rune", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "uint", "int":
			if strings.HasPrefix(lit, "'") {
				r, _, _, err := strconv.UnquoteChar(strings.Trim(lit, "'"), '\'')
				if err != nil {
					return nil, fmt.Errorf("corpus line %q: %w", l, err)
				}
				vals = append(vals, int64(r))
				continue
			}
			n, err := strconv.ParseInt(lit, 0, 64)
			if err != nil {
				return nil, fmt.Errorf("corpus line %q: %w", l, err)
			}
			vals = append(vals, n)
		default:
			return nil, fmt.Errorf("corpus line %q: type %s not handled", l, typ)
		}
	}
	return vals, nil
}

func TestParseCorpus(t *testing.T) {
	vals, err := parseCorpus([]byte("go test fuzz v1\n[]byte(\"*1\\r\\n$\\xff\")\nbyte('\\x06')\nuint8(7)\n"))
	if err != nil || len(vals) != 3 || string(vals[0].([]byte)) != "*1\r\n$\xff" || vals[1].(int64) != 6 || vals[2].(int64) != 7 {
		t.Fatalf("%q %v", vals, err)
	}
	if _, err := parseCorpus([]byte("[]byte(\"x\")")); err == nil {
		t.Fatal("a file without the header parsed")
	}
}

// seed is one input to replay over RESP.
type seed struct {
	name  string
	frame []byte
}

// respSeeds returns the fuzz seeds of internal/api/resp, and its corpus
// files under testdata/fuzz if there are any.
func respSeeds(t *testing.T) []seed {
	var out []seed
	for i, s := range respReaderSeeds {
		out = append(out, seed{fmt.Sprintf("FuzzReader seed %d", i), []byte(s)})
	}
	for i, s := range respCommandSeeds {
		out = append(out, seed{fmt.Sprintf("FuzzCommands seed %d", i), commandFrame(s.which, []byte(s.rest))})
	}
	for _, fuzz := range []string{"FuzzReader", "FuzzCommands"} {
		dir := filepath.Join("..", "..", "internal", "api", "resp", "testdata", "fuzz", fuzz)
		files, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		for _, fe := range files {
			b, err := os.ReadFile(filepath.Join(dir, fe.Name()))
			if err != nil {
				t.Fatal(err)
			}
			vals, err := parseCorpus(b)
			if err != nil || len(vals) != 2 {
				t.Fatalf("%s/%s: %v (%d values, want 2)", dir, fe.Name(), err, len(vals))
			}
			name := fuzz + " corpus " + fe.Name()
			switch fuzz {
			case "FuzzReader": // (data []byte, chunk uint8)
				out = append(out, seed{name, vals[0].([]byte)})
			case "FuzzCommands": // (which byte, rest []byte)
				out = append(out, seed{name, commandFrame(byte(vals[0].(int64)), vals[1].([]byte))})
			}
		}
	}
	return out
}

// readReply reads one RESP2 reply and returns its first line.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(line, "\r\n") || len(line) < 3 {
		return "", fmt.Errorf("malformed reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-':
	case ':':
		if _, err := strconv.ParseInt(body, 10, 64); err != nil {
			return "", fmt.Errorf("malformed integer reply %q", line)
		}
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return "", fmt.Errorf("malformed bulk reply %q", line)
		}
		if n >= 0 {
			b := make([]byte, n+2)
			if _, err := io.ReadFull(r, b); err != nil || string(b[n:]) != "\r\n" {
				return "", fmt.Errorf("bulk reply of %d bytes cut short or not ended by CRLF: %v", n, err)
			}
		}
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return "", fmt.Errorf("malformed array reply %q", line)
		}
		for range max(n, 0) {
			if _, err := readReply(r); err != nil {
				return "", err
			}
		}
	default:
		return "", fmt.Errorf("unknown reply type in %q", line)
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// seedsGroup replays every RESP fuzz seed on its own connection, ending
// its side after the seed: the node must answer with well-formed replies
// (never "internal error", the sign of a recovered panic) and close.
func seedsGroup(t *testing.T, x *env) {
	seeds := respSeeds(t)
	g := x.beginGroup("seeds", 1, respConnBytes)
	ids := x.ids()
	for i, s := range seeds {
		id := ids[i%len(ids)]
		start := time.Now()
		c, err := net.Dial("tcp", x.node(id).RESP)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(start.Add(5 * time.Second))
		if _, err := c.Write(s.frame); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
		c.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(c)
		var replies []string
		for {
			line, err := readReply(br)
			if err != nil {
				if !isClosed(err) {
					t.Errorf("%s on %s: after replies %q: %v", s.name, id, replies, err)
				}
				break
			}
			replies = append(replies, line)
		}
		c.Close()
		t.Logf("%s (%q) on %s: replies %q; closed after %v", s.name, short(s.frame), id, replies, time.Since(start).Round(time.Millisecond))
		for _, r := range replies {
			if strings.Contains(r, "internal error") {
				t.Errorf("%s on %s: %q (a handler panicked)", s.name, id, r)
			}
		}
	}
	g.end()
}

func short(b []byte) string {
	if len(b) > 48 {
		return string(b[:48]) + "..."
	}
	return string(b)
}
