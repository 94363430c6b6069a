package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestErrorClassification goes through every sentinel error: its class,
// the HTTP status and RESP prefix of that class, its wire code (whose
// number is part of the peer wire format: it never changes), and the round
// trip a forwarded error makes (code and message to an error for which
// errors.Is holds, the message kept).
func TestErrorClassification(t *testing.T) {
	tests := []struct {
		err    error
		class  Class
		status int
		resp   string
		code   Code
	}{
		{ErrNotLeader, ClassNotLeader, 421, "READONLY", 1},
		{ErrNoLeader, ClassNoLeader, 503, "CLUSTERDOWN", 2},
		{ErrWriteTimeout, ClassTimeout, 504, "TIMEOUT", 3},
		{ErrOutcomeUnknown, ClassOutcomeUnknown, 503, "UNKNOWN", 4},
		{ErrEmptyKey, ClassBadRequest, 400, "ERR", 5},
		{ErrValueTooLarge, ClassTooLarge, 413, "ERR", 6},
		{ErrStopped, ClassUnavailable, 503, "CLUSTERDOWN", 7},
		{ErrBadMember, ClassBadRequest, 400, "ERR", 9},
		{ErrChangeInProgress, ClassConflict, 409, "ERR", 10},
		{ErrNotCaughtUp, ClassConflict, 409, "ERR", 11},
		{ErrUnknownMember, ClassNotFound, 404, "ERR", 12},
		{ErrDuplicateMember, ClassBadRequest, 400, "ERR", 13},
		{ErrLastVoter, ClassBadRequest, 400, "ERR", 14},
		{ErrAlreadyVoter, ClassBadRequest, 400, "ERR", 15},
		{ErrRemoved, ClassGone, 410, "ERR", 16},
		{ErrRolledBack, ClassRolledBack, 409, "ROLLEDBACK", 17},
		{ErrBadCommand, ClassBadRequest, 400, "ERR", 18},
		{ErrBadToken, ClassBadRequest, 400, "ERR", 19},
		{ErrBadBound, ClassBadRequest, 400, "ERR", 20},
		{ErrKeyTooLarge, ClassTooLarge, 413, "ERR", 21},
		{ErrBadConsistency, ClassBadRequest, 400, "ERR", 22},
		{ErrConditionFailed, ClassConditionFailed, 412, "ERR", 23},
		{ErrNotInteger, ClassConflict, 409, "ERR", 24},
		{ErrOverflow, ClassConflict, 409, "ERR", 25},
		{ErrInsufficientStorage, ClassInsufficientStorage, 507, "ERR", 26},
		{ErrBadAckMode, ClassBadRequest, 400, "ERR", 27},
		{ErrNotEnoughReplicas, ClassBadRequest, 400, "ERR", 28},
		{ErrTransferring, ClassRetry, 503, "TRYAGAIN", 29},
		{ErrBusy, ClassRetry, 503, "TRYAGAIN", 30},
		{ErrReadTimeout, ClassRetry, 503, "TRYAGAIN", 31},
		{ErrLeadershipLost, ClassRetry, 503, "TRYAGAIN", 32},
		{ErrBadTransferTarget, ClassBadRequest, 400, "ERR", 33},
		{ErrUnknownPeer, ClassBadRequest, 400, "ERR", 34},
		{ErrBadContext, ClassBadRequest, 400, "ERR", 35},
		{ErrNotSupported, ClassBadRequest, 400, "ERR", 36},
		{ErrBadQuorum, ClassBadRequest, 400, "ERR", 37},
		{ErrQuorumUnavailable, ClassRetry, 503, "TRYAGAIN", 38},
	}
	seen := map[error]bool{}
	codes := map[Code]error{}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			seen[tc.err] = true
			if prev, dup := codes[tc.code]; dup {
				t.Fatalf("code %d also names %q", tc.code, prev)
			}
			codes[tc.code] = tc.err
			// Wrapped as a node wraps it (the engine's words after it).
			wrapped := fmt.Errorf("%w (repl: detail): more", tc.err)
			class, code := Classify(wrapped)
			if class != tc.class || code != tc.code {
				t.Fatalf("Classify = %s, %d; want %s, %d", class, code, tc.class, tc.code)
			}
			if got := class.HTTPStatus(); got != tc.status {
				t.Errorf("HTTP status %d, want %d", got, tc.status)
			}
			if got := class.RESPPrefix(); got != tc.resp {
				t.Errorf("RESP prefix %q, want %q", got, tc.resp)
			}
			// Forwarding: the follower rebuilds the same identity, and
			// keeps the leader's message.
			back := ErrorOf(code, "leader n1: "+wrapped.Error())
			if !errors.Is(back, tc.err) {
				t.Fatalf("ErrorOf(%d) = %v: not errors.Is %q", code, back, tc.err)
			}
			if !strings.Contains(back.Error(), wrapped.Error()) {
				t.Errorf("ErrorOf(%d) = %q: lost the message %q", code, back, wrapped)
			}
			if c2, k2 := Classify(back); c2 != tc.class || k2 != tc.code {
				t.Errorf("the rebuilt error classifies as %s, %d", c2, k2)
			}
			// A code the decoder accepts.
			if code > CodeLast {
				t.Errorf("code %d is past CodeLast %d", code, CodeLast)
			}
		})
	}
	// Every sentinel of the classification is in this test.
	for _, err := range Sentinels() {
		if !seen[err] {
			t.Errorf("%q is classified but not tested here", err)
		}
	}
	if len(Sentinels()) != len(tests) {
		t.Errorf("%d sentinels, %d tested", len(Sentinels()), len(tests))
	}
	if len(codes) != int(CodeLast)-1 { // every code but OK and Other
		t.Errorf("codes 1..%d: %d named, want each once", CodeLast, len(codes))
	}
}

// TestErrorClassificationEdges: what the table does not hold, an error
// wrapping two sentinels, and codes without an identity.
func TestErrorClassificationEdges(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		class Class
		code  Code
	}{
		{"nil", nil, ClassInternal, CodeOK},
		{"unknown", errors.New("disk on fire"), ClassInternal, CodeOther},
		{"canceled", context.Canceled, ClassInternal, CodeOther},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ClassTimeout, CodeOther},
		// The write's outcome wins over what caused it.
		{"outcome unknown, stopped", fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped), ClassOutcomeUnknown, CodeOutcomeUnknown},
		{"outcome unknown, deadline", fmt.Errorf("%w: %w", ErrOutcomeUnknown, context.DeadlineExceeded), ClassOutcomeUnknown, CodeOutcomeUnknown},
		{"no leader, read timeout", fmt.Errorf("%w: %w", ErrNoLeader, ErrReadTimeout), ClassNoLeader, CodeNoLeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if class, code := Classify(tc.err); class != tc.class || code != tc.code {
				t.Fatalf("Classify = %s, %d; want %s, %d", class, code, tc.class, tc.code)
			}
		})
	}
	if err := ErrorOf(CodeOK, "x"); err != nil {
		t.Errorf("ErrorOf(CodeOK) = %v", err)
	}
	for _, code := range []Code{CodeOther, CodeLast + 1, 255} {
		err := ErrorOf(code, "leader n1: disk on fire")
		if err == nil || err.Error() != "leader n1: disk on fire" || ClassOf(err) != ClassInternal {
			t.Errorf("ErrorOf(%d) = %v, want the message, internal", code, err)
		}
	}
	if ClassInternal.HTTPStatus() != 500 || ClassInternal.RESPPrefix() != "ERR" || numClasses.HTTPStatus() != 500 {
		t.Errorf("internal: %d %q", ClassInternal.HTTPStatus(), ClassInternal.RESPPrefix())
	}
}
