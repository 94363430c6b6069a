package llnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/fixedcluster"
	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/transport"
)

// ErrConfig is returned (wrapped) for a bad configuration.
var ErrConfig = errors.New("llnode: bad configuration")

// Member is one node of the cluster.
type Member = fixedcluster.Member

// Config configures one leaderless node.
type Config struct {
	ID      string
	DataDir string
	// Cluster lists every node, this one included; it is the ring. Fixed
	// for the cluster's life (for now).
	Cluster   []Member
	ClusterID string // bound into causal contexts (required)

	PeerTLS      *pki.Member  // nil: plaintext (tests)
	PeerListener net.Listener // the already-open peer listener, if any
	PeerClients  map[string]transport.PeerInfo
	HTTPAddr     string
	RESPAddr     string
	Transport    transport.Transport // tests: used instead of TCP

	// ReplicationFactor is N, the replicas of each key (--replication-factor).
	ReplicationFactor int
	// DefaultW and DefaultR are the quorums of requests that name none.
	DefaultW, DefaultR api.Quorum
	// SloppyQuorum: copies for unreachable home replicas go to stand-ins
	// as hints (--sloppy-quorum).
	SloppyQuorum bool
	// AntiEntropyRate bounds the keys one node sends per second in
	// anti-entropy exchanges (--anti-entropy-rate); 0 turns it off.
	AntiEntropyRate int
	// AntiEntropyInterval is the time between two exchanges.
	AntiEntropyInterval time.Duration
	// MaxHints bounds the hints held for unreachable replicas.
	MaxHints int
	// TombstoneGrace: a tombstone is at least this old before it is
	// collected (and every replica must have it).
	TombstoneGrace time.Duration
	// PeerDown: a peer not heard from for this long is unreachable.
	PeerDown time.Duration
	// Tick is the protocol's time step. Default 10ms.
	Tick time.Duration
	// RequestTimeout bounds a request waiting for its quorum.
	RequestTimeout time.Duration
	MaxValueBytes  int

	Registerer prometheus.Registerer // nil: a registry of its own
	Logger     *slog.Logger
}

// DefaultConfig returns the defaults for everything but identity and addresses.
func DefaultConfig() Config {
	return Config{
		ReplicationFactor:   3,
		SloppyQuorum:        true,
		AntiEntropyRate:     4000,
		AntiEntropyInterval: 500 * time.Millisecond,
		MaxHints:            100_000,
		TombstoneGrace:      10 * time.Second,
		PeerDown:            500 * time.Millisecond,
		Tick:                10 * time.Millisecond,
		RequestTimeout:      2 * time.Second,
		MaxValueBytes:       1 << 20,
	}
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
	case c.ReplicationFactor < 1 || c.ReplicationFactor > len(c.Cluster):
		return bad("--replication-factor %d: want 1..%d (the cluster's size)", c.ReplicationFactor, len(c.Cluster))
	case c.AntiEntropyRate < 0:
		return bad("--anti-entropy-rate %d: want >= 0 (0: off)", c.AntiEntropyRate)
	case c.AntiEntropyInterval < c.Tick:
		return bad("anti-entropy interval %v: want >= the tick", c.AntiEntropyInterval)
	case c.MaxHints < 1:
		return bad("max hints %d: want >= 1", c.MaxHints)
	case c.TombstoneGrace <= c.RequestTimeout:
		// A write still in flight when a tombstone is confirmed everywhere
		// could land after the collection and bring the old value back;
		// the grace outlasts any request (see leaderless/DESIGN.md).
		return bad("--tombstone-grace %v: want more than the request timeout (%v)", c.TombstoneGrace, c.RequestTimeout)
	case c.Tick < time.Millisecond:
		return bad("tick %v: want >= 1ms", c.Tick)
	case c.PeerDown < 2*c.Tick:
		return bad("peer-down %v: want >= 2 ticks", c.PeerDown)
	case c.RequestTimeout <= 0:
		return bad("--write-timeout %v: want > 0", c.RequestTimeout)
	case c.MaxValueBytes < 1:
		return bad("--max-value-bytes %d: want >= 1", c.MaxValueBytes)
	}
	if _, err := c.DefaultW.Resolve(c.ReplicationFactor); err != nil {
		return bad("default W: %v", err)
	}
	if _, err := c.DefaultR.Resolve(c.ReplicationFactor); err != nil {
		return bad("default R: %v", err)
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
	return nil
}
