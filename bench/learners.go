package bench

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// The learners part: stale reads from 3 voters, then from the voters and 2
// read replicas (learners), on one cluster in one run.
//
// The machine has a fixed number of cores that every node and the load
// generator share, so more processes cannot raise the total read rate once
// the cores are busy; what read replicas change is where the reads go: the
// share each node serves, its CPU per read, and the load left on the
// leader. So each run records, per node, the reads it served (counted on
// the client side, by the connection that sent them), and its CPU time
// (/proc/PID/stat) over the measured window.
//
// Three setups: "voters" before the learners join (they are not members
// yet), then, once they have joined and caught up, "voters, learners idle"
// and "voters + learners" in alternating order, round after round, so that
// the comparison that matters (the same cluster, reads spread over 3 or 5
// processes) is made back to back.

// Learner setups.
const (
	SetupVoters      = "voters"                // reads over the 3 voters; no learner is a member
	SetupVotersIdle  = "voters, learners idle" // reads over the 3 voters; the learners are members, running, idle
	SetupAllLearners = "voters + learners"     // reads over the 3 voters and the learners
)

// learnerReplicas is how many read replicas the learners part adds.
const learnerReplicas = 2

// NodeReads is one node's part of a stale-read run.
type NodeReads struct {
	ID   string `json:"id"`
	Role string `json:"role"` // leader, follower, learner
	// Clients is how many of the run's connections went to this node;
	// 0 for a node that served none (idle learners).
	Clients int `json:"clients"`
	// Reads is how many reads this node answered in the measured window
	// (counted by the client, on completion).
	Reads       uint64  `json:"reads"`
	ReadsPerSec float64 `json:"reads_per_sec"`
	Share       float64 `json:"share"` // of the run's reads
	// Cores is the node's CPU time over the window divided by its length.
	Cores float64 `json:"cores"`
	// CPUusPerRead is the node's CPU time over the reads it served (0 if
	// none).
	CPUusPerRead float64 `json:"cpu_us_per_read"`
}

// LearnerRun is one measured run of a setup.
type LearnerRun struct {
	Setup string      `json:"setup"`
	Trial int         `json:"trial"`
	Load  LoadResult  `json:"load"`
	Nodes []NodeReads `json:"nodes"`
}

// LearnerSetup is the medians of a setup's runs.
type LearnerSetup struct {
	Setup     string  `json:"setup"`
	Trials    int     `json:"trials"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MinOps    float64 `json:"min_ops_per_sec"`
	MaxOps    float64 `json:"max_ops_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	// ServerCPUus is every running node's CPU time per read, together.
	ServerCPUus float64 `json:"server_cpu_us_per_op"`
	ClientCPUus float64 `json:"client_cpu_us_per_op"`
	// Nodes holds each node's medians over the runs (Reads is the
	// median too).
	Nodes []NodeReads `json:"nodes"`
}

// LearnersResult is what the learners part measured.
type LearnersResult struct {
	Voters     int            `json:"voters"`
	Learners   int            `json:"learners"`
	ValueBytes int            `json:"value_bytes"`
	Keys       int            `json:"keys"`
	Clients    int            `json:"clients"`
	Trials     int            `json:"trials"`
	Warmup     float64        `json:"warmup_s"`
	Duration   float64        `json:"duration_s"`
	JoinSecs   float64        `json:"join_seconds"` // StartReplicas until both learners applied the leader's commit index
	Setups     []LearnerSetup `json:"setups"`
	// Ratios are, round by round, the reads/s of SetupAllLearners over
	// those of SetupVotersIdle, the two runs back to back.
	Ratios     []float64    `json:"ratios_all_over_voters"`
	Runs       []LearnerRun `json:"runs"`
	LoadBefore string       `json:"load_average_before"`
	LoadAfter  string       `json:"load_average_after"`
}

// TriremeLearners runs the learners part on a fresh cluster under dir:
// 3 voters and learnerReplicas read replicas, keys preloaded with values of
// valueBytes, stale reads at clients connections, p.LearnerTrials runs per
// setup; seed seeds the first run's key choice (each run adds one).
func TriremeLearners(ctx context.Context, binary, dir string, procs int, insecurePeers bool, p Profile, valueBytes, clients int, seed uint64, progress func(string)) (LearnersResult, error) {
	res := LearnersResult{Voters: 3, Learners: learnerReplicas, ValueBytes: valueBytes, Keys: p.Keys, Clients: clients,
		Trials: p.LearnerTrials, Warmup: p.Warmup.Seconds(), Duration: p.Duration.Seconds(), LoadBefore: loadAverage()}
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: 3, Replicas: learnerReplicas, Procs: procs, InsecurePeers: insecurePeers})
	if err != nil {
		return res, err
	}
	defer t.Stop()
	cl := t.Cluster()
	leader, err := t.Leader(ctx)
	if err != nil {
		return res, err
	}
	_, st0, _ := cl.Leader(ctx)
	pre, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return res, err
	}
	progress(fmt.Sprintf("learners: preloading %d keys of %d B", p.Keys, valueBytes))
	if _, err := Preload(ctx, pre, p.Keys, valueBytes, 16, 30*time.Second); err != nil {
		return res, err
	}
	roles := map[string]string{}
	var voters, all []string
	voters = append(voters, leader.ID)
	for _, ns := range cl.Spec().Nodes {
		roles[ns.ID] = "follower"
		if ns.ID != leader.ID {
			voters = append(voters, ns.ID)
		}
	}
	roles[leader.ID] = "leader"
	all = append(slices.Clone(voters), cl.Spec().ReplicaIDs()...)
	for _, id := range cl.Spec().ReplicaIDs() {
		roles[id] = "learner"
	}
	run := func(setup string, trial int, readers, running []string) error {
		seed++
		lr, nodes, err := staleReadRun(ctx, t, setup, readers, running, roles, LoadSpec{Workload: WorkRead, ValueBytes: valueBytes,
			Clients: clients, Keys: p.Keys, Warmup: p.Warmup, Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed})
		if err != nil {
			return err
		}
		res.Runs = append(res.Runs, LearnerRun{Setup: setup, Trial: trial, Load: lr, Nodes: nodes})
		progress(fmt.Sprintf("learners: %-21s trial %d/%d: %8.0f reads/s  p50 %5.2f ms  p99 %5.2f ms  server cpu/read %4.1f µs  leader share %.2f  %s",
			setup, trial, p.LearnerTrials, lr.OpsPerSec, lr.P50us/1000, lr.P99us/1000, lr.ServerCPUus, nodes[0].Share, errorsNote(lr)))
		return nil
	}
	for trial := 1; trial <= p.LearnerTrials; trial++ {
		if err := run(SetupVoters, trial, voters, voters); err != nil {
			return res, err
		}
	}
	progress(fmt.Sprintf("learners: starting %d read replicas (trireme node --join --learner)", learnerReplicas))
	j0 := time.Now()
	jctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = cl.StartReplicas(jctx)
	cancel()
	if err != nil {
		return res, err
	}
	for _, id := range cl.Spec().ReplicaIDs() {
		if err := waitTriremeCaughtUp(ctx, t, id, 60*time.Second); err != nil {
			return res, err
		}
	}
	res.JoinSecs = time.Since(j0).Seconds()
	progress(fmt.Sprintf("learners: %d learners joined and caught up in %.1f s", learnerReplicas, res.JoinSecs))
	for trial := 1; trial <= p.LearnerTrials; trial++ {
		order := []string{SetupVotersIdle, SetupAllLearners}
		if trial%2 == 0 {
			slices.Reverse(order)
		}
		for _, setup := range order {
			readers := voters
			if setup == SetupAllLearners {
				readers = all
			}
			if err := run(setup, trial, readers, all); err != nil {
				return res, err
			}
		}
	}
	if id, st1, err := cl.Leader(ctx); err == nil && (id != leader.ID || st1.Term != st0.Term) {
		progress(fmt.Sprintf("learners: NOTE: the leader changed during the part (%s term %d, then %s term %d): the roles in the table are the first leader's",
			leader.ID, st0.Term, id, st1.Term))
	}
	for _, s := range []string{SetupVoters, SetupVotersIdle, SetupAllLearners} {
		res.Setups = append(res.Setups, summarizeLearnerRuns(s, res.Runs))
	}
	res.Ratios = learnerRatios(res.Runs)
	res.LoadAfter = loadAverage()
	return res, nil
}

func errorsNote(lr LoadResult) string {
	if lr.Errors == 0 {
		return ""
	}
	return fmt.Sprintf("%d errors, first: %s", lr.Errors, lr.FirstError)
}

// staleReadRun runs one stale-read load, its connections spread over the
// nodes readers (connection i to readers[i%len]), and samples every node
// in running (CPU) and the reads each one served over the measured window.
// The result's nodes are in the order of running.
func staleReadRun(ctx context.Context, t *Trireme, setup string, readers, running []string, roles map[string]string, spec LoadSpec) (LoadResult, []NodeReads, error) {
	cl := t.Cluster()
	addrs := make([]string, len(readers))
	counts := make([]atomic.Uint64, len(readers))
	for i, id := range readers {
		ns, err := cl.Node(id)
		if err != nil {
			return LoadResult{}, nil, err
		}
		addrs[i] = ns.RESP
	}
	pids := map[string]int{}
	var pidList []int
	for _, id := range running {
		pid, err := cl.Pid(id)
		if err != nil {
			return LoadResult{}, nil, err
		}
		pids[id] = pid
		pidList = append(pidList, pid)
	}
	type sample struct {
		at    time.Time
		cpu   map[string]time.Duration
		reads []uint64
	}
	var win [2]sample
	take := func() sample {
		s := sample{at: time.Now(), cpu: map[string]time.Duration{}, reads: make([]uint64, len(counts))}
		for id, pid := range pids {
			s.cpu[id], _ = procCPU(pid)
		}
		for i := range counts {
			s.reads[i] = counts[i].Load()
		}
		return s
	}
	base := respVariant(t.System, setup, func() []string { return addrs }, [][]any{{"TRIREME.CONSISTENCY", "stale"}}, 0, nil)
	v := Variant{System: t.System, Name: setup, Pids: func() []int { return pidList },
		Open: func(ctx context.Context, i, n int) (Doer, error) {
			d, err := base.Open(ctx, i, n)
			if err != nil {
				return nil, err
			}
			return &countingDoer{Doer: d, n: &counts[i%len(counts)]}, nil
		},
		Window: func(open bool) {
			if open {
				win[0] = take()
			} else {
				win[1] = take()
			}
		}}
	lr, err := RunLoad(ctx, v, spec)
	if err != nil {
		return lr, nil, err
	}
	secs := win[1].at.Sub(win[0].at).Seconds()
	var total uint64
	for i := range counts {
		total += win[1].reads[i] - win[0].reads[i]
	}
	var out []NodeReads
	for _, id := range running {
		nr := NodeReads{ID: id, Role: roles[id]}
		if i := slices.Index(readers, id); i >= 0 {
			nr.Reads = win[1].reads[i] - win[0].reads[i]
			nr.Clients = spec.Clients / len(readers)
			if i < spec.Clients%len(readers) {
				nr.Clients++
			}
		}
		cpu := win[1].cpu[id] - win[0].cpu[id]
		if secs > 0 {
			nr.ReadsPerSec = float64(nr.Reads) / secs
			nr.Cores = cpu.Seconds() / secs
		}
		if total > 0 {
			nr.Share = float64(nr.Reads) / float64(total)
		}
		if nr.Reads > 0 {
			nr.CPUusPerRead = float64(cpu.Microseconds()) / float64(nr.Reads)
		}
		out = append(out, nr)
	}
	return lr, out, nil
}

// countingDoer counts the reads its Doer completed without error.
type countingDoer struct {
	Doer
	n *atomic.Uint64
}

func (d *countingDoer) Read(ctx context.Context, key string) error {
	err := d.Doer.Read(ctx, key)
	if err == nil {
		d.n.Add(1)
	}
	return err
}

// summarizeLearnerRuns returns the medians of setup's runs.
func summarizeLearnerRuns(setup string, runs []LearnerRun) LearnerSetup {
	s := LearnerSetup{Setup: setup}
	var ops, p50, p99, scpu, ccpu []float64
	type nodeSeries struct {
		first                                NodeReads
		reads, rps, share, cores, cpuPerRead []float64
	}
	var order []string
	nodes := map[string]*nodeSeries{}
	for _, r := range runs {
		if r.Setup != setup {
			continue
		}
		s.Trials++
		ops, p50, p99 = append(ops, r.Load.OpsPerSec), append(p50, r.Load.P50us), append(p99, r.Load.P99us)
		scpu, ccpu = append(scpu, r.Load.ServerCPUus), append(ccpu, r.Load.ClientCPUus)
		for _, n := range r.Nodes {
			ns := nodes[n.ID]
			if ns == nil {
				ns = &nodeSeries{first: n}
				nodes[n.ID] = ns
				order = append(order, n.ID)
			}
			ns.reads, ns.rps, ns.share = append(ns.reads, float64(n.Reads)), append(ns.rps, n.ReadsPerSec), append(ns.share, n.Share)
			ns.cores, ns.cpuPerRead = append(ns.cores, n.Cores), append(ns.cpuPerRead, n.CPUusPerRead)
		}
	}
	if s.Trials == 0 {
		return s
	}
	s.OpsPerSec, s.MinOps, s.MaxOps = median(ops), slices.Min(ops), slices.Max(ops)
	s.P50us, s.P99us, s.ServerCPUus, s.ClientCPUus = median(p50), median(p99), median(scpu), median(ccpu)
	for _, id := range order {
		ns := nodes[id]
		s.Nodes = append(s.Nodes, NodeReads{ID: id, Role: ns.first.Role, Clients: ns.first.Clients, Reads: uint64(median(ns.reads)),
			ReadsPerSec: median(ns.rps), Share: median(ns.share), Cores: median(ns.cores), CPUusPerRead: median(ns.cpuPerRead)})
	}
	return s
}

// learnerRatios pairs the runs of SetupAllLearners and SetupVotersIdle by
// round and returns their throughput ratios, round by round.
func learnerRatios(runs []LearnerRun) []float64 {
	idle := map[int]float64{}
	for _, r := range runs {
		if r.Setup == SetupVotersIdle {
			idle[r.Trial] = r.Load.OpsPerSec
		}
	}
	var out []float64
	for _, r := range runs {
		if r.Setup == SetupAllLearners && idle[r.Trial] > 0 {
			out = append(out, r.Load.OpsPerSec/idle[r.Trial])
		}
	}
	return out
}
