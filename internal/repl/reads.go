package repl

import (
	"fmt"
	"sort"
)

// readState is the leader's bookkeeping for heartbeat rounds, the lease and
// pending linearizable reads.
//
// Every heartbeat broadcast is a round with an id (ctx, increasing within a
// term) and the tick it was sent. A follower that answers round r proves it
// was still following this leader after r was sent, and so also after every
// earlier round. Round r is confirmed once a quorum (the leader included) has
// answered r or a later round; the lease then extends to sent(r)+LeaseTicks.
type readState struct {
	ctx         uint64  // last round id sent
	base        uint64  // round id of sent[0]
	sent        []int64 // sent[i]: tick round base+i was sent
	confirmed   uint64  // highest round confirmed by a quorum
	leaseUntil  int64   // lease valid while now < leaseUntil
	leaseFloor  int64   // only rounds sent at or after this tick extend the lease
	roundQueued bool    // the latest round's heartbeats have not yet left in a Ready

	waitRound []pendingRead // waiting for their round to be confirmed
	waitApply []pendingRead // confirmed, waiting for their index to be applied
}

type pendingRead struct {
	id      uint64
	index   uint64
	round   uint64
	arrived int64
}

func (rs *readState) newRound(now int64) uint64 {
	rs.ctx++
	if len(rs.sent) == 0 {
		rs.base = rs.ctx
	}
	rs.sent = append(rs.sent, now)
	rs.roundQueued = true
	return rs.ctx
}

func (rs *readState) sentAt(ctx uint64) int64 { return rs.sent[ctx-rs.base] }

// leaseValid reports whether the leader may serve reads without a round.
// The lease is never valid during a leadership transfer: the target's
// election overrides stickiness.
func (c *Core) leaseValid() bool {
	return c.role == RoleLeader && c.transferee == None && c.now < c.rs.leaseUntil && !c.externalExpired()
}

// updateReadQuorum recomputes the confirmed round, extends the lease and
// releases reads whose round is confirmed.
func (c *Core) updateReadQuorum() {
	rs := &c.rs
	acks := make([]uint64, 0, c.voters)
	if c.isVoter(c.id) {
		acks = append(acks, rs.ctx)
	}
	for _, pr := range c.followers {
		if !pr.learner {
			acks = append(acks, pr.ackedCtx)
		}
	}
	if len(acks) < c.quorum {
		return
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i] > acks[j] })
	q := acks[c.quorum-1]
	if q <= rs.confirmed || q == 0 {
		return
	}
	rs.confirmed = q
	if sent := rs.sentAt(q); c.transferee == None && sent >= rs.leaseFloor {
		rs.leaseUntil = max(rs.leaseUntil, sent+int64(c.cfg.LeaseTicks))
	}
	// Forget rounds below the confirmed one.
	if drop := q - rs.base; drop > 0 {
		rs.sent = append(rs.sent[:0], rs.sent[drop:]...)
		rs.base = q
	}
	n := 0
	for _, r := range rs.waitRound {
		if r.round <= q {
			rs.waitApply = append(rs.waitApply, r)
		} else {
			rs.waitRound[n] = r
			n++
		}
	}
	rs.waitRound = rs.waitRound[:n]
}

func (c *Core) startRead(r ReadRequest) error {
	if r.Level != ReadLinearizable && r.Level != ReadIndexOnly {
		return fmt.Errorf("%w: unknown read level %d", ErrBadProposal, uint8(r.Level))
	}
	rs := &c.rs
	if len(rs.waitRound)+len(rs.waitApply) >= c.cfg.MaxPendingProposals {
		return ErrBusy
	}
	pr := pendingRead{id: r.ID, index: c.log.lastIndex(), arrived: c.now}
	if r.Level == ReadLinearizable && c.leaseValid() {
		rs.waitApply = append(rs.waitApply, pr)
		return nil
	}
	if rs.roundQueued {
		// The latest round has not left yet: it is sent after this read
		// arrived, so it can confirm it too.
		pr.round = rs.ctx
		rs.waitRound = append(rs.waitRound, pr)
		return nil
	}
	c.heartbeatElapsed = 0
	c.bcastHeartbeat() // may confirm at once in a one-node cluster
	pr.round = rs.ctx
	if pr.round <= rs.confirmed {
		rs.waitApply = append(rs.waitApply, pr)
	} else {
		rs.waitRound = append(rs.waitRound, pr)
	}
	return nil
}

// releaseReads moves the confirmed reads whose index is applied (or handed
// out for applying) to the output.
func (c *Core) releaseReads() {
	rs := &c.rs
	n := 0
	for _, r := range rs.waitApply {
		if r.index <= c.log.applying {
			c.readResults = append(c.readResults, ReadResult{ID: r.id, Index: r.index})
		} else {
			rs.waitApply[n] = r
			n++
		}
	}
	rs.waitApply = rs.waitApply[:n]
}

func (c *Core) readsReleasable() bool {
	for _, r := range c.rs.waitApply {
		if r.index <= c.log.applying {
			return true
		}
	}
	return false
}

// expireReads fails reads pending longer than an election timeout.
func (c *Core) expireReads() {
	limit := int64(c.cfg.ElectionTicks)
	expire := func(list []pendingRead) []pendingRead {
		n := 0
		for _, r := range list {
			if c.now-r.arrived >= limit {
				c.readResults = append(c.readResults, ReadResult{ID: r.id, Index: r.index, Err: ErrReadTimeout})
			} else {
				list[n] = r
				n++
			}
		}
		return list[:n]
	}
	c.rs.waitRound = expire(c.rs.waitRound)
	c.rs.waitApply = expire(c.rs.waitApply)
}

// loseLeadership fails everything pending on the leader.
func (c *Core) loseLeadership() {
	c.props.failAll(c)
	for _, list := range [][]pendingRead{c.rs.waitRound, c.rs.waitApply} {
		for _, r := range list {
			c.readResults = append(c.readResults, ReadResult{ID: r.id, Index: r.index, Err: ErrLeadershipLost})
		}
	}
	c.rs = readState{}
	c.leaderCommit = c.log.committed
	c.logger.Info("lost leadership", "term", c.term)
}
