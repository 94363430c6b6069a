package llnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/vclock"
)

var _ api.Service = (*Node)(nil)

func (n *Node) checkKey(key []byte) error {
	switch {
	case n.failed.Load():
		return api.ErrStopped
	case len(key) == 0:
		return api.ErrEmptyKey
	case len(key) > leaderless.MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, at most %d in leaderless mode", api.ErrKeyTooLarge, len(key), leaderless.MaxKeyLen)
	}
	return nil
}

// quorum resolves a request's W or R (or the node's default).
func (n *Node) quorum(q, def api.Quorum) (int, error) {
	if q == api.QuorumDefault {
		q = def
	}
	return q.Resolve(n.cfg.ReplicationFactor)
}

// coreError maps the core's refusals to the api's words.
func coreError(err error, write bool) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, leaderless.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrBadQuorum, err)
	case errors.Is(err, leaderless.ErrUnavailable):
		return fmt.Errorf("%w: %v", api.ErrQuorumUnavailable, err)
	case errors.Is(err, leaderless.ErrTimeout) && write:
		return fmt.Errorf("%w: %v; the write may be durable on the replicas that acknowledged it and will then spread by repair", api.ErrWriteTimeout, err)
	case errors.Is(err, leaderless.ErrTimeout):
		return fmt.Errorf("%w: %v", api.ErrQuorumUnavailable, err)
	case errors.Is(err, leaderless.ErrOverloaded):
		return fmt.Errorf("%w: %v", api.ErrBusy, err)
	}
	return err
}

// do hands r to the run goroutine and waits for its result.
func (n *Node) do(ctx context.Context, r *request) (leaderless.Result, error) {
	r.done = make(chan requestDone, 1)
	select {
	case n.propCh <- r:
	case <-ctx.Done():
		return leaderless.Result{}, ctx.Err() // not proposed: nothing done
	case <-n.stopCh:
		return leaderless.Result{}, api.ErrStopped
	}
	select {
	case d := <-r.done:
		if d.err != nil {
			return leaderless.Result{}, d.err
		}
		return d.res, coreError(d.res.Err, r.write != nil)
	case <-ctx.Done():
		if r.write != nil {
			return leaderless.Result{}, fmt.Errorf("%w: %v", api.ErrWriteTimeout, ctx.Err())
		}
		return leaderless.Result{}, ctx.Err()
	}
}

// write coordinates a put or a delete.
func (n *Node) write(ctx context.Context, key, value []byte, del bool, o api.WriteOptions) (api.WriteResult, error) {
	if err := n.checkKey(key); err != nil {
		return api.WriteResult{}, err
	}
	if !o.Default && o.Ack != (api.Ack{}) {
		return api.WriteResult{}, fmt.Errorf("%w: a leaderless write is acknowledged by W replicas: use w= (one, quorum, all or a number), not ack", api.ErrNotSupported)
	}
	if !o.Session.IsZero() {
		return api.WriteResult{}, fmt.Errorf("%w: sessions need a single leader", api.ErrNotSupported)
	}
	w, err := n.quorum(o.W, n.cfg.DefaultW)
	if err != nil {
		return api.WriteResult{}, err
	}
	var cctx vclock.Vector
	if o.Context != "" {
		c, err := vclock.DecodeToken(n.cfg.ClusterID, string(key), o.Context)
		if err != nil {
			return api.WriteResult{}, fmt.Errorf("%w: %v", api.ErrBadContext, err)
		}
		cctx = c.Vector
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	start := time.Now()
	lw := &leaderless.Write{Key: slices.Clone(key), Value: value, Delete: del, Context: cctx, W: w}
	res, err := n.do(ctx, &request{write: lw})
	out := api.WriteResult{Replicas: res.Replicas, Durability: fmt.Sprintf("w=%d", w)}
	if sib, ok := newest(res.Set); ok {
		out.Index = sib.Dot.Counter
	}
	if err != nil {
		n.m.writes.WithLabelValues(outcome(err)).Inc()
		out.Durability = ""
		return out, err
	}
	n.m.writes.WithLabelValues("ok").Inc()
	n.m.writeSeconds.Observe(time.Since(start).Seconds())
	return out, nil
}

func outcome(err error) string {
	if errors.Is(err, api.ErrWriteTimeout) {
		return "timeout"
	}
	return "error"
}

// newest returns the highest-ranked sibling of s.
func newest(s vclock.Set) (vclock.Sibling, bool) {
	if len(s.Siblings) == 0 {
		return vclock.Sibling{}, false
	}
	return slices.MaxFunc(s.Siblings, vclock.Rank), true
}

// Put implements api.Service: coordinated here, durable on W replicas.
func (n *Node) Put(ctx context.Context, key, value []byte, o api.WriteOptions) (api.WriteResult, error) {
	if len(value) > n.cfg.MaxValueBytes {
		return api.WriteResult{}, fmt.Errorf("%w: %d bytes, at most %d", api.ErrValueTooLarge, len(value), n.cfg.MaxValueBytes)
	}
	return n.write(ctx, key, value, false, o)
}

// Delete implements api.Service: a tombstone that supersedes what the
// context saw (without one, what the minting replica has).
func (n *Node) Delete(ctx context.Context, key []byte, o api.WriteOptions) (api.WriteResult, error) {
	return n.write(ctx, key, nil, true, o)
}

// Exec implements api.Service for unconditional SET and DEL only: every
// other command reads and writes a value in one order of writes, which a
// leaderless cluster does not have.
func (n *Node) Exec(ctx context.Context, cmd *command.Command, o api.WriteOptions) (api.WriteResult, error) {
	if err := cmd.Validate(); err != nil {
		return api.WriteResult{}, fmt.Errorf("%w: %v", api.ErrBadCommand, err)
	}
	if cmd.Cond != command.CondNone || cmd.ReturnOld {
		return api.WriteResult{}, fmt.Errorf("%w: conditional writes need a single leader (--mode single-leader)", api.ErrNotSupported)
	}
	switch cmd.Op {
	case command.OpSet:
		res, err := n.Put(ctx, cmd.Key, cmd.Value, o)
		res.Cmd = command.Result{Applied: err == nil, Index: res.Index}
		return res, err
	case command.OpDelete:
		res, err := n.Delete(ctx, cmd.Key, o)
		res.Cmd = command.Result{Applied: err == nil, Index: res.Index}
		return res, err
	}
	return api.WriteResult{}, fmt.Errorf("%w: %s needs a single leader (--mode single-leader)", api.ErrNotSupported, cmd.Op)
}

// Get implements api.Service.
func (n *Node) Get(ctx context.Context, key []byte, c api.Consistency) (api.ReadResult, error) {
	return n.Read(ctx, key, api.ReadOptions{Consistency: c})
}

// Read implements api.Service. The default read asks the key's replicas
// and answers once R did, with their merge (siblings when versions are
// concurrent); stale means the same. local reads this node's own copy
// only, for inspection.
func (n *Node) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if err := n.checkKey(key); err != nil {
		return api.ReadResult{}, err
	}
	switch o.Consistency {
	case api.Linearizable, api.Stale:
	case api.Local:
		s, ok, err := n.store.Get(key)
		if err != nil {
			n.setFatal(fmt.Errorf("llnode: read %q: %w", key, err))
			return api.ReadResult{}, fmt.Errorf("llnode: read: %w", err)
		}
		n.m.reads.WithLabelValues("local").Inc()
		r := n.readResult(key, s)
		if ok {
			r.Replicas = 1
		}
		return r, nil
	case api.Session, api.Bounded:
		return api.ReadResult{}, fmt.Errorf("%w: %s reads need a single leader; leaderless reads ask R replicas", api.ErrNotSupported, o.Consistency)
	default:
		return api.ReadResult{}, api.ErrBadConsistency
	}
	r, err := n.quorum(o.R, n.cfg.DefaultR)
	if err != nil {
		return api.ReadResult{}, err
	}
	res, err := n.do(ctx, &request{read: &leaderless.Read{Key: slices.Clone(key), R: r, Repair: o.Repair}})
	if err != nil {
		n.m.reads.WithLabelValues("error").Inc()
		return api.ReadResult{Replicas: res.Replicas}, err
	}
	n.m.reads.WithLabelValues("ok").Inc()
	out := n.readResult(key, res.Set)
	out.Replicas, out.Repaired = res.Replicas, res.Repaired
	return out, nil
}

// readResult is what a read of key returns: its live values (siblings
// when more than one) and its causal context.
func (n *Node) readResult(key []byte, s vclock.Set) api.ReadResult {
	r := api.ReadResult{Context: vclock.EncodeToken(n.cfg.ClusterID, string(key), s.ReadContext())}
	var live []vclock.Sibling
	for _, x := range s.Siblings {
		if !x.Deleted {
			live = append(live, x)
		}
	}
	if len(live) == 0 {
		return r
	}
	slices.SortFunc(live, func(a, b vclock.Sibling) int { return vclock.Rank(b, a) }) // newest first
	r.Found, r.Value, r.Index = true, live[0].Value, live[0].Dot.Counter
	if len(live) > 1 {
		r.Siblings = make([]api.Sibling, len(live))
		for i, x := range live {
			r.Siblings[i] = api.Sibling{Value: x.Value, Node: x.Dot.Node, Counter: x.Dot.Counter, Time: x.Time.String()}
		}
	}
	return r
}

// Count implements api.Service: the keys this node stores (tombstones
// included), not the cluster's.
func (n *Node) Count(context.Context) (int, error) { return n.store.Count() }

// Status implements api.Service.
func (n *Node) Status() api.NodeStatus {
	s := n.pub.Load()
	li := &api.LeaderlessInfo{
		ReplicationFactor: n.cfg.ReplicationFactor, SloppyQuorum: n.cfg.SloppyQuorum,
		Ownership:    n.core.Ring().Ownership(n.cfg.ReplicationFactor),
		HintsPending: s.hints, HintsStored: s.stats.HintsStored, HintsDelivered: s.stats.HintsDelivered,
		HintsRefused: s.stats.HintsRefused, ReadRepairs: s.stats.ReadRepairs,
		AEExchanges: s.stats.AEExchanges, AEBucketsCompared: s.stats.AEBucketsCompared,
		AEBucketsDiffer: s.stats.AEBucketsDiffer, AERepairs: s.stats.AERepairs, AEDiffering: s.diff,
		TombstonesGC: s.stats.TombstonesGC, Down: s.down,
	}
	return api.NodeStatus{ID: n.cfg.ID, ClusterID: n.cfg.ClusterID, Role: Mode, Mode: Mode, Leaderless: li}
}

// Rollbacks implements api.Service: a leaderless node discards nothing it
// acknowledged (concurrent versions are kept as siblings).
func (n *Node) Rollbacks() ([]api.Rollback, error) { return nil, nil }

// MaxValueBytes implements api.Service.
func (n *Node) MaxValueBytes() int { return n.cfg.MaxValueBytes }

var errNoLeaders = fmt.Errorf("%w: a leaderless cluster has no leader; every node coordinates requests", api.ErrNotSupported)

// TransferLeadership implements api.Service: there is no leader.
func (n *Node) TransferLeadership(context.Context, string) error { return errNoLeaders }

// WaitReplicas implements api.Service (Redis WAIT): not offered; a write
// names its W instead.
func (n *Node) WaitReplicas(context.Context, uint64, int) (int, error) {
	return 0, fmt.Errorf("%w: a leaderless write is acknowledged by W replicas; set TRIREME.W instead of WAIT", api.ErrNotSupported)
}
