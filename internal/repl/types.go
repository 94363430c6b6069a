package repl

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand"

	"github.com/trireme-db/trireme/internal/entry"
)

// NodeID names a voting member ("n1", "n2", ...). The empty ID means "none".
type NodeID string

// None is the empty NodeID: no vote, no known leader.
const None NodeID = ""

// Role is the part a node currently plays.
type Role uint8

// Roles.
const (
	RoleFollower Role = iota
	RolePreCandidate
	RoleCandidate
	RoleLeader
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// AckMode says how durable a write must be before it is acknowledged.
type AckMode uint8

// Ack modes. See the package doc for their exact meaning.
const (
	AckMajority AckMode = iota // committed: durable on a majority, current-term rule
	AckAsync                   // durable (fsynced) on the leader
	AckSemiSync                // durable on the leader and on Ack.Replicas followers
	AckSync                    // durable on the leader and on every follower
)

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

// Ack is the acknowledgement a write asks for.
type Ack struct {
	Mode     AckMode
	Replicas int // followers required for AckSemiSync (K >= 1); ignored otherwise
}

// MaxTerm is the ceiling on terms: a message at or above it is refused as
// malformed. An honest cluster never gets near it (2^62 elections), while a
// term at the top of the range, once adopted, would leave every node unable
// to start an election at the next term, for good.
const MaxTerm = 1 << 62

// MaxTermJump is the largest step above the local term a message may carry;
// a larger one is refused as malformed. A node that was away while the others
// held elections sees a jump of one per election (pre-vote keeps a cut-off
// node from inflating its own), and 2^32 elections take years at any
// election timeout, so only a bug or a forgery jumps further. With the
// ceiling it keeps one bad message from taking the cluster near the top of
// the range.
const MaxTermJump = 1 << 32

// HardState is the state that must be persisted before any message that
// depends on it is sent: the current term and the vote cast in it.
type HardState struct {
	Term   uint64
	Vote   NodeID
	Commit uint64 // highest index known committed (a hint; may lag after a crash)
}

// IsEmpty reports whether h is the zero HardState.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// MsgType is the type of a protocol message.
type MsgType uint8

// Message types. Part of the wire format (values must not change).
const (
	MsgPreVote        MsgType = 1  // pre-candidate asks: would you vote for me at Term?
	MsgPreVoteResp    MsgType = 2  // Reject=false grants
	MsgVote           MsgType = 3  // candidate asks for a vote at Term; LogTerm/Index = its last entry
	MsgVoteResp       MsgType = 4  // Reject=false grants
	MsgApp            MsgType = 5  // leader appends Entries after (LogTerm, Index); Commit = leader commit
	MsgAppResp        MsgType = 6  // Index = highest index durable on the follower that matches the leader; or Reject with hints
	MsgHeartbeat      MsgType = 7  // leader liveness; Commit = min(leader commit, follower match); Index = leader commit; Context = read round
	MsgHeartbeatResp  MsgType = 8  // Context echoed
	MsgTimeoutNow     MsgType = 9  // leadership transfer: campaign now, ignoring stickiness (its MsgVotes carry Context = 1)
	MsgSnapshotNeeded MsgType = 10 // reserved: the follower needs a snapshot (log compacted)
)

func (t MsgType) String() string {
	switch t {
	case MsgPreVote:
		return "PreVote"
	case MsgPreVoteResp:
		return "PreVoteResp"
	case MsgVote:
		return "Vote"
	case MsgVoteResp:
		return "VoteResp"
	case MsgApp:
		return "App"
	case MsgAppResp:
		return "AppResp"
	case MsgHeartbeat:
		return "Heartbeat"
	case MsgHeartbeatResp:
		return "HeartbeatResp"
	case MsgTimeoutNow:
		return "TimeoutNow"
	case MsgSnapshotNeeded:
		return "SnapshotNeeded"
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Message is one protocol message between nodes. Every message carries the
// sender's term: terms are fencing tokens.
type Message struct {
	Type    MsgType
	From    NodeID
	To      NodeID
	Term    uint64
	LogTerm uint64 // MsgApp: term of entry Index; votes: term of the candidate's last entry
	Index   uint64 // MsgApp: index before Entries; votes: candidate's last index; AppResp: see MsgAppResp
	Commit  uint64 // leader's commit index (MsgApp, MsgHeartbeat)
	Entries []entry.Entry
	Reject  bool
	// Fast backtracking hints on a rejected MsgAppResp: the follower's conflicting
	// term at Index (0 if its log is shorter) and the first index it holds of
	// that term (or its last index + 1 if shorter).
	HintTerm  uint64
	HintIndex uint64
	Context   uint64 // heartbeat round id (read index / lease confirmation)
}

// Proposal is a write handed to the leader.
type Proposal struct {
	ID           uint64 // caller-chosen, unique among pending proposals; echoed in the Result
	Kind         entry.Kind
	Key          []byte
	Value        []byte
	RequestID    uint64
	Ack          Ack
	TimeoutTicks int // 0 = Config.DefaultProposalTimeoutTicks
}

// Outcome is how a proposal finished.
type Outcome uint8

// Outcomes.
const (
	OutcomeOK      Outcome = iota // the ack mode was met
	OutcomeTimeout                // the mode was not met in time; Durability says what was; not final
	OutcomeUnknown                // leadership was lost while in flight: may or may not survive
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeUnknown:
		return "unknown"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Durability is what a write achieved when it finished.
type Durability struct {
	LeaderDurable bool // fsynced on the leader
	Replicas      int  // followers known to have it durable
	Committed     bool // committed (durable on a majority under the current-term rule)
}

// Result reports a finished proposal.
type Result struct {
	ID         uint64
	Index      uint64
	Term       uint64
	Outcome    Outcome
	Durability Durability
}

// ReadLevel is the consistency a read asks for from the core. Stale reads do not
// go through the core at all: the runtime serves them from its applied state.
type ReadLevel uint8

// Read levels served by the core.
const (
	ReadLinearizable ReadLevel = iota // lease if valid, else a heartbeat round
	ReadIndexOnly                     // always a heartbeat round, never the lease
)

// ReadRequest asks for a linearizable read point.
type ReadRequest struct {
	ID    uint64 // caller-chosen, echoed in the ReadResult
	Level ReadLevel
}

// ReadResult says a read may now be served from the applied state: Index is the
// read point, and it is applied once the Ready that carries this result has had
// its CommittedEntries applied. Err is non-nil if the read failed (leadership
// lost, timed out); then it must not be served.
type ReadResult struct {
	ID    uint64
	Index uint64
	Err   error
}

// Ready is a batch of work for the runtime. Process it in this order:
//
//  1. Discarded: write every entry to the rollback journal, durably, before the
//     append that removes them from the log is persisted.
//  2. HardState (if not empty) and Entries: persist durably (fsync). Entries[0]
//     may have an index at or below the current last index: then the log is
//     truncated after Entries[0].Index-1 first.
//  3. Messages: send, only after step 2 is durable.
//  4. CommittedEntries: apply to the state store, in order. They are always
//     already durable in the local log.
//  5. Reads: serve each successful ReadResult from the store after step 4.
//     Results: reply to the writers.
//  6. Call Advance(rd) to tell the core all of this is done.
type Ready struct {
	// HardState must be persisted (step 2) before any Message of this Ready
	// is sent: a vote or a new term must survive a crash. Empty if unchanged.
	HardState HardState
	// Entries are appended to the local log durably in step 2, before the
	// Messages are sent. If Entries[0].Index <= the log's last index, the log
	// is first truncated after Entries[0].Index-1 (the entries removed are in
	// Discarded of this Ready or an earlier one). After Advance the core
	// reads them back through Storage.
	Entries []entry.Entry
	// Discarded are entries removed from the log by a conflicting append
	// (never committed), in index order. Write them to the rollback journal
	// durably in step 1, before the truncation in step 2 is persisted. It may
	// include entries that were still in the core and never reached the disk.
	Discarded []entry.Entry
	// Messages are sent in step 3, only after step 2 is durable: a
	// follower's MsgAppResp acknowledges entries as durable, a MsgVoteResp
	// relies on the persisted vote.
	Messages []Message
	// CommittedEntries are applied to the store in step 4, in order. They
	// are committed and already durable locally (confirmed by an earlier
	// Advance), contiguous with what was applied before.
	CommittedEntries []entry.Entry
	// Reads are served in step 5, after CommittedEntries are applied: a
	// ReadResult with Err == nil may be served once the store has applied
	// its Index, which it has by then. One with Err set is answered with it.
	Reads []ReadResult
	// Results are finished proposals, answered to the writers in step 5.
	Results []Result
	// Snapshots lists followers that need entries this log no longer holds
	// (leader only). For each, the runtime sends a snapshot of its store at
	// its applied index, with the configuration at that index, and calls
	// ReportSnapshot when the transfer ends. Independent of the steps above.
	Snapshots []NodeID
}

// Empty reports whether rd contains no work.
func (rd *Ready) Empty() bool {
	return rd.HardState.IsEmpty() && len(rd.Entries) == 0 && len(rd.Discarded) == 0 &&
		len(rd.Messages) == 0 && len(rd.CommittedEntries) == 0 && len(rd.Reads) == 0 &&
		len(rd.Results) == 0 && len(rd.Snapshots) == 0
}

// Storage is the core's read-only view of the durable log, provided by the
// runtime (the WAL) or by the simulator. The core never writes through it: it
// asks the runtime to write through Ready.
type Storage interface {
	// InitialState returns the persisted HardState (zero for a new node).
	InitialState() (HardState, error)
	// FirstIndex is the first index still held (1 for a log never compacted).
	FirstIndex() uint64
	// LastIndex is the index of the last durable entry (0 for an empty log).
	LastIndex() uint64
	// Term returns the term of entry i. i may be FirstIndex()-1 (the term of the
	// compaction point) or 0 (term 0). Other indexes outside the log: ErrUnavailable.
	Term(i uint64) (uint64, error)
	// Entries returns entries [lo, hi), at least one if lo < hi, stopping before
	// maxBytes of encoded size is exceeded. The caller must not modify them.
	Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error)
}

// Peer is one voting member.
type Peer struct {
	ID       NodeID
	Priority int // 0 = never becomes leader; higher takes over when caught up
}

// Config configures one core. All durations are in ticks.
type Config struct {
	ID NodeID
	// Peers bootstraps a new cluster: every voting member, this node
	// included. Ignored when Conf is set.
	Peers []Peer
	// Conf is the configuration at Applied, as the runtime's store holds
	// it (nil for a store that never applied one: then Peers is the
	// configuration). Configurations in the log after Applied take effect
	// as New reads them. This node need not be a member (a node removed,
	// or one joining that was given the configuration that adds it).
	Conf *ConfState
	// MaxPromoteLag is the most entries a learner may be behind the
	// leader's last index to be promoted to voter (default 1024).
	MaxPromoteLag int

	HeartbeatTicks int // leader sends heartbeats this often
	ElectionTicks  int // minimum election timeout and leader stickiness; fixed: each node randomizes in [E, 2E)
	// Detector chooses how followers detect a failed leader (DetectorFixed,
	// the zero value, or DetectorAdaptive). MaxElectionTicks bounds the
	// adaptive deadline from above (it must be >= ElectionTicks) and is the
	// leader's check-quorum window when adaptive; PauseTicks is the silence
	// beyond the learned spread that the adaptive detector tolerates (stalls,
	// collection pauses). Both are ignored when fixed.
	Detector         Detector
	MaxElectionTicks int
	PauseTicks       int
	// ExternalElection: an external coordinator decides who campaigns and
	// at which term (Campaign) and bounds each leader's reign
	// (ExtendLeadership); the core never campaigns on its own, and does
	// no leadership transfers.
	ExternalElection            bool
	LeaseTicks                  int // leader lease after a majority heard it; < ElectionTicks - DriftTicks
	DriftTicks                  int // clock-drift margin between nodes
	CheckQuorum                 bool
	PreVote                     bool
	Applied                     uint64 // index already applied to the store (on restart)
	MaxMsgBytes                 int    // max encoded entry bytes in one MsgApp
	MaxInflightMsgs             int    // max unacknowledged MsgApps per follower
	DefaultProposalTimeoutTicks int
	MaxPendingProposals         int // proposals beyond this are refused with ErrBusy
	// MaxApplyBytes bounds the encoded size of Ready.CommittedEntries (at least
	// one entry is always returned); 0 = no bound.
	MaxApplyBytes int

	Rand   *rand.Rand   // seeded source for election timeouts (required)
	Logger *slog.Logger // nil = discard

	// Bugs enables deliberate protocol bugs for checker tests. It is an empty
	// struct unless built with the replbugs tag.
	Bugs Bugs
}

// Errors returned by the core.
var (
	ErrNotLeader      = errors.New("repl: not the leader")
	ErrTransferring   = errors.New("repl: leadership transfer in progress")
	ErrBusy           = errors.New("repl: too many pending proposals")
	ErrBadAckMode     = errors.New("repl: unknown ack mode")
	ErrUnavailable    = errors.New("repl: log entry unavailable")
	ErrLeadershipLost = errors.New("repl: leadership lost")
	ErrReadTimeout    = errors.New("repl: read timed out")
	ErrInvalidConfig  = errors.New("repl: invalid config")
	ErrUnknownPeer    = errors.New("repl: unknown peer")
	ErrNotEnoughPeers = errors.New("repl: not enough followers for the ack mode")
	// Added by the core implementation:
	ErrMalformedMessage  = errors.New("repl: malformed message")
	ErrDuplicateProposal = errors.New("repl: duplicate pending proposal id")
	ErrBadProposal       = errors.New("repl: invalid proposal")
	ErrBadTransferTarget = errors.New("repl: invalid leadership transfer target")
	ErrStaleSnapshot     = errors.New("repl: snapshot not newer than the commit index")
)

// FollowerStatus is the leader's view of one follower.
type FollowerStatus struct {
	ID                NodeID
	Match             uint64 // highest index known durable on the follower
	Next              uint64 // next index to send
	TicksSinceContact int    // ticks since the follower last answered
	Inflight          int    // unacknowledged MsgApps
	Learner           bool   // a non-voting member
	State             string // "probe", "replicate" or "snapshot"
}

// Status is a snapshot of the core's state, for the runtime's APIs and metrics.
type Status struct {
	ID           NodeID
	Role         Role
	Term         uint64
	Vote         NodeID
	Lead         NodeID // known leader, None if unknown
	LastIndex    uint64 // last index in the log (durable or not)
	StableIndex  uint64 // last index known durable locally
	Commit       uint64
	Applied      uint64
	LeaderCommit uint64 // follower: highest commit index heard from the leader
	// TicksSinceLeader: follower: ticks since the leader was last heard
	// (staleness); counted from start-up if no leader was heard since (then
	// LeaderCommit is 0). Always 0 on the leader.
	TicksSinceLeader int
	LeaseValid       bool             // leader: lease currently valid
	Transferring     NodeID           // leader: transfer target, None if none
	Followers        []FollowerStatus // leader only, sorted by ID
	FirstIndex       uint64           // first index still in the log
	Conf             ConfState        // the active configuration
	ConfIndex        uint64           // index of the entry that set it
	Detector         DetectorStatus   // follower: its failure detector
}
