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
// Follower (snapinstall.go): HandleStream receives into a staging directory
// on the store's file system, then hands the result to the run loop, which
// waits until everything handed to the WAL is durable and everything handed
// to the applier is applied, asks the core (PrepareSnapshot), journals the
// entries the snapshot replaces, writes the install marker, installs the
// checkpoint in the store (atomic), resets the WAL to the snapshot's index
// unless the core keeps its log, removes the marker and restores the core.

// snapshotsDir holds checkpoints being sent (out-ID-*), the one being
// received (in) and the install marker (installing).
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
	// failAt, set by tests, makes the install stop with an error at that
	// step (see installStep), as a crash there would stop it.
	failAt atomic.Pointer[string]
}

func newSnapshots() *snapshots {
	ctx, cancel := context.WithCancel(context.Background())
	return &snapshots{sending: map[repl.NodeID]*snapSend{}, ctx: ctx, cancel: cancel}
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
	index, stats, ok, err := n.streamSnapshot(st, id, ss)
	n.snaps.mu.Lock()
	delete(n.snaps.sending, id)
	n.snaps.mu.Unlock()
	n.m.snapBytesSent.Add(float64(stats.Sent)) // failed transfers' bytes too: the receiver keeps them to resume
	switch {
	case err == nil:
		n.m.snapSent.Inc()
		n.log.Info("snapshot sent", "follower", string(id), "index", index, "bytes", stats.Total,
			"resumed", stats.Held, "sent", stats.Sent, "took", time.Since(start).Round(time.Millisecond).String())
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
// state (received whole, or refused as not needed).
func (n *Node) streamSnapshot(st streamer, id repl.NodeID, ss *snapSend) (index uint64, stats snapxfer.Stats, ok bool, err error) {
	dir, err := os.MkdirTemp(filepath.Join(n.cfg.DataDir, snapshotsDir), "out-"+string(id)+"-")
	if err != nil {
		return 0, stats, false, fmt.Errorf("node: snapshot directory: %w", err)
	}
	defer os.RemoveAll(dir)
	cp := filepath.Join(dir, "data")
	index, term, err := n.store.Checkpoint(cp)
	if err != nil {
		return 0, stats, false, fmt.Errorf("node: checkpoint the store: %w", err)
	}
	ss.total.Store(dirBytes(cp)) // known before the first chunk, for snapshotProgress
	conf, err := store.CheckpointConf(cp)
	if err != nil {
		return index, stats, false, err
	}
	if conf == nil {
		// Data from before configurations were stored: the bootstrap one.
		conf = repl.EncodeConf(n.cfg.bootstrapConf())
	}
	ctx, cancel := context.WithCancel(n.snaps.ctx)
	defer cancel()
	c, err := st.OpenStream(ctx, id)
	if err != nil {
		return index, stats, false, fmt.Errorf("node: open a stream to %s: %w", id, err)
	}
	defer c.Close()
	cfg := snapxfer.DefaultConfig()
	cfg.Logger = n.log.With("component", "snapshot", "follower", string(id))
	stats, err = snapxfer.Send(ctx, c, cp, snapxfer.Identity{Index: index, Term: term, Meta: conf}, cfg,
		func(sent, total int64) { ss.sent.Store(sent); ss.total.Store(total) })
	if errors.Is(err, snapxfer.ErrNotNeeded) {
		return index, stats, true, err
	}
	return index, stats, err == nil, err
}

// dirBytes is the size of the regular files in dir (0 if it cannot be read).
func dirBytes(dir string) int64 {
	des, _ := os.ReadDir(dir)
	var sum int64
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			sum += fi.Size()
		}
	}
	return sum
}
