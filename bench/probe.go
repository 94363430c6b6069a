package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The failover probe: one client that issues a write every probeInterval
// through a system's own failover mechanism (its client library, or for
// Trireme any node), each write of a key and value of its own, and records
// which ones the system acknowledged and when. It is open loop: a write
// that hangs (a request held by a node that waits for a new leader, a
// connection to a dead server) does not hold back the next one, so the
// first acknowledgement after a kill is seen within probeInterval, whatever
// the client does with a request it cannot serve yet.

// probeWriter is one system's client for the probe. Write must be safe for
// concurrent use.
type probeWriter interface {
	// Write stores key=value and returns nil once the system acknowledged it.
	Write(ctx context.Context, key, value string) error
	Close()
}

// Probe timings, the same for every system.
const (
	probeInterval = 10 * time.Millisecond // between two writes issued
	probeTimeout  = 2 * time.Second       // per write
	// probeMaxInFlight bounds the writes outstanding at once (a write
	// timing out frees its slot); a tick that finds none free issues nothing.
	probeMaxInFlight = 400
)

// probeWrite is one write the probe issued.
type probeWrite struct {
	Key, Value string
	Issued     time.Time
	Done       time.Time // when it returned
	Acked      bool
}

// probe issues writes through w every interval until stopped.
type probe struct {
	w        probeWriter
	prefix   string // keys are prefix + sequence number
	interval time.Duration
	timeout  time.Duration

	mu       sync.Mutex
	writes   []probeWrite  // by sequence number; guarded by mu
	firstErr error         // guarded by mu
	acked    chan struct{} // gets a value (if free) on every acknowledgement

	stopc chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup // outstanding writes
}

// startProbe starts issuing writes of keys prefix000000, prefix000001, ...
func startProbe(ctx context.Context, w probeWriter, prefix string) *probe {
	p := &probe{w: w, prefix: prefix, interval: probeInterval, timeout: probeTimeout,
		acked: make(chan struct{}, 1), stopc: make(chan struct{}), done: make(chan struct{})}
	go p.run(ctx)
	return p
}

func (p *probe) run(ctx context.Context) {
	defer close(p.done)
	slots := make(chan struct{}, probeMaxInFlight)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for seq := 0; ; {
		select {
		case slots <- struct{}{}:
			p.issue(ctx, seq, slots)
			seq++
		default: // every slot taken: skip this tick
		}
		select {
		case <-p.stopc:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// issue sends write seq in a goroutine of its own, which frees a slot when
// it returns.
func (p *probe) issue(ctx context.Context, seq int, slots chan struct{}) {
	key := fmt.Sprintf("%s%06d", p.prefix, seq)
	// The value names the write, so a value from another write is told
	// apart; the rest pads it to about 100 bytes, like the other parts' values.
	value := fmt.Sprintf("%s:%s", key, MakeValue(100-len(key)-1, uint64(seq)+1))
	p.mu.Lock()
	p.writes = append(p.writes, probeWrite{Key: key, Value: value, Issued: time.Now()})
	p.mu.Unlock()
	p.wg.Go(func() {
		defer func() { <-slots }()
		wctx, cancel := context.WithTimeout(ctx, p.timeout)
		err := p.w.Write(wctx, key, value)
		cancel()
		now := time.Now()
		p.mu.Lock()
		p.writes[seq].Done, p.writes[seq].Acked = now, err == nil
		if err != nil && p.firstErr == nil {
			p.firstErr = err
		}
		p.mu.Unlock()
		if err == nil {
			select {
			case p.acked <- struct{}{}:
			default:
			}
		}
	})
}

// snapshot returns a copy of the writes issued so far.
func (p *probe) snapshot() []probeWrite {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.writes)
}

// waitAck waits until a write issued at or after since is acknowledged, and
// returns when it was; an error after limit.
func (p *probe) waitAck(ctx context.Context, since time.Time, limit time.Duration) (time.Time, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		if at, ok := firstAckSince(p.snapshot(), since); ok {
			return at, nil
		}
		select {
		case <-p.acked:
		case <-time.After(p.interval): // also look now and then
		case <-deadline.C:
			p.mu.Lock()
			err := p.firstErr
			p.mu.Unlock()
			return time.Time{}, fmt.Errorf("no write acknowledged within %v of the kill (first error: %v)", limit, err)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// stop stops issuing writes, waits for the outstanding ones to return (at
// most the write timeout) and returns every write issued.
func (p *probe) stop() []probeWrite {
	close(p.stopc)
	<-p.done
	p.wg.Wait()
	return p.snapshot()
}

// firstAckSince returns when the first write issued at or after since was
// acknowledged (the earliest such acknowledgement), if any was.
func firstAckSince(ws []probeWrite, since time.Time) (time.Time, bool) {
	var first time.Time
	for _, w := range ws {
		if w.Acked && !w.Issued.Before(since) && (first.IsZero() || w.Done.Before(first)) {
			first = w.Done
		}
	}
	return first, !first.IsZero()
}

// ackedWrites returns the acknowledged writes of ws.
func ackedWrites(ws []probeWrite) []probeWrite {
	var out []probeWrite
	for _, w := range ws {
		if w.Acked {
			out = append(out, w)
		}
	}
	return out
}

// missingWrites returns the keys of the acknowledged writes of ws that the
// system does not hold with the value written: found maps each key read
// back to its value (keys not found are absent).
func missingWrites(ws []probeWrite, found map[string]string) []string {
	var out []string
	for _, w := range ws {
		if !w.Acked {
			continue
		}
		if v, ok := found[w.Key]; !ok || v != w.Value {
			out = append(out, w.Key)
		}
	}
	return out
}

// keysOf returns the keys of ws.
func keysOf(ws []probeWrite) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Key
	}
	return out
}
