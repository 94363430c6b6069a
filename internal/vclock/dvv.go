package vclock

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/trireme-db/trireme/internal/hlc"
)

// Dot names one write: the node that made it and that node's counter for
// the key (1, 2, 3, ... per key and node).
type Dot struct {
	Node    string
	Counter uint64
}

func (d Dot) String() string { return d.Node + ":" + uitoa(d.Counter) }

// Compare orders dots by node, then counter (the canonical sibling order).
func (d Dot) Compare(e Dot) int {
	if c := cmpString(d.Node, e.Node); c != 0 {
		return c
	}
	return cmpUint(d.Counter, e.Counter)
}

// Sibling is one stored version of a key: a value (or a tombstone) with the
// dot and the hybrid-logical time of the write that made it.
type Sibling struct {
	Dot     Dot
	Time    hlc.Timestamp
	Deleted bool
	Value   []byte // empty when Deleted
}

// Rank orders siblings for last-writer-wins and for the sibling limit: by
// Time, then node id, then counter. It is total over distinct dots, so every
// replica picks the same winner.
func Rank(a, b Sibling) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return a.Dot.Compare(b.Dot)
}

// Set is a key's state as a dotted version vector set: the values no write
// has overwritten yet (siblings, sorted by dot) and the causal context of
// every write that reached this replica (Context). Invariant: every
// sibling's dot is covered by Context, and dots are unique.
//
// Context is a plain vector, which is exact because each node's dots for a
// key reach a replica in counter order (the multi-leader streams are
// consumed in order; see Update's precondition).
type Set struct {
	Context  Vector
	Siblings []Sibling
}

// Update applies one write to s: the write made sibling sib, having seen
// ctx (the causal context the writer read). Siblings ctx covers are
// discarded; sib is added unless s has already seen its dot. The result is
// the join of s with the write's delta (sib, ctx + sib.Dot), so applying a
// write twice, or writes in any order, gives the same set.
//
// Precondition for the vector to stay exact: s.Context or ctx covers
// sib.Dot's predecessor (counter-1) on its node. A writer draws dots as
// Context.Get(self)+1, and a replica consumes each origin's stream in order.
func Update(s Set, ctx Vector, sib Sibling) Set {
	out := Set{Siblings: make([]Sibling, 0, len(s.Siblings)+1)}
	for _, x := range s.Siblings {
		if x.Dot == sib.Dot || !ctx.Covers(x.Dot) {
			out.Siblings = append(out.Siblings, x)
		}
	}
	if !s.Context.Covers(sib.Dot) {
		out.Siblings = append(out.Siblings, sib)
		sortSiblings(out.Siblings)
	}
	out.Context = Merge(s.Context, ctx).With(sib.Dot.Node, sib.Dot.Counter)
	return out
}

// Sync merges two replicas' sets of one key: a sibling survives if both
// have it, or if the other replica has not seen its dot. The contexts merge.
// Sync is commutative, associative and idempotent.
func Sync(a, b Set) Set {
	out := Set{Context: Merge(a.Context, b.Context)}
	i, j := 0, 0
	for i < len(a.Siblings) || j < len(b.Siblings) {
		var c int
		switch {
		case j == len(b.Siblings):
			c = -1
		case i == len(a.Siblings):
			c = 1
		default:
			c = a.Siblings[i].Dot.Compare(b.Siblings[j].Dot)
		}
		switch {
		case c == 0:
			out.Siblings = append(out.Siblings, a.Siblings[i])
			i++
			j++
		case c < 0:
			if !b.Context.Covers(a.Siblings[i].Dot) {
				out.Siblings = append(out.Siblings, a.Siblings[i])
			}
			i++
		default:
			if !a.Context.Covers(b.Siblings[j].Dot) {
				out.Siblings = append(out.Siblings, b.Siblings[j])
			}
			j++
		}
	}
	return out
}

// Context is what a reader saw of a key: the set's vector and the highest
// timestamp among the siblings it read. A writer that hands it back must
// time its write above MaxTime, so a causally later write never loses a
// last-writer-wins comparison to what it overwrote.
type Context struct {
	Vector  Vector
	MaxTime hlc.Timestamp
}

// ReadContext returns the causal context of a read of s.
func (s Set) ReadContext() Context {
	c := Context{Vector: s.Context}
	for _, x := range s.Siblings {
		c.MaxTime = hlc.Max(c.MaxTime, x.Time)
	}
	return c
}

// Find returns the sibling with dot d.
func (s Set) Find(d Dot) (Sibling, bool) {
	for _, x := range s.Siblings {
		if x.Dot == d {
			return x, true
		}
	}
	return Sibling{}, false
}

// Equal reports whether two sets are identical (same context, same siblings).
func (s Set) Equal(t Set) bool {
	return slices.Equal(s.Context, t.Context) && slices.EqualFunc(s.Siblings, t.Siblings, func(a, b Sibling) bool {
		return a.Dot == b.Dot && a.Time == b.Time && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value)
	})
}

// Validate checks the Set invariants.
func (s Set) Validate() error {
	if err := s.Context.Validate(); err != nil {
		return err
	}
	for i, x := range s.Siblings {
		if err := validNode(x.Dot.Node); err != nil {
			return err
		}
		if x.Dot.Counter == 0 || !s.Context.Covers(x.Dot) {
			return errorf("sibling %v not covered by context %v", x.Dot, s.Context)
		}
		if i > 0 && s.Siblings[i-1].Dot.Compare(x.Dot) >= 0 {
			return errorf("siblings not sorted at %v", x.Dot)
		}
		if x.Deleted && len(x.Value) > 0 {
			return errorf("tombstone %v carries a value", x.Dot)
		}
	}
	return nil
}

func (s Set) String() string {
	b := []byte(s.Context.String())
	for _, x := range s.Siblings {
		b = fmt.Appendf(b, " [%v@%v", x.Dot, x.Time)
		if x.Deleted {
			b = append(b, " del"...)
		} else {
			b = fmt.Appendf(b, " %q", x.Value)
		}
		b = append(b, ']')
	}
	return string(b)
}

func sortSiblings(s []Sibling) {
	slices.SortFunc(s, func(a, b Sibling) int { return a.Dot.Compare(b.Dot) })
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func uitoa(u uint64) string { return strconv.FormatUint(u, 10) }

func errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
