// Package node owns the runtime of one Trireme node: it drives the protocol
// core (internal/repl) with a real clock on one goroutine, persists what the
// core asks through the WAL (internal/wal), applies committed entries to the
// store (internal/store), talks to peers through internal/transport, journals
// rolled-back entries, exports Prometheus metrics, and implements api.Service
// for the client protocols.
//
// It promises: nothing is sent before the state it depends on is durable; a
// write is acknowledged only as its ack mode allows; a WAL, journal or store
// error stops the node (see Fatal) and is never retried, and so does a data
// directory that was removed or stopped taking writes (disk.go); below
// Config.DiskReserveBytes of free space a leader refuses client writes; a
// data directory is used by one process at a time, and only by the node and
// cluster that created it. See DESIGN.md.
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
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/datadir"
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

// maxEntryValue is the largest value an entry may hold when client values are
// limited to maxValue: a command entry holds the command's encoding, which
// adds its key, an idempotency key and fixed fields to the value
// (checkCommand refuses anything longer).
func maxEntryValue(maxValue int) int { return maxValue + MaxKeyBytes + 1024 }

// tickDivisor: the core ticks this many times per heartbeat interval.
const tickDivisor = 5

// Node is one running Trireme node. It implements api.Service.
type Node struct {
	bounded   boundedState // session.go: the read point bounded reads rely on
	cfg       Config
	log       *slog.Logger
	id        repl.NodeID
	clusterID string
	tick      time.Duration
	// view is the active configuration for goroutines other than the run
	// loop; removed is set once a committed configuration leaves this
	// node out (it then refuses clients).
	view    atomic.Pointer[memberView]
	removed atomic.Bool

	lock    *os.File
	wal     *wal.Log
	store   *store.Store
	journal *journal
	core    *repl.Core // owned by the run goroutine
	tr      transport.Transport
	m       *metrics
	disk    *diskGuard // free space, reserve, removed or read-only data directory
	compact *compactor // drops old WAL segments (compact.go)
	// bgFault receives a fault found off the run loop (one, buffered): by
	// the disk guard, or a failed WAL compaction. The run loop stops on it.
	bgFault chan error

	msgCh chan repl.Message
	// Writers append proposals to propQ and, when it was empty, signal
	// propReady; the run loop takes the whole queue at once. (A channel
	// would cost the loop a select per proposal.) propClosed is set when
	// the loop has ended: nothing more is taken.
	propMu     sync.Mutex
	propQ      []*propReq // guarded by propMu
	propClosed bool       // guarded by propMu
	propReady  chan struct{}
	propSpare  []*propReq // the run loop's other queue buffer
	readCh     chan *readReq
	ctlCh      chan func()
	coord      *coordRunner     // the external coordinator's runner (--election coordinator), nil otherwise
	installCh  chan *installReq // received snapshots, to install on the run loop
	snaps      *snapshots
	stopCh     chan struct{}
	doneCh     chan struct{}

	applyCh     chan applyJob // run loop -> applier, in Ready order
	applierDone chan struct{} // closed when the applier has ended
	// cmdWriters counts the command writers waiting on this node: only then
	// does the applier keep command results (followers never have any).
	cmdWriters  atomic.Int64
	applyFailed chan struct{} // closed by the applier after a store error
	applyErr    error         // the store error; read after applyFailed is closed

	fatalCh   chan error
	fatalOnce sync.Once
	stopOnce  sync.Once
	stopErr   error
	closeOnce sync.Once
	closeErr  error

	pub      atomic.Pointer[snapshot] // latest published status
	timers   sync.Pool                // *time.Timer for writers' waits (getTimer)
	propReqs sync.Pool                // *propReq of answered writes (getPropReq)

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
	inflight      []inflightReady // Readies waiting for their WAL write, in order
	walLast       uint64          // last index submitted to the WAL
	lastTicket    wal.Ticket      // last WAL ticket submitted
	durableTicket wal.Ticket      // every ticket up to this one is durable
	walDone       <-chan struct{} // wal.Done(durableTicket+1) while a ticket is outstanding, else nil
	heldProps     []*propReq      // proposals held while a WAL write or a batch is in flight
	lingering     bool            // heldProps are held for the batch in flight (lingerTimer armed)
	lingerTimer   *time.Timer     // fires maxLinger after the first lingering proposal
	lastBatch     int             // entries in the last Ready that had any
	lastCommit    uint64          // commit index seen at the last loop iteration
	commitMovedAt time.Time       // when the commit index last moved
	hsPending     wal.HardState   // a commit-only change not yet persisted
	hsDirty       bool
	hsSavedAt     time.Time
	refusedLogAt  time.Time // when a refused peer message was last logged at Warn
	refusedQuiet  int       // refused messages not logged since then

	// forgedMsgs counts peer messages dropped because they named a sender
	// other than the connection's member, or another recipient (the
	// transport does not look inside single-leader messages).
	forgedMsgs atomic.Uint64
}

// propReq is one write waiting for its Result.
type propReq struct {
	p     repl.Proposal
	start time.Time
	done  chan propResp // buffered 1
	more  []*propReq    // the rest of a batch, proposed right after p, in order
}

type propResp struct {
	res     repl.Result
	cmd     command.Result // a command's result (KindCommand)
	err     error
	refused bool // the core refused the proposal: nothing was written
}

// applyJob is the part of one Ready that follows the WAL write: committed
// entries to apply, then the reads and writers to answer. The applier
// goroutine runs jobs in order.
type applyJob struct {
	ents    []entry.Entry
	reads   []readDone
	results []propDone
	barrier chan struct{} // closed when the applier reaches the job (snapshot install)
}

type readDone struct {
	w *readReq
	r repl.ReadResult
}

type propDone struct {
	w *propReq
	r repl.Result
}

// inflightReady is a Ready whose WAL write (or an earlier one) is not yet
// durable: its held messages and its Advance wait for ticket.
type inflightReady struct {
	rd     repl.Ready
	held   []repl.Message
	ticket wal.Ticket
}

// maxInflightReadies bounds the Readies the run loop hands out before the
// oldest one's WAL write completes (the WAL merges them into few fsyncs).
const maxInflightReadies = 64

// readReq is one linearizable read waiting for its read point.
type readReq struct {
	done chan repl.ReadResult // buffered 1
}

// snapshot is the status the run goroutine publishes for the Service methods.
type snapshot struct {
	st        repl.Status
	at        time.Time
	followers []api.FollowerInfo
	changed   chan struct{} // closed when the next snapshot is published
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
		tick:         max(cfg.Heartbeat/tickDivisor, time.Millisecond),
		msgCh:        make(chan repl.Message, 4096),
		propReady:    make(chan struct{}, 1),
		readCh:       make(chan *readReq, 1024),
		ctlCh:        make(chan func()),
		installCh:    make(chan *installReq),
		snaps:        newSnapshots(),
		stopCh:       make(chan struct{}),
		doneCh:       make(chan struct{}),
		fatalCh:      make(chan error, 1),
		bgFault:      make(chan error, 1),
		applyCh:      make(chan applyJob, 64),
		applierDone:  make(chan struct{}),
		applyFailed:  make(chan struct{}),
		pendingProps: make(map[uint64]*propReq),
		pendingReads: make(map[uint64]*readReq),
		caughtUp:     make(map[repl.NodeID]time.Time),
	}
	defer func() {
		if err != nil {
			n.closeStorage()
			if n.m != nil {
				n.m.unregister()
			}
		}
	}()

	members := make([]string, len(cfg.Cluster))
	for i, m := range cfg.Cluster {
		members[i] = m.ID + "=" + m.PeerAddr
	}
	if n.lock, err = datadir.Open(cfg.DataDir, datadir.Identity{NodeID: cfg.ID, ClusterID: n.clusterID, Members: members}); err != nil {
		return nil, err
	}
	if cfg.JoinConf != nil {
		if err = saveJoin(cfg.DataDir, n.clusterID, *cfg.JoinConf); err != nil {
			return nil, err
		}
	} else if _, cs, jerr := LoadJoin(cfg.DataDir); jerr != nil {
		return nil, jerr
	} else if len(cs.Members) > 0 {
		n.cfg.JoinConf = &cs
	}
	if n.journal, err = openJournal(filepath.Join(cfg.DataDir, journalFile), n.log); err != nil {
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
	wcfg.MaxValueBytes = maxEntryValue(cfg.MaxValueBytes)
	wcfg.MaxEntryBytes = max(wcfg.MaxEntryBytes, entry.HeaderSize+MaxKeyBytes+maxEntryValue(cfg.MaxValueBytes))
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
	// Snapshots (snapinstall.go): finish an install a crash cut between the
	// store and the WAL; discard what transfers left.
	if err = n.recoverSnapshots(); err != nil {
		return nil, err
	}
	if err = n.replay(); err != nil {
		return nil, err
	}
	if n.m, err = newMetrics(cfg.Registerer, cfg.ID); err != nil {
		return nil, fmt.Errorf("node: register metrics: %w", err)
	}
	n.disk, err = newDiskGuard(cfg.DataDir, guardedDirs(cfg.DataDir, wcfg.FS), cfg.DiskReserveBytes, cfg.diskCheckInterval(),
		n.log.With("component", "disk"), n.m, n.reportBgFault)
	if err != nil {
		return nil, err
	}
	n.compact = newCompactor(n.wal, n.store, cfg.LogRetainBytes, cfg.logCompactInterval(),
		n.log.With("component", "compact"), n.m, n.reportBgFault)

	rcfg := n.coreConfig()
	conf, err := n.storedConf()
	if err != nil {
		return nil, err
	}
	rcfg.Conf = &conf
	n.electionTicks = max(rcfg.ElectionTicks, rcfg.MaxElectionTicks)
	n.core, err = repl.New(rcfg, walStorage{log: n.wal, fatal: func(e error) {
		if n.loopErr == nil {
			n.loopErr = e
		}
	}})
	if err != nil {
		return nil, fmt.Errorf("node: start protocol core: %w", err)
	}
	// The core's configuration: the store's, or a later one from the log.
	cs, csIndex := n.core.Conf()
	n.view.Store(newMemberView(cs, csIndex, nil))
	n.prevRole, n.prevLead = repl.RoleFollower, repl.None

	n.tr = cfg.Transport
	if n.tr == nil {
		tc := transport.DefaultTCPConfig()
		tc.ClusterID = n.clusterID
		tc.Self = transport.PeerInfo{ID: transport.NodeID(n.id), HTTPAddr: cfg.HTTPAddr, RESPAddr: cfg.RESPAddr}
		tc.Peers = make(map[transport.NodeID]string)
		for _, m := range cfg.Cluster {
			if m.ID == cfg.ID {
				tc.ListenAddr = m.PeerAddr
			} else {
				tc.Peers[transport.NodeID(m.ID)] = m.PeerAddr
			}
		}
		tc.Listener = cfg.PeerListener
		tc.TLS = cfg.PeerTLS
		tc.Clients = make(map[transport.NodeID]transport.PeerInfo, len(cfg.PeerClients))
		for id, a := range cfg.PeerClients {
			tc.Clients[transport.NodeID(id)] = transport.PeerInfo{ID: transport.NodeID(id), HTTPAddr: a.HTTP, RESPAddr: a.RESP}
		}
		tc.MaxFrameBytes = max(transport.DefaultMaxFrameBytes, 2*rcfg.MaxMsgBytes+4*(entry.HeaderSize+MaxKeyBytes+maxEntryValue(cfg.MaxValueBytes)))
		tc.Logger = n.log.With("component", "transport")
		tcp, err := transport.NewTCP(tc)
		if err != nil {
			return nil, fmt.Errorf("node: %w (check --cluster for node %q)", err, cfg.ID)
		}
		n.tr = tcp
	}
	if pu, ok := n.tr.(peerUpdater); ok {
		pu.SetPeers(peerAddrs(cs, n.id))
	}
	pc, _ := n.tr.(peerCounters) // nil if it counts nothing
	if err := n.m.watchPeers(n.forgedMsgs.Load, pc); err != nil {
		return nil, fmt.Errorf("node: metrics: %w", err)
	}
	if err := n.m.watchIdempotency(n.store.IdempotencyRecords); err != nil {
		return nil, fmt.Errorf("node: metrics: %w", err)
	}
	n.walLast = n.wal.LastIndex()
	n.publish(time.Now())
	n.disk.start()
	n.compact.start()
	go n.applier()
	go n.run()
	if cfg.Election == ElectionCoordinator {
		if err := n.startCoordinator(); err != nil {
			n.Stop()
			return nil, fmt.Errorf("node: coordinator: %w", err)
		}
	}
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
	rc.ExternalElection = cfg.Election == ElectionCoordinator
	rc.HeartbeatTicks = max(1, int(cfg.Heartbeat/n.tick))
	rc.ElectionTicks = max(rc.HeartbeatTicks*3, int(cfg.ElectionTimeout/n.tick))
	if cfg.FailureDetector == DetectorAdaptive {
		// The lower bound is every follower's stickiness, which the lease
		// below is sized from; the upper bound caps the learned deadline.
		rc.Detector = repl.DetectorAdaptive
		rc.MaxElectionTicks = rc.ElectionTicks
		rc.ElectionTicks = min(rc.MaxElectionTicks, max(rc.HeartbeatTicks*2, int(cfg.ElectionTimeoutMin/n.tick)))
		rc.PauseTicks = int(cfg.HeartbeatPause / n.tick)
	}
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

// replay applies the committed WAL entries the store has not applied yet,
// from the store's applied index on (the WAL may have been compacted up to
// the store's durable index, never further).
func (n *Node) replay() error {
	applied := n.store.AppliedIndex()
	first, last := n.wal.FirstIndex(), n.wal.LastIndex()
	if applied > last {
		return fmt.Errorf("node: the store has applied index %d but the WAL ends at %d: the WAL in %s lost entries",
			applied, last, filepath.Join(n.cfg.DataDir, walDir))
	}
	if first > applied+1 {
		return fmt.Errorf("node: the WAL in %s starts at index %d but the store in %s has applied only through index %d: "+
			"the entries in between are gone (the store lost state it had made durable, or the WAL was compacted past it)",
			filepath.Join(n.cfg.DataDir, walDir), first, filepath.Join(n.cfg.DataDir, storeDir), applied)
	}
	// The store may also ask for more: a drain of its write buffer cut short
	// by a crash left keys newer than its applied index, all from entries it
	// had applied (so committed, and in the WAL); replaying through them
	// makes its state a prefix of the log again before anything reads it.
	recover := n.store.RecoverIndex()
	if recover > last {
		return fmt.Errorf("node: the store holds entries through index %d (a drain cut short by a crash) but the WAL ends at %d: the WAL in %s lost entries",
			recover, last, filepath.Join(n.cfg.DataDir, walDir))
	}
	commit := max(min(n.wal.HardState().Commit, last), recover)
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
		if n.coord != nil {
			n.coord.close()
		}
		n.snaps.cancel() // senders and receivers end; the run loop stops next
		if n.tr != nil {
			errs = append(errs, n.tr.Close())
		}
		close(n.stopCh)
		if n.core != nil {
			<-n.doneCh
		}
		n.snaps.wg.Wait() // senders checkpoint the store: wait before closing it
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
	if n.disk != nil {
		n.disk.close()
	}
	if n.compact != nil {
		n.compact.close() // before the WAL and the store it uses
	}
	if n.store != nil {
		errs = append(errs, n.closeStore())
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

// storeCloseGrace bounds the wait for the store to close after it failed:
// a write may be held inside Pebble for good, and the applier with it (see
// store.Close).
const storeCloseGrace = 2 * time.Second

// closeStore closes the store; after a store failure it waits at most
// storeCloseGrace and then leaves it (the process is expected to exit).
func (n *Node) closeStore() error {
	done := make(chan error, 1)
	go func() { done <- n.store.Close() }()
	select {
	case err := <-done:
		return err
	case <-n.store.Failed():
	}
	t := time.NewTimer(storeCloseGrace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("node: the store in %s did not close within %v of its failure; left open: %w",
			filepath.Join(n.cfg.DataDir, storeDir), storeCloseGrace, n.store.Err())
	}
}

// reportBgFault hands a fault found off the run loop to it (bgFault); only
// the first one is kept.
func (n *Node) reportBgFault(err error) {
	select {
	case n.bgFault <- err:
	default:
	}
}

func (n *Node) setFatal(err error) {
	n.fatalOnce.Do(func() {
		if n.disk != nil {
			err = n.disk.explain(err)
		}
		n.log.Error("fatal storage error: node stops", "err", err)
		if n.m != nil {
			n.m.fatal.Set(1)
		}
		n.fatalCh <- err
	})
}

// HandlePayload implements transport.Handler: a single-leader message
// (repl.AppendMessage's encoding) from peer `from`, the connection's
// authenticated member. It decodes the message here, on the transport's
// goroutine, and pushes it into msgCh, blocking (TCP back-pressure). A
// message that names another sender than from, or another recipient than
// this node, is forged: dropped, counted (forgedMsgs) and logged; one that
// does not decode is dropped, counted as refused and logged; one from a node
// outside the configuration is dropped. Another engine's payload means a
// peer runs another mode: dropped and logged.
func (n *Node) HandlePayload(from transport.NodeID, e transport.Engine, body []byte) {
	if e != transport.EngineSingleLeader {
		n.refusePeer("dropped a payload for another replication engine", "peer", string(from), "engine", e.String())
		return
	}
	m, err := repl.DecodeMessage(body)
	switch {
	case err != nil:
		n.m.refusedMsgs.Inc()
		n.refusePeer("refused an undecodable peer message", "peer", string(from), "err", err)
		return
	case m.From != repl.NodeID(from) || m.To != n.id:
		n.forgedMsgs.Add(1)
		n.refusePeer("dropped a peer message with a forged sender or another recipient", "peer", string(from),
			"from", string(m.From), "to", string(m.To), "type", m.Type.String())
		return
	case !n.view.Load().isKnown(m.From):
		return
	}
	select {
	case n.msgCh <- m:
	case <-n.doneCh:
	}
}

// refusePeer logs a refused peer message on the run loop, which owns the
// rate limit of refusals (a warning at most once a second).
func (n *Node) refusePeer(msg string, args ...any) {
	logRefusal := func() {
		if now := time.Now(); now.Sub(n.refusedLogAt) >= time.Second {
			n.log.Warn(msg, append(args, "not_logged_since_last", n.refusedQuiet)...)
			n.refusedLogAt, n.refusedQuiet = now, 0
		} else {
			n.refusedQuiet++
		}
	}
	select {
	case n.ctlCh <- logRefusal:
	case <-n.doneCh:
	}
}

// wireMsg is a single-leader message as a transport.Encoder: the transport
// encodes it (repl.AppendMessage) on its writer goroutine, into its buffer,
// rather than the run loop.
type wireMsg repl.Message

// AppendPayload implements transport.Encoder.
func (m *wireMsg) AppendPayload(dst []byte) []byte {
	return repl.AppendMessage(dst, (*repl.Message)(m))
}

// send hands m to the transport without copying or encoding it: m must not
// change afterwards (it is an element of a Ready's Messages or of an
// in-flight Ready's held messages, which nothing modifies).
func (n *Node) send(m *repl.Message) {
	n.tr.SendEncoder(transport.NodeID(m.To), transport.EngineSingleLeader, (*wireMsg)(m))
}

// HandlePeerDown implements transport.Handler: a refused connection to id
// is a hint for the failure detector (repl.Core.PeerDown).
func (n *Node) HandlePeerDown(id transport.NodeID) {
	select {
	case n.ctlCh <- func() { n.core.PeerDown(repl.NodeID(id)) }:
	case <-n.doneCh:
	}
}

// run is the one goroutine that owns the core. See DESIGN.md.
func (n *Node) run() {
	defer close(n.doneCh)
	defer func() {
		// Let the applier finish (it answers every job handed to it)
		// before the storage can be closed.
		close(n.applyCh)
		n.waitApplier()
	}()
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
		case <-n.propReady:
			n.takeProps()
		case r := <-n.readCh:
			n.read(r)
		case f := <-n.ctlCh:
			f()
		case req := <-n.installCh:
			n.runInstall(req) // a received snapshot (snapinstall.go)
		case <-n.applyFailed:
			n.loopErr = n.applyErr
		case <-n.store.Failed():
			// A Pebble flush or compaction failed (a full disk, an I/O
			// error): stop now, not at the next Apply, which may be held
			// inside Pebble.
			if n.loopErr == nil {
				n.loopErr = fmt.Errorf("node: %w", n.store.Err())
			}
		case err := <-n.bgFault:
			if n.loopErr == nil {
				n.loopErr = err
			}
		case <-n.walDone:
			n.onPersisted()
		case <-n.lingerC():
			n.lingering = false
			n.maybeReleaseHeld()
		}
		n.drain()
		// The batch in flight is committed (an acknowledgement just
		// stepped, or the WAL made the leader's own copy durable): propose
		// the held ones before the Ready, so that the new commit index
		// travels with them in one MsgApp per follower instead of in an
		// empty MsgApp of its own (which each follower would also answer).
		n.releaseIfCommitted()
		err := n.loopErr
		if err == nil {
			err = n.processReady()
		}
		if err == nil && n.releaseIfCommitted() {
			// Advance inside processReady committed the batch.
			err = n.processReady()
		}
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

// onPersisted records the WAL tickets that are now durable (n.walDone has
// fired), completes the in-flight Readies they cover, and releases held
// proposals.
func (n *Node) onPersisted() {
	for n.durableTicket < n.lastTicket {
		t := n.durableTicket + 1
		select {
		case <-n.wal.Done(t):
		default:
			n.walDone = n.wal.Done(t)
			n.completeInflight()
			n.maybeReleaseHeld()
			return
		}
		if err := n.wal.Wait(t); err != nil { // returns at once
			if n.loopErr == nil {
				n.loopErr = fmt.Errorf("node: append entries to the WAL: %w", err)
			}
			n.walDone = nil
			return
		}
		n.durableTicket = t
	}
	n.walDone = nil
	n.completeInflight()
	n.maybeReleaseHeld()
}

// releaseIfCommitted ends a linger whose batch has committed and proposes the
// held proposals (if the WAL allows). It reports whether it ended a linger.
func (n *Node) releaseIfCommitted() bool {
	if len(n.heldProps) == 0 || !n.lingering || n.core.Replicating() {
		return false
	}
	n.stopLinger()
	n.maybeReleaseHeld()
	return true
}

func (n *Node) maybeReleaseHeld() {
	if n.walBatchesInFlight() < maxWALBatchesInFlight && !n.lingering {
		n.releaseHeld()
	}
}

// lingerC is the linger timer's channel while proposals linger, else nil.
func (n *Node) lingerC() <-chan time.Time {
	if !n.lingering {
		return nil
	}
	return n.lingerTimer.C
}

func (n *Node) stopLinger() {
	if n.lingering {
		n.lingerTimer.Stop()
		n.lingering = false
	}
}

// shouldLinger reports whether a new proposal should wait for the batch that
// is being replicated, to join the next batch with the others that arrive
// meanwhile (Nagle's rule for the log): each batch costs one WAL fsync on
// every node, one message and one acknowledgement per follower, so under
// concurrent writers fewer, larger batches buy throughput. Only a node that
// already sees concurrent writers (its last batch had at least lingerMinBatch
// entries) lingers, so a lone writer never waits, not even an async one
// answered before its entry commits; and nobody waits for a cluster whose
// commit index has stalled (a majority down).
func (n *Node) shouldLinger() bool {
	if n.lastBatch < lingerMinBatch || !n.core.Replicating() {
		return false
	}
	return time.Since(n.commitMovedAt) < lingerLive
}

// completeInflight sends the held messages of, and advances, every in-flight
// Ready whose WAL write is durable, oldest first.
func (n *Node) completeInflight() {
	k := 0
	for ; k < len(n.inflight) && n.inflight[k].ticket <= n.durableTicket; k++ {
		f := &n.inflight[k]
		for i := range f.held {
			n.send(&f.held[i])
		}
		n.core.Advance(f.rd)
	}
	if k > 0 {
		rest := copy(n.inflight, n.inflight[k:])
		clear(n.inflight[rest:])
		n.inflight = n.inflight[:rest]
	}
}

// applierGrace bounds the wait for the applier once the store has failed:
// the applier may be held inside Pebble for good (store.Close explains).
// The jobs it holds are then never answered by it; their writers and
// readers see the loop's end (doneCh, failAll) like any caller of a
// stopped node.
const applierGrace = time.Second

// waitApplier waits for the applier to end; after a store failure, at most
// applierGrace.
func (n *Node) waitApplier() {
	select {
	case <-n.applierDone:
		return
	case <-n.store.Failed():
	}
	t := time.NewTimer(applierGrace)
	defer t.Stop()
	select {
	case <-n.applierDone:
	case <-t.C:
		n.log.Warn("the applier is held inside the failed store; not waiting for it", "after", applierGrace.String())
	}
}

// applier applies committed entries and then answers the reads and writes
// of the same Ready, one job at a time in Ready order, so that the store's
// Apply overlaps the run loop's next WAL write. After a store error it
// answers every later job with errors and the run loop stops (applyFailed).
func (n *Node) applier() {
	defer close(n.applierDone)
	var failed error
	cw := newCmdWaits()
	defer func() { cw.fail(fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, api.ErrStopped)) }()
	report := cw.applied
	for job := range n.applyCh {
		if failed == nil && len(job.ents) > 0 {
			// A writer counts itself before it proposes, so every command
			// applied while one waits is reported.
			rep := report
			if n.cmdWriters.Load() == 0 && len(cw.parked) == 0 {
				rep = nil
			}
			if err := n.store.ApplyReport(job.ents, rep); err != nil {
				failed = fmt.Errorf("node: apply entries %d..%d to the store: %w", job.ents[0].Index,
					job.ents[len(job.ents)-1].Index, err)
				n.applyErr = failed
				close(n.applyFailed)
			}
		}
		if failed != nil {
			for _, d := range job.reads {
				d.w.done <- repl.ReadResult{ID: d.r.ID, Err: api.ErrStopped}
			}
			for _, d := range job.results {
				d.w.done <- propResp{err: fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, api.ErrStopped)}
			}
			cw.fail(fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, api.ErrStopped))
			continue
		}
		for _, d := range job.reads {
			d.w.done <- d.r
		}
		applied := n.store.AppliedIndex()
		for _, d := range job.results {
			if d.w.p.Kind == entry.KindCommand {
				cw.result(d, applied)
				continue
			}
			d.w.done <- propResp{res: d.r}
		}
		if len(cw.parked) > 0 {
			cw.settle(applied)
		}
		if job.barrier != nil {
			close(job.barrier)
		}
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
loop:
	for range 8192 {
		select {
		case m := <-n.msgCh:
			n.step(m)
		case r := <-n.readCh:
			n.read(r)
		default:
			break loop
		}
	}
	n.takeProps()
}

// enqueueProp hands p (and p.more) to the run loop. It reports false, and
// proposes nothing, if the loop has ended; it then returns only once the
// loop is done (doneCh closed), so that a caller told "stopped" sees a
// stopped node.
func (n *Node) enqueueProp(p *propReq) bool {
	n.propMu.Lock()
	if n.propClosed {
		n.propMu.Unlock()
		<-n.doneCh
		return false
	}
	n.propQ = append(n.propQ, p)
	first := len(n.propQ) == 1
	n.propMu.Unlock()
	if first {
		select {
		case n.propReady <- struct{}{}:
		default: // already signalled
		}
	}
	return true
}

// takeProps proposes every queued proposal, in arrival order.
func (n *Node) takeProps() {
	n.propMu.Lock()
	q := n.propQ
	n.propQ = n.propSpare[:0]
	n.propMu.Unlock()
	for i, p := range q {
		n.propose(p)
		q[i] = nil
	}
	n.propSpare = q[:0]
}

func (n *Node) step(m repl.Message) {
	err := n.core.Step(m)
	if err == nil {
		return
	}
	if !errors.Is(err, repl.ErrMalformedMessage) && !errors.Is(err, repl.ErrUnknownPeer) {
		n.log.Debug("refused peer message", "peer", string(m.From), "type", m.Type.String(), "term", m.Term, "err", err)
		return
	}
	// A protocol violation: loud, but at most once a second, so that a
	// flood of bad messages cannot flood the log.
	n.m.refusedMsgs.Inc()
	if now := time.Now(); now.Sub(n.refusedLogAt) >= time.Second {
		n.log.Warn("refused a malformed peer message", "peer", string(m.From), "type", m.Type.String(), "term", m.Term,
			"err", err, "not_logged_since_last", n.refusedQuiet)
		n.refusedLogAt, n.refusedQuiet = now, 0
	} else {
		n.refusedQuiet++
	}
}

func (n *Node) propose(p *propReq) {
	if len(n.heldProps) == 0 && !n.lingering && n.shouldLinger() {
		n.lingering = true
		n.m.lingers.Inc()
		if n.lingerTimer == nil {
			n.lingerTimer = time.NewTimer(maxLinger)
		} else {
			n.lingerTimer.Reset(maxLinger)
		}
	}
	if n.lingering || len(n.heldProps) > 0 || n.walBatchesInFlight() >= maxWALBatchesInFlight {
		// Lingering (see shouldLinger), or one WAL write is being fsynced
		// and another is queued behind it, or earlier proposals are held
		// (arrival order is kept): collect proposals so that they go
		// out as one batch (one Ready, one MsgApp per follower, one WAL
		// submission) instead of one each. Behind the WAL they could not
		// be fsynced sooner anyway (and the WAL never idles: one batch
		// stays queued); a linger ends when its batch commits, or after
		// maxLinger.
		n.heldProps = append(n.heldProps, p)
		return
	}
	n.proposeNow(p)
}

// maxLinger bounds how long a proposal waits for the batch in flight to
// commit (shouldLinger); lingerLive is how recently the commit index must
// have moved for proposals to wait at all.
// lingerMinBatch is the batch size from which writers count as concurrent.
const (
	maxLinger      = 2 * time.Millisecond
	lingerLive     = 20 * time.Millisecond
	lingerMinBatch = 4
)

// maxWALBatchesInFlight is how many WAL submissions may be outstanding
// before new proposals are held back (see propose).
const maxWALBatchesInFlight = 2

// walBatchesInFlight counts the WAL submissions not yet known durable (the
// run loop is the WAL's only submitter, so tickets are consecutive).
func (n *Node) walBatchesInFlight() int { return int(n.lastTicket - n.durableTicket) }

// releaseHeld proposes the proposals collected while a WAL write was in
// flight, in arrival order.
func (n *Node) releaseHeld() {
	for i, p := range n.heldProps {
		n.proposeNow(p)
		n.heldProps[i] = nil
	}
	n.heldProps = n.heldProps[:0]
}

func (n *Node) proposeNow(p *propReq) {
	more := p.more // read first: once answered, p may be recycled (putPropReq)
	err := n.propose1(p)
	// A batch (PutBatch) is proposed in order with no other input in
	// between; after a refusal nothing more of it is proposed, so that the
	// caller can retry the refused suffix in order.
	for _, q := range more {
		if err != nil {
			q.done <- propResp{err: err, refused: true}
			continue
		}
		err = n.propose1(q)
	}
}

// propose1 hands one proposal to the core; an error means it was refused
// (nothing written) and has been answered.
func (n *Node) propose1(p *propReq) error {
	n.nextID++
	p.p.ID = n.nextID
	if err := n.core.Propose(p.p); err != nil {
		err = engineErr(err)
		p.done <- propResp{err: err, refused: true}
		return err
	}
	n.pendingProps[p.p.ID] = p
	return nil
}

func (n *Node) read(r *readReq) {
	// The core's clock must be current before it judges its lease: after a
	// stall (SIGSTOP, a VM pause) a read can reach the loop before the
	// ticker's catch-up, and a lease that expired in real time would still
	// look valid (test/chaos TestPausedLeaderServesNoStaleRead).
	n.tickUpTo(time.Now())
	n.nextID++
	id := n.nextID
	if err := n.core.Read(repl.ReadRequest{ID: id, Level: repl.ReadLinearizable}); err != nil {
		r.done <- repl.ReadResult{ID: id, Err: err} // readPointLocal wraps it (engineErr)
		return
	}
	n.pendingReads[id] = r
}

// failAll answers every waiting caller when the loop ends.
func (n *Node) failAll() {
	n.propMu.Lock()
	n.propClosed = true
	queued := n.propQ
	n.propQ = nil
	n.propMu.Unlock()
	answerAll := func(ps []*propReq, r propResp) {
		for _, p := range ps {
			more := p.more // read first: once answered, p may be recycled
			p.done <- r
			for _, q := range more {
				q.done <- r
			}
		}
	}
	answerAll(queued, propResp{err: api.ErrStopped, refused: true}) // never reached the core: not written
	answerAll(n.heldProps, propResp{err: fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, api.ErrStopped)})
	n.heldProps = nil
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
// contract (internal/repl/types.go) requires, pipelined as the contract
// allows (see DESIGN.md): the entries are submitted to the WAL and the loop
// goes on; MsgApp and MsgHeartbeat leave at once; every other message, and
// Advance, wait until this Ready's entries and all earlier ones are durable
// (onPersisted). The committed entries are applied, and their reads and
// writes answered, by the applier goroutine. Any error is fatal.
func (n *Node) processReady() error {
	for len(n.inflight) < maxInflightReadies && n.core.HasReady() {
		select {
		case <-n.applyFailed:
			return n.applyErr
		default:
		}
		rd := n.core.Ready()
		n.m.readyBatches.Inc()
		if len(rd.Snapshots) > 0 {
			n.sendSnapshots(rd.Snapshots)
		}
		// 1. Journal discarded entries before the log forgets them.
		if len(rd.Discarded) > 0 {
			if err := n.journal.append(rd.Discarded, time.Now()); err != nil {
				return err
			}
			n.m.rollbacks.Add(float64(len(rd.Discarded)))
			n.log.Warn("discarded log entries into the rollback journal", "count", len(rd.Discarded),
				"index", rd.Discarded[0].Index, "term", rd.Discarded[0].Term)
		}
		// 2. Entries: submitted to the WAL, whose writer writes and fsyncs
		// them while the loop goes on. A conflicting suffix is truncated
		// first (TruncateAfter writes what is pending, then truncates).
		if len(rd.Entries) > 0 {
			first := rd.Entries[0].Index
			if first <= n.walLast {
				if err := n.wal.TruncateAfter(first - 1); err != nil {
					return fmt.Errorf("node: truncate WAL after index %d: %w", first-1, err)
				}
			}
			t, err := n.wal.Submit(rd.Entries)
			if err != nil {
				return fmt.Errorf("node: append %d entries to the WAL at index %d: %w", len(rd.Entries), first, err)
			}
			n.walLast = rd.Entries[len(rd.Entries)-1].Index
			n.lastTicket = t
			if n.walDone == nil {
				n.walDone = n.wal.Done(t)
			}
			n.m.readyEntries.Add(float64(len(rd.Entries)))
			n.lastBatch = len(rd.Entries)
		}
		// 2. HardState: a term or vote change is durable when saveHardState
		// returns (a commit-only change is a hint, written later).
		if !rd.HardState.IsEmpty() {
			hs := wal.HardState{Term: rd.HardState.Term, Vote: string(rd.HardState.Vote), Commit: rd.HardState.Commit}
			if err := n.saveHardState(hs, false); err != nil {
				return err
			}
		}
		// 3. Messages. MsgApp and MsgHeartbeat may leave before the entries
		// are durable (the leader counts its own entries only after
		// Advance); everything else (MsgAppResp acknowledges durable
		// entries) waits until this and every earlier WAL write is durable.
		waitFor := n.lastTicket
		pending := waitFor > n.durableTicket || len(n.inflight) > 0
		var held []repl.Message
		for i := range rd.Messages {
			m := &rd.Messages[i]
			switch {
			case m.To == n.id:
			case !pending || m.Type == repl.MsgApp || m.Type == repl.MsgHeartbeat:
				n.send(m)
			default:
				held = append(held, *m)
			}
		}
		// 4-5. Apply committed entries, then serve reads and answer writers,
		// on the applier. These entries were durable before this Ready (the
		// core hands out only entries an earlier Advance confirmed), and the
		// reads and results depend only on earlier Readies.
		if job := n.applyJob(&rd); len(job.ents) > 0 || len(job.reads) > 0 || len(job.results) > 0 {
			select {
			case n.applyCh <- job:
			case <-n.applyFailed:
				n.failJob(job)
				return n.applyErr
			case <-n.store.Failed(): // the applier may be held inside the store
				n.failJob(job)
				return fmt.Errorf("node: %w", n.store.Err())
			}
		}
		// 6. Advance now, or when the WAL says (onPersisted).
		if !pending {
			n.core.Advance(rd)
			continue
		}
		n.inflight = append(n.inflight, inflightReady{rd: rd, held: held, ticket: waitFor})
	}
	return nil
}

// applyJob takes rd's committed entries, reads and results, resolving the
// waiting callers.
func (n *Node) applyJob(rd *repl.Ready) applyJob {
	job := applyJob{ents: rd.CommittedEntries}
	for _, r := range rd.Reads {
		if w := n.pendingReads[r.ID]; w != nil {
			delete(n.pendingReads, r.ID)
			job.reads = append(job.reads, readDone{w: w, r: r})
		}
	}
	for _, r := range rd.Results {
		if w := n.pendingProps[r.ID]; w != nil {
			delete(n.pendingProps, r.ID)
			job.results = append(job.results, propDone{w: w, r: r})
		}
	}
	return job
}

// failJob answers the callers of a job the applier will never run.
func (n *Node) failJob(job applyJob) {
	for _, d := range job.reads {
		d.w.done <- repl.ReadResult{ID: d.r.ID, Err: api.ErrStopped}
	}
	for _, d := range job.results {
		d.w.done <- propResp{err: fmt.Errorf("%w: %w", api.ErrOutcomeUnknown, api.ErrStopped)}
	}
}

// hardStateCommitInterval bounds how often a change of the commit index alone
// is recorded. The recorded commit is a hint (the core takes
// max(commit, applied) and relearns the rest from the leader), so it may lag;
// a new term or vote is always persisted before anything that depends on it.
const hardStateCommitInterval = 250 * time.Millisecond

// saveHardState persists hs durably now if its term or vote changed (or
// force). A change of the commit index alone is written as the WAL's commit
// hint (in place, no fsync: a few microseconds instead of two fsyncs and a
// rename on the run loop) once the interval has passed; until then it is kept
// for flushHardState.
func (n *Node) saveHardState(hs wal.HardState, force bool) error {
	saved := n.wal.HardState()
	if hs == saved {
		n.hsDirty = false
		return nil
	}
	// The entries of the current Ready may still be in flight: never record
	// a commit index beyond the durable log (it is a hint; the core relearns
	// the rest).
	w := hs
	w.Commit = min(w.Commit, n.wal.LastIndex())
	if !force && hs.Term == saved.Term && hs.Vote == saved.Vote {
		if time.Since(n.hsSavedAt) < hardStateCommitInterval {
			n.hsPending, n.hsDirty = hs, true
			return nil
		}
		if err := n.wal.SetCommitHint(w.Commit); err != nil {
			// Only a hint: a restarted node relearns the commit index.
			n.log.Warn("could not record the commit hint", "commit", w.Commit, "err", err)
		}
		n.hsSavedAt, n.hsDirty = time.Now(), false
		return nil
	}
	if err := n.wal.SetHardState(w); err != nil {
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
	if st.Commit != n.lastCommit {
		n.lastCommit, n.commitMovedAt = st.Commit, now
	}
	// The core counts entries applied when they are handed out; the store
	// applies them a little later, on the applier.
	st.Applied = min(st.Applied, n.store.AppliedIndex())
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
			m.resetFollowerLag()
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
	n.noteConf(&st)
	m.fd.set(&st.Detector, n.tick)
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
			info := api.FollowerInfo{ID: string(f.ID), MatchIndex: f.Match, LagEntries: lag, LagMillis: lagMs,
				LastContactMs: int64(f.TicksSinceContact) * n.tick.Milliseconds(), Role: api.RoleVoter}
			if f.Learner {
				info.Role = api.RoleLearner
			}
			mem, ok := st.Conf.Member(f.ID)
			if !ok {
				continue // removed: the leader only tells it so before forgetting it
			}
			info.RESP = mem.RESP
			fi = append(fi, info)
			m.setFollowerLag(f.ID, lag, float64(lagMs)/1000)
		}
	}
	s := &snapshot{st: st, at: now, followers: fi, changed: make(chan struct{})}
	if old := n.pub.Swap(s); old != nil {
		close(old.changed)
	}
}

// status returns the latest published snapshot and a channel closed on the next.
func (n *Node) status() (*snapshot, <-chan struct{}) {
	s := n.pub.Load()
	return s, s.changed
}

var _ api.Service = (*Node)(nil)
var _ transport.Handler = (*Node)(nil)

// The optional interfaces the node asserts on its transport: a change of
// their signatures must not silently turn a feature off.
var (
	_ peerUpdater  = (*transport.TCP)(nil)
	_ peerCounters = (*transport.TCP)(nil)
	_ streamer     = (*transport.TCP)(nil)
	_ streamer     = (*transport.Mem)(nil)
)

// stopped reports whether the loop has ended (Stop or a fatal error).
func (n *Node) stopped() bool {
	select {
	case <-n.doneCh:
		return true
	default:
		return false
	}
}
