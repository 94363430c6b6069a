package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/trireme-db/trireme/internal/api"
)

// Multi-leader (api/versions.go): siblings and causal contexts in reads and
// writes, and the conflict log.
//
//	GET /v1/kv/{key}                  adds "context" (and X-Trireme-Context) when the
//	                                  read has one, "siblings" when the key has several values
//	PUT, POST, DELETE /v1/kv/{key}    take the context back: X-Trireme-Context or context=
//	GET /v1/conflicts?after=N&limit=M the node's conflict log, oldest first (read)
//
// The context is opaque here: the node's engine checks it (api.ErrBadContext,
// 400). A single-leader node reads no context and no siblings, so its
// replies are unchanged; it answers /v1/conflicts with api.ErrNotSupported.

// Headers of multi-leader reads and writes.
const (
	// ContextHeader carries a causal context: in the reply to a read that
	// has one, and in a write that supersedes what that read saw.
	ContextHeader = "X-Trireme-Context"
	// SiblingsHeader is the number of concurrent values of a raw read's
	// key, when it has more than one (the body is the first).
	SiblingsHeader = "X-Trireme-Siblings"
)

// MaxContextBytes is the longest causal context a write may carry (header
// or parameter); a longer one is refused (400) before anything else is
// looked at, so that the engine never decodes an outsized token.
const MaxContextBytes = 4096

// conflictsPath is the conflict log's endpoint.
const conflictsPath = "/v1/conflicts"

// Paging of GET /v1/conflicts.
const (
	DefaultConflictsLimit = 100
	MaxConflictsLimit     = 1000
)

// SiblingReply is one concurrent value of a key in a read reply: its value
// (encoded as ReadReply.Value), its dot ("node:counter"), the node that
// accepted it and its hybrid logical time.
type SiblingReply struct {
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
	Dot      string `json:"dot"`
	Node     string `json:"node"`
	Time     string `json:"time"`
}

// siblingReplies returns sibs for a read reply, or nil for fewer than two
// (a key with one value reads as before).
func siblingReplies(sibs []api.Sibling) []SiblingReply {
	if len(sibs) < 2 {
		return nil
	}
	out := make([]SiblingReply, len(sibs))
	for i, s := range sibs {
		out[i] = SiblingReply{Dot: s.Node + ":" + strconv.FormatUint(s.Counter, 10), Node: s.Node, Time: s.Time}
		out[i].Value, out[i].Encoding = encodeBytes(s.Value)
	}
	return out
}

// setReadVersions sets the multi-leader headers of a read reply: the
// context, and with raw the number of siblings when there are several.
func setReadVersions(w http.ResponseWriter, res api.ReadResult, raw bool) {
	if res.Context != "" {
		w.Header().Set(ContextHeader, res.Context)
	}
	if raw && len(res.Siblings) > 1 {
		w.Header().Set(SiblingsHeader, strconv.Itoa(len(res.Siblings)))
	}
}

// checkContextHeader refuses a write whose X-Trireme-Context header is
// given twice or is over MaxContextBytes, before its query is parsed.
func checkContextHeader(header []string) error {
	if len(header) > 1 {
		return fmt.Errorf("%w: header %s is given more than once", ErrBadRequest, ContextHeader)
	}
	if len(header) == 1 && len(header[0]) > MaxContextBytes {
		return fmt.Errorf("%w: header %s of %d bytes (at most %d)", ErrBadRequest, ContextHeader, len(header[0]), MaxContextBytes)
	}
	return nil
}

// parseContext returns the causal context of a write from its context=
// parameter and its X-Trireme-Context header (checked by
// checkContextHeader): either, or both if they are the same; "" (a blind
// write) if neither.
func parseContext(param string, header []string) (string, error) {
	if len(param) > MaxContextBytes {
		return "", fmt.Errorf("%w: context= of %d bytes (at most %d)", ErrBadRequest, len(param), MaxContextBytes)
	}
	if len(header) == 0 {
		return param, nil
	}
	hv := strings.TrimSpace(header[0])
	if param != "" && hv != param {
		return "", fmt.Errorf("%w: context= and header %s differ (give one)", ErrBadRequest, ContextHeader)
	}
	return hv, nil
}

// ConflictsReply is the reply to GET /v1/conflicts.
type ConflictsReply struct {
	Conflicts []ConflictReply `json:"conflicts"`
	// Dropped counts the records the node dropped to bound its log: a
	// reader that finds it grown missed that many.
	Dropped uint64 `json:"dropped"`
	// Next is the after= of the next page: the last record's seq, or the
	// request's after when there is none.
	Next uint64 `json:"next"`
}

// ConflictReply is one api.ConflictRecord. Winner is "" when every version
// was kept (siblings).
type ConflictReply struct {
	Seq         uint64                 `json:"seq"`
	Node        string                 `json:"node"`
	Key         string                 `json:"key"`
	KeyEncoding string                 `json:"key_encoding,omitempty"`
	Versions    []ConflictVersionReply `json:"versions"`
	Winner      string                 `json:"winner"`
	Losers      []string               `json:"losers"`
	Reason      string                 `json:"reason"`
}

// ConflictVersionReply is one api.ConflictVersion, its value encoded as
// ReadReply.Value ("" for a delete).
type ConflictVersionReply struct {
	Dot      string `json:"dot"`
	Node     string `json:"node"`
	Time     string `json:"time"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
	Deleted  bool   `json:"deleted"`
}

// parseConflictsQuery parses after= (default 0) and limit= (1 to
// MaxConflictsLimit, default DefaultConflictsLimit) of GET /v1/conflicts.
func parseConflictsQuery(q url.Values) (uint64, int, error) {
	var after uint64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: after=%q: want a conflict's seq, a whole number (0: from the start)", ErrBadRequest, s)
		}
		after = n
	}
	limit := DefaultConflictsLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxConflictsLimit {
			return 0, 0, fmt.Errorf("%w: limit=%q: want a whole number from 1 to %d", ErrBadRequest, s, MaxConflictsLimit)
		}
		limit = n
	}
	return after, limit, nil
}

// errNoConflictLog answers /v1/conflicts on a node whose engine records no
// conflicts.
var errNoConflictLog = fmt.Errorf("%w: this node records no conflicts (multi-leader nodes do)", api.ErrNotSupported)

// conflicts serves GET /v1/conflicts.
func (h *handler) conflicts(w http.ResponseWriter, r *http.Request, q url.Values) {
	after, limit, err := parseConflictsQuery(q)
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	cl, ok := h.svc.(api.ConflictLog)
	if !ok {
		h.writeServiceError(w, r, errNoConflictLog)
		return
	}
	recs, dropped, err := cl.Conflicts(r.Context(), after, limit)
	if err != nil {
		h.writeServiceError(w, r, fmt.Errorf("reading the conflict log: %w", err))
		return
	}
	if len(recs) > limit {
		recs = recs[:limit]
	}
	rep := ConflictsReply{Conflicts: make([]ConflictReply, len(recs)), Dropped: dropped, Next: after}
	for i, rec := range recs {
		rep.Conflicts[i] = conflictReply(rec)
		rep.Next = rec.Seq
	}
	h.writeJSON(w, http.StatusOK, rep)
}

func conflictReply(rec api.ConflictRecord) ConflictReply {
	c := ConflictReply{Seq: rec.Seq, Node: rec.Node, Winner: rec.Winner, Reason: rec.Reason,
		Versions: make([]ConflictVersionReply, len(rec.Versions)), Losers: rec.Losers}
	if c.Losers == nil {
		c.Losers = []string{}
	}
	c.Key, c.KeyEncoding = encodeBytes(rec.Key)
	for i, v := range rec.Versions {
		c.Versions[i] = ConflictVersionReply{Dot: v.Dot, Node: v.Node, Time: v.Time, Deleted: v.Deleted}
		c.Versions[i].Value, c.Versions[i].Encoding = encodeBytes(v.Value)
	}
	return c
}
