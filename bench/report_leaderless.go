package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// writeLeaderless renders the leaderless part.
func writeLeaderless(b *strings.Builder, res *Results) {
	x := res.Leaderless
	if x == nil {
		return
	}
	b.WriteString("## Leaderless mode\n\n")
	tls := "mutual TLS between the nodes"
	if !x.PeerTLS {
		tls = "no peer TLS (`--insecure-peers`)"
	}
	procs := "Go's default (every core)"
	if x.NodeProcs > 0 {
		procs = fmt.Sprint(x.NodeProcs)
	}
	if len(x.Runs) > 0 {
		writeLLQuorums(b, x, tls, procs)
	}
	if x.Repair != nil {
		writeLLRepair(b, x, tls, procs)
	}
	if x.Idle != nil && len(x.Idle.Windows) > 0 {
		writeLLIdle(b, x)
	}
	writeNotes(b, x.Notes)
}

// llSide finds a side's medians in a workload ("" workload: any).
func (x *LeaderlessResult) llSide(workload, side string) (SideSummary, bool) {
	for _, w := range x.Workloads {
		if workload != "" && w.Workload != workload {
			continue
		}
		for _, s := range w.Comparison.Sides {
			if s.Side == side && s.Rounds > 0 {
				return s, true
			}
		}
	}
	return SideSummary{}, false
}

func writeLLQuorums(b *strings.Builder, x *LeaderlessResult, tls, procs string) {
	b.WriteString("### Throughput and latency per quorum\n\n")
	fmt.Fprintf(b, "Two clusters of %d nodes side by side, each idle but for its own runs (%s; GOMAXPROCS %s per node): `%s` (`--mode leaderless --replication-factor %d`, anti-entropy at its default rate, %d keys/s) and `%s` (the default mode); %d keys of %d B preloaded in each (leaderless with W=all). The same client program on %d RESP connections (go-redis, one connection per worker, `SET` and `GET` of random preloaded keys): on the leaderless cluster connection i goes to node i mod %d with `TRIREME.W` and `TRIREME.R` set on it, so on average %d requests in %d are coordinated by a node that is not one of the key's replicas; on the single-leader cluster writes go to the leader with `TRIREME.ACK majority` and reads (`TRIREME.CONSISTENCY stale`) are spread over every node (in the mix each worker has one connection of each). Three workloads: writes, reads, and a 50/50 mix. %d interleaved rounds (%.1f s measured after %.1f s of warm-up each; every side of a workload back to back, in order in odd rounds and reversed in even ones); figures are medians over the rounds. Server CPU is the cluster's %d processes. Load average (1, 5, 15 min) %s before the part, %s after it.\n\n",
		x.Nodes, tls, procs, LLSystem, x.N, x.AERate, SLSystem, x.Keys, x.ValueBytes, x.Clients, x.Nodes, x.Nodes-x.N, x.Nodes,
		x.Rounds, x.Duration, x.Warmup, x.Nodes, x.LoadBefore, x.LoadAfter)
	b.WriteString("| (W, R) | writes/s | write p50 ms | write p99 ms | reads/s | read p50 ms | read p99 ms | mixed ops/s | mixed p50 ms | mixed p99 ms | server CPU µs/op (write, read, mixed) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	cell := func(s SideSummary, ok bool) (string, string, string, string) {
		if !ok {
			return "–", "–", "–", "–"
		}
		return fmt.Sprintf("%.0f", s.OpsPerSec), ms(s.P50us), ms(s.P99us), fmt.Sprintf("%.0f", s.ServerCPUus)
	}
	row := func(label, wSide, rSide, mSide string) {
		w, wok := x.llSide(string(WorkWrite), wSide)
		r, rok := x.llSide(string(WorkRead), rSide)
		m, mok := x.llSide(string(WorkMixed), mSide)
		wo, w50, w99, wc := cell(w, wok)
		ro, r50, r99, rc := cell(r, rok)
		mo, m50, m99, mc := cell(m, mok)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s, %s, %s |\n", label, wo, w50, w99, ro, r50, r99, mo, m50, m99, wc, rc, mc)
	}
	for _, q := range x.Quorums {
		row(fmt.Sprintf("(%d, %d)", q[0], q[1]), LLSystem+" "+llWriteSide(q[0]), LLSystem+" "+llReadSide(q[1]), LLSystem+" "+llMixedSide(q[0], q[1]))
	}
	row("single-leader: majority writes, stale reads", SLSystem+" "+SideLLSLWrite, SLSystem+" "+SideLLSLRead, SLSystem+" "+SideLLSLMixed)
	b.WriteString("\n")
	b.WriteString("Each leaderless side over the single-leader side of its workload (ops/s ratio per round, median; the p99 ratio is of the median p99s):\n\n")
	b.WriteString("| workload | leaderless side | vs | ops/s ratio per round | median | p99 ratio |\n|---|---|---|---|---|---|\n")
	for _, w := range x.Workloads {
		for _, v := range w.VsSingleLeader {
			fmt.Fprintf(b, "| %s | %s | %s | %s | **%.2fx** | %.2fx |\n", w.Workload, v.Side, v.Other, fxList(v.Ratios), v.Median, v.P99Ratio)
		}
	}
	b.WriteString("\n")
	for _, w := range x.Workloads {
		fmt.Fprintf(b, "Workload %s, every side's medians:\n\n", w.Workload)
		writeComparison(b, Comparison{Name: w.Workload, Sides: w.Comparison.Sides}, "ops")
	}
	if len(x.Counters) > 0 {
		b.WriteString("What the leaderless nodes counted over each run (summed over the 5 nodes; from before the run to after it, warm-up included): read repairs sent, keys repaired by anti-entropy, Merkle buckets found different, hints stored for an unreachable replica, peer messages dropped on a full queue, writes that timed out:\n\n")
		b.WriteString("| round | side | read repairs | AE repairs | AE buckets differing | hints stored | dropped messages | write timeouts |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range x.Counters {
			e := ""
			if c.Error != "" {
				e = " (" + c.Error + ")"
			}
			fmt.Fprintf(b, "| %d | %s | %d | %d | %d | %d | %d | %d%s |\n", c.Round, c.Side, c.ReadRepairs, c.AERepairs, c.AEBucketsDiffer, c.HintsStored, c.Dropped, c.WriteTimeouts, e)
		}
		b.WriteString("\n")
	}
	if s := x.Settle; s != nil {
		fmt.Fprintf(b, "After the rounds: %s (every node up and seeing every peer, no hint held, each node having started an exchange with every peer and one more since, and every node's last exchange with every peer finding no differing bucket; status polled every 250 ms, limit %.0f s).\n\n", s.describe(), llSettleLimit.Seconds())
	}
	writeRuns(b, x.Runs)
	b.WriteString("\n")
}

func writeLLRepair(b *strings.Builder, x *LeaderlessResult, tls, procs string) {
	r := x.Repair
	b.WriteString("### Repair of a wiped node: anti-entropy vs a single-leader follower's catch-up\n\n")
	fmt.Fprintf(b, "Fresh clusters of the same shapes (%s; GOMAXPROCS %s per node): a leaderless one (N=%d, anti-entropy at its default rate, %d keys/s per node, an exchange every 500 ms with the next peer in turn) and a single-leader one with `--log-retain %s`. The same data: %d keys, each with a random alphanumeric value of %d B drawn per key and per write (%.0f MiB of values). %d trials of each, alternately, nothing else running during a repair or catch-up.\n\n",
		tls, procs, x.N, x.AERate, r.LogRetain, r.Keys, r.ValueBytes, float64(r.Bytes)/(1<<20), max(len(r.Trials), len(r.SLTrials)))
	fmt.Fprintf(b, "- Leaderless: the keys preloaded once with W=all (%.1f s). Per trial a node (n2, n3, ... in turn) is stopped, its data directory removed, and restarted: it comes back empty, as a new actor, and gets its keys back from the other replicas by Merkle anti-entropy alone (no writes, no reads meanwhile). The time is from the process start to the first poll (every %.0f ms: its `/v1/status`, then `DBSIZE`, which counts its own store's keys) at which it holds as many keys as the ring makes it a home replica of; the second figure is the first poll at which its last anti-entropy exchange with every peer found no differing bucket. Afterwards %d of its home keys, chosen at random, are read back from it with `consistency=local`.\n",
		r.LLPreloadS, msOf(llPollEvery), llRepairSample)
	fmt.Fprintf(b, "- Single-leader: as in the snapshot part. Per trial a follower (in turn) is stopped, the same %d keys are written (ack majority) while it is down, the other nodes are given up to 30 s to drop their log past its end (with `--log-retain %s` the WAL keeps only what the store needs beyond its newest 64 MiB segment), and it is restarted; the time is from the process start to the first status poll (every %.0f ms) at which it has applied the leader's commit index; the path (snapshot or log) is what the leader's member list and the follower's metrics showed. The follower keeps its own Raft state: ",
		r.Keys, r.LogRetain, msOf(llSLPollEvery))
	if r.WipedFollower != "" {
		fmt.Fprintf(b, "a follower whose data directory is removed does not come back under its id (checked in this run: %s).\n\n", r.WipedFollower)
	} else {
		b.WriteString("a follower whose data directory is removed cannot rejoin under its id.\n\n")
	}
	if s := r.InSync; s != nil {
		fmt.Fprintf(b, "Leaderless replicas after the preload: %s.\n\n", s.describe())
	}
	fmt.Fprintf(b, "Medians: leaderless repair **%.2f s** (%.0f keys/s from the node answering), single-leader catch-up **%.2f s**; leaderless over single-leader **%s**.\n\n",
		r.MedianS, r.KeysPerSec, r.SLMedianS, fx(r.Ratio))
	if len(r.Trials) > 0 {
		b.WriteString("| trial | node | home keys (held before) | answering s | all keys held s | in sync with every peer s | keys/s | keys repaired by AE | exchanges it started | buckets differing / compared | sampled keys read back | cores (each node) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, t := range r.Trials {
			held := fmt.Sprintf("%.2f", t.Secs)
			if !t.Repaired {
				held = fmt.Sprintf("not within the limit (%d of %d)", t.Count, t.Target)
			}
			in := fmt.Sprintf("%.2f", t.InSyncSecs)
			if !t.InSync {
				in = "not seen"
			}
			fmt.Fprintf(b, "| %d | %s | %d (%d) | %.2f | %s | %s | %.0f | %d | %d | %d / %d | %d of %d | %s |\n", t.Trial, t.Node, t.Home, t.Before, t.ReadySecs, held, in,
				t.KeysPerSec, t.AERepairs, t.AEExchanges, t.AEBucketsDiffer, t.AEBucketsCompared, t.Verified, t.Sampled, coresOf(t.Cores))
		}
		b.WriteString("\n")
	}
	if len(r.SLTrials) > 0 {
		b.WriteString("| trial | follower (log end) | written while down, s | log dropped past it | leader (after) | terms | target index | answering s | caught up s | path | snapshot received MiB | store MiB at the end | member states | cores (each node) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, t := range r.SLTrials {
			cu := fmt.Sprintf("%.2f", t.Secs)
			if !t.CaughtUp {
				cu = "not within the limit"
			}
			fmt.Fprintf(b, "| %d | %s (%d) | %.1f | %s | %s (%s) | %d, %d | %d | %.2f | %s | %s | %.1f | %.1f | %s | %s |\n", t.Trial, t.Follower, t.FollowerLast, t.WriteSecs, yesNo(t.Compacted),
				t.Leader, t.LeaderAfter, t.Terms[0], t.Terms[1], t.Target, t.ReadySecs, cu, t.Path, float64(t.Snapshot)/(1<<20), float64(t.StoreBytes)/(1<<20), t.States, coresOf(t.Cores))
		}
		b.WriteString("\n")
	}
}

func writeLLIdle(b *strings.Builder, x *LeaderlessResult) {
	d := x.Idle
	b.WriteString("### What anti-entropy costs an idle cluster in sync\n\n")
	fmt.Fprintf(b, "The leaderless cluster of the repair measurement (%d keys, in sync), restarted before each of its windows with its default `--anti-entropy-rate` (%d keys/s) or with `--anti-entropy-rate 0`, then left alone for %.0f s (after %.0f s of settling once every node heard from every other); the CPU time of its %d processes over the window, summed (cores = CPU seconds per second). The idle single-leader cluster of the repair measurement (%d nodes, heartbeats every 50 ms) is a reference, measured in the same rounds without a restart; it stays up, idle, during the leaderless windows. %d interleaved rounds; figures are medians.\n\n",
		d.Keys, d.Rate, d.WindowS, d.SettleS, x.Nodes, x.Nodes, d.Rounds)
	b.WriteString("| side | windows | cores, median (range) | CPU ms per second |\n|---|---|---|---|\n")
	for _, s := range d.Sides {
		fmt.Fprintf(b, "| %s | %d | %.3f (%.3f-%.3f) | %.0f |\n", s.Side, s.Windows, s.Cores, s.MinCores, s.MaxCores, s.Cores*1000)
	}
	b.WriteString("\n")
	if d.OnOverOff > 0 {
		diffs := idleRoundDiffs(d.Windows)
		parts := make([]string, len(diffs))
		for i, v := range diffs {
			if v = math.Round(v*1000) / 1000; v == 0 {
				v = 0 // not -0
			}
			parts[i] = fmt.Sprintf("%+.3f", v)
		}
		fmt.Fprintf(b, "Anti-entropy on over off (medians): **%.2fx**, **%+.3f cores** (%+.0f ms of CPU per second over the %d nodes). Round by round, on minus off: %s cores; median **%+.3f**.\n\n",
			d.OnOverOff, d.ExtraCores, d.ExtraCores*1000, x.Nodes, strings.Join(parts, ", "), median(diffs))
	}
	b.WriteString("Every window (anti-entropy counters summed over the nodes, over the window):\n\n| round | side | seconds | cores | each node | exchanges | buckets compared | differing | keys repaired |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range d.Windows {
		ids := make([]string, 0, len(w.ByNode))
		for id := range w.ByNode {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = fmt.Sprintf("%s %.3f", id, w.ByNode[id])
		}
		fmt.Fprintf(b, "| %d | %s | %.1f | %.3f | %s | %d | %d | %d | %d |\n", w.Round, w.Side, w.Seconds, w.Cores, strings.Join(parts, ", "),
			w.AEExchanges, w.AEBucketsCompared, w.AEBucketsDiffer, w.AERepairs)
	}
	b.WriteString("\n")
}
