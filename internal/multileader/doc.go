// Package multileader is Trireme's multi-leader replication core: a pure,
// deterministic state machine for one node. Every node accepts writes,
// appends them to its own ordered stream (origin id + sequence 1, 2, 3...),
// and streams them to every peer; each peer applies each origin's stream in
// order from its durable position. Concurrent writes to a key are detected
// with dotted version vectors (package vclock) and resolved by the cluster's
// Policy (LWW by hybrid logical clock, or Siblings); INCR/INCRBY are a PN
// counter. Every conflict is recorded. See DESIGN.md.
//
// The core has no goroutines, reads no clock (Tick passes physical time
// in), touches no file or socket and uses no randomness. Key state lives in
// the runtime's store, read through Store; the own stream is read through
// Log. The runtime (not yet written) and the simulator (mlsim) drive it.
//
// # Inputs
//
//   - Propose(w): a client write. It is stamped, given a dot, appended to the
//     own stream and applied locally at once; its Result comes in a Ready.
//   - Step(m): a peer message (MsgEntries, MsgAck, MsgResend, MsgHeartbeat).
//     A malformed one returns ErrMalformed/ErrUnknownPeer and changes nothing.
//   - Tick(physical): one tick of logical time, with the physical clock.
//
// # The Ready loop
//
// After any input, while HasReady, call Ready and process it completely, in
// this order, then Advance. (No pipelining: one Ready at a time.)
//
//  1. Entries: append to the own stream, durably (fsync).
//  2. Changes, Applied, Conflicts: write to the store durably in one atomic
//     batch, after step 1. (Applying a change twice is harmless, so a crash
//     between 1 and 2 is repaired by the restart replay; but Applied must
//     never be durable without the Changes it covers.)
//  3. Messages: send, only after steps 1 and 2 are durable. Acks claim
//     durability and entries sent must exist after a crash.
//  4. Results: answer the writers (AckLocal results come in the same Ready
//     as their entry, so they too wait for step 1).
//  5. Advance: the entries are now readable through Log and the changes
//     through Store.
//
// Reads are served from the store (durable state), never from the core: a
// client must not see a write that a crash could still undo, or its context
// would name a dot the node might reissue.
//
// # Restart
//
// New takes the durable positions (Config.Applied, persisted with the
// store) and the own stream (Log). Own entries after Applied[ID] are
// re-applied; peers are probed with heartbeats, whose acks tell the node
// where each peer is, and each peer resumes the streams it consumes from
// its durable positions (gaps are re-requested with MsgResend).
package multileader
