package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
)

// tracer records the run as text lines. It always hashes every line; it keeps
// the whole text only when asked, and otherwise a ring of the last lines for
// failure reports.
type tracer struct {
	h      hash.Hash
	full   *bytes.Buffer
	ring   []string
	next   int
	lines  int
	logger *slog.Logger
	buf    []byte
}

func newTracer(keep bool, tail int, logger *slog.Logger) *tracer {
	t := &tracer{h: sha256.New(), logger: logger}
	if keep {
		t.full = &bytes.Buffer{}
	}
	if tail > 0 {
		t.ring = make([]string, 0, tail)
	}
	return t
}

// add records one event at tick now.
func (t *tracer) add(now int64, format string, args ...any) {
	t.buf = t.buf[:0]
	t.buf = fmt.Appendf(t.buf, "%06d ", now)
	t.buf = fmt.Appendf(t.buf, format, args...)
	t.buf = append(t.buf, '\n')
	t.h.Write(t.buf)
	t.lines++
	if t.full != nil {
		t.full.Write(t.buf)
	}
	if cap(t.ring) > 0 {
		line := string(t.buf[:len(t.buf)-1])
		if len(t.ring) < cap(t.ring) {
			t.ring = append(t.ring, line)
		} else {
			t.ring[t.next] = line
			t.next = (t.next + 1) % len(t.ring)
		}
	}
	if t.logger != nil && t.logger.Enabled(context.Background(), slog.LevelDebug) {
		t.logger.Debug(string(t.buf[:len(t.buf)-1]))
	}
}

func (t *tracer) sum() string { return hex.EncodeToString(t.h.Sum(nil)) }

func (t *tracer) tail() []string {
	out := make([]string, 0, len(t.ring))
	out = append(out, t.ring[t.next:]...)
	return append(out, t.ring[:t.next]...)
}
