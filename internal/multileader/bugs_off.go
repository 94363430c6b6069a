//go:build !mlbugs

package multileader

import "github.com/trireme-db/trireme/internal/vclock"

// Bugs is empty in normal builds: the deliberate protocol bugs exist only
// under the mlbugs build tag (bugs_on.go), so production code cannot enable
// them.
type Bugs struct{}

// BugsCompiled reports whether this binary can inject the test-only bugs.
const BugsCompiled = false

func (c *Core) bugs() Bugs { return Bugs{} }

func (Bugs) wallClockLWW() bool { return false }
func (Bugs) skipGap() bool      { return false }

func (Bugs) rank(a, b vclock.Sibling) int { return vclock.Rank(a, b) }

func (Bugs) dropMergeEntry(s vclock.Set, _ string) vclock.Set { return s }
