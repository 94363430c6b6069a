package mlsim

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/vclock"
)

// check runs the end-of-run checks: convergence, complete streams, no
// silently lost acknowledged write, exact counters.
func (s *sim) check(quiet bool) {
	for _, n := range s.nodes {
		if n.core != nil {
			s.res.Clamps += n.core.Stats().ClockClamps
		}
	}
	if !quiet {
		for _, n := range s.nodes {
			var pos []string
			for _, o := range s.nodes {
				pos = append(pos, fmt.Sprintf("%s:%d/%d", o.id, n.applied[o.id], len(o.stream)))
			}
			s.violation("no quiescence: %s applied %v (up=%v)", n.id, pos, n.core != nil)
		}
	}
	s.checkStreams()
	keys := s.checkConvergence()
	ref := s.nodes[0]
	for _, k := range keys {
		st := ref.store[k]
		if err := st.Reg.Validate(); err != nil {
			s.violation("key %s: %v", k, err)
		}
		if err := st.Ctr.Validate(); err != nil {
			s.violation("key %s: %v", k, err)
		}
		if s.cfg.Policy == multileader.LWW && len(st.Reg.Siblings) > 1 {
			s.violation("key %s: %d siblings under LWW", k, len(st.Reg.Siblings))
		}
	}
	s.checkAckedWrites()
	s.checkCounters(keys)
	s.checkCausalTimes()
}

// checkCausalTimes: a write is stamped after everything it supersedes.
// The hybrid clock promises it: a node's clock is at least the time of
// every version it has seen, and a write is timed above its context's
// newest version even when that version's clock ran too far ahead to be
// followed. So for every put or delete, every write of the same key that
// its context covers has a lower timestamp. LWW by anything else (a
// node's wall clock) breaks this as soon as a write follows one from a
// node whose clock is ahead, whatever the message order.
func (s *sim) checkCausalTimes() {
	type version struct {
		key string
		dot vclock.Dot
	}
	entries := map[version]multileader.Entry{}
	for _, n := range s.nodes {
		for _, e := range n.stream {
			if e.Op != multileader.OpIncr {
				entries[version{e.Key, e.Dot}] = e
			}
		}
	}
	for _, n := range s.nodes {
		for _, e := range n.stream {
			if e.Op == multileader.OpIncr {
				continue
			}
			for _, c := range e.Context {
				for i := uint64(1); i <= c.Counter; i++ {
					seen, ok := entries[version{e.Key, vclock.Dot{Node: c.Node, Counter: i}}]
					if ok && !seen.Time.Less(e.Time) {
						s.violation("write %v to %s at %v supersedes %v at %v: not later", e.Dot, e.Key, e.Time, seen.Dot, seen.Time)
						return
					}
				}
			}
		}
	}
}

func (s *sim) checkStreams() {
	for _, n := range s.nodes {
		for i, e := range n.stream {
			if e.Seq != uint64(i+1) || e.Origin != n.id {
				s.violation("stream of %s has %s/%d at position %d", n.id, e.Origin, e.Seq, i+1)
				break
			}
		}
	}
}

// checkConvergence compares every key's full state on every node with the
// first node, and returns the keys in order.
func (s *sim) checkConvergence() []string {
	var keys []string
	for _, n := range s.nodes {
		for k := range n.store {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	ref := s.nodes[0]
	for _, n := range s.nodes[1:] {
		for _, k := range keys {
			if a, b := ref.store[k], n.store[k]; !a.Equal(b) {
				s.violation("diverged on %s: %s has %v ctr %v, %s has %v ctr %v", k, ref.id, a.Reg, a.Ctr, n.id, b.Reg, b.Ctr)
			}
		}
	}
	return keys
}

// checkAckedWrites: each acknowledged put or delete is in the final state,
// causally overwritten (some write's context covers its dot), or a loser in
// some node's conflict log.
func (s *sim) checkAckedWrites() {
	losers := map[vclock.Dot]bool{}
	for _, n := range s.nodes {
		for _, c := range n.confl {
			for _, d := range c.Losers {
				losers[d] = true
			}
		}
	}
	var all []multileader.Entry
	for _, n := range s.nodes {
		all = append(all, n.stream...)
	}
	ref := s.nodes[0]
	for _, n := range s.nodes {
		for seq := uint64(1); seq <= uint64(len(n.stream)); seq++ {
			e := n.stream[seq-1]
			if !s.acked[[2]string{n.id, fmt.Sprint(seq)}] || e.Op == multileader.OpIncr {
				continue
			}
			if x, ok := ref.store[e.Key].Reg.Find(e.Dot); ok {
				if x.Deleted != (e.Op == multileader.OpDelete) || !bytes.Equal(x.Value, e.Value) {
					s.violation("write %v to %s: stored as %v", e.Dot, e.Key, x)
				}
				continue
			}
			if losers[e.Dot] || overwritten(all, e) {
				continue
			}
			s.violation("acknowledged write %s/%d %v to %s lost silently (final %v)", n.id, seq, e.Dot, e.Key, ref.store[e.Key].Reg)
		}
		// An acknowledged write missing from its own durable stream.
		for k := range s.acked {
			if k[0] == n.id {
				var seq uint64
				fmt.Sscan(k[1], &seq)
				if seq > uint64(len(n.stream)) {
					s.violation("acknowledged write %s/%d not in its stream (%d entries)", n.id, seq, len(n.stream))
				}
			}
		}
	}
}

func overwritten(all []multileader.Entry, e multileader.Entry) bool {
	for _, o := range all {
		if o.Key == e.Key && o.Op != multileader.OpIncr && o.Dot != e.Dot && o.Context.Covers(e.Dot) {
			return true
		}
	}
	return false
}

// checkCounters: a counter key (only ever incremented) ends at exactly the
// sum of the increments in the durable streams, as the workload proposed
// them: never fewer than the acknowledged ones, none counted twice.
func (s *sim) checkCounters(keys []string) {
	durable, acked := map[string]int64{}, map[string]int64{}
	for _, n := range s.nodes {
		for _, e := range n.stream {
			if e.Op != multileader.OpIncr {
				continue
			}
			k := [2]string{n.id, fmt.Sprint(e.Seq)}
			by, ok := s.incrs[k]
			if !ok {
				s.violation("increment %s/%d in the stream was never proposed", n.id, e.Seq)
			}
			durable[e.Key] += by
			if s.acked[k] {
				acked[e.Key] += by
			}
		}
	}
	for _, k := range keys {
		if k[0] != 'c' {
			continue
		}
		got := s.nodes[0].store[k].Ctr.Value()
		if got != durable[k] {
			s.violation("counter %s = %d, durable increments sum to %d (acknowledged %d)", k, got, durable[k], acked[k])
		}
	}
}
