package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The rmw part: Trireme's INCR and MSET against Redis's, with the same
// go-redis client program (rmwDoer), in interleaved rounds. Trireme's are
// majority-acknowledged writes, answered once committed and applied on the
// leader; Redis acknowledges once its primary has applied (and, with
// appendfsync always, fsynced) the command, replicating asynchronously, so
// each Redis command also runs pipelined with WAIT 2 (both replicas
// acknowledged receiving it), as the bench's SET+WAIT does. Counters are
// checked at the end: each system's counters must sum to the increments
// it acknowledged.

// msetKeys is how many keys one MSET sets, as redis-benchmark's MSET test.
const msetKeys = 10

// RMW commands.
const (
	OpIncr = "INCR"
	OpMSET = "MSET"
)

// counterKey is the key INCR adds to, for key space key k (as
// redis-benchmark's counter:__rand_int__).
func counterKey(k string) string { return "counter:" + k }

// CounterCheck is the sum of a system's counters at the end of the part
// against the increments it acknowledged.
type CounterCheck struct {
	System string `json:"system"`
	Keys   int    `json:"keys"`
	Sum    int64  `json:"sum"`
	// Acked is every acknowledged INCR of the part, the preload's one per
	// key included (warm-up included); Failed the INCRs that returned an
	// error (which may or may not have applied).
	Acked  uint64 `json:"acked"`
	Failed uint64 `json:"failed"`
	Error  string `json:"error,omitempty"`
}

// RMWResult is what the rmw part measured.
type RMWResult struct {
	ValueBytes int     `json:"value_bytes"`
	Keys       int     `json:"keys"`
	Clients    int     `json:"clients"`
	Rounds     int     `json:"rounds"`
	Warmup     float64 `json:"warmup_s"`
	Duration   float64 `json:"duration_s"`
	MSETKeys   int     `json:"mset_keys"`
	// Redis: the Redis sides ran (the system was selected and installed).
	Redis       bool           `json:"redis"`
	Comparisons []Comparison   `json:"comparisons"` // INCR, MSET: Trireme against each Redis side
	Runs        []LoadResult   `json:"runs"`
	Counters    []CounterCheck `json:"counters"`
	Notes       []string       `json:"notes,omitempty"`
	LoadBefore  string         `json:"load_average_before"`
	LoadAfter   string         `json:"load_average_after"`
}

// rmwDoer runs INCR or MSET on one RESP connection, followed by WAIT wait
// (pipelined) when wait > 0. Write's key is INCR's counter (counterKey) or
// MSET's first key; MSET's other keys are drawn from the key space.
type rmwDoer struct {
	c      *redis.Client
	op     string
	wait   int
	keys   int
	r      *rand.Rand
	args   []any
	acked  *atomic.Uint64 // INCRs acknowledged
	failed *atomic.Uint64 // INCRs that returned an error
}

// command returns the command for one write.
func (d *rmwDoer) command(key string, value []byte) []any {
	d.args = d.args[:0]
	if d.op == OpIncr {
		return append(d.args, OpIncr, counterKey(key))
	}
	d.args = append(d.args, OpMSET, key, value)
	for range msetKeys - 1 {
		d.args = append(d.args, Key(d.r.IntN(d.keys)), value)
	}
	return d.args
}

func (d *rmwDoer) Write(ctx context.Context, key string, value []byte) error {
	err := d.write(ctx, key, value)
	if d.op == OpIncr {
		if err == nil {
			d.acked.Add(1)
		} else {
			d.failed.Add(1)
		}
	}
	return err
}

func (d *rmwDoer) write(ctx context.Context, key string, value []byte) error {
	args := d.command(key, value)
	if d.wait == 0 {
		return d.c.Do(ctx, args...).Err()
	}
	var w *redis.Cmd
	_, err := d.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, args...)
		w = p.Do(ctx, "WAIT", d.wait, 5000)
		return nil
	})
	if err != nil {
		return err
	}
	n, err := w.Int()
	if err != nil {
		return err
	}
	if n < d.wait {
		return fmt.Errorf("WAIT %d: only %d replicas acknowledged", d.wait, n)
	}
	return nil
}

func (d *rmwDoer) Read(ctx context.Context, key string) error { return d.c.Get(ctx, key).Err() }

func (d *rmwDoer) Close() error { return d.c.Close() }

// rmwSide is one side of an rmw group: a system's command, on the node at
// addr() (resolved once per run), set up with setup.
type rmwSide struct {
	system, name string
	op           string
	wait         int
	addr         func() (string, error)
	setup        [][]any
	pids         func() []int
	acked        *atomic.Uint64
	failed       *atomic.Uint64
}

// variant returns the side's variant for one run.
func (s rmwSide) variant(keys int, seed uint64) (Variant, error) {
	addr, err := s.addr()
	if err != nil {
		return Variant{}, err
	}
	return Variant{System: s.system, Name: s.name, Pids: s.pids, Open: func(ctx context.Context, i, n int) (Doer, error) {
		c, err := dialRESP(ctx, addr, s.setup)
		if err != nil {
			return nil, err
		}
		return &rmwDoer{c: c, op: s.op, wait: s.wait, keys: keys, r: rand.New(rand.NewPCG(seed, uint64(i)+1000)),
			acked: s.acked, failed: s.failed}, nil
	}}, nil
}

// RMW runs the rmw part: a fresh 3-node Trireme cluster under dir and,
// with withRedis, a Redis primary with 2 replicas (skipped with a note if
// redis-server is not installed); p.Keys keys of valueBytes and p.Keys
// counters preloaded in each; then issue17Rounds(p) rounds of the INCR
// group and the MSET group at targetClients connections.
func RMW(ctx context.Context, binary, dir string, procs int, insecurePeers, withRedis bool, p Profile, valueBytes int, seed uint64, progress func(string)) (RMWResult, error) {
	rounds := issue17Rounds(p)
	res := RMWResult{ValueBytes: valueBytes, Keys: p.Keys, Clients: targetClients, Rounds: rounds, Warmup: p.Warmup.Seconds(),
		Duration: p.Duration.Seconds(), MSETKeys: msetKeys, LoadBefore: loadAverage()}
	t, err := StartTriremeSetup(ctx, binary, filepath.Join(dir, "trireme"), TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecurePeers})
	if err != nil {
		return res, err
	}
	defer t.Stop()
	var rd *Redis
	if withRedis {
		progress("rmw: starting Redis: a primary and 2 replicas (appendonly yes, appendfsync always)")
		rd, err = StartRedis(ctx, filepath.Join(dir, "redis"), 2)
		if errors.Is(err, ErrNoRedis) {
			res.Notes = append(res.Notes, fmt.Sprintf("Redis skipped: %v", err))
			progress(fmt.Sprintf("rmw: NOTE: Redis skipped: %v", err))
			rd = nil
		} else if err != nil {
			return res, err
		} else {
			defer rd.Stop()
			res.Redis = true
		}
	}
	type system struct {
		name          string
		addr          func() (string, error)
		setup         [][]any
		pids          func() []int
		acked, failed atomic.Uint64
	}
	tri := &system{name: t.System, setup: [][]any{{"TRIREME.ACK", "majority"}}, pids: t.Pids, addr: func() (string, error) {
		l, err := t.Leader(ctx)
		return l.RESP, err
	}}
	systems := []*system{tri}
	if rd != nil {
		systems = append(systems, &system{name: "redis", pids: rd.Pids, addr: func() (string, error) { return rd.Addrs[0], nil }})
	}
	side := func(sy *system, op string, wait int) rmwSide {
		name := op
		if op == OpMSET {
			name = fmt.Sprintf("MSET (%d keys)", msetKeys)
		}
		if wait > 0 {
			name += fmt.Sprintf("+WAIT %d", wait)
		}
		return rmwSide{system: sy.name, name: name, op: op, wait: wait, addr: sy.addr, setup: sy.setup, pids: sy.pids, acked: &sy.acked, failed: &sy.failed}
	}
	for _, sy := range systems {
		progress(fmt.Sprintf("rmw: %s: preloading %d keys of %d B and %d counters", sy.name, p.Keys, valueBytes, p.Keys))
		for _, op := range []string{OpMSET, OpIncr} {
			// MSET of a key and 9 random others, and INCR of each counter
			// once: every key written at least once.
			v, err := side(sy, op, 0).variant(p.Keys, seed)
			if err != nil {
				return res, err
			}
			if _, err := Preload(ctx, v, p.Keys, valueBytes, 16, 30*time.Second); err != nil {
				return res, fmt.Errorf("%s: %w", sy.name, err)
			}
		}
	}
	var groups [][]rmwSide
	for _, op := range []string{OpIncr, OpMSET} {
		g := []rmwSide{side(tri, op, 0)}
		if len(systems) > 1 {
			g = append(g, side(systems[1], op, 0), side(systems[1], op, 2))
		}
		groups = append(groups, g)
	}
	leader0, st0, err := t.Cluster().Leader(ctx)
	if err != nil {
		return res, err
	}
	for round := 1; round <= rounds; round++ {
		for _, g := range groups {
			for _, i := range roundOrder(len(g), round) {
				seed++
				v, err := g[i].variant(p.Keys, seed)
				if err != nil {
					return res, err
				}
				lr, err := runSide(ctx, v, LoadSpec{Workload: WorkWrite, ValueBytes: valueBytes, Clients: targetClients, Keys: p.Keys,
					Warmup: p.Warmup, Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed}, round, rounds, "rmw", progress)
				if err != nil {
					return res, err
				}
				res.Runs = append(res.Runs, lr)
			}
		}
	}
	if id, st1, err := t.Cluster().Leader(ctx); err == nil && (id != leader0 || st1.Term != st0.Term) {
		res.Notes = append(res.Notes, fmt.Sprintf("the leader changed during the part (%s term %d, then %s term %d)", leader0, st0.Term, id, st1.Term))
	}
	for _, g := range groups {
		var names []string
		for _, s := range g {
			names = append(names, s.system+" "+s.name)
		}
		res.Comparisons = append(res.Comparisons, compare(g[0].op, res.Runs, names))
	}
	for _, sy := range systems {
		cc := CounterCheck{System: sy.name, Keys: p.Keys, Acked: sy.acked.Load(), Failed: sy.failed.Load()}
		if addr, err := sy.addr(); err != nil {
			cc.Error = err.Error()
		} else if cc.Sum, err = sumCounters(ctx, addr, sy.setup, p.Keys); err != nil {
			cc.Error = err.Error()
		}
		res.Counters = append(res.Counters, cc)
		progress(fmt.Sprintf("rmw: %s: counters sum to %d; %d INCRs acknowledged, %d failed %s", cc.System, cc.Sum, cc.Acked, cc.Failed, cc.Error))
	}
	res.LoadAfter = loadAverage()
	return res, nil
}

// sumCounters reads counters 0..keys-1 at addr (MGET, 500 at a time) and
// returns their sum; an absent counter counts 0.
func sumCounters(ctx context.Context, addr string, setup [][]any, keys int) (int64, error) {
	c, err := dialRESP(ctx, addr, setup)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var sum int64
	for from := 0; from < keys; from += 500 {
		var ks []string
		for k := from; k < min(keys, from+500); k++ {
			ks = append(ks, counterKey(Key(k)))
		}
		vs, err := c.MGet(ctx, ks...).Result()
		if err != nil {
			return sum, err
		}
		for i, v := range vs {
			if v == nil {
				continue
			}
			s, _ := v.(string)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return sum, fmt.Errorf("%s holds %q, not a counter", ks[i], s)
			}
			sum += n
		}
	}
	return sum, nil
}
