package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// WriteReport writes results.json, report.md and the SVG charts into dir.
// The charts are named throughput-WORKLOAD-SIZE.svg and
// latency-WORKLOAD-SIZE.svg; report.md links them by name.
func WriteReport(res *Results, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	charts, err := writeCharts(res, dir)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(Markdown(res, charts)), 0o644)
}

func seriesName(r LoadResult) string { return r.System + " " + r.Variant }

// writeCharts draws, per workload and value size, throughput against
// clients and p99 latency against throughput.
func writeCharts(res *Results, dir string) ([]string, error) {
	var names []string
	for _, w := range []string{"write", "read", "mixed"} {
		var sizes []int
		for _, r := range res.Load {
			if r.Workload == w && !slices.Contains(sizes, r.ValueBytes) {
				sizes = append(sizes, r.ValueBytes)
			}
		}
		for _, size := range sizes {
			var order []string
			byName := map[string][]LoadResult{}
			for _, r := range res.Load {
				if r.Workload != w || r.ValueBytes != size {
					continue
				}
				n := seriesName(r)
				if _, ok := byName[n]; !ok {
					order = append(order, n)
				}
				byName[n] = append(byName[n], r)
			}
			tc := Chart{Title: fmt.Sprintf("%s, %d B values: throughput", w, size), XLabel: "concurrent clients",
				YLabel: "operations per second", XLog: true, YLog: true}
			lc := Chart{Title: fmt.Sprintf("%s, %d B values: p99 latency vs throughput", w, size),
				XLabel: "operations per second", YLabel: "p99 latency (ms)", XLog: true, YLog: true}
			for _, n := range order {
				rs := byName[n]
				slices.SortFunc(rs, func(a, b LoadResult) int { return a.Clients - b.Clients })
				var tp, lp [][2]float64
				for _, r := range rs {
					tp = append(tp, [2]float64{float64(r.Clients), r.OpsPerSec})
					lp = append(lp, [2]float64{r.OpsPerSec, r.P99us / 1000})
				}
				tc.Series = append(tc.Series, Series{Name: n, Points: tp})
				lc.Series = append(lc.Series, Series{Name: n, Points: lp})
			}
			for kind, c := range map[string]Chart{"throughput": tc, "latency": lc} {
				name := fmt.Sprintf("%s-%s-%d.svg", kind, w, size)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(c.SVG()), 0o644); err != nil {
					return nil, err
				}
			}
			names = append(names, fmt.Sprintf("throughput-%s-%d.svg", w, size), fmt.Sprintf("latency-%s-%d.svg", w, size))
		}
	}
	return names, nil
}

func fx(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", v)
}

// Markdown renders the results as markdown tables; charts are file names
// relative to the report.
func Markdown(res *Results, charts []string) string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "# Trireme benchmark report (profile %s)\n\n", res.Profile)
	fmt.Fprintf(&b, "Started %s, took %.0f s. Command: `%s`\n\n", res.Started.Format("2006-01-02 15:04 MST"), res.Seconds, res.Command)
	fmt.Fprintf(&b, "Machine: %s, %d cores, %d GiB, Linux %s, %s; %s; etcd %s. Everything (the three systems' processes and the load generator) runs on this one machine, over loopback.\n\n",
		m.CPU, m.Cores, m.MemoryGiB, m.Kernel, m.Go, m.Redis, m.Etcd)
	if res.NodeProcs > 0 {
		fmt.Fprintf(&b, "Each Trireme node and etcd member ran with GOMAXPROCS=%d (`-node-procs`; `-node-procs 0` gives Go's default, every core, as `trireme up` runs nodes). Redis is single-threaded.\n\n", res.NodeProcs)
	} else {
		b.WriteString("Each Trireme node and etcd member ran with Go's default GOMAXPROCS (every core), as `trireme up` runs its nodes. Redis is single-threaded.\n\n")
	}
	switch res.PeerTLS {
	case "on":
		b.WriteString("Peer TLS on: the Trireme nodes authenticate each other with mutual TLS, as `trireme up` runs them (`-peer-tls`).\n\n")
	case "off":
		b.WriteString("Peer TLS off: the Trireme nodes ran with `--insecure-peers`, plaintext between them (`-peer-tls off`); `trireme up` runs them with mutual TLS.\n\n")
	case "both":
		fmt.Fprintf(&b, "Peer TLS on and off (`-peer-tls both`): `trireme` ran with mutual TLS between its nodes, as `trireme up` runs them, and `%s`, a second cluster next to it, with `--insecure-peers`; see \"Peer TLS on vs off\". Failover, catch-up and memory ran with TLS.\n\n", TriremeNoTLS)
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(&b, "Skipped: %s.\n\n", strings.Join(res.Skipped, ", "))
	}
	if len(res.Notes) > 0 {
		b.WriteString("Notes from the run:\n\n")
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if d := res.Disk; d != nil {
		fmt.Fprintf(&b, "## Disk\n\n| sequential write (1 MiB writes, one fsync) | 4 KiB write+fsync p50 | p99 | fsyncs/s (one at a time) |\n|---|---|---|---|\n")
		fmt.Fprintf(&b, "| %.0f MB/s (%d MiB) | %.0f µs | %.0f µs | %.0f |\n\n", d.SeqWriteMBps, d.SeqWriteBytes>>20, d.FsyncP50us, d.FsyncP99us, d.FsyncPerSecond)
	}
	if len(res.Targets) > 0 {
		fmt.Fprintf(&b, "## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n")
		for _, t := range res.Targets {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, t.Met)
		}
		b.WriteString("\n")
	}
	var rows strings.Builder
	for _, size := range []int{100, 1024} {
		for _, variant := range targetVariants {
			psys, pvar, _ := peerOf("write", variant)
			pr := roundsOf(res, variant, psys, pvar, size)
			for i := range pr.trireme {
				a, p := pr.trireme[i], pr.peer[i]
				fmt.Fprintf(&rows, "| %s | %s %s | %d B | %d | %.0f | %.0f | %.2fx | %.2f | %.2f | %.2f | %.2f |\n", variant, psys, pvar, size, a.Round,
					a.OpsPerSec, p.OpsPerSec, ratio(a.OpsPerSec, p.OpsPerSec), a.P99us/1000, p.P99us/1000, a.P999us/1000, p.P999us/1000)
			}
		}
	}
	if rows.Len() > 0 {
		b.WriteString("## Target rounds\n\n")
		fmt.Fprintf(&b, "Each target pair ran again in interleaved rounds at %d clients after a value size's main runs: the two sides back to back, Trireme first in odd rounds and the peer first in even ones. The targets above are judged on these rounds' medians.\n\n", targetClients)
		b.WriteString("| Trireme variant | peer | value | round | Trireme ops/s | peer ops/s | ratio | Trireme p99 ms | peer p99 ms | Trireme p99.9 ms | peer p99.9 ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		b.WriteString(rows.String())
		b.WriteString("\n")
	}
	writePeerTLS(&b, res)
	for _, w := range []string{"write", "read", "mixed"} {
		var rows []LoadResult
		for _, r := range res.Load {
			if r.Workload == w {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s workload\n\n", map[string]string{"write": "Write", "read": "Read", "mixed": "Mixed (50% writes, 50% reads)"}[w])
		b.WriteString("Ratios are Trireme's figure divided by its peer's (same value size and clients): above 1 is better for throughput, below 1 is better for latency.\n\n")
		b.WriteString("Server CPU is the CPU time of all of the system's processes per operation; client CPU is the load generator's.\n\n")
		b.WriteString("| system | variant | value | clients | ops/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/op | client CPU µs/op | peer | ops/s ratio | p50 ratio | p99 ratio | p99.9 ratio |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			peer := r.Peer
			if peer == "" {
				peer = "–"
			}
			fmt.Fprintf(&b, "| %s | %s | %d B | %d | %.0f | %.2f | %.2f | %.2f | %d | %.0f | %.0f | %s | %s | %s | %s | %s |\n",
				r.System, r.Variant, r.ValueBytes, r.Clients, r.OpsPerSec, r.P50us/1000, r.P99us/1000, r.P999us/1000,
				r.Errors, r.ServerCPUus, r.ClientCPUus, peer, fx(r.ThroughputRatio), fx(r.P50Ratio), fx(r.P99Ratio), fx(r.P999Ratio))
		}
		b.WriteString("\n")
		for _, c := range charts {
			if strings.Contains(c, "-"+w+"-") {
				fmt.Fprintf(&b, "![%s](%s)\n", strings.TrimSuffix(c, ".svg"), c)
			}
		}
		b.WriteString("\n")
	}
	writeFailover(&b, res)
	writeFalseFailover(&b, res)
	if c := res.CatchUp; c != nil {
		b.WriteString("## Catch-up of a follower\n\n")
		b.WriteString("| missed | entries | catch-up time (process start to applied) | catch-up MB/s | of which start-up s | disk sequential write MB/s | write rate while it was down MB/s |\n|---|---|---|---|---|---|---|\n")
		disk := "–"
		if res.Disk != nil {
			disk = fmt.Sprintf("%.0f", res.Disk.SeqWriteMBps)
		}
		fmt.Fprintf(&b, "| %d MiB (%d B values) | %d | %.2f s | %.1f | %.2f | %s | %.1f |\n\n", c.Bytes>>20, c.ValueBytes, c.Entries, c.Seconds, c.MBPerSec, c.ReadySeconds, disk, c.WriteMBps)
	}
	if len(res.Memory) > 0 {
		b.WriteString("## Memory (VmRSS)\n\n| system | process | values | value size | empty MiB | loaded MiB | bytes per value |\n|---|---|---|---|---|---|---|\n")
		for _, x := range res.Memory {
			fmt.Fprintf(&b, "| %s | %s | %d | %d B | %.1f | %.1f | %.0f |\n", x.System, x.Role, x.Values, x.ValueBytes, x.EmptyRSSMB, x.RSSMB, x.BytesPer)
		}
		b.WriteString("\n")
	}
	writeLearners(&b, res)
	writeReplica(&b, res)
	writeSnapshot(&b, res)
	writeSessions(&b, res)
	writeIdempotency(&b, res)
	writeRMW(&b, res)
	writeMultiLeader(&b, res)
	writeLeaderless(&b, res)
	return b.String()
}

// writePeerTLS renders the comparison of Trireme with peer TLS and without
// (Config.PeerTLS "both"): the target rounds' medians, every round, and
// the main runs' pairs. Nothing if no run was made without TLS.
func writePeerTLS(b *strings.Builder, res *Results) {
	mains := tlsMainPairs(res)
	sizes, variants := tlsRoundKeys(res)
	if len(mains) == 0 && len(sizes) == 0 {
		return
	}
	ms := func(us float64) string { return fmt.Sprintf("%.2f", us/1000) }
	b.WriteString("## Peer TLS on vs off\n\n")
	fmt.Fprintf(b, "`trireme` (mutual TLS between its nodes, as `trireme up` runs them) against `%s` (`--insecure-peers`): two clusters side by side, driven by the same client program, each run of one right before or after the same run of the other. Ratios are TLS on over TLS off: below 1 in throughput, above 1 in latency and CPU per operation, is what peer TLS costs. Server CPU is the CPU time of the cluster's three processes per operation.\n\n", TriremeNoTLS)
	if len(sizes) > 0 {
		fmt.Fprintf(b, "Target rounds at %d clients (TLS off ran first in odd rounds, TLS on first in even ones; each side next to the other): medians over the rounds. The throughput ratio is the median of the per-round ratios; the p99 ratio that of the median p99s.\n\n", targetClients)
		b.WriteString("| variant | value | rounds | TLS on ops/s | TLS off ops/s | ratio (range) | TLS on p99 ms | TLS off p99 ms | p99 ratio | TLS on server CPU µs/op | TLS off server CPU µs/op |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, size := range sizes {
			for _, v := range variants[size] {
				pr := tlsRounds(res, v, size)
				if len(pr.trireme) == 0 {
					continue
				}
				on, off, onP99, offP99, ratios := pr.figures()
				onCPU, offCPU := pr.cpu()
				fmt.Fprintf(b, "| %s | %d B | %d | %.0f | %.0f | %.2fx (%.2f-%.2fx) | %s | %s | %s | %.0f | %.0f |\n", v, size, len(ratios), on, off,
					median(ratios), slices.Min(ratios), slices.Max(ratios), ms(onP99), ms(offP99), fx(ratio(onP99, offP99)), onCPU, offCPU)
			}
		}
		b.WriteString("\nEvery round:\n\n")
		b.WriteString("| variant | value | round | TLS on ops/s | TLS off ops/s | ratio | TLS on p99 ms | TLS off p99 ms | TLS on p99.9 ms | TLS off p99.9 ms | TLS on server CPU µs/op | TLS off server CPU µs/op |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, size := range sizes {
			for _, v := range variants[size] {
				pr := tlsRounds(res, v, size)
				for i := range pr.trireme {
					a, p := pr.trireme[i], pr.peer[i]
					fmt.Fprintf(b, "| %s | %d B | %d | %.0f | %.0f | %.2fx | %s | %s | %s | %s | %.0f | %.0f |\n", v, size, a.Round, a.OpsPerSec, p.OpsPerSec,
						ratio(a.OpsPerSec, p.OpsPerSec), ms(a.P99us), ms(p.P99us), ms(a.P999us), ms(p.P999us), a.ServerCPUus, p.ServerCPUus)
				}
			}
		}
		b.WriteString("\n")
	}
	if len(mains) > 0 {
		b.WriteString("Main runs (one pair per cell):\n\n")
		b.WriteString("| workload | variant | value | clients | TLS on ops/s | TLS off ops/s | ratio | TLS on p99 ms | TLS off p99 ms | p99 ratio | TLS on server CPU µs/op | TLS off server CPU µs/op |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, m := range mains {
			a, p := m[0], m[1]
			fmt.Fprintf(b, "| %s | %s | %d B | %d | %.0f | %.0f | %s | %s | %s | %s | %.0f | %.0f |\n", a.Workload, a.Variant, a.ValueBytes, a.Clients,
				a.OpsPerSec, p.OpsPerSec, fx(ratio(a.OpsPerSec, p.OpsPerSec)), ms(a.P99us), ms(p.P99us), fx(ratio(a.P99us, p.P99us)), a.ServerCPUus, p.ServerCPUus)
		}
		b.WriteString("\n")
	}
}
