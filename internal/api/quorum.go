package api

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors of the leaderless engine's quorums.
var (
	// ErrBadQuorum: a W or R that cannot be met (0, above the replication
	// factor) or an unknown word; nothing was done (400).
	ErrBadQuorum = errors.New("invalid quorum")
	// ErrQuorumUnavailable: fewer replicas of the key were reachable, or
	// answered in time, than the request's W or R (503). A write refused
	// this way before it was sent wrote nothing; a write that timed out
	// gets ErrWriteTimeout instead.
	ErrQuorumUnavailable = errors.New("not enough replicas of the key reachable for the quorum; retry")
)

// Quorum is how many of a key's N replicas a leaderless request needs: a
// number 1..N, or one of the words below, resolved against N by the node.
type Quorum int

// Quorum words. QuorumDefault takes the node's default.
const (
	QuorumDefault  Quorum = 0
	QuorumOne      Quorum = -1
	QuorumMajority Quorum = -2 // "quorum": N/2+1
	QuorumAll      Quorum = -3
)

// ParseQuorum parses "one", "quorum", "all" or a number >= 1 ("" is the
// default).
func ParseQuorum(s string) (Quorum, error) {
	switch s {
	case "":
		return QuorumDefault, nil
	case "one":
		return QuorumOne, nil
	case "quorum":
		return QuorumMajority, nil
	case "all":
		return QuorumAll, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %q: want a number >= 1, one, quorum or all", ErrBadQuorum, s)
	}
	return Quorum(n), nil
}

// Resolve returns the number of replicas q means for replication factor n,
// or ErrBadQuorum if it is out of 1..n.
func (q Quorum) Resolve(n int) (int, error) {
	switch q {
	case QuorumDefault, QuorumMajority:
		return n/2 + 1, nil
	case QuorumOne:
		return 1, nil
	case QuorumAll:
		return n, nil
	}
	if q < 1 || int(q) > n {
		return 0, fmt.Errorf("%w: %d, but each key has %d replicas", ErrBadQuorum, int(q), n)
	}
	return int(q), nil
}

func (q Quorum) String() string {
	switch q {
	case QuorumDefault:
		return ""
	case QuorumOne:
		return "one"
	case QuorumMajority:
		return "quorum"
	case QuorumAll:
		return "all"
	}
	return strconv.Itoa(int(q))
}

// LeaderlessInfo is a leaderless node's status: its share of the ring, the
// hints it holds, and its repairs.
type LeaderlessInfo struct {
	ReplicationFactor int  `json:"replication_factor"`
	SloppyQuorum      bool `json:"sloppy_quorum"`
	// Ownership: each member's share of the key space it replicates (the
	// shares sum to the replication factor).
	Ownership map[string]float64 `json:"ownership"`
	// HintsPending: hints this node holds, by the home replica they are for.
	HintsPending   map[string]int `json:"hints_pending"`
	HintsStored    uint64         `json:"hints_stored"`
	HintsDelivered uint64         `json:"hints_delivered"`
	HintsRefused   uint64         `json:"hints_refused"`
	ReadRepairs    uint64         `json:"read_repairs"`
	// Anti-entropy: exchanges started, buckets compared and found
	// different, keys this node repaired from them, and per peer the
	// buckets that differed in the last exchange (-1: none yet).
	AEExchanges       uint64         `json:"ae_exchanges"`
	AEBucketsCompared uint64         `json:"ae_buckets_compared"`
	AEBucketsDiffer   uint64         `json:"ae_buckets_differ"`
	AERepairs         uint64         `json:"ae_repairs"`
	AEDiffering       map[string]int `json:"ae_differing"`
	TombstonesGC      uint64         `json:"tombstones_collected"`
	// Down: peers this node considers unreachable.
	Down []string `json:"down,omitempty"`
}
