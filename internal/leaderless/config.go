package leaderless

import (
	"fmt"
	"slices"

	"github.com/trireme-db/trireme/internal/vclock"
)

// Defaults, in ticks (the runtime ticks every 10 ms) and counts.
const (
	DefaultN              = 3
	DefaultVNodes         = 64
	DefaultRequestTicks   = 200 // 2 s
	DefaultPeerDownTicks  = 50  // 500 ms without a message from a peer
	DefaultHeartbeatTicks = 10
	DefaultHandoffTicks   = 20
	DefaultMaxHints       = 100_000
	DefaultMaxPending     = 100_000
	DefaultAETicks        = 50 // one anti-entropy exchange every 500 ms
	DefaultAEKeys         = 2000
	DefaultAEBytes        = 4 << 20
	DefaultGCTicks        = 100
	DefaultGCGraceTicks   = 500
	// MerkleDepth is the depth of the anti-entropy trees: 2^10 leaf
	// buckets. Both ends of an exchange must agree: part of the protocol.
	MerkleDepth = 10
)

// Config is one node's leaderless configuration. Zero durations and counts
// take the defaults above.
type Config struct {
	ID     string   // this node's id: a ring member and message address
	Actor  string   // the id its dots carry: ID plus the data directory's incarnation
	Nodes  []string // every member, ID included
	N      int      // replicas per key
	VNodes int      // virtual nodes per member on the ring
	// Sloppy: when a home replica is down, the next reachable node on the
	// ring takes its copy as a hint.
	Sloppy bool

	RequestTicks   int // a request's timeout
	PeerDownTicks  int // a peer not heard from for this long is down
	HeartbeatTicks int // ping every peer this often
	HandoffTicks   int // retry handing hints over this often
	MaxHints       int // hints held at most; a stand-in refuses more
	MaxPending     int // client requests in flight at most

	// AETicks: one anti-entropy exchange (with the next peer in turn)
	// this often; 0 takes the default, negative turns anti-entropy off.
	AETicks int
	// AEKeys bounds the keys one exchange sends each way (the throttle).
	AEKeys int
	// AEBytes bounds the bytes of one exchange's keys and values each way,
	// so that a message stays within the transport's frame.
	AEBytes int

	GCTicks int // look for collectable tombstones this often
	// GCGraceTicks: a tombstone is collected only after every member
	// confirmed it twice, at least this long apart. It must exceed
	// RequestTicks (plus the longest message delay), so that a copy older
	// than the tombstone still in flight when the first confirmation came in
	// has landed before the second. 0 takes max(DefaultGCGraceTicks,
	// 2*RequestTicks).
	GCGraceTicks int

	Bugs Bugs // deliberate bugs, for the simulator's tests (llbugs builds only)
}

func (c *Config) fill() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.N, DefaultN)
	def(&c.VNodes, DefaultVNodes)
	def(&c.RequestTicks, DefaultRequestTicks)
	def(&c.PeerDownTicks, DefaultPeerDownTicks)
	def(&c.HeartbeatTicks, DefaultHeartbeatTicks)
	def(&c.HandoffTicks, DefaultHandoffTicks)
	def(&c.MaxHints, DefaultMaxHints)
	def(&c.MaxPending, DefaultMaxPending)
	def(&c.AETicks, DefaultAETicks)
	def(&c.AEKeys, DefaultAEKeys)
	def(&c.AEBytes, DefaultAEBytes)
	def(&c.GCTicks, DefaultGCTicks)
	def(&c.GCGraceTicks, max(DefaultGCGraceTicks, 2*c.RequestTicks))
	if c.Actor == "" {
		c.Actor = c.ID
	}
}

// Validate reports what is wrong with c (after defaults).
func (c Config) Validate() error {
	c.fill()
	switch {
	case c.ID == "":
		return fmt.Errorf("leaderless: empty node id")
	case !slices.Contains(c.Nodes, c.ID):
		return fmt.Errorf("leaderless: node %q is not among the members %v", c.ID, c.Nodes)
	case c.N < 1 || c.N > len(c.Nodes):
		return fmt.Errorf("leaderless: replication factor %d must be between 1 and the cluster size %d", c.N, len(c.Nodes))
	case len(c.Actor) > vclock.MaxNodeIDLen:
		return fmt.Errorf("leaderless: actor id %q longer than %d bytes", c.Actor, vclock.MaxNodeIDLen)
	case c.RequestTicks < 1 || c.PeerDownTicks < 1 || c.HeartbeatTicks < 1 || c.HandoffTicks < 1 ||
		c.MaxHints < 1 || c.MaxPending < 1 || c.AEKeys < 1 || c.AEBytes < 1 || c.GCTicks < 1 || c.GCGraceTicks < 0:
		return fmt.Errorf("leaderless: negative timing or limit in %+v", c)
	case c.GCGraceTicks <= c.RequestTicks:
		return fmt.Errorf("leaderless: GCGraceTicks %d must exceed RequestTicks %d (an older copy in flight could land after its tombstone is collected)", c.GCGraceTicks, c.RequestTicks)
	}
	return nil
}
