package apitest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
)

func mustMembers(t *testing.T, f *Fake) map[string]api.MemberStatus {
	t.Helper()
	ms, err := f.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.MemberStatus{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func TestFakeMembership(t *testing.T) {
	ctx := context.Background()
	f := NewFake("n2", "n3")
	for range 5 {
		if _, err := f.Put(ctx, []byte("k"), []byte("v"), api.WriteOptions{Default: true}); err != nil {
			t.Fatal(err)
		}
	}
	ms := mustMembers(t, f)
	if len(ms) != 3 || ms["n1"].State != api.MemberLeader || ms["n2"].State != api.MemberReplicate ||
		ms["n2"].MatchIndex != 5 || ms["n2"].Role != api.RoleVoter || ms["n3"].Peer != "127.0.0.1:7003" {
		t.Fatalf("members %+v", ms)
	}

	n4 := api.MemberSpec{ID: "n4", Peer: "127.0.0.1:7004", HTTP: "127.0.0.1:8004", RESP: "127.0.0.1:9004", Role: api.RoleLearner}
	if _, err := f.AddMember(ctx, n4); err != nil {
		t.Fatal(err)
	}
	for _, dup := range []api.MemberSpec{
		n4,
		{ID: "n5", Peer: "127.0.0.1:8002", Role: api.RoleLearner}, // n2's HTTP address
	} {
		if _, err := f.AddMember(ctx, dup); !errors.Is(err, api.ErrDuplicateMember) {
			t.Fatalf("AddMember(%+v) = %v, want ErrDuplicateMember", dup, err)
		}
	}
	if _, err := f.AddMember(ctx, api.MemberSpec{ID: "bad id", Peer: "127.0.0.1:7005", Role: api.RoleVoter}); !errors.Is(err, api.ErrBadMember) {
		t.Fatalf("bad id: %v", err)
	}
	if st := f.Status(); len(st.Followers) != 3 || !st.Followers[2].Learner() || st.Followers[2].LagEntries != 5 || st.Followers[2].RESP != "127.0.0.1:9004" {
		t.Fatalf("status followers %+v", st.Followers)
	}

	_, err := f.PromoteMember(ctx, "n4")
	if !errors.Is(err, api.ErrNotCaughtUp) || !strings.Contains(err.Error(), "5 entries behind") {
		t.Fatalf("promote behind: %v", err)
	}
	f.SetChangeInProgress(true)
	if _, err := f.RemoveMember(ctx, "n4"); !errors.Is(err, api.ErrChangeInProgress) {
		t.Fatalf("change in progress: %v", err)
	}
	f.SetChangeInProgress(false)

	// A snapshot, then entries: two calls for the snapshot, then steps of 3.
	f.SetMemberProgress("n4", 0, api.MemberSnapshot, 0, 1000)
	f.SetLearnerCatchUp(3)
	if m := mustMembers(t, f)["n4"]; m.State != api.MemberSnapshot || m.SnapshotBytesSent != 500 || m.LagEntries != 5 {
		t.Fatalf("n4 mid-snapshot: %+v", m)
	}
	if m := mustMembers(t, f)["n4"]; m.State != api.MemberReplicate || m.MatchIndex != 3 || m.SnapshotBytesTotal != 0 {
		t.Fatalf("n4 after the snapshot: %+v", m)
	}
	if m := mustMembers(t, f)["n4"]; m.MatchIndex != 5 || m.LagEntries != 0 {
		t.Fatalf("n4 caught up: %+v", m)
	}
	// A caught-up learner follows new writes.
	if _, err := f.Put(ctx, []byte("k"), []byte("v"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	ms2, err := f.PromoteMember(ctx, "n4")
	if err != nil || len(ms2) != 4 || ms2[3].Role != api.RoleVoter || ms2[3].MatchIndex != 6 {
		t.Fatalf("promote: %+v %v", ms2, err)
	}
	if _, err := f.PromoteMember(ctx, "n4"); !errors.Is(err, api.ErrAlreadyVoter) {
		t.Fatalf("promote a voter: %v", err)
	}
	if _, err := f.PromoteMember(ctx, "n9"); !errors.Is(err, api.ErrUnknownMember) {
		t.Fatalf("promote unknown: %v", err)
	}
	if _, err := f.RemoveMember(ctx, "n9"); !errors.Is(err, api.ErrUnknownMember) {
		t.Fatalf("remove unknown: %v", err)
	}
	for _, id := range []string{"n2", "n3", "n4"} {
		if _, err := f.RemoveMember(ctx, id); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	// The generated addresses stay with their member.
	if ms := mustMembers(t, f); len(ms) != 1 || ms["n1"].Peer != "127.0.0.1:7001" {
		t.Fatalf("members after removals: %+v", ms)
	}
	if _, err := f.RemoveMember(ctx, "n1"); !errors.Is(err, api.ErrLastVoter) {
		t.Fatalf("remove the last voter: %v", err)
	}
}

func TestFakeRemovesItself(t *testing.T) {
	ctx := context.Background()
	f := NewFake("n2")
	ms, err := f.RemoveMember(ctx, "n1")
	if err != nil || len(ms) != 1 || ms[0].ID != "n2" {
		t.Fatalf("remove self: %+v %v", ms, err)
	}
	if _, err := f.Members(ctx); !errors.Is(err, api.ErrRemoved) {
		t.Fatalf("Members after removal: %v", err)
	}
	if _, err := f.Put(ctx, []byte("k"), nil, api.WriteOptions{Default: true}); !errors.Is(err, api.ErrRemoved) {
		t.Fatalf("Put after removal: %v", err)
	}
}

func TestFakeFollowerMembers(t *testing.T) {
	f := NewFakeID("n2", "n1", "n3")
	f.SetLeader("n1")
	ms := mustMembers(t, f)
	if ms["n1"].State != api.MemberLeader || ms["n2"].State != api.MemberUnknown || ms["n3"].State != api.MemberUnknown {
		t.Fatalf("a follower's members: %+v", ms)
	}
	if _, err := f.AddMember(context.Background(), api.MemberSpec{ID: "n4", Peer: "h:1", Role: api.RoleVoter}); !errors.Is(err, api.ErrNotLeader) {
		t.Fatalf("AddMember on a follower: %v", err)
	}
}
