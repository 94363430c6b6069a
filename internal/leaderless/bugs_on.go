//go:build llbugs

package leaderless

// Bugs switches on deliberate protocol bugs, to prove that the simulator's
// checks catch them. Compiled only with the llbugs build tag.
type Bugs struct {
	// DropHint: a stand-in acknowledges a hinted copy but drops the hint
	// when it first tries to hand it over, without handing it over.
	DropHint bool
	// SkipMerkleRange: anti-entropy ignores differences in the upper half
	// of the buckets.
	SkipMerkleRange bool
	// EarlyGC: the collector drops a tombstone without asking whether every
	// replica has it.
	EarlyGC bool
}

// BugsCompiled reports whether this binary can inject the test-only bugs.
const BugsCompiled = true

func (c *Core) bugs() Bugs { return c.cfg.Bugs }

func (b Bugs) skipBucket(i int) bool { return b.SkipMerkleRange && i >= 1<<(MerkleDepth-1) }
func (b Bugs) earlyGC() bool         { return b.EarlyGC }
func (b Bugs) dropHint() bool        { return b.DropHint }
