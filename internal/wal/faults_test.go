package wal

import (
	"errors"
	"strings"
	"sync/atomic"
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
