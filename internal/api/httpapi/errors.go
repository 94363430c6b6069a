package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/trireme-db/trireme/internal/api"
)

// writeServiceError answers a service error with its class's status
// (api.Classify: the one classification, so that a node answers alike
// whether it served a request or forwarded it) and {"error"}. Two replies
// need more than that: a node that is not the leader names the leader
// (421), and a request whose client went away gets 499, which nobody reads.
// The messages of the 503s that promise nothing was done start with "no
// leader" or "unavailable (retry)", which clients (client/, internal/chaos)
// read.
// A write's own errors that carry what it reached are answered by
// writeResult before this.
func (h *handler) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	class := api.ClassOf(err)
	switch {
	case class == api.ClassNotLeader:
		st := h.svc.Status()
		h.writeJSON(w, class.HTTPStatus(), map[string]string{
			"error": err.Error(), "leader": st.Leader, "leader_http": st.LeaderHTTP})
		return
	case class == api.ClassInternal && errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		h.writeError(w, 499, err)
		return
	case class == api.ClassInternal:
		h.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case class == api.ClassNoLeader:
		err = fmt.Errorf("no leader: %w", err)
	case class == api.ClassRetry:
		err = fmt.Errorf("unavailable (retry): %w", err)
	}
	h.writeError(w, class.HTTPStatus(), err)
}
