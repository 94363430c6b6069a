// Package vclock holds the causality types of the multi-leader and
// leaderless engines: version vectors, dotted version vector sets (a key's
// concurrent values with their causal context, in the DVVSet style), PN
// counters with observed resets, their strict binary encodings, and the
// opaque causal-context token handed to clients.
//
// Every type here is a value of a join-semilattice: Sync (sets), Merge
// (vectors) and JoinCounter (counters) are commutative, associative and
// idempotent, which is what lets replicas that apply the same updates in
// different orders, more than once, converge. See DESIGN.md.
//
// Values are immutable by convention: functions return new values and never
// modify their arguments' backing arrays.
//
// # Encodings
//
// Integers are unsigned varints (encoding/binary, minimal form only); a node
// id is a uvarint length (1..MaxNodeIDLen) then its bytes. Decoders are
// strict: they reject trailing bytes, non-minimal varints, unsorted or
// duplicate entries, zero counters, and every count or length is checked
// against the bytes that remain before anything is allocated. They return
// errors wrapping ErrMalformed and never panic.
//
//	Vector   = count, count x (node, counter>0)           sorted by node
//	Context  = Vector, 12-byte hlc.Timestamp (MaxTime)
//	Set      = Vector (context), count, count x Sibling   sorted by dot
//	Sibling  = node, counter>0, 12-byte timestamp, flags (bit 0: deleted;
//	           others zero), value length, value bytes    (deleted: length 0)
//	Counter  = count, count x (node, P, N, FloorP, FloorN) sorted by node
package vclock

import (
	"errors"
	"sort"
	"strings"
)

// MaxNodeIDLen bounds a node id's length in bytes. Part of the format.
const MaxNodeIDLen = 255

// ErrMalformed: an encoding or a value breaks the format or its invariants.
var ErrMalformed = errors.New("vclock: malformed")

// Entry is one node's counter in a Vector.
type Entry struct {
	Node    string
	Counter uint64
}

// Vector is a version vector: for each node, the number of its events seen
// (all of 1..Counter). Entries are sorted by Node, unique, Counter > 0; a
// missing node counts 0. The zero Vector is empty.
type Vector []Entry

// Ordering is the causal relation between two vectors.
type Ordering int

const (
	Equal      Ordering = iota // same events
	Before                     // a saw a strict subset of b's events
	After                      // a saw a strict superset of b's events
	Concurrent                 // each saw an event the other did not
)

func (o Ordering) String() string {
	return [...]string{"equal", "before", "after", "concurrent"}[o]
}

func (v Vector) find(node string) (int, bool) {
	i := sort.Search(len(v), func(i int) bool { return v[i].Node >= node })
	return i, i < len(v) && v[i].Node == node
}

// Get returns node's counter (0 if absent).
func (v Vector) Get(node string) uint64 {
	if i, ok := v.find(node); ok {
		return v[i].Counter
	}
	return 0
}

// With returns a copy of v with node's counter raised to at least c.
func (v Vector) With(node string, c uint64) Vector {
	i, ok := v.find(node)
	if ok && v[i].Counter >= c {
		return v
	}
	if c == 0 {
		return v
	}
	out := make(Vector, 0, len(v)+1)
	out = append(out, v[:i]...)
	out = append(out, Entry{node, c})
	if ok {
		i++
	}
	return append(out, v[i:]...)
}

// Covers reports whether v has seen dot d.
func (v Vector) Covers(d Dot) bool { return d.Counter > 0 && v.Get(d.Node) >= d.Counter }

// Compare returns the causal relation of a to b.
func Compare(a, b Vector) Ordering {
	aMore, bMore := false, false
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Node < b[j].Node):
			aMore = true
			i++
		case i == len(a) || b[j].Node < a[i].Node:
			bMore = true
			j++
		default:
			if a[i].Counter > b[j].Counter {
				aMore = true
			} else if a[i].Counter < b[j].Counter {
				bMore = true
			}
			i++
			j++
		}
	}
	switch {
	case aMore && bMore:
		return Concurrent
	case aMore:
		return After
	case bMore:
		return Before
	}
	return Equal
}

// Descends reports whether a has seen every event b has (a >= b).
func (a Vector) Descends(b Vector) bool {
	o := Compare(a, b)
	return o == Equal || o == After
}

// Merge returns the pointwise maximum of a and b: the events either saw.
func Merge(a, b Vector) Vector {
	return joinByNode(a, b, func(e Entry) string { return e.Node },
		func(x, y Entry) Entry { return Entry{x.Node, max(x.Counter, y.Counter)} })
}

// joinByNode merges two lists sorted by node id into one: an entry of one
// list only is kept, two entries of the same node are combined by both.
// Vectors and counters are both such lists.
func joinByNode[T any](a, b []T, node func(T) string, both func(x, y T) T) []T {
	out := make([]T, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && node(a[i]) < node(b[j])):
			out = append(out, a[i])
			i++
		case i == len(a) || node(b[j]) < node(a[i]):
			out = append(out, b[j])
			j++
		default:
			out = append(out, both(a[i], b[j]))
			i++
			j++
		}
	}
	return out
}

// Validate checks the Vector invariants (sorted, unique, counters > 0,
// node ids 1..MaxNodeIDLen bytes).
func (v Vector) Validate() error {
	for i, e := range v {
		if err := validNode(e.Node); err != nil {
			return err
		}
		if e.Counter == 0 {
			return errorf("vector entry %q has counter 0", e.Node)
		}
		if i > 0 && v[i-1].Node >= e.Node {
			return errorf("vector entries not sorted at %q", e.Node)
		}
	}
	return nil
}

func validNode(n string) error {
	if n == "" || len(n) > MaxNodeIDLen {
		return errorf("node id length %d not in 1..%d", len(n), MaxNodeIDLen)
	}
	return nil
}

func (v Vector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.Node)
		b.WriteByte(':')
		b.WriteString(uitoa(e.Counter))
	}
	b.WriteByte('}')
	return b.String()
}
