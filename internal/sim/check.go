package sim

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// ident is an entry's identity, comparable.
type ident struct {
	term  uint64
	kind  entry.Kind
	key   string
	value string
	req   uint64
}

func identOf(e entry.Entry) ident {
	return ident{term: e.Term, kind: e.Kind, key: string(e.Key), value: string(e.Value), req: e.RequestID}
}

type logKey struct{ index, term uint64 }

type logRec struct {
	id       ident
	prevTerm uint64
}

// checker holds the ground truth collected across the run.
type checker struct {
	c *cluster
	// committed: index -> the entry some node applied there (all must agree).
	committed  map[uint64]ident
	maxApplied uint64
	// firstApply: request id -> history clock when first applied anywhere.
	firstApply map[uint64]int64
	reqIndex   map[uint64]uint64 // request id -> index where it was applied
	// logs: (index, term) -> entry and previous term, over every durable log.
	logs map[logKey]logRec
	// leaderOf: term -> the node seen leading it.
	leaderOf      map[uint64]repl.NodeID
	maxLeaderTerm uint64
	// mustSurvive: acknowledged writes whose mode guarantees survival.
	mustSurvive []*op
	// journaled: request ids found in some rollback journal.
	journaled map[uint64]bool
	// states: applied index -> fingerprint of the store there (every node
	// that applies or installs that index must hold the same state).
	states map[uint64]string
	// keyWrites: key -> the committed entries that wrote it, in index
	// order, with the tick each was first applied (committed by then).
	keyWrites map[string][]keyWrite
	// cmdRes: index -> the result of the command applied there.
	cmdRes map[uint64]command.Result
	// idemFirst: idempotency key -> the entry that applied it (not as a
	// duplicate) and when its record expires.
	idemFirst map[string]idemApply
}

// keyWrite is one committed write to a key.
type keyWrite struct {
	index uint64
	tick  int64
}

type idemApply struct {
	index  uint64
	expiry int64
}

func newChecker(c *cluster) *checker {
	return &checker{
		c:          c,
		committed:  map[uint64]ident{},
		firstApply: map[uint64]int64{},
		reqIndex:   map[uint64]uint64{},
		logs:       map[logKey]logRec{},
		leaderOf:   map[uint64]repl.NodeID{},
		journaled:  map[uint64]bool{},
		states:     map[uint64]string{},
		keyWrites:  map[string][]keyWrite{},
		cmdRes:     map[uint64]command.Result{},
		idemFirst:  map[string]idemApply{},
	}
}

// persisted checks log matching for entries just made durable on n.
func (k *checker) persisted(n *simNode, ents []entry.Entry) {
	for _, e := range ents {
		prev, err := n.disk.Term(e.Index - 1)
		if err != nil {
			k.c.fail("log-matching", "%s: no term for index %d below a durable entry: %v", n.id, e.Index-1, err)
			return
		}
		if e.Term < prev {
			k.c.fail("log-terms", "%s: entry %s follows an entry of term %d", n.id, describeEntry(e), prev)
			return
		}
		key := logKey{e.Index, e.Term}
		rec := logRec{id: identOf(e), prevTerm: prev}
		if old, ok := k.logs[key]; ok {
			if old != rec {
				k.c.fail("log-matching", "%s: entry %s (prev term %d) differs from another log's entry at the same index and term (%+v, prev term %d)",
					n.id, describeEntry(e), prev, old.id, old.prevTerm)
				return
			}
			continue
		}
		k.logs[key] = rec
	}
}

// applied checks that every node applies the same entry at each index.
func (k *checker) applied(n *simNode, e entry.Entry) {
	var eff applyEffect
	if e.Kind == entry.KindPut || e.Kind == entry.KindDelete {
		eff.written = []string{string(e.Key)}
	}
	k.appliedWith(n, e, eff)
}

// appliedWith is applied with what applying e did on n. The first node to
// apply an index records it: the keys written (and when), a command's
// result; a command with an idempotency key applied again (not as a
// duplicate) while the first application's record is live is a double apply.
func (k *checker) appliedWith(n *simNode, e entry.Entry, eff applyEffect) {
	id := identOf(e)
	if old, ok := k.committed[e.Index]; ok {
		if old != id {
			k.c.fail("committed-changed", "%s applies %s at index %d, but %+v was applied there before", n.id, describeEntry(e), e.Index, old)
		}
		return
	}
	k.committed[e.Index] = id
	if e.Index > k.maxApplied {
		k.maxApplied = e.Index
	}
	for _, key := range eff.written {
		k.keyWrites[key] = append(k.keyWrites[key], keyWrite{index: e.Index, tick: k.c.now})
	}
	if eff.cmd != nil {
		k.cmdRes[e.Index] = eff.res
		if ik := string(eff.cmd.IdemKey); ik != "" && !eff.res.Duplicate {
			if prev, ok := k.idemFirst[ik]; ok && eff.cmd.Time < prev.expiry {
				k.c.fail("double-apply", "%s applies %s at %d as new, but the same idempotency key was applied at %d and its record lives until %d (this command's time %d)",
					n.id, describeEntry(e), e.Index, prev.index, prev.expiry, eff.cmd.Time)
				return
			}
			k.idemFirst[ik] = idemApply{index: e.Index, expiry: eff.cmd.Time + eff.cmd.IdemWindow}
		}
	}
	if e.RequestID != 0 {
		if _, ok := k.firstApply[e.RequestID]; !ok {
			k.firstApply[e.RequestID] = k.c.histNow()
			k.reqIndex[e.RequestID] = e.Index
		}
	}
	for _, o := range k.mustSurvive {
		if o.res.Index == e.Index && o.res.Term != e.Term {
			k.c.fail("acked-lost", "op%d acknowledged (%s) at %d/%d but %s applied %s there", o.id, o.ack.Mode, o.res.Index, o.res.Term, n.id, describeEntry(e))
			return
		}
	}
}

// discarded checks that a truncated entry was never committed.
func (k *checker) discarded(n *simNode, e entry.Entry) {
	if e.RequestID != 0 {
		k.journaled[e.RequestID] = true
	}
	if old, ok := k.committed[e.Index]; ok && old == identOf(e) {
		k.c.fail("committed-discarded", "%s discards %s, which was applied (committed)", n.id, describeEntry(e))
	}
	for _, o := range k.mustSurvive {
		if o.res.Index == e.Index && o.res.Term == e.Term {
			k.c.fail("acked-lost", "%s discards %s, acknowledged to op%d with mode %s", n.id, describeEntry(e), o.id, o.ack.Mode)
			return
		}
	}
}

// guaranteed reports whether an acknowledged write with mode a must survive,
// given the voters of the acknowledging leader's configuration.
func (k *checker) guaranteed(a repl.Ack, voters int) bool {
	switch a.Mode {
	case repl.AckMajority, repl.AckSync:
		return true
	case repl.AckSemiSync:
		return a.Replicas+1 > voters/2
	}
	return false
}

// voters is the number of voters in n's active configuration (the
// configured size for a node without a core, in checker tests).
func (k *checker) voters(n *simNode) int {
	if n.core == nil {
		return k.c.cfg.Nodes
	}
	cs, _ := n.core.Conf()
	return len(cs.Voters())
}

// termAt is the term of entry i in n's log: from the log, or for a
// compacted index from the entry applied there.
func (k *checker) termAt(l *memLog, i uint64) (uint64, error) {
	if i > 0 && i < l.off {
		if id, ok := k.committed[i]; ok {
			return id.term, nil
		}
	}
	return l.Term(i)
}

// acked checks an OK result against the durability it claims.
func (k *checker) acked(n *simNode, o *op) {
	r := o.res
	c := k.c
	// The configuration may have changed while the write was in flight:
	// the core met the mode in one of them. Honest durability is judged
	// against the smaller voter count, the guarantee against the larger.
	voters, most := k.voters(n), k.voters(n)
	if o.voters > 0 {
		voters, most = min(voters, o.voters), max(most, o.mostVoters)
	}
	if t, err := k.termAt(n.disk, r.Index); !c.cfg.EndToEndOnly && (err != nil || t != r.Term || r.Index == 0) {
		c.fail("ack-not-durable", "op%d acknowledged (%s) at %d/%d but the leader %s does not hold it durably (term %d, %v)",
			o.id, o.ack.Mode, r.Index, r.Term, n.id, t, err)
		return
	}
	d := r.Durability
	ok := d.LeaderDurable
	switch o.ack.Mode {
	case repl.AckMajority:
		ok = d.Committed
	case repl.AckSync:
		ok = ok && d.Replicas >= voters-1
	case repl.AckSemiSync:
		ok = ok && d.Replicas >= o.ack.Replicas
	}
	if !ok {
		c.fail("ack-durability", "op%d acknowledged with mode %s/%d but durability %+v", o.id, o.ack.Mode, o.ack.Replicas, d)
		return
	}
	if k.guaranteed(o.ack, most) {
		if id, ok := k.committed[r.Index]; ok && id.term != r.Term {
			c.fail("acked-lost", "op%d acknowledged (%s) at %d/%d but %+v was applied there", o.id, o.ack.Mode, r.Index, r.Term, id)
			return
		}
		k.mustSurvive = append(k.mustSurvive, o)
	}
}

// step runs the per-step checks: one leader per term, leader completeness,
// and the membership checks (confs).
func (k *checker) step() {
	c := k.c
	for _, n := range c.nodes {
		if !n.up {
			continue
		}
		st := n.core.Status()
		if int(st.Term) > c.stats.MaxTerm {
			c.stats.MaxTerm = int(st.Term)
		}
		if k.confs(n, st); c.err != nil {
			return
		}
		if st.Role != repl.RoleLeader {
			continue
		}
		if who, ok := k.leaderOf[st.Term]; ok {
			if who != n.id {
				c.fail("one-leader-per-term", "%s and %s both lead term %d", who, n.id, st.Term)
				return
			}
		} else {
			k.leaderOf[st.Term] = n.id
			c.stats.LeaderChanges++
			c.newLeader(n)
			c.tr.add(c.now, "leader %s term=%d last=%d commit=%d", n.id, st.Term, st.LastIndex, st.Commit)
			if st.Term > k.maxLeaderTerm {
				k.maxLeaderTerm = st.Term
			}
		}
		// Leader completeness, once per term, when the leader's log is
		// all durable and no later leader has been seen.
		if n.leaderChecked != st.Term && !n.waiting && st.LastIndex == n.log.LastIndex() && st.Term == k.maxLeaderTerm {
			n.leaderChecked = st.Term
			k.completeness(n, st.Term)
		}
	}
}

func (k *checker) completeness(n *simNode, term uint64) {
	c := k.c
	for i := uint64(1); i <= k.maxApplied; i++ {
		id, ok := k.committed[i]
		if !ok {
			continue
		}
		if i <= n.log.off {
			continue // compacted: applied to the store, checked by stateAt
		}
		if i > n.log.LastIndex() {
			c.fail("leader-completeness", "%s leads term %d with last index %d but index %d was committed (%+v)", n.id, term, n.log.LastIndex(), i, id)
			return
		}
		e, _ := n.log.at(i)
		if got := identOf(e); got != id {
			c.fail("leader-completeness", "%s leads term %d with %+v at index %d, but %+v was committed there", n.id, term, got, i, id)
			return
		}
	}
	for _, o := range k.mustSurvive {
		t, err := k.termAt(n.log, o.res.Index)
		if err != nil || t != o.res.Term {
			c.fail("leader-completeness", "%s leads term %d without op%d acknowledged (%s) at %d/%d (term there %d, %v)",
				n.id, term, o.id, o.ack.Mode, o.res.Index, o.res.Term, t, err)
			return
		}
	}
}

// final runs the end-of-run checks on a converged cluster.
func (k *checker) final() {
	c := k.c
	li := c.leader()
	l := c.nodes[li]
	commit := l.core.Status().Commit
	// Identical applied state and logs up to the commit index, on every
	// member of the leader's configuration.
	for _, n := range c.members(li) {
		if n == nil {
			c.fail("convergence", "a member of %s's configuration was never started", l.id)
			return
		}
		if n.applied != commit {
			c.fail("convergence", "%s applied %d, leader commit %d", n.id, n.applied, commit)
			return
		}
		if nf, lf := fingerprint(n), fingerprint(l); nf != lf {
			c.fail("convergence", "%s's store is %s, leader %s's is %s", n.id, nf, l.id, lf)
			return
		}
		if n.disk.LastIndex() < commit {
			c.fail("convergence", "%s durable log ends at %d below commit %d", n.id, n.disk.LastIndex(), commit)
			return
		}
		for i := max(n.disk.off, l.disk.off) + 1; i <= commit; i++ {
			ne, _ := n.disk.at(i)
			le, _ := l.disk.at(i)
			if identOf(ne) != identOf(le) {
				c.fail("convergence", "%s and %s differ at committed index %d: %s vs %s", n.id, l.id, i, describeEntry(ne), describeEntry(le))
				return
			}
			if id, ok := k.committed[i]; !ok || id != identOf(le) {
				c.fail("committed-changed", "final log of %s has %s at %d, applied entry was %+v", l.id, describeEntry(le), i, id)
				return
			}
		}
	}
	// Guaranteed writes survive.
	for _, o := range k.mustSurvive {
		id, ok := k.committed[o.res.Index]
		if !ok || o.res.Index > commit || id.term != o.res.Term || id.req != o.id {
			c.fail("acked-lost", "op%d acknowledged (%s/%d) at %d/%d is not in the final state (%+v)", o.id, o.ack.Mode, o.ack.Replicas, o.res.Index, o.res.Term, id)
			return
		}
	}
	// A removed node that never learned of its removal keeps its
	// uncommitted suffix in its durable log, like a stopped node's.
	lcs, _ := l.core.Conf()
	for _, n := range c.nodes {
		_, member := lcs.Member(n.id)
		if !member && n.up {
			for _, e := range n.logAbove(n.core.Status().Commit) {
				if e.RequestID != 0 {
					k.journaled[e.RequestID] = true
				}
			}
		}
	}
	// Acknowledged writes that were lost must be in a rollback journal.
	for _, o := range c.wl.ops {
		if !o.isWrite() {
			continue
		}
		_, applied := k.firstApply[o.id]
		if applied && k.journaled[o.id] {
			c.stats.JournaledApplied++
		}
		if o.state != opOK || applied {
			continue
		}
		c.stats.LostAcked++
		if !k.journaled[o.id] {
			c.fail("lost-unjournaled", "op%d acknowledged (%s/%d) at %d/%d was lost and is in no rollback journal", o.id, o.ack.Mode, o.ack.Replicas, o.res.Index, o.res.Term)
			return
		}
		c.tr.add(c.now, "lost-journaled op%d %s", o.id, o.ack.Mode)
	}
	if k.linearizable(); c.err != nil {
		return
	}
	if k.counters(li); c.err != nil {
		return
	}
	if k.sessions(li); c.err != nil {
		return
	}
	if k.bounded(); c.err != nil {
		return
	}
	k.casLinearizable()
}

// regInput is a register operation for porcupine.
type regInput struct {
	write bool
	value string
}

var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("put(%q)", in.value)
		}
		return fmt.Sprintf("get() -> %q", output)
	},
}

// linearizable checks linearizable reads and writes per key with porcupine.
//
// Writes: one that never took effect anywhere (never applied) is left out; a
// lost acknowledged one is checked by the journal rule instead. One that was
// applied took effect at the latest when it was first applied, so its return
// is the earlier of its answer and its first apply. Reads: successful
// linearizable reads only.
func (k *checker) linearizable() {
	c := k.c
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	add := func(key string, op porcupine.Operation) {
		if _, ok := byKey[key]; !ok {
			keys = append(keys, key)
		}
		byKey[key] = append(byKey[key], op)
	}
	for _, o := range c.wl.ops {
		switch {
		case o.kind == opPut || o.kind == opDelete:
			fa, applied := k.firstApply[o.id]
			if !applied {
				continue
			}
			ret := fa
			if o.state == opOK && o.ret < ret {
				ret = o.ret
			}
			add(o.key, porcupine.Operation{ClientId: o.client, Input: regInput{write: true, value: o.value}, Call: o.call, Output: "", Return: ret})
		case o.kind == opLinRead && o.state == opOK:
			c.stats.ReadsChecked++
			add(o.key, porcupine.Operation{ClientId: o.client, Input: regInput{}, Call: o.call, Output: o.value, Return: o.ret})
		}
	}
	sort.Strings(keys)
	for _, key := range keys {
		h := byKey[key]
		switch porcupine.CheckOperationsTimeout(registerModel, h, 20*time.Second) {
		case porcupine.Illegal:
			viz := ""
			if c.cfg.VisualizePath != "" {
				_, info := porcupine.CheckOperationsVerbose(registerModel, h, 20*time.Second)
				if err := porcupine.VisualizePath(registerModel, info, c.cfg.VisualizePath); err != nil {
					viz = fmt.Sprintf(" (visualization failed: %v)", err)
				} else {
					viz = " (visualization in " + c.cfg.VisualizePath + ")"
				}
			}
			c.fail("linearizability", "history of key %s (%d operations) is not linearizable%s; %s", key, len(h), viz, k.explainStale(key))
			return
		case porcupine.Unknown:
			c.stats.LinUnknown++
		}
	}
}

// explainStale looks for the simplest witness of a non-linearizable key
// history: a read that returned the value of a write at log index i although
// a write at an index above i had completed before the read began.
func (k *checker) explainStale(key string) string {
	wl := k.c.wl
	byValue := map[string]*op{}
	for _, o := range wl.ops {
		if o.kind == opPut && o.key == key {
			byValue[o.value] = o
		}
	}
	for _, r := range wl.ops {
		if r.kind != opLinRead || r.state != opOK || r.key != key {
			continue
		}
		seen := uint64(0)
		if w := byValue[r.value]; w != nil {
			seen = k.reqIndex[w.id]
		}
		for _, w := range wl.ops {
			if (w.kind != opPut && w.kind != opDelete) || w.key != key || w.state != opOK || w.ret >= r.call {
				continue
			}
			if idx, ok := k.reqIndex[w.id]; ok && idx > seen {
				return fmt.Sprintf("stale read: op%d (client %d, node n%d) read %q (log index %d) but op%d %s %q at index %d was acknowledged before the read began",
					r.id, r.client, r.node+1, r.value, seen, w.id, w.kind, w.value, idx)
			}
		}
	}
	return "no single stale read found (replay with -sim.viz=FILE for porcupine's visualization)"
}

// confs checks n's configuration:
//   - a node that is not a voter in its own active configuration (a learner,
//     a removed or joining node) never campaigns or leads;
//   - a leader has at most one configuration entry above its commit index;
//   - once n's log is all durable, its active configuration is the one of
//     the last configuration entry in its log, or, without one, the one of
//     its store (the snapshot's or the one it started from).
func (k *checker) confs(n *simNode, st repl.Status) {
	c := k.c
	cs, idx := n.core.Conf()
	if st.Role != repl.RoleFollower && !cs.IsVoter(n.id) {
		c.fail("learner-campaign", "%s is %s in term %d but is not a voter in its configuration %s (index %d)", n.id, st.Role, st.Term, describeConf(cs), idx)
		return
	}
	if st.Role == repl.RoleLeader {
		var at []uint64
		for _, e := range n.logAbove(st.Commit) {
			if e.Kind == entry.KindConfig {
				at = append(at, e.Index)
			}
		}
		if len(at) > 1 {
			c.fail("one-conf-change", "leader %s (term %d, commit %d) has %d uncommitted configuration entries at %v", n.id, st.Term, st.Commit, len(at), at)
			return
		}
	}
	if n.waiting || len(n.pending) > 0 || st.LastIndex != n.disk.LastIndex() {
		return
	}
	want, from := string(repl.EncodeConf(n.conf)), fmt.Sprintf("its store at %d (conf index %d)", n.applied, n.confIdx)
	for i := n.disk.LastIndex(); i > n.disk.off; i-- {
		if e, _ := n.disk.at(i); e.Kind == entry.KindConfig {
			want, from = string(e.Value), fmt.Sprintf("its last configuration entry %d/%d", e.Index, e.Term)
			break
		}
	}
	if got := string(repl.EncodeConf(cs)); got != want {
		c.fail("active-conf", "%s's active configuration %s (index %d) is not the one of %s: %s", n.id, got, idx, from, want)
	}
}

// fingerprint is n's store state: its keys, values and versions, its
// idempotency table and term history, and the configuration if one was
// applied or installed (confIdx > 0).
func fingerprint(n *simNode) string {
	var b strings.Builder
	n.sm.fingerprint(&b)
	if n.confIdx > 0 {
		fmt.Fprintf(&b, "|conf@%d=%s", n.confIdx, describeConf(n.conf))
	}
	return b.String()
}

// stateAt checks that n's store at its applied index equals every other
// store seen at that index: equal applied state at equal indexes, and a
// snapshot install equal to the leader's state at its index.
func (k *checker) stateAt(n *simNode, how string) {
	fp := fingerprint(n)
	old, ok := k.states[n.applied]
	if !ok {
		k.states[n.applied] = fp
		return
	}
	if old != fp {
		inv := "state-diverged"
		if how == "snapshot" {
			inv = "snapshot-state"
		}
		k.c.fail(inv, "%s's store at index %d (%s) is %s, another store there was %s", n.id, n.applied, how, fp, old)
	}
}

// installed checks a finished snapshot install: a kept log holds the
// snapshot's (index, term), which is committed (Log Matching); the entry
// applied there, if known, has that term.
func (k *checker) installed(n *simNode, meta repl.SnapshotMeta, plan repl.SnapshotPlan) {
	c := k.c
	if id, ok := k.committed[meta.Index]; ok && id.term != meta.Term {
		c.fail("snapshot-mismatch", "%s installed a snapshot at %d/%d but the entry applied there has term %d", n.id, meta.Index, meta.Term, id.term)
		return
	}
	if plan.KeepLog && !n.disk.holds(meta.Index, meta.Term) {
		t, err := n.disk.Term(meta.Index)
		c.fail("snapshot-mismatch", "%s kept its log under a snapshot at %d/%d, but its log has term %d there (%v): a divergent entry is now below its commit index",
			n.id, meta.Index, meta.Term, t, err)
	}
}
