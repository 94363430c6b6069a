package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ack modes and read levels the workloads use.
var (
	AckModes   = []string{"majority", "sync", "semi-sync", "async"}
	ReadLevels = []string{"linearizable", "stale"}
	Protocols  = []string{"http", "resp"}
)

// RunConfig configures one chaos run: a fresh cluster, a workload, faults, checks.
type RunConfig struct {
	// Binary is the trireme executable; Dir holds everything the run writes
	// (data, logs, history, visualizations).
	Binary, Dir string
	// Nodes in the cluster (3 or 5 typically).
	Nodes int
	// Duration of the workload under faults (recovery and checks come after).
	Duration time.Duration
	// Seed drives the nemesis and the workload's choices (not the processes' timing).
	Seed uint64
	// Faults are the fault kinds (FaultKinds); empty = none.
	Faults []string
	// Acks are the ack modes written (a key is written with one mode only).
	Acks []string
	// Reads are the read levels used.
	Reads []string
	// Protocols are the client protocols ("http", "resp"); workers alternate.
	Protocols []string
	// Workers is the number of concurrent clients.
	Workers int
	// KeysPerAck is the number of register keys per ack mode.
	KeysPerAck int
	// OpDelayMax bounds the random pause of a worker between operations.
	OpDelayMax time.Duration
	// HoldMin..HoldMax and GapMin..GapMax bound faults and the calm between them.
	HoldMin, HoldMax, GapMin, GapMax time.Duration
	// CheckTimeout bounds porcupine per key.
	CheckTimeout time.Duration
	// NodeArgs are extra flags for every node.
	NodeArgs []string
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// DefaultRunConfig returns a short run's settings; Binary and Dir must be set.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Nodes: 3, Duration: 30 * time.Second, Seed: 1,
		Faults: FaultKinds, Acks: AckModes, Reads: ReadLevels, Protocols: Protocols,
		Workers: 6, KeysPerAck: 4, OpDelayMax: 20 * time.Millisecond,
		HoldMin: 1500 * time.Millisecond, HoldMax: 4 * time.Second, GapMin: 500 * time.Millisecond, GapMax: 2 * time.Second,
		CheckTimeout: 30 * time.Second,
	}
}

// Validate names the first bad field.
func (c *RunConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("chaos: RunConfig.Binary is empty")
	case c.Dir == "":
		return errors.New("chaos: RunConfig.Dir is empty")
	case c.Nodes < 1:
		return fmt.Errorf("chaos: RunConfig.Nodes %d must be >= 1", c.Nodes)
	case c.Duration <= 0:
		return fmt.Errorf("chaos: RunConfig.Duration %v must be > 0", c.Duration)
	case len(c.Acks) == 0:
		return errors.New("chaos: RunConfig.Acks is empty")
	case len(c.Reads) == 0:
		return errors.New("chaos: RunConfig.Reads is empty")
	case len(c.Protocols) == 0:
		return errors.New("chaos: RunConfig.Protocols is empty")
	case c.Workers < 1:
		return fmt.Errorf("chaos: RunConfig.Workers %d must be >= 1", c.Workers)
	case c.KeysPerAck < 1:
		return fmt.Errorf("chaos: RunConfig.KeysPerAck %d must be >= 1", c.KeysPerAck)
	case c.HoldMax < c.HoldMin || c.GapMax < c.GapMin || c.GapMin <= 0:
		return errors.New("chaos: RunConfig hold/gap bounds are inverted or the gap is not > 0")
	case c.CheckTimeout <= 0:
		return errors.New("chaos: RunConfig.CheckTimeout must be > 0")
	}
	for _, a := range c.Acks {
		if !slices.Contains(AckModes, a) {
			return fmt.Errorf("chaos: RunConfig.Acks: unknown ack mode %q (want %v)", a, AckModes)
		}
	}
	for _, r := range c.Reads {
		if !slices.Contains(ReadLevels, r) {
			return fmt.Errorf("chaos: RunConfig.Reads: unknown read level %q (want %v)", r, ReadLevels)
		}
	}
	for _, p := range c.Protocols {
		if !slices.Contains(Protocols, p) {
			return fmt.Errorf("chaos: RunConfig.Protocols: unknown protocol %q (want %v)", p, Protocols)
		}
	}
	for _, f := range c.Faults {
		if !slices.Contains(FaultKinds, f) {
			return fmt.Errorf("chaos: RunConfig.Faults: unknown fault %q (want %v)", f, FaultKinds)
		}
	}
	return nil
}

// Report is what one run found.
type Report struct {
	Seed      uint64         `json:"seed"`
	Nodes     int            `json:"nodes"`
	Dir       string         `json:"dir"`
	Ops       int            `json:"ops"`
	ByOutcome map[string]int `json:"by_outcome"`
	// LinOps is the number of operations porcupine checked, over LinKeys keys.
	LinOps, LinKeys int
	Inconclusive    []string       `json:"inconclusive,omitempty"`
	ReadsChecked    int            `json:"reads_checked"`
	Set             SetStats       `json:"set"`
	Faults          map[string]int `json:"faults"`
	Failovers       []Failover     `json:"failovers"`
	Anomalies       []Anomaly      `json:"anomalies"`
	Rollbacks       int            `json:"rollbacks"`
	RecoveryTime    time.Duration  `json:"recovery"`
}

// FailoverPercentiles returns p50 and p99 of detection, election and first
// write over the measured failovers.
func (r *Report) FailoverPercentiles() (detect, elect, write [2]time.Duration) {
	var d, e, w []time.Duration
	for _, f := range r.Failovers {
		if f.OK {
			d, e, w = append(d, f.Detect), append(e, f.Elect), append(w, f.Write)
		}
	}
	return [2]time.Duration{Percentile(d, 50), Percentile(d, 99)},
		[2]time.Duration{Percentile(e, 50), Percentile(e, 99)},
		[2]time.Duration{Percentile(w, 50), Percentile(w, 99)}
}

// Summary is a human-readable account of the run.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d nodes: %d ops (%v); linearizability checked %d ops on %d keys",
		r.Seed, r.Nodes, r.Ops, r.ByOutcome, r.LinOps, r.LinKeys)
	if len(r.Inconclusive) > 0 {
		fmt.Fprintf(&b, " (inconclusive: %v)", r.Inconclusive)
	}
	fmt.Fprintf(&b, "; %d reads checked for written values\n", r.ReadsChecked)
	fmt.Fprintf(&b, "set: acknowledged %v, missing %v (journaled %v), unknown %v; rollback entries %d\n",
		r.Set.Acked, r.Set.Lost, r.Set.Journaled, r.Set.Unknown, r.Rollbacks)
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var fs []string
	for _, k := range kinds {
		fs = append(fs, fmt.Sprintf("%s=%d", k, r.Faults[k]))
	}
	fmt.Fprintf(&b, "faults: %s\n", strings.Join(fs, " "))
	d, e, w := r.FailoverPercentiles()
	n := 0
	for _, f := range r.Failovers {
		if f.OK {
			n++
		}
	}
	fmt.Fprintf(&b, "failover (%d leader kills measured of %d): detect p50 %v p99 %v; elect p50 %v p99 %v; first write p50 %v p99 %v\n",
		n, len(r.Failovers), d[0], d[1], e[0], e[1], w[0], w[1])
	fmt.Fprintf(&b, "recovery after healing: %v\n", r.RecoveryTime)
	fmt.Fprintf(&b, "anomalies: %d\n", len(r.Anomalies))
	for i, a := range r.Anomalies {
		if i == 20 {
			fmt.Fprintf(&b, "  ... and %d more (see %s)\n", len(r.Anomalies)-20, filepath.Join(r.Dir, "anomalies.txt"))
			break
		}
		fmt.Fprintf(&b, "  %s\n", a)
	}
	return b.String()
}

// Key names: registers are r-MODE-I, set elements s-MODE-WORKER-SEQ.
func registerKey(mode string, i int) string { return fmt.Sprintf("r-%s-%d", mode, i) }

func keyMode(key string) string {
	parts := strings.Split(key, "-")
	if len(parts) < 3 {
		return ""
	}
	if parts[1] == "semi" {
		return "semi-sync"
	}
	return parts[1]
}

// Run starts a cluster in cfg.Dir, runs the workload under faults for
// cfg.Duration, heals, checks, and returns the report. An error means the
// harness itself failed (the cluster never started, ...); what the checks
// found is in Report.Anomalies. The history is saved as Dir/history.json.
func Run(ctx context.Context, cfg RunConfig) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Dir: cfg.Dir, ByOutcome: map[string]int{}}
	c, err := NewCluster(ClusterConfig{Binary: cfg.Binary, Dir: cfg.Dir, Nodes: cfg.Nodes,
		ClusterID: fmt.Sprintf("chaos-%d", cfg.Seed),
		NodeArgs:  append([]string{"--write-timeout", WriteTimeout.String()}, cfg.NodeArgs...),
		Seed:      cfg.Seed, Logger: log})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = c.Healthy(hctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("chaos: cluster did not start (logs in %s): %w", filepath.Join(cfg.Dir, "logs"), err)
	}

	h := NewHistory()
	httpAddrs, respAddrs := map[string]string{}, map[string]string{}
	for _, id := range c.IDs {
		httpAddrs[id], respAddrs[id] = c.Addrs[id].HTTP, c.Addrs[id].RESP
	}
	nem := NewNemesis(c, h, NemesisConfig{Faults: cfg.Faults, HoldMin: cfg.HoldMin, HoldMax: cfg.HoldMax,
		GapMin: cfg.GapMin, GapMax: cfg.GapMax, Seed: cfg.Seed, Logger: log})

	wctx, wcancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nem.Run(wctx)
	}()
	var setKeys sync.Map
	for w := range cfg.Workers {
		proto := cfg.Protocols[w%len(cfg.Protocols)]
		var cl Client
		if proto == "resp" {
			cl = NewRESPClient(respAddrs)
		} else {
			cl = NewHTTPClient(httpAddrs)
		}
		wk := &worker{id: w, proto: proto, cl: cl, h: h, cfg: &cfg, ids: c.IDs,
			rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1)), setKeys: &setKeys}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			wk.run(wctx)
		}()
	}
	wg.Wait()
	wcancel()
	log.Info("workload done; recovering", "ops", len(h.Ops()))

	// Recovery: everything healed (nem.Run healed on return); a leader, and
	// every node caught up.
	recStart := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	for id, err := range c.Procs.Exited() {
		rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyCrash,
			Detail: fmt.Sprintf("node %s is not running after healing (%v); log %s", id, err, c.Procs.LogPath(id))})
	}
	_, leader, err := converge(rctx, c)
	rep.RecoveryTime = time.Since(recStart)
	if err != nil {
		rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyNoRecovery, Detail: err.Error()})
	}

	var keys []string
	for _, m := range cfg.Acks {
		for i := range cfg.KeysPerAck {
			keys = append(keys, registerKey(m, i))
		}
	}
	setKeys.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	sort.Strings(keys)

	var allRB []Rollback
	for _, id := range c.IDs {
		rbs, err := c.Rollbacks(rctx, id)
		if err != nil {
			rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyNoRecovery, Detail: fmt.Sprintf("reading %s's rollbacks: %v", id, err)})
		}
		allRB = append(allRB, rbs...)
	}
	rep.Rollbacks = len(allRB)

	ops := h.Ops()
	rep.Ops = len(ops)
	for _, op := range ops {
		rep.ByOutcome[op.Kind+"/"+string(op.Outcome)]++
	}
	rep.Faults = nem.Counts()
	rep.Failovers = nem.Failovers()

	rbChecked := false
	if err == nil {
		final := map[string]map[string]FinalRead{}
		for _, id := range c.IDs {
			st, err := readAll(rctx, respAddrs[id], keys)
			if err != nil {
				rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyNoRecovery, Detail: fmt.Sprintf("final read on %s: %v", id, err)})
				continue
			}
			final[id] = st
		}
		if _, ok := final[leader]; ok && len(final) == len(c.IDs) {
			rep.Anomalies = append(rep.Anomalies, CheckConverged(final)...)
			var setOps []Op
			for _, op := range ops {
				if strings.HasPrefix(op.Key, "s-") {
					setOps = append(setOps, op)
				}
			}
			an, st := CheckSet(setOps, final[leader], allRB, cfg.Nodes)
			rep.Anomalies = append(rep.Anomalies, an...)
			rep.Set = st
			rbChecked = true
			rep.Anomalies = append(rep.Anomalies, CheckRollbacks(ops, final[leader], allRB, cfg.Nodes)...)
		}
	}
	if !rbChecked {
		rep.Anomalies = append(rep.Anomalies, CheckRollbacks(ops, nil, allRB, cfg.Nodes)...)
	}

	for _, op := range ops {
		if op.Kind == KindGet && op.Outcome == OK {
			rep.ReadsChecked++
		}
	}
	rep.Anomalies = append(rep.Anomalies, CheckReadsWritten(ops)...)
	linKeys := func(k string) bool {
		if !strings.HasPrefix(k, "r-") {
			return false
		}
		m := keyMode(k)
		return m == "majority" || m == "sync"
	}
	an, ls := CheckLinearizable(ops, linKeys, cfg.CheckTimeout, cfg.Dir)
	rep.Anomalies = append(rep.Anomalies, an...)
	rep.LinOps, rep.LinKeys, rep.Inconclusive = ls.Ops, ls.Keys, ls.Inconclusive
	rep.Anomalies = append(rep.Anomalies, scanLogs(c)...)

	if err := h.WriteJSON(filepath.Join(cfg.Dir, "history.json")); err != nil {
		return rep, err
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

// converge waits until all nodes agree on a leader, writes a barrier with
// ack=majority, and waits until every node has applied the same index, at
// least the barrier's.
func converge(ctx context.Context, c *Cluster) (map[string]Status, string, error) {
	leader, err := c.Healthy(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("after healing: %w", err)
	}
	hc := NewHTTPClient(map[string]string{leader: c.Addrs[leader].HTTP})
	defer hc.Close()
	var barrier Result
	for i := 0; ; i++ {
		octx, cancel := context.WithTimeout(ctx, 2*WriteTimeout)
		barrier = hc.Put(octx, leader, "chaos-barrier", fmt.Sprintf("b%d", i), "majority")
		cancel()
		if barrier.Outcome == OK {
			break
		}
		if ctx.Err() != nil {
			return nil, leader, fmt.Errorf("after healing: no majority write succeeded through leader %s: %s", leader, barrier.Err)
		}
		if l, err := c.Healthy(ctx); err == nil {
			leader = l
			hc = NewHTTPClient(map[string]string{leader: c.Addrs[leader].HTTP})
		}
	}
	for {
		sts := c.Statuses(ctx)
		ok := len(sts) == len(c.IDs)
		var applied []string
		first := uint64(0)
		for id, st := range sts {
			applied = append(applied, fmt.Sprintf("%s=%d", id, st.AppliedIndex))
			if first == 0 {
				first = st.AppliedIndex
			}
			if st.AppliedIndex < barrier.Index || st.AppliedIndex != first {
				ok = false
			}
		}
		if ok {
			return sts, leader, nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(applied)
			return sts, leader, fmt.Errorf("after healing: nodes did not converge to the barrier index %d: applied %v", barrier.Index, applied)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readAll reads keys from one node's applied state (stale reads, RESP MGET).
func readAll(ctx context.Context, addr string, keys []string) (map[string]FinalRead, error) {
	r := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "TRIREME.CONSISTENCY", "stale").Err()
		}})
	defer r.Close()
	out := make(map[string]FinalRead, len(keys))
	for lo := 0; lo < len(keys); lo += 256 {
		batch := keys[lo:min(lo+256, len(keys))]
		vals, err := r.MGet(ctx, batch...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				out[batch[i]] = FinalRead{Found: true, Value: s}
			} else {
				out[batch[i]] = FinalRead{}
			}
		}
	}
	return out, nil
}

// scanLogs reports panics, data races and fatal errors in the node logs.
func scanLogs(c *Cluster) []Anomaly {
	var out []Anomaly
	for _, id := range c.IDs {
		f, err := os.Open(c.Procs.LogPath(id))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		line := 0
		for sc.Scan() {
			line++
			t := sc.Text()
			if strings.HasPrefix(t, "panic:") || strings.Contains(t, "WARNING: DATA RACE") || strings.HasPrefix(t, "fatal error:") ||
				strings.Contains(t, "fatal node error") {
				out = append(out, Anomaly{Kind: AnomalyCrash, Detail: fmt.Sprintf("%s:%d: %s", c.Procs.LogPath(id), line, t)})
			}
		}
		f.Close()
	}
	return out
}

// worker is one client: it writes registers, reads them, and inserts set elements.
type worker struct {
	id      int
	proto   string
	cl      Client
	h       *History
	cfg     *RunConfig
	ids     []string
	rnd     *rand.Rand
	setKeys *sync.Map
	node    string
	seq     int
}

func (w *worker) run(ctx context.Context) {
	w.node = w.ids[w.id%len(w.ids)]
	for ctx.Err() == nil {
		w.step(ctx)
		if w.cfg.OpDelayMax > 0 {
			sleepCtx(ctx, time.Duration(w.rnd.Int64N(int64(w.cfg.OpDelayMax))))
		}
	}
}

func (w *worker) step(ctx context.Context) {
	// Operations are not cut short by the end of the run: an operation
	// interrupted by the harness would have an unknown outcome for no reason.
	octx, cancel := context.WithTimeout(context.Background(), 2*WriteTimeout)
	defer cancel()
	w.seq++
	value := fmt.Sprintf("w%d-%d", w.id, w.seq)
	ack := w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]
	op := Op{Worker: w.id, Proto: w.proto, Node: w.node}
	var res Result
	switch x := w.rnd.IntN(100); {
	case x < 5: // register delete
		op.Kind, op.Key, op.Ack = KindDelete, registerKey(ack, w.rnd.IntN(w.cfg.KeysPerAck)), ack
		id := w.h.Invoke(op)
		res = w.cl.Delete(octx, op.Node, op.Key, ack)
		w.h.Complete(id, res)
	case x < 40: // register write
		op.Kind, op.Key, op.Value, op.Ack = KindPut, registerKey(ack, w.rnd.IntN(w.cfg.KeysPerAck)), value, ack
		id := w.h.Invoke(op)
		res = w.cl.Put(octx, op.Node, op.Key, value, ack)
		w.h.Complete(id, res)
	case x < 85: // register read
		m := w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]
		op.Kind, op.Key = KindGet, registerKey(m, w.rnd.IntN(w.cfg.KeysPerAck))
		op.Consistency = w.cfg.Reads[w.rnd.IntN(len(w.cfg.Reads))]
		if op.Consistency == "stale" {
			op.Node = w.ids[w.rnd.IntN(len(w.ids))]
		}
		id := w.h.Invoke(op)
		res = w.cl.Get(octx, op.Node, op.Key, op.Consistency)
		w.h.Complete(id, res)
	default: // set insert: a new key
		op.Kind, op.Key, op.Value, op.Ack = KindPut, fmt.Sprintf("s-%s-%d-%d", ack, w.id, w.seq), value, ack
		w.setKeys.Store(op.Key, true)
		id := w.h.Invoke(op)
		res = w.cl.Put(octx, op.Node, op.Key, value, ack)
		w.h.Complete(id, res)
	}
	if res.Outcome != OK {
		w.node = w.ids[w.rnd.IntN(len(w.ids))]
	}
}
