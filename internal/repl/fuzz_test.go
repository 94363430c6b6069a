package repl

import (
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// FuzzStep checks that no message makes a core panic, in any role. Run with
// go test -fuzz FuzzStep ./internal/repl/ (the seeds run in plain go test).
func FuzzStep(f *testing.F) {
	f.Add(uint8(5), uint8(1), int8(0), uint64(1), uint64(1), uint64(1), false, uint64(0), uint64(0), uint64(0), uint8(2), uint8(0), uint8(2), uint8(0))
	f.Add(uint8(6), uint8(2), int8(1), uint64(0), uint64(99), uint64(0), true, uint64(3), uint64(1), uint64(0), uint8(0), uint8(0), uint8(0), uint8(1))
	f.Add(uint8(3), uint8(1), int8(1), uint64(5), uint64(5), uint64(0), false, uint64(0), uint64(0), uint64(1), uint8(0), uint8(0), uint8(0), uint8(2))
	f.Add(uint8(0), uint8(7), int8(-1), uint64(0), uint64(0), uint64(0), false, uint64(0), uint64(0), uint64(0), uint8(0), uint8(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, typ, from uint8, dterm int8, logTerm, index, commit uint64, reject bool,
		hintTerm, hintIndex, ctx uint64, nEnt, entTerm, kind, role uint8) {
		role %= 3
		nw := newNet(t, 3, 7)
		l := nw.waitLeader(50)
		var c *Core
		switch role {
		case 0:
			c = nw.nodes[l].core
		case 1:
			c = nw.nodes[others(nw, l)[0]].core
		default:
			nw.isolate(l)
			fo := others(nw, l)[0]
			nw.isolate(fo)
			nw.tick(25) // fo pre-votes; l steps down
			c = nw.nodes[fo].core
		}
		ids := []NodeID{"", "n1", "n2", "n3", "x"}
		m := Message{
			Type: MsgType(typ), From: ids[int(from)%len(ids)], To: c.id,
			Term:    uint64(int64(c.term) + int64(dterm)),
			LogTerm: logTerm, Index: index, Commit: commit, Reject: reject,
			HintTerm: hintTerm, HintIndex: hintIndex, Context: ctx,
		}
		for j := range int(nEnt % 8) {
			m.Entries = append(m.Entries, entry.Entry{Term: logTerm + uint64(entTerm%3), Index: index + 1 + uint64(j), Kind: entry.Kind(kind % 6)})
		}
		_ = c.Step(m)
		for range 3 {
			c.Tick()
			for c.HasReady() {
				rd := c.Ready()
				_ = nw.nodes[c.id].st.Persist(&rd)
				c.Advance(rd)
			}
		}
		_ = c.Status()
	})
}
