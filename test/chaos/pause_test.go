package chaos

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/chaos"
)

// TestPausedLeaderServesNoStaleRead pauses the leader (SIGSTOP) until the
// others elect a new one and acknowledge a majority write, sends linearizable
// reads to the old leader while it is still stopped (so they begin after the
// write was acknowledged), then resumes it (SIGCONT). Every read must see the
// new value or fail: a leader whose clock stood still must not trust a lease
// that expired in real time.
func TestPausedLeaderServesNoStaleRead(t *testing.T) {
	dir, err := os.MkdirTemp(*flagDir, "trireme-chaos-pause-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	c, err := chaos.NewCluster(chaos.ClusterConfig{Binary: binary, Dir: dir, Nodes: 3, ClusterID: "pause-test",
		NodeArgs: []string{"--write-timeout", "1500ms"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addrs := map[string]string{}
	for _, id := range c.IDs {
		addrs[id] = c.Addrs[id].HTTP
	}
	const trials = 6
	stale := 0
	for trial := range trials {
		hctx, hcancel := context.WithTimeout(ctx, 20*time.Second)
		old, err := c.Healthy(hctx)
		hcancel()
		if err != nil {
			t.Fatalf("trial %d: %v (logs in %s)", trial, err, dir)
		}
		hc := chaos.NewHTTPClient(addrs)
		key := fmt.Sprintf("k%d", trial)
		if r := hc.Put(ctx, old, key, "old", "majority"); r.Outcome != chaos.OK {
			t.Fatalf("trial %d: first write: %+v", trial, r)
		}
		// Warm connections to the old leader, so the reads are sent at once.
		readers := make([]*chaos.HTTPClient, 4)
		for i := range readers {
			readers[i] = chaos.NewHTTPClient(addrs)
			readers[i].Get(ctx, old, key, "linearizable")
		}
		if err := c.Procs.Pause(old); err != nil {
			t.Fatal(err)
		}
		var newLeader string
		deadline := time.Now().Add(15 * time.Second)
		for newLeader == "" && time.Now().Before(deadline) {
			for _, id := range c.IDs {
				if id == old {
					continue
				}
				if st, err := c.Status(ctx, id); err == nil && st.Role == "leader" {
					newLeader = id
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if newLeader == "" {
			t.Fatalf("trial %d: no new leader while %s was paused", trial, old)
		}
		var w chaos.Result
		for time.Now().Before(deadline) {
			if w = hc.Put(ctx, newLeader, key, "new", "majority"); w.Outcome == chaos.OK {
				break
			}
		}
		if w.Outcome != chaos.OK {
			t.Fatalf("trial %d: second write: %+v", trial, w)
		}
		// The write is acknowledged: reads sent from now on must see it.
		var wg sync.WaitGroup
		results := make([]chaos.Result, len(readers))
		for i, rc := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				defer rcancel()
				results[i] = rc.Get(rctx, old, key, "linearizable")
			}()
		}
		time.Sleep(50 * time.Millisecond) // the requests are in the stopped node's socket buffers
		if err := c.Procs.Resume(old); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, r := range results {
			if r.Outcome == chaos.OK && (!r.Found || r.Value != "new") {
				stale++
				t.Errorf("trial %d: read %d at the resumed old leader %s returned %q (found %v) after %q was acknowledged by %s",
					trial, i, old, r.Value, r.Found, "new", newLeader)
			}
		}
		for _, rc := range readers {
			rc.Close()
		}
		hc.Close()
	}
	if stale > 0 {
		t.Logf("%d stale reads in %d trials", stale, trials)
	}
}
