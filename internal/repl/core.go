package repl

import (
	"fmt"
	"log/slog"
	"math/rand"

	"github.com/trireme-db/trireme/internal/entry"
)

// contextTransfer marks a MsgVote sent by a campaign that MsgTimeoutNow started:
// voters grant it even if they heard from a live leader recently.
const contextTransfer = 1

// Core is one node's replication state machine. It is not safe for concurrent
// use: the runtime (or the simulator) calls it from one goroutine. It does no
// I/O, reads no clock and draws randomness only from Config.Rand, so the same
// inputs always give the same outputs.
type Core struct {
	cfg    Config
	id     NodeID
	logger *slog.Logger
	rand   *rand.Rand
	bugs   Bugs

	// conf is the active configuration (the newest in the log), confs its
	// history above the commit index (see confs).
	conf     ConfState
	confs    confs
	voters   int // voters in conf
	priority int // own priority (0 unless a voter)
	quorum   int // votes needed: voters/2+1

	log *raftLog

	term uint64
	vote NodeID
	lead NodeID
	role Role

	now                       int64 // ticks since New
	electionElapsed           int
	heartbeatElapsed          int
	randomizedElectionTimeout int
	ticksSinceLeader          int
	leaderCommit              uint64

	votes map[NodeID]bool // (pre-)candidate: answers received

	fd detector // follower: the failure detector's state (adaptive or not)

	extUntil int64 // ExternalElection: the coordinator's grant ends at this tick

	// Leader state (valid while role == RoleLeader).
	prs             map[NodeID]*progress // followers only
	followers       []*progress          // same, sorted by ID
	needBcast       bool                 // new entries or commit to send at the next Ready
	transferee      NodeID
	transferElapsed int
	timeoutNowSent  bool
	autoTransferMin int64 // no automatic (priority) transfer before this tick
	props           proposals
	rs              readState

	// Output not yet handed out in a Ready.
	msgs        []Message
	discarded   []entry.Entry
	results     []Result
	readResults []ReadResult
	snapReqs    []NodeID
	prevHS      HardState
}

// New creates a core from cfg, restoring its state from st.
func New(cfg Config, st Storage) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: storage: nil", ErrInvalidConfig)
	}
	hs, err := st.InitialState()
	if err != nil {
		return nil, fmt.Errorf("repl: reading initial state: %w", err)
	}
	c := &Core{
		cfg:    cfg,
		id:     cfg.ID,
		logger: cfg.Logger,
		rand:   cfg.Rand,
		bugs:   cfg.Bugs,
		fd:     newDetector(),
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.logger = c.logger.With("node", string(cfg.ID))
	base := ConfFromPeers(cfg.Peers)
	if cfg.Conf != nil {
		base = cfg.Conf.Clone()
	}
	l := newRaftLog(st, cfg.Applied)
	last := l.lastIndex()
	if cfg.Applied > last {
		return nil, fmt.Errorf("%w: Applied: %d is beyond the last log index %d", ErrInvalidConfig, cfg.Applied, last)
	}
	if cfg.Applied+1 < l.firstIndex() {
		return nil, fmt.Errorf("%w: Applied: %d is below the log's first index %d: entries in between are gone", ErrInvalidConfig, cfg.Applied, l.firstIndex())
	}
	commit := max(hs.Commit, cfg.Applied)
	if commit > last {
		c.logger.Warn("persisted commit index beyond the log; clamping", "commit", commit, "index", last)
		commit = last
	}
	l.committed = commit
	c.log = l
	c.confs = confs{{index: cfg.Applied, cs: base}}
	c.setConf(base)
	// Configurations in the log above the applied index are already in
	// effect (they took effect when appended).
	for lo := cfg.Applied + 1; lo <= last; {
		ents, err := l.entries(lo, last+1, 8<<20)
		if err != nil {
			return nil, fmt.Errorf("repl: reading the log for configurations from %d: %w", lo, err)
		}
		c.noteAppended(ents)
		lo = ents[len(ents)-1].Index + 1
	}
	c.pruneConfs()
	c.term, c.vote = hs.Term, hs.Vote
	c.prevHS = HardState{Term: hs.Term, Vote: hs.Vote, Commit: hs.Commit}
	c.becomeFollower(c.term, None)
	c.logger.Info("core started", "term", c.term, "index", last, "commit", commit, "applied", cfg.Applied)
	return c, nil
}

// isPeer reports whether id is a member (voter or learner) of the active
// configuration.
func (c *Core) isPeer(id NodeID) bool {
	_, ok := c.conf.Member(id)
	return ok
}

func (c *Core) isVoter(id NodeID) bool { return c.conf.IsVoter(id) }

func (c *Core) peerPriority(id NodeID) int {
	if m, ok := c.conf.Member(id); ok && !m.Learner {
		return m.Priority
	}
	return 0
}

// promotable: may this node campaign? Only a voter with a priority above 0.
func (c *Core) promotable() bool { return c.priority > 0 }

// Tick advances the core's logical clock by one tick.
func (c *Core) Tick() {
	c.now++
	if c.role == RoleLeader {
		c.tickLeader()
	} else {
		c.tickElection()
	}
}

// Step feeds one message received from a peer. A malformed or unexpected
// message returns an error and changes nothing; it never panics. Messages from
// older terms are normal (delays) and are dropped without error. Step takes
// ownership of m.Entries.
func (c *Core) Step(m Message) error {
	if err := c.validate(m); err != nil {
		return err
	}
	switch {
	case m.Term == 0:
		// Only a rejecting MsgPreVoteResp from a fresh node carries term 0.
		return nil
	case m.Term > c.term:
		if m.Type == MsgPreVote || m.Type == MsgVote {
			force := m.Type == MsgVote && m.Context == contextTransfer
			if !force && c.inLease() {
				c.logger.Debug("ignoring vote request: leader recently heard",
					"peer", string(m.From), "term", m.Term, "type", m.Type.String())
				return nil
			}
		}
		switch {
		case m.Type == MsgPreVote:
			// Never change term on a pre-vote.
		case m.Type == MsgPreVoteResp && !m.Reject:
			// A granted pre-vote carries the future term; ours does not change.
		case m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgTimeoutNow:
			c.becomeFollower(m.Term, m.From)
		default:
			c.becomeFollower(m.Term, None)
		}
	case m.Term < c.term:
		switch m.Type {
		case MsgApp, MsgHeartbeat:
			// A stale leader: tell it our term so that it steps down.
			c.send(Message{Type: MsgAppResp, To: m.From, Term: c.term})
		case MsgPreVote:
			c.send(Message{Type: MsgPreVoteResp, To: m.From, Term: c.term, Reject: true})
		}
		return nil
	}

	switch m.Type {
	case MsgPreVote, MsgVote:
		c.handleVoteRequest(m)
		return nil
	case MsgSnapshotNeeded:
		// Reserved; a leader of this version streams the snapshot itself.
		return nil
	}
	switch c.role {
	case RoleLeader:
		return c.stepLeader(m)
	case RolePreCandidate, RoleCandidate:
		return c.stepCandidate(m)
	default:
		return c.stepFollower(m)
	}
}

// fromLeaderOrCandidate: message types a leader or a candidate sends. They are
// accepted from a sender outside the active configuration, because that
// configuration may come from an uncommitted entry that the sender's
// leadership is about to truncate (a node whose log removed X must still
// follow X, or it never learns that the removal was undone). Answers from
// outside the configuration are refused: nothing waits for them. The
// transport authenticates senders; the node admits any member of any
// configuration it has seen.
func fromLeaderOrCandidate(t MsgType) bool {
	switch t {
	case MsgApp, MsgHeartbeat, MsgTimeoutNow, MsgPreVote, MsgVote:
		return true
	}
	return false
}

// validate checks m without changing anything.
func (c *Core) validate(m Message) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s->%s: %s", ErrMalformedMessage, m.Type, m.From, m.To, fmt.Sprintf(format, args...))
	}
	if m.Type < MsgPreVote || m.Type > MsgSnapshotNeeded {
		return bad("unknown type %d", uint8(m.Type))
	}
	if m.From == c.id {
		return bad("message from self")
	}
	if m.From == None || (!c.isPeer(m.From) && !fromLeaderOrCandidate(m.Type)) {
		return fmt.Errorf("%w: %q (message %s)", ErrUnknownPeer, m.From, m.Type)
	}
	if m.To != c.id {
		return bad("addressed to %q, this is %q", m.To, c.id)
	}
	if m.Term == 0 && !(m.Type == MsgPreVoteResp && m.Reject) {
		return bad("term 0")
	}
	if m.Term >= MaxTerm {
		return bad("term %d at or above the ceiling %d (a forged message or a member with a bug; adopting it would leave no term to elect in)", m.Term, uint64(MaxTerm))
	}
	if m.Term > c.term && m.Term-c.term > MaxTermJump {
		return bad("term %d is more than %d above ours (%d): no cluster holds that many elections while a member is away", m.Term, uint64(MaxTermJump), c.term)
	}
	if m.Type != MsgApp && len(m.Entries) > 0 {
		return bad("unexpected entries")
	}
	switch m.Type {
	case MsgPreVote, MsgVote:
		if m.LogTerm > m.Term {
			return bad("last log term %d above term %d", m.LogTerm, m.Term)
		}
		if m.Context != 0 && !(m.Type == MsgVote && m.Context == contextTransfer) {
			return bad("unknown context %d", m.Context)
		}
	case MsgApp:
		if m.LogTerm > m.Term {
			return bad("previous entry term %d above term %d", m.LogTerm, m.Term)
		}
		if uint64(len(m.Entries)) > ^uint64(0)-m.Index {
			return bad("index overflow")
		}
		prevTerm := m.LogTerm
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Index != m.Index+1+uint64(i) {
				return bad("entry %d has index %d, want %d", i, e.Index, m.Index+1+uint64(i))
			}
			if e.Term < prevTerm || e.Term > m.Term {
				return bad("entry %d has term %d (previous %d, message term %d)", e.Index, e.Term, prevTerm, m.Term)
			}
			if !e.Kind.Valid() {
				return bad("entry %d has unknown kind %d", e.Index, uint8(e.Kind))
			}
			prevTerm = e.Term
		}
		// No check against overwriting committed entries is needed here:
		// handleAppend ignores entries at or below the commit index, so a
		// conflict can only be found above it.
		if m.Term == c.term && c.role == RoleLeader {
			return bad("another leader in term %d", m.Term)
		}
	case MsgHeartbeat:
		if m.Term == c.term && c.role == RoleLeader {
			return bad("another leader in term %d", m.Term)
		}
	}
	return nil
}

func (c *Core) send(m Message) {
	m.From = c.id
	c.msgs = append(c.msgs, m)
}

// Propose hands a write to the leader. Errors: ErrNotLeader, ErrTransferring,
// ErrBusy, ErrNotEnoughPeers, ErrBadAckMode, ErrBadProposal,
// ErrDuplicateProposal. The outcome arrives later as a Result in Ready.
// Propose takes ownership of p.Key and p.Value.
func (c *Core) Propose(p Proposal) error {
	if p.Kind == entry.KindConfig {
		return fmt.Errorf("%w: configuration entries go through ProposeConfChange", ErrBadProposal)
	}
	return c.propose(p)
}

func (c *Core) propose(p Proposal) error {
	if c.role != RoleLeader {
		return ErrNotLeader
	}
	if c.transferee != None {
		return ErrTransferring
	}
	switch p.Ack.Mode {
	case AckAsync, AckSync, AckMajority:
	case AckSemiSync:
		if p.Ack.Replicas < 1 {
			return fmt.Errorf("%w: semi-sync needs Replicas >= 1, got %d", ErrBadAckMode, p.Ack.Replicas)
		}
		if n := c.votingFollowers(); p.Ack.Replicas > n {
			return fmt.Errorf("%w: semi-sync wants %d followers, the cluster has %d voting followers",
				ErrNotEnoughPeers, p.Ack.Replicas, n)
		}
	default:
		return fmt.Errorf("%w: %d", ErrBadAckMode, uint8(p.Ack.Mode))
	}
	if !p.Kind.Valid() {
		return fmt.Errorf("%w: kind %d", ErrBadProposal, uint8(p.Kind))
	}
	if p.TimeoutTicks < 0 {
		return fmt.Errorf("%w: TimeoutTicks %d < 0", ErrBadProposal, p.TimeoutTicks)
	}
	if c.props.len() >= c.cfg.MaxPendingProposals {
		return ErrBusy
	}
	if c.props.has(p.ID) {
		return fmt.Errorf("%w: %d", ErrDuplicateProposal, p.ID)
	}
	timeout := p.TimeoutTicks
	if timeout == 0 {
		timeout = c.cfg.DefaultProposalTimeoutTicks
	}
	e := entry.Entry{
		Term: c.term, Index: c.log.lastIndex() + 1, Kind: p.Kind,
		Key: p.Key, Value: p.Value, RequestID: p.RequestID,
	}
	c.log.append(e)
	if e.Kind == entry.KindConfig {
		c.noteAppended([]entry.Entry{e})
	}
	c.props.add(&pendingProp{id: p.ID, index: e.Index, term: e.Term, ack: p.Ack, deadline: c.now + int64(timeout)})
	c.needBcast = true
	return nil
}

// Read asks for a linearizable read point; the answer arrives as a ReadResult
// in a later Ready. Errors: ErrNotLeader, ErrBusy.
func (c *Core) Read(r ReadRequest) error {
	if c.role != RoleLeader {
		return ErrNotLeader
	}
	return c.startRead(r)
}
