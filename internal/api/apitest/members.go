package apitest

import (
	"context"
	"fmt"
	"slices"

	"github.com/trireme-db/trireme/internal/api"
)

// fakeMembership is the Fake's membership. The voters are the Fake itself
// and its followers (Fake.followers, whose progress is Fake.durable); the
// learners are kept here with their own progress. Guarded by Fake.mu.
//
// The Fake's rules, the same as a node's: one change at a time
// (SetChangeInProgress holds the lock of another one); a new member's id and
// addresses are unique; a learner is promoted once its lag is at most
// SetPromoteMaxLag entries (default 0); the last voter cannot be removed; a
// Fake that removes itself answers ErrRemoved to everything after. A voter
// added as such joins caught up at once.
type fakeMembership struct {
	specs       map[string]api.MemberSpec // members added online
	generated   map[string]api.MemberSpec // the others, with addresses made up when first listed
	learners    []string                  // in the order added
	progress    map[string]*fakeProgress  // of learners
	changing    bool                      // another change is in progress
	removed     bool                      // this node was removed
	catchUpStep uint64                    // entries a learner gains per Members call
	maxLag      uint64                    // most entries a learner may lag to be promoted
}

type fakeProgress struct {
	match       uint64
	state       string
	sent, total int64
}

func newFakeMembership() fakeMembership {
	return fakeMembership{specs: map[string]api.MemberSpec{}, generated: map[string]api.MemberSpec{},
		progress: map[string]*fakeProgress{}}
}

// follow moves the learners that are streaming and caught up to index idx,
// the Fake's new last index: they receive writes as they happen.
func (m *fakeMembership) follow(idx uint64) {
	for _, p := range m.progress {
		if p.state == api.MemberReplicate && p.match == idx-1 {
			p.match = idx
		}
	}
}

// catchUp moves every learner that is behind last by catchUpStep entries;
// one in the snapshot state first completes its snapshot, in two steps.
func (m *fakeMembership) catchUp(last uint64) {
	if m.catchUpStep == 0 {
		return
	}
	for _, p := range m.progress {
		if p.match >= last {
			continue
		}
		if p.state == api.MemberSnapshot && p.sent < p.total {
			p.sent = min(p.total, p.sent+max(p.total/2, 1))
			if p.sent < p.total {
				continue
			}
		}
		p.match = min(last, p.match+m.catchUpStep)
		p.state, p.sent, p.total = api.MemberReplicate, 0, 0
	}
}

// SetChangeInProgress makes membership changes fail with
// api.ErrChangeInProgress (true) or succeed again (false).
func (f *Fake) SetChangeInProgress(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem.changing = on
}

// SetPromoteMaxLag sets how many entries a learner may lag and still be
// promoted (default 0).
func (f *Fake) SetPromoteMaxLag(entries uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem.maxLag = entries
}

// SetLearnerCatchUp makes every learner that is behind gain step entries at
// each call of Members, as if time passed between calls (0, the default:
// learners move only with SetMemberProgress). A learner in the snapshot
// state first completes its snapshot, half of it per call.
func (f *Fake) SetLearnerCatchUp(step uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem.catchUpStep = step
}

// SetMemberProgress sets learner id's progress as the leader sees it: its
// match index, its state (api.MemberProbe, MemberReplicate, MemberSnapshot)
// and, for a snapshot, the bytes sent and its size. It reports whether id
// is a learner.
func (f *Fake) SetMemberProgress(id string, match uint64, state string, sent, total int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.mem.progress[id]
	if ok {
		*p = fakeProgress{match: min(match, f.index), state: state, sent: sent, total: total}
	}
	return ok
}

// SetRemoved marks this node removed from the cluster (true): every call
// then fails with api.ErrRemoved.
func (f *Fake) SetRemoved(removed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem.removed = removed
}

// specOf returns the spec of voter id: the one it was added with, else
// addresses made up when it is first listed, the i-th so made getting
// 127.0.0.1 and the peer port 7001+i, HTTP 8001+i and RESP 9001+i.
func (f *Fake) specOf(id string) api.MemberSpec {
	if s, ok := f.mem.specs[id]; ok {
		s.Role = api.RoleVoter
		return s
	}
	s, ok := f.mem.generated[id]
	if !ok {
		i := len(f.mem.generated)
		s = api.MemberSpec{ID: id, Role: api.RoleVoter,
			Peer: fmt.Sprintf("127.0.0.1:%d", 7001+i),
			HTTP: fmt.Sprintf("127.0.0.1:%d", 8001+i),
			RESP: fmt.Sprintf("127.0.0.1:%d", 9001+i)}
		f.mem.generated[id] = s
	}
	return s
}

// members returns every member: this node, its followers, then learners.
// Progress is the leader's view; a follower reports it unknown.
func (f *Fake) members() []api.MemberStatus {
	leading := f.leader == f.id
	var out []api.MemberStatus
	for _, id := range slices.Concat([]string{f.id}, f.followers) {
		st := api.MemberStatus{MemberSpec: f.specOf(id), State: api.MemberUnknown}
		switch {
		case id == f.leader:
			st.State, st.MatchIndex = api.MemberLeader, f.index
		case leading && f.down[id]:
			st.State, st.MatchIndex = api.MemberProbe, f.durable[id]
		case leading:
			st.State, st.MatchIndex = api.MemberReplicate, f.durable[id]
		}
		out = append(out, st)
	}
	for _, id := range f.mem.learners {
		st := api.MemberStatus{MemberSpec: f.mem.specs[id], State: api.MemberUnknown}
		if p := f.mem.progress[id]; leading {
			st.MatchIndex, st.State = p.match, p.state
			st.SnapshotBytesSent, st.SnapshotBytesTotal = p.sent, p.total
		}
		out = append(out, st)
	}
	for i := range out {
		if out[i].State != api.MemberUnknown {
			out[i].LagEntries = f.index - out[i].MatchIndex
		}
	}
	return out
}

// isMember reports whether id is a voter or a learner.
func (f *Fake) isMember(id string) bool {
	return id == f.id || slices.Contains(f.followers, id) || slices.Contains(f.mem.learners, id)
}

// checkChange returns the error that stops a membership change before its
// own checks: a failure set with FailNext, removal, no leader or another
// leader (the Fake cannot forward), another change in progress.
func (f *Fake) checkChange() error {
	if err := f.takeFail(); err != nil {
		return err
	}
	switch {
	case f.mem.removed:
		return api.ErrRemoved
	case f.leader == "":
		return api.ErrNoLeader
	case f.leader != f.id:
		return api.ErrNotLeader
	case f.mem.changing:
		return fmt.Errorf("%w: try again once it is committed", api.ErrChangeInProgress)
	}
	return nil
}

// Members implements api.Service.
func (f *Fake) Members(ctx context.Context) ([]api.MemberStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return nil, err
	}
	if f.mem.removed {
		return nil, api.ErrRemoved
	}
	if f.leader == f.id {
		f.mem.catchUp(f.index)
	}
	return f.members(), nil
}

// AddMember implements api.Service.
func (f *Fake) AddMember(ctx context.Context, m api.MemberSpec) ([]api.MemberStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := f.checkChange(); err != nil {
		return nil, err
	}
	for _, o := range f.members() {
		if o.ID == m.ID {
			return nil, fmt.Errorf("%w: a member has id %q", api.ErrDuplicateMember, m.ID)
		}
		for _, a := range []string{m.Peer, m.HTTP, m.RESP} {
			if a != "" && (a == o.Peer || a == o.HTTP || a == o.RESP) {
				return nil, fmt.Errorf("%w: member %s has address %s", api.ErrDuplicateMember, o.ID, a)
			}
		}
	}
	f.mem.specs[m.ID] = m
	if m.Role == api.RoleVoter {
		f.followers = append(f.followers, m.ID)
		f.durable[m.ID] = f.index
	} else {
		f.mem.learners = append(f.mem.learners, m.ID)
		f.mem.progress[m.ID] = &fakeProgress{state: api.MemberProbe}
	}
	return f.members(), nil
}

// PromoteMember implements api.Service.
func (f *Fake) PromoteMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkChange(); err != nil {
		return nil, err
	}
	if !f.isMember(id) {
		return nil, fmt.Errorf("%w: %q", api.ErrUnknownMember, id)
	}
	p, learner := f.mem.progress[id]
	if !learner {
		return nil, fmt.Errorf("%w: %s", api.ErrAlreadyVoter, id)
	}
	if lag := f.index - p.match; lag > f.mem.maxLag {
		return nil, fmt.Errorf("%w: learner %s is %d entries behind (match index %d of %d; a promotion needs at most %d)",
			api.ErrNotCaughtUp, id, lag, p.match, f.index, f.mem.maxLag)
	}
	f.mem.learners = slices.DeleteFunc(f.mem.learners, func(l string) bool { return l == id })
	delete(f.mem.progress, id)
	f.followers = append(f.followers, id)
	f.durable[id] = p.match
	return f.members(), nil
}

// RemoveMember implements api.Service.
func (f *Fake) RemoveMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkChange(); err != nil {
		return nil, err
	}
	if !f.isMember(id) {
		return nil, fmt.Errorf("%w: %q", api.ErrUnknownMember, id)
	}
	_, learner := f.mem.progress[id]
	switch {
	case learner:
		f.mem.learners = slices.DeleteFunc(f.mem.learners, func(l string) bool { return l == id })
		delete(f.mem.progress, id)
	case id == f.id:
		if len(f.followers) == 0 {
			return nil, fmt.Errorf("%w: %s is the only voter", api.ErrLastVoter, id)
		}
		// The leader removes itself: the change commits, then it steps
		// down and serves nothing more.
		out := f.members()[1:]
		f.leader, f.mem.removed = "", true
		return out, nil
	default:
		f.followers = slices.DeleteFunc(slices.Clone(f.followers), func(v string) bool { return v == id })
		delete(f.durable, id)
	}
	delete(f.mem.specs, id)
	delete(f.mem.generated, id)
	return f.members(), nil
}
