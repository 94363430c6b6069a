package repl

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// tnode is one node of the in-memory test network.
type tnode struct {
	id      NodeID
	cfg     Config
	core    *Core
	st      *MemoryStorage
	down    bool
	applied []entry.Entry // the "store": every applied entry, in order
	journal []entry.Entry // rollback journal
	results map[uint64]Result
	reads   map[uint64]ReadResult
	// snapshots counts snapshots installed.
	snapshots int
}

func (n *tnode) appliedIndex() uint64 {
	if len(n.applied) == 0 {
		return 0
	}
	return n.applied[len(n.applied)-1].Index
}

// tnet is a deterministic in-memory network of cores. Messages are queued
// and delivered in FIFO order by deliverAll; links can be cut one way.
type tnet struct {
	t         testing.TB
	seed      int64
	rng       *rand.Rand
	nodes     map[NodeID]*tnode
	ids       []NodeID
	queue     []Message
	cut       map[[2]NodeID]bool
	dropRate  float64
	dupRate   float64   // chance a message is delivered twice
	delayRate float64   // chance a message is held until a later tick
	reorder   bool      // shuffle each batch of messages before delivery
	delayed   []Message // held messages, released at the next tick
	// divergences counts nodes applying different entries at one index;
	// unless countDivergence is set, the first one fails the test.
	divergences     int
	countDivergence bool
	trace           *[]string         // if set, every delivered message is recorded
	sent            map[MsgType]int   // messages delivered, by type
	rejects         int               // rejected MsgAppResps delivered
	leaders         map[uint64]NodeID // term -> leader seen
	commits         map[uint64]entry.Entry
	nextID          uint64
}

type netOpt func(*Config)

func newNet(t testing.TB, n int, seed int64, opts ...netOpt) *tnet {
	t.Helper()
	nw := &tnet{
		t: t, seed: seed, rng: rand.New(rand.NewSource(seed)),
		nodes: map[NodeID]*tnode{}, cut: map[[2]NodeID]bool{},
		sent: map[MsgType]int{}, leaders: map[uint64]NodeID{}, commits: map[uint64]entry.Entry{},
	}
	peers := make([]Peer, n)
	for i := range peers {
		peers[i] = Peer{ID: NodeID(fmt.Sprintf("n%d", i+1)), Priority: 1}
	}
	for i, p := range peers {
		cfg := DefaultConfig()
		cfg.ID = p.ID
		cfg.Peers = append([]Peer(nil), peers...)
		cfg.Rand = rand.New(rand.NewSource(seed*1000 + int64(i)))
		for _, o := range opts {
			o(&cfg)
		}
		st := NewMemoryStorage()
		nd := &tnode{id: p.ID, cfg: cfg, st: st}
		nw.nodes[p.ID] = nd
		nw.ids = append(nw.ids, p.ID)
		nw.start(nd)
	}
	return nw
}

func (nw *tnet) start(nd *tnode) {
	nw.t.Helper()
	cfg := nd.cfg
	cfg.Applied = nd.appliedIndex()
	cfg.Rand = rand.New(rand.NewSource(nw.rng.Int63()))
	c, err := New(cfg, nd.st)
	if err != nil {
		nw.t.Fatalf("seed %d: New(%s): %v", nw.seed, nd.id, err)
	}
	nd.core = c
	nd.down = false
	nd.results = map[uint64]Result{}
	nd.reads = map[uint64]ReadResult{}
}

// crash stops a node: everything not persisted is lost, in-flight messages to
// and from it are dropped.
func (nw *tnet) crash(id NodeID) {
	nd := nw.nodes[id]
	nd.down = true
	nd.core = nil
	q := nw.queue[:0]
	for _, m := range nw.queue {
		if m.From != id && m.To != id {
			q = append(q, m)
		}
	}
	nw.queue = q
}

func (nw *tnet) restart(id NodeID) { nw.start(nw.nodes[id]) }

// isolate cuts every link to and from id.
func (nw *tnet) isolate(id NodeID) {
	for _, o := range nw.ids {
		if o != id {
			nw.cut[[2]NodeID{id, o}] = true
			nw.cut[[2]NodeID{o, id}] = true
		}
	}
}

// partition cuts every link between the two groups.
func (nw *tnet) partition(a, b []NodeID) {
	for _, x := range a {
		for _, y := range b {
			nw.cut[[2]NodeID{x, y}] = true
			nw.cut[[2]NodeID{y, x}] = true
		}
	}
}

func (nw *tnet) heal() { nw.cut = map[[2]NodeID]bool{} }

// process drains one node's Ready, as a runtime would, checking the contract.
func (nw *tnet) process(nd *tnode) bool {
	t := nw.t
	t.Helper()
	if nd.down || !nd.core.HasReady() {
		return false
	}
	rd := nd.core.Ready()
	if rd.Empty() {
		t.Fatalf("seed %d: %s: HasReady but Ready is empty", nw.seed, nd.id)
	}
	// 1. journal
	nd.journal = append(nd.journal, rd.Discarded...)
	// 2. persist
	if len(rd.Entries) > 0 && rd.Entries[0].Index > nd.st.LastIndex()+1 {
		t.Fatalf("seed %d: %s: Ready.Entries start at %d, storage last %d", nw.seed, nd.id, rd.Entries[0].Index, nd.st.LastIndex())
	}
	if err := nd.st.Persist(&rd); err != nil {
		t.Fatalf("seed %d: %s: persist: %v", nw.seed, nd.id, err)
	}
	// 3. send
	for _, m := range rd.Messages {
		if m.From != nd.id {
			t.Fatalf("seed %d: %s sent a message from %s", nw.seed, nd.id, m.From)
		}
		nw.queue = append(nw.queue, m)
	}
	// 4. apply
	for _, e := range rd.CommittedEntries {
		if e.Index != nd.appliedIndex()+1 {
			t.Fatalf("seed %d: %s: applying %d after %d", nw.seed, nd.id, e.Index, nd.appliedIndex())
		}
		if e.Index > nd.st.LastIndex() {
			t.Fatalf("seed %d: %s: applying %d, not durable (storage last %d)", nw.seed, nd.id, e.Index, nd.st.LastIndex())
		}
		if prev, ok := nw.commits[e.Index]; ok && !prev.Equal(&e) && nw.countDivergence {
			nw.divergences++
		} else if ok && !prev.Equal(&e) {
			t.Fatalf("seed %d: %s applied %d/%d (%s) but another node applied %d/%d (%s)",
				nw.seed, nd.id, e.Term, e.Index, e.Key, prev.Term, prev.Index, prev.Key)
		}
		nw.commits[e.Index] = e
		nd.applied = append(nd.applied, e)
	}
	// 5. reads and results
	for _, r := range rd.Reads {
		if r.Err == nil && r.Index > nd.appliedIndex() {
			t.Fatalf("seed %d: %s: read %d at %d released before apply (applied %d)", nw.seed, nd.id, r.ID, r.Index, nd.appliedIndex())
		}
		nd.reads[r.ID] = r
	}
	for _, r := range rd.Results {
		nd.results[r.ID] = r
	}
	nd.core.Advance(rd)
	for _, to := range rd.Snapshots {
		nw.sendSnapshot(nd, to)
	}
	nw.checkLeaders()
	return true
}

func (nw *tnet) checkLeaders() {
	for _, id := range nw.ids {
		nd := nw.nodes[id]
		if nd.down || nd.core.role != RoleLeader {
			continue
		}
		if l, ok := nw.leaders[nd.core.term]; ok && l != id {
			nw.t.Fatalf("seed %d: two leaders in term %d: %s and %s", nw.seed, nd.core.term, l, id)
		}
		nw.leaders[nd.core.term] = id
	}
}

// deliverAll processes Readys and delivers messages until nothing moves.
func (nw *tnet) deliverAll() {
	nw.t.Helper()
	for range 100000 {
		moved := false
		for _, id := range nw.ids {
			for nw.process(nw.nodes[id]) {
				moved = true
			}
		}
		if len(nw.queue) > 0 {
			moved = true
			q := nw.queue
			nw.queue = nil
			if nw.reorder {
				nw.rng.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
			}
			for _, m := range q {
				if nw.delayRate > 0 && nw.rng.Float64() < nw.delayRate {
					nw.delayed = append(nw.delayed, m)
					continue
				}
				nw.deliver(m)
				if nw.dupRate > 0 && nw.rng.Float64() < nw.dupRate {
					nw.deliver(m)
				}
			}
		}
		if !moved {
			return
		}
	}
	nw.t.Fatalf("seed %d: network did not settle", nw.seed)
}

func (nw *tnet) deliver(m Message) {
	to := nw.nodes[m.To]
	if to == nil || to.down || nw.cut[[2]NodeID{m.From, m.To}] {
		return
	}
	if nw.dropRate > 0 && nw.rng.Float64() < nw.dropRate {
		return
	}
	nw.sent[m.Type]++
	if nw.trace != nil {
		*nw.trace = append(*nw.trace, fmt.Sprintf("%s %s->%s t%d i%d lt%d c%d n%d r%v h%d/%d x%d",
			m.Type, m.From, m.To, m.Term, m.Index, m.LogTerm, m.Commit, len(m.Entries), m.Reject, m.HintTerm, m.HintIndex, m.Context))
	}
	if m.Type == MsgAppResp && m.Reject {
		nw.rejects++
	}
	if err := to.core.Step(m); err != nil && !errors.Is(err, ErrUnknownPeer) {
		nw.t.Fatalf("seed %d: %s.Step(%+v): %v", nw.seed, m.To, m, err)
	}
}

// tick advances every live node by n ticks, settling the network after each.
func (nw *tnet) tick(n int) {
	nw.t.Helper()
	for range n {
		nw.queue = append(nw.queue, nw.delayed...)
		nw.delayed = nil
		for _, id := range nw.ids {
			if nd := nw.nodes[id]; !nd.down {
				nd.core.Tick()
			}
		}
		nw.deliverAll()
	}
}

// leader returns the live leader with the highest term, or None.
func (nw *tnet) leader() NodeID {
	var best NodeID
	var term uint64
	for _, id := range nw.ids {
		nd := nw.nodes[id]
		if !nd.down && nd.core.role == RoleLeader && nd.core.term >= term {
			best, term = id, nd.core.term
		}
	}
	return best
}

// waitLeader ticks until some node in among (all if empty) leads, and returns it.
func (nw *tnet) waitLeader(maxTicks int, among ...NodeID) NodeID {
	nw.t.Helper()
	for range maxTicks {
		nw.tick(1)
		for _, id := range nw.ids {
			nd := nw.nodes[id]
			if nd.down || nd.core.role != RoleLeader || !nw.inGroup(id, among) {
				continue
			}
			return id
		}
	}
	nw.t.Fatalf("seed %d: no leader among %v after %d ticks", nw.seed, among, maxTicks)
	return None
}

func (nw *tnet) inGroup(id NodeID, among []NodeID) bool {
	if len(among) == 0 {
		return true
	}
	for _, a := range among {
		if a == id {
			return true
		}
	}
	return false
}

// propose submits a put on node id and returns the proposal id.
func (nw *tnet) propose(id NodeID, key string, ack Ack) (uint64, error) {
	nw.nextID++
	err := nw.nodes[id].core.Propose(Proposal{
		ID: nw.nextID, Kind: entry.KindPut, Key: []byte(key), Value: []byte("v-" + key), Ack: ack,
	})
	return nw.nextID, err
}

func (nw *tnet) mustPropose(id NodeID, key string, ack Ack) uint64 {
	nw.t.Helper()
	pid, err := nw.propose(id, key, ack)
	if err != nil {
		nw.t.Fatalf("seed %d: propose %q on %s: %v", nw.seed, key, id, err)
	}
	return pid
}

// appliedKeys returns the keys of the put entries a node applied.
func appliedKeys(nd *tnode) []string {
	var keys []string
	for _, e := range nd.applied {
		if e.Kind == entry.KindPut {
			keys = append(keys, string(e.Key))
		}
	}
	return keys
}

// checkConverged checks that every live node holds the same log and applied
// the same entries.
func (nw *tnet) checkConverged() {
	nw.t.Helper()
	var ref *tnode
	for _, id := range nw.ids {
		nd := nw.nodes[id]
		if nd.down {
			continue
		}
		if ref == nil {
			ref = nd
			continue
		}
		a, b := ref.core.entriesForTest(), nd.core.entriesForTest()
		if len(a) != len(b) {
			nw.t.Fatalf("seed %d: %s has %d entries, %s has %d", nw.seed, ref.id, len(a), nd.id, len(b))
		}
		for i := range a {
			if !a[i].Equal(&b[i]) {
				nw.t.Fatalf("seed %d: entry %d differs between %s and %s", nw.seed, a[i].Index, ref.id, nd.id)
			}
		}
		if ref.appliedIndex() != nd.appliedIndex() {
			nw.t.Fatalf("seed %d: %s applied %d, %s applied %d", nw.seed, ref.id, ref.appliedIndex(), nd.id, nd.appliedIndex())
		}
		for i := range ref.applied {
			if !bytes.Equal(ref.applied[i].Key, nd.applied[i].Key) {
				nw.t.Fatalf("seed %d: applied entry %d differs", nw.seed, ref.applied[i].Index)
			}
		}
	}
}

func sortedKeys(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func majority() Ack { return Ack{Mode: AckMajority} }

// entriesForTest exposes the whole log (durable and unstable).
func (c *Core) entriesForTest() []entry.Entry {
	ents, _ := c.log.entries(c.log.firstIndex(), c.log.lastIndex()+1, 0)
	return ents
}
