package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// memberView is the active configuration as the node's other goroutines see
// it (transport handlers, client APIs): replaced whole, never modified.
type memberView struct {
	cs    repl.ConfState
	index uint64 // index of the entry that set it (0: bootstrap)
	ids   map[repl.NodeID]bool
	// known: every member of every configuration seen since start. The
	// message filter admits them all: an uncommitted configuration that
	// left out X may be truncated by X's own leadership (see
	// repl.fromLeaderOrCandidate).
	known map[repl.NodeID]bool
}

func newMemberView(cs repl.ConfState, index uint64, prev *memberView) *memberView {
	v := &memberView{cs: cs, index: index, ids: make(map[repl.NodeID]bool, len(cs.Members)), known: map[repl.NodeID]bool{}}
	if prev != nil {
		for id := range prev.known {
			v.known[id] = true
		}
	}
	for _, m := range cs.Members {
		v.ids[m.ID] = true
		v.known[m.ID] = true
	}
	return v
}

func (v *memberView) isMember(id repl.NodeID) bool { return v.ids[id] }

// isKnown: a member of any configuration seen since start.
func (v *memberView) isKnown(id repl.NodeID) bool { return v.known[id] }

// bootstrapConf is the configuration of a cluster started from --cluster
// (and --http-peers/--resp-peers, --priority, Priorities): used until the
// store holds one from the log.
func (c *Config) bootstrapConf() repl.ConfState {
	cs := repl.ConfState{Members: make([]repl.Member, 0, len(c.Cluster))}
	for _, m := range c.Cluster {
		prio := 1
		if p, ok := c.Priorities[m.ID]; ok {
			prio = p
		}
		mem := repl.Member{ID: repl.NodeID(m.ID), Priority: prio, Peer: m.PeerAddr}
		if m.ID == c.ID {
			mem.Priority = c.Priority
			mem.HTTP, mem.RESP = c.HTTPAddr, c.RESPAddr
		} else if a, ok := c.PeerClients[m.ID]; ok {
			mem.HTTP, mem.RESP = a.HTTP, a.RESP
		}
		cs.Members = append(cs.Members, mem)
	}
	sortMembers(cs.Members)
	return cs
}

func sortMembers(ms []repl.Member) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].ID < ms[j-1].ID; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

// storedConf is the configuration the store holds at its applied index, or
// the bootstrap one if it holds none (a data directory from before
// membership changes, or a cluster that never changed).
func (n *Node) storedConf() (repl.ConfState, error) {
	b, err := n.store.Conf()
	if err != nil {
		return repl.ConfState{}, fmt.Errorf("node: read the configuration from the store: %w", err)
	}
	if b == nil {
		if n.cfg.JoinConf != nil {
			return n.cfg.JoinConf.Clone(), nil
		}
		return n.cfg.bootstrapConf(), nil
	}
	cs, err := repl.DecodeConf(b)
	if err != nil {
		return repl.ConfState{}, fmt.Errorf("node: the configuration in the store does not decode: %w", err)
	}
	return cs, nil
}

// noteConf publishes a new active configuration: the message filter, the
// transport's peer addresses, and whether this node was removed (the
// configuration that removes it is committed).
func (n *Node) noteConf(st *repl.Status) {
	v := n.view.Load()
	if v != nil && v.index == st.ConfIndex && n.removed.Load() == n.isRemoved(st, v) {
		return
	}
	if v == nil || v.index != st.ConfIndex {
		v = newMemberView(st.Conf, st.ConfIndex, v)
		n.view.Store(v)
		if pu, ok := n.tr.(peerUpdater); ok {
			pu.SetPeers(peerAddrs(st.Conf, n.id))
		}
		n.log.Info("configuration in effect", "index", st.ConfIndex, "voters", len(st.Conf.Voters()), "members", len(st.Conf.Members))
	}
	removed := n.isRemoved(st, v)
	if removed && !n.removed.Load() {
		n.log.Warn("this node was removed from the cluster: it no longer serves", "index", st.ConfIndex)
	}
	n.removed.Store(removed)
}

// isRemoved: the configuration in effect leaves this node out, it is
// committed, and this node has caught up with the leader's commit index (a
// node that joined replays older configurations that never held it).
func (n *Node) isRemoved(st *repl.Status, v *memberView) bool {
	return !v.isMember(n.id) && st.ConfIndex <= st.Commit && st.Commit >= st.LeaderCommit && st.Role != repl.RoleLeader
}

// peerAddrs maps the members of cs other than self to their peer addresses.
func peerAddrs(cs repl.ConfState, self repl.NodeID) map[transport.NodeID]string {
	peers := make(map[transport.NodeID]string, len(cs.Members))
	for _, m := range cs.Members {
		if m.ID != self && m.Peer != "" {
			peers[transport.NodeID(m.ID)] = m.Peer
		}
	}
	return peers
}

// peerUpdater is a transport whose peer addresses can change.
type peerUpdater interface {
	SetPeers(map[transport.NodeID]string)
}

// joinFile records, in the data directory of a node that joined a running
// cluster, the cluster id and the configuration that added it: a restart
// before the log or a snapshot gave it a configuration must not fall back to
// --cluster (which names only this node) and elect itself alone.
const joinFile = "join.json"

// JoinState is what joinFile holds.
type JoinState struct {
	ClusterID string          `json:"cluster_id"`
	Conf      json.RawMessage `json:"conf"` // repl.EncodeConf
}

// LoadJoin reads the join record of dataDir: nil if the node never joined
// through --join.
func LoadJoin(dataDir string) (*JoinState, repl.ConfState, error) {
	path := filepath.Join(dataDir, joinFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, repl.ConfState{}, nil
	}
	if err != nil {
		return nil, repl.ConfState{}, fmt.Errorf("node: read %s: %w", path, err)
	}
	var js JoinState
	if err := json.Unmarshal(b, &js); err != nil {
		return nil, repl.ConfState{}, fmt.Errorf("node: %s is corrupt: %w", path, err)
	}
	cs, err := repl.DecodeConf(js.Conf)
	if err != nil {
		return nil, repl.ConfState{}, fmt.Errorf("node: %s: %w", path, err)
	}
	return &js, cs, nil
}

// saveJoin writes the join record once (a later start keeps the first).
func saveJoin(dataDir, clusterID string, cs repl.ConfState) error {
	if _, err := os.Stat(filepath.Join(dataDir, joinFile)); err == nil {
		return nil
	}
	return writeFileSync(dataDir, joinFile, JoinState{ClusterID: clusterID, Conf: repl.EncodeConf(cs)})
}
