package mlnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/transport"
)

// tcluster is n in-process nodes over an in-memory network.
type tcluster struct {
	t     testing.TB
	net   *transport.Network
	dir   string
	ids   []string
	nodes map[string]*Node
	cfg   func(*Config)
}

func newCluster(t testing.TB, n int, tweak func(*Config)) *tcluster {
	t.Helper()
	tc := &tcluster{t: t, net: transport.NewNetwork(), dir: t.TempDir(), nodes: map[string]*Node{}, cfg: tweak}
	for i := 1; i <= n; i++ {
		tc.ids = append(tc.ids, fmt.Sprintf("n%d", i))
	}
	for _, id := range tc.ids {
		tc.start(id)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			nd.Stop()
		}
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
	cfg.WriteTimeout = 2 * time.Second
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

func (tc *tcluster) put(id, key, value string, o api.WriteOptions) api.WriteResult {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := tc.nodes[id].Put(ctx, []byte(key), []byte(value), o)
	if err != nil {
		tc.t.Fatalf("put %s=%s at %s: %v", key, value, id, err)
	}
	return res
}

func (tc *tcluster) read(id, key string) api.ReadResult {
	tc.t.Helper()
	r, err := tc.nodes[id].Read(context.Background(), []byte(key), api.ReadOptions{Consistency: api.Local})
	if err != nil {
		tc.t.Fatalf("read %s at %s: %v", key, id, err)
	}
	return r
}

// eventually polls cond for up to 5 s.
func (tc *tcluster) eventually(what string, cond func() bool) {
	tc.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tc.t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// converged reports whether every running node reads the same for key.
func (tc *tcluster) converged(key string) bool {
	var first *api.ReadResult
	for _, id := range tc.ids {
		if tc.nodes[id] == nil {
			continue
		}
		r := tc.read(id, key)
		if first == nil {
			first = &r
			continue
		}
		if r.Found != first.Found || !bytes.Equal(r.Value, first.Value) || len(r.Siblings) != len(first.Siblings) || r.Context != first.Context {
			return false
		}
	}
	return true
}

var local = api.WriteOptions{Default: true}

func TestWriteAnywhereReadEverywhere(t *testing.T) {
	tc := newCluster(t, 3, nil)
	res := tc.put("n2", "k", "v1", local)
	if res.Durability != "local" || res.Index != 1 {
		t.Fatalf("write result %+v, want local durability at seq 1", res)
	}
	tc.eventually("n1 and n3 read n2's write", func() bool {
		return string(tc.read("n1", "k").Value) == "v1" && string(tc.read("n3", "k").Value) == "v1"
	})
	st := tc.nodes["n1"].Status()
	if st.Mode != Mode || len(st.Streams) != 2 {
		t.Fatalf("status %+v", st)
	}
	tc.eventually("n2's stream shown applied at n1", func() bool {
		for _, s := range tc.nodes["n1"].Status().Streams {
			if s.Peer == "n2" {
				return s.Applied == 1 && s.Known == 1 && s.LagEntries == 0
			}
		}
		return false
	})
	// Deletes replicate too.
	if _, err := tc.nodes["n3"].Delete(context.Background(), []byte("k"), local); err != nil {
		t.Fatal(err)
	}
	tc.eventually("the delete reaches every node", func() bool {
		return !tc.read("n1", "k").Found && !tc.read("n2", "k").Found
	})
}

func TestAckAllWaitsForEveryNode(t *testing.T) {
	tc := newCluster(t, 3, nil)
	all := api.WriteOptions{Ack: api.Ack{Mode: api.AckSync}}
	if res := tc.put("n1", "a", "1", all); res.Durability != "all" || res.Replicas != 2 {
		t.Fatalf("ack=all result %+v", res)
	}
	tc.net.Isolate("n3")
	o := all
	o.Timeout = 100 * time.Millisecond
	res, err := tc.nodes["n1"].Put(context.Background(), []byte("b"), []byte("2"), o)
	if !errors.Is(err, api.ErrWriteTimeout) || res.Replicas != 1 {
		t.Fatalf("ack=all with n3 cut off: %+v, %v; want a timeout with 1 replica", res, err)
	}
	two := api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 1}}
	if res := tc.put("n1", "c", "3", two); res.Replicas < 1 || res.Durability != "1" {
		t.Fatalf("ack=1 with n3 cut off: %+v", res)
	}
	if _, err := tc.nodes["n1"].Put(context.Background(), []byte("d"), []byte("4"), api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 3}}); !errors.Is(err, api.ErrNotEnoughReplicas) {
		t.Fatalf("ack=3 on 3 nodes: %v, want ErrNotEnoughReplicas", err)
	}
	tc.net.Heal()
	tc.eventually("n3 gets b after healing", func() bool { return string(tc.read("n3", "b").Value) == "2" })
}

func TestLWWConflictConvergesAndIsRecorded(t *testing.T) {
	tc := newCluster(t, 3, nil)
	tc.net.Partition("n1", "n2")
	tc.net.Partition("n1", "n3")
	tc.put("n1", "k", "from-n1", local)
	tc.put("n2", "k", "from-n2", local)
	tc.net.Heal()
	tc.eventually("every node reads one value of k", func() bool { return tc.converged("k") })
	v := string(tc.read("n1", "k").Value)
	if v != "from-n1" && v != "from-n2" {
		t.Fatalf("k = %q", v)
	}
	tc.eventually("a conflict recorded", func() bool {
		for _, id := range tc.ids {
			recs, _, err := tc.nodes[id].Conflicts(context.Background(), 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if string(r.Key) == "k" && len(r.Versions) == 2 && r.Winner != "" && len(r.Losers) == 1 {
					return true
				}
			}
		}
		return false
	})
}

func TestSiblingsAndContext(t *testing.T) {
	tc := newCluster(t, 2, func(c *Config) { c.Conflicts = multileader.Siblings })
	tc.net.Partition("n1", "n2")
	tc.put("n1", "k", "a", local)
	tc.put("n2", "k", "b", local)
	tc.net.Heal()
	tc.eventually("both nodes hold two siblings", func() bool {
		return len(tc.read("n1", "k").Siblings) == 2 && tc.converged("k")
	})
	r := tc.read("n1", "k")
	if r.Context == "" {
		t.Fatal("a read with siblings has no context")
	}
	// A write carrying the context supersedes both.
	o := local
	o.Context = r.Context
	tc.put("n2", "k", "merged", o)
	tc.eventually("the merge replaces both siblings everywhere", func() bool {
		a, b := tc.read("n1", "k"), tc.read("n2", "k")
		return string(a.Value) == "merged" && len(a.Siblings) == 0 && string(b.Value) == "merged" && len(b.Siblings) == 0
	})
	// A context for another key, or garbage, is refused.
	for _, bad := range []string{tc.read("n1", "k").Context + "x", "not-a-context"} {
		o.Context = bad
		if _, err := tc.nodes["n1"].Put(context.Background(), []byte("k"), []byte("v"), o); !errors.Is(err, api.ErrBadContext) {
			t.Errorf("context %q: %v, want ErrBadContext", bad, err)
		}
	}
	tc.put("n1", "other", "x", local)
	o.Context = tc.read("n1", "other").Context
	if _, err := tc.nodes["n1"].Put(context.Background(), []byte("k"), []byte("v"), o); !errors.Is(err, api.ErrBadContext) {
		t.Errorf("another key's context: %v, want ErrBadContext", err)
	}
}

func TestCountersCountEveryIncrement(t *testing.T) {
	tc := newCluster(t, 3, nil)
	tc.net.Partition("n1", "n2")
	tc.net.Partition("n1", "n3")
	tc.net.Partition("n2", "n3")
	want := int64(0)
	for i, id := range tc.ids {
		for j := 0; j < 5; j++ {
			by := int64(i + 1)
			res, err := tc.nodes[id].Exec(context.Background(), &command.Command{Op: command.OpIncr, Key: []byte("c"), Delta: by}, local)
			if err != nil {
				t.Fatal(err)
			}
			if res.Cmd.Int != by*int64(j+1) {
				t.Fatalf("INCRBY %d at %s: %d, want %d (its own view, partitioned)", by, id, res.Cmd.Int, by*int64(j+1))
			}
			want += by
		}
	}
	tc.net.Heal()
	tc.eventually("every node counts every increment", func() bool {
		for _, id := range tc.ids {
			if string(tc.read(id, "c").Value) != strconv.FormatInt(want, 10) {
				return false
			}
		}
		return true
	})
	// INCR of a key that holds a value is refused; so are conditional commands.
	tc.put("n1", "s", "text", local)
	if _, err := tc.nodes["n1"].Exec(context.Background(), &command.Command{Op: command.OpIncr, Key: []byte("s"), Delta: 1}, local); !errors.Is(err, api.ErrNotInteger) {
		t.Fatalf("INCR of a register: %v", err)
	}
	if _, err := tc.nodes["n1"].Exec(context.Background(), &command.Command{Op: command.OpSet, Cond: command.CondNX, Key: []byte("s"), Value: []byte("x")}, local); !errors.Is(err, api.ErrNotSupported) {
		t.Fatalf("SETNX: %v", err)
	}
}

func TestRestartResumesStreams(t *testing.T) {
	tc := newCluster(t, 3, nil)
	tc.put("n1", "a", "1", local)
	tc.eventually("n3 has a", func() bool { return tc.read("n3", "a").Found })
	tc.stop("n3")
	for i := 0; i < 20; i++ {
		tc.put("n1", fmt.Sprintf("k%d", i), "x", local)
		tc.put("n2", fmt.Sprintf("j%d", i), "y", local)
	}
	tc.start("n3")
	tc.eventually("n3 catches up on both streams after its restart", func() bool {
		return tc.read("n3", "k19").Found && tc.read("n3", "j19").Found
	})
	// Its own writes survived too, and it continues its stream.
	res := tc.put("n3", "z", "after", local)
	if res.Index != 1 {
		t.Fatalf("n3's first own write is at seq %d", res.Index)
	}
	tc.stop("n3")
	tc.start("n3")
	if res := tc.put("n3", "z2", "again", local); res.Index != 2 {
		t.Fatalf("after a restart n3 wrote at seq %d, want 2", res.Index)
	}
	if n, err := tc.nodes["n3"].Count(context.Background()); err != nil || n != 43 {
		t.Fatalf("count %d, %v; want 43", n, err)
	}
}

func TestReadLevelsAndRefusals(t *testing.T) {
	tc := newCluster(t, 2, nil)
	ctx := context.Background()
	if _, err := tc.nodes["n1"].Read(ctx, []byte("k"), api.ReadOptions{Consistency: api.Session}); !errors.Is(err, api.ErrNotSupported) {
		t.Errorf("session read: %v", err)
	}
	if _, err := tc.nodes["n1"].Put(ctx, nil, []byte("v"), local); !errors.Is(err, api.ErrEmptyKey) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := tc.nodes["n1"].Put(ctx, bytes.Repeat([]byte("k"), multileader.MaxKeyLen+1), nil, local); !errors.Is(err, api.ErrKeyTooLarge) {
		t.Errorf("long key: %v", err)
	}
	if err := tc.nodes["n1"].TransferLeadership(ctx, "n2"); !errors.Is(err, api.ErrNotSupported) {
		t.Errorf("transfer: %v", err)
	}
	if _, err := tc.nodes["n1"].AddMember(ctx, api.MemberSpec{ID: "n3"}); !errors.Is(err, api.ErrNotSupported) {
		t.Errorf("add member: %v", err)
	}
}

func TestRefusesPeerMessagesThatLie(t *testing.T) {
	tc := newCluster(t, 2, nil)
	n := tc.nodes["n1"]
	before := n.dropped.Load()
	n.HandlePayload("n2", transport.EngineMultiLeader, []byte{0xff, 0x00})
	forged := multileader.AppendMessage(nil, &multileader.Message{Type: multileader.MsgHeartbeat, From: "n3", To: "n1", Seq: 1})
	n.HandlePayload("n2", transport.EngineMultiLeader, forged)
	n.HandlePayload("n2", transport.EngineLeaderless, []byte{1})
	if got := n.dropped.Load() - before; got != 3 {
		t.Fatalf("%d refused, want 3", got)
	}
	tc.put("n1", "k", "still works", local)
}

// TestTimeoutsCountWallTime: a write's ack timeout is wall time even when
// the run loop stalls (a long fsync): the ticks a stall swallowed are
// given to the core afterwards, instead of the timeout stretching by them.
func TestTimeoutsCountWallTime(t *testing.T) {
	tc := newCluster(t, 2, nil)
	tc.net.Isolate("n2")
	n := tc.nodes["n1"]
	o := api.WriteOptions{Ack: api.Ack{Mode: api.AckSync}, Timeout: 400 * time.Millisecond}
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		_, err := n.Put(context.Background(), []byte("k"), []byte("v"), o)
		if !errors.Is(err, api.ErrWriteTimeout) {
			t.Errorf("ack=all with the peer cut off: %v", err)
		}
		done <- time.Since(start)
	}()
	time.Sleep(20 * time.Millisecond) // the write is proposed
	n.ctlCh <- func() { time.Sleep(time.Second) }
	// 200 ticks of 2 ms: with the ticks replayed the write times out right
	// after the stall (~1 s); a ticker alone would give one tick at the end
	// of the stall and then need ~190 more (~1.4 s).
	if d := <-done; d > 1250*time.Millisecond {
		t.Fatalf("the 400 ms timeout fired after %v (a 1 s stall)", d)
	}
}
