package api

import "fmt"

// AckMode says how durable a write must be before the node acknowledges it.
// It is the client protocols' word for the durability a write asks for (and
// WriteResult.Durability names the one it reached); a node maps it to its
// replication engine's own (internal/node), so that the protocols and the
// shell need not know the engine.
//
// The values are part of the peer wire format (a forwarded write carries the
// mode as one byte, internal/transport) and must not change; they are those
// of the replication engine's modes, so that frames are those of the previous
// release.
type AckMode uint8

// Ack modes. The zero value is AckMajority.
const (
	// AckMajority: committed, that is durable on a majority of the voters.
	AckMajority AckMode = 0
	// AckAsync: durable (fsynced) on the leader.
	AckAsync AckMode = 1
	// AckSemiSync: durable on the leader and on Ack.Replicas followers.
	AckSemiSync AckMode = 2
	// AckSync: durable on the leader and on every follower.
	AckSync AckMode = 3
)

// String returns the mode's name, as ParseAckMode reads it and as
// WriteResult.Durability reports it.
func (m AckMode) String() string {
	switch m {
	case AckAsync:
		return "async"
	case AckSemiSync:
		return "semi-sync"
	case AckSync:
		return "sync"
	case AckMajority:
		return "majority"
	}
	return fmt.Sprintf("ack(%d)", uint8(m))
}

// ParseAckMode parses "async", "semi-sync" (or "semisync"), "sync" or
// "majority", and the multi-leader words "local" (durable on the node that
// took the write: AckAsync) and "all" (AckSync). Any other word is an error
// wrapping ErrBadAckMode.
func ParseAckMode(s string) (AckMode, error) {
	switch s {
	case "async", "local":
		return AckAsync, nil
	case "all":
		return AckSync, nil
	case "semi-sync", "semisync":
		return AckSemiSync, nil
	case "sync":
		return AckSync, nil
	case "majority":
		return AckMajority, nil
	}
	return 0, fmt.Errorf("%w: %q (want async, semi-sync, sync or majority; multi-leader: local, all or a number of other nodes)", ErrBadAckMode, s)
}

// Ack is the acknowledgement a write asks for. The zero value asks for
// AckMajority.
type Ack struct {
	Mode AckMode
	// Replicas is K, the followers that must hold the write durably, for
	// AckSemiSync (K >= 1); ignored by the other modes.
	Replicas int
}
