package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The write load that runs on the leader while a node catches up (the
// replica and snapshot parts): a fixed rate rather than a saturating closed
// loop, so that it leaves the catch-up the CPU a production cluster would,
// and so that the two phases compare like for like. Each worker paces its
// own writes (rate / workers per second) and, if a write takes longer than
// its slot, starts the next one at once without making up the missed slots;
// latency is timed from each write's actual start (so a stall shows in the
// rate reached and in the latency of the writes that waited, not in writes
// that were never sent).
const (
	bgWorkers    = 8
	bgRate       = 1000 // writes per second, all workers together
	bgValueBytes = 1024
	bgKeys       = 1000 // per worker, overwritten in turn
)

// PhaseWrites is what the background write load measured in one phase.
type PhaseWrites struct {
	Phase        string  `json:"phase"`
	Seconds      float64 `json:"seconds"`
	Writes       uint64  `json:"writes"`
	Errors       uint64  `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	WritesPerSec float64 `json:"writes_per_sec"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	P999us       float64 `json:"p999_us"`
	MaxUs        float64 `json:"max_us"`
}

// bgWrites is a paced write load through v, split into named phases: a
// write counts in the phase in which it started.
type bgWrites struct {
	names []string
	phase atomic.Int32 // index into names; -1 before the first
	at    []time.Time  // when each phase began
	hists [][]Hist     // [phase][worker]
	errs  []atomic.Uint64
	first []atomic.Pointer[error]

	cancel context.CancelFunc
	wg     sync.WaitGroup
	end    time.Time
}

// startBackgroundWrites opens bgWorkers connections through v and starts
// writing; phases are named by names and begin with nextPhase.
func startBackgroundWrites(ctx context.Context, v Variant, names []string) (*bgWrites, error) {
	b := &bgWrites{names: names, at: make([]time.Time, len(names)), hists: make([][]Hist, len(names)),
		errs: make([]atomic.Uint64, len(names)), first: make([]atomic.Pointer[error], len(names))}
	b.phase.Store(-1)
	for i := range b.hists {
		b.hists[i] = make([]Hist, bgWorkers)
	}
	doers := make([]Doer, bgWorkers)
	for i := range doers {
		d, err := v.Open(ctx, i, bgWorkers)
		if err != nil {
			for _, d := range doers[:i] {
				d.Close()
			}
			return nil, fmt.Errorf("background writes: connection %d: %w", i, err)
		}
		doers[i] = d
	}
	ctx, b.cancel = context.WithCancel(ctx)
	value := MakeValue(bgValueBytes, 11)
	slot := time.Duration(float64(time.Second) * bgWorkers / bgRate)
	for w, d := range doers {
		b.wg.Go(func() {
			defer d.Close()
			next := time.Now().Add(time.Duration(w) * slot / bgWorkers) // stagger the workers
			for n := 0; ctx.Err() == nil; n++ {
				if wait := time.Until(next); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				t0 := time.Now()
				if next = next.Add(slot); next.Before(t0) {
					next = t0 // behind: no catching up on missed slots
				}
				p := int(b.phase.Load())
				octx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := d.Write(octx, fmt.Sprintf("bg-%d-%04d", w, n%bgKeys), value)
				cancel()
				if p < 0 || (err != nil && ctx.Err() != nil) {
					continue
				}
				if err != nil {
					b.errs[p].Add(1)
					b.first[p].CompareAndSwap(nil, &err)
					continue
				}
				b.hists[p][w].Record(time.Since(t0))
			}
		})
	}
	return b, nil
}

// nextPhase starts the next phase (the first one on the first call).
func (b *bgWrites) nextPhase() {
	p := int(b.phase.Load()) + 1
	if p >= len(b.names) {
		panic(fmt.Sprintf("bench: background writes: phase %d of %d", p+1, len(b.names)))
	}
	b.at[p] = time.Now()
	b.phase.Store(int32(p))
}

// stop ends the load and returns each phase's figures.
func (b *bgWrites) stop() []PhaseWrites {
	b.end = time.Now()
	b.cancel()
	b.wg.Wait()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	var out []PhaseWrites
	for p, name := range b.names {
		if b.at[p].IsZero() {
			continue
		}
		to := b.end
		if p+1 < len(b.names) && !b.at[p+1].IsZero() {
			to = b.at[p+1]
		}
		var all Hist
		for i := range b.hists[p] {
			all.Merge(&b.hists[p][i])
		}
		r := PhaseWrites{Phase: name, Seconds: to.Sub(b.at[p]).Seconds(), Writes: all.Count(), Errors: b.errs[p].Load()}
		if e := b.first[p].Load(); e != nil {
			r.FirstError = (*e).Error()
		}
		if r.Seconds > 0 {
			r.WritesPerSec = float64(r.Writes) / r.Seconds
		}
		if r.Writes > 0 {
			r.P50us, r.P99us, r.P999us, r.MaxUs = us(all.Quantile(0.5)), us(all.Quantile(0.99)), us(all.Quantile(0.999)), us(all.Max())
		}
		out = append(out, r)
	}
	return out
}
