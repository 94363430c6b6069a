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
	"github.com/trireme-db/trireme/internal/transport"
)

// Snapshots: catch-up of a follower whose next entry the leader compacted
// away (see DESIGN.md, "Snapshots").
//
// Leader: the core lists such followers in Ready.Snapshots. For each, a
// sender goroutine checkpoints the store (hard links, beside the writes),
// streams the checkpoint over a transport stream (internal/snapshot:
// checksummed chunks, flow control, resume), waits for the follower to
// report it installed, and reports the outcome to the core on the run loop.
// A failed attempt (the transfer, or the follower's install) is retried on
// the same checkpoint, up to snapshotAttempts times per sender, after a
// backoff that grows with the follower's consecutive failures; then the core
// hears of the failure and asks again after a heartbeat round. Nothing of it
// runs on the run loop but the report. A follower that reads only version 1
// of the snapshot format cannot report its install: for it, as before,
// received whole counts as delivered.
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

// Retries of a snapshot: attempts per sender (on one checkpoint), and the
// backoff before an attempt after k consecutive failed ones for the same
// follower: snapshotRetryBase << (k-1), at most snapshotRetryMax.
const (
	snapshotAttempts  = 3
	snapshotRetryBase = 200 * time.Millisecond
	snapshotRetryMax  = 5 * time.Second
)

// snapshotBackoff is the wait before an attempt after fails consecutive
// failed ones.
func snapshotBackoff(fails int) time.Duration {
	if fails <= 0 {
		return 0
	}
	d := snapshotRetryBase
	for i := 1; i < fails && d < snapshotRetryMax; i++ {
		d *= 2
	}
	return min(d, snapshotRetryMax)
}

// streamer is a transport that opens byte streams to peers.
type streamer interface {
	OpenStream(ctx context.Context, to transport.NodeID) (net.Conn, error)
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
	// fails counts each follower's consecutive failed attempts (for the
	// backoff); guarded by mu.
	fails  map[repl.NodeID]int
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	// receiving: a transfer or an install is under way (one at a time).
	receiving atomic.Bool
	// failAt, set by tests, makes the install stop with an error at that
	// step (see installStep), as a crash there would stop it.
	failAt atomic.Pointer[string]
	// refuseInstalls, set by tests, makes that many installs refuse the
	// snapshot before they change anything, as a store refusing it would.
	refuseInstalls atomic.Int32
}

func newSnapshots() *snapshots {
	ctx, cancel := context.WithCancel(context.Background())
	return &snapshots{sending: map[repl.NodeID]*snapSend{}, fails: map[repl.NodeID]int{}, ctx: ctx, cancel: cancel}
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
	switch {
	case err == nil:
		n.m.snapSent.Inc()
		n.log.Info("snapshot delivered", "follower", string(id), "index", index, "bytes", stats.Total,
			"resumed", stats.Held, "sent", stats.Sent, "installed", stats.Installed,
			"took", time.Since(start).Round(time.Millisecond).String())
	case ok:
		n.log.Info("snapshot not needed: the follower holds that state already", "follower", string(id), "index", index)
	default:
		n.log.Warn("snapshot not delivered; the leader asks again after a heartbeat round", "follower", string(id),
			"index", index, "err", err)
	}
	select {
	case n.ctlCh <- func() { n.core.ReportSnapshot(id, index, ok) }:
	case <-n.doneCh:
	}
}

// streamSnapshot does the work of sendSnapshot: one checkpoint, sent up to
// snapshotAttempts times. ok: the follower installed it (or, if it reads
// only version 1 of the format, received it whole), or refused it as not
// needed.
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
	snapID := snapxfer.Identity{Index: index, Term: term, Meta: conf}
	cfg := snapxfer.DefaultConfig()
	cfg.Logger = n.log.With("component", "snapshot", "follower", string(id))
	for attempt := 1; ; attempt++ {
		if err := n.snapshotWait(id); err != nil {
			return index, stats, false, err
		}
		stats, err = n.snapshotAttempt(st, id, cp, snapID, &cfg, ss)
		if n.countAttempt(id, err) {
			return index, stats, true, err
		}
		if attempt >= snapshotAttempts || n.snaps.ctx.Err() != nil {
			return index, stats, false, err
		}
		if s, _ := n.status(); s.st.Role != repl.RoleLeader {
			return index, stats, false, fmt.Errorf("%w (no longer the leader: not retried)", err)
		}
		n.log.Info("snapshot attempt failed; retrying", "follower", string(id), "index", index, "attempt", attempt, "err", err)
	}
}

// snapshotAttempt sends the checkpoint in cp to id once; if the follower
// refuses the offer itself (it reads only version 1 of the format), once
// more in version 1, which cfg then keeps.
func (n *Node) snapshotAttempt(st streamer, id repl.NodeID, cp string, snapID snapxfer.Identity, cfg *snapxfer.Config, ss *snapSend) (snapxfer.Stats, error) {
	stats, err := n.sendCheckpoint(st, id, cp, snapID, *cfg, ss)
	sent := stats.Sent
	if errors.Is(err, snapxfer.ErrOfferRefused) && cfg.Version > 1 {
		n.log.Warn("the follower refused the snapshot offer; sending it in format version 1, which ends at receipt",
			"follower", string(id), "index", snapID.Index, "err", err)
		cfg.Version = 1
		stats, err = n.sendCheckpoint(st, id, cp, snapID, *cfg, ss)
		sent += stats.Sent
	}
	n.m.snapBytesSent.Add(float64(sent)) // failed attempts' bytes too: the receiver keeps them to resume
	return stats, err
}

// countAttempt records the outcome of an attempt for id's backoff and in the
// metrics; it reports whether the follower has the state (installed, or
// not needed).
func (n *Node) countAttempt(id repl.NodeID, err error) bool {
	ok := err == nil || errors.Is(err, snapxfer.ErrNotNeeded)
	n.snaps.mu.Lock()
	if ok {
		delete(n.snaps.fails, id)
	} else {
		n.snaps.fails[id]++
	}
	n.snaps.mu.Unlock()
	if !ok {
		n.m.snapFailures.Inc()
	}
	return ok
}

// snapshotWait waits the backoff that id's consecutive failures call for.
func (n *Node) snapshotWait(id repl.NodeID) error {
	n.snaps.mu.Lock()
	d := snapshotBackoff(n.snaps.fails[id])
	n.snaps.mu.Unlock()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-n.snaps.ctx.Done():
		return n.snaps.ctx.Err()
	}
}

// sendCheckpoint sends the checkpoint in cp to id over a new stream, once.
// Without an error the follower installed it (Stats.Installed), or received
// it whole if cfg.Version is 1.
func (n *Node) sendCheckpoint(st streamer, id repl.NodeID, cp string, snapID snapxfer.Identity, cfg snapxfer.Config, ss *snapSend) (snapxfer.Stats, error) {
	ctx, cancel := context.WithCancel(n.snaps.ctx)
	defer cancel()
	c, err := st.OpenStream(ctx, transport.NodeID(id))
	if err != nil {
		return snapxfer.Stats{}, fmt.Errorf("node: open a stream to %s: %w", id, err)
	}
	defer c.Close()
	return snapxfer.Send(ctx, c, cp, snapID, cfg, func(sent, total int64) { ss.sent.Store(sent); ss.total.Store(total) })
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
