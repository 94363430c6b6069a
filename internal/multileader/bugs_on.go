//go:build mlbugs

package multileader

import (
	"github.com/trireme-db/trireme/internal/vclock"
)

// Bugs switches on deliberate protocol bugs, to prove that the
// simulator's checks catch them. Compiled only with the mlbugs build tag.
type Bugs struct {
	// WallClockLWW stamps writes with the node's physical clock and ranks
	// LWW by wall time and node id only: no hybrid clock, so a causally
	// later write on a node whose clock lags loses to what it overwrote.
	WallClockLWW bool
	// MergeDropsEntry: the context merge of a write drops one entry (the
	// first node other than the writer).
	MergeDropsEntry bool
	// SkipGap resumes an origin's stream at whatever sequence arrives,
	// past the unacknowledged entries of a gap.
	SkipGap bool
}

// BugsCompiled reports whether this binary can inject the test-only bugs.
const BugsCompiled = true

func (c *Core) bugs() Bugs { return c.cfg.Bugs }

func (b Bugs) wallClockLWW() bool { return b.WallClockLWW }
func (b Bugs) skipGap() bool      { return b.SkipGap }

func (b Bugs) rank(x, y vclock.Sibling) int {
	if !b.WallClockLWW {
		return vclock.Rank(x, y)
	}
	switch {
	case x.Time.Wall != y.Time.Wall:
		return cmp64(x.Time.Wall, y.Time.Wall)
	case x.Dot.Node < y.Dot.Node:
		return -1
	case x.Dot.Node > y.Dot.Node:
		return 1
	}
	return 0
}

func cmp64(a, b int64) int {
	if a < b {
		return -1
	}
	return 1
}

func (b Bugs) dropMergeEntry(s vclock.Set, writer string) vclock.Set {
	if !b.MergeDropsEntry {
		return s
	}
	for i, e := range s.Context {
		if e.Node != writer {
			ctx := append(append(vclock.Vector{}, s.Context[:i]...), s.Context[i+1:]...)
			var sibs []vclock.Sibling
			for _, x := range s.Siblings {
				if ctx.Covers(x.Dot) {
					sibs = append(sibs, x)
				}
			}
			return vclock.Set{Context: ctx, Siblings: sibs}
		}
	}
	return s
}
