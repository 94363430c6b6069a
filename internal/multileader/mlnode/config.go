package mlnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/fixedcluster"
	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/transport"
)

// ErrConfig is returned (wrapped) for a bad configuration.
var ErrConfig = errors.New("mlnode: bad configuration")

// Member is one node of the cluster.
type Member = fixedcluster.Member

// Config configures one multi-leader node.
type Config struct {
	ID      string
	DataDir string
	// Cluster lists every node, this one included. Every node accepts
	// writes; membership is fixed for the cluster's life (for now).
	Cluster []Member
	// ClusterID is the cluster's identity, checked by peers and bound into
	// causal contexts (required; the shell derives it like a single-leader
	// node's).
	ClusterID string
	// PeerTLS authenticates peers (nil: plaintext, tests). PeerListener,
	// if set, is the already-open peer listener.
	PeerTLS      *pki.Member
	PeerListener net.Listener
	// PeerClients: other members' client addresses, shown in status.
	PeerClients map[string]transport.PeerInfo
	// HTTPAddr and RESPAddr are this node's client addresses (advertised).
	HTTPAddr, RESPAddr string
	// Transport, if set, is used instead of a TCP transport (tests).
	Transport transport.Transport

	// Conflicts is the policy for concurrent writes to one key (--conflicts).
	Conflicts multileader.Policy
	// MaxSiblings bounds the values a key keeps under the siblings policy;
	// the excess is dropped by rank and recorded as a conflict.
	MaxSiblings int
	// MaxClockOffset: a peer timestamp further ahead of this node's clock
	// is applied (so all nodes converge) but not followed by this node's
	// clock, and is reported (status clock_clamps, metrics).
	MaxClockOffset time.Duration
	// Tick is the protocol's time step (heartbeats every 5 ticks,
	// retransmission after 20). Default 10ms.
	Tick time.Duration
	// DefaultAck is the ack of writes that ask for the default: AckAsync
	// is "local" (durable on this node).
	DefaultAck api.Ack
	// WriteTimeout bounds a write waiting for other nodes (ack=K, all).
	WriteTimeout time.Duration
	// MaxValueBytes is the largest value accepted.
	MaxValueBytes int
	// MaxConflicts bounds the conflict log kept (oldest dropped, counted).
	MaxConflicts int

	Registerer prometheus.Registerer // nil: a registry of its own
	Logger     *slog.Logger
}

// DefaultConfig returns the defaults for everything but identity and addresses.
func DefaultConfig() Config {
	return Config{
		Conflicts:      multileader.LWW,
		MaxSiblings:    8,
		MaxClockOffset: 500 * time.Millisecond,
		Tick:           10 * time.Millisecond,
		DefaultAck:     api.Ack{Mode: api.AckAsync},
		WriteTimeout:   5 * time.Second,
		MaxValueBytes:  1 << 20,
		MaxConflicts:   100_000,
	}
}

// ParsePolicy parses --conflicts: "lww" or "siblings".
func ParsePolicy(s string) (multileader.Policy, error) {
	switch s {
	case "lww":
		return multileader.LWW, nil
	case "siblings":
		return multileader.Siblings, nil
	}
	return 0, fmt.Errorf("%w: --conflicts %q: want lww or siblings", ErrConfig, s)
}

// Validate checks the config, naming the flag at fault.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.ID == "":
		return bad("--id is required")
	case c.DataDir == "":
		return bad("--data is required")
	case c.ClusterID == "":
		return bad("no cluster id")
	case c.MaxSiblings < 1:
		return bad("--max-siblings %d: want >= 1", c.MaxSiblings)
	case c.MaxClockOffset < 0:
		return bad("--max-clock-offset %v: want >= 0 (0: no bound)", c.MaxClockOffset)
	case c.Tick < time.Millisecond:
		return bad("tick %v: want >= 1ms", c.Tick)
	case c.WriteTimeout <= 0:
		return bad("--write-timeout %v: want > 0", c.WriteTimeout)
	case c.MaxValueBytes < 1:
		return bad("--max-value-bytes %d: want >= 1", c.MaxValueBytes)
	case c.MaxConflicts < 1:
		return bad("max conflicts %d: want >= 1", c.MaxConflicts)
	}
	self := false
	seen := map[string]bool{}
	for _, m := range c.Cluster {
		if seen[m.ID] {
			return bad("--cluster: %q twice", m.ID)
		}
		seen[m.ID] = true
		self = self || m.ID == c.ID
	}
	if !self {
		return bad("--id %q is not in --cluster", c.ID)
	}
	if _, _, err := ackMode(c.DefaultAck, len(c.Cluster)-1); err != nil {
		return bad("--ack: %v", err)
	}
	return nil
}
