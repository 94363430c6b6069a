package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/cluster"
)

// statusRoles maps each row of trireme status's table to its ROLE column.
func statusRoles(t *testing.T, out string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 9 {
			if i == 0 && (len(f) < 2 || f[0] != "NODE") {
				t.Fatalf("not a status table:\n%s", out)
			}
			continue
		}
		if _, dup := rows[f[0]]; dup {
			t.Fatalf("%s listed twice:\n%s", f[0], out)
		}
		rows[f[0]] = f[1]
	}
	return rows
}

// TestStatusListsMembers: trireme status lists every member the cluster
// reports, read replicas (learners) included, not only the voters of
// cluster.json or --endpoints; a member that does not answer is down.
func TestStatusListsMembers(t *testing.T) {
	f := apitest.NewFake("n2")
	url := mustNode(t, f)
	r1 := apitest.NewFakeID("r1") // a learner that answers: it follows n1
	r1.SetLeader("n1")
	r1URL := mustNode(t, r1)
	replicas := []cluster.NodeSpec{testNode("r1", 17101, hostPort(r1URL)), testNode("r2", 17111, "")} // r2 is down
	for _, r := range replicas {
		mustLearner(t, url, r)
	}
	dir := t.TempDir()
	mustLayout(t, dir, cluster.Spec{Nodes: []cluster.NodeSpec{testNode("n1", 17001, hostPort(url)), testNode("n2", 17011, "")},
		Replicas: replicas})
	t.Setenv("TRIREME_ENDPOINTS", "")

	code, out, errOut := runCLI("status", "--data", dir)
	want := map[string]string{"n1": "leader", "n2": "down", "r1": "learner", "r2": "down"}
	if got := statusRoles(t, out); code != 0 || !equalRoles(got, want) || errOut != "" {
		t.Fatalf("status --data: %d, roles %v, want %v\n%s%s", code, got, want, out, errOut)
	}
	if !strings.Contains(out, "http://"+testNode("r2", 17111, "").HTTP) {
		t.Fatalf("a member that does not answer should show its endpoint:\n%s", out)
	}

	// Endpoints given by hand: the members the cluster reports all the same.
	code, out, errOut = runCLI("status", "--endpoints", url)
	got := statusRoles(t, out)
	if code != 0 || got["n1"] != "leader" || got["r1"] != "learner" || got["r2"] != "down" || got["n2"] == "" {
		t.Fatalf("status --endpoints: %d, roles %v\n%s%s", code, got, out, errOut)
	}

	// No member list: the read replicas of cluster.json stand in, with a
	// note.
	f.SetRemoved(true)
	code, out, errOut = runCLI("status", "--data", dir, "--wait", "300ms")
	got = statusRoles(t, out)
	if code != 0 || got["r1"] == "" || got["r2"] != "down" || !strings.Contains(errOut, "could not list the members") {
		t.Fatalf("status without a member list: %d, roles %v\n%s%s", code, got, out, errOut)
	}
}

func equalRoles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestStatusMultiLeader: on a multi-leader cluster, trireme status prints a
// row per node with its mode, the end of its own stream, its lag behind
// each peer's stream, its conflicts, clock clamps and largest clock
// offset; a node that does not answer is down.
func TestStatusMultiLeader(t *testing.T) {
	dir, fakes, urls := mustMLCluster(t, []string{"n1", "n2", "n3"}, "n3")
	fakes["n1"].setStreams(2,
		api.StreamInfo{Peer: "n2", Applied: 7, Known: 7, LastContactMs: 20, ClockOffsetMs: 0.4},
		api.StreamInfo{Peer: "n3", Applied: 3, Known: 7, LagEntries: 4, LagMillis: 120, LastContactMs: 12300, ClockOffsetMs: -250})
	fakes["n2"].setStreams(0,
		api.StreamInfo{Peer: "n1", LastContactMs: 30},
		api.StreamInfo{Peer: "n3", LastContactMs: -1})
	for range 3 {
		if _, err := fakes["n1"].Put(context.Background(), []byte("k"), []byte("v"), api.WriteOptions{Default: true}); err != nil {
			t.Fatal(err)
		}
	}
	fakes["n2"].AddConflict(api.ConflictRecord{Node: "n2", Key: []byte("k"), Reason: "lww: higher hybrid timestamp wins"})

	code, out, errOut := runCLI("status", "--data", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("status: %d\n%s%s", code, out, errOut)
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	want := []string{
		"NODE MODE LAST STREAMS CONFLICTS CLAMPS CLOCK-OFFSET ENDPOINT",
		"n1 multi-leader 3 n2:0/0ms n3:4/120ms(silent 12.3s) 0 2 -250.0ms " + urls["n1"],
		"n2 multi-leader 0 n1:0/0ms n3:0/0ms(unheard) 1 0 +0.0ms " + urls["n2"],
		"n3 down - - - - - http://" + testNode("n3", 17221, "").HTTP,
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("status:\n%s\nwant (blanks squeezed):\n%s", out, strings.Join(want, "\n"))
	}
}
