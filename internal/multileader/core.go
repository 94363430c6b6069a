package multileader

import (
	"errors"
	"fmt"
	"slices"

	"github.com/trireme-db/trireme/internal/hlc"
)

// Core is one node's multi-leader protocol state machine. It is not safe
// for concurrent use.
type Core struct {
	cfg      Config
	clock    *hlc.Clock
	tick     int64
	physical int64 // Unix ns, from the last Tick

	peers   []*peer            // sorted by id: our stream, sent to them
	origins map[string]*origin // their streams, received (looked up, never iterated for output)

	lastSeq   uint64  // own stream, including entries not yet durable
	stableSeq uint64  // own stream, durable (Advance)
	unstable  []Entry // own entries stableSeq+1..lastSeq

	overlay   map[string]*overlayState // key states changed since they were last handed out and advanced
	gen       uint64
	dirty     []string // keys changed since the last Ready, in order of first change
	posDirty  []string // origins whose position changed since the last Ready
	conflicts []Conflict
	msgs      []Message
	results   []Result
	pending   []proposal // by seq
	nextID    uint64

	handed *handed // the Ready awaiting Advance
	stats  Stats
}

type overlayState struct {
	st    KeyState
	gen   uint64
	dirty bool
}

type handed struct {
	gen     uint64
	lastSeq uint64
}

// peer is the sending side of our stream to one peer.
type peer struct {
	id        string
	acked     uint64 // highest seq the peer applied durably
	next      uint64 // next seq to send
	probing   bool   // position unknown (after start): heartbeat until it acks
	lastSend  int64
	waitSince int64 // tick since which sent entries wait for an ack
	lastRetry int64
}

// origin is the receiving side of one peer's stream.
type origin struct {
	applied    uint64 // applied (durable once the Ready carrying it is processed)
	buffer     map[uint64]Entry
	lastResend int64
	needAck    bool
	// For status only: the end of the origin's stream as last heard (a
	// heartbeat or entries), when it was heard, and the last tick at which
	// applied had reached it.
	known      uint64
	heardAt    int64
	caughtUpAt int64
}

type proposal struct {
	id, seq  uint64
	need     int
	deadline int64
}

// Stats are counters for the runtime's status and metrics.
type Stats struct {
	ClockClamps   uint64           // remote timestamps beyond MaxOffset
	MaxOffset     map[string]int64 // per peer: largest offset seen (ns, positive: peer ahead)
	Duplicates    uint64           // entries received again
	Buffered      uint64           // entries received ahead of a gap
	ResendsAsked  uint64
	Retransmits   uint64
	ConflictCount uint64
}

// New starts a core from its durable state: the own stream in cfg.Log and
// the positions in cfg.Applied. Own entries after Applied[ID] are
// re-applied (their changes come out in the first Ready).
func New(cfg Config) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Core{
		cfg:      cfg,
		clock:    hlc.NewClock(cfg.MaxOffsetNanos),
		origins:  map[string]*origin{},
		overlay:  map[string]*overlayState{},
		nextID:   1,
		stats:    Stats{MaxOffset: map[string]int64{}},
		lastSeq:  cfg.Log.LastSeq(),
		posDirty: nil,
	}
	c.stableSeq = c.lastSeq
	for _, id := range cfg.Peers {
		c.peers = append(c.peers, &peer{id: id, probing: true, lastSend: -1 << 40, lastRetry: -1 << 40})
		c.origins[id] = &origin{applied: cfg.Applied[id], buffer: map[uint64]Entry{}, lastResend: -1 << 40, heardAt: -1}
	}
	self := cfg.Applied[cfg.ID]
	if self > c.lastSeq {
		return nil, fmt.Errorf("multileader: store applied own stream to %d, stream ends at %d", self, c.lastSeq)
	}
	c.origins[cfg.ID] = &origin{applied: self}
	if c.lastSeq > 0 {
		last, err := cfg.Log.Entries(c.lastSeq, c.lastSeq)
		if err != nil || len(last) != 1 {
			return nil, fmt.Errorf("multileader: reading own entry %d: %v", c.lastSeq, err)
		}
		c.clock.Restore(last[0].Time)
	}
	if self < c.lastSeq {
		es, err := cfg.Log.Entries(self+1, c.lastSeq)
		if err != nil {
			return nil, fmt.Errorf("multileader: replaying own stream: %w", err)
		}
		for _, e := range es {
			if err := c.apply(e); err != nil {
				return nil, err
			}
		}
		c.origins[cfg.ID].applied = c.lastSeq
		c.markPos(cfg.ID)
	}
	return c, nil
}

// ID returns the node id.
func (c *Core) ID() string { return c.cfg.ID }

// Stats returns a copy of the counters.
func (c *Core) Stats() Stats {
	s := c.stats
	s.MaxOffset = make(map[string]int64, len(c.stats.MaxOffset))
	for k, v := range c.stats.MaxOffset {
		s.MaxOffset[k] = v
	}
	return s
}

// Applied returns the position of origin's stream applied here (including
// changes not yet handed out or advanced).
func (c *Core) Applied(origin string) uint64 {
	if o := c.origins[origin]; o != nil {
		return o.applied
	}
	return 0
}

// PeerStatus is how one peer's replication looks from this node.
type PeerStatus struct {
	ID string
	// Acked: this node's stream applied durably by the peer, as far as its
	// acks tell.
	Acked uint64
	// Applied: the peer's stream applied here; Known: its end as last heard
	// (heartbeats and entries), so Known-Applied is this node's lag behind
	// the peer in entries.
	Applied, Known uint64
	// HeardTicks: ticks since the peer was last heard (-1: never since
	// start). BehindTicks: ticks since Applied last reached Known (0 when
	// caught up).
	HeardTicks, BehindTicks int64
	// MaxOffsetNanos: the largest clock offset seen in the peer's
	// timestamps (positive: the peer's clock ahead of this node's).
	MaxOffsetNanos int64
}

// Peers returns every peer's status, in id order.
func (c *Core) Peers() []PeerStatus {
	out := make([]PeerStatus, 0, len(c.peers))
	for _, p := range c.peers {
		o := c.origins[p.id]
		ps := PeerStatus{ID: p.id, Acked: p.acked, Applied: o.applied, Known: max(o.known, o.applied),
			HeardTicks: -1, MaxOffsetNanos: c.stats.MaxOffset[p.id]}
		if o.heardAt >= 0 {
			ps.HeardTicks = c.tick - o.heardAt
		}
		if o.applied < o.known {
			ps.BehindTicks = c.tick - o.caughtUpAt
		}
		out = append(out, ps)
	}
	return out
}

// LastSeq returns the end of the own stream (including non-durable entries).
func (c *Core) LastSeq() uint64 { return c.lastSeq }

// Get returns key's current state as the core sees it (the store plus
// changes not yet advanced). Reads in the runtime go to the store instead.
func (c *Core) Get(key string) (KeyState, error) { return c.get(key) }

func (c *Core) get(key string) (KeyState, error) {
	if o := c.overlay[key]; o != nil {
		return o.st, nil
	}
	st, err := c.cfg.Store.Get(key)
	if err != nil {
		return KeyState{}, fmt.Errorf("multileader: store get %q: %w", key, err)
	}
	return st, nil
}

func (c *Core) put(key string, st KeyState) {
	c.gen++
	o := c.overlay[key]
	if o == nil {
		o = &overlayState{}
		c.overlay[key] = o
	}
	o.st, o.gen = st, c.gen
	if !o.dirty {
		o.dirty = true
		c.dirty = append(c.dirty, key)
	}
}

func (c *Core) markPos(origin string) {
	if !slices.Contains(c.posDirty, origin) {
		c.posDirty = append(c.posDirty, origin)
	}
}

// Tick advances logical time by one tick; physical is the node's clock
// (Unix ns) for its hybrid-logical timestamps.
func (c *Core) Tick(physical int64) {
	c.tick++
	c.physical = physical
	for _, p := range c.peers {
		c.tickPeer(p)
	}
	for _, id := range c.cfg.Peers {
		o := c.origins[id]
		if len(o.buffer) > 0 && c.tick-o.lastResend >= int64(c.cfg.RetryTicks) {
			c.askResend(id, o)
		}
	}
	c.expireProposals()
}

// HasReady reports whether Ready has work.
func (c *Core) HasReady() bool {
	if c.handed != nil {
		return false
	}
	if len(c.unstable) > 0 || len(c.dirty) > 0 || len(c.posDirty) > 0 ||
		len(c.conflicts) > 0 || len(c.msgs) > 0 || len(c.results) > 0 {
		return true
	}
	for _, p := range c.peers {
		if c.sendable(p) {
			return true
		}
	}
	for _, id := range c.cfg.Peers {
		if c.origins[id].needAck {
			return true
		}
	}
	return false
}

var errReadyPending = errors.New("multileader: Ready called before Advance of the previous one")

// Ready returns the pending work. The runtime processes it (see the
// package doc) and then calls Advance. An error is fatal (the own stream
// could not be read).
func (c *Core) Ready() (Ready, error) {
	if c.handed != nil {
		return Ready{}, errReadyPending
	}
	var rd Ready
	rd.Entries = c.unstable
	for _, k := range c.dirty {
		o := c.overlay[k]
		o.dirty = false
		rd.Changes = append(rd.Changes, Change{Key: k, State: o.st})
	}
	c.dirty = nil
	slices.Sort(c.posDirty)
	for _, id := range c.posDirty {
		rd.Applied = append(rd.Applied, Position{Origin: id, Seq: c.origins[id].applied})
	}
	c.posDirty = nil
	rd.Conflicts, c.conflicts = c.conflicts, nil
	for _, p := range c.peers {
		if err := c.send(p); err != nil {
			return Ready{}, err
		}
	}
	for _, id := range c.cfg.Peers {
		if o := c.origins[id]; o.needAck {
			o.needAck = false
			c.msgs = append(c.msgs, Message{Type: MsgAck, From: c.cfg.ID, To: id, Seq: o.applied})
		}
	}
	rd.Messages, c.msgs = c.msgs, nil
	rd.Results, c.results = c.results, nil
	c.handed = &handed{gen: c.gen, lastSeq: c.lastSeq}
	return rd, nil
}

// Advance tells the core the last Ready was processed: its entries and
// changes are durable and visible through Log and Store.
func (c *Core) Advance() {
	h := c.handed
	if h == nil {
		return
	}
	c.handed = nil
	if n := h.lastSeq - c.stableSeq; n > 0 {
		c.unstable = slices.Clone(c.unstable[n:])
		c.stableSeq = h.lastSeq
	}
	for k, o := range c.overlay {
		if o.gen <= h.gen && !o.dirty {
			delete(c.overlay, k)
		}
	}
}
