package repl

import "github.com/trireme-db/trireme/internal/entry"

// inLease reports whether this node heard from a live leader (or is the
// leader) within the minimum election timeout: then it refuses to vote or
// pre-vote for anyone else (leader stickiness), which is what makes the
// leader lease safe.
func (c *Core) inLease() bool {
	if c.bugs.leaseWithoutStickiness() {
		return false
	}
	// A node that just started may have acknowledged a leader's heartbeat
	// before it crashed: it refuses votes for an election timeout too.
	if c.now < int64(c.cfg.ElectionTicks) {
		return true
	}
	if c.bugs.adaptiveUnderLease() && c.adaptive() && c.lead != None {
		return c.electionElapsed < c.fd.deadline(&c.cfg)
	}
	return c.lead != None && c.electionElapsed < c.cfg.ElectionTicks
}

func (c *Core) resetRandomizedElectionTimeout() {
	e := c.cfg.ElectionTicks
	c.randomizedElectionTimeout = e + c.rand.Intn(e)
	if c.adaptive() {
		// Followers that lose the same leader at the same moment spread
		// their campaigns over a heartbeat interval: a split vote then
		// needs two of them to pick the same tick.
		c.fd.jitter = c.rand.Intn(c.cfg.HeartbeatTicks + 1)
	}
}

func (c *Core) adaptive() bool { return c.cfg.Detector == DetectorAdaptive }

// quorumTicks is the leader's check-quorum window: the longest a follower
// may stay silent before it would campaign (the adaptive upper bound, or
// the fixed election timeout).
func (c *Core) quorumTicks() int {
	if c.adaptive() {
		return c.cfg.MaxElectionTicks
	}
	return c.cfg.ElectionTicks
}

// electionDeadline is the silence (electionElapsed) after which this node
// campaigns: the adaptive detector's deadline while it follows a known
// leader, else the randomized timeout.
func (c *Core) electionDeadline() int {
	if c.adaptive() && c.role == RoleFollower && c.lead != None {
		return c.fd.deadline(&c.cfg)
	}
	return c.randomizedElectionTimeout
}

// PeerDown tells the core that the runtime found id's process gone: its
// address refused a connection (nothing listens there), which a live node
// never does, while a crashed or killed one does at once. With the
// adaptive detector a follower of id then campaigns as soon as its own
// stickiness runs out, rather than waiting for a heartbeat to be overdue;
// other voters still refuse votes until theirs runs out, so the leader
// lease stays safe even if the report is wrong (a proxy that refuses while
// the leader lives). Ignored otherwise.
func (c *Core) PeerDown(id NodeID) {
	if c.adaptive() && c.role == RoleFollower && id != None && id == c.lead {
		c.fd.leaderDown = true
	}
}

// detectorStatus reports the failure detector for Status.
func (c *Core) detectorStatus() DetectorStatus {
	s := DetectorStatus{
		Mode:            c.cfg.Detector,
		Suspicions:      c.fd.suspicions,
		FalseSuspicions: c.fd.falseSuspicions,
		Detections:      c.fd.detections,
	}
	if c.role == RoleLeader {
		return s
	}
	s.TimeoutTicks = c.electionDeadline()
	if c.adaptive() && c.role == RoleFollower && c.lead != None {
		s.MeanTicks, s.StddevTicks = c.fd.stats(&c.cfg)
		s.Suspicion = c.fd.suspicion(&c.cfg, c.electionElapsed)
		s.LeaderDown = c.fd.leaderDown
	}
	return s
}

// reset moves to term (clearing the vote if the term changes) and clears the
// per-role state. Leaving the leader role fails pending work.
func (c *Core) reset(term uint64) {
	if c.role == RoleLeader {
		c.loseLeadership()
	}
	if term != c.term {
		c.term = term
		c.vote = None
	}
	c.lead = None
	c.fd.leaderDown = false
	c.electionElapsed = 0
	c.heartbeatElapsed = 0
	c.resetRandomizedElectionTimeout()
	c.votes = nil
	c.prs = nil
	c.followers = nil
	c.needBcast = false
	c.transferee = None
	c.transferElapsed = 0
	c.timeoutNowSent = false
	c.snapReqs = nil
}

func (c *Core) becomeFollower(term uint64, lead NodeID) {
	c.reset(term)
	c.role = RoleFollower
	c.lead = lead
	if lead != None {
		c.ticksSinceLeader = 0
	}
	c.logger.Debug("became follower", "term", term, "peer", string(lead))
}

func (c *Core) becomePreCandidate() {
	// A pre-candidate keeps its term and vote: the pre-vote only asks.
	c.reset(c.term)
	c.role = RolePreCandidate
	c.votes = map[NodeID]bool{}
	c.logger.Debug("became pre-candidate", "term", c.term)
}

func (c *Core) becomeCandidate() { c.becomeCandidateAt(c.term + 1) }

// becomeCandidateAt starts a candidacy at term (> c.term), voting for itself.
func (c *Core) becomeCandidateAt(term uint64) {
	c.reset(term)
	c.role = RoleCandidate
	c.vote = c.id
	c.votes = map[NodeID]bool{}
	c.logger.Debug("became candidate", "term", c.term)
}

func (c *Core) becomeLeader() {
	c.reset(c.term)
	c.role = RoleLeader
	c.lead = c.id
	c.ticksSinceLeader = 0
	c.fd.heard(c.id, c.term) // this node's own suspicion, if any, was right
	last := c.log.lastIndex()
	c.prs = make(map[NodeID]*progress, len(c.conf.Members))
	c.followers = c.followers[:0]
	c.syncProgress()
	c.props = proposals{}
	c.rs = readState{}
	c.autoTransferMin = c.now + int64(c.cfg.ElectionTicks)
	// A no-op opens the term: committing it commits every earlier entry.
	c.log.append(entry.Entry{Term: c.term, Index: last + 1, Kind: entry.KindNoop})
	c.needBcast = true
	c.logger.Info("became leader", "term", c.term, "index", last+1)
}

// tickElection runs on followers and candidates.
func (c *Core) tickElection() {
	c.electionElapsed++
	c.ticksSinceLeader++
	if c.cfg.ExternalElection {
		// The coordinator decides who campaigns (Campaign). A leader
		// silent for the check-quorum window is forgotten, so that this
		// node stops naming (and forwarding to) a leader that stepped
		// down or died, until the next one is heard.
		if c.lead != None && c.electionElapsed >= c.quorumTicks() {
			c.logger.Info("leader silent; no leader until the coordinator's next one is heard", "peer", string(c.lead), "term", c.term)
			c.lead = None
		}
		return
	}
	if c.promotable() && c.electionElapsed >= c.electionDeadline() {
		c.electionElapsed = 0
		if c.role == RoleFollower && c.lead != None {
			c.fd.suspect(c.lead, c.term)
		}
		c.campaign(false)
	}
}

// campaign starts a pre-vote (if configured) or an election. transfer marks a
// campaign started by MsgTimeoutNow: it skips the pre-vote and its votes
// override leader stickiness.
func (c *Core) campaign(transfer bool) {
	if c.cfg.PreVote && !transfer {
		c.becomePreCandidate()
		c.requestVotes(MsgPreVote, c.term+1, 0)
		return
	}
	c.elect(transfer)
}

// elect starts a real election (after a won pre-vote, or directly).
func (c *Core) elect(transfer bool) {
	c.becomeCandidate()
	ctx := uint64(0)
	if transfer {
		ctx = contextTransfer
	}
	c.requestVotes(MsgVote, c.term, ctx)
}

func (c *Core) requestVotes(t MsgType, term, ctx uint64) {
	c.votes[c.id] = true
	if c.tally() {
		return
	}
	last, lastTerm := c.log.lastIndex(), c.log.lastTerm()
	for _, p := range c.conf.Members {
		if p.ID == c.id || p.Learner {
			continue
		}
		c.send(Message{Type: t, To: p.ID, Term: term, LogTerm: lastTerm, Index: last, Context: ctx})
	}
}

// tally counts the answers; it reports whether the campaign ended.
func (c *Core) tally() bool {
	granted, rejected := 0, 0
	for id, v := range c.votes {
		if !c.isVoter(id) {
			continue // a learner's answer, or one from a member since removed
		}
		if v {
			granted++
		} else {
			rejected++
		}
	}
	switch {
	case granted >= c.quorum:
		if c.role == RolePreCandidate {
			c.elect(false)
		} else {
			c.becomeLeader()
		}
		return true
	case c.voters-rejected < c.quorum:
		c.becomeFollower(c.term, None)
		return true
	}
	return false
}

func (c *Core) handleVoteRequest(m Message) {
	pre := m.Type == MsgPreVote
	respType := MsgVoteResp
	if pre {
		respType = MsgPreVoteResp
	}
	canVote := c.vote == m.From ||
		(c.vote == None && c.lead == None) ||
		(pre && m.Term > c.term)
	upToDate := c.bugs.voteWithoutLogCheck() || c.log.isUpToDate(m.Index, m.LogTerm)
	if canVote && upToDate {
		c.send(Message{Type: respType, To: m.From, Term: m.Term})
		if !pre {
			c.electionElapsed = 0
			c.vote = m.From
		}
		c.logger.Debug("granted vote", "peer", string(m.From), "term", m.Term, "pre", pre)
		return
	}
	c.send(Message{Type: respType, To: m.From, Term: c.term, Reject: true})
}

func (c *Core) stepCandidate(m Message) error {
	switch m.Type {
	case MsgApp, MsgHeartbeat:
		c.becomeFollower(m.Term, m.From)
		return c.stepFollower(m)
	case MsgPreVoteResp:
		if c.role == RolePreCandidate && (m.Term == c.term+1 || (m.Reject && m.Term == c.term)) {
			c.votes[m.From] = !m.Reject
			c.tally()
		}
	case MsgVoteResp:
		if c.role == RoleCandidate && m.Term == c.term {
			c.votes[m.From] = !m.Reject
			c.tally()
		}
	}
	return nil
}

func (c *Core) stepFollower(m Message) error {
	switch m.Type {
	case MsgApp:
		c.heardLeader(m.From)
		c.handleAppend(m)
	case MsgHeartbeat:
		c.heardLeader(m.From)
		c.fd.observe(c.now, m.From)
		c.handleHeartbeat(m)
	case MsgTimeoutNow:
		if c.cfg.ExternalElection {
			c.logger.Info("ignoring MsgTimeoutNow: leadership is chosen by the coordinator", "peer", string(m.From))
			return nil
		}
		if !c.promotable() {
			c.logger.Info("ignoring MsgTimeoutNow: priority 0", "peer", string(m.From))
			return nil
		}
		c.logger.Info("campaigning on MsgTimeoutNow", "peer", string(m.From), "term", c.term)
		c.campaign(true)
	}
	return nil
}

func (c *Core) heardLeader(from NodeID) {
	c.electionElapsed = 0
	c.ticksSinceLeader = 0
	c.lead = from
	c.fd.leaderDown = false
	c.fd.heard(from, c.term)
}
