package runloop

import (
	"errors"
	"testing"
	"time"
)

// TestTickUpToCatchesUpBounded checks that the core gets one tick per Tick
// of wall time, none twice, and at most MaxCatchUpTicks after a stall.
func TestTickUpToCatchesUpBounded(t *testing.T) {
	ticks := 0
	l := &Loop[int, int]{Tick: time.Millisecond, TickCore: func(time.Time) { ticks++ }}
	base := time.Unix(1000, 0)
	done := l.tickUpTo(base, 0, base.Add(5*time.Millisecond+time.Microsecond))
	if ticks != 5 || done != 5 {
		t.Fatalf("5 ms: %d ticks given, done %d; want 5", ticks, done)
	}
	done = l.tickUpTo(base, done, base.Add(5*time.Millisecond+500*time.Microsecond))
	if ticks != 5 || done != 5 {
		t.Fatalf("same tick again: %d ticks given, done %d; want still 5", ticks, done)
	}
	ticks = 0
	done = l.tickUpTo(base, done, base.Add(5*time.Second))
	if ticks != MaxCatchUpTicks || done != 5000 {
		t.Fatalf("after a 5 s stall: %d ticks given (want %d), done %d (want 5000)", ticks, MaxCatchUpTicks, done)
	}
}

// TestMessagesBeforeTicks checks that messages queued while the loop was
// busy are stepped before the ticks that fell meanwhile: a core that
// counts a peer silent after some ticks must hear what the peer sent
// first. Without the drain before the ticks the loop picks the ticker or
// the messages at random, and a tick comes first about every other stall.
func TestMessagesBeforeTicks(t *testing.T) {
	msgs := make(chan int, 16)
	stop := make(chan struct{})
	enough := make(chan struct{})
	var events []string // owned by the loop until Run returns
	stalls := 0
	const rounds = 40
	l := &Loop[int, int]{
		Tick: time.Millisecond, Messages: msgs, Stop: stop,
		Propose:  func(int) {},
		Step:     func(int) { events = append(events, "msg") },
		TickCore: func(time.Time) { events = append(events, "tick") },
		Publish:  func() {},
		Ready: func() error {
			if stalls == rounds {
				return nil
			}
			// A busy Ready (a slow fsync): messages arrive and ticks fall.
			stalls++
			events = append(events, "stall")
			for i := range 3 {
				msgs <- i
			}
			time.Sleep(5 * time.Millisecond)
			if stalls == rounds {
				close(enough)
			}
			return nil
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		t.Fatalf("the loop did not make %d stalls in 30 s", rounds)
	}
	time.Sleep(20 * time.Millisecond) // the last stall's messages and ticks
	close(stop)
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v after Stop, want nil", err)
	}
	checked := 0
	for i, e := range events {
		if e != "stall" {
			continue
		}
		msgsSeen, ticked := 0, false
		for _, e := range events[i+1:] {
			if e == "stall" || e == "tick" {
				ticked = e == "tick"
				break
			}
			msgsSeen++
		}
		if ticked {
			checked++
			if msgsSeen < 3 {
				t.Fatalf("stall at event %d: a tick came after %d of its 3 messages: %v", i, msgsSeen, events[i:min(len(events), i+12)])
			}
		}
	}
	if checked < 5 { // each stall is followed by a tick or by the next stall, about half and half
		t.Fatalf("only %d of %d stalls were followed by a tick: the test proves little", checked, rounds)
	}
}

// TestReadyErrorStopsTheLoop checks that Run returns Ready's error, and nil
// once Stop is closed.
func TestReadyErrorStopsTheLoop(t *testing.T) {
	boom := errors.New("disk gone")
	reqs := make(chan int, 1)
	l := &Loop[int, int]{Tick: time.Hour, Requests: reqs, Stop: make(chan struct{}),
		Propose: func(int) {}, Step: func(int) {}, TickCore: func(time.Time) {}, Publish: func() {},
		Ready: func() error { return boom }}
	reqs <- 1
	if err := l.Run(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	stop := make(chan struct{})
	close(stop)
	l = &Loop[int, int]{Tick: time.Hour, Stop: stop, Ready: func() error { return boom }}
	if err := l.Run(); err != nil {
		t.Fatalf("Run with Stop closed = %v, want nil", err)
	}
}
