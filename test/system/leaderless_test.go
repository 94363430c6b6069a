package system

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/cluster"
)

// llCluster starts a 5-node leaderless cluster, each key on 3 nodes.
func llCluster(t *testing.T) *tc {
	t.Helper()
	return mustStartWith(t, func(c *cluster.Config) {
		spec, err := cluster.FreeSpec(5)
		if err != nil {
			t.Fatal(err)
		}
		spec.Mode, spec.ReplicationFactor = "leaderless", 3
		c.Spec = spec
		c.NodeArgs = []string{"--log-level", "debug", "--tombstone-grace", "6s"}
	})
}

type llRead struct {
	Value    string `json:"value"`
	Context  string `json:"context"`
	Replicas int    `json:"replicas"`
	Siblings []struct {
		Value string `json:"value"`
	} `json:"siblings"`
}

type llStatus struct {
	Mode       string `json:"mode"`
	Leaderless struct {
		ReplicationFactor int            `json:"replication_factor"`
		HintsPending      map[string]int `json:"hints_pending"`
		Down              []string       `json:"down"`
	} `json:"leaderless"`
}

func llStatusOf(t *testing.T, addr string) llStatus {
	t.Helper()
	code, _, body := do(t, "GET", "http://"+addr+"/v1/status", "", nil)
	var s llStatus
	if code != 200 {
		t.Fatalf("status of %s: %d %s", addr, code, body)
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("status of %s: %v: %s", addr, err, body)
	}
	return s
}

func TestLeaderlessQuorumsHintsAndRESP(t *testing.T) {
	x := llCluster(t)
	nodes := x.c.Spec().Nodes
	for _, n := range nodes {
		if err := x.c.WaitReady(x.ctx(20*time.Second), n.ID); err != nil {
			t.Fatal(err)
		}
	}
	// A node counts a peer down until it hears from it.
	waitFor(t, "every node hears from every other", func() bool {
		for _, n := range nodes {
			if len(llStatusOf(t, n.HTTP).Leaderless.Down) > 0 {
				return false
			}
		}
		return true
	})
	if s := llStatusOf(t, nodes[0].HTTP); s.Mode != "leaderless" || s.Leaderless.ReplicationFactor != 3 {
		t.Fatalf("status: %+v, want mode leaderless with N=3", s)
	}

	// A write acknowledged by every replica is read back through every node.
	code, hdr, body := do(t, "PUT", "http://"+nodes[0].HTTP+"/v1/kv/greeting?w=all", "hello", nil)
	if code != 200 || hdr.Get("X-Trireme-Replicas") != "3" {
		t.Fatalf("PUT w=all: %d %q %s", code, hdr.Get("X-Trireme-Replicas"), body)
	}
	for _, n := range nodes {
		code, _, body := do(t, "GET", "http://"+n.HTTP+"/v1/kv/greeting?r=2", "", nil)
		var r llRead
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Value != "hello" || r.Replicas < 2 {
			t.Fatalf("GET r=2 via %s: %d %s", n.ID, code, body)
		}
	}
	// Impossible quorums and unknown words are refused with a clear error.
	for _, q := range []string{"w=0", "w=4", "w=most"} {
		code, _, body := do(t, "PUT", "http://"+nodes[1].HTTP+"/v1/kv/greeting?"+q, "x", nil)
		if code != 400 {
			t.Errorf("PUT %s: %d %s, want 400", q, code, body)
		}
	}
	if code, _, body := do(t, "GET", "http://"+nodes[1].HTTP+"/v1/kv/greeting?r=9", "", nil); code != 400 {
		t.Errorf("GET r=9: %d %s, want 400", code, body)
	}

	// One node down: with the sloppy quorum, w=all still finds 3 nodes
	// for every key (a stand-in keeps a hint), and the node gets its
	// copies back by handoff once it returns.
	down := nodes[4]
	if err := x.c.Stop(down.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, nodes[0].ID+" sees "+down.ID+" down", func() bool {
		for _, id := range llStatusOf(t, nodes[0].HTTP).Leaderless.Down {
			if id == down.ID {
				return true
			}
		}
		return false
	})
	const keys = 40
	for i := range keys {
		code, hdr, body := do(t, "PUT", "http://"+nodes[0].HTTP+"/v1/kv/h"+strconv.Itoa(i)+"?w=all", "v"+strconv.Itoa(i), nil)
		if code != 200 || hdr.Get("X-Trireme-Replicas") != "3" {
			t.Fatalf("PUT h%d w=all with %s down: %d %s", i, down.ID, code, body)
		}
	}
	hints := 0
	for _, n := range nodes[:4] {
		hints += llStatusOf(t, n.HTTP).Leaderless.HintsPending[down.ID]
	}
	if hints == 0 {
		t.Fatalf("no hints for %s after %d writes with it down", down.ID, keys)
	}
	t.Logf("%d hints for %s", hints, down.ID)
	if err := x.c.Start(down.ID); err != nil {
		t.Fatal(err)
	}
	if err := x.c.WaitReady(x.ctx(20*time.Second), down.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every hint handed over", func() bool {
		for _, n := range nodes[:4] {
			if llStatusOf(t, n.HTTP).Leaderless.HintsPending[down.ID] > 0 {
				return false
			}
		}
		return true
	})
	// What the returned node holds itself now equals what a quorum read
	// returns, for every key it is a home replica of (the others: 404).
	held := 0
	for i := range keys {
		code, _, body := do(t, "GET", "http://"+down.HTTP+"/v1/kv/h"+strconv.Itoa(i)+"?consistency=local", "", nil)
		var r llRead
		switch {
		case code == 200 && json.Unmarshal([]byte(body), &r) == nil && r.Value == "v"+strconv.Itoa(i):
			held++
		case code == 404:
		default:
			t.Fatalf("local read of h%d on %s: %d %s", i, down.ID, code, body)
		}
	}
	if held == 0 {
		t.Fatalf("%s holds none of the %d keys after handoff", down.ID, keys)
	}

	// RESP: TRIREME.W and TRIREME.R set the connection's quorums.
	ctx := x.ctx(10 * time.Second)
	rc := redis.NewClient(&redis.Options{Addr: nodes[2].RESP})
	defer rc.Close()
	if err := rc.Do(ctx, "TRIREME.W", "all").Err(); err != nil {
		t.Fatalf("TRIREME.W all: %v", err)
	}
	if err := rc.Do(ctx, "TRIREME.R", "one").Err(); err != nil {
		t.Fatalf("TRIREME.R one: %v", err)
	}
	if err := rc.Do(ctx, "TRIREME.W", "7").Err(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "quorum") {
		t.Fatalf("TRIREME.W 7 with N=3: %v, want an error about the quorum", err)
	}
	for i := range 10 {
		k := fmt.Sprintf("r%d", i)
		if err := rc.Set(ctx, k, "x"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := rc.Get(ctx, k).Result(); err != nil || v != "x"+k {
			t.Fatalf("GET %s: %q, %v", k, v, err)
		}
	}
	// Deleted keys stay deleted.
	if err := rc.Del(ctx, "r0").Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if code, _, body := do(t, "GET", "http://"+n.HTTP+"/v1/kv/r0?r=all", "", nil); code != 404 {
			t.Fatalf("GET r0 r=all via %s after DEL: %d %s", n.ID, code, body)
		}
	}
}
