// Package api holds what the client protocols (HTTP in internal/api/httpapi, RESP
// in internal/api/resp) need from a node: the Service interface, declared here
// by its users, and the request and reply types they share.
package api

import (
	"context"
	"errors"
	"time"

	"github.com/trireme-db/trireme/internal/repl"
)

// Service is what a node offers to client protocols. Implemented by internal/node.
type Service interface {
	// Put writes key=value. A follower forwards the write to the leader;
	// ErrNoLeader when no leader is known.
	Put(ctx context.Context, key, value []byte, w WriteOptions) (WriteResult, error)
	// Delete removes key, with the same semantics as Put.
	Delete(ctx context.Context, key []byte, w WriteOptions) (WriteResult, error)
	// Get reads key at the given consistency. Found=false if absent.
	Get(ctx context.Context, key []byte, c Consistency) (ReadResult, error)
	// Count returns the number of keys in this node's applied state (DBSIZE).
	Count(ctx context.Context) (int, error)
	// Status describes this node and, on the leader, its followers.
	Status() NodeStatus
	// Rollbacks lists the entries this node discarded from its log.
	Rollbacks() ([]Rollback, error)
	// TransferLeadership hands leadership to node `to` and returns once it leads.
	TransferLeadership(ctx context.Context, to string) error
	// WaitReplicas waits until at least n followers hold index durably, or the
	// context ends; returns how many do (Redis WAIT semantics).
	WaitReplicas(ctx context.Context, index uint64, n int) (int, error)
	// MaxValueBytes is the largest value accepted.
	MaxValueBytes() int

	// Members lists every member, voters and learners, with the leader's
	// view of its progress; a follower either forwards to the leader or
	// answers with State MemberUnknown.
	Members(ctx context.Context) ([]MemberStatus, error)
	// AddMember adds m (validated with m.Validate) and returns the members
	// once the change is committed. Any member may be asked: a follower
	// forwards to the leader. ErrChangeInProgress while another change is
	// not committed; ErrDuplicateMember if a member has its id or one of its
	// addresses; ErrBadMember for a malformed field.
	AddMember(ctx context.Context, m MemberSpec) ([]MemberStatus, error)
	// PromoteMember makes learner id a voter and returns the members once
	// it votes. ErrNotCaughtUp (saying its lag in entries) while it is too
	// far behind; ErrUnknownMember; ErrAlreadyVoter; ErrChangeInProgress.
	PromoteMember(ctx context.Context, id string) ([]MemberStatus, error)
	// RemoveMember removes member id and returns the members once the
	// change is committed. ErrUnknownMember; ErrLastVoter for the only
	// voter; ErrChangeInProgress.
	RemoveMember(ctx context.Context, id string) ([]MemberStatus, error)
}

// WriteOptions says how a write must be acknowledged.
type WriteOptions struct {
	Ack     repl.Ack
	Timeout time.Duration // 0 = the node's default
	Default bool          // true = use the node's default ack mode (Ack ignored)
}

// WriteResult is the reply to a write. On ErrWriteTimeout and ErrOutcomeUnknown
// it is still filled in with what was achieved.
type WriteResult struct {
	Index         uint64
	Term          uint64
	Durability    string // ack mode met: "async", "semi-sync", "sync", "majority"; or "" if none
	Replicas      int    // followers that made it durable
	Committed     bool
	LeaderDurable bool
}

// Consistency is a read level.
type Consistency uint8

// Read levels.
const (
	Linearizable Consistency = iota // leader under lease or read index; followers forward
	Stale                           // this node's applied state
)

// ParseConsistency parses "linearizable" or "stale".
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "", "linearizable":
		return Linearizable, nil
	case "stale":
		return Stale, nil
	}
	return 0, ErrBadConsistency
}

// ReadResult is the reply to a read.
type ReadResult struct {
	Found bool
	Value []byte
	Index uint64 // version: log index that last changed the key (0 if absent)
	// For stale reads: how far behind this node may be.
	LagEntries uint64
	LagMillis  int64
}

// FollowerInfo is the leader's view of one follower: a voter or a learner.
type FollowerInfo struct {
	ID            string `json:"id"`
	MatchIndex    uint64 `json:"match_index"`
	LagEntries    uint64 `json:"lag_entries"`
	LagMillis     int64  `json:"lag_ms"`
	LastContactMs int64  `json:"last_contact_ms"`
	// Role is RoleVoter or RoleLearner ("" from a node that predates
	// learners: a voter).
	Role MemberRole `json:"role,omitempty"`
	// RESP is the follower's Redis protocol address when the membership
	// knows it (members added online); "" = unknown.
	RESP string `json:"resp,omitempty"`
}

// Learner reports whether the follower is a learner.
func (f FollowerInfo) Learner() bool { return f.Role == RoleLearner }

// NodeStatus is /v1/status.
type NodeStatus struct {
	ID           string         `json:"id"`
	ClusterID    string         `json:"cluster_id"` // the cluster's identity (a node joining with --join adopts it)
	Role         string         `json:"role"`
	Term         uint64         `json:"term"`
	Leader       string         `json:"leader"`
	LeaderHTTP   string         `json:"leader_http"`
	LeaderRESP   string         `json:"leader_resp"`
	LastIndex    uint64         `json:"last_index"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	LagMillis    int64          `json:"lag_ms"`
	Followers    []FollowerInfo `json:"followers,omitempty"`
	// The file system of the data directory, at the last check (every
	// second): bytes free for the node, the reserve below which a leader
	// refuses writes (0: none), and whether free space is below it.
	DiskFreeBytes    uint64 `json:"disk_free_bytes"`
	DiskReserveBytes uint64 `json:"disk_reserve_bytes"`
	DiskLow          bool   `json:"disk_low"`
}

// Rollback is one discarded write.
type Rollback struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value"`
	// Cause is CauseConflict or CauseSnapshot.
	Cause string `json:"cause"`
}

// Causes of a Rollback.
const (
	// CauseConflict: the entry conflicted with the leader's log, so it was
	// never committed: the write is lost (the usual case: a deposed
	// leader's unreplicated writes).
	CauseConflict = "conflict"
	// CauseSnapshot: the entry was replaced by a snapshot from the leader
	// and the snapshot's state could not confirm it (the key was written
	// again later, or the entry lies beyond the snapshot): the write may
	// have been committed (then its effect is in the data) or not. Entries
	// the snapshot's state confirms are not journaled.
	CauseSnapshot = "snapshot"
)

// Errors a Service returns (wrapped).
var (
	ErrNotLeader      = errors.New("not the leader")
	ErrNoLeader       = errors.New("no leader is known")
	ErrWriteTimeout   = errors.New("ack mode not met in time; the outcome is not final")
	ErrOutcomeUnknown = errors.New("leadership lost while the write was in flight; outcome unknown")
	ErrBadConsistency = errors.New("unknown consistency level (want linearizable or stale)")
	ErrEmptyKey       = errors.New("empty key")
	ErrValueTooLarge  = errors.New("value too large")
	ErrKeyTooLarge    = errors.New("key too large")
	ErrStopped        = errors.New("node stopped")
	// ErrInsufficientStorage: the leader's free disk space is below its
	// reserve; the write was refused and nothing was written (HTTP 507).
	ErrInsufficientStorage = errors.New("insufficient storage")
)
