package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/node"
	"github.com/trireme-db/trireme/internal/repl"
)

// joinSpec returns the member that trireme node --join asks to add: this
// node's --id, its peer address (its own entry in --cluster), its --http
// and --resp addresses, as a learner. It names the flag at fault.
func joinSpec(o *nodeOpts) (api.MemberSpec, error) {
	if o.join == "" {
		if o.learner {
			return api.MemberSpec{}, errors.New("--learner applies to --join only")
		}
		return api.MemberSpec{}, nil
	}
	if _, err := joinEndpoint(o.join); err != nil {
		return api.MemberSpec{}, err
	}
	if o.id == "" {
		return api.MemberSpec{}, errors.New("--id is required")
	}
	spec := api.MemberSpec{ID: o.id, Peer: o.peer, HTTP: o.httpAddr, RESP: o.respAddr, Role: api.RoleLearner}
	if o.cluster != "" {
		ms, err := node.ParseCluster(o.cluster)
		if err != nil {
			return api.MemberSpec{}, err
		}
		for _, m := range ms {
			if m.ID != o.id {
				continue
			}
			if spec.Peer != "" && spec.Peer != m.PeerAddr {
				return api.MemberSpec{}, fmt.Errorf("--peer %s differs from this node's --cluster entry %s=%s", spec.Peer, o.id, m.PeerAddr)
			}
			spec.Peer = m.PeerAddr
		}
	}
	if spec.Peer == "" {
		return api.MemberSpec{}, fmt.Errorf("--join needs this node's peer address: give --peer HOST:PORT (or --cluster %s=HOST:PORT)", o.id)
	}
	if err := spec.Validate(); err != nil {
		return api.MemberSpec{}, fmt.Errorf("--join: this node as a member (--id, its --cluster entry, --http, --resp): %w", err)
	}
	return spec, nil
}

// joinEndpoint checks --join: the HTTP address of a member, http:// or
// https://, or a bare host:port (https when a client TLS configuration is
// given, as for the client commands). It returns it trimmed.
func joinEndpoint(s string) (string, error) {
	e := strings.TrimSpace(s)
	u, err := url.Parse(e)
	if !strings.Contains(e, "://") {
		u, err = url.Parse("http://" + e)
	}
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return "", fmt.Errorf("--join %q: want a member's HTTP address, http://HOST:PORT or https://HOST:PORT", s)
	}
	return e, nil
}

// joinRetryFor bounds how long joinCluster retries while the cluster has
// no leader or the member does not answer.
const joinRetryFor = 30 * time.Second

// joinStatusRetry bounds how long trireme node --join waits for the member
// it names to answer (a variable for tests).
var joinStatusRetry = joinRetryFor

// joinCluster asks the member whose HTTP API is at joinURL to add spec to
// the cluster as a learner (whatever spec.Role says: a node that should
// vote is promoted once it has caught up), and returns the members once the
// change is committed. tc and token are the client TLS configuration (nil:
// the system's roots) and the API token ("" = none); the member forwards
// the change to the leader, or names it. A node that was added before (a
// restart after a join) is not an error: if a member has spec's id and
// peer address already, the members are returned as they are.
func joinCluster(ctx context.Context, joinURL string, spec api.MemberSpec, tc *tls.Config, token string) ([]api.MemberStatus, error) {
	ep, err := joinEndpoint(joinURL)
	if err != nil {
		return nil, err
	}
	spec.Role = api.RoleLearner
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("joining through %s: %w", ep, err)
	}
	cl, err := client.New(client.Config{Endpoints: []string{ep}, TLS: tc, Token: token, RetryFor: joinRetryFor})
	if err != nil {
		return nil, fmt.Errorf("joining through %s: %w", ep, err)
	}
	cs := client.MemberSpec{ID: spec.ID, Peer: spec.Peer, HTTP: spec.HTTP, RESP: spec.RESP, Role: string(spec.Role)}
	ms, err := cl.AddMember(ctx, cs)
	// Another change in progress (another node joining): it commits within
	// a round trip or two; retry until it does or ctx ends.
	// An unknown outcome (the leader changed meanwhile) is retried too: the
	// add is idempotent, and a committed one answers with the members.
	for wait := 100 * time.Millisecond; errors.Is(err, client.ErrChangeInProgress) || errors.Is(err, client.ErrOutcomeUnknown) ||
		errors.Is(err, client.ErrNoLeader); wait = min(2*wait, 2*time.Second) {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("joining through %s as %s: %w (gave up: %v)", ep, spec.ID, err, ctx.Err())
		case <-t.C:
		}
		ms, err = cl.AddMember(ctx, cs)
	}
	var ce *client.Error
	if errors.As(err, &ce) && strings.Contains(ce.Message, api.ErrDuplicateMember.Error()) {
		if cur, lerr := cl.Members(ctx); lerr == nil {
			for _, m := range cur {
				if m.ID == spec.ID && m.Peer == spec.Peer {
					return memberStatuses(cur), nil
				}
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("joining through %s as %s: %w", ep, spec.ID, err)
	}
	return memberStatuses(ms), nil
}

// memberStatuses converts the client's member list to the API's.
func memberStatuses(ms []client.Member) []api.MemberStatus {
	out := make([]api.MemberStatus, len(ms))
	for i, m := range ms {
		out[i] = api.MemberStatus{
			MemberSpec: api.MemberSpec{ID: m.ID, Peer: m.Peer, HTTP: m.HTTP, RESP: m.RESP, Role: api.MemberRole(m.Role)},
			MatchIndex: m.MatchIndex, LagEntries: m.LagEntries, State: m.State,
			SnapshotBytesSent: m.SnapshotBytesSent, SnapshotBytesTotal: m.SnapshotBytesTotal,
		}
	}
	return out
}

// prepareJoin resolves --join before the node starts. A data directory that
// joined before keeps the cluster it recorded (a restart asks nothing);
// otherwise the member at --join is asked to add this node as a learner.
// It rewrites o.cluster to every member's peer address and returns the
// cluster's id and the configuration that added this node.
func prepareJoin(ctx context.Context, o *nodeOpts, logger *slog.Logger) (string, *repl.ConfState, error) {
	if o.data == "" {
		return "", nil, errors.New("--data is required")
	}
	js, cs, err := node.LoadJoin(o.data)
	if err != nil {
		return "", nil, err
	}
	if js != nil {
		logger.Info("this data directory joined the cluster before: not asking again", "cluster_id", js.ClusterID, "members", len(cs.Members))
		o.cluster = clusterFlag(cs)
		return js.ClusterID, &cs, nil
	}
	spec, err := joinSpec(o)
	if err != nil {
		return "", nil, err
	}
	tc, token, err := joinCredentials()
	if err != nil {
		return "", nil, err
	}
	ep, err := joinEndpoint(o.join)
	if err != nil {
		return "", nil, err
	}
	cl, err := client.New(client.Config{Endpoints: []string{ep}, TLS: tc, Token: token, RetryFor: joinRetryFor})
	if err != nil {
		return "", nil, fmt.Errorf("--join %s: %w", ep, err)
	}
	st, err := cl.Status(ctx, ep)
	// The member may be restarting: retry for a while.
	for wait, deadline := 200*time.Millisecond, time.Now().Add(joinStatusRetry); err != nil && time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
		logger.Info("the member at --join does not answer yet; retrying", "join", ep, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", nil, fmt.Errorf("--join %s: reading the cluster's status: %w", ep, err)
		case <-t.C:
		}
		st, err = cl.Status(ctx, ep)
	}
	if err != nil {
		return "", nil, fmt.Errorf("--join %s: reading the cluster's status: %w", ep, err)
	}
	if st.ClusterID == "" {
		return "", nil, fmt.Errorf("--join %s: the member does not report its cluster id (an older version?)", ep)
	}
	if o.clusterID != "" && o.clusterID != st.ClusterID {
		return "", nil, fmt.Errorf("--cluster-id %s, but the member at --join %s belongs to cluster %s", o.clusterID, ep, st.ClusterID)
	}
	logger.Info("joining the cluster as a learner", "through", ep, "cluster_id", st.ClusterID, "peer", spec.Peer)
	ms, err := joinCluster(ctx, ep, spec, tc, token)
	if err != nil {
		return "", nil, err
	}
	conf := repl.ConfState{}
	for _, m := range ms {
		conf.Members = append(conf.Members, repl.Member{ID: repl.NodeID(m.ID), Learner: m.Role == api.RoleLearner,
			Priority: 1, Peer: m.Peer, HTTP: m.HTTP, RESP: m.RESP})
	}
	if _, ok := conf.Member(repl.NodeID(spec.ID)); !ok {
		return "", nil, fmt.Errorf("--join %s: the member list after the change does not hold %s", ep, spec.ID)
	}
	if err := conf.Validate(); err != nil {
		return "", nil, fmt.Errorf("--join %s: the member list: %w", ep, err)
	}
	o.cluster = clusterFlag(conf)
	return st.ClusterID, &conf, nil
}

// clusterFlag renders cs as --cluster does: id=peer,...
func clusterFlag(cs repl.ConfState) string {
	parts := make([]string, 0, len(cs.Members))
	for _, m := range cs.Members {
		parts = append(parts, string(m.ID)+"="+m.Peer)
	}
	return strings.Join(parts, ",")
}

// joinCredentials: the join request is an API call to a member; it uses
// $TRIREME_CACERT and $TRIREME_TOKEN when the cluster's API needs them.
func joinCredentials() (*tls.Config, string, error) {
	token := os.Getenv(envToken)
	ca := os.Getenv(envCACert)
	if ca == "" {
		return nil, token, nil
	}
	tc, err := client.TLSConfig(ca, "", "")
	if err != nil {
		return nil, "", fmt.Errorf("$%s: %w", envCACert, err)
	}
	return tc, token, nil
}

// promoteSelf asks, until it succeeds or ctx ends, that this node
// (a learner that joined) become a voter; the leader refuses while it is
// too far behind (the error says how far), so the first tries are expected
// to fail.
func promoteSelf(ctx context.Context, n *node.Node, id string, logger *slog.Logger) {
	every := time.NewTicker(time.Second)
	defer every.Stop()
	var last time.Time
	for {
		_, err := n.PromoteMember(ctx, id)
		switch {
		case err == nil:
			logger.Info("promoted to voter after catching up", "id", id)
			return
		case errors.Is(err, api.ErrAlreadyVoter):
			return
		case errors.Is(err, api.ErrRemoved), errors.Is(err, api.ErrStopped), ctx.Err() != nil:
			return
		}
		if time.Since(last) >= 10*time.Second {
			logger.Info("not promoted yet: catching up", "reason", err)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-every.C:
		}
	}
}
