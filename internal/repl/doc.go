// Package repl is Trireme's single-leader replication protocol core: a pure,
// deterministic state machine in the Raft family (terms, quorum elections with
// pre-vote and leader stickiness, log replication with fast backtracking,
// check-quorum, a leader lease, planned leadership transfer and priorities),
// extended with per-write acknowledgement modes.
//
// It owns the protocol: who leads, what is in the log, what is committed, when
// a write's ack mode is met, when a linearizable read may be served. It owns no
// I/O. The core has no goroutines, reads no clock, touches no file or socket
// and draws randomness only from Config.Rand, so the same inputs always yield
// the same outputs. The runtime (internal/node) and the simulator (internal/sim)
// drive it the same way.
//
// # Inputs
//
//   - Tick: one unit of logical time. All timeouts are counted in ticks.
//     The lease is only safe if a node's tick count keeps up with real time:
//     the runtime must call Tick once per elapsed tick interval, catching up
//     after a stall or a pause (a time.Ticker silently drops ticks). Catching
//     up by more than two election timeouts is unnecessary.
//   - Step(m): a message received from a peer. Malformed messages (unknown
//     type or peer, term 0, bad entries, a second leader in the same term)
//     return an error wrapping ErrMalformedMessage or ErrUnknownPeer and
//     change nothing. Messages from older terms are dropped without error;
//     entries at or below the commit index are never overwritten.
//   - Propose(p): a write on the leader, with an ack mode and a timeout.
//   - Read(r): a linearizable read on the leader.
//   - TransferLeadership(to): a planned switchover.
//   - PeerDown(id): the runtime found id's process gone (a refused
//     connection); a hint for the adaptive failure detector.
//
// # The Ready loop
//
// After any input, the runtime calls HasReady, and if true, Ready. Each Ready
// hands over its work: calling Ready again returns only newer work. The runtime
// must process one Ready completely, in this order, before Advance:
//
//  1. Discarded: entries removed from the log by a conflicting append (a
//     divergent, never-committed suffix, typically async writes of a deposed
//     leader). Write each to the rollback journal, durably, before step 2.
//  2. HardState (if not empty) and Entries: persist durably (fsync) together.
//     If Entries[0].Index <= the last index in the log, first truncate the log
//     after Entries[0].Index-1, then append. A HardState must be durable
//     before any message of the same Ready is sent: a vote or a term change
//     must survive a crash.
//  3. Messages: send them, only after step 2 is durable. A follower's
//     MsgAppResp acknowledges entries as durable because it is sent here,
//     after their fsync; the leader's own MsgApps are likewise sent after its
//     own append is durable. (Optional optimization: MsgApp and MsgHeartbeat
//     may leave before step 2 when the Ready's HardState is empty or keeps the
//     persisted Term and Vote: the leader counts its own entries only after
//     Advance. Every other type must wait.)
//  4. CommittedEntries: apply to the state store, in order. They are committed
//     and already durable in the local log (the core never hands out an entry
//     for applying before an earlier Advance confirmed it durable).
//  5. Reads: serve every ReadResult with Err == nil from the store, after step
//     4 (its Index is applied by then). A ReadResult with Err set must be
//     answered with that error. Results: answer the writers.
//  6. Advance(rd): tell the core the batch is done. Advance makes the leader
//     count its own durable entries (commit, AckAsync and the leader part of
//     the other modes), so results that depend on it arrive in a later Ready.
//
// A pipelined runtime may call Ready again before the previous Advance,
// provided it processes the batches strictly in order and calls Advance for
// each, in order. Pipelined, "step 2 is durable" in step 3 means: the entries
// of this Ready and of every earlier one are durable.
//
// Steps 4 and 5 may run apart from steps 2, 3 and 6 (internal/node hands them
// to an applier goroutine as soon as it has the Ready, and calls Advance when
// step 2 is durable, without waiting for them), provided that (a) they run in
// Ready order, and (b) each Ready's reads and results are delivered only after
// its CommittedEntries (and all earlier ones) are applied. This is safe
// because they depend only on earlier Readies: CommittedEntries were
// confirmed durable by an earlier Advance, and Reads and Results were decided
// by earlier inputs. The core counts an entry as applied when it is handed out
// (Status.Applied may then run ahead of the store).
//
// # Storage
//
// The core reads the durable log through Storage (the runtime's WAL; tests and
// the simulator use MemoryStorage). Entries not yet confirmed durable live in
// the core (the unstable tail) until Advance; after Advance they must be
// readable through Storage. The core never writes through Storage.
//
// # Acknowledgement modes
//
// A Proposal's Ack says when its Result is OutcomeOK:
//
//   - AckAsync: the entry is durable on the leader (after Advance of the
//     Ready that carried it). It may be lost on failover; then it appears in
//     some node's Discarded.
//   - AckSemiSync (K): durable on the leader and on K followers. Survives
//     failover only if leader+K is a majority. K greater than the number of
//     followers is refused with ErrNotEnoughPeers.
//   - AckSync: durable on the leader and on every follower.
//   - AckMajority: committed (durable on a majority, and the Raft current-term
//     rule applied).
//
// If the mode is not met within the proposal's timeout, the Result is
// OutcomeTimeout, with Durability saying what was achieved; the write may
// still commit later. If leadership is lost first, the Result is
// OutcomeUnknown. Durability always says the achieved state. The ack mode
// never changes visibility: every node applies an entry only once committed.
//
// # Reads
//
// A linearizable read takes the leader's last log index (not merely its commit
// index) as its read point, so every write acknowledged before the read, in
// any mode, is covered. Leadership is then confirmed by the lease (if valid
// and the level allows it) or by a heartbeat round acknowledged by a quorum
// after the read arrived. The ReadResult is emitted in the Ready whose
// CommittedEntries reach the read point, or later. On leadership loss pending
// reads fail with ErrLeadershipLost; after an election timeout, with
// ErrReadTimeout.
//
// The lease is valid until (tick at which a quorum-acknowledged heartbeat round
// was sent) + LeaseTicks. It is safe because a follower refuses to vote for
// ElectionTicks after hearing from its leader (leader stickiness), and
// Validate requires LeaseTicks < ElectionTicks - DriftTicks. With the
// adaptive failure detector (detector.go) ElectionTicks is the lower bound of
// the learned timeout: what a follower learns moves only the moment it
// campaigns, never its stickiness, so the lease needs no report from the
// followers. PeerDown (a refused connection to the leader) likewise only
// makes a follower campaign once its own stickiness is over. The lease is
// never used during a leadership transfer, whose votes override stickiness.
//
// # Followers
//
// Status.LeaderCommit is the leader's commit index as last heard, and
// Status.TicksSinceLeader how long ago, so a runtime can report staleness of
// follower reads, which it serves from its applied state without the core.
//
// # Test-only bugs
//
// Built with the replbugs tag, Config.Bugs can switch on deliberate protocol
// bugs (vote without the log check, commit old-term entries by counting,
// voting despite a live leader) to prove the simulator's checkers catch them.
package repl
