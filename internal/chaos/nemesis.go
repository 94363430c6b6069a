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

// Fault kinds the nemesis knows.
var FaultKinds = []string{"partition", "kill", "pause", "slow", "drop", "transfer"}

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
	// Seed drives every choice: kinds, victims, durations.
	Seed   uint64
	Logger *slog.Logger
}

// Nemesis injects faults into a Cluster, one at a time, and records them.
type Nemesis struct {
	cfg NemesisConfig
	c   *Cluster
	h   *History
	rnd *rand.Rand
	log *slog.Logger
	hc  *http.Client

	mu        sync.Mutex
	counts    map[string]int  // guarded by mu
	failovers []Failover      // guarded by mu
	killed    map[string]bool // nodes the nemesis killed and has not restarted
	wg        sync.WaitGroup
}

// NewNemesis returns a nemesis for c that records into h.
func NewNemesis(c *Cluster, h *History, cfg NemesisConfig) *Nemesis {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Nemesis{cfg: cfg, c: c, h: h, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), log: cfg.Logger,
		hc:     &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		counts: map[string]int{}, killed: map[string]bool{}}
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
// nodes, resuming paused ones) and waits for its measurements to finish.
func (n *Nemesis) Run(ctx context.Context) {
	defer n.wg.Wait()
	defer n.HealAll()
	if len(n.cfg.Faults) == 0 {
		<-ctx.Done()
		return
	}
	var bag []string // every kind once per round, in random order
	for {
		if !sleepCtx(ctx, n.dur(n.cfg.GapMin, n.cfg.GapMax)) {
			return
		}
		if len(bag) == 0 {
			bag = slices.Clone(n.cfg.Faults)
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
	for _, id := range n.c.IDs {
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

// shuffled returns the node ids in random order.
func (n *Nemesis) shuffled() []string {
	ids := slices.Clone(n.c.IDs)
	n.rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
}

// victim picks the leader (with probability pLeader, if one is known) or a random node.
func (n *Nemesis) victim(ctx context.Context, pLeader float64) (string, uint64, bool) {
	wantLeader := n.rnd.Float64() < pLeader
	random := n.c.IDs[n.rnd.IntN(len(n.c.IDs))]
	if wantLeader {
		if lead, term := n.stableLeader(ctx); lead != "" {
			return lead, term, true
		}
	}
	return random, 0, false
}

// stableLeader returns the leader and its term if a majority of the nodes
// (the leader included) agree on them; "" otherwise. Failover is measured
// only from such a leader, so that a leader change already under way does
// not count as a fast failover.
func (n *Nemesis) stableLeader(ctx context.Context) (string, uint64) {
	sts := n.c.Statuses(ctx)
	for id, st := range sts {
		if st.Role != "leader" {
			continue
		}
		agree := 0
		for _, o := range sts {
			if o.Leader == id && o.Term == st.Term {
				agree++
			}
		}
		if agree >= len(n.c.IDs)/2+1 {
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
		id, term, isLeader := n.victim(ctx, 0.6)
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
			end()
		}
	case "pause":
		id, _, isLeader := n.victim(ctx, 0.5)
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
			id := n.c.IDs[n.rnd.IntN(len(n.c.IDs))]
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
		if len(n.c.IDs) == 1 {
			return func() {}
		}
		lead, _ := n.c.Leader(ctx)
		if lead == "" {
			lead = n.c.IDs[0]
		}
		to := lead
		for to == lead {
			to = n.c.IDs[n.rnd.IntN(len(n.c.IDs))]
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
	for _, id := range n.c.IDs {
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
