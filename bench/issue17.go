package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// The parts of issue 17 (sessions, exactly-once and read-modify-write):
// sessions, idempotency and rmw. Each starts a fresh cluster of its own
// (rmw a Redis too), runs only when named with -parts, and measures its
// sides in interleaved rounds at targetClients connections: every side of
// a group once per round, back to back, in order in odd rounds and in the
// reverse order in even ones (as the target rounds do), so that no side
// always meets the machine right after the same other side. A group is
// judged on the median of its per-round ratios.

// issue17Rounds is how many interleaved rounds the parts of issue 17 run:
// the profile's TargetRounds (-rounds), at least 1.
func issue17Rounds(p Profile) int { return max(1, p.TargetRounds) }

// issue17Parts runs the selected parts of issue 17 after the others, each
// with a data directory of its own. step runs one part and records its
// error.
func (r *runner) issue17Parts(ctx context.Context, step func(name string, f func() error)) {
	cfg, p := r.cfg, r.cfg.Profile
	insecure := cfg.peerTLS() == "off"
	part := func(name, dirName string, f func(dir string) error) {
		if !cfg.has(cfg.Parts, name) {
			return
		}
		dir := filepath.Join(cfg.WorkDir, dirName)
		step(name, func() error {
			r.say("%s: load average %s", name, loadAverage())
			err := f(dir)
			r.say("%s: load average %s", name, loadAverage())
			if !cfg.Keep {
				os.RemoveAll(dir)
			}
			return err
		})
	}
	size := p.ValueSizes[0]
	part("sessions", "trireme-sessions", func(dir string) error {
		x, err := TriremeSessions(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, insecure, p, size, cfg.Seed, r.progress)
		if len(x.Runs) > 0 {
			r.res.Sessions = &x
		}
		return err
	})
	part("idempotency", "trireme-idempotency", func(dir string) error {
		x, err := TriremeIdempotency(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, insecure, p, size, cfg.Seed, r.progress)
		if len(x.Runs) > 0 {
			r.res.Idempotency = &x
		}
		return err
	})
	part("rmw", "rmw", func(dir string) error {
		withRedis := cfg.has(cfg.Systems, "redis")
		x, err := RMW(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, insecure, withRedis, p, size, cfg.Seed, r.progress)
		if len(x.Runs) > 0 {
			r.res.RMW = &x
		}
		return err
	})
}

// roundOrder is the order in which n sides run in round (from 1): 0..n-1
// in odd rounds, n-1..0 in even ones.
func roundOrder(n, round int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	if round%2 == 0 {
		slices.Reverse(out)
	}
	return out
}

// sideName is how a run is named in a comparison: "system variant".
func sideName(lr LoadResult) string { return lr.System + " " + lr.Variant }

// SideSummary is the medians of one side's rounds.
type SideSummary struct {
	Side        string  `json:"side"` // "system variant"
	Rounds      int     `json:"rounds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	MinOps      float64 `json:"min_ops_per_sec"`
	MaxOps      float64 `json:"max_ops_per_sec"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
	ServerCPUus float64 `json:"server_cpu_us_per_op"`
	ClientCPUus float64 `json:"client_cpu_us_per_op"`
	Errors      uint64  `json:"errors"` // over every round
}

// Versus is the base side of a comparison against one other side, round
// by round.
type Versus struct {
	Other string `json:"other"`
	// Ratios are the base's ops/s over the other's, in the rounds both
	// ran, in round order.
	Ratios []float64 `json:"ratios"`
	// Median is the median of Ratios; P99Ratio is the base's median p99
	// over the other's (above 1: the base's tail is longer).
	Median   float64 `json:"median_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
}

// Comparison is a group of sides measured in interleaved rounds, each
// compared with the first (the base).
type Comparison struct {
	Name   string        `json:"name"`
	Sides  []SideSummary `json:"sides"`
	Versus []Versus      `json:"versus"`
}

// compare summarizes the runs of the sides named sides (sideName), the
// first being the base: each side's medians over its rounds, and the base
// over every other side, paired by round. Runs of other sides are ignored.
func compare(name string, runs []LoadResult, sides []string) Comparison {
	c := Comparison{Name: name}
	byRound := make([]map[int]LoadResult, len(sides))
	for i, s := range sides {
		byRound[i] = map[int]LoadResult{}
		var ops, p50, p99, p999, scpu, ccpu []float64
		var errs uint64
		for _, r := range runs {
			if sideName(r) != s {
				continue
			}
			byRound[i][r.Round] = r
			ops, p50, p99, p999 = append(ops, r.OpsPerSec), append(p50, r.P50us), append(p99, r.P99us), append(p999, r.P999us)
			scpu, ccpu = append(scpu, r.ServerCPUus), append(ccpu, r.ClientCPUus)
			errs += r.Errors
		}
		ss := SideSummary{Side: s, Rounds: len(ops), Errors: errs}
		if len(ops) > 0 {
			ss.OpsPerSec, ss.MinOps, ss.MaxOps = median(ops), slices.Min(ops), slices.Max(ops)
			ss.P50us, ss.P99us, ss.P999us = median(p50), median(p99), median(p999)
			ss.ServerCPUus, ss.ClientCPUus = median(scpu), median(ccpu)
		}
		c.Sides = append(c.Sides, ss)
	}
	if len(sides) == 0 {
		return c
	}
	var rounds []int
	for round := range byRound[0] {
		rounds = append(rounds, round)
	}
	slices.Sort(rounds)
	for i := 1; i < len(sides); i++ {
		v := Versus{Other: sides[i]}
		for _, round := range rounds {
			a, b := byRound[0][round], byRound[i][round]
			if _, ok := byRound[i][round]; ok && b.OpsPerSec > 0 {
				v.Ratios = append(v.Ratios, ratio(a.OpsPerSec, b.OpsPerSec))
			}
		}
		if len(v.Ratios) == 0 {
			continue
		}
		v.Median = median(v.Ratios)
		v.P99Ratio = ratio(c.Sides[0].P99us, c.Sides[i].P99us)
		c.Versus = append(c.Versus, v)
	}
	return c
}

// runSide runs one side of a round and prints its figures.
func runSide(ctx context.Context, v Variant, spec LoadSpec, round, rounds int, part string, progress func(string)) (LoadResult, error) {
	lr, err := RunLoad(ctx, v, spec)
	if err != nil {
		return lr, err
	}
	lr.Round = round
	progress(fmt.Sprintf("%s: round %d/%d: %-34s %8.0f ops/s  p50 %6.2f ms  p99 %6.2f ms  cpu/op %4.0f+%3.0f µs  %s",
		part, round, rounds, sideName(lr), lr.OpsPerSec, lr.P50us/1000, lr.P99us/1000, lr.ServerCPUus, lr.ClientCPUus, errorsNote(lr)))
	return lr, nil
}
