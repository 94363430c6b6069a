package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/pki"
)

func mustSpec(t *testing.T, voters, base, replicas int) Spec {
	t.Helper()
	s, err := NewSpec(voters, base)
	if err != nil {
		t.Fatal(err)
	}
	if s, err = s.WithReplicas(replicas); err != nil {
		t.Fatal(err)
	}
	return s
}

// Read replicas take the indexes after the voters on the port scheme; the
// voters' flags do not name them.
func TestSpecReplicas(t *testing.T) {
	s := mustSpec(t, 3, 7001, 2)
	want := []NodeSpec{
		{ID: "r1", Peer: "127.0.0.1:7004", HTTP: "127.0.0.1:8004", RESP: "127.0.0.1:9004", Dir: "r1"},
		{ID: "r2", Peer: "127.0.0.1:7005", HTTP: "127.0.0.1:8005", RESP: "127.0.0.1:9005", Dir: "r2"},
	}
	if !slices.Equal(s.Replicas, want) {
		t.Fatalf("replicas %+v, want %+v", s.Replicas, want)
	}
	if got := s.ClusterFlag(); got != "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003" {
		t.Fatalf("ClusterFlag names replicas: %q", got)
	}
	if strings.Contains(s.HTTPPeersFlag()+s.RESPPeersFlag()+strings.Join(s.HTTPEndpoints(), ","), "r1") ||
		strings.Contains(strings.Join(s.HTTPEndpoints(), ","), "8004") {
		t.Fatalf("voter flags name a replica: %q %q %v", s.HTTPPeersFlag(), s.RESPPeersFlag(), s.HTTPEndpoints())
	}
	if !slices.Equal(s.IDs(), []string{"n1", "n2", "n3"}) || !slices.Equal(s.ReplicaIDs(), []string{"r1", "r2"}) ||
		len(s.All()) != 5 || !s.IsReplica("r2") || s.IsReplica("n1") {
		t.Fatalf("ids %v replicas %v all %d", s.IDs(), s.ReplicaIDs(), len(s.All()))
	}

	// More replicas later: the existing ones stay as they are.
	more, err := s.WithReplicas(3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(more.Replicas[:2], want) || more.Replicas[2].Peer != "127.0.0.1:7006" || more.Replicas[2].ID != "r3" {
		t.Fatalf("adding r3: %+v", more.Replicas)
	}
	if len(s.Replicas) != 2 {
		t.Fatalf("WithReplicas changed its receiver: %+v", s.Replicas)
	}
	if same, err := s.WithReplicas(2); err != nil || !slices.Equal(same.Replicas, want) {
		t.Fatalf("WithReplicas(2) of 2: %+v %v", same.Replicas, err)
	}

	// Saved and loaded back.
	dir := t.TempDir()
	if err := more.Save(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadSpec(dir); err != nil || !slices.Equal(got.Replicas, more.Replicas) || !slices.Equal(got.Nodes, more.Nodes) {
		t.Fatalf("LoadSpec: %+v %v", got, err)
	}

	tests := []struct {
		name string
		spec Spec
		r    int
		want error  // errors.Is, or nil for any error
		says string // in the message
	}{
		{"fewer", s, 1, ErrFewerReplicas, "r1, r2"},
		{"none", s, 0, ErrFewerReplicas, "2 in the layout"},
		{"negative", Spec{Nodes: s.Nodes}, -1, nil, "0 to 99"},
		{"past 99", Spec{Nodes: s.Nodes}, 100, nil, "0 to 99"},
		{"past port 65535", mustSpec(t, 3, 65535-2003, 0), 2, nil, "past 65535"},
		{"voters off the scheme", Spec{Nodes: []NodeSpec{s.Nodes[0], {ID: "n2", Peer: "127.0.0.1:1", HTTP: "127.0.0.1:2", RESP: "127.0.0.1:3", Dir: "n2"}}},
			1, ErrNoPortScheme, "by hand"},
		{"replica port taken by a hand-made voter", Spec{Nodes: append(slices.Clone(s.Nodes[:3]), NodeSpec{ID: "x", Peer: "127.0.0.2:1", HTTP: "127.0.0.2:2", RESP: "127.0.0.2:3", Dir: "x"})},
			1, ErrNoPortScheme, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.spec.WithReplicas(tc.r)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("WithReplicas(%d): %v; want %v saying %q", tc.r, err, tc.want, tc.says)
			}
		})
	}

	// Validate looks at voters and replicas together.
	bad := []struct {
		name string
		edit func(*Spec)
	}{
		{"replica with a voter's id", func(s *Spec) { s.Replicas[0].ID = "n2" }},
		{"replica with a voter's address", func(s *Spec) { s.Replicas[1].HTTP = s.Nodes[0].RESP }},
		{"two replicas, one id", func(s *Spec) { s.Replicas[1].ID = "r1" }},
		{"replica dir outside", func(s *Spec) { s.Replicas[0].Dir = "/tmp/r1" }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSpec(t, 3, 7001, 2)
			tc.edit(&s)
			if err := s.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}

	// Voters on free ports: replicas on free ports too.
	fs, err := FreeSpec(3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.WithReplicas(1); !errors.Is(err, ErrNoPortScheme) {
		t.Fatalf("WithReplicas of a FreeSpec: %v", err)
	}
	withFree, err := fs.WithFreeReplicas(2)
	if err != nil || len(withFree.Replicas) != 2 || withFree.Replicas[1].ID != "r2" {
		t.Fatalf("WithFreeReplicas: %+v %v", withFree.Replicas, err)
	}
}

// A cluster.json written before read replicas loads, gets replicas after
// its voters, and a spec without replicas is saved without the field.
func TestLoadSpecBeforeReplicas(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "cluster-before-replicas.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SpecFile), old, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 3 || s.Replicas != nil || !slices.Equal(s.Nodes, mustSpec(t, 3, 7001, 0).Nodes) {
		t.Fatalf("old cluster.json: %+v", s)
	}
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, SpecFile)); !bytes.Equal(again, old) {
		t.Fatalf("saving a spec without replicas changed the file:\n%s\nwas:\n%s", again, old)
	}
	r, err := s.WithReplicas(1)
	if err != nil || r.Replicas[0].Peer != "127.0.0.1:7004" {
		t.Fatalf("replica added to an old layout: %+v %v", r.Replicas, err)
	}
}

// Read replicas get certificates from the cluster CA, also when they are
// added to an existing cluster directory.
func TestReplicaCerts(t *testing.T) {
	c := mustCluster(t, 3)
	n1, err := pki.LoadMember(c.CertDir(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	n1Cert, _ := os.ReadFile(filepath.Join(c.CertDir(), pki.CertFile("n1")))
	cfg := c.cfg
	if cfg.Spec, err = cfg.Spec.WithFreeReplicas(2); err != nil {
		t.Fatal(err)
	}
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2"} {
		m, err := pki.LoadMember(c2.CertDir(), id)
		if err != nil || m.ClusterID != n1.ClusterID || m.KeyMode != 0o600 {
			t.Fatalf("%s: %v %+v; want cluster id %s, key mode 0600", id, err, m, n1.ClusterID)
		}
	}
	if again, _ := os.ReadFile(filepath.Join(c.CertDir(), pki.CertFile("n1"))); !bytes.Equal(again, n1Cert) {
		t.Fatal("adding replicas re-issued n1's certificate")
	}
	if got, err := LoadSpec(c.DataDir()); err != nil || len(got.Replicas) != 2 {
		t.Fatalf("cluster.json after adding replicas: %+v %v", got, err)
	}
}

// A replica starts with only itself in --cluster and joins, as a learner
// that stays one, through a voter.
func TestReplicaArgs(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		c := mustCluster(t, 3, func(cfg *Config) {
			cfg.InsecurePeers = insecure
			cfg.NodeArgs = []string{"--heartbeat", "50ms"}
			var err error
			if cfg.Spec, err = cfg.Spec.WithFreeReplicas(1); err != nil {
				t.Fatal(err)
			}
		})
		r1, err := c.Node("r1")
		if err != nil {
			t.Fatal(err)
		}
		n1 := c.Spec().Nodes[0]
		args := strings.Join(c.Args(r1), " ")
		wantTLS := "--peer-tls-dir " + c.CertDir()
		if insecure {
			wantTLS = "--insecure-peers"
		}
		for _, want := range []string{"node --id r1 --data " + c.NodeDir(r1), "--cluster r1=" + r1.Peer + " ",
			"--join http://" + n1.HTTP + " --learner", "--http " + r1.HTTP, "--resp " + r1.RESP, wantTLS, "--heartbeat 50ms"} {
			if !strings.Contains(args, want) {
				t.Errorf("insecure=%v: args %q lack %q", insecure, args, want)
			}
		}
		if strings.Contains(args, "--http-peers") || strings.Contains(args, "n2=") {
			t.Errorf("replica args name the voters: %q", args)
		}
		if via := strings.Join(c.ReplicaArgs(r1, "127.0.0.1:1"), " "); !strings.Contains(via, "--join http://127.0.0.1:1 ") {
			t.Errorf("ReplicaArgs via: %q", via)
		}
		if voter := strings.Join(c.Args(n1), " "); strings.Contains(voter, "--join") || strings.Contains(voter, "r1") {
			t.Errorf("voter args %q", voter)
		}
	}
}

// StartReplicas starts the replicas once the voters lead, through the
// leader, and returns once the leader lists them; a replica that fails to
// join fails it, naming its log.
func TestStartReplicas(t *testing.T) {
	withReplicas := func(cfg *Config) {
		var err error
		if cfg.Spec, err = cfg.Spec.WithFreeReplicas(2); err != nil {
			t.Fatal(err)
		}
	}
	c := mustCluster(t, 3, withReplicas)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if c.Running("r1") || c.Running("r2") {
		t.Fatal("StartAll started a replica")
	}
	if err := c.StartReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := c.Client().Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := formatMembers(ms); got != "n1 (voter), n2 (voter), n3 (voter), r1 (learner), r2 (learner)" &&
		got != "n1 (voter), n2 (voter), n3 (voter), r2 (learner), r1 (learner)" {
		t.Fatalf("members %s", got)
	}
	log, _ := os.ReadFile(c.LogPath("r1"))
	if !strings.Contains(string(log), "joined through http://"+c.Spec().Nodes[0].HTTP) {
		t.Fatalf("r1's log:\n%s", log)
	}
	// Running replicas are left alone; the line of the watch names them.
	if err := c.StartReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	if line, _ := c.Summary(c.allStatuses(ctx)); !strings.Contains(line, "| r2 follower") {
		t.Fatalf("summary %q", line)
	}
	if err := c.StopAll(); err != nil {
		t.Fatal(err)
	}
	if c.Running("r1") {
		t.Fatal("StopAll left r1 running")
	}

	t.Setenv("TRIREME_FAKE_FAIL", "r2")
	bad := mustCluster(t, 1, withReplicas)
	if err := bad.StartAll(); err != nil {
		t.Fatal(err)
	}
	err = bad.StartReplicas(ctx)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), bad.LogPath("r2")) {
		t.Fatalf("a replica that cannot join: %v", err)
	}
}

// The watch line and the status table call a follower that the leader
// lists as a learner a learner.
func TestSummaryLearners(t *testing.T) {
	c := &Cluster{cfg: Config{Spec: mustSpec(t, 1, 7001, 1)}}
	leader := client.Status{ID: "n1", Role: "leader", Term: 2, Leader: "n1",
		Followers: []client.FollowerInfo{{ID: "r1", LagEntries: 7, Role: client.RoleLearner}}}
	sts := []client.EndpointStatus{
		{Endpoint: "http://127.0.0.1:8001", Status: leader},
		{Endpoint: "http://127.0.0.1:8002", Status: client.Status{ID: "r1", Role: "follower", Term: 2, Leader: "n1", AppliedIndex: 3}},
	}
	if line, key := c.Summary(sts); !strings.Contains(line, "r1 learner (applied 3, lag 7 entries") || !strings.Contains(key, "r1=learner/2/<100") {
		t.Fatalf("summary %q key %q", line, key)
	}
	if table := FormatStatus(sts, nil); !strings.Contains(table, "r1    learner  2") {
		t.Fatalf("table:\n%s", table)
	}
	// Without a leader to say so, a replica is what its status says.
	sts[0] = client.EndpointStatus{Endpoint: "http://127.0.0.1:8001", Err: errors.New("refused")}
	if line, _ := c.Summary(sts); !strings.Contains(line, "r1 follower") {
		t.Fatalf("summary without a leader %q", line)
	}
}
