package repl

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
)

// TestRandomizedChurn runs random workloads (every ack mode, reads,
// transfers) under crashes, restarts, partitions and message loss, then heals
// and checks:
//   - at most one leader per term, and no two nodes apply different entries
//     at an index (checked by the harness at every step);
//   - every write acknowledged OK with majority, sync, or semi-sync that
//     reached a majority is in the final log, at its index and term;
//   - every OK async write missing from the final log is in some node's
//     rollback journal;
//   - a successful linearizable read's point covers every majority write
//     acknowledged before the read was issued;
//   - after healing, a leader exists and all nodes converge.
//
// REPL_CHURN_SEEDS=n runs n seeds (default 12); REPL_CHURN_SEED=s runs one.
func TestRandomizedChurn(t *testing.T) {
	seeds := 12
	if v, err := strconv.Atoi(os.Getenv("REPL_CHURN_SEEDS")); err == nil {
		seeds = v
	}
	first := int64(1000)
	if v, err := strconv.ParseInt(os.Getenv("REPL_CHURN_SEED"), 10, 64); err == nil {
		first, seeds = v, 1
	}
	for s := first; s < first+int64(seeds); s++ {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("replay: REPL_CHURN_SEED=%d go test -run TestRandomizedChurn ./internal/repl/", s)
				}
			}()
			runChurn(t, s, nil)
		})
	}
}

type ackedWrite struct {
	node  NodeID
	key   string
	ack   Ack
	res   Result
	step  int
	nodes int
}

type issuedRead struct {
	node NodeID
	id   uint64
	step int
}

func runChurn(t *testing.T, seed int64, trace *[]string, opts ...netOpt) {
	const nNodes = 5
	rng := rand.New(rand.NewSource(seed))
	if rng.Intn(2) == 0 {
		// one entry per MsgApp: exposes interleavings a batch would hide
		opts = append([]netOpt{func(c *Config) { c.MaxMsgBytes = 1 }}, opts...)
	}
	switch rng.Intn(4) {
	case 0:
		opts = append([]netOpt{func(c *Config) { c.PreVote = false }}, opts...)
	case 1:
		opts = append([]netOpt{func(c *Config) { c.CheckQuorum = false }}, opts...)
	case 2:
		opts = append([]netOpt{func(c *Config) {
			c.HeartbeatTicks, c.ElectionTicks, c.LeaseTicks, c.DriftTicks, c.MaxInflightMsgs = 2, 6, 3, 2, 2
		}}, opts...)
	}
	nw := newNet(t, nNodes, seed, opts...)
	nw.trace = trace
	if rng.Intn(2) == 0 {
		nw.reorder = true
		nw.dupRate = 0.05
		nw.delayRate = 0.1
	}
	type propInfo struct {
		node NodeID
		key  string
		ack  Ack
	}
	props := map[uint64]propInfo{}
	var acked []ackedWrite
	var reads []issuedRead
	seen := map[NodeID]map[uint64]bool{}
	collect := func(step int) {
		for _, id := range nw.ids {
			nd := nw.nodes[id]
			if seen[id] == nil {
				seen[id] = map[uint64]bool{}
			}
			for pid, r := range nd.results {
				if seen[id][pid] {
					continue
				}
				seen[id][pid] = true
				p, known := props[pid]
				if r.Outcome == OutcomeOK && known {
					acked = append(acked, ackedWrite{node: id, key: p.key, ack: p.ack, res: r, step: step})
				}
			}
		}
	}
	modes := []Ack{{Mode: AckAsync}, {Mode: AckMajority}, {Mode: AckSync}, {Mode: AckSemiSync, Replicas: 1}, {Mode: AckSemiSync, Replicas: 2}}
	for step := range 400 {
		switch op := rng.Intn(100); {
		case op < 40:
			if l := nw.leader(); l != None {
				ack := modes[rng.Intn(len(modes))]
				key := fmt.Sprintf("s%d", step)
				nw.nextID++
				pid := nw.nextID
				err := nw.nodes[l].core.Propose(Proposal{ID: pid, Kind: 2, Key: []byte(key), Value: []byte(key), Ack: ack, TimeoutTicks: 30})
				if err == nil {
					props[pid] = propInfo{l, key, ack}
				}
			}
		case op < 50:
			// Any node that believes it leads, not only the newest one:
			// a deposed leader must not serve a stale read.
			var claim []NodeID
			for _, id := range nw.ids {
				if nd := nw.nodes[id]; !nd.down && nd.core.role == RoleLeader {
					claim = append(claim, id)
				}
			}
			if len(claim) > 0 {
				l := claim[rng.Intn(len(claim))]
				nw.nextID++
				level := ReadLinearizable
				if rng.Intn(2) == 0 {
					level = ReadIndexOnly
				}
				if err := nw.nodes[l].core.Read(ReadRequest{ID: nw.nextID, Level: level}); err == nil {
					reads = append(reads, issuedRead{l, nw.nextID, step})
				}
			}
		case op < 55:
			id := nw.ids[rng.Intn(nNodes)]
			if nw.nodes[id].down {
				nw.restart(id)
			} else {
				down := 0
				for _, o := range nw.ids {
					if nw.nodes[o].down {
						down++
					}
				}
				if down < 2 {
					nw.crash(id)
				}
			}
		case op < 59:
			nw.heal()
			perm := rng.Perm(nNodes)
			k := 1 + rng.Intn(2)
			var a, b []NodeID
			for i, p := range perm {
				if i < k {
					a = append(a, nw.ids[p])
				} else {
					b = append(b, nw.ids[p])
				}
			}
			nw.partition(a, b)
		case op < 61:
			// cut one link (both ways): a partial partition
			a, b := nw.ids[rng.Intn(nNodes)], nw.ids[rng.Intn(nNodes)]
			if a != b {
				nw.partition([]NodeID{a}, []NodeID{b})
			}
		case op < 63:
			nw.heal()
		case op < 65:
			if l := nw.leader(); l != None {
				_ = nw.nodes[l].core.TransferLeadership(nw.ids[rng.Intn(nNodes)])
			}
		case op < 70:
			nw.dropRate = []float64{0, 0, 0.05, 0.2}[rng.Intn(4)]
			nw.deliverAll()
		default:
			nw.tick(1 + rng.Intn(3))
		}
		nw.deliverAll()
		collect(step)
	}
	// Heal everything and let the cluster settle.
	nw.dropRate, nw.dupRate, nw.delayRate, nw.reorder = 0, 0, 0, false
	nw.heal()
	for _, id := range nw.ids {
		if nw.nodes[id].down {
			nw.restart(id)
		}
	}
	var err error
	for range 100 {
		l := nw.waitLeader(200)
		var pid uint64
		if pid, err = nw.propose(l, "final", majority()); err == nil {
			props[pid] = propInfo{l, "final", majority()}
			break
		}
		nw.tick(1)
	}
	if err != nil {
		t.Fatalf("seed %d: final propose: %v", seed, err)
	}
	nw.tick(60)
	collect(1 << 30)
	nw.checkConverged()
	final := nw.nodes[nw.ids[0]].core.entriesForTest()
	inFinal := func(r Result, key string) bool {
		if r.Index == 0 || r.Index > uint64(len(final)) {
			return false
		}
		e := final[r.Index-1]
		return e.Index == r.Index && e.Term == r.Term && string(e.Key) == key
	}
	journaled := map[string]bool{}
	for _, id := range nw.ids {
		for _, e := range nw.nodes[id].journal {
			journaled[fmt.Sprintf("%d/%d/%s", e.Term, e.Index, e.Key)] = true
		}
	}
	quorum := nNodes/2 + 1
	for _, w := range acked {
		durableOnMajority := w.ack.Mode == AckMajority || w.ack.Mode == AckSync ||
			(w.ack.Mode == AckSemiSync && w.ack.Replicas+1 >= quorum) || w.res.Durability.Committed
		switch {
		case durableOnMajority && !inFinal(w.res, w.key):
			t.Fatalf("seed %d: acknowledged %v write %q at %d/%d lost", seed, w.ack.Mode, w.key, w.res.Term, w.res.Index)
		case !inFinal(w.res, w.key) && !journaled[fmt.Sprintf("%d/%d/%s", w.res.Term, w.res.Index, w.key)]:
			t.Fatalf("seed %d: acknowledged %v write %q at %d/%d lost without a journal record", seed, w.ack.Mode, w.key, w.res.Term, w.res.Index)
		}
	}
	// Reads: the read point covers every majority write acked earlier.
	okReads := 0
	for _, r := range reads {
		res, ok := nw.nodes[r.node].reads[r.id]
		if !ok || res.Err != nil {
			continue
		}
		okReads++
		for _, w := range acked {
			if w.step < r.step && w.ack.Mode == AckMajority && w.res.Index > res.Index {
				t.Fatalf("seed %d: read %d at %d (step %d) misses majority write %q at %d acked at step %d",
					seed, r.id, res.Index, r.step, w.key, w.res.Index, w.step)
			}
		}
	}
	if len(acked) == 0 {
		t.Fatalf("seed %d: no write was acknowledged: the workload tests nothing", seed)
	}
	t.Logf("seed %d: %d writes acknowledged, %d reads served, %d entries, %d terms", seed, len(acked), okReads, len(final), len(nw.leaders))
}

// TestDeterminism runs the same churn seed twice and compares every message
// delivered: the core must depend on nothing but its inputs.
func TestDeterminism(t *testing.T) {
	var traces [2][]string
	for i := range traces {
		runChurn(t, 4242, &traces[i])
	}
	if len(traces[0]) == 0 {
		t.Fatal("empty trace")
	}
	if len(traces[0]) != len(traces[1]) {
		t.Fatalf("traces differ in length: %d vs %d", len(traces[0]), len(traces[1]))
	}
	for i := range traces[0] {
		if traces[0][i] != traces[1][i] {
			t.Fatalf("traces differ at message %d:\n%s\n%s", i, traces[0][i], traces[1][i])
		}
	}
}
