// Package mlnode is the multi-leader replication engine's runtime: it drives
// the pure core (internal/multileader) with a real clock on one goroutine,
// persists what the core hands out in one fsynced batch per Ready
// (internal/multileader/mlstore), moves the core's messages as opaque
// multi-leader payloads over internal/transport, and implements api.Service
// for the client protocols. The shell (cmd/trireme's wiring,
// internal/datadir) is the same as for a single-leader node.
//
// It promises: a write is acknowledged only once durable on this node (and
// on as many peers as its ack asks); nothing is sent before the state it
// depends on is durable; reads see only durable state; a storage error
// stops the node (Fatal) and is never retried; a peer message that does
// not decode, or that claims another sender than its authenticated
// connection, changes nothing. See DESIGN.md.
package mlnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/datadir"
	"github.com/trireme-db/trireme/internal/fixedcluster"
	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/multileader/mlstore"
	"github.com/trireme-db/trireme/internal/runloop"
	"github.com/trireme-db/trireme/internal/transport"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Mode is the replication mode's name (--mode, identity.json, status).
const Mode = "multi-leader"

// storeDir is the store's directory in the data directory.
const storeDir = "mlstore"

// Node is one running multi-leader node. It implements api.Service.
type Node struct {
	fixedcluster.Cluster // the members; the membership calls of api.Service

	cfg   Config
	log   *slog.Logger
	lock  *os.File
	store *mlstore.Store
	core  *multileader.Core // owned by the run goroutine
	tr    transport.Transport
	m     *metrics
	peers []string

	propCh chan *proposal
	msgCh  chan multileader.Message
	ctlCh  chan func()
	stopCh chan struct{}
	doneCh chan struct{}

	fatalCh   chan error
	fatalOnce sync.Once
	stopOnce  sync.Once
	stopErr   error
	failed    atomic.Bool

	pub atomic.Pointer[statusSnap]

	// Owned by the run goroutine.
	waiting map[uint64]*proposal
	started time.Time

	dropped atomic.Uint64 // peer messages refused (undecodable, forged, foreign engine)
	lastLog atomic.Int64  // unix ns of the last refused-message warning
}

// proposal is one client write waiting for its result.
type proposal struct {
	w    multileader.Write
	done chan proposalDone // buffered 1
	// Filled on the run goroutine when proposed.
	incrValue int64
}

type proposalDone struct {
	res       multileader.Result
	incrValue int64
	err       error
}

// statusSnap is what the run goroutine publishes for Status.
type statusSnap struct {
	lastSeq uint64
	peers   []multileader.PeerStatus
	stats   multileader.Stats
	tick    time.Duration
}

// Start opens the data directory, recovers and starts the node.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		Cluster: fixedcluster.Cluster{
			Mode: Mode, Self: cfg.ID, Nodes: cfg.Cluster, ClusterID: cfg.ClusterID,
			HTTPAddr: cfg.HTTPAddr, RESPAddr: cfg.RESPAddr, PeerClients: cfg.PeerClients,
			PeerTLS: cfg.PeerTLS, PeerListener: cfg.PeerListener,
		},
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.ID, "mode", Mode),
		propCh:  make(chan *proposal, 1024),
		msgCh:   make(chan multileader.Message, 4096),
		ctlCh:   make(chan func()),
		stopCh:  make(chan struct{}),
		doneCh:  make(chan struct{}),
		fatalCh: make(chan error, 1),
		waiting: map[uint64]*proposal{},
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
		if m.ID != cfg.ID {
			n.peers = append(n.peers, m.ID)
		}
	}
	if n.lock, err = datadir.Open(cfg.DataDir, datadir.Identity{NodeID: cfg.ID, ClusterID: cfg.ClusterID, Members: members, Mode: Mode}); err != nil {
		return nil, err
	}
	if n.store, err = mlstore.Open(filepath.Join(cfg.DataDir, storeDir), mlstore.Config{MaxConflicts: cfg.MaxConflicts, Logger: n.log.With("component", "store")}); err != nil {
		return nil, fmt.Errorf("mlnode: open store: %w", err)
	}
	applied, err := n.store.Applied()
	if err != nil {
		return nil, fmt.Errorf("mlnode: read positions: %w", err)
	}
	ccfg := multileader.DefaultConfig()
	ccfg.ID, ccfg.Peers, ccfg.ClusterID = cfg.ID, slices.Sorted(slices.Values(n.peers)), cfg.ClusterID
	ccfg.Policy, ccfg.MaxSiblings = cfg.Conflicts, cfg.MaxSiblings
	ccfg.MaxOffsetNanos = int64(cfg.MaxClockOffset)
	ccfg.AckTimeoutTicks = n.ticks(cfg.WriteTimeout)
	ccfg.Applied, ccfg.Store, ccfg.Log = applied, n.store, n.store
	if n.core, err = multileader.New(ccfg); err != nil {
		return nil, fmt.Errorf("mlnode: start the core: %w", err)
	}
	if n.m, err = newMetrics(cfg.Registerer, cfg.ID); err != nil {
		return nil, fmt.Errorf("mlnode: register metrics: %w", err)
	}
	if n.tr = cfg.Transport; n.tr == nil {
		if n.tr, err = n.newTCP(); err != nil {
			return nil, err
		}
	}
	n.started = time.Now()
	n.publish()
	go n.run()
	if err := n.tr.Start(n); err != nil {
		n.Stop()
		return nil, fmt.Errorf("mlnode: start transport: %w", err)
	}
	n.log.Info("node started", "cluster", cfg.ClusterID, "conflicts", cfg.Conflicts.String(),
		"stream", n.store.LastSeq(), "positions", applied)
	return n, nil
}

func (n *Node) newTCP() (transport.Transport, error) {
	tc := n.Cluster.TCPConfig()
	// A message holds at most MaxBatch entries of a key and a value each.
	ccfg := multileader.DefaultConfig()
	tc.MaxFrameBytes = max(transport.DefaultMaxFrameBytes, ccfg.MaxBatch*(multileader.MaxKeyLen+n.cfg.MaxValueBytes+4096)+4096)
	tc.Logger = n.log.With("component", "transport")
	tcp, err := transport.NewTCP(tc)
	if err != nil {
		return nil, fmt.Errorf("mlnode: %w (check --cluster for node %q)", err, n.cfg.ID)
	}
	return tcp, nil
}

// ticks converts d to whole ticks, at least 1.
func (n *Node) ticks(d time.Duration) int {
	return max(int(d/n.cfg.Tick), 1)
}

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Metrics returns the Prometheus handler.
func (n *Node) Metrics() http.Handler { return n.m.handler }

// Fatal delivers the error that stopped the node (storage), once.
func (n *Node) Fatal() <-chan error { return n.fatalCh }

func (n *Node) setFatal(err error) {
	n.fatalOnce.Do(func() {
		n.failed.Store(true)
		n.log.Error("fatal error; the node stops serving", "err", err)
		n.m.fatal.Set(1)
		n.fatalCh <- err
	})
}

// Stop stops the node and closes its storage. Safe to call more than once.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		close(n.stopCh)
		<-n.doneCh
		errs := []error{}
		if n.tr != nil {
			errs = append(errs, n.tr.Close())
		}
		errs = append(errs, n.closeStorage())
		n.m.unregister()
		n.stopErr = errors.Join(errs...)
	})
	return n.stopErr
}

func (n *Node) closeStorage() error {
	var errs []error
	if n.store != nil {
		errs = append(errs, n.store.Close())
		n.store = nil
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
		n.lock = nil
	}
	return errors.Join(errs...)
}

// The transport's handler.

// HandlePayload takes a multi-leader message from peer `from`.
func (n *Node) HandlePayload(from transport.NodeID, e transport.Engine, payload []byte) {
	if e == transport.EngineSingleLeader {
		n.refuse("a single-leader message (is every node started with --mode multi-leader?)", "from", string(from))
		return
	}
	if e != transport.EngineMultiLeader {
		n.refuse("a message of another replication engine", "from", string(from), "engine", e.String())
		return
	}
	m, err := multileader.DecodeMessage(payload)
	if err != nil {
		n.refuse("an undecodable message", "from", string(from), "err", err)
		return
	}
	if m.From != string(from) {
		n.refuse("a message naming another sender", "from", string(from), "claims", m.From)
		return
	}
	select {
	case n.msgCh <- m:
	default: // full: dropped like a lost packet; the protocol resends
		n.m.droppedMsgs.Inc()
	}
}

// HandleForward refuses: multi-leader nodes take writes themselves.
func (n *Node) HandleForward(_ context.Context, from transport.NodeID, _ *transport.ForwardRequest) *transport.ForwardResponse {
	n.refuse("a forwarded request (is every node started with --mode multi-leader?)", "from", string(from))
	return &transport.ForwardResponse{Code: api.CodeNotSupported, Message: api.ErrNotSupported.Error()}
}

// HandleStream closes streams: this engine does not use them yet.
func (n *Node) HandleStream(from transport.NodeID, _ net.Conn) {
	n.refuse("a byte stream", "from", string(from))
}

// HandlePeerDown is a hint this engine does not need.
func (n *Node) HandlePeerDown(transport.NodeID) {}

// refuse counts a refused peer message and logs at most one warning a
// second.
func (n *Node) refuse(what string, args ...any) {
	n.dropped.Add(1)
	n.m.refusedMsgs.Inc()
	now := time.Now().UnixNano()
	if last := n.lastLog.Load(); now-last > int64(time.Second) && n.lastLog.CompareAndSwap(last, now) {
		n.log.Warn("refused "+what, args...)
	}
}

// The run loop (internal/runloop): requests, peer messages and ticks in,
// then the core's Ready handled (processReady).

func (n *Node) run() {
	defer close(n.doneCh)
	defer n.failAll(api.ErrStopped)
	loop := runloop.Loop[*proposal, multileader.Message]{
		Tick: n.cfg.Tick, Requests: n.propCh, Messages: n.msgCh, Control: n.ctlCh, Stop: n.stopCh,
		Propose: n.propose, Step: n.step,
		TickCore: func(now time.Time) { n.core.Tick(now.UnixNano()) },
		Publish:  n.publish, Ready: n.processReady,
	}
	if err := loop.Run(); err != nil {
		n.setFatal(err)
		n.failAll(fmt.Errorf("%w: %v", api.ErrOutcomeUnknown, err))
		<-n.stopCh
	}
}

func (n *Node) propose(p *proposal) {
	if n.failed.Load() {
		p.done <- proposalDone{err: api.ErrStopped}
		return
	}
	if p.w.Incr {
		st, err := n.core.Get(p.w.Key)
		if err != nil {
			p.done <- proposalDone{err: err}
			return
		}
		if len(st.Live()) > 0 {
			p.done <- proposalDone{err: fmt.Errorf("%w: the key holds a value, not a counter (a multi-leader counter is a key only ever incremented)", api.ErrNotInteger)}
			return
		}
		v := st.Ctr.Value()
		if (p.w.IncrBy > 0 && v > maxInt64-p.w.IncrBy) || (p.w.IncrBy < 0 && v < minInt64-p.w.IncrBy) {
			p.done <- proposalDone{err: api.ErrOverflow}
			return
		}
		p.incrValue = v + p.w.IncrBy
	}
	id, err := n.core.Propose(p.w)
	if err != nil {
		p.done <- proposalDone{err: proposeError(err)}
		return
	}
	n.waiting[id] = p
}

const (
	maxInt64 = 1<<63 - 1
	minInt64 = -1 << 63
)

// proposeError maps the core's refusal to the api's words.
func proposeError(err error) error {
	switch {
	case errors.Is(err, multileader.ErrInvalidWrite):
		return fmt.Errorf("%w: %v", api.ErrBadCommand, err)
	case errors.Is(err, multileader.ErrContextAhead), errors.Is(err, vclock.ErrBadToken), errors.Is(err, vclock.ErrForeignToken):
		return fmt.Errorf("%w: %v", api.ErrBadContext, err)
	}
	return err
}

func (n *Node) step(m multileader.Message) {
	if err := n.core.Step(m); err != nil {
		if errors.Is(err, multileader.ErrMalformed) || errors.Is(err, multileader.ErrUnknownPeer) {
			n.refuse("a malformed message", "from", m.From, "err", err)
			return
		}
		n.setFatal(err)
	}
}

// processReady runs the core's Ready loop: persist (one fsynced batch),
// send, answer, advance.
func (n *Node) processReady() error {
	for n.core.HasReady() {
		rd, err := n.core.Ready()
		if err != nil {
			return err
		}
		if len(rd.Entries) > 0 || len(rd.Changes) > 0 || len(rd.Applied) > 0 || len(rd.Conflicts) > 0 {
			if err := n.store.Persist(&rd); err != nil {
				return fmt.Errorf("mlnode: persist: %w", err)
			}
			n.m.conflicts.Add(float64(len(rd.Conflicts)))
		}
		for i := range rd.Messages {
			m := &rd.Messages[i]
			n.tr.SendPayload(transport.NodeID(m.To), transport.EngineMultiLeader, multileader.AppendMessage(nil, m))
		}
		for _, r := range rd.Results {
			p := n.waiting[r.ID]
			if p == nil {
				continue
			}
			delete(n.waiting, r.ID)
			p.done <- proposalDone{res: r, incrValue: p.incrValue}
		}
		n.core.Advance()
	}
	return nil
}

// failAll answers every waiting writer with err.
func (n *Node) failAll(err error) {
	for id, p := range n.waiting {
		delete(n.waiting, id)
		p.done <- proposalDone{err: err}
	}
	for {
		select {
		case p := <-n.propCh:
			p.done <- proposalDone{err: api.ErrStopped}
		default:
			return
		}
	}
}

func (n *Node) publish() {
	s := &statusSnap{lastSeq: n.core.LastSeq(), peers: n.core.Peers(), stats: n.core.Stats(), tick: n.cfg.Tick}
	n.pub.Store(s)
	n.m.observe(s)
}
