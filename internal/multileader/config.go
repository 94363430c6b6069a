package multileader

import (
	"fmt"
	"slices"
)

// Policy is how concurrent writes to one register are resolved.
type Policy uint8

const (
	// LWW keeps the write with the highest (hybrid timestamp, node id); the
	// others are recorded as conflict losers.
	LWW Policy = iota
	// Siblings keeps every concurrent value, up to MaxSiblings.
	Siblings
)

func (p Policy) String() string {
	if p == Siblings {
		return "siblings"
	}
	return "lww"
}

// Config configures one node's core.
type Config struct {
	ID        string   // this node
	Peers     []string // the other nodes (not ID)
	ClusterID string   // minted into and checked on context tokens
	Policy    Policy
	// MaxSiblings bounds the siblings a local write leaves (Siblings policy).
	MaxSiblings int
	// MaxOffsetNanos: a peer timestamp further ahead of our physical time is
	// applied but not followed by our clock (see internal/hlc). <= 0: no bound.
	MaxOffsetNanos int64
	// HeartbeatTicks: an idle peer gets a heartbeat this often.
	HeartbeatTicks int
	// RetryTicks: entries sent but unacknowledged this long are resent from
	// the peer's acknowledged position (go-back-N); a receiver with a gap
	// asks for a resend at most this often.
	RetryTicks int
	// MaxBatch: entries per MsgEntries. MaxInflight: entries sent beyond a
	// peer's acknowledged position.
	MaxBatch    int
	MaxInflight int
	// MaxBuffered: out-of-order entries held per origin while a gap waits.
	MaxBuffered int
	// AckTimeoutTicks: default timeout of AckPeers/AckAll writes.
	AckTimeoutTicks int

	// Restart state: the durable positions (origin -> applied seq, including
	// ID's own), as persisted with the store. Own entries after Applied[ID]
	// are re-applied from Log when the core starts.
	Applied map[string]uint64

	Store Store
	Log   Log

	// Bugs switches on deliberate protocol bugs (only with the mlbugs tag).
	Bugs Bugs
}

// DefaultConfig returns the defaults for everything but identity and storage.
func DefaultConfig() Config {
	return Config{
		Policy:          LWW,
		MaxSiblings:     8,
		MaxOffsetNanos:  500_000_000,
		HeartbeatTicks:  5,
		RetryTicks:      20,
		MaxBatch:        64,
		MaxInflight:     512,
		MaxBuffered:     1024,
		AckTimeoutTicks: 200,
	}
}

// Validate checks the config, naming the offending field.
func (c *Config) Validate() error {
	switch {
	case c.ID == "" || len(c.ID) > 255:
		return fmt.Errorf("multileader: Config.ID %q: want 1..255 bytes", c.ID)
	case c.Policy != LWW && c.Policy != Siblings:
		return fmt.Errorf("multileader: Config.Policy %d unknown", c.Policy)
	case c.Policy == Siblings && c.MaxSiblings < 1:
		return fmt.Errorf("multileader: Config.MaxSiblings %d: want >= 1", c.MaxSiblings)
	case c.HeartbeatTicks < 1:
		return fmt.Errorf("multileader: Config.HeartbeatTicks %d: want >= 1", c.HeartbeatTicks)
	case c.RetryTicks <= c.HeartbeatTicks:
		return fmt.Errorf("multileader: Config.RetryTicks %d: want > HeartbeatTicks (%d)", c.RetryTicks, c.HeartbeatTicks)
	case c.MaxBatch < 1 || c.MaxInflight < c.MaxBatch:
		return fmt.Errorf("multileader: Config.MaxBatch %d / MaxInflight %d: want 1 <= MaxBatch <= MaxInflight", c.MaxBatch, c.MaxInflight)
	case c.MaxBuffered < 0:
		return fmt.Errorf("multileader: Config.MaxBuffered %d: want >= 0", c.MaxBuffered)
	case c.AckTimeoutTicks < 1:
		return fmt.Errorf("multileader: Config.AckTimeoutTicks %d: want >= 1", c.AckTimeoutTicks)
	case c.Store == nil || c.Log == nil:
		return fmt.Errorf("multileader: Config.Store and Config.Log are required")
	}
	seen := map[string]bool{c.ID: true}
	for _, p := range c.Peers {
		if p == "" || len(p) > 255 || seen[p] {
			return fmt.Errorf("multileader: Config.Peers: %q is empty, too long, ID or repeated", p)
		}
		seen[p] = true
	}
	for o := range c.Applied {
		if !seen[o] {
			return fmt.Errorf("multileader: Config.Applied: %q is not a member", o)
		}
	}
	if !slices.IsSorted(c.Peers) {
		return fmt.Errorf("multileader: Config.Peers must be sorted")
	}
	return nil
}
