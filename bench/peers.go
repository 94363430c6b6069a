package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// peerOf names the peer counterpart of a Trireme variant in a workload:
// the (system, variant) it is compared with.
func peerOf(workload, variant string) (string, string, bool) {
	type k struct{ w, v string }
	m := map[k][2]string{
		{"write", "async"}:                   {"redis", "SET"},
		{"write", "semi-sync K=1"}:           {"redis", "SET+WAIT 1"},
		{"write", "sync"}:                    {"redis", "SET+WAIT 2"},
		{"write", "majority"}:                {"etcd", "put"},
		{"read", "linearizable"}:             {"etcd", "linearizable get"},
		{"read", "stale"}:                    {"redis", "GET"},
		{"mixed", "majority + linearizable"}: {"etcd", "put + linearizable get"},
		{"mixed", "async + stale"}:           {"redis", "SET + GET"},
	}
	p, ok := m[k{workload, variant}]
	return p[0], p[1], ok
}

// AddPeers fills each Trireme result's Peer and ratios from the matching
// run (same workload, value size and clients) of its peer.
func AddPeers(rs []LoadResult) {
	find := func(system, variant, w string, size, clients int) *LoadResult {
		for i := range rs {
			r := &rs[i]
			if r.System == system && r.Variant == variant && r.Workload == w && r.ValueBytes == size && r.Clients == clients {
				return r
			}
		}
		return nil
	}
	for i := range rs {
		r := &rs[i]
		if r.System != "trireme" {
			continue
		}
		ps, pv, ok := peerOf(r.Workload, r.Variant)
		if !ok {
			continue
		}
		p := find(ps, pv, r.Workload, r.ValueBytes, r.Clients)
		if p == nil {
			continue
		}
		r.Peer = ps + " " + pv
		r.ThroughputRatio = ratio(r.OpsPerSec, p.OpsPerSec)
		r.P50Ratio = ratio(r.P50us, p.P50us)
		r.P99Ratio = ratio(r.P99us, p.P99us)
		r.P999Ratio = ratio(r.P999us, p.P999us)
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

// Target is one of the goals Trireme is measured against.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      string `json:"met"` // "yes", "no" or "not measured"
}

// targetClients is the client count the targets are set at.
const targetClients = 64

// targetVariants are the Trireme write variants with a throughput target
// (their peers from peerOf).
var targetVariants = []string{"majority", "async", "sync"}

// pairRounds is a target pair's interleaved rounds at one value size.
type pairRounds struct {
	trireme, peer []LoadResult // by round, both sides present
}

// roundsOf pairs up the rounds of (trireme variant, peer) at size.
func roundsOf(res *Results, variant, peerSystem, peerVariant string, size int) pairRounds {
	bySide := func(system, v string) map[int]LoadResult {
		m := map[int]LoadResult{}
		for _, r := range res.Rounds {
			if r.System == system && r.Variant == v && r.Workload == "write" && r.ValueBytes == size && r.Clients == targetClients {
				m[r.Round] = r
			}
		}
		return m
	}
	t, p := bySide("trireme", variant), bySide(peerSystem, peerVariant)
	rounds := make([]int, 0, len(t))
	for round := range t {
		if _, ok := p[round]; ok {
			rounds = append(rounds, round)
		}
	}
	slices.Sort(rounds)
	var out pairRounds
	for _, round := range rounds {
		out.trireme = append(out.trireme, t[round])
		out.peer = append(out.peer, p[round])
	}
	return out
}

// median returns the median of xs (the mean of the middle two for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// figures returns the medians of a pair's rounds: Trireme's and the peer's
// throughput and p99, and the per-round throughput ratios.
func (pr pairRounds) figures() (tOps, pOps, tP99, pP99 float64, ratios []float64) {
	var a, b, c, d []float64
	for i := range pr.trireme {
		a = append(a, pr.trireme[i].OpsPerSec)
		b = append(b, pr.peer[i].OpsPerSec)
		c = append(c, pr.trireme[i].P99us)
		d = append(d, pr.peer[i].P99us)
		ratios = append(ratios, ratio(pr.trireme[i].OpsPerSec, pr.peer[i].OpsPerSec))
	}
	return median(a), median(b), median(c), median(d), ratios
}

// CheckTargets evaluates the targets. Where the run has interleaved target
// rounds (Profile.TargetRounds), a throughput target is judged on the median
// of the rounds' ratios (Trireme's throughput over its peer's in the same
// round) and a p99 condition on the median p99s; the main run's single pair
// is quoted too. Otherwise it is judged on the main run's pair.
func CheckTargets(res *Results) []Target {
	get := func(system, variant, w string, size, clients int) *LoadResult {
		for i := range res.Load {
			r := &res.Load[i]
			if r.System == system && r.Variant == variant && r.Workload == w && r.ValueBytes == size && r.Clients == clients {
				return r
			}
		}
		return nil
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	// judge fills t for a pair: minRatio is the throughput goal; withP99
	// also asks for a lower p99.
	judge := func(t *Target, variant string, size int, minRatio float64, withP99 bool) {
		psys, pvar, _ := peerOf("write", variant)
		a, b := get("trireme", variant, "write", size, targetClients), get(psys, pvar, "write", size, targetClients)
		main := ""
		if a != nil && b != nil {
			main = fmt.Sprintf("%.0f vs %.0f ops/s (%.2fx)", a.OpsPerSec, b.OpsPerSec, ratio(a.OpsPerSec, b.OpsPerSec))
			if withP99 {
				main += fmt.Sprintf("; p99 %.2f vs %.2f ms", a.P99us/1000, b.P99us/1000)
			}
			t.Measured = main
			t.Met = yes(a.OpsPerSec >= minRatio*b.OpsPerSec && (!withP99 || a.P99us < b.P99us))
		}
		pr := roundsOf(res, variant, psys, pvar, size)
		if len(pr.trireme) == 0 {
			return
		}
		tOps, pOps, tP99, pP99, ratios := pr.figures()
		r := median(ratios)
		t.Measured = fmt.Sprintf("median of %d interleaved rounds: %.0f vs %.0f ops/s, ratio %.2fx (rounds %.2f-%.2fx)",
			len(ratios), tOps, pOps, r, slices.Min(ratios), slices.Max(ratios))
		if withP99 {
			t.Measured += fmt.Sprintf("; p99 %.2f vs %.2f ms", tP99/1000, pP99/1000)
		}
		if main != "" {
			t.Measured += "; main run " + main
		}
		t.Met = yes(r >= minRatio && (!withP99 || tP99 < pP99))
	}
	var out []Target
	for _, size := range []int{100, 1024} {
		t := Target{Name: fmt.Sprintf("majority writes vs etcd put, %d B, %d clients", size, targetClients),
			Goal: ">= 2x etcd throughput with lower p99", Met: "not measured"}
		judge(&t, "majority", size, 2, true)
		out = append(out, t)
		t = Target{Name: fmt.Sprintf("async writes vs Redis SET, %d B, %d clients", size, targetClients),
			Goal: ">= 0.5x Redis SET throughput", Met: "not measured"}
		judge(&t, "async", size, 0.5, false)
		out = append(out, t)
		t = Target{Name: fmt.Sprintf("sync writes vs Redis SET+WAIT 2, %d B, %d clients", size, targetClients),
			Goal: ">= Redis SET+WAIT 2 throughput", Met: "not measured"}
		judge(&t, "sync", size, 1, false)
		out = append(out, t)
	}
	return append(out, failoverTargets(res)...)
}

// failoverTargets judges the failover part: Trireme's failover (the fixed
// detector, or the binary's only one) against etcd's, and issue 18's goal
// for the adaptive detector: a median failover of 150 ms or less with no
// election in either false-failover run.
func failoverTargets(res *Results) []Target {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	find := func(system, variant string) *FailoverResult {
		for i := range res.Failover {
			f := &res.Failover[i]
			if f.System == system && (f.Variant == variant || variant == "") && f.measured() {
				return f
			}
		}
		return nil
	}
	t := Target{Name: "failover (kill -9 of the leader to the first acknowledged write)",
		Goal: "median <= half of etcd's", Met: "not measured"}
	tm, em := find("trireme", "fixed"), find("etcd", "")
	if tm == nil {
		tm = find("trireme", "") // results from before the variants
	}
	if tm != nil && em != nil {
		t.Measured = fmt.Sprintf("median %.0f ms vs %.0f ms (%.2fx), %d and %d trials", tm.MedianMs, em.MedianMs,
			ratio(tm.MedianMs, em.MedianMs), len(tm.TrialsMs), len(em.TrialsMs))
		t.Met = yes(tm.MedianMs <= em.MedianMs/2)
	}
	a := Target{Name: "adaptive failure detection (issue 18)",
		Goal: "median failover <= 150 ms, and no election in either false-failover run", Met: "not measured"}
	am := find("trireme", "adaptive")
	var runs []FalseFailoverRun
	for _, r := range res.FalseFailover {
		if r.Variant == "adaptive" && r.Skipped == "" {
			runs = append(runs, r)
		}
	}
	if am != nil && len(runs) > 0 {
		elections, parts := 0, []string{}
		for _, r := range runs {
			n := max(r.ElectionsStarted, int(r.TermChange), r.LeaderChanges)
			elections += n
			parts = append(parts, fmt.Sprintf("%s: %d", r.Scenario, n))
		}
		a.Measured = fmt.Sprintf("median %.0f ms over %d trials; elections: %s", am.MedianMs, len(am.TrialsMs), strings.Join(parts, ", "))
		a.Met = yes(am.MedianMs <= 150 && elections == 0 && len(runs) == 2)
	}
	return []Target{t, a}
}

// tlsRounds pairs up the target rounds of Trireme's write variant with
// peer TLS (system "trireme") and without (TriremeNoTLS) at size: the
// "peer" side of the result is the run without TLS.
func tlsRounds(res *Results, variant string, size int) pairRounds {
	return roundsOf(res, variant, TriremeNoTLS, variant, size)
}

// cpu returns the medians of the two sides' server CPU per operation.
func (pr pairRounds) cpu() (t, p float64) {
	var a, b []float64
	for i := range pr.trireme {
		a = append(a, pr.trireme[i].ServerCPUus)
		b = append(b, pr.peer[i].ServerCPUus)
	}
	return median(a), median(b)
}

// tlsRoundKeys lists the (value size, variant) of the target rounds that
// ran without peer TLS, by size and then in targetVariants' order.
func tlsRoundKeys(res *Results) (sizes []int, variants map[int][]string) {
	variants = map[int][]string{}
	for _, r := range res.Rounds {
		if r.System != TriremeNoTLS {
			continue
		}
		if !slices.Contains(sizes, r.ValueBytes) {
			sizes = append(sizes, r.ValueBytes)
		}
		if !slices.Contains(variants[r.ValueBytes], r.Variant) {
			variants[r.ValueBytes] = append(variants[r.ValueBytes], r.Variant)
		}
	}
	slices.Sort(sizes)
	for _, vs := range variants {
		slices.SortFunc(vs, func(a, b string) int {
			return slices.Index(targetVariants, a) - slices.Index(targetVariants, b)
		})
	}
	return sizes, variants
}

// tlsMainPairs pairs each main run of Trireme with peer TLS with the same
// run (workload, variant, value size, clients) without it.
func tlsMainPairs(res *Results) [][2]LoadResult {
	var out [][2]LoadResult
	for _, a := range res.Load {
		if a.System != "trireme" {
			continue
		}
		for _, b := range res.Load {
			if b.System == TriremeNoTLS && b.Workload == a.Workload && b.Variant == a.Variant && b.ValueBytes == a.ValueBytes && b.Clients == a.Clients {
				out = append(out, [2]LoadResult{a, b})
				break
			}
		}
	}
	return out
}
