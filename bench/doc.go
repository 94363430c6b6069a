// Package bench is Trireme's comparative benchmark: it starts a 3-node
// Trireme cluster (real `trireme node` processes), Redis (a primary and two
// replicas, appendonly yes, appendfsync always) and etcd (three embedded
// members, each in its own process), all on loopback with fsync on, drives
// them with one closed-loop load generator, and measures throughput and
// latency per ack mode and read level, failover time, follower catch-up,
// and memory. Trireme's nodes talk over mutual TLS, as `trireme up` runs
// them; -peer-tls off runs them without, and -peer-tls both measures a
// second cluster without TLS next to the first, run for run, to give what
// peer TLS costs. Three more parts, run only when named with -parts,
// measure what running for months needs (issue 16): stale reads with read
// replicas (learners), adding a read replica to a cluster whose leader has
// compacted its log, and a follower's snapshot catch-up against the disk's
// bandwidth. Three more, also run only when named, measure issue 17: session
// reads on the followers against linearizable reads on the leader, what an
// Idempotency-Key costs an HTTP write, and INCR and MSET against Redis's.
// Failover (issue 18) is measured against the high-availability stacks
// people run: Trireme with each way it has of electing, etcd, Redis with
// Sentinel and PostgreSQL with Patroni, by one probe client writing every
// 10 ms through each system's own failover mechanism, which also counts the
// acknowledged writes lost; falsefailover counts elections while the
// leader is alive, under jittery peer links and leader stalls. A part,
// multileader, also run only when named, measures multi-leader mode: writes
// acknowledged locally on every node against single-leader async writes,
// conflicts under a contended workload, and how long the nodes take to
// converge after a partition heals. Another, leaderless, also run only
// when named, measures leaderless mode (issue 20) on 5 nodes with N=3:
// throughput and latency per (W, R) against a single-leader cluster's
// majority writes and stale reads, how long a wiped node takes to get its
// keys back by anti-entropy against a single-leader follower's catch-up of
// the same data, and the CPU anti-entropy costs an idle cluster in sync.
//
// It lives in its own module so that etcd's dependencies stay out of
// Trireme's. It promises: every figure it reports was measured in the same
// run, on the same machine, with the command recorded in the results; a
// system that is not installed (redis-server, redis-sentinel, patroni,
// postgresql, etcd-server), or a Trireme variant whose flag the binary
// lacks, is skipped with a message, never silently. It makes no pass/fail judgement on speed: targets are
// reported as met or not.
//
// Run it with `go run ./cmd/trireme-bench -profile short` from bench/ (or
// `go run -C bench ./cmd/trireme-bench ...` from the repository root).
package bench
