package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Errors a node returns where its replication engine refused a request. A
// node wraps the engine's error with one of these (keeping the engine's
// words in the message), so that client protocols need not know the engine.
var (
	// ErrBadAckMode: an ack mode the node does not know, or semi-sync with
	// no replica count (400).
	ErrBadAckMode = errors.New("unknown ack mode")
	// ErrNotEnoughReplicas: a semi-sync write asking for more replicas
	// than the cluster has voting followers; nothing was written (400).
	ErrNotEnoughReplicas = errors.New("not enough replicas for the ack mode")
	// ErrTransferring: a leadership transfer is under way and the leader
	// takes no writes; nothing was written, retry (503). The text says "no
	// leader", which clients read as "retry at the leader soon".
	ErrTransferring = errors.New("no leader for a moment: a leadership transfer is in progress; retry")
	// ErrBusy: the leader has too many writes pending; nothing was
	// written, retry (503).
	ErrBusy = errors.New("the leader is busy (too many requests pending); retry")
	// ErrReadTimeout: the leader could not confirm its leadership in time
	// to serve a read; retry (503).
	ErrReadTimeout = errors.New("the leader could not confirm its leadership in time; retry")
	// ErrLeadershipLost: the node lost leadership before it served a read;
	// retry (503). (A write in flight gets ErrOutcomeUnknown instead.)
	ErrLeadershipLost = errors.New("leadership was lost before the request was served; retry")
	// ErrBadTransferTarget: a leadership transfer to a node that cannot
	// lead (not a member, a priority of 0, or elections run by a
	// coordinator) (400).
	ErrBadTransferTarget = errors.New("invalid leadership transfer target")
	// ErrUnknownPeer: a request naming a node the leader does not know (400).
	ErrUnknownPeer = errors.New("unknown peer")
)

// Class is what an error means to a client: what happened, and what to do
// about it. Every client protocol answers a class alike (HTTP status, RESP
// error prefix: Class.HTTPStatus, Class.RESPPrefix), whichever node served
// the request.
type Class uint8

// Error classes.
const (
	// ClassInternal: an error the table does not know; a bug or a failing
	// disk (500, -ERR).
	ClassInternal Class = iota
	// ClassBadRequest: the request is malformed or asks for what cannot be;
	// nothing was done; the same request always fails (400, -ERR).
	ClassBadRequest
	// ClassTooLarge: a key or value over its limit; nothing was done (413, -ERR).
	ClassTooLarge
	// ClassConditionFailed: a conditional write whose condition did not
	// hold; nothing changed (412, -ERR).
	ClassConditionFailed
	// ClassConflict: a well-formed request that the current state refuses;
	// nothing changed; it may succeed once the state changes (409, -ERR).
	ClassConflict
	// ClassRolledBack: the session's write was discarded in a failover; the
	// session re-anchors (409, -ROLLEDBACK).
	ClassRolledBack
	// ClassNotFound: the named member does not exist (404, -ERR).
	ClassNotFound
	// ClassGone: this node was removed and will not serve again; use
	// another node (410, -ERR).
	ClassGone
	// ClassNotLeader: this node is not the leader and could not forward;
	// the reply names the leader (421, -READONLY).
	ClassNotLeader
	// ClassNoLeader: no leader is known (an election is running); nothing
	// was done; retry (503, -CLUSTERDOWN).
	ClassNoLeader
	// ClassRetry: the leader could not take the request for a moment
	// (a transfer, too much pending, leadership unconfirmed); nothing was
	// done; retry (503, -TRYAGAIN).
	ClassRetry
	// ClassUnavailable: this node is stopping and serves nothing (503,
	// -CLUSTERDOWN).
	ClassUnavailable
	// ClassTimeout: the ack mode was not met (or the request not done) in
	// time; the outcome is not final (504, -TIMEOUT).
	ClassTimeout
	// ClassOutcomeUnknown: leadership was lost while a write was in
	// flight; it may or may not be committed (503, -UNKNOWN).
	ClassOutcomeUnknown
	// ClassInsufficientStorage: the leader's free disk space is below its
	// reserve; nothing was written (507, -ERR).
	ClassInsufficientStorage

	numClasses
)

// classReplies is each class's HTTP status and RESP error prefix.
var classReplies = [numClasses]struct {
	name   string
	status int
	resp   string
}{
	ClassInternal:            {"internal", http.StatusInternalServerError, "ERR"},
	ClassBadRequest:          {"bad request", http.StatusBadRequest, "ERR"},
	ClassTooLarge:            {"too large", http.StatusRequestEntityTooLarge, "ERR"},
	ClassConditionFailed:     {"condition failed", http.StatusPreconditionFailed, "ERR"},
	ClassConflict:            {"conflict", http.StatusConflict, "ERR"},
	ClassRolledBack:          {"rolled back", http.StatusConflict, "ROLLEDBACK"},
	ClassNotFound:            {"not found", http.StatusNotFound, "ERR"},
	ClassGone:                {"gone", http.StatusGone, "ERR"},
	ClassNotLeader:           {"not leader", http.StatusMisdirectedRequest, "READONLY"},
	ClassNoLeader:            {"no leader", http.StatusServiceUnavailable, "CLUSTERDOWN"},
	ClassRetry:               {"retry", http.StatusServiceUnavailable, "TRYAGAIN"},
	ClassUnavailable:         {"unavailable", http.StatusServiceUnavailable, "CLUSTERDOWN"},
	ClassTimeout:             {"timeout", http.StatusGatewayTimeout, "TIMEOUT"},
	ClassOutcomeUnknown:      {"outcome unknown", http.StatusServiceUnavailable, "UNKNOWN"},
	ClassInsufficientStorage: {"insufficient storage", http.StatusInsufficientStorage, "ERR"},
}

func (c Class) String() string {
	if c < numClasses {
		return classReplies[c].name
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// HTTPStatus is the status of an HTTP reply to an error of class c.
func (c Class) HTTPStatus() int {
	if c < numClasses {
		return classReplies[c].status
	}
	return http.StatusInternalServerError
}

// RESPPrefix is the first word of a RESP error reply to an error of class c
// ("ERR", "TRYAGAIN", ...), without the '-'.
func (c Class) RESPPrefix() string {
	if c < numClasses {
		return classReplies[c].resp
	}
	return "ERR"
}

// Code is an error's identity between nodes: a follower that forwarded a
// request gets the leader's error as a Code and a message, and rebuilds it
// with ErrorOf. Part of the peer wire format (internal/transport's forward
// response): a value, once given, never changes meaning; new ones go after
// the last.
type Code uint8

// Error codes.
const (
	CodeOK             Code = 0
	CodeNotLeader      Code = 1
	CodeNoLeader       Code = 2
	CodeWriteTimeout   Code = 3
	CodeOutcomeUnknown Code = 4
	CodeEmptyKey       Code = 5
	CodeValueTooLarge  Code = 6
	CodeStopped        Code = 7
	CodeOther          Code = 8 // an error without an identity: its message only
	// Membership.
	CodeBadMember        Code = 9
	CodeChangeInProgress Code = 10
	CodeNotCaughtUp      Code = 11
	CodeUnknownMember    Code = 12
	CodeDuplicateMember  Code = 13
	CodeLastVoter        Code = 14
	CodeAlreadyVoter     Code = 15
	CodeRemoved          Code = 16
	// Sessions and commands.
	CodeRolledBack Code = 17
	CodeBadCommand Code = 18
	CodeBadToken   Code = 19
	CodeBadBound   Code = 20
	// Errors that had no code before (a follower answered them as
	// CodeOther, an internal error).
	CodeKeyTooLarge         Code = 21
	CodeBadConsistency      Code = 22
	CodeConditionFailed     Code = 23
	CodeNotInteger          Code = 24
	CodeOverflow            Code = 25
	CodeInsufficientStorage Code = 26
	CodeBadAckMode          Code = 27
	CodeNotEnoughReplicas   Code = 28
	CodeTransferring        Code = 29
	CodeBusy                Code = 30
	CodeReadTimeout         Code = 31
	CodeLeadershipLost      Code = 32
	CodeBadTransferTarget   Code = 33
	CodeUnknownPeer         Code = 34
	CodeBadContext          Code = 35
	CodeNotSupported        Code = 36
	CodeBadQuorum           Code = 37
	CodeQuorumUnavailable   Code = 38
	CodeLast                     = CodeQuorumUnavailable // the highest code this release knows
)

// errorTable is the one classification of the errors a Service returns:
// each sentinel's class and wire code. The first row that errors.Is
// matches wins, so an error that wraps two sentinels is classified by the
// one listed first: the outcomes of a write (unknown, timed out) before
// what caused them, and the context's errors last.
var errorTable = []struct {
	err   error
	class Class
	code  Code
}{
	{ErrOutcomeUnknown, ClassOutcomeUnknown, CodeOutcomeUnknown},
	{ErrWriteTimeout, ClassTimeout, CodeWriteTimeout},
	{ErrNotLeader, ClassNotLeader, CodeNotLeader},
	{ErrNoLeader, ClassNoLeader, CodeNoLeader},
	{ErrStopped, ClassUnavailable, CodeStopped},
	{ErrRemoved, ClassGone, CodeRemoved},
	{ErrInsufficientStorage, ClassInsufficientStorage, CodeInsufficientStorage},

	{ErrTransferring, ClassRetry, CodeTransferring},
	{ErrBusy, ClassRetry, CodeBusy},
	{ErrReadTimeout, ClassRetry, CodeReadTimeout},
	{ErrLeadershipLost, ClassRetry, CodeLeadershipLost},
	{ErrQuorumUnavailable, ClassRetry, CodeQuorumUnavailable},

	{ErrEmptyKey, ClassBadRequest, CodeEmptyKey},
	{ErrBadConsistency, ClassBadRequest, CodeBadConsistency},
	{ErrBadAckMode, ClassBadRequest, CodeBadAckMode},
	{ErrNotEnoughReplicas, ClassBadRequest, CodeNotEnoughReplicas},
	{ErrBadToken, ClassBadRequest, CodeBadToken},
	{ErrBadBound, ClassBadRequest, CodeBadBound},
	{ErrBadCommand, ClassBadRequest, CodeBadCommand},
	{ErrBadTransferTarget, ClassBadRequest, CodeBadTransferTarget},
	{ErrUnknownPeer, ClassBadRequest, CodeUnknownPeer},
	{ErrBadContext, ClassBadRequest, CodeBadContext},
	{ErrNotSupported, ClassBadRequest, CodeNotSupported},
	{ErrBadQuorum, ClassBadRequest, CodeBadQuorum},
	{ErrValueTooLarge, ClassTooLarge, CodeValueTooLarge},
	{ErrKeyTooLarge, ClassTooLarge, CodeKeyTooLarge},

	{ErrConditionFailed, ClassConditionFailed, CodeConditionFailed},
	{ErrNotInteger, ClassConflict, CodeNotInteger},
	{ErrOverflow, ClassConflict, CodeOverflow},
	{ErrRolledBack, ClassRolledBack, CodeRolledBack},

	{ErrBadMember, ClassBadRequest, CodeBadMember},
	{ErrDuplicateMember, ClassBadRequest, CodeDuplicateMember},
	{ErrLastVoter, ClassBadRequest, CodeLastVoter},
	{ErrAlreadyVoter, ClassBadRequest, CodeAlreadyVoter},
	{ErrChangeInProgress, ClassConflict, CodeChangeInProgress},
	{ErrNotCaughtUp, ClassConflict, CodeNotCaughtUp},
	{ErrUnknownMember, ClassNotFound, CodeUnknownMember},

	// A deadline that passed: a timeout to the client. It has no identity
	// between nodes (CodeOther): the node that forwarded decides what a
	// leader that gave up means (internal/node).
	{context.DeadlineExceeded, ClassTimeout, CodeOther},
}

// Classify returns err's class and wire code: ClassInternal and CodeOther
// for an error the table does not hold (and for context.Canceled, whose
// meaning depends on whose context ended: each protocol decides), CodeOK
// for nil.
func Classify(err error) (Class, Code) {
	if err == nil {
		return ClassInternal, CodeOK
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.class, e.code
		}
	}
	return ClassInternal, CodeOther
}

// ClassOf returns err's class (Classify).
func ClassOf(err error) Class {
	c, _ := Classify(err)
	return c
}

// CodeOf returns err's wire code (Classify).
func CodeOf(err error) Code {
	_, c := Classify(err)
	return c
}

// ErrorOf rebuilds the error a peer sent as code and msg: an error that
// wraps the code's sentinel (errors.Is holds) and reads "SENTINEL (msg)".
// nil for CodeOK; for CodeOther or a code this node does not know, an
// error with msg only (ClassInternal).
func ErrorOf(code Code, msg string) error {
	if code == CodeOK {
		return nil
	}
	if code != CodeOther {
		for _, e := range errorTable {
			if e.code == code {
				return fmt.Errorf("%w (%s)", e.err, msg)
			}
		}
	}
	return errors.New(msg)
}

// Sentinels lists every error of this package that the classification
// holds, in its order: what a Service may return (wrapped), each with a
// class and a wire code of its own. Tests of the client protocols go
// through it.
func Sentinels() []error {
	out := make([]error, 0, len(errorTable))
	for _, e := range errorTable {
		if e.code != CodeOther {
			out = append(out, e.err)
		}
	}
	return out
}
