package repl

import (
	"fmt"

	"github.com/trireme-db/trireme/internal/entry"
)

// SnapshotMeta identifies a snapshot: the store at an applied index, the
// term of the entry at that index, and the configuration in effect there.
type SnapshotMeta struct {
	Index uint64
	Term  uint64
	Conf  ConfState
}

// SnapshotPlan is what installing a snapshot does to the local log, for the
// runtime to carry out before RestoreSnapshot.
type SnapshotPlan struct {
	// KeepLog: the log holds the snapshot's entry (same index and term), so
	// by the Log Matching property everything up to it matches, and the
	// entries after it are kept. Otherwise the whole log is replaced by an
	// empty one that starts after the snapshot's index.
	KeepLog bool
	// Discard are the entries above the commit index that the replacement
	// removes: write them to the rollback journal durably first. Some of
	// those at or below the snapshot's index may in fact be in the leader's
	// log (there is no longer a way to tell); the journal says "may".
	Discard []entry.Entry
}

// votingFollowers is the number of followers that vote.
func (c *Core) votingFollowers() int {
	n := 0
	for _, pr := range c.followers {
		if !pr.learner {
			n++
		}
	}
	return n
}

// PrepareSnapshot checks that a snapshot received from the leader may be
// installed, and says what installing it does to the log. It changes
// nothing. A snapshot must be newer than the commit index: the local log
// already holds, committed, everything an older one holds
// (ErrStaleSnapshot). Installing committed state is safe whatever the
// current term: it is part of every future leader's log.
func (c *Core) PrepareSnapshot(meta SnapshotMeta) (SnapshotPlan, error) {
	if meta.Index == 0 || meta.Term == 0 || meta.Term >= MaxTerm {
		return SnapshotPlan{}, fmt.Errorf("%w: snapshot at index %d term %d", ErrMalformedMessage, meta.Index, meta.Term)
	}
	if err := meta.Conf.Validate(); err != nil {
		return SnapshotPlan{}, fmt.Errorf("%w: snapshot configuration: %v", ErrMalformedMessage, err)
	}
	checks := !c.bugs.snapshotWithoutChecks()
	if checks && meta.Index <= c.log.committed {
		return SnapshotPlan{}, fmt.Errorf("%w: snapshot index %d, commit index %d", ErrStaleSnapshot, meta.Index, c.log.committed)
	}
	// Keeping the log needs the snapshot's entry durable here: the store
	// will be ahead of anything not yet written.
	if meta.Index <= c.log.stableIndex() && (c.log.matchTerm(meta.Index, meta.Term) || !checks) {
		return SnapshotPlan{KeepLog: true}, nil
	}
	var discard []entry.Entry
	if last := c.log.lastIndex(); last > c.log.committed {
		ents, err := c.log.entries(c.log.committed+1, last+1, 0)
		if err != nil {
			return SnapshotPlan{}, fmt.Errorf("repl: reading entries the snapshot replaces: %w", err)
		}
		discard = ents
	}
	return SnapshotPlan{Discard: discard}, nil
}

// RestoreSnapshot makes the core continue from a snapshot the runtime has
// installed: the store holds the state at meta.Index, and the storage's log
// was carried out per PrepareSnapshot's plan (kept, or replaced by an empty
// log with FirstIndex meta.Index+1 and Term(meta.Index) == meta.Term). Call
// it right after PrepareSnapshot returned that plan, with no Ready handed
// out and not yet advanced in between. It acknowledges the snapshot to the
// leader (known leader only).
func (c *Core) RestoreSnapshot(meta SnapshotMeta, plan SnapshotPlan) {
	l := c.log
	if plan.KeepLog {
		l.commitTo(meta.Index)
		if meta.Index > l.applying {
			l.applying = meta.Index
		}
		if meta.Index > l.applied {
			l.applied = meta.Index
		}
		l.trimKept()
	} else {
		if len(plan.Discard) > 0 {
			c.logger.Info("snapshot replaces uncommitted entries", "from", plan.Discard[0].Index, "count", len(plan.Discard))
		}
		l.unstable, l.kept, l.keptBytes = nil, nil, 0
		l.offset = l.storage.LastIndex() + 1
		l.handed = l.offset - 1
		l.committed = meta.Index
		l.applying, l.applied = meta.Index, meta.Index
		c.confs = confs{{index: meta.Index, cs: meta.Conf.Clone()}}
		c.setConf(meta.Conf.Clone())
	}
	// The discarded entries' Results (on a deposed leader) are already
	// answered: the core stopped leading before it could follow.
	c.logger.Info("snapshot restored", "index", meta.Index, "term", meta.Term, "kept_log", plan.KeepLog)
	if c.lead != None && c.role == RoleFollower {
		c.send(Message{Type: MsgAppResp, To: c.lead, Term: c.term, Index: meta.Index})
	}
}

// ReportSnapshot tells the leader that sending a snapshot to id ended.
// After a failure the follower goes back to probing (a new snapshot is asked
// for after a heartbeat round); after a success it is probed at the
// snapshot's index + 1 unless its acknowledgement already arrived. A
// snapshot the follower refused as stale (ErrStaleSnapshot: its commit index
// is at or above the snapshot's) is a success: it holds every entry the
// snapshot covers, and those match the leader's (they are committed).
// Reporting it as a failure would loop: the leader's knowledge of the
// follower's match may predate its compaction point, so probing from there
// asks for the same snapshot again (found by the simulator, seed 3032).
func (c *Core) ReportSnapshot(id NodeID, index uint64, ok bool) {
	if c.role != RoleLeader {
		return
	}
	pr := c.prs[id]
	if pr == nil || pr.state != stateSnapshot {
		return
	}
	next := pr.match + 1
	if ok && index > pr.match {
		next = index + 1
	}
	pr.becomeProbe(next)
	// Wait for a heartbeat round before probing (see handleHeartbeatResp):
	// a failed transfer is not retried in a tight loop.
	pr.probeSent = true
	pr.sentRound = c.rs.ctx
}
