package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/repl"
	snapxfer "github.com/trireme-db/trireme/internal/snapshot"
	"github.com/trireme-db/trireme/internal/store"
)

// Snapshots: catch-up of a follower whose next entry the leader compacted
// away (see DESIGN.md, "Snapshots").
//
// Leader: the core lists such followers in Ready.Snapshots. For each, a
// sender goroutine checkpoints the store (hard links, beside the writes),
// streams the checkpoint over a transport stream (internal/snapshot:
// checksummed chunks, flow control, resume) and reports the outcome to the
// core on the run loop. Nothing of it runs on the run loop but the report.
//
// Follower: HandleStream receives into a staging directory on the store's
// file system, then hands the result to the run loop, which waits until
// everything handed to the WAL is durable and everything handed to the
// applier is applied, asks the core (PrepareSnapshot), journals the entries
// the snapshot replaces, installs the checkpoint in the store (atomic),
// resets the WAL to the snapshot's index unless the core keeps its log, and
// restores the core.

// snapshotsDir holds checkpoints being sent (out-ID) and received (in).
const snapshotsDir = "snapshots"

// streamer is a transport that opens byte streams to peers.
type streamer interface {
	OpenStream(ctx context.Context, to repl.NodeID) (net.Conn, error)
}

// snapSend is one snapshot being sent to a follower.
type snapSend struct {
	sent, total atomic.Int64
}

// snapshots is the node's snapshot state, shared by the run loop, the
// senders and HandleStream.
type snapshots struct {
	mu      sync.Mutex
	sending map[repl.NodeID]*snapSend // guarded by mu
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	// receiving: a transfer or an install is under way (one at a time).
	receiving atomic.Bool
}

func newSnapshots() *snapshots {
	ctx, cancel := context.WithCancel(context.Background())
	return &snapshots{sending: map[repl.NodeID]*snapSend{}, ctx: ctx, cancel: cancel}
}

// close stops the senders and receivers and waits for the senders.
func (s *snapshots) close() {
	s.cancel()
	s.wg.Wait()
}

// snapshotProgress reports the bytes sent of the snapshot being sent to id.
func (n *Node) snapshotProgress(id repl.NodeID) (sent, total int64, active bool) {
	n.snaps.mu.Lock()
	ss := n.snaps.sending[id]
	n.snaps.mu.Unlock()
	if ss == nil {
		return 0, 0, false
	}
	return ss.sent.Load(), ss.total.Load(), true
}

// cleanSnapshotDirs removes what a previous run left in the snapshots
// directory (checkpoints being sent, a transfer being received). A received
// snapshot not yet installed is lost with it: the leader sends it again.
func (n *Node) cleanSnapshotDirs() error {
	dir := filepath.Join(n.cfg.DataDir, snapshotsDir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("node: read %s: %w", dir, err)
	}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		n.log.Info("removing a snapshot left by the previous run (not installed; the leader sends another when needed)", "path", p)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("node: remove %s: %w", p, err)
		}
	}
	return nil
}

// sendSnapshots starts a sender for each follower the core asked for (run
// loop). A follower already being sent one is skipped: its sender reports.
func (n *Node) sendSnapshots(ids []repl.NodeID) {
	st, ok := n.tr.(streamer)
	for _, id := range ids {
		if !ok {
			n.log.Error("the transport cannot open streams: no snapshot can be sent", "follower", string(id))
			n.core.ReportSnapshot(id, 0, false)
			continue
		}
		n.snaps.mu.Lock()
		if n.snaps.sending[id] != nil {
			n.snaps.mu.Unlock()
			continue
		}
		ss := &snapSend{}
		n.snaps.sending[id] = ss
		n.snaps.mu.Unlock()
		n.snaps.wg.Add(1)
		go n.sendSnapshot(st, id, ss)
	}
}

// sendSnapshot checkpoints the store and streams it to id, then reports the
// outcome to the core.
func (n *Node) sendSnapshot(st streamer, id repl.NodeID, ss *snapSend) {
	defer n.snaps.wg.Done()
	start := time.Now()
	index, ok, err := n.streamSnapshot(st, id, ss)
	n.snaps.mu.Lock()
	delete(n.snaps.sending, id)
	n.snaps.mu.Unlock()
	switch {
	case err == nil:
		n.m.snapSent.Inc()
		n.m.snapBytesSent.Add(float64(ss.sent.Load()))
		n.log.Info("snapshot sent", "follower", string(id), "index", index, "bytes", ss.total.Load(),
			"sent", ss.sent.Load(), "took", time.Since(start).Round(time.Millisecond).String())
	case ok:
		n.log.Info("snapshot not needed: the follower holds that state already", "follower", string(id), "index", index)
	default:
		n.m.snapFailures.Inc()
		n.log.Warn("snapshot transfer failed; the leader retries after a heartbeat round", "follower", string(id),
			"index", index, "err", err)
	}
	select {
	case n.ctlCh <- func() { n.core.ReportSnapshot(id, index, ok) }:
	case <-n.doneCh:
	}
}

// streamSnapshot does the work of sendSnapshot. ok: the follower has the
// state (installed, or refused as not needed).
func (n *Node) streamSnapshot(st streamer, id repl.NodeID, ss *snapSend) (index uint64, ok bool, err error) {
	dir, err := os.MkdirTemp(filepath.Join(n.cfg.DataDir, snapshotsDir), "out-"+string(id)+"-")
	if err != nil {
		return 0, false, fmt.Errorf("node: snapshot directory: %w", err)
	}
	defer os.RemoveAll(dir)
	cp := filepath.Join(dir, "data")
	index, term, err := n.store.Checkpoint(cp)
	if err != nil {
		return 0, false, fmt.Errorf("node: checkpoint the store: %w", err)
	}
	conf, err := store.CheckpointConf(cp)
	if err != nil {
		return index, false, err
	}
	if conf == nil {
		// Data from before configurations were stored: the bootstrap one.
		conf = repl.EncodeConf(n.cfg.bootstrapConf())
	}
	ctx, cancel := context.WithCancel(n.snaps.ctx)
	defer cancel()
	c, err := st.OpenStream(ctx, id)
	if err != nil {
		return index, false, fmt.Errorf("node: open a stream to %s: %w", id, err)
	}
	defer c.Close()
	cfg := snapxfer.DefaultConfig()
	cfg.Logger = n.log.With("component", "snapshot", "follower", string(id))
	_, err = snapxfer.Send(ctx, c, cp, snapxfer.Identity{Index: index, Term: term, Meta: conf}, cfg,
		func(sent, total int64) { ss.sent.Store(sent); ss.total.Store(total) })
	if errors.Is(err, snapxfer.ErrNotNeeded) {
		return index, true, err
	}
	return index, err == nil, err
}

// HandleStream implements transport.Handler: a snapshot from the leader.
func (n *Node) HandleStream(from repl.NodeID, c net.Conn) {
	defer c.Close()
	if !n.snaps.receiving.CompareAndSwap(false, true) {
		n.log.Info("refusing a snapshot stream: another one is being received or installed", "from", string(from))
		return
	}
	defer n.snaps.receiving.Store(false)
	staging := filepath.Join(n.cfg.DataDir, snapshotsDir, "in")
	cfg := snapxfer.DefaultConfig()
	cfg.Logger = n.log.With("component", "snapshot", "leader", string(from))
	accept := func(id snapxfer.Identity, _ []snapxfer.FileInfo) error {
		if s, _ := n.status(); id.Index <= s.st.Commit {
			return fmt.Errorf("%w: snapshot at index %d, commit index %d", snapxfer.ErrNotNeeded, id.Index, s.st.Commit)
		}
		if _, err := repl.DecodeConf(id.Meta); err != nil {
			return fmt.Errorf("snapshot at index %d: its configuration: %w", id.Index, err)
		}
		return nil
	}
	start := time.Now()
	res, err := snapxfer.Receive(n.snaps.ctx, c, staging, cfg, accept)
	if err != nil {
		if !errors.Is(err, snapxfer.ErrNotNeeded) {
			n.log.Warn("receiving a snapshot failed (what arrived is kept for a resumed transfer)", "from", string(from), "err", err)
		}
		return
	}
	n.m.snapReceived.Inc()
	n.m.snapBytesReceived.Add(float64(res.Stats.Sent))
	took := time.Since(start)
	req := &installReq{res: res, from: from, done: make(chan error, 1)}
	select {
	case n.installCh <- req:
	case <-n.doneCh:
		return
	}
	select {
	case err = <-req.done:
	case <-n.doneCh:
		return
	}
	if err != nil {
		n.log.Warn("snapshot received but not installed", "index", res.ID.Index, "err", err)
		return
	}
	if err := os.RemoveAll(staging); err != nil {
		n.log.Warn("removing the snapshot staging directory", "path", staging, "err", err)
	}
	mb := float64(res.Stats.Total) / (1 << 20)
	n.log.Info("snapshot installed", "from", string(from), "index", res.ID.Index, "term", res.ID.Term,
		"bytes", res.Stats.Total, "received", res.Stats.Sent, "transfer", took.Round(time.Millisecond).String(),
		"mib_per_s", fmt.Sprintf("%.1f", mb/took.Seconds()))
}

// installReq is a received snapshot handed to the run loop.
type installReq struct {
	res  snapxfer.Result
	from repl.NodeID
	done chan error
}

// errSnapshotStale: the core no longer needs the snapshot (its commit index
// passed it while it was received).
var errSnapshotStale = errors.New("stale: the commit index passed it meanwhile")

// install installs a received snapshot (run loop). A returned error stops the
// node; a stale snapshot is answered on req.done and changes nothing.
func (n *Node) install(req *installReq) error {
	id := req.res.ID
	cs, err := repl.DecodeConf(id.Meta)
	if err != nil {
		req.done <- err
		return nil
	}
	// Everything handed to the WAL durable, everything handed to the
	// applier applied: the core's and the store's state must not move
	// under the install.
	if n.lastTicket > n.durableTicket {
		if err := n.wal.Wait(n.lastTicket); err != nil {
			return fmt.Errorf("node: append entries to the WAL: %w", err)
		}
		n.onPersisted()
	}
	barrier := make(chan struct{})
	select {
	case n.applyCh <- applyJob{barrier: barrier}:
	case <-n.applyFailed:
		return n.applyErr
	}
	select {
	case <-barrier:
	case <-n.applyFailed:
		return n.applyErr
	}
	meta := repl.SnapshotMeta{Index: id.Index, Term: id.Term, Conf: cs}
	plan, err := n.core.PrepareSnapshot(meta)
	if errors.Is(err, repl.ErrStaleSnapshot) {
		req.done <- fmt.Errorf("%w: %v", errSnapshotStale, err)
		return nil
	}
	if err != nil {
		req.done <- err
		return nil
	}
	index, term, err := n.store.Install(req.res.Dir)
	if err != nil {
		if errors.Is(err, store.ErrStaleSnapshot) || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrInvalidArg) {
			req.done <- err
			return nil // refused before anything changed
		}
		return fmt.Errorf("node: install snapshot at index %d: %w", id.Index, err)
	}
	if index != id.Index || term != id.Term {
		return fmt.Errorf("node: the installed snapshot holds index %d term %d, but was offered as %d term %d", index, term, id.Index, id.Term)
	}
	// The entries the snapshot replaces go to the journal before the log
	// forgets them (the reset below).
	if len(plan.Discard) > 0 {
		if err := n.journal.append(plan.Discard, time.Now()); err != nil {
			return err
		}
		n.m.rollbacks.Add(float64(len(plan.Discard)))
		n.log.Warn("the snapshot replaces uncommitted log entries: they are in the rollback journal", "count", len(plan.Discard),
			"index", plan.Discard[0].Index)
	}
	if !plan.KeepLog {
		if err := n.wal.Reset(index, term); err != nil {
			return fmt.Errorf("node: reset the WAL to the snapshot at index %d: %w", index, err)
		}
		n.walLast = index
	}
	n.core.RestoreSnapshot(meta, plan)
	req.done <- nil
	return nil
}

// recoverInstall makes the WAL agree with a store that installed a snapshot
// just before a crash (start-up, before replay): the store is atomic, the
// WAL reset after it is a second step. It logs which state the node starts
// from.
func (n *Node) recoverInstall() error {
	applied, term := n.store.AppliedIndex(), n.store.AppliedTerm()
	if applied == 0 || term == 0 {
		return nil // nothing applied, or a store that does not know the term
	}
	last := n.wal.LastIndex()
	if applied <= last && applied+1 >= n.wal.FirstIndex() {
		if t, err := n.wal.Term(applied); err == nil && t == term {
			return nil // the log holds the store's state: the usual case
		}
	}
	if applied <= last && applied+1 < n.wal.FirstIndex() {
		return nil // replay reports it
	}
	n.log.Warn("the store holds a snapshot installed just before the last stop, beyond the log: resetting the log to it",
		"index", applied, "term", term, "log_first", n.wal.FirstIndex(), "log_last", last)
	if err := n.wal.Reset(applied, term); err != nil {
		return fmt.Errorf("node: reset the WAL to the installed snapshot at index %d: %w", applied, err)
	}
	return nil
}
