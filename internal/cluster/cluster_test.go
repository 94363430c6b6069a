package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/pki"
)

// TestMain doubles as a fake node process: with TRIREME_FAKE_NODE=1 the test
// binary parses the node flags, serves /v1/status on --http (n1 leads, the
// others follow) and exits 0 on SIGTERM. The fake leader also serves
// /v1/members: the voters of --cluster, and the learners that joined. A
// fake node with --join first asks to be added as a learner (POST
// /v1/members), or exits 1 if its id is $TRIREME_FAKE_FAIL.
func TestMain(m *testing.M) {
	if os.Getenv("TRIREME_FAKE_NODE") == "1" {
		os.Exit(fakeNode(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeNode(args []string) int {
	if len(args) == 0 || args[0] != "node" {
		fmt.Fprintln(os.Stderr, "fake node: want 'node' subcommand")
		return 2
	}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	id := fs.String("id", "", "")
	data := fs.String("data", "", "")
	httpAddr := fs.String("http", "", "")
	clusterFlag := fs.String("cluster", "", "")
	join := fs.String("join", "", "")
	learner := fs.Bool("learner", false, "")
	peer := fs.String("peer", "", "")
	fs.String("resp", "", "")
	fs.String("resp-peers", "", "")
	fs.String("http-peers", "", "")
	tlsDir := fs.String("peer-tls-dir", "", "")
	insecure := fs.Bool("insecure-peers", false, "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	// Like a real node: certificates that load, or an explicit --insecure-peers.
	if *tlsDir != "" {
		if _, err := pki.LoadMember(*tlsDir, *id); err != nil {
			fmt.Fprintln(os.Stderr, "fake node:", err)
			return 2
		}
	} else if !*insecure {
		fmt.Fprintln(os.Stderr, "fake node: neither --peer-tls-dir nor --insecure-peers")
		return 2
	}
	if err := os.MkdirAll(*data, 0o755); err != nil {
		return 1
	}
	if *join != "" {
		if err := fakeJoin(*join, *id, *clusterFlag, *peer, *learner); err != nil {
			fmt.Fprintln(os.Stderr, "fake node:", err)
			return 1
		}
		fmt.Println("fake node", *id, "joined through", *join)
	}
	role := "follower"
	if *id == "n1" {
		role = "leader"
	}
	var mu sync.Mutex
	var members []client.Member
	for _, m := range strings.Split(*clusterFlag, ",") {
		if mid, _, ok := strings.Cut(m, "="); ok {
			members = append(members, client.Member{MemberSpec: client.MemberSpec{ID: mid, Role: client.RoleVoter}})
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/members", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			var m client.MemberSpec
			if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			members = append(members, client.Member{MemberSpec: m})
		}
		json.NewEncoder(w).Encode(members)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"id": *id, "role": role, "term": 3, "leader": "n1"})
	})
	srv := &http.Server{Addr: *httpAddr, Handler: mux}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go srv.ListenAndServe()
	fmt.Println("fake node", *id, "up", "gomaxprocs", runtime.GOMAXPROCS(0))
	<-sig
	fmt.Println("fake node", *id, "stopping")
	srv.Close()
	return 0
}

// fakeJoin asks the fake leader at join to add id as a learner, as
// trireme node --join does; id's peer address is its --cluster entry.
func fakeJoin(join, id, clusterFlag, peer string, learner bool) error {
	if os.Getenv("TRIREME_FAKE_FAIL") == id {
		return errors.New("join refused ($TRIREME_FAKE_FAIL)")
	}
	if !learner {
		return errors.New("a replica must stay a learner (--learner)")
	}
	if p, ok := strings.CutPrefix(clusterFlag, id+"="); ok && !strings.Contains(clusterFlag, ",") {
		peer = p
	}
	if peer == "" {
		return fmt.Errorf("--cluster %q is not %s's own entry only", clusterFlag, id)
	}
	body, _ := json.Marshal(client.MemberSpec{ID: id, Peer: peer, Role: client.RoleLearner})
	resp, err := http.Post(join+"/v1/members", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("join: %s", resp.Status)
	}
	return nil
}

func mustCluster(t *testing.T, n int, opts ...func(*Config)) *Cluster {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRIREME_FAKE_NODE", "1")
	spec, err := FreeSpec(n)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.Spec = exe, t.TempDir(), spec
	cfg.StopTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.StopAll() })
	return c
}

func TestSpec(t *testing.T) {
	s, err := NewSpec(3, 7001)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ClusterFlag(); got != "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003" {
		t.Fatalf("ClusterFlag %q", got)
	}
	if s.Nodes[2].HTTP != "127.0.0.1:8003" || s.Nodes[0].RESP != "127.0.0.1:9001" {
		t.Fatalf("layout %+v", s.Nodes)
	}
	dir := t.TempDir()
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSpec(dir)
	if err != nil || got.ClusterFlag() != s.ClusterFlag() || got.Nodes[1] != s.Nodes[1] {
		t.Fatalf("LoadSpec: %+v %v", got, err)
	}
	if _, err := LoadSpec(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadSpec of an empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, SpecFile), []byte("{nope"), 0o644)
	if _, err := LoadSpec(dir); err == nil || !strings.Contains(err.Error(), SpecFile) {
		t.Fatalf("corrupt cluster.json: %v", err)
	}

	bad := []struct {
		name string
		edit func(*Spec)
	}{
		{"duplicate id", func(s *Spec) { s.Nodes[1].ID = "n1" }},
		{"shared address", func(s *Spec) { s.Nodes[1].HTTP = s.Nodes[0].Peer }},
		{"bad address", func(s *Spec) { s.Nodes[0].RESP = "nowhere" }},
		{"escaping dir", func(s *Spec) { s.Nodes[0].Dir = "../x" }},
		{"id with comma", func(s *Spec) { s.Nodes[0].ID = "a,b" }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := NewSpec(3, 7001)
			tc.edit(&s)
			if err := s.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewSpec(0, 7001); err == nil {
		t.Fatal("0 nodes accepted")
	}
	if _, err := NewSpec(3, 64000); err == nil {
		t.Fatal("ports past 65535 accepted")
	}
}

func TestSupervise(t *testing.T) {
	c := mustCluster(t, 3)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range c.Spec().Nodes {
		if err := c.WaitReady(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := c.WaitLeader(ctx, ""); err != nil || id != "n1" {
		t.Fatalf("leader %q %v", id, err)
	}
	if err := c.Start("n2"); !errors.Is(err, ErrRunning) {
		t.Fatalf("second start: %v", err)
	}
	// Pause: the node stops answering; resume: it answers again.
	if err := c.Pause("n2"); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := c.Status(sctx, "n2"); err == nil {
		t.Fatal("a paused node answered")
	}
	scancel()
	if err := c.Resume("n2"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	// Kill -9.
	done, exitErr, _ := c.Exited("n3")
	if err := c.Kill("n3"); err != nil {
		t.Fatal(err)
	}
	<-done
	if exitErr() == nil || c.Running("n3") {
		t.Fatalf("killed node: running=%v exit=%v", c.Running("n3"), exitErr())
	}
	if err := c.Kill("n3"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("kill of a dead node: %v", err)
	}
	// Restart.
	if err := c.Start("n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	// Stop of a paused node still works (SIGCONT follows SIGTERM).
	c.Pause("n3")
	if err := c.Stop("n3"); err != nil {
		t.Fatalf("clean stop of a paused node: %v", err)
	}
	// Stop of the leader: no leader among the rest.
	if err := c.Stop("n1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("leader after stopping n1: %v", err)
	}
	if err := c.StopAll(); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(c.LogPath("n3"))
	if strings.Count(string(log), "fake node n3 up") != 2 || !strings.Contains(string(log), "stopping") {
		t.Fatalf("n3's log:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), SpecFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node("n9"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("unknown node: %v", err)
	}
}

// FreeAddrs hands out distinct, bindable loopback addresses outside the
// kernel's ephemeral range (where outgoing connections could take them).
func TestFreeAddrs(t *testing.T) {
	addrs, err := FreeAddrs(30)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("address %s handed out twice: %v", a, addrs)
		}
		seen[a] = true
		host, portStr, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || host != "127.0.0.1" || port < freePortLow || port >= freePortHigh {
			t.Fatalf("address %s: want 127.0.0.1 and a port in [%d, %d)", a, freePortLow, freePortHigh)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("address %s is not free: %v", a, err)
		}
		l.Close()
	}
}

// TestNodeProcs checks that Config.NodeProcs becomes each node process's
// GOMAXPROCS, that a GOMAXPROCS in the supervisor's environment wins, and
// that 0 leaves the node Go's default.
func TestNodeProcs(t *testing.T) {
	if SharedProcs(3) < 1 || SharedProcs(0) < 1 || SharedProcs(1) != runtime.NumCPU() {
		t.Fatalf("SharedProcs: 3 nodes %d, 0 nodes %d, 1 node %d (NumCPU %d)", SharedProcs(3), SharedProcs(0), SharedProcs(1), runtime.NumCPU())
	}
	tests := []struct {
		name  string
		procs int
		env   string // GOMAXPROCS of the supervisor ("" = unset)
		want  int
	}{
		{"set", 1, "", 1},
		{"environment wins", 1, "3", 3},
		{"default", 0, "", runtime.NumCPU()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("GOMAXPROCS", tc.env)
			} else if old, ok := os.LookupEnv("GOMAXPROCS"); ok {
				os.Unsetenv("GOMAXPROCS")
				t.Cleanup(func() { os.Setenv("GOMAXPROCS", old) })
			}
			c := mustCluster(t, 1, func(c *Config) { c.NodeProcs = tc.procs })
			if err := c.Start("n1"); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("fake node n1 up gomaxprocs %d\n", tc.want)
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(c.LogPath("n1"))
				if strings.Contains(string(b), "fake node n1 up") {
					if !strings.Contains(string(b), want) {
						t.Fatalf("node log %q, want %q", b, want)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node never started; log %q", b)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	for _, tc := range []struct{ setting, want int }{{0, 0}, {-1, SharedProcs(3)}, {4, 4}} {
		if got, err := Procs(tc.setting, 3); err != nil || got != tc.want {
			t.Fatalf("Procs(%d, 3) = %d, %v; want %d", tc.setting, got, err, tc.want)
		}
	}
	if _, err := Procs(-2, 3); err == nil || !strings.Contains(err.Error(), "-2") {
		t.Fatalf("Procs(-2, 3): %v, want an error naming the setting", err)
	}
	cfg := DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.NodeProcs = "x", t.TempDir(), -1
	cfg.Spec, _ = NewSpec(1, 7001)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "NodeProcs") {
		t.Fatalf("Validate with NodeProcs -1: %v", err)
	}
}

// New creates the CA and one certificate per node in DATA/certs, keeps them
// across restarts, and passes them to every node; InsecurePeers creates none.
func TestPeerCerts(t *testing.T) {
	c := mustCluster(t, 3)
	dir := c.CertDir()
	if dir != filepath.Join(c.DataDir(), CertsDir) {
		t.Fatalf("CertDir %s", dir)
	}
	var clusterID string
	for _, n := range c.Spec().Nodes {
		m, err := pki.LoadMember(dir, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		clusterID = m.ClusterID
		if m.KeyMode != 0o600 {
			t.Fatalf("%s's key has mode %v", n.ID, m.KeyMode)
		}
		args := strings.Join(c.Args(n), " ")
		if !strings.Contains(args, "--peer-tls-dir "+dir) || strings.Contains(args, "--insecure-peers") ||
			!strings.Contains(args, "--http-peers "+c.Spec().HTTPPeersFlag()) {
			t.Fatalf("args %s", args)
		}
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range c.Spec().Nodes {
		if err := c.WaitReady(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
	}
	c.StopAll()
	// Again on the same directory: the same CA, so the same cluster id.
	cfg := c.cfg
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := pki.LoadMember(c2.CertDir(), "n1"); err != nil || m.ClusterID != clusterID {
		t.Fatalf("after a restart: %v %+v, want cluster id %q", err, m, clusterID)
	}

	// A cluster whose nodes recorded a cluster id before peer TLS keeps it.
	old := mustCluster(t, 1, func(cfg *Config) {
		os.MkdirAll(filepath.Join(cfg.DataDir, "n1"), 0o755)
		os.WriteFile(filepath.Join(cfg.DataDir, "n1", "identity.json"), []byte(`{"node_id":"n1","cluster_id":"0123abcd"}`), 0o644)
	})
	if m, err := pki.LoadMember(old.CertDir(), "n1"); err != nil || m.ClusterID != "0123abcd" {
		t.Fatalf("recorded cluster id: %v %+v", err, m)
	}

	insecure := mustCluster(t, 1, func(cfg *Config) { cfg.InsecurePeers = true })
	if _, err := os.Stat(insecure.CertDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("certificates created with InsecurePeers: %v", err)
	}
	if args := strings.Join(insecure.Args(insecure.Spec().Nodes[0]), " "); !strings.Contains(args, "--insecure-peers") ||
		strings.Contains(args, "--peer-tls-dir") {
		t.Fatalf("insecure args %s", args)
	}
	if err := insecure.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := insecure.WaitReady(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
}
