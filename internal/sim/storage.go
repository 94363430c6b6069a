package sim

import (
	"fmt"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// memLog is a simulated log plus hard state. It implements repl.Storage.
// Entry i lives at ents[i-1]; the log is never compacted (FirstIndex is 1).
// Slices handed out are never written again: truncation copies.
type memLog struct {
	hs   repl.HardState
	ents []entry.Entry
}

var _ repl.Storage = (*memLog)(nil)

func (l *memLog) InitialState() (repl.HardState, error) { return l.hs, nil }
func (l *memLog) FirstIndex() uint64                    { return 1 }
func (l *memLog) LastIndex() uint64                     { return uint64(len(l.ents)) }

func (l *memLog) Term(i uint64) (uint64, error) {
	if i == 0 {
		return 0, nil
	}
	if i > uint64(len(l.ents)) {
		return 0, fmt.Errorf("%w: term of %d, last index %d", repl.ErrUnavailable, i, len(l.ents))
	}
	return l.ents[i-1].Term, nil
}

func (l *memLog) Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	if lo < 1 || hi < lo || hi > uint64(len(l.ents))+1 {
		return nil, fmt.Errorf("%w: entries [%d, %d), log [1, %d]", repl.ErrUnavailable, lo, hi, len(l.ents))
	}
	if lo == hi {
		return nil, nil
	}
	size := 0
	n := 0
	for i := lo; i < hi; i++ {
		size += l.ents[i-1].Size()
		if n > 0 && size > maxBytes {
			break
		}
		n++
	}
	return l.ents[lo-1 : lo-1+uint64(n) : lo-1+uint64(n)], nil
}

// write persists hs (if not empty) and ents (truncating the log after
// ents[0].Index-1 first). It returns an error for a gap.
func (l *memLog) write(hs repl.HardState, ents []entry.Entry) error {
	if !hs.IsEmpty() {
		l.hs = hs
	}
	if len(ents) == 0 {
		return nil
	}
	first := ents[0].Index
	if first < 1 || first > uint64(len(l.ents))+1 {
		return fmt.Errorf("append at index %d leaves a gap after last index %d", first, len(l.ents))
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("append is not contiguous: index %d after %d", ents[i].Index, ents[i-1].Index)
		}
	}
	kept := l.ents[: first-1 : first-1]
	l.ents = append(kept, ents...)
	return nil
}

func (l *memLog) clone() *memLog {
	return &memLog{hs: l.hs, ents: l.ents[:len(l.ents):len(l.ents)]}
}
