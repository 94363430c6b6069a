package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// (its offsets and its slice header); it is counted against maxCommand
	// so that a million empty arguments are not free.
	argOverhead = 40
	// bulkChunk is how much the argument buffer grows at a time while a
	// bulk string arrives: memory follows the bytes received, not the
	// length a client declared.
	bulkChunk = 64 << 10
	// keepBytes and keepArgs: buffers grown beyond these for a large
	// command are dropped when the batch is done, so that an idle
	// connection holds only its read buffer and small scratch space.
	keepBytes = 64 << 10
	keepArgs  = 1024
)

// span locates one argument in reader.arena.
type span struct{ start, end int }

// reader parses RESP2 commands (multibulk arrays of bulk strings, and inline
// lines as typed in telnet) from a stream, one pipeline batch at a time.
// It is not safe for concurrent use.
type reader struct {
	br    *bufio.Reader
	stall *stallReader // nil unless reading a network connection
	lim   limits

	// The batch being read: argument i is arena[spans[i].start:spans[i].end],
	// command j is arguments ends[j-1] (or 0) to ends[j].
	arena []byte
	spans []span
	ends  []int
	// Built by finish from the above, reused from batch to batch.
	argv [][]byte
	cmds [][][]byte

	line     []byte // a line that arrived in more than one read
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
// gives an error matching ErrProtocol.
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
// of it. Otherwise (incomplete, or malformed: the next blocking read reports
// it) it leaves the buffer and the batch as they were and returns false.
func (r *reader) tryBuffered() bool {
	r.peek, _ = r.br.Peek(r.br.Buffered())
	r.pos, r.fromBuffer = 0, true
	arena, spans, ends := len(r.arena), len(r.spans), len(r.ends)
	err := r.readCommand()
	r.fromBuffer = false
	if err != nil {
		r.arena, r.spans, r.ends = r.arena[:arena], r.spans[:spans], r.ends[:ends]
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

// reset starts a batch. Buffers grown for a large command are dropped
// rather than kept for the connection's life.
func (r *reader) reset() {
	if cap(r.arena) > keepBytes || cap(r.spans) > keepArgs || cap(r.ends) > keepArgs {
		r.arena, r.spans, r.ends, r.argv, r.cmds = nil, nil, nil, nil, nil
	}
	if cap(r.line) > keepBytes {
		r.line = nil
	}
	r.arena, r.spans, r.ends = r.arena[:0], r.spans[:0], r.ends[:0]
}

// finish builds the batch's argument slices. Each has its capacity cut at
// its length so that a handler appending to one cannot overwrite the next.
func (r *reader) finish() [][][]byte {
	r.argv = r.argv[:0]
	for _, s := range r.spans {
		r.argv = append(r.argv, r.arena[s.start:s.end:s.end])
	}
	r.cmds = r.cmds[:0]
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
	for range n {
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
		start := len(r.arena)
		if err := r.readBulk(size); err != nil {
			return err
		}
		r.spans = append(r.spans, span{start, len(r.arena)})
	}
	r.ends = append(r.ends, len(r.spans))
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
	first := len(r.spans)
	for i := 0; ; {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		if len(r.spans)-first == r.lim.maxArgs {
			return errTooManyArgs
		}
		start := len(r.arena)
		if i, err = r.inlineArg(line, i); err != nil {
			return err
		}
		if err := r.charge(len(r.arena) - start); err != nil {
			return err
		}
		r.spans = append(r.spans, span{start, len(r.arena)})
	}
	if len(r.spans) > first {
		r.ends = append(r.ends, len(r.spans))
	}
	return nil
}

// inlineArg appends the argument that starts at line[i] to the arena and
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
			r.arena = append(r.arena, c)
		case c == quote:
			if i+1 < len(line) && !isSpace(line[i+1]) {
				return 0, errUnbalanced
			}
			return i + 1, nil
		case c == '\\' && i+1 < len(line) && quote == '\'':
			if line[i+1] == '\'' {
				i++
			}
			r.arena = append(r.arena, line[i])
		case c == '\\' && i+1 < len(line):
			i++
			b, n := unescape(line[i:])
			r.arena = append(r.arena, b)
			i += n - 1
		default:
			r.arena = append(r.arena, c)
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

// readBulk appends the next size bytes to the arena and consumes the CRLF
// that must follow them.
func (r *reader) readBulk(size int) error {
	if r.fromBuffer {
		rest := r.peek[r.pos:]
		if len(rest) < size+2 {
			return errIncomplete
		}
		if rest[size] != '\r' || rest[size+1] != '\n' {
			return errBulkLength
		}
		r.arena = append(r.arena, rest[:size]...)
		r.pos += size + 2
		return nil
	}
	for size > 0 {
		n := min(size, bulkChunk)
		start := len(r.arena)
		r.arena = slices.Grow(r.arena, n)[:start+n]
		if _, err := io.ReadFull(r.br, r.arena[start:]); err != nil {
			r.arena = r.arena[:start]
			return err
		}
		size -= n
	}
	crlf, err := r.br.Peek(2)
	if err != nil {
		return err
	}
	if crlf[0] != '\r' || crlf[1] != '\n' {
		return errBulkLength
	}
	r.br.Discard(2)
	return nil
}
