package node

import (
	"math/rand"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/repl"
)

// TestTickCatchUp: the core's clock follows the wall clock even when the loop
// was too busy to see every tick, up to two election timeouts of catch-up.
func TestTickCatchUp(t *testing.T) {
	rc := repl.DefaultConfig()
	rc.ID = "n1"
	rc.Peers = []repl.Peer{{ID: "n1", Priority: 1}, {ID: "n2", Priority: 1}, {ID: "n3", Priority: 1}}
	rc.Rand = rand.New(rand.NewSource(1))
	core, err := repl.New(rc, repl.NewMemoryStorage())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1000, 0)
	n := &Node{core: core, tick: 10 * time.Millisecond, tickBase: base, electionTicks: 30}
	tests := []struct {
		at   time.Duration
		want int64
	}{
		{5 * time.Millisecond, 0},
		{10 * time.Millisecond, 1},
		{95 * time.Millisecond, 9}, // a stalled loop: 8 missed ticks are given at once
		{90 * time.Millisecond, 9}, // time never runs backwards for the core
		{10 * time.Second, 1000},   // long stall: capped catch-up, count resynced
		{10*time.Second + 10*time.Millisecond, 1001},
	}
	for _, tc := range tests {
		n.tickUpTo(base.Add(tc.at))
		if n.ticksDone != tc.want {
			t.Fatalf("at %v: %d ticks, want %d", tc.at, n.ticksDone, tc.want)
		}
	}
	// The core saw the ticks: a follower that ticked past its election
	// timeout has campaigned (pre-vote or vote).
	if st := core.Status(); st.Role == repl.RoleFollower {
		t.Fatalf("core still a follower after %d ticks: %+v", n.ticksDone, st)
	}
}

// TestReadCatchesUpTicksFirst: a linearizable read brings the core's clock up
// to date before the core judges its lease. After a stall (SIGSTOP, a VM
// pause) a read could otherwise reach the loop before the ticker's catch-up
// and be served under a lease that expired in real time, by a leader that
// was already replaced (found by test/chaos TestPausedLeaderServesNoStaleRead).
func TestReadCatchesUpTicksFirst(t *testing.T) {
	rc := repl.DefaultConfig()
	rc.ID = "n1"
	rc.Peers = []repl.Peer{{ID: "n1", Priority: 1}, {ID: "n2", Priority: 1}, {ID: "n3", Priority: 1}}
	rc.Rand = rand.New(rand.NewSource(1))
	core, err := repl.New(rc, repl.NewMemoryStorage())
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{core: core, tick: 10 * time.Millisecond, tickBase: time.Now().Add(-time.Second),
		electionTicks: 30, pendingReads: map[uint64]*readReq{}}
	n.read(&readReq{done: make(chan repl.ReadResult, 1)})
	if n.ticksDone < 60 {
		t.Fatalf("after a 1s stall the read ran with %d ticks done, want the catch-up (>= 60) first", n.ticksDone)
	}
}
