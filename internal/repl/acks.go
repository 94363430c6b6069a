package repl

import (
	"container/heap"
	"sort"
)

// pendingProp is one proposal waiting for its ack mode to be met.
type pendingProp struct {
	id       uint64
	index    uint64
	term     uint64
	ack      Ack
	deadline int64 // tick at which it times out
	done     bool
	heapIdx  int
}

// proposals tracks the leader's pending proposals. Each ack mode has a queue
// in index order (entries are appended in index order, and each mode's
// condition is monotone in the index), so finishing proposals costs O(1)
// each; timeouts come from a heap by deadline. Finished proposals are marked
// done and skipped lazily.
type proposals struct {
	byID     map[uint64]*pendingProp
	async    propQueue
	majority propQueue
	sync     propQueue
	semi     map[int]*propQueue // by K
	semiKs   []int              // keys of semi, sorted
	deadline propHeap
}

type propQueue struct {
	q    []*pendingProp
	head int
}

func (q *propQueue) push(p *pendingProp) { q.q = append(q.q, p) }

// popThrough removes and returns (through fn) the not-done proposals at the
// front with index <= upTo.
func (q *propQueue) popThrough(upTo uint64, fn func(*pendingProp)) {
	for q.head < len(q.q) {
		p := q.q[q.head]
		if !p.done && p.index > upTo {
			break
		}
		q.q[q.head] = nil
		q.head++
		if !p.done {
			fn(p)
		}
	}
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.q) {
		q.q = append([]*pendingProp(nil), q.q[q.head:]...)
		q.head = 0
	}
}

type propHeap []*pendingProp

func (h propHeap) Len() int { return len(h) }
func (h propHeap) Less(i, j int) bool {
	if h[i].deadline != h[j].deadline {
		return h[i].deadline < h[j].deadline
	}
	return h[i].index < h[j].index
}
func (h propHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *propHeap) Push(x any) {
	p := x.(*pendingProp)
	p.heapIdx = len(*h)
	*h = append(*h, p)
}
func (h *propHeap) Pop() any {
	old := *h
	n := len(old)
	p := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	p.heapIdx = -1
	return p
}

func (ps *proposals) len() int { return len(ps.byID) }

func (ps *proposals) has(id uint64) bool {
	_, ok := ps.byID[id]
	return ok
}

func (ps *proposals) add(p *pendingProp) {
	if ps.byID == nil {
		ps.byID = make(map[uint64]*pendingProp)
	}
	ps.byID[p.id] = p
	switch p.ack.Mode {
	case AckAsync:
		ps.async.push(p)
	case AckMajority:
		ps.majority.push(p)
	case AckSync:
		ps.sync.push(p)
	case AckSemiSync:
		if ps.semi == nil {
			ps.semi = make(map[int]*propQueue)
		}
		q := ps.semi[p.ack.Replicas]
		if q == nil {
			q = &propQueue{}
			ps.semi[p.ack.Replicas] = q
			ps.semiKs = append(ps.semiKs, p.ack.Replicas)
			sort.Ints(ps.semiKs)
		}
		q.push(p)
	}
	heap.Push(&ps.deadline, p)
}

func (ps *proposals) finish(c *Core, p *pendingProp, o Outcome) {
	p.done = true
	delete(ps.byID, p.id)
	if p.heapIdx >= 0 && p.heapIdx < len(ps.deadline) && ps.deadline[p.heapIdx] == p {
		heap.Remove(&ps.deadline, p.heapIdx)
	}
	c.results = append(c.results, Result{ID: p.id, Index: p.index, Term: p.term, Outcome: o, Durability: c.durability(p.index)})
}

// durability is what entry index has achieved, as far as the leader knows.
func (c *Core) durability(index uint64) Durability {
	d := Durability{
		LeaderDurable: c.log.stableIndex() >= index,
		Committed:     c.log.committed >= index,
	}
	for _, pr := range c.followers {
		if pr.match >= index && !pr.learner {
			d.Replicas++
		}
	}
	return d
}

// evaluate finishes every proposal whose ack mode is now met.
func (ps *proposals) evaluate(c *Core) {
	if len(ps.byID) == 0 {
		return
	}
	stable := c.log.stableIndex()
	ok := func(p *pendingProp) { ps.finish(c, p, OutcomeOK) }
	ps.async.popThrough(stable, ok)
	ps.majority.popThrough(c.log.committed, ok)
	// Follower matches, highest first.
	// Learners never count: sync means every voting follower.
	fm := make([]uint64, 0, len(c.followers))
	for _, pr := range c.followers {
		if !pr.learner {
			fm = append(fm, pr.match)
		}
	}
	sort.Slice(fm, func(i, j int) bool { return fm[i] > fm[j] })
	syncTo := stable
	if len(fm) > 0 {
		syncTo = min(stable, fm[len(fm)-1])
	}
	ps.sync.popThrough(syncTo, ok)
	for _, k := range ps.semiKs {
		if k <= len(fm) {
			ps.semi[k].popThrough(min(stable, fm[k-1]), ok)
		}
	}
}

// expire times out the proposals whose deadline has passed.
func (ps *proposals) expire(c *Core) {
	for len(ps.deadline) > 0 && ps.deadline[0].deadline <= c.now {
		p := ps.deadline[0]
		ps.finish(c, p, OutcomeTimeout)
	}
}

// failAll answers every pending proposal with OutcomeUnknown, in index order.
func (ps *proposals) failAll(c *Core) {
	all := make([]*pendingProp, 0, len(ps.byID))
	for _, p := range ps.byID {
		all = append(all, p)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].index < all[j].index })
	for _, p := range all {
		ps.finish(c, p, OutcomeUnknown)
	}
	*ps = proposals{}
}
