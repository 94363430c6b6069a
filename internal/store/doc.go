// Package store owns Trireme's state machine: the current value of every key,
// kept in Pebble, built by applying committed log entries in index order.
//
// It promises:
//   - Apply is atomic per call and idempotent: entries at or below the applied
//     index are skipped, and a gap is refused with ErrGap.
//   - Applied writes first go to a write buffer, a hash table in front of
//     Pebble (Config.WriteBufferBytes): a key rewritten while buffered costs a
//     table update instead of a memtable insert. A full buffer reaches Pebble
//     in the background, in batches of a few hundred keys; the last one
//     carries the applied index (and its term) it brings Pebble to, and a
//     record in the first marks a drain under way (see the crash contract).
//     Get reads the buffer, then Pebble.
//   - Each key carries its version: the index of the log entry that last set it.
//   - Reads (Get, View) see only whole applied batches; a View is a consistent
//     Pebble snapshot at one applied index.
//   - The store never rolls back: only committed entries are applied.
//
// # Crash contract
//
// Pebble runs with its own WAL disabled; the Trireme WAL (internal/wal) is the
// only log. Applied batches sit in the write buffer and then in Pebble's
// memtable until it is flushed, and a crash loses whatever was not flushed.
// After a crash the store reopens at some applied index A with DurableIndex()
// <= A <= the last applied index, in a state that is exactly the result of
// applying entries 1..A (memtables flush whole batches, in order), except
// after a drain cut short: then some keys hold versions from (A,
// RecoverIndex()]. The node must therefore:
//
//  1. keep every WAL entry above DurableIndex() (drop WAL prefixes only at or
//     below it; call Flush to move it forward);
//  2. on restart, replay the WAL from AppliedIndex()+1 (Apply skips anything at
//     or below the applied index anyway), and at least through RecoverIndex()
//     before serving reads: a drain of the write buffer cut short by a crash
//     can leave keys newer than the applied index, and only that replay makes
//     the state a log prefix again.
//
// Close flushes, so after a clean Close DurableIndex equals AppliedIndex. A
// failed Pebble write or flush is sticky: every later Apply, Flush and Import
// returns ErrFailed. That includes a flush or compaction that fails in
// Pebble's background (a full disk, an I/O error): the store fails at once
// and closes Failed(), and no call waits for Pebble's endless retries.
//
// # Key layout
//
// Every Pebble key begins with one prefix byte, so user keys and metadata
// never collide. Byte by byte (all integers little-endian):
//
//	Pebble key             Pebble value
//	0x00 'f'               uint32 format version (FormatVersion, 3; 1 and 2 are also read)
//	0x00 'a'               uint64 applied index, uint64 applied term
//	0x00 'n'               format 1 only: a key count, now ignored
//	0x00 'd'               uint64 index, uint64 term: a drain in several batches is under way to there
//	0x00 'c'               the cluster configuration of the last config entry applied
//	0x00 't' be64(index)   uint64 term: a term starts at index (the term history)
//	0x00 'j' be64(I)       a chunk of idempotency records, the last one at index I (below)
//	0x00 'w'               uint64 W: every idempotency record at index <= W is dead
//	0x00 'i' <idem key>    format 2: one idempotency record, uint64 expiry then the encoded result
//	0x01 <user key bytes>  uint64 version (index of the last change), then the value bytes
//
// User keys may be empty and may hold any bytes. 0x02 is the exclusive upper
// bound of the user key space. The prefix bytes, the metadata keys and the
// value header are part of the on-disk format.
//
// A chunk of idempotency records is their concatenation, in index order,
// each: uint32 L (the length of the rest, at most 1 GiB), uint64 index,
// uint16 K (at most command.MaxIdemKey), K bytes of idempotency key, uint64
// expiry (unix ns, log time), then the encoded command.Result (its index is
// the record's). Chunks cover disjoint, ascending index ranges and are
// written whole, with the applied index that includes their records; a chunk
// whose last index is at most W is dead and may be deleted at any time.
// Reading one checks every length against the bytes present: damage is
// ErrCorrupt, never a panic.
//
// Format 3 (chunks and W) would be silently ignored by a release that reads
// format 2, which would then apply retries again: so a database is marked 3
// by the first batch that writes a chunk or W (new databases are created at
// 3), and Open and Install refuse a format above the one they read
// (ErrIncompatible). A format 1 or 2 database opens unchanged; its 'i'
// records are loaded, and dropping one deletes its key.
//
// # Directory layout
//
// The store directory holds a file CURRENT naming the active Pebble directory
// ("db-000001\n"), and that directory. Import builds a new Pebble directory
// next to it, and Install moves a received checkpoint (Checkpoint) in as the
// next one; both then switch CURRENT atomically (write temporary file, fsync,
// rename, fsync directory). Open removes any db-* directory that CURRENT does
// not name (an interrupted import or install), so after a crash the store
// opens in its old state or the new one, and AppliedIndex says which.
//
// # Snapshot stream
//
// Export writes, and Import reads, this stream (integers little-endian, CRCs
// are CRC-32C, Castagnoli):
//
//	header (32 bytes):
//	  0   8  magic "TRSNAP\x00\x01" (SnapshotMagic)
//	  8   4  uint32 stream format version (SnapshotVersion, 1)
//	  12  8  uint64 applied index
//	  20  8  uint64 applied term
//	  28  4  uint32 CRC of bytes 0..27
//	then frames, each:
//	  0   1  frame type: 1 data, 2 end
//	  1   4  uint32 sequence number (0, 1, 2, ... in stream order)
//	  5   4  uint32 payload length P (at most MaxChunkBytes)
//	  9   4  uint32 CRC of bytes 0..8 followed by the payload
//	  13  P  payload
//	data payload: one or more records, each:
//	  uint32 key length K, K key bytes, uint64 version,
//	  uint32 value length V, V value bytes
//	  (keys strictly increasing across the whole stream;
//	  1 <= version <= applied index)
//	end payload (24 bytes): uint64 number of keys, uint64 applied index,
//	  uint64 applied term (both repeated from the header).
//
// The end frame is the last frame; Import reads nothing after it. Import
// verifies every CRC, the sequence numbers, the key order and the totals; on
// any failure it returns an error wrapping ErrBadSnapshot that names the
// stream offset, and the store is unchanged.
package store
