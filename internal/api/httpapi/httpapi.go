// Package httpapi serves Trireme's HTTP/JSON API (version 1) on top of an
// api.Service.
//
// Routes:
//
//	PUT    /v1/kv/{key}?ack=MODE&replicas=K&timeout=DUR&if_index=N&context=CTX&w=Q   body = value
//	POST   /v1/kv/{key}?op=incr&by=N | op=append (and PUT's parameters)
//	DELETE /v1/kv/{key}?ack=MODE&replicas=K&timeout=DUR&if_index=N&context=CTX&w=Q
//	GET    /v1/kv/{key}?consistency=linearizable|stale|session|bounded&raw=1
//	       &session=TOKEN (session) &max_lag=DUR&max_lag_entries=N (bounded)
//	       &r=Q&repair=blocking|background (leaderless)
//	GET    /v1/status
//	GET    /v1/rollbacks
//	GET    /v1/conflicts?after=SEQ&limit=N                (multi-leader; versions.go)
//	POST   /v1/leader/transfer?to=ID[&timeout=DUR]
//	GET    /v1/members
//	POST   /v1/members[?timeout=DUR]                      body = {"id", "peer", "http", "resp", "role"}
//	POST   /v1/members/{id}/promote[?timeout=DUR]
//	DELETE /v1/members/{id}[?timeout=DUR]
//	GET    /metrics                                       (delegated)
//
// It promises: every reply to a /v1 request other than a raw read is JSON;
// every error is a JSON object {"error": "..."} with a 4xx status for bad
// input and a 5xx status for a node that cannot serve; a write reply always
// says what was achieved (index, term, durability, replicas), including when
// its ack mode was not met in time (504). Keys are the path-unescaped bytes
// after /v1/kv/ (so "%2F" is part of a key, and paths are never cleaned).
//
// MODE is async, semi-sync (with replicas=K, default 1), sync, majority, or
// the multi-leader words local (= async), all (= sync) and a number K from 1
// to 1000, which is semi-sync with K replicas (replicas= is then refused).
//
// Multi-leader nodes (versions.go): a read whose reply has a causal context
// gives it in JSON "context" and in the header X-Trireme-Context (in a 404
// too); a key with several concurrent values adds JSON "siblings", each
// {"value", "encoding", "dot", "node", "time"}, while "value" stays the
// first one's. A raw read answers the first value, with X-Trireme-Context
// and, for more than one value, X-Trireme-Siblings: N. A write carries the
// context back in X-Trireme-Context or context= (the same one if both; at
// most 4096 bytes), so that it supersedes the values that read saw. On a
// single-leader node none of this appears, and /v1/conflicts answers 400
// (api.ErrNotSupported).
//
// Leaderless nodes (leaderless.go): a write takes w=Q and a read r=Q (a
// number, one, quorum or all: the replicas that must hold the write or
// answer the read) and repair=blocking|background; every reply to a read
// or a write says how many replicas answered (X-Trireme-Replicas, JSON
// "replicas", and "repaired" after a blocking read repair). Other nodes
// refuse these parameters (400, api.ErrNotSupported) and reply as before.
//
// Every reply to a read or a write carries a session token (JSON
// "session", header X-Trireme-Session); a read with consistency=session
// and that token sees the write or read it came from. A write with an
// op, a condition (If-Match or if_index) or an Idempotency-Key is a
// command (commands.go), served by Service.Exec; any other PUT or DELETE
// is a plain Service.Put or Service.Delete. Errors get their status from
// one table (errors.go).
//
// It also promises that what a client sends is bounded, and checked alike on
// every endpoint (Config holds the limits): a key over the key limit is a
// 413 whether it is read, written or deleted; a value is read through
// http.MaxBytesReader up to svc.MaxValueBytes and never buffered beyond it;
// a body that stops arriving is cut off at its deadline (408, connection
// closed), and so is a reply nobody reads; a query string is decoded
// strictly (ParseQuery), so an undecodable, repeated, unknown or empty
// parameter is a 400 that names it, never a silent default.
//
// With auth on (Config.Auth), every request, whatever its path, first needs
// "Authorization: Bearer TOKEN" with an API token or the default user's
// password (401 and WWW-Authenticate otherwise), and then a role that
// allows it (403): reads need read, writes need write, a leadership
// transfer and a membership change need admin; /metrics needs read unless
// Config.OpenMetrics.
// Without auth, requests are served exactly as before auth existed.
package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/auth"
)

// Errors for bad requests (wrapped with details).
var (
	ErrBadRequest = errors.New("bad request")
	// ErrSlowBody: a request body did not arrive before its deadline (408).
	ErrSlowBody = errors.New("request body not received in time")
)

// MaxTimeout is the longest write or transfer timeout a client may ask for.
const MaxTimeout = 10 * time.Minute

// DefaultTransferTimeout bounds POST /v1/leader/transfer when no timeout is given.
const DefaultTransferTimeout = 10 * time.Second

const kvPrefix = "/v1/kv/"

type handler struct {
	svc     api.Service
	metrics http.Handler
	cfg     Config
	log     *slog.Logger
	auth    Authenticator // nil: auth is off

	// The node's mode, read once (leaderless.go).
	modeOnce     sync.Once
	isLeaderless bool
}

// New returns the HTTP handler for svc with DefaultConfig's key limit and
// reply deadlines. metrics serves /metrics (nil = 404). logger may be nil
// (logs are then discarded). The other limits are the server's: a node
// serves the API with NewServer.
func New(svc api.Service, metrics http.Handler, logger *slog.Logger) http.Handler {
	cfg := DefaultConfig()
	cfg.Logger = logger
	return newHandler(svc, metrics, cfg)
}

func newHandler(svc api.Service, metrics http.Handler, cfg Config) *handler {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{svc: svc, metrics: metrics, cfg: cfg, log: logger}
	if cfg.Auth != nil && cfg.Auth.Enabled() {
		h.auth = cfg.Auth
	}
	return h
}

// ServeHTTP routes by hand rather than with http.ServeMux, so that key paths
// are neither cleaned nor redirected.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if h.auth != nil && !(h.cfg.OpenMetrics && path == "/metrics") && !h.authorize(w, r, requestAction(path, r.Method)) {
		return
	}
	switch {
	case strings.HasPrefix(path, kvPrefix):
		key, err := ParseKey(path)
		if err != nil {
			h.writeError(w, http.StatusBadRequest, err)
			return
		}
		if len(key) > h.cfg.MaxKeyBytes {
			// The words of the node's own check, so that every method
			// answers a long key alike.
			h.writeError(w, http.StatusRequestEntityTooLarge,
				fmt.Errorf("%w: %d bytes, limit %d", api.ErrKeyTooLarge, len(key), h.cfg.MaxKeyBytes))
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.get(w, r, key)
		case http.MethodPut, http.MethodPost:
			h.put(w, r, key)
		case http.MethodDelete:
			h.del(w, r, key)
		default:
			h.methodNotAllowed(w, "GET, HEAD, PUT, POST, DELETE")
		}
	case path == "/v1/kv" || path == kvPrefix:
		h.writeError(w, http.StatusBadRequest, fmt.Errorf("%w: empty key (use /v1/kv/{key})", ErrBadRequest))
	case path == "/v1/status":
		if _, ok := h.allow(w, r, http.MethodGet, nil); ok {
			h.writeJSON(w, http.StatusOK, h.svc.Status())
		}
	case path == "/v1/rollbacks":
		if _, ok := h.allow(w, r, http.MethodGet, nil); ok {
			h.rollbacks(w)
		}
	case path == conflictsPath:
		if q, ok := h.allow(w, r, http.MethodGet, conflictsParams); ok {
			h.conflicts(w, r, q)
		}
	case path == "/v1/leader/transfer":
		if q, ok := h.allow(w, r, http.MethodPost, transferParams); ok {
			h.transfer(w, r, q)
		}
	case path == membersPath || strings.HasPrefix(path, membersPath+"/"):
		h.serveMembers(w, r, path)
	case path == "/metrics":
		if h.metrics == nil {
			h.writeError(w, http.StatusNotFound, errors.New("metrics are not enabled"))
			return
		}
		h.armReplyDeadline(w, 0)
		h.metrics.ServeHTTP(w, r)
	default:
		h.writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	}
}

// requestAction classifies a request for the role check: key reads, the
// node's state (status, rollbacks, conflicts), the member list and metrics
// are reads; key writes and deletes are writes; a leadership transfer and a
// membership change are admin. A request that will get 404 or 405 needs
// read, so that only a user learns which endpoints exist.
func requestAction(path, method string) auth.Action {
	switch {
	case path == "/v1/leader/transfer":
		return auth.ActionAdmin
	case path == membersPath || strings.HasPrefix(path, membersPath+"/"):
		if memberChange(path, method) {
			return auth.ActionAdmin
		}
	case strings.HasPrefix(path, kvPrefix) || path == "/v1/kv":
		switch method {
		case http.MethodPut, http.MethodPost, http.MethodDelete:
			return auth.ActionWrite
		}
	}
	return auth.ActionRead
}

// Replies to requests that auth turns away.
const (
	msgNoCredentials = "authentication required: send the header \"Authorization: Bearer TOKEN\" (an API token, or the default user's password)"
	msgBadScheme     = "authentication required: only \"Authorization: Bearer TOKEN\" is accepted (an API token, or the default user's password)"
	msgBadToken      = "invalid credentials: the bearer token is not valid"
)

// authorize answers 401 unless r carries a valid bearer credential, and
// 403 unless its role allows act. It reports whether to go on.
func (h *handler) authorize(w http.ResponseWriter, r *http.Request, act auth.Action) bool {
	c := auth.Credentials{Remote: r.RemoteAddr, Proto: "http"}
	msg := msgNoCredentials
	if v := r.Header.Values("Authorization"); len(v) > 0 {
		scheme, cred, _ := strings.Cut(strings.TrimSpace(v[0]), " ")
		if strings.EqualFold(scheme, "Bearer") && len(v) == 1 {
			c.Secret = strings.TrimSpace(cred)
		} else {
			msg = msgBadScheme // counted as no credentials
		}
	}
	p, err := h.auth.CheckBearer(c)
	if err != nil {
		challenge := `Bearer realm="trireme"`
		if errors.Is(err, auth.ErrBadCredentials) {
			challenge += `, error="invalid_token"`
			msg = msgBadToken
		}
		w.Header().Set("WWW-Authenticate", challenge)
		h.writeError(w, http.StatusUnauthorized, errors.New(msg))
		return false
	}
	if !p.Allows(act) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trireme", error="insufficient_scope"`)
		h.writeError(w, http.StatusForbidden, h.auth.Denied(p, act, c))
		return false
	}
	return true
}

// allow answers 405 unless r uses method (or HEAD for GET), and 400 unless
// its query holds only parameters in known, each valid. It returns the query
// (ParseQuery) and whether to go on.
func (h *handler) allow(w http.ResponseWriter, r *http.Request, method string, known []string) (url.Values, bool) {
	if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
		h.methodNotAllowed(w, method)
		return nil, false
	}
	q, err := ParseQuery(r.URL.RawQuery, known)
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return nil, false
	}
	return q, true
}

func (h *handler) methodNotAllowed(w http.ResponseWriter, allowed string) {
	w.Header().Set("Allow", allowed)
	h.writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method not allowed (allowed: %s)", allowed))
}

// armReplyDeadline gives a reply of n bytes (0 if unknown) until
// ReplyTimeout plus the time n bytes take at MinBytesPerSecond, counted from
// now: the time the request waited for its ack mode, a read index or a
// leadership transfer does not count.
func (h *handler) armReplyDeadline(w http.ResponseWriter, n int) {
	d := time.Now().Add(h.cfg.transferTime(h.cfg.ReplyTimeout, n))
	_ = http.NewResponseController(w).SetWriteDeadline(d)
}

// ParseKey returns the key in an escaped /v1/kv/{key} path: the
// path-unescaped bytes after the prefix. It fails on an empty key or a bad
// escape.
func ParseKey(escapedPath string) ([]byte, error) {
	raw, ok := strings.CutPrefix(escapedPath, kvPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: path must start with %s", ErrBadRequest, kvPrefix)
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: empty key (use /v1/kv/{key})", ErrBadRequest)
	}
	k, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q is not a valid escaped path: %v", ErrBadRequest, raw, err)
	}
	if k == "" {
		return nil, fmt.Errorf("%w: empty key", ErrBadRequest)
	}
	return []byte(k), nil
}

// ParseWriteOptions parses the ack, replicas, timeout and w query
// parameters of a write, as returned by ParseQuery. No ack parameter means
// the node's default mode; a number K is semi-sync with K replicas. w is a
// leaderless quorum (api.ParseQuorum; none: the node's default). (A
// write's causal context, from context= or its header, is
// parseWriteRequest's.)
func ParseWriteOptions(q url.Values) (api.WriteOptions, error) {
	var w api.WriteOptions
	if v := q.Get("w"); v != "" {
		var err error
		if w.W, err = parseQuorum("w", v); err != nil {
			return w, err
		}
	}
	mode := q.Get("ack")
	reps := q.Get("replicas")
	switch {
	case mode == "":
		if reps != "" {
			return w, fmt.Errorf("%w: replicas=%q needs ack=semi-sync", ErrBadRequest, reps)
		}
		w.Default = true
	case isDigits(mode):
		n, err := strconv.Atoi(mode)
		if err != nil || n < 1 || n > 1000 {
			return w, fmt.Errorf("%w: ack=%q: a number is a replica count, a whole number from 1 to 1000", ErrBadRequest, mode)
		}
		if reps != "" {
			return w, fmt.Errorf("%w: replicas=%q cannot go with ack=%s, which is the replica count already", ErrBadRequest, reps, mode)
		}
		w.Ack = api.Ack{Mode: api.AckSemiSync, Replicas: n}
	default:
		m, err := api.ParseAckMode(mode)
		if err != nil {
			return w, fmt.Errorf("%w: ack: %v", ErrBadRequest, err)
		}
		w.Ack.Mode = m
		if m == api.AckSemiSync {
			w.Ack.Replicas = 1
			if reps != "" {
				n, err := strconv.Atoi(reps)
				if err != nil || n < 1 || n > 1000 {
					return w, fmt.Errorf("%w: replicas=%q: want a whole number from 1 to 1000", ErrBadRequest, reps)
				}
				w.Ack.Replicas = n
			}
		} else if reps != "" {
			return w, fmt.Errorf("%w: replicas=%q applies only to ack=semi-sync, not %s", ErrBadRequest, reps, mode)
		}
	}
	d, err := parseTimeout(q.Get("timeout"))
	if err != nil {
		return w, err
	}
	w.Timeout = d
	return w, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: timeout=%q is not a duration (examples: 500ms, 2s)", ErrBadRequest, s)
	}
	if d <= 0 || d > MaxTimeout {
		return 0, fmt.Errorf("%w: timeout=%q must be above 0 and at most %s", ErrBadRequest, s, MaxTimeout)
	}
	return d, nil
}

// ParseReadOptions parses the query parameters of a read, as returned by
// ParseQuery, and the values of its X-Trireme-Session header: the
// consistency, its session token or bounds, the leaderless r (a quorum,
// api.ParseQuorum) and repair (blocking or background), and raw.
//
// A token may come in session= or in the header (the same one if both).
// session= with another consistency than session is refused; the header is
// then ignored, so that a client may send it on every read. max_lag (a Go
// duration) and max_lag_entries go with consistency=bounded only, which
// needs at least one of them; each must be above 0.
func ParseReadOptions(q url.Values, sessionHeader []string) (api.ReadOptions, bool, error) {
	var o api.ReadOptions
	c, err := api.ParseConsistency(q.Get("consistency"))
	if err != nil {
		return o, false, fmt.Errorf("%w: consistency=%q: %v", ErrBadRequest, q.Get("consistency"), err)
	}
	o.Consistency = c
	if o.Token, err = parseSessionToken(c, q.Get("session"), sessionHeader); err != nil {
		return o, false, err
	}
	if o.MaxLag, o.MaxLagEntries, err = parseBounds(c, q.Get("max_lag"), q.Get("max_lag_entries")); err != nil {
		return o, false, err
	}
	if o.R, err = parseQuorum("r", q.Get("r")); err != nil {
		return o, false, err
	}
	if o.Repair, err = parseRepair(q.Get("repair")); err != nil {
		return o, false, err
	}
	raw := false
	switch q.Get("raw") {
	case "", "0", "false":
	case "1", "true":
		raw = true
	default:
		return o, false, fmt.Errorf("%w: raw=%q: want 1 or 0", ErrBadRequest, q.Get("raw"))
	}
	return o, raw, nil
}

// parseSessionToken returns the token of a read at consistency c from its
// session= parameter (param) and its X-Trireme-Session header values.
func parseSessionToken(c api.Consistency, param string, header []string) (api.Token, error) {
	if param != "" && c != api.Session {
		return api.Token{}, fmt.Errorf("%w: session=%q applies to consistency=session only, not %s", ErrBadRequest, param, c)
	}
	if c != api.Session {
		return api.Token{}, nil
	}
	if len(header) > 1 {
		return api.Token{}, fmt.Errorf("%w: header %s is given more than once", ErrBadRequest, SessionHeader)
	}
	text := param
	if len(header) == 1 {
		hv := strings.TrimSpace(header[0])
		if param != "" && hv != param {
			return api.Token{}, fmt.Errorf("%w: session=%q and header %s %q differ (give one)", ErrBadRequest, param, SessionHeader, hv)
		}
		text = hv
	}
	t, err := api.ParseToken(text)
	if err != nil {
		return api.Token{}, fmt.Errorf("%w: session: %w (give the session token of an earlier reply, as it was)", ErrBadRequest, err)
	}
	return t, nil
}

// parseBounds returns the bounds of a read at consistency c from its
// max_lag and max_lag_entries parameters.
func parseBounds(c api.Consistency, lag, entries string) (time.Duration, uint64, error) {
	if c != api.Bounded {
		if lag != "" || entries != "" {
			return 0, 0, fmt.Errorf("%w: max_lag and max_lag_entries apply to consistency=bounded only, not %s", ErrBadRequest, c)
		}
		return 0, 0, nil
	}
	if lag == "" && entries == "" {
		return 0, 0, fmt.Errorf("%w: consistency=bounded needs max_lag=DURATION (such as 100ms) and/or max_lag_entries=N: %w",
			ErrBadRequest, api.ErrBadBound)
	}
	var d time.Duration
	if lag != "" {
		var err error
		if d, err = time.ParseDuration(lag); err != nil || d <= 0 {
			return 0, 0, fmt.Errorf("%w: max_lag=%q: want a duration above 0 (examples: 100ms, 2s): %w", ErrBadRequest, lag, api.ErrBadBound)
		}
	}
	var n uint64
	if entries != "" {
		var err error
		if n, err = strconv.ParseUint(entries, 10, 64); err != nil || n == 0 {
			return 0, 0, fmt.Errorf("%w: max_lag_entries=%q: want a whole number above 0: %w", ErrBadRequest, entries, api.ErrBadBound)
		}
	}
	return d, n, nil
}

// WriteReply is the JSON reply to PUT, POST and DELETE.
type WriteReply struct {
	Index      uint64 `json:"index"`
	Term       uint64 `json:"term"`
	Durability string `json:"durability"`
	Replicas   int    `json:"replicas"`
	Committed  bool   `json:"committed"`
	// LeaderDurable: the write is fsynced on the leader.
	LeaderDurable bool `json:"leader_durable"`
	// Session is the write's session token (also in the X-Trireme-Session
	// header): a session read with it sees this write.
	Session string `json:"session,omitempty"`
	// Duplicate: the reply is the recorded result of an earlier write with
	// the same Idempotency-Key; this request changed nothing.
	Duplicate bool `json:"duplicate,omitempty"`
	// Value is the key's new value after op=incr.
	Value *int64 `json:"value,omitempty"`
	// Length is the value's new length in bytes after op=append.
	Length *int64 `json:"length,omitempty"`
	Error  string `json:"error,omitempty"`
}

// CommandErrorReply is the JSON reply to a write whose condition did not
// hold (412) or that the key's value refused (409 for op=incr on a value
// that is not an integer, or an overflow; 413 for a value over the limit).
// Nothing changed, but the request took a log index: Session covers it.
type CommandErrorReply struct {
	Error string `json:"error"`
	// Index is, on 412, the key's current index (0: the key is absent):
	// the If-Match of a retry.
	Index     *uint64 `json:"index,omitempty"`
	Session   string  `json:"session,omitempty"`
	Duplicate bool    `json:"duplicate,omitempty"`
}

// ReadReply is the JSON reply to GET /v1/kv/{key}.
type ReadReply struct {
	// Replicas (leaderless) is how many replicas answered the read;
	// Repaired, how many a blocking read repair updated before the reply.
	Replicas *int `json:"replicas,omitempty"`
	Repaired int  `json:"repaired,omitempty"`

	Key         string  `json:"key"`
	KeyEncoding string  `json:"key_encoding,omitempty"`
	Value       string  `json:"value"`
	Encoding    string  `json:"encoding,omitempty"`
	Index       uint64  `json:"index"`
	LagMillis   *int64  `json:"lag_ms,omitempty"`
	LagEntries  *uint64 `json:"lag_entries,omitempty"`
	// Session is the session token of the read (also in the
	// X-Trireme-Session header): the next read of the session passes it.
	Session string `json:"session,omitempty"`
	// Context (multi-leader) is the read's causal context (also in the
	// X-Trireme-Context header): a write that supersedes what was read
	// sends it back.
	Context string `json:"context,omitempty"`
	// Siblings (multi-leader) lists every concurrent value when the key has
	// more than one; Value is then the first.
	Siblings []SiblingReply `json:"siblings,omitempty"`
}

// Headers of the API besides the standard ones.
const (
	// SessionHeader carries a session token: in every reply to a read or
	// a write, and in a read with consistency=session.
	SessionHeader = "X-Trireme-Session"
	// IndexHeader carries a key's index: of the value of a raw read, and
	// the current one in a 412.
	IndexHeader = "X-Trireme-Index"
	// IdempotencyKeyHeader makes a write exactly-once within the node's
	// --idempotency-window.
	IdempotencyKeyHeader = "Idempotency-Key"
	// ReplayedHeader is "true" in the reply to a write whose
	// Idempotency-Key was seen before: the reply is the first one's.
	ReplayedHeader = "Idempotency-Replayed"
)

// encodeBytes returns b as a JSON-friendly string and "" when it is valid
// UTF-8, or as base64 and "base64".
func encodeBytes(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// put serves PUT and POST. Without a condition, an idempotency key or an
// op, it is a plain Service.Put; otherwise a command (commands.go).
func (h *handler) put(w http.ResponseWriter, r *http.Request, key []byte) {
	wr, err := parseWriteRequest(r)
	if err == nil {
		err = h.checkLeaderlessWrite(wr)
	}
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	value, code, err := h.readValue(w, r)
	if err != nil {
		h.writeError(w, code, err)
		return
	}
	if !wr.command() {
		res, err := h.svc.Put(r.Context(), key, value, wr.opts)
		h.writeResult(w, r, res, err, nil)
		return
	}
	h.exec(w, r, wr, key, value)
}

// readValue reads r's body, at most svc.MaxValueBytes of it. On failure it
// returns the status to answer.
func (h *handler) readValue(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	return readBody(w, r, h.svc.MaxValueBytes(), api.ErrValueTooLarge)
}

// readBody reads r's body, at most limit bytes of it; a longer one is a 413
// wrapping tooLarge. On failure it returns the status to answer.
func readBody(w http.ResponseWriter, r *http.Request, limit int, tooLarge error) ([]byte, int, error) {
	if r.ContentLength > int64(limit) {
		return nil, http.StatusRequestEntityTooLarge,
			fmt.Errorf("%w: %d bytes (limit %d)", tooLarge, r.ContentLength, limit)
	}
	// Unlike a LimitReader, MaxBytesReader also has net/http close the
	// connection rather than read on through an oversized body. The
	// server's read deadline bounds a body that stops arriving.
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var over *http.MaxBytesError
	var ne net.Error
	switch {
	case err == nil:
		return value, 0, nil
	case errors.As(err, &over):
		return nil, http.StatusRequestEntityTooLarge,
			fmt.Errorf("%w: more than %d bytes (limit %d)", tooLarge, limit, limit)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return nil, http.StatusRequestTimeout,
			fmt.Errorf("%w: %d bytes had arrived when the server's read deadline passed", ErrSlowBody, len(value))
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
}

func (h *handler) del(w http.ResponseWriter, r *http.Request, key []byte) {
	wr, err := parseWriteRequest(r)
	if err == nil {
		err = h.checkLeaderlessWrite(wr)
	}
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	if !wr.command() {
		res, err := h.svc.Delete(r.Context(), key, wr.opts)
		h.writeResult(w, r, res, err, nil)
		return
	}
	h.exec(w, r, wr, key, nil)
}

// writeResult answers a write: 200, or what the write achieved with the
// error of a write whose ack mode was not met (504) or whose outcome is
// unknown (503), or the service error's status. cmd is the command's result
// (nil for a plain put or delete).
func (h *handler) writeResult(w http.ResponseWriter, r *http.Request, res api.WriteResult, err error, cmd *commandResult) {
	rep := WriteReply{Index: res.Index, Term: res.Term, Durability: res.Durability,
		Replicas: res.Replicas, Committed: res.Committed, LeaderDurable: res.LeaderDurable,
		Session: res.Token().String()}
	if cmd != nil {
		rep.Duplicate = res.Cmd.Duplicate
		rep.Value, rep.Length = cmd.value, cmd.length
		if res.Cmd.Duplicate && res.Cmd.Index != 0 {
			rep.Index = res.Cmd.Index // the first write's, as its reply said
		}
	}
	if err == nil {
		setSession(w, rep.Session)
		h.setWriteReplicas(w, res)
		h.writeJSON(w, http.StatusOK, rep)
		return
	}
	// Both replies are the write's class's status, with what the write
	// reached (only api.ErrWriteTimeout of ClassTimeout has a result: a
	// context's deadline does not).
	switch class := api.ClassOf(err); {
	case errors.Is(err, api.ErrWriteTimeout):
		setSession(w, rep.Session)
		h.setWriteReplicas(w, res)
		rep.Error = "ack mode not met in time; the outcome is not final; reached: " + h.reached(res) + " (" + err.Error() + ")"
		h.writeJSON(w, class.HTTPStatus(), rep)
	case class == api.ClassOutcomeUnknown:
		setSession(w, rep.Session)
		h.setWriteReplicas(w, res)
		rep.Error = "outcome unknown: " + err.Error() + "; reached: " + h.reached(res)
		h.writeJSON(w, class.HTTPStatus(), rep)
	default:
		h.writeServiceError(w, r, err)
	}
}

// setSession sets the session token header of a reply ("" = none).
func setSession(w http.ResponseWriter, token string) {
	if token != "" {
		w.Header().Set(SessionHeader, token)
	}
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, key []byte) {
	q, err := ParseQuery(r.URL.RawQuery, readParams)
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	o, raw, err := ParseReadOptions(q, r.Header.Values(SessionHeader))
	if err == nil {
		err = h.checkLeaderlessRead(q)
	}
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	res, err := h.svc.Read(r.Context(), key, o)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	session := res.Token.String()
	setSession(w, session)
	setReadVersions(w, res, raw)
	h.setReadReplicas(w, res)
	if !res.Found {
		rep := map[string]any{"error": "key not found"}
		if session != "" {
			rep["session"] = session
		}
		if res.Context != "" {
			rep["context"] = res.Context
		}
		if h.readReplicas(res) {
			rep["replicas"] = res.Replicas
			if res.Repaired > 0 {
				rep["repaired"] = res.Repaired
			}
		}
		h.writeJSON(w, http.StatusNotFound, rep)
		return
	}
	if raw {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(IndexHeader, strconv.FormatUint(res.Index, 10))
		w.Header().Set("Content-Length", strconv.Itoa(len(res.Value)))
		h.armReplyDeadline(w, len(res.Value))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(res.Value)
		}
		return
	}
	rep := ReadReply{Index: res.Index, Session: session, Context: res.Context, Siblings: siblingReplies(res.Siblings)}
	if h.readReplicas(res) {
		n := res.Replicas
		rep.Replicas, rep.Repaired = &n, res.Repaired
	}
	rep.Key, rep.KeyEncoding = encodeBytes(key)
	rep.Value, rep.Encoding = encodeBytes(res.Value)
	if o.Consistency == api.Stale || o.Consistency == api.Bounded || o.Consistency == api.Local {
		lm, le := res.LagMillis, res.LagEntries
		rep.LagMillis, rep.LagEntries = &lm, &le
	}
	h.writeJSON(w, http.StatusOK, rep)
}

func (h *handler) rollbacks(w http.ResponseWriter) {
	rbs, err := h.svc.Rollbacks()
	if err != nil {
		h.writeError(w, http.StatusInternalServerError, fmt.Errorf("reading the rollback journal: %w", err))
		return
	}
	if rbs == nil {
		rbs = []api.Rollback{}
	}
	h.writeJSON(w, http.StatusOK, rbs)
}

func (h *handler) transfer(w http.ResponseWriter, r *http.Request, q url.Values) {
	to := q.Get("to")
	if to == "" {
		h.writeError(w, http.StatusBadRequest, fmt.Errorf("%w: missing to=ID (the node that should lead)", ErrBadRequest))
		return
	}
	d, err := parseTimeout(q.Get("timeout"))
	if err != nil {
		h.writeError(w, http.StatusBadRequest, err)
		return
	}
	if d == 0 {
		d = DefaultTransferTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	if err := h.svc.TransferLeadership(ctx, to); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			h.writeError(w, http.StatusGatewayTimeout, fmt.Errorf("leadership transfer to %s not done within %s: %w", to, d, err))
			return
		}
		h.writeServiceError(w, r, fmt.Errorf("leadership transfer to %s: %w", to, err))
		return
	}
	st := h.svc.Status()
	h.writeJSON(w, http.StatusOK, map[string]any{"leader": to, "term": st.Term})
}

func (h *handler) writeError(w http.ResponseWriter, code int, err error) {
	h.writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (h *handler) writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"encoding the reply failed"}`)
	}
	b = append(b, '\n')
	h.armReplyDeadline(w, len(b))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
