package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

// testConfig returns a config on fs with small segments so tests cross them.
func testConfig(fs vfs.FS) Config {
	c := DefaultConfig()
	c.FS = fs
	c.SegmentBytes = 4096
	return c
}

func mustOpen(t testing.TB, dir string, cfg Config) *Log {
	t.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

// makeEntries returns n entries from index first, with term computed by
// termOf and a value of valSize bytes derived from the index.
func makeEntries(first uint64, n int, termOf func(i uint64) uint64, valSize int) []entry.Entry {
	ents := make([]entry.Entry, n)
	for k := range ents {
		i := first + uint64(k)
		v := bytes.Repeat([]byte{byte(i)}, valSize)
		ents[k] = entry.Entry{Term: termOf(i), Index: i, Kind: entry.KindPut,
			Key: fmt.Appendf(nil, "key-%d", i), Value: v, RequestID: i * 7}
	}
	return ents
}

func constTerm(t uint64) func(uint64) uint64 { return func(uint64) uint64 { return t } }

func mustAppend(t testing.TB, l *Log, ents []entry.Entry) {
	t.Helper()
	if err := l.Append(ents); err != nil {
		t.Fatalf("Append [%d..%d]: %v", ents[0].Index, ents[len(ents)-1].Index, err)
	}
}

// mustMatch checks that l holds exactly want (FirstIndex, LastIndex, every
// entry and term).
func mustMatch(t testing.TB, l *Log, want []entry.Entry) {
	t.Helper()
	if len(want) == 0 {
		if l.LastIndex() != l.FirstIndex()-1 {
			t.Fatalf("log should be empty: first %d last %d", l.FirstIndex(), l.LastIndex())
		}
		return
	}
	if f, la := l.FirstIndex(), l.LastIndex(); f != want[0].Index || la != want[len(want)-1].Index {
		t.Fatalf("log holds [%d, %d], want [%d, %d]", f, la, want[0].Index, want[len(want)-1].Index)
	}
	got, err := l.Entries(want[0].Index, want[len(want)-1].Index+1, 1<<62)
	if err != nil {
		t.Fatalf("Entries: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Entries returned %d entries, want %d", len(got), len(want))
	}
	for k := range want {
		if !got[k].Equal(&want[k]) {
			t.Fatalf("entry %d: got %+v, want %+v", want[k].Index, got[k], want[k])
		}
		term, err := l.Term(want[k].Index)
		if err != nil || term != want[k].Term {
			t.Fatalf("Term(%d) = %d, %v; want %d", want[k].Index, term, err, want[k].Term)
		}
	}
}

// logCapture is a slog handler that keeps records for assertions.
type logCapture struct {
	mu   sync.Mutex
	recs []string
}

func (c *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.recs = append(c.recs, string(p))
		return len(p), nil
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b bytes.Buffer
	for _, r := range c.recs {
		b.WriteString(r)
	}
	return b.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}
