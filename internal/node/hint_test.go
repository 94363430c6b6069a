package node

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
)

// A running node records the commit index as the WAL's commit hint, not by
// rewriting the hard state (which costs two fsyncs and a rename on the run
// loop): after writes, the hint reaches the last write's index while the
// hard state keeps the commit of its last term change.
func TestCommitIndexGoesToTheHint(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	var last uint64
	for i := range 20 {
		last = mustPut(t, c.nodes[li], fmt.Sprintf("k%d", i), "v", api.Ack{Mode: api.AckSync}).Index
	}
	walPath := filepath.Join(c.cfgs[li].DataDir, walDir)
	readHint := func() uint64 {
		b, err := os.ReadFile(filepath.Join(walPath, "commit-hint"))
		if err != nil || len(b) != 16 || string(b[:4]) != "TRCH" {
			return 0
		}
		return binary.LittleEndian.Uint64(b[4:])
	}
	// The hint is written at most every 250 ms, on a tick; a heartbeat
	// wakes the loop meanwhile.
	deadline := time.Now().Add(5 * time.Second)
	for readHint() < last {
		if time.Now().After(deadline) {
			t.Fatalf("commit hint %d, want >= %d (the last write's index)", readHint(), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hs, err := os.ReadFile(filepath.Join(walPath, "hardstate"))
	if err != nil {
		t.Fatal(err)
	}
	if commit := binary.LittleEndian.Uint64(hs[13:]); commit >= last {
		t.Fatalf("hard state file has commit %d >= %d: a commit-only change rewrote it", commit, last)
	}
}
