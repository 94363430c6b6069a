// Command trireme-bench compares Trireme with Redis and etcd (and, for
// failover, Redis Sentinel and PostgreSQL with Patroni) on this machine
// and writes a markdown report, JSON results and SVG charts.
//
//	cd bench && go run ./cmd/trireme-bench -profile short
//	go run -C bench ./cmd/trireme-bench -profile full -out ../docs/bench
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/trireme-db/trireme/bench"
)

func main() {
	bench.RunHelperIfAsked()
	bench.SilenceRedisLog()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("trireme-bench", flag.ContinueOnError)
	profile := fs.String("profile", "short", "tiny, short (about a minute) or full (under 20 minutes)")
	systems := fs.String("systems", "trireme,redis,etcd", "systems to measure, comma-separated: "+strings.Join(bench.AllSystems, ", ")+"; in the failover part, trireme is three rows (failure detector fixed, adaptive, and the etcd coordinator; a variant whose flag trireme node lacks is reported skipped), redis is Redis with Sentinel (needs redis-sentinel) and patroni is PostgreSQL with Patroni over etcd (failover only; needs the Debian packages patroni, postgresql, etcd-server); a system not installed is reported skipped")
	parts := fs.String("parts", strings.Join(bench.DefaultParts, ","), "parts to run, comma-separated: "+strings.Join(bench.AllParts, ", ")+" (learners, replica and snapshot, the measurements of issue 16, sessions, idempotency and rmw, those of issue 17, falsefailover, issue 18's elections under jittery peer links and leader stalls, multileader, multi-leader mode's writes against single-leader async ones, conflicts under contention and convergence after a partition heals, and leaderless, issue 20's W/R quorums on 5 nodes with N=3 against single-leader majority writes and stale reads, a wiped node's repair by anti-entropy against a follower's catch-up, and what anti-entropy costs an idle cluster, run only when named)")
	failoverTrials := fs.Int("failover-trials", 0, "override the profile's failover trials per system (tiny 1, short 3, full 20)")
	falseDuration := fs.Duration("false-failover-duration", 0, "override how long each falsefailover run writes (tiny 3s, short 20s, full 5m)")
	stallEvery := fs.Duration("stall-every", 0, "override how often the falsefailover run with stalls stops the leader for 200 ms, the first after half of it (tiny 2s, short 10s, full 30s)")
	mlRate := fs.Int("ml-rate", 0, "override the multileader part's paced write rate during a partition, writes/s over the 3 nodes (500 in every profile)")
	mlPartition := fs.Duration("ml-partition", 0, "override how long the multileader part cuts a node off from the others (tiny 2s, short and full 10s)")
	mlReps := fs.Int("ml-reps", 0, "override how many partitions the multileader part makes, one after the other (tiny 1, short 3, full 5)")
	out := fs.String("out", "bench-results", "directory for report.md, results.json and the SVG charts")
	procs := fs.Int("node-procs", -1, "GOMAXPROCS of each Trireme node and etcd member: -1 = this machine's cores shared among a cluster's processes (one per process on 2 cores, like Redis's one thread; less CPU per write, longer latency tails); 0 = Go's default (every core), as `trireme up` runs nodes")
	bin := fs.String("trireme-bin", "", "trireme binary to run (default: build cmd/trireme from -repo)")
	repo := fs.String("repo", "", "Trireme checkout (default: found above the working directory)")
	work := fs.String("work", "", "directory for the systems' data (default: a temporary one, removed at the end)")
	keep := fs.Bool("keep", false, "keep the data directory")
	seed := fs.Uint64("seed", 1, "load generator seed")
	only := fs.String("only", "", "regexp: run only the load runs whose system/workload/variant matches (e.g. 'trireme/write/(async|majority)'); with -peer-tls both, a run of trireme-notls is kept when it or its twin trireme/... matches")
	peerTLS := fs.String("peer-tls", "on", "peer TLS between the Trireme nodes: on (mutual TLS, as `trireme up` runs them), off (--insecure-peers), or both: a second cluster without TLS (system trireme-notls) runs next to the first, each selected Trireme load run and target round runs on both back to back, and the report compares them (\"Peer TLS on vs off\")")
	clients := fs.String("clients", "", "override the profile's client counts, comma-separated (e.g. 64)")
	sizes := fs.String("sizes", "", "override the profile's value sizes in bytes, comma-separated (e.g. 1024)")
	duration := fs.Duration("duration", 0, "override the profile's measured time per load run")
	rounds := fs.Int("rounds", -1, "override the profile's interleaved target rounds (each target pair again at 64 clients, back to back, after a value size's main runs; the targets are judged on their medians); 0 = none (the parts of issue 17 then run 1 round)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p, ok := bench.Profiles()[*profile]
	if !ok {
		fmt.Fprintf(os.Stderr, "trireme-bench: -profile %q: want tiny, short or full\n", *profile)
		return 2
	}
	if *duration > 0 {
		p.Duration = *duration
	}
	if *failoverTrials > 0 {
		p.FailoverTrials = *failoverTrials
	}
	if *falseDuration > 0 {
		p.FalseFailoverDuration = *falseDuration
	}
	if *stallEvery > 0 {
		p.StallEvery = *stallEvery
	}
	if *mlRate > 0 {
		p.MLWriteRate = *mlRate
	}
	if *mlPartition > 0 {
		p.MLPartition = *mlPartition
	}
	if *mlReps > 0 {
		p.MLPartitionReps = *mlReps
	}
	if *rounds != -1 { // -1: the profile's; other negatives fail Validate, naming the field
		p.TargetRounds = *rounds
	}
	ints := func(flagName, s string) ([]int, bool) {
		var out []int
		for _, x := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(x))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "trireme-bench: -%s %q: want positive integers\n", flagName, s)
				return nil, false
			}
			out = append(out, n)
		}
		return out, true
	}
	if *clients != "" {
		if p.Clients, ok = ints("clients", *clients); !ok {
			return 2
		}
	}
	if *sizes != "" {
		if p.ValueSizes, ok = ints("sizes", *sizes); !ok {
			return 2
		}
	}
	var onlyFn func(string) bool
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(os.Stderr, "trireme-bench: -only: %v\n", err)
			return 2
		}
		onlyFn = re.MatchString
	}
	split := func(flagName, s string, allowed []string) ([]string, error) {
		var outs []string
		for _, x := range strings.Split(s, ",") {
			x = strings.TrimSpace(x)
			if x == "" {
				continue
			}
			if !slices.Contains(allowed, x) {
				return nil, fmt.Errorf("-%s: unknown %q (want some of %s)", flagName, x, strings.Join(allowed, ","))
			}
			outs = append(outs, x)
		}
		return outs, nil
	}
	sys, err := split("systems", *systems, bench.AllSystems)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trireme-bench:", err)
		return 2
	}
	pts, err := split("parts", *parts, bench.AllParts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trireme-bench:", err)
		return 2
	}
	if *bin == "" && slices.Contains(sys, "trireme") {
		start := *repo
		if start == "" {
			start = "."
		}
		r, err := bench.FindRepo(start)
		if err != nil {
			fmt.Fprintln(os.Stderr, "trireme-bench:", err)
			return 2
		}
		*repo = r
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := bench.Config{Profile: p, Systems: sys, Parts: pts, TriremeBin: *bin, NodeProcs: *procs, Repo: *repo,
		WorkDir: *work, Keep: *keep, Progress: os.Stderr, Seed: *seed, Only: onlyFn, PeerTLS: *peerTLS}
	if err := cfg.Validate(); err != nil { // before anything is started or written
		fmt.Fprintln(os.Stderr, "trireme-bench:", err)
		return 2
	}
	res, runErr := bench.Run(ctx, cfg)
	res.Command = "trireme-bench " + strings.Join(args, " ")
	if err := bench.WriteReport(res, *out); err != nil {
		fmt.Fprintln(os.Stderr, "trireme-bench: writing the report:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "report: %s/report.md, results: %s/results.json\n", *out, *out)
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "trireme-bench: some parts failed:", runErr)
		return 1
	}
	return 0
}
