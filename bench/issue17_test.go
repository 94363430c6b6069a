package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRoundOrder(t *testing.T) {
	tests := []struct {
		n, round int
		want     string
	}{
		{3, 1, "[0 1 2]"}, {3, 2, "[2 1 0]"}, {3, 3, "[0 1 2]"}, {2, 4, "[1 0]"}, {1, 2, "[0]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(roundOrder(tc.n, tc.round)); got != tc.want {
			t.Errorf("roundOrder(%d, %d) = %s, want %s", tc.n, tc.round, got, tc.want)
		}
	}
}

func TestCompare(t *testing.T) {
	run := func(system, variant string, round int, ops, p99 float64) LoadResult {
		return LoadResult{System: system, Variant: variant, Round: round, OpsPerSec: ops, P50us: p99 / 4, P99us: p99, P999us: 2 * p99, ServerCPUus: 10, Errors: 1}
	}
	runs := []LoadResult{
		run("trireme", "INCR", 1, 100, 4000), run("redis", "INCR", 1, 200, 1000), run("redis", "INCR+WAIT 2", 1, 100, 2000),
		run("redis", "INCR+WAIT 2", 2, 50, 2000), run("redis", "INCR", 2, 100, 1000), run("trireme", "INCR", 2, 150, 5000),
		run("trireme", "INCR", 3, 120, 6000), run("redis", "INCR", 3, 400, 1000), // no WAIT in round 3
		run("redis", "GET", 1, 1e6, 1),
	}
	c := compare("INCR", runs, []string{"trireme INCR", "redis INCR", "redis INCR+WAIT 2"})
	if len(c.Sides) != 3 {
		t.Fatalf("sides %+v", c.Sides)
	}
	if s := c.Sides[0]; s.Rounds != 3 || s.OpsPerSec != 120 || s.MinOps != 100 || s.MaxOps != 150 || s.P99us != 5000 || s.Errors != 3 {
		t.Errorf("base: %+v", s)
	}
	if s := c.Sides[2]; s.Rounds != 2 || s.OpsPerSec != 75 {
		t.Errorf("WAIT side: %+v (median of 100 and 50 is 75)", s)
	}
	if len(c.Versus) != 2 {
		t.Fatalf("versus %+v", c.Versus)
	}
	// Paired by round, in round order: 100/200, 150/100, 120/400.
	if v := c.Versus[0]; fmt.Sprint(v.Ratios) != "[0.5 1.5 0.3]" || v.Median != 0.5 || v.P99Ratio != 5 {
		t.Errorf("vs redis INCR: %+v", v)
	}
	// Round 3 has no WAIT run: two ratios, 1 and 3; median 2.
	if v := c.Versus[1]; fmt.Sprint(v.Ratios) != "[1 3]" || v.Median != 2 || v.P99Ratio != 2.5 {
		t.Errorf("vs redis INCR+WAIT 2: %+v", v)
	}
	if c := compare("x", runs, []string{"trireme INCR", "etcd put"}); len(c.Versus) != 0 || c.Sides[1].Rounds != 0 {
		t.Errorf("a side that never ran: %+v", c)
	}
}

// lagKV is a kvConn over a map whose reads, when lag is set, miss the
// last write (a replica that has not applied it).
type lagKV struct {
	mu   sync.Mutex
	m    map[string][]byte
	prev map[string][]byte
	lag  bool
	sets int
	gets int
}

func (k *lagKV) Get(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gets++
	if k.lag {
		return k.prev[key], nil
	}
	return k.m[key], nil
}

func (k *lagKV) Set(_ context.Context, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sets++
	k.prev[key] = k.m[key]
	k.m[key] = append([]byte(nil), v...)
	return nil
}

func (k *lagKV) Close() error { return nil }

func TestSessionDoer(t *testing.T) {
	for _, lag := range []bool{false, true} {
		t.Run(fmt.Sprintf("lag=%v", lag), func(t *testing.T) {
			kv := &lagKV{m: map[string][]byte{}, prev: map[string][]byte{}, lag: lag}
			var open atomic.Bool
			d := newSessionDoer(kv, "session-3", "7", 100, 5, &open)
			ctx := context.Background()
			for range 10 { // not measured
				if err := d.Read(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			}
			open.Store(true)
			for range 20 {
				if err := d.Read(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			}
			// 30 calls: writes at 5, 10, ..., 30; a check right after each
			// but the last.
			if kv.sets != 6 || kv.gets != 24 {
				t.Errorf("%d sets, %d gets; want 6 and 24", kv.sets, kv.gets)
			}
			if d.rywChecks != 5 {
				t.Errorf("%d checks, want 5", d.rywChecks)
			}
			if d.reads.Count() != 16 || d.writes.Count() != 4 {
				t.Errorf("measured %d reads, %d writes; want 16 and 4 (calls 11-30)", d.reads.Count(), d.writes.Count())
			}
			v := kv.m["session-3"]
			if len(v) != 100 || !strings.HasPrefix(string(v), "7:session-3:30:") {
				t.Errorf("last value %q (%d B): want 100 B starting with the run, key and write number", v[:min(len(v), 20)], len(v))
			}
			if want := map[bool]uint64{false: 0, true: 5}[lag]; d.rywViolations != want {
				t.Errorf("%d read-your-writes failures, want %d (%s)", d.rywViolations, want, d.firstViolation)
			}
		})
	}
}

func TestSessionRatiosAndSummary(t *testing.T) {
	runs := []SessionRun{
		{Side: SideSession, Round: 1, ReadsPerSec: 300, LeaderCPUusPerRead: 5, Served: map[string]float64{"local": 90, "waited": 10}, RYWChecks: 10},
		{Side: SideLinearizable, Round: 1, ReadsPerSec: 100, LeaderCPUusPerRead: 20, RYWChecks: 5},
		{Side: SideLinearizable, Round: 2, ReadsPerSec: 200, LeaderCPUusPerRead: 20},
		{Side: SideSession, Round: 2, ReadsPerSec: 200, LeaderCPUusPerRead: 10, Served: map[string]float64{"local": 100}, RYWChecks: 10, RYWViolations: 1},
		{Side: SideSession, Round: 3, ReadsPerSec: 400}, // its pair is missing
	}
	reads, cpu := sessionRatios(runs)
	if fmt.Sprint(reads) != "[3 1]" || fmt.Sprint(cpu) != "[0.25 0.5]" {
		t.Errorf("ratios %v, leader CPU ratios %v; want [3 1] and [0.25 0.5]", reads, cpu)
	}
	s := summarizeSessionRuns(SideSession, runs)
	if s.Rounds != 3 || s.ReadsPerSec != 300 || s.MinReads != 200 || s.RYWChecks != 20 || s.RYWViolations != 1 ||
		s.Served["local"] != 190 || s.Served["waited"] != 10 {
		t.Errorf("session side: %+v", s)
	}
	if got := servedString(s.Served); got != "local 95.0%, waited 5.0%" {
		t.Errorf("servedString = %q", got)
	}
	if got := servedString(nil); got != "–" {
		t.Errorf("servedString(nil) = %q", got)
	}
}

func TestLabelValue(t *testing.T) {
	for sample, want := range map[string]string{
		`trireme_session_reads_total{served="local"}`:            "local",
		`trireme_session_reads_total{node="n1",served="waited"}`: "waited",
		`trireme_session_reads_total`:                            "",
		`trireme_session_reads_total{served="open`:               "",
	} {
		if got := labelValue(sample, "served"); got != want {
			t.Errorf("labelValue(%s) = %q, want %q", sample, got, want)
		}
	}
}

func TestHTTPDoer(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]int{}
	var conns atomic.Int64
	hexKey := regexp.MustCompile(`^[0-9a-f]{32}$`)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/kv/bad" {
			http.Error(w, `{"error":"no leader"}`, http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPut || r.URL.Query().Get("ack") != "majority" || r.ContentLength != 5 {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		keys[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
		fmt.Fprint(w, `{"index":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	for _, idem := range []bool{true, false} {
		d := newHTTPDoer(addr, "?ack=majority", "", idem)
		for range 50 {
			if err := d.Write(ctx, "k1", []byte("hello")); err != nil {
				t.Fatal(err)
			}
		}
		err := d.Write(ctx, "bad", []byte("hello"))
		if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no leader") {
			t.Errorf("a 503: error %v, want one quoting the status and the body", err)
		}
		if err := d.Write(ctx, "k1", []byte("hello")); err != nil {
			t.Errorf("after an error reply: %v", err)
		}
		d.Close()
	}
	if keys[""] != 51 {
		t.Errorf("%d writes without a key, want 51", keys[""])
	}
	delete(keys, "")
	if len(keys) != 51 {
		t.Errorf("%d distinct keys, want 51 (one fresh key per write)", len(keys))
	}
	for k, n := range keys {
		if n != 1 || !hexKey.MatchString(k) {
			t.Errorf("key %q sent %d times; want 32 hex digits, once", k, n)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections for 2 doers, want 2 (kept alive)", n)
	}
}

func TestRMWDoerCommand(t *testing.T) {
	d := &rmwDoer{op: OpIncr, keys: 100}
	if got := fmt.Sprint(d.command("k0000007", nil)); got != "[INCR counter:k0000007]" {
		t.Errorf("INCR: %s", got)
	}
	d = &rmwDoer{op: OpMSET, keys: 100, r: newTestRand()}
	args := d.command("k0000007", []byte("v"))
	if len(args) != 1+2*msetKeys || args[0] != OpMSET || args[1] != "k0000007" {
		t.Fatalf("MSET: %v", args)
	}
	for i := 1; i < len(args); i += 2 {
		k, _ := args[i].(string)
		if !regexp.MustCompile(`^k00000[0-9]{2}$`).MatchString(k) || string(args[i+1].([]byte)) != "v" {
			t.Errorf("MSET pair %d: %v %v", i/2, args[i], args[i+1])
		}
	}
}

func TestIssue17Report(t *testing.T) {
	runs := []LoadResult{{System: "trireme", Variant: SideIdemPut, Round: 1, OpsPerSec: 960, P99us: 2000},
		{System: "trireme", Variant: SidePlainPut, Round: 1, OpsPerSec: 1000, P99us: 1000}}
	res := &Results{
		Sessions: &SessionsResult{Rounds: 1, WriteEvery: 20, Ratios: []float64{2}, LeaderCPURatios: []float64{0.25},
			Sides: []SessionSide{summarizeSessionRuns(SideSession, []SessionRun{{Side: SideSession, Round: 1, ReadsPerSec: 300, RYWChecks: 4,
				Served: map[string]float64{"local": 1}}})}},
		Idempotency: &IdempotencyResult{Rounds: 1, Runs: runs,
			Comparison: compare("Idempotency-Key", runs, []string{"trireme " + SideIdemPut, "trireme " + SidePlainPut})},
		RMW: &RMWResult{Rounds: 1, Counters: []CounterCheck{{System: "trireme", Keys: 10, Sum: 12, Acked: 12}}},
	}
	md := Markdown(res, nil)
	for _, s := range []string{"## Session reads on the followers vs linearizable reads on the leader", "| session reads on the followers | 1 | 300 (300-300) |",
		"**median 2.00x**", "**median 0.25x**", "local 100.0%", "## Idempotency keys", "**median 0.96x**", "within 5%): **yes**",
		"## INCR and MSET against Redis", "Redis did not run", "| trireme | 10 | 12 | 12 | 0 | yes |"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
