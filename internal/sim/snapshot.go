package sim

import (
	"errors"

	"github.com/trireme-db/trireme/internal/repl"
)

// snapTransfer is a snapshot on its way from a leader to a follower: the
// leader's store at its applied index (keys, idempotency table, term
// history), with the configuration there.
type snapTransfer struct {
	due     int64
	from    int
	to      int
	core    *repl.Core // the sender's core, to report to; nil for a late duplicate (never reported)
	meta    repl.SnapshotMeta
	confIdx uint64
	sm      machine
	seq     int
}

func (t *snapTransfer) kind() string {
	if t.core == nil {
		return "dup"
	}
	return "orig"
}

// snapDelay is how long a transfer of a store of size keys takes: a
// network delay, a quarter tick per key, and a random share of SnapDelayMax.
func (c *cluster) snapDelayMax() int {
	if d := c.cfg.Faults.SnapDelayMax; d > 0 {
		return d
	}
	return 4 * c.cfg.Faults.DelayMax
}

// sendSnapshot starts the transfer of from's store to the member id, as the
// leader's runtime does for each entry of Ready.Snapshots. With SnapDup a
// second copy arrives much later (a retransmission, a slow connection): it
// is never reported, and the receiver must refuse it if it is stale.
func (c *cluster) sendSnapshot(from *simNode, id repl.NodeID) {
	to := c.nodeIndex(id)
	if to < 0 {
		c.tr.add(c.now, "snapshot %s -> %s: unknown node", from.id, id)
		from.core.ReportSnapshot(id, 0, false)
		return
	}
	f := c.cfg.Faults
	meta := repl.SnapshotMeta{Index: from.applied, Term: from.appliedTerm, Conf: from.conf.Clone()}
	size := len(from.sm.kv) + 1
	dmax := c.snapDelayMax()
	due := c.now + int64(f.DelayMin+size/4+c.rng.Intn(dmax-f.DelayMin+1))
	c.snapSeq++
	t := &snapTransfer{due: due, from: from.idx, to: to, core: from.core, meta: meta, confIdx: from.confIdx, sm: from.sm.clone(), seq: c.snapSeq}
	c.snaps = append(c.snaps, t)
	c.stats.SnapshotsSent++
	c.tr.add(c.now, "snapshot-send %s -> %s index=%d term=%d keys=%d due=%d conf=%s", from.id, id, meta.Index, meta.Term, len(t.sm.kv), due, describeConf(meta.Conf))
	if c.chance(f.SnapDup) {
		d := *t
		d.core = nil
		d.due = due + 1 + int64(c.rng.Intn(20*dmax+1))
		c.snapSeq++
		d.seq = c.snapSeq
		c.snaps = append(c.snaps, &d)
		c.stats.SnapshotsDup++
		c.tr.add(c.now, "snapshot-dup %s -> %s index=%d due=%d", from.id, id, meta.Index, d.due)
	}
}

// deliverSnapshots ends the transfers that are due, in send order. A
// transfer to a node that has a Ready in flight waits for it (RestoreSnapshot
// needs no Ready handed out and not advanced).
func (c *cluster) deliverSnapshots() {
	k := 0
	for i, t := range c.snaps {
		to := c.nodes[t.to]
		if c.err != nil || t.due > c.now || (to.up && !to.paused && to.waiting) {
			c.snaps[k] = c.snaps[i]
			k++
			continue
		}
		c.arriveSnapshot(t)
	}
	clear(c.snaps[k:])
	c.snaps = c.snaps[:k]
}

// report tells the sender how the transfer ended, if the sender is still the
// same incarnation (a restarted node has forgotten it).
func (c *cluster) reportSnapshot(t *snapTransfer, ok bool) {
	from := c.nodes[t.from]
	if t.core == nil || !from.up || from.core != t.core {
		return
	}
	t.core.ReportSnapshot(c.nodes[t.to].id, t.meta.Index, ok)
}

// arriveSnapshot installs a snapshot as the runtime does: PrepareSnapshot;
// journal the plan's Discard; swap the store (the atomic, durable point);
// reset the log unless the plan keeps it; RestoreSnapshot; report.
// CrashMidSnapshot crashes the node before the store swap, or after it
// before the log reset or before RestoreSnapshot.
func (c *cluster) arriveSnapshot(t *snapTransfer) {
	f := c.cfg.Faults
	from, to := c.nodes[t.from], c.nodes[t.to]
	failed := func(why string) {
		c.stats.SnapshotsFailed++
		c.tr.add(c.now, "snapshot-failed %s %s -> %s index=%d: %s", t.kind(), from.id, to.id, t.meta.Index, why)
		c.reportSnapshot(t, false)
	}
	switch {
	case !to.up || to.paused:
		failed("target down or paused")
		return
	case c.net.blocked[t.from][t.to]:
		failed("partitioned")
		return
	case t.core != nil && c.chance(f.SnapFail):
		failed("lost")
		return
	}
	meta := t.meta
	plan, err := to.core.PrepareSnapshot(meta)
	if err != nil {
		if !errors.Is(err, repl.ErrStaleSnapshot) {
			c.fail("snapshot-prepare", "%s: PrepareSnapshot(index %d term %d): %v", to.id, meta.Index, meta.Term, err)
			return
		}
		c.stats.SnapshotsStale++
		c.tr.add(c.now, "snapshot-stale %s %s -> %s index=%d: %v", t.kind(), from.id, to.id, meta.Index, err)
		// Stale: the follower's commit index is at or above the snapshot's,
		// so it holds everything the snapshot would give (see ReportSnapshot).
		c.reportSnapshot(t, true)
		return
	}
	crashAt := -1
	if c.chance(f.CrashMidSnapshot) && !c.healing && c.downCount() < f.MaxDown {
		crashAt = c.rng.Intn(3)
	}
	midCrash := func(point int) bool {
		if crashAt != point {
			return false
		}
		c.stats.CrashesMidSnap++
		c.tr.add(c.now, "crash-mid-snapshot %s point=%d", to.id, point)
		c.crash(to)
		c.reportSnapshot(t, false)
		return true
	}
	c.tr.add(c.now, "snapshot-install %s %s -> %s index=%d term=%d keep=%t discard=%d", t.kind(), from.id, to.id, meta.Index, meta.Term, plan.KeepLog, len(plan.Discard))
	// 1. The rollback journal (durable). Some of these may be committed
	// (the plan says "may"): they are journaled, not judged.
	for _, e := range plan.Discard {
		to.journal = append(to.journal, e)
		if e.RequestID != 0 {
			c.chk.journaled[e.RequestID] = true
		}
		c.stats.Discarded++
		c.tr.add(c.now, "discard-snap %s %s", to.id, describeEntry(e))
	}
	if midCrash(0) {
		return
	}
	// 2. The store swap: atomic and durable.
	to.sm, to.applied, to.appliedTerm, to.conf, to.confIdx = t.sm.clone(), meta.Index, meta.Term, meta.Conf.Clone(), t.confIdx
	to.flushStore()
	c.chk.stateAt(to, "snapshot")
	if c.err != nil || midCrash(1) {
		return
	}
	// 3. The log.
	if plan.KeepLog {
		c.stats.SnapshotsKeepLog++
	} else {
		c.stats.SnapshotsReset++
		to.disk.reset(meta.Index, meta.Term)
		if to.log != to.disk {
			to.log.reset(meta.Index, meta.Term)
		}
	}
	if midCrash(2) {
		return
	}
	to.core.RestoreSnapshot(meta, plan)
	c.reportSnapshot(t, true)
	c.chk.installed(to, meta, plan)
}
