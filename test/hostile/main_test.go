package hostile

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
)

var binary string // the trireme binary built by TestMain

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("hostile tests skipped with -short")
		os.Exit(0)
	}
	if runtime.GOOS != "linux" {
		fmt.Println("hostile tests need Linux (/proc): skipped")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "trireme-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binary, err = cluster.BuildBinary(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The limits the cluster runs with, and what they imply (docs/API.md, Limits).
const (
	// valueLimit is --max-value-bytes: small, so that the HTTP request
	// deadline is 11 s rather than 26 s and the RESP bulk limit is 128 KiB.
	valueLimit = 64 << 10
	// bulkLimit is the longest RESP bulk string: the value limit + 64 KiB.
	bulkLimit = valueLimit + 64<<10
	// httpReadTimeout is the time a request may take to arrive, headers and
	// body: 10 s plus 1 s per 64 KiB of the value limit.
	httpReadTimeout = 10*time.Second + time.Duration(valueLimit/(64<<10))*time.Second
	// peerHandshakeTimeout is how long the peer port waits for the TLS and
	// the node handshakes (transport.DefaultTCPConfig's DialTimeout).
	peerHandshakeTimeout = time.Second
	// maxCommandBytes is the RESP limit on one command's arguments (their
	// bytes plus 40 per argument): twice the bulk limit plus bookkeeping,
	// at least 4 MiB (resp.Config.MaxCommandBytes' default): 4 MiB here.
	maxCommandBytes = max(2*(bulkLimit+argOverhead), 4<<20)
	// argOverhead is what the RESP limit counts per argument besides its bytes.
	argOverhead = 40
	// pendingBytes is the node's budget for the arguments of commands being
	// received or run, over all RESP connections (resp.Config.MaxPendingBytes'
	// default): 16 commands at the command limit, 64 MiB here.
	pendingBytes = 16 * maxCommandBytes
	// errPendingFull is the reply to a command that would take the node
	// beyond pendingBytes (the connection is then closed).
	errPendingFull = "-ERR server is out of memory for incoming commands, try again"
)

// The memory bounds (see the package documentation for the reasoning).
const (
	// slackBytes is what a node's RSS may grow by itself during a group.
	slackBytes = 32 << 20
	// respConnBytes is what one RESP connection may make a node hold in
	// these attacks besides the budget below: a bulk string at the limit,
	// the stage chunk that holds the first half of it while it arrives, the
	// read buffer and the goroutine's stack.
	respConnBytes = 2 * bulkLimit
	// httpConnBytes is what one HTTP connection with a body below the
	// value limit may make a node hold.
	httpConnBytes = 2 * valueLimit
	// peerConnBytes is what one peer connection before its handshake may
	// make a node hold: TLS record buffers and one handshake frame (4 KiB).
	peerConnBytes = 128 << 10
)

// Liveness bounds.
const (
	electBound = 10 * time.Second
	// idleCPUBound is the CPU a node may use in idleCPUWindow once the
	// huge-count clients have left. A node spinning on a count would use
	// about a core (its GOMAXPROCS is its share, 1 on 2 cores): most of
	// the window even on a busy machine. Idle, a node uses well under 0.1 s.
	idleCPUBound  = 500 * time.Millisecond
	idleCPUWindow = 2 * time.Second
)

// env is the cluster under attack and what it must keep.
type env struct {
	t        *testing.T
	c        *cluster.Cluster
	cl       *client.Client
	known    map[string]string // written before any attack
	baseline map[string]uint64 // RSS (bytes) of each node after the warm-up
}

// mustStartEnv starts a 3-node cluster with peer TLS, writes the known keys
// (one of them at the value limit) with ack=sync, and records each node's
// RSS once they all serve them.
func mustStartEnv(t *testing.T) *env {
	t.Helper()
	spec, err := cluster.FreeSpec(3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.Spec = binary, t.TempDir(), spec
	cfg.NodeProcs = cluster.SharedProcs(3) // three nodes and the attackers share the machine
	cfg.NodeArgs = []string{"--heartbeat", "50ms", "--election-timeout", "300ms", "--log-level", "info",
		"--max-value-bytes", strconv.Itoa(valueLimit)}
	c, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	x := &env{t: t, c: c, known: map[string]string{}, baseline: map[string]uint64{}}
	x.cl, err = client.New(client.Config{Endpoints: spec.HTTPEndpoints(), RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			x.dumpLogs()
		}
		if err := c.StopAll(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	x.mustLeader("")
	for i := range 20 {
		k, v := fmt.Sprintf("known-%02d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("v", i*97))
		if i == 19 {
			v = strings.Repeat("L", valueLimit) // a value at the limit
		}
		if _, err := x.cl.Put(x.ctx(10*time.Second), []byte(k), []byte(v), client.WriteOptions{Ack: "sync"}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		x.known[k] = v
	}
	x.mustKnownKeys("warm-up")
	time.Sleep(500 * time.Millisecond)
	for _, id := range spec.IDs() {
		x.baseline[id] = mustRSS(t, x.pid(id))
	}
	t.Logf("baseline RSS: %s", x.fmtRSS(x.baseline))
	return x
}

func (x *env) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	x.t.Cleanup(cancel)
	return ctx
}

func (x *env) ids() []string { return x.c.Spec().IDs() }

func (x *env) node(id string) cluster.NodeSpec {
	n, err := x.c.Node(id)
	if err != nil {
		x.t.Fatal(err)
	}
	return n
}

func (x *env) pid(id string) int {
	p, err := x.c.Pid(id)
	if err != nil {
		x.t.Fatalf("node %s: %v", id, err)
	}
	return p
}

func (x *env) mustLeader(except string) string {
	x.t.Helper()
	id, err := x.c.WaitLeader(x.ctx(electBound), except)
	if err != nil {
		x.t.Fatal(err)
	}
	return id
}

// follower returns a node other than the leader.
func (x *env) follower() string {
	l := x.mustLeader("")
	for _, id := range x.ids() {
		if id != l {
			return id
		}
	}
	panic("hostile: a cluster of one node")
}

func (x *env) dumpLogs() {
	for _, id := range x.ids() {
		b, _ := os.ReadFile(x.c.LogPath(id))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		x.t.Logf("---- last lines of %s ----\n%s", x.c.LogPath(id), strings.Join(lines, "\n"))
	}
}

// mustKnownKeys checks that every node serves every known key unchanged
// (stale reads, each node on its own, retried for a few seconds).
func (x *env) mustKnownKeys(when string) {
	x.t.Helper()
	for _, id := range x.ids() {
		if !x.c.Running(id) {
			continue
		}
		ep := x.node(id).HTTP
		deadline := time.Now().Add(5 * time.Second)
		for k, v := range x.known {
			for {
				r, err := x.cl.Get(x.ctx(2*time.Second), []byte(k), client.ReadOptions{Consistency: "stale", Endpoint: ep})
				if err == nil && string(r.Value) == v {
					break
				}
				if time.Now().After(deadline) {
					got := string(r.Value)
					if len(got) > 40 {
						got = got[:40] + "..."
					}
					x.t.Fatalf("%s: node %s serves known key %s as %q (%d bytes), %v; want %d bytes", when, id, k, got, len(r.Value), err, len(v))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// group is one group of attacks: it records each node's RSS before, peak
// and after, and its bound.
type group struct {
	x      *env
	name   string
	conns  int    // hostile connections held open at once, at most
	per    uint64 // allowance per connection
	before map[string]uint64
	watch  *memWatch
	// extra is an allowance for the whole group besides the per-connection
	// one (the RESP budget, for the budget group).
	extra uint64
}

// beginGroup starts watching every node's memory for a group of attacks
// holding at most conns connections of per bytes each at once.
func (x *env) beginGroup(name string, conns int, per uint64) *group {
	pids := map[string]int{}
	before := map[string]uint64{}
	for _, id := range x.ids() {
		pids[id] = x.pid(id)
		before[id] = mustRSS(x.t, pids[id])
	}
	return &group{x: x, name: name, conns: conns, per: per, before: before, watch: startMemWatch(pids)}
}

// bound is node id's RSS bound during the group.
func (g *group) bound(id string) uint64 {
	return g.x.baseline[id] + uint64(g.conns)*g.per + g.extra + slackBytes
}

// end checks the cluster after the group: every node alive and answering,
// its peak RSS within its bound, the known keys unchanged on every node, a
// leader and a majority write.
func (g *group) end() {
	x := g.x
	x.t.Helper()
	peak := g.watch.stop()
	after := map[string]uint64{}
	var lines []string
	for _, id := range x.ids() {
		if !x.c.Running(id) {
			x.t.Fatalf("after %s: node %s is not running (see %s)", g.name, id, x.c.LogPath(id))
		}
		if _, err := x.c.Status(x.ctx(2*time.Second), id); err != nil {
			x.t.Fatalf("after %s: node %s does not answer /v1/status: %v", g.name, id, err)
		}
		after[id] = mustRSS(x.t, x.pid(id))
		bound := fmt.Sprintf("bound %s = baseline %s + %d conns x %s", mib(g.bound(id)), mib(x.baseline[id]), g.conns, mib(g.per))
		if g.extra > 0 {
			bound += " + " + mib(g.extra)
		}
		bound += " + slack " + mib(slackBytes)
		lines = append(lines, fmt.Sprintf("%s before %s peak %s after %s (%s)", id, mib(g.before[id]), mib(peak[id]), mib(after[id]), bound))
	}
	x.t.Logf("%s: RSS per node:\n\t%s", g.name, strings.Join(lines, "\n\t"))
	for _, id := range x.ids() {
		if p := max(peak[id], after[id]); p > g.bound(id) {
			x.t.Errorf("after %s: node %s reached %s of RSS, over its bound %s", g.name, id, mib(p), mib(g.bound(id)))
		}
	}
	x.mustKnownKeys("after " + g.name)
	x.mustMajorityWrite("after-" + g.name)
}

// mustMajorityWrite checks that a leader exists and a majority write of key
// succeeds and reads back linearizably.
func (x *env) mustMajorityWrite(key string) {
	x.t.Helper()
	l := x.mustLeader("")
	res, err := x.cl.Put(x.ctx(10*time.Second), []byte(key), []byte("ok"), client.WriteOptions{Ack: "majority"})
	if err != nil {
		x.t.Fatalf("majority write %s (leader %s): %v", key, l, err)
	}
	r, err := x.cl.Get(x.ctx(5*time.Second), []byte(key), client.ReadOptions{})
	if err != nil || string(r.Value) != "ok" {
		x.t.Fatalf("linearizable read of %s: %q %v", key, r.Value, err)
	}
	x.t.Logf("leader %s; majority write %s at index %d reached %d replicas", l, key, res.Index, res.Replicas)
}

func (x *env) fmtRSS(m map[string]uint64) string {
	var parts []string
	for _, id := range x.ids() {
		parts = append(parts, id+" "+mib(m[id]))
	}
	return strings.Join(parts, ", ")
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// memWatch follows the peak RSS of some processes: their VmHWM, reset at
// the start through /proc/PID/clear_refs where allowed, and samples every
// 20 ms (in case the reset is not allowed).
type memWatch struct {
	pids  map[string]int
	reset map[string]bool
	done  chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	peak map[string]uint64
}

func startMemWatch(pids map[string]int) *memWatch {
	w := &memWatch{pids: pids, reset: map[string]bool{}, done: make(chan struct{}), peak: map[string]uint64{}}
	for id, pid := range pids {
		// "5" resets the peak RSS (VmHWM) to the current RSS (proc(5)).
		w.reset[id] = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	}
	w.wg.Go(func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			w.sample()
			select {
			case <-w.done:
				return
			case <-tk.C:
			}
		}
	})
	return w
}

func (w *memWatch) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, pid := range w.pids {
		if rss, _, err := procMem(pid); err == nil {
			w.peak[id] = max(w.peak[id], rss)
		}
	}
}

// stop ends the watch and returns each process's peak RSS.
func (w *memWatch) stop() map[string]uint64 {
	close(w.done)
	w.wg.Wait()
	return w.peaks()
}

// peaks returns each process's peak RSS so far.
func (w *memWatch) peaks() map[string]uint64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]uint64{}
	for id, pid := range w.pids {
		out[id] = w.peak[id]
		if _, hwm, err := procMem(pid); err == nil && w.reset[id] {
			out[id] = max(out[id], hwm)
		}
	}
	return out
}

// procMem reads VmRSS and VmHWM (bytes) from /proc/PID/status.
func procMem(pid int) (rss, hwm uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, sc.Text(), err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, hwm, nil
}

func mustRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	rss, _, err := procMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTicks = 100

// cpuTime is the user plus system CPU time process pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces) in
	// parentheses: state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("hostile: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("hostile: short /proc stat")
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("hostile: /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
