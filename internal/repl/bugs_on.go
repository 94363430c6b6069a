//go:build replbugs

package repl

// Bugs switches on deliberate protocol bugs, to prove that the simulator's
// checkers catch them. Compiled only with the replbugs build tag.
type Bugs struct {
	// VoteWithoutLogCheck grants votes without the "at least as up to date" check.
	VoteWithoutLogCheck bool
	// CommitOldTerm advances the commit index by counting replicas of entries
	// from earlier terms (the Raft paper's figure 8 mistake).
	CommitOldTerm bool
	// LeaseWithoutStickiness makes followers grant votes and pre-votes even when
	// they heard from a live leader recently, so a new leader can be elected
	// while the old one still believes its lease is valid.
	LeaseWithoutStickiness bool
	// NoProbeResend never resends a probe whose MsgApp (or its answer) was
	// lost: the follower stays behind until the next election.
	NoProbeResend bool
	// TwoConfChanges lets the leader start a configuration change while the
	// previous one is not yet committed.
	TwoConfChanges bool
	// SnapshotWithoutChecks installs a snapshot without checking its index
	// against the commit index, and keeps the log after it without checking
	// the term at its index.
	SnapshotWithoutChecks bool
	// AdaptiveUnderLease lets the adaptive detector's learned deadline go
	// below ElectionTicks, for campaigning and for stickiness alike: the
	// leader's lease is then longer than the timeout followers adapted to.
	AdaptiveUnderLease bool
}

func (b Bugs) voteWithoutLogCheck() bool    { return b.VoteWithoutLogCheck }
func (b Bugs) commitOldTerm() bool          { return b.CommitOldTerm }
func (b Bugs) leaseWithoutStickiness() bool { return b.LeaseWithoutStickiness }
func (b Bugs) noProbeResend() bool          { return b.NoProbeResend }
func (b Bugs) twoConfChanges() bool         { return b.TwoConfChanges }
func (b Bugs) snapshotWithoutChecks() bool  { return b.SnapshotWithoutChecks }
func (b Bugs) adaptiveUnderLease() bool     { return b.AdaptiveUnderLease }
