package repl

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// confAtApplied is the configuration in effect at a node's applied index:
// the last configuration entry it applied, else the one it started from.
func confAtApplied(nd *tnode) ConfState {
	for i := len(nd.applied) - 1; i >= 0; i-- {
		if e := nd.applied[i]; e.Kind == entry.KindConfig {
			cs, err := DecodeConf(e.Value)
			if err == nil {
				return cs
			}
		}
	}
	if nd.cfg.Conf != nil {
		return nd.cfg.Conf.Clone()
	}
	return ConfFromPeers(nd.cfg.Peers)
}

// sendSnapshot plays the runtime's snapshot transfer from leader to the node
// `to`: the leader's applied state at its applied index, installed on the
// follower as a runtime would (journal, store, log, RestoreSnapshot), then
// reported to the leader.
func (nw *tnet) sendSnapshot(from *tnode, to NodeID) {
	nw.t.Helper()
	nd := nw.nodes[to]
	if nd == nil || nd.down || nw.cut[[2]NodeID{from.id, to}] {
		from.core.ReportSnapshot(to, 0, false)
		return
	}
	idx := from.appliedIndex()
	term, err := from.st.Term(idx)
	if err != nil {
		// The leader's storage may hold the applied index only as its
		// compaction point, which Term answers too; anything else is a bug.
		nw.t.Fatalf("seed %d: %s: term of applied index %d: %v", nw.seed, from.id, idx, err)
	}
	meta := SnapshotMeta{Index: idx, Term: term, Conf: confAtApplied(from)}
	plan, err := nd.core.PrepareSnapshot(meta)
	if err != nil {
		if !errors.Is(err, ErrStaleSnapshot) {
			nw.t.Fatalf("seed %d: %s: PrepareSnapshot(%+v): %v", nw.seed, to, meta, err)
		}
		from.core.ReportSnapshot(to, idx, true) // stale: it holds it already
		return
	}
	nd.journal = append(nd.journal, plan.Discard...)
	nd.applied = append([]entry.Entry(nil), from.applied...)
	nd.snapshots++
	if !plan.KeepLog {
		nd.st.Reset(meta.Index, meta.Term)
	}
	nd.core.RestoreSnapshot(meta, plan)
	from.core.ReportSnapshot(to, idx, true)
}

// addNode starts a new, empty node that knows the configuration cs (the one
// that adds it), as a node started with --join does.
func (nw *tnet) addNode(id NodeID, cs ConfState) *tnode {
	cfg := DefaultConfig()
	cfg.ID = id
	c := cs.Clone()
	cfg.Conf = &c
	cfg.Rand = rand.New(rand.NewSource(nw.seed*1000 + int64(len(nw.ids))))
	nd := &tnode{id: id, cfg: cfg, st: NewMemoryStorage()}
	nw.nodes[id] = nd
	nw.ids = append(nw.ids, id)
	nw.start(nd)
	return nd
}

// change proposes cc on the leader and settles the network; it returns the
// proposal's error.
func (nw *tnet) change(lead NodeID, cc ConfChange) error {
	nw.nextID++
	err := nw.nodes[lead].core.ProposeConfChange(Proposal{ID: nw.nextID}, cc)
	if err == nil {
		nw.tick(3)
	}
	return err
}

func (nw *tnet) mustChange(lead NodeID, cc ConfChange) {
	nw.t.Helper()
	if err := nw.change(lead, cc); err != nil {
		nw.t.Fatalf("seed %d: change %+v: %v", nw.seed, cc, err)
	}
	if r, ok := nw.nodes[lead].results[nw.nextID]; !ok || r.Outcome != OutcomeOK {
		nw.t.Fatalf("seed %d: change %+v not committed: %+v (found %v)", nw.seed, cc, r, ok)
	}
}

func activeConf(nd *tnode) ConfState { cs, _ := nd.core.Conf(); return cs }

func TestLearnerReplicatesButNeverCounts(t *testing.T) {
	nw := newNet(t, 3, 1)
	lead := nw.waitLeader(100)
	for i := range 5 {
		nw.mustPropose(lead, string(rune('a'+i)), majority())
	}
	nw.tick(2)
	nw.mustChange(lead, ConfChange{Type: ConfAddMember, Member: Member{ID: "n4", Learner: true, Priority: 1, Peer: "p4"}})
	n4 := nw.addNode("n4", activeConf(nw.nodes[lead]))
	nw.tick(5)
	if got, want := n4.appliedIndex(), nw.nodes[lead].appliedIndex(); got != want {
		t.Fatalf("learner applied %d, leader %d", got, want)
	}
	if n4.core.promotable() {
		t.Fatal("a learner may campaign")
	}
	// With both other voters cut off, the learner's copy must not commit.
	for _, id := range nw.ids {
		if id != lead && id != "n4" {
			nw.isolate(id)
		}
	}
	pid := nw.mustPropose(lead, "x", majority())
	nw.tick(3)
	if n4.core.log.lastIndex() != nw.nodes[lead].core.log.lastIndex() {
		t.Fatal("the learner did not receive the entry")
	}
	if r, ok := nw.nodes[lead].results[pid]; ok && r.Outcome == OutcomeOK {
		t.Fatalf("committed with a learner's copy and no other voter: %+v", r)
	}
	if d := nw.nodes[lead].core.durability(nw.nodes[lead].core.log.lastIndex()); d.Replicas != 0 {
		t.Fatalf("the learner counted as a replica: %+v", d)
	}
	// sync waits for every voting follower only: heal, and a sync write
	// finishes even with the learner cut off.
	nw.heal()
	nw.isolate("n4")
	nw.tick(3)
	pid = nw.mustPropose(nw.leader(), "y", Ack{Mode: AckSync})
	nw.tick(3)
	if r := nw.nodes[nw.leader()].results[pid]; r.Outcome != OutcomeOK {
		t.Fatalf("sync write waited for the learner: %+v", r)
	}
}

func TestPromoteNeedsCatchUpThenVotes(t *testing.T) {
	nw := newNet(t, 3, 2, func(c *Config) { c.MaxPromoteLag = 0 })
	lead := nw.waitLeader(100)
	nw.mustChange(lead, ConfChange{Type: ConfAddMember, Member: Member{ID: "n4", Learner: true, Priority: 1}})
	// Not started yet: far behind.
	for i := range 3 {
		nw.mustPropose(lead, string(rune('a'+i)), majority())
	}
	nw.tick(2)
	err := nw.change(lead, ConfChange{Type: ConfPromote, Member: Member{ID: "n4"}})
	if !errors.Is(err, ErrNotCaughtUp) {
		t.Fatalf("promote of a learner that never answered: %v, want ErrNotCaughtUp", err)
	}
	cs := activeConf(nw.nodes[lead])
	n4 := nw.addNode("n4", cs)
	nw.tick(5)
	nw.mustChange(lead, ConfChange{Type: ConfPromote, Member: Member{ID: "n4"}})
	for _, id := range nw.ids {
		if !activeConf(nw.nodes[id]).IsVoter("n4") {
			t.Fatalf("%s does not see n4 as a voter", id)
		}
	}
	if q := nw.nodes[lead].core.quorum; q != 3 {
		t.Fatalf("quorum %d with 4 voters, want 3", q)
	}
	if !n4.core.promotable() {
		t.Fatal("promoted n4 may not campaign")
	}
	// With 4 voters, the leader plus one follower no longer commit.
	var others []NodeID
	for _, id := range nw.ids {
		if id != lead {
			others = append(others, id)
		}
	}
	nw.isolate(others[0])
	nw.isolate(others[1])
	pid := nw.mustPropose(lead, "z", majority())
	nw.tick(3)
	if r, ok := nw.nodes[lead].results[pid]; ok && r.Outcome == OutcomeOK {
		t.Fatalf("committed on 2 of 4 voters: %+v", r)
	}
	if err := nw.change(lead, ConfChange{Type: ConfPromote, Member: Member{ID: "n4"}}); !errors.Is(err, ErrAlreadyVoter) && !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("promote a voter: %v", err)
	}
}

func TestOneConfigurationChangeAtATime(t *testing.T) {
	nw := newNet(t, 3, 3)
	lead := nw.waitLeader(100)
	var others []NodeID
	for _, id := range nw.ids {
		if id != lead {
			others = append(others, id)
		}
	}
	nw.isolate(others[0])
	nw.isolate(others[1])
	nw.nextID++
	if err := nw.nodes[lead].core.ProposeConfChange(Proposal{ID: nw.nextID}, ConfChange{Type: ConfAddMember, Member: Member{ID: "n4", Learner: true}}); err != nil {
		t.Fatal(err)
	}
	nw.nextID++
	err := nw.nodes[lead].core.ProposeConfChange(Proposal{ID: nw.nextID}, ConfChange{Type: ConfAddMember, Member: Member{ID: "n5", Learner: true}})
	if !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("second change while the first is uncommitted: %v, want ErrChangeInProgress", err)
	}
}

func TestBadChangesChangeNothing(t *testing.T) {
	nw := newNet(t, 3, 4)
	lead := nw.waitLeader(100)
	before := activeConf(nw.nodes[lead])
	last := nw.nodes[lead].core.log.lastIndex()
	other := nw.ids[0]
	if other == lead {
		other = nw.ids[1]
	}
	for _, tc := range []struct {
		cc   ConfChange
		want error
	}{
		{ConfChange{Type: ConfAddMember, Member: Member{ID: other}}, ErrDuplicateMember},
		{ConfChange{Type: ConfPromote, Member: Member{ID: "n9"}}, ErrUnknownMember},
		{ConfChange{Type: ConfRemove, Member: Member{ID: "n9"}}, ErrUnknownMember},
		{ConfChange{Type: ConfRemove, Member: Member{ID: lead}}, ErrRemoveLeader},
		{ConfChange{Type: ConfPromote, Member: Member{ID: other}}, ErrAlreadyVoter},
		{ConfChange{Type: ConfAddMember, Member: Member{ID: ""}}, ErrBadConf},
		{ConfChange{Type: 9, Member: Member{ID: "n5"}}, ErrBadConf},
	} {
		if err := nw.change(lead, tc.cc); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.cc, err, tc.want)
		}
	}
	if got := nw.nodes[lead].core.log.lastIndex(); got != last {
		t.Fatalf("a refused change appended: last index %d -> %d", last, got)
	}
	if got := activeConf(nw.nodes[lead]); len(got.Members) != len(before.Members) {
		t.Fatalf("configuration changed: %+v", got)
	}
	// Duplicate addresses.
	nw.mustChange(lead, ConfChange{Type: ConfAddMember, Member: Member{ID: "n4", Learner: true, Peer: "h:1"}})
	if err := nw.change(lead, ConfChange{Type: ConfAddMember, Member: Member{ID: "n5", Learner: true, Peer: "h:1"}}); !errors.Is(err, ErrDuplicateMember) {
		t.Fatalf("duplicate address: %v", err)
	}
	// The last voter.
	nw1 := newNet(t, 1, 5)
	l1 := nw1.waitLeader(100)
	nw1.mustChange(l1, ConfChange{Type: ConfAddMember, Member: Member{ID: "n2", Learner: true}})
	cs := activeConf(nw1.nodes[l1])
	if _, err := cs.apply(ConfChange{Type: ConfRemove, Member: Member{ID: l1}}); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("removing the last voter: %v", err)
	}
}

func TestRemovedFollowerCannotDisrupt(t *testing.T) {
	nw := newNet(t, 3, 6)
	lead := nw.waitLeader(100)
	victim := nw.ids[0]
	if victim == lead {
		victim = nw.ids[1]
	}
	nw.mustChange(lead, ConfChange{Type: ConfRemove, Member: Member{ID: victim}})
	if q := nw.nodes[lead].core.quorum; q != 2 {
		t.Fatalf("quorum %d with 2 voters", q)
	}
	term := nw.nodes[lead].core.term
	// The removed node keeps ticking: it may not campaign (not a voter in
	// its own configuration once the entry reached it), and its messages
	// are refused by the members.
	nw.tick(100)
	v := nw.nodes[victim].core
	if _, idx := v.Conf(); activeConf(nw.nodes[victim]).IsVoter(victim) || v.log.committed < idx {
		t.Fatalf("the removed node does not know it was removed: conf %+v at %d, commit %d", activeConf(nw.nodes[victim]), idx, v.log.committed)
	}
	if len(nw.nodes[lead].core.followers) != 1 {
		t.Fatalf("the leader still tracks %d followers", len(nw.nodes[lead].core.followers))
	}
	if nw.leader() != lead || nw.nodes[lead].core.term != term {
		t.Fatalf("leader %s term %d after removal, want %s term %d", nw.leader(), nw.nodes[lead].core.term, lead, term)
	}
	nw.mustPropose(lead, "after", majority())
	nw.tick(2)
}

func TestTruncatedConfigurationIsUndone(t *testing.T) {
	nw := newNet(t, 3, 7)
	lead := nw.waitLeader(100)
	nw.isolate(lead)
	nw.nextID++
	if err := nw.nodes[lead].core.ProposeConfChange(Proposal{ID: nw.nextID}, ConfChange{Type: ConfAddMember, Member: Member{ID: "n4", Learner: true}}); err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	if _, ok := activeConf(nw.nodes[lead]).Member("n4"); !ok {
		t.Fatal("a configuration did not take effect when appended")
	}
	var rest []NodeID
	for _, id := range nw.ids {
		if id != lead {
			rest = append(rest, id)
		}
	}
	l2 := nw.waitLeader(200, rest...)
	nw.mustPropose(l2, "k", majority())
	nw.heal()
	nw.tick(30)
	if _, ok := activeConf(nw.nodes[lead]).Member("n4"); ok {
		t.Fatal("the old leader kept a configuration whose entry was truncated")
	}
	nw.checkConverged()
}

func TestSnapshotCatchUpAfterCompaction(t *testing.T) {
	nw := newNet(t, 3, 8)
	lead := nw.waitLeader(100)
	lagger := nw.ids[0]
	if lagger == lead {
		lagger = nw.ids[1]
	}
	nw.crash(lagger)
	for i := range 20 {
		nw.mustPropose(lead, string(rune('a'+i)), majority())
		nw.tick(1)
	}
	// Every live node compacts up to its applied index.
	for _, id := range nw.ids {
		nd := nw.nodes[id]
		if !nd.down {
			if err := nd.st.Compact(nd.appliedIndex()); err != nil {
				t.Fatal(err)
			}
		}
	}
	nw.restart(lagger)
	nw.tick(20)
	if nw.nodes[lagger].snapshots == 0 {
		t.Fatal("no snapshot was sent")
	}
	nw.mustPropose(lead, "after", majority())
	nw.tick(5)
	nw.checkConverged()
	if got, want := nw.nodes[lagger].appliedIndex(), nw.nodes[lead].appliedIndex(); got != want {
		t.Fatalf("lagger applied %d, leader %d", got, want)
	}
	for _, f := range nw.nodes[lead].core.Status().Followers {
		if f.State != "replicate" {
			t.Fatalf("follower %s in state %s after catching up", f.ID, f.State)
		}
	}
}

func TestStaleSnapshotRefused(t *testing.T) {
	nw := newNet(t, 3, 9)
	lead := nw.waitLeader(100)
	for i := range 5 {
		nw.mustPropose(lead, string(rune('a'+i)), majority())
	}
	nw.tick(3)
	f := nw.nodes[nw.ids[0]]
	if f.id == lead {
		f = nw.nodes[nw.ids[1]]
	}
	_, err := f.core.PrepareSnapshot(SnapshotMeta{Index: 2, Term: 1, Conf: activeConf(f)})
	if !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("snapshot below the commit index: %v, want ErrStaleSnapshot", err)
	}
	if _, err := f.core.PrepareSnapshot(SnapshotMeta{Index: 100, Term: 1}); !errors.Is(err, ErrMalformedMessage) {
		t.Fatalf("snapshot without a configuration: %v", err)
	}
}

func TestSnapshotJournalsReplacedEntries(t *testing.T) {
	nw := newNet(t, 3, 10)
	old := nw.waitLeader(100)
	nw.isolate(old)
	// Async writes on the isolated leader: durable there only.
	for i := range 3 {
		nw.mustPropose(old, "lost"+string(rune('a'+i)), Ack{Mode: AckAsync})
	}
	nw.deliverAll()
	var rest []NodeID
	for _, id := range nw.ids {
		if id != old {
			rest = append(rest, id)
		}
	}
	l2 := nw.waitLeader(200, rest...)
	for i := range 10 {
		nw.mustPropose(l2, string(rune('a'+i)), majority())
		nw.tick(1)
	}
	for _, id := range rest {
		nd := nw.nodes[id]
		if err := nd.st.Compact(nd.appliedIndex()); err != nil {
			t.Fatal(err)
		}
	}
	nw.heal()
	nw.tick(30)
	o := nw.nodes[old]
	if o.snapshots == 0 {
		t.Fatal("no snapshot")
	}
	lost := 0
	for _, e := range o.journal {
		if e.Kind == entry.KindPut && len(e.Key) > 4 && string(e.Key[:4]) == "lost" {
			lost++
		}
	}
	if lost != 3 {
		t.Fatalf("journal holds %d of the 3 unreplicated writes: %+v", lost, o.journal)
	}
	nw.checkConverged()
}

// A node whose uncommitted configuration removed X must still follow X when
// X leads: X's leadership truncates that configuration. Before the fix the
// node refused X's messages (unknown peer) and never caught up.
func TestLeaderOutsideUncommittedConfIsFollowed(t *testing.T) {
	nw := newNet(t, 3, 11)
	lead := nw.waitLeader(100)
	var rest []NodeID
	for _, id := range nw.ids {
		if id != lead {
			rest = append(rest, id)
		}
	}
	x := rest[0]
	nw.isolate(lead)
	nw.nextID++
	if err := nw.nodes[lead].core.ProposeConfChange(Proposal{ID: nw.nextID}, ConfChange{Type: ConfRemove, Member: Member{ID: x}}); err != nil {
		t.Fatal(err)
	}
	nw.deliverAll()
	if _, ok := activeConf(nw.nodes[lead]).Member(x); ok {
		t.Fatal("the removal did not take effect when appended")
	}
	l2 := nw.waitLeader(200, rest...)
	if l2 != x {
		if err := nw.nodes[l2].core.TransferLeadership(x); err != nil {
			t.Fatal(err)
		}
		nw.tick(20)
		if got := nw.leader(); got != x {
			t.Fatalf("leader %s after transfer to %s", got, x)
		}
	}
	nw.mustPropose(x, "k", majority())
	nw.heal()
	nw.tick(40)
	if _, ok := activeConf(nw.nodes[lead]).Member(x); !ok {
		t.Fatalf("the old leader kept its uncommitted removal of %s: %+v", x, activeConf(nw.nodes[lead]))
	}
	if got := nw.nodes[lead].core.lead; got != x {
		t.Fatalf("the old leader follows %q, want %s", got, x)
	}
	nw.checkConverged()
}

// A follower in state replicate whose unacknowledged entries the leader
// compacted must fall back to a snapshot. Before the fix the leader needed
// the term of next-1 for its empty MsgApp, found it compacted, and stalled
// for good with a full window.
func TestCompactedInflightEntriesFallBackToSnapshot(t *testing.T) {
	nw := newNet(t, 3, 12)
	lead := nw.waitLeader(100)
	f := nw.ids[0]
	if f == lead {
		f = nw.ids[1]
	}
	nw.mustPropose(lead, "first", majority())
	nw.tick(3)
	// The follower stays in replicate, but the MsgApps to it are lost:
	// more than a window of them, so that the leader's next for it stops
	// below its last index, and the compaction below passes next-1.
	nw.cut[[2]NodeID{lead, f}] = true
	for i := range nw.nodes[lead].cfg.MaxInflightMsgs + 20 {
		nw.mustPropose(lead, fmt.Sprintf("k%d", i), majority())
		nw.deliverAll()
	}
	ld := nw.nodes[lead]
	for _, id := range nw.ids {
		if nd := nw.nodes[id]; id != f {
			if err := nd.st.Compact(nd.appliedIndex()); err != nil {
				t.Fatal(err)
			}
		}
	}
	nw.heal()
	nw.tick(30)
	if nw.nodes[f].snapshots == 0 {
		t.Fatal("the follower got no snapshot after its in-flight entries were compacted")
	}
	nw.mustPropose(lead, "after", majority())
	nw.tick(5)
	nw.checkConverged()
	if got, want := nw.nodes[f].appliedIndex(), ld.appliedIndex(); got != want {
		t.Fatalf("follower applied %d, leader %d", got, want)
	}
}

// A campaigning node that installs a snapshot whose configuration leaves it
// out (or makes it a learner) stops campaigning at once (found by the
// simulator, seed 3708: a late duplicate snapshot reached a pre-candidate).
func TestSnapshotWithoutSelfEndsCampaign(t *testing.T) {
	nw := newNet(t, 3, 13)
	lead := nw.waitLeader(100)
	x := nw.ids[0]
	if x == lead {
		x = nw.ids[1]
	}
	for i := range 5 {
		nw.mustPropose(lead, fmt.Sprintf("k%d", i), majority())
		nw.tick(1)
	}
	nw.isolate(x)
	for i := 0; i < 200 && nw.nodes[x].core.role == RoleFollower; i++ {
		nw.tick(1)
	}
	if r := nw.nodes[x].core.role; r != RolePreCandidate && r != RoleCandidate {
		t.Fatalf("the isolated node is %v, want campaigning", r)
	}
	nw.mustPropose(lead, "more", majority())
	nw.tick(3)
	ld := nw.nodes[lead]
	idx := ld.appliedIndex()
	term, err := ld.st.Term(idx)
	if err != nil {
		t.Fatal(err)
	}
	cs := confAtApplied(ld)
	var members []Member
	for _, m := range cs.Members {
		if m.ID != x {
			members = append(members, m)
		}
	}
	meta := SnapshotMeta{Index: idx, Term: term, Conf: ConfState{Members: members}}
	xc := nw.nodes[x].core
	plan, err := xc.PrepareSnapshot(meta)
	if err != nil {
		t.Fatalf("PrepareSnapshot(%+v): %v", meta, err)
	}
	if !plan.KeepLog {
		nw.nodes[x].st.Reset(meta.Index, meta.Term)
	}
	xc.RestoreSnapshot(meta, plan)
	if xc.role != RoleFollower {
		t.Fatalf("after a snapshot without it, the node is %v, want follower", xc.role)
	}
	nw.tick(100)
	if r := xc.role; r != RoleFollower {
		t.Fatalf("a node outside its configuration campaigned again: %v", r)
	}
}

// A snapshot the follower refuses as stale counts as delivered: the leader
// probes after it instead of asking for the same snapshot again (found by
// the simulator, seed 3032: the leader's match for the follower predated its
// compaction point, and every retry was refused as stale).
func TestStaleSnapshotReportMovesProbeForward(t *testing.T) {
	nw := newNet(t, 3, 14)
	lead := nw.waitLeader(100)
	ld := nw.nodes[lead]
	f := nw.ids[0]
	if f == lead {
		f = nw.ids[1]
	}
	for i := range 5 {
		nw.mustPropose(lead, fmt.Sprintf("k%d", i), majority())
		nw.tick(1)
	}
	pr := ld.core.prs[f]
	idx := ld.appliedIndex()
	// The leader's view of f is stale (answers lost) and f's entries up to
	// idx are compacted on the leader.
	pr.match, pr.next = 1, 2
	pr.becomeSnapshot()
	if err := ld.st.Compact(idx); err != nil {
		t.Fatal(err)
	}
	ld.core.ReportSnapshot(f, idx, true)
	if pr.state != stateProbe || pr.next != idx+1 {
		t.Fatalf("after a stale (delivered) snapshot: state %v next %d, want probe at %d", pr.state, pr.next, idx+1)
	}
	nw.mustPropose(lead, "after", majority())
	nw.tick(10)
	if pr.state != stateReplicate || pr.match < idx+1 {
		t.Fatalf("follower %s: state %v match %d, want replicate past %d", f, pr.state, pr.match, idx)
	}
}
