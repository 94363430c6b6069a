package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// Put implements api.Service.
func (n *Node) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	return n.write(ctx, entry.KindPut, key, value, nil, w, false)
}

// Delete implements api.Service.
func (n *Node) Delete(ctx context.Context, key []byte, w api.WriteOptions) (api.WriteResult, error) {
	return n.write(ctx, entry.KindDelete, key, nil, nil, w, false)
}

// MaxValueBytes implements api.Service.
func (n *Node) MaxValueBytes() int { return n.cfg.MaxValueBytes }

// Count implements api.Service.
func (n *Node) Count(ctx context.Context) (int, error) {
	if n.stopped() {
		return 0, api.ErrStopped
	}
	c, err := n.store.Count()
	return int(c), err
}

// Rollbacks implements api.Service.
func (n *Node) Rollbacks() ([]api.Rollback, error) { return n.journal.list() }

// Status implements api.Service.
func (n *Node) Status() api.NodeStatus {
	s, _ := n.status()
	st := s.st
	out := api.NodeStatus{
		ID:           n.cfg.ID,
		ClusterID:    n.clusterID,
		Mode:         "single-leader",
		Role:         st.Role.String(),
		Term:         st.Term,
		Leader:       string(st.Lead),
		LastIndex:    st.LastIndex,
		CommitIndex:  st.Commit,
		AppliedIndex: st.Applied,
		Followers:    s.followers,

		DiskFreeBytes:    n.disk.free.Load(),
		DiskReserveBytes: n.disk.reserve,
		DiskLow:          n.disk.low.Load(),

		Election: n.cfg.Election,
		FailureDetector: &api.FailureDetectorInfo{
			Mode:            n.cfg.FailureDetector,
			TimeoutMillis:   (time.Duration(st.Detector.TimeoutTicks) * n.tick).Milliseconds(),
			Suspicion:       st.Detector.Suspicion,
			Suspicions:      st.Detector.Suspicions,
			FalseSuspicions: st.Detector.FalseSuspicions,
			Detections:      st.Detector.Detections,
		},
	}
	if n.stopped() {
		out.Role = "stopped"
	}
	if st.Lead != repl.None {
		out.LeaderHTTP, out.LeaderRESP = n.clientAddrs(st.Lead)
	}
	if st.Role != repl.RoleLeader {
		out.LagMillis = n.lagMillis(st, time.Now().Sub(s.at))
	}
	return out
}

func (n *Node) clientAddrs(id repl.NodeID) (httpAddr, respAddr string) {
	if id == n.id {
		return n.cfg.HTTPAddr, n.cfg.RESPAddr
	}
	if v := n.view.Load(); v != nil {
		if m, ok := v.cs.Member(id); ok && (m.HTTP != "" || m.RESP != "") {
			return m.HTTP, m.RESP
		}
	}
	if pi, ok := n.tr.Peer(transport.NodeID(id)); ok {
		return pi.HTTPAddr, pi.RESPAddr
	}
	return "", ""
}

// lagMillis is a follower's staleness: time since it last heard the leader.
func (n *Node) lagMillis(st repl.Status, sincePublish time.Duration) int64 {
	return (time.Duration(st.TicksSinceLeader)*n.tick + sincePublish).Milliseconds()
}

// notLeader builds the error a node returns when it cannot serve or forward.
func (n *Node) notLeader(lead repl.NodeID) error {
	if lead == repl.None {
		return api.ErrNoLeader
	}
	h, r := n.clientAddrs(lead)
	return fmt.Errorf("%w: the leader is %s (http %s, resp %s)", api.ErrNotLeader, lead, h, r)
}

// waitLeader waits up to one election timeout for a known leader.
func (n *Node) waitLeader(ctx context.Context) (*snapshot, error) {
	return n.waitStatus(ctx, n.cfg.ElectionTimeout, func(s *snapshot) bool { return s.st.Lead != repl.None })
}

// waitStatus waits up to d (or ctx) for cond on a published status. It returns
// the last status, and errTimeout, ctx's error or api.ErrStopped if cond never held.
func (n *Node) waitStatus(ctx context.Context, d time.Duration, cond func(*snapshot) bool) (*snapshot, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		s, ch := n.status()
		if cond(s) {
			return s, nil
		}
		if n.stopped() {
			return s, api.ErrStopped
		}
		select {
		case <-ch:
		case <-timer.C:
			return s, errTimeout
		case <-ctx.Done():
			return s, ctx.Err()
		case <-n.doneCh:
		}
	}
}

var errTimeout = errors.New("node: timed out")

// writeParams resolves a write's ack mode and timeout. The ack is in api's
// words: a follower forwards it so; the leader hands the core replAck(ack).
func (n *Node) writeParams(w api.WriteOptions) (api.Ack, time.Duration, error) {
	ack := w.Ack
	if w.Default {
		ack = n.cfg.DefaultAck
	}
	switch ack.Mode {
	case api.AckAsync, api.AckSync, api.AckMajority:
	case api.AckSemiSync:
		if ack.Replicas < 1 {
			return ack, 0, fmt.Errorf("%w: semi-sync needs at least 1 replica", api.ErrBadAckMode)
		}
	default:
		return ack, 0, fmt.Errorf("%w: %v", api.ErrBadAckMode, ack.Mode)
	}
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = n.cfg.WriteTimeout
	}
	timeout = min(timeout, maxForwardTimeoutMs*time.Millisecond) // no overflow below
	return ack, timeout, nil
}

// checkWrite validates a write's key and value.
func (n *Node) checkWrite(key, value []byte) error {
	if len(key) == 0 {
		return api.ErrEmptyKey
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), MaxKeyBytes)
	}
	if len(value) > n.cfg.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", api.ErrValueTooLarge, len(value), n.cfg.MaxValueBytes)
	}
	return nil
}

// PutBatch writes keys[i]=values[i] in order with the same options, as if
// by Put one after another: each is its own log entry, the entries are in
// slice order, and there is one result and one error per key. On the leader
// the whole batch reaches the protocol core in one step (one channel send,
// one group commit); a suffix the core refuses (leadership moved) and every
// write on a follower go through Put's path (forwarding, retries), still in
// order. The RESP server uses it for pipelined SETs.
func (n *Node) PutBatch(ctx context.Context, keys, values [][]byte, w api.WriteOptions) ([]api.WriteResult, []error) {
	res := make([]api.WriteResult, len(keys))
	errs := make([]error, len(keys))
	done := 0
	if s, _ := n.status(); s.st.Role == repl.RoleLeader && len(keys) > 1 {
		if err := n.disk.refuse(); err != nil {
			n.m.diskRefused.Add(float64(len(keys)))
			for i := range errs {
				errs[i] = err
			}
			return res, errs
		}
		done = n.proposeBatch(ctx, keys, values, w, res, errs)
	}
	for i := done; i < len(keys); i++ {
		res[i], errs[i] = n.write(ctx, entry.KindPut, keys[i], values[i], nil, w, false)
	}
	return res, errs
}

// proposeBatch proposes the valid writes of a batch on this node in one
// step and fills in res and errs. It returns how many writes it settled:
// writes from the first refused one on were not written and are left to the
// caller.
func (n *Node) proposeBatch(ctx context.Context, keys, values [][]byte, w api.WriteOptions, res []api.WriteResult, errs []error) int {
	wack, timeout, err := n.writeParams(w)
	if err == nil {
		s, _ := n.status()
		err = n.checkSessionWrite(w.Session, s)
		for i := 0; errors.Is(err, errSessionUnsettled) && i < 50 && ctx.Err() == nil; i++ {
			// Wait for this leader's first commit (or news), as propose does.
			s, _ = n.waitStatus(ctx, n.cfg.Heartbeat, func(s2 *snapshot) bool { return s2 != s })
			if s == nil {
				s, _ = n.status()
			}
			err = n.checkSessionWrite(w.Session, s)
		}
	}
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return len(keys)
	}
	ack := replAck(wack)
	ctx, cancel := context.WithTimeout(ctx, timeout+2*n.cfg.ElectionTimeout+time.Second)
	defer cancel()
	size := 0
	for i := range keys {
		size += len(keys[i]) + len(values[i])
	}
	buf := make([]byte, 0, size) // one copy for the batch: callers reuse their buffers
	reqs := make([]*propReq, len(keys))
	idx := make([]int, 0, len(keys)) // op index of each proposed request
	now := time.Now()
	var head *propReq
	for i := range keys {
		if errs[i] = n.checkWrite(keys[i], values[i]); errs[i] != nil {
			continue
		}
		o := len(buf)
		buf = append(buf, keys[i]...)
		k := buf[o:len(buf):len(buf)]
		o = len(buf)
		buf = append(buf, values[i]...)
		v := buf[o:len(buf):len(buf)]
		r := &propReq{
			p:     repl.Proposal{Kind: entry.KindPut, Key: k, Value: v, Ack: ack, TimeoutTicks: n.ticks(timeout)},
			start: now,
			done:  make(chan propResp, 1),
		}
		reqs[i] = r
		if head == nil {
			head = r
		} else {
			head.more = append(head.more, r)
		}
		idx = append(idx, i)
	}
	if head == nil {
		return len(keys)
	}
	if ctx.Err() != nil {
		return 0 // nothing proposed: the caller's path reports the context
	}
	if !n.enqueueProp(head) {
		for _, i := range idx {
			errs[i] = api.ErrStopped
		}
		return len(keys)
	}
	for _, i := range idx {
		r, ok := n.waitProp(ctx, reqs[i], nil)
		if ok && r.refused {
			return i // this one and every later one were not written
		}
		if !ok {
			res[i], errs[i] = api.WriteResult{}, r.err
			continue
		}
		res[i], errs[i] = n.writeOutcome(reqs[i], r, ack)
	}
	return len(keys)
}

// write proposes on the leader or forwards to it. forwarded=true means the
// request came from a follower: never forward again. A command (kind
// KindCommand) comes as cmd, checked and unstamped, with value nil: the
// leader stamps and encodes it once (prepareCommand); a forward carries its
// unstamped encoding.
func (n *Node) write(ctx context.Context, kind entry.Kind, key, value []byte, cmd *command.Command, w api.WriteOptions, forwarded bool) (api.WriteResult, error) {
	if n.removed.Load() {
		return api.WriteResult{}, api.ErrRemoved
	}
	if kind != entry.KindCommand { // Exec checked its command
		if err := n.checkWrite(key, value); err != nil {
			return api.WriteResult{}, err
		}
	}
	ack, timeout, err := n.writeParams(w)
	if err != nil {
		return api.WriteResult{}, err
	}
	// The core answers OutcomeTimeout after `timeout`; the extra time covers
	// waiting for a leader and a forwarding round trip. The deadline context
	// is made only off the leader's path (waiting, forwarding): on the
	// leader a pooled timer bounds the wait (proposeLocal), which costs no
	// allocation and no lock shared with other writers.
	deadline := time.Now().Add(timeout + 2*n.cfg.ElectionTimeout + time.Second)
	base := ctx
	var cancel context.CancelFunc
	slow := func() context.Context {
		if cancel == nil {
			ctx, cancel = context.WithDeadline(base, deadline)
		}
		return ctx
	}
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	// Copy: the caller may reuse its buffers once we return, but the entry
	// lives on. (A command's encoding is a copy already.)
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	key, value = buf[:len(key):len(key)], buf[len(key):]
	if kind == entry.KindDelete {
		value = nil
	}

	waitedForLeader := false
	for attempt := 0; ; attempt++ {
		if n.stopped() {
			return api.WriteResult{}, api.ErrStopped
		}
		s, _ := n.status()
		switch {
		case s.st.Role == repl.RoleLeader:
			if err := n.disk.refuse(); err != nil {
				n.m.diskRefused.Inc()
				return api.WriteResult{}, err // nothing proposed
			}
			if err := n.checkSessionWrite(w.Session, s); err != nil {
				if errors.Is(err, errSessionUnsettled) && attempt < 50 {
					// Wait for this leader's first commit (or news).
					n.waitStatus(slow(), n.cfg.Heartbeat, func(s2 *snapshot) bool { return s2 != s })
					continue
				}
				return api.WriteResult{}, err // nothing proposed
			}
			pv := value
			if kind == entry.KindCommand {
				v, dup, err := n.prepareCommand(cmd)
				if err != nil {
					return api.WriteResult{}, err
				}
				if dup != nil {
					return *dup, api.CmdErr(dup.Cmd)
				}
				pv = v
			}
			res, err := n.proposeLocal(ctx, kind, key, pv, ack, timeout, deadline)
			if errors.Is(err, repl.ErrTransferring) && attempt < 20 {
				// A planned switchover is under way: wait for it, then retry
				// here or at the new leader. Nothing was written.
				n.waitStatus(slow(), n.cfg.ElectionTimeout/4, func(s2 *snapshot) bool { return s2.st.Role != repl.RoleLeader })
				continue
			}
			if errors.Is(err, repl.ErrNotLeader) {
				// Lost leadership before the proposal was taken: nothing was written.
				if forwarded {
					return api.WriteResult{}, n.notLeader(repl.None)
				}
				if _, werr := n.waitStatus(slow(), n.cfg.ElectionTimeout, func(s2 *snapshot) bool { return s2 != s && s2.st.Role != repl.RoleLeader }); werr != nil && !errors.Is(werr, errTimeout) {
					return api.WriteResult{}, werr
				}
				continue
			}
			return res, err
		case forwarded:
			return api.WriteResult{}, n.notLeader(s.st.Lead)
		case s.st.Lead == repl.None:
			if waitedForLeader {
				return api.WriteResult{}, api.ErrNoLeader
			}
			waitedForLeader = true
			if _, err := n.waitLeader(slow()); err != nil {
				if errors.Is(err, errTimeout) {
					return api.WriteResult{}, api.ErrNoLeader
				}
				return api.WriteResult{}, err
			}
			continue
		}
		op := transport.OpPut
		switch kind {
		case entry.KindDelete:
			op = transport.OpDelete
		case entry.KindCommand:
			op = transport.OpCommand
			value = command.Encode(nil, cmd) // unstamped: the leader stamps
		}
		ctx := slow()
		resp, err := n.tr.Forward(ctx, transport.NodeID(s.st.Lead), &transport.ForwardRequest{Op: op, Key: key, Value: value,
			Ack: ack, TimeoutMs: uint64(timeout.Milliseconds()), Token: w.Session})
		if err != nil {
			if ctx.Err() != nil {
				return api.WriteResult{}, fmt.Errorf("%w: forwarding to %s: %w", api.ErrOutcomeUnknown, s.st.Lead, ctx.Err())
			}
			if errors.Is(err, transport.ErrNotSent) {
				// Certainly not sent (no connection to the leader we know): wait
				// for a connection or news of another leader, and retry.
				if attempt >= 10 {
					return api.WriteResult{}, fmt.Errorf("%w: cannot reach leader %s: %w", api.ErrNoLeader, s.st.Lead, err)
				}
				n.waitStatus(ctx, n.cfg.Heartbeat*2, func(s2 *snapshot) bool { return s2.st.Lead != s.st.Lead })
				continue
			}
			return api.WriteResult{}, fmt.Errorf("%w: forwarding to %s: %w", api.ErrOutcomeUnknown, s.st.Lead, err)
		}
		if resp.Code == api.CodeNotLeader || resp.Code == api.CodeNoLeader {
			// The target was not the leader: nothing was written. Wait for news and retry.
			if attempt >= 5 {
				return api.WriteResult{}, api.ErrNoLeader
			}
			n.waitStatus(ctx, n.cfg.ElectionTimeout/2, func(s2 *snapshot) bool { return s2.st.Lead != s.st.Lead })
			continue
		}
		if resp.CmdSet && resp.Code == api.CodeOK {
			return resp.Write, api.CmdErr(resp.Write.Cmd)
		}
		return resp.Write, codeErr(resp, true)
	}
}

func (n *Node) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-n.doneCh:
	}
}

// proposeLocal hands a write to the core and waits for its Result, until
// ctx ends or deadline passes (the core answers by itself when the write's
// timeout passes; the deadline is a backstop for a loop that cannot).
func (n *Node) proposeLocal(ctx context.Context, kind entry.Kind, key, value []byte, ack api.Ack, timeout time.Duration, deadline time.Time) (api.WriteResult, error) {
	if err := ctx.Err(); err != nil {
		return api.WriteResult{}, err // the caller gave up first: nothing written
	}
	if kind == entry.KindCommand {
		n.cmdWriters.Add(1) // before the proposal exists: see applier
		defer n.cmdWriters.Add(-1)
	}
	req := n.getPropReq()
	req.p = repl.Proposal{Kind: kind, Key: key, Value: value, Ack: replAck(ack), TimeoutTicks: n.ticks(timeout)}
	req.start = time.Now()
	if !n.enqueueProp(req) {
		n.putPropReq(req)
		return api.WriteResult{}, api.ErrStopped
	}
	t := n.getTimer(time.Until(deadline))
	r, ok := n.waitProp(ctx, req, t.C)
	n.putTimer(t)
	if !ok {
		// Not recycled: the loop still holds req and will answer it.
		return api.WriteResult{}, r.err
	}
	res, err := n.writeOutcome(req, r, req.p.Ack)
	n.putPropReq(req) // answered: the loop and the applier are done with it
	return res, err
}

// getPropReq returns an empty proposal request with its reply channel, from
// the node's pool.
func (n *Node) getPropReq() *propReq {
	if r, _ := n.propReqs.Get().(*propReq); r != nil {
		return r
	}
	return &propReq{done: make(chan propResp, 1)}
}

// putPropReq returns r to the pool. Only a request whose answer has been
// received may be returned (each request is answered exactly once, so its
// channel is then empty and nobody else holds it).
func (n *Node) putPropReq(r *propReq) {
	*r = propReq{done: r.done}
	n.propReqs.Put(r)
}

// waitProp waits for req's answer. ok is false if the wait ended first
// (r.err then says why: the outcome is unknown). expire (may be nil) ends the
// wait like a context deadline. There is no case for the loop's end: every
// queued proposal is answered, by the core, the applier or failAll, even
// when the loop stops (and a channel every writer waits on is a lock they
// would all share).
func (n *Node) waitProp(ctx context.Context, req *propReq, expire <-chan time.Time) (r propResp, ok bool) {
	select {
	case r = <-req.done:
		if r.refused && r.err == api.ErrStopped {
			<-n.doneCh // failAll: let the caller see a stopped node
		}
		return r, true
	case <-ctx.Done():
		return propResp{err: fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, ctx.Err())}, false
	case <-expire:
		return propResp{err: fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, context.DeadlineExceeded)}, false
	}
}

// writeOutcome turns a proposal's answer into the write's reply.
func (n *Node) writeOutcome(req *propReq, r propResp, ack repl.Ack) (api.WriteResult, error) {
	if r.err != nil {
		return api.WriteResult{}, r.err
	}
	res := r.res
	out := api.WriteResult{Index: res.Index, Term: res.Term, Replicas: res.Durability.Replicas,
		Committed: res.Durability.Committed, LeaderDurable: res.Durability.LeaderDurable}
	n.m.observeWrite(ack.Mode, res.Outcome, time.Since(req.start).Seconds())
	switch res.Outcome {
	case repl.OutcomeOK:
		out.Durability = ack.Mode.String()
		if req.p.Kind == entry.KindCommand {
			// Answered once applied (cmdWaits): committed, whatever the ack.
			out.Cmd, out.Committed = r.cmd, true
			return out, api.CmdErr(r.cmd)
		}
		return out, nil
	case repl.OutcomeTimeout:
		return out, fmt.Errorf("%w (%s wanted; leader durable %v, %d replicas, committed %v)", api.ErrWriteTimeout,
			ack.Mode, out.LeaderDurable, out.Replicas, out.Committed)
	default:
		return out, api.ErrOutcomeUnknown
	}
}

// Get implements api.Service.
func (n *Node) Get(ctx context.Context, key []byte, c api.Consistency) (api.ReadResult, error) {
	return n.Read(ctx, key, api.ReadOptions{Consistency: c})
}

func (n *Node) getStale(key []byte) (api.ReadResult, error) {
	if n.stopped() {
		return api.ReadResult{}, api.ErrStopped
	}
	s, _ := n.status()
	v, ver, found, err := n.store.Get(key)
	if err != nil {
		return api.ReadResult{}, err
	}
	out := api.ReadResult{Found: found, Value: v, Index: ver, Token: n.appliedToken()}
	if s.st.Role != repl.RoleLeader {
		if s.st.LeaderCommit > s.st.Applied {
			out.LagEntries = s.st.LeaderCommit - s.st.Applied
		}
		out.LagMillis = n.lagMillis(s.st, time.Since(s.at))
	}
	return out, nil
}

func (n *Node) getLinearizable(ctx context.Context, key []byte, forwarded bool) (api.ReadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout+2*n.cfg.ElectionTimeout)
	defer cancel()
	waitedForLeader := false
	for attempt := 0; ; attempt++ {
		if n.stopped() {
			return api.ReadResult{}, api.ErrStopped
		}
		if attempt > 8 {
			return api.ReadResult{}, api.ErrNoLeader
		}
		s, _ := n.status()
		switch {
		case s.st.Role == repl.RoleLeader:
			res, err := n.readLocal(ctx, key)
			if errors.Is(err, repl.ErrNotLeader) || errors.Is(err, repl.ErrLeadershipLost) {
				if forwarded {
					return api.ReadResult{}, n.notLeader(repl.None)
				}
				n.waitStatus(ctx, n.cfg.ElectionTimeout, func(s2 *snapshot) bool { return s2 != s && s2.st.Role != repl.RoleLeader })
				continue
			}
			return res, err
		case forwarded:
			return api.ReadResult{}, n.notLeader(s.st.Lead)
		case s.st.Lead == repl.None:
			if waitedForLeader {
				return api.ReadResult{}, api.ErrNoLeader
			}
			waitedForLeader = true
			if _, err := n.waitLeader(ctx); err != nil {
				if errors.Is(err, errTimeout) {
					return api.ReadResult{}, api.ErrNoLeader
				}
				return api.ReadResult{}, err
			}
			continue
		}
		resp, err := n.tr.Forward(ctx, transport.NodeID(s.st.Lead), &transport.ForwardRequest{Op: transport.OpGet, Key: key, Consistency: api.Linearizable})
		if err != nil {
			if ctx.Err() != nil {
				return api.ReadResult{}, ctx.Err()
			}
			n.sleep(ctx, n.cfg.Heartbeat)
			continue // reads are safe to retry
		}
		if resp.Code == api.CodeNotLeader || resp.Code == api.CodeNoLeader || resp.Code == api.CodeStopped {
			n.waitStatus(ctx, n.cfg.ElectionTimeout/2, func(s2 *snapshot) bool { return s2.st.Lead != s.st.Lead })
			continue
		}
		return resp.Read, codeErr(resp, false)
	}
}

// readLocal gets a read point from the core, waits until it is applied, then reads.
func (n *Node) readLocal(ctx context.Context, key []byte) (api.ReadResult, error) {
	if _, err := n.readPointLocal(ctx); err != nil {
		return api.ReadResult{}, err
	}
	return n.readApplied(key)
}

// readPointLocal gets a read point from the core (as leader) and returns it
// once the store has applied it.
func (n *Node) readPointLocal(ctx context.Context) (uint64, error) {
	req := &readReq{done: make(chan repl.ReadResult, 1)}
	select {
	case n.readCh <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.doneCh:
		return 0, api.ErrStopped
	}
	var r repl.ReadResult
	select {
	case r = <-req.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.doneCh:
		return 0, api.ErrStopped
	}
	if r.Err != nil {
		if errors.Is(r.Err, repl.ErrReadTimeout) {
			return 0, fmt.Errorf("%w: cannot confirm leadership: %w", api.ErrNoLeader, r.Err)
		}
		return 0, engineErr(r.Err)
	}
	// The Ready that carried r applied through r.Index before delivering it.
	if a := n.store.AppliedIndex(); a < r.Index {
		return 0, fmt.Errorf("node: read point %d not applied (applied %d): broken Ready contract", r.Index, a)
	}
	return r.Index, nil
}

// TransferLeadership implements api.Service.
func (n *Node) TransferLeadership(ctx context.Context, to string) error {
	return n.transfer(ctx, repl.NodeID(to), false)
}

func (n *Node) transfer(ctx context.Context, to repl.NodeID, forwarded bool) error {
	if n.cfg.Election == ElectionCoordinator {
		return fmt.Errorf("%w: leadership is chosen by the coordinator (--election coordinator): "+
			"no planned transfer; stopping the leader hands its key back", api.ErrBadTransferTarget)
	}
	if !n.view.Load().isMember(to) {
		return fmt.Errorf("%w: %q is not a member of the cluster", api.ErrBadTransferTarget, to)
	}
	s, err := n.waitLeader(ctx)
	if err != nil {
		if errors.Is(err, errTimeout) {
			return api.ErrNoLeader
		}
		return err
	}
	switch {
	case s.st.Lead == to:
		return nil
	case s.st.Role == repl.RoleLeader:
		errc := make(chan error, 1)
		select {
		case n.ctlCh <- func() { errc <- n.core.TransferLeadership(to) }:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.doneCh:
			return api.ErrStopped
		}
		if err := <-errc; err != nil {
			return engineErr(err)
		}
	case forwarded:
		return n.notLeader(s.st.Lead)
	default:
		resp, err := n.tr.Forward(ctx, transport.NodeID(s.st.Lead), &transport.ForwardRequest{Op: transport.OpTransfer, Key: []byte(to)})
		if err != nil {
			return fmt.Errorf("node: forward leadership transfer to %s: %w", s.st.Lead, err)
		}
		if err := codeErr(resp, false); err != nil {
			return err
		}
	}
	_, err = n.waitStatus(ctx, 10*n.cfg.ElectionTimeout, func(s *snapshot) bool { return s.st.Lead == to })
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("node: leadership did not move to %s within %v", to, 10*n.cfg.ElectionTimeout)
	}
	return err
}

// WaitReplicas implements api.Service.
func (n *Node) WaitReplicas(ctx context.Context, index uint64, want int) (int, error) {
	count := func(s *snapshot) int {
		c := 0
		for _, f := range s.st.Followers {
			// Voters only, like the sync and semi-sync acks: a learner
			// (read replica) may be far behind or far away.
			if !f.Learner && f.Match >= index {
				c++
			}
		}
		return c
	}
	for {
		s, ch := n.status()
		if s.st.Role != repl.RoleLeader {
			return 0, n.notLeader(s.st.Lead)
		}
		c := count(s)
		if c >= want {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return c, nil
		case <-n.doneCh:
			return c, api.ErrStopped
		}
	}
}

// maxForwardTimeoutMs bounds the write timeout a peer may ask for (1 hour).
const maxForwardTimeoutMs = 3600 * 1000

// HandleForward implements transport.Handler: a follower's client operation.
func (n *Node) HandleForward(ctx context.Context, from transport.NodeID, req *transport.ForwardRequest) *transport.ForwardResponse {
	var resp transport.ForwardResponse
	var err error
	switch req.Op {
	case transport.OpPut, transport.OpDelete:
		kind := entry.KindPut
		if req.Op == transport.OpDelete {
			kind = entry.KindDelete
		}
		w := api.WriteOptions{Ack: req.Ack, Default: req.DefaultAck, Timeout: time.Duration(min(req.TimeoutMs, maxForwardTimeoutMs)) * time.Millisecond,
			Session: req.Token}
		resp.Write, err = n.write(ctx, kind, req.Key, req.Value, nil, w, true)
	case transport.OpCommand:
		w := api.WriteOptions{Ack: req.Ack, Default: req.DefaultAck, Timeout: time.Duration(min(req.TimeoutMs, maxForwardTimeoutMs)) * time.Millisecond,
			Session: req.Token}
		err = n.forwardCommand(ctx, req, w, &resp)
	case transport.OpGet:
		resp.Read, err = n.serveForwarded(ctx, req)
	case transport.OpReadIndex:
		resp.Read.Index, err = n.readIndex(ctx)
	case transport.OpTransfer:
		err = n.transfer(ctx, repl.NodeID(req.Key), true)
	case transport.OpMembers:
		err = n.handleMembers(ctx, req, &resp)
	default:
		err = fmt.Errorf("unknown forwarded operation %d", req.Op)
	}
	s, _ := n.status()
	resp.Leader = transport.NodeID(s.st.Lead)
	if err != nil {
		resp.Code = errCode(err)
		resp.Message = err.Error()
	}
	return &resp
}

// errCode is the wire code of a forwarded request's error: its identity
// (api.CodeOf), or, for a leader that gave up (its transport closed, or its
// deadline passed), CodeStopped: for a write the follower reports an
// unknown outcome, a read retries.
func errCode(err error) api.Code {
	if c := api.CodeOf(engineErr(err)); c != api.CodeOther { // engineErr: a core error a path did not wrap
		return c
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return api.CodeStopped
	}
	return api.CodeOther
}

// codeErr turns a forwarded response's code back into the api error
// (api.ErrorOf), naming the leader. For writes, a leader that stopped
// mid-request leaves the outcome unknown.
func codeErr(resp *transport.ForwardResponse, write bool) error {
	if resp.Code == api.CodeOK {
		return nil
	}
	msg := fmt.Sprintf("leader %s: %s", resp.Leader, resp.Message)
	switch {
	case resp.Code == api.CodeStopped && write:
		return fmt.Errorf("%w: %s", api.ErrOutcomeUnknown, msg)
	case resp.Code == api.CodeOther && strings.HasPrefix(resp.Message, api.ErrInsufficientStorage.Error()):
		// A leader of an earlier version, which had no code for a disk
		// short of space, sends its message only.
		return fmt.Errorf("%w (%s)", api.ErrInsufficientStorage, msg)
	}
	return api.ErrorOf(resp.Code, msg)
}

// engineErrors maps the replication core's errors that reach clients to
// the API's, which client protocols classify (api.Classify).
var engineErrors = []struct{ core, api error }{
	{repl.ErrNotLeader, api.ErrNotLeader},
	{repl.ErrTransferring, api.ErrTransferring},
	{repl.ErrBusy, api.ErrBusy},
	{repl.ErrBadAckMode, api.ErrBadAckMode},
	{repl.ErrNotEnoughPeers, api.ErrNotEnoughReplicas},
	{repl.ErrReadTimeout, api.ErrReadTimeout},
	{repl.ErrLeadershipLost, api.ErrLeadershipLost},
	{repl.ErrBadTransferTarget, api.ErrBadTransferTarget},
	{repl.ErrUnknownPeer, api.ErrUnknownPeer},
}

// engineErr wraps an error of the replication core with the API's error of
// the same meaning, at the node's boundary: errors.Is holds for both (the
// node's own checks use the core's), and the message is the API's, with
// the core's details in brackets. Other errors (nil, and those the API
// already classifies) are returned as they are.
func engineErr(err error) error {
	if err == nil || api.CodeOf(err) != api.CodeOther {
		return err
	}
	for _, m := range engineErrors {
		if errors.Is(err, m.core) {
			return fmt.Errorf("%w (%w)", m.api, err)
		}
	}
	return err
}

// getTimer returns a timer that fires after d, from the node's pool.
func (n *Node) getTimer(d time.Duration) *time.Timer {
	if t, _ := n.timers.Get().(*time.Timer); t != nil {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and returns it to the pool. (Since Go 1.23 a stopped
// timer's channel delivers nothing stale, so a reused timer is clean.)
func (n *Node) putTimer(t *time.Timer) {
	t.Stop()
	n.timers.Put(t)
}
