package multileader

import (
	"fmt"
	"testing"
)

// tnode is a minimal synchronous runtime for unit tests: durable maps, the
// Ready contract applied at once, messages queued for the test to deliver.
type tnode struct {
	core    *Core
	cfg     Config
	stream  []Entry
	store   map[string]KeyState
	applied map[string]uint64
	confl   []Conflict
	results []Result
}

type tstore struct{ n *tnode }

func (s tstore) Get(k string) (KeyState, error) { return s.n.store[k], nil }

type tlog struct{ n *tnode }

func (l tlog) LastSeq() uint64 { return uint64(len(l.n.stream)) }
func (l tlog) Entries(lo, hi uint64) ([]Entry, error) {
	if lo < 1 || hi > uint64(len(l.n.stream)) || lo > hi {
		return nil, fmt.Errorf("entries %d..%d of %d", lo, hi, len(l.n.stream))
	}
	return l.n.stream[lo-1 : hi], nil
}

type tcluster struct {
	t     *testing.T
	nodes map[string]*tnode
	queue []Message
	now   int64
}

func newCluster(t *testing.T, policy Policy, ids ...string) *tcluster {
	tc := &tcluster{t: t, nodes: map[string]*tnode{}, now: 1_000_000_000}
	for _, id := range ids {
		cfg := DefaultConfig()
		cfg.ID, cfg.ClusterID, cfg.Policy, cfg.MaxSiblings = id, "test", policy, 3
		for _, p := range ids {
			if p != id {
				cfg.Peers = append(cfg.Peers, p)
			}
		}
		n := &tnode{cfg: cfg, store: map[string]KeyState{}, applied: map[string]uint64{}}
		tc.nodes[id] = n
		tc.start(id)
	}
	return tc
}

func (tc *tcluster) start(id string) {
	n := tc.nodes[id]
	cfg := n.cfg
	cfg.Store, cfg.Log = tstore{n}, tlog{n}
	cfg.Applied = map[string]uint64{}
	for k, v := range n.applied {
		cfg.Applied[k] = v
	}
	c, err := New(cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	n.core = c
}

// crash drops the core (everything it had not handed out is lost) and
// restarts it from the durable maps.
func (tc *tcluster) crash(id string) { tc.start(id) }

// flush runs id's Ready loop; messages are queued.
func (tc *tcluster) flush(id string) {
	n := tc.nodes[id]
	for n.core.HasReady() {
		rd, err := n.core.Ready()
		if err != nil {
			tc.t.Fatal(err)
		}
		n.stream = append(n.stream, rd.Entries...)
		for _, ch := range rd.Changes {
			n.store[ch.Key] = ch.State
		}
		for _, p := range rd.Applied {
			n.applied[p.Origin] = p.Seq
		}
		n.confl = append(n.confl, rd.Conflicts...)
		tc.queue = append(tc.queue, rd.Messages...)
		n.results = append(n.results, rd.Results...)
		n.core.Advance()
	}
}

func (tc *tcluster) propose(id string, w Write) uint64 {
	pid, err := tc.nodes[id].core.Propose(w)
	if err != nil {
		tc.t.Fatalf("propose at %s: %v", id, err)
	}
	tc.flush(id)
	return pid
}

// deliverAll delivers queued messages (and the ones they cause) until none
// are left, dropping those for which drop returns true.
func (tc *tcluster) deliverAll(drop func(Message) bool) {
	for len(tc.queue) > 0 {
		m := tc.queue[0]
		tc.queue = tc.queue[1:]
		if drop != nil && drop(m) {
			continue
		}
		if err := tc.nodes[m.To].core.Step(m); err != nil {
			tc.t.Fatalf("step %v: %v", m, err)
		}
		tc.flush(m.To)
	}
}

// tick ticks every node n times, delivering everything after each tick.
func (tc *tcluster) tick(n int) {
	for range n {
		tc.now += 1_000_000
		for _, id := range sortedIDs(tc.nodes) {
			tc.nodes[id].core.Tick(tc.now)
			tc.flush(id)
		}
		tc.deliverAll(nil)
	}
}

func sortedIDs(m map[string]*tnode) []string {
	var ids []string
	for id := range m {
		ids = append(ids, id)
	}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			if ids[j] < ids[i] {
				ids[i], ids[j] = ids[j], ids[i]
			}
		}
	}
	return ids
}

func (tc *tcluster) mustConverge(key string) KeyState {
	tc.t.Helper()
	var ref KeyState
	for i, id := range sortedIDs(tc.nodes) {
		st := tc.nodes[id].store[key]
		if i == 0 {
			ref = st
		} else if !st.Equal(ref) {
			tc.t.Fatalf("%s: %v / %v differs from %v / %v", id, st.Reg, st.Ctr, ref.Reg, ref.Ctr)
		}
	}
	return ref
}
