// Package fixedcluster is what the engines whose members are fixed when
// the cluster is created (multi-leader and leaderless) share: the member
// list, the peer transport's configuration for it, and the membership
// calls of api.Service, which list the members and refuse changes.
package fixedcluster

import (
	"context"
	"fmt"
	"net"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/transport"
)

// Member is one node of the cluster.
type Member struct {
	ID       string
	PeerAddr string // host:port for node-to-node traffic
}

// Cluster is one node's view of its fixed cluster.
type Cluster struct {
	Mode      string // the engine's, for messages: "multi-leader", "leaderless"
	Self      string
	Nodes     []Member // every node, Self included
	ClusterID string

	HTTPAddr, RESPAddr string                        // Self's client addresses (advertised)
	PeerClients        map[string]transport.PeerInfo // the others' client addresses
	PeerTLS            *pki.Member                   // nil: plaintext (tests)
	PeerListener       net.Listener                  // the already-open peer listener, if any
}

// TCPConfig is the peer transport's configuration for the cluster, with
// the transport's defaults for the rest; the caller sets the frame bound
// its messages need and the logger.
func (c *Cluster) TCPConfig() transport.TCPConfig {
	tc := transport.DefaultTCPConfig()
	tc.ClusterID = c.ClusterID
	tc.Self = transport.PeerInfo{ID: transport.NodeID(c.Self), HTTPAddr: c.HTTPAddr, RESPAddr: c.RESPAddr}
	tc.Peers = map[transport.NodeID]string{}
	for _, m := range c.Nodes {
		if m.ID == c.Self {
			tc.ListenAddr = m.PeerAddr
		} else {
			tc.Peers[transport.NodeID(m.ID)] = m.PeerAddr
		}
	}
	tc.Listener, tc.TLS = c.PeerListener, c.PeerTLS
	tc.Clients = map[transport.NodeID]transport.PeerInfo{}
	for id, p := range c.PeerClients {
		tc.Clients[transport.NodeID(id)] = p
	}
	return tc
}

// Members implements api.Service: every node, each a voter (every node
// takes writes), with the client addresses known for it.
func (c *Cluster) Members(context.Context) ([]api.MemberStatus, error) {
	out := make([]api.MemberStatus, 0, len(c.Nodes))
	for _, m := range c.Nodes {
		ms := api.MemberStatus{MemberSpec: api.MemberSpec{ID: m.ID, Peer: m.PeerAddr, Role: api.RoleVoter}, State: api.MemberUnknown}
		if m.ID == c.Self {
			ms.HTTP, ms.RESP = c.HTTPAddr, c.RESPAddr
		} else if p, ok := c.PeerClients[m.ID]; ok {
			ms.HTTP, ms.RESP = p.HTTPAddr, p.RESPAddr
		}
		out = append(out, ms)
	}
	return out, nil
}

func (c *Cluster) fixed() error {
	return fmt.Errorf("%w: a %s cluster's members are fixed when it is created (--cluster)", api.ErrNotSupported, c.Mode)
}

// AddMember implements api.Service: not offered.
func (c *Cluster) AddMember(context.Context, api.MemberSpec) ([]api.MemberStatus, error) {
	return nil, c.fixed()
}

// PromoteMember implements api.Service: not offered.
func (c *Cluster) PromoteMember(context.Context, string) ([]api.MemberStatus, error) {
	return nil, c.fixed()
}

// RemoveMember implements api.Service: not offered.
func (c *Cluster) RemoveMember(context.Context, string) ([]api.MemberStatus, error) {
	return nil, c.fixed()
}
