package mlstore

import (
	"path/filepath"
	"testing"

	"github.com/trireme-db/trireme/internal/multileader"
)

// coreNode is a multileader core over a Store, as the runtime will run it.
type coreNode struct {
	t     *testing.T
	dir   string
	cfg   multileader.Config
	store *Store
	core  *multileader.Core
}

func startNode(t *testing.T, dir, id string, peers []string) *coreNode {
	t.Helper()
	n := &coreNode{t: t, dir: dir}
	n.cfg = multileader.DefaultConfig()
	n.cfg.ID, n.cfg.Peers, n.cfg.ClusterID = id, peers, "c1"
	n.restart()
	return n
}

// restart reopens the store and builds the core from it.
func (n *coreNode) restart() {
	n.t.Helper()
	if n.store != nil {
		mustClose(n.t, n.store)
	}
	n.store = mustOpen(n.t, n.dir, Config{})
	applied, err := n.store.Applied()
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := n.cfg
	cfg.Applied, cfg.Store, cfg.Log = applied, n.store, n.store
	if n.core, err = multileader.New(cfg); err != nil {
		n.t.Fatal(err)
	}
}

// flush runs the Ready loop and returns the messages, sent through the
// wire codec.
func (n *coreNode) flush() [][]byte {
	n.t.Helper()
	var out [][]byte
	for n.core.HasReady() {
		rd, err := n.core.Ready()
		if err != nil {
			n.t.Fatal(err)
		}
		mustPersist(n.t, n.store, rd)
		for i := range rd.Messages {
			out = append(out, multileader.AppendMessage(nil, &rd.Messages[i]))
		}
		n.core.Advance()
	}
	return out
}

// TestWithCore runs two cores over Stores, their messages encoded and
// decoded by the wire codec, with a restart of one node from its store.
func TestWithCore(t *testing.T) {
	base := t.TempDir()
	nodes := map[string]*coreNode{
		"a": startNode(t, filepath.Join(base, "a"), "a", []string{"b"}),
		"b": startNode(t, filepath.Join(base, "b"), "b", []string{"a"}),
	}
	defer func() {
		for _, n := range nodes {
			mustClose(t, n.store)
		}
	}()
	var queue [][]byte
	now := int64(1_000_000_000)
	settle := func() {
		for range 40 {
			now += 1_000_000
			for _, id := range []string{"a", "b"} {
				nodes[id].core.Tick(now)
				queue = append(queue, nodes[id].flush()...)
			}
			for len(queue) > 0 {
				m, err := multileader.DecodeMessage(queue[0])
				if err != nil {
					t.Fatalf("DecodeMessage: %v", err)
				}
				queue = queue[1:]
				if err := nodes[m.To].core.Step(m); err != nil {
					t.Fatalf("Step %v: %v", m.Type, err)
				}
				queue = append(queue, nodes[m.To].flush()...)
			}
		}
	}
	propose := func(id string, w multileader.Write) {
		t.Helper()
		if _, err := nodes[id].core.Propose(w); err != nil {
			t.Fatal(err)
		}
		queue = append(queue, nodes[id].flush()...)
	}
	settle()
	propose("a", multileader.Write{Key: "x", Value: []byte("from a")})
	propose("b", multileader.Write{Key: "x", Value: []byte("from b")}) // concurrent: a conflict
	propose("a", multileader.Write{Key: "n", Incr: true, IncrBy: 5})
	propose("b", multileader.Write{Key: "n", Incr: true, IncrBy: -2})
	propose("a", multileader.Write{Key: "gone", Value: []byte("v")})
	settle()
	propose("b", multileader.Write{Key: "gone", Delete: true})
	nodes["b"].restart() // before b's delete reached a
	for i := range 20 {
		propose("b", multileader.Write{Key: "k", Value: []byte{byte(i)}})
	}
	settle()

	for _, key := range []string{"x", "n", "gone", "k"} {
		sa, err := nodes["a"].store.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := nodes["b"].store.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if !sa.Equal(sb) {
			t.Fatalf("key %q: a has %v, b has %v", key, sa, sb)
		}
	}
	if n, err := nodes["a"].store.Count(); err != nil || n != 3 {
		t.Fatalf("a: Count() = %d, %v; want 3 (x, n, k)", n, err)
	}
	if st, _ := nodes["a"].store.Get("n"); st.Ctr.Value() != 3 {
		t.Fatalf("counter n = %d, want 3", st.Ctr.Value())
	}
	if got := nodes["b"].store.LastSeq(); got != 23 {
		t.Fatalf("b's stream ends at %d, want 23", got)
	}
	pos, err := nodes["a"].store.Applied()
	if err != nil || pos["b"] != 23 || pos["a"] != 3 {
		t.Fatalf("a's positions %v, %v; want a:3 b:23", pos, err)
	}
	var conflicts int
	for _, n := range nodes {
		recs, _, err := n.store.Conflicts(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		conflicts += len(recs)
	}
	if conflicts == 0 {
		t.Fatalf("no conflict recorded for the concurrent writes to x")
	}
}
