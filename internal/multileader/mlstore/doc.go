// Package mlstore is the durable state of one multi-leader node, in Pebble:
// its own stream (multileader.Log), every key's replicated state
// (multileader.Store), the applied position of each origin's stream, and a
// bounded log of the conflicts the node recorded.
//
// It promises:
//   - Persist writes everything durable in one Ready (stream entries, key
//     changes, positions, conflicts) in one atomic Pebble batch, fsynced
//     before it returns. A crash leaves all of it or none of it.
//   - The own stream is contiguous from 1: Persist refuses entries that do
//     not continue it, and writes nothing then.
//   - Reads (Get, Entries, Applied, Conflicts, Scan, Count) see every Persist
//     that returned and nothing of one that did not.
//   - A stored record that does not decode is reported as an error wrapping
//     ErrCorrupt that names the record; nothing undecodable is written
//     (Persist decodes each record it encodes before writing it).
//   - The conflict log keeps the newest Config.MaxConflicts records; older
//     ones are dropped, in the same batch, and counted.
//
// A failed Pebble write is sticky: every later Persist returns it. The
// methods are safe for concurrent use; Persist calls are serialized.
//
// # Key layout
//
// Every Pebble key starts with one prefix byte. All integers in keys and
// values are big-endian uint64 (so keys sort by sequence number). Part of
// the format:
//
//	Pebble key            Pebble value
//	0x00 'f'              format version (1)
//	0x00 'd'              conflict records dropped so far (absent: 0)
//	0x01 be64(seq)        an own-stream entry: multileader.AppendEntry
//	0x02 <key bytes>      the key's state: version 1, vclock Set, vclock Counter
//	0x03 <origin bytes>   the origin's applied seq
//	0x04 be64(seq)        conflict record seq: see below
//
// Conflict records are numbered 1, 2, 3, ... and only ever dropped from the
// front, so the records present are exactly seq dropped+1 .. the last one.
// A record's value, in package vclock's encodings (uvarints; strings are a
// uvarint length then the bytes):
//
//	version (1), node, key, reason, winner (node, counter),
//	count, count x version (node, counter, 12-byte hlc time, flags: bit 0
//	deleted, value), count, count x loser (node, counter)
package mlstore
