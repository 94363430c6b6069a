// Package wal is Trireme's write-ahead log: a durable, segmented, checksummed
// log of entry.Entry values addressed by index, plus the node's hard state.
//
// It owns everything under its directory and promises:
//
//   - Append returns only when its entries are durable (fsynced); concurrent
//     appenders share one fdatasync (group commit).
//   - Indexes are contiguous: an append that does not start right after the
//     last index fails with ErrNotContiguous; there are never silent gaps.
//   - Recovery verifies every record. A torn last record of the last segment
//     (an append that a crash interrupted, never acknowledged) is cut off and
//     logged; any other damage refuses to open with ErrCorrupt naming the file
//     and offset. Acknowledged entries are never dropped silently.
//   - An I/O error on the write path is fatal and sticky: a failed fsync is never
//     retried, and every later write returns ErrSyncFailed (or ErrWriteFailed).
//   - All methods are safe for concurrent use; reads run concurrently with
//     appends.
//
// # Files
//
// The directory holds segment files named by the index of their first entry,
// as 20 decimal digits ("00000000000000000001.wal"), one "hardstate" file and
// (once a hint was set) one "commit-hint" file; while a Reset runs, also a
// "reset" marker. New files (but the hint) are written under a ".tmp" name, fsynced, renamed into place and
// the directory fsynced; leftover ".tmp" files are removed on open.
//
// With Config.Preallocate (the default), a new segment file is filled with
// zeros up to Config.SegmentBytes and fsynced before it is used, and records
// are written over those zeros at the end of the segment's data (with
// positioned writes, not O_APPEND). The next segment's file is prepared in
// the background under the name "spare.wal.tmp" once the current segment is
// an eighth full, paced (Config.SparePace) until the current segment is three
// quarters full; starting a segment then only writes the header into it, fsyncs
// it, renames it and fsyncs the directory. A segment started while no spare
// is ready is a plain one that grows by extension (the writer never zero-fills
// on the write path), and the writer leaves it for the spare at the first batch
// after the spare is ready. Before a new segment is created,
// the full one is cut to the end of its data and fsynced ("sealed"), so that
// only the last segment ever has zeros after its records.
//
// # Record format
//
// A segment is a sequence of records. All integers are little-endian. A record
// is, byte by byte:
//
//	offset  size  field
//	0       4     length N of the payload (uint32)
//	4       4     CRC-32C (Castagnoli) of bytes [8, 9+N): the kind and the payload
//	8       1     kind (1 entry, 2 segment header)
//	9       N     payload
//
// An entry record's payload is the entry's encoding (package entry), so the
// payload is also the wire form and entry.Size() == N. The first record of every
// segment is a segment header record whose 28-byte payload is:
//
//	offset  size  field
//	0       8     magic "TRWALSEG"
//	8       4     segment format version (1)
//	12      8     index of the segment's first entry (equal to the file name)
//	20      8     term of the entry before it (0 for index 1)
//
// The header's second field lets the log remember the term at FirstIndex()-1
// after compaction deletes older segments. Entry records follow with
// consecutive indexes. RecordHeaderSize, the kind values, the magic and the
// version are part of the format: changing them breaks existing logs.
//
// # Hard state
//
// The "hardstate" file holds (term, vote, commit), rewritten whole by
// SetHardState through a temporary file, fsync, rename and directory fsync:
//
//	offset  size  field
//	0       4     magic "TRHS"
//	4       1     version (1)
//	5       8     term
//	13      8     commit
//	21      2     vote length V (at most MaxVoteBytes)
//	23      V     vote (node id)
//	23+V    4     CRC-32C of bytes [0, 23+V)
//
// The "commit-hint" file holds a newer commit index than the hard state's,
// written in place by SetCommitHint and never fsynced (it may be lost or torn
// by a crash; a damaged one is ignored):
//
//	offset  size  field
//	0       4     magic "TRCH"
//	4       8     commit
//	12      4     CRC-32C of bytes [0, 12)
//
// The "reset" marker records a Reset(index, term) in progress, written
// through a temporary file like the hard state:
//
//	offset  size  field
//	0       4     magic "TRRS"
//	4       1     version (1)
//	5       8     index
//	13      8     term
//	21      4     CRC-32C of bytes [0, 21)
//
// # Reset
//
// Reset(index, term) writes the marker (durably), then the new empty segment
// named index+1 with prevTerm term (replacing a segment of that name, if
// any, by the rename), removes every other segment, fsyncs the directory,
// removes the marker and fsyncs the directory again. The durable marker is
// the point of no return: when Open finds one, it completes the reset (it
// writes the new segment again, removes every other segment, then the
// marker) before reading any segment. A crash before the marker is durable
// leaves the old log (a leftover "reset.tmp" is removed like any temporary
// file). So a reset is all or nothing without any rule that would accept a
// gap between segments; a damaged marker is ErrCorrupt.
//
// # Recovery rules
//
// Every record of every segment is decoded and checked (checksum, kind, entry
// encoding, index), segments must follow each other without a gap, and each
// segment header must agree with its file name and with the previous
// segment's last term.
//
// In the last segment, when every byte after the last good record is zero,
// those bytes are preallocated space (or space the file system extended but
// never wrote): the log simply ends there. Nothing is logged or cut, and
// appends continue over the zeros.
//
// Otherwise, let the data end be the offset after the last non-zero byte of
// the file (the end of the file, for a file that does not end in zeros). At
// the first bad record of the last segment, the bytes up to the data end are
// taken for a torn write, and cut off (the file is truncated there and
// fsynced, with a slog warning naming the file, the offset and the number of
// torn bytes), only when one of these holds:
//
//   - fewer than RecordHeaderSize bytes remain before the data end (a cut
//     header);
//   - the declared length runs past the data end, the bytes that are there do
//     not verify as a complete record with a damaged length field (neither
//     up to the data end nor up to the length its entry encoding gives), and
//     no verifiable record of the next entry starts anywhere after it (a
//     damaged length field in the middle of the file would hide one).
//
// Anything else (a record that ends before the data end and fails, non-zero
// bytes after zeros), and any bad record or any trailing zeros in an earlier
// segment, is ErrCorrupt, reported as a *CorruptError with the file and the
// offset of the bad record. See DESIGN.md for why.
//
// # Appending
//
// Append = Submit + Wait. Submit checks and encodes the entries and queues them
// in order; a single writer goroutine writes everything queued with one write
// per segment touched and one fdatasync, then wakes exactly the waiters of
// that batch (group commit). Submit lets a caller queue entries, do other work
// (send them to followers), and Wait later.
package wal
