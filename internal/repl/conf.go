package repl

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/trireme-db/trireme/internal/entry"
)

// Member is one member of the cluster's configuration. Voters elect and count
// for commitment; learners (read replicas) receive the log and snapshots but
// never vote, never campaign and never count for any quorum or ack mode.
// The addresses are the runtime's: the core only carries them.
type Member struct {
	ID       NodeID `json:"id"`
	Learner  bool   `json:"learner,omitempty"`
	Priority int    `json:"priority"`
	Peer     string `json:"peer,omitempty"`
	HTTP     string `json:"http,omitempty"`
	RESP     string `json:"resp,omitempty"`
}

// ConfState is a whole cluster configuration, members sorted by ID. It lives
// in the log (entries of kind entry.KindConfig hold its encoding) and in
// snapshots. A configuration takes effect on a node as soon as its entry is
// in that node's log, committed or not (the single-server rule of the Raft
// thesis); a truncation that removes the entry restores the previous one.
type ConfState struct {
	Members []Member `json:"members"`
}

// Limits of a configuration, checked whenever one is decoded.
const (
	MaxMembers     = 64
	MaxMemberIDLen = 64
	maxAddrLen     = 255
	// MaxConfBytes bounds an encoded configuration.
	MaxConfBytes = 64 << 10
)

// Configuration errors.
var (
	ErrChangeInProgress = errors.New("repl: a configuration change is in progress")
	ErrDuplicateMember  = errors.New("repl: duplicate member")
	ErrUnknownMember    = errors.New("repl: unknown member")
	ErrLastVoter        = errors.New("repl: cannot remove the last voter")
	ErrNotCaughtUp      = errors.New("repl: learner not caught up")
	ErrAlreadyVoter     = errors.New("repl: already a voter")
	ErrRemoveLeader     = errors.New("repl: the leader cannot remove itself (transfer leadership first)")
	ErrBadConf          = errors.New("repl: invalid configuration")
)

// ConfChangeType is the kind of a single-server change.
type ConfChangeType uint8

// Single-server changes.
const (
	ConfAddMember ConfChangeType = iota + 1 // Member.Learner says voter or learner
	ConfPromote                             // learner -> voter
	ConfRemove
)

// ConfChange is one single-server change to the configuration.
type ConfChange struct {
	Type   ConfChangeType
	Member Member // ConfPromote and ConfRemove use Member.ID only
}

// Voters returns the IDs of the voters.
func (cs ConfState) Voters() []NodeID {
	out := make([]NodeID, 0, len(cs.Members))
	for _, m := range cs.Members {
		if !m.Learner {
			out = append(out, m.ID)
		}
	}
	return out
}

// Member returns the member with id.
func (cs ConfState) Member(id NodeID) (Member, bool) {
	for _, m := range cs.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// IsVoter reports whether id is a voter.
func (cs ConfState) IsVoter(id NodeID) bool {
	m, ok := cs.Member(id)
	return ok && !m.Learner
}

// Clone returns a deep copy.
func (cs ConfState) Clone() ConfState {
	return ConfState{Members: append([]Member(nil), cs.Members...)}
}

// Validate checks the configuration's shape: bounded size, well-formed and
// unique IDs and addresses, at least one voter that may lead.
func (cs ConfState) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConf, fmt.Sprintf(format, args...))
	}
	if len(cs.Members) == 0 {
		return bad("no members")
	}
	if len(cs.Members) > MaxMembers {
		return bad("%d members, at most %d", len(cs.Members), MaxMembers)
	}
	ids := make(map[NodeID]bool, len(cs.Members))
	addrs := make(map[string]NodeID, 3*len(cs.Members))
	leadable := false
	for i, m := range cs.Members {
		if m.ID == None || len(m.ID) > MaxMemberIDLen {
			return bad("member %d: id %q: empty or over %d bytes", i, m.ID, MaxMemberIDLen)
		}
		if i > 0 && cs.Members[i-1].ID >= m.ID {
			return bad("members not sorted by id at %q", m.ID)
		}
		if ids[m.ID] {
			return bad("duplicate id %q", m.ID)
		}
		ids[m.ID] = true
		if m.Priority < 0 {
			return bad("member %q: negative priority %d", m.ID, m.Priority)
		}
		if !m.Learner && m.Priority > 0 {
			leadable = true
		}
		for _, a := range []string{m.Peer, m.HTTP, m.RESP} {
			if len(a) > maxAddrLen {
				return bad("member %q: address over %d bytes", m.ID, maxAddrLen)
			}
			if a == "" {
				continue
			}
			if other, ok := addrs[a]; ok && other != m.ID {
				return bad("address %q used by %q and %q", a, other, m.ID)
			}
			addrs[a] = m.ID
		}
	}
	if !leadable {
		return bad("no voter with a priority above 0: no member can lead")
	}
	return nil
}

// EncodeConf encodes cs for a KindConfig entry or a snapshot.
func EncodeConf(cs ConfState) []byte {
	b, err := json.Marshal(cs)
	if err != nil {
		panic(fmt.Sprintf("repl: encoding a configuration: %v", err)) // plain structs: cannot fail
	}
	return b
}

// DecodeConf decodes and validates an encoded configuration.
func DecodeConf(b []byte) (ConfState, error) {
	if len(b) > MaxConfBytes {
		return ConfState{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadConf, len(b), MaxConfBytes)
	}
	var cs ConfState
	if err := json.Unmarshal(b, &cs); err != nil {
		return ConfState{}, fmt.Errorf("%w: %v", ErrBadConf, err)
	}
	if err := cs.Validate(); err != nil {
		return ConfState{}, err
	}
	return cs, nil
}

// ConfFromPeers is the bootstrap configuration of a cluster started with a
// fixed list of voters.
func ConfFromPeers(peers []Peer) ConfState {
	cs := ConfState{Members: make([]Member, len(peers))}
	for i, p := range sortedPeers(peers) {
		cs.Members[i] = Member{ID: p.ID, Priority: p.Priority}
	}
	return cs
}

// apply returns the configuration after cc, or why cc cannot be made.
func (cs ConfState) apply(cc ConfChange) (ConfState, error) {
	out := cs.Clone()
	id := cc.Member.ID
	cur, exists := cs.Member(id)
	switch cc.Type {
	case ConfAddMember:
		if exists {
			return ConfState{}, fmt.Errorf("%w: id %q is already a member", ErrDuplicateMember, id)
		}
		for _, m := range cs.Members {
			for _, a := range []string{cc.Member.Peer, cc.Member.HTTP, cc.Member.RESP} {
				if a != "" && (a == m.Peer || a == m.HTTP || a == m.RESP) {
					return ConfState{}, fmt.Errorf("%w: address %q is already used by %q", ErrDuplicateMember, a, m.ID)
				}
			}
		}
		out.Members = append(out.Members, cc.Member)
		sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].ID < out.Members[j].ID })
	case ConfPromote:
		if !exists {
			return ConfState{}, fmt.Errorf("%w: %q", ErrUnknownMember, id)
		}
		if !cur.Learner {
			return ConfState{}, fmt.Errorf("%w: %q", ErrAlreadyVoter, id)
		}
		for i := range out.Members {
			if out.Members[i].ID == id {
				out.Members[i].Learner = false
			}
		}
	case ConfRemove:
		if !exists {
			return ConfState{}, fmt.Errorf("%w: %q", ErrUnknownMember, id)
		}
		if !cur.Learner && len(cs.Voters()) == 1 {
			return ConfState{}, fmt.Errorf("%w: %q", ErrLastVoter, id)
		}
		k := 0
		for _, m := range out.Members {
			if m.ID != id {
				out.Members[k] = m
				k++
			}
		}
		out.Members = out.Members[:k]
	default:
		return ConfState{}, fmt.Errorf("%w: change type %d", ErrBadConf, cc.Type)
	}
	if err := out.Validate(); err != nil {
		return ConfState{}, err
	}
	return out, nil
}

// confAt is a configuration and the index of the entry that set it (0 for
// the bootstrap configuration, the snapshot's index for one restored).
type confAt struct {
	index uint64
	cs    ConfState
}

// confs is the configuration history the core needs: the newest
// configuration at or below the commit index (the base, confs[0]) followed by
// those of later, uncommitted entries, in index order. The last is active.
type confs []confAt

func (h confs) active() confAt { return h[len(h)-1] }

// setConf makes cs the active configuration and recomputes what depends on
// it: quorum, own priority, the leader's follower set.
func (c *Core) setConf(cs ConfState) {
	c.conf = cs
	c.voters = 0
	for _, m := range cs.Members {
		if !m.Learner {
			c.voters++
		}
	}
	c.quorum = c.voters/2 + 1
	c.priority = 0
	if m, ok := cs.Member(c.id); ok && !m.Learner {
		c.priority = m.Priority
	}
	if c.role == RoleLeader {
		c.syncProgress()
	}
	if (c.role == RoleCandidate || c.role == RolePreCandidate) && !cs.IsVoter(c.id) {
		// A snapshot or a truncation took this node's vote away while it
		// campaigned: it may not lead a configuration it does not vote in.
		c.logger.Info("campaign ended: no longer a voter in the configuration", "term", c.term)
		c.becomeFollower(c.term, None)
	}
}

// syncProgress adds progress for new members and refreshes the learner
// flags (leader only). A member the configuration removed keeps its
// progress, counted nowhere, until that configuration commits: it goes on
// receiving the log, so that it learns of its own removal (dropRemoved).
func (c *Core) syncProgress() {
	for _, pr := range c.followers {
		if m, ok := c.conf.Member(pr.id); ok {
			pr.learner, pr.removed = m.Learner, false
		} else {
			pr.learner, pr.removed = true, true
		}
	}
	added := false
	for _, m := range c.conf.Members {
		if m.ID == c.id || c.prs[m.ID] != nil {
			continue
		}
		pr := newProgress(m.ID, c.log.lastIndex()+1, c.cfg.MaxInflightMsgs)
		pr.learner = m.Learner
		pr.lastContact = c.now
		c.prs[m.ID] = pr
		c.followers = append(c.followers, pr)
		added = true
	}
	if added {
		sort.Slice(c.followers, func(i, j int) bool { return c.followers[i].id < c.followers[j].id })
		c.needBcast = true
	}
	c.dropRemoved()
}

// dropRemoved forgets the progress of a removed member once the
// configuration that removed it is committed and the member holds it (or
// has not answered for an election timeout), after sending it the commit
// index in a last heartbeat.
func (c *Core) dropRemoved() {
	idx := c.confs.active().index
	if idx > c.log.committed {
		return
	}
	keep := c.followers[:0]
	for _, pr := range c.followers {
		if !pr.removed || (pr.match < idx && c.now-pr.lastContact < int64(c.cfg.ElectionTicks)) {
			keep = append(keep, pr)
			continue
		}
		c.send(Message{Type: MsgHeartbeat, To: pr.id, Term: c.term,
			Commit: min(pr.match, c.log.committed), Index: c.log.committed})
		delete(c.prs, pr.id)
	}
	clear(c.followers[len(keep):])
	c.followers = keep
}

// noteAppended takes the configurations among ents (just appended, in index
// order) into effect.
func (c *Core) noteAppended(ents []entry.Entry) {
	for i := range ents {
		e := &ents[i]
		if e.Kind != entry.KindConfig {
			continue
		}
		cs, err := DecodeConf(e.Value)
		if err != nil {
			// Only a leader's validated proposal becomes a config entry;
			// one that does not decode is kept in the log but ignored.
			c.logger.Error("configuration entry does not decode; ignored", "index", e.Index, "err", err)
			continue
		}
		c.confs = append(c.confs, confAt{index: e.Index, cs: cs})
		c.setConf(cs)
		c.logger.Info("configuration changed", "index", e.Index, "voters", len(cs.Voters()), "members", len(cs.Members))
	}
}

// noteTruncated forgets the configurations of entries at or after index i
// (removed by a conflicting append) and restores the one before them.
func (c *Core) noteTruncated(i uint64) {
	n := len(c.confs)
	for n > 1 && c.confs[n-1].index >= i {
		n--
	}
	if n == len(c.confs) {
		return
	}
	c.confs = c.confs[:n]
	c.setConf(c.confs[n-1].cs)
	c.logger.Info("configuration entry truncated; previous configuration restored", "index", c.confs[n-1].index)
}

// pruneConfs drops history below the newest committed configuration.
func (c *Core) pruneConfs() {
	k := 0
	for k+1 < len(c.confs) && c.confs[k+1].index <= c.log.committed {
		k++
	}
	if k > 0 {
		c.confs = append(c.confs[:0:0], c.confs[k:]...)
	}
}

// confPending reports whether a configuration entry is not yet committed.
func (c *Core) confPending() bool {
	return c.confs.active().index > c.log.committed && !c.bugs.twoConfChanges()
}

// ProposeConfChange proposes one single-server change (leader only). It is
// committed like a majority write and answered by a Result with p.ID; p's
// Kind, Key, Value and Ack are set here. Errors: ErrNotLeader,
// ErrTransferring, ErrChangeInProgress (a configuration entry is not yet
// committed, or this leader has not yet committed an entry of its own term),
// ErrDuplicateMember, ErrUnknownMember, ErrAlreadyVoter, ErrLastVoter,
// ErrRemoveLeader, ErrNotCaughtUp, ErrBadConf and Propose's errors.
func (c *Core) ProposeConfChange(p Proposal, cc ConfChange) error {
	if c.role != RoleLeader {
		return ErrNotLeader
	}
	if c.transferee != None {
		return ErrTransferring
	}
	if c.confPending() {
		return fmt.Errorf("%w: the configuration at index %d is not committed yet (commit index %d)",
			ErrChangeInProgress, c.confs.active().index, c.log.committed)
	}
	// A new leader may hold an uncommitted configuration from its
	// predecessor without knowing it; it must first commit an entry of its
	// own term (its opening no-op) before it starts another change.
	if t, err := c.log.term(c.log.committed); err != nil || t != c.term {
		return fmt.Errorf("%w: this leader has not committed an entry of its term yet", ErrChangeInProgress)
	}
	if cc.Type == ConfRemove && cc.Member.ID == c.id {
		return ErrRemoveLeader
	}
	if cc.Type == ConfPromote {
		pr := c.prs[cc.Member.ID]
		if pr != nil && pr.learner {
			last := c.log.lastIndex()
			if lag := last - min(pr.match, last); lag > uint64(c.cfg.MaxPromoteLag) || pr.state != stateReplicate {
				return fmt.Errorf("%w: %q is %d entries behind the leader's last index %d (state %s; at most %d to promote)",
					ErrNotCaughtUp, cc.Member.ID, lag, last, pr.state, c.cfg.MaxPromoteLag)
			}
		}
	}
	next, err := c.conf.apply(cc)
	if err != nil {
		return err
	}
	p.Kind = entry.KindConfig
	p.Key = nil
	p.Value = EncodeConf(next)
	p.Ack = Ack{Mode: AckMajority}
	if err := c.propose(p); err != nil {
		return err
	}
	return nil
}

// Conf returns the active configuration and the index of the entry that set it.
func (c *Core) Conf() (ConfState, uint64) {
	a := c.confs.active()
	return a.cs.Clone(), a.index
}
