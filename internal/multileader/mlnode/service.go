package mlnode

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/vclock"
)

var (
	_ api.Service     = (*Node)(nil)
	_ api.ConflictLog = (*Node)(nil)
)

// ackMode maps the api's ack to the core's: async is "local" (durable
// here), semi-sync K is "durable on K other nodes", sync is "all", and
// majority is a majority of all nodes, this one included.
func ackMode(a api.Ack, peers int) (multileader.AckMode, int, error) {
	switch a.Mode {
	case api.AckAsync:
		return multileader.AckLocal, 0, nil
	case api.AckSync:
		return multileader.AckAll, peers, nil
	case api.AckMajority:
		// A majority of the peers+1 nodes, this one included.
		if need := (peers + 1) / 2; need > 0 {
			return multileader.AckPeers, need, nil
		}
		return multileader.AckLocal, 0, nil
	case api.AckSemiSync:
		if a.Replicas < 1 {
			return 0, 0, fmt.Errorf("%w: ack=K needs K >= 1", api.ErrBadAckMode)
		}
		if a.Replicas > peers {
			return 0, 0, fmt.Errorf("%w: ack=%d, but the cluster has %d other nodes", api.ErrNotEnoughReplicas, a.Replicas, peers)
		}
		return multileader.AckPeers, a.Replicas, nil
	}
	return 0, 0, fmt.Errorf("%w: %v", api.ErrBadAckMode, a.Mode)
}

// durability names the ack a write met, as WriteResult.Durability.
func durability(m multileader.AckMode, k int) string {
	switch m {
	case multileader.AckAll:
		return "all"
	case multileader.AckPeers:
		return strconv.Itoa(k)
	}
	return "local"
}

func (n *Node) checkKey(key []byte) error {
	switch {
	case n.failed.Load():
		return api.ErrStopped
	case len(key) == 0:
		return api.ErrEmptyKey
	case len(key) > multileader.MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, at most %d in multi-leader mode", api.ErrKeyTooLarge, len(key), multileader.MaxKeyLen)
	}
	return nil
}

// write proposes w with the options' ack and waits for its result.
func (n *Node) write(ctx context.Context, w multileader.Write, o api.WriteOptions) (api.WriteResult, int64, error) {
	ack := o.Ack
	if o.Default {
		ack = n.cfg.DefaultAck
	}
	mode, k, err := ackMode(ack, len(n.peers))
	if err != nil {
		return api.WriteResult{}, 0, err
	}
	w.Ack, w.AckPeers, w.Context = mode, k, o.Context
	if o.Timeout > 0 {
		w.TimeoutTicks = n.ticks(o.Timeout)
	}
	p := &proposal{w: w, done: make(chan proposalDone, 1)}
	start := time.Now()
	select {
	case n.propCh <- p:
	case <-ctx.Done():
		return api.WriteResult{}, 0, ctx.Err() // not proposed: nothing written
	case <-n.stopCh:
		return api.WriteResult{}, 0, api.ErrStopped
	}
	var d proposalDone
	select {
	case d = <-p.done:
	case <-ctx.Done():
		return api.WriteResult{}, 0, fmt.Errorf("%w: %v", api.ErrWriteTimeout, ctx.Err())
	}
	if d.err != nil {
		n.m.writes.WithLabelValues("error").Inc()
		return api.WriteResult{}, 0, d.err
	}
	res := api.WriteResult{Index: d.res.Seq, Replicas: d.res.Peers, LeaderDurable: true, Durability: durability(mode, k)}
	n.m.writeSeconds.Observe(time.Since(start).Seconds())
	if errors.Is(d.res.Err, multileader.ErrTimeout) {
		n.m.writes.WithLabelValues("timeout").Inc()
		res.Durability = "local"
		return res, d.incrValue, fmt.Errorf("%w: durable here and on %d other nodes; it will still replicate", api.ErrWriteTimeout, d.res.Peers)
	}
	n.m.writes.WithLabelValues("ok").Inc()
	return res, d.incrValue, nil
}

// Put implements api.Service: the write is accepted here.
func (n *Node) Put(ctx context.Context, key, value []byte, o api.WriteOptions) (api.WriteResult, error) {
	if err := n.checkKey(key); err != nil {
		return api.WriteResult{}, err
	}
	if len(value) > n.cfg.MaxValueBytes {
		return api.WriteResult{}, fmt.Errorf("%w: %d bytes, at most %d", api.ErrValueTooLarge, len(value), n.cfg.MaxValueBytes)
	}
	res, _, err := n.write(ctx, multileader.Write{Key: string(key), Value: value}, o)
	return res, err
}

// Delete implements api.Service: a tombstone that supersedes what the
// context saw (or, without one, what this node has), and resets the
// key's counter as this node sees it.
func (n *Node) Delete(ctx context.Context, key []byte, o api.WriteOptions) (api.WriteResult, error) {
	if err := n.checkKey(key); err != nil {
		return api.WriteResult{}, err
	}
	res, _, err := n.write(ctx, multileader.Write{Key: string(key), Delete: true}, o)
	return res, err
}

// Exec implements api.Service for the commands a multi-leader cluster can
// apply without coordination: INCR/INCRBY/DECR/DECRBY (a counter, so
// concurrent increments on different nodes all count) and unconditional
// SET and DEL. Conditional and read-modify-write commands on registers
// (SETNX, SET NX/XX/GET, GETSET, GETDEL, APPEND, compare-and-set) and MSET
// need one order of writes and get ErrNotSupported. An idempotency key is
// refused on increments (a retry would count twice); on SET and DEL it is
// accepted and not needed: writing the same value again changes nothing a
// reader can tell under LWW.
func (n *Node) Exec(ctx context.Context, cmd *command.Command, o api.WriteOptions) (api.WriteResult, error) {
	if err := cmd.Validate(); err != nil {
		return api.WriteResult{}, fmt.Errorf("%w: %v", api.ErrBadCommand, err)
	}
	if cmd.Cond != command.CondNone || cmd.ReturnOld {
		return api.WriteResult{}, fmt.Errorf("%w: conditional writes need a single leader (--mode single-leader)", api.ErrNotSupported)
	}
	switch cmd.Op {
	case command.OpIncr:
		if len(cmd.IdemKey) > 0 {
			return api.WriteResult{}, fmt.Errorf("%w: exactly-once increments need a single leader; retry without an idempotency key", api.ErrNotSupported)
		}
		if err := n.checkKey(cmd.Key); err != nil {
			return api.WriteResult{}, err
		}
		res, v, err := n.write(ctx, multileader.Write{Key: string(cmd.Key), Incr: true, IncrBy: cmd.Delta}, o)
		res.Cmd = command.Result{Applied: err == nil, Index: res.Index, Int: v}
		if errors.Is(err, api.ErrNotInteger) {
			res.Cmd.Code = command.CodeNotInteger
		}
		return res, err
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

// Read implements api.Service. Every read is served from this node's
// durable copy: linearizable (the default), stale and local alike; a
// multi-leader cluster has no single order to be linearizable in, and
// session and bounded reads need a leader's.
func (n *Node) Read(_ context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if err := n.checkKey(key); err != nil {
		return api.ReadResult{}, err
	}
	switch o.Consistency {
	case api.Linearizable, api.Stale, api.Local:
	case api.Session, api.Bounded:
		return api.ReadResult{}, fmt.Errorf("%w: %s reads need a single leader; multi-leader reads are local", api.ErrNotSupported, o.Consistency)
	default:
		return api.ReadResult{}, api.ErrBadConsistency
	}
	st, err := n.store.Get(string(key))
	if err != nil {
		n.setFatal(fmt.Errorf("mlnode: read %q: %w", key, err))
		return api.ReadResult{}, fmt.Errorf("mlnode: read: %w", err)
	}
	n.m.reads.Inc()
	return readResult(st, n.cfg.ClusterID, string(key)), nil
}

// readResult is what a read of key returns: the register's live values
// (siblings when more than one), else the counter when the key has one.
func readResult(st multileader.KeyState, cluster, key string) api.ReadResult {
	r := api.ReadResult{Context: st.Token(cluster, key)}
	live := st.Live()
	switch {
	case len(live) > 0:
		r.Found, r.Value = true, live[0].Value
		r.Index = live[0].Dot.Counter
		if len(live) > 1 {
			r.Siblings = make([]api.Sibling, len(live))
			for i, s := range live {
				r.Siblings[i] = api.Sibling{Value: s.Value, Node: s.Dot.Node, Counter: s.Dot.Counter, Time: s.Time.String()}
			}
		}
	case len(st.Ctr) > 0:
		r.Found, r.Value = true, strconv.AppendInt(nil, st.Ctr.Value(), 10)
	}
	return r
}

// Count implements api.Service.
func (n *Node) Count(context.Context) (int, error) { return n.store.Count() }

// Status implements api.Service.
func (n *Node) Status() api.NodeStatus {
	s := n.pub.Load()
	st := api.NodeStatus{ID: n.cfg.ID, ClusterID: n.cfg.ClusterID, Role: "multi-leader", Mode: Mode,
		LastIndex: s.lastSeq, CommitIndex: s.lastSeq, AppliedIndex: s.lastSeq,
		Conflicts: s.stats.ConflictCount, ClockClamps: s.stats.ClockClamps}
	for _, p := range s.peers {
		si := api.StreamInfo{Peer: p.ID, PeerAcked: p.Acked, Applied: p.Applied, Known: p.Known,
			LagEntries: p.Known - p.Applied, LagMillis: ticksMs(p.BehindTicks, s.tick), LastContactMs: -1,
			ClockOffsetMs: float64(p.MaxOffsetNanos) / 1e6}
		if p.HeardTicks >= 0 {
			si.LastContactMs = ticksMs(p.HeardTicks, s.tick)
		}
		st.Streams = append(st.Streams, si)
	}
	return st
}

func ticksMs(t int64, tick time.Duration) int64 { return t * int64(tick) / int64(time.Millisecond) }

// Conflicts implements api.ConflictLog.
func (n *Node) Conflicts(_ context.Context, after uint64, limit int) ([]api.ConflictRecord, uint64, error) {
	recs, dropped, err := n.store.Conflicts(after, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]api.ConflictRecord, len(recs))
	for i, r := range recs {
		c := api.ConflictRecord{Seq: r.Seq, Node: r.Node, Key: []byte(r.Key), Reason: r.Reason}
		for _, v := range r.Versions {
			c.Versions = append(c.Versions, api.ConflictVersion{Dot: v.Dot.String(), Node: v.Dot.Node,
				Time: v.Time.String(), Value: v.Value, Deleted: v.Deleted})
		}
		if r.Winner != (vclock.Dot{}) {
			c.Winner = r.Winner.String()
		}
		for _, l := range r.Losers {
			c.Losers = append(c.Losers, l.String())
		}
		out[i] = c
	}
	return out, dropped, nil
}

// Rollbacks implements api.Service: a multi-leader node discards no
// acknowledged write (a lost concurrent version is a conflict record).
func (n *Node) Rollbacks() ([]api.Rollback, error) { return nil, nil }

// MaxValueBytes implements api.Service.
func (n *Node) MaxValueBytes() int { return n.cfg.MaxValueBytes }

var errNoLeaders = fmt.Errorf("%w: every node of a multi-leader cluster accepts writes; there is no leader", api.ErrNotSupported)

// TransferLeadership implements api.Service: there is no leader.
func (n *Node) TransferLeadership(context.Context, string) error { return errNoLeaders }

// WaitReplicas implements api.Service (Redis WAIT): how many peers have
// applied this node's stream up to index, waiting until n do or ctx ends.
func (n *Node) WaitReplicas(ctx context.Context, index uint64, want int) (int, error) {
	for {
		got := 0
		for _, p := range n.pub.Load().peers {
			if p.Acked >= index {
				got++
			}
		}
		if got >= want {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, nil
		case <-n.stopCh:
			return got, api.ErrStopped
		case <-time.After(n.cfg.Tick):
		}
	}
}
