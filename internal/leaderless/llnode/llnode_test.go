package llnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/ring"
	"github.com/trireme-db/trireme/internal/transport"
)

// tcluster is n in-process leaderless nodes over an in-memory network.
type tcluster struct {
	t     testing.TB
	net   *transport.Network
	dir   string
	ids   []string
	nodes map[string]*Node
	cfg   func(*Config)
	ring  *ring.Ring
}

func newCluster(t testing.TB, n int, tweak func(*Config)) *tcluster {
	t.Helper()
	tc := &tcluster{t: t, net: transport.NewNetwork(), dir: t.TempDir(), nodes: map[string]*Node{}, cfg: tweak}
	for i := 1; i <= n; i++ {
		tc.ids = append(tc.ids, fmt.Sprintf("n%d", i))
	}
	r, err := ring.New(tc.ids, leaderless.DefaultVNodes)
	if err != nil {
		t.Fatal(err)
	}
	tc.ring = r
	for _, id := range tc.ids {
		tc.start(id)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			nd.Stop()
		}
	})
	// A node counts a peer down until it hears from it.
	eventually(t, "every node hears from every other", func() bool {
		for _, nd := range tc.nodes {
			if len(nd.Status().Leaderless.Down) > 0 {
				return false
			}
		}
		return true
	})
	return tc
}

func (tc *tcluster) start(id string) {
	tc.t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.ClusterID = id, filepath.Join(tc.dir, id), "test-cluster"
	for _, m := range tc.ids {
		cfg.Cluster = append(cfg.Cluster, Member{ID: m, PeerAddr: "127.0.0.1:1"})
	}
	cfg.Tick = 2 * time.Millisecond
	cfg.PeerDown = 300 * time.Millisecond // above the fsync stalls of a loaded machine
	cfg.AntiEntropyInterval = 20 * time.Millisecond
	cfg.RequestTimeout = 500 * time.Millisecond
	cfg.TombstoneGrace = 600 * time.Millisecond
	cfg.Transport = tc.net.Endpoint(transport.PeerInfo{ID: transport.NodeID(id)}, 4096)
	if tc.cfg != nil {
		tc.cfg(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		tc.t.Fatalf("start %s: %v", id, err)
	}
	tc.nodes[id] = n
}

func (tc *tcluster) stop(id string) {
	tc.t.Helper()
	if err := tc.nodes[id].Stop(); err != nil {
		tc.t.Fatalf("stop %s: %v", id, err)
	}
	delete(tc.nodes, id)
}

func ctx5(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// homes returns key's home replicas.
func (tc *tcluster) homes(key string) []string { return tc.ring.Replicas([]byte(key), 3) }

// notHome returns a node that is not a home replica of key.
func (tc *tcluster) notHome(key string) string {
	for _, id := range tc.ids {
		if !slices.Contains(tc.homes(key), id) {
			return id
		}
	}
	tc.t.Fatalf("every node is a home of %q", key)
	return ""
}

func (tc *tcluster) local(id, key string) api.ReadResult {
	tc.t.Helper()
	r, err := tc.nodes[id].Read(ctx5(tc.t), []byte(key), api.ReadOptions{Consistency: api.Local})
	if err != nil {
		tc.t.Fatalf("local read of %s at %s: %v", key, id, err)
	}
	return r
}

func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQuorumWriteAndRead(t *testing.T) {
	tc := newCluster(t, 5, nil)
	const key = "greeting"
	coord := tc.notHome(key)
	w, err := tc.nodes[coord].Put(ctx5(t), []byte(key), []byte("hello"), api.WriteOptions{W: api.QuorumAll})
	if err != nil || w.Replicas != 3 {
		t.Fatalf("put with w=all through %s (not a replica): %+v, %v", coord, w, err)
	}
	for _, id := range tc.ids {
		r, err := tc.nodes[id].Read(ctx5(t), []byte(key), api.ReadOptions{R: 2})
		if err != nil || !r.Found || string(r.Value) != "hello" || r.Replicas < 2 {
			t.Fatalf("read with r=2 at %s: %+v, %v", id, r, err)
		}
	}
	for _, id := range tc.ids {
		r := tc.local(id, key)
		if home := slices.Contains(tc.homes(key), id); r.Found != home {
			t.Errorf("%s's own copy found=%v; it is a home replica: %v", id, r.Found, home)
		}
	}
}

func TestBadQuorums(t *testing.T) {
	tc := newCluster(t, 3, nil)
	n := tc.nodes["n1"]
	if _, err := n.Put(ctx5(t), []byte("k"), []byte("v"), api.WriteOptions{W: 4}); !errors.Is(err, api.ErrBadQuorum) {
		t.Errorf("w=4 with N=3: %v, want ErrBadQuorum", err)
	}
	if _, err := n.Read(ctx5(t), []byte("k"), api.ReadOptions{R: 9}); !errors.Is(err, api.ErrBadQuorum) {
		t.Errorf("r=9 with N=3: %v, want ErrBadQuorum", err)
	}
	if _, err := n.Read(ctx5(t), []byte("k"), api.ReadOptions{Consistency: api.Session}); !errors.Is(err, api.ErrNotSupported) {
		t.Errorf("a session read: %v, want ErrNotSupported", err)
	}
	if _, err := n.Put(ctx5(t), []byte("k"), []byte("v"), api.WriteOptions{Context: "garbage"}); !errors.Is(err, api.ErrBadContext) {
		t.Errorf("a malformed context: %v, want ErrBadContext", err)
	}
	if _, err := n.Put(ctx5(t), []byte("k"), []byte("v"), api.WriteOptions{Ack: api.Ack{Mode: api.AckSync}}); !errors.Is(err, api.ErrNotSupported) {
		t.Errorf("ack=sync: %v, want ErrNotSupported", err)
	}
}

func TestBlindWritesOverwrite(t *testing.T) {
	tc := newCluster(t, 3, nil)
	const key = "plain"
	for i, id := range []string{"n1", "n2", "n3", "n1"} {
		if _, err := tc.nodes[id].Put(ctx5(t), []byte(key), fmt.Appendf(nil, "v%d", i), api.WriteOptions{W: api.QuorumAll}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := tc.nodes["n2"].Read(ctx5(t), []byte(key), api.ReadOptions{R: api.QuorumAll})
	if err != nil || len(r.Siblings) != 0 || string(r.Value) != "v3" {
		t.Fatalf("after four writes in turn with no context: %+v, %v; want v3 alone", r, err)
	}
}

func TestConcurrentWritesAreSiblings(t *testing.T) {
	tc := newCluster(t, 3, nil)
	const key = "cart"
	if _, err := tc.nodes["n3"].Put(ctx5(t), []byte(key), []byte("base"), api.WriteOptions{W: api.QuorumAll}); err != nil {
		t.Fatal(err)
	}
	base, err := tc.nodes["n3"].Read(ctx5(t), []byte(key), api.ReadOptions{R: api.QuorumAll})
	if err != nil || string(base.Value) != "base" {
		t.Fatalf("read of base: %+v, %v", base, err)
	}
	// Two clients that read the same version each write with its context:
	// neither saw the other, so both values are kept.
	for _, id := range []string{"n1", "n2"} {
		if _, err := tc.nodes[id].Put(ctx5(t), []byte(key), []byte("from-"+id), api.WriteOptions{W: api.QuorumAll, Context: base.Context}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := tc.nodes["n3"].Read(ctx5(t), []byte(key), api.ReadOptions{R: api.QuorumAll})
	if err != nil || len(r.Siblings) != 2 {
		t.Fatalf("two writes from the same read: %+v, %v; want two siblings", r, err)
	}
	if _, err := tc.nodes["n3"].Put(ctx5(t), []byte(key), []byte("merged"), api.WriteOptions{W: api.QuorumAll, Context: r.Context}); err != nil {
		t.Fatal(err)
	}
	r, err = tc.nodes["n1"].Read(ctx5(t), []byte(key), api.ReadOptions{R: api.QuorumAll})
	if err != nil || len(r.Siblings) != 0 || string(r.Value) != "merged" {
		t.Fatalf("after a write with the read's context: %+v, %v; want merged alone", r, err)
	}
}

func TestHintedHandoff(t *testing.T) {
	tc := newCluster(t, 5, nil)
	const key = "handoff"
	homes := tc.homes(key)
	down := homes[2]
	tc.stop(down)
	coord := homes[0]
	// Wait until the coordinator sees the node down, so the sloppy quorum
	// places a stand-in.
	eventually(t, coord+" sees "+down+" down", func() bool {
		return slices.Contains(tc.nodes[coord].Status().Leaderless.Down, down)
	})
	w, err := tc.nodes[coord].Put(ctx5(t), []byte(key), []byte("kept"), api.WriteOptions{W: api.QuorumAll})
	if err != nil || w.Replicas != 3 {
		t.Fatalf("w=all with a home replica down and a sloppy quorum: %+v, %v", w, err)
	}
	// Status is published every tick: wait for the stand-in's.
	hintsFor := func() int {
		pending := 0
		for _, n := range tc.nodes {
			pending += n.Status().Leaderless.HintsPending[down]
		}
		return pending
	}
	eventually(t, "one hint for "+down+" in status", func() bool { return hintsFor() == 1 })
	time.Sleep(50 * time.Millisecond)
	if h := hintsFor(); h != 1 {
		t.Fatalf("hints for %s: %d, want 1", down, h)
	}
	tc.start(down)
	eventually(t, down+" got its copy by handoff", func() bool { return tc.local(down, key).Found })
	eventually(t, "no hints left", func() bool {
		for _, n := range tc.nodes {
			if len(n.Status().Leaderless.HintsPending) > 0 {
				return false
			}
		}
		return true
	})
}

func TestWipedNodeRepairedByAntiEntropy(t *testing.T) {
	tc := newCluster(t, 4, nil)
	const keys = 300
	for i := range keys {
		k := fmt.Sprintf("k%03d", i)
		if _, err := tc.nodes[tc.ids[i%4]].Put(ctx5(t), []byte(k), []byte("v"+k), api.WriteOptions{W: api.QuorumAll}); err != nil {
			t.Fatal(err)
		}
	}
	const wiped = "n2"
	var mine []string
	for i := range keys {
		if k := fmt.Sprintf("k%03d", i); slices.Contains(tc.homes(k), wiped) {
			mine = append(mine, k)
		}
	}
	oldActor := tc.nodes[wiped].Actor()
	tc.stop(wiped)
	if err := os.RemoveAll(filepath.Join(tc.dir, wiped)); err != nil {
		t.Fatal(err)
	}
	tc.start(wiped)
	if a := tc.nodes[wiped].Actor(); a == oldActor {
		t.Fatalf("the wiped node came back as the same actor %s", a)
	}
	eventually(t, fmt.Sprintf("anti-entropy restored the %d keys of %s", len(mine), wiped), func() bool {
		n, err := tc.nodes[wiped].Count(ctx5(t))
		return err == nil && n == len(mine)
	})
	for _, k := range mine {
		if r := tc.local(wiped, k); string(r.Value) != "v"+k {
			t.Fatalf("%s after repair: %+v", k, r)
		}
	}
	if tc.nodes[wiped].Status().Leaderless.AERepairs == 0 {
		t.Errorf("status counts no anti-entropy repairs at %s", wiped)
	}
}

func TestTombstonesCollectedEverywhere(t *testing.T) {
	tc := newCluster(t, 3, nil)
	const key = "gone"
	if _, err := tc.nodes["n1"].Put(ctx5(t), []byte(key), []byte("v"), api.WriteOptions{W: api.QuorumAll}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.nodes["n2"].Delete(ctx5(t), []byte(key), api.WriteOptions{W: api.QuorumAll}); err != nil {
		t.Fatal(err)
	}
	r, err := tc.nodes["n3"].Read(ctx5(t), []byte(key), api.ReadOptions{R: api.QuorumAll})
	if err != nil || r.Found {
		t.Fatalf("read after delete: %+v, %v", r, err)
	}
	eventually(t, "the tombstone is collected on every replica", func() bool {
		for _, id := range tc.ids {
			if n, err := tc.nodes[id].Count(ctx5(t)); err != nil || n != 0 {
				return false
			}
		}
		return true
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{"N above size", func(c *Config) { c.ReplicationFactor = 4 }, "--replication-factor 4"},
		{"no id", func(c *Config) { c.ID = "" }, "--id is required"},
		{"W above N", func(c *Config) { c.DefaultW = 5 }, "default W"},
		{"negative rate", func(c *Config) { c.AntiEntropyRate = -1 }, "--anti-entropy-rate"},
		{"grace within a request", func(c *Config) { c.TombstoneGrace = c.RequestTimeout }, "--tombstone-grace"},
	} {
		c := DefaultConfig()
		c.ID, c.DataDir, c.ClusterID = "n1", t.TempDir(), "x"
		c.Cluster = []Member{{ID: "n1", PeerAddr: "a:1"}, {ID: "n2", PeerAddr: "a:2"}, {ID: "n3", PeerAddr: "a:3"}}
		tc.tweak(&c)
		err := c.Validate()
		if err == nil || !errors.Is(err, ErrConfig) || !contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
