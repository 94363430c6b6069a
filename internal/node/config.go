package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/store"
	"github.com/trireme-db/trireme/internal/transport"
	"github.com/trireme-db/trireme/internal/wal"
)

// ErrConfig is returned (wrapped) for a bad configuration; the message names the flag.
var ErrConfig = errors.New("node: bad configuration")

// ClientAddrs are a member's client addresses (host:port; either may be empty).
type ClientAddrs struct {
	HTTP, RESP string
}

// Member is one voting member of the cluster.
type Member struct {
	ID       string
	PeerAddr string // host:port for node-to-node traffic
}

// Config configures one node.
type Config struct {
	// ID is this node's id (--id); must be one of Cluster.
	ID string
	// DataDir holds the WAL, the store, the rollback journal, LOCK and identity.json (--data).
	DataDir string
	// Cluster lists every voting member, this node included (--cluster):
	// the cluster's first configuration. Once the log holds a
	// configuration (a member was added, promoted or removed), the log's
	// is authoritative and Cluster only names the cluster.
	Cluster []Member
	// JoinConf, for a node started with --join, is the configuration that
	// added it (the reply of the member it asked); used until the log or a
	// snapshot gives it one. Cluster may then be empty.
	JoinConf *repl.ConfState
	// ClusterID, if set, is the cluster's identity (--cluster-id); peers with
	// another one are refused, and the data directory remembers it. Empty:
	// the id in PeerTLS's CA (random, minted with the CA), else a hash of the
	// sorted member list (ClusterID(Cluster)), a consistency check only.
	// With PeerTLS, it must be empty or the CA's.
	ClusterID string
	// PeerTLS, if set, authenticates peers with mutual TLS (--peer-tls-dir):
	// this member's certificate and the cluster CA. Its ID must be ID. Nil:
	// plaintext peer connections that anyone who reaches the peer port can
	// join (--insecure-peers; tests).
	PeerTLS *pki.Member
	// PeerClients gives other members' client addresses by id (--http-peers,
	// --resp-peers). A follower names the leader's addresses from here or,
	// for what is missing, from the leader's authenticated (PeerTLS)
	// handshake; never from an unauthenticated one.
	PeerClients map[string]ClientAddrs
	// HTTPAddr and RESPAddr are this node's client addresses, advertised to peers
	// so that they can name the leader's endpoints. Either may be empty.
	HTTPAddr, RESPAddr string
	// DefaultAck is the ack mode of writes that ask for the default.
	DefaultAck api.Ack
	// Heartbeat is the leader's heartbeat interval (default 50ms).
	Heartbeat time.Duration
	// ElectionTimeout (default 300ms): with the fixed detector, the minimum
	// election timeout (each node randomizes in [E, 2E)); with the adaptive
	// one, the upper bound of the learned timeout. Must be >= 3*Heartbeat.
	ElectionTimeout time.Duration
	// FailureDetector is DetectorAdaptive (the default; "" means it) or
	// DetectorFixed (--failure-detector).
	FailureDetector string
	// ElectionTimeoutMin is the adaptive detector's lower bound (default
	// 100ms; 0: the default), at least 2*Heartbeat: no follower votes for
	// another leader within it of hearing its own (leader stickiness), and
	// the leader's read lease is sized below it.
	ElectionTimeoutMin time.Duration
	// HeartbeatPause is the silence beyond the learned spread of heartbeat
	// arrivals that the adaptive detector tolerates before it suspects the
	// leader (default 200ms; a stall, a collection pause). 0: the default;
	// negative: none.
	HeartbeatPause time.Duration
	// Election is ElectionQuorum (the default; "" means it) or
	// ElectionCoordinator (--election): then leadership is a lease-backed
	// key in the etcd at CoordinatorEndpoints (--coordinator), whose lease
	// lasts CoordinatorTTL (--coordinator-ttl, default 2s, whole seconds;
	// 0: the default). See coordination.go.
	Election             string
	CoordinatorEndpoints []string
	CoordinatorTTL       time.Duration
	// Priority: 0 never leads; a higher one takes over when caught up (default 1).
	Priority int
	// WriteTimeout is the default time a write may wait for its ack mode (default 5s).
	WriteTimeout time.Duration
	// MaxValueBytes is the largest value accepted (default 1 MiB, at most 8 MiB).
	MaxValueBytes int
	// IdempotencyWindow is how long the result of a write with an
	// idempotency key is kept, in log time (default 10m; 0: the default): a
	// retry within it returns the first result and applies nothing.
	IdempotencyWindow time.Duration
	// IdempotencyMaxKeys caps the idempotency table (default 1,000,000
	// records; 0: the default); beyond it the oldest records go first.
	IdempotencyMaxKeys int
	// SessionWait is how long a session read waits for this node to apply
	// the session's token before it forwards to the leader (default 100ms).
	SessionWait time.Duration
	// Logger receives the node's logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the node's Prometheus metrics; nil = a registry of the
	// node's own, served by Node.Metrics.
	Registerer prometheus.Registerer

	// Peers of other nodes' priorities, by id; missing ids get priority 1.
	// (Each node's own Priority is authoritative for itself; this lets every
	// core know the others'.)
	Priorities map[string]int
	// Transport, if set, replaces the TCP transport (tests use transport.Mem).
	Transport transport.Transport
	// PeerListener, if set, is used instead of listening on this node's PeerAddr.
	PeerListener net.Listener
	// Store and WAL tune the storage layers; zero values mean their defaults.
	Store store.Config
	WAL   wal.Config
	// Seed seeds the election-timeout randomness; 0 = derived from the clock and ID.
	Seed int64
	// DiskReserveBytes is the free space (bytes, on the file system of
	// DataDir) below which a leader refuses client writes with
	// api.ErrInsufficientStorage (--disk-reserve); 0 turns the reserve off.
	// Default 256 MiB: what a node may still have to write with no client
	// write at all, with a margin: a new WAL segment and its spare (64 MiB
	// each, preallocated), Pebble flushing its memtables (16 MiB each) and
	// the compactions that follow, the hard state, the rollback journal.
	// Followers only warn below it (see diskGuard).
	DiskReserveBytes int64
	// DiskCheckInterval is how often free space is measured and the data
	// directory is checked for removal or a read-only remount (default 1s);
	// it bounds how long such a fault goes unnoticed on an idle node.
	DiskCheckInterval time.Duration
	// LogRetainBytes is how much of the newest WAL the node keeps after the
	// store no longer needs it (--log-retain): whole segments are dropped
	// from the oldest while the newer ones hold at least this many bytes,
	// and never past the store's DurableIndex. 0 keeps only what the store
	// needs. Default 256 MiB (four 64 MiB segments): a follower that was
	// away for a short while (a restart of tens of seconds under load)
	// catches up from the leader's log; one further behind needs a
	// snapshot, which is as fast per byte, so a larger log buys little.
	LogRetainBytes int64
	// LogCompactInterval is how often the WAL's size is checked against
	// LogRetainBytes (default 1s).
	LogCompactInterval time.Duration
}

// Failure detectors (Config.FailureDetector, --failure-detector).
const (
	DetectorAdaptive = "adaptive"
	DetectorFixed    = "fixed"
)

// Defaults of the adaptive failure detector (see Config).
const (
	DefaultElectionTimeoutMin = 100 * time.Millisecond
	DefaultHeartbeatPause     = 200 * time.Millisecond
)

// DefaultLogRetainBytes is Config.LogRetainBytes's default.
const DefaultLogRetainBytes = 256 << 20

// DefaultDiskReserveBytes is Config.DiskReserveBytes's default.
const DefaultDiskReserveBytes = 256 << 20

// DefaultConfig returns the defaults; ID, DataDir and Cluster must still be set.
func DefaultConfig() Config {
	return Config{
		DefaultAck:      api.Ack{Mode: api.AckMajority},
		Heartbeat:       50 * time.Millisecond,
		ElectionTimeout: 300 * time.Millisecond,
		FailureDetector: DetectorAdaptive,
		Election:        ElectionQuorum,
		CoordinatorTTL:  DefaultCoordinatorTTL,
		Priority:        1,

		ElectionTimeoutMin: DefaultElectionTimeoutMin,
		HeartbeatPause:     DefaultHeartbeatPause,
		WriteTimeout:       5 * time.Second,
		MaxValueBytes:      1 << 20,

		IdempotencyWindow:  10 * time.Minute,
		IdempotencyMaxKeys: 1_000_000,
		SessionWait:        100 * time.Millisecond,

		DiskReserveBytes:  DefaultDiskReserveBytes,
		DiskCheckInterval: time.Second,

		LogRetainBytes:     DefaultLogRetainBytes,
		LogCompactInterval: time.Second,
	}
}

// maxValueLimit bounds MaxValueBytes so that one entry always fits in a frame.
const maxValueLimit = 8 << 20

// Validate checks every field and names the flag to fix.
func (c *Config) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("%w: --id is empty", ErrConfig)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: --data (DataDir) is empty", ErrConfig)
	}
	if len(c.Cluster) == 0 {
		return fmt.Errorf("%w: --cluster is empty (want id=host:port,...)", ErrConfig)
	}
	ids := map[string]bool{}
	addrs := map[string]string{}
	for _, m := range c.Cluster {
		if m.ID == "" || strings.ContainsAny(m.ID, "=, ") {
			return fmt.Errorf("%w: --cluster: bad node id %q", ErrConfig, m.ID)
		}
		if ids[m.ID] {
			return fmt.Errorf("%w: --cluster: duplicate node id %q", ErrConfig, m.ID)
		}
		ids[m.ID] = true
		if _, _, err := net.SplitHostPort(m.PeerAddr); err != nil {
			return fmt.Errorf("%w: --cluster: node %q has a bad peer address %q: %v", ErrConfig, m.ID, m.PeerAddr, err)
		}
		if other, dup := addrs[m.PeerAddr]; dup {
			return fmt.Errorf("%w: --cluster: nodes %q and %q share the peer address %s", ErrConfig, other, m.ID, m.PeerAddr)
		}
		addrs[m.PeerAddr] = m.ID
	}
	if !ids[c.ID] {
		return fmt.Errorf("%w: --id %q is not in --cluster (members: %s)", ErrConfig, c.ID, strings.Join(c.memberIDs(), ", "))
	}
	if c.PeerTLS != nil && c.PeerTLS.ID != c.ID {
		return fmt.Errorf("%w: --peer-tls-dir: the certificate is member %q's, not --id %q's", ErrConfig, c.PeerTLS.ID, c.ID)
	}
	if c.PeerTLS != nil && c.ClusterID != "" && c.ClusterID != c.PeerTLS.ClusterID {
		return fmt.Errorf("%w: --cluster-id differs from the cluster id of --peer-tls-dir's CA (leave --cluster-id out)", ErrConfig)
	}
	for id := range c.PeerClients {
		if !ids[id] {
			return fmt.Errorf("%w: --http-peers/--resp-peers name %q, which is not in --cluster", ErrConfig, id)
		}
	}
	for id := range c.Priorities {
		if !ids[id] {
			return fmt.Errorf("%w: Priorities names %q, which is not in --cluster", ErrConfig, id)
		}
	}
	switch m := c.DefaultAck.Mode; m {
	case api.AckAsync, api.AckSync, api.AckMajority:
	case api.AckSemiSync:
		if c.DefaultAck.Replicas < 1 {
			return fmt.Errorf("%w: --ack semi-sync needs replicas >= 1", ErrConfig)
		}
	default:
		return fmt.Errorf("%w: --ack: %v", ErrConfig, repl.ErrBadAckMode)
	}
	if c.Heartbeat <= 0 {
		return fmt.Errorf("%w: --heartbeat %v must be > 0", ErrConfig, c.Heartbeat)
	}
	if c.ElectionTimeout < 3*c.Heartbeat {
		return fmt.Errorf("%w: --election-timeout %v must be >= 3 x --heartbeat (%v)", ErrConfig, c.ElectionTimeout, c.Heartbeat)
	}
	switch c.FailureDetector {
	case "":
		c.FailureDetector = DetectorAdaptive
	case DetectorAdaptive, DetectorFixed:
	default:
		return fmt.Errorf("%w: --failure-detector %q: want adaptive or fixed", ErrConfig, c.FailureDetector)
	}
	switch c.Election {
	case "":
		c.Election = ElectionQuorum
	case ElectionQuorum:
	case ElectionCoordinator:
		if len(c.CoordinatorEndpoints) == 0 {
			return fmt.Errorf("%w: --election coordinator needs --coordinator etcd://HOST:PORT[,HOST:PORT...]", ErrConfig)
		}
	default:
		return fmt.Errorf("%w: --election %q: want quorum or coordinator", ErrConfig, c.Election)
	}
	if c.CoordinatorTTL == 0 {
		c.CoordinatorTTL = DefaultCoordinatorTTL
	}
	if c.CoordinatorTTL < time.Second || c.CoordinatorTTL%time.Second != 0 {
		return fmt.Errorf("%w: --coordinator-ttl %v must be a whole number of seconds, at least 1s (etcd grants leases in seconds)", ErrConfig, c.CoordinatorTTL)
	}
	if c.ElectionTimeoutMin == 0 {
		c.ElectionTimeoutMin = DefaultElectionTimeoutMin
	}
	if c.HeartbeatPause == 0 {
		c.HeartbeatPause = DefaultHeartbeatPause
	} else if c.HeartbeatPause < 0 {
		c.HeartbeatPause = -1 // none; kept non-zero so that it stays "none"
	}
	if c.FailureDetector == DetectorAdaptive {
		if c.ElectionTimeoutMin < 2*c.Heartbeat {
			return fmt.Errorf("%w: --election-timeout-min %v must be >= 2 x --heartbeat (%v)", ErrConfig, c.ElectionTimeoutMin, c.Heartbeat)
		}
		if c.ElectionTimeoutMin > c.ElectionTimeout {
			return fmt.Errorf("%w: --election-timeout-min %v must be <= --election-timeout %v (the adaptive bounds)",
				ErrConfig, c.ElectionTimeoutMin, c.ElectionTimeout)
		}
	}
	if c.Priority < 0 {
		return fmt.Errorf("%w: --priority %d must be >= 0", ErrConfig, c.Priority)
	}
	if c.WriteTimeout <= 0 {
		return fmt.Errorf("%w: --write-timeout %v must be > 0", ErrConfig, c.WriteTimeout)
	}
	if c.MaxValueBytes <= 0 || c.MaxValueBytes > maxValueLimit {
		return fmt.Errorf("%w: --max-value-bytes %d must be in [1, %d]", ErrConfig, c.MaxValueBytes, maxValueLimit)
	}
	if c.IdempotencyWindow < 0 || c.IdempotencyWindow > 7*24*time.Hour {
		return fmt.Errorf("%w: --idempotency-window %v must be in (0, 168h]", ErrConfig, c.IdempotencyWindow)
	}
	if c.IdempotencyMaxKeys < 0 || c.IdempotencyMaxKeys > 1<<31 {
		return fmt.Errorf("%w: --idempotency-max-keys %d must be in [1, 2^31]", ErrConfig, c.IdempotencyMaxKeys)
	}
	if c.SessionWait < 0 || c.SessionWait > time.Minute {
		return fmt.Errorf("%w: --session-wait %v must be in [0, 1m]", ErrConfig, c.SessionWait)
	}
	if c.DiskReserveBytes < 0 {
		return fmt.Errorf("%w: --disk-reserve %d must be >= 0 (0 turns it off)", ErrConfig, c.DiskReserveBytes)
	}
	if c.DiskCheckInterval < 0 || c.DiskCheckInterval > time.Minute {
		return fmt.Errorf("%w: DiskCheckInterval %v must be in [0, 1m] (0: the default, 1s)", ErrConfig, c.DiskCheckInterval)
	}
	if c.LogRetainBytes < 0 {
		return fmt.Errorf("%w: --log-retain %d must be >= 0", ErrConfig, c.LogRetainBytes)
	}
	if c.LogCompactInterval < 0 || c.LogCompactInterval > time.Minute {
		return fmt.Errorf("%w: LogCompactInterval %v must be in [0, 1m] (0: the default, 1s)", ErrConfig, c.LogCompactInterval)
	}
	return nil
}

// logCompactInterval is LogCompactInterval, or its default.
func (c *Config) logCompactInterval() time.Duration {
	if c.LogCompactInterval <= 0 {
		return time.Second
	}
	return c.LogCompactInterval
}

// diskCheckInterval is DiskCheckInterval, or its default.
func (c *Config) diskCheckInterval() time.Duration {
	if c.DiskCheckInterval <= 0 {
		return time.Second
	}
	return c.DiskCheckInterval
}

// ParseBytes parses a size in bytes: a number, optionally followed by a
// unit, B, KiB, MiB, GiB or TiB (powers of 1024; K, M, G, T, KB, MB, GB and
// TB are read the same way). "256MiB", "1G", "0".
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q: want a number of bytes, e.g. 268435456 or 256MiB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	shift := 0
	switch strings.ToUpper(strings.TrimSpace(t[i:])) {
	case "", "B":
	case "K", "KB", "KIB":
		shift = 10
	case "M", "MB", "MIB":
		shift = 20
	case "G", "GB", "GIB":
		shift = 30
	case "T", "TB", "TIB":
		shift = 40
	default:
		return 0, fmt.Errorf("%q: unknown unit (want B, KiB, MiB, GiB or TiB)", s)
	}
	if n > (1<<63-1)>>shift {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n << shift, nil
}

func (c *Config) memberIDs() []string {
	ids := make([]string, len(c.Cluster))
	for i, m := range c.Cluster {
		ids[i] = m.ID
	}
	return ids
}

// ParseCluster parses "n1=127.0.0.1:7001,n2=127.0.0.1:7002,...".
func ParseCluster(s string) ([]Member, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: --cluster is empty (want id=host:port,...)", ErrConfig)
	}
	var out []Member
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%w: --cluster: %q is not id=host:port", ErrConfig, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: --cluster: %q: bad address: %v", ErrConfig, part, err)
		}
		out = append(out, Member{ID: id, PeerAddr: addr})
	}
	return out, nil
}

// clusterID is the configured ClusterID, else the CA's, else the hash of the member list.
func (c *Config) clusterID() string {
	switch {
	case c.ClusterID != "":
		return c.ClusterID
	case c.PeerTLS != nil:
		return c.PeerTLS.ClusterID
	}
	return ClusterID(c.Cluster)
}

// ClusterID is the default cluster identity: a hash of the sorted member list.
func ClusterID(members []Member) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.ID + "=" + m.PeerAddr
	}
	slices.Sort(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, ",")))
	return hex.EncodeToString(sum[:8])
}

// idempotencyWindow is IdempotencyWindow, or its default.
func (c *Config) idempotencyWindow() time.Duration {
	if c.IdempotencyWindow <= 0 {
		return 10 * time.Minute
	}
	return c.IdempotencyWindow
}

// idempotencyMaxKeys is IdempotencyMaxKeys, or its default.
func (c *Config) idempotencyMaxKeys() int {
	if c.IdempotencyMaxKeys <= 0 {
		return 1_000_000
	}
	return c.IdempotencyMaxKeys
}

// ResolvedClusterID is the cluster identity this configuration gives: the
// configured ClusterID, else the CA's, else the hash of the member list.
// Another engine's node uses it to derive the same identity from the same
// flags.
func (c *Config) ResolvedClusterID() string { return c.clusterID() }
