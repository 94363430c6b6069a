//go:build linux

package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/trireme-db/trireme/internal/coordinator/etcdtest"
)

// These tests run against a real etcd (internal/coordinator/etcdtest) with a 1s
// lease TTL. Times come from etcd, so they poll the wall clock; every bound
// they check is one the package promises, never a speed target.

func TestRaceExactlyOneWins(t *testing.T) {
	etcd := etcdtest.Start(t)
	var electors []*Elector
	for i := range 4 {
		electors = append(electors, mustElector(t, etcd.Endpoint(), "race", fmt.Sprintf("n%d", i)))
	}
	var lastTerm uint64
	for round := range 5 {
		type result struct {
			term   uint64
			won    bool
			holder string
			err    error
		}
		results := make([]result, len(electors))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, e := range electors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := &results[i]
				r.term, r.won, r.holder, r.err = e.TryAcquire(testCtx(t, 5*time.Second), 0)
			}()
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("round %d: n%d: %v", round, i, r.err)
			}
			if r.won {
				if winner >= 0 {
					t.Fatalf("round %d: both n%d and n%d won: %+v", round, winner, i, results)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won: %+v", round, results)
		}
		w := results[winner]
		if w.term <= lastTerm {
			t.Fatalf("round %d: winner's term %d, want > %d (previous holder's)", round, w.term, lastTerm)
		}
		lastTerm = w.term
		for i, r := range results {
			if i != winner && (r.holder != electors[winner].cfg.ID || r.term != w.term) {
				t.Errorf("round %d: loser n%d saw holder %q term %d, want %q term %d", round, i, r.holder, r.term, electors[winner].cfg.ID, w.term)
			}
			if got := electors[i].Holding(); got != (i == winner) {
				t.Errorf("round %d: n%d.Holding() = %v", round, i, got)
			}
		}
		id, term, ok, err := electors[0].Holder(testCtx(t, 5*time.Second))
		if err != nil || !ok || id != electors[winner].cfg.ID || term != w.term {
			t.Fatalf("round %d: Holder() = %q, %d, %v, %v; want %q, %d", round, id, term, ok, err, electors[winner].cfg.ID, w.term)
		}
		if err := electors[winner].Resign(testCtx(t, 5*time.Second)); err != nil {
			t.Fatalf("round %d: resign: %v", round, err)
		}
	}
}

func TestTermsIncreaseAcrossHoldersAndMinTermIsHonoured(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := mustElector(t, etcd.Endpoint(), "terms", "a")
	b := mustElector(t, etcd.Endpoint(), "terms", "b")
	c := mustElector(t, etcd.Endpoint(), "terms", "c")
	ctx := testCtx(t, 20*time.Second)
	resign := func(e *Elector) {
		t.Helper()
		if err := e.Resign(ctx); err != nil {
			t.Fatalf("%s: resign: %v", e.cfg.ID, err)
		}
		if e.Holding() || !e.ValidUntil().IsZero() {
			t.Fatalf("%s: still holding after Resign", e.cfg.ID)
		}
	}

	if got := mustAcquire(t, a, 0); got != 1 {
		t.Fatalf("first term = %d, want 1", got)
	}
	// The holder asking again keeps its term, whatever minTerm it asks for.
	for _, min := range []uint64{0, 1000} {
		if term, won, holder, err := a.TryAcquire(ctx, min); err != nil || !won || term != 1 || holder != "a" {
			t.Fatalf("holder's TryAcquire(%d) again = %d, %v, %q, %v; want 1, true, a", min, term, won, holder, err)
		}
	}
	if term, won, holder, err := b.TryAcquire(ctx, 0); err != nil || won || holder != "a" || term != 1 {
		t.Fatalf("b.TryAcquire while a holds = %d, %v, %q, %v; want 1, false, a", term, won, holder, err)
	}
	resign(a)
	if got := mustAcquire(t, b, 0); got != 2 {
		t.Fatalf("b's term = %d, want 2", got)
	}
	resign(b)
	if got := mustAcquire(t, a, 100); got != 100 {
		t.Fatalf("a's term with minTerm 100 = %d, want 100", got)
	}
	resign(a)
	if got := mustAcquire(t, b, 50); got != 101 {
		t.Fatalf("b's term with minTerm 50 after 100 = %d, want 101", got)
	}

	// c reads the term (101) while b holds, then two holders come and go: its
	// next transaction compares against a term key that moved and must not
	// hand out a term someone already had.
	if _, won, _, err := c.TryAcquire(ctx, 0); err != nil || won {
		t.Fatalf("c.TryAcquire while b holds: won %v, err %v", won, err)
	}
	resign(b)
	if got := mustAcquire(t, a, 0); got != 102 {
		t.Fatalf("a's term = %d, want 102", got)
	}
	resign(a)
	c.mu.Lock()
	stale := c.seen.term
	c.mu.Unlock()
	if stale != 101 {
		t.Fatalf("c's remembered term = %d, want 101 (the test needs a stale read)", stale)
	}
	if got := mustAcquire(t, c, 0); got != 103 {
		t.Fatalf("c's term after a stale read = %d, want 103", got)
	}
	if id, term, ok, err := a.Holder(ctx); err != nil || !ok || id != "c" || term != 103 {
		t.Fatalf("Holder() = %q, %d, %v, %v; want c, 103", id, term, ok, err)
	}
	resign(c)
	if id, term, ok, err := a.Holder(ctx); err != nil || ok || term != 103 {
		t.Fatalf("Holder() with nobody holding = %q, %d, %v, %v; want not ok, term 103", id, term, ok, err)
	}
	resign(c) // not holding: harmless
}

func TestKeepalivesHoldTheKeyPastTheTTL(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := mustElector(t, etcd.Endpoint(), "keep", "a")
	b := mustElector(t, etcd.Endpoint(), "keep", "b")
	term := mustAcquire(t, a, 0)
	first := a.ValidUntil()
	end := time.Now().Add(3 * testTTL)
	for time.Now().Before(end) {
		if !a.Holding() {
			t.Fatalf("a stopped holding %v after acquiring, with etcd up", time.Since(first.Add(-testTTL)))
		}
		if _, won, holder, err := b.TryAcquire(testCtx(t, 2*time.Second), 0); err != nil || won || holder != "a" {
			t.Fatalf("b.TryAcquire while a holds: won %v, holder %q, err %v", won, holder, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last := a.ValidUntil(); !last.After(first.Add(2 * testTTL)) {
		t.Fatalf("ValidUntil moved %v in 3 TTLs, want keepalives to move it > 2 TTLs", last.Sub(first))
	}
	if got, _, _, err := a.TryAcquire(testCtx(t, 2*time.Second), 0); err != nil || got != term {
		t.Fatalf("a.TryAcquire = %d, %v; want its term %d", got, err, term)
	}
}

func TestCrashedHolderBlocksOthersUntilLeaseExpires(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := mustElector(t, etcd.Endpoint(), "crash", "a")
	b := mustElector(t, etcd.Endpoint(), "crash", "b")
	termA := mustAcquire(t, a, 0)
	time.Sleep(testTTL) // a few keepalives

	// Crash a: keepalives stop, nothing is deleted.
	validUntil := a.halt()
	haltAt := time.Now()
	a.Close()
	if validUntil.IsZero() {
		t.Fatal("a was not holding when it crashed")
	}
	if max := haltAt.Add(testTTL - driftMargin(testTTL)); validUntil.After(max) {
		t.Fatalf("ValidUntil = halt+%v, more than TTL-margin after any send", validUntil.Sub(haltAt))
	}
	if id, _, ok, err := b.Holder(testCtx(t, 2*time.Second)); err != nil || !ok || id != "a" {
		t.Fatalf("after a's crash, Holder() = %q, %v, %v; want a (Close deletes nothing)", id, ok, err)
	}

	termB, acquiredAt := acquireWhenFree(t, b, 0, testTTL+3*time.Second)
	t.Logf("a's ValidUntil was halt+%v; b acquired at halt+%v",
		validUntil.Sub(haltAt).Round(time.Millisecond), acquiredAt.Sub(haltAt).Round(time.Millisecond))
	if acquiredAt.Before(validUntil) {
		t.Fatalf("b acquired %v before a's ValidUntil: ValidUntil ran past the real expiry", validUntil.Sub(acquiredAt))
	}
	// a's last keepalive went out at most TTL/3 before the crash.
	if min := testTTL - testTTL/3 - driftMargin(testTTL); acquiredAt.Sub(haltAt) < min {
		t.Fatalf("b acquired halt+%v, want at least %v (the lease's TTL counted from a's last keepalive)", acquiredAt.Sub(haltAt), min)
	}
	if termB <= termA {
		t.Fatalf("b's term %d after a's %d, want higher", termB, termA)
	}
}

// holdWatch polls an Elector's Holding and ValidUntil until stopped, to
// check afterwards that Holding was never true at or after the ValidUntil it
// ended with.
type holdWatch struct {
	lastTrue   time.Time // the latest time a poll began that saw Holding true
	lostAt     time.Time // when a poll first saw Holding false
	validUntil time.Time // the latest ValidUntil seen
}

func watchHolding(e *Elector, stop <-chan struct{}) <-chan holdWatch {
	out := make(chan holdWatch, 1)
	go func() {
		var w holdWatch
		for {
			select {
			case <-stop:
				out <- w
				return
			default:
			}
			if v := e.ValidUntil(); v.After(w.validUntil) {
				w.validUntil = v
			}
			at := time.Now()
			if e.Holding() {
				w.lastTrue = at
			} else if w.lostAt.IsZero() {
				w.lostAt = at
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return out
}

func TestHolderCutOffFromEtcdStepsDownBeforeOthersAcquire(t *testing.T) {
	etcd := etcdtest.Start(t)
	proxy := mustStallProxy(t, etcd.Endpoint())
	a := mustElector(t, proxy.addr(), "cut", "a") // a reaches etcd only through the proxy
	b := mustElector(t, etcd.Endpoint(), "cut", "b")
	termA := mustAcquire(t, a, 0)
	time.Sleep(testTTL / 2)

	stop := make(chan struct{})
	watched := watchHolding(a, stop)
	proxy.setStalled(true)
	cutAt := time.Now()
	termB, acquiredAt := acquireWhenFree(t, b, 0, testTTL+3*time.Second)
	close(stop)
	w := <-watched

	t.Logf("cut at 0; a's last ValidUntil %v, a saw itself lost at %v, b acquired at %v",
		w.validUntil.Sub(cutAt).Round(time.Millisecond), w.lostAt.Sub(cutAt).Round(time.Millisecond),
		acquiredAt.Sub(cutAt).Round(time.Millisecond))
	switch {
	case w.lostAt.IsZero():
		t.Fatal("a never stopped holding")
	case !w.lastTrue.Before(w.validUntil):
		t.Fatalf("a.Holding() was true %v after its ValidUntil", w.lastTrue.Sub(w.validUntil))
	case w.validUntil.After(acquiredAt):
		t.Fatalf("b acquired %v before a's ValidUntil", w.validUntil.Sub(acquiredAt))
	case !w.lastTrue.Before(acquiredAt):
		t.Fatal("a still held when b acquired")
	case w.validUntil.After(cutAt.Add(testTTL)):
		t.Fatalf("a's ValidUntil cut+%v, want at most the TTL after the cut", w.validUntil.Sub(cutAt))
	case termB <= termA:
		t.Fatalf("b's term %d after a's %d, want higher", termB, termA)
	}

	// Healed, a stays down (no revival) and reads the new holder.
	proxy.setStalled(false)
	time.Sleep(testTTL / 2)
	if a.Holding() || !a.ValidUntil().IsZero() {
		t.Fatal("a holds again after the partition healed")
	}
	if id, term, ok, err := a.Holder(testCtx(t, 3*time.Second)); err != nil || !ok || id != "b" || term != termB {
		t.Fatalf("a.Holder() after healing = %q, %d, %v, %v; want b, %d", id, term, ok, err, termB)
	}
	if term, won, holder, err := a.TryAcquire(testCtx(t, 3*time.Second), 0); err != nil || won || holder != "b" || term != termB {
		t.Fatalf("a.TryAcquire after healing = %d, %v, %q, %v; want b holds %d", term, won, holder, err, termB)
	}
}

func TestHolderStepsDownWhileEtcdIsStopped(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := mustElector(t, etcd.Endpoint(), "stopped", "a")
	b := mustElector(t, etcd.Endpoint(), "stopped", "b")
	termA := mustAcquire(t, a, 0)
	time.Sleep(testTTL / 2)

	stop := make(chan struct{})
	watched := watchHolding(a, stop)
	etcd.Pause()
	pausedAt := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			etcd.Resume()
		}
	}()
	deadline := pausedAt.Add(testTTL + time.Second)
	for a.Holding() {
		if time.Now().After(deadline) {
			t.Fatalf("a still holding %v after etcd stopped", time.Since(pausedAt))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	etcd.Resume()
	resumed = true
	termB, acquiredAt := acquireWhenFree(t, b, 0, testTTL+5*time.Second)
	close(stop)
	w := <-watched

	t.Logf("paused at 0; a's last ValidUntil %v, lost at %v; b acquired at %v",
		w.validUntil.Sub(pausedAt).Round(time.Millisecond), w.lostAt.Sub(pausedAt).Round(time.Millisecond),
		acquiredAt.Sub(pausedAt).Round(time.Millisecond))
	switch {
	case !w.lastTrue.Before(w.validUntil):
		t.Fatalf("a.Holding() was true %v after its ValidUntil", w.lastTrue.Sub(w.validUntil))
	case w.validUntil.After(pausedAt.Add(testTTL - driftMargin(testTTL))):
		t.Fatalf("a's ValidUntil pause+%v, but nothing sent after the pause was answered", w.validUntil.Sub(pausedAt))
	case !w.lastTrue.Before(acquiredAt) || w.validUntil.After(acquiredAt):
		t.Fatal("a still valid when b acquired")
	case termB <= termA:
		t.Fatalf("b's term %d after a's %d, want higher", termB, termA)
	}
	time.Sleep(testTTL / 2)
	if a.Holding() {
		t.Fatal("a holds again after etcd came back")
	}
}

func TestTermSurvivesEtcdRestart(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := mustElector(t, etcd.Endpoint(), "restart", "a")
	t1 := mustAcquire(t, a, 0)
	if err := a.Resign(testCtx(t, 3*time.Second)); err != nil {
		t.Fatal(err)
	}
	etcd.Restart() // SIGKILL, then the same data directory

	// The same Elector (its client reconnects) and a new one both see the term.
	t2, _ := acquireWhenFree(t, a, 0, 5*time.Second)
	if t2 <= t1 {
		t.Fatalf("term after restart %d, want > %d", t2, t1)
	}
	b := mustElector(t, etcd.Endpoint(), "restart", "b")
	if id, term, ok, err := b.Holder(testCtx(t, 3*time.Second)); err != nil || !ok || id != "a" || term != t2 {
		t.Fatalf("Holder() = %q, %d, %v, %v; want a, %d", id, term, ok, err, t2)
	}
	if err := a.Resign(testCtx(t, 3*time.Second)); err != nil {
		t.Fatal(err)
	}
	etcd.Restart()
	if t3, _ := acquireWhenFree(t, b, 0, 5*time.Second); t3 <= t2 {
		t.Fatalf("term after second restart %d, want > %d", t3, t2)
	}
}

func TestGarbageTermIsAnError(t *testing.T) {
	etcd := etcdtest.Start(t)
	raw := mustRawClient(t, etcd.Endpoint())
	a := mustElector(t, etcd.Endpoint(), "garbage", "a")
	k := keysFor("garbage")
	ctx := testCtx(t, 10*time.Second)
	for _, v := range []string{"banana", "007", "-3", "", "18446744073709551616"} {
		if _, err := raw.Put(ctx, k.term, v); err != nil {
			t.Fatal(err)
		}
		term, won, _, err := a.TryAcquire(ctx, 0)
		if !errors.Is(err, ErrBadTerm) || won {
			t.Fatalf("term %q: TryAcquire = %d, %v, %v; want ErrBadTerm", v, term, won, err)
		}
		if _, _, _, err := a.Holder(ctx); !errors.Is(err, ErrBadTerm) {
			t.Fatalf("term %q: Holder err %v, want ErrBadTerm", v, err)
		}
		resp, err := raw.Txn(ctx).Then(clientv3.OpGet(k.leader), clientv3.OpGet(k.term)).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.Responses[0].GetResponseRange().Kvs); n != 0 {
			t.Fatalf("term %q: a leader key was written", v)
		}
		if got := string(resp.Responses[1].GetResponseRange().Kvs[0].Value); got != v {
			t.Fatalf("term %q was overwritten with %q", v, got)
		}
	}
	if _, err := raw.Put(ctx, k.term, formatTerm(math.MaxUint64)); err != nil {
		t.Fatal(err)
	}
	if _, won, _, err := a.TryAcquire(ctx, 0); !errors.Is(err, ErrTermExhausted) || won {
		t.Fatalf("at the largest term: won %v, err %v; want ErrTermExhausted", won, err)
	}
}

func TestHolderNoticesKeyDeletedOrLeaseRevoked(t *testing.T) {
	etcd := etcdtest.Start(t)
	raw := mustRawClient(t, etcd.Endpoint())
	a := mustElector(t, etcd.Endpoint(), "tamper", "a")
	b := mustElector(t, etcd.Endpoint(), "tamper", "b")
	k := keysFor("tamper")
	ctx := testCtx(t, 20*time.Second)
	waitLost := func(e *Elector, what string) {
		t.Helper()
		// A keepalive (every TTL/3) finds it; allow one more period for the check.
		deadline := time.Now().Add(testTTL)
		for e.Holding() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still holding %v after %s", e.cfg.ID, testTTL, what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	termA := mustAcquire(t, a, 0)
	if _, err := raw.Delete(ctx, k.leader); err != nil {
		t.Fatal(err)
	}
	waitLost(a, "its key was deleted")
	termB := mustAcquire(t, b, 0)
	if termB <= termA {
		t.Fatalf("b's term %d after a's %d", termB, termA)
	}

	resp, err := raw.Get(ctx, k.leader)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading b's key: %v", err)
	}
	if _, err := raw.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	waitLost(b, "its lease was revoked")
	if termA2 := mustAcquire(t, a, 0); termA2 <= termB {
		t.Fatalf("a's term %d after b's %d", termA2, termB)
	}
}

func TestCloseIsFinal(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := mustElector(t, etcd.Endpoint(), "close", "a")
	mustAcquire(t, a, 0)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a.Holding() || !a.ValidUntil().IsZero() {
		t.Fatal("holding after Close")
	}
	if _, _, _, err := a.TryAcquire(context.Background(), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryAcquire after Close: %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewFailsWithoutEtcd(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Cluster, cfg.ID = []string{etcdtest.FreeAddr(t)}, "c", "n"
	cfg.DialTimeout = 300 * time.Millisecond
	start := time.Now()
	if _, err := New(cfg); err == nil {
		t.Fatal("New with nothing listening succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("New took %v to fail, want about DialTimeout (300ms)", d)
	}
}

// An acquisition whose answer is lost may still have created the key; the
// Elector must not keep that key alive while believing it lost.
func TestLostAcquireAnswerDoesNotWedgeTheKey(t *testing.T) {
	etcd := etcdtest.Start(t)
	raw := mustRawClient(t, etcd.Endpoint())
	proxy := mustStallProxy(t, etcd.Endpoint())
	a := mustElector(t, proxy.addr(), "lost", "a")
	b := mustElector(t, etcd.Endpoint(), "lost", "b")
	ctx := testCtx(t, 10*time.Second)

	termB := mustAcquire(t, b, 0)
	if _, won, _, err := a.TryAcquire(ctx, 0); err != nil || won {
		t.Fatalf("a.TryAcquire while b holds: won %v, err %v", won, err)
	}
	if err := b.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	// a's transaction reaches etcd, but its answer is held past a's deadline.
	proxy.setStalledAnswers(true)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, won, _, err := a.TryAcquire(short, 0)
	cancel()
	proxy.setStalledAnswers(false)
	if err == nil || won {
		t.Fatalf("a.TryAcquire with its answer held: won %v, err %v; want an error", won, err)
	}
	if a.Holding() {
		t.Fatal("a holds after a failed TryAcquire")
	}
	resp, err := raw.Get(ctx, keysFor("lost").term)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading the term: %v", err)
	}
	if got := string(resp.Kvs[0].Value); got != formatTerm(termB+1) {
		t.Fatalf("term after a's attempt %s, want %d (the test needs the transaction to have gone through)", got, termB+1)
	}
	// The key a's lost transaction created must go: b gets it within a TTL or so.
	termB2, _ := acquireWhenFree(t, b, 0, 2*testTTL+time.Second)
	if termB2 <= termB+1 {
		t.Fatalf("b's term %d, want above a's lost acquisition (> %d)", termB2, termB+1)
	}
}
