// Package diskfault injects disk faults into real `trireme node` processes
// (built once in TestMain) through internal/chaos: a small tmpfs under a
// node's data directory that fills, the data directory removed (rm -rf), and
// an ext4 file system (on a loop device) that the kernel remounts read-only,
// each on the leader and on a follower, under a majority write load (issue
// 15). The sick node must stop by itself within a bounded time with a
// message that names the file or directory and the cause, and exit non-zero;
// the others must elect (if needed) and go on serving majority writes;
// every acknowledged write must be on the survivors; and, where the disk can
// be repaired (space freed, e2fsck), a restart must bring the node back and
// catch it up. TestDiskReserve checks that a leader below --disk-reserve
// refuses writes (HTTP 507, RESP -ERR insufficient storage), says so in its
// status and metrics, accepts them again once space is freed, and stops
// within the shutdown bound on SIGTERM.
//
// The tests need Linux and root (mount); without them they skip and say
// why. Skipped with -short.
//
//	go test ./test/diskfault/ -v -count=1
package diskfault

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/chaos"
	"github.com/trireme-db/trireme/internal/cluster"
)

var (
	binary     string
	skipReason string // set when disk faults cannot be injected here
	ext4Reason string // set when ext4 loop mounts cannot be used
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("disk fault tests skipped with -short")
		os.Exit(0)
	}
	if err := chaos.CheckDiskFaults(); err != nil {
		skipReason = err.Error()
	} else if err := chaos.CheckExt4(); err != nil {
		ext4Reason = err.Error()
	}
	dir, err := os.MkdirTemp("", "trireme-diskfault-bin-")
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

func needDisks(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// Test budget: a fault must stop the sick node within stopBound, and the
// survivors must elect within electBound.
const (
	stopBound  = 20 * time.Second
	electBound = 10 * time.Second
	tmpfsSize  = 256 << 20 // a new WAL (64 MiB segment + 64 MiB spare) and the store fit with room to spare
	valueBytes = 16 << 10  // random, so that Pebble's sstables are as large as the data
)

// env is one test's cluster of three node processes.
type env struct {
	t     *testing.T
	c     *chaos.Cluster
	dir   string
	hc    *http.Client
	disks map[string]*chaos.Disk

	mu       sync.Mutex
	acked    map[string]string // acknowledged key -> the tag its value is made of (value)
	maxIndex uint64            // highest index of an acknowledged write
	leader   string            // where the writers send
	seq      atomic.Int64
}

// newEnv lays out a 3-node cluster (not started) with reserve as
// --disk-reserve.
func newEnv(t *testing.T, reserve string) *env {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--heartbeat", "50ms", "--election-timeout", "300ms", "--write-timeout", "2s",
		"--disk-reserve", reserve}
	c, err := chaos.NewCluster(chaos.ClusterConfig{Binary: binary, Dir: dir, Nodes: 3, ClusterID: "diskfault",
		NodeArgs: args, Seed: uint64(time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: c, dir: dir, disks: map[string]*chaos.Disk{}, acked: map[string]string{},
		hc: &http.Client{Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLogs()
		}
		if err := c.Close(); err != nil {
			t.Logf("closing the cluster: %v", err)
		}
		for _, d := range e.disks {
			if err := d.Unmount(); err != nil {
				t.Errorf("unmount %s: %v", d, err)
			}
		}
	})
	return e
}

func (e *env) dataDir(id string) string { return filepath.Join(e.dir, "data", id) }

// mount puts a file system of kind under node id's data directory.
func (e *env) mount(id string, kind chaos.DiskKind) *chaos.Disk {
	e.t.Helper()
	var d *chaos.Disk
	var err error
	switch kind {
	case chaos.Tmpfs:
		d, err = chaos.MountTmpfs(e.dataDir(id), tmpfsSize)
	case chaos.Ext4:
		d, err = chaos.MountExt4(e.dataDir(id), filepath.Join(e.dir, id+".ext4"), tmpfsSize)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.disks[id] = d
	return d
}

func (e *env) dumpLogs() {
	for _, id := range e.c.IDs {
		e.t.Logf("---- last lines of %s ----\n%s", e.c.Procs.LogPath(id), strings.Join(e.lastLines(id, 30), "\n"))
	}
}

func (e *env) lastLines(id string, n int) []string {
	b, _ := os.ReadFile(e.c.Procs.LogPath(id))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func (e *env) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	e.t.Cleanup(cancel)
	return ctx
}

// start starts the cluster and makes node lead (if lead is set) or not lead
// (if notLead is set).
func (e *env) start(lead, notLead string) {
	e.t.Helper()
	if err := e.c.Start(); err != nil {
		e.t.Fatal(err)
	}
	cur, err := e.c.Healthy(e.ctx(20 * time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	want := lead
	if notLead != "" && cur == notLead {
		for _, id := range e.c.IDs {
			if id != notLead {
				want = id
				break
			}
		}
	}
	if want != "" && want != cur {
		e.transfer(cur, want)
		cur = want
	}
	e.setLeader(cur)
}

func (e *env) transfer(from, to string) {
	e.t.Helper()
	u := "http://" + e.c.Addrs[from].HTTP + "/v1/leader/transfer?to=" + to
	for attempt := 0; ; attempt++ {
		resp, err := e.hc.Post(u, "", nil)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if attempt == 5 {
			e.t.Fatalf("transfer leadership from %s to %s: %v", from, to, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := e.c.Healthy(e.ctx(10 * time.Second)); err != nil {
		e.t.Fatal(err)
	}
	if lead, _ := e.c.Leader(e.ctx(5 * time.Second)); lead != to {
		e.t.Fatalf("leader is %s after a transfer to %s", lead, to)
	}
}

func (e *env) setLeader(id string) {
	e.mu.Lock()
	e.leader = id
	e.mu.Unlock()
}

func (e *env) getLeader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// value is the value written under key: valueBytes derived from a random tag.
func value(tag string) string {
	return strings.Repeat(tag, valueBytes/len(tag)+1)[:valueBytes]
}

func randomTag() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type writeReply struct {
	Index uint64 `json:"index"`
	Error string `json:"error"`
}

// put writes key with ack=majority through node id; it reports the HTTP
// status (0 for a transport error), the reply and its error text.
func (e *env) put(ctx context.Context, id, key, val string) (int, writeReply, error) {
	u := "http://" + e.c.Addrs[id].HTTP + "/v1/kv/" + url.PathEscape(key) + "?ack=majority&timeout=2s"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, strings.NewReader(val))
	if err != nil {
		return 0, writeReply{}, err
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, writeReply{}, err
	}
	defer resp.Body.Close()
	var r writeReply
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &r)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, r, fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode, r, nil
}

// load runs workers writing unique keys with ack=majority to the leader
// until stop is closed; every acknowledged write is recorded. After a
// failure a worker asks the running nodes who leads.
type load struct {
	e       *env
	stop    chan struct{}
	wg      sync.WaitGroup
	ok      atomic.Int64
	failed  atomic.Int64
	lastErr atomic.Value
}

func (e *env) startLoad(workers int) *load {
	l := &load{e: e, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				lead := e.getLeader()
				key := fmt.Sprintf("w%d-%d", w, e.seq.Add(1))
				tag := randomTag()
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				_, r, err := e.put(ctx, lead, key, value(tag))
				cancel()
				if err == nil {
					l.ok.Add(1)
					e.mu.Lock()
					e.acked[key] = tag
					e.maxIndex = max(e.maxIndex, r.Index)
					e.mu.Unlock()
					continue
				}
				l.failed.Add(1)
				l.lastErr.Store(err.Error())
				ctx, cancel = context.WithTimeout(context.Background(), time.Second)
				if id, _ := e.c.Leader(ctx); id != "" {
					e.setLeader(id)
				}
				cancel()
				select {
				case <-l.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// waitOK waits until n more writes have been acknowledged, or fails.
func (l *load) waitOK(n int64, d time.Duration) {
	l.e.t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(d)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			l.e.t.Fatalf("only %d of %d more writes acknowledged within %v (last error: %v)", l.ok.Load()-want+n, n, d, l.lastErr.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for node id's process to exit on its own and returns its
// exit error and when it was seen.
func (e *env) waitExit(id string, d time.Duration) (error, time.Time) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if err, ok := e.c.Procs.Exited()[id]; ok {
			return err, time.Now()
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s still runs %v after the fault", id, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkStopMessage checks that node id exited with status 1 and that its
// log ends with the fatal error, naming want (a path) and cause.
func (e *env) checkStopMessage(id string, exitErr error, want, cause string) {
	e.t.Helper()
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.ExitCode() != 1 {
		e.t.Fatalf("%s exited with %v, want exit status 1", id, exitErr)
	}
	lines := e.lastLines(id, 15)
	var fatal, last string
	for _, l := range lines {
		if strings.Contains(l, "fatal node error") {
			fatal = l
		}
		if strings.Contains(l, "msg=stopped") {
			last = l
		}
	}
	if fatal == "" || !strings.Contains(fatal, want) || !strings.Contains(fatal, cause) {
		e.t.Fatalf("%s's log has no fatal error naming %s and %q:\n%s", id, want, cause, strings.Join(lines, "\n"))
	}
	if last == "" || !strings.Contains(last, "exit_code=1") || !strings.Contains(last, cause) {
		e.t.Fatalf("%s's log does not end with a stopped line that gives the cause %q:\n%s", id, cause, strings.Join(lines, "\n"))
	}
	e.t.Logf("%s stopped: %s", id, fatal)
	// From the fatal error to the end of the process, by the log's clocks.
	var exitLine string
	for _, l := range lines {
		if strings.HasPrefix(l, "==== chaos: "+id+" exited at ") {
			exitLine = l
		}
	}
	t0, err0 := time.Parse(time.RFC3339Nano, strings.TrimPrefix(strings.Fields(fatal)[0], "time="))
	f := strings.Fields(exitLine)
	if err0 == nil && len(f) >= 6 { // ==== chaos: ID exited at TIME: STATUS
		if t1, err := time.Parse(time.RFC3339Nano, strings.TrimSuffix(f[5], ":")); err == nil {
			e.t.Logf("%s: %v from the fatal error to the process's exit", id, t1.Sub(t0).Round(time.Millisecond))
		}
	}
}

type status struct {
	ID               string `json:"id"`
	Role             string `json:"role"`
	Term             uint64 `json:"term"`
	Leader           string `json:"leader"`
	CommitIndex      uint64 `json:"commit_index"`
	AppliedIndex     uint64 `json:"applied_index"`
	DiskFreeBytes    uint64 `json:"disk_free_bytes"`
	DiskReserveBytes uint64 `json:"disk_reserve_bytes"`
	DiskLow          bool   `json:"disk_low"`
}

func (e *env) status(id string) (status, error) {
	var st status
	resp, err := e.hc.Get("http://" + e.c.Addrs[id].HTTP + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// waitNewLeader waits until a node other than old leads and returns it.
func (e *env) waitNewLeader(old string) string {
	e.t.Helper()
	deadline := time.Now().Add(electBound)
	for time.Now().Before(deadline) {
		if id, _ := e.c.Leader(e.ctx(time.Second)); id != "" && id != old {
			return id
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("no node other than %s leads within %v", old, electBound)
	return ""
}

// checkAcked checks every acknowledged write on node id (stale reads, after
// the node applied everything acknowledged).
func (e *env) checkAcked(id string) {
	e.t.Helper()
	e.mu.Lock()
	acked := make(map[string]string, len(e.acked))
	for k, v := range e.acked {
		acked[k] = v
	}
	target := e.maxIndex
	e.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := e.status(id)
		if err == nil && st.AppliedIndex >= target {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not apply index %d within 30s: %+v %v", id, target, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for k, tag := range acked {
		u := "http://" + e.c.Addrs[id].HTTP + "/v1/kv/" + url.PathEscape(k) + "?consistency=stale&raw=1"
		resp, err := e.hc.Get(u)
		if err != nil {
			e.t.Fatalf("read %s on %s: %v", k, id, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != value(tag) {
			e.t.Fatalf("acknowledged write %s is lost on %s: %d %.80q", k, id, resp.StatusCode, b)
		}
	}
	e.t.Logf("%s holds all %d acknowledged writes (through index %d)", id, len(acked), target)
}

// waitRejoined waits until node id runs and knows a leader.
func (e *env) waitRejoined(id string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := e.status(id)
		if err == nil && st.Leader != "" && st.Role != "stopped" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not rejoin within 20s: %+v %v", id, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// victim returns the node the fault hits: the leader or a follower.
func victim(role string) (id string, lead, notLead string) {
	if role == "leader" {
		return "n1", "n1", ""
	}
	return "n1", "", "n1"
}

// A disk fault: how to cause it on node id, what the node's last words must
// say, and how to repair the disk for a restart ("" = no restart).
type fault struct {
	name   string
	disk   chaos.DiskKind // "" = the test machine's disk
	inject func(e *env, id string) error
	cause  string
	path   func(e *env, id string) string // what the message must name
	repair func(e *env, id string) error  // nil: the node's data is gone, no restart
}

var faults = []fault{
	{
		name: "disk full", disk: chaos.Tmpfs,
		inject: func(e *env, id string) error { return e.disks[id].Fill(1 << 20) },
		cause:  "no space left on device",
		path:   func(e *env, id string) string { return e.dataDir(id) },
		repair: func(e *env, id string) error { return e.disks[id].Unfill() },
	},
	{
		name: "directory removed",
		inject: func(e *env, id string) error {
			return chaos.RemoveDir(e.dataDir(id))
		},
		cause: "vanished",
		path:  func(e *env, id string) string { return e.dataDir(id) },
	},
	{
		name: "read-only remount", disk: chaos.Ext4,
		inject: func(e *env, id string) error { return e.disks[id].RemountReadOnly() },
		cause:  "read-only",
		path:   func(e *env, id string) string { return e.dataDir(id) },
		repair: func(e *env, id string) error { return e.disks[id].Repair() },
	},
}

// TestDiskFaults: each fault on the leader, then on a follower, under a
// majority write load.
func TestDiskFaults(t *testing.T) {
	needDisks(t)
	for _, f := range faults {
		for _, role := range []string{"leader", "follower"} {
			t.Run(f.name+"/"+role, func(t *testing.T) {
				if f.disk == chaos.Ext4 && ext4Reason != "" {
					t.Skip(ext4Reason)
				}
				runFault(t, f, role)
			})
		}
	}
}

func runFault(t *testing.T, f fault, role string) {
	// No reserve on a leader that fills: the test is about what happens
	// when the disk truly fails (the reserve has its own test). A follower
	// keeps its reserve: below it, it warns and goes on taking entries
	// until it cannot write.
	reserve := "0"
	if role == "follower" {
		reserve = "64MiB"
	}
	e := newEnv(t, reserve)
	id, lead, notLead := victim(role)
	if f.disk != "" {
		e.mount(id, f.disk)
	}
	e.start(lead, notLead)
	l := e.startLoad(4)
	defer func() {
		select {
		case <-l.stop:
		default:
			l.end()
		}
	}()
	l.waitOK(50, 20*time.Second)

	faultAt := time.Now()
	if err := f.inject(e, id); err != nil {
		t.Fatal(err)
	}
	exitErr, exitAt := e.waitExit(id, stopBound)
	t.Logf("%s (%s) exited %v after the fault (%s)", id, role, exitAt.Sub(faultAt).Round(time.Millisecond), f.name)
	e.checkStopMessage(id, exitErr, f.path(e, id), f.cause)

	if role == "leader" {
		nl := e.waitNewLeader(id)
		e.setLeader(nl)
		t.Logf("%s leads %v after %s exited", nl, time.Since(exitAt).Round(time.Millisecond), id)
	}
	l.waitOK(50, 20*time.Second) // the survivors serve majority writes
	l.end()
	t.Logf("writes: %d acknowledged, %d failed or unknown (last error: %v)", l.ok.Load(), l.failed.Load(), l.lastErr.Load())
	for _, s := range e.c.IDs {
		if s != id {
			e.checkAcked(s)
		}
	}
	if f.repair == nil {
		return
	}
	if err := f.repair(e, id); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Procs.Start(id); err != nil {
		t.Fatal(err)
	}
	e.waitRejoined(id)
	e.checkAcked(id)
}

// TestDiskReserve: a leader whose free space falls below --disk-reserve
// refuses writes, with HTTP 507 and RESP "-ERR insufficient storage", also
// when they reach it through a follower; it stays up, serves reads, and
// says so in its status and metrics; once space is freed it accepts writes
// again. SIGTERM then stops it within the shutdown bound (5 s) with exit
// status 0, while writers keep at it.
func TestDiskReserve(t *testing.T) {
	needDisks(t)
	e := newEnv(t, "96MiB")
	d := e.mount("n1", chaos.Tmpfs)
	e.start("n1", "")
	ctx := e.ctx(60 * time.Second)
	if _, _, err := e.put(ctx, "n1", "before", "x"); err != nil {
		t.Fatal(err)
	}
	if err := d.Fill(32 << 20); err != nil {
		t.Fatal(err)
	}
	// The node measures free space every second.
	var st status
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if st, err = e.status("n1"); err == nil && st.DiskLow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1's status does not show disk_low 5s after its disk filled past the reserve: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.DiskReserveBytes != 96<<20 || st.DiskFreeBytes >= 96<<20 {
		t.Fatalf("status below the reserve: %+v", st)
	}
	for _, via := range []string{"n1", "n2"} {
		code, _, err := e.put(ctx, via, "refused", "y")
		if code != http.StatusInsufficientStorage || !strings.Contains(err.Error(), "insufficient storage") ||
			!strings.Contains(err.Error(), e.dataDir("n1")) {
			t.Fatalf("PUT through %s to a leader below its reserve: %d %v", via, code, err)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: e.c.Addrs["n1"].RESP, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.Set(ctx, "refused", "z", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR insufficient storage") {
		t.Fatalf("RESP SET on a leader below its reserve: %v", err)
	}
	if v, err := rdb.Get(ctx, "before").Result(); err != nil || v != "x" {
		t.Fatalf("RESP GET on a leader below its reserve: %q %v", v, err)
	}
	if v, err := rdb.Get(ctx, "refused").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a refused write is visible: %q %v", v, err)
	}
	metrics := e.metrics("n1")
	for _, want := range []string{`trireme_disk_low{node="n1"} 1`, `trireme_writes_refused_disk_total{node="n1"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("n1's metrics lack %s", want)
		}
	}
	if !e.logHas("n1", "below the reserve") {
		t.Fatal("n1 logged no warning when its free space fell below the reserve")
	}

	if err := d.Unfill(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, _, err := e.put(ctx, "n2", "after", "w")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused 5s after space was freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Below the reserve again, under a write load: SIGTERM stops the node
	// within the bound and it exits cleanly.
	if err := d.Fill(32 << 20); err != nil {
		t.Fatal(err)
	}
	l := e.startLoad(4)
	defer l.end()
	time.Sleep(2 * time.Second)
	start := time.Now()
	if err := e.c.Procs.Stop("n1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("SIGTERM stopped n1 (below its reserve, under load) in %v", took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Fatalf("SIGTERM took %v, want at most the 5s shutdown bound", took)
	}
	if err := e.c.Procs.Exited()["n1"]; err != nil {
		t.Fatalf("n1 exited with %v after SIGTERM, want status 0", err)
	}
}

func (e *env) metrics(id string) string {
	resp, err := e.hc.Get("http://" + e.c.Addrs[id].HTTP + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (e *env) logHas(id, s string) bool {
	f, err := os.Open(e.c.Procs.LogPath(id))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}
