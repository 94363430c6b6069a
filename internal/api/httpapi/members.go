package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/api"
)

// The membership endpoints:
//
//	GET    /v1/members                  every member and its progress (read)
//	POST   /v1/members                  add a member; body: memberRequest (admin)
//	POST   /v1/members/{id}/promote     make a learner a voter (admin)
//	DELETE /v1/members/{id}             remove a member (admin)
//
// The three changes take ?timeout=DUR (default DefaultMemberTimeout) and
// answer, once the change is committed, the new member list.
const membersPath = "/v1/members"

// DefaultMemberTimeout bounds a membership change when no timeout is given.
const DefaultMemberTimeout = 10 * time.Second

// MaxMemberBodyBytes bounds the body of POST /v1/members: a member's id and
// three addresses need a few hundred bytes.
const MaxMemberBodyBytes = 16 << 10

// ErrBodyTooLarge: a request body over its endpoint's limit (413).
var ErrBodyTooLarge = errors.New("request body too large")

// memberRequest is the body of POST /v1/members. A missing or empty role is
// a voter.
type memberRequest struct {
	ID   string `json:"id"`
	Peer string `json:"peer"`
	HTTP string `json:"http"`
	RESP string `json:"resp"`
	Role string `json:"role"`
}

// memberRoute splits an escaped path under /v1/members/ into the escaped
// member id and whether it ends in /promote. ok is false for a path that
// names no member endpoint (a further '/').
func memberRoute(path string) (rawID string, promote, ok bool) {
	rest, _ := strings.CutPrefix(path, membersPath+"/")
	rawID, promote = strings.CutSuffix(rest, "/promote")
	return rawID, promote, !strings.Contains(rawID, "/")
}

// memberChange reports whether a request to a path under /v1/members
// changes the membership: what needs role admin.
func memberChange(path, method string) bool {
	if path == membersPath {
		return method == http.MethodPost
	}
	_, promote, ok := memberRoute(path)
	return ok && (promote && method == http.MethodPost || !promote && method == http.MethodDelete)
}

func (h *handler) serveMembers(w http.ResponseWriter, r *http.Request, path string) {
	if path == membersPath {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if _, ok := h.allow(w, r, http.MethodGet, nil); ok {
				h.listMembers(w, r)
			}
		case http.MethodPost:
			if q, ok := h.allow(w, r, http.MethodPost, memberParams); ok {
				h.addMember(w, r, q)
			}
		default:
			h.methodNotAllowed(w, "GET, HEAD, POST")
		}
		return
	}
	rawID, promote, ok := memberRoute(path)
	if !ok {
		h.writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	method := http.MethodDelete
	if promote {
		method = http.MethodPost
	}
	q, ok := h.allow(w, r, method, memberParams)
	if !ok {
		return
	}
	id, err := url.PathUnescape(rawID)
	if err != nil {
		h.writeError(w, http.StatusBadRequest, fmt.Errorf("%w: member id %q is not a valid escaped path: %v", ErrBadRequest, rawID, err))
		return
	}
	if id == "" {
		h.writeError(w, http.StatusBadRequest, fmt.Errorf("%w: empty member id (use %s/{id})", ErrBadRequest, membersPath))
		return
	}
	if promote {
		h.changeMembers(w, r, q, "promoting member "+id, func(ctx context.Context) ([]api.MemberStatus, error) {
			return h.svc.PromoteMember(ctx, id)
		})
		return
	}
	h.changeMembers(w, r, q, "removing member "+id, func(ctx context.Context) ([]api.MemberStatus, error) {
		return h.svc.RemoveMember(ctx, id)
	})
}

func (h *handler) listMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := h.svc.Members(r.Context())
	if err != nil {
		h.writeServiceError(w, r, fmt.Errorf("listing members: %w", err))
		return
	}
	h.writeMembers(w, ms)
}

func (h *handler) addMember(w http.ResponseWriter, r *http.Request, q url.Values) {
	spec, code, err := readMemberSpec(w, r)
	if err != nil {
		h.writeError(w, code, err)
		return
	}
	h.changeMembers(w, r, q, "adding member "+spec.ID, func(ctx context.Context) ([]api.MemberStatus, error) {
		return h.svc.AddMember(ctx, spec)
	})
}

// readMemberSpec reads and checks the body of POST /v1/members: one JSON
// object of known fields, within MaxMemberBodyBytes, that Validate accepts.
// On failure it returns the status to answer.
func readMemberSpec(w http.ResponseWriter, r *http.Request) (api.MemberSpec, int, error) {
	body, code, err := readBody(w, r, MaxMemberBodyBytes, ErrBodyTooLarge)
	if err != nil {
		return api.MemberSpec{}, code, err
	}
	const want = `want a JSON object {"id", "peer", "http", "resp", "role"}`
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req memberRequest
	if err := dec.Decode(&req); err != nil {
		return api.MemberSpec{}, http.StatusBadRequest, fmt.Errorf("%w: body: %s: %v", ErrBadRequest, want, err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return api.MemberSpec{}, http.StatusBadRequest, fmt.Errorf("%w: body: %s, and nothing after it", ErrBadRequest, want)
	}
	role, err := api.ParseMemberRole(req.Role)
	if err != nil {
		return api.MemberSpec{}, http.StatusBadRequest, err
	}
	spec := api.MemberSpec{ID: req.ID, Peer: req.Peer, HTTP: req.HTTP, RESP: req.RESP, Role: role}
	if err := spec.Validate(); err != nil {
		return api.MemberSpec{}, http.StatusBadRequest, err
	}
	return spec, 0, nil
}

// changeMembers runs a membership change within the request's timeout and
// answers the new member list.
func (h *handler) changeMembers(w http.ResponseWriter, r *http.Request, q url.Values, what string,
	change func(ctx context.Context) ([]api.MemberStatus, error)) {
	d, err := parseTimeout(q.Get("timeout"))
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	if d == 0 {
		d = DefaultMemberTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	ms, err := change(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			h.writeError(w, http.StatusGatewayTimeout,
				fmt.Errorf("%s: not committed within %s; the change may still take effect (see GET %s): %w", what, d, membersPath, err))
			return
		}
		h.writeServiceError(w, r, fmt.Errorf("%s: %w", what, err))
		return
	}
	h.writeMembers(w, ms)
}

func (h *handler) writeMembers(w http.ResponseWriter, ms []api.MemberStatus) {
	if ms == nil {
		ms = []api.MemberStatus{}
	}
	h.writeJSON(w, http.StatusOK, ms)
}
