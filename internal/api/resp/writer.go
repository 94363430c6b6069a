package resp

import (
	"io"
	"strconv"
	"strings"
)

// flushBytes: replies are written out once a batch is done, or sooner once
// this many bytes are waiting, so a long batch of large replies is not held
// in memory whole.
const flushBytes = 64 << 10

// writer buffers RESP2 replies until flush.
type writer struct {
	w   io.Writer
	out []byte
	err error // the first write error; later writes are dropped
}

// flush writes the buffered replies. A buffer grown past keepBytes (a large
// reply) is dropped rather than kept for the connection's life.
func (w *writer) flush() error {
	if w.err != nil || len(w.out) == 0 {
		return w.err
	}
	_, w.err = w.w.Write(w.out)
	if cap(w.out) > keepBytes {
		w.out = nil
	} else {
		w.out = w.out[:0]
	}
	return w.err
}

// WriteString writes a simple string ("+OK"). CR and LF, which would end
// it early, become spaces.
func (w *writer) WriteString(s string) { w.simple('+', s) }

// WriteError writes an error reply; msg starts with its code ("ERR ...").
func (w *writer) WriteError(msg string) { w.simple('-', msg) }

func (w *writer) simple(kind byte, s string) {
	w.out = append(w.out, kind)
	if !strings.ContainsAny(s, "\r\n") {
		w.out = append(w.out, s...)
	} else {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			w.out = append(w.out, c)
		}
	}
	w.out = append(w.out, '\r', '\n')
}

// WriteBulk writes a bulk string.
func (w *writer) WriteBulk(b []byte) {
	w.header('$', int64(len(b)))
	w.out = append(w.out, b...)
	w.out = append(w.out, '\r', '\n')
}

// WriteBulkString writes a bulk string.
func (w *writer) WriteBulkString(s string) {
	w.header('$', int64(len(s)))
	w.out = append(w.out, s...)
	w.out = append(w.out, '\r', '\n')
}

// WriteInt writes an integer reply.
func (w *writer) WriteInt(n int) { w.header(':', int64(n)) }

// WriteInt64 writes an integer reply.
func (w *writer) WriteInt64(n int64) { w.header(':', n) }

// WriteArray writes an array header; n replies must follow.
func (w *writer) WriteArray(n int) { w.header('*', int64(n)) }

// WriteNull writes the null bulk string (a missing key).
func (w *writer) WriteNull() { w.out = append(w.out, "$-1\r\n"...) }

func (w *writer) header(kind byte, n int64) {
	w.out = append(w.out, kind)
	w.out = strconv.AppendInt(w.out, n, 10)
	w.out = append(w.out, '\r', '\n')
}
