package multileader

import (
	"fmt"
)

// Sending side: our stream to each peer.

func (c *Core) sendable(p *peer) bool {
	return !p.probing && p.next <= c.lastSeq && p.next <= p.acked+uint64(c.cfg.MaxInflight)
}

// send appends MsgEntries batches for p, up to the inflight window.
func (c *Core) send(p *peer) error {
	for c.sendable(p) {
		hi := min(c.lastSeq, p.next+uint64(c.cfg.MaxBatch)-1, p.acked+uint64(c.cfg.MaxInflight))
		es, err := c.entries(p.next, hi)
		if err != nil {
			return err
		}
		if p.acked+1 == p.next {
			p.waitSince = c.tick // nothing was outstanding: start waiting now
		}
		c.msgs = append(c.msgs, Message{Type: MsgEntries, From: c.cfg.ID, To: p.id, Seq: hi, Entries: es})
		p.next = hi + 1
		p.lastSend = c.tick
	}
	return nil
}

// entries returns own entries lo..hi, from the Log (durable) and the
// unstable tail.
func (c *Core) entries(lo, hi uint64) ([]Entry, error) {
	var out []Entry
	if lo <= c.stableSeq {
		es, err := c.cfg.Log.Entries(lo, min(hi, c.stableSeq))
		if err != nil {
			return nil, fmt.Errorf("multileader: reading own stream %d..%d: %w", lo, hi, err)
		}
		if uint64(len(es)) != min(hi, c.stableSeq)-lo+1 {
			return nil, fmt.Errorf("multileader: own stream %d..%d: got %d entries", lo, hi, len(es))
		}
		out = es
		lo = c.stableSeq + 1
	}
	if lo <= hi {
		out = append(out, c.unstable[lo-c.stableSeq-1:hi-c.stableSeq]...)
	}
	return out, nil
}

func (c *Core) tickPeer(p *peer) {
	hb := int64(c.cfg.HeartbeatTicks)
	if !p.probing && p.acked+1 < p.next && c.tick-p.waitSince >= int64(c.cfg.RetryTicks) &&
		c.tick-p.lastRetry >= int64(c.cfg.RetryTicks) {
		// Go-back-N: what was sent is lost or its acks are; resume at the
		// peer's acknowledged position.
		p.next = p.acked + 1
		p.lastRetry = c.tick
		c.stats.Retransmits++
	}
	if c.tick-p.lastSend >= hb && !c.sendable(p) {
		c.msgs = append(c.msgs, Message{Type: MsgHeartbeat, From: c.cfg.ID, To: p.id, Seq: c.lastSeq})
		p.lastSend = c.tick
	}
}

// Receiving side: each peer's stream, applied in order.

// Step processes a peer message. A malformed message returns an error
// wrapping ErrMalformed or ErrUnknownPeer and changes nothing; any other
// error is a store failure and fatal.
func (c *Core) Step(m Message) error {
	if err := c.validate(m); err != nil {
		return err
	}
	if o := c.origins[m.From]; o != nil {
		c.heard(o, m)
		defer c.noteCaughtUp(o)
	}
	switch m.Type {
	case MsgEntries:
		return c.stepEntries(m)
	case MsgHeartbeat:
		c.origins[m.From].needAck = true
	case MsgAck:
		p := c.peer(m.From)
		if p.probing || m.Seq >= p.next {
			p.next = m.Seq + 1
		}
		p.probing = false
		if m.Seq > p.acked {
			p.acked = m.Seq
			p.waitSince = c.tick
		}
		c.checkProposals()
	case MsgResend:
		p := c.peer(m.From)
		if m.Seq > p.acked {
			p.acked = m.Seq
			p.waitSince = c.tick
		}
		p.next = p.acked + 1
		p.probing = false
		c.stats.Retransmits++
		c.checkProposals()
	}
	return nil
}

// heard notes, for status, that the origin's stream reaches at least what m
// shows.
func (c *Core) heard(o *origin, m Message) {
	if o.applied >= o.known {
		o.caughtUpAt = c.tick
	}
	o.heardAt = c.tick
	switch {
	case m.Type == MsgHeartbeat:
		o.known = max(o.known, m.Seq)
	case m.Type == MsgEntries && len(m.Entries) > 0:
		o.known = max(o.known, m.Entries[len(m.Entries)-1].Seq)
	}
}

func (c *Core) noteCaughtUp(o *origin) {
	if o.applied >= o.known {
		o.caughtUpAt = c.tick
	}
}

func (c *Core) peer(id string) *peer {
	for _, p := range c.peers {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (c *Core) validate(m Message) error {
	if c.peer(m.From) == nil {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, m.From)
	}
	if m.To != c.cfg.ID {
		return fmt.Errorf("%w: addressed to %q, this is %q", ErrMalformed, m.To, c.cfg.ID)
	}
	switch m.Type {
	case MsgAck, MsgResend:
		if m.Seq > c.lastSeq {
			return fmt.Errorf("%w: %v of seq %d from %s, stream ends at %d", ErrMalformed, m.Type, m.Seq, m.From, c.lastSeq)
		}
	case MsgHeartbeat:
	case MsgEntries:
		for i, e := range m.Entries {
			if e.Origin != m.From {
				return fmt.Errorf("%w: entry of origin %q from %q", ErrMalformed, e.Origin, m.From)
			}
			if e.Seq == 0 || (i > 0 && e.Seq != m.Entries[i-1].Seq+1) {
				return fmt.Errorf("%w: entries not contiguous at seq %d", ErrMalformed, e.Seq)
			}
			if err := validEntry(e); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: type %d", ErrMalformed, m.Type)
	}
	return nil
}

// MaxKeyLen bounds a key's length.
const MaxKeyLen = 4096

func validEntry(e Entry) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: entry %s/%d: %s", ErrMalformed, e.Origin, e.Seq, why)
	}
	if e.Key == "" || len(e.Key) > MaxKeyLen {
		return bad("key length")
	}
	if e.Time.Wall < 0 {
		return bad("negative time")
	}
	switch e.Op {
	case OpPut, OpDelete:
		if e.Dot.Node != e.Origin || e.Dot.Counter == 0 || e.Context.Covers(e.Dot) {
			return bad("dot " + e.Dot.String())
		}
		if err := e.Context.Validate(); err != nil {
			return bad(err.Error())
		}
		if e.Op == OpDelete && len(e.Value) > 0 {
			return bad("delete with a value")
		}
		if err := e.Counter.Validate(); err != nil || (e.Op == OpPut && len(e.Counter) > 0) {
			return bad("counter")
		}
	case OpIncr:
		if len(e.Counter) != 1 || e.Counter[0].Node != e.Origin || e.Dot != (Entry{}).Dot || len(e.Context) > 0 || len(e.Value) > 0 {
			return bad("increment shape")
		}
	default:
		return bad("op " + e.Op.String())
	}
	return nil
}

func (c *Core) stepEntries(m Message) error {
	o := c.origins[m.From]
	o.needAck = true
	for _, e := range m.Entries {
		off, err := c.clock.Observe(e.Time, c.physical)
		if err != nil {
			c.stats.ClockClamps++
		}
		if off > c.stats.MaxOffset[m.From] {
			c.stats.MaxOffset[m.From] = off
		}
		switch {
		case e.Seq <= o.applied:
			c.stats.Duplicates++
		case e.Seq == o.applied+1 || c.bugs().skipGap():
			if err := c.applyRemote(o, e); err != nil {
				return err
			}
		case e.Seq <= o.applied+uint64(c.cfg.MaxBuffered):
			if _, ok := o.buffer[e.Seq]; !ok {
				o.buffer[e.Seq] = e
				c.stats.Buffered++
			}
			if c.tick-o.lastResend >= int64(c.cfg.RetryTicks) {
				c.askResend(m.From, o)
			}
		default: // too far ahead to hold: ask again later
			if c.tick-o.lastResend >= int64(c.cfg.RetryTicks) {
				c.askResend(m.From, o)
			}
		}
	}
	return nil
}

// applyRemote applies e (the next in its origin's order, or, under the
// skip-gap bug, whatever came) and then whatever the buffer holds after it.
func (c *Core) applyRemote(o *origin, e Entry) error {
	for {
		if err := c.apply(e); err != nil {
			return err
		}
		o.applied = e.Seq
		c.markPos(e.Origin)
		for s := range o.buffer {
			if s <= o.applied {
				delete(o.buffer, s)
			}
		}
		next, ok := o.buffer[o.applied+1]
		if !ok {
			return nil
		}
		delete(o.buffer, next.Seq)
		e = next
	}
}

func (c *Core) askResend(id string, o *origin) {
	o.lastResend = c.tick
	c.stats.ResendsAsked++
	c.msgs = append(c.msgs, Message{Type: MsgResend, From: c.cfg.ID, To: id, Seq: o.applied})
}

// Proposals waiting for peers.

func (c *Core) checkProposals() {
	kept := c.pending[:0]
	for _, pr := range c.pending {
		if n := c.ackedBy(pr.seq); n >= pr.need {
			c.results = append(c.results, Result{ID: pr.id, Seq: pr.seq, Peers: n})
		} else {
			kept = append(kept, pr)
		}
	}
	c.pending = kept
}

func (c *Core) expireProposals() {
	kept := c.pending[:0]
	for _, pr := range c.pending {
		if c.tick >= pr.deadline {
			c.results = append(c.results, Result{ID: pr.id, Seq: pr.seq, Peers: c.ackedBy(pr.seq), Err: ErrTimeout})
		} else {
			kept = append(kept, pr)
		}
	}
	c.pending = kept
}

func (c *Core) ackedBy(seq uint64) int {
	n := 0
	for _, p := range c.peers {
		if p.acked >= seq {
			n++
		}
	}
	return n
}
