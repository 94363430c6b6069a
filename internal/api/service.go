// Package api holds what the client protocols (HTTP in internal/api/httpapi, RESP
// in internal/api/resp) need from a node: the Service interface, declared here
// by its users, the request and reply types they share, and the errors a
// Service returns with their one classification (errors.go): each sentinel
// error has a Class, which sets the HTTP status and the RESP error prefix of
// its reply, and a Code, its identity when a follower forwards a request to
// the leader and gets the leader's error back (ErrorOf). A node wraps its
// replication engine's errors with this package's, so that the protocols
// speak no engine's vocabulary. See DESIGN.md.
package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/command"
)

// Service is what a node offers to client protocols. Implemented by internal/node.
// Every error it returns wraps one of this package's sentinel errors
// (Sentinels) or is an internal error (ClassInternal); the protocols answer
// it by its class (Classify), never by the engine's errors.
type Service interface {
	// Put writes key=value. A follower forwards the write to the leader;
	// ErrNoLeader when no leader is known.
	Put(ctx context.Context, key, value []byte, w WriteOptions) (WriteResult, error)
	// Delete removes key, with the same semantics as Put.
	Delete(ctx context.Context, key []byte, w WriteOptions) (WriteResult, error)
	// Exec applies a state-machine command (read-modify-write, conditional
	// or idempotent write; internal/command) and returns its result in
	// WriteResult.Cmd. It replies once the leader has applied the command
	// (which needs it committed): the ack mode sets what else must hold.
	// A command whose condition failed or whose value is not an integer
	// returns the matching error (ErrConditionFailed, ErrNotInteger,
	// ErrOverflow, ErrValueTooLarge) with the result filled in.
	Exec(ctx context.Context, cmd *command.Command, w WriteOptions) (WriteResult, error)
	// Get reads key at the given consistency. Found=false if absent.
	// Equivalent to Read with ReadOptions{Consistency: c}.
	Get(ctx context.Context, key []byte, c Consistency) (ReadResult, error)
	// Read reads key with every read option (session tokens, bounds).
	Read(ctx context.Context, key []byte, o ReadOptions) (ReadResult, error)
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
	Ack     Ack
	Timeout time.Duration // 0 = the node's default
	Default bool          // true = use the node's default ack mode (Ack ignored)
	// Session, when set, is the writer's session token: the leader refuses
	// the write with ErrRolledBack (writing nothing) if the token's entry
	// was discarded, so that the new write's token, which then covers the
	// old one, never hides a lost write of the same session.
	Session Token
	// Context (multi-leader) is the opaque causal context of the read this
	// write follows: the write supersedes the versions that read saw. ""
	// is a blind write.
	Context string
	// W (leaderless): the replicas that must hold the write durably.
	W Quorum
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
	// Cmd is a command's result (Exec only).
	Cmd command.Result
}

// Token is the session token of this write: its (term, index); the zero
// token for a write without a term (a multi-leader write: sessions need a
// single order of writes).
func (w WriteResult) Token() Token {
	if w.Term == 0 {
		return Token{}
	}
	return Token{Term: w.Term, Index: w.Index}
}

// Consistency is a read level.
type Consistency uint8

// Read levels. Part of the peer wire format (forwarded reads).
const (
	Linearizable Consistency = iota // leader under lease or read index; followers forward
	Stale                           // this node's applied state
	Session                         // any node that has applied the session's token (else the leader)
	Bounded                         // any node that can prove it is within the bound (else the leader)
	// Local: this node's own copy, as it is (a multi-leader node's only
	// read level; on a single-leader node, the same as Stale).
	Local
)

func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case Stale:
		return "stale"
	case Session:
		return "session"
	case Bounded:
		return "bounded"
	case Local:
		return "local"
	}
	return fmt.Sprintf("consistency(%d)", uint8(c))
}

// ParseConsistency parses "linearizable", "stale", "session", "bounded" or
// "local".
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "", "linearizable":
		return Linearizable, nil
	case "stale":
		return Stale, nil
	case "session":
		return Session, nil
	case "bounded":
		return Bounded, nil
	case "local":
		return Local, nil
	}
	return 0, ErrBadConsistency
}

// ReadOptions says how a read is served.
type ReadOptions struct {
	Consistency Consistency
	// Session: the session's token (the zero Token: a new session, served
	// at once).
	Token Token
	// Bounded: the most this node's state may lag the leader's, in time
	// and/or in entries (0 = no bound of that kind; at least one is set).
	MaxLag        time.Duration
	MaxLagEntries uint64
	// Leaderless: R, the replicas that must answer; Repair, wait until the
	// stale replicas among them are repaired before replying.
	R      Quorum
	Repair bool
}

// Token names a point in the cluster's history: the (term, index) of an
// entry. A session holds the newest token it wrote or read; a node serves a
// session read once its applied state includes the token's entry. Clients
// treat its text form as opaque.
type Token struct {
	Term, Index uint64
}

// IsZero reports whether t is the empty token (a new session).
func (t Token) IsZero() bool { return t.Term == 0 && t.Index == 0 }

// Covers reports whether t is at or past u in one history (the higher index;
// on a tie, the higher term).
func (t Token) Covers(u Token) bool {
	return t.Index > u.Index || (t.Index == u.Index && t.Term >= u.Term)
}

// Max returns whichever of t and u is further on.
func (t Token) Max(u Token) Token {
	if t.Covers(u) {
		return t
	}
	return u
}

// String is the token's text form: "1.TERM.INDEX" (1 is the format).
func (t Token) String() string {
	if t.IsZero() {
		return ""
	}
	return "1." + strconv.FormatUint(t.Term, 10) + "." + strconv.FormatUint(t.Index, 10)
}

// ParseToken parses a token's text form; "" is the zero token.
func ParseToken(s string) (Token, error) {
	if s == "" {
		return Token{}, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != "1" || len(s) > 64 {
		return Token{}, fmt.Errorf("%w: %q", ErrBadToken, s)
	}
	term, err1 := strconv.ParseUint(parts[1], 10, 64)
	index, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || (term == 0) != (index == 0) {
		return Token{}, fmt.Errorf("%w: %q", ErrBadToken, s)
	}
	return Token{Term: term, Index: index}, nil
}

// ReadResult is the reply to a read.
type ReadResult struct {
	Found bool
	Value []byte
	Index uint64 // version: log index that last changed the key (0 if absent)
	// For stale reads: how far behind this node may be.
	LagEntries uint64
	LagMillis  int64
	// Token covers the state read and the session token the read carried:
	// a session's next token.
	Token Token
	// Multi-leader: Siblings lists every concurrent value when a key has
	// more than one (Value is then the first, Found true); Context is the
	// read's opaque causal context, to send back with a write that
	// supersedes what was read ("" for single-leader reads).
	Siblings []Sibling
	Context  string
	// Replicas (leaderless): how many replicas answered; Repaired: how many
	// a blocking read repair updated before the reply.
	Replicas int
	Repaired int
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
	// Election is "quorum" or "coordinator"; FailureDetector describes how
	// this node watches its leader.
	Election        string               `json:"election,omitempty"`
	FailureDetector *FailureDetectorInfo `json:"failure_detector,omitempty"`
	// Mode is the node's replication engine, "single-leader" or
	// "multi-leader" ("" from a node that predates engines: single-leader).
	Mode string `json:"mode,omitempty"`
	// Multi-leader: every peer's streams, the conflicts this node has
	// recorded, and the remote timestamps it did not follow because they
	// were ahead of its clock by more than the maximum offset.
	Streams     []StreamInfo `json:"streams,omitempty"`
	Conflicts   uint64       `json:"conflicts,omitempty"`
	ClockClamps uint64       `json:"clock_clamps,omitempty"`
	// Leaderless: the ring, hints and repairs.
	Leaderless *LeaderlessInfo `json:"leaderless,omitempty"`
}

// StreamInfo is one peer of a multi-leader node: how far each applied the
// other's stream of writes, and the peer's clock.
type StreamInfo struct {
	Peer string `json:"peer"`
	// PeerAcked: this node's stream applied durably by the peer, as its
	// acks say (the stream ends at NodeStatus.LastIndex).
	PeerAcked uint64 `json:"peer_acked"`
	// Applied: the peer's stream applied here; Known: its end as last
	// heard. LagEntries = Known - Applied; LagMillis: how long this node
	// has been behind the peer's stream (0 when caught up).
	Applied    uint64 `json:"applied"`
	Known      uint64 `json:"known"`
	LagEntries uint64 `json:"lag_entries"`
	LagMillis  int64  `json:"lag_ms"`
	// LastContactMs: since the peer was last heard (-1: not since start).
	LastContactMs int64 `json:"last_contact_ms"`
	// ClockOffsetMs: the largest offset seen in the peer's timestamps
	// (positive: the peer's clock is ahead of this node's).
	ClockOffsetMs float64 `json:"clock_offset_ms"`
}

// FailureDetectorInfo is a node's failure detector (a follower's; on the
// leader only the mode and the counters mean anything).
type FailureDetectorInfo struct {
	Mode            string  `json:"mode"`       // adaptive or fixed
	TimeoutMillis   int64   `json:"timeout_ms"` // silence after which it would campaign now
	Suspicion       float64 `json:"suspicion"`  // phi (adaptive)
	Suspicions      uint64  `json:"suspicions"`
	FalseSuspicions uint64  `json:"false_suspicions"`
	Detections      uint64  `json:"detections"`
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

// Errors a Service returns (wrapped). Their class and wire code are in
// errors.go.
var (
	ErrNotLeader      = errors.New("not the leader")
	ErrNoLeader       = errors.New("no leader is known")
	ErrWriteTimeout   = errors.New("ack mode not met in time; the outcome is not final")
	ErrOutcomeUnknown = errors.New("leadership lost while the write was in flight; outcome unknown")
	ErrBadConsistency = errors.New("unknown consistency level (want linearizable, stale, session, bounded or local)")
	// ErrBadToken: a session token that is not one this database issues.
	ErrBadToken = errors.New("malformed session token")
	// ErrBadBound: a bounded read without a bound, or with a negative one.
	ErrBadBound = errors.New("a bounded read needs max_lag and/or max_lag_entries, positive")
	// ErrRolledBack: a session read whose token names a write that was
	// discarded in a failover (never committed). The error text names the
	// index; the session must not expect to see that write.
	ErrRolledBack = errors.New("the session's write was rolled back")
	// ErrConditionFailed: a conditional write (If-Match, if_index) whose
	// condition did not hold; nothing changed (HTTP 412).
	ErrConditionFailed = errors.New("condition not met")
	// ErrNotInteger: INCR on a value that is not a base-10 64-bit integer.
	ErrNotInteger = errors.New("value is not an integer or out of range")
	// ErrOverflow: INCR would overflow a 64-bit integer.
	ErrOverflow = errors.New("increment or decrement would overflow")
	// ErrBadCommand: a command that is not well formed.
	ErrBadCommand    = errors.New("malformed command")
	ErrEmptyKey      = errors.New("empty key")
	ErrValueTooLarge = errors.New("value too large")
	ErrKeyTooLarge   = errors.New("key too large")
	ErrStopped       = errors.New("node stopped")
	// ErrInsufficientStorage: the leader's free disk space is below its
	// reserve; the write was refused and nothing was written (HTTP 507).
	ErrInsufficientStorage = errors.New("insufficient storage")
)

// CmdErr is the error a command's result stands for (nil for CodeOK).
func CmdErr(r command.Result) error {
	switch r.Code {
	case command.CodeOK:
		return nil
	case command.CodeCondFailed:
		return fmt.Errorf("%w: the key's version is %d", ErrConditionFailed, r.Version)
	case command.CodeNotInteger:
		return ErrNotInteger
	case command.CodeOverflow:
		return ErrOverflow
	case command.CodeTooLarge:
		return fmt.Errorf("%w: the command's result would exceed the largest value", ErrValueTooLarge)
	}
	return fmt.Errorf("%w: result code %d", ErrBadCommand, r.Code)
}
