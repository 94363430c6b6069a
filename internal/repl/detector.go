package repl

import "math"

// Detector selects how a follower decides that its leader has failed.
type Detector uint8

const (
	// DetectorFixed: a follower campaigns after a randomized timeout in
	// [ElectionTicks, 2*ElectionTicks) without hearing from its leader.
	DetectorFixed Detector = iota
	// DetectorAdaptive: a follower learns the distribution of its leader's
	// heartbeat inter-arrival times and campaigns when a heartbeat is
	// overdue against it (see detector), within [ElectionTicks,
	// MaxElectionTicks]; and, sooner, once the runtime reports the leader's
	// process gone (PeerDown) and its stickiness has run out.
	DetectorAdaptive
)

func (d Detector) String() string {
	switch d {
	case DetectorFixed:
		return "fixed"
	case DetectorAdaptive:
		return "adaptive"
	}
	return "unknown"
}

// detectorWindow is how many heartbeat intervals the adaptive detector
// remembers: about six seconds at the default 50 ms heartbeat, long enough
// for one stall to widen the estimate for a while, short enough to forget
// it once the network is calm again.
const detectorWindow = 128

// detectorK is how many standard deviations past the mean interval a
// heartbeat may be late before the leader is suspected. Under a normal
// model that is a phi (see suspicion) of about 4.5: one false suspicion in
// some 30,000 intervals before the pause allowance, which makes it rarer
// still.
const detectorK = 4

// detector is a follower's adaptive failure detector. It keeps the last
// detectorWindow intervals between heartbeats from the current leader (in
// ticks) and derives the deadline
//
//	mean + detectorK*max(stddev, minSigma) + PauseTicks
//
// clamped to [ElectionTicks, MaxElectionTicks]: the silence after which the
// leader is suspected. It is the phi accrual detector's threshold under a
// normal model, expressed as a tick count, because the core needs a
// deadline it can compare with a tick counter; the suspicion level (phi)
// is derived from the same mean and deviation for observability.
//
// The deadline only decides when this node starts a campaign. It never
// shortens leader stickiness (a node refuses votes for ElectionTicks after
// hearing its leader), which is what the leader's lease relies on: the
// lease stays below the lower bound whatever the detector learns.
type detector struct {
	samples [detectorWindow]int32
	n, next int
	sum     int64
	sumSq   int64

	lastBeat int64  // tick of the last heartbeat from lead; -1: none yet
	lead     NodeID // the leader the samples' last arrival came from
	jitter   int    // ticks added to the deadline, drawn per reset (split votes)

	// leaderDown: the runtime reported the leader's process gone.
	leaderDown bool

	// A suspicion in flight: the leader and term this node gave up on.
	suspectLead NodeID
	suspectTerm uint64

	suspicions      uint64 // campaigns the detector (or timeout) started
	falseSuspicions uint64 // ... after which the same leader was heard in the same term
	detections      uint64 // ... after which a new term's leader was heard
}

func newDetector() detector { return detector{lastBeat: -1} }

// observe records a heartbeat from lead at tick now.
func (d *detector) observe(now int64, lead NodeID) {
	if d.lead == lead && d.lastBeat >= 0 && now > d.lastBeat {
		d.add(int32(min(now-d.lastBeat, math.MaxInt32)))
	}
	d.lead = lead
	d.lastBeat = now
}

func (d *detector) add(v int32) {
	if d.n == detectorWindow {
		old := int64(d.samples[d.next])
		d.sum -= old
		d.sumSq -= old * old
	} else {
		d.n++
	}
	d.samples[d.next] = v
	d.next = (d.next + 1) % detectorWindow
	d.sum += int64(v)
	d.sumSq += int64(v) * int64(v)
}

// stats returns the mean and standard deviation of the intervals, with a
// prior of one heartbeat interval and a floor of minSigma while there are
// fewer than two samples.
func (d *detector) stats(cfg *Config) (mean, sigma float64) {
	minSigma := max(1, float64(cfg.HeartbeatTicks)/5)
	if d.n < 2 {
		return float64(cfg.HeartbeatTicks), minSigma
	}
	n := float64(d.n)
	mean = float64(d.sum) / n
	v := float64(d.sumSq)/n - mean*mean
	return mean, max(minSigma, math.Sqrt(max(0, v)))
}

// deadline is the silence, in ticks, after which the leader is suspected.
func (d *detector) deadline(cfg *Config) int {
	if d.leaderDown {
		// Nothing to wait for but stickiness: the lease rule still holds.
		return cfg.ElectionTicks + d.jitter
	}
	mean, sigma := d.stats(cfg)
	t := int(math.Ceil(mean + detectorK*sigma + float64(cfg.PauseTicks)))
	if cfg.Bugs.adaptiveUnderLease() {
		return min(t, cfg.MaxElectionTicks) + d.jitter
	}
	return min(max(t, cfg.ElectionTicks), cfg.MaxElectionTicks) + d.jitter
}

// suspicion is phi, -log10 of the probability that a heartbeat arrives
// later than elapsed ticks after the last one, under a normal model of
// the learned intervals (capped at 100).
func (d *detector) suspicion(cfg *Config, elapsed int) float64 {
	mean, sigma := d.stats(cfg)
	p := 0.5 * math.Erfc((float64(elapsed)-mean)/(sigma*math.Sqrt2))
	if p <= 1e-100 {
		return 100
	}
	return -math.Log10(p)
}

// suspect notes that this node is giving up on lead in term.
func (d *detector) suspect(lead NodeID, term uint64) {
	d.suspicions++
	d.suspectLead, d.suspectTerm = lead, term
}

// heard settles a suspicion in flight when a leader is heard: the same
// leader in the same term means it was alive (a false suspicion); a leader
// of a later term means the failure was real and a new leader took over.
func (d *detector) heard(lead NodeID, term uint64) {
	if d.suspectLead == None {
		return
	}
	if lead == d.suspectLead && term == d.suspectTerm {
		d.falseSuspicions++
	} else if term > d.suspectTerm {
		d.detections++
	} else {
		return
	}
	d.suspectLead, d.suspectTerm = None, 0
}

// DetectorStatus is a follower's failure detector, for metrics.
type DetectorStatus struct {
	Mode Detector
	// TimeoutTicks is the silence after which this node would campaign now
	// (adaptive: the learned deadline; fixed: the drawn timeout).
	TimeoutTicks int
	// Suspicion is phi for the current silence (adaptive; 0 when fixed or
	// without a leader).
	Suspicion float64
	// MeanTicks and StddevTicks describe the learned heartbeat intervals.
	MeanTicks, StddevTicks float64
	LeaderDown             bool   // the runtime reported the leader's process gone
	Suspicions             uint64 // campaigns started because the leader was silent
	FalseSuspicions        uint64 // ... that ended hearing the same leader in the same term
	Detections             uint64 // ... that ended with a new leader in a later term
}
