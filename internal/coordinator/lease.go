package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// driftFraction of the TTL is held back from every validity, for the
	// difference between this machine's clock rate and the etcd leader's
	// (both measure the TTL, each with its own clock).
	driftFraction = 20 // 1/20 = 5%
	// minDriftMargin is the least held back, for scheduling delays between
	// reading the clock and sending the request.
	minDriftMargin = 50 * time.Millisecond
	// minRetry is the shortest pause between failed keepalives.
	minRetry = 50 * time.Millisecond
)

// driftMargin is what ValidUntil holds back from a lease of the given TTL:
// 5% of it, at least 50ms.
func driftMargin(ttl time.Duration) time.Duration {
	return max(ttl/driftFraction, minDriftMargin)
}

// validity is how long a lease renewed by a request sent at sent may be
// relied on. etcd counts the TTL from when it receives the request, which is
// after sent, so sent+ttl is never later than etcd's expiry, up to the clock
// rate difference the margin covers.
func validity(sent time.Time, ttl time.Duration) time.Time {
	return sent.Add(ttl - driftMargin(ttl))
}

// leaseState is one etcd lease that this Elector keeps alive. Its fields are
// guarded by Elector.mu, except id and ttl, which never change.
type leaseState struct {
	id  clientv3.LeaseID
	ttl time.Duration // as granted by etcd, which may exceed Config.TTL
	// validUntil: send time of the last acknowledged grant or keepalive, plus
	// ttl, less driftMargin. Only moves forward.
	validUntil time.Time
	stop       context.CancelFunc // ends its keepalive goroutine
}

// ensureLease returns the current lease, granting a new one if there is none
// (or the last one's validity ran out) and starting its keepalives.
func (e *Elector) ensureLease(ctx context.Context) (*leaseState, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.expireLocked(time.Now())
	ls := e.lease
	e.mu.Unlock()
	if ls != nil {
		return ls, nil
	}

	sent := time.Now()
	resp, err := e.cli.Grant(ctx, int64(e.cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("coordinator: lease grant: %w", err)
	}
	ttl := time.Duration(resp.TTL) * time.Second
	if ttl <= 0 {
		return nil, fmt.Errorf("coordinator: lease grant: etcd granted TTL %ds", resp.TTL)
	}
	if ttl != e.cfg.TTL {
		// etcd raises TTLs below its minimum (1.5 election timeouts, rounded up).
		e.log.Info("coordinator: etcd granted a different lease TTL", "node", e.cfg.ID, "requested", e.cfg.TTL, "granted", ttl)
	}
	lctx, stop := context.WithCancel(e.ctx)
	ls = &leaseState{id: resp.ID, ttl: ttl, validUntil: validity(sent, ttl), stop: stop}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		stop() // the lease expires on its own
		return nil, ErrClosed
	}
	e.lease = ls
	e.wg.Add(1)
	go e.keepAlive(lctx, ls)
	return ls, nil
}

// keepAlive renews ls until ctx ends: TTL/3 after the previous keepalive
// was sent, or TTL/10 (at least minRetry) after a failed one ended.
func (e *Elector) keepAlive(ctx context.Context, ls *leaseState) {
	defer e.wg.Done()
	period := ls.ttl / 3
	retry := max(ls.ttl/10, minRetry)
	timer := time.NewTimer(period)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		started := time.Now()
		next := retry
		if e.renew(ctx, ls, period) {
			next = max(period-time.Since(started), 0)
		}
		timer.Reset(next)
	}
}

// renew sends one keepalive, measuring its send time, and extends ls by it if
// etcd acknowledged it. While holding, it then checks that the leader key is
// still ours. It reports whether the lease was renewed.
func (e *Elector) renew(ctx context.Context, ls *leaseState, timeout time.Duration) bool {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sent := time.Now()
	resp, err := e.cli.KeepAliveOnce(cctx, ls.id)
	if ctx.Err() != nil {
		return true // stopping; nothing to report
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.dropLease(ls, "etcd says the lease is gone", false)
		return false
	}
	if err != nil {
		e.log.Debug("coordinator: keepalive failed", "node", e.cfg.ID, "err", err)
		e.expire()
		return false
	}
	if !e.extend(ls, validity(sent, time.Duration(resp.TTL)*time.Second)) {
		return false
	}
	e.checkKey(cctx, ls)
	return true
}

// extend moves ls's validity forward to until, unless ls was dropped or its
// validity already ran out (a late acknowledgement does not revive it).
func (e *Elector) extend(ls *leaseState, until time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(time.Now())
	if e.lease != ls {
		return false
	}
	if until.After(ls.validUntil) {
		ls.validUntil = until
	}
	return true
}

// checkKey drops the lease if, while this Elector holds ls, the leader key
// is gone or belongs to someone else (deleted by hand, or replaced). A failed
// read changes nothing: the lease still bounds the validity.
func (e *Elector) checkKey(ctx context.Context, ls *leaseState) {
	e.mu.Lock()
	holding, rev := e.holding && e.lease == ls, e.createRev
	e.mu.Unlock()
	if !holding {
		return
	}
	resp, err := e.cli.Get(ctx, e.keys.leader)
	if err != nil {
		e.log.Debug("coordinator: leader key check failed", "node", e.cfg.ID, "err", err)
		return
	}
	if len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == rev && clientv3.LeaseID(resp.Kvs[0].Lease) == ls.id {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease == ls && e.holding && e.createRev == rev {
		e.dropLeaseLocked("the leader key is gone or replaced", true)
	}
}

// expire drops the lease if its validity has run out.
func (e *Elector) expire() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(time.Now())
}

// expireLocked drops the lease if its validity ran out by now. e.mu is held.
func (e *Elector) expireLocked(now time.Time) {
	if e.lease != nil && !now.Before(e.lease.validUntil) {
		e.dropLeaseLocked("lease validity ran out (etcd unreachable or slow)", true)
	}
}

// dropLease drops ls if it is still the current lease.
func (e *Elector) dropLease(ls *leaseState, why string, revoke bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease == ls {
		e.dropLeaseLocked(why, revoke)
	}
}

// dropLeaseLocked forgets the current lease and stops holding: a lease
// whose validity ran out is never renewed again, so Holding cannot come
// back on its own. With revoke, a best-effort revoke frees the leader key
// for others sooner (the lease expires anyway if it fails). e.mu is held.
func (e *Elector) dropLeaseLocked(why string, revoke bool) {
	ls := e.lease
	if ls == nil {
		return
	}
	e.lease = nil
	ls.stop()
	if e.holding {
		e.holding = false
		e.log.Warn("coordinator: no longer holding leadership", "node", e.cfg.ID, "term", e.term, "reason", why)
	}
	if revoke && !e.closed {
		e.wg.Add(1)
		go e.revokeQuietly(ls)
	}
}

// revokeQuietly revokes ls, bounded by its TTL; failure is only logged.
func (e *Elector) revokeQuietly(ls *leaseState) {
	defer e.wg.Done()
	ctx, cancel := context.WithTimeout(e.ctx, ls.ttl)
	defer cancel()
	if _, err := e.cli.Revoke(ctx, ls.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.log.Debug("coordinator: revoking a dropped lease failed; it will expire", "node", e.cfg.ID, "err", err)
	}
}
