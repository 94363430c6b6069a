// Package chaos injects faults into a cluster of real `trireme node`
// processes and checks what clients saw, Jepsen-style.
//
// It owns: the fault proxies (one TCP proxy per directed peer link, Link and
// Net, which can cut, slow or drop traffic); the process supervisor (Procs:
// start, kill -9, SIGSTOP/SIGCONT, restart on the same data directory); the
// nemesis (Nemesis: partitions of several shapes, kills, pauses, slow and
// lossy links, failover timing, and membership cycles that remove a voter
// and join it back from an empty data directory or add and remove a
// learner, with named peers so that every link stays proxied across
// configuration changes); disk faults (Disk: a small tmpfs or ext4
// file system under a node's data directory that fills or turns read-only,
// and RemoveDir); the workloads (single-key registers and a
// set of unique inserts, over HTTP and RESP, in every ack mode and read
// level); the history (History, saved as JSON); and the checkers.
//
// It promises: a history is checked for what its ack modes and read levels
// guarantee and no more. Majority and sync writes with linearizable reads are
// checked for linearizability with porcupine, per key; a write of unknown
// outcome may take effect at any later time; failed and timed-out reads are
// dropped. Every acknowledged majority or sync insert must survive; an
// acknowledged async (or non-majority semi-sync) insert may vanish only into
// some node's rollback journal. Every read, at any level, returns a value some
// client wrote (and not one whose write was answered as failed). After the
// faults heal, the cluster elects a leader and every node converges to the
// same state. A run that breaks any of this reports anomalies and keeps its
// folder: history.json, porcupine's lin-KEY.html, and logs/ID.log per node.
//
// Multi-leader runs (RunConfig.Mode = ModeMultiLeader; multileader.go and
// mlchecker.go) start every node with --mode multi-leader and --conflicts
// (lww or siblings), inject partitions, kills, pauses, slow and lossy
// links (no leadership transfer, no membership change), and run their own
// workload against random nodes: unique inserts, blind writes of distinct
// values to a few contended keys, and increments without idempotency
// keys. After healing, every node must apply every peer's stream to its
// end (how long that takes is the convergence time) and hold the same
// state of every key (value, siblings, causal context); every write
// acknowledged (or answered 504 as durable on its node) must be a final
// value or sibling, a loser in some node's conflict log, or (LWW only)
// possibly overwritten by a later write; every unique insert so
// acknowledged must be present everywhere; and every counter must lie
// between the sum of such increments and that sum plus the unknown ones.
//
// Leaderless runs (RunConfig.Mode = ModeLeaderless; leaderless.go and
// llchecker.go) start every node with --mode leaderless,
// --replication-factor N and --sloppy-quorum=true|false, inject the same
// faults as multi-leader runs, and run HTTP workers that send every
// operation to a random node: blind puts of unique values, read-modify-
// writes and deletes that carry a read's causal context, blind deletes,
// short lives of keys of their own (put, read, delete, then reads), and
// reads, each with a random w= or r=. After healing, the harness waits for
// quiescence (no hint pending, every anti-entropy exchange finding no
// difference) and reads every key on its home replicas (consistency=local).
// With strict quorums, a read with R + W > N that began after a write was
// acknowledged must return it, a value of a write that may supersede it
// (not certainly minted before it was called), or no value when a delete
// may supersede it; its causal context must cover the write's version
// when no tombstone can have been collected; and it must not return a value
// such a write certainly superseded. In every run, every write certainly
// minted (200, or 504 naming replicas that hold it) is, on each home
// replica, present or possibly superseded there; the home replicas of a key
// hold the same state (values, siblings, context); no value a certainly
// minted write certainly superseded (the values its read's context covered,
// or for a blind write through a home replica the values that replica had
// minted) is alive anywhere: deleted values do not come back; and no value
// of a write answered as failed (503: not enough replicas) is ever seen.
package chaos
