// Package runloop is the run loop of a node that hosts a protocol core
// without I/O or clocks (the multi-leader and leaderless engines): one
// goroutine owns the core, feeds it client requests, peer messages and
// wall-clock ticks, and after each batch of inputs handles what the core
// has ready (persist, send, answer). The single-leader node has a loop of
// its own (internal/node): it also hands entries to an applier and reads
// to a read path, which these engines do inside their cores.
package runloop

import "time"

// MaxBatch bounds the inputs (requests and messages) taken into one
// batch, so that the Ready that follows, and its fsync, stay bounded.
const MaxBatch = 4096

// MaxCatchUpTicks bounds the ticks given at once after a stall (a paused
// process, a long fsync): the protocol needs to move on, not to replay
// every tick it missed.
const MaxCatchUpTicks = 1000

// Loop is one node's run loop over requests of type R and peer messages of
// type M. Every function is called on the loop's goroutine only.
type Loop[R, M any] struct {
	Tick     time.Duration   // wall time per core tick
	Requests <-chan R        // client requests
	Messages <-chan M        // peer messages
	Control  <-chan func()   // optional: functions run on the loop (tests, admin)
	Stop     <-chan struct{} // closed to stop the loop

	Propose func(R)
	Step    func(M)
	// TickCore gives the core one tick; now is the wall time of the
	// timer that fired.
	TickCore func(now time.Time)
	// Publish runs after each timer's ticks (status snapshots, metrics).
	Publish func()
	// Ready handles everything the core has ready; an error stops the loop.
	Ready func() error
}

// Run runs the loop until Stop is closed (it returns nil) or Ready fails
// (it returns the error, and the caller decides what the node does).
func (l *Loop[R, M]) Run() error {
	base := time.Now()
	var done int64 // ticks given since base
	ticker := time.NewTicker(l.Tick)
	defer ticker.Stop()
	for {
		select {
		case <-l.Stop:
			return nil
		case r := <-l.Requests:
			l.Propose(r)
		case m := <-l.Messages:
			l.Step(m)
		case f := <-l.Control:
			f()
		case now := <-ticker.C:
			// Inputs that arrived while the loop was busy (a slow fsync)
			// came before these ticks: take them first, or a stall longer
			// than a peer's timeout would count every peer as silent.
			l.drain()
			done = l.tickUpTo(base, done, now)
			l.Publish()
		}
		l.drain()
		if err := l.Ready(); err != nil {
			return err
		}
	}
}

// drain takes every request and message already queued (at most
// MaxBatch), so that they share the next Ready and its fsync: those that
// queued while the last batch was being fsynced.
func (l *Loop[R, M]) drain() {
	for range MaxBatch {
		select {
		case r := <-l.Requests:
			l.Propose(r)
		case m := <-l.Messages:
			l.Step(m)
		default:
			return
		}
	}
}

// tickUpTo gives the core one tick per Tick of wall time from base to now
// that it has not had (a time.Ticker drops the ticks that fall while the
// loop is busy, and timeouts count ticks), at most MaxCatchUpTicks, and
// returns the ticks given since base.
func (l *Loop[R, M]) tickUpTo(base time.Time, done int64, now time.Time) int64 {
	due := int64(now.Sub(base) / l.Tick)
	if due-done > MaxCatchUpTicks {
		done = due - MaxCatchUpTicks
	}
	for ; done < due; done++ {
		l.TickCore(now)
	}
	return done
}
