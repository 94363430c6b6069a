package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
)

// statusWait bounds each round of trireme status's requests: the statuses
// of the endpoints with the member list, then the statuses of the members
// that are not among the endpoints.
const statusWait = 3 * time.Second

// clusterStatuses returns the status of every endpoint of cl, then of every
// member that the cluster lists (GET /v1/members) and the endpoints do not
// cover: the endpoints are the voters of cluster.json or --endpoints, and
// read replicas (learners) are members too. names (node ids by endpoint)
// gains the members' ids. A member that is a learner is shown as one even
// when the leader does not answer. Without a member list, the read
// replicas of cluster.json stand in for the members, if it is where the
// endpoints come from. notes are lines for stderr: what could not be
// listed or asked.
func clusterStatuses(ctx context.Context, cl *client.Client, names map[string]string, o *endpointOpts) (
	sts []client.EndpointStatus, notes []string) {
	var ms []client.Member
	var merr error
	var wg sync.WaitGroup
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	wg.Go(func() {
		sts = cl.Statuses(ctx)
		if !anyAnswered(sts) {
			// The member list is asked of the same endpoints: none will
			// answer it, and the client would retry until ctx ends.
			mcancel()
		}
	})
	wg.Go(func() { ms, merr = cl.Members(mctx) })
	wg.Wait()
	answered := anyAnswered(sts) // if none did, runStatus says so

	var others []client.MemberSpec // members that no endpoint covers
	switch {
	case merr == nil && answered:
		for _, m := range ms {
			others = append(others, m.MemberSpec)
		}
	case o.fromLayout():
		if answered {
			notes = append(notes, fmt.Sprintf("could not list the members (%s): showing the nodes of %s", explain(merr), cluster.SpecFile))
		}
		if spec, err := o.layout(); err == nil {
			for _, r := range spec.Replicas {
				others = append(others, client.MemberSpec{ID: r.ID, HTTP: r.HTTP, Role: client.RoleLearner})
			}
		}
	case answered:
		notes = append(notes, fmt.Sprintf("could not list the members (%s): showing the endpoints given only", explain(merr)))
	}
	others = uncovered(others, sts, names)

	var eps []string
	for _, m := range others {
		if m.HTTP == "" {
			notes = append(notes, fmt.Sprintf("member %s (%s) has no HTTP address: not asked", m.ID, roleOf(m.Role)))
			continue
		}
		eps = append(eps, m.HTTP)
	}
	if len(eps) > 0 {
		more, err := statusesAt(cl, eps, o)
		if err != nil {
			notes = append(notes, fmt.Sprintf("could not ask the other members: %v", err))
		}
		for i, s := range more {
			names[s.Endpoint] = idOfHTTP(others, eps[i])
		}
		sts = append(sts, more...)
	}
	markLearners(sts, ms)
	return sts, notes
}

// uncovered returns the members of ms that sts do not cover: no answering
// node has their id, no endpoint that does not answer is named after them
// (names), and no endpoint has their HTTP address.
func uncovered(ms []client.MemberSpec, sts []client.EndpointStatus, names map[string]string) []client.MemberSpec {
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, s := range sts {
		if s.Err == nil {
			ids[s.Status.ID] = true
		} else if id := names[s.Endpoint]; id != "" {
			ids[id] = true
		}
		_, hostPort, _ := strings.Cut(s.Endpoint, "://")
		addrs[hostPort] = true
	}
	var out []client.MemberSpec
	for _, m := range ms {
		if !ids[m.ID] && (m.HTTP == "" || !addrs[m.HTTP]) {
			out = append(out, m)
		}
	}
	return out
}

// statusesAt asks the nodes at eps (host:port, with the scheme and
// credentials of cl's endpoints) for their status, within statusWait.
func statusesAt(cl *client.Client, eps []string, o *endpointOpts) ([]client.EndpointStatus, error) {
	scheme := "http"
	if first := cl.Endpoints(); len(first) > 0 {
		scheme, _, _ = strings.Cut(first[0], "://")
	}
	full := make([]string, len(eps))
	for i, ep := range eps {
		full[i] = scheme + "://" + ep
	}
	tc, token, err := o.credentials()
	if err != nil {
		return nil, err
	}
	mc, err := client.New(client.Config{Endpoints: full, TLS: tc, Token: token})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(o.timeout, statusWait))
	defer cancel()
	return mc.Statuses(ctx), nil
}

// anyAnswered reports whether a node of sts answered.
func anyAnswered(sts []client.EndpointStatus) bool {
	for _, s := range sts {
		if s.Err == nil {
			return true
		}
	}
	return false
}

// idOfHTTP is the id of the member of ms whose HTTP address is addr.
func idOfHTTP(ms []client.MemberSpec, addr string) string {
	for _, m := range ms {
		if m.HTTP == addr {
			return m.ID
		}
	}
	return ""
}

// markLearners shows as a learner each answering node that ms lists as
// one: a learner's own status says "follower", and the table marks it a
// learner only when the leader answers (and lists it among its followers).
func markLearners(sts []client.EndpointStatus, ms []client.Member) {
	learner := map[string]bool{}
	for _, m := range ms {
		learner[m.ID] = m.Role == client.RoleLearner
	}
	for i := range sts {
		if st := &sts[i].Status; sts[i].Err == nil && st.Role == "follower" && learner[st.ID] {
			st.Role = client.RoleLearner
		}
	}
}

// formatStatus renders trireme status's table in the mode of the first
// node that answered (the endpoints asked come first, then the other
// members): cluster.FormatStatus's for a single-leader cluster,
// formatMultiLeader's in multi-leader mode, formatLeaderless's in
// leaderless mode.
func formatStatus(sts []client.EndpointStatus, names map[string]string) string {
	for _, s := range sts {
		if s.Err != nil {
			continue
		}
		switch {
		case s.Status.MultiLeader():
			return formatMultiLeader(sts, names)
		case s.Status.Mode == client.ModeLeaderless:
			return formatLeaderless(sts, names)
		}
		break // the first node that answered is single-leader
	}
	return cluster.FormatStatus(sts, names)
}

// formatLeaderless renders a table of a leaderless cluster's nodes: the
// mode, the share of the key space each replicates (RING), the hints it
// holds for unreachable replicas (HINTS: the total, then per replica), its
// read repairs and anti-entropy repairs, its Merkle exchanges
// (exchanges/buckets compared/buckets that differed) and the peers it
// considers down; then a line with the replication factor and whether
// quorums are sloppy, as the first node that answered says. names maps
// endpoints to node ids for nodes that do not answer.
func formatLeaderless(sts []client.EndpointStatus, names map[string]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMODE\tRING\tHINTS\tREAD-REPAIRS\tAE-REPAIRS\tMERKLE\tDOWN\tENDPOINT")
	var first *client.LeaderlessInfo
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
		mode := st.Mode
		if mode == "" {
			mode = client.ModeSingleLeader
		}
		l := st.Leaderless
		if l == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t%s\n", st.ID, mode, s.Endpoint)
			continue
		}
		if first == nil {
			first = l
		}
		ring := "-"
		if share, ok := l.Ownership[st.ID]; ok {
			ring = fmt.Sprintf("%.1f%%", 100*share)
		}
		down := "-"
		if len(l.Down) > 0 {
			down = strings.Join(l.Down, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d/%d/%d\t%s\t%s\n", st.ID, mode, ring, hintsOf(l.HintsPending),
			l.ReadRepairs, l.AERepairs, l.AEExchanges, l.AEBucketsCompared, l.AEBucketsDiffer, down, s.Endpoint)
	}
	tw.Flush()
	if first != nil {
		sloppy := "strict quorums"
		if first.SloppyQuorum {
			sloppy = "sloppy quorums (hinted handoff)"
		}
		fmt.Fprintf(&b, "replication factor %d, %s\n", first.ReplicationFactor, sloppy)
	}
	return b.String()
}

// hintsOf renders the hints a node holds: the total, then per replica
// they are for, "5 (n2:4 n3:1)"; "0" for none.
func hintsOf(pending map[string]int) string {
	total := 0
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(pending)) {
		if n := pending[id]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%s:%d", id, n))
		}
	}
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, " "))
}

// silentAfter is how long since a peer was last heard before a multi-leader
// status row says that it is silent: its lag figures are as of then.
const silentAfter = time.Second

// formatMultiLeader renders a table of a multi-leader cluster's nodes: the
// mode, the end of the node's own stream (LAST), how far it is behind each
// peer's stream (STREAMS), its conflicts and clock clamps, and the largest
// clock offset it has seen in a peer's timestamps. names maps endpoints to
// node ids for nodes that do not answer.
func formatMultiLeader(sts []client.EndpointStatus, names map[string]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMODE\tLAST\tSTREAMS\tCONFLICTS\tCLAMPS\tCLOCK-OFFSET\tENDPOINT")
	for _, s := range sts {
		if s.Err != nil {
			id := names[s.Endpoint]
			if id == "" {
				id = "?"
			}
			fmt.Fprintf(tw, "%s\tdown\t-\t-\t-\t-\t-\t%s\n", id, s.Endpoint)
			continue
		}
		st := s.Status
		mode := st.Mode
		if mode == "" {
			mode = client.ModeSingleLeader
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", st.ID, mode, st.LastIndex, streamsOf(st.Streams),
			st.Conflicts, st.ClockClamps, maxClockOffset(st.Streams), s.Endpoint)
	}
	tw.Flush()
	return b.String()
}

// streamsOf renders a node's peer streams as "PEER:ENTRIES/MS ...": how
// far the node is behind each peer's stream, in entries and time, with
// "(silent 12s)" for a peer last heard over silentAfter ago and
// "(unheard)" for one not heard since the node started.
func streamsOf(streams []client.StreamInfo) string {
	if len(streams) == 0 {
		return "-"
	}
	parts := make([]string, len(streams))
	for i, p := range streams {
		parts[i] = fmt.Sprintf("%s:%d/%dms", p.Peer, p.LagEntries, p.LagMillis)
		switch {
		case p.LastContactMs < 0:
			parts[i] += "(unheard)"
		case time.Duration(p.LastContactMs)*time.Millisecond > silentAfter:
			parts[i] += fmt.Sprintf("(silent %s)", (time.Duration(p.LastContactMs) * time.Millisecond).Round(100*time.Millisecond))
		}
	}
	return strings.Join(parts, " ")
}

// maxClockOffset is the offset of largest magnitude among a node's peer
// streams, signed (positive: that peer's clock is ahead), or "-".
func maxClockOffset(streams []client.StreamInfo) string {
	if len(streams) == 0 {
		return "-"
	}
	best := 0.0
	for _, p := range streams {
		if math.Abs(p.ClockOffsetMs) > math.Abs(best) {
			best = p.ClockOffsetMs
		}
	}
	return fmt.Sprintf("%+.1fms", best)
}
