package repl

import "fmt"

// TransferLeadership starts a planned switchover to `to`: the leader stops
// taking writes (Propose returns ErrTransferring), brings `to` up to date,
// then sends it MsgTimeoutNow so that it campaigns at once. The transfer is
// abandoned after an election timeout. Transferring to self is a no-op.
// Errors: ErrNotLeader, ErrUnknownPeer, ErrBadTransferTarget (priority 0).
func (c *Core) TransferLeadership(to NodeID) error {
	if c.role != RoleLeader {
		return ErrNotLeader
	}
	if c.cfg.ExternalElection && to != c.id {
		return ErrExternalElection
	}
	if !c.isPeer(to) {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, to)
	}
	if to == c.id {
		return nil
	}
	if c.peerPriority(to) == 0 {
		return fmt.Errorf("%w: %q has priority 0 and never leads", ErrBadTransferTarget, to)
	}
	if c.transferee == to {
		return nil
	}
	if c.transferee != None {
		c.abortTransfer("superseded")
	}
	c.transferee = to
	c.transferElapsed = 0
	c.timeoutNowSent = false
	c.logger.Info("leadership transfer started", "peer", string(to), "term", c.term)
	pr := c.prs[to]
	if !c.maybeSendTimeoutNow(pr) {
		c.sendAppends(pr, true)
	}
	return nil
}

// maybeSendTimeoutNow sends MsgTimeoutNow to the transfer target once it has
// every entry.
func (c *Core) maybeSendTimeoutNow(pr *progress) bool {
	if c.transferee == None || pr.id != c.transferee || c.timeoutNowSent {
		return false
	}
	if pr.match != c.log.lastIndex() {
		return false
	}
	c.timeoutNowSent = true
	c.send(Message{Type: MsgTimeoutNow, To: pr.id, Term: c.term})
	c.logger.Info("sent MsgTimeoutNow", "peer", string(pr.id), "term", c.term)
	return true
}

func (c *Core) abortTransfer(why string) {
	c.logger.Info("leadership transfer abandoned", "peer", string(c.transferee), "reason", why)
	if c.timeoutNowSent {
		// A delayed MsgTimeoutNow may still start an election that
		// overrides stickiness: no lease for another election timeout.
		c.rs.leaseFloor = c.now + int64(c.cfg.ElectionTicks)
	}
	c.transferee = None
	c.transferElapsed = 0
	c.timeoutNowSent = false
	c.autoTransferMin = c.now + 2*int64(c.cfg.ElectionTicks)
}

// maybePriorityTransfer hands leadership to the caught-up, recently active
// follower with the highest priority, if it is higher than ours.
func (c *Core) maybePriorityTransfer() {
	if c.role != RoleLeader || c.transferee != None || c.now < c.autoTransferMin || c.cfg.ExternalElection {
		return
	}
	last := c.log.lastIndex()
	var best *progress
	bestPri := c.priority
	for _, pr := range c.followers {
		p := c.peerPriority(pr.id)
		if p <= bestPri || pr.match != last || c.now-pr.lastContact > int64(c.cfg.ElectionTicks) {
			continue
		}
		best, bestPri = pr, p
	}
	if best == nil {
		return
	}
	c.logger.Info("transferring leadership to a higher-priority node", "peer", string(best.id))
	_ = c.TransferLeadership(best.id)
}
