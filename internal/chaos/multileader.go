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
)

// Multi-leader runs (RunConfig.Mode = ModeMultiLeader): every node runs
// `trireme node --mode multi-leader --conflicts POLICY`, and the workload
// writes to random nodes (there is no leader to find). Workers mix
//
//   - unique inserts: PUT (or RESP SET) of a key u-WORKER-SEQ that is
//     written once, with ack local, K or all chosen per operation;
//   - contended writes: blind PUTs (no causal context) of distinct values to
//     a few keys k-I from every node, to make conflicts;
//   - increments: POST n-I?op=incr&by=N (N >= 1) with no idempotency key;
//     one in twenty carries an Idempotency-Key, which the node must refuse
//     (400: exactly-once increments need a single leader);
//   - reads: GET consistency=local of a contended key or of one of the
//     worker's inserts, at a random node.
//
// After the workload every fault is healed and the harness waits until
// every node has applied every peer's stream to its end (the convergence
// time); then it reads every key on every node and every node's conflict
// log, and mlchecker.go judges the history against them.

// Replication modes (RunConfig.Mode).
const (
	ModeSingleLeader = "single-leader"
	ModeMultiLeader  = "multi-leader"
)

// Conflict policies (RunConfig.Conflicts, the nodes' --conflicts).
const (
	PolicyLWW      = "lww"
	PolicySiblings = "siblings"
)

// MultiLeaderFaultKinds are the fault kinds a multi-leader run may use:
// "transfer" needs a leader and "membership" a configurable membership
// (a multi-leader cluster's members are fixed at creation).
var MultiLeaderFaultKinds = []string{"partition", "kill", "pause", "slow", "drop"}

// MultiLeaderAckModes are the ack words the multi-leader workload uses by
// default: durable on the node asked, also on one other node, on all.
var MultiLeaderAckModes = []string{"local", "1", "all"}

// KindAdd is a multi-leader increment: POST ?op=incr&by=Op.By without an
// idempotency key (Op.IdemKey set only on the probes the node must refuse);
// Op.Value is the answered value (this node's view of the counter).
const KindAdd = "add"

// DefaultMultiLeaderRunConfig returns a short multi-leader run's settings:
// 3 nodes, LWW, partitions, kills and pauses; Binary and Dir must be set.
func DefaultMultiLeaderRunConfig() RunConfig {
	c := DefaultRunConfig()
	c.Mode, c.Conflicts = ModeMultiLeader, PolicyLWW
	c.Duration = 20 * time.Second
	c.Faults = []string{"partition", "kill", "pause"}
	c.Acks = slices.Clone(MultiLeaderAckModes)
	c.ContendedKeys, c.Counters = 8, 2
	return c
}

// multiLeader reports whether the run is a multi-leader one.
func (c *RunConfig) multiLeader() bool { return c.Mode == ModeMultiLeader }

// conflicts is the nodes' --conflicts.
func (c *RunConfig) conflicts() string {
	if c.Conflicts == "" {
		return PolicyLWW
	}
	return c.Conflicts
}

// validateMultiLeader checks the fields a multi-leader run uses, after
// validateCommon; it refuses what only a single-leader cluster offers.
func (c *RunConfig) validateMultiLeader() error {
	switch {
	case c.Nodes < 2:
		return fmt.Errorf("chaos: RunConfig.Nodes %d: a multi-leader run needs >= 2 nodes", c.Nodes)
	case c.Conflicts != "" && c.Conflicts != PolicyLWW && c.Conflicts != PolicySiblings:
		return fmt.Errorf("chaos: RunConfig.Conflicts %q: want %q or %q", c.Conflicts, PolicyLWW, PolicySiblings)
	case len(c.Acks) == 0:
		return errors.New("chaos: RunConfig.Acks is empty")
	case len(c.Protocols) == 0:
		return errors.New("chaos: RunConfig.Protocols is empty")
	case c.ContendedKeys < 1 || c.Counters < 1:
		return fmt.Errorf("chaos: RunConfig.ContendedKeys %d, Counters %d: a multi-leader run needs >= 1 of each", c.ContendedKeys, c.Counters)
	case c.SessionClients > 0 || c.CounterClients > 0 || c.CASClients > 0:
		return fmt.Errorf("chaos: RunConfig.SessionClients %d, CounterClients %d, CASClients %d: session reads, exactly-once (idempotency-keyed) increments and compare-and-set need a single leader; a multi-leader run takes none (its workers increment counters without idempotency keys)",
			c.SessionClients, c.CounterClients, c.CASClients)
	case c.FillBytesPerSec != 0:
		return fmt.Errorf("chaos: RunConfig.FillBytesPerSec %d: the filler serves WAL compaction for membership runs; a multi-leader run takes none", c.FillBytesPerSec)
	}
	for _, a := range c.Acks {
		if a == "local" || a == "all" || a == "majority" {
			continue
		}
		if k, err := strconv.Atoi(a); err != nil || k < 1 || k > c.Nodes-1 {
			return fmt.Errorf("chaos: RunConfig.Acks: %q is not a multi-leader ack mode (want local, all, majority or K from 1 to %d)", a, c.Nodes-1)
		}
	}
	for _, p := range c.Protocols {
		if !slices.Contains(Protocols, p) {
			return fmt.Errorf("chaos: RunConfig.Protocols: unknown protocol %q (want %v)", p, Protocols)
		}
	}
	for _, f := range c.Faults {
		if !slices.Contains(MultiLeaderFaultKinds, f) {
			return fmt.Errorf("chaos: RunConfig.Faults: %q is not a multi-leader fault (want %v; transfer needs a leader, membership a changeable membership)",
				f, MultiLeaderFaultKinds)
		}
	}
	return nil
}

// MLStatus is the part of a multi-leader node's GET /v1/status the
// harness uses.
type MLStatus struct {
	ID        string         `json:"id"`
	Mode      string         `json:"mode"`
	Role      string         `json:"role"`
	LastIndex uint64         `json:"last_index"` // the end of the node's own stream
	Conflicts uint64         `json:"conflicts"`
	Streams   []StreamStatus `json:"streams"`
}

// StreamStatus is one peer in MLStatus.Streams.
type StreamStatus struct {
	Peer          string  `json:"peer"`
	PeerAcked     uint64  `json:"peer_acked"`
	Applied       uint64  `json:"applied"`
	Known         uint64  `json:"known"`
	LagEntries    uint64  `json:"lag_entries"`
	LagMs         int64   `json:"lag_ms"`
	LastContactMs int64   `json:"last_contact_ms"`
	ClockOffsetMs float64 `json:"clock_offset_ms"`
}

// MLStatuses asks every member for its multi-leader status, in parallel;
// nodes that do not answer are missing.
func (c *Cluster) MLStatuses(ctx context.Context) map[string]MLStatus {
	return memberStatuses(ctx, c, func(MLStatus) bool { return true })
}

// HealthyMultiLeader waits until every member answers /v1/status as a
// multi-leader node (there is no leader to agree on).
func (c *Cluster) HealthyMultiLeader(ctx context.Context) error {
	return waitAllStatuses(ctx, c, c.MLStatuses, func(st MLStatus) bool {
		return st.Mode == ModeMultiLeader && st.Role == ModeMultiLeader
	}, "every node answering as multi-leader")
}

// StreamsCaughtUp reports whether, in sts, every one of ids answered and
// has applied every other node's stream to its end (applied == that
// node's last_index, no lag); else it says what is missing.
func StreamsCaughtUp(sts map[string]MLStatus, ids []string) (bool, string) {
	var behind []string
	for _, id := range ids {
		st, ok := sts[id]
		if !ok {
			behind = append(behind, id+": no status")
			continue
		}
		for _, peer := range ids {
			if peer == id {
				continue
			}
			ps, ok := sts[peer]
			if !ok {
				continue // reported as no status
			}
			i := slices.IndexFunc(st.Streams, func(s StreamStatus) bool { return s.Peer == peer })
			if i < 0 {
				behind = append(behind, fmt.Sprintf("%s: no stream of %s", id, peer))
				continue
			}
			s := st.Streams[i]
			if s.Applied != ps.LastIndex || s.LagEntries != 0 || s.LagMs != 0 {
				behind = append(behind, fmt.Sprintf("%s applied %d/%d of %s (known %d, lag %d entries %d ms)",
					id, s.Applied, ps.LastIndex, peer, s.Known, s.LagEntries, s.LagMs))
			}
		}
	}
	return len(behind) == 0, strings.Join(behind, "; ")
}

// waitStreams polls (every 25 ms) until StreamsCaughtUp holds in two
// polls in a row with the same stream ends (nothing is written after the
// workload, so the ends no longer move); it returns when the first of the
// two was taken.
func waitStreams(ctx context.Context, c *Cluster) (time.Time, error) {
	ids := c.MemberIDs()
	var prev map[string]uint64
	var since time.Time
	last := ""
	for {
		at := time.Now()
		sts := c.MLStatuses(ctx)
		ok, why := StreamsCaughtUp(sts, ids)
		ends := map[string]uint64{}
		for id, st := range sts {
			ends[id] = st.LastIndex
		}
		switch {
		case ok && prev != nil && maps.Equal(prev, ends):
			return since, nil
		case ok:
			prev, since = ends, at
		default:
			prev, last = nil, why
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("after healing: streams did not catch up: %s", last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// MLRead is one key as a multi-leader node holds it (GET
// consistency=local): the first value, every sibling when there are
// several (sorted by dot), and the causal context.
type MLRead struct {
	Found    bool        `json:"found"`
	Value    string      `json:"value,omitempty"`
	Siblings []MLSibling `json:"siblings,omitempty"`
	Context  string      `json:"context,omitempty"`
}

// MLSibling is one concurrent value of a key.
type MLSibling struct {
	Dot   string `json:"dot"`
	Value string `json:"value"`
}

// Values are the key's live values: its siblings' or its one value.
func (r MLRead) Values() []string {
	if len(r.Siblings) > 0 {
		out := make([]string, len(r.Siblings))
		for i, s := range r.Siblings {
			out[i] = s.Value
		}
		return out
	}
	if r.Found {
		return []string{r.Value}
	}
	return nil
}

// Equal reports whether two nodes hold the same state of a key.
func (r MLRead) Equal(o MLRead) bool {
	return r.Found == o.Found && r.Value == o.Value && r.Context == o.Context && slices.Equal(r.Siblings, o.Siblings)
}

func (r MLRead) String() string {
	if !r.Found {
		return fmt.Sprintf("absent (context %q)", r.Context)
	}
	if len(r.Siblings) > 0 {
		return fmt.Sprintf("%q siblings %v (context %q)", r.Value, r.Siblings, r.Context)
	}
	return fmt.Sprintf("%q (context %q)", r.Value, r.Context)
}

// ReadML reads key on node with consistency=local, as JSON.
func (c *HTTPClient) ReadML(ctx context.Context, node, key string) (MLRead, error) {
	var rep struct {
		Value    string `json:"value"`
		Encoding string `json:"encoding"`
		Context  string `json:"context"`
		Error    string `json:"error"`
		Siblings []struct {
			Value    string `json:"value"`
			Encoding string `json:"encoding"`
			Dot      string `json:"dot"`
		} `json:"siblings"`
	}
	code, _, err := c.request(ctx, http.MethodGet, c.url(node, key, url.Values{"consistency": {"local"}}), "", nil, &rep)
	if err != nil {
		return MLRead{}, err
	}
	switch code {
	case http.StatusNotFound:
		return MLRead{Context: rep.Context}, nil
	case http.StatusOK:
	default:
		return MLRead{}, fmt.Errorf("GET %s on %s: %d %s", key, node, code, rep.Error)
	}
	if rep.Encoding != "" {
		return MLRead{}, fmt.Errorf("GET %s on %s: unexpected encoding %s", key, node, rep.Encoding)
	}
	r := MLRead{Found: true, Value: rep.Value, Context: rep.Context}
	for _, s := range rep.Siblings {
		if s.Encoding != "" {
			return MLRead{}, fmt.Errorf("GET %s on %s: unexpected sibling encoding %s", key, node, s.Encoding)
		}
		r.Siblings = append(r.Siblings, MLSibling{Dot: s.Dot, Value: s.Value})
	}
	sort.Slice(r.Siblings, func(i, j int) bool { return r.Siblings[i].Dot < r.Siblings[j].Dot })
	return r, nil
}

// MLConflict is one record of a node's conflict log (GET /v1/conflicts).
type MLConflict struct {
	Seq      uint64              `json:"seq"`
	Node     string              `json:"node"`
	Key      string              `json:"key"`
	Versions []MLConflictVersion `json:"versions"`
	Winner   string              `json:"winner"`
	Losers   []string            `json:"losers"`
	Reason   string              `json:"reason"`
}

// MLConflictVersion is one competing version of an MLConflict.
type MLConflictVersion struct {
	Dot     string `json:"dot"`
	Value   string `json:"value"`
	Deleted bool   `json:"deleted"`
}

// ConflictLog reads node's whole conflict log, a page of limit at a time
// (after=, limit=), and how many records it dropped.
func (c *HTTPClient) ConflictLog(ctx context.Context, node string, limit int) ([]MLConflict, uint64, error) {
	var all []MLConflict
	var after, dropped uint64
	for {
		var page struct {
			Conflicts []MLConflict `json:"conflicts"`
			Dropped   uint64       `json:"dropped"`
			Next      uint64       `json:"next"`
			Error     string       `json:"error"`
		}
		u := "http://" + c.addrs[node] + "/v1/conflicts?" + url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}.Encode()
		code, _, err := c.request(ctx, http.MethodGet, u, "", nil, &page)
		if err != nil {
			return all, dropped, err
		}
		if code != http.StatusOK {
			return all, dropped, fmt.Errorf("GET /v1/conflicts on %s: %d %s", node, code, page.Error)
		}
		all = append(all, page.Conflicts...)
		dropped = page.Dropped
		if len(page.Conflicts) < limit || page.Next <= after {
			return all, dropped, nil
		}
		after = page.Next
	}
}

// mlWrite writes key=value through node over HTTP with ack (a blind
// write: no context). A 504's index says the write is durable on node
// (its position in node's stream); the history keeps it (mlDurable).
func (c *HTTPClient) mlWrite(ctx context.Context, node, key, value, ack string) Result {
	q := url.Values{"ack": {ack}, "timeout": {WriteTimeout.String()}}
	code, r, err := c.do(ctx, http.MethodPut, c.url(node, key, q), value)
	if err != nil {
		return Result{Outcome: Unknown, Err: err.Error(), Status: code}
	}
	return Result{Outcome: writeOutcome(code, r.Error), Index: r.Index, Err: r.Error, Status: code}
}

// IncrBy adds by to key through node with ack and no idempotency key
// (idem: the Idempotency-Key header, which a multi-leader node must
// refuse). Result.Value is the answered value on 200.
func (c *HTTPClient) IncrBy(ctx context.Context, node, key, ack string, by int64, idem string) Result {
	q := url.Values{"ack": {ack}, "timeout": {WriteTimeout.String()}, "op": {"incr"}, "by": {strconv.FormatInt(by, 10)}}
	var hdr map[string]string
	if idem != "" {
		hdr = map[string]string{"Idempotency-Key": idem}
	}
	var r incrReply
	code, _, err := c.request(ctx, http.MethodPost, c.url(node, key, q), "", hdr, &r)
	if err != nil {
		return Result{Outcome: Unknown, Err: err.Error(), Status: code}
	}
	res := Result{Outcome: writeOutcome(code, r.Error), Index: r.Index, Err: r.Error, Status: code}
	switch {
	case code == http.StatusConflict:
		res.Outcome = Failed // not an integer, or an overflow: nothing changed
	case res.Outcome == OK && r.Value == nil:
		res.Outcome, res.Err = Unknown, "200 without a value"
	case res.Outcome == OK:
		res.Value = strconv.FormatInt(*r.Value, 10)
	}
	return res
}

// Key names of the multi-leader workload.
func mlInsertKey(worker, seq int) string { return fmt.Sprintf("u-%d-%d", worker, seq) }
func mlContendedKey(i int) string        { return fmt.Sprintf("k-%d", i) }
func mlCounterKey(i int) string          { return fmt.Sprintf("n-%d", i) }

// mlWorker is one multi-leader client: it sends every operation to a
// random node, avoiding for mlAvoid a node that just gave no answer (a
// paused node would otherwise hold every worker in turn for its client
// timeout, and the run would do little while a fault lasts).
type mlWorker struct {
	id    int
	proto string // the protocol of its puts; increments and reads are HTTP
	hc    *HTTPClient
	rc    *RESPClient // nil for an HTTP worker
	h     *History
	cfg   *RunConfig
	ids   []string
	rnd   *rand.Rand
	seq   int
	mine  []string // its inserts, for reads
	keys  *sync.Map
	avoid map[string]time.Time // node -> until when it is avoided
}

// mlAvoid is how long a worker avoids a node that gave no answer.
const mlAvoid = 2 * time.Second

// node picks a random node among those not avoided (any if all are).
func (w *mlWorker) node() string {
	now := time.Now()
	ok := slices.DeleteFunc(slices.Clone(w.ids), func(id string) bool { return now.Before(w.avoid[id]) })
	if len(ok) == 0 {
		ok = w.ids
	}
	return ok[w.rnd.IntN(len(ok))]
}

func (w *mlWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.step()
		if w.cfg.OpDelayMax > 0 {
			sleepCtx(ctx, time.Duration(w.rnd.Int64N(int64(w.cfg.OpDelayMax))))
		}
	}
}

func (w *mlWorker) put(ctx context.Context, node, key, value, ack string) Result {
	if w.rc != nil {
		return w.rc.Put(ctx, node, key, value, ack)
	}
	return w.hc.mlWrite(ctx, node, key, value, ack)
}

func (w *mlWorker) step() {
	// Not cut short by the end of the run (see worker.step).
	octx, cancel := context.WithTimeout(context.Background(), 2*WriteTimeout)
	defer cancel()
	w.seq++
	value := fmt.Sprintf("w%d-%d", w.id, w.seq)
	ack := w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]
	op := Op{Worker: w.id, Proto: w.proto, Node: w.node(), Ack: ack}
	var res Result
	defer func() {
		if res.Outcome == Unknown && res.Status == 0 { // no answer (or a RESP error)
			w.avoid[op.Node] = time.Now().Add(mlAvoid)
		}
	}()
	switch x := w.rnd.IntN(100); {
	case x < 30: // unique insert
		op.Kind, op.Key, op.Value = KindPut, mlInsertKey(w.id, w.seq), value
		w.keys.Store(op.Key, true)
		w.mine = append(w.mine, op.Key)
		id := w.h.Invoke(op)
		res = w.put(octx, op.Node, op.Key, value, ack)
		w.h.Complete(id, res)
	case x < 65: // contended write
		op.Kind, op.Key, op.Value = KindPut, mlContendedKey(w.rnd.IntN(w.cfg.ContendedKeys)), value
		id := w.h.Invoke(op)
		res = w.put(octx, op.Node, op.Key, value, ack)
		w.h.Complete(id, res)
	case x < 85: // increment
		op.Kind, op.Key, op.Proto, op.By = KindAdd, mlCounterKey(w.rnd.IntN(w.cfg.Counters)), "http", 1+w.rnd.Int64N(5)
		if w.rnd.IntN(20) == 0 {
			op.IdemKey = fmt.Sprintf("chaos-%d-%d-%d", w.cfg.Seed, w.id, w.seq) // must be refused
		}
		id := w.h.Invoke(op)
		res = w.hc.IncrBy(octx, op.Node, op.Key, ack, op.By, op.IdemKey)
		w.h.Complete(id, res)
	default: // read
		op.Kind, op.Proto, op.Ack, op.Consistency = KindGet, "http", "", "local"
		op.Key = mlContendedKey(w.rnd.IntN(w.cfg.ContendedKeys))
		if len(w.mine) > 0 && w.rnd.IntN(3) == 0 {
			op.Key = w.mine[w.rnd.IntN(len(w.mine))]
		}
		id := w.h.Invoke(op)
		r, err := w.hc.ReadML(octx, op.Node, op.Key)
		res = Result{Outcome: OK, Found: r.Found, Value: r.Value}
		if err != nil {
			res = Result{Outcome: Unknown, Err: err.Error()}
		}
		// No index: a multi-leader read's "index" is a per-key counter,
		// not the stream position a write answers with.
		w.h.Complete(id, res)
	}
}

// runMultiLeader is Run for ModeMultiLeader.
func runMultiLeader(ctx context.Context, cfg RunConfig, log *slog.Logger) (*Report, error) {
	ccfg := ClusterConfig{Binary: cfg.Binary, Dir: cfg.Dir, Nodes: cfg.Nodes,
		ClusterID: fmt.Sprintf("chaos-%d", cfg.Seed),
		NodeArgs: append([]string{"--mode", ModeMultiLeader, "--conflicts", cfg.conflicts(),
			"--write-timeout", WriteTimeout.String()}, cfg.NodeArgs...),
		Seed: cfg.Seed, Logger: log}
	ml := &MLStats{Policy: cfg.conflicts()}
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Dir: cfg.Dir, ByOutcome: map[string]int{}, ML: ml}
	c, err := NewCluster(ccfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = c.HealthyMultiLeader(hctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("chaos: cluster did not start (logs in %s): %w", filepath.Join(cfg.Dir, "logs"), err)
	}

	h := NewHistory()
	httpAddrs, respAddrs := map[string]string{}, map[string]string{}
	for _, id := range c.AllIDs() {
		httpAddrs[id], respAddrs[id] = c.Addrs[id].HTTP, c.Addrs[id].RESP
	}
	nem := NewNemesis(c, h, NemesisConfig{Faults: cfg.Faults, HoldMin: cfg.HoldMin, HoldMax: cfg.HoldMax,
		GapMin: cfg.GapMin, GapMax: cfg.GapMax, Seed: cfg.Seed, MultiLeader: true, Logger: log})
	wctx, wcancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nem.Run(wctx) // heals everything on return: network, paused and killed nodes
	}()
	var keys sync.Map
	for i := range cfg.ContendedKeys {
		keys.Store(mlContendedKey(i), true)
	}
	for i := range cfg.Counters {
		keys.Store(mlCounterKey(i), true)
	}
	for i := range cfg.Workers {
		wk := &mlWorker{id: i, proto: cfg.Protocols[i%len(cfg.Protocols)], hc: NewHTTPClient(httpAddrs), h: h, cfg: &cfg,
			ids: c.MemberIDs(), rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1)), keys: &keys, avoid: map[string]time.Time{}}
		if wk.proto == "resp" {
			wk.rc = NewRESPClient(respAddrs)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer wk.hc.Close()
			if wk.rc != nil {
				defer wk.rc.Close()
			}
			wk.run(wctx)
		}()
	}
	wg.Wait()
	wcancel()
	healed := time.Now()
	log.Info("workload done; healed; waiting for the streams", "ops", len(h.Ops()))

	rep.Anomalies = append(rep.Anomalies, afterHeal(c, log)...)
	cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
	at, err := waitStreams(cctx, c)
	ccancel()
	if err != nil {
		ml.Convergence = time.Since(healed)
		rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyNoRecovery, Detail: err.Error()})
	} else {
		ml.Convergence, ml.Converged = at.Sub(healed), true
	}
	rep.RecoveryTime = ml.Convergence

	// The final reads and the conflict logs, with their own time.
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	var all []string
	keys.Range(func(k, _ any) bool { all = append(all, k.(string)); return true })
	sort.Strings(all)
	ml.Keys = len(all)
	states, conflicts, an := readMLFinal(rctx, c, all, ml)
	rep.Anomalies = append(rep.Anomalies, an...)

	ops := h.Ops()
	rep.Ops = len(ops)
	for _, op := range ops {
		rep.ByOutcome[op.Kind+"/"+string(op.Outcome)]++
	}
	rep.Faults = nem.Counts()
	rep.Anomalies = append(rep.Anomalies, CheckMLConverged(states)...)
	var st MLCheckStats
	an, st.Inserts = CheckMLInserts(ops, states)
	rep.Anomalies = append(rep.Anomalies, an...)
	an, st.Contended = CheckMLContended(ops, states, conflicts, cfg.conflicts() == PolicySiblings)
	rep.Anomalies = append(rep.Anomalies, an...)
	an, st.Counters = CheckMLCounters(ops, states)
	rep.Anomalies = append(rep.Anomalies, an...)
	ml.MLCheckStats = st
	for _, op := range ops {
		if op.Kind == KindGet && op.Outcome == OK {
			rep.ReadsChecked++
		}
	}
	rep.Anomalies = append(rep.Anomalies, CheckReadsWritten(ops)...)
	rep.Anomalies = append(rep.Anomalies, scanLogs(c)...)

	if err := h.WriteJSON(filepath.Join(cfg.Dir, "history.json")); err != nil {
		return rep, err
	}
	if b, err := json.MarshalIndent(states, "", " "); err == nil {
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

// readMLFinal reads every key on every member (node -> key -> state) and
// every member's conflict log (key -> the values of the versions recorded
// as losers, over all nodes), with the log figures in ml. Only losers
// count: a version recorded as the winner, or a sibling kept, of one
// conflict was not lost there. A node that cannot be read is an
// anomaly and is left out of the states.
func readMLFinal(ctx context.Context, c *Cluster, keys []string, ml *MLStats) (map[string]map[string]MLRead, map[string]map[string]bool, []Anomaly) {
	states := map[string]map[string]MLRead{}
	var records []MLConflict
	var out []Anomaly
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range c.MemberIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := NewHTTPClient(map[string]string{id: c.Addrs[id].HTTP})
			defer hc.Close()
			st := make(map[string]MLRead, len(keys))
			var err error
			for _, k := range keys {
				var r MLRead
				if r, err = hc.ReadML(ctx, id, k); err != nil {
					break
				}
				st[k] = r
			}
			recs, dropped, lerr := hc.ConflictLog(ctx, id, 500)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out = append(out, Anomaly{Kind: AnomalyNoRecovery, Detail: fmt.Sprintf("final read on %s: %v", id, err)})
			} else {
				states[id] = st
			}
			if lerr != nil {
				out = append(out, Anomaly{Kind: AnomalyNoRecovery, Detail: fmt.Sprintf("conflict log of %s: %v", id, lerr)})
			}
			ml.ConflictsDropped += dropped
			records = append(records, recs...)
		}()
	}
	wg.Wait()
	ml.ConflictRecords = len(records)
	named := map[string]bool{}
	for _, r := range records {
		named[r.Key] = true
	}
	ml.ConflictKeys = len(named)
	return states, ConflictLosers(records), out
}

// ConflictLosers returns, per key, the values of the versions that the
// records name as losers (dropped by LWW, or beyond --max-siblings);
// deletes have no value and are left out.
func ConflictLosers(records []MLConflict) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, r := range records {
		for _, v := range r.Versions {
			if v.Deleted || !slices.Contains(r.Losers, v.Dot) {
				continue
			}
			if out[r.Key] == nil {
				out[r.Key] = map[string]bool{}
			}
			out[r.Key][v.Value] = true
		}
	}
	return out
}

// afterHeal makes sure of the processes once the nemesis has healed
// (nem.Run heals on return): a paused one is resumed, and one that is not
// running is a crash, returned as an anomaly.
func afterHeal(c *Cluster, log *slog.Logger) []Anomaly {
	var out []Anomaly
	for _, id := range c.MemberIDs() {
		if c.Procs.Paused(id) {
			log.Warn("still paused after healing; resuming", "node", id)
			if err := c.Procs.Resume(id); err != nil {
				log.Warn("resume", "node", id, "err", err)
			}
		}
	}
	for id, err := range c.Procs.Exited() {
		out = append(out, Anomaly{Kind: AnomalyCrash,
			Detail: fmt.Sprintf("node %s is not running after healing (%v); log %s", id, err, c.Procs.LogPath(id))})
	}
	return out
}
