package llsim

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/vclock"
)

// The checks. Writes are told apart by their timestamps (unique per
// operation), so every sibling anywhere maps back to the operation that
// made it, and its dot is learned the first time it is seen.
//
// While running:
//   - every persisted state is a valid set, of a key the node is a home
//     replica of, whose siblings are writes the clients made with the values
//     they wrote, each with one dot;
//   - (c) no resurrection: a value a node's copy superseded (its dot covered
//     by the copy's context, the sibling gone) never comes back to that copy
//     (only a collected tombstone can let it back);
//   - a stand-in deletes a hint only once its home replica holds what the
//     hint held (hinted handoff loses nothing);
//   - the mint floor never goes back; a node drops only tombstones;
//   - (a) strict quorums: a read that started after a write with R + W > N
//     was acknowledged returns it or something that covers it (a collected
//     delete, too), and no value an acknowledged delete covered.
//
// After healing and quiescence, (b): the home replicas of every key hold
// the same state, nobody else holds a copy or a hint, every acknowledged
// write is covered by that state (or by a collected tombstone), and no
// value an acknowledged delete covered is in it. Then every key is read
// once more and must read as that state.

// home reports whether node is a home replica of key.
func (s *sim) home(node, key string) bool {
	return slices.Contains(s.ring.Replicas([]byte(key), s.cfg.N), node)
}

// persist applies a Ready's durable part to node n, checking it.
func (s *sim) persist(n *node, rd leaderless.Ready) {
	for _, kw := range rd.Keys {
		k := string(kw.Key)
		if !s.home(n.id, k) {
			s.violation("%s stores %s, of which it is no home replica", n.id, k)
		}
		if kw.Drop {
			old, ok := n.keys[k]
			if ok {
				if !onlyTombstones(old) {
					s.violation("%s drops %s holding %v", n.id, k, old)
				}
				s.collectedCtx[k] = append(s.collectedCtx[k], old.Context)
			}
			delete(n.keys, k)
			s.logf("%s drops %s", n.id, k)
			continue
		}
		if err := kw.Set.Validate(); err != nil {
			s.violation("%s stores an invalid set for %s: %v", n.id, k, err)
		}
		if s.cfg.TraceAll {
			s.logf("  %s persists %s = %v", n.id, k, kw.Set)
		}
		s.learn(k, kw.Set, n.id)
		s.checkResurrection(n, k, kw.Set)
		n.keys[k] = kw.Set
	}
	for _, h := range rd.Hints {
		k := string(h.Key)
		if h.For == n.id || !s.home(h.For, k) || s.home(n.id, k) {
			s.violation("%s holds a hint for %s of %s", n.id, h.For, k)
		}
		if err := h.Set.Validate(); err != nil {
			s.violation("%s holds an invalid hint for %s: %v", n.id, k, err)
		}
		if s.cfg.TraceAll {
			s.logf("  %s persists hint %s for %s = %v", n.id, k, h.For, h.Set)
		}
		s.learn(k, h.Set, n.id)
		n.hints[[2]string{h.For, k}] = hintRec{h: h, at: s.tick}
	}
	for _, h := range rd.DoneHints {
		hk := [2]string{h.For, string(h.Key)}
		if rec, ok := n.hints[hk]; ok {
			s.checkHandedOver(n, rec)
			delete(n.hints, hk)
			s.logf("%s hands %s over to %s", n.id, h.Key, h.For)
		}
	}
	if rd.MintFloor != 0 {
		if rd.MintFloor < n.floor {
			s.violation("%s: mint floor goes back %d -> %d", n.id, n.floor, rd.MintFloor)
		}
		n.floor = rd.MintFloor
	}
}

func onlyTombstones(st vclock.Set) bool {
	for _, x := range st.Siblings {
		if !x.Deleted {
			return false
		}
	}
	return len(st.Siblings) > 0
}

func holds(st vclock.Set, d vclock.Dot) bool {
	_, ok := st.Find(d)
	return ok
}

// learn maps the siblings of st (a state of key seen at where) back to the
// client operations that made them, and records their dots.
func (s *sim) learn(key string, st vclock.Set, where string) {
	for _, x := range st.Siblings {
		o := s.byTime[x.Time]
		switch {
		case o == nil:
			s.violation("%s: sibling %v of %s made by no client", where, x.Dot, key)
			continue
		case o.key != key:
			s.violation("%s: sibling %v of write %d to %s found under %s", where, x.Dot, o.id, o.key, key)
			continue
		case o.del != x.Deleted || string(x.Value) != o.value:
			s.violation("%s: sibling %v of %s is %q deleted=%v, the write was %q deleted=%v", where, x.Dot, key, x.Value, x.Deleted, o.value, o.del)
		}
		if !o.hasDot {
			o.dot, o.hasDot = x.Dot, true
			if !o.del {
				s.valueDots[key] = append(s.valueDots[key], x.Dot)
			}
		} else if o.dot != x.Dot {
			s.violation("write %d to %s has two dots, %v and %v", o.id, key, o.dot, x.Dot)
		}
	}
}

// checkResurrection: check (c) at every copy. A node's copy of a key only
// grows (Sync never brings back a dot the context covers), except when a
// tombstone is collected; so a value it once superseded can come back only
// through a collection that happened while an older copy was still around.
func (s *sim) checkResurrection(n *node, key string, st vclock.Set) {
	sup := n.superseded[key]
	for _, x := range st.Siblings {
		if !x.Deleted && sup[x.Dot] {
			s.violation("resurrection: %s's copy of %s holds value %v (%q) again after superseding it", n.id, key, x.Dot, x.Value)
		}
	}
	for _, d := range s.valueDots[key] {
		if st.Context.Covers(d) && !holds(st, d) {
			if sup == nil {
				sup = map[vclock.Dot]bool{}
				n.superseded[key] = sup
			}
			sup[d] = true
		}
	}
}

// collected reports whether some node collected a tombstone of key that
// covered d.
func (s *sim) collected(key string, d vclock.Dot) bool {
	for _, c := range s.collectedCtx[key] {
		if c.Covers(d) {
			return true
		}
	}
	return false
}

// checkHandedOver: a stand-in deletes a hint only once the home replica's
// copy covers it (unless that replica was wiped since: its data is gone).
func (s *sim) checkHandedOver(n *node, rec hintRec) {
	k := string(rec.h.Key)
	h := s.nodes[s.index(rec.h.For)]
	if h.lastWipe >= rec.at {
		return
	}
	st, ok := h.keys[k]
	for _, x := range rec.h.Set.Siblings {
		if !(ok && st.Context.Covers(x.Dot)) && !s.collected(k, x.Dot) {
			s.violation("%s dropped its hint of %s for %s, but %s does not hold %v (holds %v)", n.id, k, h.id, h.id, x.Dot, st)
			return
		}
	}
}

// wipesSince returns the number of wipes since op o was proposed.
func (s *sim) wipesSince(o *op) int { return len(s.wipes) - o.wipesBase }

// finished checks a client operation's result.
func (s *sim) finished(o *op) {
	r := o.res
	s.logf("done op %d at %s: err=%v replicas=%d repaired=%d set=%v", o.id, s.ids[o.node], r.Err, r.Replicas, r.Repaired, r.Set)
	if r.Err != nil {
		s.res.Errors++
		return
	}
	if err := r.Set.Validate(); err != nil {
		s.violation("op %d: result set invalid: %v", o.id, err)
	}
	s.learn(o.key, r.Set, "result")
	if !o.read {
		s.res.Acked++
		if !o.hasDot {
			s.violation("write %d to %s acknowledged, but its minted state %v does not hold it", o.id, o.key, r.Set)
		}
		if r.Replicas < o.q {
			s.violation("write %d acknowledged by %d replicas, W=%d", o.id, r.Replicas, o.q)
		}
		s.checkDurable(o)
		s.token(o.key, r.Set.Context)
		return
	}
	s.res.ReadsOK++
	s.res.Repaired += r.Repaired
	if r.Replicas < o.q || r.Repaired > r.Replicas {
		s.violation("read %d: %d replicas answered, %d repaired, R=%d", o.id, r.Replicas, r.Repaired, o.q)
	}
	s.token(o.key, r.Set.Context)
	s.checkRead(o)
}

// token keeps a context a client got (a read's, or the state a write
// minted) for later writes to key: the latest few.
func (s *sim) token(key string, ctx vclock.Vector) {
	ts := append(s.tokens[key], ctx)
	if len(ts) > 8 {
		ts = ts[1:]
	}
	s.tokens[key] = ts
}

// checkDurable: when a write is acknowledged, at least W nodes hold it
// durably, each in its copy of the key or in a hint (copies only grow, so
// holding it now means it was held when acknowledged). Not checked if a
// wipe may have destroyed a copy since the write was proposed, or if a
// collected tombstone covers it.
func (s *sim) checkDurable(o *op) {
	if !o.hasDot || s.wipesSince(o) > 0 || s.collected(o.key, o.dot) {
		return
	}
	var holders []string
	for _, n := range s.nodes {
		held := false
		if st, ok := n.keys[o.key]; ok && st.Context.Covers(o.dot) {
			held = true
		}
		for hk, h := range n.hints {
			if hk[1] == o.key && h.h.Set.Context.Covers(o.dot) {
				held = true
			}
		}
		if held {
			holders = append(holders, n.id)
		}
	}
	if len(holders) < o.q {
		s.violation("write %d %v to %s acknowledged (W=%d, %d replicas), but only %v hold it", o.id, o.dot, o.key, o.q, o.res.Replicas, holders)
	}
}

// checkRead: check (a), and (c) for reads, under strict quorums: a read that
// started after a write was acknowledged, with R + W > N, meets a replica
// that holds the write, so the merge it returns covers the write's dot
// (unless a collected tombstone covers it), and holds no value that an
// acknowledged delete covered. A wiped replica may have been the only one
// to hold it: writes proposed before a wipe are not checked.
func (s *sim) checkRead(rd *op) {
	if s.cfg.Sloppy {
		return
	}
	got := rd.res.Set
	for _, w := range s.byKey(rd.key) {
		if w.read || !w.ok || w.doneAt > rd.start || w.q+rd.q <= s.cfg.N || s.wipesSince(w) > 0 {
			continue
		}
		if !got.Context.Covers(w.dot) && !s.collected(rd.key, w.dot) {
			s.violation("stale read: read %d of %s (R=%d) returned %v, missing write %d %v (W=%d) acknowledged before it started",
				rd.id, rd.key, rd.q, got, w.id, w.dot, w.q)
		}
		if w.del {
			for _, x := range got.Siblings {
				if !x.Deleted && w.ctx.Covers(x.Dot) {
					s.violation("resurrection: read %d of %s returned %v (%q), deleted by delete %d acknowledged before it started",
						rd.id, rd.key, x.Dot, x.Value, w.id)
				}
			}
		}
	}
}

func (s *sim) byKey(key string) []*op {
	var out []*op
	for _, o := range s.ops {
		if o.key == key {
			out = append(out, o)
		}
	}
	return out
}

// allKeys returns every key some node stores or some operation touched.
func (s *sim) allKeys() []string {
	seen := map[string]bool{}
	for _, o := range s.ops {
		seen[o.key] = true
	}
	for _, n := range s.nodes {
		for k := range n.keys {
			seen[k] = true
		}
	}
	return sortedKeys(seen)
}

// quiescent returns "" once nothing is left to do: every node up and idle,
// no client request pending, no hint held, nothing but pings and trees in
// flight, the home replicas of every key equal, and no tombstone left to
// collect. Otherwise it says what is left.
func (s *sim) quiescent() string {
	for _, n := range s.nodes {
		switch {
		case n.core == nil:
			return n.id + " down"
		case n.disk != nil || len(n.inbox) > 0:
			return n.id + " busy"
		case len(n.pending) > 0:
			return fmt.Sprintf("%s has %d requests pending", n.id, len(n.pending))
		case len(n.hints) > 0:
			return fmt.Sprintf("%s holds %d hints", n.id, len(n.hints))
		}
	}
	if s.inFlight() {
		return "messages in flight"
	}
	for _, k := range s.allKeys() {
		if why := s.diverged(k); why != "" {
			return why
		}
		homes := s.ring.Replicas([]byte(k), s.cfg.N)
		if st, ok := s.nodes[s.index(homes[0])].keys[k]; ok && onlyTombstones(st) {
			return "tombstone of " + k + " not collected"
		}
	}
	return ""
}

// diverged describes how the copies of key differ, or returns "".
func (s *sim) diverged(k string) string {
	homes := s.ring.Replicas([]byte(k), s.cfg.N)
	ref := s.nodes[s.index(homes[0])]
	a, aok := ref.keys[k]
	for _, h := range homes[1:] {
		n := s.nodes[s.index(h)]
		if b, bok := n.keys[k]; aok != bok || !a.Equal(b) {
			return fmt.Sprintf("%s diverged: %s has %v (present %v), %s has %v (present %v)", k, ref.id, a, aok, n.id, b, bok)
		}
	}
	for _, n := range s.nodes {
		if _, ok := n.keys[k]; ok && !slices.Contains(homes, n.id) {
			return fmt.Sprintf("%s stored on %s, not a home replica", k, n.id)
		}
	}
	return ""
}

// check runs the end-of-run checks.
func (s *sim) check(quiet bool, why string) {
	if !quiet {
		s.violation("no quiescence within %d ticks of healing: %s", s.cfg.QuietTicks, why)
	}
	for _, n := range s.nodes {
		if len(n.hints) > 0 {
			hk := slices.MinFunc(slices.Collect(maps.Keys(n.hints)), cmpPair)
			s.violation("%s still holds %d hints, one of %s for %s", n.id, len(n.hints), hk[1], hk[0])
		}
	}
	for _, k := range s.allKeys() {
		if why := s.diverged(k); why != "" {
			s.violation("%s", why)
		}
		homes := s.ring.Replicas([]byte(k), s.cfg.N)
		for _, h := range homes {
			n := s.nodes[s.index(h)]
			st, ok := n.keys[k]
			s.checkFinal(n, k, st, ok)
		}
	}
}

// checkFinal: check (b) on one home replica's final copy, and (c).
func (s *sim) checkFinal(n *node, k string, st vclock.Set, present bool) {
	for _, w := range s.byKey(k) {
		if w.read || !w.ok || s.wipesSince(w) >= w.q {
			continue // a write acknowledged by W replicas survives fewer than W wipes
		}
		if !(present && st.Context.Covers(w.dot)) && !s.collected(k, w.dot) {
			s.violation("lost write: %s's copy of %s is %v (present %v), missing write %d %v (W=%d, acknowledged at tick %d)",
				n.id, k, st, present, w.id, w.dot, w.q, w.doneTick)
			return
		}
		if x, ok := st.Find(w.dot); ok && (x.Deleted != w.del || !bytes.Equal(x.Value, []byte(w.value))) {
			s.violation("write %d to %s stored as %v", w.id, k, x)
		}
		if w.del {
			for _, x := range st.Siblings {
				if !x.Deleted && w.ctx.Covers(x.Dot) {
					s.violation("resurrection: %s's copy of %s holds %v (%q), deleted by delete %d", n.id, k, x.Dot, x.Value, w.id)
				}
			}
		}
	}
}

// probeReads reads every key once more, after quiescence, at a random node
// with a random R: each must succeed and return the state the replicas
// converged to.
func (s *sim) probeReads() {
	keys := s.allKeys()
	var probes []*op
	for _, k := range keys {
		i := s.r.Intn(len(s.nodes))
		s.opSeq++
		o := &op{id: s.opSeq, node: i, key: k, read: true, q: 1 + s.r.Intn(s.cfg.N), fix: s.r.Intn(2) == 0,
			wipesBase: len(s.wipes)}
		s.ops = append(s.ops, o)
		probes = append(probes, o)
		s.nodes[i].inbox = append(s.nodes[i].inbox, event{op: o})
	}
	for end := s.tick + int64(3*s.cfg.RequestTicks); s.tick < end; s.tick++ {
		s.step()
		if !slices.ContainsFunc(probes, func(o *op) bool { return !o.done }) {
			break
		}
	}
	for _, o := range probes {
		homes := s.ring.Replicas([]byte(o.key), s.cfg.N)
		want, found := s.nodes[s.index(homes[0])].keys[o.key]
		switch {
		case !o.done:
			s.violation("probe read %d of %s at %s: no result", o.id, o.key, s.ids[o.node])
		case o.res.Err != nil:
			s.violation("probe read %d of %s at %s: %v", o.id, o.key, s.ids[o.node], o.res.Err)
		case !o.res.Set.Equal(want) || o.res.Found != found:
			s.violation("probe read %d of %s at %s (R=%d): %v found=%v, the replicas hold %v found=%v",
				o.id, o.key, s.ids[o.node], o.q, o.res.Set, o.res.Found, want, found)
		}
	}
}

// Summary is a one-line description of the run, for -sim.v.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "writes %d deletes %d reads %d acked %d reads ok %d errors %d lost %d crashes %d wipes %d",
		r.Writes, r.Deletes, r.Reads, r.Acked, r.ReadsOK, r.Errors, r.Lost, r.Crashes, r.Wipes)
	fmt.Fprintf(&b, " hints %d/%d refused %d repairs %d ae %d/%d gc %d ticks %d",
		r.Stats.HintsDelivered, r.Stats.HintsStored, r.Stats.HintsRefused, r.Stats.ReadRepairs,
		r.Stats.AERepairs, r.Stats.AEExchanges, r.Stats.TombstonesGC, r.Ticks)
	return b.String()
}
