package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// A lone writer never waits for the batch in flight, even in async mode
// where it is answered before its entry commits.
func TestLoneWriterNeverLingers(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	for _, mode := range []api.AckMode{api.AckAsync, api.AckMajority} {
		for i := range 40 {
			mustPut(t, c.nodes[li], fmt.Sprintf("lone-%v-%d", mode, i), "v", api.Ack{Mode: mode})
		}
	}
	if got := counterValue(t, c.nodes[li].m.lingers); got != 0 {
		t.Fatalf("a lone writer lingered %v times, want 0", got)
	}
}

// Concurrent writers linger, and every write is answered.
func TestConcurrentWritersLinger(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	lead := c.nodes[li]
	const writers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mode := []api.AckMode{api.AckAsync, api.AckMajority, api.AckSync}[(w+i)%3]
				res, err := lead.Put(ctxT(t), []byte(fmt.Sprintf("w%d-%d", w, i)), []byte("v"), api.WriteOptions{Ack: api.Ack{Mode: mode}})
				if err != nil {
					errs <- fmt.Errorf("writer %d put %d (%v): %w (%+v)", w, i, mode, err, res)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := counterValue(t, lead.m.lingers); got == 0 {
		t.Fatalf("%d concurrent writers never lingered", writers)
	}
	batches, entries := counterValue(t, lead.m.readyBatches), counterValue(t, lead.m.readyEntries)
	t.Logf("leader: %v entries in %v Ready batches, %v lingers", entries, batches, counterValue(t, lead.m.lingers))
	for i := range c.nodes {
		c.waitStale(i, fmt.Sprintf("w%d-%d", writers-1, each-1), "v")
	}
}

// When the followers stop answering, lingering writes are released by the
// timer (async writes need only the leader) instead of waiting for a commit
// that never comes.
func TestLingerEndsWhenCommitStalls(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	lead := c.nodes[li]
	// Warm up so that batches are large enough to linger.
	var wg sync.WaitGroup
	const writers = 16
	start := make(chan struct{})
	cut := make(chan struct{})
	errs := make(chan error, writers)
	var okAfterCut atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; ; i++ {
				select {
				case <-cut:
					// Keep writing for a while after the cut, async:
					// the leader alone makes them durable.
					for j := range 20 {
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						res, err := lead.Put(ctx, []byte(fmt.Sprintf("cut%d-%d", w, j)), []byte("v"), api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}})
						cancel()
						if deposed(err) {
							return // check-quorum deposed the leader: a clear refusal
						}
						if err != nil {
							errs <- fmt.Errorf("writer %d async put %d after the cut: %w (%+v)", w, j, err, res)
							return
						}
						okAfterCut.Add(1)
					}
					return
				default:
				}
				_, err := lead.Put(ctxT(t), []byte(fmt.Sprintf("pre%d-%d", w, i)), []byte("v"), api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}})
				if deposed(err) {
					return // the cut came while this write was on its way
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d put %d before the cut: %w", w, i, err)
					return
				}
			}
		}()
	}
	close(start)
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, lead.m.lingers) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("writers never lingered")
		}
		time.Sleep(time.Millisecond)
	}
	for i := range c.nodes {
		if i != li {
			c.net.Isolate(transport.NodeID(c.cfgs[i].ID))
		}
	}
	close(cut)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Until check-quorum deposes it, the leader alone acknowledges async
	// writes: lingering must not hold them until then.
	if okAfterCut.Load() == 0 {
		t.Fatal("no async write succeeded between the cut and the leader's step-down")
	}
	t.Logf("%d async writes acknowledged after the cut", okAfterCut.Load())
}

// deposed reports whether err says the node is (no longer) the leader.
func deposed(err error) bool {
	return errors.Is(err, api.ErrNotLeader) || errors.Is(err, repl.ErrNotLeader) || errors.Is(err, api.ErrNoLeader)
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
