// Package plan decides what a node does about the coordinator's leadership
// key: try to take it, campaign under it, keep extending its grant, or give
// it up. It is pure (no clock, no I/O): internal/node runs it against a real
// etcd through internal/coordinator, and the simulator against a modelled
// coordinator, so that both exercise the same decisions.
package plan

import "github.com/trireme-db/trireme/internal/repl"

// View is what the node knows now. Times are in one unit of the caller's
// choosing (the node uses nanoseconds, the simulator ticks).
type View struct {
	Now        int64
	Promotable bool        // this node may lead (a voter with priority > 0)
	Role       repl.Role   // the core's role
	Term       uint64      // the core's term
	Lead       repl.NodeID // the leader the core knows, None if none
	// SinceLeader is how long ago the core last heard its leader (or
	// started, if it never did).
	SinceLeader int64
	// Holding: this node holds the key, granted at HeldTerm, for ValidFor
	// more (counted conservatively by whoever renews it).
	Holding  bool
	HeldTerm uint64
	ValidFor int64
}

// Params are the policy's timings, in the View's unit.
type Params struct {
	// SuspectAfter: a follower tries to take the key only once it has not
	// heard a leader for this long (a leader that holds the key renews it
	// meanwhile, so the attempt would fail anyway; this saves the work).
	SuspectAfter int64
	// Retry is the least time between two attempts to take the key, and
	// between two requests for votes under it.
	Retry int64
	// GiveUp: a holder that has not become leader within this long gives
	// the key back (its log is behind a majority's, or it cannot reach
	// one), so that another node may take it.
	GiveUp int64
	// Backoff: after giving the key back, a node does not try to take it
	// again for this long.
	Backoff int64
}

// Kind is what to do.
type Kind uint8

const (
	None     Kind = iota
	Acquire       // try to take the key, asking for a term of at least MinTerm
	Campaign      // run the election at Term (repl.Core.Campaign), for ValidFor
	Extend        // the leader's grant runs ValidFor more (repl.Core.ExtendLeadership)
	Resign        // give the key back
)

func (k Kind) String() string {
	return [...]string{"none", "acquire", "campaign", "extend", "resign"}[k]
}

// Action is one decision.
type Action struct {
	Kind     Kind
	MinTerm  uint64 // Acquire
	Term     uint64 // Campaign
	ValidFor int64  // Campaign, Extend
}

// State is the policy's memory between decisions (the zero value is ready).
type State struct {
	lastTry      int64 // last Acquire or Campaign
	tried        bool
	holdingSince int64
	holding      bool
	backoffUntil int64
}

// Next decides the next step. The caller performs it (and, for Acquire,
// calls Next again with the outcome in the View).
func (s *State) Next(v View, p Params) Action {
	if !v.Holding {
		s.holding = false
		switch {
		case v.Role == repl.RoleLeader:
			// Not holding any more: the core steps down by itself when
			// the grant it was last given ends.
			return Action{}
		case !v.Promotable || v.Now < s.backoffUntil:
			return Action{}
		case v.Lead != repl.None && v.SinceLeader < p.SuspectAfter:
			return Action{}
		case s.tried && v.Now-s.lastTry < p.Retry:
			return Action{}
		}
		s.lastTry, s.tried = v.Now, true
		return Action{Kind: Acquire, MinTerm: v.Term + 1}
	}
	if !s.holding {
		s.holding, s.holdingSince = true, v.Now
	}
	switch {
	case v.Role == repl.RoleLeader && v.Term == v.HeldTerm:
		return Action{Kind: Extend, ValidFor: v.ValidFor}
	case v.Term > v.HeldTerm:
		// The cluster moved past the term this node was granted: the
		// grant is of no use, and holding it keeps others from leading.
		return s.resign(v, p)
	case v.Now-s.holdingSince >= p.GiveUp:
		return s.resign(v, p)
	case v.Term < v.HeldTerm:
		s.lastTry, s.tried = v.Now, true
		return Action{Kind: Campaign, Term: v.HeldTerm, ValidFor: v.ValidFor}
	case v.Role == repl.RoleCandidate:
		if v.Now-s.lastTry < p.Retry {
			return Action{}
		}
		s.lastTry, s.tried = v.Now, true
		return Action{Kind: Campaign, Term: v.HeldTerm, ValidFor: v.ValidFor}
	default:
		// A follower at the held term: its election was refused.
		return s.resign(v, p)
	}
}

func (s *State) resign(v View, p Params) Action {
	s.holding = false
	s.backoffUntil = v.Now + p.Backoff
	return Action{Kind: Resign}
}
