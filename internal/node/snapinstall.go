package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	snapxfer "github.com/trireme-db/trireme/internal/snapshot"
	"github.com/trireme-db/trireme/internal/store"
	"github.com/trireme-db/trireme/internal/transport"
)

// The follower's side of snapshots: receiving (HandleStream), installing on
// the run loop (install), and what start-up does with what a crash left
// (recoverSnapshots). See DESIGN.md, "Snapshots".

// Names in DATA/snapshots. Part of the on-disk layout.
const (
	// stagingDir receives a snapshot (internal/snapshot's staging
	// directory: the offer, and the files in "data").
	stagingDir = "in"
	// installMarkerFile names the snapshot being installed (JSON,
	// installMarker). It is written, durably, before the store switches to
	// the snapshot and removed once the WAL followed: at start-up it tells a
	// store that installed a snapshot just before a crash (the WAL not yet
	// reset) from a store ahead of a WAL that lost entries.
	installMarkerFile = "installing"
)

// installMarker is the content of installMarkerFile.
type installMarker struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// HandleStream implements transport.Handler: a snapshot from the leader. One
// at a time: a stream that arrives while one is received or installed is
// closed (the leader retries after a backoff). The snapshot is installed
// while the stream is still open, so that the leader learns whether the
// install succeeded (format version 2) and counts the snapshot as delivered
// only then.
func (n *Node) HandleStream(from transport.NodeID, c net.Conn) {
	defer c.Close()
	if !n.snaps.receiving.CompareAndSwap(false, true) {
		n.log.Info("refusing a snapshot stream: another one is being received or installed", "peer", string(from))
		return
	}
	defer n.snaps.receiving.Store(false)
	staging := filepath.Join(n.cfg.DataDir, snapshotsDir, stagingDir)
	cfg := snapxfer.DefaultConfig()
	cfg.Logger = n.log.With("component", "snapshot", "peer", string(from))
	rv := &received{start: time.Now()}
	res, err := snapxfer.Receive(n.snaps.ctx, c, staging, cfg, n.acceptSnapshot, func(res snapxfer.Result) error {
		return n.installReceived(rv, res)
	})
	took := rv.took
	switch {
	case !rv.handed:
		if !errors.Is(err, snapxfer.ErrNotNeeded) {
			n.m.snapRecvFailures.Inc()
			n.log.Warn("receiving a snapshot failed (what arrived is kept for a resumed transfer)", "peer", string(from), "err", err)
		}
		return
	case rv.stopped:
		return // the node stops; start-up recovers and discards the staging directory
	case errors.Is(err, snapxfer.ErrNotNeeded):
		n.log.Info("snapshot received but not installed: the log caught up meanwhile", "peer", string(from),
			"index", res.ID.Index, "err", err)
	case err != nil:
		n.m.snapRecvFailures.Inc()
		n.log.Warn("snapshot received but not installed (the leader is told, and sends it again)", "peer", string(from),
			"index", res.ID.Index, "err", err)
	default:
		mb := float64(res.Stats.Total) / (1 << 20)
		n.log.Info("snapshot installed", "peer", string(from), "index", res.ID.Index, "term", res.ID.Term,
			"bytes", res.Stats.Total, "received", res.Stats.Sent, "transfer", took.Round(time.Millisecond).String(),
			"mib_per_s", fmt.Sprintf("%.1f", mb/took.Seconds()))
	}
	// Installed (the files moved into the store), or of no use: either way
	// the staging directory goes.
	if err := os.RemoveAll(staging); err != nil {
		n.log.Warn("removing the snapshot staging directory", "path", staging, "err", err)
	}
}

// received is what HandleStream learns of the install of a snapshot it
// received.
type received struct {
	start   time.Time
	handed  bool // received whole and handed to the install
	stopped bool // the run loop ended, or the install was fatal
	took    time.Duration
}

// installReceived installs a snapshot received whole (Receive's install
// callback, the stream still open). Its error tells the leader: one wrapping
// snapxfer.ErrNotNeeded if the log passed the snapshot meanwhile, any other
// if it was not installed.
func (n *Node) installReceived(rv *received, res snapxfer.Result) error {
	rv.handed, rv.took = true, time.Since(rv.start)
	n.m.snapReceived.Inc()
	n.m.snapBytesReceived.Add(float64(res.Stats.Sent))
	out, ok := n.handInstall(res)
	switch {
	case !ok || out.fatal != nil:
		rv.stopped = true
		return errors.New("the node stopped during the install")
	case errors.Is(out.refused, errSnapshotStale):
		return fmt.Errorf("%w: %w", snapxfer.ErrNotNeeded, out.refused)
	}
	return out.refused
}

// acceptSnapshot refuses an offer the node does not need (at or below its
// commit index: it holds that state) or cannot use.
func (n *Node) acceptSnapshot(id snapxfer.Identity, _ []snapxfer.FileInfo) error {
	if s, _ := n.status(); id.Index <= s.st.Commit {
		return fmt.Errorf("%w: snapshot at index %d, commit index %d", snapxfer.ErrNotNeeded, id.Index, s.st.Commit)
	}
	if _, err := repl.DecodeConf(id.Meta); err != nil {
		return fmt.Errorf("snapshot at index %d: its configuration: %w", id.Index, err)
	}
	return nil
}

// installReq is a received snapshot handed to the run loop.
type installReq struct {
	res  snapxfer.Result
	done chan installOutcome // buffered 1
}

// installOutcome: refused, the snapshot was not installed and nothing
// changed; fatal, the node stops (the store or the WAL may be half-way:
// start-up finishes it).
type installOutcome struct {
	refused, fatal error
}

// errSnapshotStale: the core no longer needs the snapshot (its commit index
// passed it while it was received).
var errSnapshotStale = errors.New("stale: the commit index passed it meanwhile")

// handInstall hands res to the run loop and waits for the outcome; false if
// the loop ended first.
func (n *Node) handInstall(res snapxfer.Result) (installOutcome, bool) {
	req := &installReq{res: res, done: make(chan installOutcome, 1)}
	select {
	case n.installCh <- req:
	case <-n.doneCh:
		return installOutcome{}, false
	}
	select {
	case out := <-req.done:
		return out, true
	case <-n.doneCh:
		select {
		case out := <-req.done:
			return out, true
		default:
			return installOutcome{}, false
		}
	}
}

// runInstall installs req's snapshot (run loop) and answers it; a fatal
// error ends the loop.
func (n *Node) runInstall(req *installReq) {
	refused, fatal := n.install(req.res)
	if fatal != nil && n.loopErr == nil {
		n.loopErr = fatal
	}
	// The install held the run loop (seconds, for a large store). Skip the
	// ticks it missed instead of catching up: a follower whose clock runs
	// late only waits longer before it campaigns (safe for the leader's
	// lease), while catching up would expire its election timer at once.
	// Never on a leader: a leader's clock must not run late (its lease).
	if n.core.Status().Role != repl.RoleLeader {
		n.ticksDone = int64(time.Since(n.tickBase) / n.tick)
	}
	req.done <- installOutcome{refused: refused, fatal: fatal}
}

// install installs a received snapshot, in the order the core's contract
// asks (repl.Core.RestoreSnapshot): settle, PrepareSnapshot, journal what
// the snapshot replaces, mark, switch the store, reset the WAL (unless the
// core keeps its log), unmark, RestoreSnapshot. refused: nothing changed;
// fatal: the node must stop.
func (n *Node) install(res snapxfer.Result) (refused, fatal error) {
	id := res.ID
	if n.snaps.refuseInstalls.Load() > 0 {
		n.snaps.refuseInstalls.Add(-1)
		return fmt.Errorf("snapshot at index %d: refused (test)", id.Index), nil
	}
	cs, err := repl.DecodeConf(id.Meta)
	if err != nil {
		return fmt.Errorf("snapshot at index %d: its configuration: %w", id.Index, err), nil
	}
	if err := n.settleForInstall(); err != nil {
		return nil, err
	}
	meta := repl.SnapshotMeta{Index: id.Index, Term: id.Term, Conf: cs}
	plan, err := n.core.PrepareSnapshot(meta)
	if errors.Is(err, repl.ErrStaleSnapshot) {
		return fmt.Errorf("%w: %v", errSnapshotStale, err), nil
	}
	if err != nil {
		return err, nil
	}
	// Journal first: after a crash anywhere below, the restarted node may
	// reset its log, and these entries must be in the journal by then.
	if err := n.journalReplaced(plan.Discard, id.Index, res.Dir); err != nil {
		return nil, err
	}
	if err := n.markInstall(id.Index, id.Term); err != nil {
		return nil, err
	}
	if err := n.installStep("marked"); err != nil {
		return nil, err
	}
	index, term, err := n.store.Install(res.Dir)
	if err != nil {
		if n.store.Err() == nil && refusedBeforeChange(err) {
			n.unmarkInstall()
			return fmt.Errorf("the store refused it: %w", err), nil
		}
		return nil, fmt.Errorf("node: install the snapshot at index %d into the store: %w", id.Index, err)
	}
	if index != id.Index || term != id.Term {
		return nil, fmt.Errorf("node: the installed snapshot holds index %d term %d, but was offered as index %d term %d",
			index, term, id.Index, id.Term)
	}
	if err := n.installStep("installed"); err != nil {
		return nil, err
	}
	if !plan.KeepLog {
		if err := n.wal.Reset(index, term); err != nil {
			return nil, fmt.Errorf("node: reset the WAL to the snapshot at index %d term %d: %w", index, term, err)
		}
		n.walLast = index
	}
	n.unmarkInstall()
	n.core.RestoreSnapshot(meta, plan)
	return nil, nil
}

// settleForInstall makes everything handed out durable and applied (run
// loop), so that neither the core nor the store moves under the install:
// it waits for the WAL writes in flight (completing their Readies, so that
// none is handed out and not advanced) and for the applier to reach a
// barrier job.
func (n *Node) settleForInstall() error {
	if n.lastTicket > n.durableTicket {
		if err := n.wal.Wait(n.lastTicket); err != nil {
			return fmt.Errorf("node: append entries to the WAL: %w", err)
		}
		n.onPersisted()
		if n.loopErr != nil {
			return n.loopErr
		}
	}
	if len(n.inflight) > 0 {
		panic(fmt.Sprintf("node: %d Readies in flight with every WAL ticket durable (last %d, durable %d)",
			len(n.inflight), n.lastTicket, n.durableTicket))
	}
	barrier := make(chan struct{})
	select {
	case n.applyCh <- applyJob{barrier: barrier}:
	case <-n.applyFailed:
		return n.applyErr
	case <-n.store.Failed(): // the applier may be held inside the store
		return fmt.Errorf("node: %w", n.store.Err())
	}
	select {
	case <-barrier:
	case <-n.applyFailed:
		return n.applyErr
	case <-n.store.Failed():
		return fmt.Errorf("node: %w", n.store.Err())
	}
	return nil
}

// journalReplaced writes the entries a snapshot replaces to the rollback
// journal (durably).
func (n *Node) journalReplaced(ents []entry.Entry, snapIndex uint64, dir string) error {
	if len(ents) == 0 {
		return nil
	}
	unsure, err := unconfirmed(ents, snapIndex, dir)
	if err != nil {
		return err
	}
	if len(unsure) > 0 {
		if err := n.journal.appendCause(unsure, time.Now(), api.CauseSnapshot); err != nil {
			return err
		}
		n.m.rollbacks.Add(float64(len(unsure)))
	}
	n.log.Warn("the snapshot replaces uncommitted log entries", "count", len(ents), "index", ents[0].Index,
		"in_the_snapshot", len(ents)-len(unsure), "journaled_as_uncertain", len(unsure))
	return nil
}

// unconfirmed returns the entries of ents that the snapshot in dir (at
// snapIndex) does not show it applied: a put at or below snapIndex whose key
// holds, in the snapshot, the same value set at the same index was applied
// in the snapshot's history, so it was committed and is not lost. Anything
// else (a delete, a key written again later, an entry beyond the snapshot)
// cannot be told apart here from a write that was never committed.
func unconfirmed(ents []entry.Entry, snapIndex uint64, dir string) ([]entry.Entry, error) {
	var keys [][]byte
	var at []int
	for i := range ents {
		if e := &ents[i]; e.Kind == entry.KindPut && e.Index <= snapIndex {
			keys = append(keys, e.Key)
			at = append(at, i)
		}
	}
	confirmed := make([]bool, len(ents))
	if len(keys) > 0 {
		values, versions, found, err := store.CheckpointLookup(dir, keys)
		if err != nil {
			return nil, fmt.Errorf("node: reading the received snapshot: %w", err)
		}
		for k, i := range at {
			e := &ents[i]
			confirmed[i] = found[k] && versions[k] == e.Index && bytes.Equal(values[k], e.Value)
		}
	}
	var out []entry.Entry
	for i := range ents {
		if !confirmed[i] {
			out = append(out, ents[i])
		}
	}
	return out, nil
}

// refusedBeforeChange reports whether store.Install's error is one it gives
// before it changes anything (the checkpoint is damaged, stale, of another
// format, or on another file system).
func refusedBeforeChange(err error) bool {
	return errors.Is(err, store.ErrStaleSnapshot) || errors.Is(err, store.ErrCorrupt) ||
		errors.Is(err, store.ErrIncompatible) || errors.Is(err, store.ErrInvalidArg)
}

// installStep returns an error at the step a test set in snaps.failAt.
func (n *Node) installStep(step string) error {
	if p := n.snaps.failAt.Load(); p != nil && *p == step {
		return fmt.Errorf("node: snapshot install stopped at step %q (test)", step)
	}
	return nil
}

// markInstall writes the install marker durably.
func (n *Node) markInstall(index, term uint64) error {
	dir := filepath.Join(n.cfg.DataDir, snapshotsDir)
	if err := writeFileSync(dir, installMarkerFile, installMarker{Index: index, Term: term}); err != nil {
		return fmt.Errorf("node: write the snapshot install marker: %w", err)
	}
	return nil
}

// unmarkInstall removes the install marker. A marker left behind is
// harmless: start-up finds the store at or past its index with the WAL
// holding it.
func (n *Node) unmarkInstall() {
	dir := filepath.Join(n.cfg.DataDir, snapshotsDir)
	err := os.Remove(filepath.Join(dir, installMarkerFile))
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		n.log.Warn("removing the snapshot install marker", "dir", dir, "err", err)
	}
}

// recoverSnapshots runs at start-up, before the WAL is replayed: it finishes
// an install that a crash cut between the store and the WAL, then removes
// what transfers left in DATA/snapshots, logging what it found.
func (n *Node) recoverSnapshots() error {
	dir := filepath.Join(n.cfg.DataDir, snapshotsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("node: create %s: %w", dir, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("node: read %s: %w", dir, err)
	}
	var marker *installMarker
	if b, err := os.ReadFile(filepath.Join(dir, installMarkerFile)); err == nil {
		marker = new(installMarker)
		if err := json.Unmarshal(b, marker); err != nil || marker.Index == 0 || marker.Term == 0 {
			return fmt.Errorf("node: the snapshot install marker %s is damaged (%q, %v): "+
				"cannot tell whether the store holds a snapshot the WAL does not follow", filepath.Join(dir, installMarkerFile), b, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("node: read the snapshot install marker: %w", err)
	}
	if err := n.recoverInstall(marker); err != nil {
		return err
	}
	if len(des) == 0 {
		n.log.Info("start-up: no snapshot transfer or install was left by the previous run")
	}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		n.log.Info("start-up: discarding "+describeLeftover(p, de.Name()), "path", p)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("node: remove %s: %w", p, err)
		}
	}
	if len(des) > 0 {
		return syncDir(dir)
	}
	return nil
}

// describeLeftover says what the entry name of DATA/snapshots (at path p) was.
func describeLeftover(p, name string) string {
	switch {
	case name == installMarkerFile:
		return "the snapshot install marker"
	case name == installMarkerFile+".tmp":
		return "a snapshot install marker being written (the install had not begun)"
	case name == stagingDir:
		if _, err := os.Stat(filepath.Join(p, "data")); err == nil {
			return "a snapshot received (whole or in part) but not installed; the leader sends another if needed"
		}
		return "the staging directory of a snapshot whose files the store took (installed)"
	case strings.HasPrefix(name, "out-"):
		return "a checkpoint that was being sent to a follower"
	}
	return "an unknown entry"
}

// recoverInstall makes the WAL follow a store that installed the snapshot
// named by the install marker just before a crash, and logs which state the
// node starts from. Without a marker it does nothing (replay refuses a store
// ahead of the WAL).
func (n *Node) recoverInstall(m *installMarker) error {
	if m == nil {
		return nil
	}
	applied, term := n.store.AppliedIndex(), n.store.AppliedTerm()
	switch {
	case applied < m.Index:
		n.log.Warn("start-up: a snapshot install was cut short before the store switched to it: starting from the previous state",
			"snapshot_index", m.Index, "snapshot_term", m.Term, "applied", applied)
		return nil
	case applied > m.Index:
		n.log.Info("start-up: the snapshot installed before the stop was already followed by the log",
			"snapshot_index", m.Index, "applied", applied)
		return nil
	case term != m.Term:
		return fmt.Errorf("node: the store in %s is at index %d term %d, but the snapshot being installed there was at term %d",
			filepath.Join(n.cfg.DataDir, storeDir), applied, term, m.Term)
	}
	first, last := n.wal.FirstIndex(), n.wal.LastIndex()
	if applied+1 >= first && applied <= last {
		if t, err := n.wal.Term(applied); err == nil && t == term {
			n.log.Info("start-up: the snapshot at this index was installed before the stop, and the WAL follows it: starting from it",
				"index", applied, "term", term)
			return nil
		}
	}
	n.log.Warn("start-up: the snapshot at this index was installed before the stop, but the WAL was not reset to it: "+
		"resetting the WAL; starting from the snapshot", "index", applied, "term", term, "wal_first", first, "wal_last", last)
	if err := n.wal.Reset(applied, term); err != nil {
		return fmt.Errorf("node: reset the WAL to the snapshot installed at index %d term %d: %w", applied, term, err)
	}
	return nil
}
