// Package hostile attacks a real 3-node Trireme cluster (peer mutual TLS on,
// as `trireme up` runs it) the way a buggy driver, a port scanner or a
// broken peer would, and checks that the nodes shrug it off (issue 15). It
// has no code outside its tests:
//
//	go test ./test/hostile/ -v -count=1
//
// TestMain builds cmd/trireme once; TestHostileClientsAndPeers starts one
// cluster with --max-value-bytes 64 KiB (so that the limits derived from
// the value limit are small and the HTTP body deadline is 11 s instead of
// 26 s) and runs, in order, on that same cluster:
//
//   - resp: the frames of issue 15 over the Redis protocol: a bulk length
//     of 2^63-1 (used to panic the node), an array count of 2^63-1 (used to
//     pin a core: the node's CPU time over 2 s after the client leaves is
//     measured), a declared 600 MB value followed by 64 MiB of bytes and a
//     64 MiB inline line without a newline (used to be buffered whole), 50
//     connections stalled after a bulk header at the limit and all but one
//     byte of its bulk, and negative,
//     non-numeric, overflowing and off-by-one counts and lengths. Each gets
//     its protocol error (the text is checked) and a closed connection, or
//     stays open where the limit allows it.
//   - http: 100 connections stalled after a chunked body just under the
//     value limit (each must get 408 within the documented request
//     deadline, 10 s + 1 s per 64 KiB of the value limit, and not before),
//     chunked bodies over the limit (413), malformed, ';'-separated and
//     repeated query parameters (400), a key over the key limit (413), a
//     1 MB key and oversized headers (431).
//   - peer: 40 TLS connections with a member's certificate and 40 without
//     one that claim a 16 MiB frame before the handshake, plain-TCP
//     garbage, 40 TLS ClientHellos that then stall, a completed TLS
//     handshake that then stalls, and the peer-frame fuzz seeds of
//     internal/transport. (Forged messages are TestPeerPortRefusesOutsiders
//     in test/system.)
//   - seeds: every seed of internal/api/resp's FuzzReader and FuzzCommands
//     (copied here; plus any corpus files under its testdata/fuzz), each
//     replayed on a fresh RESP connection.
//   - probe: one RESP connection makes a follower hold most of a command
//     at the command limit (an unfinished MSET of 30 values at the bulk
//     limit, 3.75 MiB; the limit is 4 MiB at this value limit) and stalls:
//     the node must take it all, keep the connection open, count it in its
//     budget for commands (INFO clients, trireme_pending_bytes) and give
//     that back once the connection closes; a command one value longer
//     gets "too big command". (Before the reader stopped copying to grow,
//     a 60 MiB command, legal under the old 64 MiB limit, took a node from
//     28 to 236 MiB.)
//   - budget: 64 connections send that command to a follower at once (240
//     MiB); the node's budget for commands (16 commands at the limit, 64
//     MiB) must hold some and refuse the others ("-ERR server is out of
//     memory for incoming commands, try again", then closed), count no
//     more than 64 MiB in use, and be back to 0 once they have closed. The
//     group also shows that the RSS probe sees memory a node holds: the
//     node's peak must grow by at least half of what it counts as held.
//   - elects: the leader is killed; a new one must be elected and serve a
//     majority write, and the old one must rejoin with the known keys.
//
// After each group every node must be running and answer /v1/status; the
// peak RSS of every node during the group (VmHWM from /proc, reset with
// /proc/PID/clear_refs at the start of the group, and sampled) must stay
// below its bound; the keys written before the first attack must read back
// unchanged from every node (stale reads); a leader must exist and a
// majority write must succeed.
//
// Memory bounds. Each node's bound is its RSS at the end of the warm-up
// (baseline) plus an allowance per hostile connection held open at once,
// plus slackBytes (32 MiB) for what a node's RSS does by itself: the Go
// heap grows up to twice its live size between collections, Pebble's
// memtable fills with the checks' writes, a few hundred goroutine stacks
// come and go. Per connection: 2 x the RESP bulk limit (value limit + 64
// KiB) on RESP, 2 x the value limit on HTTP, 128 KiB on the peer port (TLS
// record buffers and a handshake frame of at most 4 KiB). With a 64 KiB
// value limit that is baseline + 44.75 MiB for the resp group (51
// connections), + 44.5 MiB for http (100), + 42 MiB for peer (80). The
// probe group's connection gets 2 x the command limit (8 MiB), and the
// budget group 2 x the node's budget (128 MiB) besides 256 KiB per
// connection: what a refused connection had received becomes garbage, and
// the heap may grow to twice its live size before it is collected
// (measured: 61 MiB held, 118 to 125 MiB of growth). The largest single attacks
// send 64 MiB each, and the node's socket may take at most 24 MiB of them
// after its protocol error, so a node that buffered what it was sent (as
// before issue 15: 1.9 GB for the 600 MB value, 2.8 GB for the 200 MB
// inline line, 170 MB for 100 stalled HTTP bodies of 1 MiB, 160 MB for 40
// pre-handshake peer frames) would break the bound; so would a node without
// the RESP budget in the budget group (it holds all 240 MiB: 270 MiB of
// RSS when the budget is made too large to matter, against a bound of 200).
//
// CPU bound: once the huge-count clients have left, the node may use at
// most 0.5 s of CPU in 2 s. A node that spun on a count would use about a
// core (the nodes run with GOMAXPROCS = their share of the cores, 1 on a
// 2-core machine), 1.3 s or more even on a machine busy with other work.
//
// Time bounds: a RESP connection must be closed within 5 s of a protocol
// error (the node discards input for at most 1 s first); a stalled HTTP
// body must get its 408 no earlier than the request deadline (11 s at a 64
// KiB value limit) and at most 3 s later; a peer connection that has not
// finished its handshakes must be closed within 1 s (the node's handshake
// deadline) plus 2 s; a new leader must be elected within 10 s.
//
// The package takes about 20 s besides building the binary (the stalled
// HTTP bodies' 11 s deadline is most of it); every wait is bounded. It
// needs Linux (/proc); it is skipped with -short.
package hostile
