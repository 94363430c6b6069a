package sim

import (
	"github.com/trireme-db/trireme/internal/coordinator/plan"
	"github.com/trireme-db/trireme/internal/repl"
)

// The external coordinator (Timing.Coordinator): a model of a lease-backed
// leadership key in etcd (internal/coordinator) and of each node's side of
// it, driven by the same policy as internal/node (internal/coordinator/plan).
//
// The model: one key with a holder and an expiry (global ticks), a stored
// term that each grant advances (max(stored+1, asked)), and per node a
// holding flag and the end of its grant as the node counts it (the last
// renewal + TTL - coordMargin: etcd counts from receipt, the node from
// sending, and a drifting clock must not outrun it). A node cut off from the
// coordinator (Faults.CoordCut), or all of them while it is down
// (Faults.CoordDown), renews nothing: its grant runs out and it steps down;
// the key expires later and another node may take it.

// coordMargin is the ticks a node takes off its grant: more than its clock
// can drift within a TTL.
const coordMargin = 3

type coordModel struct {
	holder    repl.NodeID
	expires   int64
	term      uint64
	downUntil int64
}

// coordNode is a node's view of the key (lost in a crash).
type coordNode struct {
	holding    bool
	heldTerm   uint64
	validUntil int64
	cutUntil   int64
	plan       plan.State
}

func (c *cluster) coordReachable(n *simNode) bool {
	return c.now >= c.coord.downUntil && c.now >= n.coord.cutUntil
}

// coordStep runs the coordinator and every live node's side of it.
func (c *cluster) coordStep(faulty bool) {
	if !c.cfg.Timing.Coordinator {
		return
	}
	t := c.cfg.Timing
	f := c.cfg.Faults
	if faulty {
		if c.chance(f.CoordDown) && c.now >= c.coord.downUntil {
			c.coord.downUntil = c.now + 1 + int64(c.rng.Intn(2*t.CoordTTL))
			c.tr.add(c.now, "coord-down until=%d", c.coord.downUntil)
		}
		if c.chance(f.CoordCut) {
			n := c.nodes[c.rng.Intn(len(c.nodes))]
			n.coord.cutUntil = c.now + 1 + int64(c.rng.Intn(2*t.CoordTTL))
			c.tr.add(c.now, "coord-cut %s until=%d", n.id, n.coord.cutUntil)
		}
	}
	if c.coord.holder != repl.None && c.now >= c.coord.expires {
		c.tr.add(c.now, "coord-expired %s term=%d", c.coord.holder, c.coord.term)
		c.coord.holder = repl.None
	}
	params := plan.Params{SuspectAfter: int64(t.ElectionTicks), Retry: int64(t.HeartbeatTicks),
		GiveUp: int64(3 * t.ElectionTicks), Backoff: int64(2 * t.ElectionTicks)}
	for _, n := range c.nodes {
		if !n.up || n.paused || n.stopped {
			continue
		}
		cn := &n.coord
		if cn.holding {
			switch {
			case c.coordReachable(n) && c.coord.holder == n.id:
				c.coord.expires = c.now + int64(t.CoordTTL)
				cn.validUntil = c.now + int64(t.CoordTTL-coordMargin)
			case c.coordReachable(n):
				cn.holding = false // the key is gone or another's
			case c.now >= cn.validUntil:
				cn.holding = false
			}
		}
		st := n.core.Status()
		v := plan.View{Now: c.now, Promotable: st.Conf.IsVoter(n.id), Role: st.Role, Term: st.Term, Lead: st.Lead,
			SinceLeader: int64(st.TicksSinceLeader), Holding: cn.holding, HeldTerm: cn.heldTerm, ValidFor: cn.validUntil - c.now}
		a := cn.plan.Next(v, params)
		switch a.Kind {
		case plan.Acquire:
			if !c.coordReachable(n) || c.coord.holder != repl.None {
				continue
			}
			c.coord.term = max(c.coord.term+1, a.MinTerm)
			c.coord.holder, c.coord.expires = n.id, c.now+int64(t.CoordTTL)
			cn.holding, cn.heldTerm, cn.validUntil = true, c.coord.term, c.now+int64(t.CoordTTL-coordMargin)
			c.tr.add(c.now, "coord-acquire %s term=%d", n.id, c.coord.term)
		case plan.Campaign:
			err := n.core.Campaign(a.Term, int(a.ValidFor))
			c.tr.add(c.now, "coord-campaign %s term=%d valid=%d: %v", n.id, a.Term, a.ValidFor, err)
		case plan.Extend:
			n.core.ExtendLeadership(int(a.ValidFor))
		case plan.Resign:
			cn.holding = false
			if c.coordReachable(n) && c.coord.holder == n.id {
				c.coord.holder = repl.None
			}
			c.tr.add(c.now, "coord-resign %s term=%d", n.id, cn.heldTerm)
		}
	}
}
