package chaos

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/chaos"
)

// TestIsolatedLeaderAsyncWritesJournaled cuts the leader off (both ways) and
// keeps writing to it with ack=async until it steps down, while the others
// elect a new leader and take majority writes; then heals. Every async write
// the old leader acknowledged must be either in the final state or in its
// rollback journal, no majority write may be lost, and all nodes converge.
func TestIsolatedLeaderAsyncWritesJournaled(t *testing.T) {
	dir, err := os.MkdirTemp(*flagDir, "trireme-chaos-isolate-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("data and logs kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	c, err := chaos.NewCluster(chaos.ClusterConfig{Binary: binary, Dir: dir, Nodes: 3, ClusterID: "isolate-test",
		NodeArgs: []string{"--write-timeout", "1500ms"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addrs := map[string]string{}
	for _, id := range c.IDs {
		addrs[id] = c.Addrs[id].HTTP
	}
	hc := chaos.NewHTTPClient(addrs)
	defer hc.Close()
	h := chaos.NewHistory()
	put := func(node, key, val, ack string) chaos.Result {
		id := h.Invoke(chaos.Op{Kind: chaos.KindPut, Proto: "http", Node: node, Key: key, Value: val, Ack: ack})
		octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
		defer ocancel()
		r := hc.Put(octx, node, key, val, ack)
		h.Complete(id, r)
		return r
	}

	const rounds = 3
	var keys []string
	for round := range rounds {
		hctx, hcancel := context.WithTimeout(ctx, 20*time.Second)
		old, err := c.Healthy(hctx)
		hcancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var rest []string
		for _, id := range c.IDs {
			if id != old {
				rest = append(rest, id)
			}
		}
		c.Net.Partition([]string{old}, rest)
		// Write to the isolated leader until it refuses (it stepped down).
		acked := 0
		deadline := time.Now().Add(3 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			key := fmt.Sprintf("s-async-%d-%d", round, i)
			keys = append(keys, key)
			r := put(old, key, "v-"+key, "async")
			if r.Outcome == chaos.OK {
				acked++
			} else if r.Outcome == chaos.Failed {
				break
			}
		}
		// The majority side elects and writes.
		for i := 0; i < 20; i++ {
			key := fmt.Sprintf("s-majority-%d-%d", round, i)
			keys = append(keys, key)
			put(rest[i%len(rest)], key, "v-"+key, "majority")
		}
		c.Net.Heal()
		t.Logf("round %d: isolated leader %s acknowledged %d async writes", round, old, acked)
	}

	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := c.Healthy(hctx)
	hcancel()
	if err != nil {
		t.Fatal(err)
	}
	// Barrier, then wait for every node to apply the same index.
	if r := put(leader, "chaos-barrier", "b", "majority"); r.Outcome != chaos.OK {
		t.Fatalf("barrier: %+v", r)
	}
	var final map[string]map[string]chaos.FinalRead
	for deadline := time.Now().Add(30 * time.Second); ; {
		sts := c.Statuses(ctx)
		same := len(sts) == len(c.IDs)
		for _, st := range sts {
			same = same && st.AppliedIndex == sts[leader].AppliedIndex
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge: %+v", sts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	final = map[string]map[string]chaos.FinalRead{}
	for _, id := range c.IDs {
		m := map[string]chaos.FinalRead{}
		for _, k := range keys {
			octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
			r := hc.Get(octx, id, k, "stale")
			ocancel()
			if r.Outcome != chaos.OK {
				t.Fatalf("final read of %s on %s: %+v", k, id, r)
			}
			m[k] = chaos.FinalRead{Found: r.Found, Value: r.Value}
		}
		final[id] = m
	}
	var rbs []chaos.Rollback
	for _, id := range c.IDs {
		rb, err := c.Rollbacks(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rbs = append(rbs, rb...)
	}
	ops := h.Ops()
	anomalies := chaos.CheckConverged(final)
	an, st := chaos.CheckSet(ops, final[leader], rbs, len(c.IDs))
	anomalies = append(anomalies, an...)
	anomalies = append(anomalies, chaos.CheckRollbacks(ops, final[leader], rbs, len(c.IDs))...)
	t.Logf("acknowledged %v, missing %v, journaled %v; %d rollback entries", st.Acked, st.Lost, st.Journaled, len(rbs))
	for _, a := range anomalies {
		t.Errorf("%s", a)
	}
	if len(anomalies) > 0 {
		if err := h.WriteJSON(dir + "/history.json"); err != nil {
			t.Log(err)
		}
	}
}
