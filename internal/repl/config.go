package repl

import (
	"errors"
	"fmt"
	"sort"
)

// DefaultConfig returns a Config with the default timings and limits. The
// caller must still set ID, Peers and Rand (and may set Logger and Applied).
//
// With one tick per 50 ms the defaults give: heartbeats every 50 ms, election
// timeouts drawn in [500 ms, 1 s), a 400 ms lease.
func DefaultConfig() Config {
	return Config{
		HeartbeatTicks:              1,
		ElectionTicks:               10,
		LeaseTicks:                  8,
		DriftTicks:                  1,
		CheckQuorum:                 true,
		PreVote:                     true,
		MaxMsgBytes:                 1 << 20,
		MaxInflightMsgs:             256,
		DefaultProposalTimeoutTicks: 100,
		MaxPendingProposals:         100000,
		MaxApplyBytes:               64 << 20,
		MaxPromoteLag:               1024,
	}
}

// Validate checks cfg and returns an error wrapping ErrInvalidConfig that
// names the offending field.
func (cfg *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if cfg.ID == None {
		return bad("ID", "empty")
	}
	if cfg.Conf != nil {
		if err := cfg.Conf.Validate(); err != nil {
			return bad("Conf", "%v", err)
		}
	} else if err := validatePeers(cfg.ID, cfg.Peers); err != nil {
		field := "Peers"
		if errors.Is(err, errSelfNotPeer) {
			field = "ID"
		}
		return bad(field, "%v", err)
	}
	switch {
	case cfg.HeartbeatTicks <= 0:
		return bad("HeartbeatTicks", "must be > 0, got %d", cfg.HeartbeatTicks)
	case cfg.ElectionTicks <= cfg.HeartbeatTicks:
		return bad("ElectionTicks", "must be > HeartbeatTicks (%d), got %d", cfg.HeartbeatTicks, cfg.ElectionTicks)
	case cfg.DriftTicks < 0:
		return bad("DriftTicks", "must be >= 0, got %d", cfg.DriftTicks)
	case cfg.LeaseTicks < 0:
		return bad("LeaseTicks", "must be >= 0, got %d", cfg.LeaseTicks)
	case cfg.LeaseTicks >= cfg.ElectionTicks-cfg.DriftTicks:
		return bad("LeaseTicks", "must be < ElectionTicks - DriftTicks (%d), got %d",
			cfg.ElectionTicks-cfg.DriftTicks, cfg.LeaseTicks)
	case cfg.Detector != DetectorFixed && cfg.Detector != DetectorAdaptive:
		return bad("Detector", "unknown detector %d", uint8(cfg.Detector))
	case cfg.Detector == DetectorAdaptive && cfg.MaxElectionTicks < cfg.ElectionTicks:
		return bad("MaxElectionTicks", "must be >= ElectionTicks (%d) with the adaptive detector, got %d", cfg.ElectionTicks, cfg.MaxElectionTicks)
	case cfg.PauseTicks < 0:
		return bad("PauseTicks", "must be >= 0, got %d", cfg.PauseTicks)
	case cfg.MaxMsgBytes <= 0:
		return bad("MaxMsgBytes", "must be > 0, got %d", cfg.MaxMsgBytes)
	case cfg.MaxInflightMsgs <= 0:
		return bad("MaxInflightMsgs", "must be > 0, got %d", cfg.MaxInflightMsgs)
	case cfg.DefaultProposalTimeoutTicks <= 0:
		return bad("DefaultProposalTimeoutTicks", "must be > 0, got %d", cfg.DefaultProposalTimeoutTicks)
	case cfg.MaxPendingProposals <= 0:
		return bad("MaxPendingProposals", "must be > 0, got %d", cfg.MaxPendingProposals)
	case cfg.MaxPromoteLag < 0:
		return bad("MaxPromoteLag", "must be >= 0, got %d", cfg.MaxPromoteLag)
	case cfg.MaxApplyBytes < 0:
		return bad("MaxApplyBytes", "must be >= 0, got %d", cfg.MaxApplyBytes)
	case cfg.Rand == nil:
		return bad("Rand", "nil (inject a seeded *rand.Rand)")
	}
	return nil
}

// sortedPeers returns a copy of peers sorted by ID.
func sortedPeers(peers []Peer) []Peer {
	out := append([]Peer(nil), peers...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

var errSelfNotPeer = errors.New("this node is not among Peers")

// validatePeers checks a bootstrap member list.
func validatePeers(self NodeID, peers []Peer) error {
	if len(peers) == 0 {
		return fmt.Errorf("empty")
	}
	seen := make(map[NodeID]bool, len(peers))
	found, promotable := false, false
	for _, p := range peers {
		if p.ID == None {
			return fmt.Errorf("empty peer ID")
		}
		if seen[p.ID] {
			return fmt.Errorf("duplicate peer %q", p.ID)
		}
		seen[p.ID] = true
		if p.Priority < 0 {
			return fmt.Errorf("peer %q has negative priority %d", p.ID, p.Priority)
		}
		if p.Priority > 0 {
			promotable = true
		}
		if p.ID == self {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: %q", errSelfNotPeer, self)
	}
	if !promotable {
		return fmt.Errorf("every peer has priority 0: no node can become leader")
	}
	return nil
}
