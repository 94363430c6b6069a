package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/store"
)

// compactingCluster is a 3-node cluster whose nodes keep little log: 1 MiB
// segments, 1 MiB retained, checked every 20 ms.
func compactingCluster(t *testing.T) *testCluster {
	t.Helper()
	c := newTestCluster(t, 3, false)
	for i := range c.nodes {
		c.stop(i)
		c.cfgs[i].WAL.SegmentBytes = 1 << 20
		c.cfgs[i].LogRetainBytes = 1 << 20
		c.cfgs[i].LogCompactInterval = 20 * time.Millisecond
	}
	for i := range c.nodes {
		c.start(i)
	}
	return c
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
		if _, errs := n.PutBatch(ctx, ks, vs, api.WriteOptions{Ack: repl.Ack{Mode: repl.AckMajority}}); errs != nil {
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
		mustPut(t, c.nodes[lead], fmt.Sprintf("during-%d", i), "x", repl.Ack{Mode: repl.AckMajority})
	}
	c.waitStale(f, fmt.Sprintf("missed-%05d", keys-1), string(bytes.Repeat([]byte{byte('a' + (keys-1)%26)}, 16<<10)))
	c.waitStale(f, "during-19", "x")
	if got := counterValue(t, c.nodes[f].m.snapReceived); got < 1 {
		t.Fatalf("the follower received %v snapshots, want at least 1 (it caught up by the log? its WAL first index %d)", got, c.nodes[f].wal.FirstIndex())
	}
	if got := counterValue(t, c.nodes[lead].m.snapSent); got <= sentBefore {
		t.Fatalf("the leader's snapshots_sent_total is %v, was %v", got, sentBefore)
	}
	// The log after the snapshot reaches it.
	mustPut(t, c.nodes[lead], "after", "1", repl.Ack{Mode: repl.AckSync})
	c.waitStale(f, "after", "1")
	for _, k := range []string{"before-00000", "missed-00000", fmt.Sprintf("missed-%05d", keys/2)} {
		want, _ := c.nodes[lead].Get(ctxT(t), []byte(k), api.Stale)
		c.waitStale(f, k, string(want.Value))
	}
	// No snapshot directory is left behind.
	if des, err := os.ReadDir(filepath.Join(c.cfgs[f].DataDir, snapshotsDir)); err != nil || len(des) != 0 {
		t.Fatalf("snapshots directory after the install: %v entries, err %v", len(des), err)
	}
	// A restart starts from the installed state.
	c.stop(f)
	c.start(f)
	c.waitStale(f, "after", "1")
}

// TestSnapshotInstallRecovery: a node that stopped between the store's
// install and the WAL's reset (the two steps of an install) starts from the
// installed state: the store is ahead of the WAL, and the WAL is reset to it.
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
	index, _, err := ld.store.Checkpoint(tmp)
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
	c.start(f)
	if first := c.nodes[f].wal.FirstIndex(); first != index+1 {
		t.Fatalf("after start-up the WAL starts at %d, want %d (reset to the installed snapshot)", first, index+1)
	}
	c.waitStale(f, fmt.Sprintf("b-%05d", keys-1), string(bytes.Repeat([]byte{byte('a' + (keys-1)%26)}, 16<<10)))
	mustPut(t, c.nodes[lead], "after", "1", repl.Ack{Mode: repl.AckSync})
	c.waitStale(f, "after", "1")
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
