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
package chaos
