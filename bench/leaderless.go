package bench

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/ring"
)

// The leaderless part: what leaderless mode (trireme node --mode
// leaderless, Dynamo-style: each key on N nodes of a hash ring, any node
// coordinates W-of-N writes and R-of-N reads) gives and costs (issue 20),
// in three measurements.
//
//  1. Throughput and latency per quorum: a 5-node leaderless cluster with
//     N=3 and a 5-node single-leader cluster side by side (each idle but
//     for its own runs), the same client program (go-redis over RESP,
//     targetClients connections, one per worker, SET and GET of random
//     preloaded keys): writes with W = 1, 2, 3, reads with R = 1, 2 and a
//     50/50 mix for each (W, R) of LLQuorums, the leaderless connections
//     spread over the 5 nodes round-robin (TRIREME.W and TRIREME.R set on
//     each); the single-leader side writes on the leader with
//     TRIREME.ACK majority and reads stale, spread over every node. Each
//     workload's sides run back to back in Profile.LLRounds interleaved
//     rounds (in order in odd rounds, reversed in even ones); figures are
//     medians over the rounds. Around every leaderless run the nodes'
//     repair counters are read, and after the rounds the part times how
//     long anti-entropy takes to find every replica in sync.
//  2. Repair of a wiped node: on fresh clusters of the same shapes, the
//     same data, Profile.LLRepairKeys keys of Profile.LLRepairValue bytes.
//     Profile.LLRepairTrials times each, alternately: a leaderless node is
//     stopped, its data directory removed, and restarted (a new actor,
//     empty), and timed until its own key count (DBSIZE, the node's
//     store) equals the number of keys it is a home replica of on the
//     ring, and until its last anti-entropy exchange with every peer found
//     no differing bucket. A single-leader follower whose data directory
//     is removed does not come back under its id (slWipedProbe checks it
//     and the report says what it saw), so the single-leader side is the
//     snapshot part's catch-up: a follower is stopped, the same keys are
//     written (ack majority) while it is down on nodes with --log-retain
//     0, so that the others drop their log past its end once it moves past
//     its first 64 MiB segment, and it is restarted and timed until it has
//     applied the leader's commit index, the path it took (snapshot or
//     log) read from the leader's member list and its metrics.
//  3. What anti-entropy costs while the data is in sync: the leaderless
//     cluster of (2), restarted before every window with the default
//     --anti-entropy-rate or with --anti-entropy-rate 0, left idle for
//     Profile.LLIdleWindow, the CPU time of its 5 processes summed; the
//     idle single-leader cluster of (2) as a reference; Profile.LLRounds
//     interleaved rounds, medians.

// Settings of the leaderless part.
const (
	LLSystem        = "leaderless"
	llNodes         = 5
	llN             = 3
	llPollEvery     = 100 * time.Millisecond // DBSIZE and status during a repair
	llSLPollEvery   = 20 * time.Millisecond  // status during a single-leader catch-up
	llSettleLimit   = 60 * time.Second       // anti-entropy finding every replica in sync
	llInSyncAfter   = 30 * time.Second       // after a repaired count, for the in-sync view
	llIdleSettle    = 2 * time.Second        // after a restart, before an idle window
	llRepairSample  = 100                    // home keys read back locally after a repair
	llPreloadConns  = 32
	llSLLogRetain   = "0"
	llDefaultAERate = 4000
)

// The sides of the comparison and of the idle measurement.
const (
	SideLLSLWrite = "SET ack=majority, leader"
	SideLLSLRead  = "GET stale, every node"
	SideLLSLMixed = "SET ack=majority on the leader + GET stale, every node"
	IdleAEOn      = "leaderless, anti-entropy on (default rate)"
	IdleAEOff     = "leaderless, --anti-entropy-rate 0"
	IdleSL        = "single-leader (reference)"
)

// LLQuorums are the (W, R) pairs the comparison measures.
var LLQuorums = [][2]int{{1, 1}, {2, 2}, {3, 1}}

func llWriteSide(w int) string    { return fmt.Sprintf("SET W=%d", w) }
func llReadSide(r int) string     { return fmt.Sprintf("GET R=%d", r) }
func llMixedSide(w, r int) string { return fmt.Sprintf("SET W=%d + GET R=%d", w, r) }

// LeaderlessResult is what the leaderless part measured.
type LeaderlessResult struct {
	Nodes      int     `json:"nodes"`
	N          int     `json:"replication_factor"`
	ValueBytes int     `json:"value_bytes"`
	Keys       int     `json:"keys"`
	Clients    int     `json:"clients"`
	Rounds     int     `json:"rounds"`
	Warmup     float64 `json:"warmup_s"`
	Duration   float64 `json:"duration_s"`
	PeerTLS    bool    `json:"peer_tls"`
	// NodeProcs is each node's GOMAXPROCS (0: Go's default).
	NodeProcs int `json:"node_procs"`
	// AERate is the nodes' default --anti-entropy-rate (keys/s).
	AERate    int          `json:"anti_entropy_rate"`
	Quorums   [][2]int     `json:"quorums"`
	Workloads []LLWorkload `json:"workloads,omitempty"`
	Runs      []LoadResult `json:"runs,omitempty"`
	// Counters are the leaderless cluster's repair counters over each of
	// its runs (warm-up included, up to the next run).
	Counters []LLRunCounters `json:"counters,omitempty"`
	// Settle is, after the rounds, how long anti-entropy took to find
	// every replica in sync.
	Settle     *LLSettle `json:"settle,omitempty"`
	Repair     *LLRepair `json:"repair,omitempty"`
	Idle       *LLIdle   `json:"idle,omitempty"`
	Notes      []string  `json:"notes,omitempty"`
	LoadBefore string    `json:"load_average_before"`
	LoadAfter  string    `json:"load_average_after"`
}

// LLWorkload is one workload's sides: their medians (Comparison.Sides,
// the single-leader side last) and each leaderless side against the
// single-leader one, round by round.
type LLWorkload struct {
	Workload       string     `json:"workload"`
	Comparison     Comparison `json:"comparison"`
	VsSingleLeader []LLVersus `json:"vs_single_leader"`
}

// LLVersus is a leaderless side over the single-leader side of its
// workload: ops/s ratios per round and their median, and the ratio of
// their median p99s.
type LLVersus struct {
	Side     string    `json:"side"`
	Other    string    `json:"other"`
	Ratios   []float64 `json:"ratios"`
	Median   float64   `json:"median_ratio"`
	P99Ratio float64   `json:"p99_ratio"`
}

// LLRunCounters is what the leaderless nodes counted over one run, summed
// over the nodes.
type LLRunCounters struct {
	Round           int    `json:"round"`
	Side            string `json:"side"`
	ReadRepairs     uint64 `json:"read_repairs"`
	AERepairs       uint64 `json:"ae_repairs"`
	AEBucketsDiffer uint64 `json:"ae_buckets_differ"`
	HintsStored     uint64 `json:"hints_stored"`
	Dropped         uint64 `json:"dropped_messages"`
	WriteTimeouts   uint64 `json:"write_timeouts"`
	Error           string `json:"error,omitempty"`
}

// LLSettle is how long, from a moment on, anti-entropy took to find the
// replicas in sync: every node answering, seeing no peer down, holding no
// hint, having started at least one exchange per peer (and one more) since
// then, and every node's last exchange with every peer finding no
// differing bucket.
type LLSettle struct {
	Ms        float64 `json:"ms"`
	Settled   bool    `json:"settled"`
	Why       string  `json:"why,omitempty"` // what was not, at the limit
	AERepairs uint64  `json:"ae_repairs"`    // summed over the nodes, meanwhile
}

// LLRepair is the repair measurement.
type LLRepair struct {
	Keys       int   `json:"keys"`
	ValueBytes int   `json:"value_bytes"`
	Bytes      int64 `json:"bytes"`
	// LLPreloadS is the leaderless preload's time (W=all), seconds.
	LLPreloadS float64 `json:"ll_preload_s"`
	LogRetain  string  `json:"sl_log_retain"`
	// WipedFollower is what became of a single-leader follower whose
	// data directory was removed, restarted under its id (once, before
	// the trials).
	WipedFollower string          `json:"wiped_follower,omitempty"`
	InSync        *LLSettle       `json:"in_sync_before,omitempty"`
	LimitS        float64         `json:"limit_s"`
	Trials        []LLRepairTrial `json:"trials"`
	SLTrials      []SLRepairTrial `json:"sl_trials"`
	// Medians over the trials that finished: process start to repaired
	// (leaderless) or caught up (single-leader), and the leaderless over
	// the single-leader one.
	MedianS    float64 `json:"median_s"`
	SLMedianS  float64 `json:"sl_median_s"`
	Ratio      float64 `json:"ratio"`
	KeysPerSec float64 `json:"median_keys_per_sec"`
}

// LLRepairTrial is one wiped leaderless node's repair.
type LLRepairTrial struct {
	Trial int    `json:"trial"`
	Node  string `json:"node"`
	// Home is the keys the node is a home replica of (the ring, N);
	// Before its own count before the wipe; Target the count awaited
	// (Home, or Before if they differ: a note says so).
	Home   int `json:"home"`
	Before int `json:"before"`
	Target int `json:"target"`
	// From the process start: answering /v1/status, its count at the
	// target (Secs), its last exchange with every peer finding no
	// differing bucket (InSyncSecs).
	ReadySecs  float64 `json:"ready_s"`
	Repaired   bool    `json:"repaired"`
	Secs       float64 `json:"s"`
	InSync     bool    `json:"in_sync"`
	InSyncSecs float64 `json:"in_sync_s"`
	Count      int     `json:"count"` // at the end
	// KeysPerSec is Target over the time from ready to repaired.
	KeysPerSec float64 `json:"keys_per_sec"`
	// The node's anti-entropy counters at the end (since its restart).
	AERepairs         uint64 `json:"ae_repairs"`
	AEExchanges       uint64 `json:"ae_exchanges"`
	AEBucketsDiffer   uint64 `json:"ae_buckets_differ"`
	AEBucketsCompared uint64 `json:"ae_buckets_compared"`
	// Sampled home keys read back with consistency=local, and how many
	// held a value of the preloaded size.
	Sampled  int `json:"sampled"`
	Verified int `json:"verified"`
	// Cores is each node's CPU time over the repair divided by its length.
	Cores      map[string]float64 `json:"cores"`
	LoadBefore string             `json:"load_average_before"`
	LoadAfter  string             `json:"load_average_after"`
}

// SLRepairTrial is one single-leader follower's catch-up of the repair
// data (slRepairTrial).
type SLRepairTrial struct {
	Trial       int       `json:"trial"`
	Follower    string    `json:"follower"`
	Leader      string    `json:"leader"`
	LeaderAfter string    `json:"leader_after"`
	Terms       [2]uint64 `json:"terms"`
	// FollowerLast is its last log index when stopped; WriteSecs how long
	// writing the keys took while it was down; WALs the other nodes' WALs
	// before the restart, Compacted: none held FollowerLast+1 any more.
	FollowerLast uint64             `json:"follower_last_index"`
	WriteSecs    float64            `json:"write_s"`
	WALs         map[string]WALInfo `json:"wals"`
	Compacted    bool               `json:"compacted"`
	Target       uint64             `json:"target_index"`
	ReadySecs    float64            `json:"ready_s"`
	CaughtUp     bool               `json:"caught_up"`
	Secs         float64            `json:"s"`
	Path         string             `json:"path"`
	States       string             `json:"states"`
	Snapshot     int64              `json:"snapshot_bytes_received"`
	StoreBytes   int64              `json:"store_bytes"` // the follower's, at the end
	Cores        map[string]float64 `json:"cores"`
	LoadBefore   string             `json:"load_average_before"`
	LoadAfter    string             `json:"load_average_after"`
}

// LLIdle is the idle-CPU measurement.
type LLIdle struct {
	WindowS float64 `json:"window_s"`
	SettleS float64 `json:"settle_s"`
	Rounds  int     `json:"rounds"`
	Keys    int     `json:"keys"` // in the leaderless cluster
	Rate    int     `json:"anti_entropy_rate"`
	// Windows in the order measured; Sides the medians.
	Windows []LLIdleWindow `json:"windows"`
	Sides   []LLIdleSide   `json:"sides"`
	// OnOverOff is the median anti-entropy-on cores over the median off
	// ones; ExtraCores their difference. RoundDiffs are, per round, the
	// on window's cores minus the off window's; MedianDiff their median.
	OnOverOff  float64   `json:"on_over_off"`
	ExtraCores float64   `json:"extra_cores"`
	RoundDiffs []float64 `json:"round_diffs,omitempty"`
	MedianDiff float64   `json:"median_round_diff"`
}

// LLIdleWindow is one idle window.
type LLIdleWindow struct {
	Round   int                `json:"round"`
	Side    string             `json:"side"`
	Seconds float64            `json:"seconds"`
	Cores   float64            `json:"cores"` // CPU time of the processes, summed, over Seconds
	ByNode  map[string]float64 `json:"by_node"`
	// Anti-entropy over the window, summed over the nodes (leaderless).
	AEExchanges       uint64 `json:"ae_exchanges"`
	AEBucketsCompared uint64 `json:"ae_buckets_compared"`
	AEBucketsDiffer   uint64 `json:"ae_buckets_differ"`
	AERepairs         uint64 `json:"ae_repairs"`
}

// LLIdleSide is one idle side's medians.
type LLIdleSide struct {
	Side     string  `json:"side"`
	Windows  int     `json:"windows"`
	Cores    float64 `json:"median_cores"`
	MinCores float64 `json:"min_cores"`
	MaxCores float64 `json:"max_cores"`
}

// leaderlessPart runs the leaderless part if the binary has leaderless
// mode.
func (r *runner) leaderlessPart(ctx context.Context, step func(name string, f func() error)) {
	cfg := r.cfg
	flags, err := triremeNodeFlags(ctx, cfg.TriremeBin)
	if err != nil {
		step("leaderless", func() error { return err })
		return
	}
	def, ok := flags["anti-entropy-rate"]
	if !ok {
		msg := "leaderless: skipped: binary has no --mode leaderless (no --anti-entropy-rate)"
		r.res.Skipped = append(r.res.Skipped, msg)
		r.say("%s", msg)
		return
	}
	rate, err := strconv.Atoi(def)
	if err != nil || rate <= 0 {
		rate = llDefaultAERate
	}
	dir := filepath.Join(cfg.WorkDir, "leaderless")
	step("leaderless", func() error {
		r.say("leaderless: load average %s", loadAverage())
		x, err := TriremeLeaderless(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, cfg.peerTLS() == "off", cfg.Profile, cfg.Profile.ValueSizes[0], rate, cfg.Seed, r.progress)
		r.res.Leaderless = &x
		r.say("leaderless: load average %s", loadAverage())
		if !cfg.Keep {
			os.RemoveAll(dir)
		}
		return err
	})
}

// TriremeLeaderless runs the three measurements of the leaderless part
// under dir: the comparison on one pair of clusters, then the repairs and
// the idle windows on another; an error in the first does not stop the
// others. aeRate is the nodes' default --anti-entropy-rate, as reported.
func TriremeLeaderless(ctx context.Context, binary, dir string, procs int, insecure bool, p Profile, valueBytes, aeRate int, seed uint64, progress func(string)) (LeaderlessResult, error) {
	res := LeaderlessResult{Nodes: llNodes, N: llN, ValueBytes: valueBytes, Keys: p.Keys, Clients: targetClients, Rounds: p.LLRounds,
		Warmup: p.Warmup.Seconds(), Duration: p.Duration.Seconds(), PeerTLS: !insecure, AERate: aeRate, Quorums: LLQuorums,
		LoadBefore: loadAverage()}
	res.NodeProcs, _ = cluster.Procs(procs, llNodes)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	errCmp := llCompare(ctx, binary, filepath.Join(dir, "compare"), procs, insecure, p, valueBytes, seed, hc, &res, progress)
	if errCmp != nil {
		progress(fmt.Sprintf("leaderless: ERROR: %v", errCmp))
	}
	if ctx.Err() != nil {
		res.LoadAfter = loadAverage()
		return res, errors.Join(errCmp, ctx.Err())
	}
	errRep := llRepairAndIdle(ctx, binary, filepath.Join(dir, "repair"), procs, insecure, p, aeRate, hc, &res, progress)
	res.LoadAfter = loadAverage()
	return res, errors.Join(errCmp, errRep)
}

// startLL starts a 5-node leaderless cluster (N=3) under dir, or restarts
// one on spec's layout, with args, and waits until every node hears from
// every other.
func startLL(ctx context.Context, binary, dir string, procs int, insecure bool, spec *cluster.Spec, args []string, hc *http.Client) (*Trireme, []mlNode, error) {
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: llNodes, Procs: procs, InsecurePeers: insecure,
		Mode: LeaderlessMode, ReplicationFactor: llN, Spec: spec, NodeArgs: args})
	if err != nil {
		return nil, nil, err
	}
	t.System = LLSystem
	nodes := specNodes(t.Cluster().Spec())
	if err := waitLLUp(ctx, hc, nodes, 30*time.Second); err != nil {
		t.Stop()
		return nil, nil, err
	}
	return t, nodes, nil
}

// llCompare starts the two clusters of the comparison and runs its rounds.
func llCompare(ctx context.Context, binary, dir string, procs int, insecure bool, p Profile, size int, seed uint64, hc *http.Client, res *LeaderlessResult, progress func(string)) error {
	progress(fmt.Sprintf("leaderless: starting a %d-node leaderless cluster (N=%d) and a %d-node single-leader cluster, side by side", llNodes, llN, llNodes))
	ll, llNodesList, err := startLL(ctx, binary, filepath.Join(dir, "ll"), procs, insecure, nil, nil, hc)
	if err != nil {
		return fmt.Errorf("leaderless cluster: %w", err)
	}
	defer ll.Stop()
	sl, err := StartTriremeSetup(ctx, binary, filepath.Join(dir, "sl"), TriremeSetup{Voters: llNodes, Procs: procs, InsecurePeers: insecure})
	if err != nil {
		return fmt.Errorf("single-leader cluster: %w", err)
	}
	defer sl.Stop()
	sl.System = SLSystem
	llRESP := respAddrs(llNodesList)
	slRESP, err := sl.RESPAddrs(ctx)
	if err != nil {
		return err
	}
	llPre := llVariant("SET W=all", llRESP, "all", "", nil)
	slPre, err := sl.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return err
	}
	for _, pre := range []Variant{llPre, slPre} {
		progress(fmt.Sprintf("leaderless: %s: preloading %d keys of %d B (%s)", pre.System, p.Keys, size, pre.Name))
		if retries, err := Preload(ctx, pre, p.Keys, size, 16, 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w", pre.System, err)
		} else if retries > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d preload writes were retried", pre.System, retries))
		}
	}
	if s := llInSync(ctx, hc, llNodesList, llSettleLimit); !s.Settled {
		res.Notes = append(res.Notes, fmt.Sprintf("leaderless: not in sync %v after the preload: %s", llSettleLimit, s.Why))
	}
	// The sides, by workload; the single-leader one last.
	var writes, reads, mixed []Variant
	for _, w := range []int{1, 2, 3} {
		writes = append(writes, llVariant(llWriteSide(w), llRESP, strconv.Itoa(w), "", ll.Pids))
	}
	for _, r := range []int{1, 2} {
		reads = append(reads, llVariant(llReadSide(r), llRESP, "", strconv.Itoa(r), ll.Pids))
	}
	for _, q := range LLQuorums {
		mixed = append(mixed, llVariant(llMixedSide(q[0], q[1]), llRESP, strconv.Itoa(q[0]), strconv.Itoa(q[1]), ll.Pids))
	}
	slWrite, err := sl.Variant(ctx, SideLLSLWrite, "majority", 0, "linearizable")
	if err != nil {
		return err
	}
	slRead, err := sl.Variant(ctx, SideLLSLRead, "majority", 0, "stale")
	if err != nil {
		return err
	}
	writes = append(writes, slWrite)
	reads = append(reads, slRead)
	mixed = append(mixed, splitVariant(SLSystem, SideLLSLMixed, slRESP[0], [][]any{{"TRIREME.ACK", "majority"}}, slRESP,
		[][]any{{"TRIREME.CONSISTENCY", "stale"}}, sl.Pids))
	groups := []struct {
		w     Workload
		sides []Variant
	}{{WorkWrite, writes}, {WorkRead, reads}, {WorkMixed, mixed}}
	lead0, st0, err := sl.Cluster().Leader(ctx)
	if err != nil {
		return fmt.Errorf("single-leader cluster: %w", err)
	}
	for round := 1; round <= res.Rounds; round++ {
		for _, g := range groups {
			for _, i := range roundOrder(len(g.sides), round) {
				v := g.sides[i]
				seed++
				var before llCounts
				if v.System == LLSystem {
					before = llCounters(ctx, hc, llNodesList)
				}
				lr, err := runSide(ctx, v, LoadSpec{Workload: g.w, ValueBytes: size, Clients: targetClients, Keys: p.Keys,
					Warmup: p.Warmup, Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed}, round, res.Rounds, "leaderless", progress)
				if err != nil {
					return err
				}
				res.Runs = append(res.Runs, lr)
				if v.System == LLSystem {
					c := llCounters(ctx, hc, llNodesList).minus(before)
					rc := LLRunCounters{Round: round, Side: sideName(lr), ReadRepairs: c.readRepairs, AERepairs: c.aeRepairs,
						AEBucketsDiffer: c.aeBucketsDiffer, HintsStored: c.hintsStored, Dropped: c.dropped, WriteTimeouts: c.writeTimeouts, Error: c.err}
					res.Counters = append(res.Counters, rc)
					if rc.Dropped > 0 || rc.WriteTimeouts > 0 || rc.HintsStored > 0 {
						progress(fmt.Sprintf("leaderless: round %d: %s: %d peer messages dropped, %d write timeouts, %d hints stored", round, sideName(lr), rc.Dropped, rc.WriteTimeouts, rc.HintsStored))
					}
				}
			}
		}
	}
	for _, g := range groups {
		res.Workloads = append(res.Workloads, llWorkload(string(g.w), res.Runs, g.sides))
	}
	s := llInSync(ctx, hc, llNodesList, llSettleLimit)
	res.Settle = &s
	progress(fmt.Sprintf("leaderless: after the rounds: %s", s.describe()))
	if id, st, err := sl.Cluster().Leader(ctx); err != nil || id != lead0 || st.Term != st0.Term {
		res.Notes = append(res.Notes, fmt.Sprintf("single-leader: the leader changed during the rounds (%s term %d, then %s term %d, %v): its side's writes went to the first one", lead0, st0.Term, id, st.Term, err))
	}
	return nil
}

// describe renders a settle for progress lines.
func (s LLSettle) describe() string {
	if s.Settled {
		return fmt.Sprintf("anti-entropy found every replica in sync after %.0f ms (%d keys repaired meanwhile)", s.Ms, s.AERepairs)
	}
	return fmt.Sprintf("replicas NOT found in sync after %.0f ms: %s", s.Ms, s.Why)
}

// llWorkload summarizes one workload's runs: every side's medians, each
// leaderless side against the single-leader one (the last of sides).
func llWorkload(w string, runs []LoadResult, sides []Variant) LLWorkload {
	names := make([]string, len(sides))
	for i, v := range sides {
		names[i] = sideName(LoadResult{System: v.System, Variant: v.Name})
	}
	out := LLWorkload{Workload: w, Comparison: compare(w, runs, names)}
	sl := names[len(names)-1]
	for _, n := range names[:len(names)-1] {
		c := compare(w, runs, []string{n, sl})
		if len(c.Versus) == 1 {
			v := c.Versus[0]
			out.VsSingleLeader = append(out.VsSingleLeader, LLVersus{Side: n, Other: sl, Ratios: v.Ratios, Median: v.Median, P99Ratio: v.P99Ratio})
		}
	}
	return out
}

// respAddrs lists the nodes' RESP addresses.
func respAddrs(nodes []mlNode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.RESP
	}
	return out
}

// llVariant is a leaderless RESP variant: worker i on addrs[i%len], with
// TRIREME.W w and TRIREME.R r set on its connection (each if not empty).
func llVariant(name string, addrs []string, w, r string, pids func() []int) Variant {
	var setup [][]any
	if w != "" {
		setup = append(setup, []any{"TRIREME.W", w})
	}
	if r != "" {
		setup = append(setup, []any{"TRIREME.R", r})
	}
	return respVariant(LLSystem, name, func() []string { return addrs }, setup, 0, pids)
}

// splitDoer writes on one connection and reads on another.
type splitDoer struct{ w, r *redis.Client }

func (d *splitDoer) Write(ctx context.Context, key string, value []byte) error {
	return d.w.Set(ctx, key, value, 0).Err()
}
func (d *splitDoer) Read(ctx context.Context, key string) error { return d.r.Get(ctx, key).Err() }
func (d *splitDoer) Close() error                               { return errors.Join(d.w.Close(), d.r.Close()) }

// splitVariant gives worker i a write connection to writeAddr (set up
// with writeSetup) and a read connection to readAddrs[i%len] (readSetup).
func splitVariant(system, name, writeAddr string, writeSetup [][]any, readAddrs []string, readSetup [][]any, pids func() []int) Variant {
	return Variant{System: system, Name: name, Pids: pids, Open: func(ctx context.Context, i, n int) (Doer, error) {
		w, err := dialRESP(ctx, writeAddr, writeSetup)
		if err != nil {
			return nil, err
		}
		r, err := dialRESP(ctx, readAddrs[i%len(readAddrs)], readSetup)
		if err != nil {
			w.Close()
			return nil, err
		}
		return &splitDoer{w: w, r: r}, nil
	}}
}

// llStatus is the part of a leaderless node's GET /v1/status the part
// reads.
type llStatus struct {
	ID         string `json:"id"`
	Mode       string `json:"mode"`
	Leaderless *struct {
		HintsPending      map[string]int `json:"hints_pending"`
		HintsStored       uint64         `json:"hints_stored"`
		ReadRepairs       uint64         `json:"read_repairs"`
		AEExchanges       uint64         `json:"ae_exchanges"`
		AEBucketsCompared uint64         `json:"ae_buckets_compared"`
		AEBucketsDiffer   uint64         `json:"ae_buckets_differ"`
		AERepairs         uint64         `json:"ae_repairs"`
		AEDiffering       map[string]int `json:"ae_differing"`
		Down              []string       `json:"down"`
	} `json:"leaderless"`
}

// fetchLLStatuses asks every node for its status in parallel (1 s each);
// a node that does not answer, or answers without a leaderless section,
// is missing from the result.
func fetchLLStatuses(ctx context.Context, hc *http.Client, nodes []mlNode) map[string]llStatus {
	out := make(map[string]llStatus, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			var st llStatus
			if err := getJSON(ctx, hc, "http://"+n.HTTP+"/v1/status", time.Second, &st); err == nil && st.Leaderless != nil {
				mu.Lock()
				out[n.ID] = st
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// waitLLUp waits until every node answers and sees no peer down (a node
// counts a peer down until it has heard from it).
func waitLLUp(ctx context.Context, hc *http.Client, nodes []mlNode, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	why := ""
	for {
		sts := fetchLLStatuses(ctx, hc, nodes)
		if why = llUpWhy(nodes, sts); why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaderless nodes not all up after %v: %s", limit, why)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// llUpWhy says why the statuses do not show every node up and seeing
// every peer, "" if they do.
func llUpWhy(nodes []mlNode, sts map[string]llStatus) string {
	for _, n := range nodes {
		st, ok := sts[n.ID]
		if !ok {
			return "no status from " + n.ID
		}
		if len(st.Leaderless.Down) > 0 {
			return fmt.Sprintf("%s sees %s down", n.ID, strings.Join(st.Leaderless.Down, ", "))
		}
	}
	return ""
}

// llSynced reports whether the statuses show the replicas in sync, given
// each node's exchange count at the start (base): see LLSettle. If not, it
// says why (the first reason, in node order).
func llSynced(nodes []mlNode, base map[string]uint64, sts map[string]llStatus) (bool, string) {
	if why := llUpWhy(nodes, sts); why != "" {
		return false, why
	}
	peers := uint64(len(nodes) - 1)
	for _, n := range nodes {
		st := sts[n.ID].Leaderless
		for home, h := range st.HintsPending {
			if h > 0 {
				return false, fmt.Sprintf("%s holds %d hints for %s", n.ID, h, home)
			}
		}
		if b, ok := base[n.ID]; !ok || st.AEExchanges < b+peers+1 {
			return false, fmt.Sprintf("%s started %d exchanges since the start, want %d", n.ID, st.AEExchanges-min(st.AEExchanges, base[n.ID]), peers+1)
		}
	}
	for _, n := range nodes {
		st := sts[n.ID].Leaderless
		for _, m := range nodes {
			if m.ID == n.ID {
				continue
			}
			if d, ok := st.AEDiffering[m.ID]; !ok || d != 0 {
				return false, fmt.Sprintf("%s: last exchange with %s: %d buckets differ", n.ID, m.ID, d)
			}
		}
	}
	return true, ""
}

// llInSync polls the nodes' statuses every 250 ms until llSynced or limit.
func llInSync(ctx context.Context, hc *http.Client, nodes []mlNode, limit time.Duration) LLSettle {
	start := time.Now()
	base := map[string]uint64{}
	repairs0 := uint64(0)
	for id, st := range fetchLLStatuses(ctx, hc, nodes) {
		base[id] = st.Leaderless.AEExchanges
		repairs0 += st.Leaderless.AERepairs
	}
	for {
		sts := fetchLLStatuses(ctx, hc, nodes)
		ok, why := llSynced(nodes, base, sts)
		if len(base) < len(nodes) { // a node did not answer the first poll: count from now
			for id, st := range sts {
				if _, seen := base[id]; !seen {
					base[id] = st.Leaderless.AEExchanges
				}
			}
		}
		if ok || time.Since(start) > limit || ctx.Err() != nil {
			var repairs uint64
			for _, st := range sts {
				repairs += st.Leaderless.AERepairs
			}
			return LLSettle{Ms: msOf(time.Since(start)), Settled: ok, Why: why, AERepairs: repairs - min(repairs, repairs0)}
		}
		if sleepCtx(ctx, 250*time.Millisecond) != nil {
			return LLSettle{Ms: msOf(time.Since(start)), Why: "interrupted"}
		}
	}
}

// llCounts is the repair counters summed over the nodes.
type llCounts struct {
	readRepairs, aeRepairs, aeBucketsDiffer, hintsStored, dropped, writeTimeouts uint64
	err                                                                          string
}

func (c llCounts) minus(b llCounts) llCounts {
	d := func(x, y uint64) uint64 { return x - min(x, y) }
	err := c.err
	if err == "" {
		err = b.err
	}
	return llCounts{d(c.readRepairs, b.readRepairs), d(c.aeRepairs, b.aeRepairs), d(c.aeBucketsDiffer, b.aeBucketsDiffer),
		d(c.hintsStored, b.hintsStored), d(c.dropped, b.dropped), d(c.writeTimeouts, b.writeTimeouts), err}
}

// llCounters reads the nodes' statuses and metrics.
func llCounters(ctx context.Context, hc *http.Client, nodes []mlNode) llCounts {
	var c llCounts
	sts := fetchLLStatuses(ctx, hc, nodes)
	for _, n := range nodes {
		st, ok := sts[n.ID]
		if !ok {
			c.err = "no status from " + n.ID
			continue
		}
		l := st.Leaderless
		c.readRepairs += l.ReadRepairs
		c.aeRepairs += l.AERepairs
		c.aeBucketsDiffer += l.AEBucketsDiffer
		c.hintsStored += l.HintsStored
		m, err := scrapeMetrics(ctx, n.HTTP, "ll_dropped_messages_total", "ll_writes_total")
		if err != nil {
			c.err = fmt.Sprintf("%s: metrics: %v", n.ID, err)
			continue
		}
		for name, v := range m {
			switch {
			case strings.Contains(name, "ll_dropped_messages_total"):
				c.dropped += uint64(v)
			case strings.Contains(name, "ll_writes_total") && strings.Contains(name, `outcome="timeout"`):
				c.writeTimeouts += uint64(v)
			}
		}
	}
	return c
}

// homeCounts returns, per node, how many of keys Key(0)..Key(keys-1) it
// is a home replica of on the ring of ids (the engine's default vnodes)
// with n replicas per key.
func homeCounts(ids []string, n, keys int) (map[string]int, error) {
	rg, err := ring.New(ids, leaderless.DefaultVNodes)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for i := range keys {
		for _, id := range rg.Replicas([]byte(Key(i)), n) {
			out[id]++
		}
	}
	return out, nil
}

// homeKeys returns up to k keys of Key(0)..Key(keys-1) whose home
// replicas include id, spread over the key space.
func homeKeys(ids []string, n, keys int, id string, k int, seed uint64) ([]string, error) {
	rg, err := ring.New(ids, leaderless.DefaultVNodes)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 21))
	var out []string
	for tries := 0; len(out) < k && tries < 20*k; tries++ {
		key := Key(rng.IntN(keys))
		if slices.Contains(rg.Replicas([]byte(key), n), id) && !slices.Contains(out, key) {
			out = append(out, key)
		}
	}
	return out, nil
}

// dbSize asks the node at addr for DBSIZE (its own store's key count).
func dbSize(ctx context.Context, c *redis.Client) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	n, err := c.DBSize(ctx).Result()
	return int(n), err
}

// newRESPClient is a small go-redis pool to addr (it reconnects after a
// restart).
func newRESPClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, PoolSize: 2, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ContextTimeoutEnabled: true})
}

// localValueLen reads key on the node at httpAddr with consistency=local
// and returns the length of its value (-1: not found).
func localValueLen(ctx context.Context, hc *http.Client, httpAddr, key string) (int, error) {
	var rr struct {
		Value    string `json:"value"`
		Encoding string `json:"encoding"`
	}
	err := getJSON(ctx, hc, "http://"+httpAddr+"/v1/kv/"+url.PathEscape(key)+"?consistency=local", 2*time.Second, &rr)
	if err != nil {
		if strings.Contains(err.Error(), "404") {
			return -1, nil
		}
		return 0, err
	}
	if rr.Encoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(rr.Value)
		return len(b), err
	}
	return len(rr.Value), nil
}

// llRepairAndIdle starts the clusters of the repair and idle
// measurements, preloads them and runs both.
func llRepairAndIdle(ctx context.Context, binary, dir string, procs int, insecure bool, p Profile, aeRate int, hc *http.Client, res *LeaderlessResult, progress func(string)) error {
	rep := &LLRepair{Keys: p.LLRepairKeys, ValueBytes: p.LLRepairValue, Bytes: int64(p.LLRepairKeys) * int64(p.LLRepairValue), LogRetain: llSLLogRetain,
		LimitS: llRepairLimit(p.LLRepairKeys).Seconds()}
	progress(fmt.Sprintf("leaderless: repair: starting a fresh %d-node leaderless cluster (N=%d) and a fresh %d-node single-leader cluster (--log-retain %s)", llNodes, llN, llNodes, llSLLogRetain))
	llDir := filepath.Join(dir, "ll")
	ll, nodes, err := startLL(ctx, binary, llDir, procs, insecure, nil, nil, hc)
	if err != nil {
		return fmt.Errorf("leaderless cluster: %w", err)
	}
	defer func() { ll.Stop() }()
	sl, err := StartTriremeSetup(ctx, binary, filepath.Join(dir, "sl"), TriremeSetup{Voters: llNodes, Procs: procs, InsecurePeers: insecure,
		NodeArgs: []string{"--log-retain", llSLLogRetain}})
	if err != nil {
		return fmt.Errorf("single-leader cluster: %w", err)
	}
	defer sl.Stop()
	sl.System = SLSystem
	res.Repair = rep
	rep.WipedFollower = slWipedProbe(ctx, binary, filepath.Join(dir, "wiped"), procs, insecure, min(10*time.Second, p.LLIdleWindow), progress)
	llPre := distinctValues(llVariant("SET W=all", respAddrs(nodes), "all", "", nil), rep.ValueBytes, 0)
	progress(fmt.Sprintf("leaderless: repair: %s: preloading %d keys of %d B, a random value each (%d MiB; %s)", LLSystem, rep.Keys, rep.ValueBytes, rep.Bytes>>20, llPre.Name))
	t0 := time.Now()
	retries, err := Preload(ctx, llPre, rep.Keys, rep.ValueBytes, llPreloadConns, 30*time.Second)
	if err != nil {
		return fmt.Errorf("%s preload: %w", LLSystem, err)
	}
	rep.LLPreloadS = time.Since(t0).Seconds()
	progress(fmt.Sprintf("leaderless: repair: %s: preloaded in %.1f s (%.0f writes/s)", LLSystem, rep.LLPreloadS, float64(rep.Keys)/rep.LLPreloadS))
	if retries > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("repair: %s: %d preload writes were retried", LLSystem, retries))
	}
	s := llInSync(ctx, hc, nodes, llSettleLimit)
	rep.InSync = &s
	progress(fmt.Sprintf("leaderless: repair: after the preload: %s", s.describe()))
	if !s.Settled {
		res.Notes = append(res.Notes, "repair: the leaderless replicas were not found in sync after the preload: "+s.Why)
	}
	ids := ll.Cluster().Spec().IDs()
	homes, err := homeCounts(ids, llN, rep.Keys)
	if err != nil {
		return err
	}
	var errs []error
	for trial := 1; trial <= p.LLRepairTrials && ctx.Err() == nil; trial++ {
		for _, side := range roundOrder(2, trial) {
			if side == 0 {
				id := ids[trial%len(ids)] // n2, n3, ...
				tr, err := llRepairTrial(ctx, ll, nodes, hc, trial, id, homes[id], rep, progress)
				rep.Trials = append(rep.Trials, tr)
				if err != nil {
					errs = append(errs, fmt.Errorf("leaderless repair %d: %w", trial, err))
					progress(fmt.Sprintf("leaderless: repair %d: ERROR: %v", trial, err))
				}
				if tr.Before != tr.Home {
					res.Notes = append(res.Notes, fmt.Sprintf("repair %d: %s held %d keys before the wipe, %d by the ring: the repair waited for %d", trial, id, tr.Before, tr.Home, tr.Target))
				}
				continue
			}
			tr, err := slRepairTrial(ctx, sl, trial, rep.Keys, rep.ValueBytes, llRepairLimit(rep.Keys), progress)
			rep.SLTrials = append(rep.SLTrials, tr)
			if err != nil {
				errs = append(errs, fmt.Errorf("single-leader catch-up %d: %w", trial, err))
				progress(fmt.Sprintf("leaderless: single-leader catch-up %d: ERROR: %v", trial, err))
			}
		}
	}
	rep.summarize()
	if ctx.Err() != nil {
		return errors.Join(append(errs, ctx.Err())...)
	}
	// Idle windows, on the same clusters: the leaderless one restarted
	// before each of its windows.
	spec := ll.Cluster().Spec()
	restart := func(aeOff bool) ([]int, []mlNode, error) {
		ll.Stop()
		var args []string
		if aeOff {
			args = []string{"--anti-entropy-rate", "0"}
		}
		t, ns, err := startLL(ctx, binary, llDir, procs, insecure, &spec, args, hc)
		if err != nil {
			return nil, nil, err
		}
		ll = t
		return t.Pids(), ns, nil
	}
	idle, err := llIdle(ctx, restart, sl, hc, p, rep.Keys, aeRate, progress)
	res.Idle = &idle
	return errors.Join(append(errs, err)...)
}

// slWipedProbe checks, on a 3-node single-leader cluster of its own under
// dir, whether a follower whose data directory is removed comes back under
// its id: 100 keys written, a follower stopped, wiped and restarted, given
// wait to apply the leader's commit index, then one more key written and
// wait/2 more. It returns what happened, for the report.
func slWipedProbe(ctx context.Context, binary, dir string, procs int, insecure bool, wait time.Duration, progress func(string)) string {
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecure})
	if err != nil {
		return "not checked: " + err.Error()
	}
	defer func() {
		t.Stop()
		os.RemoveAll(dir)
	}()
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err == nil {
		_, err = Preload(ctx, v, 100, 100, 4, 10*time.Second)
	}
	cl := t.Cluster()
	var lead string
	var lst client.Status
	if err == nil {
		lead, lst, err = cl.Leader(ctx)
	}
	if err != nil {
		return "not checked: " + err.Error()
	}
	f := ""
	for _, id := range cl.Spec().IDs() {
		if id != lead {
			f = id
			break
		}
	}
	d, _ := nodeDataDir(cl, f)
	if err := cl.Stop(f); err != nil {
		return "not checked: " + err.Error()
	}
	os.RemoveAll(d)
	t0 := time.Now()
	if err := cl.Start(f); err != nil {
		return "not checked: " + err.Error()
	}
	target := lst.CommitIndex
	caught := func(wait time.Duration) (bool, client.Status) {
		var st client.Status
		for end := time.Now().Add(wait); time.Now().Before(end) && ctx.Err() == nil; {
			if s, err := cl.Status(ctx, f); err == nil {
				st = s
				if s.AppliedIndex >= target {
					return true, st
				}
			}
			sleepCtx(ctx, 50*time.Millisecond)
		}
		return false, st
	}
	ok, st := caught(wait)
	if !ok {
		if _, err := Preload(ctx, v, 1, 100, 1, 10*time.Second); err == nil {
			if _, l, err := cl.Leader(ctx); err == nil {
				target = l.CommitIndex
			}
		}
		ok, st = caught(wait / 2)
	}
	state := ""
	if ms, err := cl.Client().Members(ctx); err == nil {
		for _, m := range ms {
			if m.ID == f {
				state = fmt.Sprintf("; the leader lists it in state %s with match index %d", m.State, m.MatchIndex)
			}
		}
	}
	var out string
	if ok {
		out = fmt.Sprintf("a 3-node single-leader cluster's follower %s, its data directory removed and restarted under its id, applied the leader's commit index %d %.1f s after its start%s", f, target, time.Since(t0).Seconds(), state)
	} else {
		out = fmt.Sprintf("a 3-node single-leader cluster's follower %s, its data directory removed and restarted under its id, had NOT applied the leader's commit index %d %.0f s after its start (one more write after %v): its status shows last index %d, applied %d, term %d%s", f, target, time.Since(t0).Seconds(), wait, st.LastIndex, st.AppliedIndex, st.Term, state)
	}
	progress("leaderless: wiped-follower check: " + out)
	return out
}

// distinctValues wraps v so that each write carries a value of its own
// instead of the one it is given: size random alphanumeric bytes drawn
// from gen and the key, so that the repair data does not compress to
// nothing (Preload writes one value everywhere).
func distinctValues(v Variant, size int, gen uint64) Variant {
	open := v.Open
	v.Open = func(ctx context.Context, i, n int) (Doer, error) {
		d, err := open(ctx, i, n)
		if err != nil {
			return nil, err
		}
		return &distinctDoer{Doer: d, gen: gen, buf: make([]byte, size)}, nil
	}
	return v
}

type distinctDoer struct {
	Doer
	gen uint64
	buf []byte
}

func (d *distinctDoer) Write(ctx context.Context, key string, _ []byte) error {
	fillValue(d.buf, d.gen, key)
	return d.Doer.Write(ctx, key, d.buf)
}

// fillValue fills b with random alphanumeric bytes drawn from gen and key.
func fillValue(b []byte, gen uint64, key string) {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	r := rand.New(rand.NewPCG(gen, h))
	for i := 0; i < len(b); {
		x := r.Uint64()
		for j := 0; j < 10 && i < len(b); j++ {
			b[i] = alphabet[x%62]
			x /= 62
			i++
		}
	}
}

// walsString renders WALs as "n1 2 segments from index 123; ...".
func walsString(w map[string]WALInfo) string {
	var parts []string
	for id, x := range w {
		parts = append(parts, fmt.Sprintf("%s %d segments from index %d", id, x.Segments, x.FirstIndex))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// llRepairLimit bounds one repair or catch-up of keys keys: 60 s plus a
// millisecond a key (a quarter of the default anti-entropy rate).
func llRepairLimit(keys int) time.Duration {
	return 60*time.Second + time.Duration(keys)*time.Millisecond
}

// summarize takes the medians over the trials that finished.
func (rep *LLRepair) summarize() {
	var ll, sl, kps []float64
	for _, t := range rep.Trials {
		if t.Repaired {
			ll = append(ll, t.Secs)
			kps = append(kps, t.KeysPerSec)
		}
	}
	for _, t := range rep.SLTrials {
		if t.CaughtUp {
			sl = append(sl, t.Secs)
		}
	}
	rep.MedianS, rep.SLMedianS, rep.KeysPerSec = median(ll), median(sl), median(kps)
	rep.Ratio = ratio(rep.MedianS, rep.SLMedianS)
}

// llRepairTrial wipes node id of the leaderless cluster t and times its
// repair by anti-entropy.
func llRepairTrial(ctx context.Context, t *Trireme, nodes []mlNode, hc *http.Client, trial int, id string, home int, rep *LLRepair, progress func(string)) (LLRepairTrial, error) {
	cl := t.Cluster()
	tr := LLRepairTrial{Trial: trial, Node: id, Home: home, Target: home, LoadBefore: loadAverage()}
	var self mlNode
	for _, n := range nodes {
		if n.ID == id {
			self = n
		}
	}
	rc := newRESPClient(self.RESP)
	defer rc.Close()
	before, err := dbSize(ctx, rc)
	if err != nil {
		return tr, fmt.Errorf("DBSIZE on %s: %w", id, err)
	}
	tr.Before = before
	if before != home {
		tr.Target = before
	}
	dir, err := nodeDataDir(cl, id)
	if err != nil {
		return tr, err
	}
	if err := cl.Stop(id); err != nil {
		return tr, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return tr, err
	}
	progress(fmt.Sprintf("leaderless: repair %d: %s stopped and its data directory removed (it held %d keys; the ring makes it a home replica of %d); restarting it", trial, id, before, home))
	cores := coresSince(cl, cl.Spec().IDs())
	t0 := time.Now()
	if err := cl.Start(id); err != nil {
		return tr, err
	}
	limit := llRepairLimit(tr.Target)
	for ctx.Err() == nil && cl.Running(id) {
		el := time.Since(t0)
		if el > limit || (tr.Repaired && el > time.Duration(tr.Secs*float64(time.Second))+llInSyncAfter) {
			break
		}
		var st llStatus
		serr := getJSON(ctx, hc, "http://"+self.HTTP+"/v1/status", time.Second, &st)
		if serr == nil && tr.ReadySecs == 0 {
			tr.ReadySecs = time.Since(t0).Seconds()
		}
		if serr == nil && !tr.Repaired {
			if n, err := dbSize(ctx, rc); err == nil {
				tr.Count = n
				if n >= tr.Target {
					tr.Repaired, tr.Secs = true, time.Since(t0).Seconds()
				}
			}
		}
		if serr == nil && st.Leaderless != nil && !tr.InSync && llAllZero(st.Leaderless.AEDiffering, id, nodes) {
			tr.InSync, tr.InSyncSecs = true, time.Since(t0).Seconds()
		}
		if tr.Repaired && tr.InSync {
			break
		}
		sleepCtx(ctx, llPollEvery-time.Since(t0.Add(el)))
	}
	tr.Cores = cores()
	if n, err := dbSize(ctx, rc); err == nil {
		tr.Count = n
	}
	var st llStatus
	if err := getJSON(ctx, hc, "http://"+self.HTTP+"/v1/status", time.Second, &st); err == nil && st.Leaderless != nil {
		tr.AERepairs, tr.AEExchanges, tr.AEBucketsDiffer, tr.AEBucketsCompared = st.Leaderless.AERepairs, st.Leaderless.AEExchanges,
			st.Leaderless.AEBucketsDiffer, st.Leaderless.AEBucketsCompared
	}
	if tr.Repaired && tr.Secs > tr.ReadySecs {
		tr.KeysPerSec = float64(tr.Target) / (tr.Secs - tr.ReadySecs)
	}
	if keys, err := homeKeys(cl.Spec().IDs(), llN, rep.Keys, id, llRepairSample, uint64(trial)); err == nil {
		for _, k := range keys {
			tr.Sampled++
			if n, err := localValueLen(ctx, hc, self.HTTP, k); err == nil && n == rep.ValueBytes {
				tr.Verified++
			}
		}
	}
	tr.LoadAfter = loadAverage()
	if !cl.Running(id) {
		return tr, fmt.Errorf("%s exited during its repair (see %s)", id, cl.LogPath(id))
	}
	inSync := "NOT in sync by its own anti-entropy view"
	if tr.InSync {
		inSync = fmt.Sprintf("in sync with every peer (its last exchange with each found no differing bucket) %.2f s after its start", tr.InSyncSecs)
	}
	if !tr.Repaired {
		progress(fmt.Sprintf("leaderless: repair %d: NOTE: %s holds %d of %d keys after %.0f s; %s; %d keys repaired by anti-entropy; cores: %s", trial, id, tr.Count, tr.Target, time.Since(t0).Seconds(), inSync, tr.AERepairs, coresOf(tr.Cores)))
		return tr, fmt.Errorf("%s not repaired within %v (%d of %d keys)", id, limit, tr.Count, tr.Target)
	}
	progress(fmt.Sprintf("leaderless: repair %d: %s answered after %.2f s and held its %d keys %.2f s after its start (%.0f keys/s from ready); %s; %d keys repaired by anti-entropy in %d exchanges it started; %d of %d sampled keys read back locally; cores: %s",
		trial, id, tr.ReadySecs, tr.Target, tr.Secs, tr.KeysPerSec, inSync, tr.AERepairs, tr.AEExchanges, tr.Verified, tr.Sampled, coresOf(tr.Cores)))
	return tr, nil
}

// llAllZero reports whether a node's ae_differing names every other node
// of nodes with 0.
func llAllZero(diff map[string]int, self string, nodes []mlNode) bool {
	for _, n := range nodes {
		if n.ID == self {
			continue
		}
		if d, ok := diff[n.ID]; !ok || d != 0 {
			return false
		}
	}
	return true
}

// slRepairTrial times a single-leader follower's catch-up of the repair
// data, as the snapshot part does: a follower (they take turns) is
// stopped, the repair's keys are written (ack majority) while it is down,
// the other nodes are given time to drop the log past its end, and it is
// restarted and timed until it has applied the leader's commit index. (A
// follower whose data directory is removed does not come back under its
// id: the leader keeps probing it above its empty log, see the notes; so
// the follower keeps its own state and misses the data instead.)
func slRepairTrial(ctx context.Context, t *Trireme, trial, keys, valueBytes int, limit time.Duration, progress func(string)) (SLRepairTrial, error) {
	cl := t.Cluster()
	tr := SLRepairTrial{Trial: trial}
	leader, err := t.Leader(ctx)
	if err != nil {
		return tr, err
	}
	var followers []string
	for _, id := range cl.Spec().IDs() {
		if id != leader.ID {
			followers = append(followers, id)
		}
	}
	tr.Follower = followers[(trial-1)%len(followers)]
	fs, err := cl.Status(ctx, tr.Follower)
	if err != nil {
		return tr, err
	}
	tr.FollowerLast = fs.LastIndex
	if _, st, err := cl.Leader(ctx); err == nil {
		tr.Terms[0] = st.Term
	}
	if err := cl.Stop(tr.Follower); err != nil {
		return tr, err
	}
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return tr, err
	}
	v = distinctValues(v, valueBytes, uint64(trial))
	progress(fmt.Sprintf("leaderless: single-leader catch-up %d: follower %s stopped (its log ends at %d); writing the %d keys of %d B, a random value each (ack majority), while it is down",
		trial, tr.Follower, tr.FollowerLast, keys, valueBytes))
	w0 := time.Now()
	if retries, err := Preload(ctx, v, keys, valueBytes, llPreloadConns, 30*time.Second); err != nil {
		return tr, err
	} else if retries > 0 {
		progress(fmt.Sprintf("leaderless: single-leader catch-up %d: NOTE: %d writes were retried", trial, retries))
	}
	tr.WriteSecs = time.Since(w0).Seconds()
	if leader, err = t.Leader(ctx); err != nil {
		return tr, err
	}
	tr.Leader = leader.ID
	var others []string
	for _, id := range cl.Spec().IDs() {
		if id != tr.Follower {
			others = append(others, id)
		}
	}
	tr.WALs, tr.Compacted = waitCompacted(ctx, cl, others, tr.FollowerLast, 30*time.Second)
	_, lst, err := cl.Leader(ctx)
	if err != nil {
		return tr, err
	}
	tr.Target = lst.CommitIndex
	tr.LoadBefore = loadAverage()
	progress(fmt.Sprintf("leaderless: single-leader catch-up %d: wrote in %.1f s (%.0f writes/s); WALs: %s; every other node dropped the log past %s's end: %v; restarting %s (target index %d)",
		trial, tr.WriteSecs, float64(keys)/tr.WriteSecs, walsString(tr.WALs), tr.Follower, tr.Compacted, tr.Follower, tr.Target))
	watch := watchMember(ctx, cl, tr.Follower, 100*time.Millisecond)
	cores := coresSince(cl, cl.Spec().IDs())
	t0 := time.Now()
	if err := cl.Start(tr.Follower); err != nil {
		watch.stop()
		return tr, err
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for wctx.Err() == nil && cl.Running(tr.Follower) {
		st, err := cl.Status(wctx, tr.Follower)
		if err == nil && tr.ReadySecs == 0 {
			tr.ReadySecs = time.Since(t0).Seconds()
		}
		if err == nil && st.AppliedIndex >= tr.Target {
			tr.Secs, tr.CaughtUp = time.Since(t0).Seconds(), true
			break
		}
		sleepCtx(wctx, llSLPollEvery)
	}
	tr.Cores = cores()
	members := watch.stop()
	if id, st, err := cl.Leader(ctx); err == nil {
		tr.Terms[1], tr.LeaderAfter = st.Term, id
	}
	fn, _ := cl.Node(tr.Follower)
	metrics, _ := scrapeMetrics(ctx, fn.HTTP, "snapshot")
	tr.Path = catchUpPath(members, metrics, tr.CaughtUp)
	tr.States = members.statesPath()
	for name, v := range metrics {
		if v > 0 && strings.Contains(name, "bytes") && strings.Contains(name, "received") {
			tr.Snapshot = int64(v)
		}
	}
	tr.StoreBytes = storeBytes(cl, tr.Follower)
	tr.LoadAfter = loadAverage()
	if !cl.Running(tr.Follower) {
		return tr, fmt.Errorf("%s exited during its catch-up (see %s)", tr.Follower, cl.LogPath(tr.Follower))
	}
	if tr.Terms[0] != tr.Terms[1] {
		progress(fmt.Sprintf("leaderless: single-leader catch-up %d: NOTE: the term moved from %d to %d (leader %s, then %s)", trial, tr.Terms[0], tr.Terms[1], tr.Leader, tr.LeaderAfter))
	}
	if !tr.CaughtUp {
		return tr, fmt.Errorf("%s did not apply index %d within %v; member states: %s", tr.Follower, tr.Target, limit, tr.States)
	}
	progress(fmt.Sprintf("leaderless: single-leader catch-up %d: %s answered after %.2f s and applied index %d %.2f s after its start, by %s (%.1f MiB of snapshot received; member states: %s); cores: %s",
		trial, tr.Follower, tr.ReadySecs, tr.Target, tr.Secs, tr.Path, float64(tr.Snapshot)/(1<<20), tr.States, coresOf(tr.Cores)))
	return tr, nil
}

// llIdle measures the idle windows: per round the three sides in
// roundOrder, the leaderless cluster restarted (restart) with its side's
// setting before each of its windows.
func llIdle(ctx context.Context, restart func(aeOff bool) ([]int, []mlNode, error), sl *Trireme, hc *http.Client, p Profile, keys, aeRate int, progress func(string)) (LLIdle, error) {
	settle := min(llIdleSettle, p.LLIdleWindow)
	x := LLIdle{WindowS: p.LLIdleWindow.Seconds(), SettleS: settle.Seconds(), Rounds: p.LLRounds, Keys: keys, Rate: aeRate}
	sides := []string{IdleAEOn, IdleAEOff, IdleSL}
	progress(fmt.Sprintf("leaderless: idle: %d rounds of %v windows (after %v of settling): %s", p.LLRounds, p.LLIdleWindow, settle, strings.Join(sides, "; ")))
	slIDs := sl.Cluster().Spec().IDs()
	for round := 1; round <= p.LLRounds && ctx.Err() == nil; round++ {
		for _, i := range roundOrder(len(sides), round) {
			w := LLIdleWindow{Round: round, Side: sides[i]}
			var pids []int
			var nodes []mlNode
			var names []string
			if sides[i] == IdleSL {
				pids, names = sl.Pids(), slIDs
			} else {
				var err error
				if pids, nodes, err = restart(sides[i] == IdleAEOff); err != nil {
					return x, fmt.Errorf("idle: restarting the leaderless cluster: %w", err)
				}
				for _, n := range nodes {
					names = append(names, n.ID)
				}
			}
			if err := sleepCtx(ctx, settle); err != nil {
				return x, err
			}
			sts0 := fetchLLStatuses(ctx, hc, nodes)
			c0 := map[int]time.Duration{}
			for _, pid := range pids {
				c0[pid], _ = procCPU(pid)
			}
			t0 := time.Now()
			if err := sleepCtx(ctx, p.LLIdleWindow); err != nil {
				return x, err
			}
			secs := time.Since(t0).Seconds()
			w.Seconds, w.ByNode = secs, map[string]float64{}
			for j, pid := range pids {
				c, err := procCPU(pid)
				if err != nil {
					return x, fmt.Errorf("idle: CPU of %d: %w", pid, err)
				}
				cores := (c - c0[pid]).Seconds() / secs
				w.Cores += cores
				if j < len(names) {
					w.ByNode[names[j]] = cores
				}
			}
			sts1 := fetchLLStatuses(ctx, hc, nodes)
			for _, n := range nodes {
				a, ok0 := sts0[n.ID]
				b, ok1 := sts1[n.ID]
				if !ok0 || !ok1 {
					continue
				}
				d := func(x, y uint64) uint64 { return y - min(x, y) }
				w.AEExchanges += d(a.Leaderless.AEExchanges, b.Leaderless.AEExchanges)
				w.AEBucketsCompared += d(a.Leaderless.AEBucketsCompared, b.Leaderless.AEBucketsCompared)
				w.AEBucketsDiffer += d(a.Leaderless.AEBucketsDiffer, b.Leaderless.AEBucketsDiffer)
				w.AERepairs += d(a.Leaderless.AERepairs, b.Leaderless.AERepairs)
			}
			x.Windows = append(x.Windows, w)
			progress(fmt.Sprintf("leaderless: idle round %d/%d: %-44s %.3f cores (%.0f ms CPU/s) over %.1f s; %d exchanges, %d buckets compared, %d differed, %d keys repaired",
				round, p.LLRounds, w.Side, w.Cores, w.Cores*1000, secs, w.AEExchanges, w.AEBucketsCompared, w.AEBucketsDiffer, w.AERepairs))
		}
	}
	x.summarize(sides)
	return x, nil
}

// summarize takes each side's medians and compares anti-entropy on with
// off.
func (x *LLIdle) summarize(sides []string) {
	x.Sides = nil
	med := map[string]float64{}
	for _, s := range sides {
		var cs []float64
		for _, w := range x.Windows {
			if w.Side == s {
				cs = append(cs, w.Cores)
			}
		}
		if len(cs) == 0 {
			continue
		}
		med[s] = median(cs)
		x.Sides = append(x.Sides, LLIdleSide{Side: s, Windows: len(cs), Cores: med[s], MinCores: slices.Min(cs), MaxCores: slices.Max(cs)})
	}
	on, okOn := med[IdleAEOn]
	off, okOff := med[IdleAEOff]
	if okOn && okOff {
		x.OnOverOff, x.ExtraCores = ratio(on, off), on-off
	}
	x.RoundDiffs = idleRoundDiffs(x.Windows)
	x.MedianDiff = median(x.RoundDiffs)
}

// idleRoundDiffs pairs the anti-entropy on and off windows by round: the
// on window's cores minus the off window's, in round order.
func idleRoundDiffs(ws []LLIdleWindow) []float64 {
	on, off := map[int]float64{}, map[int]float64{}
	var rounds []int
	for _, w := range ws {
		switch w.Side {
		case IdleAEOn:
			on[w.Round] = w.Cores
			rounds = append(rounds, w.Round)
		case IdleAEOff:
			off[w.Round] = w.Cores
		}
	}
	slices.Sort(rounds)
	var out []float64
	for _, r := range rounds {
		if o, ok := off[r]; ok {
			out = append(out, on[r]-o)
		}
	}
	return out
}
