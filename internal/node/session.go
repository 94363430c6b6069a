package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/session"
	"github.com/trireme-db/trireme/internal/transport"
)

// Session and bounded-staleness reads.
//
// A session token (api.Token) is the (term, index) of an entry. A node
// serves a session read once its store has applied the token's index, and
// checks that the entry it applied there has the token's term (the store's
// term history: the term of the last no-op at or below the index); another
// term means the session's write was discarded in a failover, and the read
// fails with ErrRolledBack naming it. A node that has not applied the
// index within Config.SessionWait forwards the read to the leader, whose
// log settles it: an index past the leader's log, or a different term
// there, is a rollback; the same term is waited for until applied.
//
// Every read reply's token is the store's applied (term, index) read after
// the value (so it covers what was read) and at least the token asked with.
//
// A bounded read is served here when the node can prove its state is no
// older than the bound: it keeps a read point the leader confirmed (a
// linearizable read index, asked for over the peer transport at local time
// t0); once the store has applied it, the state includes every write
// acknowledged before t0, so it lags by at most now - t0, plus a margin for
// this node's clock drift. An entry bound needs the read point to have been
// asked for after the read began. Otherwise, or if the leader cannot be
// asked, the read is forwarded to the leader.

// Read implements api.Service.
func (n *Node) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if n.removed.Load() {
		return api.ReadResult{}, api.ErrRemoved
	}
	if len(key) == 0 {
		return api.ReadResult{}, api.ErrEmptyKey
	}
	switch o.Consistency {
	case api.Stale, api.Local:
		return n.getStale(key)
	case api.Linearizable:
		return n.getLinearizable(ctx, key, false)
	case api.Session:
		return n.getSession(ctx, key, o.Token, false)
	case api.Bounded:
		return n.getBounded(ctx, key, o)
	}
	return api.ReadResult{}, api.ErrBadConsistency
}

// appliedToken is the token of the store's applied state.
func (n *Node) appliedToken() api.Token {
	idx := n.store.AppliedIndex()
	if idx == 0 {
		return api.Token{}
	}
	term, known, err := n.store.TermAt(idx)
	if err != nil || !known {
		// A store applied by a release without the term history: the
		// applied term (read after the index, so possibly of a later
		// entry; then a session read of this token may wait a little,
		// until the history is recorded by the next no-op).
		term = n.store.AppliedTerm()
	}
	return api.Token{Term: term, Index: idx}
}

// checkToken reports whether the applied state includes tok
// (session.Check on the store's term history).
func (n *Node) checkToken(tok api.Token) (ok bool, err error) {
	var herr error
	ok, err = session.Check(tok, n.store.AppliedIndex(), func(i uint64) (uint64, bool) {
		term, known, err := n.store.TermAt(i)
		if err != nil {
			herr = err
		}
		return term, known
	})
	if herr != nil {
		return false, herr
	}
	return ok, err
}

// getSession serves a session read here once the token is applied, waiting
// up to SessionWait, else forwards it to the leader. forwarded: this node
// was asked by a follower: it must settle the read (as leader) or refuse.
func (n *Node) getSession(ctx context.Context, key []byte, tok api.Token, forwarded bool) (api.ReadResult, error) {
	ok, err := n.checkToken(tok)
	if err != nil {
		n.m.sessionReads.WithLabelValues("rolled_back").Inc()
		return api.ReadResult{}, err
	}
	served := "local"
	if !ok {
		wait := n.cfg.SessionWait
		if forwarded {
			wait = n.cfg.WriteTimeout + n.cfg.ElectionTimeout
		}
		if ok, err = n.waitToken(ctx, tok, wait, forwarded); err != nil {
			if errors.Is(err, api.ErrRolledBack) {
				n.m.sessionReads.WithLabelValues("rolled_back").Inc()
			}
			return api.ReadResult{}, err
		}
		served = "waited"
	}
	if !ok {
		if forwarded {
			return api.ReadResult{}, fmt.Errorf("%w: index %d of the session is not applied here yet", api.ErrNoLeader, tok.Index)
		}
		n.m.sessionReads.WithLabelValues("forwarded").Inc()
		return n.forwardRead(ctx, &transport.ForwardRequest{Op: transport.OpGet, Key: key, Consistency: api.Session, Token: tok})
	}
	n.m.sessionReads.WithLabelValues(served).Inc()
	r, err := n.readApplied(key)
	if err != nil {
		return api.ReadResult{}, err
	}
	r.Token = r.Token.Max(tok)
	return r, nil
}

// waitToken waits up to d for the store to apply tok.Index. As leader (and
// with settle), it also decides from its log whether tok can still commit.
func (n *Node) waitToken(ctx context.Context, tok api.Token, d time.Duration, settle bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		ok, err := n.checkToken(tok)
		if ok || err != nil {
			return ok, err
		}
		s, ch := n.status()
		if settle && s.st.Role == repl.RoleLeader {
			if err := n.settle(tok, s); err != nil {
				return false, err
			}
		}
		if n.stopped() {
			return false, api.ErrStopped
		}
		// The store applies after the status is published: poll it too.
		t := n.getTimer(time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			n.putTimer(t)
			return false, nil
		case <-n.doneCh:
		}
		n.putTimer(t)
	}
}

// checkSessionWrite refuses, on the leader, a write whose session token
// names a discarded entry (session.Settle against the leader's log, then the
// applied state): the write's own token will cover the old one, so the loss
// must be told now.
//
// A token of a later term than this leader's proves that a newer leader was
// elected: this one is deposed and does not know it yet. Its write would be
// discarded, and the session's next token (the later of the two) would hide
// it, so the loss would never be told (chaos seed 18001): refuse, and let
// the client retry on the newer leader.
func (n *Node) checkSessionWrite(tok api.Token, s *snapshot) error {
	if tok.IsZero() {
		return nil
	}
	if err := session.NewerTerm(tok, s.st.Term); err != nil {
		return err
	}
	// The commit index's term decides both checks below, and only for a
	// token of an earlier term: one log lookup, none for the usual token.
	committed, known := true, true
	if tok.Term != 0 && tok.Term < s.st.Term {
		committed, known = n.committedInTerm(s)
	}
	if err := n.settleWith(tok, s, committed); err != nil {
		return err
	}
	// Unknown (the commit index's entry left the log, compacted after it
	// was applied): the write goes ahead, as it did before this check.
	if session.WriteMustWait(tok, s.st.Term, committed || !known) {
		// Whether the token's entry survived is not known until this
		// leader commits an entry of its term; written now, the new
		// write's token would cover the old one whether or not it was
		// discarded, and hide its loss (chaos seed 562545032: an async
		// write rolled back, the session's next write accepted by the new
		// leader right after its election, the loss never reported).
		return errSessionUnsettled
	}
	_, err := n.checkToken(tok)
	return err
}

// errSessionUnsettled: a session write reached a new leader before it could
// tell whether the session's previous write survived; the write waits
// (propose) and is refused with it only if that takes too long. Nothing
// is written.
var errSessionUnsettled = fmt.Errorf("%w: the new leader has not yet committed an entry of its term, so whether the session's last write survived the failover is not known yet; retry", api.ErrNoLeader)

// committedInTerm reports whether this leader has committed an entry of
// its own term (its no-op, one round trip after its election); known is
// false when the entry at the commit index has left the log.
func (n *Node) committedInTerm(s *snapshot) (committed, known bool) {
	t, err := n.wal.Term(s.st.Commit)
	return err == nil && t == s.st.Term, err == nil
}

// settle is session.Settle on this leader's log; it decides only once the
// leader has committed an entry of its own term (simulator seed 222: a new
// leader that had not, told a session its write was lost, and a later leader
// committed it).
func (n *Node) settle(tok api.Token, s *snapshot) error {
	committed, _ := n.committedInTerm(s)
	return n.settleWith(tok, s, committed)
}

// settleWith is settle with committedInTerm already looked up.
func (n *Node) settleWith(tok api.Token, s *snapshot, committedInTerm bool) error {
	logTerm := func(i uint64) (uint64, bool) {
		t, err := n.wal.Term(i)
		return t, err == nil
	}
	return session.Settle(tok, s.st.Term, s.st.LastIndex, committedInTerm, logTerm)
}

// readApplied reads key from the applied state, with its token.
func (n *Node) readApplied(key []byte) (api.ReadResult, error) {
	v, ver, found, err := n.store.Get(key)
	if err != nil {
		return api.ReadResult{}, err
	}
	return api.ReadResult{Found: found, Value: v, Index: ver, Token: n.appliedToken()}, nil
}

// forwardRead sends a read to the leader, retrying while no leader is known
// or the one asked is not it, until ctx (or a bound) ends.
func (n *Node) forwardRead(ctx context.Context, req *transport.ForwardRequest) (api.ReadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout+2*n.cfg.ElectionTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if n.stopped() {
			return api.ReadResult{}, api.ErrStopped
		}
		if attempt > 8 {
			return api.ReadResult{}, api.ErrNoLeader
		}
		s, _ := n.status()
		if s.st.Role == repl.RoleLeader {
			return n.serveForwarded(ctx, req)
		}
		if s.st.Lead == repl.None {
			if _, err := n.waitLeader(ctx); err != nil {
				if errors.Is(err, errTimeout) {
					return api.ReadResult{}, api.ErrNoLeader
				}
				return api.ReadResult{}, err
			}
			continue
		}
		resp, err := n.tr.Forward(ctx, transport.NodeID(s.st.Lead), req)
		if err != nil {
			if ctx.Err() != nil {
				return api.ReadResult{}, ctx.Err()
			}
			n.sleep(ctx, n.cfg.Heartbeat)
			continue
		}
		if resp.Code == api.CodeNotLeader || resp.Code == api.CodeNoLeader || resp.Code == api.CodeStopped {
			n.waitStatus(ctx, n.cfg.ElectionTimeout/2, func(s2 *snapshot) bool { return s2.st.Lead != s.st.Lead })
			continue
		}
		return resp.Read, codeErr(resp, false)
	}
}

// serveForwarded serves a forwarded read on this node, as leader.
func (n *Node) serveForwarded(ctx context.Context, req *transport.ForwardRequest) (api.ReadResult, error) {
	switch req.Consistency {
	case api.Session:
		return n.getSession(ctx, req.Key, req.Token, true)
	case api.Linearizable, api.Bounded:
		return n.getLinearizable(ctx, req.Key, true)
	}
	return api.ReadResult{}, api.ErrBadConsistency
}

// readPoint is a read index the leader confirmed, and when it was asked for.
type readPoint struct {
	index uint64
	asked time.Time
}

// boundedState caches the latest confirmed read point (one refresh at a time).
type boundedState struct {
	mu       sync.Mutex
	last     readPoint
	inflight chan struct{} // closed when the refresh in flight ends
	started  time.Time     // when it was asked for
}

// getBounded serves a bounded read here when the bound is proven, else
// forwards it to the leader.
func (n *Node) getBounded(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if o.MaxLag < 0 || (o.MaxLag == 0 && o.MaxLagEntries == 0) {
		return api.ReadResult{}, api.ErrBadBound
	}
	if n.stopped() {
		return api.ReadResult{}, api.ErrStopped
	}
	if s, _ := n.status(); s.st.Role == repl.RoleLeader {
		n.m.boundedReads.WithLabelValues("leader").Inc()
		return n.getLinearizable(ctx, key, false)
	}
	start := time.Now()
	if p, ok := n.boundedPoint(ctx, start, o); ok {
		// The point is confirmed: wait briefly until enough of it is
		// applied (all of it for a time bound; within the entry bound).
		need := session.Need(p.index, o.MaxLag > 0, o.MaxLagEntries)
		if ok, _ := n.waitToken(ctx, api.Token{Index: need}, n.cfg.SessionWait, false); ok {
			r, err := n.readApplied(key)
			if err == nil && n.withinBound(p, o, time.Now()) {
				n.m.boundedReads.WithLabelValues("local").Inc()
				return r, nil
			}
		}
	}
	n.m.boundedReads.WithLabelValues("forwarded").Inc()
	return n.forwardRead(ctx, &transport.ForwardRequest{Op: transport.OpGet, Key: key, Consistency: api.Bounded})
}

// withinBound reports whether a state that includes read point p lags by
// no more than o allows at now (session.WithinBound).
func (n *Node) withinBound(p readPoint, o api.ReadOptions, now time.Time) bool {
	return session.WithinBound(int64(now.Sub(p.asked)), int64(n.tick), int64(o.MaxLag))
}

// boundedPoint returns a read point that can prove o for a read that began
// at start: the cached one if it is recent enough, else a fresh one (one
// refresh in flight at a time; a read joins it if it was asked for after
// the read began).
func (n *Node) boundedPoint(ctx context.Context, start time.Time, o api.ReadOptions) (readPoint, bool) {
	b := &n.bounded
	for range 2 {
		b.mu.Lock()
		p := b.last
		// An entry bound needs a point asked for after the read began; a
		// time bound, any point young enough.
		usable := !p.asked.IsZero() && (o.MaxLagEntries == 0 || !p.asked.Before(start))
		if usable && n.withinBound(p, o, time.Now()) {
			b.mu.Unlock()
			return p, true
		}
		ch := b.inflight
		if ch == nil {
			ch = make(chan struct{})
			b.inflight, b.started = ch, time.Now()
			go n.refreshReadPoint(ch, b.started)
		}
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return readPoint{}, false
		}
	}
	return readPoint{}, false
}

// refreshReadPoint asks the leader for a read index and caches it.
func (n *Node) refreshReadPoint(done chan struct{}, asked time.Time) {
	b := &n.bounded
	defer func() {
		b.mu.Lock()
		if b.inflight == done {
			b.inflight = nil
		}
		b.mu.Unlock()
		close(done)
	}()
	s, _ := n.status()
	if s.st.Lead == repl.None || s.st.Role == repl.RoleLeader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ElectionTimeout)
	defer cancel()
	resp, err := n.tr.Forward(ctx, transport.NodeID(s.st.Lead), &transport.ForwardRequest{Op: transport.OpReadIndex})
	if err != nil || resp.Code != api.CodeOK {
		return
	}
	b.mu.Lock()
	if asked.After(b.last.asked) {
		b.last = readPoint{index: resp.Read.Index, asked: asked}
	}
	b.mu.Unlock()
}

// readIndex confirms leadership and returns a read point (OpReadIndex).
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if s, _ := n.status(); s.st.Role != repl.RoleLeader {
		return 0, n.notLeader(s.st.Lead)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ElectionTimeout)
	defer cancel()
	r, err := n.readPointLocal(ctx)
	if err != nil {
		if errors.Is(err, repl.ErrNotLeader) || errors.Is(err, repl.ErrLeadershipLost) {
			return 0, n.notLeader(repl.None)
		}
		return 0, err
	}
	return r, nil
}
