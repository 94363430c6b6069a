package fixedcluster

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/transport"
)

func testCluster() *Cluster {
	return &Cluster{
		Mode: "leaderless", Self: "n1", ClusterID: "c1",
		Nodes:    []Member{{ID: "n1", PeerAddr: "127.0.0.1:7001"}, {ID: "n2", PeerAddr: "127.0.0.1:7002"}, {ID: "n3", PeerAddr: "127.0.0.1:7003"}},
		HTTPAddr: "127.0.0.1:8001", RESPAddr: "127.0.0.1:9001",
		PeerClients: map[string]transport.PeerInfo{"n2": {ID: "n2", HTTPAddr: "127.0.0.1:8002", RESPAddr: "127.0.0.1:9002"}},
	}
}

func TestMembers(t *testing.T) {
	ms, err := testCluster().Members(context.Background())
	if err != nil || len(ms) != 3 {
		t.Fatalf("members: %+v, %v", ms, err)
	}
	for _, m := range ms {
		if m.Role != api.RoleVoter {
			t.Errorf("%s: role %v, want voter", m.ID, m.Role)
		}
	}
	if ms[0].HTTP != "127.0.0.1:8001" || ms[1].RESP != "127.0.0.1:9002" || ms[2].HTTP != "" || ms[2].Peer != "127.0.0.1:7003" {
		t.Errorf("addresses: %+v", ms)
	}
}

func TestChangesRefused(t *testing.T) {
	c := testCluster()
	ctx := context.Background()
	_, e1 := c.AddMember(ctx, api.MemberSpec{ID: "n4"})
	_, e2 := c.PromoteMember(ctx, "n2")
	_, e3 := c.RemoveMember(ctx, "n2")
	for _, err := range []error{e1, e2, e3} {
		if !errors.Is(err, api.ErrNotSupported) || !strings.Contains(err.Error(), "leaderless cluster's members are fixed") {
			t.Errorf("a membership change: %v, want ErrNotSupported naming the mode", err)
		}
	}
}

func TestTCPConfig(t *testing.T) {
	tc := testCluster().TCPConfig()
	if tc.ListenAddr != "127.0.0.1:7001" || tc.ClusterID != "c1" || tc.Self.ID != "n1" || tc.Self.HTTPAddr != "127.0.0.1:8001" {
		t.Errorf("self: %+v", tc)
	}
	if len(tc.Peers) != 2 || tc.Peers["n2"] != "127.0.0.1:7002" || tc.Peers["n3"] != "127.0.0.1:7003" {
		t.Errorf("peers: %v", tc.Peers)
	}
	if tc.Clients["n2"].RESPAddr != "127.0.0.1:9002" {
		t.Errorf("clients: %v", tc.Clients)
	}
}
