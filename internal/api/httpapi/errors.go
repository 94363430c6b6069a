package httpapi

import (
	"errors"
	"net/http"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
)

// errorStatuses maps the errors a Service returns to their HTTP status: the
// one place that classifies them, so that a node answers alike whether it
// served a request or forwarded it. The first match wins (errors.Is, so
// wrapped errors match). Errors whose reply needs more than a status (a
// leader to name, a message the clients match on, a write's result) are
// handled by writeServiceError and writeResult before this table.
var errorStatuses = []struct {
	err  error
	code int
}{
	// Bad input: nothing was done.
	{api.ErrEmptyKey, http.StatusBadRequest},
	{api.ErrBadConsistency, http.StatusBadRequest},
	{repl.ErrBadAckMode, http.StatusBadRequest},
	{api.ErrBadToken, http.StatusBadRequest},
	{api.ErrBadBound, http.StatusBadRequest},
	{api.ErrBadCommand, http.StatusBadRequest},
	{repl.ErrNotEnoughPeers, http.StatusBadRequest},
	{repl.ErrBadTransferTarget, http.StatusBadRequest},
	{repl.ErrUnknownPeer, http.StatusBadRequest},
	{api.ErrValueTooLarge, http.StatusRequestEntityTooLarge},
	{api.ErrKeyTooLarge, http.StatusRequestEntityTooLarge},
	// A command whose condition did not hold: nothing changed; the reply
	// names the key's current index.
	{api.ErrConditionFailed, http.StatusPreconditionFailed},
	// Well-formed requests that the key's current state refuses: nothing
	// changed; the same request may succeed once the state changes.
	{api.ErrNotInteger, http.StatusConflict},
	{api.ErrOverflow, http.StatusConflict},
	// A session read whose token names a write discarded in a failover.
	{api.ErrRolledBack, http.StatusConflict},
	// Membership.
	{api.ErrRemoved, http.StatusGone},
	{api.ErrChangeInProgress, http.StatusConflict},
	{api.ErrNotCaughtUp, http.StatusConflict},
	{api.ErrUnknownMember, http.StatusNotFound},
	{api.ErrBadMember, http.StatusBadRequest},
	{api.ErrDuplicateMember, http.StatusBadRequest},
	{api.ErrLastVoter, http.StatusBadRequest},
	{api.ErrAlreadyVoter, http.StatusBadRequest},
	// The node cannot serve: nothing was written.
	{api.ErrStopped, http.StatusServiceUnavailable},
	{api.ErrInsufficientStorage, http.StatusInsufficientStorage},
}

// errorStatus returns err's status from errorStatuses, and false for an
// error the table does not hold.
func errorStatus(err error) (int, bool) {
	for _, e := range errorStatuses {
		if errors.Is(err, e.err) {
			return e.code, true
		}
	}
	return 0, false
}
