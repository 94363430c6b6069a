package repl

import (
	"errors"
	"fmt"
)

// Leadership chosen outside the core (Config.ExternalElection): an external
// coordinator (a lease-backed key in etcd, internal/coordinator) decides
// which node campaigns and hands it the term, a fencing token no other
// holder ever gets. The core still runs the election that follows: voters
// grant only a candidate whose log is at least as up to date as theirs and
// only once their stickiness is over, so the Raft safety argument (no
// committed entry lost, one leader per term, the lease) holds whatever the
// coordinator does. What the coordinator adds is the choice of candidate
// and a bound on a leader's reign: the leader steps down when the
// coordinator's grant runs out (ExtendLeadership), before another node can
// be granted the key.

// ErrExternalElection is returned for what a core whose elections are run
// by an external coordinator does not do on its own (a planned transfer).
var ErrExternalElection = errors.New("repl: leadership is chosen by the external coordinator")

// ErrStaleTerm is returned by Campaign for a term this node has already
// passed.
var ErrStaleTerm = errors.New("repl: campaign term is not newer than the current term")

// Campaign starts an election at term, which the external coordinator
// granted this node (strictly above every term it granted before). Called
// again with the same term while the election is still open, it asks the
// voters again (those that were still hearing the old leader ignored the
// first request). validTicks is how long the grant lasts from now: a leader
// elected under it steps down at the end unless ExtendLeadership moves it.
// The core holds at most ElectionTicks of it (see grant).
// Errors: ErrExternalElection (not configured), ErrBadTransferTarget
// (priority 0), ErrStaleTerm (term is behind this node's, or the election
// at term is over and lost).
func (c *Core) Campaign(term uint64, validTicks int) error {
	if !c.cfg.ExternalElection {
		return ErrExternalElection
	}
	if !c.promotable() {
		return fmt.Errorf("%w: this node has priority 0", ErrBadTransferTarget)
	}
	switch {
	case term > c.term:
		c.grant(validTicks)
		c.becomeCandidateAt(term)
		c.requestVotes(MsgVote, c.term, 0)
		return nil
	case term == c.term && c.role == RoleCandidate:
		c.grant(validTicks)
		c.requestVotes(MsgVote, c.term, 0)
		return nil
	case term == c.term && c.role == RoleLeader:
		c.grant(validTicks)
		return nil
	}
	return fmt.Errorf("%w: term %d, this node is at term %d as %s", ErrStaleTerm, term, c.term, c.role)
}

// ExtendLeadership moves the end of the coordinator's grant to validTicks
// from now (after the coordinator confirmed it again). The leader steps down
// when the grant ends; the grant also bounds its read lease.
func (c *Core) ExtendLeadership(validTicks int) {
	if c.cfg.ExternalElection {
		c.grant(validTicks)
	}
}

// grant records the coordinator's grant, clamped to ElectionTicks: a
// runtime that was stalled catches up at most two election timeouts of
// ticks (see Tick), so a longer grant could outlive, in real time, the one
// the coordinator gave. The runtime extends it on every renewal anyway.
func (c *Core) grant(validTicks int) {
	c.extUntil = c.now + int64(min(validTicks, c.cfg.ElectionTicks))
}

// externalExpired reports whether the coordinator's grant is over.
func (c *Core) externalExpired() bool {
	return c.cfg.ExternalElection && c.now >= c.extUntil
}
