package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"weak"
)

// testLimits are the server's defaults for a node with a 1 MiB value limit
// (without the server-wide budget).
func testLimits() limits {
	bulk := 1<<20 + DefaultBulkSlackBytes
	return limits{maxArgs: DefaultMaxArgs, maxBulk: bulk,
		maxInline: DefaultMaxInlineBytes, maxCommand: commandBytesFor(bulk)}
}

// fillReader yields n copies of one byte without holding them.
type fillReader struct {
	b byte
	n int64
}

func (f *fillReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), f.n)]
	for i := range p {
		p[i] = f.b
	}
	f.n -= int64(len(p))
	return len(p), nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// chunkReader returns at most size bytes per Read.
type chunkReader struct {
	data []byte
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// bytesAllocated returns how many bytes of heap f allocates.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// readAll parses every command of r and returns them, and the error that
// ended the stream.
func readAll(r *reader) ([][]string, error) {
	var out [][]string
	for {
		cmds, err := r.readBatch()
		if err != nil {
			return out, err
		}
		for _, args := range cmds {
			cmd := make([]string, len(args))
			for i, a := range args {
				cmd[i] = string(a)
			}
			out = append(out, cmd)
		}
	}
}

// TestReaderHostileFrames runs each frame of issue 15 (and its relatives)
// through the reader: each must end in the protocol error Redis would send,
// after reading little of the input and allocating little, whatever length
// the frame declares. The inputs are large but generated as they are read.
func TestReaderHostileFrames(t *testing.T) {
	const (
		maxRead  = 128 << 10 // the inline limit and two read buffers
		maxAlloc = 1 << 20
	)
	tests := []struct {
		name    string
		prefix  string
		fill    int64 // bytes of 'x' after the prefix
		wantErr string
	}{
		{"panic frame (issue 15)", "*1\r\n$9223372036854775807\r\n", 0, "invalid bulk length"},
		{"huge count (issue 15)", "*9223372036854775807\r\n", 1 << 30, "invalid multibulk length"},
		{"huge bulk (issue 15)", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n", 600000002, "invalid bulk length"},
		{"long inline line without newline (issue 15)", "SET k ", 200 << 20, "too big inline request"},
		{"count over the limit", "*1048577\r\n", 1 << 30, "invalid multibulk length"},
		{"bulk one byte over the limit", fmt.Sprintf("*1\r\n$%d\r\n", testLimits().maxBulk+1), 1 << 30, "invalid bulk length"},
		{"count that overflows int64", "*18446744073709551617\r\n", 0, "invalid multibulk length"},
		{"length that overflows int64", "*1\r\n$99999999999999999999999\r\n", 0, "invalid bulk length"},
		{"endless count line", "*1", 1 << 30, "too big mbulk count string"},
		{"endless length line", "*1\r\n$1", 1 << 30, "too big bulk count string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &countReader{r: io.MultiReader(strings.NewReader(tc.prefix), &fillReader{b: 'x', n: tc.fill})}
			var err error
			alloc := bytesAllocated(func() { _, err = newReader(src, testLimits()).readBatch() })
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "Protocol error: "+tc.wantErr) {
				t.Fatalf("error %v, want a protocol error %q", err, tc.wantErr)
			}
			if src.n > maxRead {
				t.Errorf("read %d bytes of the input before refusing it, want at most %d", src.n, maxRead)
			}
			if alloc > maxAlloc {
				t.Errorf("allocated %d bytes, want at most %d", alloc, maxAlloc)
			}
		})
	}
}

// TestReaderProtocolErrors checks malformed frames: each is an ErrProtocol
// with Redis's message.
func TestReaderProtocolErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"*-2\r\n", "invalid multibulk length"},
		{"*-9223372036854775808\r\n", "invalid multibulk length"},
		{"*1\r\n$-1\r\n", "invalid bulk length"}, // a null bulk is no argument
		{"*1\r\n$-5\r\n", "invalid bulk length"},
		{"*x\r\n", "invalid multibulk length"},
		{"*\r\n", "invalid multibulk length"},
		{"*+1\r\n$4\r\nPING\r\n", "invalid multibulk length"},
		{"*1 \r\n$4\r\nPING\r\n", "invalid multibulk length"},
		{"*1\r\n$abc\r\n", "invalid bulk length"},
		{"*1\r\n$\r\n", "invalid bulk length"},
		{"*1\r\n$-\r\n", "invalid bulk length"},
		{"*1\r\n$ 4\r\nPING\r\n", "invalid bulk length"},
		{"*1\r\n:5\r\n", "expected '$', got ':'"},
		{"*2\r\n$4\r\nECHO\r\n\r\n", "expected '$', got '\r'"},
		// CRLF violations.
		{"*1\n$4\r\nPING\r\n", "invalid multibulk length"},
		{"*1\r\n$4\nPING\r\n", "invalid bulk length"},
		{"*1\r\n$4\r\nPINGX\r\n", "invalid bulk length"},
		{"*1\r\n$4\r\nPING\n\n", "invalid bulk length"},
		{"*1\r\n$4\r\nPING\r\r", "invalid bulk length"},
		{"*2\r\n$3\r\nGET\n$1\r\nk\r\n", "invalid bulk length"},
		// Inline quoting.
		{"SET \"unbalanced v\r\n", "unbalanced quotes in request"},
		{"SET k \"v\"x\r\n", "unbalanced quotes in request"},
		{"SET k 'v\r\n", "unbalanced quotes in request"},
		{"SET k \"v\\\"\r\n", "unbalanced quotes in request"},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.in, "\r\n", "|"), func(t *testing.T) {
			// A good command first: it is answered, the bad one ends the stream.
			cmds, err := readAll(newReader(strings.NewReader("PING\r\n"+tc.in), testLimits()))
			if !errors.Is(err, ErrProtocol) || err.Error() != "Protocol error: "+tc.wantErr {
				t.Fatalf("error %q, want %q", err, "Protocol error: "+tc.wantErr)
			}
			if len(cmds) != 1 || cmds[0][0] != "PING" {
				t.Fatalf("commands before the error: %q, want [[PING]]", cmds)
			}
		})
	}
}

func TestReaderCommands(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
	}{
		{"multibulk", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", [][]string{{"GET", "k"}}},
		{"empty bulk $0", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [][]string{{"ECHO", ""}}},
		{"binary bulk", "*2\r\n$4\r\nECHO\r\n$6\r\na\r\n\x00\xffb\r\n", [][]string{{"ECHO", "a\r\n\x00\xffb"}}},
		{"*0 and *-1 are skipped", "*0\r\n*-1\r\nPING\r\n*0\r\n", [][]string{{"PING"}}},
		{"inline", "PING\r\nGET k\n", [][]string{{"PING"}, {"GET", "k"}}},
		{"inline spaces and tabs", "  SET\tk   v \r\n", [][]string{{"SET", "k", "v"}}},
		{"blank lines are skipped", "\r\n\n  \r\nPING\r\n", [][]string{{"PING"}}},
		{"double quotes", "SET k \"a b\"\r\n", [][]string{{"SET", "k", "a b"}}},
		{"empty quotes", "SET k \"\" ''\r\n", [][]string{{"SET", "k", "", ""}}},
		{"escapes", `ECHO "\n\r\t\b\a\\\"\q"` + "\r\n", [][]string{{"ECHO", "\n\r\t\b\a\\\"q"}}},
		{"hex escapes", `ECHO "\x41\x4a\x00" "\xZZ" "\x4"` + "\r\n", [][]string{{"ECHO", "AJ\x00", "xZZ", "x4"}}},
		{"single quotes", `ECHO 'it\'s' 'a\nb' 'a"b'` + "\r\n", [][]string{{"ECHO", "it's", `a\nb`, `a"b`}}},
		{"quote inside a word", `ECHO a"b c"` + "\r\n", [][]string{{"ECHO", "ab c"}}},
		{"mixed pipeline", "*1\r\n$4\r\nPING\r\nPING x\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
			[][]string{{"PING"}, {"PING", "x"}, {"ECHO", "hi"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 3, 1 << 20} {
				got, err := readAll(newReader(&chunkReader{data: []byte(tc.in), size: size}, testLimits()))
				if !errors.Is(err, io.EOF) {
					t.Fatalf("chunks of %d: error %v, want EOF", size, err)
				}
				if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
					t.Fatalf("chunks of %d: got %q, want %q", size, got, tc.want)
				}
			}
		})
	}
}

// TestReaderLimits checks each limit at its edge with small limits.
func TestReaderLimits(t *testing.T) {
	lim := limits{maxArgs: 3, maxBulk: 8, maxInline: 16, maxCommand: 3*argOverhead + 12}
	tests := []struct {
		name, in, wantErr string
	}{
		{"args at the limit", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", ""},
		{"args over the limit", "*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n", "invalid multibulk length"},
		{"bulk at the limit", "*1\r\n$8\r\n12345678\r\n", ""},
		{"bulk over the limit", "*1\r\n$9\r\n123456789\r\n", "invalid bulk length"},
		{"command at the limit", "*3\r\n$4\r\nabcd\r\n$4\r\nefgh\r\n$4\r\nijkl\r\n", ""},
		{"command over the limit", "*3\r\n$4\r\nabcd\r\n$4\r\nefgh\r\n$5\r\nijklm\r\n", "too big command"},
		{"inline at the limit", "1234567890 2345\r\n", ""}, // the limit counts the CR
		{"inline over the limit", "1234567890 23456\r\n", "too big inline request"},
		{"inline args over the limit", "a b c d\r\n", "too many arguments in inline request"},
		{"inline command over the limit", "abcdef ghijkl m\r\n", "too big command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(newReader(strings.NewReader(tc.in), lim))
			if tc.wantErr == "" {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestReaderAllocatesAsBytesArrive: a declared count or length that the
// client never sends costs no memory in proportion to it.
func TestReaderAllocatesAsBytesArrive(t *testing.T) {
	const maxAlloc = 256 << 10
	for _, in := range []string{
		"*2\r\n$3\r\nSET\r\n$1000000\r\n0123456789",        // 1 MB declared, 10 bytes sent
		"*1048576\r\n$1\r\na\r\n$1\r\nb\r\n",               // a million arguments declared, two sent
		fmt.Sprintf("*1\r\n$%d\r\n", testLimits().maxBulk), // the largest bulk allowed, nothing sent
	} {
		var err error
		alloc := bytesAllocated(func() { _, err = newReader(strings.NewReader(in), testLimits()).readBatch() })
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%q: error %v, want unexpected EOF", in, err)
		}
		if alloc > maxAlloc {
			t.Fatalf("%q: allocated %d bytes, want at most %d", in, alloc, maxAlloc)
		}
	}
}

// scriptReader returns its chunks one Read at a time, then fails: a reader
// that reads beyond what the test has sent fails the test.
type scriptReader struct{ chunks []string }

var errReadTooFar = errors.New("read past the bytes sent so far")

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, errReadTooFar
	}
	n := copy(p, s.chunks[0])
	if s.chunks[0] = s.chunks[0][n:]; s.chunks[0] == "" {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

// TestReaderBatch checks pipelining: a batch holds every complete command
// already received and never waits for the rest of a partial one.
func TestReaderBatch(t *testing.T) {
	src := &scriptReader{chunks: []string{
		"PING\r\n*2\r\n$4\r\nECHO\r\n$1\r\na\r\n*1\r\n$4\r\nPI",
		"NG\r\nGET a\r\nGET b\r\nGET c\r\n",
		"*1\r\n$4\r\nPING\r\n",
	}}
	r := newReader(src, testLimits())
	want := [][][]string{{{"PING"}, {"ECHO", "a"}}, {{"PING"}, {"GET", "a"}, {"GET", "b"}, {"GET", "c"}}, {{"PING"}}}
	for i, w := range want {
		cmds, err := r.readBatch()
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		var got [][]string
		for _, args := range cmds {
			var cmd []string
			for _, a := range args {
				cmd = append(cmd, string(a))
			}
			got = append(got, cmd)
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", w) {
			t.Fatalf("batch %d = %q, want %q", i, got, w)
		}
	}
	if _, err := r.readBatch(); !errors.Is(err, errReadTooFar) {
		t.Fatalf("after the last batch: %v", err)
	}
}

// TestReaderReleasesLargeBuffers: a large command is streamed in (right
// bytes, its value in a buffer of exactly its length), and nothing of it is
// kept once the next batch is read: no buffer of the reader still refers to
// it (the garbage collector frees it) and what the reader keeps is small.
func TestReaderReleasesLargeBuffers(t *testing.T) {
	value := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	set := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n", len(value), value)
	src := &scriptReader{}
	for len(set) > 0 {
		n := min(len(set), 1000)
		src.chunks, set = append(src.chunks, set[:n]), set[n:]
	}
	src.chunks = append(src.chunks, "PING\r\n")
	r := newReader(src, testLimits())
	cmds, err := r.readBatch()
	if err != nil || len(cmds) == 0 || len(cmds[0]) != 3 || !bytes.Equal(cmds[0][2], value) {
		t.Fatalf("large SET not read back: %v", err)
	}
	if c := cap(cmds[0][2]); c != len(value) {
		t.Fatalf("value of %d bytes in a buffer of %d", len(value), c)
	}
	if string(cmds[0][0]) != "SET" || string(cmds[0][1]) != "k" {
		t.Fatalf("SET's first arguments: %q", cmds[0][:2])
	}
	held := weak.Make(&cmds[0][2][0])
	cmds = nil
	if cmds, err = r.readBatch(); err != nil || len(cmds) != 1 || string(cmds[0][0]) != "PING" {
		t.Fatalf("PING after the large SET: %q %v", cmds, err)
	}
	runtime.GC()
	if held.Value() != nil {
		t.Fatal("the large value is still referenced after the next batch")
	}
	kept := 0
	for _, b := range r.blocks {
		kept += cap(b)
	}
	if kept > keepBytes || len(r.stage) != 0 || cap(r.argv) > keepArgs {
		t.Fatalf("kept %d bytes of blocks, %d stage chunks and %d argument slots after a small command", kept, len(r.stage), cap(r.argv))
	}
}

// multibulk encodes one command.
func multibulk(args ...[]byte) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n", len(a))
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// repeatArgs returns name followed by n arguments of size bytes each (a
// different byte for each).
func repeatArgs(name string, n, size int) [][]byte {
	args := [][]byte{[]byte(name)}
	for i := range n {
		args = append(args, bytes.Repeat([]byte{byte('a' + i%26)}, size))
	}
	return args
}

// TestReaderAllocatesItsSize: reading a large command allocates about its
// size, whatever the shape of its arguments: nothing is copied to grow
// (the finding of the hostile suite: a 60 MiB command in one growing
// buffer allocated several hundred MB). Each command arrives in reads of
// 1400 bytes (a TCP segment) and must be read back unchanged.
func TestReaderAllocatesItsSize(t *testing.T) {
	mixed := repeatArgs("MSET", 0, 0)
	for i := range 200 { // 44 MiB
		size := []int{10, 1000, 5000, 100 << 10, 1 << 20}[i%5]
		mixed = append(mixed, bytes.Repeat([]byte{byte('a' + i%26)}, size))
	}
	tests := []struct {
		name     string
		args     [][]byte
		maxRatio float64 // bytes allocated / bytes of the command
	}{
		// The probe of test/hostile: arguments at its bulk limit (128 KiB).
		{"480 arguments of 128 KiB (60 MiB)", repeatArgs("MSET", 480, 128<<10), 1.5},
		{"30 arguments of 128 KiB (the most of a 4 MiB command)", repeatArgs("MSET", 30, 128<<10), 1.5},
		{"20 arguments of 1 MiB", repeatArgs("MSET", 20, 1<<20), 1.5},
		{"3000 arguments of 1 KiB", repeatArgs("MSET", 3000, 1<<10), 1.5},
		{"1000 arguments of 3 KiB (small: in blocks)", repeatArgs("MSET", 1000, 3<<10), 1.5},
		{"1000 arguments of 5 KiB (each its own buffer)", repeatArgs("MSET", 1000, 5<<10), 1.5},
		{"200 arguments of 10 bytes to 1 MiB", mixed, 1.5},
		// One large argument: its first half arrives in stage chunks, then
		// it gets its own buffer: 1.5 times its size.
		{"one value of 1 MiB", repeatArgs("SET", 1, 1<<20), 1.6},
		{"one value of 8 MiB", repeatArgs("SET", 1, 8<<20), 1.6},
	}
	lim := testLimits()
	lim.maxBulk, lim.maxCommand = 8<<20, 64<<20
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := multibulk(tc.args...)
			r := newReader(&chunkReader{data: in, size: 1400}, lim)
			var cmds [][][]byte
			var err error
			alloc := bytesAllocated(func() { cmds, err = r.readBatch() })
			if err != nil || len(cmds) != 1 || len(cmds[0]) != len(tc.args) {
				t.Fatalf("read %d commands, %v", len(cmds), err)
			}
			for i, a := range cmds[0] {
				if !bytes.Equal(a, tc.args[i]) || cap(a) != len(a) {
					t.Fatalf("argument %d: %d bytes (capacity %d), want %d bytes read back unchanged", i, len(a), cap(a), len(tc.args[i]))
				}
			}
			ratio := float64(alloc) / float64(len(in))
			t.Logf("%s: %d bytes allocated for a command of %d bytes (%.3fx); %d bytes held", tc.name, alloc, len(in), ratio, r.held)
			if ratio > tc.maxRatio {
				t.Errorf("allocated %d bytes (%.2fx) to read a command of %d bytes, want at most %.2fx", alloc, ratio, len(in), tc.maxRatio)
			}
		})
	}
}

// TestReaderManyEmptyArguments: for a command of many tiny arguments the
// reader's bookkeeping (argv, which grows by doubling up to the declared
// count) dominates; it stays within the 40 bytes per argument that
// maxCommand counts, and 1.5 times what the command is counted for.
func TestReaderManyEmptyArguments(t *testing.T) {
	args := repeatArgs("DEL", 100_000, 1)
	in := multibulk(args...)
	r := newReader(bytes.NewReader(in), testLimits())
	var err error
	alloc := bytesAllocated(func() { _, err = r.readBatch() })
	if err != nil {
		t.Fatal(err)
	}
	counted := 0
	for _, a := range args {
		counted += len(a) + argOverhead
	}
	t.Logf("%d arguments of 1 byte: %d bytes allocated, %d counted against maxCommand", len(args), alloc, counted)
	if float64(alloc) > 1.5*float64(counted) {
		t.Fatalf("allocated %d bytes for %d arguments (%d counted), want at most 1.5x", alloc, len(args), counted)
	}
}

// TestReaderBudget: readers take from the shared budget what their batch
// holds beyond freeBytes, a command that would go over it fails with
// errPendingFull (as soon as the allocation would, not at the end), and
// every byte taken is given back when the batch is done or fails.
func TestReaderBudget(t *testing.T) {
	b := newBudget(2 << 20)
	lim := testLimits()
	lim.pending = b
	big := multibulk(repeatArgs("MSET", 10, 128<<10)...) // 1.25 MiB
	// A holds one big command (its batch is not done until its next readBatch).
	a := newReader(io.MultiReader(bytes.NewReader(big), strings.NewReader("PING\r\n")), lim)
	if _, err := a.readBatch(); err != nil {
		t.Fatal(err)
	}
	held := b.inUse()
	if held < 10*128<<10 || held > 10*128<<10+2*stageChunk+budgetStep {
		t.Fatalf("budget in use %d while a holds a command of %d bytes", held, len(big))
	}
	// B cannot: the budget has room for 0.75 MiB more.
	src := &countReader{r: bytes.NewReader(big)}
	bb := newReader(src, lim)
	if _, err := bb.readBatch(); !errors.Is(err, errPendingFull) {
		t.Fatalf("second big command: %v, want %v", err, errPendingFull)
	}
	if src.n > 1<<20 {
		t.Fatalf("read %d bytes of the command refused for lack of budget", src.n)
	}
	if got := b.inUse(); got != held {
		t.Fatalf("budget in use %d after the refused command, want %d (a's)", got, held)
	}
	// Small commands (within freeBytes) do not need the budget.
	small := newReader(strings.NewReader("SET k v\r\n*2\r\n$4\r\nECHO\r\n$5000\r\n"+strings.Repeat("e", 5000)+"\r\n"), lim)
	if cmds, err := small.readBatch(); err != nil || len(cmds) != 2 {
		t.Fatalf("small commands with the budget nearly full: %d, %v", len(cmds), err)
	}
	if got := b.inUse(); got != held {
		t.Fatalf("budget in use %d after small commands, want %d", got, held)
	}
	// A's batch is done: everything given back; B's command now fits.
	if cmds, err := a.readBatch(); err != nil || len(cmds) != 1 {
		t.Fatalf("PING: %v", err)
	}
	if got := b.inUse(); got != 0 {
		t.Fatalf("budget in use %d once a's big command is done, want 0", got)
	}
	bb = newReader(bytes.NewReader(big), lim)
	if cmds, err := bb.readBatch(); err != nil || len(cmds) != 1 || len(cmds[0]) != 11 {
		t.Fatalf("big command once the budget is free: %v", err)
	}
	// A command cut short (the client leaves) gives its part back.
	if _, err := bb.readBatch(); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	cut := newReader(bytes.NewReader(big[:len(big)/2]), lim)
	if _, err := cut.readBatch(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("half a command: %v", err)
	}
	if got := b.inUse(); got != 0 {
		t.Fatalf("budget in use %d after every reader is done, want 0", got)
	}
}

// cycleReader repeats data for ever.
type cycleReader struct {
	data []byte
	off  int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// TestReaderZeroAlloc: in steady state, reading a pipeline of SETs
// allocates nothing (buffers are reused from batch to batch).
func TestReaderZeroAlloc(t *testing.T) {
	var pipe bytes.Buffer
	for i := range 64 {
		fmt.Fprintf(&pipe, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$5\r\nvalue\r\n", len(fmt.Sprint(i))+1, i)
	}
	r := newReader(&cycleReader{data: pipe.Bytes()}, testLimits())
	for range 100 { // warm up: buffers reach their working size
		if _, err := r.readBatch(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.readBatch(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per batch, want 0", allocs)
	}
}

func BenchmarkReader(b *testing.B) {
	var pipe bytes.Buffer
	for i := range 64 {
		fmt.Fprintf(&pipe, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$5\r\nvalue\r\n", len(fmt.Sprint(i))+1, i)
	}
	r := newReader(&cycleReader{data: pipe.Bytes()}, testLimits())
	b.SetBytes(int64(pipe.Len()))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for n < 64 {
			cmds, err := r.readBatch()
			if err != nil {
				b.Fatal(err)
			}
			n += len(cmds)
		}
		n -= 64
	}
}

// TestReaderLongBatch: a batch of many short commands (beyond what argv
// keeps between batches) costs few allocations: argv grows geometrically.
func TestReaderLongBatch(t *testing.T) {
	var pipe bytes.Buffer
	for range 1000 {
		pipe.WriteString("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") // 2000 arguments in about 23 KiB
	}
	r := newReader(&cycleReader{data: pipe.Bytes()}, testLimits())
	for range 10 {
		if _, err := r.readBatch(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.readBatch(); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.1f allocations per batch", allocs)
	if allocs > 20 {
		t.Fatalf("%.1f allocations per batch of short commands, want at most 20", allocs)
	}
}

// TestReaderRandomSizes: pipelines of commands with arguments of sizes
// around every threshold of the reader's storage (small arguments in
// blocks, buffers of their own, staged large ones), arriving in reads of
// random sizes, are read back unchanged, each argument with its capacity
// cut at its length and still intact at the end of its batch; the budget
// is all given back at the end.
func TestReaderRandomSizes(t *testing.T) {
	sizes := []int{0, 1, 100, smallArg - 1, smallArg, smallArg + 1, firstBlock + 1, blockBytes - 1, blockBytes,
		stageChunk - 1, stageChunk, stageChunk + 1, 2*stageChunk + 1, 300 << 10}
	reads := []int{1, 7, 1400, readBufferBytes, 1 << 20}
	rng := rand.New(rand.NewPCG(15, 2))
	lim := testLimits()
	lim.pending = newBudget(64 << 20)
	for iter := range 300 {
		var in []byte
		var want [][][]byte
		for range 1 + rng.IntN(6) {
			cmd := [][]byte{[]byte("ECHO")}
			for range rng.IntN(5) {
				size := sizes[rng.IntN(len(sizes))]
				if rng.IntN(3) == 0 {
					size = rng.IntN(20000)
				}
				a := make([]byte, size)
				for i := range a {
					a[i] = byte(rng.Uint32())
				}
				cmd = append(cmd, a)
			}
			in = append(in, multibulk(cmd...)...)
			want = append(want, cmd)
		}
		read := reads[rng.IntN(len(reads))]
		if read == 1 && len(in) > 200<<10 {
			read = 1400
		}
		r := newReader(&chunkReader{data: in, size: read}, lim)
		var got [][][]byte
		for {
			cmds, err := r.readBatch()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("iteration %d (reads of %d): %v", iter, read, err)
			}
			got = append(got, cmds...)
			// Check the whole batch at its end: no argument was overwritten
			// by a later one.
			for i, cmd := range cmds {
				w := want[len(got)-len(cmds)+i]
				if len(cmd) != len(w) {
					t.Fatalf("iteration %d: command of %d arguments, want %d", iter, len(cmd), len(w))
				}
				for j, a := range cmd {
					if !bytes.Equal(a, w[j]) || cap(a) != len(a) {
						t.Fatalf("iteration %d (reads of %d): argument %d of %d bytes (capacity %d) differs from the %d sent",
							iter, read, j, len(a), cap(a), len(w[j]))
					}
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("iteration %d: %d commands, want %d", iter, len(got), len(want))
		}
		if n := lim.pending.inUse(); n != 0 {
			t.Fatalf("iteration %d: budget in use %d at the end of the stream", iter, n)
		}
	}
}
