package wal

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

var errInjected = errors.New("injected I/O error")

// checkSticky checks that every write-path method now fails with want, that
// reads of durable data still work, and that a reopen recovers want.
func checkSticky(t *testing.T, l *Log, want error, durable []entry.Entry) {
	t.Helper()
	next := l.LastIndex() + 1
	wantErr(t, "Append after failure", l.Append(makeEntries(next, 1, constTerm(1), 1)), want)
	_, err := l.Submit(makeEntries(next, 1, constTerm(1), 1))
	wantErr(t, "Submit after failure", err, want)
	wantErr(t, "SetHardState after failure", l.SetHardState(HardState{Term: 99}), want)
	wantErr(t, "TruncateAfter after failure", l.TruncateAfter(0), want)
	wantErr(t, "DropBefore after failure", l.DropBefore(5), want)
	mustMatch(t, l, durable)
}

func TestSyncFailureIsSticky(t *testing.T) {
	tests := []struct {
		name string
		// failOn says which Sync call (by name) fails, given the log's dir.
		failOn func(name string) bool
		op     func(l *Log) error
	}{
		{"segment fsync on append", func(n string) bool { return strings.Contains(n, ".wal") && !strings.Contains(n, "spare") },
			func(l *Log) error { return l.Append(makeEntries(11, 1, constTerm(1), 10)) }},
		{"dir fsync on segment roll", func(n string) bool { return n == "/wal" },
			func(l *Log) error { return l.Append(makeEntries(11, 60, constTerm(1), 100)) }},
		{"hard state fsync", func(n string) bool { return strings.Contains(n, "hardstate") },
			func(l *Log) error { return l.SetHardState(HardState{Term: 2, Vote: "x"}) }},
		{"fsync in truncate", func(n string) bool { return true },
			func(l *Log) error { return l.TruncateAfter(5) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewMem()
			l := mustOpen(t, "/wal", testConfig(mem))
			durable := makeEntries(1, 10, constTerm(1), 10)
			mustAppend(t, l, durable)
			var failing atomic.Bool
			failing.Store(true)
			var syncs atomic.Int32
			mem.SetFaults(vfs.Faults{Sync: func(name string) error {
				if failing.Load() && tt.failOn(name) {
					syncs.Add(1)
					return errInjected
				}
				return nil
			}})
			err := tt.op(l)
			wantErr(t, "the failing operation", err, ErrSyncFailed)
			if syncs.Load() != 1 {
				t.Fatalf("%d failing fsyncs, want exactly 1 (never retried)", syncs.Load())
			}
			// Even once the disk "recovers", the log stays failed.
			failing.Store(false)
			if strings.Contains(tt.name, "truncate") {
				durable = durable[:5] // truncation updates the index before its fsync
			}
			checkSticky(t, l, ErrSyncFailed, durable)
			if syncs.Load() != 1 {
				t.Fatalf("fsync retried after failure")
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close after failure: %v", err)
			}
		})
	}
}

func TestWriteFailureIsSticky(t *testing.T) {
	mem := vfs.NewMem()
	l := mustOpen(t, "/wal", testConfig(mem))
	durable := makeEntries(1, 10, constTerm(1), 10)
	mustAppend(t, l, durable)
	// A torn record header: only 10 bytes of the batch reach the file.
	mem.SetFaults(vfs.Faults{Write: func(name string, n int) (int, error) { return min(n, 10), errInjected }})
	wantErr(t, "Append with a torn write", l.Append(makeEntries(11, 3, constTerm(1), 10)), ErrWriteFailed)
	mem.SetFaults(vfs.Faults{})
	checkSticky(t, l, ErrWriteFailed, durable)
	l.Close()
	// The half-written batch is a torn tail: reopening cuts it.
	l = mustOpen(t, "/wal", testConfig(mem))
	defer l.Close()
	mustMatch(t, l, durable)
}

// TestWaitersSeeFailure checks that goroutines waiting in a group commit all
// get the sticky error when the shared fsync fails.
func TestWaitersSeeFailure(t *testing.T) {
	mem := vfs.NewMem()
	l := mustOpen(t, "/wal", testConfig(mem))
	mem.SetFaults(vfs.Faults{Sync: func(string) error { return errInjected }})
	var tickets []Ticket
	for i := uint64(1); i <= 5; i++ {
		tk, err := l.Submit(makeEntries(i, 1, constTerm(1), 1))
		if err != nil {
			// The writer may already have failed on an earlier batch.
			wantErr(t, "Submit after the writer failed", err, ErrSyncFailed)
			break
		}
		tickets = append(tickets, tk)
	}
	if len(tickets) == 0 {
		t.Fatal("the first Submit failed before anything was written")
	}
	for _, tk := range tickets {
		wantErr(t, "Wait", l.Wait(tk), ErrSyncFailed)
	}
	if l.LastIndex() != 0 {
		t.Fatalf("LastIndex = %d after a failed fsync; nothing is durable", l.LastIndex())
	}
}

// TestDiskFullNamesTheFile: a full disk (ENOSPC) on an append, and on the
// creation of the next segment, fails the log for good (the node stops on
// it) with an error that says why and names the file: the segment's real
// name, not the temporary one its handle was created under.
func TestDiskFullNamesTheFile(t *testing.T) {
	for _, next := range []bool{false, true} {
		name := "append to the active segment"
		if next {
			name = "creating the next segment"
		}
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := testConfig(mem)
			cfg.Preallocate = false // every roll creates its segment on the writer
			l := mustOpen(t, "/wal", cfg)
			defer l.Close()
			// Enough to roll: the active segment was created under a
			// temporary name (which its handle keeps).
			durable := makeEntries(1, 60, constTerm(1), 100)
			mustAppend(t, l, durable)
			l.mu.Lock()
			active := l.segs[len(l.segs)-1].path
			l.mu.Unlock()
			failOn := func(n string) bool { return n == active+tmpSuffix }
			op := func() error { return l.Append(makeEntries(61, 1, constTerm(1), 100)) }
			want := active + " at"
			if next {
				failOn = func(n string) bool { return strings.HasSuffix(n, tmpSuffix) && n != active+tmpSuffix }
				op = func() error { return l.Append(makeEntries(61, 60, constTerm(1), 100)) }
				want = segmentSuffix + tmpSuffix
			}
			mem.SetFaults(vfs.Faults{Write: func(name string, n int) (int, error) {
				if failOn(name) {
					return 0, syscall.ENOSPC
				}
				return n, nil
			}})
			err := op()
			wantErr(t, "the failing append", err, ErrWriteFailed)
			msg := err.Error()
			if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, want) {
				t.Fatalf("error = %q, want the cause and %q", msg, want)
			}
			if !next && strings.Contains(msg, tmpSuffix) {
				t.Fatalf("error names the temporary file the segment was created as: %q", msg)
			}
			mem.SetFaults(vfs.Faults{})
			checkSticky(t, l, ErrWriteFailed, durable)
		})
	}
}
