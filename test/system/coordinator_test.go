//go:build linux

package system

// Tests of --election coordinator on real processes: three trireme nodes
// whose leader is a lease-backed key in a real etcd (internal/coordinator/
// etcdtest), each node reaching etcd through its own TCP proxy
// (internal/chaos.Link), so that one node can be cut off from etcd while the
// others still reach it. They kill the leader, cut the leader from etcd,
// stop etcd, and restart etcd, and check what the coordinator mode promises:
// a leader steps down by itself before its key could pass to another node,
// terms (fencing tokens) only grow, and no acknowledged write is lost.
//
// Times come from real processes, so the tests poll the wall clock; every
// bound they check is a promise (the TTL) or a generous limit on a wait,
// never a speed target. Without etcd they fail, saying to install
// etcd-server, unless TRIREME_SKIP_ETCD=1.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/chaos"
	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/coordinator/etcdtest"
)

// coordTTL is the leadership key's lease (--coordinator-ttl): the shortest
// etcd grants, so that failovers in these tests take about a second.
const coordTTL = etcdtest.MinTTL

// coordCluster is a 3-node cluster run with --election coordinator.
type coordCluster struct {
	*tc
	etcd  *etcdtest.Server
	links map[string]*chaos.Link // node id -> the proxy it reaches etcd through
}

// mustStartCoord starts an etcd, one proxy to it per node, and a 3-node
// cluster electing through it, and waits for a leader. Everything is
// stopped when the test ends (the nodes first, then the proxies, then etcd).
func mustStartCoord(t *testing.T) *coordCluster {
	t.Helper()
	etcd := etcdtest.Start(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- end of etcd's log (%s) ----\n%s", etcd.LogPath(), etcd.LogTail())
		}
	})
	x := &coordCluster{etcd: etcd, links: map[string]*chaos.Link{}}
	coord := map[string]string{}
	log := slog.New(slog.DiscardHandler)
	for i, id := range []string{"n1", "n2", "n3"} { // the ids cluster.FreeSpec gives
		l, err := chaos.NewLink(id, "etcd", etcd.Endpoint(), uint64(i+1), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		x.links[id] = l
		coord[id] = "etcd://" + l.Addr()
	}
	wrapper := mustCoordWrapper(t, coord)
	x.tc = mustStartWith(t, func(cfg *cluster.Config) { cfg.Binary = wrapper },
		"--election", "coordinator", "--coordinator-ttl", coordTTL.String())
	x.mustLeader("")
	return x
}

// mustCoordWrapper writes a script that runs the trireme binary with the
// --coordinator of the node its --id names. internal/cluster gives every
// node the same flags, and here each node needs its own proxy. The script
// execs trireme, so the process that internal/cluster kills, stops and
// signals is trireme itself.
func mustCoordWrapper(t *testing.T, coord map[string]string) string {
	t.Helper()
	var cases strings.Builder
	ids := make([]string, 0, len(coord))
	for id := range coord {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(&cases, "%s) coord='%s' ;;\n", id, coord[id])
	}
	if strings.ContainsRune(binary, '\'') {
		t.Fatalf("the trireme binary's path %q holds a quote; the wrapper cannot quote it", binary)
	}
	script := fmt.Sprintf(`#!/bin/sh
# Runs trireme with the --coordinator of the node named by --id.
id=
prev=
for a in "$@"; do
	if [ "$prev" = --id ]; then id=$a; fi
	prev=$a
done
case "$id" in
%s*) echo "coordinator wrapper: no --coordinator for node '$id'" >&2; exit 2 ;;
esac
exec '%s' "$@" --coordinator "$coord"
`, cases.String(), binary)
	path := filepath.Join(t.TempDir(), "trireme-coord")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// term returns node id's current term (the fencing term it acts in).
func (x *coordCluster) term(id string) uint64 {
	x.t.Helper()
	st, err := x.c.Status(x.ctx(2*time.Second), id)
	if err != nil {
		x.t.Fatalf("status of %s: %v", id, err)
	}
	return st.Term
}

// mustNotLeading waits until each of ids answers /v1/status with a role
// other than leader, and returns when it first saw that. It fails the test
// after limit, naming the nodes that still lead or do not answer.
func (x *coordCluster) mustNotLeading(limit time.Duration, ids ...string) time.Time {
	x.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var bad []string
		for _, id := range ids {
			st, err := x.c.Status(x.ctx(time.Second), id)
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s does not answer (%v)", id, err))
			case st.Role == "leader":
				bad = append(bad, fmt.Sprintf("%s leads at term %d", id, st.Term))
			}
		}
		if len(bad) == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("%v after losing the coordinator: %s", limit, strings.Join(bad, "; "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// roleObs is one /v1/status answer: the node said it had role at term
// at some moment between start and end.
type roleObs struct {
	id         string
	start, end time.Time
	role       string
	term       uint64
}

// roleWatch polls every node's /v1/status (each every 10ms) until closed.
type roleWatch struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	obs  []roleObs // guarded by mu
}

func (x *tc) watchRoles() *roleWatch {
	w := &roleWatch{stop: make(chan struct{})}
	for _, n := range x.c.Spec().Nodes {
		w.wg.Go(func() {
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				st, err := x.c.Status(ctx, n.ID)
				cancel()
				if err == nil {
					w.mu.Lock()
					w.obs = append(w.obs, roleObs{id: n.ID, start: start, end: time.Now(), role: st.Role, term: st.Term})
					w.mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	x.t.Cleanup(w.close)
	return w
}

func (w *roleWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// lastLeading returns the start of the latest poll in which a node in ids
// (any node if ids is empty) said it led: it led at some moment at or after
// that time. Zero if none did.
func (w *roleWatch) lastLeading(ids ...string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Time
	for _, o := range w.obs {
		if o.role == "leader" && (len(ids) == 0 || contains(ids, o.id)) && o.start.After(last) {
			last = o.start
		}
	}
	return last
}

// firstLeading returns the end of the earliest poll in which a node other
// than except said it led at a term above term: it led by that time.
func (w *roleWatch) firstLeading(except string, term uint64) (roleObs, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first roleObs
	found := false
	for _, o := range w.obs {
		if o.role == "leader" && o.id != except && o.term > term && (!found || o.end.Before(first.end)) {
			first, found = o, true
		}
	}
	return first, found
}

// firstNotLeading returns the end of the earliest poll that began after
// after in which node id said it did not lead.
func (w *roleWatch) firstNotLeading(id string, after time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, o := range w.obs {
		if o.id == id && o.role != "leader" && o.start.After(after) && (first.IsZero() || o.end.Before(first)) {
			first = o.end
		}
	}
	return first, !first.IsZero()
}

func contains(ids []string, id string) bool {
	for _, s := range ids {
		if s == id {
			return true
		}
	}
	return false
}

// ackedWrite is one write the cluster acknowledged (value = key).
type ackedWrite struct {
	key  string
	term uint64
	at   time.Time // when the acknowledgement arrived
}

// coordWriter writes key prefix-i = prefix-i with ack=majority through
// every node, one write every 10ms, and records what was acknowledged.
type coordWriter struct {
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []ackedWrite // guarded by mu
	failed int          // guarded by mu
}

func (x *tc) startWriter(prefix string) *coordWriter {
	w := &coordWriter{}
	w.wg.Go(func() {
		for i := 0; !w.stop.Load(); i++ {
			k := fmt.Sprintf("%s-%d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			res, err := x.cl.Put(ctx, []byte(k), []byte(k), client.WriteOptions{Ack: "majority", Timeout: time.Second})
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, ackedWrite{key: k, term: res.Term, at: time.Now()})
			} else {
				w.failed++
			}
			w.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	x.t.Cleanup(func() { w.halt() })
	return w
}

// halt stops the writer and returns what was acknowledged.
func (w *coordWriter) halt() []ackedWrite {
	w.stop.Store(true)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ackedWrite(nil), w.acked...)
}

func (w *coordWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// firstAbove returns the first write acknowledged after t at a term above term.
func (w *coordWriter) firstAbove(t time.Time, term uint64) (ackedWrite, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.acked {
		if a.at.After(t) && a.term > term {
			return a, true
		}
	}
	return ackedWrite{}, false
}

// waitFirstAbove waits (up to limit) for a write acknowledged after t at a
// term above term.
func (w *coordWriter) waitFirstAbove(x *tc, t time.Time, term uint64, limit time.Duration) ackedWrite {
	x.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if a, ok := w.firstAbove(t, term); ok {
			return a
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			n, failed := len(w.acked), w.failed
			w.mu.Unlock()
			x.t.Fatalf("no write acknowledged at a term above %d within %v (%d acknowledged in all, %d failed)", term, limit, n, failed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustReadAcked reads every acknowledged write back with a linearizable read.
func (x *tc) mustReadAcked(acked []ackedWrite) {
	x.t.Helper()
	for _, a := range acked {
		r, err := x.cl.Get(x.ctx(5*time.Second), []byte(a.key), client.ReadOptions{})
		if err != nil || string(r.Value) != a.key {
			x.t.Fatalf("write %s acknowledged at term %d is lost: read %q, %v", a.key, a.term, r.Value, err)
		}
	}
}

// httpReply is one raw HTTP exchange with one node, with no client retries
// and no redirection to the leader: what that node itself answered.
type httpReply struct {
	status int
	body   string
	took   time.Duration
	err    error // no answer
	start  time.Time
}

func (r httpReply) String() string {
	if r.err != nil {
		return fmt.Sprintf("no answer after %v: %v", r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("HTTP %d after %v: %s", r.status, r.took.Round(time.Millisecond), strings.TrimSpace(r.body))
}

// value is the "value" of a GET's 200 reply.
func (r httpReply) value() string {
	var v struct {
		Value string `json:"value"`
	}
	_ = json.Unmarshal([]byte(r.body), &v)
	return v.Value
}

var rawHTTP = &http.Client{Timeout: 10 * time.Second}

// raw sends one request to node id's HTTP API.
func (x *tc) raw(method, id, path, body string) httpReply {
	req, err := http.NewRequest(method, "http://"+x.node(id).HTTP+path, strings.NewReader(body))
	if err != nil {
		x.t.Fatal(err)
	}
	start := time.Now()
	resp, err := rawHTTP.Do(req)
	r := httpReply{start: start, err: err}
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.status, r.body, r.err = resp.StatusCode, string(b), rerr
	}
	r.took = time.Since(start)
	return r
}

func kvURL(key, query string) string { return "/v1/kv/" + url.PathEscape(key) + "?" + query }

// TestCoordinatorLeaderKill: kill -9 of the leader. Its key in etcd lives
// until its lease expires (at most the TTL after its last keepalive); then
// another node takes the key at a higher term and leads. Writes resume and
// none acknowledged is lost.
func TestCoordinatorLeaderKill(t *testing.T) {
	x := mustStartCoord(t)
	old := x.mustLeader("")
	oldTerm := x.term(old)
	w := x.startWriter("k")
	deadline := time.Now().Add(5 * time.Second)
	for w.count() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged in 5s before the kill", w.count())
		}
		time.Sleep(10 * time.Millisecond)
	}

	killedAt := time.Now()
	if err := x.c.Kill(old); err != nil {
		t.Fatal(err)
	}
	leader := x.mustLeader(old)
	elected := time.Since(killedAt)
	first := w.waitFirstAbove(x.tc, killedAt, oldTerm, 10*time.Second)
	// A few more, so that writes are seen to flow again, not just one.
	after := w.count()
	for more := time.Now().Add(5 * time.Second); w.count() < after+10 && time.Now().Before(more); {
		time.Sleep(10 * time.Millisecond)
	}
	acked := w.halt()
	if len(acked) < after+10 {
		t.Fatalf("writes did not keep flowing after the failover: %d acknowledged, %d at the first write after it", len(acked), after)
	}
	newTerm := x.term(leader)
	beforeKill := 0
	for _, a := range acked {
		if a.at.Before(killedAt) {
			beforeKill++
		}
	}
	t.Logf("kill -9 of %s (term %d): %s led by kill+%v at term %d; first write acknowledged at kill+%v (TTL %v); %d writes acknowledged, %d before the kill",
		old, oldTerm, leader, elected.Round(time.Millisecond), newTerm, first.at.Sub(killedAt).Round(time.Millisecond), coordTTL, len(acked), beforeKill)
	if newTerm <= oldTerm {
		t.Fatalf("new leader's term %d, want above the killed leader's %d", newTerm, oldTerm)
	}
	x.mustReadAcked(acked)
}

// TestCoordinatorLeaderCutFromEtcd: the leader loses etcd but still reaches
// its followers. It cannot renew its key, so it steps down when its grant
// ends, which is before etcd expires the key and another node can take it;
// it never serves a stale linearizable read once the new leader accepted a
// write, and nothing acknowledged is lost.
func TestCoordinatorLeaderCutFromEtcd(t *testing.T) {
	x := mustStartCoord(t)
	old := x.mustLeader("")
	oldTerm := x.term(old)
	x.mustPut("fence", "v1", client.WriteOptions{Ack: "majority"})
	watch := x.watchRoles()
	w := x.startWriter("k")

	// Linearizable reads of "fence" sent to the old leader itself, all along.
	var (
		reads    []httpReply // guarded by readMu
		readMu   sync.Mutex
		stopRead atomic.Bool
		readWG   sync.WaitGroup
	)
	readWG.Go(func() {
		for !stopRead.Load() {
			r := x.raw(http.MethodGet, old, kvURL("fence", ""), "")
			readMu.Lock()
			reads = append(reads, r)
			readMu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() { stopRead.Store(true); readWG.Wait() }()
	time.Sleep(300 * time.Millisecond)

	cutAt := time.Now()
	x.links[old].Set(chaos.LinkState{Cut: true})
	x.mustNotLeading(coordTTL+2*time.Second, old)
	leader := x.mustLeader(old)
	newTerm := x.term(leader)
	if newTerm <= oldTerm {
		t.Fatalf("new leader %s at term %d, want above the cut leader's %d", leader, newTerm, oldTerm)
	}
	// The new leader takes a write that changes "fence".
	var v2 httpReply
	for deadline := time.Now().Add(5 * time.Second); ; {
		v2 = x.raw(http.MethodPut, leader, kvURL("fence", "ack=majority"), "v2")
		if v2.err == nil && v2.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write of fence=v2 to the new leader %s: %v", leader, v2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	v2At := v2.start.Add(v2.took)
	time.Sleep(500 * time.Millisecond) // more reads on the old leader after v2
	stopRead.Store(true)
	readWG.Wait()
	watch.close()

	lastOld := watch.lastLeading(old)
	downAt, _ := watch.firstNotLeading(old, cutAt)
	newObs, ok := watch.firstLeading(old, oldTerm)
	if !ok {
		t.Fatal("the status polls never saw the new leader")
	}
	t.Logf("cut %s (term %d) from etcd at 0: last seen leading at %v, seen stepped down by %v; %s seen leading at term %d by %v; fence=v2 acknowledged at %v (TTL %v)",
		old, oldTerm, lastOld.Sub(cutAt).Round(time.Millisecond), downAt.Sub(cutAt).Round(time.Millisecond),
		newObs.id, newObs.term, newObs.end.Sub(cutAt).Round(time.Millisecond), v2At.Sub(cutAt).Round(time.Millisecond), coordTTL)
	switch {
	case downAt.IsZero():
		t.Fatalf("%s never reported that it stopped leading", old)
	case !lastOld.Before(cutAt.Add(coordTTL)):
		// Its last acknowledged keepalive was sent before the cut, so its
		// grant ended less than a TTL after the cut.
		t.Fatalf("%s still led at cut+%v, past the TTL (%v) after it lost etcd", old, lastOld.Sub(cutAt).Round(time.Millisecond), coordTTL)
	case !lastOld.Before(newObs.end):
		t.Fatalf("%s still led at cut+%v, after %s led at term %d (by cut+%v)", old,
			lastOld.Sub(cutAt).Round(time.Millisecond), newObs.id, newObs.term, newObs.end.Sub(cutAt).Round(time.Millisecond))
	}

	// No read on the old leader that began after v2 was acknowledged
	// returned v1. Reads that fail are allowed (no leader for a moment).
	readMu.Lock()
	var before1, after, afterOK int
	var lastStatus httpReply
	for _, r := range reads {
		if !r.start.After(v2At) {
			if r.err == nil && r.status == http.StatusOK && r.value() == "v1" {
				before1++
			}
			continue
		}
		after++
		lastStatus = r
		if r.err == nil && r.status == http.StatusOK {
			afterOK++
			if got := r.value(); got != "v2" {
				readMu.Unlock()
				t.Fatalf("%s answered a linearizable read begun %v after fence=v2 was acknowledged with %q", old, r.start.Sub(v2At), got)
			}
		} else if r.err == nil && r.status >= 500 && r.status != http.StatusServiceUnavailable && r.status != http.StatusGatewayTimeout {
			readMu.Unlock()
			t.Fatalf("%s answered a linearizable read with %v", old, r)
		}
	}
	readMu.Unlock()
	t.Logf("%d linearizable reads on %s began after fence=v2 was acknowledged; %d answered (all v2); last: %v", after, old, afterOK, lastStatus)
	if before1 == 0 || after == 0 {
		t.Fatalf("%d reads on the old leader answered v1 before the failover, %d began after fence=v2: the check proved nothing", before1, after)
	}
	// The old leader follows the new one: it forwards reads and writes.
	if r := x.raw(http.MethodGet, old, kvURL("fence", ""), ""); r.err != nil || r.status != http.StatusOK || r.value() != "v2" {
		t.Fatalf("linearizable read of fence on %s after the failover: %v; want v2", old, r)
	}
	r := x.raw(http.MethodPut, old, kvURL("via-old", "ack=majority"), "x")
	switch {
	case r.err == nil && r.status == http.StatusOK:
		var res client.WriteResult
		if err := json.Unmarshal([]byte(r.body), &res); err != nil || res.Term <= oldTerm {
			t.Fatalf("write through %s succeeded at term %d (%v), want the new leader's term above %d: %v", old, res.Term, err, oldTerm, r)
		}
		t.Logf("a write sent to %s was forwarded to the new leader (term %d)", old, res.Term)
	case r.err == nil && r.status >= 500 && r.status != http.StatusServiceUnavailable && r.status != http.StatusGatewayTimeout:
		t.Fatalf("write through %s: %v", old, r)
	default:
		t.Logf("a write sent to %s failed: %v", old, r)
	}

	acked := w.halt()
	if len(acked) == 0 {
		t.Fatal("no write acknowledged")
	}
	x.mustReadAcked(acked)
	if st, err := x.c.Status(x.ctx(2*time.Second), old); err != nil || st.Role == "leader" {
		t.Fatalf("%s after the failover: %+v, %v", old, st, err)
	}
}

// TestCoordinatorEtcdAway: etcd stops answering everyone (SIGSTOP).
//
// What happens, and why: the leader cannot renew its key, so its grant
// stops moving and it steps down when the grant ends, at most a TTL after
// its last acknowledged keepalive was sent, which is before etcd could
// expire the key and hand it to another node (the node fences itself off).
// No node can take the key while etcd is away, so the cluster has no leader
// for as long as etcd is gone, whatever the nodes' own health: that is the
// price of letting an external coordinator choose. Writes fail fast with
// 503 "no leader: no leader is known": the old leader waits one election
// timeout for a leader; the followers still name the old leader (no new
// term has begun to tell them otherwise), forward to it, are told it does
// not lead, and give up after a few tries (under a second here), well
// within the write timeout. Linearizable reads fail the same way, since no
// leader can confirm them; stale reads answer from every node. When etcd
// comes back, a node takes the key at a higher term and writes succeed.
func TestCoordinatorEtcdAway(t *testing.T) {
	x := mustStartCoord(t)
	leader := x.mustLeader("")
	term0 := x.term(leader)
	want := map[string]string{}
	for i := range 10 {
		k := fmt.Sprintf("before-%d", i)
		x.mustPut(k, k, client.WriteOptions{Ack: "majority"})
		want[k] = k
	}
	for _, n := range x.c.Spec().Nodes {
		x.waitStale(n.ID, want)
	}
	watch := x.watchRoles()
	time.Sleep(100 * time.Millisecond)

	x.etcd.Pause()
	pausedAt := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			x.etcd.Resume()
		}
	}()
	noneAt := x.mustNotLeading(coordTTL+2*time.Second, x.c.Spec().IDs()...)
	t.Logf("etcd stopped at 0: %s last seen leading at %v; no node leading by %v (TTL %v)", leader,
		watch.lastLeading().Sub(pausedAt).Round(time.Millisecond), noneAt.Sub(pausedAt).Round(time.Millisecond), coordTTL)

	// Writes and linearizable reads fail with 503 "no leader" on every
	// node; stale reads answer.
	for _, n := range x.c.Spec().Nodes {
		st, err := x.c.Status(x.ctx(time.Second), n.ID)
		if err != nil {
			t.Fatalf("status of %s with etcd away: %v", n.ID, err)
		}
		r := x.raw(http.MethodPut, n.ID, kvURL("during", "ack=majority&timeout=1s"), "x")
		t.Logf("%s (%s at term %d, naming leader %q): a write %v", n.ID, st.Role, st.Term, st.Leader, r)
		if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "no leader") {
			t.Fatalf("write to %s with etcd away: %v; want 503 no leader", n.ID, r)
		}
		// The node's own bound: its write timeout (1s here) + 2 election timeouts + 1s.
		if r.took > 3*time.Second {
			t.Fatalf("write to %s took %v to fail, past its write timeout's bound", n.ID, r.took)
		}
		r = x.raw(http.MethodGet, n.ID, kvURL("before-1", ""), "")
		if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "no leader") {
			t.Fatalf("linearizable read on %s with etcd away: %v; want 503 no leader", n.ID, r)
		}
		r = x.raw(http.MethodGet, n.ID, kvURL("before-1", "consistency=stale"), "")
		if r.err != nil || r.status != http.StatusOK || r.value() != "before-1" {
			t.Fatalf("stale read on %s with etcd away: %v; want before-1", n.ID, r)
		}
	}
	// Nobody led after the grant could have ended, however long etcd was away.
	if time.Since(pausedAt) < coordTTL+500*time.Millisecond {
		time.Sleep(coordTTL + 500*time.Millisecond - time.Since(pausedAt))
	}
	last := watch.lastLeading()
	if !last.Before(pausedAt.Add(coordTTL)) {
		t.Fatalf("a node led at pause+%v, past the TTL (%v) after etcd stopped", last.Sub(pausedAt).Round(time.Millisecond), coordTTL)
	}

	x.etcd.Resume()
	resumed = true
	resumedAt := time.Now()
	leader = x.mustLeader("")
	back := time.Since(resumedAt)
	x.mustPut("after", "1", client.WriteOptions{Ack: "majority"})
	term1 := x.term(leader)
	t.Logf("etcd resumed at 0: %s leads by %v at term %d (was %d)", leader, back.Round(time.Millisecond), term1, term0)
	if term1 <= term0 {
		t.Fatalf("term after etcd came back %d, want above %d", term1, term0)
	}
	watch.close()
	for k, v := range want {
		if r, err := x.cl.Get(x.ctx(5*time.Second), []byte(k), client.ReadOptions{}); err != nil || string(r.Value) != v {
			t.Fatalf("get %s after etcd came back: %q, %v", k, r.Value, err)
		}
	}
}

// TestCoordinatorEtcdRestart: etcd is killed, then restarted on its data
// directory. While it is down the cluster has no leader (as in
// TestCoordinatorEtcdAway); once it is back, a node takes the key at a term
// above every earlier one (the term key is on etcd's disk) and writes
// succeed.
func TestCoordinatorEtcdRestart(t *testing.T) {
	x := mustStartCoord(t)
	leader := x.mustLeader("")
	x.mustPut("before", "1", client.WriteOptions{Ack: "majority"})
	term0 := x.term(leader)
	watch := x.watchRoles()

	x.etcd.Kill()
	killedAt := time.Now()
	noneAt := x.mustNotLeading(coordTTL+2*time.Second, x.c.Spec().IDs()...)
	if last := watch.lastLeading(); !last.Before(killedAt.Add(coordTTL)) {
		t.Fatalf("a node led at kill+%v, past the TTL (%v) after etcd died", last.Sub(killedAt).Round(time.Millisecond), coordTTL)
	}
	watch.close()

	x.etcd.Restart()
	restartedAt := time.Now()
	leader = x.mustLeader("")
	back := time.Since(restartedAt)
	res := x.mustPut("after", "2", client.WriteOptions{Ack: "majority"})
	term1 := x.term(leader)
	t.Logf("etcd killed at 0, no leader by %v, restarted (healthy) at %v; %s leads %v later at term %d (was %d); first write at term %d",
		noneAt.Sub(killedAt).Round(time.Millisecond), restartedAt.Sub(killedAt).Round(time.Millisecond), leader,
		back.Round(time.Millisecond), term1, term0, res.Term)
	if term1 <= term0 {
		t.Fatalf("term after etcd restarted %d, want above %d", term1, term0)
	}
	for k, v := range map[string]string{"before": "1", "after": "2"} {
		if r, err := x.cl.Get(x.ctx(5*time.Second), []byte(k), client.ReadOptions{}); err != nil || string(r.Value) != v {
			t.Fatalf("get %s after etcd restarted: %q, %v", k, r.Value, err)
		}
	}
}
