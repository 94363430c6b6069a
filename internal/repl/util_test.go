package repl

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// ents builds no-op entries with the given terms at indexes 1, 2, ...
func ents(terms ...uint64) []entry.Entry {
	out := make([]entry.Entry, len(terms))
	for i, t := range terms {
		out[i] = entry.Entry{Term: t, Index: uint64(i + 1), Kind: entry.KindNoop}
	}
	return out
}

func mustAppend(t testing.TB, st *MemoryStorage, es ...entry.Entry) {
	t.Helper()
	if err := st.Append(es); err != nil {
		t.Fatal(err)
	}
}

// mustCore builds a core for node id in a cluster of n nodes n1..nn.
func mustCore(t testing.TB, id NodeID, st Storage, n int, opts ...netOpt) *Core {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = id
	for i := range n {
		cfg.Peers = append(cfg.Peers, Peer{ID: NodeID(fmt.Sprintf("n%d", i+1)), Priority: 1})
	}
	cfg.Rand = rand.New(rand.NewSource(1))
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
