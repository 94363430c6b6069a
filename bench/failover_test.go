package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
)

func TestMissingWrites(t *testing.T) {
	ws := []probeWrite{
		{Key: "k1", Value: "v1", Acked: true},
		{Key: "k2", Value: "v2", Acked: true},  // gone
		{Key: "k3", Value: "v3", Acked: true},  // holds another value
		{Key: "k4", Value: "v4", Acked: false}, // never acknowledged: may be gone
		{Key: "k5", Value: "v5", Acked: true},
	}
	found := map[string]string{"k1": "v1", "k3": "v3-other", "k5": "v5"}
	if got, want := missingWrites(ws, found), []string{"k2", "k3"}; !slices.Equal(got, want) {
		t.Errorf("missingWrites = %v, want %v", got, want)
	}
	found["k2"], found["k3"] = "v2", "v3"
	if got := missingWrites(ws, found); len(got) != 0 {
		t.Errorf("every acknowledged write present: missingWrites = %v, want none", got)
	}
	if got := keysOf(ackedWrites(ws)); !slices.Equal(got, []string{"k1", "k2", "k3", "k5"}) {
		t.Errorf("ackedWrites keys = %v", got)
	}
}

func TestFirstAckSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ws := []probeWrite{
		{Issued: at(-20), Done: at(5), Acked: true},   // issued before the kill: not counted
		{Issued: at(0), Done: at(400), Acked: false},  // failed
		{Issued: at(10), Done: at(900), Acked: true},  // acknowledged late
		{Issued: at(300), Done: at(320), Acked: true}, // issued later, acknowledged first
	}
	got, ok := firstAckSince(ws, t0)
	if !ok || !got.Equal(at(320)) {
		t.Errorf("firstAckSince = %v, %v; want %v", got.Sub(t0), ok, 320*time.Millisecond)
	}
	if _, ok := firstAckSince(ws[:2], t0); ok {
		t.Error("no write issued after the kill was acknowledged, but firstAckSince found one")
	}
}

func TestQuantiles(t *testing.T) {
	var xs []float64
	for i := 20; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	med, p90, lo, hi := quantiles(xs)
	if med != 10.5 || p90 != 18 || lo != 1 || hi != 20 {
		t.Errorf("quantiles(1..20) = %v %v %v %v, want 10.5 18 1 20", med, p90, lo, hi)
	}
	if med, p90, lo, hi := quantiles([]float64{7}); med != 7 || p90 != 7 || lo != 7 || hi != 7 {
		t.Errorf("quantiles(7) = %v %v %v %v", med, p90, lo, hi)
	}
	if med, p90, _, _ := quantiles([]float64{3, 1, 2}); med != 2 || p90 != 3 {
		t.Errorf("quantiles(3 1 2): median %v p90 %v, want 2 3", med, p90)
	}
	if med, _, _, hi := quantiles(nil); med != 0 || hi != 0 {
		t.Errorf("quantiles(nil) = %v .. %v, want zeros", med, hi)
	}
	if xs[0] != 20 || xs[19] != 1 {
		t.Errorf("quantiles sorted its input: %v", xs)
	}
	f := FailoverResult{TrialsMs: []float64{400, 300, 500}}
	f.summarize()
	if f.MedianMs != 400 || f.MinMs != 300 || f.MaxMs != 500 {
		t.Errorf("summarize: %+v", f)
	}
}

func TestParseFlagsAndDetectors(t *testing.T) {
	old := "Usage:\n  trireme node --id ID --data DIR\n\nFlags:\n  -ack string\n    \tdefault ack mode: async or majority (default \"majority\")\n" +
		"  -election-timeout duration\n    \tminimum election timeout (randomized up to 2x); >= 3 x --heartbeat (default 300ms)\n" +
		"  -heartbeat duration\n    \tleader heartbeat interval (default 50ms)\n  -insecure-peers\n    \trun the peer port without TLS\n"
	flags := parseFlags(old)
	want := map[string]string{"ack": "majority", "election-timeout": "300ms", "heartbeat": "50ms", "insecure-peers": ""}
	if len(flags) != len(want) {
		t.Errorf("parseFlags(old help) = %v, want %v", flags, want)
	}
	for k, v := range want {
		if got, ok := flags[k]; !ok || got != v {
			t.Errorf("flag %s: %q (listed %v), want %q", k, got, ok, v)
		}
	}
	ds := triremeDetectors(flags)
	if len(ds) != 3 || ds[0].Variant != "fixed" || ds[0].Skip != "" || len(ds[0].Args) != 0 ||
		!strings.Contains(ds[0].Settings, "heartbeat 50ms, election timeout 300ms") {
		t.Errorf("fixed without the flag: %+v, want it run without flags", ds[0])
	}
	if ds[1].Skip != "skipped: binary has no --failure-detector" || ds[2].Skip != "skipped: binary has no --election" {
		t.Errorf("adaptive / coordinator without their flags: %q / %q", ds[1].Skip, ds[2].Skip)
	}
	now := old + "  -failure-detector string\n    \thow followers detect a failed leader (default \"adaptive\")\n" +
		"  -election string\n    \twho chooses the leader (default \"quorum\")\n  -election-timeout-min duration\n    \tthe lower bound (default 100ms)\n" +
		"  -coordinator string\n    \twith --election coordinator: the etcd cluster, etcd://HOST:PORT[,HOST:PORT...]\n" +
		"  -coordinator-ttl duration\n    \tthe leadership key's lease (default 2s)\n"
	ds = triremeDetectors(parseFlags(now))
	for _, d := range ds {
		if d.Skip != "" {
			t.Errorf("%s skipped with every flag there: %s", d.Variant, d.Skip)
		}
	}
	if !slices.Equal(ds[0].Args, []string{"--failure-detector", "fixed"}) || !slices.Equal(ds[1].Args, []string{"--failure-detector", "adaptive"}) ||
		!slices.Equal(ds[2].Args, []string{"--election", "coordinator"}) {
		t.Errorf("args: %v / %v / %v", ds[0].Args, ds[1].Args, ds[2].Args)
	}
	if !strings.Contains(ds[1].Settings, "between 100ms and 300ms") || !strings.Contains(ds[2].Settings, "lease 2s") {
		t.Errorf("settings without the defaults: %q / %q", ds[1].Settings, ds[2].Settings)
	}
	if got := coordinatorURL([]string{"http://127.0.0.1:1", "http://127.0.0.1:2"}); got != "etcd://127.0.0.1:1,127.0.0.1:2" {
		t.Errorf("coordinatorURL = %q", got)
	}
}

func TestSentinelConf(t *testing.T) {
	s := DefaultSentinelSettings()
	if err := s.Validate(); err != nil {
		t.Fatalf("default settings: %v", err)
	}
	conf := sentinelConf(26379, "/d/s0", "127.0.0.1:6380", s)
	for _, want := range []string{"port 26379\n", "dir /d/s0\n", "sentinel monitor bench 127.0.0.1 6380 2\n",
		"sentinel down-after-milliseconds bench 1000\n", "sentinel failover-timeout bench 5000\n", "sentinel parallel-syncs bench 1\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("sentinel.conf lacks %q:\n%s", want, conf)
		}
	}
	// The monitor line must come before the lines that name its master.
	if strings.Index(conf, "sentinel monitor") > strings.Index(conf, "sentinel down-after") {
		t.Errorf("monitor after down-after-milliseconds:\n%s", conf)
	}
	bad := s
	bad.Quorum = 4
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "Quorum") {
		t.Errorf("quorum 4 of 3 sentinels: %v, want an error naming Quorum", err)
	}
	if !strings.Contains(s.String(), "down-after-milliseconds 1000") {
		t.Errorf("settings text %q lacks down-after-milliseconds 1000", s.String())
	}
}

func TestPatroniConfig(t *testing.T) {
	s := DefaultPatroniSettings()
	if err := s.Validate(); err != nil {
		t.Fatalf("default settings: %v", err)
	}
	dir := t.TempDir()
	n := &patroniNode{Name: "pg2", Dir: dir, PGPort: 5433, APIPort: 8009, BinDir: "/usr/lib/postgresql/15/bin",
		EtcdHosts: []string{"127.0.0.1:2379", "127.0.0.1:2381"}}
	conf := patroniConfig(n, s)
	var c struct {
		Scope, Name string
		Etcd3       struct{ Hosts string }
		Restapi     struct{ Listen string }
		Bootstrap   struct {
			DCS struct {
				TTL                  int  `yaml:"ttl"`
				LoopWait             int  `yaml:"loop_wait"`
				RetryTimeout         int  `yaml:"retry_timeout"`
				MaximumLagOnFailover int  `yaml:"maximum_lag_on_failover"`
				SynchronousMode      bool `yaml:"synchronous_mode"`
				PostgreSQL           struct {
					UsePgRewind bool `yaml:"use_pg_rewind"`
				} `yaml:"postgresql"`
			} `yaml:"dcs"`
		}
		PostgreSQL struct {
			Listen         string
			DataDir        string `yaml:"data_dir"`
			BinDir         string `yaml:"bin_dir"`
			Authentication map[string]map[string]string
			Parameters     map[string]string
		} `yaml:"postgresql"`
	}
	if err := yaml.Unmarshal([]byte(conf), &c); err != nil {
		t.Fatalf("patroni.yml is not YAML: %v\n%s", err, conf)
	}
	d := c.Bootstrap.DCS
	if d.TTL != 5 || d.LoopWait != 1 || d.RetryTimeout != 2 || d.MaximumLagOnFailover != 1<<20 || d.SynchronousMode || !d.PostgreSQL.UsePgRewind {
		t.Errorf("dcs: %+v", d)
	}
	if c.Scope != patroniScope || c.Name != "pg2" || c.Etcd3.Hosts != "127.0.0.1:2379,127.0.0.1:2381" || c.Restapi.Listen != "127.0.0.1:8009" {
		t.Errorf("scope %q name %q etcd3 %q restapi %q", c.Scope, c.Name, c.Etcd3.Hosts, c.Restapi.Listen)
	}
	pg := c.PostgreSQL
	if pg.Listen != "127.0.0.1:5433" || pg.DataDir != filepath.Join(dir, "data") || pg.BinDir != n.BinDir ||
		pg.Authentication["superuser"]["password"] != s.Password || pg.Authentication["replication"]["username"] != "replicator" ||
		pg.Parameters["unix_socket_directories"] != dir {
		t.Errorf("postgresql: %+v", pg)
	}
	for _, bad := range []func(*PatroniSettings){
		func(s *PatroniSettings) { s.TTL = 4 * time.Second },             // < 1 + 2 x 2
		func(s *PatroniSettings) { s.LoopWait = 500 * time.Millisecond }, // not whole seconds
	} {
		b := s
		bad(&b)
		if err := b.Validate(); err == nil {
			t.Errorf("settings %+v: no error", b)
		}
	}
	// Patroni itself, where installed, must accept it, but for what a
	// cluster on loopback with no etcd running must fail: connect
	// addresses on 127.0.0.1, etcd not reachable.
	if _, err := exec.LookPath("patroni"); err != nil {
		t.Log("patroni not installed: its own check of the configuration skipped")
		return
	}
	bin, err := postgresBinDir()
	if err != nil {
		t.Logf("PostgreSQL not installed (%v): Patroni's own check of the configuration skipped", err)
		return
	}
	n.BinDir = bin
	path := filepath.Join(dir, "patroni.yml")
	if err := os.WriteFile(path, []byte(patroniConfig(n, s)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("patroni", "--validate-config", path).CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "must not contain \"127.0.0.1\"") && !strings.Contains(l, "is not reachable") {
			t.Errorf("patroni --validate-config: %s", l)
		}
	}
}

func TestPatroniWhole(t *testing.T) {
	lag0 := any(float64(0))
	ok := []patroniMember{{Name: "pg1", Role: "leader", State: "running", Timeline: 2},
		{Name: "pg2", Role: "replica", State: "streaming", Timeline: 2, Lag: lag0},
		{Name: "pg3", Role: "replica", State: "running", Timeline: 2, Lag: lag0}}
	if err := patroniWhole(ok, 3); err != nil {
		t.Errorf("whole cluster: %v", err)
	}
	tests := map[string]func(ms []patroniMember) []patroniMember{
		"a member short":    func(ms []patroniMember) []patroniMember { return ms[:2] },
		"no leader":         func(ms []patroniMember) []patroniMember { ms[0].Role = "replica"; return ms },
		"lag unknown":       func(ms []patroniMember) []patroniMember { ms[1].Lag = "unknown"; return ms },
		"replica starting":  func(ms []patroniMember) []patroniMember { ms[2].State = "starting"; return ms },
		"old timeline":      func(ms []patroniMember) []patroniMember { ms[2].Timeline = 1; return ms },
		"leader not up yet": func(ms []patroniMember) []patroniMember { ms[0].State = "starting"; return ms },
	}
	for name, edit := range tests {
		if err := patroniWhole(edit(slices.Clone(ok)), 3); err == nil {
			t.Errorf("%s: whole, want an error", name)
		}
	}
}

func TestParseStatParent(t *testing.T) {
	pid, ppid, ok := parseStatParent("4242 (postgres: a (b) c) S 17 4242 4242 0 -1")
	if !ok || pid != 4242 || ppid != 17 {
		t.Errorf("parseStatParent = %d %d %v, want 4242 17 true", pid, ppid, ok)
	}
	if _, _, ok := parseStatParent("garbage"); ok {
		t.Error("parseStatParent(garbage) ok")
	}
}

// fakeSystem is a failoverTarget held in memory: killing its primary
// makes writes fail for downFor and loses the last write acknowledged
// before the kill, as asynchronous replication may.
type fakeSystem struct {
	mu      sync.Mutex
	data    map[string]string
	last    string // the last key acknowledged
	upAt    time.Time
	downFor time.Duration
	lost    []string
}

func (f *fakeSystem) primary(context.Context) (string, error) { return "p", nil }

func (f *fakeSystem) writer(context.Context) (probeWriter, error) { return fakeWriter{f}, nil }

func (f *fakeSystem) kill(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.data, f.last)
	f.lost = append(f.lost, f.last)
	f.upAt = time.Now().Add(f.downFor)
	return nil
}

func (f *fakeSystem) restore(context.Context, string) error { return nil }

func (f *fakeSystem) readBack(_ context.Context, keys []string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := f.data[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

type fakeWriter struct{ f *fakeSystem }

func (w fakeWriter) Write(_ context.Context, key, value string) error {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	if time.Now().Before(w.f.upAt) {
		return errors.New("down")
	}
	w.f.data[key], w.f.last = value, key
	return nil
}

func (fakeWriter) Close() {}

// TestMeasureFailoverFindsLostWrite runs two trials against a system that
// loses the last acknowledged write at each kill and is down for 100 ms:
// the measurement must count one missing write per trial and a time of at
// least 100 ms.
func TestMeasureFailoverFindsLostWrite(t *testing.T) {
	fs := &fakeSystem{data: map[string]string{}, downFor: 100 * time.Millisecond}
	f := FailoverResult{System: "fake"}
	var lines []string
	if err := measureFailover(context.Background(), fs, &f, "fake", 2, func(s string) { lines = append(lines, s) }); err != nil {
		t.Fatal(err)
	}
	if len(f.TrialsMs) != 2 || len(lines) != 2 {
		t.Fatalf("%d trials, %d progress lines, want 2 and 2", len(f.TrialsMs), len(lines))
	}
	for _, ms := range f.TrialsMs {
		if ms < 100 || ms > 5000 {
			t.Errorf("trial took %v ms, want 100 ms (the outage) plus at most the probe's 10 ms and scheduling", ms)
		}
	}
	if f.MissingWrites != 2 || !slices.Equal(f.MissingByTrial, []int{1, 1}) || !slices.Equal(f.MissingKeys, fs.lost) {
		t.Errorf("missing %d %v %v, want 1 per trial: %v", f.MissingWrites, f.MissingByTrial, f.MissingKeys, fs.lost)
	}
	if f.AckedWrites < 40 {
		t.Errorf("%d acknowledged writes over two trials of about 1 s at one per 10 ms", f.AckedWrites)
	}
	if f.MedianMs == 0 || f.MaxMs < f.MinMs {
		t.Errorf("not summarized: %+v", f)
	}
}

func TestFailoverReport(t *testing.T) {
	res := &Results{Failover: []FailoverResult{
		{System: "trireme", Variant: "fixed", TrialsMs: []float64{300, 500}, MedianMs: 400, P90Ms: 500, MinMs: 300, MaxMs: 500,
			AckedWrites: 300, Settings: "heartbeat 50 ms", Probe: "RESP SET"},
		{System: "trireme", Variant: "adaptive", Skipped: "skipped: binary has no --failure-detector"},
		{System: "redis", Variant: "sentinel", TrialsMs: []float64{3050}, MedianMs: 3050, P90Ms: 3050, MinMs: 3050, MaxMs: 3050,
			AckedWrites: 100, MissingWrites: 2, MissingByTrial: []int{2}, MissingKeys: []string{"fo-redis-1-000049", "fo-redis-1-000050"}},
	}, FalseFailover: []FalseFailoverRun{
		{Variant: "fixed", Scenario: falseJitter, Seconds: 300, ElectionsStarted: 1, TermChange: 1, LeaderChanges: 1, OpsPerSec: 5000},
		{Variant: "fixed", Scenario: falseStalls, Seconds: 300, Stalls: 10, StallMs: 200, StallEveryS: 30, OpsPerSec: 4000},
		{Variant: "adaptive", Scenario: falseJitter, Skipped: "skipped: binary has no --failure-detector"},
	}}
	md := Markdown(res, nil)
	for _, want := range []string{
		"| Trireme, fixed failure detector | 2 | 400 | 500 | 300 | 500 | 0 of 300 |",
		"| Trireme, adaptive failure detector | – | not measured (skipped: binary has no --failure-detector) |",
		"| Redis Sentinel | 1 | 3050 | 3050 | 3050 | 3050 | 2 of 100 |",
		"first missing keys: fo-redis-1-000049, fo-redis-1-000050",
		"| fixed | jitter | 300 | 0 | 1 | 1 | 1 | 5000 | 0 |",
		"| fixed | jitter + leader stalls (200 ms every 30 s) | 300 | 10 | 0 | 0 | 0 | 4000 | 0 |",
		"| adaptive | jitter | – | – | not measured (skipped: binary has no --failure-detector) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestAdaptiveTarget(t *testing.T) {
	res := &Results{Failover: []FailoverResult{
		{System: "trireme", Variant: "fixed", TrialsMs: []float64{400}, MedianMs: 400},
		{System: "trireme", Variant: "adaptive", TrialsMs: []float64{120, 140}, MedianMs: 130},
	}, FalseFailover: []FalseFailoverRun{
		{Variant: "fixed", Scenario: falseJitter, ElectionsStarted: 3}, // not the adaptive detector's
		{Variant: "adaptive", Scenario: falseJitter},
		{Variant: "adaptive", Scenario: falseStalls, Stalls: 10},
	}}
	met := func() string {
		for _, tg := range CheckTargets(res) {
			if strings.HasPrefix(tg.Name, "adaptive") {
				return tg.Met
			}
		}
		return "missing"
	}
	if got := met(); got != "yes" {
		t.Errorf("130 ms and no election: %q, want yes", got)
	}
	res.FalseFailover[2].LeaderChanges = 1
	if got := met(); got != "no" {
		t.Errorf("a leader change under stalls: %q, want no", got)
	}
	res.FalseFailover[2].LeaderChanges = 0
	res.Failover[1].MedianMs = 151
	if got := met(); got != "no" {
		t.Errorf("median 151 ms: %q, want no", got)
	}
	res.Failover[1].Skipped, res.Failover[1].TrialsMs = "skipped: binary has no --failure-detector", nil
	if got := met(); got != "not measured" {
		t.Errorf("adaptive skipped: %q, want not measured", got)
	}
}

// TestEtcdTrialNeedsEveryMember checks that the etcd failover trial does not
// kill a leader while a member is already gone (which would leave no quorum
// and measure that instead), and that the error names the dead member.
func TestEtcdTrialNeedsEveryMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd members; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := StartEtcd(ctx, t.TempDir(), 3, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	tg := etcdTarget{e}
	if _, err := tg.primary(ctx); err != nil {
		t.Fatalf("every member up: %v", err)
	}
	e.Kill(1)
	start := time.Now()
	_, err = tg.primary(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("primary with member 1 dead: err %v, want one saying it exited", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a dead member found after %v; want at once", d)
	}
	if d := tg.diagnose(ctx); !strings.Contains(d, "member 1 not running") || !strings.Contains(d, "member 0: leader") {
		t.Errorf("diagnose = %q", d)
	}
}
