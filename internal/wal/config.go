package wal

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

// Limits on Config values.
const (
	minSegmentBytes  = 1 << 10
	maxSegmentBytes  = 1 << 30 // offsets are kept as uint32
	maxEntryBytesCap = 1 << 28
)

// MaxVoteBytes is the largest vote (node id) SetHardState accepts. Part of the
// hard-state format.
const MaxVoteBytes = 1024

// Config configures a Log.
type Config struct {
	// SegmentBytes is the target size of a segment file, in bytes. A new
	// segment is started before a record would take the current one past it
	// (a segment holding a single larger record may exceed it).
	// Default 64 MiB; allowed 1 KiB to 1 GiB.
	SegmentBytes int64
	// MaxValueBytes is the largest entry value Append accepts, in bytes.
	// Default 1 MiB.
	MaxValueBytes int
	// MaxEntryBytes is the largest encoded entry (entry.Size) Append accepts,
	// in bytes. Default 4 MiB; at most 256 MiB.
	MaxEntryBytes int
	// FS is the file system. Default vfs.OS{}.
	FS vfs.FS
	// Logger receives recovery and failure reports. Nil discards them.
	Logger *slog.Logger
	// NoSync skips every fsync. UNSAFE: acknowledged entries can be lost on a
	// crash or power loss. For tests and benchmarks only.
	NoSync bool
	// Preallocate fills each new segment file with SegmentBytes of real zeros
	// (fsynced) before it is used, so that appends overwrite allocated space
	// and an fdatasync does not have to write the file's size: about 30%
	// less time and CPU per fsync on ext4 (see DESIGN.md). The next segment is
	// prepared in the background once the current one is an eighth full (a
	// segment started before it is ready grows by extension until the spare
	// takes over), at the pace SparePace sets. Costs
	// SegmentBytes of disk per segment up front, and SegmentBytes written when
	// a log is created. Default true; false writes segments by extending them
	// (useful for tests with many tiny logs). Either way, recovery reads logs
	// written with either setting.
	Preallocate bool
	// SparePace spreads the preparation of the next segment file out: after
	// each 1 MiB of zeros it waits SparePace times as long as that write
	// took, at most 50 ms (1: it works half the time), until the active
	// segment is three quarters full, when it goes flat out. Filling
	// 64 MiB at once was a burst of CPU, page-cache allocation and disk
	// writes on the machine; the log's own appends and fsyncs queued behind
	// it (docs/BENCHMARKS.md, sixth round). Default 1 (2 cost throughput);
	// 0 does not wait.
	SparePace float64

	// sparePause, if set, replaces paceSpare's wait (tests record the
	// pauses instead of sleeping).
	sparePause func(time.Duration)

	// inlineSpare prepares the spare segment on the writer goroutine instead
	// of a background one, so that tests that count I/O stay deterministic.
	inlineSpare bool
}

// DefaultConfig returns the default configuration (real file system, logs
// discarded).
func DefaultConfig() Config {
	return Config{
		SegmentBytes:  64 << 20,
		MaxValueBytes: 1 << 20,
		MaxEntryBytes: 4 << 20,
		FS:            vfs.OS{},
		Logger:        slog.New(slog.DiscardHandler),
		Preallocate:   true,
		SparePace:     1,
	}
}

// Validate reports the first bad field, by name.
func (c Config) Validate() error {
	switch {
	case c.SegmentBytes < minSegmentBytes || c.SegmentBytes > maxSegmentBytes:
		return fmt.Errorf("wal: Config.SegmentBytes = %d, want %d..%d", c.SegmentBytes, minSegmentBytes, maxSegmentBytes)
	case c.MaxEntryBytes < entry.HeaderSize || c.MaxEntryBytes > maxEntryBytesCap:
		return fmt.Errorf("wal: Config.MaxEntryBytes = %d, want %d..%d", c.MaxEntryBytes, entry.HeaderSize, maxEntryBytesCap)
	case c.MaxValueBytes <= 0:
		return fmt.Errorf("wal: Config.MaxValueBytes = %d, want > 0", c.MaxValueBytes)
	case c.MaxValueBytes > c.MaxEntryBytes-entry.HeaderSize:
		return fmt.Errorf("wal: Config.MaxValueBytes = %d does not fit in Config.MaxEntryBytes = %d (entry header is %d bytes)",
			c.MaxValueBytes, c.MaxEntryBytes, entry.HeaderSize)
	case c.FS == nil:
		return fmt.Errorf("wal: Config.FS is nil")
	case !(c.SparePace >= 0 && c.SparePace <= 100): // also catches NaN
		return fmt.Errorf("wal: Config.SparePace = %v, want 0..100", c.SparePace)
	}
	return nil
}
