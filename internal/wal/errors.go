package wal

import (
	"errors"
	"fmt"
)

// Errors returned (wrapped) by the log. Check them with errors.Is.
var (
	// ErrCorrupt: stored data failed verification. The error is a *CorruptError
	// naming the file and offset. See IsCorrupt.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrNotContiguous: an append does not continue the log at LastIndex()+1
	// (counting entries already submitted), or its entries are not consecutive.
	ErrNotContiguous = errors.New("wal: entries not contiguous with the log")
	// ErrTooLarge: an entry's value exceeds Config.MaxValueBytes, its encoding
	// exceeds Config.MaxEntryBytes, or a vote exceeds MaxVoteBytes.
	ErrTooLarge = errors.New("wal: too large")
	// ErrSyncFailed: an fsync failed. Sticky: the log refuses all further writes.
	ErrSyncFailed = errors.New("wal: fsync failed, log is read-only")
	// ErrWriteFailed: a write, truncate, rename or remove failed on the write
	// path. Sticky like ErrSyncFailed, because the files may now hold a partial
	// write.
	ErrWriteFailed = errors.New("wal: write failed, log is read-only")
	// ErrClosed: the log is closed.
	ErrClosed = errors.New("wal: log closed")
	// ErrCompacted: the requested index is below FirstIndex().
	ErrCompacted = errors.New("wal: index compacted")
	// ErrUnavailable: the requested index is above LastIndex() (or, for Term,
	// outside [FirstIndex()-1, LastIndex()]).
	ErrUnavailable = errors.New("wal: index unavailable")
	// ErrInvalid: a malformed argument (bad entry kind, reversed range).
	ErrInvalid = errors.New("wal: invalid argument")
)

// CorruptError describes damage found in a log file. It wraps ErrCorrupt.
type CorruptError struct {
	File   string // path of the damaged file
	Offset int64  // byte offset of the damaged record (or header) in File
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// IsCorrupt reports whether err reports damaged data (as opposed to an I/O
// error, a missing file or a closed log).
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

func corruptf(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
