package main

import (
	"strings"
	"testing"

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
