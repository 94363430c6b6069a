package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The sessions part: session reads served by the followers against
// linearizable reads served by the leader, on one cluster, in interleaved
// rounds.
//
// Both sides run the same client program on targetClients RESP
// connections with TRIREME.ACK majority: of every sessionWriteEvery
// operations, one is a write of the connection's own key (forwarded to the
// leader when the connection is on a follower), the next a read of that
// key, checked against what was written (read-your-writes), and the rest
// reads of random preloaded keys. The write moves the connection's session
// token, so the read after it waits on a follower until the follower has
// applied the write (or, after --session-wait, is forwarded to the
// leader). The session side's connections are in TRIREME.CONSISTENCY
// session, spread over the two followers; the other side's are
// linearizable, all on the leader. What a follower serving reads buys is
// measured where it shows on a 2-core machine: the leader's CPU per read.

// Session sides.
const (
	SideSession      = "session reads on the followers"
	SideLinearizable = "linearizable reads on the leader"
)

// sessionWriteEvery: one operation in this many is a write of the
// connection's own key, and the one after it a read of that key.
const sessionWriteEvery = 20

// SessionRun is one run of a side.
type SessionRun struct {
	Side   string `json:"side"`
	Round  int    `json:"round"`
	Leader string `json:"leader"`
	// Load is RunLoad's result over every operation, reads and writes.
	Load LoadResult `json:"load"`
	// Seconds is the measured window as sampled (the figures below are
	// over it).
	Seconds      float64 `json:"seconds"`
	Reads        uint64  `json:"reads"`
	Writes       uint64  `json:"writes"`
	ReadsPerSec  float64 `json:"reads_per_sec"`
	WritesPerSec float64 `json:"writes_per_sec"`
	ReadP50us    float64 `json:"read_p50_us"`
	ReadP99us    float64 `json:"read_p99_us"`
	ReadP999us   float64 `json:"read_p999_us"`
	WriteP50us   float64 `json:"write_p50_us"`
	WriteP99us   float64 `json:"write_p99_us"`
	// The leader's CPU time over the window: in cores, per read, and per
	// operation (reads and writes); the followers' together in cores; every
	// node's per read.
	LeaderCores        float64 `json:"leader_cores"`
	LeaderCPUusPerRead float64 `json:"leader_cpu_us_per_read"`
	LeaderCPUusPerOp   float64 `json:"leader_cpu_us_per_op"`
	FollowerCores      float64 `json:"follower_cores"`
	ServerCPUusPerRead float64 `json:"server_cpu_us_per_read"`
	// Read-your-writes checks: reads of the connection's own key right
	// after writing it (every one, warm-up included), and those that did
	// not return what was written.
	RYWChecks      uint64 `json:"ryw_checks"`
	RYWViolations  uint64 `json:"ryw_violations"`
	FirstViolation string `json:"first_violation,omitempty"`
	// Served is the followers' trireme_session_reads_total over the run
	// (warm-up included), by how the reads were served: local, waited,
	// forwarded, rolled_back.
	Served map[string]float64 `json:"served,omitempty"`
	// TermChanged: an election happened during the run.
	TermChanged bool `json:"term_changed,omitempty"`
}

// SessionSide is the medians of a side's runs.
type SessionSide struct {
	Side               string             `json:"side"`
	Rounds             int                `json:"rounds"`
	ReadsPerSec        float64            `json:"reads_per_sec"`
	MinReads           float64            `json:"min_reads_per_sec"`
	MaxReads           float64            `json:"max_reads_per_sec"`
	WritesPerSec       float64            `json:"writes_per_sec"`
	ReadP50us          float64            `json:"read_p50_us"`
	ReadP99us          float64            `json:"read_p99_us"`
	WriteP99us         float64            `json:"write_p99_us"`
	LeaderCores        float64            `json:"leader_cores"`
	LeaderCPUusPerRead float64            `json:"leader_cpu_us_per_read"`
	LeaderCPUusPerOp   float64            `json:"leader_cpu_us_per_op"`
	FollowerCores      float64            `json:"follower_cores"`
	ServerCPUusPerRead float64            `json:"server_cpu_us_per_read"`
	ClientCPUusPerOp   float64            `json:"client_cpu_us_per_op"`
	RYWChecks          uint64             `json:"ryw_checks"` // over every round
	RYWViolations      uint64             `json:"ryw_violations"`
	Errors             uint64             `json:"errors"`
	Served             map[string]float64 `json:"served,omitempty"` // summed over the rounds
}

// SessionsResult is what the sessions part measured.
type SessionsResult struct {
	ValueBytes int           `json:"value_bytes"`
	Keys       int           `json:"keys"`
	Clients    int           `json:"clients"`
	Rounds     int           `json:"rounds"`
	Warmup     float64       `json:"warmup_s"`
	Duration   float64       `json:"duration_s"`
	WriteEvery int           `json:"write_every"`
	Sides      []SessionSide `json:"sides"`
	// Ratios are, round by round, the session side's reads/s over the
	// linearizable side's; LeaderCPURatios the session side's leader CPU
	// per read over the linearizable side's.
	Ratios          []float64    `json:"ratios"`
	LeaderCPURatios []float64    `json:"leader_cpu_ratios"`
	Runs            []SessionRun `json:"runs"`
	Notes           []string     `json:"notes,omitempty"`
	LoadBefore      string       `json:"load_average_before"`
	LoadAfter       string       `json:"load_average_after"`
}

// TriremeSessions runs the sessions part on a fresh 3-node cluster under
// dir: p.Keys keys of valueBytes preloaded, then issue17Rounds(p) rounds of
// the two sides at targetClients connections; seed seeds the first run's
// key choice (each run adds one).
func TriremeSessions(ctx context.Context, binary, dir string, procs int, insecurePeers bool, p Profile, valueBytes int, seed uint64, progress func(string)) (SessionsResult, error) {
	rounds := issue17Rounds(p)
	res := SessionsResult{ValueBytes: valueBytes, Keys: p.Keys, Clients: targetClients, Rounds: rounds, Warmup: p.Warmup.Seconds(),
		Duration: p.Duration.Seconds(), WriteEvery: sessionWriteEvery, LoadBefore: loadAverage()}
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecurePeers})
	if err != nil {
		return res, err
	}
	defer t.Stop()
	pre, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return res, err
	}
	progress(fmt.Sprintf("sessions: preloading %d keys of %d B", p.Keys, valueBytes))
	if _, err := Preload(ctx, pre, p.Keys, valueBytes, 16, 30*time.Second); err != nil {
		return res, err
	}
	sides := []string{SideSession, SideLinearizable}
	for round := 1; round <= rounds; round++ {
		for _, i := range roundOrder(len(sides), round) {
			seed++
			spec := LoadSpec{Workload: WorkRead, ValueBytes: valueBytes, Clients: targetClients, Keys: p.Keys, Warmup: p.Warmup,
				Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed}
			sr, err := sessionRun(ctx, t, sides[i], spec)
			if err != nil {
				return res, err
			}
			sr.Round = round
			res.Runs = append(res.Runs, sr)
			progress(fmt.Sprintf("sessions: round %d/%d: %-32s %8.0f reads/s  read p99 %6.2f ms  write p99 %6.2f ms  leader %.2f cores, %5.1f µs/read  ryw %d/%d bad  served %s  %s",
				round, rounds, sr.Side, sr.ReadsPerSec, sr.ReadP99us/1000, sr.WriteP99us/1000, sr.LeaderCores, sr.LeaderCPUusPerRead,
				sr.RYWViolations, sr.RYWChecks, servedString(sr.Served), errorsNote(sr.Load)))
			if sr.TermChanged {
				res.Notes = append(res.Notes, fmt.Sprintf("round %d, %s: a leader election happened during the run", round, sr.Side))
			}
		}
	}
	for _, s := range sides {
		res.Sides = append(res.Sides, summarizeSessionRuns(s, res.Runs))
	}
	res.Ratios, res.LeaderCPURatios = sessionRatios(res.Runs)
	res.LoadAfter = loadAverage()
	return res, nil
}

// servedString renders session-read counts as "local 97%, waited 3%".
func servedString(m map[string]float64) string {
	var total float64
	for _, v := range m {
		total += v
	}
	if total == 0 {
		return "–"
	}
	var parts []string
	for _, k := range []string{"local", "waited", "forwarded", "rolled_back"} {
		if v := m[k]; v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", k, 100*v/total))
		}
	}
	return strings.Join(parts, ", ")
}

// sessionReadsServed sums trireme_session_reads_total of the nodes at
// httpAddrs by its "served" label.
func sessionReadsServed(ctx context.Context, httpAddrs []string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, a := range httpAddrs {
		m, err := scrapeMetrics(ctx, a, "trireme_session_reads_total")
		if err != nil {
			return nil, err
		}
		for name, v := range m {
			if l := labelValue(name, "served"); l != "" {
				out[l] += v
			}
		}
	}
	return out, nil
}

// labelValue returns label's value in a sample name such as
// `x_total{served="local"}`, "" if absent.
func labelValue(sample, label string) string {
	_, rest, ok := strings.Cut(sample, label+`="`)
	if !ok {
		return ""
	}
	v, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return ""
	}
	return v
}

// sessionRun runs one side: connections on the followers in session mode,
// or on the leader in linearizable mode, as the leader is now.
func sessionRun(ctx context.Context, t *Trireme, side string, spec LoadSpec) (SessionRun, error) {
	sr := SessionRun{Side: side}
	cl := t.Cluster()
	leaderID, st0, err := cl.Leader(ctx)
	if err != nil {
		return sr, err
	}
	sr.Leader = leaderID
	var ids, addrs, followerHTTP []string
	for _, ns := range cl.Spec().Nodes {
		ids = append(ids, ns.ID)
		if ns.ID != leaderID {
			followerHTTP = append(followerHTTP, ns.HTTP)
			if side == SideSession {
				addrs = append(addrs, ns.RESP)
			}
		} else if side == SideLinearizable {
			addrs = append(addrs, ns.RESP)
		}
	}
	level := "linearizable"
	if side == SideSession {
		level = "session"
	}
	pids := map[string]int{}
	var pidList []int
	for _, id := range ids {
		pid, err := cl.Pid(id)
		if err != nil {
			return sr, err
		}
		pids[id] = pid
		pidList = append(pidList, pid)
	}
	type sample struct {
		at  time.Time
		cpu map[string]time.Duration
	}
	var win [2]sample
	var open atomic.Bool
	var mu sync.Mutex
	var doers []*sessionDoer
	setup := [][]any{{"TRIREME.ACK", "majority"}, {"TRIREME.CONSISTENCY", level}}
	nonce := fmt.Sprintf("%d", spec.Seed)
	v := Variant{System: t.System, Name: side, Pids: func() []int { return pidList },
		Open: func(ctx context.Context, i, n int) (Doer, error) {
			c, err := dialRESP(ctx, addrs[i%len(addrs)], setup)
			if err != nil {
				return nil, err
			}
			d := newSessionDoer(respKV{c}, fmt.Sprintf("session-%d", i), nonce, spec.ValueBytes, sessionWriteEvery, &open)
			mu.Lock()
			doers = append(doers, d)
			mu.Unlock()
			return d, nil
		},
		Window: func(opening bool) {
			s := sample{at: time.Now(), cpu: map[string]time.Duration{}}
			for id, pid := range pids {
				s.cpu[id], _ = procCPU(pid)
			}
			if opening {
				win[0] = s
				open.Store(true)
			} else {
				open.Store(false)
				win[1] = s
			}
		}}
	served0, err := sessionReadsServed(ctx, followerHTTP)
	if err != nil {
		return sr, err
	}
	lr, err := RunLoad(ctx, v, spec)
	if err != nil {
		return sr, err
	}
	sr.Load = lr
	served1, err := sessionReadsServed(ctx, followerHTTP)
	if err != nil {
		return sr, err
	}
	if side == SideSession {
		sr.Served = map[string]float64{}
		for k, v := range served1 {
			if d := v - served0[k]; d > 0 {
				sr.Served[k] = d
			}
		}
	}
	if id1, st1, err := cl.Leader(ctx); err == nil && (id1 != leaderID || st1.Term != st0.Term) {
		sr.TermChanged = true
	}
	var reads, writes Hist
	for _, d := range doers {
		reads.Merge(&d.reads)
		writes.Merge(&d.writes)
		sr.RYWChecks += d.rywChecks
		sr.RYWViolations += d.rywViolations
		if sr.FirstViolation == "" {
			sr.FirstViolation = d.firstViolation
		}
	}
	sr.Seconds = win[1].at.Sub(win[0].at).Seconds()
	sr.Reads, sr.Writes = reads.Count(), writes.Count()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	sr.ReadP50us, sr.ReadP99us, sr.ReadP999us = us(reads.Quantile(0.5)), us(reads.Quantile(0.99)), us(reads.Quantile(0.999))
	sr.WriteP50us, sr.WriteP99us = us(writes.Quantile(0.5)), us(writes.Quantile(0.99))
	if sr.Seconds <= 0 {
		return sr, nil
	}
	sr.ReadsPerSec, sr.WritesPerSec = float64(sr.Reads)/sr.Seconds, float64(sr.Writes)/sr.Seconds
	var all time.Duration
	for _, id := range ids {
		c := win[1].cpu[id] - win[0].cpu[id]
		all += c
		if id == leaderID {
			sr.LeaderCores = c.Seconds() / sr.Seconds
			if sr.Reads > 0 {
				sr.LeaderCPUusPerRead = us(c) / float64(sr.Reads)
			}
			if n := sr.Reads + sr.Writes; n > 0 {
				sr.LeaderCPUusPerOp = us(c) / float64(n)
			}
		} else {
			sr.FollowerCores += c.Seconds() / sr.Seconds
		}
	}
	if sr.Reads > 0 {
		sr.ServerCPUusPerRead = us(all) / float64(sr.Reads)
	}
	return sr, nil
}

// kvConn is the connection a sessionDoer reads and writes through.
type kvConn interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, value []byte) error
	Close() error
}

// respKV is a kvConn on a go-redis client of one connection.
type respKV struct{ c *redis.Client }

func (k respKV) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := k.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (k respKV) Set(ctx context.Context, key string, value []byte) error {
	return k.c.Set(ctx, key, value, 0).Err()
}

func (k respKV) Close() error { return k.c.Close() }

// sessionDoer is a Doer for WorkRead loads whose Read, one call in every
// `every`, writes its own key instead, and on the next call reads that key
// back and checks it. It records reads and writes in separate histograms
// while open is set at both ends of an operation.
type sessionDoer struct {
	kv     kvConn
	self   string // this connection's own key
	prefix string // makes the values of this run's writes unique
	value  []byte // what each write's value is cut from
	every  uint64
	open   *atomic.Bool

	n       uint64
	pending []byte // the value last written to self, to check on the next call
	buf     []byte

	reads, writes  Hist
	rywChecks      uint64
	rywViolations  uint64
	firstViolation string
}

func newSessionDoer(kv kvConn, self, nonce string, valueBytes, every int, open *atomic.Bool) *sessionDoer {
	return &sessionDoer{kv: kv, self: self, prefix: nonce + ":" + self + ":", value: MakeValue(valueBytes, 11),
		every: uint64(max(2, every)), open: open}
}

// next returns the value of write n: unique to this connection, run and
// write, padded to the value size.
func (d *sessionDoer) next(n uint64) []byte {
	d.buf = fmt.Appendf(d.buf[:0], "%s%d:", d.prefix, n)
	if len(d.buf) < len(d.value) {
		d.buf = append(d.buf, d.value[len(d.buf):]...)
	}
	return d.buf
}

func (d *sessionDoer) Read(ctx context.Context, key string) error {
	d.n++
	measured := d.open.Load()
	t0 := time.Now()
	var err error
	write := false
	switch {
	case d.n%d.every == 0:
		write = true
		v := d.next(d.n)
		if err = d.kv.Set(ctx, d.self, v); err == nil {
			d.pending = v
		} else {
			d.pending = nil // its outcome is unknown: no check
		}
	case d.pending != nil:
		var got []byte
		got, err = d.kv.Get(ctx, d.self)
		if err == nil {
			d.rywChecks++
			if !bytes.Equal(got, d.pending) {
				d.rywViolations++
				if d.firstViolation == "" {
					d.firstViolation = fmt.Sprintf("%s: wrote %.40q, read %.40q", d.self, d.pending, got)
				}
			}
		}
		d.pending = nil
	default:
		_, err = d.kv.Get(ctx, key)
	}
	el := time.Since(t0)
	if err == nil && measured && d.open.Load() {
		if write {
			d.writes.Record(el)
		} else {
			d.reads.Record(el)
		}
	}
	return err
}

func (d *sessionDoer) Write(ctx context.Context, key string, value []byte) error {
	return d.kv.Set(ctx, key, value)
}

func (d *sessionDoer) Close() error { return d.kv.Close() }

// summarizeSessionRuns returns the medians of side's runs.
func summarizeSessionRuns(side string, runs []SessionRun) SessionSide {
	s := SessionSide{Side: side}
	var rps, wps, rp50, rp99, wp99, lc, lpr, lpo, fc, spr, cpo []float64
	for _, r := range runs {
		if r.Side != side {
			continue
		}
		s.Rounds++
		rps, wps = append(rps, r.ReadsPerSec), append(wps, r.WritesPerSec)
		rp50, rp99, wp99 = append(rp50, r.ReadP50us), append(rp99, r.ReadP99us), append(wp99, r.WriteP99us)
		lc, lpr, lpo = append(lc, r.LeaderCores), append(lpr, r.LeaderCPUusPerRead), append(lpo, r.LeaderCPUusPerOp)
		fc, spr, cpo = append(fc, r.FollowerCores), append(spr, r.ServerCPUusPerRead), append(cpo, r.Load.ClientCPUus)
		s.RYWChecks += r.RYWChecks
		s.RYWViolations += r.RYWViolations
		s.Errors += r.Load.Errors
		for k, v := range r.Served {
			if s.Served == nil {
				s.Served = map[string]float64{}
			}
			s.Served[k] += v
		}
	}
	if s.Rounds == 0 {
		return s
	}
	s.ReadsPerSec, s.MinReads, s.MaxReads = median(rps), slices.Min(rps), slices.Max(rps)
	s.WritesPerSec, s.ReadP50us, s.ReadP99us, s.WriteP99us = median(wps), median(rp50), median(rp99), median(wp99)
	s.LeaderCores, s.LeaderCPUusPerRead, s.LeaderCPUusPerOp = median(lc), median(lpr), median(lpo)
	s.FollowerCores, s.ServerCPUusPerRead, s.ClientCPUusPerOp = median(fc), median(spr), median(cpo)
	return s
}

// sessionRatios pairs the two sides' runs by round and returns, round by
// round, the session side's reads/s over the linearizable side's and its
// leader CPU per read over the linearizable side's.
func sessionRatios(runs []SessionRun) (reads, leaderCPU []float64) {
	lin := map[int]SessionRun{}
	for _, r := range runs {
		if r.Side == SideLinearizable {
			lin[r.Round] = r
		}
	}
	for _, r := range runs {
		l, ok := lin[r.Round]
		if r.Side != SideSession || !ok {
			continue
		}
		if l.ReadsPerSec > 0 {
			reads = append(reads, ratio(r.ReadsPerSec, l.ReadsPerSec))
		}
		if l.LeaderCPUusPerRead > 0 {
			leaderCPU = append(leaderCPU, ratio(r.LeaderCPUusPerRead, l.LeaderCPUusPerRead))
		}
	}
	return reads, leaderCPU
}
