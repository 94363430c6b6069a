package llstore

import (
	"fmt"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/vclock"
)

// coreNode is a one-node leaderless core over a Store, restored from it
// the way the runtime does: State from Hints and MintFloor, then Restore
// for every stored key.
type coreNode struct {
	t     *testing.T
	dir   string
	store *Store
	core  *leaderless.Core
}

func (n *coreNode) restart() {
	n.t.Helper()
	if n.store != nil {
		mustClose(n.t, n.store)
	}
	n.store = mustOpen(n.t, n.dir)
	hints, err := n.store.Hints()
	if err != nil {
		n.t.Fatal(err)
	}
	floor, err := n.store.MintFloor()
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := leaderless.Config{ID: "a", Nodes: []string{"a"}, N: 1}
	if n.core, err = leaderless.New(cfg, n.store, leaderless.State{Hints: hints, MintFloor: floor}); err != nil {
		n.t.Fatal(err)
	}
	if err := n.store.Each(func(it leaderless.Item) error {
		n.core.Restore(it.Key, it.Set)
		return nil
	}); err != nil {
		n.t.Fatal(err)
	}
}

// flush persists the core's Ready and returns its results.
func (n *coreNode) flush() []leaderless.Result {
	n.t.Helper()
	rd, err := n.core.Ready()
	if err != nil {
		n.t.Fatal(err)
	}
	mustPersist(n.t, n.store, rd)
	n.core.Advance()
	return rd.Results
}

func (n *coreNode) write(key, val string, del bool, ctx vclock.Vector) vclock.Set {
	n.t.Helper()
	n.core.Propose(leaderless.Write{ID: 1, Key: []byte(key), Value: []byte(val), Delete: del, Context: ctx, W: 1, Time: hlc.Timestamp{Wall: 1}})
	res := n.flush()
	if len(res) != 1 || res[0].Err != nil {
		n.t.Fatalf("write %s: %+v", key, res)
	}
	return res[0].Set
}

func (n *coreNode) read(key string) (vclock.Set, bool) {
	n.t.Helper()
	n.core.ProposeRead(leaderless.Read{ID: 2, Key: []byte(key), R: 1})
	res := n.flush()
	if len(res) != 1 || res[0].Err != nil {
		n.t.Fatalf("read %s: %+v", key, res)
	}
	return res[0].Set, res[0].Found
}

// TestWithCore runs a one-node core over a Store, restarting it from the
// store: the keys read back, and the mint floor keeps new dots above the
// old ones.
func TestWithCore(t *testing.T) {
	n := &coreNode{t: t, dir: t.TempDir()}
	n.restart()
	var last uint64
	for i := range 20 {
		s := n.write(fmt.Sprint("k", i), fmt.Sprint("v", i), false, nil)
		last = s.Siblings[0].Dot.Counter
	}
	del := n.write("k3", "", true, nil)
	n.restart()
	for i := range 20 {
		s, found := n.read(fmt.Sprint("k", i))
		if !found {
			t.Fatalf("k%d lost across the restart", i)
		}
		if i == 3 {
			if !s.Equal(del) {
				t.Fatalf("k3 = %v, want the tombstone %v", s, del)
			}
			continue
		}
		if len(s.Siblings) != 1 || string(s.Siblings[0].Value) != fmt.Sprint("v", i) {
			t.Fatalf("k%d = %v", i, s)
		}
	}
	if n, err := n.store.Count(); err != nil || n != 20 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	// A new key's first dot is above every dot drawn before the restart.
	s := n.write("fresh", "x", false, nil)
	if c := s.Siblings[0].Dot.Counter; c <= last {
		t.Fatalf("a write after the restart drew counter %d, not above %d", c, last)
	}
	mustClose(t, n.store)
}
