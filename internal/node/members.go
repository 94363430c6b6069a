package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// Membership changes. The core orders them in the log (one at a time,
// effective when appended); this file is the runtime around it: the leader
// proposes and waits for the commit, a follower forwards to the leader
// (transport.OpMembers), and an error keeps its meaning across the hop.

// Member actions, the Key of an OpMembers request.
const (
	memberList    = "list"
	memberAdd     = "add"
	memberPromote = "promote"
	memberRemove  = "remove"
)

// maxMemberReply bounds a forwarded member list (64 members of a few
// hundred bytes each fit many times over).
const maxMemberReply = 1 << 20

// Members implements api.Service.
func (n *Node) Members(ctx context.Context) ([]api.MemberStatus, error) {
	return n.members(ctx, memberList, nil, false)
}

// AddMember implements api.Service. A voter is added as a learner first and
// promoted once it has caught up (within the request's context), so that a
// new, empty node never counts in a quorum it cannot serve yet; if the
// context ends first it stays a learner and the error says so.
func (n *Node) AddMember(ctx context.Context, m api.MemberSpec) ([]api.MemberStatus, error) {
	if m.Role == "" {
		m.Role = api.RoleVoter
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return n.members(ctx, memberAdd, b, false)
}

// PromoteMember implements api.Service.
func (n *Node) PromoteMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	if err := api.ValidMemberID(id); err != nil {
		return nil, err
	}
	return n.members(ctx, memberPromote, []byte(id), false)
}

// RemoveMember implements api.Service.
func (n *Node) RemoveMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	if err := api.ValidMemberID(id); err != nil {
		return nil, err
	}
	return n.members(ctx, memberRemove, []byte(id), false)
}

// members runs a membership action here if this node leads, else at the
// leader. forwarded: the request came from a follower (never forward again).
func (n *Node) members(ctx context.Context, action string, arg []byte, forwarded bool) ([]api.MemberStatus, error) {
	if n.removed.Load() {
		return nil, api.ErrRemoved
	}
	s, err := n.waitLeader(ctx)
	if err != nil {
		if action == memberList && errors.Is(err, errTimeout) {
			return n.localMembers(), nil
		}
		if errors.Is(err, errTimeout) {
			return nil, api.ErrNoLeader
		}
		return nil, err
	}
	if s.st.Role != repl.RoleLeader {
		if forwarded {
			return nil, n.notLeader(s.st.Lead)
		}
		out, err := n.forwardMembers(ctx, s.st.Lead, action, arg)
		if err != nil && action == memberList {
			// The list is also useful without the leader's progress.
			n.log.Debug("member list: the leader did not answer; listing the local view", "err", err)
			return n.localMembers(), nil
		}
		return out, err
	}
	switch action {
	case memberList:
		return n.leaderMembers(), nil
	case memberAdd:
		var spec api.MemberSpec
		if err := json.Unmarshal(arg, &spec); err != nil {
			return nil, fmt.Errorf("%w: %v", api.ErrBadMember, err)
		}
		if err := spec.Validate(); err != nil {
			return nil, err
		}
		return n.addMember(ctx, spec)
	case memberPromote:
		return n.promoteMember(ctx, repl.NodeID(arg))
	case memberRemove:
		return n.removeMember(ctx, repl.NodeID(arg))
	}
	return nil, fmt.Errorf("unknown member action %q", action)
}

func (n *Node) addMember(ctx context.Context, spec api.MemberSpec) ([]api.MemberStatus, error) {
	id := repl.NodeID(spec.ID)
	cs := n.view.Load().cs
	if old, ok := cs.Member(id); ok {
		// Idempotent: a retried add (a joining node that restarted) finds
		// the member already there with the same addresses.
		if old.Peer == spec.Peer && old.HTTP == spec.HTTP && old.RESP == spec.RESP {
			if spec.Role == api.RoleVoter && old.Learner {
				return n.promoteWhenCaughtUp(ctx, id)
			}
			return n.leaderMembers(), nil
		}
		return nil, fmt.Errorf("%w: %s is already a member (peer %s)", api.ErrDuplicateMember, id, old.Peer)
	}
	for _, m := range cs.Members {
		for _, a := range []string{m.Peer, m.HTTP, m.RESP} {
			if a != "" && (a == spec.Peer || a == spec.HTTP || a == spec.RESP) {
				return nil, fmt.Errorf("%w: address %s belongs to member %s", api.ErrDuplicateMember, a, m.ID)
			}
		}
	}
	mem := repl.Member{ID: id, Learner: true, Priority: 1, Peer: spec.Peer, HTTP: spec.HTTP, RESP: spec.RESP}
	if err := n.change(ctx, repl.ConfChange{Type: repl.ConfAddMember, Member: mem}); err != nil {
		return nil, err
	}
	n.log.Info("member added as a learner", "member", string(id), "peer", spec.Peer, "role", string(spec.Role))
	if spec.Role == api.RoleVoter {
		return n.promoteWhenCaughtUp(ctx, id)
	}
	return n.leaderMembers(), nil
}

// promoteWhenCaughtUp retries the promotion of learner id while it is still
// catching up, until the context ends.
func (n *Node) promoteWhenCaughtUp(ctx context.Context, id repl.NodeID) ([]api.MemberStatus, error) {
	for {
		out, err := n.promoteMember(ctx, id)
		if !errors.Is(err, api.ErrNotCaughtUp) && !errors.Is(err, api.ErrChangeInProgress) {
			return out, err
		}
		t := time.NewTimer(n.cfg.Heartbeat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s was added as a learner but not promoted yet (promote it when it has caught up): %w", id, err)
		case <-n.doneCh:
			t.Stop()
			return nil, api.ErrStopped
		}
	}
}

func (n *Node) promoteMember(ctx context.Context, id repl.NodeID) ([]api.MemberStatus, error) {
	m, ok := n.view.Load().cs.Member(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s", api.ErrUnknownMember, id)
	}
	if !m.Learner {
		return nil, fmt.Errorf("%w: %s", api.ErrAlreadyVoter, id)
	}
	if err := n.change(ctx, repl.ConfChange{Type: repl.ConfPromote, Member: repl.Member{ID: id}}); err != nil {
		return nil, err
	}
	n.log.Info("learner promoted to voter", "member", string(id))
	return n.leaderMembers(), nil
}

func (n *Node) removeMember(ctx context.Context, id repl.NodeID) ([]api.MemberStatus, error) {
	if _, ok := n.view.Load().cs.Member(id); !ok {
		return nil, fmt.Errorf("%w: %s", api.ErrUnknownMember, id)
	}
	if id == n.id {
		// The leader cannot remove itself: hand leadership to the most
		// caught-up voter first, then ask the new leader.
		to := n.successor()
		if to == repl.None {
			return nil, fmt.Errorf("%w: %s is the only voter", api.ErrLastVoter, id)
		}
		n.log.Info("removing the leader: transferring leadership first", "to", string(to))
		if err := n.transfer(ctx, to, false); err != nil {
			return nil, fmt.Errorf("removing the leader %s: transfer leadership to %s: %w", id, to, err)
		}
		// The new leader takes changes once it has committed an entry of
		// its term: retry while it says a change is in progress.
		for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
			out, err := n.forwardMembers(ctx, to, memberRemove, []byte(id))
			if !errors.Is(err, api.ErrChangeInProgress) {
				return out, err
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("removing the leader %s after handing leadership to %s: %w", id, to, err)
			}
		}
	}
	if err := n.change(ctx, repl.ConfChange{Type: repl.ConfRemove, Member: repl.Member{ID: id}}); err != nil {
		return nil, err
	}
	n.log.Info("member removed", "member", string(id))
	return n.leaderMembers(), nil
}

// successor is the voter (not this node, priority above 0) with the highest
// match, or None.
func (n *Node) successor() repl.NodeID {
	s, _ := n.status()
	best, bestMatch := repl.None, uint64(0)
	for _, f := range s.st.Followers {
		m, ok := s.st.Conf.Member(f.ID)
		if !ok || m.Learner || m.Priority <= 0 {
			continue
		}
		if best == repl.None || f.Match > bestMatch {
			best, bestMatch = f.ID, f.Match
		}
	}
	return best
}

// change proposes cc on the run loop and waits until it commits.
func (n *Node) change(ctx context.Context, cc repl.ConfChange) error {
	timeout := n.cfg.WriteTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	req := &propReq{done: make(chan propResp, 1), start: time.Now()}
	req.p = repl.Proposal{TimeoutTicks: n.ticks(timeout)}
	select {
	case n.ctlCh <- func() {
		n.nextID++
		req.p.ID = n.nextID
		if err := n.core.ProposeConfChange(req.p, cc); err != nil {
			req.done <- propResp{err: err, refused: true}
			return
		}
		n.pendingProps[req.p.ID] = req
	}:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.doneCh:
		return api.ErrStopped
	}
	var r propResp
	select {
	case r = <-req.done:
	case <-ctx.Done():
		return fmt.Errorf("%w: the change was proposed; its outcome is unknown: %w", api.ErrOutcomeUnknown, ctx.Err())
	case <-n.doneCh:
		return api.ErrStopped
	}
	if r.err != nil {
		return confErr(r.err)
	}
	switch r.res.Outcome {
	case repl.OutcomeOK:
		return nil
	case repl.OutcomeTimeout:
		return fmt.Errorf("%w: the membership change did not commit within %v (it may still)", api.ErrWriteTimeout, timeout)
	default:
		return fmt.Errorf("%w: the membership change was not committed (%v); check the member list", api.ErrOutcomeUnknown, r.res.Outcome)
	}
}

// confErr maps the core's membership errors to the API's, keeping the
// core's wording (a lag in entries, an index) in the message.
func confErr(err error) error {
	for _, m := range []struct{ core, api error }{
		{repl.ErrChangeInProgress, api.ErrChangeInProgress},
		{repl.ErrNotCaughtUp, api.ErrNotCaughtUp},
		{repl.ErrUnknownMember, api.ErrUnknownMember},
		{repl.ErrDuplicateMember, api.ErrDuplicateMember},
		{repl.ErrLastVoter, api.ErrLastVoter},
		{repl.ErrAlreadyVoter, api.ErrAlreadyVoter},
		{repl.ErrBadConf, api.ErrBadMember},
		{repl.ErrRemoveLeader, api.ErrNotLeader},
		{repl.ErrNotLeader, api.ErrNotLeader},
		{repl.ErrTransferring, api.ErrChangeInProgress},
	} {
		if errors.Is(err, m.core) {
			return fmt.Errorf("%w: %v", m.api, err)
		}
	}
	return err
}

// leaderMembers is the member list with the leader's view of progress.
func (n *Node) leaderMembers() []api.MemberStatus {
	s, _ := n.status()
	st := &s.st
	prog := make(map[repl.NodeID]repl.FollowerStatus, len(st.Followers))
	for _, f := range st.Followers {
		prog[f.ID] = f
	}
	out := make([]api.MemberStatus, 0, len(st.Conf.Members))
	for _, m := range st.Conf.Members {
		ms := memberStatus(m)
		switch f, ok := prog[m.ID]; {
		case m.ID == st.ID:
			ms.MatchIndex, ms.State = st.LastIndex, api.MemberLeader
		case ok:
			ms.MatchIndex = f.Match
			ms.LagEntries = st.LastIndex - min(f.Match, st.LastIndex)
			ms.State = f.State
			if f.State == api.MemberSnapshot {
				ms.SnapshotBytesSent, ms.SnapshotBytesTotal = n.snapProgress(m.ID)
			}
		default:
			ms.State = api.MemberUnknown
		}
		out = append(out, ms)
	}
	return out
}

// localMembers is the member list as this node knows it, without progress.
func (n *Node) localMembers() []api.MemberStatus {
	cs := n.view.Load().cs
	out := make([]api.MemberStatus, 0, len(cs.Members))
	for _, m := range cs.Members {
		ms := memberStatus(m)
		ms.State = api.MemberUnknown
		out = append(out, ms)
	}
	return out
}

func memberStatus(m repl.Member) api.MemberStatus {
	role := api.RoleVoter
	if m.Learner {
		role = api.RoleLearner
	}
	return api.MemberStatus{MemberSpec: api.MemberSpec{ID: string(m.ID), Peer: m.Peer, HTTP: m.HTTP, RESP: m.RESP, Role: role}}
}

// snapProgress reports the bytes sent of the snapshot being sent to id, if
// the snapshot sender provides it.
func (n *Node) snapProgress(id repl.NodeID) (sent, total int64) {
	type progresser interface {
		snapshotProgress(repl.NodeID) (sent, total int64, active bool)
	}
	if p, ok := any(n).(progresser); ok {
		if s, t, active := p.snapshotProgress(id); active {
			return s, t
		}
	}
	return 0, 0
}

// forwardMembers runs a membership action at the leader.
func (n *Node) forwardMembers(ctx context.Context, lead repl.NodeID, action string, arg []byte) ([]api.MemberStatus, error) {
	resp, err := n.tr.Forward(ctx, transport.NodeID(lead), &transport.ForwardRequest{Op: transport.OpMembers, Key: []byte(action), Value: arg})
	if errors.Is(err, transport.ErrNotSent) || errors.Is(err, transport.ErrUnknownPeer) {
		// Nothing was sent: nothing was done (503, retry).
		return nil, fmt.Errorf("%w: cannot reach the leader %s to forward member %s: %v", api.ErrNoLeader, lead, action, err)
	}
	if err != nil {
		return nil, fmt.Errorf("node: forward member %s to the leader %s: %w", action, lead, err)
	}
	if err := codeErr(resp, false); err != nil {
		return nil, err
	}
	var out []api.MemberStatus
	if err := json.Unmarshal(resp.Read.Value, &out); err != nil {
		return nil, fmt.Errorf("node: the leader %s answered a member %s with a list that does not decode: %w", lead, action, err)
	}
	return out, nil
}

// handleMembers serves a follower's forwarded membership request.
func (n *Node) handleMembers(ctx context.Context, req *transport.ForwardRequest, resp *transport.ForwardResponse) error {
	if len(req.Value) > maxMemberReply {
		return fmt.Errorf("%w: request of %d bytes", api.ErrBadMember, len(req.Value))
	}
	action := string(req.Key)
	switch action {
	case memberList, memberAdd, memberPromote, memberRemove:
	default:
		return fmt.Errorf("%w: unknown member action %q", api.ErrBadMember, action)
	}
	out, err := n.members(ctx, action, req.Value, true)
	if err != nil {
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	resp.Read.Value = b
	return nil
}
