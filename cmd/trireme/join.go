package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/node"
)

// errJoinNotWired: trireme node parses --join and --learner, but node
// start-up does not join yet.
var errJoinNotWired = errors.New("joining a running cluster is not supported by this build's node start-up yet (online membership changes are not wired in); start the node with the full --cluster list, or add it with trireme member add")

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
	spec := api.MemberSpec{ID: o.id, HTTP: o.httpAddr, RESP: o.respAddr, Role: api.RoleLearner}
	if o.cluster != "" {
		ms, err := node.ParseCluster(o.cluster)
		if err != nil {
			return api.MemberSpec{}, err
		}
		for _, m := range ms {
			if m.ID == o.id {
				spec.Peer = m.PeerAddr
			}
		}
	}
	if spec.Peer == "" {
		return api.MemberSpec{}, fmt.Errorf("--join needs this node's peer address: give --cluster %s=HOST:PORT", o.id)
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
	ms, err := cl.AddMember(ctx, client.MemberSpec{ID: spec.ID, Peer: spec.Peer, HTTP: spec.HTTP, RESP: spec.RESP, Role: string(spec.Role)})
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
