package bench

import (
	"fmt"
	"strings"
)

// writeMultiLeader renders the multileader part.
func writeMultiLeader(b *strings.Builder, res *Results) {
	x := res.MultiLeader
	if x == nil {
		return
	}
	b.WriteString("## Multi-leader mode\n\n")
	tls := "mutual TLS between the nodes"
	if !x.PeerTLS {
		tls = "no peer TLS (`--insecure-peers`)"
	}
	if len(x.Runs) > 0 {
		b.WriteString("### Writes: ack=local on every node vs single-leader async\n\n")
		fmt.Fprintf(b, "Two clusters of 3 nodes side by side, each idle but for its own runs (%s): `%s` (`--mode multi-leader --conflicts %s`) and `%s` (the default mode); %d keys of %d B preloaded in each (multi-leader with ack=all). The same client program on %d RESP connections (go-redis `SET` of random preloaded keys, one connection per worker): `%s` with `TRIREME.ACK local`, connection i on node i mod 3 (each write answered once durable on the node that took it); `%s` with `TRIREME.ACK async`, every connection on the leader (answered once durable on the leader). %d interleaved rounds (%.1f s measured after %.1f s of warm-up each; the multi-leader side first in odd rounds, last in even ones); figures are medians over the rounds. After every run the part waits until that cluster's replicas have caught up (multi-leader: every node applied every peer's stream to its `last_index`; single-leader: every node applied the leader's last index), so that no run shares the cores with the previous one's replication. Server CPU is the cluster's three processes. Load average (1, 5, 15 min) %s before the part, %s after it.\n\n",
			tls, MLSystem, x.Conflicts, SLSystem, x.Keys, x.ValueBytes, x.Clients, sideName(LoadResult{System: MLSystem, Variant: SideMLLocal}),
			sideName(LoadResult{System: SLSystem, Variant: SideSLAsync}), x.Rounds, x.Duration, x.Warmup, x.LoadBefore, x.LoadAfter)
		writeComparison(b, x.Comparison, "writes")
		if c := x.Contended; c != nil {
			fmt.Fprintf(b, "The multi-leader rounds recorded %d conflicts, summed over the nodes (writes to the same key on two nodes within the replication delay), each a record in the node's conflict log.\n\n", c.ConflictsBefore)
		}
		if len(x.Drains) > 0 {
			fmt.Fprintf(b, "Replicas caught up after each run: from the load generator's return (its connections closed) to the end of the first status poll that showed it (polls every %.0f ms; a figure of one poll's length means caught up at the first look):\n\n| round | side | ms | caught up |\n|---|---|---|---|\n", msOf(mlPollEvery))
			for _, d := range x.Drains {
				ok := yesNo(d.CaughtUp)
				if !d.CaughtUp {
					ok += ": " + d.Lag
				}
				fmt.Fprintf(b, "| %d | %s | %.0f | %s |\n", d.Round, d.Side, d.Ms, ok)
			}
			b.WriteString("\n")
		}
		writeRuns(b, x.Runs)
		b.WriteString("\n")
	}
	if c := x.Contended; c != nil {
		b.WriteString("### Conflicts under contention\n\n")
		fmt.Fprintf(b, "On the multi-leader cluster above (`--conflicts %s`), after the write rounds: %d RESP connections, connection i on node i mod 3, each writing a value of its own (node, connection, counter; %d B) to one of %d hot keys at random, `TRIREME.ACK local`, closed loop, for %.1f s (%.1f s measured for the rate and latency). Conflicts per node are the increase of `trireme_ml_conflicts_total`, and the records in `GET /v1/conflicts` after the run's start; a conflict is recorded by every node where its versions meet, so the distinct ones are counted once (key and set of versions) over the three logs. Then, once the streams had caught up, every hot key was read on every node.\n\n",
			x.Conflicts, c.Clients, x.ValueBytes, c.HotKeys, c.Seconds, x.Duration)
		fmt.Fprintf(b, "- Writes acknowledged: **%d** (%d failed) in %.1f s; measured window %.0f writes/s, p50 %s ms, p99 %s ms, server CPU %.1f µs/write.\n",
			c.Acked, c.Failed, c.Seconds, c.Load.OpsPerSec, ms(c.Load.P50us), ms(c.Load.P99us), c.Load.ServerCPUus)
		lower := ""
		if !c.LogComplete {
			lower = " (a lower bound: a log was not read to its end or dropped records)"
		}
		fmt.Fprintf(b, "- Distinct conflicts: **%d**, **%.0f/s**%s.\n", c.Distinct, c.DistinctPerSec, lower)
		conv := fmt.Sprintf("streams caught up %.0f ms after the writers stopped", c.ConvergeMs)
		if !c.Converged {
			conv = fmt.Sprintf("streams NOT caught up %.0f ms after the writers stopped", c.ConvergeMs)
		}
		fmt.Fprintf(b, "- Converged: **%s**: %s; %d of %d hot keys hold the same on every node (%d with siblings somewhere).\n",
			yesNo(c.Converged && c.KeysDiffering == 0 && c.KeysChecked > 0), conv, c.KeysChecked-c.KeysDiffering, c.KeysChecked, c.KeysSiblings)
		if c.FirstDifference != "" {
			fmt.Fprintf(b, "- First difference: %s\n", c.FirstDifference)
		}
		if c.Load.FirstError != "" {
			fmt.Fprintf(b, "- First error: %s\n", c.Load.FirstError)
		}
		b.WriteString("\n| node | conflicts (metric) | per second | records logged | of hot keys | dropped |\n|---|---|---|---|---|---|\n")
		for _, n := range c.Nodes {
			e := ""
			if n.Error != "" {
				e = " (error: " + n.Error + ")"
			}
			fmt.Fprintf(b, "| %s | %.0f | %.0f | %d | %d | %d%s |\n", n.ID, n.Metric, n.PerSec, n.Logged, n.HotLogged, n.Dropped, e)
		}
		b.WriteString("\n")
	}
	if v := x.Convergence; v != nil {
		b.WriteString("### Convergence after a partition heals\n\n")
		fmt.Fprintf(b, "A fresh multi-leader cluster (%s). Per rep: a paced writer, **%d writes/s** spread over the 3 nodes round-robin (open loop, `SET` with `TRIREME.ACK local`, random keys of %d, %d B unique values, at most %d in flight), writes for %.1f s; then one node (n1, n2, n3, ... in turn) is cut off from the other two in both directions (its proxies blackhole) for **%.1f s** while the writer goes on on all three nodes; then the writer stops (its writes in flight finish), the backlog is read, and the links heal. The convergence time is from the heal to the end of the first poll (every %.0f ms, every node's `/v1/status` in parallel) in which every node has applied every peer's stream up to that peer's `last_index`; limit %.0f s. Median over the reps that converged: **%.0f ms** (%d of %d reps).\n\n",
			v.Settings, v.Rate, mlPacedKeys, x.ValueBytes, mlPacedInFlight, v.LeadInS, v.PartitionS, v.PollMs, v.LimitS, v.MedianMs, v.Converged, len(v.Reps))
		b.WriteString("| rep | cut off | partition s | writes acknowledged (by node) | failed | missed slots | writes/s | backlog at heal, entries (worst stream) | convergence ms | polls |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range v.Reps {
			conv := fmt.Sprintf("%.0f", r.ConvergeMs)
			if !r.Converged {
				conv = "not converged: " + r.Lag
			}
			fmt.Fprintf(b, "| %d | %s | %.1f | %d (%s) | %d | %d | %.0f | %d (%d) | %s | %d |\n", r.Rep, r.Isolated, r.PartitionS, r.Acked, byNodeString(r.AckedByNode),
				r.Errors, r.Missed, r.RatePerSec, r.Backlog, r.MaxStream, conv, r.Polls)
		}
		b.WriteString("\n")
		for _, r := range v.Reps {
			if r.FirstError != "" {
				fmt.Fprintf(b, "- rep %d: first write error: %s\n", r.Rep, r.FirstError)
			}
		}
		b.WriteString("\n")
	}
	writeNotes(b, x.Notes)
}
