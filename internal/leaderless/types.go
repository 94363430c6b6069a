package leaderless

import (
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/hlc"
	"github.com/trireme-db/trireme/internal/vclock"
)

var (
	// ErrMalformed: a peer message breaks the protocol's rules; the core
	// changed nothing.
	ErrMalformed = errors.New("leaderless: malformed message")
	// ErrUnknownPeer: a message from a node that is not a cluster member.
	ErrUnknownPeer = errors.New("leaderless: unknown peer")
	// ErrInvalid: a request the core refuses (no key, W or R out of range).
	ErrInvalid = errors.New("leaderless: invalid request")
	// ErrUnavailable: not enough replicas are reachable to try the request:
	// no home replica to version a write, or fewer than W (R) placements.
	ErrUnavailable = errors.New("leaderless: not enough replicas reachable")
	// ErrTimeout: fewer than W (R) replicas answered within the timeout. A
	// write may still be durable on the replicas that did answer.
	ErrTimeout = errors.New("leaderless: quorum not reached in time")
	// ErrOverloaded: the core holds its maximum of pending requests.
	ErrOverloaded = errors.New("leaderless: too many requests in flight")
)

// MaxKeyLen bounds a key. Part of the wire format's bounds.
const MaxKeyLen = 64 << 10

// MsgType is a peer message's kind.
type MsgType uint8

const (
	// MsgMint asks a home replica to version a write: the replica draws the
	// write's dot, applies it durably and answers MsgMintAck with the
	// resulting state of the key.
	MsgMint MsgType = 1
	// MsgMintAck carries the minted state (Set) back to the coordinator,
	// after it is durable on the minter. Err set: the minter refused.
	MsgMintAck MsgType = 2
	// MsgStore asks a node to merge Set into its copy of Key (HintFor
	// empty) or into its hint for HintFor, durably. ReqID 0: no answer
	// wanted (background read repair).
	MsgStore MsgType = 3
	// MsgStoreAck: the MsgStore with ReqID is durable (or refused: Err).
	MsgStoreAck MsgType = 4
	// MsgRead asks for a node's copy of Key (a stand-in answers with its
	// hints for Key).
	MsgRead MsgType = 5
	// MsgReadAck answers MsgRead: Set, and Found.
	MsgReadAck MsgType = 6
	// MsgPing keeps liveness fresh when nothing else flows.
	MsgPing MsgType = 7
	// MsgTree starts an anti-entropy exchange: the sender's Merkle leaves
	// over the keys both nodes replicate (Hashes, level Depth).
	MsgTree MsgType = 8
	// MsgBuckets carries, for the Buckets the receiver of a MsgTree found
	// different, the sender's copies (Items) of the shared keys in them.
	// Reply true: the receiver answers with its own copies (Reply false).
	MsgBuckets MsgType = 9
	// MsgGCProbe asks whether the receiver's copy of Key is exactly Set (a
	// tombstone) and it holds no hint for Key.
	MsgGCProbe MsgType = 10
	// MsgGCVote answers MsgGCProbe: OK.
	MsgGCVote MsgType = 11
	// MsgGCDrop tells a home replica to drop Key if its copy is still Set.
	MsgGCDrop MsgType = 12
)

func (t MsgType) String() string {
	switch t {
	case MsgMint:
		return "mint"
	case MsgMintAck:
		return "mint-ack"
	case MsgStore:
		return "store"
	case MsgStoreAck:
		return "store-ack"
	case MsgRead:
		return "read"
	case MsgReadAck:
		return "read-ack"
	case MsgPing:
		return "ping"
	case MsgTree:
		return "tree"
	case MsgBuckets:
		return "buckets"
	case MsgGCProbe:
		return "gc-probe"
	case MsgGCVote:
		return "gc-vote"
	case MsgGCDrop:
		return "gc-drop"
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Refusal codes carried in acks (Message.Err).
const (
	RefuseNone      uint8 = 0
	RefuseHintsFull uint8 = 1 // a stand-in has no room for another hint
	RefuseNotHome   uint8 = 2 // a mint sent to a node that is not a home replica of the key
	RefuseStopped   uint8 = 3 // the node is failing (disk error)
)

// Item is one key's state, as anti-entropy exchanges it.
type Item struct {
	Key []byte
	Set vclock.Set
}

// Message is one peer message. Which fields mean something depends on Type;
// the rest are zero (the codec enforces it).
type Message struct {
	Type MsgType
	From string
	To   string

	ReqID uint64 // Mint, MintAck, Store, StoreAck, Read, ReadAck, GC*
	Key   []byte // Mint, MintAck, Store, Read, ReadAck, GCProbe, GCVote, GCDrop

	// Mint: the write.
	Context vclock.Vector
	Value   []byte
	Delete  bool
	Time    hlc.Timestamp

	Set     vclock.Set // MintAck, Store, ReadAck, GCProbe, GCDrop
	Found   bool       // ReadAck
	HintFor string     // Store: the home replica a stand-in keeps this for
	Err     uint8      // MintAck, StoreAck: a Refuse code
	OK      bool       // GCVote

	// Tree: the Merkle leaves (level Depth) of the sender's tree for the
	// receiver. Buckets: the buckets compared, their items, and Reply.
	Depth   int
	Hashes  []uint64
	Buckets []int
	Items   []Item
	Reply   bool
}

// Write is a client write handed to Propose.
type Write struct {
	ID      uint64 // the caller's, echoed in the Result; unique among pending requests
	Key     []byte
	Value   []byte
	Delete  bool
	Context vclock.Vector // what the client read (from its causal token); nil: a blind write
	Time    hlc.Timestamp // the coordinator's hybrid time for the write
	W       int           // replicas that must hold it durably, 1..N
}

// Read is a client read handed to ProposeRead.
type Read struct {
	ID  uint64
	Key []byte
	R   int // replicas that must answer, 1..N
	// Repair: the reply waits until the stale replicas among those that
	// answered have merged the result (read repair before replying).
	Repair bool
}

// Result finishes a Write or a Read.
type Result struct {
	ID uint64
	// Set: a write's minted state of the key (what the minter holds after
	// it); a read's merge of the answers.
	Set   vclock.Set
	Found bool // a read: some replica had the key
	// Replicas: how many replicas acknowledged the write durably, or
	// answered the read, by the time of the result.
	Replicas int
	// Repaired: a read's stale replicas sent the merge so far (background
	// repair), or, with Read.Repair, those that acknowledged it durably.
	Repaired int
	Err      error
}

// KeyWrite is one key's new state for the runtime to persist. Drop: the key
// is removed (a collected tombstone).
type KeyWrite struct {
	Key  []byte
	Set  vclock.Set
	Drop bool
}

// Hint is a copy a stand-in keeps for an unreachable home replica, until it
// is handed over. One hint per (For, Key): later copies merge into it.
type Hint struct {
	For string
	Key []byte
	Set vclock.Set
}

// Store is the runtime's durable key state, read by the core. Get returns
// key's state as of the last Advance; Bucket returns every key in Merkle
// leaf bucket b (at the core's tree depth), for anti-entropy. An error is
// fatal to the caller (a disk fault).
type Store interface {
	Get(key []byte) (vclock.Set, bool, error)
	Bucket(b int) ([]Item, error)
}

// Envelope is a message to send.
type Envelope struct {
	To  string
	Msg Message
}

// Ready is what the core asks of the runtime, in this order: persist Keys,
// DoneHints (deletes, first: a hint handed over and then given a new copy
// in the same Ready must survive), Hints (puts) and MintFloor in one
// durable batch;
// then send Messages; then deliver Results. Advance after all of it.
type Ready struct {
	Keys      []KeyWrite
	Hints     []Hint
	DoneHints []Hint // Set unused: the (For, Key) to delete
	// MintFloor, if non-zero: the highest counter drawn, dots and request id
	// blocks alike (DESIGN.md, "Request ids"), to persist.
	MintFloor uint64
	Messages  []Envelope
	Results   []Result
}

// Empty reports whether r asks nothing.
func (r *Ready) Empty() bool {
	return len(r.Keys) == 0 && len(r.Hints) == 0 && len(r.DoneHints) == 0 && r.MintFloor == 0 &&
		len(r.Messages) == 0 && len(r.Results) == 0
}
