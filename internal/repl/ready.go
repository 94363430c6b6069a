package repl

// hardState is the state to persist. Its commit index never covers an entry
// that is not yet known durable: the runtime may persist the hard state of a
// Ready before (or without) its entries, and a commit hint that covered an
// entry this Ready overwrites would, after a crash, make the node apply the
// stale entry it still holds at that index.
func (c *Core) hardState() HardState {
	return HardState{Term: c.term, Vote: c.vote, Commit: min(c.log.committed, c.log.stableIndex())}
}

// HasReady reports whether Ready would return work. (It first builds the
// MsgApps that proposals deferred, so that a true answer means real work.)
func (c *Core) HasReady() bool {
	c.flush()
	return c.hardState() != c.prevHS || len(c.log.unhanded()) > 0 || len(c.msgs) > 0 ||
		len(c.discarded) > 0 || len(c.results) > 0 || len(c.readResults) > 0 || len(c.snapReqs) > 0 ||
		c.log.applicableTo() > c.log.applying || c.readsReleasable()
}

// Ready returns the pending work and hands it over: the next call returns only
// newer work. Process it in the order documented on Ready, then call
// Advance(rd). Ready may be called again before Advance (for a pipelined
// runtime) provided the batches are processed in order.
func (c *Core) Ready() Ready {
	c.flush()
	var rd Ready
	if hs := c.hardState(); hs != c.prevHS {
		rd.HardState = hs
		c.prevHS = hs
	}
	if ents := c.log.unhanded(); len(ents) > 0 {
		rd.Entries = ents[:len(ents):len(ents)]
		c.log.handed = c.log.lastIndex()
	}
	rd.Discarded, c.discarded = c.discarded, nil
	rd.Messages, c.msgs = c.msgs, nil
	c.rs.roundQueued = false
	if to := c.log.applicableTo(); to > c.log.applying {
		ents, err := c.log.entries(c.log.applying+1, to+1, c.cfg.MaxApplyBytes)
		if err != nil {
			c.logger.Error("reading committed entries", "index", c.log.applying+1, "err", err)
		} else if len(ents) > 0 {
			rd.CommittedEntries = ents
			c.log.applying = ents[len(ents)-1].Index
			c.log.trimKept()
		}
	}
	c.releaseReads()
	rd.Reads, c.readResults = c.readResults, nil
	c.demoteDiscardedResults()
	rd.Results, c.results = c.results, nil
	rd.Snapshots, c.snapReqs = c.snapReqs, nil
	c.pruneConfs()
	return rd
}

// demoteDiscardedResults turns an OK result whose entry this node has since
// discarded (a newer leader's log replaced it before the answer left) into
// OutcomeUnknown: the write met its ack mode (async or a semi-sync below a
// majority) and is in the rollback journal, but answering "ok" for an entry
// already known to be gone would mislead the writer.
func (c *Core) demoteDiscardedResults() {
	for i := range c.results {
		r := &c.results[i]
		if r.Outcome != OutcomeOK {
			continue
		}
		if t, err := c.log.term(r.Index); err != nil || t != r.Term {
			r.Outcome = OutcomeUnknown
		}
	}
}

// Advance tells the core that rd has been fully processed: its entries are
// durable in Storage and its committed entries applied.
func (c *Core) Advance(rd Ready) {
	if n := len(rd.Entries); n > 0 {
		last := rd.Entries[n-1]
		c.log.stableTo(last.Index, last.Term)
	}
	if n := len(rd.CommittedEntries); n > 0 {
		if i := rd.CommittedEntries[n-1].Index; i > c.log.applied {
			c.log.applied = i
		}
	}
	if c.role == RoleLeader && len(rd.Entries) > 0 {
		if c.maybeCommit() {
			c.needBcast = true
		}
		c.props.evaluate(c)
	}
}

// Replicating reports whether this node leads and has log entries that are
// not yet committed: a batch is on its way to the followers. It allocates
// nothing (unlike Status), for callers that ask on every proposal.
func (c *Core) Replicating() bool {
	return c.role == RoleLeader && c.log.lastIndex() > c.log.committed
}

// Status returns a snapshot of the core's state.
func (c *Core) Status() Status {
	s := Status{
		ID:           c.id,
		Role:         c.role,
		Term:         c.term,
		Vote:         c.vote,
		Lead:         c.lead,
		LastIndex:    c.log.lastIndex(),
		StableIndex:  c.log.stableIndex(),
		Commit:       c.log.committed,
		Applied:      c.log.applied,
		LeaderCommit: c.leaderCommit,
		LeaseValid:   c.leaseValid(),
		Transferring: c.transferee,
		FirstIndex:   c.log.firstIndex(),
		Detector:     c.detectorStatus(),
	}
	s.Conf, s.ConfIndex = c.Conf()
	if c.role == RoleLeader {
		s.LeaderCommit = c.log.committed
		s.TicksSinceLeader = 0
		s.Followers = make([]FollowerStatus, 0, len(c.followers))
		for _, pr := range c.followers {
			s.Followers = append(s.Followers, FollowerStatus{
				ID: pr.id, Match: pr.match, Next: pr.next,
				TicksSinceContact: int(c.now - pr.lastContact),
				Inflight:          pr.inflight.count,
				Learner:           pr.learner,
				State:             pr.state.String(),
			})
		}
	} else {
		s.TicksSinceLeader = c.ticksSinceLeader
	}
	return s
}
