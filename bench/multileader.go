package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/chaos"
	"github.com/trireme-db/trireme/internal/cluster"
)

// The multileader part: what multi-leader mode (trireme node --mode
// multi-leader, --conflicts lww) gives and costs, in three measurements.
//
//  1. Writes with ack=local on every node of a 3-node multi-leader
//     cluster against writes with ack=async on the leader of a 3-node
//     single-leader cluster: both clusters run side by side (each idle
//     but for its own runs), the same client program (go-redis SET, one
//     connection per worker, targetClients workers; the multi-leader
//     workers pinned to the nodes round-robin) in interleaved rounds;
//     after each run the part waits until that cluster's replicas have
//     caught up, so that the next run does not share the cores with a
//     replication backlog, and records how long that took.
//  2. Conflicts under contention, on the same multi-leader cluster:
//     targetClients workers, pinned to the nodes round-robin, write unique
//     values to mlHotKeys hot keys; conflicts recorded per node (the
//     metric, and the records in /v1/conflicts), then, once the streams
//     have caught up, every hot key read on every node: the same value
//     everywhere, or not.
//  3. Convergence after a partition heals, on a fresh 3-node multi-leader
//     cluster whose peer traffic goes through internal/chaos's TCP proxies
//     (as the falsefailover part's): a paced writer (Profile.MLWriteRate
//     writes/s, open loop, spread over the nodes round-robin) writes for a
//     second, one node is cut off from the other two for
//     Profile.MLPartition, the writer stops, the links heal, and every
//     mlPollEvery every node's /v1/status is read until, on every node,
//     every peer's stream is applied up to that peer's last_index.

// The sides of the write comparison.
const (
	MLSystem    = "multi-leader"
	SLSystem    = "single-leader"
	SideMLLocal = "SET ack=local, every node"
	SideSLAsync = "SET ack=async, leader"
)

// Settings of the multileader part.
const (
	mlHotKeys          = 100
	mlPollEvery        = 15 * time.Millisecond
	mlLeadIn           = time.Second      // paced writes before each partition
	mlConvergeLimit    = 60 * time.Second // after a heal
	mlSettleLimit      = 30 * time.Second // before a rep, after a load run
	mlPacedConns       = 16               // per node
	mlPacedInFlight    = 48               // writes in flight at most; beyond, a slot is missed
	mlPacedKeys        = 10000
	mlPacedTimeout     = 2 * time.Second
	mlConflictPageSize = 1000
	mlConflictPages    = 200 // per node: at most 200,000 records read
	mlConflictsPolicy  = "lww"
)

// MultiLeaderResult is what the multileader part measured.
type MultiLeaderResult struct {
	ValueBytes int     `json:"value_bytes"`
	Keys       int     `json:"keys"`
	Clients    int     `json:"clients"`
	Rounds     int     `json:"rounds"`
	Warmup     float64 `json:"warmup_s"`
	Duration   float64 `json:"duration_s"`
	Conflicts  string  `json:"conflicts_policy"`
	PeerTLS    bool    `json:"peer_tls"`
	// Comparison's base is the multi-leader side, against the
	// single-leader one.
	Comparison Comparison   `json:"comparison"`
	Runs       []LoadResult `json:"runs"`
	// Drains is, after each run, how long its cluster took to have every
	// replica caught up.
	Drains      []MLDrain      `json:"drains,omitempty"`
	Contended   *MLContended   `json:"contended,omitempty"`
	Convergence *MLConvergence `json:"convergence,omitempty"`
	Notes       []string       `json:"notes,omitempty"`
	LoadBefore  string         `json:"load_average_before"`
	LoadAfter   string         `json:"load_average_after"`
}

// MLDrain is how long a cluster took, after a load run ended, to have
// every replica caught up (multi-leader: every peer stream applied to the
// peer's last_index on every node; single-leader: every node applied the
// leader's last index).
type MLDrain struct {
	Round    int     `json:"round"`
	Side     string  `json:"side"`
	Ms       float64 `json:"ms"`
	CaughtUp bool    `json:"caught_up"`
	Lag      string  `json:"lag,omitempty"` // what was still behind, if not caught up
}

// MLContended is the conflicts measurement.
type MLContended struct {
	HotKeys int     `json:"hot_keys"`
	Clients int     `json:"clients"`
	Seconds float64 `json:"seconds"` // of writing, warm-up included
	// Load is the measured window's figures (warm-up excluded).
	Load LoadResult `json:"load"`
	// ConflictsBefore is the conflicts the nodes had recorded before the
	// run, summed (their status's count): those of the write rounds.
	ConflictsBefore uint64 `json:"conflicts_before"`
	// Acked and Failed count every write of the run, warm-up included.
	Acked  uint64            `json:"acked"`
	Failed uint64            `json:"failed"`
	Nodes  []MLNodeConflicts `json:"nodes"`
	// Distinct is the conflicts in the nodes' logs counted once each (a
	// key and its set of versions; several nodes may record the same
	// one), and DistinctPerSec that over Seconds.
	Distinct       int     `json:"distinct"`
	DistinctPerSec float64 `json:"distinct_per_sec"`
	// LogComplete is false when a log was not read to its end (dropped
	// records, too many pages): Distinct is then a lower bound.
	LogComplete bool `json:"log_complete"`
	// Convergence after the writers stopped: the streams caught up
	// (ConvergeMs), then every hot key read on every node.
	Converged       bool    `json:"converged"`
	ConvergeMs      float64 `json:"converge_ms"`
	KeysChecked     int     `json:"keys_checked"`
	KeysDiffering   int     `json:"keys_differing"`
	KeysSiblings    int     `json:"keys_with_siblings"`
	FirstDifference string  `json:"first_difference,omitempty"`
}

// MLNodeConflicts is one node's conflicts during the contended run.
type MLNodeConflicts struct {
	ID string `json:"id"`
	// Metric is the increase of trireme_ml_conflicts_total.
	Metric float64 `json:"metric"`
	// Logged is the records in /v1/conflicts after the run's start, HotLogged
	// those of hot keys; Dropped the increase of the log's dropped count.
	Logged    int     `json:"logged"`
	HotLogged int     `json:"hot_logged"`
	Dropped   uint64  `json:"dropped"`
	PerSec    float64 `json:"per_sec"` // Metric over the run's seconds
	Error     string  `json:"error,omitempty"`
}

// MLConvergence is the partition measurement.
type MLConvergence struct {
	Rate       int              `json:"writes_per_sec"`
	PartitionS float64          `json:"partition_s"`
	LeadInS    float64          `json:"lead_in_s"`
	PollMs     float64          `json:"poll_ms"`
	LimitS     float64          `json:"limit_s"`
	Settings   string           `json:"settings"`
	Reps       []MLPartitionRep `json:"reps"`
	// MedianMs is the median over the reps that converged.
	MedianMs  float64 `json:"median_ms"`
	Converged int     `json:"converged"`
}

// MLPartitionRep is one partition and heal.
type MLPartitionRep struct {
	Rep      int    `json:"rep"`
	Isolated string `json:"isolated"`
	// PartitionS is how long the node was cut off (from the cut to the
	// heal: the set duration, plus the writer's last writes and the
	// status poll before the heal).
	PartitionS float64 `json:"partition_s"`
	// The paced writer, lead-in and partition: slots scheduled, writes
	// acknowledged (in all, and by node), failed, and slots missed
	// (every writer busy, or the scheduler late).
	Slots       uint64            `json:"slots"`
	Acked       uint64            `json:"acked"`
	AckedByNode map[string]uint64 `json:"acked_by_node"`
	Errors      uint64            `json:"errors"`
	Missed      uint64            `json:"missed"`
	FirstError  string            `json:"first_error,omitempty"`
	RatePerSec  float64           `json:"rate_per_sec"` // acked over the writer's time
	// Backlog at the heal: over every node and peer stream, the peer's
	// last_index minus what the node had applied of it; MaxStream the
	// largest single stream's.
	Backlog   uint64 `json:"backlog_entries"`
	MaxStream uint64 `json:"backlog_max_stream"`
	// ConvergeMs is from the heal to the end of the first poll that showed
	// every stream caught up; Polls is how many polls that took.
	Converged  bool    `json:"converged"`
	ConvergeMs float64 `json:"converge_ms"`
	Polls      int     `json:"polls"`
	Lag        string  `json:"lag,omitempty"` // what was behind at the limit
}

// mlNode is one node's client addresses.
type mlNode struct{ ID, HTTP, RESP string }

// multiLeaderPart runs the multileader part if the binary has --mode.
func (r *runner) multiLeaderPart(ctx context.Context, step func(name string, f func() error)) {
	cfg := r.cfg
	flags, err := triremeNodeFlags(ctx, cfg.TriremeBin)
	if err != nil {
		step("multileader", func() error { return err })
		return
	}
	if _, ok := flags["mode"]; !ok {
		msg := "multileader: skipped: binary has no --mode"
		r.res.Skipped = append(r.res.Skipped, msg)
		r.say("%s", msg)
		return
	}
	dir := filepath.Join(cfg.WorkDir, "multileader")
	step("multileader", func() error {
		r.say("multileader: load average %s", loadAverage())
		x, err := TriremeMultiLeader(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, cfg.peerTLS() == "off", cfg.Profile, cfg.Profile.ValueSizes[0], cfg.Seed, r.progress)
		r.res.MultiLeader = &x
		r.say("multileader: load average %s", loadAverage())
		if !cfg.Keep {
			os.RemoveAll(dir)
		}
		return err
	})
}

// TriremeMultiLeader runs the three measurements of the multileader part
// under dir, one after the other; an error in one does not stop the next.
func TriremeMultiLeader(ctx context.Context, binary, dir string, procs int, insecurePeers bool, p Profile, valueBytes int, seed uint64, progress func(string)) (MultiLeaderResult, error) {
	res := MultiLeaderResult{ValueBytes: valueBytes, Keys: p.Keys, Clients: targetClients, Rounds: issue17Rounds(p), Warmup: p.Warmup.Seconds(),
		Duration: p.Duration.Seconds(), Conflicts: mlConflictsPolicy, PeerTLS: !insecurePeers, LoadBefore: loadAverage()}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	errCmp := mlCompareAndContend(ctx, binary, dir, procs, insecurePeers, p, valueBytes, seed, hc, &res, progress)
	if errCmp != nil {
		progress(fmt.Sprintf("multileader: ERROR: %v", errCmp))
	}
	if ctx.Err() != nil {
		res.LoadAfter = loadAverage()
		return res, errors.Join(errCmp, ctx.Err())
	}
	conv, errConv := mlPartitions(ctx, binary, filepath.Join(dir, "partition"), procs, p, valueBytes, seed, hc, progress)
	if len(conv.Reps) > 0 {
		res.Convergence = &conv
	}
	res.LoadAfter = loadAverage()
	return res, errors.Join(errCmp, errConv)
}

// mlCompareAndContend starts the two clusters, runs the write comparison,
// stops the single-leader one and runs the contended workload on the
// multi-leader one.
func mlCompareAndContend(ctx context.Context, binary, dir string, procs int, insecure bool, p Profile, size int, seed uint64, hc *http.Client, res *MultiLeaderResult, progress func(string)) error {
	progress(fmt.Sprintf("multileader: starting a 3-node multi-leader cluster (--conflicts %s) and a 3-node single-leader cluster, side by side", mlConflictsPolicy))
	ml, err := StartTriremeSetup(ctx, binary, filepath.Join(dir, "ml"), TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecure,
		Mode: MultiLeaderMode, NodeArgs: []string{"--conflicts", mlConflictsPolicy}})
	if err != nil {
		return fmt.Errorf("multi-leader cluster: %w", err)
	}
	defer ml.Stop()
	ml.System = MLSystem
	sl, err := StartTriremeSetup(ctx, binary, filepath.Join(dir, "sl"), TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecure})
	if err != nil {
		return fmt.Errorf("single-leader cluster: %w", err)
	}
	slStopped := false
	defer func() {
		if !slStopped {
			sl.Stop()
		}
	}()
	sl.System = SLSystem
	mlNodes := specNodes(ml.Cluster().Spec())
	slNodes := specNodes(sl.Cluster().Spec())
	mlRESP := make([]string, len(mlNodes))
	for i, n := range mlNodes {
		mlRESP[i] = n.RESP
	}
	mlSide := respVariant(MLSystem, SideMLLocal, func() []string { return mlRESP }, [][]any{{"TRIREME.ACK", "local"}}, 0, ml.Pids)
	slSide, err := sl.Variant(ctx, SideSLAsync, "async", 0, "linearizable")
	if err != nil {
		return err
	}
	mlPre := respVariant(MLSystem, "SET ack=all", func() []string { return mlRESP }, [][]any{{"TRIREME.ACK", "all"}}, 0, nil)
	slPre, err := sl.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return err
	}
	for _, pre := range []Variant{mlPre, slPre} {
		progress(fmt.Sprintf("multileader: %s: preloading %d keys of %d B (%s)", pre.System, p.Keys, size, pre.Name))
		if _, err := Preload(ctx, pre, p.Keys, size, 16, 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w", pre.System, err)
		}
	}
	drain := func(system string) (time.Duration, bool, string) {
		if system == MLSystem {
			return waitCaughtUp(ctx, hc, mlNodes, mlConverged, time.Now(), mlSettleLimit)
		}
		return waitCaughtUp(ctx, hc, slNodes, slCaughtUp, time.Now(), mlSettleLimit)
	}
	for _, s := range []string{MLSystem, SLSystem} {
		if _, ok, lag := drain(s); !ok {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: the replicas had not caught up %v after the preload: %s", s, mlSettleLimit, lag))
		}
	}
	lead0, st0, err := sl.Cluster().Leader(ctx)
	if err != nil {
		return fmt.Errorf("single-leader cluster: %w", err)
	}
	sides := []Variant{mlSide, slSide}
	for round := 1; round <= res.Rounds; round++ {
		for _, i := range roundOrder(len(sides), round) {
			seed++
			lr, err := runSide(ctx, sides[i], LoadSpec{Workload: WorkWrite, ValueBytes: size, Clients: targetClients, Keys: p.Keys,
				Warmup: p.Warmup, Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed}, round, res.Rounds, "multileader", progress)
			if err != nil {
				return err
			}
			res.Runs = append(res.Runs, lr)
			d, ok, lag := drain(sides[i].System)
			res.Drains = append(res.Drains, MLDrain{Round: round, Side: sideName(lr), Ms: msOf(d), CaughtUp: ok, Lag: lag})
			progress(fmt.Sprintf("multileader: round %d/%d: %s: replicas caught up %v after the run (%s)", round, res.Rounds, sides[i].System,
				d.Round(time.Millisecond), map[bool]string{true: "caught up", false: "NOT caught up: " + lag}[ok]))
		}
	}
	res.Comparison = compare("multi-leader vs single-leader writes", res.Runs, []string{sideName(LoadResult{System: MLSystem, Variant: SideMLLocal}),
		sideName(LoadResult{System: SLSystem, Variant: SideSLAsync})})
	if id, st, err := sl.Cluster().Leader(ctx); err != nil || id != lead0 || st.Term != st0.Term {
		res.Notes = append(res.Notes, fmt.Sprintf("single-leader: the leader changed during the rounds (%s term %d, then %s term %d, %v): its side's writes went to the first one", lead0, st0.Term, id, st.Term, err))
	}
	sl.Stop()
	slStopped = true
	c, err := mlContended(ctx, ml, mlNodes, hc, p, size, seed+1000, progress)
	res.Contended = &c
	return err
}

// specNodes lists a cluster layout's voters' client addresses.
func specNodes(s cluster.Spec) []mlNode {
	var out []mlNode
	for _, n := range s.Nodes {
		out = append(out, mlNode{ID: n.ID, HTTP: n.HTTP, RESP: n.RESP})
	}
	return out
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// hotKey names hot key i of the contended workload.
func hotKey(i int) string { return fmt.Sprintf("hot%03d", i) }

// uniqueValue is a value of at least size bytes that starts with
// "prefix/n/" (unique per writer and write), padded with dots.
func uniqueValue(prefix string, n uint64, size int) []byte {
	b := make([]byte, 0, max(size, len(prefix)+24))
	b = append(b, prefix...)
	b = append(b, '/')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, '/')
	for len(b) < size {
		b = append(b, '.')
	}
	return b
}

// hotDoer writes a unique value to a random hot key on every Write (the
// key and value it is given are ignored), counting every outcome.
type hotDoer struct {
	c             *redis.Client
	prefix        string
	n             uint64
	rng           *rand.Rand
	keys, size    int
	acked, failed *atomic.Uint64
}

func (d *hotDoer) Write(ctx context.Context, _ string, _ []byte) error {
	d.n++
	err := d.c.Set(ctx, hotKey(d.rng.IntN(d.keys)), uniqueValue(d.prefix, d.n, d.size), 0).Err()
	if err != nil {
		d.failed.Add(1)
	} else {
		d.acked.Add(1)
	}
	return err
}

func (d *hotDoer) Read(context.Context, string) error { return errors.New("hotDoer: writes only") }
func (d *hotDoer) Close() error                       { return d.c.Close() }

// mlContended runs the contended workload on the multi-leader cluster t.
func mlContended(ctx context.Context, t *Trireme, nodes []mlNode, hc *http.Client, p Profile, size int, seed uint64, progress func(string)) (MLContended, error) {
	res := MLContended{HotKeys: mlHotKeys, Clients: targetClients, Seconds: (p.Warmup + p.Duration).Seconds(), LogComplete: true}
	// Where each node's conflict log and metric stand before the run.
	sts := fetchStatuses(ctx, hc, nodes)
	before := map[string]uint64{}
	metric0 := map[string]float64{}
	dropped0 := map[string]uint64{}
	for _, n := range nodes {
		st, ok := sts[n.ID]
		if !ok {
			return res, fmt.Errorf("contended: no status from %s", n.ID)
		}
		before[n.ID] = st.Conflicts
		res.ConflictsBefore += st.Conflicts
		m, err := scrapeMetrics(ctx, n.HTTP, "ml_conflicts_total")
		if err != nil {
			return res, fmt.Errorf("contended: %s: %w", n.ID, err)
		}
		metric0[n.ID] = sumMetrics(m)
		page, err := conflictsPage(ctx, hc, n.HTTP, ^uint64(0), 1)
		if err != nil {
			return res, fmt.Errorf("contended: %s: %w", n.ID, err)
		}
		dropped0[n.ID] = page.Dropped
	}
	var acked, failed atomic.Uint64
	v := Variant{System: MLSystem, Name: fmt.Sprintf("SET ack=local, %d hot keys, every node", mlHotKeys), Pids: t.Pids,
		Open: func(ctx context.Context, i, n int) (Doer, error) {
			node := nodes[i%len(nodes)]
			c, err := dialRESP(ctx, node.RESP, [][]any{{"TRIREME.ACK", "local"}})
			if err != nil {
				return nil, err
			}
			return &hotDoer{c: c, prefix: fmt.Sprintf("%s/w%d", node.ID, i), rng: rand.New(rand.NewPCG(seed, uint64(i)+1)),
				keys: mlHotKeys, size: size, acked: &acked, failed: &failed}, nil
		}}
	progress(fmt.Sprintf("multileader: contended: %d connections over the 3 nodes writing unique values to %d hot keys for %v", targetClients, mlHotKeys, p.Warmup+p.Duration))
	lr, err := RunLoad(ctx, v, LoadSpec{Workload: WorkWrite, ValueBytes: size, Clients: targetClients, Keys: mlHotKeys,
		Warmup: p.Warmup, Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed})
	res.Load, res.Acked, res.Failed = lr, acked.Load(), failed.Load()
	if err != nil {
		return res, err
	}
	d, ok, lag := waitCaughtUp(ctx, hc, nodes, mlConverged, time.Now(), mlSettleLimit)
	res.Converged, res.ConvergeMs = ok, msOf(d)
	if !ok {
		res.FirstDifference = "streams not caught up: " + lag
	}
	// Conflicts: the metric and the log, per node; distinct over the nodes.
	distinct := map[string]bool{}
	var total float64
	for _, n := range nodes {
		nc := MLNodeConflicts{ID: n.ID}
		if m, err := scrapeMetrics(ctx, n.HTTP, "ml_conflicts_total"); err == nil {
			nc.Metric = sumMetrics(m) - metric0[n.ID]
		} else {
			nc.Error = err.Error()
		}
		logged, hot, dropped, complete, err := readConflicts(ctx, hc, n.HTTP, before[n.ID], distinct)
		nc.Logged, nc.HotLogged, nc.Dropped = logged, hot, dropped-dropped0[n.ID]
		if err != nil {
			nc.Error = err.Error()
		}
		res.LogComplete = res.LogComplete && complete && err == nil && nc.Dropped == 0
		if res.Seconds > 0 {
			nc.PerSec = nc.Metric / res.Seconds
		}
		total += nc.Metric
		res.Nodes = append(res.Nodes, nc)
	}
	res.Distinct = len(distinct)
	if res.Seconds > 0 {
		res.DistinctPerSec = float64(res.Distinct) / res.Seconds
	}
	// Every hot key on every node.
	states := map[string]map[string]string{}
	for _, n := range nodes {
		states[n.ID] = map[string]string{}
		for k := range mlHotKeys {
			s, err := readKeyState(ctx, hc, n.HTTP, hotKey(k))
			if err != nil {
				return res, fmt.Errorf("contended: reading %s on %s: %w", hotKey(k), n.ID, err)
			}
			states[n.ID][hotKey(k)] = s
		}
	}
	res.KeysChecked, res.KeysDiffering, res.KeysSiblings, res.FirstDifference = compareKeyStates(states, res.FirstDifference)
	progress(fmt.Sprintf("multileader: contended: %d writes acknowledged (%d failed), %.0f/s measured; conflicts by the metric %.0f over the nodes, %d distinct (%.0f/s); streams caught up %v after; %d of %d hot keys differ between nodes",
		res.Acked, res.Failed, lr.OpsPerSec, total, res.Distinct, res.DistinctPerSec, d.Round(time.Millisecond), res.KeysDiffering, res.KeysChecked))
	return res, nil
}

// sumMetrics adds up the samples of a scrape.
func sumMetrics(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// conflictsReply is the part of GET /v1/conflicts the part reads.
type conflictsReply struct {
	Conflicts []struct {
		Seq      uint64 `json:"seq"`
		Key      string `json:"key"`
		Versions []struct {
			Dot string `json:"dot"`
		} `json:"versions"`
	} `json:"conflicts"`
	Dropped uint64 `json:"dropped"`
	Next    uint64 `json:"next"`
}

func conflictsPage(ctx context.Context, hc *http.Client, httpAddr string, after uint64, limit int) (conflictsReply, error) {
	var rep conflictsReply
	err := getJSON(ctx, hc, fmt.Sprintf("http://%s/v1/conflicts?after=%d&limit=%d", httpAddr, after, limit), 5*time.Second, &rep)
	return rep, err
}

// readConflicts pages through a node's conflict log after seq after,
// adding each record's identity (conflictIdentity) to distinct; it returns
// the records read, those of hot keys, the log's dropped count, and
// whether it read to the end.
func readConflicts(ctx context.Context, hc *http.Client, httpAddr string, after uint64, distinct map[string]bool) (logged, hot int, dropped uint64, complete bool, err error) {
	for range mlConflictPages {
		rep, err := conflictsPage(ctx, hc, httpAddr, after, mlConflictPageSize)
		if err != nil {
			return logged, hot, dropped, false, err
		}
		dropped = rep.Dropped
		for _, c := range rep.Conflicts {
			logged++
			if strings.HasPrefix(c.Key, "hot") {
				hot++
			}
			dots := make([]string, len(c.Versions))
			for i, v := range c.Versions {
				dots[i] = v.Dot
			}
			distinct[conflictIdentity(c.Key, dots)] = true
		}
		if len(rep.Conflicts) < mlConflictPageSize || rep.Next == after {
			return logged, hot, dropped, true, nil
		}
		after = rep.Next
	}
	return logged, hot, dropped, false, nil
}

// conflictIdentity names a conflict the same on every node that records
// it: its key and its versions' dots, sorted.
func conflictIdentity(key string, dots []string) string {
	d := slices.Clone(dots)
	slices.Sort(d)
	return key + "\x00" + strings.Join(d, ",")
}

// readKeyState reads key on the node at httpAddr and describes what it
// holds: "absent", or its value (and every sibling's, sorted, if several).
func readKeyState(ctx context.Context, hc *http.Client, httpAddr, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/kv/"+url.PathEscape(key), nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusNotFound {
		return "absent", nil
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", key, resp.Status, strings.TrimSpace(string(b)))
	}
	return keyState(b)
}

// keyState describes a read reply (JSON): its value, or, for a key with
// siblings, every sibling's value, sorted.
func keyState(body []byte) (string, error) {
	var rr struct {
		Value    string `json:"value"`
		Encoding string `json:"encoding"`
		Siblings []struct {
			Value    string `json:"value"`
			Encoding string `json:"encoding"`
		} `json:"siblings"`
	}
	if err := json.Unmarshal(body, &rr); err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	if len(rr.Siblings) < 2 {
		return "value " + rr.Encoding + ":" + rr.Value, nil
	}
	vs := make([]string, len(rr.Siblings))
	for i, s := range rr.Siblings {
		vs[i] = s.Encoding + ":" + s.Value
	}
	slices.Sort(vs)
	return "siblings " + strings.Join(vs, " | "), nil
}

// compareKeyStates compares, key by key, what every node holds (node ->
// key -> keyState); it returns the keys checked, how many differ between
// nodes, how many hold siblings somewhere, and the first difference
// (first, if already set, is kept).
func compareKeyStates(states map[string]map[string]string, first string) (checked, differing, siblings int, firstDiff string) {
	firstDiff = first
	ids := make([]string, 0, len(states))
	keySet := map[string]bool{}
	for id, m := range states {
		ids = append(ids, id)
		for k := range m {
			keySet[k] = true
		}
	}
	slices.Sort(ids)
	keys := make([]string, 0, len(keySet))
	for k := range keySet {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		checked++
		same, sib := true, false
		ref, refOK := states[ids[0]][k]
		for _, id := range ids {
			s, ok := states[id][k]
			if ok != refOK || s != ref {
				same = false
			}
			sib = sib || strings.HasPrefix(s, "siblings ")
		}
		if sib {
			siblings++
		}
		if !same {
			differing++
			if firstDiff == "" {
				var parts []string
				for _, id := range ids {
					s, ok := states[id][k]
					if !ok {
						s = "not read"
					}
					parts = append(parts, fmt.Sprintf("%s: %.60s", id, s))
				}
				firstDiff = fmt.Sprintf("%s: %s", k, strings.Join(parts, "; "))
			}
		}
	}
	return checked, differing, siblings, firstDiff
}

// nodeStatus is the part of GET /v1/status the part reads, of both
// modes.
type nodeStatus struct {
	ID           string       `json:"id"`
	Role         string       `json:"role"`
	Mode         string       `json:"mode"`
	LastIndex    uint64       `json:"last_index"`
	AppliedIndex uint64       `json:"applied_index"`
	Conflicts    uint64       `json:"conflicts"`
	Streams      []streamInfo `json:"streams"`
}

// streamInfo is one peer stream of a multi-leader node's status.
type streamInfo struct {
	Peer       string `json:"peer"`
	PeerAcked  uint64 `json:"peer_acked"`
	Applied    uint64 `json:"applied"`
	Known      uint64 `json:"known"`
	LagEntries uint64 `json:"lag_entries"`
	LagMs      int64  `json:"lag_ms"`
}

// getJSON GETs url within timeout and decodes a 200 reply into v.
func getJSON(ctx context.Context, hc *http.Client, u string, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// fetchStatuses asks every node for its status in parallel (500 ms each);
// a node that does not answer is missing from the result.
func fetchStatuses(ctx context.Context, hc *http.Client, nodes []mlNode) map[string]nodeStatus {
	out := make(map[string]nodeStatus, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			var st nodeStatus
			if err := getJSON(ctx, hc, "http://"+n.HTTP+"/v1/status", 500*time.Millisecond, &st); err == nil {
				mu.Lock()
				out[n.ID] = st
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// mlConverged reports whether the statuses of the nodes ids (one poll)
// show a converged multi-leader cluster: every node answered and has, for
// every other node, a stream applied up to that node's last_index. If
// not, it says what was behind first (in id order).
func mlConverged(ids []string, sts map[string]nodeStatus) (bool, string) {
	for _, id := range ids {
		if _, ok := sts[id]; !ok {
			return false, "no status from " + id
		}
	}
	for _, id := range ids {
		for _, peer := range ids {
			if peer == id {
				continue
			}
			s, ok := streamOf(sts[id], peer)
			if !ok {
				return false, fmt.Sprintf("%s lists no stream of %s", id, peer)
			}
			if end := sts[peer].LastIndex; s.Applied < end {
				return false, fmt.Sprintf("%s applied %d of %s's %d entries", id, s.Applied, peer, end)
			}
		}
	}
	return true, ""
}

func streamOf(st nodeStatus, peer string) (streamInfo, bool) {
	for _, s := range st.Streams {
		if s.Peer == peer {
			return s, true
		}
	}
	return streamInfo{}, false
}

// mlBacklog is, over every node of ids and every peer stream, how many of
// the peer's entries (up to its last_index) the node had not applied, in
// all and on the worst stream. Missing statuses and streams count nothing.
func mlBacklog(ids []string, sts map[string]nodeStatus) (total, worst uint64) {
	for _, id := range ids {
		st, ok := sts[id]
		if !ok {
			continue
		}
		for _, peer := range ids {
			ps, ok := sts[peer]
			if peer == id || !ok {
				continue
			}
			if s, ok := streamOf(st, peer); ok && s.Applied < ps.LastIndex {
				d := ps.LastIndex - s.Applied
				total += d
				worst = max(worst, d)
			}
		}
	}
	return total, worst
}

// slCaughtUp reports whether the statuses of a single-leader cluster's
// nodes ids (one poll) show every node, the leader included, having
// applied the leader's last index.
func slCaughtUp(ids []string, sts map[string]nodeStatus) (bool, string) {
	var lead nodeStatus
	for _, id := range ids {
		st, ok := sts[id]
		if !ok {
			return false, "no status from " + id
		}
		if st.Role == "leader" {
			lead = st
		}
	}
	if lead.ID == "" {
		return false, "no leader"
	}
	for _, id := range ids {
		if a := sts[id].AppliedIndex; a < lead.LastIndex {
			return false, fmt.Sprintf("%s applied %d of the leader's %d", id, a, lead.LastIndex)
		}
	}
	return true, ""
}

// waitCaughtUp polls the nodes' statuses every mlPollEvery until done says
// they are caught up or limit passes from start; it returns the time from
// start to the end of the poll that showed it, whether it did, and, if
// not, what was behind at the last poll.
func waitCaughtUp(ctx context.Context, hc *http.Client, nodes []mlNode, done func([]string, map[string]nodeStatus) (bool, string), start time.Time, limit time.Duration) (time.Duration, bool, string) {
	d, ok, why, _ := pollUntil(ctx, hc, nodes, done, start, limit)
	return d, ok, why
}

// pollUntil is waitCaughtUp, also returning the number of polls.
func pollUntil(ctx context.Context, hc *http.Client, nodes []mlNode, done func([]string, map[string]nodeStatus) (bool, string), start time.Time, limit time.Duration) (time.Duration, bool, string, int) {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	why := ""
	for polls := 1; ; polls++ {
		t0 := time.Now()
		ok, w := done(ids, fetchStatuses(ctx, hc, nodes))
		if ok {
			return time.Since(start), true, "", polls
		}
		why = w
		if time.Since(start) > limit || ctx.Err() != nil {
			return time.Since(start), false, why, polls
		}
		if err := sleepCtx(ctx, mlPollEvery-time.Since(t0)); err != nil {
			return time.Since(start), false, why, polls
		}
	}
}

// sleepCtx sleeps d (nothing if d <= 0) or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pacedResult is what a paced writer did.
type pacedResult struct {
	Slots, Acked, Errors, Missed uint64
	AckedByNode                  map[string]uint64
	FirstError                   string
	Seconds                      float64
}

// pacedSlot is the time of write slot k of a writer started at start at
// rate writes per second.
func pacedSlot(start time.Time, k uint64, rate int) time.Time {
	return start.Add(time.Duration(float64(k) * float64(time.Second) / float64(rate)))
}

// pacedWrite writes rate times a second, open loop, slot k to node
// k%len(nodes) (ack local, a random key of mlPacedKeys, a unique value of
// size bytes), until stop is closed or ctx ends; then it waits for the
// writes in flight. A slot whose time comes while mlPacedInFlight writes
// are in flight, or that is more than 250 ms late, is missed.
func pacedWrite(ctx context.Context, nodes []mlNode, rate, size int, seed uint64, stop <-chan struct{}) pacedResult {
	res := pacedResult{AckedByNode: map[string]uint64{}}
	clients := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.RESP, PoolSize: mlPacedConns, Protocol: 2, DisableIdentity: true,
			MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ContextTimeoutEnabled: true,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "TRIREME.ACK", "local").Err() }})
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	acked := make([]atomic.Uint64, len(nodes))
	var errs atomic.Uint64
	var firstErr atomic.Pointer[string]
	sem := make(chan struct{}, mlPacedInFlight)
	rng := rand.New(rand.NewPCG(seed, 13))
	var wg sync.WaitGroup
	start := time.Now()
loop:
	for k := uint64(0); ; k++ {
		at := pacedSlot(start, k, rate)
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-stop:
				t.Stop()
				break loop
			case <-ctx.Done():
				t.Stop()
				break loop
			case <-t.C:
			}
		} else {
			select {
			case <-stop:
				break loop
			case <-ctx.Done():
				break loop
			default:
			}
		}
		res.Slots++
		if time.Since(at) > 250*time.Millisecond {
			res.Missed++
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			res.Missed++
			continue
		}
		ni := int(k % uint64(len(nodes)))
		key := fmt.Sprintf("p%05d", rng.IntN(mlPacedKeys))
		value := uniqueValue(nodes[ni].ID+"/paced", k, size)
		wg.Go(func() {
			defer func() { <-sem }()
			octx, cancel := context.WithTimeout(ctx, mlPacedTimeout)
			err := clients[ni].Set(octx, key, value, 0).Err()
			cancel()
			if err != nil {
				errs.Add(1)
				s := fmt.Sprintf("%s: %v", nodes[ni].ID, err)
				firstErr.CompareAndSwap(nil, &s)
				return
			}
			acked[ni].Add(1)
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	for i, n := range nodes {
		res.AckedByNode[n.ID] = acked[i].Load()
		res.Acked += acked[i].Load()
	}
	res.Errors = errs.Load()
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res
}

// mlPartitions starts a multi-leader cluster behind internal/chaos's
// proxies under dir and makes Profile.MLPartitionReps partitions on it,
// isolating n1, n2, n3, n1, ... in turn.
func mlPartitions(ctx context.Context, binary, dir string, procs int, p Profile, size int, seed uint64, hc *http.Client, progress func(string)) (MLConvergence, error) {
	res := MLConvergence{Rate: p.MLWriteRate, PartitionS: p.MLPartition.Seconds(), LeadInS: mlLeadIn.Seconds(), PollMs: msOf(mlPollEvery),
		LimitS: mlConvergeLimit.Seconds()}
	c, err := chaos.NewCluster(chaos.ClusterConfig{Binary: binary, Dir: dir, Nodes: 3, ClusterID: "trireme-bench-multileader",
		NodeArgs: []string{"--log-level", "warn", "--mode", MultiLeaderMode, "--conflicts", mlConflictsPolicy}, Seed: seed})
	if err != nil {
		return res, err
	}
	defer c.Close()
	n, err := cluster.Procs(procs, 3)
	if err != nil {
		return res, err
	}
	if env := cluster.ProcsEnv(n); len(env) > 0 {
		for _, id := range c.IDs {
			c.Procs.SetPrefix(id, append([]string{"env"}, env...))
		}
	}
	res.Settings = fmt.Sprintf("3 nodes, --mode multi-leader --conflicts %s, mutual TLS; every directed peer link through a TCP proxy (internal/chaos), no delay; GOMAXPROCS %s",
		mlConflictsPolicy, map[bool]string{true: strconv.Itoa(n), false: "Go's default"}[n > 0])
	progress(fmt.Sprintf("multileader: partition: starting a 3-node multi-leader cluster behind TCP proxies; %d reps of a %v partition at %d writes/s", p.MLPartitionReps, p.MLPartition, p.MLWriteRate))
	if err := c.Start(); err != nil {
		return res, err
	}
	var nodes []mlNode
	for _, id := range c.IDs {
		nodes = append(nodes, mlNode{ID: id, HTTP: c.Addrs[id].HTTP, RESP: c.Addrs[id].RESP})
	}
	if err := waitAnswering(ctx, hc, nodes, 30*time.Second); err != nil {
		return res, err
	}
	var errs []error
	for rep := 1; rep <= p.MLPartitionReps && ctx.Err() == nil; rep++ {
		isolated := c.IDs[(rep-1)%len(c.IDs)]
		r, err := mlPartitionRep(ctx, c, nodes, hc, rep, isolated, p, size, seed+uint64(rep))
		res.Reps = append(res.Reps, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("partition rep %d: %w", rep, err))
			progress(fmt.Sprintf("multileader: partition rep %d: ERROR: %v", rep, err))
			continue
		}
		state := fmt.Sprintf("converged %.0f ms after the heal (%d polls)", r.ConvergeMs, r.Polls)
		if !r.Converged {
			state = fmt.Sprintf("NOT converged %v after the heal: %s", mlConvergeLimit, r.Lag)
		}
		progress(fmt.Sprintf("multileader: partition rep %d/%d: %s cut off for %.1f s; %d writes acknowledged (%s), %d failed, %d missed; backlog at the heal %d entries (worst stream %d); %s",
			rep, p.MLPartitionReps, isolated, r.PartitionS, r.Acked, byNodeString(r.AckedByNode), r.Errors, r.Missed, r.Backlog, r.MaxStream, state))
	}
	var conv []float64
	for _, r := range res.Reps {
		if r.Converged {
			conv = append(conv, r.ConvergeMs)
		}
	}
	res.Converged, res.MedianMs = len(conv), median(conv)
	return res, errors.Join(errs...)
}

// waitAnswering waits until every node answers /v1/status.
func waitAnswering(ctx context.Context, hc *http.Client, nodes []mlNode, limit time.Duration) error {
	_, ok, why := waitCaughtUp(ctx, hc, nodes, func(ids []string, sts map[string]nodeStatus) (bool, string) {
		for _, id := range ids {
			if _, ok := sts[id]; !ok {
				return false, id + " does not answer"
			}
		}
		return true, ""
	}, time.Now(), limit)
	if !ok {
		return fmt.Errorf("nodes not answering after %v: %s", limit, why)
	}
	return nil
}

// byNodeString renders per-node counts as "n1 10, n2 12".
func byNodeString(m map[string]uint64) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s %d", id, m[id])
	}
	return strings.Join(parts, ", ")
}

// mlPartitionRep makes one partition: settle, paced writes for mlLeadIn,
// isolated cut off from the others for p.MLPartition while they go on,
// the writer stopped (its writes in flight finished), the backlog read,
// the links healed, and every mlPollEvery the statuses read until
// converged or mlConvergeLimit.
func mlPartitionRep(ctx context.Context, c *chaos.Cluster, nodes []mlNode, hc *http.Client, rep int, isolated string, p Profile, size int, seed uint64) (MLPartitionRep, error) {
	r := MLPartitionRep{Rep: rep, Isolated: isolated}
	c.Net.Heal()
	if _, ok, lag := waitCaughtUp(ctx, hc, nodes, mlConverged, time.Now(), mlSettleLimit); !ok {
		return r, fmt.Errorf("not converged %v before the partition: %s", mlSettleLimit, lag)
	}
	stop := make(chan struct{})
	stopped := false
	stopWriter := func() {
		if !stopped {
			close(stop)
			stopped = true
		}
	}
	done := make(chan pacedResult, 1)
	go func() { done <- pacedWrite(ctx, nodes, p.MLWriteRate, size, seed, stop) }()
	var pr pacedResult
	collected := false
	collect := func() {
		stopWriter()
		if !collected {
			pr = <-done
			collected = true
		}
	}
	defer func() {
		collect()
		c.Net.Heal()
	}()
	if err := sleepCtx(ctx, mlLeadIn); err != nil {
		return r, err
	}
	var others []string
	for _, id := range c.IDs {
		if id != isolated {
			others = append(others, id)
		}
	}
	c.Net.Partition([]string{isolated}, others)
	cut := time.Now()
	if err := sleepCtx(ctx, p.MLPartition); err != nil {
		return r, err
	}
	collect()
	r.Slots, r.Acked, r.AckedByNode, r.Errors, r.Missed, r.FirstError = pr.Slots, pr.Acked, pr.AckedByNode, pr.Errors, pr.Missed, pr.FirstError
	if pr.Seconds > 0 {
		r.RatePerSec = float64(pr.Acked) / pr.Seconds
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	r.Backlog, r.MaxStream = mlBacklog(ids, fetchStatuses(ctx, hc, nodes))
	c.Net.Heal()
	healed := time.Now()
	r.PartitionS = healed.Sub(cut).Seconds()
	d, ok, lag, polls := pollUntil(ctx, hc, nodes, mlConverged, healed, mlConvergeLimit)
	r.Converged, r.ConvergeMs, r.Polls = ok, msOf(d), polls
	if !ok {
		r.Lag = lag
	}
	return r, ctx.Err()
}
