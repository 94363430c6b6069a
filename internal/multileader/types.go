package multileader

import (
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

var (
	// ErrMalformed: a peer message or entry breaks the protocol's rules; the
	// core changed nothing.
	ErrMalformed = errors.New("multileader: malformed message")
	// ErrUnknownPeer: a message from a node that is not a configured peer.
	ErrUnknownPeer = errors.New("multileader: unknown peer")
	// ErrInvalidWrite: a write the core refuses (no key, bad ack mode, ...).
	ErrInvalidWrite = errors.New("multileader: invalid write")
	// ErrContextAhead: a causal context claims writes of this node that the
	// node does not have (a context from before a data loss, or forged).
	ErrContextAhead = errors.New("multileader: context ahead of this node")
	// ErrTimeout: a write's ack mode was not met within its timeout. The
	// write is durable locally and will still replicate.
	ErrTimeout = errors.New("multileader: ack timeout")
)

// Op is what a stream entry does to its key.
type Op uint8

const (
	OpPut    Op = 1 // a new register value
	OpDelete Op = 2 // a register tombstone, and an observed reset of the counter
	OpIncr   Op = 3 // a counter increment (negative: decrement)
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "del"
	case OpIncr:
		return "incr"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Entry is one write in its origin's stream. It carries everything a
// replica needs to apply it as a join (see DESIGN.md), so applying it twice
// is harmless.
type Entry struct {
	Origin string // the node that accepted the write
	Seq    uint64 // position in Origin's stream: 1, 2, 3, ...
	Key    string
	Op     Op
	Time   hlc.Timestamp // hybrid-logical time of the write

	// Put and Delete: the write's dot (Origin, per-key counter) and the
	// causal context it overwrote.
	Dot     vclock.Dot
	Context vclock.Vector
	Value   []byte // Put only

	// Incr: Origin's counter share after the increment. Delete: the reset
	// delta (floors at the counter the writer observed).
	Counter vclock.Counter
}

// KeyState is a key's replicated state: a register (a set of siblings with
// its causal context; exactly one sibling at most under LWW) and a PN
// counter. A key is normally used as one or the other; a delete clears both.
type KeyState struct {
	Reg vclock.Set
	Ctr vclock.Counter
}

// Equal reports whether two states are identical.
func (s KeyState) Equal(t KeyState) bool { return s.Reg.Equal(t.Reg) && s.Ctr.Equal(t.Ctr) }

// Live returns the register's live (non-tombstone) siblings.
func (s KeyState) Live() []vclock.Sibling {
	var out []vclock.Sibling
	for _, x := range s.Reg.Siblings {
		if !x.Deleted {
			out = append(out, x)
		}
	}
	return out
}

// Token returns the opaque causal context a client receives with a read of
// s, for cluster.
func (s KeyState) Token(cluster, key string) string {
	return vclock.EncodeToken(cluster, key, s.Reg.ReadContext())
}

// Store is the runtime's applied key state, read by the core. Get returns
// the state of key as of the last Advance (the zero KeyState if absent);
// changes handed out in a Ready must be visible through Get after its
// Advance. An error is fatal to the core's caller (a disk fault).
type Store interface {
	Get(key string) (KeyState, error)
}

// Log is the node's own durable stream. Entries returns the entries with
// lo <= Seq <= hi, all of them, in order; only sequence numbers up to the
// last Advance are asked for. An error is fatal.
type Log interface {
	LastSeq() uint64
	Entries(lo, hi uint64) ([]Entry, error)
}

// AckMode says when a write is acknowledged.
type AckMode uint8

const (
	AckLocal AckMode = iota // durable in the local stream
	AckPeers                // durable locally and applied durably by Write.AckPeers peers
	AckAll                  // durable locally and applied durably by every peer
)

// Write is a client write proposed to the local node.
type Write struct {
	Key    string
	Value  []byte
	Delete bool
	Incr   bool  // a counter increment by IncrBy (INCR is IncrBy 1)
	IncrBy int64 // with Incr
	// Context is the opaque token of the read this write follows (empty: a
	// blind write; under LWW it overwrites what this node has, under
	// Siblings it becomes a sibling of it).
	Context      string
	Ack          AckMode
	AckPeers     int // with AckPeers: how many peers
	TimeoutTicks int // for AckPeers/AckAll; 0: Config.AckTimeoutTicks
}

// Result finishes a proposal.
type Result struct {
	ID    uint64
	Seq   uint64 // position of the write in the local stream
	Peers int    // peers known to have applied it durably
	Err   error  // nil, or ErrTimeout
}

// MsgType is a peer message's kind.
type MsgType uint8

const (
	MsgEntries   MsgType = 1 // From's stream entries, contiguous, ascending
	MsgAck       MsgType = 2 // From applied To's stream up to Seq, durably
	MsgResend    MsgType = 3 // From asks To to resend its stream from Seq+1
	MsgHeartbeat MsgType = 4 // From's stream ends at Seq; answered by MsgAck
)

// Message is a peer message. The transport authenticates From.
type Message struct {
	Type    MsgType
	From    string
	To      string
	Seq     uint64
	Entries []Entry
}

// Position is how far a replica has applied one origin's stream.
type Position struct {
	Origin string
	Seq    uint64
}

// Change is a key's new state, to store.
type Change struct {
	Key   string
	State KeyState
}

// Conflict reasons.
const (
	ReasonLWW           = "lww: higher hybrid timestamp wins"
	ReasonLWWTie        = "lww: equal timestamps, higher node id wins"
	ReasonSiblings      = "siblings: concurrent values kept"
	ReasonSiblingsLimit = "siblings: over MaxSiblings, lowest-ranked dropped"
)

// Conflict records concurrent versions of a key meeting at a node.
type Conflict struct {
	Node     string           // where it was detected
	Key      string           //
	Versions []vclock.Sibling // every competing version (dot = node and counter, time)
	Winner   vclock.Dot       // zero when every version is kept (siblings)
	Losers   []vclock.Dot     // versions dropped by the policy
	Reason   string
}

// Ready is a batch of work for the runtime; see the package doc for the
// order in which it must be processed.
type Ready struct {
	// Entries: new entries of this node's own stream, to append durably
	// first.
	Entries []Entry
	// Changes, Applied and Conflicts: to persist durably and atomically
	// together (one store batch), after Entries are durable. Applied are the
	// new positions (including this node's own origin).
	Changes   []Change
	Applied   []Position
	Conflicts []Conflict
	// Messages: to send after the above are durable.
	Messages []Message
	// Results: to answer after the above are durable.
	Results []Result
}

// IsEmpty reports whether rd has no work.
func (rd *Ready) IsEmpty() bool {
	return len(rd.Entries) == 0 && len(rd.Changes) == 0 && len(rd.Applied) == 0 &&
		len(rd.Conflicts) == 0 && len(rd.Messages) == 0 && len(rd.Results) == 0
}
