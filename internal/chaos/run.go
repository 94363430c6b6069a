package chaos

import (
	"bufio"
	"context"
	"encoding/json"
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
	// Mode is the replication mode: "" or ModeSingleLeader,
	// ModeMultiLeader (multileader.go: its own workload and checks; see
	// DefaultMultiLeaderRunConfig) or ModeLeaderless (leaderless.go; see
	// DefaultLeaderlessRunConfig). Conflicts is a multi-leader cluster's
	// --conflicts, PolicyLWW (the default) or PolicySiblings.
	Mode, Conflicts string
	// ReplicationFactor, SloppyQuorum and TombstoneGrace are a leaderless
	// cluster's --replication-factor (N), --sloppy-quorum and
	// --tombstone-grace (0: the node's default).
	ReplicationFactor int
	SloppyQuorum      bool
	TombstoneGrace    time.Duration
	// Nodes in the cluster (3 or 5 typically).
	Nodes int
	// Duration of the workload under faults (recovery and checks come after).
	Duration time.Duration
	// Seed drives the nemesis and the workload's choices (not the processes' timing).
	Seed uint64
	// Faults are the fault kinds (FaultKinds); empty = none.
	Faults []string
	// Acks are the ack modes written (a key is written with one mode only).
	// Multi-leader: local, all, majority or a number K of other nodes,
	// chosen per operation (MultiLeaderAckModes). Leaderless: the w=
	// words chosen per operation (LeaderlessWriteQuorums).
	Acks []string
	// Reads are the read levels used (single-leader; multi-leader reads
	// are local). Leaderless: the r= words chosen per read
	// (LeaderlessReadQuorums).
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
	// Membership configures the "membership" fault kind; with it the
	// cluster runs with named peers (CheckNamedPeers) and one spare node,
	// Membership.Learner.
	Membership MembershipConfig
	// FillBytesPerSec, if above 0, adds a writer of FillValueBytes-byte
	// values to keys the checks ignore, until the WALs of the leader and a
	// majority have been compacted (see filler): with a small --log-retain
	// in NodeArgs, nodes that join afterwards must catch up by snapshot.
	FillBytesPerSec int64
	FillValueBytes  int
	// SessionClients are session clients (sessions.go) beside the Workers:
	// each owns a few keys, writes them with random ack modes carrying its
	// session token and reads them with consistency=session from random
	// nodes; they alternate among Protocols.
	SessionClients int
	// CounterClients increment Counters keys with idempotency keys and
	// retries (counter.go; HTTP). Multi-leader: the workers increment
	// Counters keys, without idempotency keys.
	CounterClients, Counters int
	// ContendedKeys (multi-leader) are the keys every node writes, to make
	// conflicts; leaderless: the keys of the workload.
	ContendedKeys int
	// CASClients read and compare-and-set one register (cas.go; HTTP).
	CASClients int
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// DefaultRunConfig returns a short run's settings (every fault kind but
// "membership", which needs named peers); Binary and Dir must be set.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Nodes: 3, Duration: 30 * time.Second, Seed: 1,
		Faults: slices.DeleteFunc(slices.Clone(FaultKinds), func(k string) bool { return k == "membership" }), Acks: AckModes, Reads: ReadLevels, Protocols: Protocols,
		Workers: 6, KeysPerAck: 4, OpDelayMax: 20 * time.Millisecond,
		HoldMin: 1500 * time.Millisecond, HoldMax: 4 * time.Second, GapMin: 500 * time.Millisecond, GapMax: 2 * time.Second,
		CheckTimeout: 30 * time.Second,
		Membership:   DefaultMembershipConfig(), FillValueBytes: 256 << 10,
		Counters: 2,
	}
}

// membership reports whether the run changes the membership.
func (c *RunConfig) membership() bool { return slices.Contains(c.Faults, "membership") }

// Validate names the first bad field.
func (c *RunConfig) Validate() error {
	if err := c.validateCommon(); err != nil {
		return err
	}
	switch c.Mode {
	case "", ModeSingleLeader:
	case ModeMultiLeader:
		return c.validateMultiLeader()
	case ModeLeaderless:
		return c.validateLeaderless()
	default:
		return fmt.Errorf("chaos: RunConfig.Mode %q: want %q, %q or %q", c.Mode, ModeSingleLeader, ModeMultiLeader, ModeLeaderless)
	}
	return c.validateSingleLeader()
}

// validateCommon checks the fields every mode uses.
func (c *RunConfig) validateCommon() error {
	switch {
	case c.Binary == "":
		return errors.New("chaos: RunConfig.Binary is empty")
	case c.Dir == "":
		return errors.New("chaos: RunConfig.Dir is empty")
	case c.Nodes < 1:
		return fmt.Errorf("chaos: RunConfig.Nodes %d must be >= 1", c.Nodes)
	case c.Duration <= 0:
		return fmt.Errorf("chaos: RunConfig.Duration %v must be > 0", c.Duration)
	case c.Workers < 1:
		return fmt.Errorf("chaos: RunConfig.Workers %d must be >= 1", c.Workers)
	case c.HoldMax < c.HoldMin || c.GapMax < c.GapMin || c.GapMin <= 0:
		return errors.New("chaos: RunConfig hold/gap bounds are inverted or the gap is not > 0")
	case c.CheckTimeout <= 0:
		return errors.New("chaos: RunConfig.CheckTimeout must be > 0")
	case c.SessionClients < 0 || c.CounterClients < 0 || c.CASClients < 0:
		return fmt.Errorf("chaos: RunConfig.SessionClients %d, CounterClients %d, CASClients %d: want >= 0",
			c.SessionClients, c.CounterClients, c.CASClients)
	}
	return nil
}

// validateSingleLeader is the rest of Validate for a single-leader run.
func (c *RunConfig) validateSingleLeader() error {
	switch {
	case len(c.Acks) == 0:
		return errors.New("chaos: RunConfig.Acks is empty")
	case len(c.Reads) == 0:
		return errors.New("chaos: RunConfig.Reads is empty")
	case len(c.Protocols) == 0:
		return errors.New("chaos: RunConfig.Protocols is empty")
	case c.KeysPerAck < 1:
		return fmt.Errorf("chaos: RunConfig.KeysPerAck %d must be >= 1", c.KeysPerAck)
	case c.CounterClients > 0 && c.Counters < 1:
		return fmt.Errorf("chaos: RunConfig.Counters %d must be >= 1 with CounterClients", c.Counters)
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
	if c.membership() {
		if err := c.Membership.Validate(); err != nil {
			return fmt.Errorf("chaos: RunConfig.Membership: %w", err)
		}
	}
	if c.FillBytesPerSec < 0 || (c.FillBytesPerSec > 0 && (c.FillValueBytes < 1 || c.FillValueBytes > 1<<20)) {
		return fmt.Errorf("chaos: RunConfig.FillBytesPerSec %d / FillValueBytes %d: want a rate >= 0 and values of 1 B to 1 MiB",
			c.FillBytesPerSec, c.FillValueBytes)
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
	// Membership runs only: the cycles, the time with fewer voters than at
	// the start (of MemberTime), the final member list, and the filler.
	Members      []MemberCycle  `json:"members,omitempty"`
	VotersBelow  time.Duration  `json:"voters_below,omitempty"`
	MemberTime   time.Duration  `json:"member_time,omitempty"`
	FinalMembers []MemberStatus `json:"final_members,omitempty"`
	Postponed    []string       `json:"postponed,omitempty"`
	Fill         FillStats      `json:"fill"`
	// The clients of sessions.go, counter.go and cas.go (when configured).
	Sessions SessionStats `json:"sessions"`
	Counters CounterStats `json:"counters"`
	CAS      CASStats     `json:"cas"`
	// ML holds a multi-leader run's figures (nil in single-leader runs,
	// whose linearizability, set, failover and recovery figures it
	// replaces; RecoveryTime is then its convergence time).
	ML *MLStats `json:"multi_leader,omitempty"`
	// LL holds a leaderless run's figures (nil otherwise; RecoveryTime is
	// then its quiescence time).
	LL *LLStats `json:"leaderless,omitempty"`
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
	if r.ML != nil || r.LL != nil {
		fmt.Fprintf(&b, "seed %d, %d nodes: %d ops (%v); %d reads checked for written values\n", r.Seed, r.Nodes, r.Ops, r.ByOutcome, r.ReadsChecked)
		b.WriteString(r.faultSummary())
		if r.ML != nil {
			b.WriteString(r.ML.summary())
		} else {
			b.WriteString(r.LL.summary())
		}
		b.WriteString(r.anomalySummary())
		return b.String()
	}
	fmt.Fprintf(&b, "seed %d, %d nodes: %d ops (%v); linearizability checked %d ops on %d keys",
		r.Seed, r.Nodes, r.Ops, r.ByOutcome, r.LinOps, r.LinKeys)
	if len(r.Inconclusive) > 0 {
		fmt.Fprintf(&b, " (inconclusive: %v)", r.Inconclusive)
	}
	fmt.Fprintf(&b, "; %d reads checked for written values\n", r.ReadsChecked)
	fmt.Fprintf(&b, "set: acknowledged %v, missing %v (journaled %v), unknown %v; rollback entries %d\n",
		r.Set.Acked, r.Set.Lost, r.Set.Journaled, r.Set.Unknown, r.Rollbacks)
	b.WriteString(r.faultSummary())
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
	if s := r.Sessions; s.Clients > 0 {
		fmt.Fprintf(&b, "sessions: %d clients, %d sessions; writes %v; reads %v; rolled-back answers %d (journaled %d); read-your-writes checked on %d reads, monotonic reads on %d\n",
			s.Clients, s.Sessions, s.Writes, s.Reads, s.Claims, s.Journaled, s.RYW, s.Monotonic)
	}
	if r.Counters.Attempts > 0 {
		b.WriteString(r.Counters.summary())
	}
	if r.CAS.Reads+r.CAS.OK+r.CAS.Refused+r.CAS.Unknown+r.CAS.Failed > 0 {
		b.WriteString(r.CAS.summary())
	}
	if r.Fill.Writes > 0 {
		fmt.Fprintf(&b, "fill: %d writes (%d failed), %.1f MiB; WALs compacted (leader and a majority): %s\n", r.Fill.Writes, r.Fill.Failed,
			float64(r.Fill.Bytes)/(1<<20), map[bool]string{true: "after " + r.Fill.Compacted.Round(time.Millisecond).String(), false: "never"}[r.Fill.Compacted > 0])
	}
	if r.MemberTime > 0 {
		fmt.Fprintf(&b, "membership: %d cycles; fewer voters than at the start for %v of %v; final members:",
			len(r.Members), r.VotersBelow.Round(time.Millisecond), r.MemberTime.Round(time.Millisecond))
		for _, m := range r.FinalMembers {
			fmt.Fprintf(&b, " %s(%s)", m.ID, m.Role)
		}
		b.WriteString("\n")
		for _, c := range r.Members {
			b.WriteString(c.Summary())
		}
		for _, p := range r.Postponed {
			fmt.Fprintf(&b, "  rejoin postponed %s\n", p)
		}
	}
	b.WriteString(r.anomalySummary())
	return b.String()
}

// faultSummary is the summary's line of faults injected, by kind.
func (r *Report) faultSummary() string {
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var fs []string
	for _, k := range kinds {
		fs = append(fs, fmt.Sprintf("%s=%d", k, r.Faults[k]))
	}
	return fmt.Sprintf("faults: %s\n", strings.Join(fs, " "))
}

// anomalySummary is the summary's count of anomalies and the first 20.
func (r *Report) anomalySummary() string {
	var b strings.Builder
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
	if cfg.multiLeader() {
		return runMultiLeader(ctx, cfg, log)
	}
	if cfg.leaderless() {
		return runLeaderless(ctx, cfg, log)
	}
	ccfg := ClusterConfig{Binary: cfg.Binary, Dir: cfg.Dir, Nodes: cfg.Nodes,
		ClusterID: fmt.Sprintf("chaos-%d", cfg.Seed),
		NodeArgs:  append([]string{"--write-timeout", WriteTimeout.String()}, cfg.NodeArgs...),
		Seed:      cfg.Seed, Logger: log}
	if cfg.membership() {
		if err := CheckNamedPeers(); err != nil {
			return nil, err
		}
		ccfg.NamedPeers, ccfg.Spares = true, []string{cfg.Membership.Learner}
	}
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Dir: cfg.Dir, ByOutcome: map[string]int{}}
	c, err := NewCluster(ccfg)
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
	for _, id := range c.AllIDs() {
		httpAddrs[id], respAddrs[id] = c.Addrs[id].HTTP, c.Addrs[id].RESP
	}
	nem := NewNemesis(c, h, NemesisConfig{Faults: cfg.Faults, HoldMin: cfg.HoldMin, HoldMax: cfg.HoldMax,
		GapMin: cfg.GapMin, GapMax: cfg.GapMax, Membership: cfg.Membership, Seed: cfg.Seed, Logger: log})

	wctx, wcancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nem.Run(wctx)
	}()
	var fill *filler
	if cfg.FillBytesPerSec > 0 {
		fill = newFiller(c, cfg.FillBytesPerSec, cfg.FillValueBytes)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fill.run(wctx)
		}()
	}
	var setKeys sync.Map
	for w := range cfg.Workers {
		proto := cfg.Protocols[w%len(cfg.Protocols)]
		var cl Client
		if proto == "resp" {
			cl = NewRESPClient(respAddrs)
		} else {
			cl = NewHTTPClient(httpAddrs)
		}
		wk := &worker{id: w, proto: proto, cl: cl, h: h, cfg: &cfg, ids: c.MemberIDs,
			rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1)), setKeys: &setKeys}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			wk.run(wctx)
		}()
	}
	extraClients(wctx, &wg, &cfg, h, c, httpAddrs, respAddrs)
	wg.Wait()
	wcancel()
	log.Info("workload done; recovering", "ops", len(h.Ops()))

	// Recovery: everything healed (nem.Run healed on return); a leader, and
	// every member caught up.
	recStart := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
	defer ccancel()
	for id, err := range c.Procs.Exited() {
		rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyCrash,
			Detail: fmt.Sprintf("node %s is not running after healing (%v); log %s", id, err, c.Procs.LogPath(id))})
	}
	members := c.MemberIDs()
	ready, leader, err := converge(cctx, c)
	rep.RecoveryTime = time.Since(recStart)
	// The final reads get their own time: a recovery that took all of its
	// own must not fail them too.
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	if err != nil {
		rep.Anomalies = append(rep.Anomalies, Anomaly{Kind: AnomalyNoRecovery, Detail: err.Error() + leaderView(rctx, c, leader)})
	}
	if cfg.membership() {
		nem.MemberEvidence(rctx)
		rep.Anomalies = append(rep.Anomalies, checkMembers(rctx, c, leader, nem, rep)...)
	}
	if fill != nil {
		rep.Fill = fill.Stats()
	}

	var keys []string
	for _, m := range cfg.Acks {
		for i := range cfg.KeysPerAck {
			keys = append(keys, registerKey(m, i))
		}
	}
	setKeys.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	keys = append(keys, extraKeys(&cfg)...)
	sort.Strings(keys)

	allRB := nem.MemberRollbacks()
	for _, id := range members {
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

	an, final := checkFinal(rctx, c, cfg.Nodes, ops, keys, ready, leader, allRB, rep)
	rep.Anomalies = append(rep.Anomalies, an...)
	rep.Anomalies = append(rep.Anomalies, checkExtra(&cfg, ops, final, leader, allRB, rep)...)

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
	if rep.Members != nil {
		if b, err := json.MarshalIndent(rep.Members, "", " "); err == nil {
			_ = writeFile(filepath.Join(cfg.Dir, "membership.json"), b)
		}
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

// checkFinal reads every key on the members that converged (ready) and
// checks that they hold the same state, that the set lost nothing it may
// not lose, and the rollback journals against the history; the set's
// figures go into rep. It returns the final states (node -> key -> value)
// when every ready member, the leader included, was read (else nil).
func checkFinal(ctx context.Context, c *Cluster, nodes int, ops []Op, keys, ready []string, leader string, allRB []Rollback, rep *Report) ([]Anomaly, map[string]map[string]FinalRead) {
	var out []Anomaly
	if leader != "" && slices.Contains(ready, leader) {
		// Every member that reached the barrier (all of them unless
		// converge failed, which is an anomaly of its own).
		final := map[string]map[string]FinalRead{}
		for _, id := range ready {
			st, err := readAll(ctx, c.Addrs[id].RESP, keys)
			if err != nil {
				out = append(out, Anomaly{Kind: AnomalyNoRecovery, Detail: fmt.Sprintf("final read on %s: %v", id, err)})
				continue
			}
			final[id] = st
		}
		if _, ok := final[leader]; ok && len(final) == len(ready) {
			out = append(out, CheckConverged(final)...)
			var setOps []Op
			for _, op := range ops {
				if strings.HasPrefix(op.Key, "s-") {
					setOps = append(setOps, op)
				}
			}
			an, st := CheckSet(setOps, final[leader], allRB, nodes)
			out = append(out, an...)
			rep.Set = st
			return append(out, CheckRollbacks(ops, final[leader], allRB, nodes)...), final
		}
	}
	return append(out, CheckRollbacks(ops, nil, allRB, nodes)...), nil
}

// leaderView is "; leader L lists: ID role state match lag, ..." (or "" if
// it does not answer), to say why members did not converge.
func leaderView(ctx context.Context, c *Cluster, leader string) string {
	if leader == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r := c.ListMembers(ctx, leader)
	if r.Code != 200 {
		return ""
	}
	var parts []string
	for _, m := range r.Members {
		parts = append(parts, fmt.Sprintf("%s %s %s match %d lag %d", m.ID, m.Role, m.State, m.MatchIndex, m.LagEntries))
	}
	return fmt.Sprintf("; leader %s lists: %s", leader, strings.Join(parts, ", "))
}

// checkMembers fills the report's membership fields and checks that the
// final configuration, as leader lists it, has the initial members as its
// voters and the learners the harness added, and that every cycle
// completed (a node that did not catch up, a removal never known
// committed).
func checkMembers(ctx context.Context, c *Cluster, leader string, nem *Nemesis, rep *Report) []Anomaly {
	var out []Anomaly
	rep.Members, rep.Postponed = nem.MemberCycles(), nem.MemberPostponed()
	rep.VotersBelow, rep.MemberTime = nem.VotersBelow()
	for _, cyc := range rep.Members {
		if !cyc.OK {
			out = append(out, Anomaly{Kind: AnomalyMembership,
				Detail: fmt.Sprintf("%s cycle of %s (started at %.1fs) did not complete: %s", cyc.Kind, cyc.Node, cyc.Start.Seconds(), cyc.Failure)})
		}
	}
	if leader == "" {
		return append(out, Anomaly{Kind: AnomalyMembership, Detail: "no leader to list the final members"})
	}
	var r MemberReply
	for i := 0; i < 10; i++ {
		if r = c.ListMembers(ctx, leader); r.Code == 200 || ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	if r.Code != 200 {
		return append(out, Anomaly{Kind: AnomalyMembership, Detail: fmt.Sprintf("GET /v1/members on the leader %s: %s", leader, r)})
	}
	rep.FinalMembers = r.Members
	var voters, learners []string
	for _, m := range r.Members {
		if m.Role == "voter" {
			voters = append(voters, m.ID)
		} else {
			learners = append(learners, m.ID)
		}
	}
	var wantLearners []string
	for _, id := range c.MemberIDs() {
		if _, l := c.Member(id); l {
			wantLearners = append(wantLearners, id)
		}
	}
	sort.Strings(voters)
	sort.Strings(learners)
	sort.Strings(wantLearners)
	wantVoters := slices.Sorted(slices.Values(c.IDs))
	if !slices.Equal(voters, wantVoters) || !slices.Equal(learners, wantLearners) {
		out = append(out, Anomaly{Kind: AnomalyMembership,
			Detail: fmt.Sprintf("final configuration (leader %s): voters %v, learners %v; want voters %v, learners %v",
				leader, voters, learners, wantVoters, wantLearners)})
	}
	return out
}

// converge waits until all members agree on a leader, writes a barrier with
// ack=majority, and waits until every member has applied the same index, at
// least the barrier's. It returns the members that got there (all of them
// unless the error says otherwise) and the leader.
func converge(ctx context.Context, c *Cluster) ([]string, string, error) {
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
	var applied, ready []string // from the last poll that the leader answered
	for {
		members := c.MemberIDs()
		sts := c.Statuses(ctx)
		if lst, ok := sts[leader]; ok {
			applied, ready = nil, nil
			for _, id := range members {
				st, ok := sts[id]
				if !ok {
					applied = append(applied, id+"=?")
					continue
				}
				applied = append(applied, fmt.Sprintf("%s=%d", id, st.AppliedIndex))
				if st.AppliedIndex >= barrier.Index && st.AppliedIndex == lst.AppliedIndex {
					ready = append(ready, id)
				}
			}
			if len(ready) == len(members) {
				return ready, leader, nil
			}
		}
		select {
		case <-ctx.Done():
			return ready, leader, fmt.Errorf("after healing: members did not converge to the barrier index %d: applied %v", barrier.Index, applied)
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
	for _, id := range c.AllIDs() {
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
	ids     func() []string // the members to send to
	rnd     *rand.Rand
	setKeys *sync.Map
	node    string
	seq     int
}

func (w *worker) run(ctx context.Context) {
	ids := w.ids()
	w.node = ids[w.id%len(ids)]
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
			ids := w.ids()
			op.Node = ids[w.rnd.IntN(len(ids))]
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
		ids := w.ids()
		w.node = ids[w.rnd.IntN(len(ids))]
	}
}
