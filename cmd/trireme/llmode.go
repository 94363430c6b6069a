package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/leaderless/llnode"
	"github.com/trireme-db/trireme/internal/node"
	"github.com/trireme-db/trireme/internal/transport"
)

const modeLeaderless = llnode.Mode

// llOpts are the leaderless flags of trireme node.
type llOpts struct {
	replicationFactor int
	w, r              string
	sloppy            bool
	aeRate            int
	tombstoneGrace    time.Duration
}

var leaderlessFlags = []string{"replication-factor", "w", "r", "sloppy-quorum", "anti-entropy-rate", "tombstone-grace"}

func (o *llOpts) register(fs *flag.FlagSet) {
	d := llnode.DefaultConfig()
	fs.IntVar(&o.replicationFactor, "replication-factor", d.ReplicationFactor, "with --mode leaderless: N, the nodes that hold each key (at most the cluster's size), chosen by a consistent-hash ring")
	fs.StringVar(&o.w, "w", "quorum", "with --mode leaderless: default W, the replicas that must hold a write durably before it is acknowledged: a number, one, quorum (N/2+1) or all; a request's w= wins")
	fs.StringVar(&o.r, "r", "quorum", "with --mode leaderless: default R, the replicas a read waits for: a number, one, quorum or all; a request's r= wins")
	fs.BoolVar(&o.sloppy, "sloppy-quorum", d.SloppyQuorum, "with --mode leaderless: when a key's home replica is unreachable, the next reachable node takes its copy as a durable hint and hands it over when it is back")
	fs.IntVar(&o.aeRate, "anti-entropy-rate", d.AntiEntropyRate, "with --mode leaderless: keys per second this node sends at most in anti-entropy (Merkle-tree) exchanges with the other replicas; 0 = off")
	fs.DurationVar(&o.tombstoneGrace, "tombstone-grace", d.TombstoneGrace, "with --mode leaderless: a deleted key's tombstone is collected once every replica has it and it is at least this old")
}

// llConfig builds a leaderless node's configuration from the shell's and
// the flags.
func llConfig(cfg node.Config, o *nodeOpts) (llnode.Config, error) {
	c := llnode.DefaultConfig()
	if o.set["ack"] || o.set["replicas"] {
		return c, errors.New("--ack: a leaderless write is acknowledged by W replicas: use --w (and w= per request)")
	}
	c.ID, c.DataDir, c.ClusterID = cfg.ID, cfg.DataDir, cfg.ResolvedClusterID()
	for _, m := range cfg.Cluster {
		c.Cluster = append(c.Cluster, llnode.Member{ID: m.ID, PeerAddr: m.PeerAddr})
	}
	c.PeerTLS, c.PeerListener = cfg.PeerTLS, cfg.PeerListener
	c.PeerClients = map[string]transport.PeerInfo{}
	for id, a := range cfg.PeerClients {
		c.PeerClients[id] = transport.PeerInfo{ID: transport.NodeID(id), HTTPAddr: a.HTTP, RESPAddr: a.RESP}
	}
	c.HTTPAddr, c.RESPAddr = cfg.HTTPAddr, cfg.RESPAddr
	c.RequestTimeout, c.MaxValueBytes = cfg.WriteTimeout, cfg.MaxValueBytes
	c.Registerer, c.Logger = cfg.Registerer, cfg.Logger
	c.ReplicationFactor, c.SloppyQuorum = o.ll.replicationFactor, o.ll.sloppy
	c.AntiEntropyRate, c.TombstoneGrace = o.ll.aeRate, o.ll.tombstoneGrace
	var err error
	if c.DefaultW, err = api.ParseQuorum(o.ll.w); err != nil {
		return c, fmt.Errorf("--w: %v", err)
	}
	if c.DefaultR, err = api.ParseQuorum(o.ll.r); err != nil {
		return c, fmt.Errorf("--r: %v", err)
	}
	if err := c.Validate(); err != nil {
		return c, errors.New(strings.TrimPrefix(err.Error(), llnode.ErrConfig.Error()+": "))
	}
	return c, nil
}
