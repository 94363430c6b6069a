// Package llstore is the durable state of one leaderless node, in Pebble:
// its copy of every key it replicates (leaderless.Store), the hints it
// keeps as a stand-in for unreachable home replicas, and its mint floor
// (the highest dot counter its actor drew).
//
// It promises:
//   - Persist writes everything durable in one leaderless.Ready (key
//     copies and drops, hints and their deletions, the mint floor) in one
//     atomic Pebble batch, fsynced before it returns. A crash leaves all of
//     it or none of it. A Ready with nothing to write writes nothing.
//   - Reads (Get, Bucket, Each, Count, Hints, MintFloor) see every Persist
//     that returned and nothing of one that did not.
//   - Bucket(b) is one range scan: keys are stored under their Merkle leaf
//     bucket (merkle.BucketHash(key) >> (64 - leaderless.MerkleDepth), the
//     core's leaf function).
//   - The stored mint floor never goes down.
//   - A stored record that does not decode is reported as an error wrapping
//     ErrCorrupt that names the record (the key, or the hint's home replica
//     and key); never a panic. Nothing undecodable is written: Persist
//     checks every Set as the decoder will.
//
// Failures are sticky: after a Persist that failed (refused, or a batch
// that did not commit), or after Pebble stopped on an error it cannot undo
// (its Logger.Fatalf, which here fails the store instead of crashing the
// process), every call returns the failure, wrapping ErrFailed. The
// methods are safe for concurrent use; Persist calls are serialized.
//
// # Key layout
//
// Every Pebble key starts with one prefix byte. Integers in keys and
// metadata are big-endian. Part of the format:
//
//	Pebble key                           Pebble value
//	0x00 'f'                             format version, be64 (1)
//	0x00 'b'                             Merkle depth of the bucket numbers, be64 (10)
//	0x00 'm'                             mint floor, be64 (absent: 0)
//	0x01 be32(bucket) <key>              the key's copy: version 1, vclock.AppendSet
//	0x02 uvarint(len(for)) <for> <key>   the hint for home replica <for>: version 1, vclock.AppendSet
//
// bucket is the key's Merkle leaf at the stored depth; keys are 1 to
// leaderless.MaxKeyLen bytes, home replica ids 1 to vclock.MaxNodeIDLen.
package llstore
