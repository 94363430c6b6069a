package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Workload is the mix of operations a run issues.
type Workload string

// The workloads.
const (
	WorkWrite Workload = "write" // 100% writes
	WorkRead  Workload = "read"  // 100% reads of preloaded keys
	WorkMixed Workload = "mixed" // 50% writes, 50% reads
)

// writeFraction is the share of writes in w.
func (w Workload) writeFraction() float64 {
	switch w {
	case WorkWrite:
		return 1
	case WorkRead:
		return 0
	default:
		return 0.5
	}
}

// Doer performs operations on one connection of one system. It is used by
// one goroutine at a time.
type Doer interface {
	Write(ctx context.Context, key string, value []byte) error
	Read(ctx context.Context, key string) error
	Close() error
}

// Variant is one way of using one system (an ack mode and read level, a
// Redis command sequence, an etcd option): it opens connections.
type Variant struct {
	System string // "trireme", "redis", "etcd"
	Name   string // e.g. "async", "SET+WAIT 2", "put"
	// Open opens worker i's connection (of n workers).
	Open func(ctx context.Context, i, n int) (Doer, error)
	// Pids, if set, returns the system's server processes, whose CPU time
	// a run reports.
	Pids func() []int
	// Release, if set, frees what the connections shared, after every
	// doer of a run is closed.
	Release func()
	// Window, if set, is called when a run's measured window opens (true)
	// and when it closes (false), right after the CPU samples: a part
	// that needs more than the run's totals (per-node figures) samples
	// its own counters there.
	Window func(open bool)
}

// LoadSpec is one load run.
type LoadSpec struct {
	Workload   Workload
	ValueBytes int
	Clients    int
	Keys       int           // key space: keys k000000..k(Keys-1)
	Warmup     time.Duration // not measured
	Duration   time.Duration // measured
	OpTimeout  time.Duration // per operation
	Seed       uint64
}

// LoadResult is what one run measured.
type LoadResult struct {
	System     string  `json:"system"`
	Variant    string  `json:"variant"`
	Workload   string  `json:"workload"`
	ValueBytes int     `json:"value_bytes"`
	Clients    int     `json:"clients"`
	Seconds    float64 `json:"seconds"`
	Ops        uint64  `json:"ops"`
	Errors     uint64  `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	MaxUs      float64 `json:"max_us"`
	MeanUs     float64 `json:"mean_us"`
	// CPU time per operation over the measured window: all of the
	// system's server processes together, and the load generator.
	ServerCPUus float64 `json:"server_cpu_us_per_op,omitempty"`
	ClientCPUus float64 `json:"client_cpu_us_per_op,omitempty"`
	// Filled in for Trireme by AddPeers: the peer run and Trireme's
	// figures divided by the peer's.
	Peer            string  `json:"peer,omitempty"`
	ThroughputRatio float64 `json:"throughput_ratio,omitempty"`
	P50Ratio        float64 `json:"p50_ratio,omitempty"`
	P99Ratio        float64 `json:"p99_ratio,omitempty"`
	P999Ratio       float64 `json:"p999_ratio,omitempty"`
	// Round numbers a target round (Results.Rounds), from 1; 0 in the main runs.
	Round int `json:"round,omitempty"`
}

// Key returns the name of key i.
func Key(i int) string { return fmt.Sprintf("k%07d", i) }

// MakeValue returns a value of n bytes (printable, not compressible to nothing).
func MakeValue(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

// RunLoad runs spec against v: spec.Clients goroutines, each with its own
// connection, issue operations back to back (closed loop) for
// Warmup+Duration; only operations that start and end inside the measured
// window are counted.
func RunLoad(ctx context.Context, v Variant, spec LoadSpec) (LoadResult, error) {
	res := LoadResult{System: v.System, Variant: v.Name, Workload: string(spec.Workload),
		ValueBytes: spec.ValueBytes, Clients: spec.Clients}
	doers := make([]Doer, spec.Clients)
	defer func() {
		for _, d := range doers {
			if d != nil {
				d.Close()
			}
		}
		if v.Release != nil {
			v.Release()
		}
	}()
	for i := range doers {
		d, err := v.Open(ctx, i, spec.Clients)
		if err != nil {
			return res, fmt.Errorf("%s %s: opening connection %d: %w", v.System, v.Name, i, err)
		}
		doers[i] = d
	}
	value := MakeValue(spec.ValueBytes, spec.Seed)
	wf := spec.Workload.writeFraction()
	start := time.Now()
	measureFrom := start.Add(spec.Warmup)
	measureTo := measureFrom.Add(spec.Duration)
	hists := make([]Hist, spec.Clients)
	var errs atomic.Uint64
	var firstErr atomic.Pointer[error]
	var pids []int
	if v.Pids != nil {
		pids = v.Pids()
	}
	cpuAt := make(chan cpuSnapshot, 2)
	sampled := make(chan struct{}) // closed after the last sample and Window call
	go func() {
		defer close(sampled)
		time.Sleep(time.Until(measureFrom))
		cpuAt <- takeCPU(pids)
		if v.Window != nil {
			v.Window(true)
		}
		time.Sleep(time.Until(measureTo))
		cpuAt <- takeCPU(pids)
		if v.Window != nil {
			v.Window(false)
		}
	}()
	var wg sync.WaitGroup
	for i, d := range doers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(spec.Seed, uint64(i)+1))
			h := &hists[i]
			for {
				t0 := time.Now()
				if t0.After(measureTo) || ctx.Err() != nil {
					return
				}
				key := Key(r.IntN(spec.Keys))
				octx, cancel := context.WithTimeout(ctx, spec.OpTimeout)
				var err error
				if wf == 1 || (wf > 0 && r.Float64() < wf) {
					err = d.Write(octx, key, value)
				} else {
					err = d.Read(octx, key)
				}
				cancel()
				t1 := time.Now()
				if t0.Before(measureFrom) || t1.After(measureTo) {
					continue
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					if errors.Is(err, context.Canceled) {
						return
					}
					continue
				}
				h.Record(t1.Sub(t0))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	c0, c1 := <-cpuAt, <-cpuAt
	<-sampled
	var all Hist
	for i := range hists {
		all.Merge(&hists[i])
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	res.Seconds = spec.Duration.Seconds()
	res.Ops = all.Count()
	res.Errors = errs.Load()
	if p := firstErr.Load(); p != nil {
		res.FirstError = (*p).Error()
	}
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	res.P50us, res.P99us, res.P999us = us(all.Quantile(0.5)), us(all.Quantile(0.99)), us(all.Quantile(0.999))
	res.MaxUs, res.MeanUs = us(all.Max()), us(all.Mean())
	if res.Ops > 0 {
		if c0.ok && c1.ok {
			res.ServerCPUus = us(c1.servers-c0.servers) / float64(res.Ops)
		}
		res.ClientCPUus = us(c1.self-c0.self) / float64(res.Ops)
	}
	return res, nil
}

// Preload writes keys 0..n-1 with values of size bytes through v, with
// conns connections in parallel. It retries a failed write up to 9 times
// and returns how many retries it made.
func Preload(ctx context.Context, v Variant, n, size, conns int, timeout time.Duration) (int, error) {
	var retries atomic.Int64
	err := preload(ctx, v, n, size, conns, timeout, &retries)
	return int(retries.Load()), err
}

func preload(ctx context.Context, v Variant, n, size, conns int, timeout time.Duration, retries *atomic.Int64) error {
	value := MakeValue(size, 99)
	if v.Release != nil {
		defer v.Release()
	}
	var next atomic.Int64
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			d, err := v.Open(ctx, i, conns)
			if err != nil {
				errc <- err
				return
			}
			defer d.Close()
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				// A write may fail transiently (a leader change answers
				// "outcome unknown"); a client retries it, and so does this.
				var err error
				for attempt := range 10 {
					if attempt > 0 {
						retries.Add(1)
						time.Sleep(50 * time.Millisecond)
					}
					octx, cancel := context.WithTimeout(ctx, timeout)
					err = d.Write(octx, Key(k), value)
					cancel()
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				if err != nil {
					errc <- fmt.Errorf("preloading %s (10 attempts): %w", Key(k), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}
