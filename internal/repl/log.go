package repl

import (
	"fmt"
	"math"

	"github.com/trireme-db/trireme/internal/entry"
)

// raftLog is the core's view of the log: a durable prefix read through
// Storage, followed by an unstable tail of entries the runtime has not yet
// confirmed durable (through Advance). The durable entries just below the
// unstable tail that have not been handed out for applying yet are also kept
// in memory (kept), so that Ready's CommittedEntries, which are exactly those,
// do not read back from Storage what was appended moments ago.
//
// Invariants:
//   - unstable[i].Index == offset+i;
//   - kept[i].Index == offset-len(kept)+i: kept ends just below the unstable
//     tail, and its entries equal Storage's (they are durable);
//   - kept holds no entry at or below applying once Ready has run, and at most
//     maxKeptBytes of entries (older ones are dropped and read from storage);
//   - entries at index < offset are read from storage; storage entries at
//     index >= offset are stale (they are being overwritten by the unstable
//     tail) and are never read;
//   - when unstable is empty, offset == storage.LastIndex()+1;
//   - offset-1 <= handed <= lastIndex(): unstable entries up to handed were
//     given to the runtime in a Ready and await Advance;
//   - applied <= applying <= committed <= lastIndex().
type raftLog struct {
	storage   Storage
	unstable  []entry.Entry
	offset    uint64
	handed    uint64
	kept      []entry.Entry
	keptBytes int

	committed uint64
	applying  uint64 // highest index handed out in Ready.CommittedEntries
	applied   uint64 // highest index confirmed applied by Advance
}

func newRaftLog(st Storage, applied uint64) *raftLog {
	last := st.LastIndex()
	return &raftLog{storage: st, offset: last + 1, handed: last, applied: applied, applying: applied}
}

func (l *raftLog) lastIndex() uint64 {
	if n := len(l.unstable); n > 0 {
		return l.offset + uint64(n) - 1
	}
	return l.storage.LastIndex()
}

// stableIndex is the last index known durable locally (and matching the log).
func (l *raftLog) stableIndex() uint64 {
	if len(l.unstable) > 0 {
		return l.offset - 1
	}
	return l.storage.LastIndex()
}

func (l *raftLog) firstIndex() uint64 { return l.storage.FirstIndex() }

// maxKeptBytes bounds kept (a leader that cannot commit keeps appending).
const maxKeptBytes = 64 << 20

// keptOff is the index of kept[0] (offset when kept is empty).
func (l *raftLog) keptOff() uint64 { return l.offset - uint64(len(l.kept)) }

// trimKept drops kept entries at or below applying (handed out already) and,
// oldest first, any beyond maxKeptBytes. Dropped slots are cleared so that
// their values can be collected.
func (l *raftLog) trimKept() {
	drop := 0
	if off := l.keptOff(); l.applying >= off {
		drop = int(min(l.applying+1-off, uint64(len(l.kept))))
	}
	for i := 0; i < drop; i++ {
		l.keptBytes -= l.kept[i].Size()
	}
	for drop < len(l.kept) && l.keptBytes > maxKeptBytes {
		l.keptBytes -= l.kept[drop].Size()
		drop++
	}
	if drop == 0 {
		return
	}
	clear(l.kept[:drop])
	l.kept = l.kept[drop:]
	if len(l.kept) == 0 {
		l.kept, l.keptBytes = nil, 0
	}
}

// cutKept drops kept entries at or after index i (a truncation).
func (l *raftLog) cutKept(i uint64) {
	off := l.keptOff()
	if len(l.kept) == 0 || i >= l.offset {
		return
	}
	n := 0
	if i > off {
		n = int(i - off)
	}
	for _, e := range l.kept[n:] {
		l.keptBytes -= e.Size()
	}
	clear(l.kept[n:])
	l.kept = l.kept[:n]
	if n == 0 {
		l.kept, l.keptBytes = nil, 0
	}
}

// term returns the term of entry i, 0 for i == 0.
func (l *raftLog) term(i uint64) (uint64, error) {
	if i == 0 {
		return 0, nil
	}
	if len(l.unstable) > 0 && i >= l.offset {
		if i > l.lastIndex() {
			return 0, ErrUnavailable
		}
		return l.unstable[i-l.offset].Term, nil
	}
	if i > l.storage.LastIndex() {
		return 0, ErrUnavailable
	}
	return l.storage.Term(i)
}

func (l *raftLog) lastTerm() uint64 {
	t, err := l.term(l.lastIndex())
	if err != nil {
		return 0
	}
	return t
}

func (l *raftLog) matchTerm(i, t uint64) bool {
	tt, err := l.term(i)
	return err == nil && tt == t
}

// isUpToDate reports whether a log ending at (lastIdx, lastTerm) is at least as
// up to date as this one.
func (l *raftLog) isUpToDate(lastIdx, lastTerm uint64) bool {
	mt := l.lastTerm()
	return lastTerm > mt || (lastTerm == mt && lastIdx >= l.lastIndex())
}

// entries returns entries [lo, hi) up to maxBytes (<= 0: no bound), at least
// one if lo < hi.
func (l *raftLog) entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() || hi > l.lastIndex()+1 {
		return nil, fmt.Errorf("%w: entries [%d, %d) outside [%d, %d]", ErrUnavailable, lo, hi, l.firstIndex(), l.lastIndex())
	}
	if maxBytes <= 0 {
		maxBytes = math.MaxInt
	}
	var out []entry.Entry
	size := 0
	if koff := l.keptOff(); lo < koff {
		shi := min(hi, koff)
		ents, err := l.storage.Entries(lo, shi, maxBytes)
		if err != nil {
			return nil, err
		}
		if len(ents) == 0 {
			return nil, fmt.Errorf("%w: storage returned no entries for [%d, %d)", ErrUnavailable, lo, shi)
		}
		for i := range ents {
			size += ents[i].Size()
		}
		if uint64(len(ents)) < shi-lo || shi == hi {
			return ents, nil
		}
		// Copy before appending: the storage's slice may have spare
		// capacity over memory it still uses.
		out = append(make([]entry.Entry, 0, len(ents)+int(hi-shi)), ents...)
		lo = shi
	}
	for i := lo; i < hi; i++ {
		var e *entry.Entry
		if i < l.offset {
			e = &l.kept[i-l.keptOff()]
		} else {
			e = &l.unstable[i-l.offset]
		}
		s := e.Size()
		if len(out) > 0 && size+s > maxBytes {
			break
		}
		size += s
		if out == nil {
			// never alias kept or unstable, nor their spare capacity
			out = make([]entry.Entry, 0, hi-i)
		}
		out = append(out, *e)
	}
	return out, nil
}

// findConflict returns the index of the first entry of ents that is not in
// the log (index beyond the end or a different term), or 0 if all are.
func (l *raftLog) findConflict(ents []entry.Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// truncateAndAppend appends ents, first dropping every entry at or after
// ents[0].Index. ents must start at or below lastIndex()+1.
func (l *raftLog) truncateAndAppend(ents []entry.Entry) {
	if len(ents) == 0 {
		return
	}
	after := ents[0].Index
	switch {
	case len(l.unstable) > 0 && after == l.offset+uint64(len(l.unstable)):
		l.unstable = append(l.unstable, ents...)
	case after <= l.offset:
		// The caller gave up ents (Step takes ownership of m.Entries);
		// clip the capacity so later appends never write into memory
		// that the sender might share.
		l.cutKept(after)
		l.offset = after
		l.unstable = ents[:len(ents):len(ents)]
	default:
		keep := l.unstable[:after-l.offset]
		l.unstable = append(append(make([]entry.Entry, 0, len(keep)+len(ents)), keep...), ents...)
	}
	if l.handed >= after {
		l.handed = after - 1
	}
}

// append adds ents at the end of the log (leader path).
func (l *raftLog) append(ents ...entry.Entry) {
	if len(l.unstable) == 0 {
		if o := l.storage.LastIndex() + 1; o != l.offset {
			l.cutKept(l.keptOff()) // kept must end just below offset
			l.offset = o
		}
	}
	l.unstable = append(l.unstable, ents...)
}

// unhanded returns the unstable entries not yet given out in a Ready.
func (l *raftLog) unhanded() []entry.Entry {
	if len(l.unstable) == 0 || l.handed >= l.lastIndex() {
		return nil
	}
	return l.unstable[l.handed+1-l.offset:]
}

// stableTo records that entries up to (i, t) are durable.
func (l *raftLog) stableTo(i, t uint64) {
	if len(l.unstable) == 0 || i < l.offset || i > l.lastIndex() {
		return
	}
	if l.unstable[i-l.offset].Term != t {
		return // superseded by a later truncation
	}
	n := i + 1 - l.offset
	for _, e := range l.unstable[:n] {
		l.keptBytes += e.Size()
	}
	l.kept = append(l.kept, l.unstable[:n]...)
	if n == uint64(len(l.unstable)) {
		l.unstable = nil
	} else {
		l.unstable = l.unstable[n:]
	}
	l.offset = i + 1
	if l.handed < i {
		l.handed = i
	}
	l.trimKept()
}

func (l *raftLog) commitTo(i uint64) bool {
	if i > l.committed {
		l.committed = i
		return true
	}
	return false
}

// applicableTo is the highest index that may be handed out for applying:
// committed and durable locally.
func (l *raftLog) applicableTo() uint64 {
	return min(l.committed, l.stableIndex())
}
