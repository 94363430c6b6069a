package bench

import (
	"fmt"
	"slices"
	"strings"
)

// The report sections of the parts of issue 17 (sessions, exactly-once and
// read-modify-write).

// writeComparison renders a comparison's sides (medians over the rounds)
// and its base against every other side, round by round.
func writeComparison(b *strings.Builder, c Comparison, unit string) {
	fmt.Fprintf(b, "| side | rounds | %s/s (range) | p50 ms | p99 ms | p99.9 ms | server CPU µs/op | client CPU µs/op | errors |\n|---|---|---|---|---|---|---|---|---|\n", unit)
	for _, s := range c.Sides {
		if s.Rounds == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %.0f (%.0f-%.0f) | %s | %s | %s | %.1f | %.1f | %d |\n", s.Side, s.Rounds, s.OpsPerSec, s.MinOps, s.MaxOps,
			ms(s.P50us), ms(s.P99us), ms(s.P999us), s.ServerCPUus, s.ClientCPUus, s.Errors)
	}
	b.WriteString("\n")
	if len(c.Sides) == 0 {
		return
	}
	for _, v := range c.Versus {
		fmt.Fprintf(b, "- `%s` over `%s`: %s/s per round %s; **median %.2fx** (%.2f-%.2fx); p99 %s vs %s ms (%.2fx).\n",
			c.Sides[0].Side, v.Other, unit, fxList(v.Ratios), v.Median, slices.Min(v.Ratios), slices.Max(v.Ratios),
			ms(c.Sides[0].P99us), ms(sideP99(c, v.Other)), v.P99Ratio)
	}
	if len(c.Versus) > 0 {
		b.WriteString("\n")
	}
}

func sideP99(c Comparison, side string) float64 {
	for _, s := range c.Sides {
		if s.Side == side {
			return s.P99us
		}
	}
	return 0
}

// writeRuns lists every run of a part.
func writeRuns(b *strings.Builder, runs []LoadResult) {
	b.WriteString("Every run:\n\n| round | side | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/op | client CPU µs/op | errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		fmt.Fprintf(b, "| %d | %s | %.0f | %s | %s | %s | %.1f | %.1f | %d |\n", r.Round, sideName(r), r.OpsPerSec, ms(r.P50us), ms(r.P99us), ms(r.P999us),
			r.ServerCPUus, r.ClientCPUus, r.Errors)
	}
	b.WriteString("\n")
	for _, r := range runs {
		if r.FirstError != "" {
			fmt.Fprintf(b, "- round %d, %s: first error: %s\n", r.Round, sideName(r), r.FirstError)
		}
	}
}

func writeNotes(b *strings.Builder, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(b, "- NOTE: %s\n", n)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
}

// writeSessions renders the sessions part.
func writeSessions(b *strings.Builder, res *Results) {
	x := res.Sessions
	if x == nil {
		return
	}
	b.WriteString("## Session reads on the followers vs linearizable reads on the leader\n\n")
	fmt.Fprintf(b, "One cluster of 3 voters; %d keys of %d B preloaded. Two sides, the same client program on %d RESP connections (`TRIREME.ACK majority`): one operation in %d writes the connection's own key (a follower forwards it to the leader), the next reads it back and checks it (read-your-writes), the others read random keys. `%s`: the connections in `TRIREME.CONSISTENCY session`, spread over the 2 followers (the node default `--session-wait`, 100 ms). `%s`: linearizable, all on the leader. %d interleaved rounds (%.1f s measured after %.1f s of warm-up each; the two sides back to back, the session side first in odd rounds); figures are medians over the rounds. Reads and writes are timed separately; CPU comes from /proc/PID/stat at the window's edges. Load average (1, 5, 15 min) %s before, %s after.\n\n",
		x.Keys, x.ValueBytes, x.Clients, x.WriteEvery, SideSession, SideLinearizable, x.Rounds, x.Duration, x.Warmup, x.LoadBefore, x.LoadAfter)
	b.WriteString("| side | rounds | reads/s (range) | writes/s | read p50 ms | read p99 ms | write p99 ms | leader cores | leader CPU µs/read | leader CPU µs/op | followers' cores | every node's CPU µs/read | client CPU µs/op | read-your-writes checks (failed) | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range x.Sides {
		if s.Rounds == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %.0f (%.0f-%.0f) | %.0f | %s | %s | %s | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f | %d (%d) | %d |\n", s.Side, s.Rounds,
			s.ReadsPerSec, s.MinReads, s.MaxReads, s.WritesPerSec, ms(s.ReadP50us), ms(s.ReadP99us), ms(s.WriteP99us), s.LeaderCores,
			s.LeaderCPUusPerRead, s.LeaderCPUusPerOp, s.FollowerCores, s.ServerCPUusPerRead, s.ClientCPUusPerOp, s.RYWChecks, s.RYWViolations, s.Errors)
	}
	b.WriteString("\n")
	if len(x.Ratios) > 0 {
		fmt.Fprintf(b, "- `%s` over `%s`, per round: reads/s %s, **median %.2fx**; the leader's CPU per read %s, **median %.2fx**.\n",
			SideSession, SideLinearizable, fxList(x.Ratios), median(x.Ratios), fxList(x.LeaderCPURatios), median(x.LeaderCPURatios))
	}
	for _, s := range x.Sides {
		if len(s.Served) > 0 {
			fmt.Fprintf(b, "- How the followers served the session reads (`trireme_session_reads_total`, every round, warm-up included): %s.\n", servedString(s.Served))
		}
	}
	b.WriteString("\n")
	writeNotes(b, x.Notes)
	b.WriteString("Every run:\n\n| round | side | leader | reads/s | writes/s | read p99 ms | write p99 ms | leader cores | leader CPU µs/read | followers' cores | read-your-writes checks (failed) | served | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range x.Runs {
		fmt.Fprintf(b, "| %d | %s | %s | %.0f | %.0f | %s | %s | %.2f | %.1f | %.2f | %d (%d) | %s | %d |\n", r.Round, r.Side, r.Leader, r.ReadsPerSec, r.WritesPerSec,
			ms(r.ReadP99us), ms(r.WriteP99us), r.LeaderCores, r.LeaderCPUusPerRead, r.FollowerCores, r.RYWChecks, r.RYWViolations, servedString(r.Served), r.Load.Errors)
	}
	b.WriteString("\n")
	for _, r := range x.Runs {
		if r.FirstViolation != "" {
			fmt.Fprintf(b, "- round %d, %s: first read-your-writes failure: %s\n", r.Round, r.Side, r.FirstViolation)
		}
		if r.Load.FirstError != "" {
			fmt.Fprintf(b, "- round %d, %s: first error: %s\n", r.Round, r.Side, r.Load.FirstError)
		}
	}
	b.WriteString("\n")
}

// writeIdempotency renders the idempotency part.
func writeIdempotency(b *strings.Builder, res *Results) {
	x := res.Idempotency
	if x == nil {
		return
	}
	b.WriteString("## Idempotency keys: what exactly-once costs a write\n\n")
	fmt.Fprintf(b, "One cluster of 3 voters; %d keys of %d B preloaded. `PUT /v1/kv/KEY?ack=majority` of random keys on the leader from %d HTTP/1.1 connections (Go's net/http, one kept-alive connection per worker), with a fresh random `Idempotency-Key` (128 bits in hex) on every write and without: the same client program. For reference, in the same rounds: `SET` with `TRIREME.ACK majority` over RESP (go-redis, one connection per worker), the bench's usual write, to show what the HTTP path itself costs. %d interleaved rounds (%.1f s measured after %.1f s of warm-up each; the side with keys first in odd rounds, last in even ones); figures are medians over the rounds. Load average (1, 5, 15 min) %s before, %s after.\n\n",
		x.Keys, x.ValueBytes, x.Clients, x.Rounds, x.Duration, x.Warmup, x.LoadBefore, x.LoadAfter)
	writeComparison(b, x.Comparison, "writes")
	for _, v := range x.Comparison.Versus {
		if !strings.HasSuffix(v.Other, " "+SidePlainPut) {
			continue
		}
		fmt.Fprintf(b, "Goal: writes with keys at least %.2fx those without (within 5%%): **%s** (median of the rounds' ratios %.2fx).\n\n", idempotencyGoal, yesNo(v.Median >= idempotencyGoal), v.Median)
	}
	if len(x.Metrics) > 0 {
		writeMetricList(b, "The leader's metrics with \"idempot\" in their names, at the end", x.Metrics)
	}
	writeNotes(b, x.Notes)
	writeRuns(b, x.Runs)
	b.WriteString("\n")
}

// writeMetricList lists metric samples by name under a heading line.
func writeMetricList(b *strings.Builder, heading string, m map[string]float64) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintf(b, "%s:\n\n", heading)
	for _, n := range names {
		fmt.Fprintf(b, "- `%s` %g\n", n, m[n])
	}
	b.WriteString("\n")
}

// writeRMW renders the rmw part.
func writeRMW(b *strings.Builder, res *Results) {
	x := res.RMW
	if x == nil {
		return
	}
	b.WriteString("## INCR and MSET against Redis\n\n")
	fmt.Fprintf(b, "A cluster of 3 voters and Redis (a primary and 2 replicas, appendonly yes, appendfsync always), each with %d keys of %d B and %d counters preloaded. The same go-redis client program on %d connections to the leader or primary: `INCR counter:KEY` of a random counter, `MSET` of %d random keys with values of %d B. Trireme's are `TRIREME.ACK majority` writes, answered once committed (fsynced on a majority) and applied on the leader; Redis answers once its primary has applied and fsynced the command and replicates it asynchronously, so each Redis command also ran pipelined with `WAIT 2` (both replicas acknowledged receiving it; WAIT does not wait for their fsync): the like-for-like comparison. %d interleaved rounds (%.1f s measured after %.1f s of warm-up each; Trireme first in odd rounds, last in even ones); figures are medians over the rounds. Load average (1, 5, 15 min) %s before, %s after.\n\n",
		x.Keys, x.ValueBytes, x.Keys, x.Clients, x.MSETKeys, x.ValueBytes, x.Rounds, x.Duration, x.Warmup, x.LoadBefore, x.LoadAfter)
	if !x.Redis {
		b.WriteString("Redis did not run (not selected with -systems, or not installed): Trireme's figures only.\n\n")
	}
	for _, c := range x.Comparisons {
		fmt.Fprintf(b, "### %s\n\n", c.Name)
		writeComparison(b, c, "ops")
	}
	if len(x.Counters) > 0 {
		b.WriteString("Counters at the end (every INCR of the part, the preload's and the warm-ups' included):\n\n| system | counters | sum | INCRs acknowledged | INCRs failed | sum = acknowledged |\n|---|---|---|---|---|---|\n")
		for _, c := range x.Counters {
			ok := yesNo(c.Error == "" && c.Sum == int64(c.Acked))
			if c.Error != "" {
				ok = "error: " + c.Error
			}
			fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %s |\n", c.System, c.Keys, c.Sum, c.Acked, c.Failed, ok)
		}
		b.WriteString("\n")
	}
	writeNotes(b, x.Notes)
	writeRuns(b, x.Runs)
	b.WriteString("\n")
}
