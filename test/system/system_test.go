// Package system tests Trireme end to end: real `trireme node` processes,
// built once in TestMain, driven through internal/cluster, over HTTP and
// RESP. Every test has bounded waits; the package is skipped with -short.
//
//	go test ./test/system/ -v -count=1
package system

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
)

var binary string // the trireme binary built by TestMain

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("system tests skipped with -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "trireme-system-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binary, err = cluster.BuildBinary(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tc is one test's cluster.
type tc struct {
	t  *testing.T
	c  *cluster.Cluster
	cl *client.Client
}

// mustStart starts a 3-node cluster (peer TLS on, as trireme up runs it).
func mustStart(t *testing.T, extra ...string) *tc {
	t.Helper()
	return mustStartWith(t, nil, extra...)
}

// mustStartWith starts a 3-node cluster after edit (if any) changes its configuration.
func mustStartWith(t *testing.T, edit func(*cluster.Config), extra ...string) *tc {
	t.Helper()
	spec, err := cluster.FreeSpec(3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.Spec = binary, t.TempDir(), spec
	cfg.NodeArgs = append([]string{"--heartbeat", "50ms", "--election-timeout", "300ms", "--log-level", "debug"}, extra...)
	if edit != nil {
		edit(&cfg)
	}
	c, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	x := &tc{t: t, c: c}
	x.cl, err = client.New(client.Config{Endpoints: spec.HTTPEndpoints(), RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			x.dumpLogs()
		}
		if err := c.StopAll(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *tc) dumpLogs() {
	for _, n := range x.c.Spec().Nodes {
		b, _ := os.ReadFile(x.c.LogPath(n.ID))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		x.t.Logf("---- last lines of %s ----\n%s", x.c.LogPath(n.ID), strings.Join(lines, "\n"))
	}
}

func (x *tc) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	x.t.Cleanup(cancel)
	return ctx
}

func (x *tc) mustLeader(except string) string {
	x.t.Helper()
	id, err := x.c.WaitLeader(x.ctx(10*time.Second), except)
	if err != nil {
		x.t.Fatal(err)
	}
	return id
}

func (x *tc) followers(leader string) []string {
	var out []string
	for _, n := range x.c.Spec().Nodes {
		if n.ID != leader {
			out = append(out, n.ID)
		}
	}
	return out
}

func (x *tc) node(id string) cluster.NodeSpec {
	n, err := x.c.Node(id)
	if err != nil {
		x.t.Fatal(err)
	}
	return n
}

// nodeClient talks to one node only.
func (x *tc) nodeClient(id string, retry time.Duration) *client.Client {
	c, err := client.New(client.Config{Endpoints: []string{x.node(id).HTTP}, RetryFor: retry})
	if err != nil {
		x.t.Fatal(err)
	}
	return c
}

func (x *tc) mustPut(key, value string, o client.WriteOptions) client.WriteResult {
	x.t.Helper()
	res, err := x.cl.Put(x.ctx(10*time.Second), []byte(key), []byte(value), o)
	if err != nil {
		x.t.Fatalf("put %s: %v", key, err)
	}
	return res
}

// waitStale waits until node id serves want for every key with a stale read.
func (x *tc) waitStale(id string, want map[string]string) {
	x.t.Helper()
	ep := x.node(id).HTTP
	deadline := time.Now().Add(10 * time.Second)
	for k, v := range want {
		for {
			r, err := x.cl.Get(x.ctx(2*time.Second), []byte(k), client.ReadOptions{Consistency: "stale", Endpoint: ep})
			if err == nil && string(r.Value) == v {
				break
			}
			if time.Now().After(deadline) {
				x.t.Fatalf("node %s: stale read of %s = %q, %v; want %q", id, k, r.Value, err, v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestElection(t *testing.T) {
	start := time.Now()
	x := mustStart(t)
	leader := x.mustLeader("")
	t.Logf("leader %s elected %v after start", leader, time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("election took %v", d)
	}
	// Exactly one leader, and every node agrees on it once heartbeats flow.
	deadline := time.Now().Add(3 * time.Second)
	for {
		sts := x.c.Statuses(context.Background())
		leaders, agree := 0, 0
		for _, s := range sts {
			if s.Err != nil {
				t.Fatalf("%s: %v", s.Endpoint, s.Err)
			}
			if s.Status.Role == "leader" {
				leaders++
			}
			if s.Status.Leader == leader {
				agree++
			}
		}
		if leaders > 1 {
			t.Fatalf("%d leaders: %+v", leaders, sts)
		}
		if leaders == 1 && agree == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes do not agree on leader %s: %+v", leader, sts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMajorityWritesReplicated(t *testing.T) {
	x := mustStart(t)
	x.mustLeader("")
	want := map[string]string{}
	var last client.WriteResult
	for i := range 50 {
		k, v := fmt.Sprintf("key-%02d", i), fmt.Sprintf("value-%d", i)
		res := x.mustPut(k, v, client.WriteOptions{Ack: "majority"})
		if res.Durability != "majority" || res.Replicas < 1 || res.Index <= last.Index {
			t.Fatalf("put %s: %+v after %+v", k, res, last)
		}
		last = res
		want[k] = v
	}
	for _, n := range x.c.Spec().Nodes {
		x.waitStale(n.ID, want)
	}
	// Linearizable reads through any node.
	for k, v := range want {
		r, err := x.cl.Get(x.ctx(5*time.Second), []byte(k), client.ReadOptions{})
		if err != nil || string(r.Value) != v {
			t.Fatalf("get %s: %q %v", k, r.Value, err)
		}
	}
}

func TestFollowerRestartCatchesUp(t *testing.T) {
	x := mustStart(t)
	leader := x.mustLeader("")
	victim := x.followers(leader)[0]
	want := map[string]string{}
	for i := range 20 {
		k := fmt.Sprintf("before-%d", i)
		x.mustPut(k, k, client.WriteOptions{Ack: "sync"})
		want[k] = k
	}
	x.waitStale(victim, want)
	before, err := x.c.Status(x.ctx(2*time.Second), victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		k := fmt.Sprintf("during-%d", i)
		x.mustPut(k, k, client.WriteOptions{Ack: "majority"})
		want[k] = k
	}
	if err := x.c.Start(victim); err != nil {
		t.Fatal(err)
	}
	if err := x.c.WaitReady(x.ctx(10*time.Second), victim); err != nil {
		t.Fatal(err)
	}
	after, err := x.c.Status(x.ctx(2*time.Second), victim)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastIndex < before.LastIndex {
		t.Fatalf("%s restarted with last index %d, below the %d it had durably before kill -9", victim, after.LastIndex, before.LastIndex)
	}
	x.waitStale(victim, want)
	if l := x.mustLeader(""); l != leader {
		t.Logf("note: leadership moved from %s to %s during the restart", leader, l)
	}
}

// TestWipedFollowerCatchesUp: a follower restarted under its old id with
// its data directory removed gets the whole log back, before anything more
// is written (the leader used to take its rejection for a stale one and
// leave it behind for good, and then to learn of it only at its next write).
func TestWipedFollowerCatchesUp(t *testing.T) {
	x := mustStart(t)
	leader := x.mustLeader("")
	victim := x.followers(leader)[0]
	want := map[string]string{}
	for i := range 20 {
		k := fmt.Sprintf("before-%d", i)
		x.mustPut(k, k, client.WriteOptions{Ack: "sync"})
		want[k] = k
	}
	x.waitStale(victim, want)
	if err := x.c.Stop(victim); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(x.c.NodeDir(x.node(victim))); err != nil {
		t.Fatal(err)
	}
	if err := x.c.Start(victim); err != nil {
		t.Fatal(err)
	}
	if err := x.c.WaitReady(x.ctx(10*time.Second), victim); err != nil {
		t.Fatal(err)
	}
	// The leader learns of the loss from the follower's answer to a
	// heartbeat: the data comes back with nothing written.
	x.waitStale(victim, want)
	x.mustPut("after", "after", client.WriteOptions{Ack: "majority"})
	want["after"] = "after"
	x.waitStale(victim, want)
}

func TestLeaderKillFailover(t *testing.T) {
	x := mustStart(t)
	old := x.mustLeader("")

	// A writer keeps writing with ack=majority; every acknowledged write must
	// survive the failover.
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			k := fmt.Sprintf("w-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := x.cl.Put(ctx, []byte(k), []byte(k), client.WriteOptions{Ack: "majority", Timeout: 2 * time.Second})
			cancel()
			if err == nil {
				mu.Lock()
				acked[k] = k
				mu.Unlock()
			}
		}
	})
	time.Sleep(300 * time.Millisecond)
	killedAt := time.Now()
	if err := x.c.Kill(old); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	leader := x.mustLeader(old)
	elected := time.Since(killedAt)
	// Writes resume on the new leader.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n > before+20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume after failover (%d acked before the kill, %d now)", before, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("kill -9 of %s: %s elected after %v; %d writes acknowledged", old, leader, elected.Round(time.Millisecond), len(acked))

	// No acknowledged majority write is lost.
	for k, v := range acked {
		r, err := x.cl.Get(x.ctx(5*time.Second), []byte(k), client.ReadOptions{})
		if err != nil || string(r.Value) != v {
			t.Fatalf("acknowledged write %s lost after failover: %q %v", k, r.Value, err)
		}
	}
	// The old leader rejoins as a follower and catches up.
	if err := x.c.Start(old); err != nil {
		t.Fatal(err)
	}
	x.waitStale(old, acked)
	st, err := x.c.Status(x.ctx(2*time.Second), old)
	if err != nil || st.Role != "follower" {
		t.Fatalf("old leader after rejoin: %+v %v", st, err)
	}
}

// TestAsyncRollback forces divergence with real processes: both followers
// are killed, the leader takes async writes (acknowledged after its own
// fsync only), then it is killed; the followers restart, elect a leader and
// take writes; the old leader restarts and must truncate and journal every
// async write it acknowledged.
//
// Killing the followers (rather than SIGSTOPping them) matters: a stopped
// process's socket still receives the leader's appends into its kernel
// buffer, and it would read them on SIGCONT, replicating the "lost" writes.
func TestAsyncRollback(t *testing.T) {
	x := mustStart(t)
	old := x.mustLeader("")
	x.mustPut("base", "1", client.WriteOptions{Ack: "sync"})
	fs := x.followers(old)
	for _, f := range fs {
		if err := x.c.Kill(f); err != nil {
			t.Fatal(err)
		}
	}
	lc := x.nodeClient(old, 0)
	var lost []string
	for i := range 5 {
		k := fmt.Sprintf("async-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := lc.Put(ctx, []byte(k), []byte("doomed"), client.WriteOptions{Ack: "async"})
		cancel()
		if err != nil {
			t.Logf("async write %s refused (leader stepping down?): %v", k, err)
			break
		}
		if res.Durability != "async" || res.Replicas != 0 {
			t.Fatalf("async write %s: %+v", k, res)
		}
		lost = append(lost, k)
	}
	if len(lost) == 0 {
		t.Fatal("the isolated leader acknowledged no async write; cannot test rollback")
	}
	if err := x.c.Kill(old); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if err := x.c.Start(f); err != nil {
			t.Fatal(err)
		}
	}
	newLeader := x.mustLeader(old)
	x.mustPut("after", "2", client.WriteOptions{Ack: "majority"})
	for i := range 10 {
		x.mustPut(fmt.Sprintf("after-%d", i), "x", client.WriteOptions{Ack: "majority"})
	}
	if err := x.c.Start(old); err != nil {
		t.Fatal(err)
	}
	x.waitStale(old, map[string]string{"base": "1", "after": "2", "after-9": "x"})
	rbs, err := x.cl.Rollbacks(x.ctx(5*time.Second), x.node(old).HTTP)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]client.Rollback{}
	for _, r := range rbs {
		got[r.Key] = r
	}
	for _, k := range lost {
		r, ok := got[k]
		if !ok {
			t.Fatalf("async write %s lost in the failover is not in %s's rollback journal: %+v", k, old, rbs)
		}
		if r.Op != "put" || r.Value != "doomed" {
			t.Fatalf("journaled %+v, want a put of %q", r, "doomed")
		}
		if _, err := x.cl.Get(x.ctx(5*time.Second), []byte(k), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("rolled-back key %s: %v, want not found", k, err)
		}
	}
	t.Logf("%d async writes acknowledged by isolated %s, rolled back and journaled after %s took over", len(lost), old, newLeader)
}

func TestSyncTimeoutSemiSyncContinues(t *testing.T) {
	x := mustStart(t)
	leader := x.mustLeader("")
	down := x.followers(leader)[0]
	if err := x.c.Kill(down); err != nil {
		t.Fatal(err)
	}
	_, err := x.cl.Put(x.ctx(10*time.Second), []byte("s"), []byte("v"), client.WriteOptions{Ack: "sync", Timeout: 500 * time.Millisecond})
	var ce *client.Error
	if !errors.Is(err, client.ErrWriteTimeout) || !errors.As(err, &ce) || ce.Status != 504 {
		t.Fatalf("sync write with %s down: %v, want a 504 timeout", down, err)
	}
	if ce.Result == nil || ce.Result.Index == 0 || ce.Result.Replicas != 1 || ce.Result.Durability == "sync" || !ce.Result.Committed {
		t.Fatalf("a timed-out sync write must say what it reached: %+v", ce.Result)
	}
	if !strings.Contains(ce.Message, "not final") || !strings.Contains(ce.Message, "leader and 1 follower") {
		t.Fatalf("timeout message %q should say the outcome is not final", ce.Message)
	}
	for i := range 10 {
		res := x.mustPut(fmt.Sprintf("semi-%d", i), "v", client.WriteOptions{Ack: "semi-sync", Replicas: 1, Timeout: 2 * time.Second})
		if res.Replicas < 1 {
			t.Fatalf("semi-sync 1 write reached %d replicas", res.Replicas)
		}
	}
	// With the follower back, sync writes succeed again.
	if err := x.c.Start(down); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := x.cl.Put(x.ctx(5*time.Second), []byte("s2"), []byte("v"), client.WriteOptions{Ack: "sync", Timeout: time.Second})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync write after %s came back: %v", down, err)
		}
	}
}

func TestPlannedTransfer(t *testing.T) {
	x := mustStart(t)
	leader := x.mustLeader("")
	target := x.followers(leader)[1]
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		ok     atomic.Int64
		failed []error
		mu     sync.Mutex
	)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				_, err := x.cl.Put(x.ctx(10*time.Second), []byte(fmt.Sprintf("t%d-%d", w, i)), []byte("v"), client.WriteOptions{Ack: "majority"})
				if err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if err := x.cl.Transfer(x.ctx(10*time.Second), target); err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("transfer to %s: %v", target, err)
	}
	before := ok.Load()
	deadline := time.Now().Add(5 * time.Second)
	for ok.Load() < before+20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d writes failed across a planned transfer (of %d); first: %v", len(failed), ok.Load()+int64(len(failed)), failed[0])
	}
	if ok.Load() <= before {
		t.Fatal("no write succeeded after the transfer")
	}
	if l := x.mustLeader(""); l != target {
		t.Fatalf("leader after transfer %s, want %s", l, target)
	}
}

func TestRedisClients(t *testing.T) {
	x := mustStart(t)
	leader := x.mustLeader("")
	follower := x.followers(leader)[0]
	ctx := x.ctx(30 * time.Second)

	// go-redis against a follower: the write is forwarded to the leader.
	rdb := redis.NewClient(&redis.Options{Addr: x.node(follower).RESP, PoolSize: 1})
	defer rdb.Close()
	if err := rdb.Set(ctx, "r1", "v1", 0).Err(); err != nil {
		t.Fatalf("SET via follower %s: %v", follower, err)
	}
	if v, err := rdb.Get(ctx, "r1").Result(); err != nil || v != "v1" {
		t.Fatalf("GET via follower: %q %v", v, err)
	}
	lrdb := redis.NewClient(&redis.Options{Addr: x.node(leader).RESP, PoolSize: 1})
	defer lrdb.Close()
	if err := lrdb.Do(ctx, "TRIREME.ACK", "async").Err(); err != nil {
		t.Fatal(err)
	}
	if err := lrdb.Set(ctx, "r2", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := lrdb.Wait(ctx, 2, 5*time.Second).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 after an async write: %d %v", n, err)
	}
	info, err := lrdb.Info(ctx, "replication").Result()
	if err != nil || !strings.Contains(info, "role:master") || !strings.Contains(info, "connected_slaves:2") {
		t.Fatalf("leader INFO replication: %v\n%s", err, info)
	}
	for _, f := range x.followers(leader) {
		if !strings.Contains(info, "port="+fmt.Sprint(cluster.Port(x.node(f).RESP))) {
			t.Fatalf("INFO replication does not list %s's RESP port:\n%s", f, info)
		}
	}
	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || role[0] != "slave" || role[2] != int64(cluster.Port(x.node(leader).RESP)) {
		t.Fatalf("follower ROLE: %v %v", role, err)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n < 1 {
		t.Fatalf("DBSIZE: %d %v", n, err)
	}

	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed (apt-get install -y redis-tools); go-redis checks passed")
	}
	host, port, _ := net.SplitHostPort(x.node(follower).RESP)
	run := func(args ...string) string {
		out, err := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := run("SET", "cli", "hello world"); out != "OK" {
		t.Fatalf("redis-cli SET: %q", out)
	}
	if out := run("GET", "cli"); out != "hello world" {
		t.Fatalf("redis-cli GET: %q", out)
	}
	if out := run("INFO", "replication"); !strings.Contains(out, "role:slave") {
		t.Fatalf("redis-cli INFO replication on a follower:\n%s", out)
	}
	// Read-modify-write through a follower, and a session that reads its
	// own writes there.
	for i, want := range []string{"1", "11", "10"} {
		args := [][]string{{"INCR", "ctr"}, {"INCRBY", "ctr", "10"}, {"DECR", "ctr"}}[i]
		if out := run(args...); out != want {
			t.Fatalf("redis-cli %v: %q, want %q", args, out, want)
		}
	}
	if out := run("APPEND", "cli", "!"); out != "12" {
		t.Fatalf("redis-cli APPEND: %q", out)
	}
	if out := run("INCR", "cli"); !strings.Contains(out, "not an integer") {
		t.Fatalf("redis-cli INCR of a string: %q", out)
	}
	if bench, err := exec.LookPath("redis-benchmark"); err == nil {
		lh, lp, _ := net.SplitHostPort(x.node(leader).RESP)
		out, err := exec.CommandContext(ctx, bench, "-h", lh, "-p", lp, "-n", "500", "-c", "4", "-t", "ping,set,get,incr,mset", "-q").CombinedOutput()
		ok := err == nil && !strings.Contains(string(out), "ERR")
		for _, test := range []string{"PING_INLINE:", "SET:", "GET:", "INCR:", "MSET (10 keys):"} {
			ok = ok && strings.Contains(string(out), test)
		}
		if !ok {
			t.Fatalf("redis-benchmark: %v\n%s", err, out)
		}
		t.Logf("redis-benchmark against %s:\n%s", leader, out)
	}
}
