package repl

import (
	"errors"
	"math/rand"
	"testing"
)

// adaptive configures the test network's cores with the adaptive detector:
// heartbeats every tick, stickiness 4 ticks, learned deadlines in [4, 20],
// 6 ticks of tolerated pause.
func adaptive(cfg *Config) {
	cfg.Detector = DetectorAdaptive
	cfg.HeartbeatTicks = 1
	cfg.ElectionTicks = 4
	cfg.MaxElectionTicks = 20
	cfg.PauseTicks = 6
	cfg.LeaseTicks = 2
	cfg.DriftTicks = 1
}

func TestDetectorDeadline(t *testing.T) {
	cfg := DefaultConfig()
	adaptive(&cfg)
	cfg.HeartbeatTicks = 5
	cfg.ElectionTicks, cfg.MaxElectionTicks, cfg.PauseTicks = 10, 40, 0
	d := newDetector()
	// No samples yet: the prior (one heartbeat interval, sigma 1) gives
	// 5 + 4 = 9, held at the lower bound.
	if got := d.deadline(&cfg); got != 10 {
		t.Fatalf("deadline without samples = %d, want the lower bound 10", got)
	}
	now := int64(0)
	for range 100 {
		now += 5
		d.observe(now, "n1")
	}
	if mean, sigma := d.stats(&cfg); mean != 5 || sigma != 1 {
		t.Fatalf("steady 5-tick heartbeats: mean %v sigma %v, want 5 and the floor 1", mean, sigma)
	}
	cfg.PauseTicks = 8
	if got := d.deadline(&cfg); got != 5+4*1+8 {
		t.Fatalf("deadline = %d, want mean + 4 sigma + pause = 17", got)
	}
	// One long gap (100 ticks) widens the estimate; the upper bound caps it.
	now += 100
	d.observe(now, "n1")
	mean, sigma := d.stats(&cfg)
	if sigma <= 1 || mean <= 5 {
		t.Fatalf("after a 100-tick gap: mean %v sigma %v, want both above the steady values", mean, sigma)
	}
	if got := d.deadline(&cfg); got != 40 {
		t.Fatalf("deadline after a long gap = %d, want the upper bound 40", got)
	}
	// A new leader's first heartbeat is not an interval.
	n := d.n
	now += 1000
	d.observe(now, "n2")
	if d.n != n {
		t.Fatal("the gap before a new leader's first heartbeat was counted as an interval")
	}
	// The window forgets: after detectorWindow calm intervals the gap is gone.
	for range detectorWindow {
		now += 5
		d.observe(now, "n2")
	}
	cfg.PauseTicks = 0
	if got := d.deadline(&cfg); got != 10 {
		t.Fatalf("deadline after the window forgot the gap = %d, want 10", got)
	}
	// Suspicion grows with the silence.
	if a, b := d.suspicion(&cfg, 5), d.suspicion(&cfg, 12); !(a < 1 && b > a && b > 5) {
		t.Fatalf("suspicion at 5 and 12 ticks: %v, %v: want low then high", a, b)
	}
	if got := d.suspicion(&cfg, 1000); got != 100 {
		t.Fatalf("suspicion after a very long silence = %v, want the cap 100", got)
	}
}

func TestAdaptiveConfigValidation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.Peers = "n1", []Peer{{ID: "n1", Priority: 1}}
	adaptive(&cfg)
	cfg.Rand = rand.New(rand.NewSource(1))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.MaxElectionTicks = 3
	if err := bad.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MaxElectionTicks below ElectionTicks: %v", err)
	}
	bad = cfg
	bad.Detector = 7
	if err := bad.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("unknown detector: %v", err)
	}
}

// ticksToNewLeader crashes the leader, optionally tells the survivors its
// process is gone, and counts the ticks until another leader is elected.
func ticksToNewLeader(t *testing.T, seed int64, reportDown bool) (ticks int, nw *tnet, old NodeID) {
	nw = newNet(t, 3, seed, adaptive)
	old = nw.waitLeader(100)
	nw.tick(50) // learn the heartbeat intervals
	nw.crash(old)
	if reportDown {
		for _, id := range nw.ids {
			if id != old {
				nw.nodes[id].core.PeerDown(old)
			}
		}
	}
	for ticks = 1; ticks <= 200; ticks++ {
		nw.tick(1)
		if l := nw.leader(); l != None && l != old {
			return ticks, nw, old
		}
	}
	t.Fatalf("seed %d: no new leader within 200 ticks", seed)
	return 0, nil, ""
}

// TestAdaptiveFailover: a silent leader is replaced once its heartbeats are
// overdue against the learned deadline (1 + 4 + 6 = 11 ticks here); one
// whose process is reported gone, as soon as stickiness (4 ticks) runs out.
func TestAdaptiveFailover(t *testing.T) {
	sumSilent, sumFast := 0, 0
	for seed := int64(1); seed <= 20; seed++ {
		silent, nw, _ := ticksToNewLeader(t, seed, false)
		if silent < 11 {
			t.Fatalf("seed %d: silent leader replaced after %d ticks, before the learned deadline of 11", seed, silent)
		}
		if silent > 11+2+2*4 {
			// The deadline and its jitter, then at worst one split vote
			// and a randomized retry.
			t.Fatalf("seed %d: silent leader replaced after %d ticks, want soon after the deadline", seed, silent)
		}
		var det uint64
		for _, nd := range nw.nodes {
			if nd.core != nil {
				det += nd.core.Status().Detector.Detections
			}
		}
		if det == 0 {
			t.Fatalf("seed %d: the failover counted no detection", seed)
		}
		fast, _, _ := ticksToNewLeader(t, seed, true)
		if fast < 4 || fast > 4+2+2*4 {
			t.Fatalf("seed %d: leader reported down replaced after %d ticks, want just past stickiness (4, plus jitter and at worst one split vote)", seed, fast)
		}
		sumSilent += silent
		sumFast += fast
	}
	if 2*sumFast > sumSilent {
		t.Fatalf("mean ticks to a new leader: %.1f reported down vs %.1f silent: the report should halve it", float64(sumFast)/20, float64(sumSilent)/20)
	}
	t.Logf("mean ticks to a new leader: %.1f silent, %.1f reported down", float64(sumSilent)/20, float64(sumFast)/20)
}

// TestPeerDownKeepsStickiness: a report that the leader is gone while it
// lives (a proxy refusing, say) does not let anyone win an election while
// voters still hear the leader; the campaign is counted as a false
// suspicion, and the leader keeps its lease and its term.
func TestPeerDownKeepsStickiness(t *testing.T) {
	nw := newNet(t, 3, 7, adaptive)
	l := nw.waitLeader(100)
	nw.tick(30)
	term := nw.nodes[l].core.term
	var a NodeID // one follower; the other keeps hearing the leader
	for _, id := range nw.ids {
		if id != l && a == None {
			a = id
		}
	}
	// A connected follower told the leader is down: heartbeats keep
	// coming, so nothing happens.
	nw.nodes[a].core.PeerDown(l)
	nw.tick(40)
	if got := nw.leader(); got != l || nw.nodes[l].core.term != term {
		t.Fatalf("leader %s term %d after a false report to a connected follower, want %s term %d", got, nw.nodes[l].core.term, l, term)
	}
	// Now a cannot hear the leader (one-way loss) and is told it is down:
	// it campaigns once its stickiness is over, the other follower (which
	// hears the leader) refuses, and the leader stays.
	nw.cut[[2]NodeID{l, a}] = true
	nw.nodes[a].core.PeerDown(l)
	nw.tick(6)
	if s := nw.nodes[a].core.Status().Detector.Suspicions; s == 0 {
		t.Fatal("the follower that lost its leader did not suspect it")
	}
	if got := nw.leader(); got != l {
		t.Fatalf("leader %s, want %s: a voter that hears its leader must refuse", got, l)
	}
	if !nw.nodes[l].core.Status().LeaseValid {
		t.Fatal("the leader lost its lease to a campaign the voters refused")
	}
	nw.heal()
	nw.tick(10)
	st := nw.nodes[a].core.Status()
	if got := nw.leader(); got != l || nw.nodes[l].core.term != term {
		t.Fatalf("after healing: leader %s term %d, want %s term %d", got, nw.nodes[l].core.term, l, term)
	}
	if st.Detector.FalseSuspicions == 0 || st.Detector.Detections != 0 {
		t.Fatalf("detector counts %+v: want a false suspicion and no detection", st.Detector)
	}
}

// TestAdaptiveCheckQuorumWindow: with the adaptive detector the leader's
// check-quorum waits for the upper bound (a follower may legitimately stay
// silent that long), so a stall shorter than it does not depose the leader.
func TestAdaptiveCheckQuorumWindow(t *testing.T) {
	nw := newNet(t, 3, 3, adaptive)
	l := nw.waitLeader(100)
	nw.isolate(l)
	for i := 1; i <= 40; i++ {
		nw.tick(1)
		if nw.nodes[l].core.role != RoleLeader {
			if i < 20 {
				t.Fatalf("isolated leader stepped down after %d ticks, before MaxElectionTicks (20)", i)
			}
			return
		}
	}
	t.Fatal("isolated leader never stepped down")
}
