package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Leaderless runs (RunConfig.Mode = ModeLeaderless): every node runs
// `trireme node --mode leaderless --replication-factor N
// --sloppy-quorum=BOOL`, and HTTP workers send every operation to a random
// node (the coordinator of that request) on a small key space l-I:
//
//   - 40% blind puts (no causal context) of a value unique to the run,
//     w= chosen per operation from Acks (1, 2, 3, quorum by default);
//   - 10% read-modify-writes: a read (r= from Reads), then a put that carries
//     the read's causal context (it supersedes what the read saw);
//   - 5% blind deletes and 7% deletes that carry a read's context;
//   - 8% short lives of a key of its own, e-WORKER-SEQ: a put, a read, a
//     delete with the read's context, and then only reads, so that its
//     tombstone is collected (RunConfig.TombstoneGrace: 4 s by default);
//   - 30% reads, r= from Reads (one, quorum, all or a number), one in
//     five of a retired e- key of the worker's when it has some.
//
// Besides the history (history.json) the run keeps what a leaderless reply
// adds (LLOp: every live value of a read, the replicas a write reached, the
// values whose context a write carried) in leaderless.json. After the
// workload every fault is healed and the harness waits for quiescence
// (every node's hints handed over, every anti-entropy exchange finding no
// difference), reads every key on each of its home replicas
// (consistency=local; final.json), and llchecker.go judges.

// ModeLeaderless is RunConfig.Mode for a leaderless (Dynamo-style) cluster.
const ModeLeaderless = "leaderless"

// LeaderlessFaultKinds are the fault kinds a leaderless run may use: there
// is no leader to transfer and the members are fixed at creation.
var LeaderlessFaultKinds = MultiLeaderFaultKinds

// LeaderlessWriteQuorums and LeaderlessReadQuorums are the w= and r= words
// the workload picks from by default (for N = 3).
var (
	LeaderlessWriteQuorums = []string{"1", "2", "3", "quorum"}
	LeaderlessReadQuorums  = []string{"1", "2", "3", "one", "quorum", "all"}
)

// DefaultLeaderlessRunConfig returns a short leaderless run's settings: 5
// nodes, N = 3, strict quorums (SloppyQuorum false), partitions, kills,
// pauses and slow links held 1-3 s with 0.5-1.5 s between them, 6 keys,
// and --tombstone-grace 4s (more than any pause, more than the request
// timeout) so that tombstones are collected within a short run; Binary
// and Dir must be set.
func DefaultLeaderlessRunConfig() RunConfig {
	c := DefaultRunConfig()
	c.Mode = ModeLeaderless
	c.Nodes, c.ReplicationFactor, c.SloppyQuorum = 5, 3, false
	c.Duration = 15 * time.Second
	c.Faults = []string{"partition", "kill", "pause", "slow"}
	c.HoldMin, c.HoldMax, c.GapMin, c.GapMax = time.Second, 3*time.Second, 500*time.Millisecond, 1500*time.Millisecond
	c.Acks, c.Reads, c.Protocols = slices.Clone(LeaderlessWriteQuorums), slices.Clone(LeaderlessReadQuorums), []string{"http"}
	c.ContendedKeys, c.Counters = 6, 0
	c.TombstoneGrace = 4 * time.Second
	return c
}

// leaderless reports whether the run is a leaderless one.
func (c *RunConfig) leaderless() bool { return c.Mode == ModeLeaderless }

// validateLeaderless checks the fields a leaderless run uses, after
// validateCommon; it refuses what only a single-leader cluster offers.
func (c *RunConfig) validateLeaderless() error {
	switch {
	case c.ReplicationFactor < 1 || c.ReplicationFactor > c.Nodes:
		return fmt.Errorf("chaos: RunConfig.ReplicationFactor %d: want 1..Nodes (%d)", c.ReplicationFactor, c.Nodes)
	case len(c.Acks) == 0 || len(c.Reads) == 0:
		return errors.New("chaos: RunConfig.Acks (w= words) and Reads (r= words) must not be empty in a leaderless run")
	case c.TombstoneGrace < 0:
		return fmt.Errorf("chaos: RunConfig.TombstoneGrace %v: want >= 0 (0: the node's default)", c.TombstoneGrace)
	case c.ContendedKeys < 1:
		return fmt.Errorf("chaos: RunConfig.ContendedKeys %d: a leaderless run needs >= 1 key", c.ContendedKeys)
	case c.SessionClients > 0 || c.CounterClients > 0 || c.CASClients > 0:
		return fmt.Errorf("chaos: RunConfig.SessionClients %d, CounterClients %d, CASClients %d: session reads, idempotent increments and compare-and-set need a single leader; a leaderless run takes none",
			c.SessionClients, c.CounterClients, c.CASClients)
	case c.FillBytesPerSec != 0:
		return fmt.Errorf("chaos: RunConfig.FillBytesPerSec %d: the filler serves WAL compaction for membership runs; a leaderless run takes none", c.FillBytesPerSec)
	}
	for _, q := range c.Acks {
		if _, err := resolveQuorum(q, c.ReplicationFactor); err != nil {
			return fmt.Errorf("chaos: RunConfig.Acks: %q is not a leaderless w= for N=%d: %v", q, c.ReplicationFactor, err)
		}
	}
	for _, q := range c.Reads {
		if _, err := resolveQuorum(q, c.ReplicationFactor); err != nil {
			return fmt.Errorf("chaos: RunConfig.Reads: %q is not a leaderless r= for N=%d: %v", q, c.ReplicationFactor, err)
		}
	}
	for _, p := range c.Protocols {
		if p != "http" {
			return fmt.Errorf("chaos: RunConfig.Protocols: %q: a leaderless run is HTTP only (w=, r=, causal contexts and siblings per request)", p)
		}
	}
	for _, f := range c.Faults {
		if !slices.Contains(LeaderlessFaultKinds, f) {
			return fmt.Errorf("chaos: RunConfig.Faults: %q is not a leaderless fault (want %v; transfer needs a leader, membership a changeable membership)",
				f, LeaderlessFaultKinds)
		}
	}
	return nil
}

// resolveQuorum is the number of replicas w= or r= word q means for
// replication factor n, as the node resolves it.
func resolveQuorum(q string, n int) (int, error) {
	pq, err := api.ParseQuorum(q)
	if err != nil {
		return 0, err
	}
	if pq == api.QuorumDefault {
		return 0, errors.New("empty quorum")
	}
	return pq.Resolve(n)
}

// LLStatus is the part of a leaderless node's GET /v1/status the harness
// uses.
type LLStatus struct {
	ID         string  `json:"id"`
	Mode       string  `json:"mode"`
	Leaderless *LLInfo `json:"leaderless"`
}

// LLInfo is the "leaderless" part of LLStatus.
type LLInfo struct {
	ReplicationFactor int            `json:"replication_factor"`
	SloppyQuorum      bool           `json:"sloppy_quorum"`
	HintsPending      map[string]int `json:"hints_pending"`
	HintsStored       uint64         `json:"hints_stored"`
	HintsDelivered    uint64         `json:"hints_delivered"`
	HintsRefused      uint64         `json:"hints_refused"`
	ReadRepairs       uint64         `json:"read_repairs"`
	AEExchanges       uint64         `json:"ae_exchanges"`
	AERepairs         uint64         `json:"ae_repairs"`
	// AEDiffering: per peer, the buckets that differed in the last
	// exchange that peer started with this node (-1: none yet).
	AEDiffering  map[string]int `json:"ae_differing"`
	TombstonesGC uint64         `json:"tombstones_collected"`
	Down         []string       `json:"down"`
}

// LLStatuses asks every member for its status, in parallel; nodes that do
// not answer (or do not answer as leaderless nodes) are missing.
func (c *Cluster) LLStatuses(ctx context.Context) map[string]LLStatus {
	return memberStatuses(ctx, c, func(st LLStatus) bool { return st.Leaderless != nil })
}

// HealthyLeaderless waits until every member answers /v1/status as a
// leaderless node that counts no peer down (a node counts a peer down until
// it has heard from it).
func (c *Cluster) HealthyLeaderless(ctx context.Context) error {
	return waitAllStatuses(ctx, c, c.LLStatuses, func(st LLStatus) bool {
		return st.Mode == ModeLeaderless && len(st.Leaderless.Down) == 0
	}, "every node leaderless, no peer down")
}

// LLQuiet reports whether, in sts, every one of ids answered, counts no
// peer down, holds no hint, and found no differing bucket in the last
// anti-entropy exchange each peer started with it; else it says why not.
func LLQuiet(sts map[string]LLStatus, ids []string) (bool, string) {
	var why []string
	for _, id := range ids {
		st, ok := sts[id]
		if !ok {
			why = append(why, id+": no status")
			continue
		}
		l := st.Leaderless
		if len(l.Down) > 0 {
			why = append(why, fmt.Sprintf("%s: down %v", id, l.Down))
		}
		for home, n := range l.HintsPending {
			if n > 0 {
				why = append(why, fmt.Sprintf("%s: %d hints for %s", id, n, home))
			}
		}
		for _, peer := range ids {
			if peer == id {
				continue
			}
			if d, ok := l.AEDiffering[peer]; !ok || d != 0 {
				if !ok {
					d = -1
				}
				why = append(why, fmt.Sprintf("%s: %d buckets differed from %s", id, d, peer))
			}
		}
	}
	sort.Strings(why)
	return len(why) == 0, strings.Join(why, "; ")
}

// waitQuiet polls (every 100 ms) until the cluster is quiet (LLQuiet) and
// has stayed so while every node started at least one anti-entropy
// exchange with each peer (so each pair's last exchange postdates the last
// change the harness saw): the replicas of every key then hold the same
// state. It returns when that last stretch began.
func waitQuiet(ctx context.Context, c *Cluster) (time.Time, error) {
	ids := c.MemberIDs()
	var base map[string]uint64 // exchanges at the start of the quiet stretch
	var since time.Time
	last := ""
	for {
		at := time.Now()
		sts := c.LLStatuses(ctx)
		ok, why := LLQuiet(sts, ids)
		switch {
		case !ok:
			base, last = nil, why
		case base == nil:
			base, since = map[string]uint64{}, at
			for id, st := range sts {
				base[id] = st.Leaderless.AEExchanges
			}
		default:
			done := true
			for id, st := range sts {
				if st.Leaderless.AEExchanges < base[id]+uint64(len(ids)) {
					done = false
					last = fmt.Sprintf("quiet, waiting for %s's exchanges (%d of %d)", id, st.Leaderless.AEExchanges-base[id], len(ids))
				}
			}
			if done {
				return since, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("after healing: the replicas did not quiesce (hints handed over, anti-entropy finding no difference): %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// llReply is a leaderless node's JSON reply to a read or a write.
type llReply struct {
	Value    string `json:"value"`
	Encoding string `json:"encoding"`
	Context  string `json:"context"`
	Index    uint64 `json:"index"`
	Replicas int    `json:"replicas"`
	Error    string `json:"error"`
	Siblings []struct {
		Value    string `json:"value"`
		Encoding string `json:"encoding"`
		Dot      string `json:"dot"`
	} `json:"siblings"`
}

// readLL reads key on node with query q (r=Q, or consistency=local) and
// returns its state and the HTTP status; err is a transport error or a
// reply that cannot be read (the status is then 0 or what came).
func (c *HTTPClient) readLL(ctx context.Context, node, key string, q url.Values) (MLRead, int, error) {
	var rep llReply
	code, _, err := c.request(ctx, http.MethodGet, c.url(node, key, q), "", nil, &rep)
	if err != nil {
		return MLRead{}, code, err
	}
	switch code {
	case http.StatusNotFound:
		return MLRead{Context: rep.Context}, code, nil
	case http.StatusOK:
	default:
		return MLRead{}, code, fmt.Errorf("GET %s on %s: %d %s", key, node, code, rep.Error)
	}
	if rep.Encoding != "" {
		return MLRead{}, code, fmt.Errorf("GET %s on %s: unexpected encoding %s", key, node, rep.Encoding)
	}
	r := MLRead{Found: true, Value: rep.Value, Context: rep.Context}
	for _, s := range rep.Siblings {
		if s.Encoding != "" {
			return MLRead{}, code, fmt.Errorf("GET %s on %s: unexpected sibling encoding %s", key, node, s.Encoding)
		}
		r.Siblings = append(r.Siblings, MLSibling{Dot: s.Dot, Value: s.Value})
	}
	sort.Slice(r.Siblings, func(i, j int) bool { return r.Siblings[i].Dot < r.Siblings[j].Dot })
	return r, code, nil
}

// writeLL puts key=value (or deletes key) through node with w= and, if
// cctx is not empty, that causal context (X-Trireme-Context). It returns
// the result (Index: the reply's, the counter of the newest version of
// the written state) and the replicas the reply says hold the write.
func (c *HTTPClient) writeLL(ctx context.Context, node, key, value string, del bool, w, cctx string) (Result, int) {
	q := url.Values{"w": {w}, "timeout": {WriteTimeout.String()}}
	var hdr map[string]string
	if cctx != "" {
		hdr = map[string]string{"X-Trireme-Context": cctx}
	}
	method := http.MethodPut
	if del {
		method = http.MethodDelete
	}
	var rep llReply
	code, h, err := c.request(ctx, method, c.url(node, key, q), value, hdr, &rep)
	replicas := rep.Replicas
	if h != nil {
		if n, perr := strconv.Atoi(h.Get("X-Trireme-Replicas")); perr == nil {
			replicas = n
		}
	}
	if err != nil {
		// The request may have reached the node: the write may happen.
		return Result{Outcome: Unknown, Err: err.Error(), Status: code}, replicas
	}
	return Result{Outcome: writeOutcome(code, rep.Error), Index: rep.Index, Err: rep.Error, Status: code}, replicas
}

// llKey is key I of a leaderless run.
func llKey(i int) string { return fmt.Sprintf("l-%d", i) }

// llExtras holds what leaderless replies add to the history's ops, by op id.
type llExtras struct {
	mu sync.Mutex
	m  map[int]LLExtra // guarded by mu
}

func (e *llExtras) set(id int, x LLExtra) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[id] = x
}

// join returns ops with their extras.
func (e *llExtras) join(ops []Op) []LLOp {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]LLOp, len(ops))
	for i, op := range ops {
		out[i] = LLOp{Op: op, LLExtra: e.m[op.ID]}
	}
	return out
}

// llWorker is one leaderless client: every operation goes to a random
// node, avoiding for mlAvoid a node that just gave no answer.
type llWorker struct {
	id    int
	cid   string                // the cluster id, to decode context tokens
	homes func(string) []string // a key's home replicas
	hc    *HTTPClient
	h     *History
	ex    *llExtras
	cfg   *RunConfig
	ids   []string
	rnd   *rand.Rand
	seq   int
	avoid map[string]time.Time
	// retired: the worker's e- keys, deleted and left alone; keys: every
	// key written, for the final reads.
	retired []string
	keys    *sync.Map
}

func (w *llWorker) node() string {
	now := time.Now()
	ok := slices.DeleteFunc(slices.Clone(w.ids), func(id string) bool { return now.Before(w.avoid[id]) })
	if len(ok) == 0 {
		ok = w.ids
	}
	return ok[w.rnd.IntN(len(ok))]
}

func (w *llWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.step()
		if w.cfg.OpDelayMax > 0 {
			sleepCtx(ctx, time.Duration(w.rnd.Int64N(int64(w.cfg.OpDelayMax))))
		}
	}
}

func (w *llWorker) step() {
	key := llKey(w.rnd.IntN(w.cfg.ContendedKeys))
	switch x := w.rnd.IntN(100); {
	case x < 40:
		w.write(key, false, nil)
	case x < 50:
		if r, ok := w.read(key); ok {
			w.write(key, false, &r)
		}
	case x < 55:
		w.write(key, true, nil)
	case x < 62:
		if r, ok := w.read(key); ok {
			w.write(key, true, &r)
		}
	case x < 70: // a short life: put, read, delete with its context
		key = fmt.Sprintf("e-%d-%d", w.id, w.seq+1)
		w.keys.Store(key, true)
		w.write(key, false, nil)
		if r, ok := w.read(key); ok {
			w.write(key, true, &r)
		}
		w.retired = append(w.retired, key)
	default:
		if len(w.retired) > 0 && w.rnd.IntN(5) == 0 {
			key = w.retired[w.rnd.IntN(len(w.retired))]
		}
		w.read(key)
	}
}

// read reads key with a random r= at a random node; ok if it answered
// (200 or 404).
func (w *llWorker) read(key string) (MLRead, bool) {
	// Not cut short by the end of the run (see worker.step).
	octx, cancel := context.WithTimeout(context.Background(), 2*WriteTimeout)
	defer cancel()
	q := w.cfg.Reads[w.rnd.IntN(len(w.cfg.Reads))]
	rn, _ := resolveQuorum(q, w.cfg.ReplicationFactor)
	op := Op{Worker: w.id, Proto: "http", Node: w.node(), Kind: KindGet, Key: key, Consistency: "r=" + q}
	id := w.h.Invoke(op)
	r, code, err := w.hc.readLL(octx, op.Node, key, url.Values{"r": {q}})
	var res Result
	switch {
	case err == nil:
		res = Result{Outcome: OK, Found: r.Found, Value: r.Value, Status: code}
	case code == 0:
		res = Result{Outcome: Unknown, Err: err.Error()}
		w.avoid[op.Node] = time.Now().Add(mlAvoid)
	default:
		res = Result{Outcome: Failed, Err: err.Error(), Status: code}
	}
	w.h.Complete(id, res)
	x := LLExtra{R: rn, Values: r.Values()}
	if err == nil {
		x.Seen = w.seen(key, r.Context)
	}
	w.ex.set(id, x)
	return r, err == nil
}

// write puts a new value to key (or deletes it) with a random w= at a
// random node; with seen, it carries that read's causal context.
func (w *llWorker) write(key string, del bool, seen *MLRead) {
	octx, cancel := context.WithTimeout(context.Background(), 2*WriteTimeout)
	defer cancel()
	w.seq++
	q := w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]
	wn, _ := resolveQuorum(q, w.cfg.ReplicationFactor)
	op := Op{Worker: w.id, Proto: "http", Node: w.node(), Kind: KindPut, Key: key, Ack: "w=" + q}
	if del {
		op.Kind = KindDelete
	} else {
		op.Value = fmt.Sprintf("w%d-%d", w.id, w.seq)
	}
	x := LLExtra{W: wn}
	cctx := ""
	if seen != nil {
		x.Context, x.Saw, cctx = true, seen.Values(), seen.Context
	}
	id := w.h.Invoke(op)
	res, replicas := w.hc.writeLL(octx, op.Node, key, op.Value, del, q, cctx)
	// The history keeps no index (CheckReadsWritten would compare it with
	// reads'); a blind write's is its own version's counter (the state it
	// minted holds that version only), and its minter is the node asked
	// if it is a home replica of the key. Else the minter is the first
	// home replica that node counted up, which the harness cannot name.
	index := res.Index
	res.Index = 0
	w.h.Complete(id, res)
	x.Replicas = replicas
	if hs := w.homes(key); seen == nil && res.Outcome == OK && index > 0 {
		if slices.Contains(hs, op.Node) {
			x.Minter, x.Counter = op.Node, index
		}
	}
	w.ex.set(id, x)
	if res.Outcome == Unknown && res.Status == 0 {
		w.avoid[op.Node] = time.Now().Add(mlAvoid)
	}
}

// seen decodes a read's context token (actor -> counter); nil if it cannot.
func (w *llWorker) seen(key, token string) map[string]uint64 {
	if token == "" {
		return nil
	}
	c, err := vclock.DecodeToken(w.cid, key, token)
	if err != nil {
		return nil
	}
	out := make(map[string]uint64, len(c.Vector))
	for _, e := range c.Vector {
		out[e.Node] = e.Counter
	}
	return out
}

// runLeaderless is Run for ModeLeaderless.
func runLeaderless(ctx context.Context, cfg RunConfig, log *slog.Logger) (*Report, error) {
	ccfg := ClusterConfig{Binary: cfg.Binary, Dir: cfg.Dir, Nodes: cfg.Nodes,
		ClusterID: fmt.Sprintf("chaos-%d", cfg.Seed),
		NodeArgs: []string{"--mode", ModeLeaderless, "--replication-factor", strconv.Itoa(cfg.ReplicationFactor),
			"--sloppy-quorum=" + strconv.FormatBool(cfg.SloppyQuorum), "--write-timeout", WriteTimeout.String()},
		Seed: cfg.Seed, Logger: log}
	if cfg.TombstoneGrace > 0 {
		ccfg.NodeArgs = append(ccfg.NodeArgs, "--tombstone-grace", cfg.TombstoneGrace.String())
	}
	ccfg.NodeArgs = append(ccfg.NodeArgs, cfg.NodeArgs...)
	ll := &LLStats{N: cfg.ReplicationFactor, Sloppy: cfg.SloppyQuorum}
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Dir: cfg.Dir, ByOutcome: map[string]int{}, LL: ll}
	c, err := NewCluster(ccfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	homes, err := LLHomes(c.IDs, cfg.ReplicationFactor)
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = c.HealthyLeaderless(hctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("chaos: cluster did not start (logs in %s): %w", filepath.Join(cfg.Dir, "logs"), err)
	}

	h := NewHistory()
	ex := &llExtras{m: map[int]LLExtra{}}
	httpAddrs := map[string]string{}
	for _, id := range c.AllIDs() {
		httpAddrs[id] = c.Addrs[id].HTTP
	}
	// MultiLeader: no leader to prefer, to isolate or to time failovers of.
	nem := NewNemesis(c, h, NemesisConfig{Faults: cfg.Faults, HoldMin: cfg.HoldMin, HoldMax: cfg.HoldMax,
		GapMin: cfg.GapMin, GapMax: cfg.GapMax, Seed: cfg.Seed, MultiLeader: true, Logger: log})
	wctx, wcancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nem.Run(wctx) // heals everything on return: network, paused and killed nodes
	}()
	var keyset sync.Map // the e- keys
	for i := range cfg.Workers {
		wk := &llWorker{id: i, cid: ccfg.ClusterID, homes: homes, hc: NewHTTPClient(httpAddrs), h: h, ex: ex, cfg: &cfg, ids: c.MemberIDs(),
			rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1)), avoid: map[string]time.Time{}, keys: &keyset}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer wk.hc.Close()
			wk.run(wctx)
		}()
	}
	wg.Wait()
	wcancel()
	healed := time.Now()
	log.Info("workload done; healed; waiting for quiescence", "ops", len(h.Ops()))

	rep.Anomalies = append(rep.Anomalies, afterHeal(c, log)...)
	qctx, qcancel := context.WithTimeout(ctx, 60*time.Second)
	at, err := waitQuiet(qctx, c)
	qcancel()
	if err != nil {
		ll.Quiescence = time.Since(healed)
		rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyNoRecovery, Detail: err.Error()})
	} else {
		ll.Quiescence, ll.Quiet = at.Sub(healed), true
	}
	rep.RecoveryTime = ll.Quiescence

	// The final reads, with their own time.
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	keys := make([]string, cfg.ContendedKeys)
	for i := range keys {
		keys[i] = llKey(i)
	}
	keyset.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	sort.Strings(keys)
	final, an := readLLFinal(rctx, c, keys, homes, ll)
	rep.Anomalies = append(rep.Anomalies, an...)
	ll.Keys = len(keys)
	for _, st := range c.LLStatuses(rctx) {
		l := st.Leaderless
		ll.HintsStored += l.HintsStored
		ll.HintsDelivered += l.HintsDelivered
		ll.HintsRefused += l.HintsRefused
		ll.ReadRepairs += l.ReadRepairs
		ll.AERepairs += l.AERepairs
		ll.TombstonesGC += l.TombstonesGC
	}

	ops := ex.join(h.Ops())
	rep.Ops = len(ops)
	for _, op := range ops {
		rep.ByOutcome[op.Kind+"/"+string(op.Outcome)]++
		if op.Kind == KindGet && op.Outcome == OK {
			rep.ReadsChecked++
		}
	}
	rep.Faults = nem.Counts()
	grace := cfg.TombstoneGrace
	if grace == 0 {
		grace = 10 * time.Second // the node's default
	}
	// No tombstone can be collected while the workload runs if the grace
	// outlasts it: contexts then only grow.
	ll.NoGC = grace > cfg.Duration
	an, ll.LLCheckStats = CheckLeaderless(ops, final, homes, LLCheckConfig{N: cfg.ReplicationFactor, Strict: !cfg.SloppyQuorum, NoGC: ll.NoGC})
	rep.Anomalies = append(rep.Anomalies, an...)
	rep.Anomalies = append(rep.Anomalies, scanLogs(c)...)

	if err := h.WriteJSON(filepath.Join(cfg.Dir, "history.json")); err != nil {
		return rep, err
	}
	if b, err := json.MarshalIndent(ops, "", " "); err == nil {
		_ = writeFile(filepath.Join(cfg.Dir, "leaderless.json"), b)
	}
	if b, err := json.MarshalIndent(final, "", " "); err == nil {
		_ = writeFile(filepath.Join(cfg.Dir, "final.json"), b)
	}
	if len(rep.Anomalies) > 0 {
		var b strings.Builder
		for _, a := range rep.Anomalies {
			b.WriteString(a.String() + "\n")
		}
		_ = writeFile(filepath.Join(cfg.Dir, "anomalies.txt"), []byte(b.String()))
	}
	return rep, nil
}

// readLLFinal reads every key on each of its home replicas
// (consistency=local): node -> key -> state. Nothing is written any more,
// but a tombstone may be collected meanwhile (its collector drops it first,
// then tells the others), so while the home replicas of some key disagree
// it reads again, every 250 ms for up to 15 s; ll.FinalReads counts the
// rounds. A replica that cannot be read is an anomaly and is left out.
func readLLFinal(ctx context.Context, c *Cluster, keys []string, homes func(string) []string, ll *LLStats) (map[string]map[string]MLRead, []Anomaly) {
	hcs := map[string]*HTTPClient{}
	for _, id := range c.MemberIDs() {
		hcs[id] = NewHTTPClient(map[string]string{id: c.Addrs[id].HTTP})
		defer hcs[id].Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ll.FinalReads++
		final := map[string]map[string]MLRead{}
		errs := map[string]error{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for id, hc := range hcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := map[string]MLRead{}
				var err error
				for _, k := range keys {
					if !slices.Contains(homes(k), id) {
						continue
					}
					var r MLRead
					for try := 0; try < 3; try++ { // a reply lost to a busy loopback is no anomaly
						rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						r, _, err = hc.readLL(rctx, id, k, url.Values{"consistency": {"local"}})
						cancel()
						if err == nil || ctx.Err() != nil {
							break
						}
					}
					if err != nil {
						break
					}
					st[k] = r
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs[id] = err
				} else {
					final[id] = st
				}
			}()
		}
		wg.Wait()
		agree := len(errs) == 0 && len(CheckLLConverged(final, keys, homes)) == 0
		if agree || time.Now().After(deadline) || ctx.Err() != nil {
			var out []Anomaly
			for _, id := range slices.Sorted(maps.Keys(errs)) {
				out = append(out, Anomaly{Kind: AnomalyNoRecovery, Detail: fmt.Sprintf("final read on %s: %v", id, errs[id])})
			}
			return final, out
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}
