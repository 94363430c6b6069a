package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// MembershipConfig configures the membership nemesis (fault kind
// "membership"): cycles that remove a voter and join it back from an empty
// data directory, or add a learner and remove it, one cycle at a time, while
// the other faults go on.
type MembershipConfig struct {
	// Learner is the id of the spare node (ClusterConfig.Spares) that
	// learner cycles add and remove.
	Learner string
	// GapMin..GapMax is the calm between two cycles.
	GapMin, GapMax time.Duration
	// DownMin..DownMax is how long a removed voter stays out before it joins again.
	DownMin, DownMax time.Duration
	// LearnerHoldMin..LearnerHoldMax is how long a caught-up learner stays.
	LearnerHoldMin, LearnerHoldMax time.Duration
	// RemoveTimeout bounds the retries of one removal or addition.
	RemoveTimeout time.Duration
	// CatchUpTimeout bounds a joining node's catch-up: from its start until
	// it is a voter (rejoin) or replicating (learner).
	CatchUpTimeout time.Duration
	// CompactionWait: a rejoin waits, until at most this long after the run
	// began, for the WALs to be compacted (Cluster.Compacted:
	// trireme_wal_first_index above 1 on the leader and a majority), so
	// that the node must catch up by snapshot; 0: no wait.
	CompactionWait time.Duration
	// Finish bounds how long a cycle under way may go on after the run ends.
	Finish time.Duration
	// MaxBelow is the largest fraction of the time so far with fewer voters
	// than at the start for which a rejoin may start (the cluster keeps
	// its voters most of the time).
	MaxBelow float64
}

// DefaultMembershipConfig returns the short profile's settings.
func DefaultMembershipConfig() MembershipConfig {
	return MembershipConfig{Learner: "l1",
		GapMin: time.Second, GapMax: 3 * time.Second, DownMin: 500 * time.Millisecond, DownMax: 3 * time.Second,
		LearnerHoldMin: 2 * time.Second, LearnerHoldMax: 6 * time.Second,
		RemoveTimeout: 30 * time.Second, CatchUpTimeout: 40 * time.Second, Finish: 60 * time.Second, MaxBelow: 0.3}
}

// Validate names the first bad field.
func (c *MembershipConfig) Validate() error {
	switch {
	case c.Learner == "":
		return fmt.Errorf("chaos: MembershipConfig.Learner is empty")
	case c.GapMin <= 0 || c.GapMax < c.GapMin:
		return fmt.Errorf("chaos: MembershipConfig.GapMin..GapMax %v..%v: want 0 < min <= max", c.GapMin, c.GapMax)
	case c.DownMin < 0 || c.DownMax < c.DownMin:
		return fmt.Errorf("chaos: MembershipConfig.DownMin..DownMax %v..%v: want 0 <= min <= max", c.DownMin, c.DownMax)
	case c.LearnerHoldMin < 0 || c.LearnerHoldMax < c.LearnerHoldMin:
		return fmt.Errorf("chaos: MembershipConfig.LearnerHoldMin..LearnerHoldMax %v..%v: want 0 <= min <= max", c.LearnerHoldMin, c.LearnerHoldMax)
	case c.RemoveTimeout <= 0 || c.CatchUpTimeout <= 0 || c.Finish <= 0:
		return fmt.Errorf("chaos: MembershipConfig.RemoveTimeout, CatchUpTimeout and Finish must be > 0")
	case c.MaxBelow <= 0 || c.MaxBelow > 1:
		return fmt.Errorf("chaos: MembershipConfig.MaxBelow %v: want a fraction in (0, 1]", c.MaxBelow)
	}
	return nil
}

// MemberCycle is one membership cycle and what happened in it.
type MemberCycle struct {
	// Kind is "rejoin" (remove a voter, wipe it, join it back) or "learner"
	// (add a learner, remove it).
	Kind      string `json:"kind"`
	Node      string `json:"node"`
	WasLeader bool   `json:"was_leader,omitempty"`
	// Start and End are times since the nemesis began.
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	// Steps are the requests made and their answers, each with its time since Start.
	Steps []string `json:"steps"`
	// States are the node's member states as the leader listed them while
	// it caught up (each change, with its time since the join).
	States []string `json:"states"`
	// LeaderFirstIndex is the leader's first WAL index when it first listed
	// the node (0: unknown): above 1, the log was compacted and the node had
	// to catch up by snapshot.
	LeaderFirstIndex uint64 `json:"leader_first_index"`
	// Removed is when the removal was known committed (since Start); 0 if never.
	Removed time.Duration `json:"removed,omitempty"`
	// CaughtUp is the time from the join to voter (rejoin) or to
	// replicating (learner); 0 if never.
	CaughtUp time.Duration `json:"caught_up,omitempty"`
	OK       bool          `json:"ok"`
	Failure  string        `json:"failure,omitempty"`
	// SnapshotMetrics and SnapshotLog are the joined node's metrics whose
	// name contains "snapshot" and the lines of its log since the join that
	// mention snapshots (at most 5), read at the end of the run.
	SnapshotMetrics []string `json:"snapshot_metrics,omitempty"`
	SnapshotLog     []string `json:"snapshot_log,omitempty"`

	Joined    bool  `json:"joined,omitempty"` // the node was started with --join
	logOffset int64 // size of the node's log when it joined
}

// memberNemesis runs the membership cycles (see MembershipConfig).
type memberNemesis struct {
	n     *Nemesis
	c     *Cluster
	cfg   MembershipConfig
	rnd   *rand.Rand // its own stream: the other faults' choices do not shift
	log   *slog.Logger
	start time.Time
	// Set when a cycle did not complete: no more cycles of that kind (a
	// node that could not catch up once will not the next time either).
	noRejoin, noLearner bool

	mu         sync.Mutex
	cycles     []*MemberCycle          // guarded by mu
	joinedBy   map[string]*MemberCycle // the cycle that last joined each node; guarded by mu
	rollbacks  []Rollback              // journals of wiped nodes; guarded by mu
	postponed  []postponement          // why rejoins were put off; guarded by mu
	below      time.Duration           // time with fewer voters than at the start; guarded by mu
	belowSince time.Time               // guarded by mu
}

func newMemberNemesis(n *Nemesis, cfg MembershipConfig, seed uint64) *memberNemesis {
	return &memberNemesis{n: n, c: n.c, cfg: cfg, rnd: rand.New(rand.NewPCG(seed, 0x6d656d62)), log: n.log,
		joinedBy: map[string]*MemberCycle{}}
}

func (m *memberNemesis) dur(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(m.rnd.Int64N(int64(hi-lo)))
}

// run does cycles until ctx ends: a learner cycle first (its node catches up
// from the log while it is young), then a rejoin (after the compaction wait:
// by snapshot), then either at random. A cycle under way when ctx ends goes
// on for at most cfg.Finish.
func (m *memberNemesis) run(ctx context.Context) {
	m.start = time.Now()
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			t := time.NewTimer(m.cfg.Finish)
			defer t.Stop()
			select {
			case <-t.C:
				cancel()
			case <-cctx.Done():
			}
		case <-cctx.Done():
		}
	}()
	for i := 0; ; i++ {
		if !sleepCtx(ctx, m.dur(m.cfg.GapMin, m.cfg.GapMax)) {
			return
		}
		kind := []string{"learner", "rejoin"}[min(i, 1)]
		if i > 1 {
			kind = []string{"learner", "rejoin"}[m.rnd.IntN(2)]
		}
		switch {
		case kind == "rejoin" && m.noRejoin, kind == "learner" && m.noLearner:
			if m.noRejoin && m.noLearner {
				<-ctx.Done()
				return
			}
			continue
		case kind == "rejoin":
			if !m.waitCompacted(ctx) {
				return
			}
			m.rejoin(ctx, cctx)
		default:
			m.learner(ctx, cctx)
		}
	}
}

// waitCompacted waits until the WALs were compacted (Cluster.Compacted) or
// cfg.CompactionWait has passed since the start; false if ctx ended.
func (m *memberNemesis) waitCompacted(ctx context.Context) bool {
	for time.Since(m.start) < m.cfg.CompactionWait {
		if ok, _ := m.c.Compacted(ctx); ok {
			return true
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return false
		}
	}
	return ctx.Err() == nil
}

func (m *memberNemesis) newCycle(kind, id string, wasLeader bool) *MemberCycle {
	cyc := &MemberCycle{Kind: kind, Node: id, WasLeader: wasLeader, Start: time.Since(m.start)}
	m.mu.Lock()
	m.cycles = append(m.cycles, cyc)
	m.mu.Unlock()
	return cyc
}

// step records one step of cyc (and logs it).
func (m *memberNemesis) step(cyc *MemberCycle, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	m.mu.Lock()
	cyc.Steps = append(cyc.Steps, fmt.Sprintf("+%.1fs %s", (time.Since(m.start)-cyc.Start).Seconds(), s))
	m.mu.Unlock()
	m.log.Info("nemesis: membership", "kind", cyc.Kind, "node", cyc.Node, "step", s)
}

func (m *memberNemesis) end(cyc *MemberCycle, ok bool, failure string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cyc.End = time.Since(m.start)
	cyc.OK, cyc.Failure = ok, failure
}

// Cycles returns copies of the cycles so far.
func (m *memberNemesis) Cycles() []MemberCycle {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MemberCycle, len(m.cycles))
	for i, c := range m.cycles {
		out[i] = *c
		out[i].Steps, out[i].States = slices.Clone(c.Steps), slices.Clone(c.States)
	}
	return out
}

// belowVoters records the start (true) or end (false) of a time with fewer
// voters than the cluster started with.
func (m *memberNemesis) belowVoters(start bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case start && m.belowSince.IsZero():
		m.belowSince = time.Now()
	case !start && !m.belowSince.IsZero():
		m.below += time.Since(m.belowSince)
		m.belowSince = time.Time{}
	}
}

// Below is the time the cluster had fewer voters than it started with, and
// the time since the nemesis began.
func (m *memberNemesis) Below() (below, total time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	below = m.below
	if !m.belowSince.IsZero() {
		below += time.Since(m.belowSince)
	}
	return below, time.Since(m.start)
}

// postpone records why a rejoin did not start (a reason repeated in a row
// is counted, not listed again).
func (m *memberNemesis) postpone(why, detail string) {
	m.n.count("membership/rejoin-postponed")
	m.log.Info("nemesis: membership: rejoin postponed", "why", why, "detail", detail)
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := len(m.postponed); k > 0 && m.postponed[k-1].why == why {
		m.postponed[k-1].n++
		m.postponed[k-1].last = detail
		return
	}
	m.postponed = append(m.postponed, postponement{at: time.Since(m.start), why: why, first: detail, last: detail, n: 1})
}

type postponement struct {
	at               time.Duration
	why, first, last string
	n                int
}

// Postponed says why rejoins were put off.
func (m *memberNemesis) Postponed() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, p := range m.postponed {
		s := fmt.Sprintf("at %.1fs (%d times in a row): %s", p.at.Seconds(), p.n, p.why)
		if p.first != "" {
			s += fmt.Sprintf(" (first %s; last %s)", p.first, p.last)
		}
		out = append(out, s)
	}
	return out
}

// Rollbacks are the rollback journals of the data directories the cycles wiped.
func (m *memberNemesis) Rollbacks() []Rollback {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.rollbacks)
}

// rejoin removes a voter (a follower, or the leader one time in four),
// waits until the removal is known committed, stops the node, moves its
// data directory aside, and starts it afresh with --join through another
// member; it ends when the node is a voter again.
func (m *memberNemesis) rejoin(ctx, cctx context.Context) {
	if why, detail := m.rejoinBlocked(ctx); why != "" {
		if why != "no leader" {
			m.postpone(why, detail)
		}
		return
	}
	wantLeader := m.rnd.IntN(4) == 0
	victim, _, wasLeader := m.n.claimVoter(ctx, wantLeader, m.rnd, "membership")
	if victim == "" {
		return
	}
	defer m.n.release(victim)
	variant := "membership/rejoin-follower"
	if wasLeader {
		variant = "membership/rejoin-leader"
	}
	m.n.count(variant)
	endFault := m.n.h.Fault(variant, victim)
	defer endFault()
	cyc := m.newCycle("rejoin", victim, wasLeader)
	if !m.remove(cctx, cyc, victim, wasLeader) {
		m.end(cyc, false, "the removal was not known committed within "+m.cfg.RemoveTimeout.String())
		m.noRejoin = true
		return
	}
	m.c.DropMember(victim)
	m.belowVoters(true)
	if err := m.retire(cyc, victim); err != nil {
		m.end(cyc, false, err.Error())
		m.noRejoin = true
		return
	}
	down := m.dur(m.cfg.DownMin, m.cfg.DownMax)
	m.step(cyc, "out for %v", down.Round(time.Millisecond))
	sleepCtx(cctx, down)
	if err := m.join(cctx, cyc, victim, false); err != nil {
		m.end(cyc, false, err.Error())
		m.noRejoin = true
		return
	}
	m.belowVoters(false)
	m.end(cyc, true, "")
}

// rejoinBlocked says why a voter may not be removed now ("" if it may):
// never while another change is pending, from a cluster short of voters,
// or while another voter does not replicate (the quorum of the new
// configuration would depend on it): what a careful operator checks
// first; nor beyond the MaxBelow budget. The removal may still meet faults.
func (m *memberNemesis) rejoinBlocked(ctx context.Context) (why, detail string) {
	if below, total := m.Below(); float64(below) > m.cfg.MaxBelow*float64(total) {
		return fmt.Sprintf("fewer voters than at the start for more than %.0f%% of the time so far", 100*m.cfg.MaxBelow),
			fmt.Sprintf("%v of %v", below.Round(time.Millisecond), total.Round(time.Millisecond))
	}
	lead, _ := m.c.Leader(ctx)
	if lead == "" {
		return "no leader", ""
	}
	r := m.c.ListMembers(ctx, lead)
	for _, id := range m.c.IDs {
		ms, ok := r.Find(id)
		switch {
		case r.Code != 200:
			return fmt.Sprintf("the leader %s answers %s", lead, r), ""
		case !ok || ms.Role != "voter":
			return fmt.Sprintf("the leader %s does not list %s as a voter", lead, id), ""
		case ms.State != "leader" && ms.State != "replicate":
			return fmt.Sprintf("the leader %s sees %s in state %s", lead, id, ms.State),
				fmt.Sprintf("match index %d, %d entries behind", ms.MatchIndex, ms.LagEntries)
		}
	}
	return "", ""
}

// learner adds the spare node as a learner (half the time through POST
// /v1/members before it starts, then through its own --join, which finds it
// added), waits until it replicates, keeps it a while, and removes it.
func (m *memberNemesis) learner(ctx, cctx context.Context) {
	id := m.cfg.Learner
	if ok, _ := m.c.Member(id); ok || !m.n.claim(id, "membership") {
		return
	}
	defer m.n.release(id)
	m.n.count("membership/learner")
	endFault := m.n.h.Fault("membership/learner", id)
	defer endFault()
	cyc := m.newCycle("learner", id, false)
	if m.rnd.IntN(2) == 0 {
		if err := m.addLearner(cctx, cyc, id); err != nil {
			m.end(cyc, false, err.Error())
			m.noLearner = true
			return
		}
	}
	if err := m.join(cctx, cyc, id, true); err != nil {
		m.end(cyc, false, err.Error())
		m.noLearner = true
		return
	}
	hold := m.dur(m.cfg.LearnerHoldMin, m.cfg.LearnerHoldMax)
	m.step(cyc, "keep it for %v", hold.Round(time.Millisecond))
	if !sleepCtx(ctx, hold) {
		m.step(cyc, "the run ended: it stays a member")
		m.end(cyc, true, "")
		return
	}
	if !m.remove(cctx, cyc, id, false) {
		m.end(cyc, false, "the removal was not known committed within "+m.cfg.RemoveTimeout.String())
		m.noLearner = true
		return
	}
	m.c.DropMember(id)
	if err := m.retire(cyc, id); err != nil {
		m.end(cyc, false, err.Error())
		m.noLearner = true
		return
	}
	m.end(cyc, true, "")
}

// retire stops a removed node and moves its data directory aside, keeping
// its rollback journal for the checks.
func (m *memberNemesis) retire(cyc *MemberCycle, id string) error {
	m.mu.Lock()
	joined := m.joinedBy[id]
	delete(m.joinedBy, id)
	m.mu.Unlock()
	if joined != nil {
		m.collect(context.Background(), joined)
	}
	if err := m.c.Procs.Stop(id, 10*time.Second); err != nil {
		m.step(cyc, "stop: %v", err)
	}
	if err := m.c.Procs.Retire(id); err != nil {
		return fmt.Errorf("retire %s: %w", id, err)
	}
	path, rbs, err := m.c.MoveAside(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.rollbacks = append(m.rollbacks, rbs...)
	m.mu.Unlock()
	m.step(cyc, "stopped; data directory moved to %s (%d rollback entries)", path, len(rbs))
	return nil
}

// backoff is the pause after the attempt-th failed request.
func backoff(attempt int) time.Duration {
	return min(200*time.Millisecond<<min(attempt-1, 4), 2*time.Second)
}

// pickVia returns a random member other than not (a voter if voters), or "".
func (m *memberNemesis) pickVia(not string, voters bool) string {
	ids := m.c.MemberIDs()
	if voters {
		ids = m.c.VoterIDs()
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return id == not })
	if len(ids) == 0 {
		return ""
	}
	return ids[m.rnd.IntN(len(ids))]
}

// pickJoinVia returns a random voter other than id that runs and that no
// fault holds (killed, paused), else any other voter, else "". --join asks
// the member once for its status and exits if it does not answer.
func (m *memberNemesis) pickJoinVia(id string) string {
	voters := slices.DeleteFunc(m.c.VoterIDs(), func(v string) bool { return v == id })
	up := slices.DeleteFunc(slices.Clone(voters), func(v string) bool {
		return !m.c.Procs.Running(v) || m.c.Procs.Paused(v) || m.n.held(v)
	})
	switch {
	case len(up) > 0:
		return up[m.rnd.IntN(len(up))]
	case len(voters) > 0:
		return voters[m.rnd.IntN(len(voters))]
	}
	return ""
}

// remove asks for id's removal until it is known committed: the request
// answered 200, or removalCommitted says so. A leader is asked about
// itself half the time (it hands leadership over first), else through
// another member (which forwards).
func (m *memberNemesis) remove(ctx context.Context, cyc *MemberCycle, id string, wasLeader bool) bool {
	deadline := time.Now().Add(m.cfg.RemoveTimeout)
	for attempt := 1; ; attempt++ {
		via := m.pickVia(id, false)
		if via == "" || (wasLeader && m.rnd.IntN(2) == 0) {
			via = id
		}
		r := m.c.RemoveMember(ctx, via, id)
		m.step(cyc, "DELETE /v1/members/%s via %s: %s", id, via, r)
		if r.Code == 200 || m.removalCommitted(ctx, cyc, id) {
			m.mu.Lock()
			cyc.Removed = time.Since(m.start) - cyc.Start
			m.mu.Unlock()
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleepCtx(ctx, backoff(attempt))
	}
}

// removalCommitted reports whether id's removal is known committed when
// the request's answer did not say: id itself answers 410 (a removed node
// does once its removal is committed), or a leader whose configuration
// lacks id acknowledges a majority write in the term in which it listed
// it (a leader's log keeps the entry that removed id, and committing a
// later entry of its term commits it).
func (m *memberNemesis) removalCommitted(ctx context.Context, cyc *MemberCycle, id string) bool {
	if r := m.c.ListMembers(ctx, id); r.Code == 410 {
		m.step(cyc, "%s answers 410: its removal is committed", id)
		return true
	}
	lead, term := m.c.Leader(ctx)
	if lead == "" || lead == id {
		return false
	}
	r := m.c.ListMembers(ctx, lead)
	if self, ok := r.Find(lead); r.Code != 200 || !ok || self.State != "leader" {
		return false
	}
	if _, ok := r.Find(id); ok {
		return false
	}
	hc := NewHTTPClient(map[string]string{lead: m.c.Addrs[lead].HTTP})
	defer hc.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*WriteTimeout)
	defer cancel()
	res := hc.Put(wctx, lead, "chaos-member-probe", fmt.Sprintf("%s-%d", id, time.Now().UnixNano()), "majority")
	if res.Outcome == OK && res.Term == term {
		m.step(cyc, "leader %s (term %d) lists no %s and acknowledged a majority write at index %d in that term: the removal is committed",
			lead, term, id, res.Index)
		return true
	}
	return false
}

// addLearner adds id as a learner through POST /v1/members before the
// node runs (its --join then finds it added), retrying what may succeed later.
func (m *memberNemesis) addLearner(ctx context.Context, cyc *MemberCycle, id string) error {
	deadline := time.Now().Add(m.cfg.RemoveTimeout)
	for attempt := 1; ; attempt++ {
		via := m.pickVia(id, false)
		if via == "" {
			return fmt.Errorf("no member to add %s through", id)
		}
		r := m.c.AddMember(ctx, via, id, "learner")
		m.step(cyc, "POST /v1/members %s (learner) via %s: %s", id, via, r)
		if r.Code == 200 {
			m.c.SetMember(id, true)
			return nil
		}
		if r.Code == 400 {
			return fmt.Errorf("adding %s: %s", id, r)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("adding %s: no success within %v; last answer %s", id, m.cfg.RemoveTimeout, r)
		}
		sleepCtx(ctx, backoff(attempt))
	}
}

// maxJoinRestarts bounds how often join starts a join process again.
const maxJoinRestarts = 10

// join starts node id afresh with --join through a random voter and waits
// until the leader lists it as a voter (learner false: the node promotes
// itself once caught up) or as a replicating learner. A join process that
// exits (its request failed, or the member did not answer) is started
// again after a backoff, through a voter picked again, up to
// maxJoinRestarts times within cfg.CatchUpTimeout.
func (m *memberNemesis) join(ctx context.Context, cyc *MemberCycle, id string, learner bool) error {
	var offset int64
	if st, err := os.Stat(m.c.Procs.LogPath(id)); err == nil {
		offset = st.Size()
	}
	m.mu.Lock()
	cyc.Joined, cyc.logOffset = true, offset
	m.joinedBy[id] = cyc
	m.mu.Unlock()
	j := &joining{m: m, cyc: cyc, id: id, learner: learner}
	if err := j.start(); err != nil {
		return err
	}
	j.began = time.Now()
	deadline := j.began.Add(m.cfg.CatchUpTimeout)
	for restarts := 0; ; {
		if !m.c.Procs.Running(id) {
			m.step(cyc, "the join process exited: %v", m.c.Procs.Exited()[id])
			if restarts == maxJoinRestarts || time.Now().After(deadline) {
				return fmt.Errorf("%s: the join process exited %d times (log %s)", id, restarts+1, m.c.Procs.LogPath(id))
			}
			restarts++
			sleepCtx(ctx, backoff(restarts))
			if err := j.start(); err != nil {
				return err
			}
		}
		if j.observe(ctx) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not catch up within %v of its join (member states seen: %s)",
				id, m.cfg.CatchUpTimeout, strings.Join(m.Cycle(cyc).States, ", "))
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// joining is one node's join, as join drives it.
type joining struct {
	m       *memberNemesis
	cyc     *MemberCycle
	id      string
	learner bool
	began   time.Time // the first start
	last    string    // the last member state recorded
	listed  bool      // the leader has listed the node
}

// start starts the node with --join through a voter picked now.
func (j *joining) start() error {
	m := j.m
	via := m.pickJoinVia(j.id)
	if via == "" {
		return fmt.Errorf("no voter to join %s through", j.id)
	}
	args, err := m.c.JoinArgs(j.id, via, j.learner)
	if err != nil {
		return err
	}
	m.c.Procs.SetArgs(j.id, args)
	if err := m.c.Procs.Start(j.id); err != nil {
		return err
	}
	m.step(j.cyc, "started with --join via %s%s", via, map[bool]string{true: " --learner"}[j.learner])
	return nil
}

// observe asks the leader for the member list and records the node's
// state; true once it is a voter (or, for a learner, replicating).
func (j *joining) observe(ctx context.Context) bool {
	m, cyc := j.m, j.cyc
	lead, _ := m.c.Leader(ctx)
	if lead == "" {
		return false
	}
	r := m.c.ListMembers(ctx, lead)
	ms, ok := r.Find(j.id)
	if r.Code != 200 || !ok || ms.State == "unknown" {
		return false
	}
	if !j.listed {
		j.listed = true
		if member, _ := m.c.Member(j.id); !member {
			m.c.SetMember(j.id, true)
		}
		first := "unknown"
		if v, ok, err := m.c.Metric(ctx, lead, "trireme_wal_first_index"); err == nil && ok {
			first = fmt.Sprint(uint64(v))
			m.mu.Lock()
			cyc.LeaderFirstIndex = uint64(v)
			m.mu.Unlock()
		}
		m.step(cyc, "listed by leader %s as a %s; the leader's first WAL index is %s", lead, ms.Role, first)
	}
	state, key := ms.State, ms.State
	if ms.State == "snapshot" && ms.SnapshotBytesTotal > 0 {
		state = fmt.Sprintf("snapshot (%d of %d bytes)", ms.SnapshotBytesSent, ms.SnapshotBytesTotal)
		key = "snapshot/sized"
	}
	if key != j.last {
		m.mu.Lock()
		cyc.States = append(cyc.States, fmt.Sprintf("%s %s +%.1fs", ms.Role, state, time.Since(j.began).Seconds()))
		m.mu.Unlock()
		j.last = key
	}
	done := ms.Role == "voter"
	what := "a voter"
	if j.learner {
		done = ms.State == "replicate" && ms.LagEntries <= 100
		what = fmt.Sprintf("replicating (lag %d)", ms.LagEntries)
	}
	if !done {
		return false
	}
	m.c.SetMember(j.id, j.learner)
	took := time.Since(j.began)
	m.mu.Lock()
	cyc.CaughtUp = took
	m.mu.Unlock()
	m.step(cyc, "%s after %v (match index %d)", what, took.Round(time.Millisecond), ms.MatchIndex)
	return true
}

// Cycle returns a copy of cyc.
func (m *memberNemesis) Cycle(cyc *MemberCycle) MemberCycle {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := *cyc
	out.Steps, out.States = slices.Clone(cyc.Steps), slices.Clone(cyc.States)
	return out
}

// evidence collects, for every node a cycle joined that is still a
// member, the evidence of how it caught up (collect); a node retired
// before had its evidence collected then.
func (m *memberNemesis) evidence(ctx context.Context) {
	m.mu.Lock()
	var cycles []*MemberCycle
	for _, cyc := range m.joinedBy {
		cycles = append(cycles, cyc)
	}
	m.mu.Unlock()
	for _, cyc := range cycles {
		if member, _ := m.c.Member(cyc.Node); member {
			m.collect(ctx, cyc)
		}
	}
}

// collect reads the metrics of cyc's node whose name contains "snapshot"
// (counters restart at 0 when the node restarts) and the lines of its log
// since the join that mention snapshots.
func (m *memberNemesis) collect(ctx context.Context, cyc *MemberCycle) {
	lines, err := m.c.Metrics(ctx, cyc.Node, "snapshot")
	if err != nil {
		lines = []string{"reading /metrics: " + err.Error()}
	}
	m.mu.Lock()
	offset := cyc.logOffset
	m.mu.Unlock()
	logLines := grepLog(m.c.Procs.LogPath(cyc.Node), offset, "snapshot", 5)
	m.mu.Lock()
	cyc.SnapshotMetrics, cyc.SnapshotLog = lines, logLines
	m.mu.Unlock()
}

// grepLog returns up to max lines of the file from offset on that contain
// substr (case-insensitive).
func grepLog(path string, offset int64, substr string, max int) []string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		if strings.Contains(strings.ToLower(l), substr) {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			out = append(out, l)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

// Summary is a few indented lines about the cycle, for Report.Summary.
func (c *MemberCycle) Summary() string {
	var b strings.Builder
	who := c.Node
	if c.WasLeader {
		who += " (the leader)"
	}
	result := "ok"
	if !c.OK {
		result = "FAILED: " + c.Failure
	}
	fmt.Fprintf(&b, "  %s %s at %.1fs: %s", c.Kind, who, c.Start.Seconds(), result)
	if c.Removed > 0 {
		fmt.Fprintf(&b, "; removal committed after %v", c.Removed.Round(time.Millisecond))
	}
	switch {
	case c.LeaderFirstIndex > 1:
		fmt.Fprintf(&b, "; the leader's WAL began at index %d when it listed the node: it needs a snapshot", c.LeaderFirstIndex)
	case c.LeaderFirstIndex == 1:
		b.WriteString("; the leader's WAL was whole when it listed the node: log replay")
	}
	if c.CaughtUp > 0 {
		fmt.Fprintf(&b, "; caught up %v after its join", c.CaughtUp.Round(time.Millisecond))
	}
	b.WriteString("\n")
	if len(c.States) > 0 {
		fmt.Fprintf(&b, "    member states: %s\n", strings.Join(c.States, ", "))
	}
	if len(c.SnapshotMetrics) > 0 {
		fmt.Fprintf(&b, "    snapshot metrics: %s\n", strings.Join(c.SnapshotMetrics, "; "))
	} else if c.Joined {
		b.WriteString("    snapshot metrics: none exported\n")
	}
	for _, l := range c.SnapshotLog {
		fmt.Fprintf(&b, "    log: %s\n", l)
	}
	for _, s := range c.Steps {
		fmt.Fprintf(&b, "    %s\n", s)
	}
	return b.String()
}
