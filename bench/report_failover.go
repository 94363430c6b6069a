package bench

import (
	"fmt"
	"strings"
)

// writeFailover renders the failover part: one row per system or Trireme
// variant (time from the kill to the first acknowledged write, and the
// acknowledged writes missing afterwards), then each row's settings,
// client and trials. Nothing if the part did not run.
func writeFailover(b *strings.Builder, res *Results) {
	if len(res.Failover) == 0 {
		return
	}
	b.WriteString("## Failover (kill -9 of the leader or primary to the first acknowledged write)\n\n")
	fmt.Fprintf(b, "One client writes every %v, each write a key and value of its own with a %v timeout, open loop (a write that hangs does not hold back the next), through the system's own failover mechanism (\"client\" below). The leader or primary is killed with SIGKILL (PostgreSQL + Patroni: the node's Patroni and PostgreSQL together, as a machine crash); the time is from the kill to the acknowledgement of the first write issued after it. Then the killed node is restarted and the cluster made whole again (every member back, replicating, caught up), and every acknowledged write of the trial is read back from the leader or primary: \"missing\" counts those gone or holding another value. p90 is the nearest rank.\n\n",
		probeInterval, probeTimeout)
	b.WriteString("| system | trials | median ms | p90 ms | min ms | max ms | acknowledged writes missing |\n|---|---|---|---|---|---|---|\n")
	for _, f := range res.Failover {
		if !f.measured() {
			why := f.Skipped
			if why == "" {
				why = "failed before a trial completed"
			}
			fmt.Fprintf(b, "| %s | – | not measured (%s) | | | | |\n", f.Name(), why)
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %.0f | %.0f | %.0f | %.0f | %d of %d |\n", f.Name(), len(f.TrialsMs), f.MedianMs, f.P90Ms, f.MinMs, f.MaxMs,
			f.MissingWrites, f.AckedWrites)
	}
	b.WriteString("\nSettings, client and trials:\n\n")
	for _, f := range res.Failover {
		fmt.Fprintf(b, "- %s: %s.", f.Name(), f.Settings)
		if f.Probe != "" {
			fmt.Fprintf(b, " Client: %s.", f.Probe)
		}
		if len(f.TrialsMs) > 0 {
			fmt.Fprintf(b, " Trials (ms): %s.", joinMs(f.TrialsMs))
		}
		if f.MissingWrites > 0 {
			fmt.Fprintf(b, " Missing by trial: %s; first missing keys: %s.", joinInts(f.MissingByTrial), strings.Join(f.MissingKeys, ", "))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// writeFalseFailover renders the false-failover part's runs. Nothing if
// the part did not run.
func writeFalseFailover(b *strings.Builder, res *Results) {
	if len(res.FalseFailover) == 0 {
		return
	}
	b.WriteString("## False failovers (elections while the leader is alive)\n\n")
	fmt.Fprintf(b, "A 3-node cluster whose peer links go through TCP proxies (internal/chaos) that delay every chunk by 0-%v (%v ± %v) in each direction, under a full write load (%d connections to the leader, %d B values, ack majority). The second run of each detector also stops the leader (SIGSTOP, then SIGCONT %v later) at a fixed interval, the first after half of it. The leader never fails: every election is a false failover. Elections started sum trireme_elections_started_total over the nodes; the term change is that of the highest term; leader changes are those seen by polling every node's /v1/status every 100 ms.\n\n",
		falseJitterMax, falseJitterMax/2, falseJitterMax/2, falseClients, falseValue, falseStallFor)
	b.WriteString("| detector | run | seconds | leader stalls | elections started | term change | leader changes seen | writes/s | write errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.FalseFailover {
		if r.Skipped != "" {
			fmt.Fprintf(b, "| %s | %s | – | – | not measured (%s) | | | | |\n", r.Variant, r.Scenario, r.Skipped)
			continue
		}
		scenario := r.Scenario
		if r.StallEveryS > 0 {
			scenario += fmt.Sprintf(" (%.0f ms every %.0f s)", r.StallMs, r.StallEveryS)
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %d | %d | %d | %d | %.0f | %d |\n", r.Variant, scenario, r.Seconds, r.Stalls,
			r.ElectionsStarted, r.TermChange, r.LeaderChanges, r.OpsPerSec, r.Errors)
	}
	b.WriteString("\nSettings:\n\n")
	seen := map[string]bool{}
	for _, r := range res.FalseFailover {
		if !seen[r.Variant] {
			seen[r.Variant] = true
			fmt.Fprintf(b, "- %s: %s.\n", r.Variant, r.Settings)
		}
	}
	b.WriteString("\n")
}

func joinMs(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ", ")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
