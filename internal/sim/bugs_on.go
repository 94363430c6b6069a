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
		AdaptiveUnderLease:     b.AdaptiveUnderLease,
	}
}

// bugAckBeforeFsync reports whether the simulated runtime acknowledges
// (sends, applies, answers, advances) before its disk write is durable.
func bugAckBeforeFsync(b Bugs) bool { return b.AckBeforeFsync }

// bugCompactUndurable reports whether the simulated runtime compacts its log
// up to the store's applied index instead of its durable one.
func bugCompactUndurable(b Bugs) bool { return b.CompactUndurable }

// bugSessionReadEarly reports whether a session read is served at the node
// asked without session.Check (without waiting for the token).
func bugSessionReadEarly(b Bugs) bool { return b.SessionReadEarly }

// bugDuplicateApply reports whether the state machine ignores its
// idempotency table when it applies a command.
func bugDuplicateApply(b Bugs) bool { return b.DuplicateApply }

// bugBoundedNoCheck reports whether a bounded read is served from any read
// point, without session.WithinBound.
func bugBoundedNoCheck(b Bugs) bool { return b.BoundedNoCheck }

// bugSettleEarly reports whether a leader consults session.Settle before it
// has committed an entry of its own term (internal/node's behaviour when
// this simulator found it unsound).
func bugSettleEarly(b Bugs) bool { return b.SettleEarly }
