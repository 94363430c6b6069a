package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/trireme-db/trireme/client"
)

// leaderOf returns the status of the node that leads with the highest term.
func leaderOf(sts []client.EndpointStatus) (client.Status, bool) {
	var best client.Status
	ok := false
	for _, s := range sts {
		if s.Err == nil && s.Status.Role == "leader" && (!ok || s.Status.Term > best.Term) {
			best, ok = s.Status, true
		}
	}
	return best, ok
}

// lagOf returns a follower's lag as its leader sees it (entries, ms), or its
// own estimate.
func lagOf(s client.Status, leader client.Status, haveLeader bool) (uint64, int64, bool) {
	if haveLeader {
		for _, f := range leader.Followers {
			if f.ID == s.ID {
				return f.LagEntries, f.LagMillis, true
			}
		}
	}
	return 0, s.LagMillis, false
}

// roleOf is a node's role as its status says, except that a follower the
// leader lists as a learner (a read replica) is a "learner".
func roleOf(s client.Status, leader client.Status, haveLeader bool) string {
	if haveLeader && s.Role == "follower" {
		for _, f := range leader.Followers {
			if f.ID == s.ID && f.Role == client.RoleLearner {
				return client.RoleLearner
			}
		}
	}
	return s.Role
}

// FormatStatus renders a table of node statuses (as from
// client.Client.Statuses). names maps endpoints to node ids for nodes that
// do not answer.
func FormatStatus(sts []client.EndpointStatus, names map[string]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tTERM\tLEADER\tLAST\tCOMMIT\tAPPLIED\tLAG\tENDPOINT")
	leader, ok := leaderOf(sts)
	for _, s := range sts {
		if s.Err != nil {
			id := names[s.Endpoint]
			if id == "" {
				id = "?"
			}
			fmt.Fprintf(tw, "%s\tdown\t-\t-\t-\t-\t-\t-\t%s\n", id, s.Endpoint)
			continue
		}
		st := s.Status
		lag := "-"
		if st.Role != "leader" {
			e, ms, fromLeader := lagOf(st, leader, ok)
			if fromLeader {
				lag = fmt.Sprintf("%d entries, %dms", e, ms)
			} else {
				lag = fmt.Sprintf("%dms", ms)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n", st.ID, roleOf(st, leader, ok), st.Term, orDash(st.Leader),
			st.LastIndex, st.CommitIndex, st.AppliedIndex, lag, s.Endpoint)
	}
	tw.Flush()
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lagClass buckets a lag so that small changes do not print a line.
func lagClass(e uint64) string {
	switch {
	case e == 0:
		return "0"
	case e < 100:
		return "<100"
	case e < 10000:
		return "<10k"
	}
	return "big"
}

// Summary renders the cluster state as one line, and a key that changes only
// when something a person cares about changes: the leader, the term, a
// node's role or reachability, or a follower's lag class. sts are in the
// order of Spec.All (voters, then read replicas; the replicas may be left
// out).
func (c *Cluster) Summary(sts []client.EndpointStatus) (line, key string) {
	nodes := c.cfg.Spec.All()
	leader, ok := leaderOf(sts)
	var lb, kb strings.Builder
	if ok {
		fmt.Fprintf(&lb, "leader %s term %d", leader.ID, leader.Term)
		fmt.Fprintf(&kb, "L=%s/%d", leader.ID, leader.Term)
	} else {
		lb.WriteString("NO LEADER")
		kb.WriteString("L=-")
	}
	for i, s := range sts {
		id := nodes[i].ID
		if s.Err != nil {
			fmt.Fprintf(&lb, " | %s down", id)
			fmt.Fprintf(&kb, " %s=down", id)
			continue
		}
		st := s.Status
		if st.Role == "leader" {
			fmt.Fprintf(&lb, " | %s leader (last %d, commit %d)", id, st.LastIndex, st.CommitIndex)
			fmt.Fprintf(&kb, " %s=leader/%d", id, st.Term)
			continue
		}
		e, ms, _ := lagOf(st, leader, ok)
		role := roleOf(st, leader, ok)
		fmt.Fprintf(&lb, " | %s %s (applied %d, lag %d entries %dms)", id, role, st.AppliedIndex, e, ms)
		fmt.Fprintf(&kb, " %s=%s/%d/%s", id, role, st.Term, lagClass(e))
	}
	return lb.String(), kb.String()
}

// Statuses asks every voter for its status, in spec order.
func (c *Cluster) Statuses(ctx context.Context) []client.EndpointStatus {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.client.Statuses(ctx)
}

// allStatuses asks every voter and read replica for its status, in parallel,
// in the order of Spec.All.
func (c *Cluster) allStatuses(ctx context.Context) []client.EndpointStatus {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	nodes := c.cfg.Spec.All()
	out := make([]client.EndpointStatus, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			st, err := c.client.Status(ctx, n.HTTP)
			out[i] = client.EndpointStatus{Endpoint: n.HTTP, Status: st, Err: err}
		})
	}
	wg.Wait()
	return out
}

// Watch polls the voters and read replicas every interval until ctx ends
// and calls emit with a summary line each time something changes.
func (c *Cluster) Watch(ctx context.Context, interval time.Duration, emit func(line string)) {
	last := ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		line, key := c.Summary(c.allStatuses(ctx))
		if ctx.Err() != nil {
			return
		}
		if key != last {
			emit(line)
			last = key
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
