package vclock

import "slices"

// CounterEntry is one node's share of a PN counter: P and N are the totals
// of the increments and decrements that node made (each only grows);
// FloorP and FloorN are the totals a delete observed (the observed-reset:
// what was counted before the delete no longer counts).
type CounterEntry struct {
	Node                 string
	P, N, FloorP, FloorN uint64
}

// Counter is a PN counter with observed resets, sorted by node. Every field
// joins by maximum, so increments made on different nodes all count, and a
// delete removes exactly the increments it saw: concurrent increments
// survive it (add wins).
type Counter []CounterEntry

// Value returns the counter's value: the sum over nodes of (P-FloorP) -
// (N-FloorN), in two's-complement int64 arithmetic. A share whose floor is
// ahead of its total (a delete arrived before increments it saw) counts 0
// until they arrive.
func (c Counter) Value() int64 {
	var v int64
	for _, e := range c {
		if e.P > e.FloorP {
			v += int64(e.P - e.FloorP)
		}
		if e.N > e.FloorN {
			v -= int64(e.N - e.FloorN)
		}
	}
	return v
}

// Get returns node's entry (zero if absent).
func (c Counter) Get(node string) CounterEntry {
	for _, e := range c {
		if e.Node == node {
			return e
		}
	}
	return CounterEntry{Node: node}
}

// IncrDelta returns the delta of node adding by to c: node's entry with its
// new totals. JoinCounter(c, delta) applies it; applying it again is a no-op.
func (c Counter) IncrDelta(node string, by int64) Counter {
	e := c.Get(node)
	if by >= 0 {
		e.P += uint64(by)
	} else {
		e.N += uint64(-by) // -MinInt64 wraps to 1<<63, as uint64: correct magnitude
	}
	return Counter{e}
}

// ResetDelta returns the delta of a delete that observed c: every entry's
// floors raised to its totals.
func (c Counter) ResetDelta() Counter {
	out := make(Counter, len(c))
	for i, e := range c {
		out[i] = CounterEntry{Node: e.Node, P: e.P, N: e.N, FloorP: e.P, FloorN: e.N}
	}
	return out
}

// JoinCounter merges two counters field by field (maximum). Commutative,
// associative, idempotent.
func JoinCounter(a, b Counter) Counter {
	return joinByNode(a, b, func(e CounterEntry) string { return e.Node },
		func(x, y CounterEntry) CounterEntry {
			return CounterEntry{x.Node, max(x.P, y.P), max(x.N, y.N), max(x.FloorP, y.FloorP), max(x.FloorN, y.FloorN)}
		})
}

// Equal reports whether two counters are identical.
func (c Counter) Equal(d Counter) bool { return slices.Equal(c, d) }

// Validate checks the Counter invariants (sorted, unique, valid node ids).
func (c Counter) Validate() error {
	for i, e := range c {
		if err := validNode(e.Node); err != nil {
			return err
		}
		if i > 0 && c[i-1].Node >= e.Node {
			return errorf("counter entries not sorted at %q", e.Node)
		}
	}
	return nil
}
