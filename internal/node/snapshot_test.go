package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/store"
	"github.com/trireme-db/trireme/internal/transport"
)

// compactingCluster is a 3-node cluster whose nodes keep little log: 1 MiB
// segments, 1 MiB retained, checked every 20 ms.
func compactingCluster(t *testing.T) *testCluster {
	t.Helper()
	c := newTestCluster(t, 3, false)
	c.keepLittleLog()
	for i := range c.nodes {
		c.start(i)
	}
	return c
}

// keepLittleLog stops every node and sets it to keep little log: 1 MiB
// segments, 1 MiB retained, checked every 20 ms (the caller restarts them).
func (c *testCluster) keepLittleLog() {
	for i := range c.nodes {
		c.stop(i)
		c.cfgs[i].WAL.SegmentBytes = 1 << 20
		c.cfgs[i].LogRetainBytes = 1 << 20
		c.cfgs[i].LogCompactInterval = 20 * time.Millisecond
	}
}

// writeMiB writes about mib MiB of 16 KiB values under prefix through n.
func writeMiB(t *testing.T, n *Node, prefix string, mib int) int {
	t.Helper()
	ctx := ctxT(t)
	keys := mib * 64
	for i := 0; i < keys; i += 32 {
		var ks, vs [][]byte
		for j := i; j < i+32 && j < keys; j++ {
			ks = append(ks, fmt.Appendf(nil, "%s-%05d", prefix, j))
			vs = append(vs, bytes.Repeat([]byte{byte('a' + j%26)}, 16<<10))
		}
		if _, errs := n.PutBatch(ctx, ks, vs, api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}}); errs != nil {
			for _, err := range errs {
				if err != nil {
					t.Fatalf("put batch %s at %d: %v", prefix, i, err)
				}
			}
		}
	}
	return keys
}

// waitCompacted waits until the running nodes' WALs start after index.
func (c *testCluster) waitCompacted(index uint64) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, n := range c.nodes {
			if n != nil && n.wal.FirstIndex() <= index {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, n := range c.nodes {
				if n != nil {
					c.t.Logf("%s: WAL first index %d", n.cfg.ID, n.wal.FirstIndex())
				}
			}
			c.t.Fatalf("the WALs were not compacted past index %d", index)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSnapshotCatchUp: a follower stopped while every other node compacted
// past its log catches up by a snapshot of the leader's store, then by the
// log; a write issued while the snapshot is sent completes; the stopped
// node's data equals the leader's.
func TestSnapshotCatchUp(t *testing.T) {
	c := compactingCluster(t)
	lead := c.leader()
	writeMiB(t, c.nodes[lead], "before", 1)
	f := c.follower(lead)
	stoppedAt := c.nodes[f].Status().CommitIndex
	c.stop(f)
	keys := writeMiB(t, c.nodes[lead], "missed", 6)
	c.waitCompacted(stoppedAt + 1)
	sentBefore := counterValue(t, c.nodes[lead].m.snapSent)
	c.start(f)
	// Writes go on while the follower catches up.
	for i := range 20 {
		mustPut(t, c.nodes[lead], fmt.Sprintf("during-%d", i), "x", api.Ack{Mode: api.AckMajority})
	}
	c.waitStale(f, fmt.Sprintf("missed-%05d", keys-1), string(bytes.Repeat([]byte{byte('a' + (keys-1)%26)}, 16<<10)))
	c.waitStale(f, "during-19", "x")
	if got := counterValue(t, c.nodes[f].m.snapReceived); got < 1 {
		t.Fatalf("the follower received %v snapshots, want at least 1 (it caught up by the log? its WAL first index %d)", got, c.nodes[f].wal.FirstIndex())
	}
	waitCounterAbove(t, c.nodes[lead].m.snapSent, sentBefore, "the leader's snapshots_sent_total")
	// The log after the snapshot reaches it.
	mustPut(t, c.nodes[lead], "after", "1", api.Ack{Mode: api.AckSync})
	c.waitStale(f, "after", "1")
	for _, k := range []string{"before-00000", "missed-00000", fmt.Sprintf("missed-%05d", keys/2)} {
		want, _ := c.nodes[lead].Get(ctxT(t), []byte(k), api.Stale)
		c.waitStale(f, k, string(want.Value))
	}
	// Nothing is left behind in the snapshots directory (the receiver
	// removes its staging directory right after the install).
	waitEmptyDir(t, filepath.Join(c.cfgs[f].DataDir, snapshotsDir), 5*time.Second)
	// A restart starts from the installed state.
	c.stop(f)
	c.start(f)
	c.waitStale(f, "after", "1")
}

// TestSnapshotInstallRecovery: a node that stopped between the store's
// install and the WAL's reset (the two steps of an install) starts from the
// installed state: the store is ahead of the WAL, the install marker names
// the snapshot, and the WAL is reset to it. Without the marker, the same
// store ahead of its WAL is a WAL that lost entries: the node refuses to
// start.
func TestSnapshotInstallRecovery(t *testing.T) {
	c := compactingCluster(t)
	lead := c.leader()
	writeMiB(t, c.nodes[lead], "a", 1)
	f := c.follower(lead)
	stoppedAt := c.nodes[f].Status().CommitIndex
	c.stop(f)
	keys := writeMiB(t, c.nodes[lead], "b", 4)
	c.waitCompacted(stoppedAt + 1)
	// The leader's store, checkpointed and installed by hand in the
	// follower's store; the follower's WAL is left as it was, as a crash
	// right after store.Install would leave it.
	ld := c.nodes[lead]
	cp := filepath.Join(c.cfgs[f].DataDir, snapshotsDir, "manual")
	if err := os.MkdirAll(filepath.Dir(cp), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "cp")
	index, term, err := ld.store.Checkpoint(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cp); err != nil {
		// Another file system: copy it.
		copyDir(t, tmp, cp)
	}
	st := openStoreForTest(t, filepath.Join(c.cfgs[f].DataDir, storeDir))
	if got, _, err := st.Install(cp); err != nil || got != index {
		t.Fatalf("install: index %d, %v (want %d)", got, err, index)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Start(c.cfgs[f]); err == nil {
		n.Stop()
		t.Fatalf("a store at index %d ahead of its WAL, with no install marker, started", index)
	} else if !strings.Contains(err.Error(), "lost entries") {
		t.Fatalf("start without the install marker: %v, want an error saying the WAL lost entries", err)
	} else {
		t.Logf("without the install marker: %v", err)
	}
	if err := writeFileSync(filepath.Join(c.cfgs[f].DataDir, snapshotsDir), installMarkerFile,
		installMarker{Index: index, Term: term}); err != nil {
		t.Fatal(err)
	}
	c.start(f)
	if first := c.nodes[f].wal.FirstIndex(); first != index+1 {
		t.Fatalf("after start-up the WAL starts at %d, want %d (reset to the installed snapshot)", first, index+1)
	}
	c.waitStale(f, fmt.Sprintf("b-%05d", keys-1), string(bytes.Repeat([]byte{byte('a' + (keys-1)%26)}, 16<<10)))
	mustPut(t, c.nodes[lead], "after", "1", api.Ack{Mode: api.AckSync})
	c.waitStale(f, "after", "1")
}

// waitEmptyDir waits until dir is empty.
func waitEmptyDir(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		des, err := os.ReadDir(dir)
		if err == nil && len(des) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, de := range des {
				names = append(names, de.Name())
			}
			t.Fatalf("%s after %v: entries %v, err %v; want it empty", dir, d, names, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(from, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func openStoreForTest(t *testing.T, dir string) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.CacheBytes, cfg.MemTableBytes = 1<<20, 1<<20
	s, err := store.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSnapshotTransferKeepsWritesGoing: while the leader's snapshot stream to
// a follower is held mid-transfer, a majority write on the leader completes;
// the follower, stopped in the middle of that transfer, discards the part it
// received at start-up (logged) and catches up by a new snapshot once the
// stream is released.
func TestSnapshotTransferKeepsWritesGoing(t *testing.T) {
	gate := newStreamGate()
	c := gatedCluster(t, gate)
	lead, f, keys := behindFollower(t, c)
	gate.hold(32 << 10)
	startGated(c, f, gate)
	gate.waitHeld(t, 10*time.Second)
	fid := repl.NodeID(c.cfgs[f].ID)
	start := time.Now()
	mustPut(t, c.nodes[lead], "during", "1", api.Ack{Mode: api.AckMajority})
	took := time.Since(start)
	sent, total, active := c.nodes[lead].snapshotProgress(fid)
	t.Logf("a majority write during the transfer took %v; transfer to %s: %d of %d bytes, active %v", took, fid, sent, total, active)
	if !active {
		t.Fatalf("the transfer to %s was not in progress when the write completed", fid)
	}

	// Stop the follower in the middle of the transfer, restart it.
	c.stop(f)
	logs := captureLog(t, c, f)
	startGated(c, f, gate)
	if want := "discarding a snapshot received (whole or in part) but not installed"; !strings.Contains(logs.String(), want) {
		t.Fatalf("start-up log lacks %q:\n%s", want, logs.String())
	}
	gate.release()
	checkCaughtUp(t, c, lead, f, keys)
	c.waitStale(f, "during", "1")
}

// TestSnapshotInstallCrash: an install stopped (as by a crash) after the
// install marker is written but before the store switches, or after the
// store switched but before the WAL is reset, leaves a node that restarts
// into a consistent state (the previous one, or the snapshot's with the WAL
// reset to it), says which in its log, and catches up.
func TestSnapshotInstallCrash(t *testing.T) {
	for _, tc := range []struct {
		step    string
		wantLog string
		reset   bool // the WAL is reset to the snapshot at start-up
	}{
		{"marked", "cut short before the store switched to it: starting from the previous state", false},
		{"installed", "was installed before the stop, but the WAL was not reset to it", true},
	} {
		t.Run(tc.step, func(t *testing.T) {
			gate := newStreamGate()
			c := gatedCluster(t, gate)
			lead, f, keys := behindFollower(t, c)
			gate.hold(32 << 10)
			startGated(c, f, gate)
			gate.waitHeld(t, 10*time.Second)
			step := tc.step
			c.nodes[f].snaps.failAt.Store(&step)
			gate.release()
			select {
			case err := <-c.nodes[f].Fatal():
				t.Logf("the follower stopped: %v", err)
			case <-time.After(15 * time.Second):
				t.Fatalf("the follower did not stop at step %q within 15s", tc.step)
			}
			b, err := os.ReadFile(filepath.Join(c.cfgs[f].DataDir, snapshotsDir, installMarkerFile))
			if err != nil {
				t.Fatalf("the install marker after a stop at %q: %v", tc.step, err)
			}
			t.Logf("install marker: %s", bytes.TrimSpace(b))
			var m installMarker
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			c.stop(f)
			logs := captureLog(t, c, f)
			startGated(c, f, gate)
			first, applied := c.nodes[f].wal.FirstIndex(), c.nodes[f].store.AppliedIndex()
			t.Logf("after restart: WAL first index %d, store applied %d, snapshot index %d", first, applied, m.Index)
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Fatalf("start-up log lacks %q:\n%s", tc.wantLog, logs.String())
			}
			if tc.reset && (first != m.Index+1 || applied < m.Index) {
				t.Fatalf("WAL first index %d, store applied %d; want %d and at least %d (the snapshot's)", first, applied, m.Index+1, m.Index)
			}
			if !tc.reset && applied >= m.Index {
				t.Fatalf("store applied %d at start-up, want below the snapshot's %d (the install did not happen)", applied, m.Index)
			}
			if _, err := os.Stat(filepath.Join(c.cfgs[f].DataDir, snapshotsDir, installMarkerFile)); !os.IsNotExist(err) {
				t.Fatalf("the install marker is still there after start-up (%v)", err)
			}
			checkCaughtUp(t, c, lead, f, keys)
		})
	}
}

// gatedCluster is a 3-node cluster on the in-memory network whose nodes keep
// little log (as compactingCluster) and open their snapshot streams through
// gate.
func gatedCluster(t *testing.T, gate *streamGate) *testCluster {
	t.Helper()
	c := newTestCluster(t, 3, true)
	c.keepLittleLog()
	for i := range c.nodes {
		startGated(c, i, gate)
	}
	return c
}

// behindFollower writes 1 MiB, stops a follower, writes 4 MiB more and waits
// until the running nodes compacted past the follower's log. It returns the
// leader, the stopped follower and the keys written under "b".
func behindFollower(t *testing.T, c *testCluster) (lead, f, keys int) {
	t.Helper()
	lead = c.leader()
	writeMiB(t, c.nodes[lead], "a", 1)
	f = c.follower(lead)
	stoppedAt := c.nodes[f].Status().CommitIndex
	c.stop(f)
	keys = writeMiB(t, c.nodes[lead], "b", 4)
	c.waitCompacted(stoppedAt + 1)
	return lead, f, keys
}

// checkCaughtUp waits until f serves the leader's last "b" key and a sync
// write made after it (so by the log), and compares a few keys.
func checkCaughtUp(t *testing.T, c *testCluster, lead, f, keys int) {
	t.Helper()
	last := fmt.Sprintf("b-%05d", keys-1)
	c.waitStale(f, last, string(bytes.Repeat([]byte{byte('a' + (keys-1)%26)}, 16<<10)))
	mustPut(t, c.nodes[lead], "after", "1", api.Ack{Mode: api.AckSync})
	c.waitStale(f, "after", "1")
	for _, k := range []string{"a-00000", "b-00000", fmt.Sprintf("b-%05d", keys/2)} {
		want, err := c.nodes[lead].Get(ctxT(t), []byte(k), api.Stale)
		if err != nil || !want.Found {
			t.Fatalf("leader: %s: found %v, %v", k, want.Found, err)
		}
		c.waitStale(f, k, string(want.Value))
	}
	t.Logf("%s caught up: snapshots received %v, WAL first index %d", c.cfgs[f].ID,
		counterValue(t, c.nodes[f].m.snapReceived), c.nodes[f].wal.FirstIndex())
}

// startGated starts node i on the in-memory network, its streams through gate.
func startGated(c *testCluster, i int, gate *streamGate) {
	c.t.Helper()
	cfg := c.cfgs[i]
	ep := c.net.Endpoint(transport.PeerInfo{ID: transport.NodeID(cfg.ID), HTTPAddr: cfg.HTTPAddr, RESPAddr: cfg.RESPAddr}, 4096)
	cfg.Transport = gatedTransport{Transport: ep, gate: gate}
	n, err := Start(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.ID, err)
	}
	c.nodes[i] = n
}

// captureLog makes node i log (from its next start) into the returned buffer.
func captureLog(t *testing.T, c *testCluster, i int) *syncBuffer {
	b := &syncBuffer{}
	c.cfgs[i].Logger = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	return b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// streamGate holds the streams opened through it: while held, a write that
// would take a stream past the limit waits until release (or until the stream
// is closed or its deadline cut).
type streamGate struct {
	mu    sync.Mutex
	limit int64         // < 0: not held
	open  chan struct{} // closed by release
	held  chan struct{} // closed when a write first waits
}

func newStreamGate() *streamGate { return &streamGate{limit: -1} }

func (g *streamGate) hold(limit int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit, g.open, g.held = limit, make(chan struct{}), make(chan struct{})
}

func (g *streamGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.limit >= 0 {
		g.limit = -1
		close(g.open)
	}
}

// check returns the channel a write taking a stream to `after` bytes waits
// on (nil: it may go), and signals the first wait.
func (g *streamGate) check(after int64) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.limit < 0 || after <= g.limit {
		return nil
	}
	select {
	case <-g.held:
	default:
		close(g.held)
	}
	return g.open
}

func (g *streamGate) waitHeld(t *testing.T, d time.Duration) {
	t.Helper()
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	select {
	case <-held:
	case <-time.After(d):
		t.Fatalf("no snapshot stream reached the gate within %v", d)
	}
}

// gatedTransport opens its streams through a streamGate.
type gatedTransport struct {
	transport.Transport
	gate *streamGate
}

func (g gatedTransport) OpenStream(ctx context.Context, to transport.NodeID) (net.Conn, error) {
	c, err := g.Transport.OpenStream(ctx, to)
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: c, gate: g.gate, cut: make(chan struct{})}, nil
}

type gatedConn struct {
	net.Conn
	gate    *streamGate
	written int64 // by the one writer
	cutOnce sync.Once
	cut     chan struct{} // closed by Close or a deadline in the past
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if wait := c.gate.check(c.written + int64(len(b))); wait != nil {
		select {
		case <-wait:
		case <-c.cut:
			return 0, os.ErrDeadlineExceeded
		}
	}
	n, err := c.Conn.Write(b)
	c.written += int64(n)
	return n, err
}

func (c *gatedConn) Close() error {
	c.cutOnce.Do(func() { close(c.cut) })
	return c.Conn.Close()
}

func (c *gatedConn) SetDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		c.cutOnce.Do(func() { close(c.cut) })
	}
	return c.Conn.SetDeadline(t)
}

// TestSnapshotJournalsOnlyWhatItCannotConfirm: of the log entries a snapshot
// replaces, a put the snapshot's state shows applied (same key, value and
// index) was committed and is not journaled; the rest is, as uncertain.
func TestSnapshotJournalsOnlyWhatItCannotConfirm(t *testing.T) {
	dir := t.TempDir()
	st := openStoreForTest(t, filepath.Join(dir, "store"))
	put := func(i uint64, k, v string) entry.Entry {
		return entry.Entry{Term: 1, Index: i, Kind: entry.KindPut, Key: []byte(k), Value: []byte(v)}
	}
	if err := st.Apply([]entry.Entry{put(1, "a", "a1"), put(2, "b", "b2"), put(3, "a", "a3")}); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "cp")
	index, _, err := st.Checkpoint(cp)
	if err != nil || index != 3 {
		t.Fatalf("checkpoint at %d: %v", index, err)
	}
	st.Close()
	replaced := []entry.Entry{
		put(1, "a", "a1"),    // overwritten at 3: cannot tell
		put(2, "b", "b2"),    // in the snapshot: committed
		put(2, "b", "other"), // another write at 2: not in the snapshot
		put(3, "a", "a3"),    // in the snapshot
		{Term: 1, Index: 3, Kind: entry.KindDelete, Key: []byte("a")}, // a delete: cannot tell
		put(4, "c", "c4"), // beyond the snapshot
	}
	got, err := unconfirmed(replaced, index, cp)
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, e := range got {
		desc = append(desc, fmt.Sprintf("%d:%s:%s=%s", e.Index, e.Kind, e.Key, e.Value))
	}
	want := []string{"1:put:a=a1", "2:put:b=other", "3:delete:a=", "4:put:c=c4"}
	if fmt.Sprint(desc) != fmt.Sprint(want) {
		t.Fatalf("journaled %v, want %v", desc, want)
	}
}

// TestSnapshotInstallFailureReachesLeader: a follower whose install of a
// received snapshot fails tells the leader, which does not count the
// snapshot as delivered (its match index for the follower stays behind the
// log it compacted) and sends it again after a backoff; once an install
// succeeds the leader counts it and the follower catches up.
func TestSnapshotInstallFailureReachesLeader(t *testing.T) {
	gate := newStreamGate()
	c := gatedCluster(t, gate)
	lead, f, keys := behindFollower(t, c)
	gate.hold(32 << 10)
	startGated(c, f, gate)
	gate.waitHeld(t, 10*time.Second)
	c.nodes[f].snaps.refuseInstalls.Store(2)
	ld, fid := c.nodes[lead], c.cfgs[f].ID
	sentBefore := counterValue(t, ld.m.snapSent)
	failedBefore := counterValue(t, ld.m.snapFailures)
	gate.release()

	deadline := time.Now().Add(30 * time.Second)
	for counterValue(t, ld.m.snapFailures) < failedBefore+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the leader counted %v failed snapshot attempts and %v delivered ones (before: %v and %v); "+
				"the follower has %d installs left to refuse: its refusals did not reach the leader as failures",
				counterValue(t, ld.m.snapFailures), counterValue(t, ld.m.snapSent), failedBefore, sentBefore,
				c.nodes[f].snaps.refuseInstalls.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The next attempt comes after a backoff: nothing was delivered yet.
	if got := counterValue(t, ld.m.snapSent); got != sentBefore {
		t.Fatalf("the leader counted %v snapshots delivered (was %v) though the follower refused every install", got, sentBefore)
	}
	s, _ := ld.status()
	for _, fi := range s.followers {
		if fi.ID == fid && fi.MatchIndex+1 >= ld.wal.FirstIndex() {
			t.Fatalf("the leader's match index for %s is %d with its WAL starting at %d: it counts the refused snapshot as delivered",
				fid, fi.MatchIndex, ld.wal.FirstIndex())
		}
	}
	// The follower counts a refused install after it answers the leader,
	// so its count may trail the leader's by a moment (CI saw 1 of 2).
	waitCounterAbove(t, c.nodes[f].m.snapRecvFailures, 1, "the follower's failed receives or installs")

	checkCaughtUp(t, c, lead, f, keys)
	waitCounterAbove(t, ld.m.snapSent, sentBefore, "the leader's snapshots_sent_total")
}

// waitCounterAbove waits until c is above v (for a leader that counts a
// snapshot once the follower reports its install, which may come just after
// the follower serves the snapshot's state).
func waitCounterAbove(t *testing.T, c prometheus.Counter, v float64, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); counterValue(t, c) <= v; {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want above %v", what, counterValue(t, c), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
