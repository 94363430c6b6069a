package wal

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/trireme-db/trireme/internal/vfs"
)

func TestCommitHint(t *testing.T) {
	fileSystems(t, func(t *testing.T, fs vfs.FS, dir string) {
		cfg := testConfig(fs)
		l := mustOpen(t, dir, cfg)
		hs := HardState{Term: 3, Vote: "a", Commit: 5}
		if err := l.SetHardState(hs); err != nil {
			t.Fatal(err)
		}
		if err := l.SetCommitHint(9); err != nil {
			t.Fatal(err)
		}
		want := HardState{Term: 3, Vote: "a", Commit: 9}
		if got := l.HardState(); got != want {
			t.Fatalf("HardState after SetCommitHint(9) = %+v, want %+v", got, want)
		}
		// A hint never moves the commit index back.
		if err := l.SetCommitHint(7); err != nil {
			t.Fatal(err)
		}
		if got := l.HardState(); got != want {
			t.Fatalf("HardState after SetCommitHint(7) = %+v, want %+v", got, want)
		}
		l.Close()
		l = mustOpen(t, dir, cfg)
		if got := l.HardState(); got != want {
			t.Fatalf("HardState after reopen = %+v, want %+v (term and vote from the hard state, commit from the hint)", got, want)
		}
		// A durable hard state beyond the hint wins; one below it does not
		// hide the hint.
		hs = HardState{Term: 4, Vote: "b", Commit: 12}
		if err := l.SetHardState(hs); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = mustOpen(t, dir, cfg)
		if got := l.HardState(); got != hs {
			t.Fatalf("HardState after reopen = %+v, want %+v", got, hs)
		}
		if err := l.SetCommitHint(20); err != nil {
			t.Fatal(err)
		}
		if err := l.SetHardState(HardState{Term: 5, Commit: 15}); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = mustOpen(t, dir, cfg)
		defer l.Close()
		if got, want := l.HardState(), (HardState{Term: 5, Commit: 20}); got != want {
			t.Fatalf("HardState after reopen = %+v, want %+v", got, want)
		}
	})
}

// TestCommitHintIsNotSynced: the hint costs no fsync, so a power loss can
// take it (and even its file) away; the log then opens with the durable
// hard state's commit.
func TestCommitHintIsNotSynced(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	l := mustOpen(t, "/wal", cfg)
	if err := l.SetHardState(HardState{Term: 2, Commit: 4}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetCommitHint(10); err != nil {
		t.Fatal(err)
	}
	mem.Crash(vfs.CrashOptions{})
	l2 := mustOpen(t, "/wal", cfg)
	defer l2.Close()
	if got, want := l2.HardState(), (HardState{Term: 2, Commit: 4}); got != want {
		t.Fatalf("HardState after a crash = %+v, want %+v", got, want)
	}
}

// warnCounter counts the log records whose message contains sub.
type warnCounter struct {
	sub string
	n   *atomic.Int64
}

func (c warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c warnCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c warnCounter) WithGroup(string) slog.Handler            { return c }
func (c warnCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, c.sub) {
		c.n.Add(1)
	}
	return nil
}

// TestCommitHintDamaged: a torn or garbled hint is ignored with a warning;
// unlike the hard state it is never a reason to refuse to open.
func TestCommitHintDamaged(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"bit flip", func(b []byte) []byte { b[6] ^= 1; return b }},
		{"short", func(b []byte) []byte { return b[:7] }},
		{"zeros", func(b []byte) []byte { return make([]byte, len(b)) }},
		{"long", func(b []byte) []byte { return append(b, 0) }},
		{"empty", func(b []byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			var warned atomic.Int64
			cfg := testConfig(mem)
			cfg.Logger = slog.New(warnCounter{sub: "damaged commit hint", n: &warned})
			l := mustOpen(t, "/wal", cfg)
			if err := l.SetHardState(HardState{Term: 2, Vote: "x", Commit: 4}); err != nil {
				t.Fatal(err)
			}
			if err := l.SetCommitHint(10); err != nil {
				t.Fatal(err)
			}
			l.Close()
			b, err := mem.ReadFile("/wal/" + commitHintName)
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := decodeCommitHint(b); !ok || c != 10 {
				t.Fatalf("hint file holds %d (ok %v), want 10", c, ok)
			}
			if err := mem.WriteFile("/wal/"+commitHintName, tc.edit(b)); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, "/wal", cfg)
			defer l.Close()
			if got, want := l.HardState(), (HardState{Term: 2, Vote: "x", Commit: 4}); got != want {
				t.Fatalf("HardState with a damaged hint = %+v, want %+v", got, want)
			}
			if warned.Load() != 1 {
				t.Fatalf("%d warnings about the damaged hint, want 1", warned.Load())
			}
			// The log keeps working, hint included.
			if err := l.SetCommitHint(11); err != nil {
				t.Fatal(err)
			}
			if got := l.HardState().Commit; got != 11 {
				t.Fatalf("commit after a new hint = %d, want 11", got)
			}
		})
	}
}
