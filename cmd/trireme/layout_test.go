package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/node"
	"github.com/trireme-db/trireme/internal/repl"
)

// hostPort is an httptest URL without its scheme, as cluster.json holds it.
func hostPort(url string) string { return strings.TrimPrefix(url, "http://") }

// testNode is a layout entry on made-up ports from base: nothing listens on
// them unless http is given (the HTTP address of a fake node).
func testNode(id string, base int, http string) cluster.NodeSpec {
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	if http == "" {
		http = addr(base + 1)
	}
	return cluster.NodeSpec{ID: id, Peer: addr(base), HTTP: http, RESP: addr(base + 2), Dir: id}
}

// mustLayout saves spec as dir's cluster.json.
func mustLayout(t *testing.T, dir string, spec cluster.Spec) {
	t.Helper()
	if err := spec.Save(dir); err != nil {
		t.Fatal(err)
	}
}

// mustJoined writes a join record in node n's data directory under dir, as
// internal/node does once a node has joined a cluster through --join.
func mustJoined(t *testing.T, dir string, n cluster.NodeSpec) {
	t.Helper()
	d := filepath.Join(dir, n.Dir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	cs := repl.ConfState{Members: []repl.Member{
		{ID: "n1", Priority: 1, Peer: "127.0.0.1:7001"},
		{ID: repl.NodeID(n.ID), Learner: true, Peer: n.Peer},
	}}
	b, err := json.Marshal(node.JoinState{ClusterID: apitest.FakeClusterID, Conf: repl.EncodeConf(cs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "join.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if js, _, err := node.LoadJoin(d); err != nil || js == nil {
		t.Fatalf("join record of %s: %v %v", n.ID, js, err)
	}
}

// mustLearner adds n to f as a learner.
func mustLearner(t *testing.T, url string, n cluster.NodeSpec) {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddMember(context.Background(), client.MemberSpec{ID: n.ID, Peer: n.Peer, HTTP: n.HTTP, RESP: n.RESP,
		Role: client.RoleLearner}); err != nil {
		t.Fatal(err)
	}
}

// fakeLayout serves a fake leader n1 (follower n2, learners r1 and r2) and
// writes a layout for it in a new directory: n1 at the fake, n2 and the
// replicas on ports where nothing listens.
func fakeLayout(t *testing.T) (*apitest.Fake, string, string, cluster.Spec) {
	f := apitest.NewFake("n2")
	url := mustNode(t, f)
	spec := cluster.Spec{
		Nodes:    []cluster.NodeSpec{testNode("n1", 17001, hostPort(url)), testNode("n2", 17011, "")},
		Replicas: []cluster.NodeSpec{testNode("r1", 17101, ""), testNode("r2", 17111, "")},
	}
	for _, r := range spec.Replicas {
		mustLearner(t, url, r)
	}
	dir := t.TempDir()
	mustLayout(t, dir, spec)
	t.Setenv("TRIREME_ENDPOINTS", "")
	return f, url, dir, spec
}

// TestMemberRemoveDropsReplica: removing a read replica through the layout's
// endpoints drops its entry from cluster.json (and nothing else); a voter's
// entry stays, with a note; endpoints given by hand leave the layout alone.
func TestMemberRemoveDropsReplica(t *testing.T) {
	_, url, dir, _ := fakeLayout(t)
	mustJoined(t, dir, testNode("r1", 17101, ""))

	code, out, errOut := runCLI("member", "remove", "r1", "--data", dir)
	if code != 0 || !strings.Contains(out, "OK: r1 removed") || !strings.Contains(out, "dropped read replica r1") {
		t.Fatalf("member remove r1: %d\n%s%s", code, out, errOut)
	}
	spec, err := cluster.LoadSpec(dir)
	if err != nil || !slices.Equal(spec.ReplicaIDs(), []string{"r2"}) || len(spec.Nodes) != 2 {
		t.Fatalf("layout after removing r1: %+v %v", spec, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "r1", "join.json")); err != nil {
		t.Fatalf("r1's data directory should stay: %v", err)
	}
	// No temporary file left behind by the atomic write.
	if m, _ := filepath.Glob(filepath.Join(dir, cluster.SpecFile+".tmp*")); len(m) > 0 {
		t.Fatalf("left behind: %v", m)
	}

	code, out, errOut = runCLI("member", "remove", "r2", "--endpoints", url, "--data", dir)
	if code != 0 || strings.Contains(out, "dropped") {
		t.Fatalf("member remove r2 --endpoints: %d\n%s%s", code, out, errOut)
	}
	if spec, err := cluster.LoadSpec(dir); err != nil || !slices.Equal(spec.ReplicaIDs(), []string{"r2"}) {
		t.Fatalf("--endpoints should leave the layout alone: %+v %v", spec, err)
	}

	code, out, errOut = runCLI("member", "remove", "n2", "--data", dir)
	if code != 0 || !strings.Contains(errOut, "keeps voter n2") {
		t.Fatalf("member remove n2: %d\n%s%s", code, out, errOut)
	}
	if spec, err := cluster.LoadSpec(dir); err != nil || len(spec.Nodes) != 2 {
		t.Fatalf("a voter's entry should stay: %+v %v", spec, err)
	}
}

func TestRemovedReplicas(t *testing.T) {
	dir := t.TempDir()
	r1, r2, r3 := testNode("r1", 17101, ""), testNode("r2", 17111, ""), testNode("r3", 17121, "")
	spec := cluster.Spec{Nodes: []cluster.NodeSpec{testNode("n1", 17001, "")}, Replicas: []cluster.NodeSpec{r1, r2, r3}}
	mustJoined(t, dir, r1)
	mustJoined(t, dir, r2)
	// r3 never joined: not listed, but new, not removed.
	ms := []client.Member{
		{MemberSpec: client.MemberSpec{ID: "n1", Role: client.RoleVoter}},
		{MemberSpec: client.MemberSpec{ID: "r2", Role: client.RoleVoter}}, // promoted since
	}
	got := removedReplicas(spec, dir, ms)
	if len(got) != 1 || got[0].ID != "r1" {
		t.Fatalf("removed replicas: %+v, want r1", got)
	}
	if got := removedReplicas(spec, dir, append(ms, client.Member{MemberSpec: client.MemberSpec{ID: "r1"}})); len(got) != 0 {
		t.Fatalf("every joined replica listed: %+v, want none", got)
	}
}

// TestUpSkipsRemovedReplica: on a restart, trireme up does not start (and
// wait for) a read replica that joined but that the cluster's members no
// longer list; it says so and drops it from cluster.json.
func TestUpSkipsRemovedReplica(t *testing.T) {
	f, _, dir, spec := fakeLayout(t)
	r3 := testNode("r3", 17121, "")
	spec.Replicas = append(spec.Replicas, r3)
	mustJoined(t, dir, spec.Replicas[0])
	mustJoined(t, dir, spec.Replicas[1])
	mustJoined(t, dir, r3) // joined, then removed: the fake never had it
	cfg := cluster.DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.Spec, cfg.InsecurePeers = "/nonexistent/trireme", dir, spec, true
	cl, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var out, errOut bytes.Buffer
	plan := planReplicas(ctx, cl, cfg, &out, &errOut)
	if !slices.Equal(plan.ids, []string{"r1", "r2"}) || plan.watch == cl {
		t.Fatalf("plan: start %v (watch a new layout: %v)\n%s%s", plan.ids, plan.watch != cl, out.String(), errOut.String())
	}
	for _, want := range []string{"Skipping read replica r3", "no longer list it", "r1 (learner)", filepath.Join(dir, "r3"),
		"Dropped r3 from " + filepath.Join(dir, cluster.SpecFile)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	got, err := cluster.LoadSpec(dir)
	if err != nil || !slices.Equal(got.ReplicaIDs(), []string{"r1", "r2"}) || len(got.Nodes) != 2 {
		t.Fatalf("layout after the skip: %+v %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "r3", "join.json")); err != nil {
		t.Fatalf("r3's data directory should stay: %v", err)
	}

	// Nothing removed: every replica, the cluster watched as it is.
	out.Reset()
	cl, cfg.Spec = plan.watch, got
	if plan = planReplicas(ctx, cl, cfg, &out, &errOut); !slices.Equal(plan.ids, []string{"r1", "r2"}) || plan.watch != cl ||
		strings.Contains(out.String(), "Skipping") {
		t.Fatalf("nothing removed: %v\n%s", plan.ids, out.String())
	}

	// No member list (the only voter that answers refuses): every replica,
	// with a note.
	f.SetRemoved(true)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	errOut.Reset()
	if plan = planReplicas(short, cl, cfg, &out, &errOut); !slices.Equal(plan.ids, []string{"r1", "r2"}) ||
		!strings.Contains(errOut.String(), "could not list the cluster's members") {
		t.Fatalf("no member list: %v\n%s", plan.ids, errOut.String())
	}
}

// TestUpReplicasReuseDir: trireme up refuses a new read replica whose data
// directory holds a node's data (a replica removed earlier under that id).
func TestUpReplicasReuseDir(t *testing.T) {
	dir := t.TempDir()
	spec, err := cluster.NewSpec(3, 17001)
	if err != nil {
		t.Fatal(err)
	}
	if spec, err = spec.WithReplicas(1); err != nil {
		t.Fatal(err)
	}
	mustLayout(t, dir, spec)
	mustJoined(t, dir, cluster.NodeSpec{ID: "r2", Peer: "127.0.0.1:17004", Dir: "r2"})
	code, _, errOut := runCLI("up", "--data", dir, "--replicas", "2")
	if code != 1 || !strings.Contains(errOut, "--replicas 2") || !strings.Contains(errOut, filepath.Join(dir, "r2")) ||
		!strings.Contains(errOut, "holds a node's data") {
		t.Fatalf("up --replicas 2 over r2's old data: %d %q", code, errOut)
	}
	if got, err := cluster.LoadSpec(dir); err != nil || len(got.Replicas) != 1 {
		t.Fatalf("a refused --replicas should leave the layout: %+v %v", got, err)
	}
}
