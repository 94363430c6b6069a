package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

func mustServe(t *testing.T, f *apitest.Fake) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PeerRESP = map[string]string{"n2": "127.0.0.1:6002", "n3": "127.0.0.1:6003"}
	s := New(f, cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after Close", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return ln.Addr().String()
}

func mustClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGoRedisBasics(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	rdb := mustClient(t, mustServe(t, f))
	ctx := context.Background()

	if v, err := rdb.Ping(ctx).Result(); err != nil || v != "PONG" {
		t.Fatalf("PING: %q %v", v, err)
	}
	if v, err := rdb.Echo(ctx, "hi there").Result(); err != nil || v != "hi there" {
		t.Fatalf("ECHO: %q %v", v, err)
	}
	if err := rdb.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, ok := f.Value("a"); !ok || string(v) != "1" {
		t.Fatalf("service holds %q %v", v, ok)
	}
	if v, err := rdb.Get(ctx, "a").Result(); err != nil || v != "1" {
		t.Fatalf("GET: %q %v", v, err)
	}
	if _, err := rdb.Get(ctx, "missing").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing: %v, want redis.Nil", err)
	}
	if err := rdb.Set(ctx, "b", []byte{0, 0xff, '\r', '\n'}, 0).Err(); err != nil {
		t.Fatal(err)
	}
	vals, err := rdb.MGet(ctx, "a", "missing", "b").Result()
	if err != nil || len(vals) != 3 || vals[0] != "1" || vals[1] != nil || vals[2] != "\x00\xff\r\n" {
		t.Fatalf("MGET: %q %v", vals, err)
	}
	if n, err := rdb.Exists(ctx, "a", "b", "missing", "a").Result(); err != nil || n != 3 {
		t.Fatalf("EXISTS: %d %v", n, err)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 2 {
		t.Fatalf("DBSIZE: %d %v", n, err)
	}
	if n, err := rdb.Del(ctx, "a", "missing").Result(); err != nil || n != 1 {
		t.Fatalf("DEL: %d %v", n, err)
	}
	if _, ok := f.Value("a"); ok {
		t.Fatal("DEL did not delete")
	}
	if n, err := rdb.TTL(ctx, "b").Result(); err != nil || n != -1 {
		t.Fatalf("TTL: %v %v", n, err)
	}
	if err := rdb.Do(ctx, "SELECT", "0").Err(); err != nil {
		t.Fatalf("SELECT 0: %v", err)
	}
	if err := rdb.Do(ctx, "SELECT", "1").Err(); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("SELECT 1: %v", err)
	}
}

func TestSetOptions(t *testing.T) {
	f := apitest.NewFake("n2")
	rdb := mustClient(t, mustServe(t, f))
	ctx := context.Background()
	tests := []struct {
		args    []any
		wantErr string
	}{
		{[]any{"SET", "k", "v", "KEEPTTL"}, ""},
		{[]any{"SET", "k", "v", "EX", "10"}, "expire"},
		{[]any{"SET", "k", "v", "px", "10"}, "expire"},
		{[]any{"SET", "k", "v", "NX", "XX"}, "syntax error"},
		{[]any{"SET", "k", "v", "GET", "PXAT", "1"}, "expire"},
		{[]any{"SET", "k", "v", "BOGUS"}, "syntax error"},
		{[]any{"SET", "k"}, "wrong number of arguments for 'set'"},
		{[]any{"GET"}, "wrong number of arguments for 'get'"},
		{[]any{"GET", "a", "b"}, "wrong number of arguments for 'get'"},
		{[]any{"NOSUCHCMD", "x"}, "unknown command 'NOSUCHCMD', with args beginning with: 'x'"},
		{[]any{"SET", "", "v"}, "empty key"},
		{[]any{"sEt", "k"}, "wrong number of arguments for 'set'"}, // any case
		{[]any{"GETXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "x"}, "unknown command 'GETXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.args...), func(t *testing.T) {
			err := rdb.Do(ctx, tc.args...).Err()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			// The connection survives.
			if err := rdb.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING after error: %v", err)
			}
		})
	}
	if _, n := f.LastWrite(); n != 1 {
		t.Fatalf("only the KEEPTTL SET should have written, service saw %d writes", n)
	}
}

func TestAckMode(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	f.SetDefaultTimeout(50 * time.Millisecond)
	addr := mustServe(t, f)
	ctx := context.Background()
	// One connection, so the per-connection mode applies.
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1})
	defer rdb.Close()

	tests := []struct {
		cmd      []any
		wantMode api.AckMode
		wantReps int
		wantDef  bool
	}{
		{nil, 0, 0, true},
		{[]any{"TRIREME.ACK", "async"}, api.AckAsync, 0, false},
		{[]any{"TRIREME.ACK", "semi-sync", "2"}, api.AckSemiSync, 2, false},
		{[]any{"CLIENT", "ACK", "semi-sync"}, api.AckSemiSync, 1, false},
		{[]any{"client", "ack", "sync"}, api.AckSync, 0, false},
		{[]any{"TRIREME.ACK", "MAJORITY"}, api.AckMajority, 0, false},
		{[]any{"TRIREME.ACK", "default"}, 0, 0, true},
	}
	for i, tc := range tests {
		if tc.cmd != nil {
			if err := rdb.Do(ctx, tc.cmd...).Err(); err != nil {
				t.Fatalf("%v: %v", tc.cmd, err)
			}
		}
		if err := rdb.Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatalf("SET after %v: %v", tc.cmd, err)
		}
		w, _ := f.LastWrite()
		if w.Default != tc.wantDef || (!tc.wantDef && (w.Ack.Mode != tc.wantMode || w.Ack.Replicas != tc.wantReps)) {
			t.Fatalf("after %v the service saw %+v", tc.cmd, w)
		}
	}
	if v, err := rdb.Do(ctx, "TRIREME.ACK").Text(); err != nil || v != "default" {
		t.Fatalf("TRIREME.ACK query: %q %v", v, err)
	}
	for _, bad := range [][]any{
		{"TRIREME.ACK", "fast"},
		{"TRIREME.ACK", "sync", "2"},
		{"TRIREME.ACK", "semi-sync", "0"},
		{"TRIREME.ACK", "semi-sync", "1", "x"},
	} {
		if err := rdb.Do(ctx, bad...).Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR") {
			t.Fatalf("%v: error %v, want ERR", bad, err)
		}
	}

	// A sync write with a follower down times out and says what it reached.
	f.SetDown("n3", true)
	rdb.Do(ctx, "TRIREME.ACK", "sync")
	err := rdb.Set(ctx, "k", "v", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "TIMEOUT") || !strings.Contains(err.Error(), "not final") ||
		!strings.Contains(err.Error(), "leader and 1 follower") {
		t.Fatalf("sync write with a follower down: %v", err)
	}
	// semi-sync 1 goes on.
	rdb.Do(ctx, "TRIREME.ACK", "semi-sync", "1")
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("semi-sync 1 with one follower down: %v", err)
	}
}

func TestServiceErrorReplies(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{api.ErrNoLeader, "CLUSTERDOWN no leader"},
		{fmt.Errorf("x: %w", api.ErrOutcomeUnknown), "UNKNOWN"},
		{api.ErrNotLeader, "READONLY"},
		{api.ErrStopped, "CLUSTERDOWN"},
		{errors.New("disk on fire"), "ERR disk on fire"},
		{fmt.Errorf("leader n1: %w", api.ErrRemoved), "ERR this node was removed from the cluster; connect to a current member"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			f := apitest.NewFake("n2")
			rdb := mustClient(t, mustServe(t, f))
			f.FailNext(tc.err)
			err := rdb.Set(context.Background(), "k", "v", 0).Err()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// TestEverySentinelReply: every error of the classification, as the node
// that served it returns it and as a follower that forwarded the request
// rebuilds it (api.ErrorOf), gets its class's RESP prefix, on a write and on
// a read.
func TestEverySentinelReply(t *testing.T) {
	f := apitest.NewFake("n2")
	c, rd := mustDial(t, mustServe(t, f))
	for _, sentinel := range api.Sentinels() {
		class, code := api.Classify(sentinel)
		for _, err := range []error{fmt.Errorf("%w: detail", sentinel), api.ErrorOf(code, "leader n1: detail")} {
			for _, cmd := range [][]string{{"SET", "k", "v"}, {"GET", "k"}, {"TRIREME.GETCTX", "k"}, {"TRIREME.SETCTX", "k", "c", "v"}} {
				f.FailNext(err)
				mustScript(t, c, rd, []step{{args: cmd, want: "-" + class.RESPPrefix() + " ", prefix: true}})
			}
		}
	}
}

func TestWait(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	addr := mustServe(t, f)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1})
	defer rdb.Close()

	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Wait(ctx, 2, time.Second).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2: %d %v", n, err)
	}
	f.SetDown("n3", true)
	rdb.Do(ctx, "TRIREME.ACK", "async")
	if err := rdb.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := rdb.Wait(ctx, 2, 100*time.Millisecond).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 2 with a follower down: %d %v", n, err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("WAIT returned before its timeout with too few replicas")
	}
	res, err := rdb.Do(ctx, "WAITAOF", "1", "1", "100").Slice()
	if err != nil || len(res) != 2 || res[0] != int64(1) || res[1] != int64(1) {
		t.Fatalf("WAITAOF: %v %v", res, err)
	}
	if err := rdb.Do(ctx, "WAITAOF", "2", "0", "0").Err(); err == nil {
		t.Fatal("WAITAOF numlocal 2 should fail")
	}
	if err := rdb.Do(ctx, "WAIT", "x", "0").Err(); err == nil {
		t.Fatal("WAIT x should fail")
	}
}

func TestIntrospection(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	rdb := mustClient(t, mustServe(t, f))
	ctx := context.Background()
	rdb.Set(ctx, "k", "v", 0)

	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"role:master", "connected_slaves:2",
		"slave0:ip=127.0.0.1,port=6002,state=online,offset=1,lag=0", "slave1:ip=127.0.0.1,port=6003",
		"master_repl_offset:1"} {
		if !strings.Contains(info, want) {
			t.Fatalf("INFO replication lacks %q:\n%s", want, info)
		}
	}
	if strings.Contains(info, "# Server") {
		t.Fatalf("INFO replication returned other sections:\n%s", info)
	}
	all, err := rdb.Info(ctx).Result()
	if err != nil || !strings.Contains(all, "redis_version:") || !strings.Contains(all, "db0:keys=1") {
		t.Fatalf("INFO: %v\n%s", err, all)
	}

	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) != 3 || role[0] != "master" || role[1] != int64(1) {
		t.Fatalf("ROLE: %v %v", role, err)
	}
	f.SetLeader("n2")
	role, err = rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) != 5 || role[0] != "slave" || role[1] != "127.0.0.1" || role[2] != int64(6002) {
		t.Fatalf("follower ROLE: %v %v", role, err)
	}
	info, _ = rdb.Info(ctx, "replication").Result()
	if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_port:6002") {
		t.Fatalf("follower INFO replication:\n%s", info)
	}

	if n, err := rdb.Do(ctx, "COMMAND", "COUNT").Int(); err != nil || n < 20 {
		t.Fatalf("COMMAND COUNT: %d %v", n, err)
	}
	cmds, err := rdb.Command(ctx).Result()
	if err != nil || cmds["get"] == nil || cmds["get"].Arity != 2 || cmds["set"].FirstKeyPos != 1 {
		t.Fatalf("COMMAND: %v", err)
	}
	if err := rdb.Do(ctx, "COMMAND", "DOCS").Err(); err != nil {
		t.Fatalf("COMMAND DOCS: %v", err)
	}
	cfg, err := rdb.ConfigGet(ctx, "save").Result()
	if err != nil || len(cfg) != 1 {
		t.Fatalf("CONFIG GET save: %v %v", cfg, err)
	}
	cfg, err = rdb.ConfigGet(ctx, "append*").Result()
	if err != nil || cfg["appendonly"] != "yes" {
		t.Fatalf("CONFIG GET append*: %v %v", cfg, err)
	}
	if err := rdb.ConfigSet(ctx, "save", "").Err(); err == nil {
		t.Fatal("CONFIG SET should fail")
	}

	if err := rdb.Do(ctx, "CLIENT", "SETNAME", "tester").Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "CLIENT", "GETNAME").Text(); err != nil || n != "tester" {
		t.Fatalf("CLIENT GETNAME: %q %v", n, err)
	}
	if id, err := rdb.ClientID(ctx).Result(); err != nil || id < 1 {
		t.Fatalf("CLIENT ID: %d %v", id, err)
	}
	hello, err := rdb.Do(ctx, "HELLO", "2").Slice()
	if err != nil || len(hello) != 14 || hello[1] != "redis" {
		t.Fatalf("HELLO 2: %v %v", hello, err)
	}
	if err := rdb.Do(ctx, "HELLO", "3").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPROTO") {
		t.Fatalf("HELLO 3: %v", err)
	}
}

// A RESP3-configured go-redis client falls back to RESP2.
func TestGoRedisRESP3Fallback(t *testing.T) {
	f := apitest.NewFake("n2")
	addr := mustServe(t, f)
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3, ClientName: "fallback"})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over a RESP3 client: %v", err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET: %q %v", v, err)
	}
}

func TestPipeline(t *testing.T) {
	f := apitest.NewFake("n2")
	rdb := mustClient(t, mustServe(t, f))
	ctx := context.Background()
	const n = 200
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, fmt.Sprintf("k%d", i), i, 0)
			p.Get(ctx, fmt.Sprintf("k%d", i))
		}
		p.Do(ctx, "NOSUCH")
		p.DBSize(ctx)
		return nil
	})
	if len(cmds) != 2*n+2 {
		t.Fatalf("%d replies, want %d (err %v)", len(cmds), 2*n+2, err)
	}
	for i := range n {
		if v := cmds[2*i+1].(*redis.StringCmd).Val(); v != fmt.Sprint(i) {
			t.Fatalf("pipelined GET k%d = %q", i, v)
		}
	}
	if cmds[2*n].Err() == nil {
		t.Fatal("unknown command in a pipeline should fail")
	}
	if v := cmds[2*n+1].(*redis.IntCmd).Val(); v != n {
		t.Fatalf("DBSIZE after pipeline %d, want %d", v, n)
	}
}

func TestReadConsistency(t *testing.T) {
	f := apitest.NewFake("n2")
	addr := mustServe(t, f)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer rdb.Close()
	ctx := context.Background()
	rdb.Set(ctx, "k", "v", 0)
	f.SetLeader("")
	if err := rdb.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "CLUSTERDOWN") {
		t.Fatalf("linearizable GET without a leader: %v", err)
	}
	if err := rdb.Do(ctx, "READONLY").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("stale GET without a leader: %q %v", v, err)
	}
	if v, _ := rdb.Do(ctx, "TRIREME.CONSISTENCY").Text(); v != "stale" {
		t.Fatalf("consistency %q", v)
	}
	if err := rdb.Do(ctx, "TRIREME.CONSISTENCY", "eventual").Err(); err == nil {
		t.Fatal("bad consistency accepted")
	}
	rdb.Do(ctx, "TRIREME.CONSISTENCY", "linearizable")
	if err := rdb.Get(ctx, "k").Err(); err == nil {
		t.Fatal("linearizable GET without a leader succeeded")
	}
}

// Malformed frames get an error and close that connection only; the server
// and other connections go on.
func TestMalformedFrames(t *testing.T) {
	f := apitest.NewFake("n2")
	addr := mustServe(t, f)
	good := mustClient(t, addr)
	ctx := context.Background()
	if err := good.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	frames := []string{
		"*2\r\n$3\r\nGET\r\n:5\r\n",    // not a bulk
		"*-5\r\n",                      // bad count
		"*1\r\n$-3\r\n",                // bad bulk length
		"*1\r\n$3\r\nGETXX\r\n",        // bulk longer than declared
		"*1\r\n$abc\r\n",               // non-numeric length
		"*x\r\n",                       // non-numeric count
		"SET \"unbalanced v\r\n",       // inline with bad quotes
		"*2\r\n$3\r\nGET\n$1\r\nk\r\n", // missing \r
	}
	for _, fr := range frames {
		t.Run(strings.ReplaceAll(fr, "\r\n", "|"), func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write([]byte(fr)); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "-ERR Protocol error") {
				t.Fatalf("reply %q %v, want -ERR Protocol error", line, err)
			}
			// The connection is closed after a protocol error.
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatal("connection still open after a protocol error")
			}
			if v, err := good.Get(ctx, "k").Result(); err != nil || v != "v" {
				t.Fatalf("other connection after a bad frame: %q %v", v, err)
			}
		})
	}
	// Inline commands (telnet style) work.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "PING\r\nGET k\r\nQUIT\r\n")
	rd := bufio.NewReader(conn)
	for _, want := range []string{"+PONG\r\n", "$1\r\n", "v\r\n", "+OK\r\n"} {
		if line, err := rd.ReadString('\n'); err != nil || line != want {
			t.Fatalf("inline reply %q %v, want %q", line, err, want)
		}
	}
}

func mustTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install -y redis-tools); skipping", name)
	}
	return p
}

func TestRedisCLI(t *testing.T) {
	cli := mustTool(t, "redis-cli")
	f := apitest.NewFake("n2", "n3")
	addr := mustServe(t, f)
	host, port, _ := net.SplitHostPort(addr)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "greeting", "hello world"}, "OK"},
		{[]string{"GET", "greeting"}, "hello world"},
		{[]string{"DBSIZE"}, "1"},
		{[]string{"EXISTS", "greeting", "nope"}, "1"},
		{[]string{"WAIT", "2", "100"}, "2"},
		{[]string{"NOPE"}, "ERR unknown command 'NOPE'"},
		{[]string{"INFO", "replication"}, "connected_slaves:2"},
		{[]string{"DEL", "greeting"}, "1"},
		{[]string{"GET", "greeting"}, ""},
	}
	for _, tc := range tests {
		if out := run(tc.args...); !strings.Contains(out, tc.want) || (tc.want == "" && out != "") {
			t.Fatalf("redis-cli %v = %q, want %q", tc.args, out, tc.want)
		}
	}
}

func TestRedisBenchmark(t *testing.T) {
	bench := mustTool(t, "redis-benchmark")
	f := apitest.NewFake("n2")
	addr := mustServe(t, f)
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bench, "-h", host, "-p", port, "-n", "2000", "-c", "4", "-P", "4",
		"-t", "set,get,ping", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	for _, want := range []string{"SET:", "GET:", "PING_INLINE:"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("redis-benchmark output lacks %s:\n%s", want, out)
		}
	}
	if _, n := f.LastWrite(); n < 2000 {
		t.Fatalf("redis-benchmark SET made %d writes, want >= 2000", n)
	}
	if strings.Contains(string(out), "ERR") {
		t.Fatalf("redis-benchmark saw errors:\n%s", out)
	}
}
