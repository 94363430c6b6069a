package resp

import (
	"errors"
	"sync/atomic"
)

// errPendingFull: the command being read would take the server's memory
// budget for commands (Config.MaxPendingBytes) beyond its limit. The server
// answers it with "-ERR <error>" and closes the connection.
var errPendingFull = errors.New("server is out of memory for incoming commands, try again")

// budget bounds the bytes that the arguments of commands being received or
// run hold, over all of a server's connections. Each reader takes from it
// as its batch grows (beyond a small allowance, freeBytes, in steps of
// budgetStep) and gives back exactly what it took when the batch is done or
// its connection ends.
type budget struct {
	limit int64
	used  atomic.Int64
}

func newBudget(limit int) *budget { return &budget{limit: int64(limit)} }

// acquire takes n bytes if that keeps the total within the limit.
func (b *budget) acquire(n int) bool {
	for {
		u := b.used.Load()
		if u+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

// release gives back n bytes taken by acquire.
func (b *budget) release(n int) { b.used.Add(-int64(n)) }

// inUse is the bytes taken now.
func (b *budget) inUse() int64 { return b.used.Load() }
