package sim

import (
	"fmt"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// memLog is a simulated log plus hard state. It implements repl.Storage.
// The log may be compacted: off is the compaction point (the index of the
// last dropped entry, 0 for a log never compacted) and offTerm its term;
// entry i lives at ents[i-off-1]. Slices handed out are never written
// again: truncation and compaction copy.
type memLog struct {
	hs      repl.HardState
	off     uint64
	offTerm uint64
	ents    []entry.Entry
}

var _ repl.Storage = (*memLog)(nil)

func (l *memLog) InitialState() (repl.HardState, error) { return l.hs, nil }
func (l *memLog) FirstIndex() uint64                    { return l.off + 1 }
func (l *memLog) LastIndex() uint64                     { return l.off + uint64(len(l.ents)) }

func (l *memLog) Term(i uint64) (uint64, error) {
	switch {
	case i == 0:
		return 0, nil
	case i == l.off:
		return l.offTerm, nil
	case i < l.off || i > l.LastIndex():
		return 0, fmt.Errorf("%w: term of %d, log holds [%d, %d]", repl.ErrUnavailable, i, l.off+1, l.LastIndex())
	}
	return l.ents[i-l.off-1].Term, nil
}

// at returns the entry at index i, if the log holds it.
func (l *memLog) at(i uint64) (entry.Entry, bool) {
	if i <= l.off || i > l.LastIndex() {
		return entry.Entry{}, false
	}
	return l.ents[i-l.off-1], true
}

// holds reports whether the log holds (i, t), possibly as its compaction point.
func (l *memLog) holds(i, t uint64) bool {
	tt, err := l.Term(i)
	return err == nil && tt == t
}

func (l *memLog) Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	if lo <= l.off || hi < lo || hi > l.LastIndex()+1 {
		return nil, fmt.Errorf("%w: entries [%d, %d), log [%d, %d]", repl.ErrUnavailable, lo, hi, l.off+1, l.LastIndex())
	}
	if lo == hi {
		return nil, nil
	}
	size := 0
	n := 0
	for i := lo; i < hi; i++ {
		size += l.ents[i-l.off-1].Size()
		if n > 0 && size > maxBytes {
			break
		}
		n++
	}
	s := lo - l.off - 1
	return l.ents[s : s+uint64(n) : s+uint64(n)], nil
}

// write persists hs (if not empty) and ents (truncating the log after
// ents[0].Index-1 first). It returns an error for a gap or an append at or
// below the compaction point.
func (l *memLog) write(hs repl.HardState, ents []entry.Entry) error {
	if !hs.IsEmpty() {
		l.hs = hs
	}
	if len(ents) == 0 {
		return nil
	}
	first := ents[0].Index
	if first <= l.off || first > l.LastIndex()+1 {
		return fmt.Errorf("append at index %d outside the log (compaction point %d, last index %d)", first, l.off, l.LastIndex())
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("append is not contiguous: index %d after %d", ents[i].Index, ents[i-1].Index)
		}
	}
	k := first - l.off - 1
	kept := l.ents[:k:k]
	l.ents = append(kept, ents...)
	return nil
}

// compact drops the entries up to and including i (i <= LastIndex()).
func (l *memLog) compact(i uint64) error {
	if i <= l.off {
		return nil
	}
	if i > l.LastIndex() {
		return fmt.Errorf("compact to %d beyond last index %d", i, l.LastIndex())
	}
	t, _ := l.Term(i)
	rest := l.ents[i-l.off:]
	l.ents = append(make([]entry.Entry, 0, len(rest)), rest...)
	l.off, l.offTerm = i, t
	return nil
}

// reset replaces the whole log by an empty one starting after index, whose
// compaction point has term (a snapshot was installed). The hard state stays.
func (l *memLog) reset(index, term uint64) {
	l.off, l.offTerm, l.ents = index, term, nil
}

func (l *memLog) clone() *memLog {
	return &memLog{hs: l.hs, off: l.off, offTerm: l.offTerm, ents: l.ents[:len(l.ents):len(l.ents)]}
}
