package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrProtocol is matched (errors.Is) by every error the reader returns for a
// malformed command or one over a limit. The server answers such an error
// with "-ERR <error>" and closes the connection, as Redis does.
var ErrProtocol = errors.New("resp: protocol error")

// protocolError is a protocol violation; its text is Redis's ("Protocol
// error: invalid bulk length") so that clients see what Redis would send.
type protocolError struct{ msg string }

func (e *protocolError) Error() string        { return "Protocol error: " + e.msg }
func (e *protocolError) Is(target error) bool { return target == ErrProtocol }

var (
	errMultibulkLength = &protocolError{"invalid multibulk length"}
	errBulkLength      = &protocolError{"invalid bulk length"}
	errMultibulkLine   = &protocolError{"too big mbulk count string"}
	errBulkLine        = &protocolError{"too big bulk count string"}
	errInlineTooBig    = &protocolError{"too big inline request"}
	errUnbalanced      = &protocolError{"unbalanced quotes in request"}
	errCommandTooBig   = &protocolError{"too big command (more argument bytes than the server accepts in one command)"}
	errTooManyArgs     = &protocolError{"too many arguments in inline request"}

	// errIncomplete: the buffered bytes end inside a command. Only
	// returned while parsing from the buffer (never to the caller).
	errIncomplete = errors.New("resp: command not fully buffered")
	// errLineTooLong: no newline within the line limit.
	errLineTooLong = errors.New("resp: line too long")
)

// limits bound what one command may make the server read and hold. They are
// checked when a header is read, before anything is allocated or looped
// over for it.
type limits struct {
	maxArgs    int // elements in one multibulk array
	maxBulk    int // bytes in one bulk string
	maxInline  int // bytes in one inline command line
	maxCommand int // argument bytes of one command, plus argOverhead per argument
	// pending is the server-wide budget for the memory that commands being
	// received or run hold; nil = no budget (tests of the reader alone).
	pending *budget
}

const (
	// readBufferBytes is the size of a connection's read buffer, Redis's
	// read size. A pipeline batch is at most one command plus what this
	// buffer held, so it also bounds a batch's memory.
	readBufferBytes = 16 << 10
	// maxHeaderLine bounds a "*<count>\r" or "$<length>\r" line: a sign,
	// 19 digits and the prefix and CR fit with room to spare.
	maxHeaderLine = 32
	// argOverhead is what the reader keeps per argument besides its bytes
	// (its slice header in argv, and some slack for the growth of argv); it
	// is counted against maxCommand so that a million empty arguments are
	// not free.
	argOverhead = 40
	// smallArg: arguments up to this long are copied into blocks (below);
	// longer ones get a buffer of their own, of exactly their length.
	smallArg = 4 << 10
	// firstBlock and blockBytes are the capacities of the blocks that hold
	// small arguments: a connection's first block is small (most send only
	// small commands), the next ones blockBytes. A block is never grown, so
	// the arguments already in it never move; at most smallArg bytes of a
	// full block are left unused, a quarter of a block.
	firstBlock = 4 << 10
	blockBytes = 16 << 10
	// stageChunk is the size of the chunks that hold the first half of an
	// argument longer than stageChunk while it arrives (see readLarge), and
	// the most the reader allocates ahead of the bytes received for an
	// argument that gets its own buffer at once.
	stageChunk = 64 << 10
	// keepBytes and keepArgs: buffers grown beyond these for a large
	// command are dropped when the batch is done, so that an idle
	// connection holds only its read buffer and small scratch space.
	keepBytes = 64 << 10
	keepArgs  = 1024
	// freeBytes is how much a batch may hold before it counts against the
	// server-wide budget (limits.pending): small commands never touch the
	// shared counter. The budget is then taken in steps of budgetStep.
	freeBytes  = 16 << 10
	budgetStep = 64 << 10
)

// reader parses RESP2 commands (multibulk arrays of bulk strings, and inline
// lines as typed in telnet) from a stream, one pipeline batch at a time.
// It is not safe for concurrent use.
//
// Argument storage: nothing is ever copied to make room. An argument of at
// most smallArg bytes is copied into the current block, or a new block when
// it does not fit; a longer one gets its own buffer of exactly its length:
// allocated when its header arrives if it is at most stageChunk long,
// otherwise once half of it has arrived (readLarge). So reading a command
// allocates about its size, and memory follows the bytes received.
type reader struct {
	br    *bufio.Reader
	stall *stallReader // nil unless reading a network connection
	lim   limits

	// The batch being read: argument i is argv[i] (its capacity cut at its
	// length), command j is arguments ends[j-1] (or 0) to ends[j].
	argv [][]byte
	ends []int
	// cmds is built by finish from the above, reused from batch to batch.
	cmds [][][]byte

	// blocks hold the batch's small arguments: blocks[:blk] are in use, the
	// last of them up to off; the ones after are spare (kept from earlier
	// batches or from a command that was not complete in the buffer).
	blocks [][]byte
	blk    int
	off    int
	// stage holds the first half of a large argument as it arrives; its
	// chunks are reused by every large argument of the batch.
	stage [][]byte

	// held is what the batch's arguments hold (bytes and argOverhead each,
	// stage chunks); charged is what the reader has taken from lim.pending
	// for it (held beyond freeBytes, in steps of budgetStep). Both go back
	// to zero, and charged to the budget, when the batch is done.
	held    int
	charged int

	line     []byte // a line that arrived in more than one read
	tmp      []byte // an inline argument being unquoted
	cmdBytes int    // bytes counted against maxCommand for the current command

	// While fromBuffer, commands are parsed from peek (the bytes already
	// buffered) without reading; pos is how far parsing got.
	fromBuffer bool
	peek       []byte
	pos        int
}

func newReader(rd io.Reader, lim limits) *reader {
	r := &reader{br: bufio.NewReaderSize(rd, readBufferBytes), lim: lim}
	if s, ok := rd.(*stallReader); ok {
		r.stall = s
	}
	return r
}

// readBatch returns the next batch of commands: it blocks until one command
// is complete, then adds every following command that is already complete
// in the read buffer, without waiting for more. Commands and their arguments
// are valid until the next call. Empty commands (*0, *-1, blank inline lines)
// are skipped. At the end of the stream it returns io.EOF, or
// io.ErrUnexpectedEOF inside a command; a malformed or oversized command
// gives an error matching ErrProtocol; a command that would take the
// server's memory budget for commands beyond its limit gives errPendingFull.
// After an error the reader holds nothing of the budget.
func (r *reader) readBatch() ([][][]byte, error) {
	r.reset()
	for len(r.ends) == 0 {
		if _, err := r.br.Peek(1); err != nil { // idle: no deadline while waiting
			return nil, err
		}
		r.setBusy(true)
		err := r.readCommand()
		r.setBusy(false)
		if err != nil {
			r.reset()
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	for r.br.Buffered() > 0 && r.tryBuffered() {
	}
	return r.finish(), nil
}

// tryBuffered parses one command from the buffered bytes, if they hold all
// of it. Otherwise (incomplete, malformed or over the budget: the next
// blocking read reports it) it leaves the buffer and the batch as they were
// and returns false.
func (r *reader) tryBuffered() bool {
	r.peek, _ = r.br.Peek(r.br.Buffered())
	r.pos, r.fromBuffer = 0, true
	args, ends, blk, off, held := len(r.argv), len(r.ends), r.blk, r.off, r.held
	err := r.readCommand()
	r.fromBuffer = false
	if err != nil {
		clear(r.argv[args:])
		r.argv, r.ends = r.argv[:args], r.ends[:ends]
		r.blk, r.off, r.held = blk, off, held // charged stays: released with the batch
		return false
	}
	r.br.Discard(r.pos)
	return true
}

func (r *reader) setBusy(b bool) {
	if r.stall != nil {
		r.stall.busy = b
	}
}

// reset ends a batch: it gives back the budget the batch took and drops the
// references to its arguments. Buffers grown for a large command are
// dropped rather than kept for the connection's life.
func (r *reader) reset() {
	r.release()
	clear(r.argv) // no stale reference keeps a large argument alive
	clear(r.cmds)
	if cap(r.argv) > keepArgs || cap(r.ends) > keepArgs || cap(r.cmds) > keepArgs {
		r.argv, r.ends, r.cmds = nil, nil, nil
	}
	r.argv, r.ends, r.cmds = r.argv[:0], r.ends[:0], r.cmds[:0]
	kept, n := 0, 0
	for n < len(r.blocks) && kept+cap(r.blocks[n]) <= keepBytes {
		kept += cap(r.blocks[n])
		n++
	}
	clear(r.blocks[n:])
	r.blocks, r.blk, r.off = r.blocks[:n], 0, 0
	clear(r.stage)
	r.stage = r.stage[:0]
	if cap(r.line) > keepBytes {
		r.line = nil
	}
	if cap(r.tmp) > keepBytes {
		r.tmp = nil
	}
}

// release gives back what the reader took from the budget. It is called
// when a batch is done and when the connection ends.
func (r *reader) release() {
	if r.charged > 0 {
		r.lim.pending.release(r.charged)
	}
	r.held, r.charged = 0, 0
}

// use counts n more bytes held by the batch, taking from the server's
// budget what goes beyond freeBytes. It fails, counting nothing, if the
// budget does not have room.
func (r *reader) use(n int) error {
	r.held += n
	over := r.held - freeBytes - r.charged
	if over <= 0 || r.lim.pending == nil {
		return nil
	}
	step := (over + budgetStep - 1) / budgetStep * budgetStep
	if !r.lim.pending.acquire(step) {
		r.held -= n
		return errPendingFull
	}
	r.charged += step
	return nil
}

// slot returns room for a small argument of n bytes (at most smallArg) in
// the current block, or in the next one if it does not fit.
func (r *reader) slot(n int) []byte {
	if r.blk == 0 || r.off+n > len(r.blocks[r.blk-1]) {
		if r.blk == len(r.blocks) {
			size := blockBytes
			if r.blk == 0 {
				size = firstBlock
			}
			r.blocks = append(r.blocks, make([]byte, size))
		}
		r.blk++
		r.off = 0
	}
	b := r.blocks[r.blk-1][r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// alloc returns room for an argument of n bytes whose bytes are at hand or
// about to be read at once (n at most stageChunk outside small arguments),
// counted against the budget.
func (r *reader) alloc(n int) ([]byte, error) {
	// Fast path (small pipelined commands): room in the current block and
	// within what the batch has already taken from the budget.
	if n <= smallArg && r.blk > 0 && r.held+n+argOverhead <= freeBytes+r.charged {
		if blk := r.blocks[r.blk-1]; r.off+n <= len(blk) {
			r.held += n + argOverhead
			b := blk[r.off : r.off+n : r.off+n]
			r.off += n
			return b, nil
		}
	}
	if err := r.use(n + argOverhead); err != nil {
		return nil, err
	}
	if n <= smallArg {
		return r.slot(n), nil
	}
	return make([]byte, n), nil
}

// addArg appends an argument to the batch. argv grows by doubling, but
// not beyond the arguments the command declared (left: how many follow
// this one; -1 if unknown) by more than keepArgs, so that a large
// command's argv ends about its size and the growth copies at most as much
// as it keeps; a batch of many short commands still grows geometrically.
func (r *reader) addArg(a []byte, left int) {
	if len(r.argv) == cap(r.argv) {
		n := max(2*cap(r.argv), 16)
		if left >= 0 {
			n = min(n, max(len(r.argv)+1+left, cap(r.argv)+keepArgs))
		}
		grown := make([][]byte, len(r.argv), n)
		copy(grown, r.argv)
		r.argv = grown
	}
	r.argv = append(r.argv, a)
}

// finish builds the batch's commands.
func (r *reader) finish() [][][]byte {
	start := 0
	for _, end := range r.ends {
		r.cmds = append(r.cmds, r.argv[start:end:end])
		start = end
	}
	return r.cmds
}

func (r *reader) readCommand() error {
	r.cmdBytes = 0
	first, err := r.peekByte()
	if err != nil {
		return err
	}
	if first == '*' {
		return r.readMultibulk()
	}
	return r.readInline()
}

func (r *reader) peekByte() (byte, error) {
	if r.fromBuffer {
		if r.pos >= len(r.peek) {
			return 0, errIncomplete
		}
		return r.peek[r.pos], nil
	}
	b, err := r.br.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// readMultibulk reads "*<n>\r\n" and n bulk strings "$<len>\r\n<bytes>\r\n".
func (r *reader) readMultibulk() error {
	line, err := r.readLine(maxHeaderLine)
	if err != nil {
		return lineError(err, errMultibulkLine)
	}
	n, ok := parseHeader(line)
	if !ok || n < -1 || n > r.lim.maxArgs {
		return errMultibulkLength
	}
	if n <= 0 {
		return nil // an empty or null array is no command, as in Redis
	}
	for i := range n {
		line, err := r.readLine(maxHeaderLine)
		if err != nil {
			return lineError(err, errBulkLine)
		}
		if len(line) == 0 || line[0] != '$' {
			got := byte('\n')
			if len(line) > 0 {
				got = line[0]
			}
			return &protocolError{fmt.Sprintf("expected '$', got '%c'", got)}
		}
		size, ok := parseHeader(line)
		if !ok || size < 0 || size > r.lim.maxBulk {
			return errBulkLength
		}
		if err := r.charge(size); err != nil {
			return err
		}
		arg, err := r.readBulk(size)
		if err != nil {
			return err
		}
		r.addArg(arg, n-1-i)
	}
	r.ends = append(r.ends, len(r.argv))
	return nil
}

// charge counts an argument of size bytes against maxCommand.
func (r *reader) charge(size int) error {
	r.cmdBytes += size + argOverhead
	if r.cmdBytes > r.lim.maxCommand {
		return errCommandTooBig
	}
	return nil
}

// lineError maps a line-reading error: a missing newline is the protocol
// error tooLong; an end of stream is passed on.
func lineError(err, tooLong error) error {
	if errors.Is(err, errLineTooLong) {
		return tooLong
	}
	return err
}

// parseHeader parses the integer of a header line: a type byte, an optional
// minus sign, 1 to 18 digits, then CR (the LF is already stripped). Longer
// numbers do not fit any limit and are refused before they could overflow.
func parseHeader(line []byte) (int, bool) {
	if len(line) < 3 || line[len(line)-1] != '\r' {
		return 0, false
	}
	digits := line[1 : len(line)-1]
	neg := digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// readInline reads a line of space-separated arguments (at most maxInline
// bytes before its LF, CR included), with Redis's quoting: "..." with
// backslash escapes (\n \r \t \b \a \xHH, \<any>), '...' where only \' is
// an escape; a closing quote must be followed by a space or the line's end.
func (r *reader) readInline() error {
	line, err := r.readLine(r.lim.maxInline)
	if err != nil {
		return lineError(err, errInlineTooBig)
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	first := len(r.argv)
	for i := 0; ; {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		if len(r.argv)-first == r.lim.maxArgs {
			return errTooManyArgs
		}
		r.tmp = r.tmp[:0]
		if i, err = r.inlineArg(line, i); err != nil {
			return err
		}
		if err := r.charge(len(r.tmp)); err != nil {
			return err
		}
		arg, err := r.alloc(len(r.tmp))
		if err != nil {
			return err
		}
		copy(arg, r.tmp)
		r.addArg(arg, -1)
	}
	if len(r.argv) > first {
		r.ends = append(r.ends, len(r.argv))
	}
	return nil
}

// inlineArg appends the argument that starts at line[i] to r.tmp and
// returns the index just after it.
func (r *reader) inlineArg(line []byte, i int) (int, error) {
	var quote byte // 0 outside quotes, else '"' or '\''
	for ; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == 0 && isSpace(c):
			return i, nil
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote == 0:
			r.tmp = append(r.tmp, c)
		case c == quote:
			if i+1 < len(line) && !isSpace(line[i+1]) {
				return 0, errUnbalanced
			}
			return i + 1, nil
		case c == '\\' && i+1 < len(line) && quote == '\'':
			if line[i+1] == '\'' {
				i++
			}
			r.tmp = append(r.tmp, line[i])
		case c == '\\' && i+1 < len(line):
			i++
			b, n := unescape(line[i:])
			r.tmp = append(r.tmp, b)
			i += n - 1
		default:
			r.tmp = append(r.tmp, c)
		}
	}
	if quote != 0 {
		return 0, errUnbalanced
	}
	return i, nil
}

// unescape decodes the escape whose letter starts s (after a backslash in
// double quotes) and returns the byte and how many bytes of s it used.
func unescape(s []byte) (byte, int) {
	switch s[0] {
	case 'n':
		return '\n', 1
	case 'r':
		return '\r', 1
	case 't':
		return '\t', 1
	case 'b':
		return '\b', 1
	case 'a':
		return '\a', 1
	case 'x':
		if len(s) >= 3 {
			hi, ok1 := hexValue(s[1])
			lo, ok2 := hexValue(s[2])
			if ok1 && ok2 {
				return hi<<4 | lo, 3
			}
		}
	}
	return s[0], 1
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// readLine returns the next line without its "\n". It fails with
// errLineTooLong as soon as more than max bytes have arrived without one.
// The line is valid until the next read.
func (r *reader) readLine(max int) ([]byte, error) {
	if r.fromBuffer {
		rest := r.peek[r.pos:]
		if i := bytes.IndexByte(rest[:min(len(rest), max+1)], '\n'); i >= 0 {
			r.pos += i + 1
			return rest[:i], nil
		}
		if len(rest) > max {
			return nil, errLineTooLong
		}
		return nil, errIncomplete
	}
	r.line = r.line[:0]
	for {
		n := r.br.Buffered()
		if n == 0 {
			if _, err := r.br.Peek(1); err != nil {
				return nil, err
			}
			n = r.br.Buffered()
		}
		buf, _ := r.br.Peek(n)
		room := max - len(r.line)
		i := bytes.IndexByte(buf[:min(n, room+1)], '\n')
		switch {
		case i >= 0 && len(r.line) == 0:
			r.br.Discard(i + 1)
			return buf[:i], nil // still in the buffer: no copy
		case i >= 0:
			r.line = append(r.line, buf[:i]...)
			r.br.Discard(i + 1)
			return r.line, nil
		case n > room:
			return nil, errLineTooLong
		}
		r.line = append(r.line, buf...)
		r.br.Discard(n)
	}
}

// readBulk reads the next size bytes and the CRLF that must follow them,
// and returns the argument (its capacity cut at its length).
func (r *reader) readBulk(size int) ([]byte, error) {
	if r.fromBuffer {
		rest := r.peek[r.pos:]
		if len(rest) < size+2 {
			return nil, errIncomplete
		}
		if rest[size] != '\r' || rest[size+1] != '\n' {
			return nil, errBulkLength
		}
		arg, err := r.alloc(size) // at most the read buffer: never staged
		if err != nil {
			return nil, err
		}
		copy(arg, rest[:size])
		r.pos += size + 2
		return arg, nil
	}
	var arg []byte
	var err error
	if size <= stageChunk {
		if arg, err = r.alloc(size); err == nil {
			_, err = io.ReadFull(r.br, arg)
		}
	} else {
		arg, err = r.readLarge(size)
	}
	if err != nil {
		return nil, err
	}
	crlf, err := r.br.Peek(2)
	if err != nil {
		return nil, err
	}
	if crlf[0] != '\r' || crlf[1] != '\n' {
		return nil, errBulkLength
	}
	r.br.Discard(2)
	return arg, nil
}

// readLarge reads an argument of size bytes, more than stageChunk. Its
// first half arrives in the batch's stage chunks (allocated one at a time,
// as bytes arrive, and reused by the batch's next large arguments); then
// it gets its own buffer of exactly size bytes, the first half is copied
// in and the rest read straight into it. So the reader never holds more
// than about twice the bytes received for it plus one chunk, allocates
// the argument once (plus, per batch, stage chunks for half of its largest
// argument) and copies half of it once.
func (r *reader) readLarge(size int) ([]byte, error) {
	if err := r.use(argOverhead); err != nil {
		return nil, err
	}
	half, got := size/2, 0
	for i := 0; got < half; i++ {
		if i == len(r.stage) {
			if err := r.use(stageChunk); err != nil {
				return nil, err
			}
			r.stage = append(r.stage, make([]byte, stageChunk))
		}
		n, err := io.ReadFull(r.br, r.stage[i][:min(stageChunk, half-got)])
		got += n
		if err != nil {
			return nil, err
		}
	}
	if err := r.use(size); err != nil {
		return nil, err
	}
	arg := make([]byte, size)
	for i, n := 0, 0; n < got; i++ {
		n += copy(arg[n:got], r.stage[i])
	}
	if _, err := io.ReadFull(r.br, arg[got:]); err != nil {
		return nil, err
	}
	return arg, nil
}
