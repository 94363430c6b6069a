package chaos

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// mustEcho starts an echo server and returns its address.
func mustEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func mustLink(t *testing.T) *Link {
	t.Helper()
	l, err := NewLink("a", "b", mustEcho(t), 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// roundTrip sends a line through c and waits up to d for it to come back.
func roundTrip(c net.Conn, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

func mustDial(t *testing.T, l *Link) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLinkForwards(t *testing.T) {
	l := mustLink(t)
	if err := roundTrip(mustDial(t, l), time.Second); err != nil {
		t.Fatalf("healthy link: %v", err)
	}
}

func TestLinkCutAndHeal(t *testing.T) {
	l := mustLink(t)
	c := mustDial(t, l)
	if err := roundTrip(c, time.Second); err != nil {
		t.Fatal(err)
	}
	l.Set(LinkState{Cut: true})
	if err := roundTrip(c, 300*time.Millisecond); err == nil {
		t.Fatal("an open connection still works after the cut")
	}
	c2 := mustDial(t, l) // accepted, but blackholed
	if err := roundTrip(c2, 300*time.Millisecond); err == nil {
		t.Fatal("a new connection works through a cut link")
	}
	l.Set(LinkState{})
	if err := roundTrip(mustDial(t, l), time.Second); err != nil {
		t.Fatalf("healed link: %v", err)
	}
}

func TestLinkDelay(t *testing.T) {
	l := mustLink(t)
	l.Set(LinkState{Delay: 100 * time.Millisecond})
	c := mustDial(t, l)
	start := time.Now()
	if err := roundTrip(c, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// The delay applies in each direction.
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("round trip took %v, want >= 200ms", el)
	}
}

func TestLinkDropResets(t *testing.T) {
	l := mustLink(t)
	l.Set(LinkState{Drop: 1})
	if err := roundTrip(mustDial(t, l), time.Second); err == nil {
		t.Fatal("a link that drops everything delivered data")
	}
}

func TestNetPartition(t *testing.T) {
	echo := mustEcho(t)
	real := map[string]string{"a": echo, "b": echo, "c": echo}
	n, err := NewNet([]string{"a", "b", "c"}, real, 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Partition([]string{"a"}, []string{"b", "c"})
	for _, tc := range []struct {
		from, to string
		cut      bool
	}{{"a", "b", true}, {"b", "a", true}, {"a", "c", true}, {"c", "a", true}, {"b", "c", false}, {"c", "b", false}} {
		if got := n.Link(tc.from, tc.to).State().Cut; got != tc.cut {
			t.Errorf("%s->%s cut = %v, want %v", tc.from, tc.to, got, tc.cut)
		}
	}
	n.Heal()
	for _, from := range []string{"a", "b", "c"} {
		for _, to := range []string{"a", "b", "c"} {
			if from != to && n.Link(from, to).State() != (LinkState{}) {
				t.Errorf("%s->%s not healed", from, to)
			}
		}
	}
}
