package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The failover part (issue 18): for every system, kill -9 of the leader or
// primary, then the time until the probe (probe.go), writing every 10 ms
// through the system's own failover mechanism, has a write acknowledged;
// after each trial, once the cluster is whole again, the acknowledged
// writes that the system no longer holds.

// FailoverResult is one system's (or Trireme variant's) failover trials.
type FailoverResult struct {
	System string `json:"system"` // "trireme", "etcd", "redis", "patroni"
	// Variant tells Trireme's ways of electing apart ("fixed", "adaptive",
	// "coordinator"); "sentinel" for Redis; empty for the others.
	Variant  string    `json:"variant,omitempty"`
	TrialsMs []float64 `json:"trials_ms"` // kill to the first acknowledged write, by trial
	MedianMs float64   `json:"median_ms"`
	P90Ms    float64   `json:"p90_ms"`
	MinMs    float64   `json:"min_ms"`
	MaxMs    float64   `json:"max_ms"`
	Settings string    `json:"settings"`
	// Probe says how the probe's client wrote.
	Probe string `json:"probe,omitempty"`
	// AckedWrites and MissingWrites count, over every trial, the probe's
	// acknowledged writes and those of them missing (or holding another
	// value) once the cluster was whole again; MissingByTrial by trial.
	AckedWrites    int   `json:"acked_writes"`
	MissingWrites  int   `json:"missing_writes"`
	MissingByTrial []int `json:"missing_by_trial,omitempty"`
	// MissingKeys are the first missing keys found (at most 20).
	MissingKeys []string `json:"missing_keys,omitempty"`
	// Skipped, if set, is why the row was not measured.
	Skipped string `json:"skipped,omitempty"`
}

// Name is the row's name in the report.
func (f FailoverResult) Name() string {
	switch f.System + "/" + f.Variant {
	case "trireme/fixed":
		return "Trireme, fixed failure detector"
	case "trireme/adaptive":
		return "Trireme, adaptive failure detector"
	case "trireme/coordinator":
		return "Trireme, etcd coordinator"
	case "etcd/":
		return "etcd"
	case "redis/sentinel":
		return "Redis Sentinel"
	case "patroni/":
		return "PostgreSQL + Patroni"
	}
	if f.Variant == "" {
		return f.System
	}
	return f.System + " " + f.Variant
}

// measured reports whether the row has trials.
func (f FailoverResult) measured() bool { return f.Skipped == "" && len(f.TrialsMs) > 0 }

// quantiles returns the median (the mean of the middle two for an even
// count), the p90 (nearest rank), the minimum and the maximum of xs; zeros
// for none.
func quantiles(xs []float64) (med, p90, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := (9*len(s) + 9) / 10 // ceil(0.9 n)
	return median(s), s[rank-1], s[0], s[len(s)-1]
}

// summarize fills the statistics of f from its trials.
func (f *FailoverResult) summarize() {
	f.MedianMs, f.P90Ms, f.MinMs, f.MaxMs = quantiles(f.TrialsMs)
}

// failoverTarget is one running system under the failover measurement.
type failoverTarget interface {
	// primary returns the leader or primary to kill next.
	primary(ctx context.Context) (string, error)
	// writer opens the probe's client.
	writer(ctx context.Context) (probeWriter, error)
	// kill kills victim's processes with SIGKILL, as a machine crash
	// would, and returns once they are dead.
	kill(victim string) error
	// restore restarts victim and waits until the cluster is whole again:
	// every member running, replicating and caught up.
	restore(ctx context.Context, victim string) error
	// readBack reads keys from the system as its clients see it and
	// returns the values found.
	readBack(ctx context.Context, keys []string) (map[string]string, error)
}

// Trial timings.
const (
	failoverLeadIn   = 500 * time.Millisecond // probe writes before the kill
	failoverLeadOut  = 500 * time.Millisecond // and after the first acknowledgement
	failoverLimit    = 90 * time.Second       // kill to the first acknowledgement, at most
	failoverRestored = 3 * time.Minute        // restart to whole again, at most
)

// measureFailover runs trials kill/probe/restore cycles on tg and adds
// them to f; the keys of trial N begin with "fo-SLUG-N-". It returns at the
// first error, with the trials made until then in f.
func measureFailover(ctx context.Context, tg failoverTarget, f *FailoverResult, slug string, trials int, progress func(string)) error {
	defer f.summarize()
	for trial := 1; trial <= trials; trial++ {
		d, acked, missing, err := failoverTrial(ctx, tg, fmt.Sprintf("fo-%s-%d-", slug, trial))
		if err != nil {
			return fmt.Errorf("%s trial %d: %w", f.Name(), trial, err)
		}
		f.TrialsMs = append(f.TrialsMs, float64(d.Microseconds())/1000)
		f.AckedWrites += acked
		f.MissingWrites += len(missing)
		f.MissingByTrial = append(f.MissingByTrial, len(missing))
		for _, k := range missing {
			if len(f.MissingKeys) < 20 {
				f.MissingKeys = append(f.MissingKeys, k)
			}
		}
		progress(fmt.Sprintf("failover %s trial %d/%d: first write after %v; %d acknowledged writes, %d missing",
			f.Name(), trial, trials, d.Round(time.Millisecond), acked, len(missing)))
	}
	return nil
}

// failoverTrial kills the primary while the probe writes, and returns the
// time from the kill to the first acknowledged write issued after it, the
// number of acknowledged writes and the keys of those missing once the
// cluster is whole again.
func failoverTrial(ctx context.Context, tg failoverTarget, prefix string) (time.Duration, int, []string, error) {
	victim, err := tg.primary(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	w, err := tg.writer(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	p := startProbe(ctx, w, prefix)
	stop := func() []probeWrite {
		ws := p.stop()
		w.Close()
		return ws
	}
	// The client must be writing before the kill.
	start := time.Now()
	time.Sleep(failoverLeadIn)
	if _, err := p.waitAck(ctx, start, 10*time.Second); err != nil {
		stop()
		return 0, 0, nil, fmt.Errorf("before the kill: %w", err)
	}
	if err := tg.kill(victim); err != nil {
		stop()
		return 0, 0, nil, fmt.Errorf("killing %s: %w", victim, err)
	}
	t0 := time.Now()
	t1, err := p.waitAck(ctx, t0, failoverLimit)
	if err == nil {
		time.Sleep(failoverLeadOut)
	}
	ws := stop()
	if err != nil {
		if d, ok := tg.(interface{ diagnose(context.Context) string }); ok {
			err = fmt.Errorf("%w; %s", err, d.diagnose(ctx))
		}
		return 0, 0, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, failoverRestored)
	defer cancel()
	if err := tg.restore(rctx, victim); err != nil {
		return 0, 0, nil, fmt.Errorf("restoring %s: %w", victim, err)
	}
	acked := ackedWrites(ws)
	found, err := tg.readBack(rctx, keysOf(acked))
	if err != nil {
		return 0, 0, nil, fmt.Errorf("reading the probe's writes back: %w", err)
	}
	return t1.Sub(t0), len(acked), missingWrites(acked, found), nil
}

// --- Trireme ---

// triremeDetector is one way of running Trireme's elections in the
// failover part.
type triremeDetector struct {
	Variant  string   // "fixed", "adaptive", "coordinator"
	Args     []string // extra node flags (for "coordinator", --coordinator is added once etcd runs)
	Settings string
	Skip     string // why it cannot run with this binary
}

// triremeDetectors lists the failover variants for a binary whose `node`
// flags are flags (name -> default, from parseFlags): a variant whose flag
// is missing is skipped, except "fixed", which then runs without the flag
// (the binary's only detector). The settings quote the flags' defaults.
func triremeDetectors(flags map[string]string) []triremeDetector {
	has := func(name string) bool { _, ok := flags[name]; return ok }
	def := func(name, otherwise string) string {
		if v := flags[name]; v != "" {
			return v
		}
		return otherwise
	}
	hb, et := def("heartbeat", "50ms"), def("election-timeout", "300ms")
	fixed := triremeDetector{Variant: "fixed", Settings: fmt.Sprintf("heartbeat %s, election timeout %s, randomized up to 2x (the defaults)", hb, et)}
	if has("failure-detector") {
		fixed.Args = []string{"--failure-detector", "fixed"}
		fixed.Settings = "--failure-detector fixed; " + fixed.Settings
	} else {
		fixed.Settings += "; the binary has no --failure-detector: fixed timeouts are all it has"
	}
	adaptive := triremeDetector{Variant: "adaptive", Args: []string{"--failure-detector", "adaptive"},
		Settings: fmt.Sprintf("--failure-detector adaptive; heartbeat %s, learned timeout between %s and %s (the defaults)",
			hb, def("election-timeout-min", "?"), et)}
	if !has("failure-detector") {
		adaptive.Skip = "skipped: binary has no --failure-detector"
	}
	coord := triremeDetector{Variant: "coordinator", Args: []string{"--election", "coordinator"},
		Settings: fmt.Sprintf("--election coordinator, leadership lease %s (the default), over a 3-member etcd (embedded etcd v3.7.3, defaults)",
			def("coordinator-ttl", "?"))}
	if d := flags["failure-detector"]; d != "" {
		coord.Settings += "; failure detector " + d + " (the default)"
	}
	switch {
	case !has("election"):
		coord.Skip = "skipped: binary has no --election"
	case !has("coordinator"):
		coord.Skip = "skipped: binary has no --coordinator"
	}
	return []triremeDetector{fixed, adaptive, coord}
}

// flagLineRe matches a flag's first line in the help the flag package
// prints ("  -name type"); defaultRe the default its description ends with.
var (
	flagLineRe = regexp.MustCompile(`^\s{1,4}--?([a-zA-Z0-9][a-zA-Z0-9-]*)`)
	defaultRe  = regexp.MustCompile(`\(default "?([^"()]*)"?\)\s*$`)
)

// parseFlags returns the flags listed in help text, each with its
// default ("" if the help gives none).
func parseFlags(help string) map[string]string {
	out := map[string]string{}
	name := ""
	for _, l := range strings.Split(help, "\n") {
		if m := flagLineRe.FindStringSubmatch(l); m != nil && !strings.HasPrefix(strings.TrimLeft(l, " "), "\t") {
			name = m[1]
			out[name] = ""
			continue
		}
		if m := defaultRe.FindStringSubmatch(l); m != nil && name != "" {
			out[name] = m[1]
		}
	}
	return out
}

// triremeNodeFlags returns the flags `BIN node --help` lists, with their
// defaults.
func triremeNodeFlags(ctx context.Context, bin string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "node", "--help").CombinedOutput()
	flags := parseFlags(string(out))
	if len(flags) == 0 {
		return nil, fmt.Errorf("%s node --help: no flags listed (%v): %s", bin, err, out)
	}
	return flags, nil // the flag package exits 0 or 2 after -help
}

// triremeTarget is a Trireme cluster under the failover measurement.
type triremeTarget struct{ t *Trireme }

func (tt triremeTarget) primary(ctx context.Context) (string, error) {
	l, err := tt.t.Leader(ctx)
	return l.ID, err
}

// anyNodeWriter is Trireme's probe client: a connection pool to every
// node, majority acks; it writes through one node (any node forwards a
// write to the leader) and moves on to the next after an error, as a
// client given every node's address does.
type anyNodeWriter struct {
	clients []*redis.Client
	cur     atomic.Int32
}

func (w *anyNodeWriter) Write(ctx context.Context, key, value string) error {
	i := w.cur.Load()
	err := w.clients[i].Set(ctx, key, value, 0).Err()
	if err != nil {
		w.cur.CompareAndSwap(i, (i+1)%int32(len(w.clients)))
	}
	return err
}

func (w *anyNodeWriter) Close() {
	for _, c := range w.clients {
		c.Close()
	}
}

// probeRESPOptions are the go-redis settings of the probe's clients: one
// attempt per write (the probe is the retry loop), a pool as large as the
// writes it may have outstanding.
func probeRESPOptions(addr string, setup [][]any) *redis.Options {
	return &redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		PoolSize: 64, PoolTimeout: probeTimeout, DialTimeout: time.Second,
		ReadTimeout: probeTimeout, WriteTimeout: probeTimeout, ContextTimeoutEnabled: true,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			for _, args := range setup {
				if err := cn.Do(ctx, args...).Err(); err != nil {
					return fmt.Errorf("%v: %w", args, err)
				}
			}
			return nil
		}}
}

func (tt triremeTarget) writer(ctx context.Context) (probeWriter, error) {
	addrs, err := tt.t.RESPAddrs(ctx) // the leader first, where the client starts
	if err != nil {
		return nil, err
	}
	w := &anyNodeWriter{}
	for _, a := range addrs {
		w.clients = append(w.clients, redis.NewClient(probeRESPOptions(a, [][]any{{"TRIREME.ACK", "majority"}})))
	}
	return w, nil
}

func (tt triremeTarget) kill(victim string) error { return tt.t.Cluster().Kill(victim) }

func (tt triremeTarget) restore(ctx context.Context, victim string) error {
	if err := tt.t.Cluster().Start(victim); err != nil {
		return err
	}
	return waitTriremeCaughtUp(ctx, tt.t, victim, failoverRestored)
}

func (tt triremeTarget) readBack(ctx context.Context, keys []string) (map[string]string, error) {
	l, err := tt.t.Leader(ctx)
	if err != nil {
		return nil, err
	}
	c, err := dialRESP(ctx, l.RESP, [][]any{{"TRIREME.CONSISTENCY", "linearizable"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return respGetAll(ctx, c, keys)
}

// respGetAll reads keys with pipelined GETs, 200 at a time; keys not
// found are absent from the result.
func respGetAll(ctx context.Context, c redis.Cmdable, keys []string) (map[string]string, error) {
	out := map[string]string{}
	for batch := range slices.Chunk(keys, 200) {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Get(ctx, k)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, cmd := range cmds {
			v, err := cmd.(*redis.StringCmd).Result()
			switch {
			case err == nil:
				out[batch[i]] = v
			case !errors.Is(err, redis.Nil):
				return nil, err
			}
		}
	}
	return out, nil
}

// --- etcd ---

// etcdTarget is an etcd cluster under the failover measurement.
type etcdTarget struct{ e *Etcd }

func (et etcdTarget) primary(ctx context.Context) (string, error) {
	// Every member up before a kill: with one already gone, killing the
	// leader would leave no quorum, and the trial would measure that.
	for i := range et.e.Clients {
		if err := et.e.waitMember(ctx, i, 30*time.Second); err != nil {
			return "", err
		}
	}
	i, err := et.e.WaitLeader(ctx, -1, 30*time.Second)
	return fmt.Sprint(i), err
}

// etcdWriter is etcd's probe client: clientv3 given every member, which
// balances over them and moves off a dead one.
type etcdWriter struct{ c *clientv3.Client }

func (w etcdWriter) Write(ctx context.Context, key, value string) error {
	_, err := w.c.Put(ctx, key, value)
	return err
}

func (w etcdWriter) Close() { w.c.Close() }

func (et etcdTarget) allClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: et.e.Clients, DialTimeout: time.Second, Logger: zap.NewNop()})
}

func (et etcdTarget) writer(ctx context.Context) (probeWriter, error) {
	c, err := et.allClient()
	if err != nil {
		return nil, err
	}
	return etcdWriter{c}, nil
}

// diagnose says, after a trial saw no write acknowledged, which members
// run and what each answers of the cluster's leader.
func (et etcdTarget) diagnose(ctx context.Context) string {
	var parts []string
	for i := range et.e.Clients {
		if !et.e.Running(i) {
			parts = append(parts, fmt.Sprintf("member %d not running", i))
			continue
		}
		c, err := et.e.Client(i)
		if err != nil {
			parts = append(parts, fmt.Sprintf("member %d: %v", i, err))
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(sctx, et.e.Clients[i])
		cancel()
		c.Close()
		if err != nil {
			parts = append(parts, fmt.Sprintf("member %d: %v", i, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("member %d: leader %x, raft term %d", i, st.Leader, st.RaftTerm))
	}
	return "etcd then: " + strings.Join(parts, "; ") + " (logs in " + et.e.dir + ")"
}

func (et etcdTarget) member(victim string) (int, error) {
	var i int
	if _, err := fmt.Sscan(victim, &i); err != nil || i < 0 || i >= len(et.e.Clients) {
		return 0, fmt.Errorf("etcd: no member %q", victim)
	}
	return i, nil
}

func (et etcdTarget) kill(victim string) error {
	i, err := et.member(victim)
	if err != nil {
		return err
	}
	et.e.Kill(i)
	return nil
}

func (et etcdTarget) restore(ctx context.Context, victim string) error {
	i, err := et.member(victim)
	if err != nil {
		return err
	}
	if err := et.e.Start(i); err != nil {
		return err
	}
	return et.e.waitMember(ctx, i, failoverRestored)
}

func (et etcdTarget) readBack(ctx context.Context, keys []string) (map[string]string, error) {
	c, err := et.allClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]string{}
	for _, k := range keys {
		r, err := c.Get(ctx, k) // linearizable
		if err != nil {
			return nil, err
		}
		for _, kv := range r.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
	}
	return out, nil
}

// --- the part ---

// failoverPart runs the failover measurement of every selected system, each
// on a cluster of its own started for it and stopped after; step runs one
// system's and records its error. A system or Trireme variant that cannot
// run here gets a row that says why.
func (r *runner) failoverPart(ctx context.Context, step func(name string, f func() error)) {
	cfg := r.cfg
	run := func(f FailoverResult, slug, dirName string, start func(dir string) (failoverTarget, func(), error)) {
		step("failover "+f.Name(), func() error { return r.failoverSystem(ctx, f, slug, dirName, start) })
	}
	if cfg.has(cfg.Systems, "trireme") {
		r.triremeFailovers(ctx, step, run)
	}
	if cfg.has(cfg.Systems, "etcd") {
		f := FailoverResult{System: "etcd", Settings: "heartbeat 100 ms, election timeout 1000 ms; the defaults",
			Probe: "clientv3 Put, one client given the 3 members' endpoints"}
		run(f, "etcd", "failover-etcd", func(dir string) (failoverTarget, func(), error) {
			e, err := StartEtcd(ctx, dir, 3, cfg.NodeProcs)
			if err != nil {
				return nil, nil, err
			}
			return etcdTarget{e}, e.Stop, nil
		})
	}
	if cfg.has(cfg.Systems, "redis") {
		f := FailoverResult{System: "redis", Variant: "sentinel", Settings: DefaultSentinelSettings().String(),
			Probe: "SET through go-redis NewFailoverClient (asks the sentinels for the master)"}
		run(f, "redis", "failover-redis", func(dir string) (failoverTarget, func(), error) {
			s, err := StartSentinel(ctx, dir, DefaultSentinelSettings())
			if err != nil {
				return nil, nil, err
			}
			return sentinelTarget{s}, s.Stop, nil
		})
	}
	if cfg.has(cfg.Systems, "patroni") {
		f := FailoverResult{System: "patroni", Settings: DefaultPatroniSettings().String(),
			Probe: "INSERT through pgx (pgxpool) with a multi-host connection string and target_session_attrs=read-write"}
		run(f, "patroni", "failover-patroni", func(dir string) (failoverTarget, func(), error) {
			pt, err := StartPatroni(ctx, dir, DefaultPatroniSettings(), cfg.Keep, r.progress)
			if err != nil {
				return nil, nil, err
			}
			return patroniTarget{pt}, pt.Stop, nil
		})
	}
}

// skipFailover records a row that was not measured, and says why.
func (r *runner) skipFailover(f FailoverResult) {
	r.res.Failover = append(r.res.Failover, f)
	r.res.Skipped = append(r.res.Skipped, fmt.Sprintf("failover %s: %s", f.Name(), f.Skipped))
	r.say("failover %s: %s", f.Name(), f.Skipped)
}

// failoverSystem measures one system in a data directory of its own (under
// the run's, named dirName), which start fills and returns the system's
// target and a stop function from. The row is kept with the trials made,
// even after an error; a system not installed gets a skipped row.
func (r *runner) failoverSystem(ctx context.Context, f FailoverResult, slug, dirName string, start func(dir string) (failoverTarget, func(), error)) error {
	dir := filepath.Join(r.cfg.WorkDir, dirName)
	defer func() {
		if !r.cfg.Keep {
			os.RemoveAll(dir)
		}
	}()
	r.say("failover %s: starting (%s)", f.Name(), f.Settings)
	tg, stop, err := start(dir)
	var noPeer *errNotInstalled
	if errors.As(err, &noPeer) {
		f.Skipped = "skipped: " + noPeer.Error()
		r.skipFailover(f)
		return nil
	}
	if err != nil {
		return err
	}
	defer stop()
	if d, ok := tg.(interface{ describe() string }); ok {
		f.Settings += "; " + d.describe()
	}
	err = measureFailover(ctx, tg, &f, slug, r.cfg.Profile.FailoverTrials, r.progress)
	r.res.Failover = append(r.res.Failover, f)
	if f.measured() {
		r.say("failover %s: median %.0f ms, p90 %.0f ms, min %.0f ms, max %.0f ms over %d trials; %d of %d acknowledged writes missing",
			f.Name(), f.MedianMs, f.P90Ms, f.MinMs, f.MaxMs, len(f.TrialsMs), f.MissingWrites, f.AckedWrites)
	}
	return err
}

// failoverRun measures one system: start returns its target and a stop
// function (see failoverPart).
type failoverRun func(f FailoverResult, slug, dirName string, start func(dir string) (failoverTarget, func(), error))

// triremeFailovers measures each of Trireme's ways of electing that the
// binary has, and records a skipped row for each it lacks.
func (r *runner) triremeFailovers(ctx context.Context, step func(string, func() error), run failoverRun) {
	flags, err := triremeNodeFlags(ctx, r.cfg.TriremeBin)
	if err != nil {
		step("failover trireme", func() error { return err })
		return
	}
	for _, d := range triremeDetectors(flags) {
		f := FailoverResult{System: "trireme", Variant: d.Variant, Settings: d.Settings,
			Probe: "RESP SET with ack majority through one node at a time (the leader first), moving to the next node after an error; any node forwards to the leader"}
		if r.cfg.peerTLS() == "off" {
			f.Settings += "; no peer TLS (--insecure-peers)"
		}
		if d.Skip != "" {
			f.Skipped = d.Skip
			r.skipFailover(f)
			continue
		}
		run(f, "trireme-"+d.Variant, "failover-trireme-"+d.Variant, func(dir string) (failoverTarget, func(), error) {
			return r.startTriremeFailover(ctx, dir, d)
		})
	}
}

// startTriremeFailover starts a 3-node cluster for variant d (and, for
// the coordinator, a 3-member etcd first).
func (r *runner) startTriremeFailover(ctx context.Context, dir string, d triremeDetector) (failoverTarget, func(), error) {
	args := slices.Clone(d.Args)
	var e *Etcd
	if d.Variant == "coordinator" {
		var err error
		if e, err = StartEtcd(ctx, filepath.Join(dir, "etcd"), 3, r.cfg.NodeProcs); err != nil {
			return nil, nil, fmt.Errorf("the coordinator's etcd: %w", err)
		}
		args = append(args, "--coordinator", coordinatorURL(e.Clients))
	}
	t, err := StartTriremeSetup(ctx, r.cfg.TriremeBin, filepath.Join(dir, "trireme"), TriremeSetup{Voters: 3, Procs: r.cfg.NodeProcs,
		InsecurePeers: r.cfg.peerTLS() == "off", NodeArgs: args})
	if err != nil {
		if e != nil {
			e.Stop()
		}
		return nil, nil, err
	}
	stop := func() {
		t.Stop()
		if e != nil {
			e.Stop()
		}
	}
	return triremeTarget{t}, stop, nil
}

// coordinatorURL is --coordinator for etcd members at clientURLs
// (http://HOST:PORT): etcd://HOST:PORT,HOST:PORT,...
func coordinatorURL(clientURLs []string) string {
	var hosts []string
	for _, u := range clientURLs {
		hosts = append(hosts, strings.TrimPrefix(u, "http://"))
	}
	return "etcd://" + strings.Join(hosts, ",")
}

// errNotInstalled means a peer system's programs are not on this machine:
// its measurement is skipped, with the reason in the report.
type errNotInstalled struct{ what string }

func (e *errNotInstalled) Error() string { return e.what }
