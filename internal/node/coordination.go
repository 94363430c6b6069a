package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/coordinator"
	"github.com/trireme-db/trireme/internal/coordinator/plan"
	"github.com/trireme-db/trireme/internal/repl"
)

// Elections (Config.Election, --election).
const (
	ElectionQuorum      = "quorum"      // the nodes elect among themselves (Raft)
	ElectionCoordinator = "coordinator" // an etcd lease decides who campaigns
)

// DefaultCoordinatorTTL is Config.CoordinatorTTL's default.
const DefaultCoordinatorTTL = 2 * time.Second

// coordRunner is the node's side of the external coordinator: it runs the
// policy of internal/coordinator/plan against a real etcd (through
// internal/coordinator) and hands the core what the policy decides (the
// campaign at the granted term, the end of the grant). It owns the Elector;
// the core is touched only on the run loop (Node.ctl).
type coordRunner struct {
	n      *Node
	el     *coordinator.Elector
	log    *slog.Logger
	params plan.Params
	period time.Duration

	heldTerm uint64 // the term of the key this node holds (Elector.Holding)
	state    plan.State

	stop chan struct{}
	wg   sync.WaitGroup
}

// startCoordinator connects to etcd and starts the runner (coordinator
// elections only).
func (n *Node) startCoordinator() error {
	cfg := n.cfg
	el, err := coordinator.New(coordinator.Config{
		Endpoints: cfg.CoordinatorEndpoints, Cluster: n.clusterID, ID: cfg.ID,
		TTL: cfg.CoordinatorTTL, Logger: n.log.With("component", "coordinator"),
	})
	if err != nil {
		return err
	}
	r := &coordRunner{n: n, el: el, log: n.log.With("component", "coordinator"), stop: make(chan struct{}),
		period: max(cfg.Heartbeat/2, time.Millisecond),
		params: plan.Params{
			SuspectAfter: int64(cfg.ElectionTimeout),
			Retry:        int64(cfg.Heartbeat),
			GiveUp:       int64(3 * cfg.ElectionTimeout),
			Backoff:      int64(cfg.CoordinatorTTL),
		}}
	n.coord = r
	r.wg.Add(1)
	go r.run()
	return nil
}

// close stops the runner; the key, if held, is left to expire (as after a
// crash) unless the node hands it back first (Node.Stop resigns).
func (r *coordRunner) close() {
	close(r.stop)
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if r.el.Holding() {
		// A clean stop gives the key back so that another node need not
		// wait for its lease to expire; the core stopped leading already.
		if err := r.el.Resign(ctx); err != nil {
			r.log.Warn("could not give the leadership key back; it expires with its lease", "err", err)
		}
	}
	r.el.Close()
}

func (r *coordRunner) run() {
	defer r.wg.Done()
	t := time.NewTicker(r.period)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.n.doneCh:
			return
		case <-t.C:
			r.step()
		}
	}
}

// step makes one decision and carries it out.
func (r *coordRunner) step() {
	n := r.n
	s, _ := n.status()
	st := &s.st
	now := time.Now()
	holding := r.el.Holding()
	v := plan.View{
		Now:         now.UnixNano(),
		Promotable:  st.Conf.IsVoter(n.id) && n.cfg.Priority > 0,
		Role:        st.Role,
		Term:        st.Term,
		Lead:        st.Lead,
		SinceLeader: int64(time.Duration(st.TicksSinceLeader)*n.tick + now.Sub(s.at)),
		Holding:     holding,
		HeldTerm:    r.heldTerm,
		ValidFor:    int64(r.el.ValidUntil().Sub(now)),
	}
	a := r.state.Next(v, r.params)
	switch a.Kind {
	case plan.Acquire:
		ctx, cancel := context.WithTimeout(context.Background(), 4*r.period)
		term, won, holder, err := r.el.TryAcquire(ctx, a.MinTerm)
		cancel()
		switch {
		case err != nil:
			r.log.Debug("could not try for the leadership key", "err", err)
		case won:
			r.heldTerm = term
			r.log.Info("took the leadership key", "term", term)
			r.step() // campaign at once
		default:
			r.log.Debug("the leadership key is held", "holder", holder)
		}
	case plan.Campaign:
		term := a.Term
		n.ctl(func() {
			if ticks := r.grantTicks(); ticks > 0 {
				if err := n.core.Campaign(term, ticks); err != nil && !errors.Is(err, repl.ErrStaleTerm) {
					r.log.Warn("campaign under the coordinator's grant failed", "term", term, "err", err)
				}
			}
		})
	case plan.Extend:
		n.ctl(func() {
			if ticks := r.grantTicks(); ticks > 0 {
				n.core.ExtendLeadership(ticks)
			}
		})
	case plan.Resign:
		ctx, cancel := context.WithTimeout(context.Background(), 4*r.period)
		err := r.el.Resign(ctx)
		cancel()
		r.log.Info("gave the leadership key back", "term", r.heldTerm, "err", err)
	}
}

// grantTicks converts what remains of the grant into core ticks, on the
// run loop: the core's clock is first brought up to the wall clock, and
// the partial tick is dropped, so the core's grant never ends later than
// the Elector's ValidUntil.
func (r *coordRunner) grantTicks() int {
	n := r.n
	now := time.Now()
	n.tickUpTo(now)
	return int(r.el.ValidUntil().Sub(now)/n.tick) - 1
}

// ctl runs f on the run loop (which owns the core), unless the node stopped.
func (n *Node) ctl(f func()) {
	select {
	case n.ctlCh <- f:
	case <-n.doneCh:
	}
}
