package repl

import (
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// BenchmarkReplicate3 measures the core alone (in-memory network and
// storage, no fsync): batches of 64 majority writes on a 3-node cluster.
func BenchmarkReplicate3(b *testing.B) {
	nw := newNet(b, 3, 90)
	l := nw.waitLeader(50)
	c := nw.nodes[l].core
	val := make([]byte, 100)
	const batch = 64
	b.ReportAllocs()
	b.ResetTimer()
	id := uint64(1 << 40)
	for i := 0; i < b.N; i += batch {
		for range batch {
			id++
			if err := c.Propose(Proposal{ID: id, Kind: entry.KindPut, Key: []byte("key"), Value: val, Ack: Ack{Mode: AckMajority}}); err != nil {
				b.Fatal(err)
			}
		}
		nw.deliverAll()
		nw.nodes[l].results = map[uint64]Result{}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkFollowerAppend measures a follower taking MsgApps of 64 entries.
func BenchmarkFollowerAppend(b *testing.B) {
	st := NewMemoryStorage()
	c := mustCore(b, "n1", st, 3)
	val := make([]byte, 100)
	idx := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		es := make([]entry.Entry, 64)
		for j := range es {
			es[j] = entry.Entry{Term: 1, Index: idx + 1 + uint64(j), Kind: entry.KindPut, Key: []byte("k"), Value: val}
		}
		prevTerm := uint64(0)
		if idx > 0 {
			prevTerm = 1
		}
		if err := c.Step(Message{Type: MsgApp, From: "n2", To: "n1", Term: 1, Index: idx, LogTerm: prevTerm, Commit: idx, Entries: es}); err != nil {
			b.Fatal(err)
		}
		idx += 64
		rd := c.Ready()
		if err := st.Persist(&rd); err != nil {
			b.Fatal(err)
		}
		c.Advance(rd)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
