//go:build !llbugs

package leaderless

// Bugs is empty in normal builds: the deliberate protocol bugs exist only
// under the llbugs build tag (bugs_on.go), so production code cannot enable
// them.
type Bugs struct{}

// BugsCompiled reports whether this binary can inject the test-only bugs.
const BugsCompiled = false

func (c *Core) bugs() Bugs { return Bugs{} }

func (Bugs) skipBucket(int) bool { return false }
func (Bugs) earlyGC() bool       { return false }
func (Bugs) dropHint() bool      { return false }
