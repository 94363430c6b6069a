package sim

import (
	"container/heap"
	"fmt"
	"strings"

	"github.com/trireme-db/trireme/internal/repl"
)

// inflight is a message on the simulated wire.
type inflight struct {
	at  int64  // delivery tick
	seq uint64 // send order, breaks ties deterministically
	m   repl.Message
}

type msgQueue []inflight

func (q msgQueue) Len() int { return len(q) }
func (q msgQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q msgQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *msgQueue) Push(x any)   { *q = append(*q, x.(inflight)) }
func (q *msgQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// network is the seeded simulated network: per-message delay, drop,
// duplicate, and a matrix of blocked directed links (partitions).
type network struct {
	q       msgQueue
	seq     uint64
	blocked [][]bool // blocked[from][to]
}

func newNetwork(n int) *network {
	b := make([][]bool, n)
	for i := range b {
		b[i] = make([]bool, n)
	}
	return &network{blocked: b}
}

func (nw *network) push(at int64, m repl.Message) {
	nw.seq++
	heap.Push(&nw.q, inflight{at: at, seq: nw.seq, m: m})
}

// popDue returns the next message due at or before now.
func (nw *network) popDue(now int64) (inflight, bool) {
	if len(nw.q) == 0 || nw.q[0].at > now {
		return inflight{}, false
	}
	return heap.Pop(&nw.q).(inflight), true
}

func (nw *network) heal() {
	for i := range nw.blocked {
		for j := range nw.blocked[i] {
			nw.blocked[i][j] = false
		}
	}
}

func (nw *network) anyBlocked() bool {
	for i := range nw.blocked {
		for j := range nw.blocked[i] {
			if nw.blocked[i][j] {
				return true
			}
		}
	}
	return false
}

// cut blocks every link between the groups a and b, both ways.
func (nw *network) cut(a, b []int) {
	for _, i := range a {
		for _, j := range b {
			nw.blocked[i][j] = true
			nw.blocked[j][i] = true
		}
	}
}

// describe prints the blocked links, e.g. "0>1 0>2".
func (nw *network) describe() string {
	var parts []string
	for i := range nw.blocked {
		for j := range nw.blocked[i] {
			if nw.blocked[i][j] {
				parts = append(parts, fmt.Sprintf("%d>%d", i+1, j+1))
			}
		}
	}
	return strings.Join(parts, " ")
}

func describeMsg(m repl.Message) string {
	s := fmt.Sprintf("%s %s->%s t=%d", m.Type, m.From, m.To, m.Term)
	switch m.Type {
	case repl.MsgApp:
		s += fmt.Sprintf(" lt=%d i=%d c=%d n=%d", m.LogTerm, m.Index, m.Commit, len(m.Entries))
		if len(m.Entries) > 0 {
			s += fmt.Sprintf(" [%d..%d]", m.Entries[0].Index, m.Entries[len(m.Entries)-1].Index)
		}
	case repl.MsgAppResp:
		s += fmt.Sprintf(" i=%d rej=%t ht=%d hi=%d", m.Index, m.Reject, m.HintTerm, m.HintIndex)
	case repl.MsgVote, repl.MsgPreVote:
		s += fmt.Sprintf(" lt=%d i=%d", m.LogTerm, m.Index)
	case repl.MsgVoteResp, repl.MsgPreVoteResp:
		s += fmt.Sprintf(" rej=%t", m.Reject)
	case repl.MsgHeartbeat:
		s += fmt.Sprintf(" c=%d ctx=%d", m.Commit, m.Context)
	case repl.MsgHeartbeatResp:
		s += fmt.Sprintf(" ctx=%d rej=%t", m.Context, m.Reject)
	}
	return s
}
