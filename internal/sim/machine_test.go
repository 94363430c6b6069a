package sim

import (
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

func incr(idem string, delta, time, window int64) *command.Command {
	return &command.Command{Op: command.OpIncr, Key: []byte(ctrKey), Delta: delta, IdemKey: []byte(idem), Time: time, IdemWindow: window}
}

// TestMachineIdempotency: a retried command within the window is answered
// from the table; after the window it applies again; expiry drops at most
// idemExpirePerCommand records, oldest first; the cap drops the oldest.
func TestMachineIdempotency(t *testing.T) {
	m := newMachine()
	_, r, _ := m.applyCommand(incr("a", 5, 10, 100), 1, false)
	if !r.Applied || r.Duplicate || r.Int != 5 {
		t.Fatalf("first apply: %+v", r)
	}
	_, r, _ = m.applyCommand(incr("a", 5, 109, 100), 2, false)
	if !r.Duplicate || r.Index != 1 || r.Int != 5 || m.kv[ctrKey].val != "5" {
		t.Fatalf("retry within the window: %+v, counter %q", r, m.kv[ctrKey].val)
	}
	_, r, _ = m.applyCommand(incr("a", 5, 110, 100), 3, false)
	if r.Duplicate || m.kv[ctrKey].val != "10" || m.kv[ctrKey].ver != 3 {
		t.Fatalf("retry after the window: %+v, counter %+v", r, m.kv[ctrKey])
	}
	if _, r, _ = m.applyCommand(incr("a", 5, 111, 100), 4, true); r.Duplicate || m.kv[ctrKey].val != "15" {
		t.Fatalf("ignoreIdem: %+v, counter %q", r, m.kv[ctrKey].val)
	}

	m = newMachine()
	for i := int64(0); i < 20; i++ {
		m.applyCommand(incr(string(rune('a'+i)), 1, i, 10), uint64(i+1), false)
	}
	// Each command drops the records expired by its time: at time 19 the
	// ten of times 0..9 are gone.
	if len(m.idem) != 10 {
		t.Fatalf("%d records after 20 commands, want 10", len(m.idem))
	}
	if n := m.expireIdem(1000, 0); n != idemExpirePerCommand || len(m.idem) != 10-idemExpirePerCommand {
		t.Fatalf("expire dropped %d of 10 records, want %d", n, idemExpirePerCommand)
	}
	m = newMachine()
	for i := int64(0); i < 4; i++ {
		m.applyCommand(incr(string(rune('a'+i)), 1, 0, 1000), uint64(i+1), false)
	}
	if n := m.expireIdem(0, 3); n != 2 {
		t.Fatalf("cap 3 with 4 records dropped %d, want 2 (room for one more)", n)
	}
	if _, ok := m.idem["a"]; ok {
		t.Fatal("the cap kept the oldest record")
	}
}

// TestMachineFingerprint: the hashes of the idempotency table and the term
// history follow the content, not the history of changes.
func TestMachineFingerprint(t *testing.T) {
	fp := func(m machine) string {
		n := &simNode{sm: m}
		return fingerprint(n)
	}
	a, b := newMachine(), newMachine()
	a.applyCommand(incr("x", 1, 0, 5), 1, false)
	a.applyCommand(incr("y", 1, 10, 5), 2, false) // expires x
	b.applyCommand(incr("x", 1, 0, 5), 1, false)
	if fp(a) == fp(b) {
		t.Fatal("different tables, same fingerprint")
	}
	c := a.clone()
	c.noteNoop(3, 2)
	if fp(a) == fp(c) {
		t.Fatal("different term histories, same fingerprint")
	}
	a.noteNoop(3, 2)
	if fp(a) != fp(c) {
		t.Fatalf("equal states, different fingerprints: %s vs %s", fp(a), fp(c))
	}
	if term, ok := a.termAt(3, 3); !ok || term != 2 {
		t.Fatalf("termAt(3) = %d, %t", term, ok)
	}
	if _, ok := a.termAt(2, 3); ok {
		t.Fatal("termAt below the first no-op is known")
	}
	if _, ok := a.termAt(4, 3); ok {
		t.Fatal("termAt above the applied index is known")
	}
}

func cmdEntry(index, term uint64, c *command.Command, req uint64) entry.Entry {
	return entry.Entry{Index: index, Term: term, Kind: entry.KindCommand, Key: c.Key, Value: command.Encode(nil, c), RequestID: req}
}

// TestClientCheckersCatch plants each violation of the command, session,
// bounded-read and CAS checks.
func TestClientCheckersCatch(t *testing.T) {
	put := func(c *cluster, n *simNode, index uint64, key, value string) {
		c.chk.appliedWith(n, entry.Entry{Index: index, Term: 1, Kind: entry.KindPut, Key: []byte(key), Value: []byte(value), RequestID: 1000 + index},
			applyEffect{written: []string{key}})
	}
	tests := []struct {
		name      string
		plant     func(c *cluster, a, b *simNode)
		invariant string
	}{
		{"double apply", func(c *cluster, a, b *simNode) {
			x := incr("x", 1, 10, 100)
			c.chk.appliedWith(a, cmdEntry(1, 1, x, 1), applyEffect{cmd: x, res: command.Result{Applied: true, Index: 1}})
			y := incr("x", 1, 50, 100)
			c.chk.appliedWith(a, cmdEntry(2, 1, y, 2), applyEffect{cmd: y, res: command.Result{Applied: true, Index: 2}})
		}, "double-apply"},
		{"counter over", func(c *cluster, a, b *simNode) {
			a.sm.kv[ctrKey] = kvVal{val: "9", ver: 3}
			c.chk.counterValue(a, 3, []int64{2, 5}, subsetSums([]int64{2, 5}))
		}, "counter-value"},
		{"counter under", func(c *cluster, a, b *simNode) {
			a.sm.kv[ctrKey] = kvVal{val: "2", ver: 3}
			c.chk.counterValue(a, 3, nil, subsetSums(nil))
		}, "counter-value"},
		{"read your writes", func(c *cluster, a, b *simNode) {
			put(c, a, 1, "k", "v1")
			put(c, a, 2, "k", "v2")
			c.wl.ops = []*op{{id: 9, kind: opSessionRead, key: "k", state: opOK, tok: api.Token{Term: 1, Index: 2}, found: true, ver: 1, value: "v1", at: 1}}
			c.chk.sessionReads()
		}, "read-your-writes"},
		{"monotonic reads", func(c *cluster, a, b *simNode) {
			put(c, a, 1, "k", "v1")
			put(c, a, 2, "k", "v2")
			c.wl.ops = []*op{
				{id: 8, kind: opSessionRead, key: "k", state: opOK, found: true, ver: 2, value: "v2", at: 2},
				{id: 9, kind: opSessionRead, key: "k", state: opOK, found: true, ver: 1, value: "v1", at: 1},
			}
			c.chk.sessionReads()
		}, "monotonic-reads"},
		{"silent rollback", func(c *cluster, a, b *simNode) {
			put(c, a, 1, "k", "v1")
			c.wl.ops = []*op{{id: 9, kind: opSessionRead, key: "k", state: opOK, tok: api.Token{Term: 2, Index: 1}, found: true, ver: 1, at: 1}}
			c.chk.sessionReads()
		}, "session-rollback-unseen"},
		{"false rollback", func(c *cluster, a, b *simNode) {
			put(c, a, 1, "k", "v1")
			c.wl.ops = []*op{{id: 9, kind: opSessionRead, key: "k", state: opFailed, rolledBack: true, tok: api.Token{Term: 1, Index: 1}}}
			c.chk.sessionReads()
		}, "session-false-rollback"},
		{"bounded staleness", func(c *cluster, a, b *simNode) {
			c.now = 10
			put(c, a, 1, "k", "v1")
			c.now = 20
			put(c, a, 2, "k", "v2")
			c.wl.ops = []*op{{id: 9, kind: opBoundedRead, key: "k", state: opOK, startTick: 50, maxLag: 20, found: true, ver: 1, at: 1}}
			c.chk.bounded()
		}, "bounded-staleness"},
		{"cas not linearizable", func(c *cluster, a, b *simNode) {
			w := &op{id: 1, kind: opCAS, key: casKey, state: opOK, call: 1, ret: 3, cmd: &command.Command{Op: command.OpSet, Cond: command.CondIndex, Value: []byte("c1")},
				cres: command.Result{Applied: true, Index: 1, Version: 1}}
			c.seq = 2
			x := &command.Command{Op: command.OpSet, Cond: command.CondIndex, Key: []byte(casKey), Value: []byte("c1")}
			c.chk.appliedWith(a, cmdEntry(1, 1, x, 1), applyEffect{cmd: x, res: w.cres, written: []string{casKey}})
			r := &op{id: 2, kind: opCASRead, key: casKey, state: opOK, call: 4, ret: 5, value: "", ver: 0}
			c.wl.ops = []*op{w, r}
			c.chk.casLinearizable()
		}, "cas-linearizability"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, a, b := testCluster(t)
			tc.plant(c, a, b)
			if c.err == nil || c.err.Invariant != tc.invariant {
				t.Fatalf("got %v, want invariant %q", c.err, tc.invariant)
			}
		})
	}
}
