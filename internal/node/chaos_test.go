package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// TestChaosAcknowledgedWritesSurvive runs writers through random nodes with
// random ack modes while nodes (often the leader) are stopped and restarted
// with their data. Afterwards every majority- or sync-acknowledged write must
// be readable, and every acknowledged async write must be readable or in a
// rollback journal.
//
// The fault schedule comes from a seed (printed); the timing of a real
// cluster is not deterministic, so a seed replays the schedule, not the run.
// TRIREME_CHAOS_SEED=<seed> TRIREME_CHAOS_SECONDS=<s> go test -run TestChaos ./internal/node/
func TestChaosAcknowledgedWritesSurvive(t *testing.T) {
	t.Run("tcp-restarts", func(t *testing.T) { chaos(t, false) })
	t.Run("mem-partitions", func(t *testing.T) { chaos(t, true) })
}

// chaos runs the workload; mem adds partitions and one-way cuts on an
// in-memory network to the restarts.
func chaos(t *testing.T, mem bool) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("TRIREME_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	dur := 2 * time.Second
	if s := os.Getenv("TRIREME_CHAOS_SECONDS"); s != "" {
		n, _ := strconv.Atoi(s)
		dur = time.Duration(n) * time.Second
	}
	t.Logf("seed %d; replay the schedule: TRIREME_CHAOS_SEED=%d TRIREME_CHAOS_SECONDS=%d go test -run 'TestChaosAcknowledgedWritesSurvive/%s' ./internal/node/",
		seed, seed, int(dur/time.Second), t.Name()[len("TestChaosAcknowledgedWritesSurvive/"):])
	rng := rand.New(rand.NewSource(seed))
	c := newTestCluster(t, 3, mem)
	c.leader()

	type ack struct {
		key, value string
		mode       api.AckMode
	}
	var mu sync.Mutex // guards c.nodes reads by writers vs. restarts, and acked
	var acked []ack
	pick := func(r *rand.Rand) *Node {
		mu.Lock()
		defer mu.Unlock()
		for range 10 {
			if n := c.nodes[r.Intn(len(c.nodes))]; n != nil {
				return n
			}
		}
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	modes := []api.Ack{{Mode: api.AckMajority}, {Mode: api.AckSync}, {Mode: api.AckAsync}, {Mode: api.AckSemiSync, Replicas: 1}}
	for w := range 4 {
		wg.Add(1)
		r := rand.New(rand.NewSource(seed + int64(w) + 1))
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := pick(r)
				if n == nil {
					continue
				}
				a := modes[r.Intn(len(modes))]
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprint(r.Int63())
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := n.Put(ctx, []byte(k), []byte(v), api.WriteOptions{Ack: a, Timeout: time.Second})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, ack{k, v, a.Mode})
					mu.Unlock()
				} else if !errors.Is(err, api.ErrNoLeader) && !errors.Is(err, api.ErrOutcomeUnknown) &&
					!errors.Is(err, api.ErrWriteTimeout) && !errors.Is(err, api.ErrStopped) &&
					!errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("write %s (%s) on %s: unexpected error %v", k, a.Mode, n.cfg.ID, err)
				}
			}
		}()
	}

	deadline := time.Now().Add(dur)
	faults := 0
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(200+rng.Intn(400)) * time.Millisecond)
		victim := rng.Intn(len(c.nodes))
		if rng.Intn(2) == 0 {
			for i, n := range c.nodes {
				if n != nil && n.Status().Role == "leader" {
					victim = i
				}
			}
		}
		faults++
		id := repl.NodeID(c.cfgs[victim].ID)
		if mem && rng.Intn(3) > 0 {
			if rng.Intn(2) == 0 {
				c.net.Isolate(transport.NodeID(id))
			} else {
				other := repl.NodeID(c.cfgs[(victim+1+rng.Intn(len(c.cfgs)-1))%len(c.cfgs)].ID)
				c.net.Cut(transport.NodeID(id), transport.NodeID(other))
			}
			time.Sleep(time.Duration(100+rng.Intn(600)) * time.Millisecond)
			c.net.Heal()
			continue
		}
		mu.Lock()
		n := c.nodes[victim]
		c.nodes[victim] = nil
		mu.Unlock()
		t0 := time.Now()
		if err := n.Stop(); err != nil {
			t.Fatalf("stop %s: %v", n.cfg.ID, err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Logf("stopping %s took %v", n.cfg.ID, d)
		}
		time.Sleep(time.Duration(100+rng.Intn(400)) * time.Millisecond)
		mu.Lock()
		c.start(victim)
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	t.Logf("faults done after %v", time.Since(deadline.Add(-dur)))

	li := c.leader()
	var lost []ack
	for _, a := range acked {
		got, err := c.nodes[li].Get(ctxT(t), []byte(a.key), api.Linearizable)
		if err != nil {
			t.Fatalf("final read of %s: %v", a.key, err)
		}
		if got.Found && string(got.Value) == a.value {
			continue
		}
		if a.mode == api.AckMajority || a.mode == api.AckSync {
			t.Errorf("%s-acknowledged write %s=%s lost (read %+v)", a.mode, a.key, a.value, got)
		} else {
			lost = append(lost, a)
		}
	}
	journaled := map[string]bool{}
	for _, n := range c.nodes {
		rb, err := n.Rollbacks()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rb {
			journaled[r.Key+"="+r.Value] = true
		}
	}
	for _, a := range lost {
		if !journaled[a.key+"="+a.value] {
			t.Errorf("%s-acknowledged write %s=%s is neither readable nor in a rollback journal", a.mode, a.key, a.value)
		}
	}
	t.Logf("%d acknowledged writes, %d faults, %d async/semi-sync writes rolled back (journaled)", len(acked), faults, len(lost))
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
}
