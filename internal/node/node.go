// Package node owns the runtime of one Trireme node: it drives the protocol
// core (internal/repl) with a real clock on one goroutine, persists what the
// core asks through the WAL (internal/wal), applies committed entries to the
// store (internal/store), talks to peers through internal/transport, journals
// rolled-back entries, exports Prometheus metrics, and implements api.Service
// for the client protocols.
//
// It promises: nothing is sent before the state it depends on is durable; a
// write is acknowledged only as its ack mode allows; a WAL, journal or store
// error stops the node (see Fatal) and is never retried; a data directory is
// used by one process at a time, and only by the node and cluster that created
// it. See DESIGN.md.
package node

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/store"
	"github.com/trireme-db/trireme/internal/transport"
	"github.com/trireme-db/trireme/internal/wal"
)

// ErrKeyTooLarge is returned (wrapped) for keys over MaxKeyBytes.
var ErrKeyTooLarge = api.ErrKeyTooLarge

// MaxKeyBytes is the largest key accepted.
const MaxKeyBytes = 64 << 10

// tickDivisor: the core ticks this many times per heartbeat interval.
const tickDivisor = 5

// Node is one running Trireme node. It implements api.Service.
type Node struct {
	cfg       Config
	log       *slog.Logger
	id        repl.NodeID
	clusterID string
	members   map[repl.NodeID]bool
	tick      time.Duration

	lock    *os.File
	wal     *wal.Log
	store   *store.Store
	journal *journal
	core    *repl.Core // owned by the run goroutine
	tr      transport.Transport
	m       *metrics

	msgCh  chan repl.Message
	propCh chan *propReq
	readCh chan *readReq
	ctlCh  chan func()
	stopCh chan struct{}
	doneCh chan struct{}

	fatalCh   chan error
	fatalOnce sync.Once
	stopOnce  sync.Once
	stopErr   error
	closeOnce sync.Once
	closeErr  error

	pubMu   sync.Mutex
	pub     *snapshot     // latest published status, guarded by pubMu
	changed chan struct{} // closed and replaced on every publish, guarded by pubMu

	// Owned by the run goroutine.
	nextID        uint64
	pendingProps  map[uint64]*propReq
	pendingReads  map[uint64]*readReq
	loopErr       error // a fatal storage read error seen through walStorage
	prevRole      repl.Role
	prevLead      repl.NodeID
	leaderLostAt  time.Time
	caughtUp      map[repl.NodeID]time.Time
	tickBase      time.Time // wall-clock start of the core's tick count
	ticksDone     int64     // ticks given to the core since tickBase
	electionTicks int
	hsPending     wal.HardState // a commit-only change not yet persisted
	hsDirty       bool
	hsSavedAt     time.Time
}

// propReq is one write waiting for its Result.
type propReq struct {
	p     repl.Proposal
	start time.Time
	done  chan propResp // buffered 1
}

type propResp struct {
	res repl.Result
	err error
}

// readReq is one linearizable read waiting for its read point.
type readReq struct {
	done chan repl.ReadResult // buffered 1
}

// snapshot is the status the run goroutine publishes for the Service methods.
type snapshot struct {
	st        repl.Status
	at        time.Time
	followers []api.FollowerInfo
}

// Start opens the data directory, recovers, and starts the node.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:          cfg,
		log:          cfg.Logger.With("node", cfg.ID),
		id:           repl.NodeID(cfg.ID),
		clusterID:    cfg.clusterID(),
		members:      make(map[repl.NodeID]bool),
		tick:         max(cfg.Heartbeat/tickDivisor, time.Millisecond),
		msgCh:        make(chan repl.Message, 4096),
		propCh:       make(chan *propReq, 4096),
		readCh:       make(chan *readReq, 1024),
		ctlCh:        make(chan func()),
		stopCh:       make(chan struct{}),
		doneCh:       make(chan struct{}),
		fatalCh:      make(chan error, 1),
		changed:      make(chan struct{}),
		pendingProps: make(map[uint64]*propReq),
		pendingReads: make(map[uint64]*readReq),
		caughtUp:     make(map[repl.NodeID]time.Time),
	}
	for _, m := range cfg.Cluster {
		n.members[repl.NodeID(m.ID)] = true
	}
	defer func() {
		if err != nil {
			n.closeStorage()
			if n.m != nil {
				n.m.unregister()
			}
		}
	}()

	if n.lock, err = lockDir(cfg.DataDir); err != nil {
		return nil, err
	}
	members := make([]string, len(cfg.Cluster))
	for i, m := range cfg.Cluster {
		members[i] = m.ID + "=" + m.PeerAddr
	}
	if err = checkIdentity(cfg.DataDir, identity{NodeID: cfg.ID, ClusterID: n.clusterID, Members: members}); err != nil {
		return nil, err
	}
	if n.journal, err = openJournal(filepath.Join(cfg.DataDir, journalFile)); err != nil {
		return nil, err
	}
	if err = syncDir(cfg.DataDir); err != nil { // the journal's directory entry
		return nil, err
	}
	wcfg := cfg.WAL
	if wcfg.SegmentBytes == 0 {
		wcfg = wal.DefaultConfig()
	}
	wcfg.Logger = n.log.With("component", "wal")
	wcfg.MaxValueBytes = cfg.MaxValueBytes
	wcfg.MaxEntryBytes = max(wcfg.MaxEntryBytes, entry.HeaderSize+MaxKeyBytes+cfg.MaxValueBytes)
	if n.wal, err = wal.Open(filepath.Join(cfg.DataDir, walDir), wcfg); err != nil {
		return nil, fmt.Errorf("node: open WAL: %w", err)
	}
	scfg := cfg.Store
	if scfg.MemTableBytes == 0 {
		scfg = store.DefaultConfig()
	}
	scfg.Logger = n.log.With("component", "store")
	if n.store, err = store.Open(filepath.Join(cfg.DataDir, storeDir), scfg); err != nil {
		return nil, fmt.Errorf("node: open store: %w", err)
	}
	if err = n.replay(); err != nil {
		return nil, err
	}
	if n.m, err = newMetrics(cfg.Registerer, cfg.ID); err != nil {
		return nil, fmt.Errorf("node: register metrics: %w", err)
	}

	rcfg := n.coreConfig()
	n.electionTicks = rcfg.ElectionTicks
	n.core, err = repl.New(rcfg, walStorage{log: n.wal, fatal: func(e error) {
		if n.loopErr == nil {
			n.loopErr = e
		}
	}})
	if err != nil {
		return nil, fmt.Errorf("node: start protocol core: %w", err)
	}
	n.prevRole, n.prevLead = repl.RoleFollower, repl.None

	n.tr = cfg.Transport
	if n.tr == nil {
		tc := transport.DefaultTCPConfig()
		tc.ClusterID = n.clusterID
		tc.Self = transport.PeerInfo{ID: n.id, HTTPAddr: cfg.HTTPAddr, RESPAddr: cfg.RESPAddr}
		tc.Peers = make(map[repl.NodeID]string)
		for _, m := range cfg.Cluster {
			if m.ID == cfg.ID {
				tc.ListenAddr = m.PeerAddr
			} else {
				tc.Peers[repl.NodeID(m.ID)] = m.PeerAddr
			}
		}
		tc.Listener = cfg.PeerListener
		tc.MaxFrameBytes = max(transport.DefaultMaxFrameBytes, 2*rcfg.MaxMsgBytes+4*(entry.HeaderSize+MaxKeyBytes+cfg.MaxValueBytes))
		tc.Logger = n.log.With("component", "transport")
		tcp, err := transport.NewTCP(tc)
		if err != nil {
			return nil, fmt.Errorf("node: %w (check --cluster for node %q)", err, cfg.ID)
		}
		n.tr = tcp
	}
	n.publish(time.Now())
	go n.run()
	if err := n.tr.Start(n); err != nil {
		n.Stop()
		return nil, fmt.Errorf("node: start transport: %w", err)
	}
	n.log.Info("node started", "cluster", n.clusterID, "applied", n.store.AppliedIndex(),
		"last_index", n.wal.LastIndex(), "term", n.wal.HardState().Term, "tick", n.tick.String())
	return n, nil
}

// coreConfig converts the node's durations into the core's ticks.
func (n *Node) coreConfig() repl.Config {
	cfg := &n.cfg
	rc := repl.DefaultConfig()
	rc.ID = n.id
	for _, m := range cfg.Cluster {
		prio := 1
		if p, ok := cfg.Priorities[m.ID]; ok {
			prio = p
		}
		if m.ID == cfg.ID {
			prio = cfg.Priority
		}
		rc.Peers = append(rc.Peers, repl.Peer{ID: repl.NodeID(m.ID), Priority: prio})
	}
	rc.HeartbeatTicks = max(1, int(cfg.Heartbeat/n.tick))
	rc.ElectionTicks = max(rc.HeartbeatTicks*3, int(cfg.ElectionTimeout/n.tick))
	rc.DriftTicks = max(1, rc.ElectionTicks/10)
	rc.LeaseTicks = min(rc.ElectionTicks*3/4, rc.ElectionTicks-rc.DriftTicks-1)
	rc.Applied = n.store.AppliedIndex()
	rc.MaxMsgBytes = max(rc.MaxMsgBytes, 1<<20)
	rc.DefaultProposalTimeoutTicks = n.ticks(cfg.WriteTimeout)
	seed := n.cfg.Seed
	if seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(cfg.ID))
		seed = time.Now().UnixNano() ^ int64(h.Sum64())
	}
	rc.Rand = rand.New(rand.NewSource(seed))
	rc.Logger = cfg.Logger.With("component", "repl") // the core adds "node"
	return rc
}

// ticks converts d to ticks, rounding up, at least 1.
func (n *Node) ticks(d time.Duration) int {
	return max(1, int((d+n.tick-1)/n.tick))
}

// replay applies the committed WAL entries the store has not applied yet.
func (n *Node) replay() error {
	applied := n.store.AppliedIndex()
	last := n.wal.LastIndex()
	if applied > last {
		return fmt.Errorf("node: the store has applied index %d but the WAL ends at %d: the WAL in %s lost entries",
			applied, last, filepath.Join(n.cfg.DataDir, walDir))
	}
	commit := min(n.wal.HardState().Commit, last)
	start := applied
	for applied < commit {
		ents, err := n.wal.Entries(applied+1, commit+1, 8<<20)
		if err != nil {
			return fmt.Errorf("node: replay WAL from index %d: %w", applied+1, err)
		}
		if len(ents) == 0 {
			return fmt.Errorf("node: replay WAL: no entries at index %d", applied+1)
		}
		if err := n.store.Apply(ents); err != nil {
			return fmt.Errorf("node: replay into store at index %d: %w", applied+1, err)
		}
		applied = ents[len(ents)-1].Index
	}
	if commit > start {
		n.log.Info("replayed WAL into store", "from", start+1, "to", commit)
	}
	return nil
}

// Fatal delivers the error that stopped the node (a failed fsync, write or
// read of the WAL, journal or store). The node no longer serves after it;
// the caller should log it and exit.
func (n *Node) Fatal() <-chan error { return n.fatalCh }

// Metrics serves the node's Prometheus metrics: its own registry when
// Config.Registerer is nil, else the Registerer if it is also a Gatherer,
// else the default gatherer.
func (n *Node) Metrics() http.Handler { return n.m.handler }

// ID is this node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Stop stops the node and closes its storage. Pending operations fail with
// api.ErrStopped (writes in flight with api.ErrOutcomeUnknown).
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		var errs []error
		if n.tr != nil {
			errs = append(errs, n.tr.Close())
		}
		close(n.stopCh)
		if n.core != nil {
			<-n.doneCh
		}
		errs = append(errs, n.closeStorage())
		if n.m != nil {
			n.m.unregister()
		}
		n.stopErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.stopErr
}

func (n *Node) closeStorage() error {
	n.closeOnce.Do(func() { n.closeErr = n.closeStorageOnce() })
	return n.closeErr
}

func (n *Node) closeStorageOnce() error {
	var errs []error
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.wal != nil {
		errs = append(errs, n.wal.Close())
	}
	if n.journal != nil {
		errs = append(errs, n.journal.close())
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
	}
	return errors.Join(errs...)
}

func (n *Node) setFatal(err error) {
	n.fatalOnce.Do(func() {
		n.log.Error("fatal storage error: node stops", "err", err)
		if n.m != nil {
			n.m.fatal.Set(1)
		}
		n.fatalCh <- err
	})
}

// HandleMessage implements transport.Handler.
func (n *Node) HandleMessage(m repl.Message) {
	if m.To != n.id || !n.members[m.From] {
		return
	}
	select {
	case n.msgCh <- m:
	case <-n.doneCh:
	}
}

// run is the one goroutine that owns the core. See DESIGN.md.
func (n *Node) run() {
	defer close(n.doneCh)
	n.tickBase = time.Now()
	ticker := time.NewTicker(n.tick)
	defer ticker.Stop()
	for {
		select {
		case <-n.stopCh:
			if err := n.flushHardState(true); err != nil {
				n.setFatal(err)
			}
			n.failAll()
			return
		case now := <-ticker.C:
			n.tickUpTo(now)
			if err := n.flushHardState(false); err != nil && n.loopErr == nil {
				n.loopErr = err
			}
		case m := <-n.msgCh:
			n.step(m)
		case p := <-n.propCh:
			n.propose(p)
		case r := <-n.readCh:
			n.read(r)
		case f := <-n.ctlCh:
			f()
		}
		n.drain()
		err := n.processReady()
		if err == nil {
			err = n.loopErr
		}
		now := time.Now()
		if err != nil {
			n.setFatal(err)
			n.failAll()
			n.publish(now)
			return
		}
		n.publish(now)
	}
}

// tickUpTo ticks the core as many times as wall-clock ticks have passed since
// the loop started. A time.Ticker drops ticks while the loop is busy (a slow
// fsync); not catching up would slow the core's clock, and a leader whose clock
// runs slow would keep its lease longer in real time than its followers wait
// before electing another: stale linearizable reads. Catch-up is capped at two
// election timeouts, beyond which every timer has expired anyway.
func (n *Node) tickUpTo(now time.Time) {
	due := int64(now.Sub(n.tickBase) / n.tick)
	if lag := due - n.ticksDone; lag > int64(2*n.electionTicks) {
		n.ticksDone = due - int64(2*n.electionTicks)
	}
	for n.ticksDone < due {
		n.core.Tick()
		n.ticksDone++
	}
}

// drain takes every input already waiting, so that one Ready (one WAL append,
// one fsync, one message per follower) covers many of them.
func (n *Node) drain() {
	for range 8192 {
		select {
		case m := <-n.msgCh:
			n.step(m)
		case p := <-n.propCh:
			n.propose(p)
		case r := <-n.readCh:
			n.read(r)
		default:
			return
		}
	}
}

func (n *Node) step(m repl.Message) {
	if err := n.core.Step(m); err != nil {
		n.log.Debug("refused peer message", "peer", string(m.From), "type", m.Type.String(), "term", m.Term, "err", err)
	}
}

func (n *Node) propose(p *propReq) {
	n.nextID++
	p.p.ID = n.nextID
	if err := n.core.Propose(p.p); err != nil {
		p.done <- propResp{err: err}
		return
	}
	n.pendingProps[p.p.ID] = p
}

func (n *Node) read(r *readReq) {
	n.nextID++
	id := n.nextID
	if err := n.core.Read(repl.ReadRequest{ID: id, Level: repl.ReadLinearizable}); err != nil {
		r.done <- repl.ReadResult{ID: id, Err: err}
		return
	}
	n.pendingReads[id] = r
}

// failAll answers every waiting caller when the loop ends.
func (n *Node) failAll() {
	for id, p := range n.pendingProps {
		p.done <- propResp{err: fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, api.ErrStopped)}
		delete(n.pendingProps, id)
	}
	for id, r := range n.pendingReads {
		r.done <- repl.ReadResult{ID: id, Err: api.ErrStopped}
		delete(n.pendingReads, id)
	}
}

// processReady handles every Ready the core has, in the order the Ready
// contract (internal/repl/types.go) requires. Any error is fatal.
func (n *Node) processReady() error {
	for n.core.HasReady() {
		rd := n.core.Ready()
		n.m.readyBatches.Inc()
		// 1. Journal discarded entries before the log forgets them.
		if len(rd.Discarded) > 0 {
			if err := n.journal.append(rd.Discarded, time.Now()); err != nil {
				return err
			}
			n.m.rollbacks.Add(float64(len(rd.Discarded)))
			n.log.Warn("discarded log entries into the rollback journal", "count", len(rd.Discarded),
				"index", rd.Discarded[0].Index, "term", rd.Discarded[0].Term)
		}
		// 2. Entries then HardState, durably.
		if len(rd.Entries) > 0 {
			if first := rd.Entries[0].Index; first <= n.wal.LastIndex() {
				if err := n.wal.TruncateAfter(first - 1); err != nil {
					return fmt.Errorf("node: truncate WAL after index %d: %w", first-1, err)
				}
			}
			if err := n.wal.Append(rd.Entries); err != nil {
				return fmt.Errorf("node: append %d entries to the WAL at index %d: %w", len(rd.Entries), rd.Entries[0].Index, err)
			}
			n.m.readyEntries.Add(float64(len(rd.Entries)))
		}
		if !rd.HardState.IsEmpty() {
			hs := wal.HardState{Term: rd.HardState.Term, Vote: string(rd.HardState.Vote), Commit: rd.HardState.Commit}
			if err := n.saveHardState(hs, false); err != nil {
				return err
			}
		}
		// 3. Messages, only now that what they depend on is durable.
		for _, m := range rd.Messages {
			if m.To != n.id {
				n.tr.Send(m)
			}
		}
		// 4. Apply committed entries in one batch.
		if len(rd.CommittedEntries) > 0 {
			if err := n.store.Apply(rd.CommittedEntries); err != nil {
				return fmt.Errorf("node: apply entries %d..%d to the store: %w", rd.CommittedEntries[0].Index,
					rd.CommittedEntries[len(rd.CommittedEntries)-1].Index, err)
			}
		}
		// 5. Reads and results.
		for _, r := range rd.Reads {
			if w := n.pendingReads[r.ID]; w != nil {
				delete(n.pendingReads, r.ID)
				w.done <- r
			}
		}
		for _, r := range rd.Results {
			if w := n.pendingProps[r.ID]; w != nil {
				delete(n.pendingProps, r.ID)
				w.done <- propResp{res: r}
			}
		}
		// 6.
		n.core.Advance(rd)
	}
	return nil
}

// hardStateCommitInterval bounds how often a change of the commit index alone
// is persisted. The persisted commit is a hint (the core takes
// max(commit, applied) and relearns the rest from the leader), so it may lag;
// a new term or vote is always persisted before anything that depends on it.
const hardStateCommitInterval = 250 * time.Millisecond

// saveHardState persists hs now if its term or vote changed (or force, or the
// commit-only interval passed); otherwise it is kept for flushHardState.
func (n *Node) saveHardState(hs wal.HardState, force bool) error {
	saved := n.wal.HardState()
	if hs == saved {
		n.hsDirty = false
		return nil
	}
	if !force && hs.Term == saved.Term && hs.Vote == saved.Vote && time.Since(n.hsSavedAt) < hardStateCommitInterval {
		n.hsPending, n.hsDirty = hs, true
		return nil
	}
	if err := n.wal.SetHardState(hs); err != nil {
		return fmt.Errorf("node: persist hard state (term %d, commit %d): %w", hs.Term, hs.Commit, err)
	}
	n.hsSavedAt, n.hsDirty = time.Now(), false
	return nil
}

// flushHardState persists a commit-only change held back by saveHardState.
func (n *Node) flushHardState(force bool) error {
	if !n.hsDirty {
		return nil
	}
	return n.saveHardState(n.hsPending, force)
}

// publish snapshots the core's status for the Service methods and updates
// the gauges and the election and failover metrics.
func (n *Node) publish(now time.Time) {
	st := n.core.Status()
	m := n.m
	if st.Role != n.prevRole {
		switch st.Role {
		case repl.RoleCandidate:
			m.electionsStarted.Inc()
		case repl.RoleLeader:
			m.electionsWon.Inc()
			clear(n.caughtUp)
			for _, f := range st.Followers {
				n.caughtUp[f.ID] = now
			}
			n.log.Info("became leader", "term", st.Term, "index", st.LastIndex)
		}
		if n.prevRole == repl.RoleLeader {
			m.followerLagEntries.Reset()
			m.followerLagSeconds.Reset()
			n.log.Info("stepped down", "term", st.Term, "role", st.Role.String())
		}
		n.prevRole = st.Role
	}
	if st.Lead != n.prevLead {
		if st.Lead == repl.None {
			n.leaderLostAt = now
		} else if !n.leaderLostAt.IsZero() {
			m.failoverSeconds.Observe(now.Sub(n.leaderLostAt).Seconds())
			n.leaderLostAt = time.Time{}
		}
		n.prevLead = st.Lead
	}
	m.role.Set(float64(st.Role))
	m.term.Set(float64(st.Term))
	m.lastIndex.Set(float64(st.LastIndex))
	m.commitIndex.Set(float64(st.Commit))
	m.appliedIndex.Set(float64(st.Applied))
	var fi []api.FollowerInfo
	if st.Role == repl.RoleLeader {
		fi = make([]api.FollowerInfo, 0, len(st.Followers))
		for _, f := range st.Followers {
			if f.Match >= st.LastIndex {
				n.caughtUp[f.ID] = now
			}
			since, ok := n.caughtUp[f.ID]
			if !ok {
				since = now
				n.caughtUp[f.ID] = now
			}
			lag := uint64(0)
			if st.LastIndex > f.Match {
				lag = st.LastIndex - f.Match
			}
			lagMs := now.Sub(since).Milliseconds()
			fi = append(fi, api.FollowerInfo{ID: string(f.ID), MatchIndex: f.Match, LagEntries: lag, LagMillis: lagMs,
				LastContactMs: int64(f.TicksSinceContact) * n.tick.Milliseconds()})
			m.followerLagEntries.WithLabelValues(string(f.ID)).Set(float64(lag))
			m.followerLagSeconds.WithLabelValues(string(f.ID)).Set(float64(lagMs) / 1000)
		}
	}
	s := &snapshot{st: st, at: now, followers: fi}
	n.pubMu.Lock()
	n.pub = s
	close(n.changed)
	n.changed = make(chan struct{})
	n.pubMu.Unlock()
}

// status returns the latest published snapshot and a channel closed on the next.
func (n *Node) status() (*snapshot, <-chan struct{}) {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	return n.pub, n.changed
}

var _ api.Service = (*Node)(nil)
var _ transport.Handler = (*Node)(nil)

// stopped reports whether the loop has ended (Stop or a fatal error).
func (n *Node) stopped() bool {
	select {
	case <-n.doneCh:
		return true
	default:
		return false
	}
}
