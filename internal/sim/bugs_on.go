//go:build replbugs

package sim

import "github.com/trireme-db/trireme/internal/repl"

// bugsCompiled reports whether this binary can inject the test-only bugs.
const bugsCompiled = true

// applyCoreBugs switches on the core's test-only bugs.
func applyCoreBugs(cfg *repl.Config, b Bugs) {
	cfg.Bugs = repl.Bugs{
		VoteWithoutLogCheck:    b.VoteWithoutLogCheck,
		CommitOldTerm:          b.CommitOldTerm,
		LeaseWithoutStickiness: b.LeaseWithoutStickiness,
		NoProbeResend:          b.NoProbeResend,
		TwoConfChanges:         b.TwoConfChanges,
		SnapshotWithoutChecks:  b.SnapshotWithoutChecks,
	}
}

// bugAckBeforeFsync reports whether the simulated runtime acknowledges
// (sends, applies, answers, advances) before its disk write is durable.
func bugAckBeforeFsync(b Bugs) bool { return b.AckBeforeFsync }

// bugCompactUndurable reports whether the simulated runtime compacts its log
// up to the store's applied index instead of its durable one.
func bugCompactUndurable(b Bugs) bool { return b.CompactUndurable }
