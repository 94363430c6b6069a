package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/chaos"
	"github.com/trireme-db/trireme/internal/cluster"
)

// The false-failover part (issue 18): a 3-node cluster whose peer
// traffic goes through internal/chaos's TCP proxies, each adding 0-4 ms
// (2 ± 2 ms) to every chunk in each direction, under a full write load for
// Profile.FalseFailoverDuration; then the same with the leader stopped
// (SIGSTOP, SIGCONT 200 ms later) every Profile.StallEvery. The leader
// never fails, so every election counts as a false failover. Counted for
// each failure detector the binary has.

// FalseFailoverRun is one run of the false-failover part.
type FalseFailoverRun struct {
	Variant  string  `json:"variant"`  // "fixed", "adaptive"
	Scenario string  `json:"scenario"` // falseJitter or falseStalls
	Seconds  float64 `json:"seconds"`
	Settings string  `json:"settings"`
	// Stalls is how many times the leader was stopped for StallMs.
	Stalls      int     `json:"stalls"`
	StallMs     float64 `json:"stall_ms,omitempty"`
	StallEveryS float64 `json:"stall_every_s,omitempty"`
	// ElectionsStarted is the increase of trireme_elections_started_total
	// summed over the nodes; TermChange that of the highest term;
	// LeaderChanges the changes of leader (or of its term) seen by polling
	// every node's /v1/status every 100 ms.
	ElectionsStarted int    `json:"elections_started"`
	TermChange       uint64 `json:"term_change"`
	LeaderChanges    int    `json:"leader_changes"`
	// The write load: 64 connections to the leader, majority acks.
	Ops       uint64  `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Errors    uint64  `json:"errors"`
	P99us     float64 `json:"p99_us"`
	// Skipped, if set, is why the run was not made.
	Skipped string `json:"skipped,omitempty"`
}

// The two scenarios of a variant, in the order they run.
const (
	falseJitter = "jitter"
	falseStalls = "jitter + leader stalls"
)

// False-failover settings.
const (
	falseJitterMax = 4 * time.Millisecond // per chunk, uniform in [0, falseJitterMax)
	falseStallFor  = 200 * time.Millisecond
	falseClients   = 64
	falseValue     = 100 // bytes
)

// falseFailoverPart runs both scenarios for each failure detector, each
// detector on a fresh cluster; a detector the binary lacks gets rows that
// say so.
func (r *runner) falseFailoverPart(ctx context.Context, step func(name string, f func() error)) {
	cfg := r.cfg
	flags, err := triremeNodeFlags(ctx, cfg.TriremeBin)
	if err != nil {
		step("falsefailover", func() error { return err })
		return
	}
	for _, d := range triremeDetectors(flags) {
		if d.Variant == "coordinator" {
			continue // the coordinator's failure detection is etcd's lease, not a detector of Trireme's
		}
		if d.Skip != "" {
			for _, sc := range []string{falseJitter, falseStalls} {
				r.res.FalseFailover = append(r.res.FalseFailover, FalseFailoverRun{Variant: d.Variant, Scenario: sc, Settings: d.Settings, Skipped: d.Skip})
			}
			r.res.Skipped = append(r.res.Skipped, fmt.Sprintf("falsefailover %s: %s", d.Variant, d.Skip))
			r.say("falsefailover %s: %s", d.Variant, d.Skip)
			continue
		}
		step("falsefailover "+d.Variant, func() error {
			dir := filepath.Join(cfg.WorkDir, "falsefailover-"+d.Variant)
			defer func() {
				if !cfg.Keep {
					os.RemoveAll(dir)
				}
			}()
			runs, err := falseFailovers(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, d, cfg.Profile, cfg.Seed, r.progress)
			r.res.FalseFailover = append(r.res.FalseFailover, runs...)
			return err
		})
	}
}

// falseFailovers starts a cluster behind jittery proxies with detector d
// and makes both runs on it, one after the other.
func falseFailovers(ctx context.Context, bin, dir string, procs int, d triremeDetector, p Profile, seed uint64, progress func(string)) ([]FalseFailoverRun, error) {
	c, err := chaos.NewCluster(chaos.ClusterConfig{Binary: bin, Dir: dir, Nodes: 3, ClusterID: "trireme-bench-falsefailover",
		NodeArgs: append([]string{"--log-level", "warn"}, d.Args...), Seed: seed})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	n, err := cluster.Procs(procs, 3)
	if err != nil {
		return nil, err
	}
	if env := cluster.ProcsEnv(n); len(env) > 0 {
		for _, id := range c.IDs {
			c.Procs.SetPrefix(id, append([]string{"env"}, env...))
		}
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err = c.Healthy(hctx)
	cancel()
	if err != nil {
		return nil, err
	}
	c.Net.SetAll(func(_, _ string, s *chaos.LinkState) { s.Delay, s.Jitter = 0, falseJitterMax })
	settings := d.Settings + fmt.Sprintf("; peer links through TCP proxies adding 0-%v per chunk (%v ± %v) in each direction",
		falseJitterMax, falseJitterMax/2, falseJitterMax/2)
	var out []FalseFailoverRun
	for _, sc := range []string{falseJitter, falseStalls} {
		run := FalseFailoverRun{Variant: d.Variant, Scenario: sc, Settings: settings}
		stallEvery := time.Duration(0)
		if sc == falseStalls {
			stallEvery = p.StallEvery
			run.StallMs, run.StallEveryS = float64(falseStallFor.Milliseconds()), stallEvery.Seconds()
		}
		progress(fmt.Sprintf("falsefailover %s, %s: %v of writes from %d connections", d.Variant, sc, p.FalseFailoverDuration, falseClients))
		err := falseFailoverRun(ctx, c, &run, p.FalseFailoverDuration, stallEvery, seed)
		out = append(out, run)
		if err != nil {
			return out, fmt.Errorf("falsefailover %s, %s: %w", d.Variant, sc, err)
		}
		progress(fmt.Sprintf("falsefailover %s, %s: %d elections started, term +%d, %d leader changes seen, %d stalls; %.0f writes/s, %d errors",
			d.Variant, sc, run.ElectionsStarted, run.TermChange, run.LeaderChanges, run.Stalls, run.OpsPerSec, run.Errors))
	}
	return out, nil
}

// electionCount sums trireme_elections_started_total over the nodes and
// returns it with the highest term any node reports.
func electionCount(ctx context.Context, c *chaos.Cluster) (elections int, term uint64, err error) {
	for _, id := range c.IDs {
		m, err := scrapeMetrics(ctx, c.Addrs[id].HTTP, "elections_started_total")
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", id, err)
		}
		elections += int(m["trireme_elections_started_total"])
	}
	for _, st := range c.Statuses(ctx) {
		term = max(term, st.Term)
	}
	return elections, term, nil
}

// falseFailoverRun writes at full load for d (stopping the leader for
// falseStallFor every stallEvery if set, the first after half of it) and
// fills run with what happened.
func falseFailoverRun(ctx context.Context, c *chaos.Cluster, run *FalseFailoverRun, d, stallEvery time.Duration, seed uint64) error {
	hctx, cancel := context.WithTimeout(ctx, time.Minute)
	lead, err := c.Healthy(hctx)
	cancel()
	if err != nil {
		return err
	}
	e0, t0, err := electionCount(ctx, c)
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { run.LeaderChanges = watchLeaders(wctx, c) })
	var stallErr error
	if stallEvery > 0 {
		wg.Go(func() { run.Stalls, stallErr = stallLeader(wctx, c, stallEvery) })
	}
	v := respVariant("trireme", "majority", func() []string { return []string{c.Addrs[lead].RESP} },
		[][]any{{"TRIREME.ACK", "majority"}}, 0, nil)
	lr, err := RunLoad(ctx, v, LoadSpec{Workload: WorkWrite, ValueBytes: falseValue, Clients: falseClients, Keys: 10000,
		Duration: d, OpTimeout: 10 * time.Second, Seed: seed})
	stop()
	wg.Wait()
	run.Seconds, run.Ops, run.OpsPerSec, run.Errors, run.P99us = lr.Seconds, lr.Ops, lr.OpsPerSec, lr.Errors, lr.P99us
	if err != nil {
		return err
	}
	if stallErr != nil {
		return stallErr
	}
	e1, t1, err := electionCount(ctx, c)
	if err != nil {
		return err
	}
	run.ElectionsStarted, run.TermChange = e1-e0, t1-t0
	return nil
}

// watchLeaders polls every node's status every 100 ms until ctx ends and
// returns how often the leader (or its term) changed.
func watchLeaders(ctx context.Context, c *chaos.Cluster) int {
	type lt struct {
		lead string
		term uint64
	}
	var last lt
	changes := 0
	for ctx.Err() == nil {
		if lead, term := c.Leader(ctx); lead != "" {
			now := lt{lead, term}
			if last.lead != "" && now != last {
				changes++
			}
			last = now
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return changes
}

// stallLeader stops the leader for falseStallFor every every, the first
// after every/2, until ctx ends; it returns how many stalls it made.
func stallLeader(ctx context.Context, c *chaos.Cluster, every time.Duration) (int, error) {
	stalls := 0
	next := time.Now().Add(every / 2)
	for {
		select {
		case <-ctx.Done():
			return stalls, nil
		case <-time.After(time.Until(next)):
		}
		next = next.Add(every)
		lead, _ := c.Leader(ctx)
		if lead == "" {
			continue // none agreed on now (an election under way): no stall this time
		}
		if err := c.Procs.Pause(lead); err != nil {
			return stalls, err
		}
		time.Sleep(falseStallFor)
		if err := c.Procs.Resume(lead); err != nil {
			return stalls, err
		}
		stalls++
	}
}
