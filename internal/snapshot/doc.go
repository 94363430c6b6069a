// Package snapshot moves a directory of files, a store checkpoint
// (store.Checkpoint), from a leader to a follower over one byte stream (a
// transport stream, Transport.OpenStream), for a follower whose next log
// entry was compacted away. The follower then installs the directory
// (store.Install).
//
// It promises:
//   - Every byte is checked: each frame carries a CRC-32C (Castagnoli) over
//     its type, length and body, and each file's CRC-32C (from the manifest
//     in version 1, from its file-end frame in version 2) is checked once the
//     file is whole. Nothing is returned before every file and the directory
//     are fsynced.
//   - Install reported (version 2): the receiver installs the snapshot
//     (Receive's install callback) before the stream ends and tells the
//     sender whether it did; Send succeeds only if it did.
//   - Flow control: the sender keeps at most Config.WindowBytes of chunk data
//     unacknowledged; the receiver acknowledges what it has written.
//   - Resume: the receiver keeps what it received in its staging directory.
//     A new transfer of the same snapshot (same identity and manifest)
//     continues from what the receiver holds durably; anything else first
//     empties the staging directory.
//   - Bounded input: everything a peer sends is checked against the limits
//     below before anything is allocated or written for it, file names are
//     plain base names, and the receiver writes only inside its staging
//     directory. Bad input gives an error wrapping ErrBadStream.
//
// # Stream format
//
// All integers are little-endian. Every frame is:
//
//	offset  size  field
//	0       1     frame type
//	1       4     body length L (at most the type's limit, below)
//	5       4     CRC-32C of bytes 0..4 followed by the body
//	9       L     body
//
// Strings are str16 (a uint16 length, then the bytes); byte strings are
// bytes32 (a uint32 length, then the bytes).
//
// The sender opens with an offer (type 1, at most maxOfferBody bytes):
//
//	4   magic "TRSX" (Magic), 1 format version (1 or 2; Version is 2)
//	8   applied index, 8 applied term
//	bytes32 metadata (opaque to this package, at most MaxMetaBytes)
//	4   file count N (at most MaxFiles), then N times:
//	    str16 name (1..MaxNameBytes bytes, a plain base name: no '/', '\',
//	    NUL, "." or ".."; names unique), 8 size (at most MaxFileBytes; all
//	    together at most MaxTotalBytes), 4 CRC-32C of the whole file
//	    (version 2: 0; the file-end frame carries it)
//
// The receiver answers with a resume (type 2): 4 file count (N again), then N
// times 8 bytes held and 4 CRC-32C of those bytes (held <= size). It holds
// them durably (fsynced). The sender then sends, file by file in manifest
// order, chunks (type 3, body at most 12+MaxChunkBytes):
//
//	4   file number (index into the manifest), 8 offset, then the data (1 or more bytes)
//
// The chunks of a file are contiguous and start where the receiver's held
// bytes end, or at offset 0 if the sender found the held bytes' CRC wrong
// (the receiver then truncates the file). In version 2, after a file's
// chunks (or none, if the receiver held it whole and its CRC matched), the
// sender sends a file-end frame (type 7, 8 bytes: 4 file number, 4 CRC-32C
// of the whole file), in manifest order; the receiver checks the file
// against it. After each chunk it has written, the receiver sends an ack
// (type 4, 8 bytes: chunk data bytes written in this transfer so far). When
// every file is whole, checked and fsynced, the receiver fsyncs the
// directories and sends done (type 5, empty body). In version 2 it then
// installs the snapshot and sends installed (type 8, empty body), or an
// error frame whose reason is "install failed" or "not needed"; a version 1
// sender stops reading at done. Either side may send an error (type 6,
// str16 reason of at most 1024 bytes) before it closes; a receiver answers
// an offer of a version it does not read with the reason "unsupported
// version" (version 1 receivers said "bad stream"), and a sender may then
// offer version 1. The constants and values here are part of the format.
package snapshot
