package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

func memberByID(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

func TestMembers(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	c := mustClient(t, mustNode(t, f))
	ctx := context.Background()
	if _, err := f.Put(ctx, []byte("k"), []byte("v"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}

	ms, err := c.Members(ctx)
	if m, _ := memberByID(ms, "n2"); err != nil || len(ms) != 3 || m.Role != RoleVoter || m.State != "replicate" || m.MatchIndex != 1 {
		t.Fatalf("Members: %+v %v", ms, err)
	}
	n4 := MemberSpec{ID: "n4", Peer: "127.0.0.1:7004", HTTP: "127.0.0.1:8004", RESP: "127.0.0.1:9004", Role: RoleLearner}
	ms, err = c.AddMember(ctx, n4)
	if m, ok := memberByID(ms, "n4"); err != nil || !ok || m.Role != RoleLearner || m.LagEntries != 1 || m.HTTP != "127.0.0.1:8004" {
		t.Fatalf("AddMember: %+v %v", ms, err)
	}
	if _, err := c.AddMember(ctx, n4); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("AddMember twice: %v, want ErrBadRequest (duplicate)", err)
	}

	_, err = c.PromoteMember(ctx, "n4")
	var e *Error
	if !errors.Is(err, ErrNotCaughtUp) || !errors.As(err, &e) || e.Status != http.StatusConflict || !strings.Contains(e.Message, "1 entries behind") {
		t.Fatalf("PromoteMember behind: %v", err)
	}
	f.SetChangeInProgress(true)
	if _, err := c.PromoteMember(ctx, "n4"); !errors.Is(err, ErrChangeInProgress) || errors.Is(err, ErrNotCaughtUp) {
		t.Fatalf("PromoteMember during a change: %v", err)
	}
	f.SetChangeInProgress(false)
	f.SetMemberProgress("n4", 1, "replicate", 0, 0)
	ms, err = c.PromoteMember(ctx, "n4")
	if m, _ := memberByID(ms, "n4"); err != nil || m.Role != RoleVoter {
		t.Fatalf("PromoteMember: %+v %v", ms, err)
	}
	if _, err := c.PromoteMember(ctx, "n4"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("promote a voter: %v, want ErrBadRequest", err)
	}
	if _, err := c.PromoteMember(ctx, "n9"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("promote unknown: %v, want ErrUnknownMember", err)
	}
	if _, err := c.RemoveMember(ctx, "n9"); !errors.Is(err, ErrUnknownMember) || errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v, want ErrUnknownMember", err)
	}
	for _, id := range []string{"n4", "n3", "n2"} {
		if ms, err = c.RemoveMember(ctx, id); err != nil {
			t.Fatalf("RemoveMember %s: %v", id, err)
		}
	}
	if len(ms) != 1 || ms[0].ID != "n1" {
		t.Fatalf("members left: %+v", ms)
	}
	if _, err := c.RemoveMember(ctx, "n1"); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "last voter") {
		t.Fatalf("remove the last voter: %v", err)
	}
	for _, err := range []error{
		func() error { _, err := c.AddMember(ctx, MemberSpec{}); return err }(),
		func() error { _, err := c.PromoteMember(ctx, ""); return err }(),
		func() error { _, err := c.RemoveMember(ctx, ""); return err }(),
	} {
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("empty id: %v, want ErrBadRequest", err)
		}
	}
}

// A membership change sent to a follower that cannot forward follows the
// leader it names, as writes do.
func TestMembersFollowLeader(t *testing.T) {
	leader := apitest.NewFakeID("n2", "n1")
	leaderURL := mustNode(t, leader)
	follower := apitest.NewFakeID("n1", "n2")
	follower.SetLeader("n2")
	follower.SetLeaderAddrs(strings.TrimPrefix(leaderURL, "http://"), "")
	c := mustClient(t, mustNode(t, follower))
	ms, err := c.AddMember(context.Background(), MemberSpec{ID: "n3", Peer: "127.0.0.1:7103"})
	if m, ok := memberByID(ms, "n3"); err != nil || !ok || m.Role != RoleVoter {
		t.Fatalf("AddMember through a follower: %+v %v", ms, err)
	}
	if ms, err := leader.Members(context.Background()); err != nil || len(ms) != 3 {
		t.Fatalf("the leader's members: %+v %v", ms, err)
	}
}

func TestRemovedNode(t *testing.T) {
	removed := apitest.NewFake("n2")
	removed.SetRemoved(true)
	live := apitest.NewFake("n2")
	if _, err := live.Put(context.Background(), []byte("k"), []byte("v"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	removedURL, liveURL := mustNode(t, removed), mustNode(t, live)

	_, err := mustClient(t, removedURL).Members(context.Background())
	var e *Error
	if !errors.Is(err, ErrRemoved) || !errors.As(err, &e) || e.Status != http.StatusGone {
		t.Fatalf("Members from a removed node: %v, want ErrRemoved (410)", err)
	}
	// A stale read skips a removed node for the next endpoint.
	r, err := mustClient(t, removedURL, liveURL).Get(context.Background(), []byte("k"), ReadOptions{Consistency: "stale"})
	if err != nil || string(r.Value) != "v" || r.Endpoint != liveURL {
		t.Fatalf("stale read past a removed node: %+v %v", r, err)
	}
}
