// Package llnode is the leaderless (Dynamo-style) replication engine's
// runtime: it drives the pure core (internal/leaderless) with a real clock
// on one goroutine, persists what the core hands out in one fsynced batch
// per Ready (internal/leaderless/llstore), moves the core's messages as
// opaque leaderless payloads over internal/transport, and implements
// api.Service for the client protocols. The shell (cmd/trireme's wiring,
// internal/datadir) is the same as for the other engines.
//
// It promises: a write is acknowledged only once W replicas hold it
// durably (this node's own copy included when it is one); nothing is sent
// before the state it depends on is durable; a storage error stops the
// node (Fatal) and is never retried; a peer message that does not decode,
// or that claims another sender than its authenticated connection,
// changes nothing.
package llnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/datadir"
	"github.com/trireme-db/trireme/internal/fixedcluster"
	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/llstore"
	"github.com/trireme-db/trireme/internal/runloop"
	"github.com/trireme-db/trireme/internal/transport"
)

// Mode is the replication mode's name (--mode, identity.json, status).
const Mode = "leaderless"

const (
	storeDir  = "llstore"
	actorFile = "leaderless-actor.json"
)

// Node is one running leaderless node. It implements api.Service.
type Node struct {
	fixedcluster.Cluster // the members; the membership calls of api.Service

	cfg   Config
	log   *slog.Logger
	lock  *os.File
	store *llstore.Store
	core  *leaderless.Core // owned by the run goroutine
	clock *hlc.Clock       // owned by the run goroutine
	tr    transport.Transport
	m     *metrics
	actor string

	propCh chan *request
	msgCh  chan leaderless.Message
	stopCh chan struct{}
	doneCh chan struct{}

	fatalCh   chan error
	fatalOnce sync.Once
	stopOnce  sync.Once
	stopErr   error
	failed    atomic.Bool

	pub atomic.Pointer[statusSnap]

	// Owned by the run goroutine.
	waiting map[uint64]*request
	nextID  uint64

	lastLog atomic.Int64 // unix ns of the last refused-message warning
}

// request is one client write or read waiting for its result.
type request struct {
	write *leaderless.Write // or
	read  *leaderless.Read
	done  chan requestDone // buffered 1
}

type requestDone struct {
	res leaderless.Result
	err error
}

// statusSnap is what the run goroutine publishes for Status.
type statusSnap struct {
	stats leaderless.Stats
	hints map[string]int
	diff  map[string]int
	down  []string
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
		clock:   hlc.NewClock(0),
		propCh:  make(chan *request, 1024),
		msgCh:   make(chan leaderless.Message, 4096),
		stopCh:  make(chan struct{}),
		doneCh:  make(chan struct{}),
		fatalCh: make(chan error, 1),
		waiting: map[uint64]*request{},
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
	nodes := make([]string, len(cfg.Cluster))
	for i, m := range cfg.Cluster {
		members[i] = m.ID + "=" + m.PeerAddr
		nodes[i] = m.ID
	}
	if n.lock, err = datadir.Open(cfg.DataDir, datadir.Identity{NodeID: cfg.ID, ClusterID: cfg.ClusterID, Members: members, Mode: Mode}); err != nil {
		return nil, err
	}
	if n.actor, err = loadActor(cfg.DataDir, cfg.ID); err != nil {
		return nil, err
	}
	if n.store, err = llstore.Open(filepath.Join(cfg.DataDir, storeDir), llstore.Config{Logger: n.log.With("component", "store")}); err != nil {
		return nil, fmt.Errorf("llnode: open store: %w", err)
	}
	hints, err := n.store.Hints()
	if err != nil {
		return nil, fmt.Errorf("llnode: read hints: %w", err)
	}
	floor, err := n.store.MintFloor()
	if err != nil {
		return nil, fmt.Errorf("llnode: read the mint floor: %w", err)
	}
	ccfg := leaderless.Config{
		ID: cfg.ID, Actor: n.actor, Nodes: nodes, N: cfg.ReplicationFactor, Sloppy: cfg.SloppyQuorum,
		RequestTicks:  n.ticks(cfg.RequestTimeout),
		PeerDownTicks: n.ticks(cfg.PeerDown),
		MaxHints:      cfg.MaxHints,
		GCGraceTicks:  n.ticks(cfg.TombstoneGrace),
		AETicks:       -1,
	}
	if cfg.AntiEntropyRate > 0 {
		ccfg.AETicks = n.ticks(cfg.AntiEntropyInterval)
		ccfg.AEKeys = max(1, min(leaderless.MaxItems, int(float64(cfg.AntiEntropyRate)*cfg.AntiEntropyInterval.Seconds())))
	}
	if n.core, err = leaderless.New(ccfg, n.store, leaderless.State{Hints: hints, MintFloor: floor}); err != nil {
		return nil, fmt.Errorf("llnode: start the core: %w", err)
	}
	keys := 0
	if err := n.store.Each(func(it leaderless.Item) error {
		n.core.Restore(it.Key, it.Set)
		keys++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("llnode: load keys: %w", err)
	}
	if n.m, err = newMetrics(cfg.Registerer, cfg.ID); err != nil {
		return nil, fmt.Errorf("llnode: register metrics: %w", err)
	}
	if n.tr = cfg.Transport; n.tr == nil {
		if n.tr, err = n.newTCP(); err != nil {
			return nil, err
		}
	}
	n.publish()
	go n.run()
	if err := n.tr.Start(n); err != nil {
		n.Stop()
		return nil, fmt.Errorf("llnode: start transport: %w", err)
	}
	n.log.Info("node started", "cluster", cfg.ClusterID, "actor", n.actor, "replication_factor", cfg.ReplicationFactor,
		"keys", keys, "hints", len(hints))
	return n, nil
}

// loadActor returns the id this node's versions carry: the node id and an
// incarnation drawn when the data directory was created. A node whose
// directory was wiped comes back as a new actor, so it never reuses a
// version it handed out before the wipe.
func loadActor(dir, id string) (string, error) {
	p := filepath.Join(dir, actorFile)
	b, err := os.ReadFile(p)
	if err == nil {
		var rec actorRecord
		if err := json.Unmarshal(b, &rec); err != nil || !strings.HasPrefix(rec.Actor, id+".") {
			return "", fmt.Errorf("llnode: %s does not name an actor of node %q (%q, %v): is this another node's data directory?", p, id, rec.Actor, err)
		}
		return rec.Actor, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("llnode: read %s: %w", p, err)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	rec := actorRecord{Actor: id + "." + hex.EncodeToString(r[:])}
	if err := datadir.WriteJSON(dir, actorFile, rec); err != nil {
		return "", fmt.Errorf("llnode: write %s: %w", p, err)
	}
	return rec.Actor, nil
}

type actorRecord struct {
	Actor string `json:"actor"`
}

func (n *Node) newTCP() (transport.Transport, error) {
	tc := n.Cluster.TCPConfig()
	// An anti-entropy message holds at most AEBytes (4 MiB) of keys and
	// values but always one key, which may hold several values.
	tc.MaxFrameBytes = max(transport.DefaultMaxFrameBytes, 64<<20)
	tc.Logger = n.log.With("component", "transport")
	tcp, err := transport.NewTCP(tc)
	if err != nil {
		return nil, fmt.Errorf("llnode: %w (check --cluster for node %q)", err, n.cfg.ID)
	}
	return tcp, nil
}

// ticks converts d to whole ticks, at least 1.
func (n *Node) ticks(d time.Duration) int { return max(int(d/n.cfg.Tick), 1) }

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Actor returns the id this node's versions carry.
func (n *Node) Actor() string { return n.actor }

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
		var errs []error
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

// HandlePayload takes a leaderless message from peer `from`.
func (n *Node) HandlePayload(from transport.NodeID, e transport.Engine, payload []byte) {
	if e != transport.EngineLeaderless {
		n.refuse("a message of another replication engine (is every node started with --mode leaderless?)", "from", string(from), "engine", e.String())
		return
	}
	m, err := leaderless.DecodeMessage(payload)
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
	default: // full: dropped like a lost packet; requests time out, repairs come again
		n.m.droppedMsgs.Inc()
	}
}

// HandleForward refuses: leaderless nodes coordinate requests themselves.
func (n *Node) HandleForward(_ context.Context, from transport.NodeID, _ *transport.ForwardRequest) *transport.ForwardResponse {
	n.refuse("a forwarded request (is every node started with --mode leaderless?)", "from", string(from))
	return &transport.ForwardResponse{Code: api.CodeNotSupported, Message: api.ErrNotSupported.Error()}
}

// HandleStream closes streams: this engine does not use them.
func (n *Node) HandleStream(from transport.NodeID, _ net.Conn) {
	n.refuse("a byte stream", "from", string(from))
}

// HandlePeerDown is a hint this engine does not need: it tracks liveness
// from the messages it gets.
func (n *Node) HandlePeerDown(transport.NodeID) {}

// refuse counts a refused peer message and logs at most one warning a
// second.
func (n *Node) refuse(what string, args ...any) {
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
	loop := runloop.Loop[*request, leaderless.Message]{
		Tick: n.cfg.Tick, Requests: n.propCh, Messages: n.msgCh, Stop: n.stopCh,
		Propose: n.propose, Step: n.step,
		TickCore: func(time.Time) { n.core.Tick() },
		Publish:  n.publish, Ready: n.processReady,
	}
	if err := loop.Run(); err != nil {
		n.setFatal(err)
		n.failAll(fmt.Errorf("%w: %v", api.ErrOutcomeUnknown, err))
		<-n.stopCh
	}
}

func (n *Node) propose(r *request) {
	if n.failed.Load() {
		r.done <- requestDone{err: api.ErrStopped}
		return
	}
	n.nextID++
	id := n.nextID
	n.waiting[id] = r
	if r.write != nil {
		r.write.ID = id
		r.write.Time = n.clock.Now(time.Now().UnixNano())
		n.core.Propose(*r.write)
		return
	}
	r.read.ID = id
	n.core.ProposeRead(*r.read)
}

func (n *Node) step(m leaderless.Message) {
	if err := n.core.Step(m); err != nil {
		n.refuse("a malformed message", "from", m.From, "err", err)
		return
	}
	if m.Type == leaderless.MsgMint {
		// A write coordinated elsewhere and versioned here: keep this
		// node's clock ahead of it, so its own later writes rank after.
		n.clock.Observe(m.Time, time.Now().UnixNano())
	}
}

// processReady runs the core's Ready loop: persist (one fsynced batch),
// send, answer, advance.
func (n *Node) processReady() error {
	for {
		rd, err := n.core.Ready()
		if err != nil {
			return err
		}
		if rd.Empty() {
			return nil
		}
		if err := n.store.Persist(&rd); err != nil {
			return fmt.Errorf("llnode: persist: %w", err)
		}
		for i := range rd.Messages {
			m := &rd.Messages[i].Msg
			n.tr.SendPayload(transport.NodeID(m.To), transport.EngineLeaderless, leaderless.AppendMessage(nil, m))
		}
		for _, r := range rd.Results {
			req := n.waiting[r.ID]
			if req == nil {
				continue
			}
			delete(n.waiting, r.ID)
			req.done <- requestDone{res: r}
		}
		n.core.Advance()
	}
}

// failAll answers every waiting request with err.
func (n *Node) failAll(err error) {
	for id, r := range n.waiting {
		delete(n.waiting, id)
		r.done <- requestDone{err: err}
	}
	for {
		select {
		case r := <-n.propCh:
			r.done <- requestDone{err: api.ErrStopped}
		default:
			return
		}
	}
}

func (n *Node) publish() {
	s := &statusSnap{stats: n.core.Stats(), hints: n.core.HintsPending(), diff: n.core.AEDiffering()}
	for _, m := range n.cfg.Cluster {
		if !n.core.Up(m.ID) {
			s.down = append(s.down, m.ID)
		}
	}
	n.pub.Store(s)
	n.m.observe(s)
}
