package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// maxAcquireAttempts bounds TryAcquire's retries when the leader key is free
// but the term key changed between its read and its transaction.
const maxAcquireAttempts = 8

// Elector is one node's handle on the cluster's leader key in etcd. Its
// methods are safe for concurrent use; TryAcquire and Resign run one at a time.
type Elector struct {
	cfg  Config
	keys keys
	log  *slog.Logger
	cli  *clientv3.Client

	ctx    context.Context    // parent of background calls; canceled by Close
	cancel context.CancelFunc //
	wg     sync.WaitGroup     // keepalive and revoke goroutines

	opMu sync.Mutex // serializes TryAcquire and Resign

	mu        sync.Mutex
	closed    bool         // guarded by mu
	lease     *leaseState  // guarded by mu; nil when there is none
	holding   bool         // guarded by mu; true only with lease != nil
	createRev int64        // guarded by mu; the leader key's create revision while holding
	term      uint64       // guarded by mu; this holder's term while holding
	seen      termSnapshot // guarded by mu; the term key as last read (a hint for the next compare)

	closeOnce sync.Once
	closeErr  error
}

// termSnapshot is the term key as read at one revision: its value and its
// ModRevision (0 when absent, as etcd compares a missing key).
type termSnapshot struct {
	term   uint64
	modRev int64
}

// New connects to etcd (one read, bounded by DialTimeout) and returns an
// Elector that holds nothing yet.
func New(cfg Config) (*Elector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// The client's own logging is not wanted; this package logs what matters.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator: etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	e := &Elector{cfg: cfg, keys: keysFor(cfg.Cluster), log: cfg.Logger, cli: cli}
	// A serializable read needs any one member, not a quorum: it proves the
	// endpoints answer without requiring etcd to be fully healthy.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, e.keys.term, clientv3.WithSerializable()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("coordinator: no answer from etcd at %s within %v: %w", strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err)
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Close stops keepalives and closes the etcd client. It deletes nothing: the
// leader key, if held, stays until its lease expires, as after a crash.
// Holding is false from the call on.
func (e *Elector) Close() error {
	e.halt()
	e.closeOnce.Do(func() { e.closeErr = e.cli.Close() })
	return e.closeErr
}

// halt stops every background goroutine and forgets the lease, as a crash
// would, and returns the validity the lease had when keepalives stopped
// (zero if not holding). Nothing can extend it afterwards.
func (e *Elector) halt() time.Time {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()

	e.mu.Lock()
	defer e.mu.Unlock()
	var last time.Time
	if e.lease != nil {
		if e.holding {
			last = e.lease.validUntil
		}
		e.lease.stop()
	}
	e.lease, e.holding = nil, false
	return last
}

// Holding reports whether this Elector holds the leader key and may act as
// the holder now: false once ValidUntil has passed, after etcd said the lease
// or the key is gone, after Resign and after Close.
func (e *Elector) Holding() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(time.Now())
	return e.holding && !e.closed
}

// ValidUntil is the local time until which this node may act as the holder:
// the send time of the last acknowledged keepalive (or of the grant) plus the
// TTL etcd granted, less a margin for clock rate drift (5% of the TTL, at
// least 50ms). Zero when not holding.
func (e *Elector) ValidUntil() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(time.Now())
	if !e.holding || e.closed {
		return time.Time{}
	}
	return e.lease.validUntil
}

// TryAcquire tries once to become the holder. In one etcd transaction it
// creates the leader key (value: this node's id, attached to this Elector's
// lease) if it does not exist, and sets the term key to
// max(stored term + 1, minTerm), comparing the term key's ModRevision with
// the one read so that no two acquisitions hand out the same term. It returns
// won=true and the new term when this node became the holder, or won=false
// with the current holder's id and term. If this Elector already holds the
// key, it returns won=true and its term (minTerm is not applied then). A
// lease is granted, or granted again after the last one ran out, as needed.
func (e *Elector) TryAcquire(ctx context.Context, minTerm uint64) (term uint64, won bool, holder string, err error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()

	e.mu.Lock()
	e.expireLocked(time.Now())
	closed, holding, held, snap := e.closed, e.holding, e.term, e.seen
	e.mu.Unlock()
	switch {
	case closed:
		return 0, false, "", ErrClosed
	case holding:
		return held, true, e.cfg.ID, nil
	}

	ls, err := e.ensureLease(ctx)
	if err != nil {
		return 0, false, "", err
	}
	for range maxAcquireAttempts {
		newTerm, err := nextTerm(snap.term, minTerm)
		if err != nil {
			return 0, false, "", err
		}
		resp, err := e.acquireTxn(ctx, ls, snap, newTerm)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The lease expired in etcd (say, etcd was away); start over with a new one.
			e.dropLease(ls, "etcd says the lease is gone", false)
			if ls, err = e.ensureLease(ctx); err != nil {
				return 0, false, "", err
			}
			continue
		}
		if err != nil {
			// The transaction may have gone through with its answer lost. Stop
			// keeping the lease alive (and revoke it if possible) so that a key
			// it may have created cannot outlive this attempt.
			e.dropLease(ls, "acquisition outcome unknown", true)
			return 0, false, "", fmt.Errorf("coordinator: acquire: %w", err)
		}
		if resp.Succeeded {
			rev := resp.Header.Revision // both puts were written at the transaction's revision
			if err := e.becomeHolder(ls, rev, termSnapshot{term: newTerm, modRev: rev}); err != nil {
				return 0, false, "", err
			}
			return newTerm, true, e.cfg.ID, nil
		}
		if len(resp.Responses) != 2 {
			return 0, false, "", fmt.Errorf("coordinator: acquire: etcd answered %d reads, want 2", len(resp.Responses))
		}
		leader := firstKV(resp.Responses[0])
		if snap, err = snapshotOf(firstKV(resp.Responses[1])); err != nil {
			return 0, false, "", err
		}
		e.setSeen(snap)
		if leader == nil {
			continue // the key is free but the term moved: compute again
		}
		if clientv3.LeaseID(leader.Lease) == ls.id {
			// Already ours in etcd, though not recorded here (defensive: a lost
			// answer drops the lease above): take it up.
			if err := e.becomeHolder(ls, leader.CreateRevision, snap); err != nil {
				return 0, false, "", err
			}
			return snap.term, true, e.cfg.ID, nil
		}
		return snap.term, false, string(leader.Value), nil
	}
	return 0, false, "", ErrContended
}

// acquireTxn is TryAcquire's transaction: if the leader key is absent and the
// term key is as snap read it, create the leader key under ls and store
// newTerm; otherwise read both keys.
func (e *Elector) acquireTxn(ctx context.Context, ls *leaseState, snap termSnapshot, newTerm uint64) (*clientv3.TxnResponse, error) {
	return e.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(e.keys.leader), "=", 0),
		clientv3.Compare(clientv3.ModRevision(e.keys.term), "=", snap.modRev),
	).Then(
		clientv3.OpPut(e.keys.leader, e.cfg.ID, clientv3.WithLease(ls.id)),
		clientv3.OpPut(e.keys.term, formatTerm(newTerm)),
	).Else(
		clientv3.OpGet(e.keys.leader),
		clientv3.OpGet(e.keys.term),
	).Commit()
}

// becomeHolder records that the leader key, created at rev under ls, is ours
// with snap's term, unless ls was dropped (its validity ran out) meanwhile.
func (e *Elector) becomeHolder(ls *leaseState, rev int64, snap termSnapshot) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(time.Now())
	e.seen = snap
	switch {
	case e.closed:
		return ErrClosed
	case e.lease != ls:
		return fmt.Errorf("%w (term %d)", ErrLeaseLost, snap.term)
	}
	e.holding, e.createRev, e.term = true, rev, snap.term
	e.log.Info("coordinator: holding leadership", "node", e.cfg.ID, "term", snap.term,
		"valid_for", time.Until(ls.validUntil).Round(time.Millisecond))
	return nil
}

func (e *Elector) setSeen(snap termSnapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = snap
}

// Resign stops holding at once, then deletes the leader key if it is still
// ours (compared on its create revision) and revokes the lease. It is safe
// to call when not holding; then it only revokes the lease, if any.
func (e *Elector) Resign(ctx context.Context) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	ls, holding, rev, term := e.lease, e.holding, e.createRev, e.term
	e.lease, e.holding = nil, false
	if ls != nil {
		ls.stop()
	}
	e.mu.Unlock()

	var errs []error
	if holding {
		e.log.Info("coordinator: resigning leadership", "node", e.cfg.ID, "term", term)
		_, err := e.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(e.keys.leader), "=", rev)).
			Then(clientv3.OpDelete(e.keys.leader)).
			Commit()
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting the leader key: %w", err))
		}
	}
	if ls != nil {
		if _, err := e.cli.Revoke(ctx, ls.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("revoking the lease: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("coordinator: resign: %w", err)
	}
	return nil
}

// Holder reads the current holder's id and the fencing term, in one
// consistent read. ok is false when nobody holds the key; term is then the
// last term handed out (0 if none ever was).
func (e *Elector) Holder(ctx context.Context) (id string, term uint64, ok bool, err error) {
	resp, err := e.cli.Txn(ctx).Then(
		clientv3.OpGet(e.keys.leader),
		clientv3.OpGet(e.keys.term),
	).Commit()
	if err != nil {
		return "", 0, false, fmt.Errorf("coordinator: reading the holder: %w", err)
	}
	if len(resp.Responses) != 2 {
		return "", 0, false, fmt.Errorf("coordinator: reading the holder: etcd answered %d reads, want 2", len(resp.Responses))
	}
	snap, err := snapshotOf(firstKV(resp.Responses[1]))
	if err != nil {
		return "", 0, false, err
	}
	e.setSeen(snap)
	leader := firstKV(resp.Responses[0])
	if leader == nil {
		return "", snap.term, false, nil
	}
	return string(leader.Value), snap.term, true, nil
}

// firstKV is the key read by a Get inside a transaction, or nil if absent.
func firstKV(r *pb.ResponseOp) *mvccpb.KeyValue {
	if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
		return rr.Kvs[0]
	}
	return nil
}

// snapshotOf decodes the term key as read (nil when absent).
func snapshotOf(kv *mvccpb.KeyValue) (termSnapshot, error) {
	if kv == nil {
		return termSnapshot{}, nil
	}
	t, err := parseTerm(kv.Value)
	if err != nil {
		return termSnapshot{}, fmt.Errorf("%w (key %s, revision %d)", err, kv.Key, kv.ModRevision)
	}
	return termSnapshot{term: t, modRev: kv.ModRevision}, nil
}
