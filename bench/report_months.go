package bench

import (
	"fmt"
	"slices"
	"strings"
)

// The report sections of the parts of issue 16 (running for months).

func ms(us float64) string { return fmt.Sprintf("%.2f", us/1000) }

// writeLearners renders the learners part: the setups' medians, each
// node's share, every run.
func writeLearners(b *strings.Builder, res *Results) {
	l := res.Learners
	if l == nil {
		return
	}
	b.WriteString("## Stale reads with read replicas (learners)\n\n")
	fmt.Fprintf(b, "One cluster of %d voters; %d read replicas (learners, `trireme node --join --learner`) join it halfway. %d keys of %d B preloaded (ack majority), then stale reads (`TRIREME.CONSISTENCY stale` on each RESP connection) of random keys from %d connections, spread round-robin over the nodes that serve reads, the leader first; %d runs per setup, %.1f s measured each after %.1f s of warm-up; figures are medians over the runs. Setups: `%s`, before the learners join (they are not members); then `%s` (reads on the voters, the learners members but idle) and `%s` (reads on all %d nodes) in alternating order, round after round. The learners took %.1f s from their start to having applied the leader's commit index. Load average (1, 5, 15 min) %s before, %s after.\n\n",
		l.Voters, l.Learners, l.Keys, l.ValueBytes, l.Clients, l.Trials, l.Duration, l.Warmup, SetupVoters, SetupVotersIdle, SetupAllLearners,
		l.Voters+l.Learners, l.JoinSecs, l.LoadBefore, l.LoadAfter)
	fmt.Fprintf(b, "This machine has %d cores for every node and the load generator: once they are busy, more processes cannot raise the total read rate, so read replicas show here in where the reads are served (each node's share, the leader's load) and in the CPU each read costs, not in total throughput.\n\n", res.Machine.Cores)
	b.WriteString("| setup | runs | reads/s (range) | p50 ms | p99 ms | server CPU µs/read (every node) | client CPU µs/read |\n|---|---|---|---|---|---|---|\n")
	for _, s := range l.Setups {
		if s.Trials == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %.0f (%.0f-%.0f) | %s | %s | %.1f | %.1f |\n", s.Setup, s.Trials, s.OpsPerSec, s.MinOps, s.MaxOps, ms(s.P50us), ms(s.P99us), s.ServerCPUus, s.ClientCPUus)
	}
	if len(l.Ratios) > 0 {
		fmt.Fprintf(b, "\n`%s` over `%s`, per round (the two back to back): reads/s %s; median %.2fx.\n", SetupAllLearners, SetupVotersIdle, fxList(l.Ratios), median(l.Ratios))
	}
	b.WriteString("\nPer node (medians over the runs; reads counted by the client on the node's connections; cores = the node's CPU time over the window's length):\n\n")
	b.WriteString("| setup | node | role | connections | reads/s | share of reads | cores | CPU µs/read |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range l.Setups {
		for _, n := range s.Nodes {
			per := "–"
			if n.CPUusPerRead > 0 {
				per = fmt.Sprintf("%.1f", n.CPUusPerRead)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %d | %.0f | %.1f%% | %.2f | %s |\n", s.Setup, n.ID, n.Role, n.Clients, n.ReadsPerSec, 100*n.Share, n.Cores, per)
		}
	}
	b.WriteString("\nEvery run:\n\n| setup | run | reads/s | p50 ms | p99 ms | errors | server CPU µs/read | leader share | leader cores | leader CPU µs/read |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range l.Runs {
		var ld NodeReads
		for _, n := range r.Nodes {
			if n.Role == "leader" {
				ld = n
			}
		}
		fmt.Fprintf(b, "| %s | %d | %.0f | %s | %s | %d | %.1f | %.1f%% | %.2f | %.1f |\n", r.Setup, r.Trial, r.Load.OpsPerSec, ms(r.Load.P50us), ms(r.Load.P99us),
			r.Load.Errors, r.Load.ServerCPUus, 100*ld.Share, ld.Cores, ld.CPUusPerRead)
	}
	b.WriteString("\n")
}

func fxList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2fx", x)
	}
	return strings.Join(parts, ", ")
}

// writePhases renders the background writes' phases.
func writePhases(b *strings.Builder, ws []PhaseWrites) {
	b.WriteString("| phase | seconds | writes/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |\n|---|---|---|---|---|---|---|---|\n")
	for _, w := range ws {
		fmt.Fprintf(b, "| %s | %.1f | %.0f | %s | %s | %s | %s | %d |\n", w.Phase, w.Seconds, w.WritesPerSec, ms(w.P50us), ms(w.P99us), ms(w.P999us), ms(w.MaxUs), w.Errors)
	}
	if len(ws) == 2 && ws[0].P99us > 0 {
		fmt.Fprintf(b, "\nWrite p99 during the catch-up over before it: %.2fx.\n", ws[1].P99us/ws[0].P99us)
	}
	b.WriteString("\n")
}

// writeMetrics lists metric samples by name.
func writeMetrics(b *strings.Builder, who string, m map[string]float64) {
	if len(m) == 0 {
		fmt.Fprintf(b, "%s exports no metric with \"snapshot\" in its name.\n\n", who)
		return
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintf(b, "%s's metrics with \"snapshot\" in their names, at the end:\n\n", who)
	for _, n := range names {
		fmt.Fprintf(b, "- `%s` %g\n", n, m[n])
	}
	b.WriteString("\n")
}

// writeMembers says what the leader reported of a member.
func writeMembers(b *strings.Builder, id string, m MemberWatch) {
	fmt.Fprintf(b, "What the leader's `GET /v1/members` said of %s (polled every 100 ms, %d polls, %d listing it, %d in state `snapshot`): %s.", id, m.Polls, m.Listed, m.SnapshotPolls, m.statesPath())
	if m.MaxSnapshotBytesTotal > 0 || m.MaxSnapshotBytesSent > 0 {
		fmt.Fprintf(b, " Largest snapshot_bytes_sent %d, snapshot_bytes_total %d.", m.MaxSnapshotBytesSent, m.MaxSnapshotBytesTotal)
	}
	b.WriteString("\n\n")
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// writeReplica renders the replica part.
func writeReplica(b *strings.Builder, res *Results) {
	x := res.Replica
	if x == nil {
		return
	}
	b.WriteString("## Adding a read replica\n\n")
	fmt.Fprintf(b, "3 voters with `--log-retain %s`, holding %s MiB (%d values of %d B written with ack majority, at %.1f MB/s). Then %d read replicas, one after the other, each removed (`DELETE /v1/members/ID`) and stopped before the next: leadership is moved to n1 if it moved, %d connections write %d B values to the leader at %d writes/s in all (ack majority, paced) for a while, a marker key is written (ack majority), the last key written before the replica starts, then the replica starts (`trireme node --join http://LEADER --learner`) and is timed from its process start until a stale read of the marker over its HTTP API (`GET /v1/kv/replica-marker?consistency=stale`, polled every 20 ms) returns the marker's value, the write load going on meanwhile.\n\n",
		x.LogRetain, mib(x.Bytes), x.Values, x.ValueBytes, x.PreloadMBps, len(x.Trials), bgWorkers, bgValueBytes, bgRate)
	b.WriteString("| replica | leader WAL (entry 1 compacted away) | leader store | answered /v1/status | served the last key (stale read) | caught up by | snapshot received | in state snapshot (MB/s) | cores: leader, replica | write p99 before | during | ratio | writes/s before / during | terms | load average before; after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, tr := range x.Trials {
		serve := fmt.Sprintf("%.2f s", tr.ServeSecs)
		if !tr.Served {
			serve = fmt.Sprintf("not within %.0f s", x.LimitSecs)
		}
		fmt.Fprintf(b, "| %s | %d segments from index %d (%s) | %s MiB | %s | %s | %s | %s | %s | %.2f, %.2f | %s | %s | %s | %s | %s | %s; %s |\n",
			tr.Replica, tr.LeaderWAL.Segments, tr.LeaderWAL.FirstIndex, yesNo(tr.Compacted), mib(tr.LeaderStore), secsOrDash(tr.ReadySecs), serve, tr.Path,
			received(tr.Metrics), stateRate(tr.SnapshotSecs, tr.SnapshotBytes), tr.Cores[tr.Leader], tr.Cores[tr.Replica],
			phaseP99(tr.Writes, 0), phaseP99(tr.Writes, 1), phaseRatio(tr.Writes), phaseRates(tr.Writes), terms(tr.Terms, tr.Leader, tr.LeaderAfter),
			tr.LoadBefore, tr.LoadAfter)
	}
	if x.ServeSecs > 0 {
		fmt.Fprintf(b, "\nMedians over the replicas that served: %.2f s to serve; write p99 %s ms before, %s ms during (per-replica ratio %.2fx).\n", x.ServeSecs, ms(x.P99BeforeUs), ms(x.P99DuringUs), x.P99Ratio)
	}
	b.WriteString("\n")
	for _, tr := range x.Trials {
		writeMembers(b, tr.Replica, tr.Members)
	}
	writeMetrics(b, "The leader", x.LeaderMetrics)
	for _, tr := range x.Trials {
		b.WriteString("Writes on the leader while " + tr.Replica + " joined:\n\n")
		writePhases(b, tr.Writes)
	}
}

// stateRate renders the time a member spent in state snapshot and bytes over it.
func stateRate(secs float64, bytes int64) string {
	if secs <= 0 {
		return "–"
	}
	if bytes <= 0 {
		return fmt.Sprintf("%.1f s", secs)
	}
	return fmt.Sprintf("%.1f s (%.0f)", secs, float64(bytes)/1e6/secs)
}

// coresOf renders nodes' cores as "n1 0.52, n2 0.31".
func coresOf(c map[string]float64) string {
	ids := make([]string, 0, len(c))
	for id := range c {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s %.2f", id, c[id])
	}
	return strings.Join(parts, ", ")
}

// received is the snapshot bytes a node's metrics say it received.
func received(m map[string]float64) string {
	for name, v := range m {
		if strings.Contains(name, "bytes_received") {
			return mib(int64(v)) + " MiB"
		}
	}
	return "–"
}

func phaseP99(ws []PhaseWrites, i int) string {
	if i >= len(ws) {
		return "–"
	}
	return ms(ws[i].P99us) + " ms"
}

func phaseRatio(ws []PhaseWrites) string {
	if len(ws) != 2 {
		return "–"
	}
	return fx(ratio(ws[1].P99us, ws[0].P99us))
}

func phaseRates(ws []PhaseWrites) string {
	if len(ws) != 2 {
		return "–"
	}
	return fmt.Sprintf("%.0f / %.0f", ws[0].WritesPerSec, ws[1].WritesPerSec)
}

func secsOrDash(s float64) string {
	if s == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f s", s)
}

// writeSnapshot renders the snapshot part.
func writeSnapshot(b *strings.Builder, res *Results) {
	x := res.Snapshot
	if x == nil {
		return
	}
	b.WriteString("## Snapshot catch-up\n\n")
	fmt.Fprintf(b, "3 voters with `--log-retain %s`. %d times: a follower is stopped, values of %d B are written (ack majority; %s MiB before the first catch-up, %s MiB before each later one, the same keys again) until the leader and the other follower have compacted their logs past the follower's (checked on their WAL directories), then %d connections write %d B values to the leader at %d writes/s in all (ack majority, paced) for a while, and the follower restarts; it is timed from its process start until it has applied the leader's commit index of that moment. MB/s is the snapshot bytes the follower received over that time. The disk's sequential write bandwidth (%s MiB in 1 MiB writes, one fsync) was measured in the same run before the first catch-up and after each one (no client load on the cluster then): %s MB/s, median %.0f MB/s, which each catch-up is compared with.\n\n",
		x.LogRetain, len(x.Trials), x.ValueBytes, mib(x.Bytes), mib(x.Rewrite), bgWorkers, bgValueBytes, bgRate, diskBytesOf(res), floats(x.DiskSamples), x.DiskMBps)
	b.WriteString("| catch-up | follower | written while down | other WALs (compacted past it) | caught up by | time (start-up) | store bytes received | MB/s | of the disk's | in state snapshot (MB/s) | cores per node | write p99 before | during | ratio | writes/s before / during | terms | load average before; after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, tr := range x.Trials {
		var wals []string
		for id, w := range tr.WALs {
			wals = append(wals, fmt.Sprintf("%s from %d", id, w.FirstIndex))
		}
		slices.Sort(wals)
		tm, mbps, of := fmt.Sprintf("not within %.0f s", x.LimitSecs), "–", "–"
		if tr.CaughtUp {
			tm, mbps, of = fmt.Sprintf("%.2f s (%.2f s)", tr.Secs, tr.ReadySecs), fmt.Sprintf("%.1f", tr.MBPerSec), fmt.Sprintf("%.3fx", tr.OfDisk)
		}
		fmt.Fprintf(b, "| %d | %s (log to %d) | %s MiB at %.1f MB/s | %s (%s) | %s | %s | %s MiB | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s; %s |\n",
			i+1, tr.Follower, tr.FollowerLast, mib(tr.Written), tr.WriteMBps, strings.Join(wals, ", "), yesNo(tr.Compacted), tr.Path, tm, mib(tr.StoreBytes),
			mbps, of, stateRate(tr.SnapshotSecs, tr.StoreBytes), coresOf(tr.Cores), phaseP99(tr.Writes, 0), phaseP99(tr.Writes, 1), phaseRatio(tr.Writes),
			phaseRates(tr.Writes), terms(tr.Terms, tr.Leader, tr.LeaderAfter), tr.LoadBefore, tr.LoadAfter)
	}
	if x.MBPerSec > 0 {
		met := "no"
		if x.OfDisk >= 0.5 {
			met = "yes"
		}
		fmt.Fprintf(b, "\nMedians over the catch-ups by snapshot: %.1f MB/s, %.3fx the disk's %.0f MB/s (goal: at least 0.5x; met: %s); %.2f s; write p99 %s ms before, %s ms during (per-catch-up ratio %.2fx).\n",
			x.MBPerSec, x.OfDisk, x.DiskMBps, met, x.Secs, ms(x.P99BeforeUs), ms(x.P99DuringUs), x.P99Ratio)
	}
	b.WriteString("\n")
	for _, tr := range x.Trials {
		fmt.Fprintf(b, "Bytes received by %s: %s. ", tr.Follower, tr.BytesFrom)
		writeMembers(b, tr.Follower, tr.Members)
	}
	writeMetrics(b, "The leader", x.LeaderMetrics)
	for i, tr := range x.Trials {
		fmt.Fprintf(b, "Writes on the leader around catch-up %d:\n\n", i+1)
		writePhases(b, tr.Writes)
	}
}

func diskBytesOf(res *Results) string {
	if res.Disk == nil {
		return "?"
	}
	return mib(res.Disk.SeqWriteBytes)
}

func floats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}

// terms renders a trial's terms: "3 (n1)" if no election, "3 (n1) > 5 (n2)" if any.
func terms(t [2]uint64, before, after string) string {
	if t[0] == t[1] {
		return fmt.Sprintf("%d (%s)", t[0], before)
	}
	return fmt.Sprintf("%d (%s) > %d (%s)", t[0], before, t[1], after)
}
