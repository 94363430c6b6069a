package node

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
)

// memberState finds id in a member list.
func memberState(ms []api.MemberStatus, id string) (api.MemberStatus, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return api.MemberStatus{}, false
}

// joinNode adds a node to c the way trireme node --join does: ask a member
// to add it as a learner, then start it with the configuration returned.
func (c *testCluster) joinNode(via int, id string) int {
	t := c.t
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spec := api.MemberSpec{ID: id, Peer: ln.Addr().String(), HTTP: "http." + id + ":80", RESP: "resp." + id + ":6379", Role: api.RoleLearner}
	ms, err := c.nodes[via].AddMember(ctxT(t), spec)
	if err != nil {
		t.Fatalf("add %s through %s: %v", id, c.cfgs[via].ID, err)
	}
	if m, ok := memberState(ms, id); !ok || m.Role != api.RoleLearner {
		t.Fatalf("after adding %s as a learner: %+v", id, ms)
	}
	var conf repl.ConfState
	var members []Member
	for _, m := range ms {
		conf.Members = append(conf.Members, repl.Member{ID: repl.NodeID(m.ID), Learner: m.Role == api.RoleLearner,
			Priority: 1, Peer: m.Peer, HTTP: m.HTTP, RESP: m.RESP})
		members = append(members, Member{ID: m.ID, PeerAddr: m.Peer})
	}
	cfg := testConfig(t, id, members, filepath.Join(t.TempDir(), id))
	cfg.PeerClients = nil
	cfg.ClusterID = c.nodes[via].clusterID
	cfg.JoinConf = &conf
	cfg.PeerListener = ln
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, nil)
	i := len(c.nodes) - 1
	c.start(i)
	return i
}

// TestMembershipChanges: a node joins as a learner and catches up, is
// promoted through a follower (forwarded to the leader), a follower is
// removed and then refuses clients, and removing the leader hands
// leadership over first. Writes keep working throughout.
func TestMembershipChanges(t *testing.T) {
	c := newTestCluster(t, 3, false)
	lead := c.leader()
	for i := range 50 {
		mustPut(t, c.nodes[lead], fmt.Sprintf("k%d", i), "v", api.Ack{Mode: api.AckMajority})
	}
	fol := c.follower(lead)
	n4 := c.joinNode(fol, "n4")
	c.waitStale(n4, "k49", "v")

	// A learner does not count: a sync write still needs the two voters.
	if st := c.nodes[c.leader()].Status(); len(st.Followers) != 3 {
		t.Fatalf("leader tracks %d followers, want 3 (two voters, one learner): %+v", len(st.Followers), st.Followers)
	}

	// Promote through a follower: forwarded to the leader.
	ctx := ctxT(t)
	var ms []api.MemberStatus
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		ms, err = c.nodes[fol].PromoteMember(ctx, "n4")
		if err == nil || !errors.Is(err, api.ErrNotCaughtUp) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("promote n4: %v", err)
	}
	if m, _ := memberState(ms, "n4"); m.Role != api.RoleVoter {
		t.Fatalf("after promotion: %+v", ms)
	}
	if _, err := c.nodes[fol].PromoteMember(ctx, "n4"); !errors.Is(err, api.ErrAlreadyVoter) {
		t.Fatalf("promoting a voter: %v, want ErrAlreadyVoter", err)
	}
	if _, err := c.nodes[fol].RemoveMember(ctx, "n9"); !errors.Is(err, api.ErrUnknownMember) {
		t.Fatalf("removing an unknown member: %v, want ErrUnknownMember", err)
	}
	if _, err := c.nodes[fol].PromoteMember(ctx, "n9"); !errors.Is(err, api.ErrUnknownMember) {
		t.Fatalf("promoting an unknown member: %v, want ErrUnknownMember", err)
	}
	// A duplicate id (other addresses) or a duplicate address: refused,
	// nothing changes.
	n4spec := c.cfgs[n4]
	for _, spec := range []api.MemberSpec{
		{ID: "n4", Peer: "127.0.0.1:1", Role: api.RoleLearner},
		{ID: "n5", Peer: n4spec.Cluster[len(n4spec.Cluster)-1].PeerAddr, Role: api.RoleLearner},
	} {
		if _, err := c.nodes[fol].AddMember(ctx, spec); !errors.Is(err, api.ErrDuplicateMember) {
			t.Fatalf("adding %+v: %v, want ErrDuplicateMember", spec, err)
		}
	}
	if ms, err := c.nodes[fol].Members(ctx); err != nil || len(ms) != 4 {
		t.Fatalf("members after refused changes: %+v, %v", ms, err)
	}
	lead = c.leader()
	mustPut(t, c.nodes[n4], "after-promote", "1", api.Ack{Mode: api.AckSync})
	c.waitStale(n4, "after-promote", "1")

	// Remove a follower that is not n4, asking n4 (a follower or the leader).
	victim := -1
	for i := range 3 {
		if i != lead {
			victim = i
			break
		}
	}
	vid := c.cfgs[victim].ID
	ms, err = c.nodes[n4].RemoveMember(ctx, vid)
	if err != nil {
		t.Fatalf("remove %s through n4: %v", vid, err)
	}
	if _, ok := memberState(ms, vid); ok || len(ms) != 3 {
		t.Fatalf("after removing %s: %+v", vid, ms)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.nodes[victim].Get(ctx, []byte("k1"), api.Stale)
		if errors.Is(err, api.ErrRemoved) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed node %s still serves reads: %v", vid, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.stop(victim)
	mustPut(t, c.nodes[n4], "after-remove", "1", api.Ack{Mode: api.AckMajority})

	// Remove the leader: it hands leadership over first.
	lead = c.leader()
	lid := c.cfgs[lead].ID
	ms, err = c.nodes[lead].RemoveMember(ctx, lid)
	if err != nil {
		t.Fatalf("remove the leader %s: %v", lid, err)
	}
	if _, ok := memberState(ms, lid); ok || len(ms) != 2 {
		t.Fatalf("after removing the leader %s: %+v", lid, ms)
	}
	c.stop(lead)
	nl := c.leader()
	if c.cfgs[nl].ID == lid {
		t.Fatalf("the removed leader %s still leads", lid)
	}
	mustPut(t, c.nodes[nl], "after-leader-removed", "1", api.Ack{Mode: api.AckMajority})
	for i, n := range c.nodes {
		if n != nil {
			c.waitStale(i, "after-leader-removed", "1")
		}
	}
	if got := c.nodes[nl].Status(); len(got.Followers) != 1 {
		t.Fatalf("leader %s lists %d followers after two removals: %+v", got.ID, len(got.Followers), got.Followers)
	}
	if ms, err := c.nodes[nl].Members(ctx); err != nil || len(ms) != 2 {
		t.Fatalf("members after two removals: %+v, %v", ms, err)
	}
}

// TestRemoveLastVoter: the only voter cannot be removed; nothing changes.
func TestRemoveLastVoter(t *testing.T) {
	cfg := soloConfig(t, filepath.Join(t.TempDir(), "data"), []Member{{"n1", "127.0.0.1:7001"}})
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	mustLead(t, n)
	if _, err := n.RemoveMember(ctxT(t), "n1"); !errors.Is(err, api.ErrLastVoter) {
		t.Fatalf("removing the only voter: %v, want ErrLastVoter", err)
	}
	if ms, err := n.Members(ctxT(t)); err != nil || len(ms) != 1 || ms[0].State != api.MemberLeader {
		t.Fatalf("members after the refused removal: %+v, %v", ms, err)
	}
	mustPut(t, n, "k", "v", api.Ack{Mode: api.AckMajority})
}
