package bench

import (
	"fmt"
	"math"
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

// CheckTargets evaluates the targets from the results.
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
	clients := 64
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var out []Target
	for _, size := range []int{100, 1024} {
		t := Target{Name: fmt.Sprintf("majority writes vs etcd put, %d B, %d clients", size, clients),
			Goal: ">= 2x etcd throughput with lower p99", Met: "not measured"}
		if a, b := get("trireme", "majority", "write", size, clients), get("etcd", "put", "write", size, clients); a != nil && b != nil {
			t.Measured = fmt.Sprintf("%.0f vs %.0f ops/s (%.2fx); p99 %.2f vs %.2f ms", a.OpsPerSec, b.OpsPerSec,
				ratio(a.OpsPerSec, b.OpsPerSec), a.P99us/1000, b.P99us/1000)
			t.Met = yes(a.OpsPerSec >= 2*b.OpsPerSec && a.P99us < b.P99us)
		}
		out = append(out, t)
		t = Target{Name: fmt.Sprintf("async writes vs Redis SET, %d B, %d clients", size, clients),
			Goal: ">= 0.5x Redis SET throughput", Met: "not measured"}
		if a, b := get("trireme", "async", "write", size, clients), get("redis", "SET", "write", size, clients); a != nil && b != nil {
			t.Measured = fmt.Sprintf("%.0f vs %.0f ops/s (%.2fx)", a.OpsPerSec, b.OpsPerSec, ratio(a.OpsPerSec, b.OpsPerSec))
			t.Met = yes(a.OpsPerSec >= 0.5*b.OpsPerSec)
		}
		out = append(out, t)
		t = Target{Name: fmt.Sprintf("sync writes vs Redis SET+WAIT 2, %d B, %d clients", size, clients),
			Goal: ">= Redis SET+WAIT 2 throughput", Met: "not measured"}
		if a, b := get("trireme", "sync", "write", size, clients), get("redis", "SET+WAIT 2", "write", size, clients); a != nil && b != nil {
			t.Measured = fmt.Sprintf("%.0f vs %.0f ops/s (%.2fx)", a.OpsPerSec, b.OpsPerSec, ratio(a.OpsPerSec, b.OpsPerSec))
			t.Met = yes(a.OpsPerSec >= b.OpsPerSec)
		}
		out = append(out, t)
	}
	t := Target{Name: "failover (kill -9 of the leader to the first successful write)",
		Goal: "median <= half of etcd's", Met: "not measured"}
	var tm, em *FailoverResult
	for i := range res.Failover {
		switch res.Failover[i].System {
		case "trireme":
			tm = &res.Failover[i]
		case "etcd":
			em = &res.Failover[i]
		}
	}
	if tm != nil && em != nil {
		t.Measured = fmt.Sprintf("median %.0f ms vs %.0f ms (%.2fx), %d and %d trials", tm.MedianMs, em.MedianMs,
			ratio(tm.MedianMs, em.MedianMs), len(tm.TrialsMs), len(em.TrialsMs))
		t.Met = yes(tm.MedianMs <= em.MedianMs/2)
	}
	return append(out, t)
}
