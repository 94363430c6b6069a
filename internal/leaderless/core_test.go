package leaderless

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

// tnode is one node of the test harness: the durable state a runtime keeps
// (keys, hints, mint floor), the core while up, and the results it gave.
type tnode struct {
	id      string
	cfg     Config
	core    *Core
	keys    map[string]vclock.Set
	hints   map[string]Hint
	floor   uint64
	results []Result
	down    bool
	failGet error // the store fails
}

type tstore struct{ n *tnode }

func (s tstore) Get(key []byte) (vclock.Set, bool, error) {
	if s.n.failGet != nil {
		return vclock.Set{}, false, s.n.failGet
	}
	v, ok := s.n.keys[string(key)]
	return v, ok, nil
}

func (s tstore) Bucket(b int) ([]Item, error) {
	var out []Item
	for k, v := range s.n.keys {
		if leaf([]byte(k)) == b {
			out = append(out, Item{Key: []byte(k), Set: v})
		}
	}
	slices.SortFunc(out, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

// tcluster runs cores in one goroutine: Ready is persisted at once, messages
// are queued and delivered in order by deliver, dropped if filter says so or
// the receiver is down.
type tcluster struct {
	t      *testing.T
	ids    []string
	nodes  map[string]*tnode
	queue  []Message
	filter func(m Message) bool // true: drop
	sent   []Message            // every message sent, for inspection
	used   map[string]bool      // keys keyWith returned
}

func testConfig(ids []string) Config {
	return Config{
		Nodes: ids, N: 3, VNodes: 16,
		RequestTicks: 20, PeerDownTicks: 6, HeartbeatTicks: 2, HandoffTicks: 4,
		AETicks: -1, AEKeys: 100, GCTicks: 5, GCGraceTicks: 30,
	}
}

func newCluster(t *testing.T, n int, mod func(*Config)) *tcluster {
	t.Helper()
	tc := &tcluster{t: t, nodes: map[string]*tnode{}, used: map[string]bool{}}
	for i := range n {
		tc.ids = append(tc.ids, string(rune('a'+i)))
	}
	for _, id := range tc.ids {
		cfg := testConfig(tc.ids)
		cfg.ID = id
		if mod != nil {
			mod(&cfg)
		}
		tc.nodes[id] = &tnode{id: id, cfg: cfg, keys: map[string]vclock.Set{}, hints: map[string]Hint{}}
		tc.start(id)
	}
	// A core counts a peer down until it hears from it: tick until every
	// node has heard every other.
	for range 1000 {
		up := true
		for _, a := range tc.ids {
			for _, b := range tc.ids {
				up = up && tc.nodes[a].core.Up(b)
			}
		}
		if up {
			tc.sent = nil // the warm-up's pings
			return tc
		}
		tc.ticks(1)
	}
	t.Fatal("the nodes never heard from each other")
	return nil
}

// start builds id's core from its durable state (a restart).
func (tc *tcluster) start(id string) {
	tc.t.Helper()
	n := tc.nodes[id]
	st := State{MintFloor: n.floor}
	hk := make([]string, 0, len(n.hints))
	for k := range n.hints {
		hk = append(hk, k)
	}
	slices.Sort(hk)
	for _, k := range hk {
		st.Hints = append(st.Hints, n.hints[k])
	}
	c, err := New(n.cfg, tstore{n}, st)
	if err != nil {
		tc.t.Fatal(err)
	}
	keys := make([]string, 0, len(n.keys))
	for k := range n.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c.Restore([]byte(k), n.keys[k])
	}
	n.core, n.down = c, false
}

// wipe restarts id with an empty data directory, as a new actor.
func (tc *tcluster) wipe(id, actor string) {
	n := tc.nodes[id]
	n.keys, n.hints, n.floor = map[string]vclock.Set{}, map[string]Hint{}, 0
	n.cfg.Actor = actor
	tc.start(id)
}

func (tc *tcluster) node(id string) *tnode { return tc.nodes[id] }

// flush carries out id's Ready: persist, queue the messages, keep results.
func (tc *tcluster) flush(id string) {
	tc.t.Helper()
	n := tc.nodes[id]
	if n.down {
		return
	}
	rd, err := n.core.Ready()
	if err != nil {
		tc.t.Fatalf("%s: ready: %v", id, err)
	}
	for _, kw := range rd.Keys {
		if kw.Drop {
			delete(n.keys, string(kw.Key))
		} else {
			n.keys[string(kw.Key)] = kw.Set
		}
	}
	for _, h := range rd.Hints {
		n.hints[hintKey(h.For, h.Key)] = h
	}
	for _, h := range rd.DoneHints {
		delete(n.hints, hintKey(h.For, h.Key))
	}
	if rd.MintFloor != 0 {
		if rd.MintFloor < n.floor {
			tc.t.Fatalf("%s: mint floor goes back %d -> %d", id, n.floor, rd.MintFloor)
		}
		n.floor = rd.MintFloor
	}
	for _, e := range rd.Messages {
		if e.To != e.Msg.To || e.Msg.From != id {
			tc.t.Fatalf("%s: envelope to %s carries %s -> %s", id, e.To, e.Msg.From, e.Msg.To)
		}
		tc.sent = append(tc.sent, e.Msg)
		tc.queue = append(tc.queue, e.Msg)
	}
	n.results = append(n.results, rd.Results...)
	n.core.Advance()
}

// deliver delivers queued messages (and what they cause) until none is left.
func (tc *tcluster) deliver() {
	tc.t.Helper()
	for len(tc.queue) > 0 {
		m := tc.queue[0]
		tc.queue = tc.queue[1:]
		n := tc.nodes[m.To]
		if n.down || (tc.filter != nil && tc.filter(m)) {
			continue
		}
		if err := n.core.Step(m); err != nil {
			tc.t.Fatalf("%s <- %s %v: %v", m.To, m.From, m.Type, err)
		}
		tc.flush(m.To)
	}
}

// ticks advances every up node k ticks, delivering after each.
func (tc *tcluster) ticks(k int) {
	tc.t.Helper()
	for range k {
		for _, id := range tc.ids {
			if n := tc.nodes[id]; !n.down {
				n.core.Tick()
				tc.flush(id)
			}
		}
		tc.deliver()
	}
}

func (tc *tcluster) write(at string, w Write) {
	tc.t.Helper()
	tc.nodes[at].core.Propose(w)
	tc.flush(at)
	tc.deliver()
}

func (tc *tcluster) read(at string, r Read) {
	tc.t.Helper()
	tc.nodes[at].core.ProposeRead(r)
	tc.flush(at)
	tc.deliver()
}

// results returns id's results for request id.
func (tc *tcluster) results(at string, id uint64) []Result {
	var out []Result
	for _, r := range tc.nodes[at].results {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// result returns the one result for request id at node at.
func (tc *tcluster) result(at string, id uint64) Result {
	tc.t.Helper()
	rs := tc.results(at, id)
	if len(rs) != 1 {
		tc.t.Fatalf("%s: request %d has %d results: %+v", at, id, len(rs), rs)
	}
	return rs[0]
}

// keyWith returns a key not returned before whose preference list (N=3)
// satisfies ok.
func (tc *tcluster) keyWith(ok func(homes []string) bool) []byte {
	tc.t.Helper()
	r := tc.nodes[tc.ids[0]].core.Ring()
	for i := range 10000 {
		k := fmt.Appendf(nil, "k%d", i)
		if !tc.used[string(k)] && ok(r.Replicas(k, 3)) {
			tc.used[string(k)] = true
			return k
		}
	}
	tc.t.Fatal("no key fits")
	return nil
}

func homesAre(want ...string) func([]string) bool {
	return func(h []string) bool { return slices.Equal(h, want) }
}

// values returns the live values of s, sorted.
func values(s vclock.Set) []string {
	var out []string
	for _, x := range s.Siblings {
		if !x.Deleted {
			out = append(out, string(x.Value))
		}
	}
	slices.Sort(out)
	return out
}

func ts(n int64) hlc.Timestamp { return hlc.Timestamp{Wall: n} }

func TestQuorumWriteThenRead(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := []byte("x")
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v1"), W: 2, Time: ts(1)})
	w := tc.result("a", 1)
	if w.Err != nil || !w.Found || w.Replicas < 2 || !slices.Equal(values(w.Set), []string{"v1"}) {
		t.Fatalf("write: %+v", w)
	}
	for _, id := range tc.ids {
		if got := values(tc.node(id).keys["x"]); !slices.Equal(got, []string{"v1"}) {
			t.Fatalf("%s holds %v", id, got)
		}
	}
	tc.read("b", Read{ID: 2, Key: key, R: 2})
	r := tc.result("b", 2)
	if r.Err != nil || !r.Found || r.Replicas < 2 || !slices.Equal(values(r.Set), []string{"v1"}) {
		t.Fatalf("read: %+v", r)
	}
	// A write with the read's context overwrites: one value.
	tc.write("c", Write{ID: 3, Key: key, Value: []byte("v2"), Context: r.Set.Context, W: 3, Time: ts(2)})
	if w := tc.result("c", 3); w.Err != nil || w.Replicas != 3 {
		t.Fatalf("overwrite: %+v", w)
	}
	tc.read("a", Read{ID: 4, Key: key, R: 3})
	if r := tc.result("a", 4); !slices.Equal(values(r.Set), []string{"v2"}) || r.Replicas != 3 {
		t.Fatalf("read after overwrite: %+v", r)
	}
	// A key nobody wrote.
	tc.read("a", Read{ID: 5, Key: []byte("nothing"), R: 3})
	if r := tc.result("a", 5); r.Err != nil || r.Found || len(r.Set.Siblings) != 0 {
		t.Fatalf("read of a missing key: %+v", r)
	}
}

func TestConcurrentWritesBecomeSiblings(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := []byte("x")
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("base"), W: 3, Time: ts(1)})
	ctx := tc.result("a", 1).Set.Context
	// Two writes from the same context, coordinated at different nodes
	// and minted at different home replicas: neither saw the other.
	tc.nodes["a"].core.Propose(Write{ID: 2, Key: key, Value: []byte("left"), Context: ctx, W: 1, Time: ts(2)})
	tc.nodes["b"].core.Propose(Write{ID: 3, Key: key, Value: []byte("right"), Context: ctx, W: 1, Time: ts(3)})
	tc.flush("a")
	tc.flush("b")
	tc.deliver()
	if tc.result("a", 2).Err != nil || tc.result("b", 3).Err != nil {
		t.Fatal("writes failed")
	}
	tc.read("c", Read{ID: 4, Key: key, R: 3})
	r := tc.result("c", 4)
	if got := values(r.Set); !slices.Equal(got, []string{"left", "right"}) {
		t.Fatalf("siblings %v, want left and right (%v)", got, r.Set)
	}
	// A write with the read's context resolves them.
	tc.write("c", Write{ID: 5, Key: key, Value: []byte("merged"), Context: r.Set.Context, W: 3, Time: ts(4)})
	tc.read("a", Read{ID: 6, Key: key, R: 3})
	if got := values(tc.result("a", 6).Set); !slices.Equal(got, []string{"merged"}) {
		t.Fatalf("after resolving: %v", got)
	}
	// A blind write (no context) supersedes what its minter holds.
	tc.write("b", Write{ID: 7, Key: key, Value: []byte("blind"), W: 3, Time: ts(5)})
	tc.read("a", Read{ID: 8, Key: key, R: 3})
	if got := values(tc.result("a", 8).Set); !slices.Equal(got, []string{"blind"}) {
		t.Fatalf("after a blind write: %v", got)
	}
}

// down takes id off the network (its core keeps state) and lets the others
// notice.
func (tc *tcluster) down(id string) {
	tc.nodes[id].down = true
	tc.ticks(tc.nodes[id].cfg.PeerDownTicks + 2)
}

func TestSloppyWriteAndHintedHandoff(t *testing.T) {
	tc := newCluster(t, 4, func(c *Config) { c.Sloppy = true })
	key := tc.keyWith(homesAre("a", "b", "c"))
	tc.down("c")
	if tc.node("a").core.Up("c") {
		t.Fatal("a still thinks c is up")
	}
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v"), W: 3, Time: ts(1)})
	if w := tc.result("a", 1); w.Err != nil || w.Replicas != 3 {
		t.Fatalf("sloppy write: %+v", w)
	}
	d := tc.node("d")
	if len(d.hints) != 1 || d.core.HintsPending()["c"] != 1 {
		t.Fatalf("stand-in d holds hints %v", d.hints)
	}
	if _, ok := d.keys[string(key)]; ok {
		t.Fatal("the stand-in stored the key as its own")
	}
	// A read while c is down finds the value on the stand-in too.
	tc.read("b", Read{ID: 2, Key: key, R: 3})
	if r := tc.result("b", 2); r.Err != nil || r.Replicas != 3 || !slices.Equal(values(r.Set), []string{"v"}) {
		t.Fatalf("sloppy read: %+v", r)
	}
	// c comes back (it missed the write); the hint is handed over.
	tc.nodes["c"].down = false
	tc.ticks(3 * tc.node("d").cfg.HandoffTicks)
	if got := values(tc.node("c").keys[string(key)]); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("c holds %v after handoff", got)
	}
	if len(d.hints) != 0 || len(d.core.HintsPending()) != 0 || d.core.Stats().HintsDelivered != 1 {
		t.Fatalf("d still holds %v (stats %+v)", d.hints, d.core.Stats())
	}
	// A restarted stand-in keeps its hints: they are durable.
	tc.down("c")
	tc.write("a", Write{ID: 3, Key: key, Value: []byte("v2"), W: 3, Time: ts(2)})
	if len(d.hints) != 1 {
		t.Fatalf("second hint: %v", d.hints)
	}
	tc.start("d")
	if tc.node("d").core.HintsPending()["c"] != 1 {
		t.Fatal("hint lost in a restart")
	}
	tc.nodes["c"].down = false
	tc.ticks(tc.node("d").cfg.RequestTicks + 3*tc.node("d").cfg.HandoffTicks)
	if got := values(tc.node("c").keys[string(key)]); !slices.Contains(got, "v2") || len(tc.node("d").hints) != 0 {
		t.Fatalf("after restart and handoff: c %v, d hints %v", got, tc.node("d").hints)
	}
}

// stalenessSetup writes v at b with W=1 while c and a miss it (their store
// messages dropped) and returns the key (homes a, b, c).
func stalenessSetup(t *testing.T, tc *tcluster, miss ...string) []byte {
	key := tc.keyWith(homesAre("a", "b", "c"))
	tc.filter = func(m Message) bool { return m.Type == MsgStore && slices.Contains(miss, m.To) }
	tc.write("b", Write{ID: 1, Key: key, Value: []byte("v"), W: 1, Time: ts(1)})
	tc.filter = nil
	if w := tc.result("b", 1); w.Err != nil {
		t.Fatal(w.Err)
	}
	for _, id := range miss {
		if _, ok := tc.node(id).keys[string(key)]; ok {
			t.Fatalf("%s got the write", id)
		}
	}
	return key
}

func TestReadRepairBackground(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := stalenessSetup(t, tc, "c")
	tc.read("a", Read{ID: 2, Key: key, R: 3})
	r := tc.result("a", 2)
	if r.Err != nil || r.Repaired != 0 || !slices.Equal(values(r.Set), []string{"v"}) {
		t.Fatalf("read: %+v", r)
	}
	if got := values(tc.node("c").keys[string(key)]); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("c not repaired: %v", got)
	}
	if n := tc.node("a").core.Stats().ReadRepairs; n != 1 {
		t.Fatalf("%d read repairs, want 1", n)
	}
	// Nothing stale: no repair.
	tc.read("a", Read{ID: 3, Key: key, R: 3})
	if n := tc.node("a").core.Stats().ReadRepairs; n != 1 {
		t.Fatalf("%d read repairs after a clean read, want 1", n)
	}
}

// TestReadRepairBlocking: the reply comes once, after every stale replica
// among the answers acknowledged the repair, with the count repaired. The
// coordinator is stale itself: its own repair is acknowledged at once and
// must not make the read reply early (before c) or twice.
func TestReadRepairBlocking(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := stalenessSetup(t, tc, "a", "c")
	var held []Message
	tc.filter = func(m Message) bool {
		if m.Type == MsgStoreAck && m.From == "c" {
			held = append(held, m)
			return true
		}
		return false
	}
	tc.read("a", Read{ID: 2, Key: key, R: 3, Repair: true})
	if rs := tc.results("a", 2); len(rs) != 0 {
		t.Fatalf("replied before c acknowledged its repair: %+v", rs)
	}
	if got := values(tc.node("a").keys[string(key)]); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("a not repaired: %v", got)
	}
	if len(held) != 1 {
		t.Fatalf("held %d acks from c", len(held))
	}
	tc.filter = nil
	tc.queue = append(tc.queue, held...)
	tc.deliver()
	tc.ticks(2 * tc.node("a").cfg.RequestTicks)
	r := tc.result("a", 2)
	if r.Err != nil || r.Repaired != 2 || r.Replicas != 3 || !slices.Equal(values(r.Set), []string{"v"}) {
		t.Fatalf("read: %+v", r)
	}
	// Only the stale coordinator: one reply, Repaired 1.
	key2 := tc.keyWith(homesAre("a", "b", "c"))
	tc.filter = func(m Message) bool { return m.Type == MsgStore && m.To == "a" }
	tc.write("b", Write{ID: 3, Key: key2, Value: []byte("w"), W: 2, Time: ts(2)})
	tc.filter = nil
	tc.read("a", Read{ID: 4, Key: key2, R: 2, Repair: true})
	tc.ticks(2 * tc.node("a").cfg.RequestTicks)
	if r := tc.result("a", 4); r.Err != nil || r.Repaired != 1 || !slices.Equal(values(r.Set), []string{"w"}) {
		t.Fatalf("read: %+v", r)
	}
	// Nothing stale: an immediate reply, Repaired 0.
	tc.read("b", Read{ID: 5, Key: key2, R: 3, Repair: true})
	if r := tc.result("b", 5); r.Err != nil || r.Repaired != 0 {
		t.Fatalf("clean read: %+v", r)
	}
	if n := len(tc.node("a").core.repairs) + len(tc.node("b").core.repairs); n != 0 {
		t.Fatalf("%d repairs still tracked", n)
	}
}

// TestReadRepairBlockingRefused: a refused repair ends the wait for that
// replica but is not counted as repaired.
func TestReadRepairBlockingRefused(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := stalenessSetup(t, tc, "a", "c")
	tc.filter = func(m Message) bool {
		if m.Type == MsgStoreAck && m.From == "c" {
			m.Err = RefuseStopped
			tc.queue = append(tc.queue, m) // delivered refused instead
			tc.filter = nil
			return true
		}
		return false
	}
	tc.read("a", Read{ID: 2, Key: key, R: 3, Repair: true})
	if r := tc.result("a", 2); r.Err != nil || r.Repaired != 1 || r.Replicas != 3 {
		t.Fatalf("read: %+v", r)
	}
}

// TestReadRepairBlockingRepliesWhatItRepaired: answers after the first R
// are not in the reply: the reply promises its value is on the replicas it
// repaired.
func TestReadRepairBlockingRepliesWhatItRepaired(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := stalenessSetup(t, tc, "a", "c")
	// a reads with R=2: a (stale) and c (stale) answer first; b's answer
	// (the only one with v) is held until after the reply.
	var held []Message
	tc.filter = func(m Message) bool {
		if m.Type == MsgReadAck && m.From == "b" {
			held = append(held, m)
			return true
		}
		return false
	}
	tc.read("a", Read{ID: 2, Key: key, R: 2, Repair: true})
	r := tc.result("a", 2)
	if r.Err != nil || r.Found || len(r.Set.Siblings) != 0 || r.Repaired != 0 {
		t.Fatalf("read: %+v", r)
	}
	tc.filter = nil
	tc.queue = append(tc.queue, held...)
	tc.deliver()
	if len(tc.results("a", 2)) != 1 {
		t.Fatal("replied twice")
	}
	// b's late answer still repairs a and c in the background.
	for _, id := range []string{"a", "c"} {
		if got := values(tc.node(id).keys[string(key)]); !slices.Equal(got, []string{"v"}) {
			t.Fatalf("%s not repaired in the background: %v", id, got)
		}
	}
}

// TestRepairsForgotten: blocking repairs whose acks never come are forgotten
// with their read.
func TestRepairsForgotten(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := stalenessSetup(t, tc, "c")
	tc.filter = func(m Message) bool { return m.Type == MsgStore && m.To == "c" }
	for i := range 5 {
		tc.read("a", Read{ID: uint64(10 + i), Key: key, R: 3, Repair: true})
	}
	if n := len(tc.node("a").core.repairs); n != 5 {
		t.Fatalf("%d repairs pending, want 5", n)
	}
	tc.ticks(tc.node("a").cfg.RequestTicks + 1)
	for i := range 5 {
		if r := tc.result("a", uint64(10+i)); !errors.Is(r.Err, ErrTimeout) || r.Repaired != 0 {
			t.Fatalf("read %d: %+v", i, r)
		}
	}
	if n, m := len(tc.node("a").core.repairs), len(tc.node("a").core.reads); n != 0 || m != 0 {
		t.Fatalf("%d repairs and %d reads leaked", n, m)
	}
}

func TestAntiEntropyRepairsWipedReplica(t *testing.T) {
	tc := newCluster(t, 3, func(c *Config) { c.AETicks = 3 })
	var keys []string
	for i := range 40 {
		k := fmt.Sprintf("key%d", i)
		keys = append(keys, k)
		tc.write(tc.ids[i%3], Write{ID: uint64(i + 1), Key: []byte(k), Value: []byte("v" + k), W: 3, Time: ts(int64(i + 1))})
	}
	for _, k := range keys {
		if _, ok := tc.node("c").keys[k]; !ok {
			t.Fatalf("c lacks %s before the wipe", k)
		}
	}
	tc.wipe("c", "c.2")
	if len(tc.node("c").keys) != 0 {
		t.Fatal("wipe kept keys")
	}
	tc.ticks(40)
	for _, k := range keys {
		a, c := tc.node("a").keys[k], tc.node("c").keys[k]
		if !a.Equal(c) {
			t.Fatalf("%s: a has %v, c has %v", k, a, c)
		}
	}
	st := tc.node("c").core.Stats()
	if st.AERepairs < uint64(len(keys)) {
		t.Fatalf("c repaired %d keys by anti-entropy, want %d", st.AERepairs, len(keys))
	}
	for p, n := range tc.node("a").core.AEDiffering() {
		if n != 0 {
			t.Fatalf("a's last exchange with %s found %d buckets different", p, n)
		}
	}
	// The new actor mints fresh dots: a write minted at c is not mistaken
	// for the old incarnation's.
	k := tc.keyWith(homesAre("c", "a", "b"))
	tc.write("c", Write{ID: 100, Key: k, Value: []byte("new"), W: 3, Time: ts(100)})
	if s := tc.result("c", 100).Set; s.Context.Get("c.2") == 0 {
		t.Fatalf("minted %v, not by actor c.2", s)
	}
}

// deleteSetup writes v (W=3) and deletes it with the read context, the
// delete's stores to miss dropped. Homes a, b, c; a is the collector.
func deleteSetup(t *testing.T, tc *tcluster, miss ...string) []byte {
	key := tc.keyWith(homesAre("a", "b", "c"))
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v"), W: 3, Time: ts(1)})
	tc.read("a", Read{ID: 2, Key: key, R: 3})
	ctx := tc.result("a", 2).Set.Context
	tc.filter = func(m Message) bool { return m.Type == MsgStore && slices.Contains(miss, m.To) }
	tc.write("a", Write{ID: 3, Key: key, Delete: true, Context: ctx, W: 2, Time: ts(2)})
	tc.filter = nil
	if w := tc.result("a", 3); w.Err != nil || !tombstone(w.Set) {
		t.Fatalf("delete: %+v", w)
	}
	return key
}

func TestTombstoneCollectedOnlyWhenEveryReplicaHasIt(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := deleteSetup(t, tc, "c")
	grace := tc.node("a").cfg.GCGraceTicks
	tc.ticks(4 * grace)
	// c still holds v (no anti-entropy here): the tombstone must stay.
	if s, ok := tc.node("a").keys[string(key)]; !ok || !tombstone(s) {
		t.Fatalf("collector dropped the tombstone while c lacks it: %v %v", s, ok)
	}
	if got := values(tc.node("c").keys[string(key)]); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("c holds %v", got)
	}
	// A read repairs c; then the tombstone is collected everywhere, but
	// not before two confirmations GCGraceTicks apart.
	tc.read("b", Read{ID: 4, Key: key, R: 3})
	if s := tc.node("c").keys[string(key)]; !tombstone(s) {
		t.Fatalf("c not repaired: %v", s)
	}
	tc.ticks(grace)
	if _, ok := tc.node("a").keys[string(key)]; !ok {
		t.Fatal("collected within GCGraceTicks of every replica having the tombstone")
	}
	tc.ticks(2 * grace)
	for _, id := range tc.ids {
		if s, ok := tc.node(id).keys[string(key)]; ok {
			t.Fatalf("%s still holds %v", id, s)
		}
	}
	if tc.node("a").core.Stats().TombstonesGC != 1 {
		t.Fatalf("stats %+v", tc.node("a").core.Stats())
	}
	tc.read("c", Read{ID: 5, Key: key, R: 3})
	if r := tc.result("c", 5); r.Found || len(r.Set.Siblings) != 0 {
		t.Fatalf("read after collection: %+v", r)
	}
}

// TestTombstoneNotCollectedUnderLateCopy: an old copy of the key that lands
// (as a hint) after the first confirmation stops the collection; dropping
// after one confirmation would let the hint bring the deleted value back.
func TestTombstoneNotCollectedUnderLateCopy(t *testing.T) {
	tc := newCluster(t, 4, func(c *Config) { c.Sloppy = true })
	key := tc.keyWith(homesAre("a", "b", "c"))
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v"), W: 3, Time: ts(1)})
	old := tc.result("a", 1).Set
	tc.write("a", Write{ID: 2, Key: key, Delete: true, Context: old.Context, W: 3, Time: ts(2)})
	// Wait for the first round of votes to come in, everyone yes.
	a := tc.node("a").core
	for range 200 {
		tc.ticks(1)
		if _, ok := a.gcOK[string(key)]; ok {
			break
		}
	}
	if _, ok := a.gcOK[string(key)]; !ok {
		t.Fatal("no first confirmation")
	}
	// A store of the old value made before the delete (a write's copy for
	// a stand-in) lands at d now.
	late := Message{Type: MsgStore, From: "b", To: "d", ReqID: 77, Key: key, Set: old, HintFor: "c"}
	if err := tc.node("d").core.Step(late); err != nil {
		t.Fatal(err)
	}
	tc.flush("d")
	tc.deliver()
	tc.ticks(6 * tc.node("a").cfg.GCGraceTicks)
	for _, id := range tc.ids {
		if slices.Contains(values(tc.node(id).keys[string(key)]), "v") {
			t.Fatalf("the deleted value came back on %s", id)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if s, ok := tc.node(id).keys[string(key)]; ok && !tombstone(s) {
			t.Fatalf("%s holds %v", id, s)
		}
	}
	tc.read("b", Read{ID: 3, Key: key, R: 3})
	if r := tc.result("b", 3); len(values(r.Set)) != 0 {
		t.Fatalf("read after the late copy: %+v", r)
	}
}

func TestGCGraceMustExceedRequestTicks(t *testing.T) {
	cfg := testConfig([]string{"a", "b", "c"})
	cfg.ID = "a"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.GCGraceTicks = cfg.RequestTicks
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "GCGraceTicks") {
		t.Fatalf("grace = request ticks accepted: %v", err)
	}
	// The default grace follows a long request timeout.
	cfg.GCGraceTicks, cfg.RequestTicks = 0, 5*DefaultGCGraceTicks
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, tstore{&tnode{}}, State{}); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesBadRequests(t *testing.T) {
	tc := newCluster(t, 3, nil)
	long := bytes.Repeat([]byte("k"), MaxKeyLen+1)
	for i, w := range []Write{
		{Key: []byte("k"), W: 0}, {Key: []byte("k"), W: 4}, {Key: nil, W: 1}, {Key: long, W: 1},
	} {
		w.ID = uint64(i + 1)
		tc.write("a", w)
		if r := tc.result("a", w.ID); !errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("write %+v: %v", w, r.Err)
		}
	}
	for i, r := range []Read{{Key: []byte("k"), R: 0}, {Key: []byte("k"), R: 4}, {Key: nil, R: 1}} {
		r.ID = uint64(i + 10)
		tc.read("a", r)
		if res := tc.result("a", r.ID); !errors.Is(res.Err, ErrInvalid) {
			t.Fatalf("read %+v: %v", r, res.Err)
		}
	}
	if len(tc.sent) != 0 {
		t.Fatalf("refused requests sent %d messages", len(tc.sent))
	}
}

func TestUnavailable(t *testing.T) {
	tc := newCluster(t, 3, func(c *Config) { c.Sloppy = true })
	tc.down("b")
	tc.nodes["c"].down = true
	tc.ticks(10)
	tc.write("a", Write{ID: 1, Key: []byte("k"), Value: []byte("v"), W: 2})
	if r := tc.result("a", 1); !errors.Is(r.Err, ErrUnavailable) {
		t.Fatalf("write: %+v", r)
	}
	tc.read("a", Read{ID: 2, Key: []byte("k"), R: 2})
	if r := tc.result("a", 2); !errors.Is(r.Err, ErrUnavailable) {
		t.Fatalf("read: %+v", r)
	}
	// W=1 needs only a itself.
	tc.write("a", Write{ID: 3, Key: []byte("k"), Value: []byte("v"), W: 1})
	if r := tc.result("a", 3); r.Err != nil {
		t.Fatalf("write W=1: %+v", r)
	}

	// Strict quorum: a coordinator that is no home replica, with every
	// home replica down, has nobody to version a write.
	tc = newCluster(t, 4, nil)
	key := tc.keyWith(homesAre("a", "b", "c"))
	for _, id := range []string{"a", "b", "c"} {
		tc.nodes[id].down = true
	}
	tc.ticks(10)
	tc.write("d", Write{ID: 1, Key: key, Value: []byte("v"), W: 1})
	if r := tc.result("d", 1); !errors.Is(r.Err, ErrUnavailable) {
		t.Fatalf("strict write: %+v", r)
	}
}

// TestMintPrefersUpHome: under a strict quorum the placements include home
// replicas that are down; the write is versioned at one that is up.
func TestMintPrefersUpHome(t *testing.T) {
	tc := newCluster(t, 4, nil)
	key := tc.keyWith(homesAre("a", "b", "c"))
	tc.down("a")
	tc.write("d", Write{ID: 1, Key: key, Value: []byte("v"), W: 2, Time: ts(1)})
	if r := tc.result("d", 1); r.Err != nil || r.Replicas != 2 {
		t.Fatalf("write with the first home replica down: %+v", r)
	}
	for _, m := range tc.sent {
		if m.Type == MsgMint && m.To != "b" {
			t.Fatalf("mint sent to %s", m.To)
		}
	}
}

func TestTimeout(t *testing.T) {
	tc := newCluster(t, 3, nil)
	tc.filter = func(m Message) bool { return m.From != "a" || m.Type != MsgPing } // a hears nothing back
	tc.write("a", Write{ID: 1, Key: []byte("k"), Value: []byte("v"), W: 2})
	tc.read("a", Read{ID: 2, Key: []byte("k"), R: 3})
	if len(tc.node("a").results) != 0 {
		t.Fatalf("early results %+v", tc.node("a").results)
	}
	tc.ticks(tc.node("a").cfg.RequestTicks)
	w, r := tc.result("a", 1), tc.result("a", 2)
	if !errors.Is(w.Err, ErrTimeout) || w.Replicas != 1 || !w.Found {
		t.Fatalf("write: %+v", w)
	}
	if !errors.Is(r.Err, ErrTimeout) || r.Replicas != 1 {
		t.Fatalf("read: %+v", r)
	}
	if st := tc.node("a").core.Stats(); st.Timeouts != 2 {
		t.Fatalf("stats %+v", st)
	}
	if c := tc.node("a").core; len(c.writes)+len(c.reads) != 0 {
		t.Fatal("timed-out requests kept")
	}
}

// TestExpiryOrder: requests that time out together finish in the order
// they were made, every time.
func TestExpiryOrder(t *testing.T) {
	tc := newCluster(t, 3, nil)
	tc.filter = func(m Message) bool { return m.From != "a" }
	c := tc.node("a").core
	var want []uint64
	for i := range 60 {
		id := uint64(1000 - i)
		want = append(want, id)
		if i%2 == 0 {
			c.Propose(Write{ID: id, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v"), W: 3})
		} else {
			c.ProposeRead(Read{ID: id, Key: fmt.Appendf(nil, "k%d", i), R: 3})
		}
	}
	tc.flush("a")
	tc.deliver()
	tc.ticks(tc.node("a").cfg.RequestTicks)
	var got []uint64
	for _, r := range tc.node("a").results {
		got = append(got, r.ID)
	}
	// Writes first, then reads, each in the order made.
	var ws, rs []uint64
	for i, id := range want {
		if i%2 == 0 {
			ws = append(ws, id)
		} else {
			rs = append(rs, id)
		}
	}
	if !slices.Equal(got, append(ws, rs...)) {
		t.Fatalf("results in order %v", got)
	}
}

// TestRequestIDsNeverRepeat: a restarted node draws request ids above
// every id its previous incarnation sent, so a stale ack cannot answer a new
// request; a wiped node (a new actor, its floor back at 0) draws them under
// another prefix.
func TestRequestIDsNeverRepeat(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := tc.keyWith(homesAre("a", "b", "c"))
	seen := map[uint64]bool{}
	collect := func() {
		for _, m := range tc.sent {
			if m.From == "a" && m.ReqID != 0 && m.Type != MsgStoreAck && m.Type != MsgMintAck && m.Type != MsgReadAck && m.Type != MsgGCVote {
				seen[m.ReqID] = true
			}
		}
		tc.sent = nil
	}
	// An acked write whose store acks from b and c are held.
	var held []Message
	tc.filter = func(m Message) bool {
		if m.Type == MsgStoreAck && m.To == "a" {
			held = append(held, m)
			return true
		}
		return false
	}
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v1"), W: 1})
	collect()
	tc.start("a") // crash and restart: the pending state is gone
	tc.filter = func(m Message) bool { return m.Type == MsgStore && m.To != "a" }
	tc.write("a", Write{ID: 2, Key: key, Value: []byte("v2"), W: 3})
	collect()
	// The old acks arrive: they must not count for write 2 (b and c never
	// got it).
	tc.filter = nil
	tc.queue = append(tc.queue, held...)
	tc.deliver()
	if rs := tc.results("a", 2); len(rs) != 0 {
		t.Fatalf("write 2 acknowledged by stale acks: %+v", rs)
	}
	for range 3 {
		tc.read("a", Read{ID: 3, Key: key, R: 3})
		collect()
		tc.start("a")
	}
	tc.wipe("a", "a.2")
	tc.read("a", Read{ID: 4, Key: key, R: 3})
	before := len(seen)
	fresh := map[uint64]bool{}
	for _, m := range tc.sent {
		if m.From == "a" && m.Type == MsgRead {
			if seen[m.ReqID] {
				t.Fatalf("request id %x repeated after a wipe", m.ReqID)
			}
			fresh[m.ReqID] = true
		}
	}
	collect()
	if len(fresh) != 1 || len(seen) != before+1 {
		t.Fatalf("ids: %d before, %d after, %d fresh", before, len(seen), len(fresh))
	}
	// Ids so far: distinct, and within one incarnation under one prefix.
	var prefixes []uint64
	for id := range seen {
		if p := id >> (64 - reqTopBits); !slices.Contains(prefixes, p) {
			prefixes = append(prefixes, p)
		}
	}
	if len(prefixes) != 2 {
		t.Fatalf("%d id prefixes for two actors", len(prefixes))
	}
}

// TestBadMessagesChangeNothing: a message from a non-member, or malformed,
// is refused and leaves the core as it was (not even liveness moves).
func TestBadMessagesChangeNothing(t *testing.T) {
	tc := newCluster(t, 3, nil)
	tc.write("a", Write{ID: 1, Key: []byte("k"), Value: []byte("v"), W: 3})
	tc.down("c") // a and b no longer hear c
	a := tc.node("a")
	before := fmt.Sprint(a.keys, a.hints, a.floor, a.core.Up("c"))
	badSet := vclock.Set{Siblings: []vclock.Sibling{{Dot: vclock.Dot{Node: "x", Counter: 1}}}} // not covered by its context
	badCtx := vclock.Vector{{Node: "z", Counter: 1}, {Node: "y", Counter: 1}}                  // unsorted
	cases := []struct {
		m    Message
		want error
	}{
		{Message{Type: MsgPing, From: "zz", To: "a"}, ErrUnknownPeer},
		{Message{Type: MsgPing, From: "a", To: "a"}, ErrUnknownPeer},
		{Message{Type: MsgPing, From: "c", To: "b"}, ErrMalformed},
		{Message{Type: 0, From: "c", To: "a"}, ErrMalformed},
		{Message{Type: 99, From: "c", To: "a"}, ErrMalformed},
		{Message{Type: MsgStore, From: "c", To: "a", ReqID: 1}, ErrMalformed},
		{Message{Type: MsgStore, From: "c", To: "a", ReqID: 1, Key: []byte("k"), Set: badSet}, ErrMalformed},
		{Message{Type: MsgMint, From: "c", To: "a", ReqID: 1, Key: []byte("k"), Context: badCtx}, ErrMalformed},
		{Message{Type: MsgBuckets, From: "c", To: "a", Items: []Item{{Key: nil}}}, ErrMalformed},
		{Message{Type: MsgBuckets, From: "c", To: "a", Items: []Item{{Key: []byte("k"), Set: badSet}}}, ErrMalformed},
		{Message{Type: MsgRead, From: "c", To: "a", ReqID: 1, Key: bytes.Repeat([]byte("k"), MaxKeyLen+1)}, ErrMalformed},
	}
	for _, cs := range cases {
		err := a.core.Step(cs.m)
		if !errors.Is(err, cs.want) {
			t.Fatalf("%+v: %v, want %v", cs.m, err, cs.want)
		}
		rd, _ := a.core.Ready()
		if !rd.Empty() {
			t.Fatalf("%+v left a Ready: %+v", cs.m, rd)
		}
		if after := fmt.Sprint(a.keys, a.hints, a.floor, a.core.Up("c")); after != before {
			t.Fatalf("%+v changed the node: %s -> %s", cs.m, before, after)
		}
	}
	// Well-formed but unsolicited answers are ignored.
	before = fmt.Sprint(a.keys, a.hints, a.floor)
	for _, m := range []Message{
		{Type: MsgStoreAck, From: "b", To: "a", ReqID: 12345},
		{Type: MsgMintAck, From: "b", To: "a", ReqID: 12345, Key: []byte("k")},
		{Type: MsgReadAck, From: "b", To: "a", ReqID: 12345, Key: []byte("k")},
		{Type: MsgGCVote, From: "b", To: "a", ReqID: 12345, Key: []byte("k"), OK: true},
	} {
		if err := a.core.Step(m); err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if rd, _ := a.core.Ready(); !rd.Empty() {
			t.Fatalf("%+v left a Ready: %+v", m, rd)
		}
	}
	if after := fmt.Sprint(a.keys, a.hints, a.floor); after != before {
		t.Fatalf("unsolicited answers changed the node: %s -> %s", before, after)
	}
}

// TestStoreFailureStops: a store read error is sticky: Ready returns it and
// requests are refused with it.
func TestStoreFailureStops(t *testing.T) {
	tc := newCluster(t, 3, nil)
	boom := errors.New("disk on fire")
	tc.node("a").failGet = boom
	tc.node("a").core.Propose(Write{ID: 1, Key: []byte("k"), Value: []byte("v"), W: 1})
	if _, err := tc.node("a").core.Ready(); !errors.Is(err, boom) || !errors.Is(tc.node("a").core.Err(), boom) {
		t.Fatalf("ready: %v", err)
	}
	tc.node("a").core.Propose(Write{ID: 2, Key: []byte("k"), Value: []byte("v"), W: 1})
	if rs := tc.node("a").core.rd.Results; len(rs) == 0 || !errors.Is(rs[len(rs)-1].Err, boom) {
		t.Fatalf("results %+v", rs)
	}
}

// TestHintRetakenInOneReady: a stand-in whose handoff is acknowledged and
// that takes a newer copy for the same home replica before its next Ready
// must persist the new hint, not its deletion (the runtime applies the
// puts before the deletes), or a crash loses a copy it acknowledged.
func TestHintRetakenInOneReady(t *testing.T) {
	tc := newCluster(t, 4, func(c *Config) { c.Sloppy = true })
	key := tc.keyWith(homesAre("a", "b", "c"))
	tc.down("c")
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v1"), W: 3, Time: ts(1)})
	if len(tc.node("d").hints) != 1 {
		t.Fatal("no hint")
	}
	// c comes back; hold its ack of the handoff.
	var ack *Message
	tc.filter = func(m Message) bool {
		if m.Type == MsgStoreAck && m.From == "c" && m.To == "d" {
			ack = &m
			return true
		}
		return false
	}
	tc.nodes["c"].down = false
	for range 100 {
		if ack != nil {
			break
		}
		tc.ticks(1)
	}
	if ack == nil {
		t.Fatal("no handoff")
	}
	tc.filter = nil
	// In one Ready: the ack (the hint is done) and a newer copy for c.
	newer := tc.node("a").keys[string(key)]
	newer = vclock.Update(newer, newer.Context, vclock.Sibling{Dot: vclock.Dot{Node: "a", Counter: newer.Context.Get("a") + 1}, Time: ts(2), Value: []byte("v2")})
	d := tc.node("d")
	if err := d.core.Step(*ack); err != nil {
		t.Fatal(err)
	}
	store := Message{Type: MsgStore, From: "a", To: "d", ReqID: 99, Key: key, Set: newer, HintFor: "c"}
	if err := d.core.Step(store); err != nil {
		t.Fatal(err)
	}
	tc.flush("d")
	h, ok := d.hints[hintKey("c", key)]
	if !ok || !h.Set.Equal(newer) {
		t.Fatalf("durable hint %v %v, want %v", h, ok, newer)
	}
	tc.start("d")
	if tc.node("d").core.HintsPending()["c"] != 1 {
		t.Fatal("the newer hint is lost in a restart")
	}
}

// TestOneKeyWritePerKey: a Ready lists each key once, with its last state.
func TestOneKeyWritePerKey(t *testing.T) {
	tc := newCluster(t, 3, nil)
	key := []byte("x")
	tc.write("a", Write{ID: 1, Key: key, Value: []byte("v1"), W: 3, Time: ts(1)})
	s1 := tc.result("a", 1).Set
	s2 := vclock.Update(s1, s1.Context, vclock.Sibling{Dot: vclock.Dot{Node: "b", Counter: s1.Context.Get("b") + 1}, Time: ts(2), Value: []byte("v2")})
	s3 := vclock.Update(s2, s2.Context, vclock.Sibling{Dot: vclock.Dot{Node: "b", Counter: s2.Context.Get("b") + 1}, Time: ts(3), Value: []byte("v3")})
	c := tc.node("c").core
	for _, s := range []vclock.Set{s2, s3} {
		if err := c.Step(Message{Type: MsgStore, From: "b", To: "c", Key: key, Set: s}); err != nil {
			t.Fatal(err)
		}
	}
	rd, _ := c.Ready()
	if len(rd.Keys) != 1 || !rd.Keys[0].Set.Equal(s3) {
		t.Fatalf("keys %+v", rd.Keys)
	}
	tc.flush("c")
}

// TestAntiEntropyBucketOverBounds: a bucket holding more shared keys than
// one exchange may carry (AEKeys, or AEBytes) is still repaired in full
// over successive exchanges, and so are the buckets after it.
func TestAntiEntropyBucketOverBounds(t *testing.T) {
	for _, bound := range []struct {
		name string
		mod  func(*Config)
	}{
		{"keys", func(c *Config) { c.AETicks, c.AEKeys = 3, 4 }},
		{"bytes", func(c *Config) { c.AETicks, c.AEBytes = 3, 700 }},
	} {
		t.Run(bound.name, func(t *testing.T) {
			tc := newCluster(t, 3, bound.mod)
			var keys []string
			target := leaf([]byte("k0"))
			for i := 0; len(keys) < 30; i++ {
				if k := fmt.Sprintf("k%d", i); leaf([]byte(k)) == target {
					keys = append(keys, k)
				}
			}
			for i := range 10 {
				keys = append(keys, fmt.Sprintf("other%d", i))
			}
			value := bytes.Repeat([]byte("v"), 100)
			for i, k := range keys {
				tc.write(tc.ids[i%3], Write{ID: uint64(i + 1), Key: []byte(k), Value: value, W: 3, Time: ts(int64(i + 1))})
			}
			tc.wipe("c", "c.2")
			tc.sent = nil
			tc.ticks(600)
			for _, k := range keys {
				if a, c := tc.node("a").keys[k], tc.node("c").keys[k]; !a.Equal(c) {
					t.Fatalf("%s: a has %v, c has %v", k, a, c)
				}
			}
			cfg := tc.node("a").core.cfg
			exchanges := 0
			for _, m := range tc.sent {
				if m.Type != MsgBuckets || len(m.Items) == 0 {
					continue
				}
				exchanges++
				size := 0
				for _, it := range m.Items {
					size += itemBytes(it)
				}
				if len(m.Items) > 1 && (len(m.Items) > cfg.AEKeys || size > cfg.AEBytes) {
					t.Fatalf("%s -> %s: %d items, %d bytes; bounds %d items, %d bytes", m.From, m.To, len(m.Items), size, cfg.AEKeys, cfg.AEBytes)
				}
			}
			t.Logf("%d keys repaired in %d bucket messages", len(keys), exchanges)
		})
	}
}
