package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/client"
)

func TestSummaryAndFormat(t *testing.T) {
	spec, _ := NewSpec(3, 7001)
	c := &Cluster{cfg: Config{Spec: spec}}
	leader := client.Status{ID: "n1", Role: "leader", Term: 4, Leader: "n1", LastIndex: 10, CommitIndex: 10,
		Followers: []client.FollowerInfo{{ID: "n2", LagEntries: 0}, {ID: "n3", LagEntries: 250, LagMillis: 40}}}
	sts := []client.EndpointStatus{
		{Endpoint: "http://127.0.0.1:8001", Status: leader},
		{Endpoint: "http://127.0.0.1:8002", Status: client.Status{ID: "n2", Role: "follower", Term: 4, Leader: "n1", AppliedIndex: 10}},
		{Endpoint: "http://127.0.0.1:8003", Status: client.Status{ID: "n3", Role: "follower", Term: 4, Leader: "n1", AppliedIndex: 3}},
	}
	line, key := c.Summary(sts)
	for _, want := range []string{"leader n1 term 4", "n3 follower (applied 3, lag 250 entries 40ms)"} {
		if !strings.Contains(line, want) {
			t.Fatalf("summary %q lacks %q", line, want)
		}
	}
	// Small index changes do not change the key; a lag class change does.
	sts[1].Status.AppliedIndex = 11
	if _, k := c.Summary(sts); k != key {
		t.Fatalf("key changed on an index change: %q -> %q", key, k)
	}
	sts[0].Status.Followers[1].LagEntries = 0
	_, k2 := c.Summary(sts)
	if k2 == key {
		t.Fatal("key did not change when n3 caught up")
	}
	// A node going down changes the key and shows in the table.
	sts[2] = client.EndpointStatus{Endpoint: "http://127.0.0.1:8003", Err: errors.New("refused")}
	line, k3 := c.Summary(sts)
	if k3 == k2 || !strings.Contains(line, "n3 down") {
		t.Fatalf("down node: %q %q", line, k3)
	}
	table := FormatStatus(sts, map[string]string{"http://127.0.0.1:8003": "n3"})
	if !strings.Contains(table, "n3    down") || !strings.Contains(table, "n2    follower  4     n1") {
		t.Fatalf("table:\n%s", table)
	}
	// No leader.
	sts[0] = client.EndpointStatus{Endpoint: "http://127.0.0.1:8001", Err: errors.New("refused")}
	if line, _ := c.Summary(sts); !strings.HasPrefix(line, "NO LEADER") {
		t.Fatalf("no-leader summary %q", line)
	}
}
