// Package session holds the decisions behind session and bounded-staleness
// reads, as pure functions of what a node knows, so that the node
// (internal/node) and the simulator (internal/sim) make them with the same
// code.
//
// A session token (api.Token) names an entry by (term, index). A node's
// applied state includes the token once it has applied the index and the
// entry it applied there has the token's term. Terms along a log never
// decrease and every leader's first entry is a no-op, so the term of an
// applied entry is the term of the last no-op at or below it: that is what
// termAt answers (known=false when it cannot tell: an index applied before
// the node kept that history; the token is then taken as included).
package session

import (
	"fmt"

	"github.com/trireme-db/trireme/internal/api"
)

// Check reports whether the state applied through index applied includes
// tok: ok=false while applied < tok.Index; api.ErrRolledBack (wrapped,
// naming the index) if the entry applied there has another term. A token
// of term 0 names an index only.
func Check(tok api.Token, applied uint64, termAt func(index uint64) (term uint64, known bool)) (ok bool, err error) {
	if tok.IsZero() {
		return true, nil
	}
	if applied < tok.Index {
		return false, nil
	}
	if tok.Term == 0 {
		return true, nil
	}
	if term, known := termAt(tok.Index); known && term != tok.Term {
		return false, RolledBack(tok, term)
	}
	return true, nil
}

// Settle decides, on the leader of term leaderTerm whose log ends at
// lastIndex, whether tok can still be committed. Once the leader has
// committed an entry of its own term (committedInTerm), every entry that can
// still commit is in its log (no older-term entry can be committed after a
// committed entry of a later term), so a token of an older term past the
// log's end, or whose index holds another term there, was discarded
// (api.ErrRolledBack). Before that, a leader with an older entry that this
// one lacks may yet be elected and commit it: Settle returns nil (wait). A
// token of the leader's own term past its log was issued by no node
// (api.ErrBadToken). nil means it may yet be applied: wait for it. logTerm
// reports the term at an index of the leader's log (ok=false: not known,
// e.g. compacted).
func Settle(tok api.Token, leaderTerm, lastIndex uint64, committedInTerm bool, logTerm func(index uint64) (term uint64, ok bool)) error {
	if tok.Term == leaderTerm && tok.Index > lastIndex {
		// Every entry of its own term is in the leader's log: no node
		// issued this token.
		return fmt.Errorf("%w: index %d of term %d is past the leader's log (it ends at %d)", api.ErrBadToken, tok.Index, tok.Term, lastIndex)
	}
	if tok.Term == 0 || tok.Term >= leaderTerm || !committedInTerm {
		return nil
	}
	if lastIndex < tok.Index {
		return RolledBack(tok, 0)
	}
	if t, ok := logTerm(tok.Index); ok && t != tok.Term {
		return RolledBack(tok, t)
	}
	return nil
}

// WriteMustWait reports whether a session write carrying tok must wait on
// the leader of term leaderTerm before it is proposed: tok names an entry
// of an earlier term, and the leader has not yet committed an entry of its
// own (committedInTerm), so Settle cannot yet tell whether that entry was
// discarded. Proposed now, the write's token would cover tok whether or
// not its entry survived, and hide the loss from the session's next read.
func WriteMustWait(tok api.Token, leaderTerm uint64, committedInTerm bool) bool {
	return tok.Term != 0 && tok.Term < leaderTerm && !committedInTerm
}

// RolledBack is the error for a session whose token's entry was discarded;
// term is the term of the entry found at its index (0: none).
func RolledBack(tok api.Token, term uint64) error {
	if term == 0 {
		return fmt.Errorf("%w: index %d of term %d was discarded (the leader's log ends before it); the session's write is lost",
			api.ErrRolledBack, tok.Index, tok.Term)
	}
	return fmt.Errorf("%w: index %d of term %d was discarded (the entry there is of term %d); the session's write is lost",
		api.ErrRolledBack, tok.Index, tok.Term, term)
}

// WithinBound reports whether a state that includes a read point the leader
// confirmed age ago (measured on this node's clock) is within maxLag of the
// leader's, with a margin for clock drift: one tick plus a tenth of age.
// All three are in the same unit (nanoseconds on a node, ticks in the
// simulator). maxLag 0 means no time bound.
func WithinBound(age, tick, maxLag int64) bool {
	if maxLag <= 0 {
		return true
	}
	return age+tick+age/10 <= maxLag
}

// Need is the index a node must have applied to serve a bounded read from a
// read point: all of it for a time bound, and within maxLagEntries of it
// for an entry bound alone.
func Need(point uint64, timeBound bool, maxLagEntries uint64) uint64 {
	if timeBound {
		return point
	}
	return point - min(point, maxLagEntries)
}

// NewerTerm is the error for a session write asked of a leader whose term is
// below the session's token: that leader is deposed and does not know it yet.
// The write would be discarded, and the session's next token, of the later
// term, would hide the loss (no read would report it rolled back). nil when
// leaderTerm may take the write. The write is refused before anything is
// proposed; the client retries at the current leader.
func NewerTerm(tok api.Token, leaderTerm uint64) error {
	if tok.Term <= leaderTerm {
		return nil
	}
	return fmt.Errorf("%w: the session has seen term %d and this leader is of term %d: a newer leader exists",
		api.ErrNoLeader, tok.Term, leaderTerm)
}
