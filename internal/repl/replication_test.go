package repl

import (
	"fmt"
	"slices"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

func others(nw *tnet, ex ...NodeID) []NodeID {
	var out []NodeID
	for _, id := range nw.ids {
		if !slices.Contains(ex, id) {
			out = append(out, id)
		}
	}
	return out
}

func TestBasicAgreement(t *testing.T) {
	nw := newNet(t, 5, 10)
	l := nw.waitLeader(50)
	var want []string
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		pid := nw.mustPropose(l, k, majority())
		want = append(want, k)
		nw.tick(1)
		if r, ok := nw.nodes[l].results[pid]; !ok || r.Outcome != OutcomeOK || !r.Durability.Committed {
			t.Fatalf("proposal %d: result %+v (present=%v)", pid, r, ok)
		}
	}
	nw.tick(3)
	for _, id := range nw.ids {
		if got := appliedKeys(nw.nodes[id]); !slices.Equal(got, want) {
			t.Fatalf("%s applied %v, want %v", id, got, want)
		}
	}
	nw.checkConverged()
}

func TestFollowerFailureAndNoProgressWithoutMajority(t *testing.T) {
	nw := newNet(t, 3, 11)
	l := nw.waitLeader(50)
	fs := others(nw, l)
	nw.mustPropose(l, "a", majority())
	nw.tick(2)
	nw.crash(fs[0])
	pid := nw.mustPropose(l, "b", majority())
	nw.tick(2)
	if r := nw.nodes[l].results[pid]; r.Outcome != OutcomeOK {
		t.Fatalf("with one follower down: %+v", r)
	}
	// Both followers down: nothing commits.
	nw.crash(fs[1])
	commit := nw.nodes[l].core.log.committed
	pid = nw.mustPropose(l, "c", Ack{Mode: AckMajority})
	nw.tick(5)
	if _, ok := nw.nodes[l].results[pid]; ok {
		t.Fatalf("write finished without a majority: %+v", nw.nodes[l].results[pid])
	}
	if got := nw.nodes[l].core.log.committed; got != commit {
		t.Fatalf("commit moved %d -> %d without a majority", commit, got)
	}
	// Restart both: the leader (if still leading) or a new one commits.
	nw.restart(fs[0])
	nw.restart(fs[1])
	nl := nw.waitLeader(60)
	nw.mustPropose(nl, "d", majority())
	nw.tick(30)
	nw.checkConverged()
	keys := appliedKeys(nw.nodes[nl])
	for _, k := range []string{"a", "b", "d"} {
		if !slices.Contains(keys, k) {
			t.Fatalf("applied %v lacks %q", keys, k)
		}
	}
}

func TestLeaderFailure(t *testing.T) {
	nw := newNet(t, 3, 12)
	l1 := nw.waitLeader(50)
	nw.mustPropose(l1, "a", majority())
	nw.tick(2)
	nw.crash(l1)
	l2 := nw.waitLeader(60)
	nw.mustPropose(l2, "b", majority())
	nw.tick(2)
	nw.crash(l2)
	// One node left of three: no leader, no progress.
	nw.tick(60)
	if got := nw.leader(); got != None {
		t.Fatalf("leader %s with only one live node", got)
	}
	nw.restart(l1)
	nw.restart(l2)
	l3 := nw.waitLeader(60)
	nw.mustPropose(l3, "c", majority())
	nw.tick(20)
	nw.checkConverged()
	if got, want := appliedKeys(nw.nodes[l3]), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
}

func TestRejoinOfPartitionedLeader(t *testing.T) {
	nw := newNet(t, 3, 13)
	l1 := nw.waitLeader(50)
	nw.mustPropose(l1, "committed", majority())
	nw.tick(2)
	nw.isolate(l1)
	// Async writes on the cut-off leader: acknowledged after the leader's fsync.
	var async []uint64
	for i := range 3 {
		async = append(async, nw.mustPropose(l1, fmt.Sprintf("lost%d", i), Ack{Mode: AckAsync}))
	}
	nw.deliverAll()
	nw.deliverAll()
	for _, pid := range async {
		r, ok := nw.nodes[l1].results[pid]
		if !ok || r.Outcome != OutcomeOK || !r.Durability.LeaderDurable || r.Durability.Committed || r.Durability.Replicas != 0 {
			t.Fatalf("async result %d: %+v (present=%v)", pid, r, ok)
		}
	}
	rest := others(nw, l1)
	l2 := nw.waitLeader(60, rest...)
	nw.mustPropose(l2, "new", majority())
	nw.tick(2)
	nw.heal()
	nw.tick(30)
	if nw.nodes[l1].core.role == RoleLeader {
		t.Fatal("old leader still leads after rejoining")
	}
	nw.checkConverged()
	var journaled []string
	for _, e := range nw.nodes[l1].journal {
		journaled = append(journaled, string(e.Key))
	}
	if want := []string{"lost0", "lost1", "lost2"}; !slices.Equal(journaled, want) {
		t.Fatalf("old leader journaled %v, want %v", journaled, want)
	}
	keys := appliedKeys(nw.nodes[l1])
	if slices.Contains(keys, "lost0") || !slices.Contains(keys, "new") || !slices.Contains(keys, "committed") {
		t.Fatalf("old leader applied %v", keys)
	}
}

// TestFastBackup builds a long divergent uncommitted suffix on a cut-off
// leader and checks that catching up takes far fewer rejections than the
// divergence length.
func TestFastBackup(t *testing.T) {
	const n = 200
	nw := newNet(t, 7, 14)
	l1 := nw.waitLeader(50)
	nw.mustPropose(l1, "base", majority())
	nw.tick(2)
	f1 := others(nw, l1)[0]
	minority := []NodeID{l1, f1}
	maj := others(nw, l1, f1)
	nw.partition(minority, maj)
	for i := range n {
		nw.mustPropose(l1, fmt.Sprintf("old%d", i), Ack{Mode: AckAsync})
	}
	nw.deliverAll()
	l2 := nw.waitLeader(60, maj...)
	for i := range n {
		nw.mustPropose(l2, fmt.Sprintf("new%d", i), majority())
	}
	nw.tick(3)
	// A third leader, so that the leader that repairs the minority has a
	// long log of its own and starts probing far beyond the divergence point.
	nw.isolate(l2)
	l3 := nw.waitLeader(60, others(nw, l1, f1, l2)...)
	for i := range n {
		nw.mustPropose(l3, fmt.Sprintf("newer%d", i), majority())
	}
	nw.tick(3)
	nw.heal()
	nw.isolate(l2)
	nw.rejects = 0
	apps := nw.sent[MsgApp]
	nw.tick(30)
	nw.heal()
	nw.tick(30)
	nw.checkConverged()
	if nw.rejects == 0 || nw.rejects > 6 {
		t.Fatalf("%d rejected appends to back up over %d divergent entries; want 1..6", nw.rejects, n)
	}
	t.Logf("rejections %d, MsgApps %d", nw.rejects, nw.sent[MsgApp]-apps)
	if len(nw.nodes[l1].journal) != n+0 || len(nw.nodes[f1].journal) != n {
		t.Fatalf("journals: %s %d, %s %d; want %d", l1, len(nw.nodes[l1].journal), f1, len(nw.nodes[f1].journal), n)
	}
}

func TestPersistenceAcrossRestarts(t *testing.T) {
	nw := newNet(t, 3, 15)
	l := nw.waitLeader(50)
	for i := range 5 {
		nw.mustPropose(l, fmt.Sprintf("k%d", i), majority())
	}
	nw.tick(3)
	before := nw.nodes[l].core.Status()
	for _, id := range nw.ids {
		nw.crash(id)
	}
	for _, id := range nw.ids {
		nw.restart(id)
		st := nw.nodes[id].core.Status()
		if st.Term < before.Term || st.LastIndex < before.Commit {
			t.Fatalf("%s restarted at term %d last %d; before: term %d commit %d", id, st.Term, st.LastIndex, before.Term, before.Commit)
		}
	}
	l2 := nw.waitLeader(60)
	nw.mustPropose(l2, "after", majority())
	nw.tick(5)
	nw.checkConverged()
	// Restart with an empty store (Applied 0): entries are re-applied.
	nd := nw.nodes[l2]
	nw.crash(l2)
	nd.applied = nil
	nw.restart(l2)
	nw.tick(30)
	nw.checkConverged()
	if got := appliedKeys(nd); !slices.Equal(got, []string{"k0", "k1", "k2", "k3", "k4", "after"}) {
		t.Fatalf("re-applied %v", got)
	}
}

// TestFigure8 repeatedly crashes leaders mid-replication and checks (in the
// harness) that no two nodes ever apply different entries at an index.
func TestFigure8(t *testing.T) {
	for seed := int64(100); seed < 108; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			nw := newNet(t, 5, seed)
			rng := nw.rng
			k := 0
			for iter := range 60 {
				if l := nw.leader(); l != None {
					k++
					_, _ = nw.propose(l, fmt.Sprintf("k%d", k), Ack{Mode: AckAsync})
					if rng.Intn(2) == 0 {
						// deliver only part of the traffic
						nw.deliverAll()
					}
					if rng.Intn(3) == 0 {
						nw.crash(l)
					}
				}
				nw.tick(1 + rng.Intn(15))
				live := 0
				for _, id := range nw.ids {
					if !nw.nodes[id].down {
						live++
					}
				}
				if live < 3 {
					for _, id := range nw.ids {
						if nw.nodes[id].down && rng.Intn(2) == 0 {
							nw.restart(id)
						}
					}
				}
				_ = iter
			}
			for _, id := range nw.ids {
				if nw.nodes[id].down {
					nw.restart(id)
				}
			}
			l := nw.waitLeader(100)
			nw.mustPropose(l, "final", majority())
			nw.tick(40)
			nw.checkConverged()
		})
	}
}

func TestUnreliableAgreement(t *testing.T) {
	seed := int64(16)
	nw := newNet(t, 5, seed)
	nw.dropRate = 0.1
	var want []string
	for i := range 30 {
		l := nw.leader()
		if l == None {
			nw.tick(5)
			continue
		}
		k := fmt.Sprintf("k%d", i)
		if _, err := nw.propose(l, k, majority()); err == nil {
			want = append(want, k)
		}
		nw.tick(2)
	}
	nw.dropRate = 0
	nw.tick(60)
	nw.checkConverged()
	if nw.leader() == None {
		t.Fatalf("seed %d: no leader after the network became reliable", seed)
	}
}

// figure8 replays the Raft paper's figure 8 with five nodes and reports how
// many times two nodes applied different entries at the same index. Initial
// logs (index:term): n1 and n2 hold 1:1 2:2, n3 and n4 hold 1:1, n5 holds
// 1:1 2:3. n1 is elected in term 4 and brings n3 up to entry 2 (an entry of
// term 2) but no further, while n2 has n1's term-4 no-op. n1 and n2 then
// crash; n5 is elected by n3 and n4 and overwrites entry 2. Entry 2 must
// therefore never have been committed by n1.
func figure8(t *testing.T, opts ...netOpt) int {
	t.Helper()
	opts = append([]netOpt{func(c *Config) { c.MaxMsgBytes = 1 }}, opts...)
	nw := newNet(t, 5, 8, opts...)
	nw.countDivergence = true
	logs := map[NodeID][]uint64{"n1": {1, 2}, "n2": {1, 2}, "n3": {1}, "n4": {1}, "n5": {1, 3}}
	for _, id := range nw.ids {
		nw.crash(id)
		nd := nw.nodes[id]
		nd.st = NewMemoryStorage()
		mustAppend(t, nd.st, ents(logs[id]...)...)
		nd.st.SetHardState(HardState{Term: 3, Commit: 1})
		nd.applied = nil
	}
	for _, id := range []NodeID{"n1", "n2", "n3", "n4"} {
		nw.restart(id)
	}
	// n1 campaigns at once (a transfer-style campaign: no stickiness).
	n1 := nw.nodes["n1"].core
	if err := n1.Step(Message{Type: MsgTimeoutNow, From: "n2", To: "n1", Term: 3}); err != nil {
		t.Fatal(err)
	}
	// n3 gets entry 2 but never entry 3; n4 gets no entries.
	nw.cut[[2]NodeID{"n1", "n4"}] = true
	for range 100 {
		moved := false
		for _, id := range nw.ids {
			for nw.process(nw.nodes[id]) {
				moved = true
			}
		}
		q := nw.queue
		nw.queue = nil
		for _, m := range q {
			moved = true
			if m.Type == MsgApp && m.From == "n1" && m.To == "n4" && len(m.Entries) > 0 {
				continue
			}
			if m.Type == MsgApp && m.From == "n1" && m.To == "n3" {
				// strip entry 3 and beyond
				var keep []entry.Entry
				for _, e := range m.Entries {
					if e.Index < 3 {
						keep = append(keep, e)
					}
				}
				m.Entries = keep
			}
			nw.deliver(m)
		}
		if !moved {
			break
		}
	}
	if n1.role != RoleLeader || n1.term != 4 {
		t.Fatalf("setup: n1 is %v at term %d", n1.role, n1.term)
	}
	if got := nw.nodes["n3"].core.log.lastIndex(); got != 2 {
		t.Fatalf("setup: n3 holds up to %d, want 2", got)
	}
	nw.crash("n1")
	nw.crash("n2")
	nw.restart("n5")
	nw.heal()
	if l := nw.waitLeader(100); l != "n5" {
		t.Fatalf("setup: %s elected, want n5", l)
	}
	nw.tick(10)
	return nw.divergences
}

func TestFigure8CommitRule(t *testing.T) {
	if d := figure8(t); d != 0 {
		t.Fatalf("%d divergent applies: an old-term entry was committed by counting replicas", d)
	}
}
