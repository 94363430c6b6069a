//go:build !replbugs

package repl

// Bugs is empty in normal builds: the deliberate protocol bugs exist only under
// the replbugs build tag (see bugs_on.go), so production code cannot enable them.
type Bugs struct{}

func (Bugs) voteWithoutLogCheck() bool    { return false }
func (Bugs) commitOldTerm() bool          { return false }
func (Bugs) leaseWithoutStickiness() bool { return false }
func (Bugs) noProbeResend() bool          { return false }
func (Bugs) twoConfChanges() bool         { return false }
func (Bugs) snapshotWithoutChecks() bool  { return false }
func (Bugs) adaptiveUnderLease() bool     { return false }
