package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/trireme-db/trireme/internal/api"
)

// Leaderless (api/quorum.go): per-request quorums and read repair, and how
// many replicas answered.
//
//	PUT, POST, DELETE /v1/kv/{key}?w=Q   Q replicas must hold the write durably
//	GET /v1/kv/{key}?r=Q                 Q replicas must answer the read
//	GET /v1/kv/{key}?repair=blocking     reply once the stale replicas that answered are repaired
//	                                     (repair=background, the default: repair after replying)
//
// Q is a number from 1, or one, quorum (a majority of the key's replicas)
// or all (api.ParseQuorum); none is the node's default. A Q the node cannot
// meet (0, more than the key's replicas) or an unknown word is a 400 with
// api.ErrBadQuorum's message; too few replicas reachable is a 503 with
// api.ErrQuorumUnavailable's (retry). Every reply of a leaderless node to
// a read or a write, 404 and 504 included, says how many replicas answered:
// the header X-Trireme-Replicas and JSON "replicas" (a write reply has it
// already); a read that repaired replicas before replying adds "repaired"
// and X-Trireme-Repaired.
//
// A node of another mode takes none of w=, r= and repair= (400,
// api.ErrNotSupported), rather than ignore them, and its replies are
// unchanged. The handler reads the node's mode from Service.Status once, at
// the first request that needs it: a node's mode never changes.

// ModeLeaderless is the mode (api.NodeStatus.Mode) of a leaderless node.
const ModeLeaderless = "leaderless"

// Headers of leaderless replies.
const (
	// ReplicasHeader is the number of replicas that answered a read, or
	// that hold a write durably.
	ReplicasHeader = "X-Trireme-Replicas"
	// RepairedHeader is the number of replicas that a read repaired before
	// its reply (repair=blocking), when not 0.
	RepairedHeader = "X-Trireme-Repaired"
)

// leaderless reports whether the service is a leaderless node (asked once).
func (h *handler) leaderless() bool {
	h.modeOnce.Do(func() { h.isLeaderless = h.svc.Status().Mode == ModeLeaderless })
	return h.isLeaderless
}

// parseQuorum parses the w= or r= parameter name (value v).
func parseQuorum(name, v string) (api.Quorum, error) {
	q, err := api.ParseQuorum(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q: %w", ErrBadRequest, name, v, err)
	}
	return q, nil
}

// parseRepair parses repair=: background (the default) or blocking.
func parseRepair(v string) (bool, error) {
	switch v {
	case "", "background":
		return false, nil
	case "blocking":
		return true, nil
	}
	return false, fmt.Errorf("%w: repair=%q: want blocking or background", ErrBadRequest, v)
}

// errNotLeaderless answers a leaderless parameter sent to another node.
func errNotLeaderless(param string) error {
	return fmt.Errorf("%w: %s= applies to leaderless nodes only (this node's mode has no per-request quorum)", api.ErrNotSupported, param)
}

// checkLeaderlessWrite refuses w= on a node that is not leaderless.
func (h *handler) checkLeaderlessWrite(wr writeRequest) error {
	if wr.opts.W != api.QuorumDefault && !h.leaderless() {
		return errNotLeaderless("w")
	}
	return nil
}

// checkLeaderlessRead refuses r= and repair= on a node that is not
// leaderless.
func (h *handler) checkLeaderlessRead(q map[string][]string) error {
	for _, p := range []string{"r", "repair"} {
		if _, ok := q[p]; ok && !h.leaderless() {
			return errNotLeaderless(p)
		}
	}
	return nil
}

// setWriteReplicas sets the header of a leaderless write reply.
func (h *handler) setWriteReplicas(w http.ResponseWriter, res api.WriteResult) {
	if h.leaderless() {
		w.Header().Set(ReplicasHeader, strconv.Itoa(res.Replicas))
	}
}

// readReplicas reports whether a read reply says how many replicas
// answered: on a leaderless node, or whenever the service said.
func (h *handler) readReplicas(res api.ReadResult) bool {
	return res.Replicas > 0 || res.Repaired > 0 || h.leaderless()
}

// setReadReplicas sets the headers of a leaderless read reply.
func (h *handler) setReadReplicas(w http.ResponseWriter, res api.ReadResult) {
	if !h.readReplicas(res) {
		return
	}
	w.Header().Set(ReplicasHeader, strconv.Itoa(res.Replicas))
	if res.Repaired > 0 {
		w.Header().Set(RepairedHeader, strconv.Itoa(res.Repaired))
	}
}

// reached is what a write reached, for a person: api.WriteResult.Reached,
// or on a leaderless node the replicas that hold it.
func (h *handler) reached(res api.WriteResult) string {
	if h.leaderless() {
		return fmt.Sprintf("durable on %d replica(s) of the key", res.Replicas)
	}
	return res.Reached()
}
