package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/store"
	"github.com/trireme-db/trireme/internal/transport"
	"github.com/trireme-db/trireme/internal/wal"
)

// testCluster is a cluster of nodes in this test process, over loopback TCP
// (net == nil) or an in-memory network.
type testCluster struct {
	t     testing.TB
	cfgs  []Config
	nodes []*Node
	net   *transport.Network
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TRIREME_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfig(t testing.TB, id string, members []Member, dir string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.DataDir = dir
	cfg.Cluster = members
	cfg.HTTPAddr = "http." + id + ":80"
	cfg.RESPAddr = "resp." + id + ":6379"
	cfg.PeerClients = map[string]ClientAddrs{} // as --http-peers and --resp-peers give them
	for _, m := range members {
		if m.ID != id {
			cfg.PeerClients[m.ID] = ClientAddrs{HTTP: "http." + m.ID + ":80", RESP: "resp." + m.ID + ":6379"}
		}
	}
	cfg.Heartbeat = 30 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.WriteTimeout = 3 * time.Second
	cfg.Logger = testLogger(t).With("test", t.Name())
	cfg.Store = store.DefaultConfig()
	cfg.Store.CacheBytes = 1 << 20
	cfg.Store.MemTableBytes = 1 << 20
	cfg.WAL = wal.DefaultConfig()
	cfg.WAL.SegmentBytes = 1 << 20
	cfg.DiskReserveBytes = 0 // the tests must not depend on the machine's free space (disk_test.go tests the reserve)
	return cfg
}

// newTestCluster starts size nodes. mem selects the in-memory transport.
func newTestCluster(t testing.TB, size int, mem bool) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	var lns []net.Listener
	var members []Member
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		addr := fmt.Sprintf("mem-%d:1", i+1)
		if !mem {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
			addr = ln.Addr().String()
		}
		members = append(members, Member{ID: id, PeerAddr: addr})
	}
	if mem {
		c.net = transport.NewNetwork()
	}
	root := t.TempDir()
	for i, m := range members {
		cfg := testConfig(t, m.ID, members, filepath.Join(root, m.ID))
		if !mem {
			cfg.PeerListener = lns[i]
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
	}
	for i := range members {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	cfg := c.cfgs[i]
	if c.net != nil {
		cfg.Transport = c.net.Endpoint(transport.PeerInfo{ID: transport.NodeID(cfg.ID), HTTPAddr: cfg.HTTPAddr, RESPAddr: cfg.RESPAddr}, 4096)
	} else if cfg.PeerListener == nil {
		var err error
		deadline := time.Now().Add(5 * time.Second)
		for {
			cfg.PeerListener, err = net.Listen("tcp", cfg.Cluster[i].PeerAddr)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			c.t.Fatalf("listen again on %s: %v", cfg.Cluster[i].PeerAddr, err)
		}
	}
	c.cfgs[i].PeerListener = nil // consumed
	n, err := Start(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.ID, err)
	}
	c.nodes[i] = n
}

func (c *testCluster) stop(i int) {
	if c.nodes[i] != nil {
		if err := c.nodes[i].Stop(); err != nil {
			c.t.Errorf("stop %s: %v", c.cfgs[i].ID, err)
		}
		c.nodes[i] = nil
	}
}

// leader waits until the running nodes agree on one leader and returns its position.
func (c *testCluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lead := ""
		agree := true
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			st := n.Status()
			if st.Leader == "" || (lead != "" && st.Leader != lead) {
				agree = false
				break
			}
			lead = st.Leader
		}
		if agree && lead != "" {
			for i, n := range c.nodes {
				if n != nil && n.cfg.ID == lead && n.Status().Role == "leader" {
					return i
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range c.nodes {
		if n != nil {
			c.t.Logf("%s: %+v", n.cfg.ID, n.Status())
		}
	}
	c.t.Fatal("no agreed leader within 10s")
	return -1
}

// newLeaderBesides waits up to 10s for a node other than node old to lead
// (the old leader cut off, say) and returns it.
func (c *testCluster) newLeaderBesides(old int) *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range c.nodes {
			if i != old && n != nil && n.Status().Role == "leader" {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no node other than %s became leader within 10s", c.cfgs[old].ID)
	return nil
}

func (c *testCluster) follower(lead int) int {
	for i, n := range c.nodes {
		if i != lead && n != nil {
			return i
		}
	}
	c.t.Fatal("no follower running")
	return -1
}

// waitStale waits until node i's applied state has key=want (want "" = absent).
func (c *testCluster) waitStale(i int, key, want string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got api.ReadResult
	var err error
	for time.Now().Before(deadline) {
		got, err = c.nodes[i].Get(context.Background(), []byte(key), api.Stale)
		if err == nil && got.Found == (want != "") && string(got.Value) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("%s: key %q = %q (found %v, err %v), want %q", c.cfgs[i].ID, key, got.Value, got.Found, err, want)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t testing.TB, n *Node, key, value string, ack api.Ack) api.WriteResult {
	t.Helper()
	res, err := n.Put(ctxT(t), []byte(key), []byte(value), api.WriteOptions{Ack: ack})
	if err != nil {
		t.Fatalf("put %s on %s: %v (%+v)", key, n.cfg.ID, err, res)
	}
	return res
}

func TestClusterWritesReadsAndForwarding(t *testing.T) {
	c := newTestCluster(t, 3, false)
	li := c.leader()
	l := c.nodes[li]
	fi := c.follower(li)
	f := c.nodes[fi]
	ctx := ctxT(t)

	t.Run("ack modes", func(t *testing.T) {
		tests := []struct {
			ack      api.Ack
			wantDur  string
			minRepl  int
			wantComm bool
		}{
			{api.Ack{Mode: api.AckAsync}, "async", 0, false},
			{api.Ack{Mode: api.AckSemiSync, Replicas: 1}, "semi-sync", 1, false},
			{api.Ack{Mode: api.AckSync}, "sync", 2, false},
			{api.Ack{Mode: api.AckMajority}, "majority", 1, true},
		}
		var last uint64
		for _, tc := range tests {
			key := "ack-" + tc.wantDur
			res := mustPut(t, l, key, "v-"+tc.wantDur, tc.ack)
			// A majority write may commit on the two followers before the
			// leader's own fsync (docs: "committed on a majority, which may
			// or may not include the leader"); every other mode waits for it.
			leaderOK := res.LeaderDurable || tc.wantComm
			if res.Durability != tc.wantDur || !leaderOK || res.Replicas < tc.minRepl || (tc.wantComm && !res.Committed) {
				t.Fatalf("%s: result %+v", tc.wantDur, res)
			}
			if res.Index <= last || res.Term == 0 {
				t.Fatalf("%s: index %d after %d, term %d", tc.wantDur, res.Index, last, res.Term)
			}
			last = res.Index
			for i := range c.nodes {
				c.waitStale(i, key, "v-"+tc.wantDur)
			}
		}
	})

	t.Run("linearizable reads see acknowledged writes", func(t *testing.T) {
		for i, ack := range []api.Ack{{Mode: api.AckAsync}, {Mode: api.AckMajority}} {
			key := fmt.Sprintf("lin-%d", i)
			res := mustPut(t, l, key, "x", ack)
			for _, n := range []*Node{l, f} { // the follower forwards the read
				got, err := n.Get(ctx, []byte(key), api.Linearizable)
				if err != nil || !got.Found || string(got.Value) != "x" || got.Index != res.Index {
					t.Fatalf("linearizable get on %s: %+v %v (write at %d)", n.cfg.ID, got, err, res.Index)
				}
			}
		}
		got, err := f.Get(ctx, []byte("absent"), api.Linearizable)
		if err != nil || got.Found {
			t.Fatalf("absent key: %+v %v", got, err)
		}
	})

	t.Run("follower forwards writes", func(t *testing.T) {
		res, err := f.Put(ctx, []byte("fw"), []byte("1"), api.WriteOptions{Default: true})
		if err != nil || res.Durability != "majority" || !res.Committed {
			t.Fatalf("forwarded put: %+v %v", res, err)
		}
		c.waitStale(li, "fw", "1")
		if _, err := f.Delete(ctx, []byte("fw"), api.WriteOptions{Default: true}); err != nil {
			t.Fatalf("forwarded delete: %v", err)
		}
		for i := range c.nodes {
			c.waitStale(i, "fw", "")
		}
	})

	t.Run("bad input", func(t *testing.T) {
		if _, err := f.Put(ctx, nil, []byte("v"), api.WriteOptions{Default: true}); !errors.Is(err, api.ErrEmptyKey) {
			t.Fatalf("empty key: %v", err)
		}
		big := make([]byte, l.MaxValueBytes()+1)
		if _, err := l.Put(ctx, []byte("k"), big, api.WriteOptions{Default: true}); !errors.Is(err, api.ErrValueTooLarge) {
			t.Fatalf("big value: %v", err)
		}
		if _, err := l.Put(ctx, []byte("k"), nil, api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync}}); !errors.Is(err, api.ErrBadAckMode) {
			t.Fatalf("semi-sync without replicas: %v", err)
		}
		if _, err := l.Get(ctx, []byte("k"), api.Consistency(9)); !errors.Is(err, api.ErrBadConsistency) {
			t.Fatalf("bad consistency: %v", err)
		}
	})

	t.Run("status, wait, count, metrics", func(t *testing.T) {
		st := f.Status()
		ls := l.Status()
		if st.Role != "follower" || st.Leader != l.cfg.ID || st.LeaderHTTP != l.cfg.HTTPAddr || st.LeaderRESP != l.cfg.RESPAddr {
			t.Fatalf("follower status %+v", st)
		}
		if ls.Role != "leader" || len(ls.Followers) != 2 || ls.LeaderHTTP != l.cfg.HTTPAddr {
			t.Fatalf("leader status %+v", ls)
		}
		res := mustPut(t, l, "w", "1", api.Ack{Mode: api.AckAsync})
		got, err := l.WaitReplicas(ctx, res.Index, 2)
		if err != nil || got != 2 {
			t.Fatalf("WaitReplicas: %d %v", got, err)
		}
		if _, err := f.WaitReplicas(ctx, res.Index, 1); !errors.Is(err, api.ErrNotLeader) {
			t.Fatalf("WaitReplicas on a follower: %v", err)
		}
		c.waitStale(fi, "w", "1")
		nl, err1 := l.Count(ctx)
		nf, err2 := f.Count(ctx)
		if err1 != nil || err2 != nil || nl != nf || nl < 5 {
			t.Fatalf("count leader %d %v, follower %d %v", nl, err1, nf, err2)
		}
		rec := httptest.NewRecorder()
		l.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		for _, want := range []string{"trireme_term{", "trireme_role{node=\"" + l.cfg.ID + "\"} 3", "trireme_write_duration_seconds_bucket",
			"trireme_follower_lag_entries{", "trireme_elections_won_total{", "trireme_peer_messages_refused_total{",
			"trireme_peer_messages_forged_total{", "trireme_peer_connections_refused_total{"} {
			if !strings.Contains(string(body), want) {
				t.Fatalf("metrics lack %q:\n%s", want, body)
			}
		}
	})
}

func TestClusterRestartAndFailover(t *testing.T) {
	c := newTestCluster(t, 3, false)
	li := c.leader()
	fi := c.follower(li)
	acked := map[string]string{}
	put := func(n *Node, k, v string) {
		mustPut(t, n, k, v, api.Ack{Mode: api.AckMajority})
		acked[k] = v
	}
	for i := range 20 {
		put(c.nodes[li], fmt.Sprintf("a%02d", i), fmt.Sprint(i))
	}

	// A follower restarts with its data and catches up on what it missed.
	c.stop(fi)
	for i := range 20 {
		put(c.nodes[li], fmt.Sprintf("b%02d", i), fmt.Sprint(i))
	}
	c.start(fi)
	for k, v := range acked {
		c.waitStale(fi, k, v)
	}

	// The leader stops: a new one is elected and has every acknowledged write.
	old := c.nodes[li].cfg.ID
	c.stop(li)
	nli := c.leader()
	if c.nodes[nli].cfg.ID == old {
		t.Fatalf("old leader %s still leads", old)
	}
	for k, v := range acked {
		got, err := c.nodes[nli].Get(ctxT(t), []byte(k), api.Linearizable)
		if err != nil || string(got.Value) != v {
			t.Fatalf("after failover %s = %q %v, want %q", k, got.Value, err, v)
		}
	}
	put(c.nodes[nli], "after-failover", "1")
	var failovers bool
	for _, n := range c.nodes {
		if n != nil {
			rec := httptest.NewRecorder()
			n.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if strings.Contains(rec.Body.String(), "trireme_failover_duration_seconds_count") &&
				!strings.Contains(rec.Body.String(), "trireme_failover_duration_seconds_count{node=\""+n.cfg.ID+"\"} 0") {
				failovers = true
			}
		}
	}
	if !failovers {
		t.Error("no node recorded a failover duration")
	}
	// The new leader's own suspicion of the old one was right: a detection.
	if st := c.nodes[nli].Status(); st.Election != ElectionQuorum || st.FailureDetector == nil ||
		st.FailureDetector.Mode != DetectorAdaptive || st.FailureDetector.Detections == 0 {
		t.Errorf("new leader's status: election %q detector %+v, want quorum, adaptive, a detection", st.Election, st.FailureDetector)
	}
	if st := c.nodes[c.follower(nli)].Status(); st.FailureDetector.TimeoutMillis < 100 || st.FailureDetector.TimeoutMillis > 400 {
		t.Errorf("follower's learned timeout %d ms, want within the bounds (100-300 ms, plus jitter)", st.FailureDetector.TimeoutMillis)
	}

	// Everything stops; everything restarts from disk (WAL replay into the store).
	c.start(li)
	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	li = c.leader()
	for i := range c.nodes {
		for k, v := range acked {
			c.waitStale(i, k, v)
		}
	}
	got, err := c.nodes[c.follower(li)].Get(ctxT(t), []byte("after-failover"), api.Linearizable)
	if err != nil || string(got.Value) != "1" {
		t.Fatalf("after full restart: %+v %v", got, err)
	}
}

func TestWriteTimeoutReportsWhatWasAchieved(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	c.net.Isolate(transport.NodeID(c.cfgs[fi].ID))
	res, err := c.nodes[li].Put(ctxT(t), []byte("k"), []byte("v"),
		api.WriteOptions{Ack: api.Ack{Mode: api.AckSync}, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, api.ErrWriteTimeout) {
		t.Fatalf("sync write with a follower cut off: %+v %v", res, err)
	}
	if !res.LeaderDurable || res.Replicas != 1 || !res.Committed || res.Durability != "" || res.Index == 0 {
		t.Fatalf("timed-out result %+v", res)
	}

	// The cut-off follower says how stale it is; the leader says how far behind it is.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.nodes[fi].Get(ctxT(t), []byte("k"), api.Stale)
		if err != nil {
			t.Fatal(err)
		}
		if got.Found {
			t.Fatalf("cut-off follower has k: %+v", got)
		}
		if got.LagMillis >= 100 && c.nodes[fi].Status().LagMillis >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale read lag stays at %d ms", got.LagMillis)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var info *api.FollowerInfo
	for _, f := range c.nodes[li].Status().Followers {
		if f.ID == c.cfgs[fi].ID {
			info = &f
		}
	}
	if info == nil || info.LagEntries < 1 || info.MatchIndex >= res.Index || info.LagMillis < 100 {
		t.Fatalf("leader's view of the cut-off follower: %+v", info)
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	mustPut(t, c.nodes[li], "k", "v", api.Ack{Mode: api.AckMajority})
	target := c.cfgs[fi].ID
	// Asked on the other follower: it forwards to the leader.
	var other int
	for i := range c.nodes {
		if i != li && i != fi {
			other = i
		}
	}
	// Writes keep flowing through the old leader during the switchover.
	stop := make(chan struct{})
	werrs := make(chan error, 1)
	go func() {
		defer close(werrs)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := c.nodes[li].Put(context.Background(), []byte(fmt.Sprint("during-", i)), []byte("v"), api.WriteOptions{Default: true})
			if err != nil && !errors.Is(err, api.ErrOutcomeUnknown) {
				werrs <- fmt.Errorf("write %d during the transfer: %w", i, err)
				return
			}
		}
	}()
	err := c.nodes[other].TransferLeadership(ctxT(t), target)
	close(stop)
	if werr := <-werrs; werr != nil {
		t.Error(werr)
	}
	if err != nil {
		t.Fatalf("transfer to %s: %v", target, err)
	}
	if st := c.nodes[fi].Status(); st.Role != "leader" {
		// It led when the call returned on `other`; it may have been noticed a
		// moment later locally.
		if c.cfgs[c.leader()].ID != target {
			t.Fatalf("after transfer %s is %s", target, st.Role)
		}
	}
	if err := c.nodes[li].TransferLeadership(ctxT(t), "nope"); err == nil {
		t.Fatal("transfer to an unknown node succeeded")
	}
}

// TestRollbackJournal: an isolated leader acknowledges async writes that no
// one else has; after the partition heals it discards them into its journal.
func TestRollbackJournal(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	old := c.nodes[li]
	mustPut(t, old, "keep", "1", api.Ack{Mode: api.AckMajority})
	c.net.Isolate(transport.NodeID(old.cfg.ID))
	lost := []string{"lost-1", "lost-2", "lost-3"}
	for _, k := range lost {
		res, err := old.Put(ctxT(t), []byte(k), []byte("gone"), api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}})
		if err != nil || !res.LeaderDurable || res.Committed {
			t.Fatalf("async put on the isolated leader: %+v %v", res, err)
		}
	}
	// Its async writes cannot commit: a linearizable read there must fail
	// rather than show them.
	if got, err := old.Get(ctxT(t), []byte("lost-1"), api.Linearizable); err == nil {
		t.Fatalf("linearizable read on an isolated leader succeeded: %+v", got)
	}
	// The majority side elects a new leader and moves on.
	nl := c.newLeaderBesides(li)
	mustPut(t, nl, "new", "1", api.Ack{Mode: api.AckMajority})
	c.net.Heal()
	for i := range c.nodes {
		c.waitStale(i, "new", "1")
		c.waitStale(i, "keep", "1")
		for _, k := range lost {
			c.waitStale(i, k, "")
		}
	}
	rb, err := old.Rollbacks()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range rb {
		if r.Op == "put" {
			got[r.Key] = true
		}
	}
	for _, k := range lost {
		if !got[k] {
			t.Fatalf("rollback journal lacks %s: %+v", k, rb)
		}
	}
	if got["keep"] || got["new"] {
		t.Fatalf("journal holds committed writes: %+v", rb)
	}
	rec := httptest.NewRecorder()
	old.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "trireme_rollbacks_total{node=\""+old.cfg.ID+"\"} 0") {
		t.Fatal("rollbacks not counted in metrics")
	}
	// The journal survives a restart.
	c.stop(li)
	c.start(li)
	rb2, err := c.nodes[li].Rollbacks()
	if err != nil || len(rb2) != len(rb) {
		t.Fatalf("journal after restart: %d entries %v, want %d", len(rb2), err, len(rb))
	}
}

// TestCutOffFollower: a follower that cannot reach any leader refuses writes
// and linearizable reads with ErrNoLeader, and still serves stale reads.
func TestCutOffFollower(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	mustPut(t, c.nodes[li], "k", "v", api.Ack{Mode: api.AckMajority})
	c.waitStale(fi, "k", "v")
	c.net.Isolate(transport.NodeID(c.cfgs[fi].ID))
	f := c.nodes[fi]
	ctx := ctxT(t)
	if res, err := f.Put(ctx, []byte("k2"), []byte("v"), api.WriteOptions{Default: true}); !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("put on a cut-off follower: %+v %v", res, err)
	}
	if res, err := f.Get(ctx, []byte("k"), api.Linearizable); !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("linearizable get on a cut-off follower: %+v %v", res, err)
	}
	if res, err := f.Get(ctx, []byte("k"), api.Stale); err != nil || string(res.Value) != "v" {
		t.Fatalf("stale get on a cut-off follower: %+v %v", res, err)
	}
	c.net.Heal()
	res := mustPut(t, f, "k3", "v", api.Ack{Mode: api.AckMajority})
	if !res.Committed {
		t.Fatalf("after heal: %+v", res)
	}
}

// TestCanceledWriteIsNotProposed: a write whose caller has already given up
// is refused before it reaches the log, so "canceled" means "not written".
func TestCanceledWriteIsNotProposed(t *testing.T) {
	c := newTestCluster(t, 3, true)
	l := c.nodes[c.leader()]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ack := range []api.Ack{{Mode: api.AckAsync}, {Mode: api.AckMajority}} {
		if _, err := l.Put(ctx, []byte("gone"), []byte("v"), api.WriteOptions{Ack: ack}); !errors.Is(err, context.Canceled) {
			t.Fatalf("%v write with a canceled context: %v", ack.Mode, err)
		}
		if res, errs := l.PutBatch(ctx, [][]byte{[]byte("gone"), []byte("gone2")}, [][]byte{[]byte("a"), []byte("b")}, api.WriteOptions{Ack: ack}); !errors.Is(errs[0], context.Canceled) || !errors.Is(errs[1], context.Canceled) {
			t.Fatalf("%v batch with a canceled context: %+v %v", ack.Mode, res, errs)
		}
	}
	mustPut(t, l, "after", "x", api.Ack{Mode: api.AckMajority}) // the log moves on
	for _, k := range []string{"gone", "gone2"} {
		got, err := l.Get(ctxT(t), []byte(k), api.Linearizable)
		if err != nil || got.Found {
			t.Fatalf("key %q after canceled writes: %+v %v", k, got, err)
		}
	}
}
