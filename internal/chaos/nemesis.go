package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Fault kinds the nemesis knows. "membership" is not one fault at a time
// but cycles beside the others (membership.go).
var FaultKinds = []string{"partition", "kill", "pause", "slow", "drop", "transfer", "membership"}

// Failover is the timing of one leader kill: from the kill to the first
// moment another node saw the leader gone (a new term or another leader), to
// a new leader, and to the first successful majority write.
type Failover struct {
	Killed  string        `json:"killed"`
	OldTerm uint64        `json:"old_term"`
	Detect  time.Duration `json:"detect"`
	Elect   time.Duration `json:"elect"`
	Write   time.Duration `json:"write"`
	OK      bool          `json:"ok"` // all three were observed
}

// NemesisConfig configures the fault injector.
type NemesisConfig struct {
	// Faults are the kinds to inject (FaultKinds).
	Faults []string
	// Hold bounds how long a fault lasts; Gap how long the cluster is healthy between faults.
	HoldMin, HoldMax, GapMin, GapMax time.Duration
	// Membership configures the "membership" kind, which is not one fault
	// at a time: its cycles run beside the other faults (membership.go).
	Membership MembershipConfig
	// Seed drives every choice: kinds, victims, durations.
	Seed uint64
	// MultiLeader: the cluster has no leader, so kills and pauses pick
	// random nodes and partitions skip the "leader" variant (a "halves"
	// minority of one isolates a node just as well).
	MultiLeader bool
	Logger      *slog.Logger
}

// Nemesis injects faults into a Cluster, one at a time, and records them.
type Nemesis struct {
	cfg NemesisConfig
	c   *Cluster
	h   *History
	rnd *rand.Rand
	log *slog.Logger
	hc  *http.Client

	members *memberNemesis // nil without the "membership" kind

	mu        sync.Mutex
	counts    map[string]int    // guarded by mu
	failovers []Failover        // guarded by mu
	killed    map[string]bool   // nodes the nemesis killed and has not restarted; guarded by mu
	busy      map[string]string // node -> what holds it (a kill, a pause, a membership cycle); guarded by mu
	wg        sync.WaitGroup
}

// NewNemesis returns a nemesis for c that records into h.
func NewNemesis(c *Cluster, h *History, cfg NemesisConfig) *Nemesis {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Nemesis{cfg: cfg, c: c, h: h, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), log: cfg.Logger,
		hc:     &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		counts: map[string]int{}, killed: map[string]bool{}, busy: map[string]string{}}
	if slices.Contains(cfg.Faults, "membership") {
		n.members = newMemberNemesis(n, cfg.Membership, cfg.Seed)
	}
	return n
}

// claim marks node id as held by who (a kill, a pause, a membership
// cycle), so that no other fault picks it; false if something holds it.
func (n *Nemesis) claim(id, who string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy[id] != "" {
		return false
	}
	n.busy[id] = who
	return true
}

// held reports whether something holds node id (see claim).
func (n *Nemesis) held(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.busy[id] != ""
}

// release ends claim.
func (n *Nemesis) release(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.busy, id)
}

// free returns the voters nothing holds, in the order of Cluster.VoterIDs.
func (n *Nemesis) free() []string {
	voters := n.c.VoterIDs()
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(voters, func(id string) bool { return n.busy[id] != "" })
}

// claimVoter claims for who the leader (if wantLeader and a majority
// agrees on one that is free; with its term) or a random free voter,
// drawing from rnd; "" if every voter is held.
func (n *Nemesis) claimVoter(ctx context.Context, wantLeader bool, rnd *rand.Rand, who string) (id string, term uint64, isLeader bool) {
	free := n.free()
	if len(free) == 0 {
		return "", 0, false
	}
	random := free[rnd.IntN(len(free))]
	if wantLeader {
		if lead, term := n.stableLeader(ctx); lead != "" && n.claim(lead, who) {
			return lead, term, true
		}
	}
	if !n.claim(random, who) {
		return "", 0, false
	}
	return random, 0, false
}

// MemberCycles returns the membership cycles (nil without the "membership" kind).
func (n *Nemesis) MemberCycles() []MemberCycle {
	if n.members == nil {
		return nil
	}
	return n.members.Cycles()
}

// MemberRollbacks returns the rollback journals of the data directories
// the membership cycles wiped.
func (n *Nemesis) MemberRollbacks() []Rollback {
	if n.members == nil {
		return nil
	}
	return n.members.Rollbacks()
}

// MemberPostponed says why rejoins were put off.
func (n *Nemesis) MemberPostponed() []string {
	if n.members == nil {
		return nil
	}
	return n.members.Postponed()
}

// VotersBelow is the time the cluster had fewer voters than it started
// with, out of the membership nemesis's running time.
func (n *Nemesis) VotersBelow() (below, total time.Duration) {
	if n.members == nil {
		return 0, 0
	}
	return n.members.Below()
}

// MemberEvidence reads, for every node a membership cycle joined, its
// snapshot metrics and log lines (into MemberCycles).
func (n *Nemesis) MemberEvidence(ctx context.Context) {
	if n.members != nil {
		n.members.evidence(ctx)
	}
}

// Counts returns the faults injected, by kind (with their variant: "partition/halves").
func (n *Nemesis) Counts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int{}
	for k, v := range n.counts {
		out[k] = v
	}
	return out
}

// Failovers returns the measured leader kills.
func (n *Nemesis) Failovers() []Failover {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.failovers)
}

func (n *Nemesis) dur(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rnd.Int64N(int64(hi-lo)))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Run injects faults until ctx ends, then heals everything (restarting killed
// nodes, resuming paused ones) and waits for its measurements to finish. The
// membership cycles run beside the other faults; one under way when ctx ends
// may go on for MembershipConfig.Finish.
func (n *Nemesis) Run(ctx context.Context) {
	var mwg sync.WaitGroup
	if n.members != nil {
		mwg.Add(1)
		go func() {
			defer mwg.Done()
			n.members.run(ctx)
		}()
	}
	defer n.wg.Wait()
	defer mwg.Wait()
	defer n.HealAll()
	kinds := slices.DeleteFunc(slices.Clone(n.cfg.Faults), func(k string) bool { return k == "membership" })
	if len(kinds) == 0 {
		<-ctx.Done()
		return
	}
	var bag []string // every kind once per round, in random order
	for {
		if !sleepCtx(ctx, n.dur(n.cfg.GapMin, n.cfg.GapMax)) {
			return
		}
		if len(bag) == 0 {
			bag = slices.Clone(kinds)
			n.rnd.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		kind := bag[0]
		bag = bag[1:]
		hold := n.dur(n.cfg.HoldMin, n.cfg.HoldMax)
		heal := n.inject(ctx, kind)
		sleepCtx(ctx, hold)
		heal()
	}
}

// HealAll heals the network, resumes paused nodes and restarts killed ones.
func (n *Nemesis) HealAll() {
	n.c.Net.Heal()
	for _, id := range n.c.AllIDs() {
		if n.c.Procs.Paused(id) {
			if err := n.c.Procs.Resume(id); err != nil {
				n.log.Warn("resume", "node", id, "err", err)
			}
		}
		n.mu.Lock()
		k := n.killed[id]
		n.mu.Unlock()
		if k {
			n.restart(id)
		}
	}
}

func (n *Nemesis) restart(id string) {
	if err := n.c.Procs.Start(id); err != nil {
		n.log.Warn("restart", "node", id, "err", err)
		return
	}
	n.mu.Lock()
	delete(n.killed, id)
	n.mu.Unlock()
}

func (n *Nemesis) count(kind string) {
	n.mu.Lock()
	n.counts[kind]++
	n.mu.Unlock()
}

// shuffled returns the members (learners included) in random order.
func (n *Nemesis) shuffled() []string {
	ids := n.c.MemberIDs()
	n.rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
}

// victim picks and claims for who the leader (with probability pLeader, if
// one is known and free) or a random free voter; "" if every voter is held.
func (n *Nemesis) victim(ctx context.Context, pLeader float64, who string) (string, uint64, bool) {
	return n.claimVoter(ctx, n.rnd.Float64() < pLeader && !n.cfg.MultiLeader, n.rnd, who)
}

// stableLeader returns the leader and its term if a majority of the nodes
// (the leader included) agree on them; "" otherwise. Failover is measured
// only from such a leader, so that a leader change already under way does
// not count as a fast failover.
func (n *Nemesis) stableLeader(ctx context.Context) (string, uint64) {
	sts := n.c.Statuses(ctx)
	voters := n.c.VoterIDs()
	for id, st := range sts {
		if st.Role != "leader" || !slices.Contains(voters, id) {
			continue
		}
		agree := 0
		for vid, o := range sts {
			if o.Leader == id && o.Term == st.Term && slices.Contains(voters, vid) {
				agree++
			}
		}
		if agree >= len(voters)/2+1 {
			return id, st.Term
		}
	}
	return "", 0
}

// inject applies one fault of kind and returns the function that heals it.
func (n *Nemesis) inject(ctx context.Context, kind string) (heal func()) {
	switch kind {
	case "partition":
		return n.partition(ctx)
	case "kill":
		id, term, isLeader := n.victim(ctx, 0.6, "kill")
		if id == "" {
			return func() {}
		}
		variant := "kill/random"
		if isLeader {
			variant = "kill/leader"
		}
		end := n.h.Fault(variant, id)
		n.count(variant)
		n.mu.Lock()
		n.killed[id] = true
		n.mu.Unlock()
		at := time.Now()
		if err := n.c.Procs.Kill(id); err != nil {
			n.log.Warn("kill", "node", id, "err", err)
		}
		if isLeader {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.measureFailover(id, term, at)
			}()
		}
		n.log.Info("nemesis: killed", "node", id, "leader", isLeader)
		return func() {
			n.restart(id)
			n.release(id)
			end()
		}
	case "pause":
		id, _, isLeader := n.victim(ctx, 0.5, "pause")
		if id == "" {
			return func() {}
		}
		variant := "pause/random"
		if isLeader {
			variant = "pause/leader"
		}
		end := n.h.Fault(variant, id)
		n.count(variant)
		if err := n.c.Procs.Pause(id); err != nil {
			n.log.Warn("pause", "node", id, "err", err)
		}
		n.log.Info("nemesis: paused", "node", id, "leader", isLeader)
		return func() {
			if err := n.c.Procs.Resume(id); err != nil {
				n.log.Warn("resume", "node", id, "err", err)
			}
			n.release(id)
			end()
		}
	case "slow":
		delay := n.dur(20*time.Millisecond, 150*time.Millisecond)
		jitter := delay / 2
		var detail string
		if n.rnd.IntN(2) == 0 {
			detail = fmt.Sprintf("all links +%v±%v", delay, jitter)
			n.c.Net.SetAll(func(_, _ string, s *LinkState) { s.Delay, s.Jitter = delay, jitter })
		} else {
			ids := n.c.MemberIDs()
			id := ids[n.rnd.IntN(len(ids))]
			detail = fmt.Sprintf("links of %s +%v±%v", id, delay, jitter)
			n.c.Net.SetAll(func(from, to string, s *LinkState) {
				if from == id || to == id {
					s.Delay, s.Jitter = delay, jitter
				}
			})
		}
		n.count("slow")
		end := n.h.Fault("slow", detail)
		n.log.Info("nemesis: slow", "detail", detail)
		return func() { n.c.Net.Heal(); end() }
	case "drop":
		p := 0.01 + n.rnd.Float64()*0.09
		detail := fmt.Sprintf("every link loses %.1f%% of its chunks (a loss resets the connection)", 100*p)
		n.c.Net.SetAll(func(_, _ string, s *LinkState) { s.Drop = p })
		n.count("drop")
		end := n.h.Fault("drop", detail)
		n.log.Info("nemesis: drop", "detail", detail)
		return func() { n.c.Net.Heal(); end() }
	case "transfer":
		// A planned switchover to a random follower, under the workload.
		voters := n.c.VoterIDs()
		if len(voters) == 1 {
			return func() {}
		}
		lead, _ := n.c.Leader(ctx)
		if lead == "" || !slices.Contains(voters, lead) {
			lead = voters[0]
		}
		to := lead
		for to == lead {
			to = voters[n.rnd.IntN(len(voters))]
		}
		detail := fmt.Sprintf("%s -> %s", lead, to)
		end := n.h.Fault("transfer", detail)
		n.count("transfer")
		res := n.transfer(ctx, lead, to)
		n.log.Info("nemesis: transfer", "detail", detail, "result", res)
		end()
		return func() {}
	}
	n.log.Warn("unknown fault kind", "kind", kind)
	return func() {}
}

func (n *Nemesis) partition(ctx context.Context) func() {
	ids := n.shuffled()
	variants := []string{"halves", "leader", "oneway", "bridge"}
	if n.cfg.MultiLeader {
		variants = []string{"halves", "oneway", "bridge"}
	}
	v := variants[n.rnd.IntN(len(variants))]
	var detail string
	switch v {
	case "halves":
		k := 1 + n.rnd.IntN(len(ids)/2) // minority size
		a, b := ids[:k], ids[k:]
		n.c.Net.Partition(a, b)
		detail = fmt.Sprintf("%v | %v", a, b)
	case "leader":
		lead, _ := n.c.Leader(ctx)
		if lead == "" {
			lead = ids[0]
		}
		var rest []string
		for _, id := range ids {
			if id != lead {
				rest = append(rest, id)
			}
		}
		n.c.Net.Partition([]string{lead}, rest)
		detail = fmt.Sprintf("leader %s isolated from %v", lead, rest)
	case "oneway":
		// One node cannot send (its outbound links are cut) but still hears everyone.
		lead, _ := n.c.Leader(ctx)
		x := ids[0]
		if lead != "" && n.rnd.IntN(2) == 0 {
			x = lead
		}
		inbound := n.rnd.IntN(2) == 0
		for _, id := range ids {
			if id == x {
				continue
			}
			if inbound {
				n.c.Net.Cut(id, x, true)
			} else {
				n.c.Net.Cut(x, id, true)
			}
		}
		if inbound {
			detail = fmt.Sprintf("nobody can send to %s", x)
		} else {
			detail = fmt.Sprintf("%s cannot send to anybody", x)
		}
	case "bridge":
		// ids[0] is the bridge: it sees both halves, which do not see each other.
		bridge, rest := ids[0], ids[1:]
		half := len(rest) / 2
		a, b := rest[:half], rest[half:]
		n.c.Net.Partition(a, b)
		detail = fmt.Sprintf("%v | %v, bridged by %s", a, b, bridge)
	}
	kind := "partition/" + v
	n.count(kind)
	end := n.h.Fault(kind, detail)
	n.log.Info("nemesis: partition", "kind", v, "detail", detail)
	return func() { n.c.Net.Heal(); end() }
}

// measureFailover watches the other nodes after the leader was killed at at.
func (n *Nemesis) measureFailover(killed string, oldTerm uint64, at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var others []string
	for _, id := range n.c.VoterIDs() {
		if id != killed {
			others = append(others, id)
		}
	}
	var mu sync.Mutex
	f := Failover{Killed: killed, OldTerm: oldTerm}
	var detect, elect, write time.Duration
	var wg sync.WaitGroup
	for _, id := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				st, err := n.c.Status(ctx, id)
				now := time.Since(at)
				if err == nil {
					mu.Lock()
					if detect == 0 && (st.Term > oldTerm || st.Leader != killed) {
						detect = now
					}
					if elect == 0 && st.Role == "leader" && st.Term > oldTerm {
						elect = now
					}
					done := elect != 0 && detect != 0
					mu.Unlock()
					if done {
						return
					}
				}
				sleepCtx(ctx, 5*time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			id := others[i%len(others)]
			if n.probe(ctx, id, fmt.Sprintf("probe-%d", i)) {
				mu.Lock()
				write = time.Since(at)
				mu.Unlock()
				return
			}
			sleepCtx(ctx, 5*time.Millisecond)
		}
	}()
	wg.Wait()
	f.Detect, f.Elect, f.Write = detect, elect, write
	f.OK = detect > 0 && elect > 0 && write > 0
	n.mu.Lock()
	n.failovers = append(n.failovers, f)
	n.mu.Unlock()
	n.log.Info("nemesis: failover", "killed", killed, "detect", detect, "elect", elect, "write", write)
}

// transfer asks leader lead to hand leadership to node to; it returns the
// HTTP status (or the error).
func (n *Nemesis) transfer(ctx context.Context, lead, to string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := "http://" + n.c.Addrs[lead].HTTP + "/v1/leader/transfer?" + url.Values{"to": {to}, "timeout": {"3s"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	return resp.Status
}

// probe writes the probe key with ack=majority through node id; true on success.
func (n *Nemesis) probe(ctx context.Context, id, value string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	u := "http://" + n.c.Addrs[id].HTTP + "/v1/kv/chaos-probe?" + url.Values{"ack": {"majority"}, "timeout": {"900ms"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, strings.NewReader(value))
	if err != nil {
		return false
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Percentile returns the p-th percentile (0..100) of ds, nearest rank; 0 if empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(r, 0), len(s)-1)]
}
