package chaos

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNamedPeersHosts(t *testing.T) {
	p, err := newNamedPeers([]string{"n1", "n2", "l1"}, 7, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		self string
		want []string // lines the hosts file must hold
	}{
		{"n1", []string{"127.135.0.1 n1.chaos.test", "127.135.1.2 n2.chaos.test", "127.135.1.3 l1.chaos.test"}},
		{"l1", []string{"127.135.3.1 n1.chaos.test", "127.135.3.2 n2.chaos.test", "127.135.0.3 l1.chaos.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.self, func(t *testing.T) {
			b, err := os.ReadFile(p.hostsFile(tt.self))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w+"\n") {
					t.Errorf("hosts of %s lacks %q:\n%s", tt.self, w, b)
				}
			}
		})
	}
	if got, want := p.linkIP("n2", "l1"), "127.135.2.3"; got != want {
		t.Errorf("linkIP(n2, l1) = %s, want %s", got, want)
	}
}

// TestNamedPrefix runs a program the way named-peer nodes run: it must see
// its own /etc/hosts, and the machine's must stay as it was.
func TestNamedPrefix(t *testing.T) {
	if err := CheckNamedPeers(); err != nil {
		t.Skip(err)
	}
	before, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	p, err := newNamedPeers([]string{"n1", "n2"}, 1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir()
	procs, err := NewProcs("cat", map[string][]string{"n2": {"/etc/hosts"}}, logs)
	if err != nil {
		t.Fatal(err)
	}
	procs.SetPrefix("n2", namedPrefix(p.hostsFile("n2")))
	if err := procs.Start("n2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for procs.Running("n2") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := procs.Exited()["n2"]; err != nil {
		t.Fatalf("cat through the prefix: %v", err)
	}
	out, _ := os.ReadFile(procs.LogPath("n2"))
	if !strings.Contains(string(out), "127.129.2.1 n1.chaos.test") || !strings.Contains(string(out), "127.129.0.2 n2.chaos.test") {
		t.Fatalf("n2 did not see its hosts file:\n%s", out)
	}
	after, _ := os.ReadFile("/etc/hosts")
	if string(after) != string(before) {
		t.Fatalf("/etc/hosts changed outside the namespace:\n%s", after)
	}
}

func TestReadJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rollbacks.jsonl")
	// Keys and values are base64 in the journal ("czE=" is "s1", "dzE=" is "w1").
	body := `{"term":3,"index":17,"op":"put","key":"czE=","value":"dzE=","at":"2026-01-01T00:00:00Z"}` + "\n" +
		`{"term":3,"index":18,"op":"delete","key":"czE=","at":"2026-01-01T00:00:00Z"}` + "\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	rbs, err := readJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rollback{{Term: 3, Index: 17, Op: "put", Key: "s1", Value: "w1"}, {Term: 3, Index: 18, Op: "delete", Key: "s1"}}
	if len(rbs) != len(want) || rbs[0] != want[0] || rbs[1] != want[1] {
		t.Fatalf("readJournal = %+v, want %+v", rbs, want)
	}
	if rbs, err := readJournal(filepath.Join(dir, "missing")); err != nil || rbs != nil {
		t.Fatalf("missing journal: %v, %v; want nothing", rbs, err)
	}
}

// fakeNode serves /metrics and /v1/members like a node.
func fakeNode(t *testing.T, metrics string, members func(w http.ResponseWriter, r *http.Request)) *Cluster {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(metrics)) })
	if members != nil {
		mux.HandleFunc("/v1/members", members)
		mux.HandleFunc("/v1/members/", members)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	return &Cluster{Addrs: map[string]NodeAddrs{"n1": {ID: "n1", HTTP: addr}}, http: srv.Client(),
		members: map[string]bool{"n1": false}, log: slog.New(slog.DiscardHandler)}
}

func TestMetric(t *testing.T) {
	c := fakeNode(t, `# HELP trireme_wal_first_index First index still in the WAL.
# TYPE trireme_wal_first_index gauge
trireme_wal_first_index{node="n1"} 1093
trireme_wal_first_index_other 5
trireme_snapshots_received_total{node="n1"} 2
`, nil)
	tests := []struct {
		name  string
		want  float64
		found bool
	}{
		{"trireme_wal_first_index", 1093, true},
		{"trireme_snapshots_received_total", 2, true},
		{"trireme_missing", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok, err := c.Metric(context.Background(), "n1", tt.name)
			if err != nil || v != tt.want || ok != tt.found {
				t.Fatalf("Metric = %v, %v, %v; want %v, %v", v, ok, err, tt.want, tt.found)
			}
		})
	}
	lines, err := c.Metrics(context.Background(), "n1", "snapshot")
	if err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "trireme_snapshots_received_total") {
		t.Fatalf("Metrics(snapshot) = %q, %v", lines, err)
	}
}

func TestMemberCalls(t *testing.T) {
	var got []string
	c := fakeNode(t, "", func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		switch {
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":"another membership change is in progress"}`))
		default:
			w.Write([]byte(`[{"id":"n1","peer":"n1.chaos.test:1","role":"voter","state":"leader","match_index":9},` +
				`{"id":"l1","peer":"l1.chaos.test:2","role":"learner","state":"snapshot","snapshot_bytes_sent":10,"snapshot_bytes_total":20}]`))
		}
	})
	ctx := context.Background()
	r := c.ListMembers(ctx, "n1")
	if r.Code != 200 || r.String() != "200" {
		t.Fatalf("list: %v", r)
	}
	if l1, ok := r.Find("l1"); !ok || l1.Role != "learner" || l1.State != "snapshot" || l1.SnapshotBytesTotal != 20 {
		t.Fatalf("list: l1 = %+v, %v", l1, ok)
	}
	r = c.RemoveMember(ctx, "n1", "l1")
	if r.Code != 409 || r.String() != "409 another membership change is in progress" {
		t.Fatalf("remove: %v", r)
	}
	if want := "DELETE /v1/members/l1?timeout=4s"; got[len(got)-1] != want {
		t.Fatalf("remove sent %q, want %q", got[len(got)-1], want)
	}
	c.Addrs["n2"] = NodeAddrs{ID: "n2", HTTP: "127.0.0.1:1"} // nothing listens
	if r := c.ListMembers(ctx, "n2"); r.Code != 0 || !strings.HasPrefix(r.String(), "no answer: ") {
		t.Fatalf("list from nobody: %v", r)
	}
}

func TestPostpone(t *testing.T) {
	n := &Nemesis{counts: map[string]int{}}
	m := &memberNemesis{n: n, log: slog.New(slog.DiscardHandler), start: time.Now()}
	m.postpone("n1 is in state snapshot", "match 5")
	m.postpone("n1 is in state snapshot", "match 6")
	m.postpone("n2 is in state probe", "match 7")
	got := m.Postponed()
	if len(got) != 2 || !strings.Contains(got[0], "(2 times in a row): n1 is in state snapshot (first match 5; last match 6)") ||
		!strings.Contains(got[1], "(1 times in a row): n2 is in state probe") {
		t.Fatalf("Postponed() = %q", got)
	}
	if n.counts["membership/rejoin-postponed"] != 3 {
		t.Fatalf("counts = %v", n.counts)
	}
}

func TestMembershipConfigValidate(t *testing.T) {
	good := DefaultMembershipConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(*MembershipConfig)
		field string
	}{
		{"no learner", func(c *MembershipConfig) { c.Learner = "" }, "Learner"},
		{"inverted gap", func(c *MembershipConfig) { c.GapMin, c.GapMax = 2*time.Second, time.Second }, "GapMin"},
		{"negative down", func(c *MembershipConfig) { c.DownMin = -1 }, "DownMin"},
		{"no catch-up time", func(c *MembershipConfig) { c.CatchUpTimeout = 0 }, "CatchUpTimeout"},
		{"budget above 1", func(c *MembershipConfig) { c.MaxBelow = 2 }, "MaxBelow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestProcsRetire(t *testing.T) {
	p, err := NewProcs("sleep", map[string][]string{"n1": {"30"}}, t.TempDir())
	if err != nil {
		t.Skip(err)
	}
	defer p.StopAll(time.Second)
	if err := p.Start("n1"); err != nil {
		t.Skip(err)
	}
	if err := p.Retire("n1"); !errors.Is(err, ErrRunning) {
		t.Fatalf("retire a running node: %v, want ErrRunning", err)
	}
	if err := p.Stop("n1", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Exited()["n1"]; !ok {
		t.Fatal("a stopped node is not reported exited")
	}
	if err := p.Retire("n1"); err != nil {
		t.Fatal(err)
	}
	if len(p.Exited()) != 0 {
		t.Fatalf("a retired node is still reported: %v", p.Exited())
	}
	p.SetArgs("n1", []string{"31"})
	if err := p.Start("n1"); err != nil {
		t.Fatalf("start after retire with new args: %v", err)
	}
}
