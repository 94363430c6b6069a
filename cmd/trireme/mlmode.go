package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/multileader/mlnode"
	"github.com/trireme-db/trireme/internal/node"
	"github.com/trireme-db/trireme/internal/transport"
)

// Replication modes (--mode).
const (
	modeSingleLeader = "single-leader"
	modeMultiLeader  = mlnode.Mode
)

// mlOpts are the multi-leader flags of trireme node.
type mlOpts struct {
	conflicts      string
	maxSiblings    int
	maxClockOffset time.Duration
}

func (o *mlOpts) register(fs *flag.FlagSet) {
	d := mlnode.DefaultConfig()
	fs.StringVar(&o.conflicts, "conflicts", d.Conflicts.String(), "with --mode multi-leader: how concurrent writes to a key are resolved: lww (last writer by hybrid logical clock wins; the others are recorded in /v1/conflicts) or siblings (every concurrent value is kept and returned with a causal context)")
	fs.IntVar(&o.maxSiblings, "max-siblings", d.MaxSiblings, "with --mode multi-leader --conflicts siblings: most concurrent values a key keeps; the excess is dropped by rank and recorded as a conflict")
	fs.DurationVar(&o.maxClockOffset, "max-clock-offset", d.MaxClockOffset, "with --mode multi-leader: a peer's timestamp further ahead of this node's clock is applied (so every node converges) but this node's clock does not follow it; each is counted (status clock_clamps); 0 = no bound")
}

// singleLeaderFlags are the flags that mean nothing to a multi-leader
// node; giving one with --mode multi-leader is an error, not a silent no-op.
var singleLeaderFlags = []string{"heartbeat", "election-timeout", "failure-detector", "election-timeout-min",
	"election", "coordinator", "coordinator-ttl", "heartbeat-pause", "priority", "priorities",
	"idempotency-window", "idempotency-max-keys", "session-wait", "disk-reserve", "log-retain",
	"join", "peer", "learner", "replicas"}

var multiLeaderFlags = []string{"conflicts", "max-siblings", "max-clock-offset"}

// modeFlags lists, per mode, the flags only that mode takes.
var modeFlags = map[string][]string{
	modeSingleLeader: singleLeaderFlags,
	modeMultiLeader:  multiLeaderFlags,
	modeLeaderless:   leaderlessFlags,
}

// checkModeFlags refuses flags of another mode, and unknown modes.
func checkModeFlags(mode string, set map[string]bool) error {
	if _, ok := modeFlags[mode]; !ok {
		return fmt.Errorf("--mode %q: want single-leader, multi-leader or leaderless", mode)
	}
	for _, other := range []string{modeSingleLeader, modeMultiLeader, modeLeaderless} {
		if other == mode {
			continue
		}
		for _, f := range modeFlags[other] {
			if set[f] && !slices.Contains(modeFlags[mode], f) {
				return fmt.Errorf("--%s applies to --mode %s only", f, other)
			}
		}
	}
	return nil
}

// parseMLAck parses --ack for a multi-leader node: local (the default),
// all, majority, or a number K of other nodes.
func parseMLAck(s string, peers int) (api.Ack, error) {
	if k, err := strconv.Atoi(s); err == nil {
		if k < 1 || k > peers {
			return api.Ack{}, fmt.Errorf("--ack %d: want 1 to %d (the other nodes), or local, all or majority", k, peers)
		}
		return api.Ack{Mode: api.AckSemiSync, Replicas: k}, nil
	}
	switch s {
	case "local", "all", "majority":
		m, err := api.ParseAckMode(s)
		return api.Ack{Mode: m}, err
	}
	return api.Ack{}, fmt.Errorf("--ack %q: with --mode multi-leader want local, all, majority or a number of other nodes", s)
}

// mlConfig builds a multi-leader node's configuration from the shell's
// (identity, addresses, peers, TLS, logging, metrics) and the flags.
func mlConfig(cfg node.Config, o *nodeOpts) (mlnode.Config, error) {
	c := mlnode.DefaultConfig()
	c.ID, c.DataDir, c.ClusterID = cfg.ID, cfg.DataDir, cfg.ResolvedClusterID()
	for _, m := range cfg.Cluster {
		c.Cluster = append(c.Cluster, mlnode.Member{ID: m.ID, PeerAddr: m.PeerAddr})
	}
	c.PeerTLS, c.PeerListener = cfg.PeerTLS, cfg.PeerListener
	c.PeerClients = map[string]transport.PeerInfo{}
	for id, a := range cfg.PeerClients {
		c.PeerClients[id] = transport.PeerInfo{ID: transport.NodeID(id), HTTPAddr: a.HTTP, RESPAddr: a.RESP}
	}
	c.HTTPAddr, c.RESPAddr = cfg.HTTPAddr, cfg.RESPAddr
	c.WriteTimeout, c.MaxValueBytes = cfg.WriteTimeout, cfg.MaxValueBytes
	c.Registerer, c.Logger = cfg.Registerer, cfg.Logger
	var err error
	if c.Conflicts, err = mlnode.ParsePolicy(o.ml.conflicts); err != nil {
		return c, err
	}
	c.MaxSiblings, c.MaxClockOffset = o.ml.maxSiblings, o.ml.maxClockOffset
	ack := o.ack
	if !o.set["ack"] {
		ack = "local"
	}
	if c.DefaultAck, err = parseMLAck(ack, len(cfg.Cluster)-1); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, errors.New(strings.TrimPrefix(err.Error(), mlnode.ErrConfig.Error()+": "))
	}
	return c, nil
}
