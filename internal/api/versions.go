package api

import (
	"context"
	"errors"
)

// The vocabulary of engines that accept writes on every node (multi-leader
// today): concurrent values, causal contexts and conflict records. A
// single-leader node never fills these in.

// Errors of engines that accept writes on every node.
var (
	// ErrBadContext: a causal context that is malformed, issued by another
	// cluster or for another key, or that names writes this node does not
	// have; nothing was written (400).
	ErrBadContext = errors.New("invalid causal context")
	// ErrNotSupported: a request this node's replication mode does not
	// offer (membership changes and leadership transfer on a multi-leader
	// cluster, conflicts on a single-leader one); nothing was done (400).
	ErrNotSupported = errors.New("not supported in this replication mode")
)

// Sibling is one of a key's concurrent values: writes no node had seen
// each other's of when they were made (multi-leader, siblings policy).
type Sibling struct {
	Value []byte
	// Node accepted the write; Counter is its position among Node's writes
	// to the key. Together they are the write's dot, "node:counter".
	Node    string
	Counter uint64
	// Time is the write's hybrid logical time, "wall.logical" (wall in Unix
	// nanoseconds).
	Time string
}

// ConflictVersion is one competing version in a ConflictRecord.
type ConflictVersion struct {
	Dot     string `json:"dot"` // node:counter
	Node    string `json:"node"`
	Time    string `json:"time"` // hybrid logical time
	Value   []byte `json:"-"`
	Deleted bool   `json:"deleted,omitempty"`
}

// ConflictRecord is one detected conflict: concurrent versions of a key
// that met at a node, and what the policy did.
type ConflictRecord struct {
	Seq      uint64 // position in this node's conflict log, from 1
	Node     string // the node that detected it
	Key      []byte
	Versions []ConflictVersion
	Winner   string   // the dot kept, "" when every version is kept (siblings)
	Losers   []string // the dots the policy dropped
	Reason   string
}

// ConflictLog is implemented by a Service whose engine records conflicts.
// Conflicts returns up to limit records with Seq > after, oldest first, and
// how many older records were dropped to bound the log.
type ConflictLog interface {
	Conflicts(ctx context.Context, after uint64, limit int) (records []ConflictRecord, dropped uint64, err error)
}
