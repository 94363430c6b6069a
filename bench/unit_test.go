package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Repo = "/somewhere"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config with a repo: %v", err)
	}
	withPatroni := ok
	withPatroni.Systems = AllSystems
	if err := withPatroni.Validate(); err != nil {
		t.Fatalf("every system: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no sizes", func(c *Config) { c.Profile.ValueSizes = nil }, "ValueSizes"},
		{"zero clients", func(c *Config) { c.Profile.Clients = []int{0} }, "Clients"},
		{"no duration", func(c *Config) { c.Profile.Duration = 0 }, "Duration"},
		{"no keys", func(c *Config) { c.Profile.Keys = 0 }, "Keys"},
		{"no trials", func(c *Config) { c.Profile.FailoverTrials = 0 }, "FailoverTrials"},
		{"no learner trials", func(c *Config) { c.Profile.LearnerTrials = 0 }, "LearnerTrials"},
		{"no phase window", func(c *Config) { c.Profile.PhaseWindow = 0 }, "PhaseWindow"},
		{"no false-failover duration", func(c *Config) { c.Profile.FalseFailoverDuration = 0 }, "FalseFailoverDuration"},
		{"no stall interval", func(c *Config) { c.Profile.StallEvery = -time.Second }, "StallEvery"},
		{"no multi-leader write rate", func(c *Config) { c.Profile.MLWriteRate = 0 }, "MLWriteRate"},
		{"no partition", func(c *Config) { c.Profile.MLPartition = 0 }, "MLPartition"},
		{"unknown system", func(c *Config) { c.Systems = []string{"mysql"} }, "Systems"},
		{"unknown part", func(c *Config) { c.Parts = []string{"fuzz"} }, "Parts"},
		{"no binary", func(c *Config) { c.Repo = "" }, "TriremeBin"},
		{"unknown peer TLS", func(c *Config) { c.PeerTLS = "maybe" }, "PeerTLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Profile.Clients = append([]int(nil), ok.Profile.Clients...)
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestAddPeersAndTargets(t *testing.T) {
	rs := []LoadResult{
		{System: "trireme", Variant: "majority", Workload: "write", ValueBytes: 100, Clients: 64, OpsPerSec: 3000, P50us: 1000, P99us: 4000, P999us: 8000},
		{System: "etcd", Variant: "put", Workload: "write", ValueBytes: 100, Clients: 64, OpsPerSec: 1000, P50us: 2000, P99us: 5000, P999us: 8000},
		{System: "trireme", Variant: "async", Workload: "write", ValueBytes: 100, Clients: 64, OpsPerSec: 1000},
		{System: "redis", Variant: "SET", Workload: "write", ValueBytes: 100, Clients: 16, OpsPerSec: 1000}, // other clients: no peer
	}
	AddPeers(rs)
	if rs[0].Peer != "etcd put" || rs[0].ThroughputRatio != 3 || rs[0].P50Ratio != 0.5 || rs[0].P99Ratio != 0.8 || rs[0].P999Ratio != 1 {
		t.Errorf("majority vs etcd: %+v", rs[0])
	}
	if rs[2].Peer != "" || rs[2].ThroughputRatio != 0 {
		t.Errorf("async has no Redis run at 64 clients, got peer %q ratio %v", rs[2].Peer, rs[2].ThroughputRatio)
	}
	res := &Results{Load: rs, Failover: []FailoverResult{{System: "trireme", Variant: "fixed", TrialsMs: []float64{300}, MedianMs: 300}, {System: "etcd", TrialsMs: []float64{1000}, MedianMs: 1000}}}
	met := map[string]string{}
	for _, tg := range CheckTargets(res) {
		met[tg.Name] = tg.Met
	}
	if got := met["majority writes vs etcd put, 100 B, 64 clients"]; got != "yes" {
		t.Errorf("majority target: %q, want yes (3x, lower p99)", got)
	}
	if got := met["async writes vs Redis SET, 100 B, 64 clients"]; got != "not measured" {
		t.Errorf("async target: %q, want not measured", got)
	}
	if got := met["failover (kill -9 of the leader to the first acknowledged write)"]; got != "yes" {
		t.Errorf("failover target: %q, want yes (300 <= 1000/2)", got)
	}
	res.Failover[0].MedianMs = 600
	for _, tg := range CheckTargets(res) {
		if strings.HasPrefix(tg.Name, "failover") && tg.Met != "no" {
			t.Errorf("failover 600 vs 1000 ms: met %q, want no", tg.Met)
		}
	}
}

func TestChartSVG(t *testing.T) {
	c := Chart{Title: "a <b>", XLabel: "clients", YLabel: "ops/s", XLog: true, YLog: true, Series: []Series{
		{Name: "trireme async", Points: [][2]float64{{1, 1000}, {64, 10000}}},
		{Name: "redis SET", Points: [][2]float64{{1, 3000}, {64, 40000}}},
	}}
	svg := c.SVG()
	for _, want := range []string{"<svg", "a &lt;b&gt;", "trireme async", `stroke-dasharray="6,4"`, "</svg>"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 2 {
		t.Errorf("%d lines drawn, want 2", n)
	}
	if empty := (Chart{Title: "none"}).SVG(); !strings.Contains(empty, "no data") {
		t.Errorf("empty chart: %s", empty)
	}
}

func TestProcCPUAndRSS(t *testing.T) {
	pid := os.Getpid()
	c0, err := procCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Spin until procCPU shows 30ms more (it counts in 10ms ticks), for at
	// most 5s of wall time: the machine may be shared.
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	var c1 time.Duration
	for time.Now().Before(deadline) {
		for range 1000000 {
			x++
		}
		if c1, err = procCPU(pid); err != nil {
			t.Fatal(err)
		}
		if c1-c0 >= 30*time.Millisecond {
			break
		}
	}
	if c1-c0 < 30*time.Millisecond {
		t.Errorf("spinning for 5s: CPU went from %v to %v only (loop ran %d times)", c0, c1, x)
	}
	rss, err := RSS(pid)
	if err != nil || rss < 1<<20 {
		t.Errorf("RSS = %d, %v; want over 1 MiB", rss, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("procCPU(-1) succeeded")
	}
}

// TestTargetsFromRounds checks that interleaved rounds decide a target by the
// median of their per-round ratios, over the main run's single pair, and
// that a round missing one side is left out.
func TestTargetsFromRounds(t *testing.T) {
	w := func(system, variant string, size, round int, ops, p99 float64) LoadResult {
		return LoadResult{System: system, Variant: variant, Workload: "write", ValueBytes: size, Clients: 64, Round: round, OpsPerSec: ops, P99us: p99}
	}
	res := &Results{
		Load: []LoadResult{
			w("trireme", "sync", 100, 0, 900, 0), w("redis", "SET+WAIT 2", 100, 0, 1000, 0), // main run: 0.9x
			w("trireme", "majority", 100, 0, 3000, 10), w("etcd", "put", 100, 0, 1000, 20), // main run: 3x, lower p99
		},
		Rounds: []LoadResult{
			// sync rounds: ratios 1.1, 0.8, 1.2 -> median 1.1
			w("trireme", "sync", 100, 1, 1100, 0), w("redis", "SET+WAIT 2", 100, 1, 1000, 0),
			w("redis", "SET+WAIT 2", 100, 2, 1000, 0), w("trireme", "sync", 100, 2, 800, 0),
			w("trireme", "sync", 100, 3, 1200, 0), w("redis", "SET+WAIT 2", 100, 3, 1000, 0),
			w("trireme", "sync", 100, 4, 100, 0), // no peer side: left out
			// majority rounds: ratios 2.5 and 1.5 -> median 2.0, but the median p99 is higher
			w("trireme", "majority", 100, 1, 2500, 30), w("etcd", "put", 100, 1, 1000, 20),
			w("trireme", "majority", 100, 2, 1500, 30), w("etcd", "put", 100, 2, 1000, 20),
		},
	}
	got := map[string]Target{}
	for _, tg := range CheckTargets(res) {
		got[tg.Name] = tg
	}
	s := got["sync writes vs Redis SET+WAIT 2, 100 B, 64 clients"]
	if s.Met != "yes" || !strings.Contains(s.Measured, "median of 3 interleaved rounds") || !strings.Contains(s.Measured, "ratio 1.10x") ||
		!strings.Contains(s.Measured, "rounds 0.80-1.20x") || !strings.Contains(s.Measured, "main run 900 vs 1000 ops/s (0.90x)") {
		t.Errorf("sync target from rounds: %+v", s)
	}
	m := got["majority writes vs etcd put, 100 B, 64 clients"]
	if m.Met != "no" || !strings.Contains(m.Measured, "ratio 2.00x") || !strings.Contains(m.Measured, "p99 0.03 vs 0.02 ms") {
		t.Errorf("majority target from rounds (2.0x but a higher p99): %+v", m)
	}
	if a := got["async writes vs Redis SET, 100 B, 64 clients"]; a.Met != "not measured" {
		t.Errorf("async target without runs: %+v", a)
	}
	if md := Markdown(res, nil); !strings.Contains(md, "## Target rounds") || !strings.Contains(md, "| sync | redis SET+WAIT 2 | 100 B | 2 | 800 | 1000 | 0.80x |") {
		t.Errorf("report lacks the rounds table:\n%s", md)
	}
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestPeerTLSComparison checks the pairing of Trireme's runs with peer TLS
// and without (-peer-tls both) and the report's section, and that the
// targets still compare the runs with TLS.
func TestPeerTLSComparison(t *testing.T) {
	w := func(system, variant string, size, clients, round int, ops, p99, cpu float64) LoadResult {
		return LoadResult{System: system, Variant: variant, Workload: "write", ValueBytes: size, Clients: clients, Round: round,
			OpsPerSec: ops, P99us: p99, P999us: 2 * p99, ServerCPUus: cpu}
	}
	res := &Results{PeerTLS: "both",
		Load: []LoadResult{
			w("trireme", "sync", 1024, 64, 0, 900, 8000, 50), w(TriremeNoTLS, "sync", 1024, 64, 0, 1000, 7000, 45),
			w("trireme", "async", 1024, 64, 0, 2000, 3000, 30), // no twin: no row
		},
		Rounds: []LoadResult{
			// sync: ratios 0.9, 1.0, 0.95 -> median 0.95
			w(TriremeNoTLS, "sync", 1024, 64, 1, 1000, 8000, 44), w("trireme", "sync", 1024, 64, 1, 900, 9000, 48), w("redis", "SET+WAIT 2", 1024, 64, 1, 1000, 5000, 40),
			w("redis", "SET+WAIT 2", 1024, 64, 2, 1000, 5000, 40), w("trireme", "sync", 1024, 64, 2, 1000, 8000, 47), w(TriremeNoTLS, "sync", 1024, 64, 2, 1000, 8000, 45),
			w(TriremeNoTLS, "sync", 1024, 64, 3, 1000, 8000, 46), w("trireme", "sync", 1024, 64, 3, 950, 10000, 49), w("redis", "SET+WAIT 2", 1024, 64, 3, 1000, 5000, 40),
			w(TriremeNoTLS, "majority", 1024, 64, 1, 3000, 4000, 30), w("trireme", "majority", 1024, 64, 1, 2700, 5000, 33), // no peer: TLS table only
		},
	}
	pr := tlsRounds(res, "sync", 1024)
	if len(pr.trireme) != 3 || pr.trireme[0].System != "trireme" || pr.peer[0].System != TriremeNoTLS {
		t.Fatalf("tlsRounds: %+v", pr)
	}
	if on, off := pr.cpu(); on != 48 || off != 45 {
		t.Errorf("CPU medians %v, %v; want 48, 45", on, off)
	}
	if n := len(tlsMainPairs(res)); n != 1 {
		t.Errorf("main pairs: %d, want 1 (sync)", n)
	}
	got := map[string]Target{}
	for _, tg := range CheckTargets(res) {
		got[tg.Name] = tg
	}
	if s := got["sync writes vs Redis SET+WAIT 2, 1024 B, 64 clients"]; !strings.Contains(s.Measured, "ratio 0.95x (rounds 0.90-1.00x)") || s.Met != "no" {
		t.Errorf("sync target (trireme with TLS vs Redis: rounds 0.90, 1.00, 0.95x): %+v", s)
	}
	md := Markdown(res, nil)
	for _, want := range []string{
		"Peer TLS on and off (`-peer-tls both`)",
		"## Peer TLS on vs off",
		"| sync | 1024 B | 3 | 950 | 1000 | 0.95x (0.90-1.00x) | 9.00 | 8.00 | 1.12x | 48 | 45 |",
		"| majority | 1024 B | 1 | 2700 | 3000 | 0.90x (0.90-0.90x) |",
		"| sync | 1024 B | 2 | 1000 | 1000 | 1.00x | 8.00 | 8.00 | 16.00 | 16.00 | 47 | 45 |",
		"| write | sync | 1024 B | 64 | 900 | 1000 | 0.90x | 8.00 | 7.00 | 1.14x | 50 | 45 |",
		"| sync | redis SET+WAIT 2 | 1024 B | 2 | 1000 | 1000 | 1.00x |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	tls, _, _ := strings.Cut(md[strings.Index(md, "## Peer TLS on vs off"):], "## Write workload")
	if strings.Contains(tls, "async") {
		t.Errorf("report compares async without a run without TLS:\n%s", md)
	}
	res.PeerTLS, res.Rounds, res.Load = "on", nil, res.Load[:1]
	if md := Markdown(res, nil); strings.Contains(md, "Peer TLS on vs off") || !strings.Contains(md, "Peer TLS on: ") {
		t.Errorf("report with TLS only:\n%s", md)
	}
}

// TestPeerTLSRunsSelected checks that -only keeps a run without peer TLS
// with its twin, and the order of a target pair's sides.
func TestPeerTLSRunsSelected(t *testing.T) {
	only := func(re string) func(string) bool {
		return func(s string) bool { return strings.Contains(s, re) }
	}
	r := &runner{cfg: Config{Only: only("trireme/write/sync"), Profile: Profile{TargetRounds: 1}}}
	for _, c := range []struct {
		system, variant string
		want            bool
	}{{"trireme", "sync", true}, {TriremeNoTLS, "sync", true}, {TriremeNoTLS, "async", false}, {"redis", "SET", false}} {
		if got := r.selected(c.system, WorkWrite, c.variant); got != c.want {
			t.Errorf("selected(%s, write, %s) = %v, want %v", c.system, c.variant, got, c.want)
		}
	}
	mk := func(name string, names ...string) *system {
		sy := &system{name: name, vs: loadVariants{}}
		for _, n := range names {
			sy.vs[WorkWrite] = append(sy.vs[WorkWrite], Variant{System: name, Name: n})
		}
		return sy
	}
	r.cfg.Only = nil
	systems := []*system{mk("trireme", "async", "sync", "majority"), mk(TriremeNoTLS, "async", "sync", "majority"), mk("etcd", "put")}
	var got []string
	for _, p := range r.targetPairs(systems) {
		var names []string
		for _, v := range p.sides {
			names = append(names, v.System+" "+v.Name)
		}
		got = append(got, strings.Join(names, ", "))
	}
	want := []string{"trireme-notls majority, trireme majority, etcd put", "trireme-notls async, trireme async", "trireme-notls sync, trireme sync"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("target pairs:\n got %q\nwant %q", got, want)
	}
	if pairs := r.targetPairs(systems[:1]); len(pairs) != 0 {
		t.Errorf("Trireme alone: %d target pairs, want none", len(pairs))
	}
}
