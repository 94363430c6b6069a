// Package client is the Go client for Trireme's HTTP API (v1).
//
// A Client knows a list of endpoints (the nodes' HTTP addresses). It finds
// the leader through /v1/status and sends writes and linearizable reads
// there; when there is no leader (an election is running) it retries until
// Config.RetryFor has passed; when a node answers that it is not the leader,
// it follows the leader it names. Errors are typed: check them with
// errors.Is against ErrNotFound, ErrNoLeader, ErrWriteTimeout,
// ErrOutcomeUnknown, ErrIdempotencyExpired, ErrBadRequest and
// ErrUnavailable (for commands, ErrConditionFailed, ErrNotInteger and
// ErrOverflow; for session reads, ErrRolledBack; for membership changes,
// ErrUnknownMember, ErrChangeInProgress, ErrNotCaughtUp and ErrRemoved; on
// a leaderless cluster, ErrBadQuorum and ErrQuorumUnavailable),
// and use errors.As with *Error for the HTTP status and, for writes, what
// was achieved (and, for ErrConditionFailed, the key's current index).
//
// The client retries a request when the node said there is no leader
// (nothing was proposed), named another leader, or could not be reached.
//
// Writes are exactly-once within Config.IdempotencyWindow: each logical
// write (Put, Delete, Incr, Append, PutIfIndex, DeleteIfIndex) carries an
// Idempotency-Key, 128 random bits in hex, and every retry of it sends the
// same key, so a node applies it at most once and answers a retry with the
// first attempt's result (WriteResult.Duplicate). With the key, a write
// whose connection broke, that timed out (504) or whose outcome is unknown
// (leadership lost) is retried too, up to Config.WriteRetries times; a
// retry that would leave the window is not sent (ErrIdempotencyExpired). A
// retry answered as a duplicate proves a commit, not a sync or semi-sync
// ack mode: such a write then returns ErrWriteTimeout saying so.
// Two exceptions keep the plain path, where a retried write may apply
// twice and a timeout or unknown outcome is returned as it is: a Put or
// Delete with Ack "async" (a write with a key is acknowledged only once
// committed, which async writes must not wait for), and every write of a
// client with Config.NoIdempotencyKeys.
//
// Reads and writes return a session token (ReadResult.Session,
// WriteResult.Session); a Session (Client.Session) keeps the newest one for
// you and reads with it, for read-your-writes and monotonic reads from any
// node.
//
// # Multi-leader clusters
//
// Against a multi-leader cluster (the nodes' /v1/status says "mode":
// "multi-leader") there is no leader: every node accepts writes and serves
// reads from its own copy. The client learns the mode from the /v1/status
// round that would find a leader, then sends every write, and every read
// that names no node, to its preferred node: the first endpoint, in
// Config.Endpoints order, that answered. It sticks to that node, so that
// it reads its own writes while the node is up. When a request to it fails
// to connect or its connection breaks, the client moves to the next
// endpoint after it (in that order, wrapping around) that answers a new
// /v1/status round, and sticks to that one. Client.Mode says which mode
// the client found.
//
// Every read there is local: "", "linearizable", "stale" and "local" are
// sent as consistency=local. The nodes refuse session and bounded reads,
// conditional writes, Append, Transfer and membership changes
// (ErrNotSupported, a 400). A read returns the key's causal context
// (ReadResult.Context) and, under the siblings policy, its concurrent
// values (ReadResult.Siblings); a write that sends the context back
// (WriteOptions.Context) replaces what that read saw. Client.Conflicts and
// Client.ConflictsAt page through a node's conflict log; Status has the
// peer streams.
//
// Multi-leader nodes keep no table of idempotency keys: a Put or Delete
// retried after a broken connection is applied again (the same value: no
// change under the lww policy, one more sibling under siblings). Incr sends
// no key at all (the nodes refuse one on an increment, which a retry would
// count twice) and is retried on another node only when the connection
// could not be made; once sent, a broken connection is ErrOutcomeUnknown. A
// write that missed its ack mode in time (ErrWriteTimeout) but is durable
// on the node that took it is returned as it is, not retried: it still
// replicates.
//
// # Leaderless clusters
//
// Against a leaderless cluster ("mode": "leaderless", Dynamo-style: every
// key has N replicas on a consistent-hash ring and any node coordinates a
// request to them) there is no leader either, and no node is preferred:
// writes and reads go round-robin over the endpoints. A request a node
// could not serve for want of replicas (ErrQuorumUnavailable: fewer of the
// key's replicas reachable than its W or R; nothing was written) or that
// could not reach its node goes to the next endpoint, and the client keeps
// trying, as while there is no leader, up to Config.RetryFor. A named node
// (ReadOptions.Endpoint) coordinates a read whatever its consistency.
//
// WriteOptions.W is how many of the key's replicas must hold a write
// durably, ReadOptions.R how many must answer a read: a number from 1, or
// "one", "quorum" (a majority of N) or "all"; "" is the node's default.
// ReadOptions.Repair "blocking" makes a read wait until the stale replicas
// among those that answered are repaired ("background", the default:
// repaired after the reply). Results say how many replicas answered
// (WriteResult.Replicas, ReadResult.Replicas) and a blocking read how many
// it repaired (ReadResult.Repaired). A W or R the cluster cannot meet (0,
// more than N, an unknown word) is ErrBadQuorum. Other clusters refuse W,
// R and Repair (ErrNotSupported). A read with consistency "" or
// "linearizable" is sent without one: the node's quorum read.
//
// Leaderless nodes keep no table of idempotency keys, so writes carry
// none: a write whose connection broke after it was sent is sent again to
// the next node (the same value), but not an increment (ErrOutcomeUnknown,
// as on a multi-leader cluster); a write that met fewer than W replicas in
// time (ErrWriteTimeout; Error.Result says how many hold it) is returned
// as it is: it may still reach the others through hinted handoff, read
// repair and anti-entropy. Status has the ring, hints and repairs
// (Status.Leaderless).
//
// Over HTTPS (https:// endpoints, or Config.TLS set), the client checks the
// nodes' certificates against Config.TLS's roots (TLSConfig loads a CA
// file); with Config.Token it sends "Authorization: Bearer TOKEN" on every
// request. A node that refuses the credential answers ErrUnauthorized (no
// or bad credential) or ErrForbidden (the user's role does not allow the
// request); neither is retried, nor is a certificate that does not verify
// (ErrTLS).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/api"
)

// Errors a Client returns (wrapped in *Error or with details).
var (
	ErrNotFound       = errors.New("key not found")
	ErrNoLeader       = errors.New("the cluster has no leader (an election may be running)")
	ErrWriteTimeout   = errors.New("the write's ack mode was not met in time; its outcome is not final")
	ErrOutcomeUnknown = errors.New("the leader changed while the write was in flight; its outcome is unknown")
	ErrBadRequest     = errors.New("bad request")
	ErrUnavailable    = errors.New("no endpoint answered")
	ErrNoEndpoints    = errors.New("no endpoints given")
	// ErrUnauthorized: the node needs a credential (Config.Token) and got
	// none, or one it does not accept (HTTP 401).
	ErrUnauthorized = errors.New("the node refused the credentials (none given, or not valid)")
	// ErrForbidden: the credential is valid, but its user's role does not
	// allow the request (HTTP 403).
	ErrForbidden = errors.New("the user's role does not allow this request")
	// ErrTLS: the TLS connection failed: a certificate that does not verify
	// against the CA, or TLS spoken to a plain HTTP port (or the reverse).
	ErrTLS = errors.New("TLS failed")
	// ErrUnknownMember: no member has the id given (HTTP 404 from a
	// membership endpoint).
	ErrUnknownMember = errors.New("unknown member")
	// ErrChangeInProgress: another membership change is not committed yet;
	// nothing was done; retry later (HTTP 409).
	ErrChangeInProgress = errors.New("another membership change is in progress")
	// ErrNotCaughtUp: the learner is too far behind to be promoted; the
	// message says how far (HTTP 409). Retry once it has caught up.
	ErrNotCaughtUp = errors.New("the learner has not caught up")
	// ErrRemoved: the node was removed from the cluster and serves nothing
	// (HTTP 410); use another one.
	ErrRemoved = errors.New("the node was removed from the cluster")
	// ErrConditionFailed: a conditional write (PutIfIndex, DeleteIfIndex)
	// found the key at another index; nothing changed (HTTP 412).
	// Error.CurrentIndex is the key's index (0: absent).
	ErrConditionFailed = errors.New("condition not met: the key is not at the index given")
	// ErrNotInteger: Incr on a value that is not a base-10 64-bit integer;
	// nothing changed (HTTP 409).
	ErrNotInteger = errors.New("the value is not an integer or out of range")
	// ErrOverflow: Incr would overflow a 64-bit integer; nothing changed
	// (HTTP 409).
	ErrOverflow = errors.New("the increment would overflow")
	// ErrRolledBack: a session read whose token names a write that was
	// discarded in a failover (HTTP 409): the session will never see it.
	// Start a new Session.
	ErrRolledBack = errors.New("a write of the session was rolled back")
	// ErrNotSupported: the node's replication mode does not offer the
	// request (HTTP 400): on a multi-leader cluster, session and bounded
	// reads, conditional writes (PutIfIndex, DeleteIfIndex), Append,
	// Transfer, membership changes; on a single-leader one, Conflicts.
	// It wraps ErrBadRequest.
	ErrNotSupported = fmt.Errorf("%w: not supported in this replication mode", ErrBadRequest)
	// ErrBadQuorum: a leaderless W or R (WriteOptions.W, ReadOptions.R)
	// that is not a quorum word or number, or that the cluster cannot meet
	// (0, more than the replicas of a key); nothing was done (HTTP 400).
	// It wraps ErrBadRequest.
	ErrBadQuorum = fmt.Errorf("%w: invalid quorum", ErrBadRequest)
	// ErrQuorumUnavailable: fewer of the key's replicas were reachable
	// than the request's W or R; a write was not written (HTTP 503). The
	// client tries the other nodes and retries, up to Config.RetryFor,
	// before it returns it. It wraps ErrUnavailable.
	ErrQuorumUnavailable = fmt.Errorf("%w: not enough replicas of the key reachable for the quorum", ErrUnavailable)
	// ErrBadContext: a multi-leader node refused a write's causal context
	// (WriteOptions.Context): malformed, from another cluster or for
	// another key, or naming writes the node does not have yet; nothing
	// was written (HTTP 400). It wraps ErrBadRequest.
	ErrBadContext = fmt.Errorf("%w: invalid causal context", ErrBadRequest)
	// ErrIdempotencyExpired: a write failed in a way that leaves its outcome
	// unknown, and a retry would be sent after Config.IdempotencyWindow,
	// when the nodes may have forgotten its idempotency key and could apply
	// it twice. It was not retried: read the key to learn the outcome.
	ErrIdempotencyExpired = errors.New("the write's idempotency window has passed; it was not retried and its outcome is unknown")
)

// Error is an error reply from a node.
type Error struct {
	Endpoint string
	Status   int    // HTTP status
	Message  string // the node's "error" field
	// Result is what a write achieved, for ErrWriteTimeout and ErrOutcomeUnknown.
	Result *WriteResult
	// CurrentIndex is, for ErrConditionFailed, the key's current index
	// (0: the key is absent): the index to give a retry.
	CurrentIndex uint64
	kind         error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Endpoint, e.Message, e.Status)
}

// Unwrap returns the sentinel error matching the reply.
func (e *Error) Unwrap() error { return e.kind }

// Config configures a Client.
type Config struct {
	// Endpoints are nodes' HTTP addresses: "host:port", "http://host:port"
	// or "https://host:port". A bare host:port, and a leader that a node
	// names, take https when TLS is set or any endpoint is https, else http.
	Endpoints []string
	// HTTPClient is used for every request; nil = a client with keep-alive,
	// TLS as below and a 30s overall timeout per request.
	HTTPClient *http.Client
	// TLS configures HTTPS when HTTPClient is nil: the roots that nodes'
	// certificates must chain to (TLSConfig loads them from a CA file), and
	// a client certificate if nodes ask for one. nil = the system's roots.
	TLS *tls.Config
	// Token, if set, is sent as "Authorization: Bearer TOKEN" on every
	// request: an API token, or the node's default password.
	Token string
	// RetryFor bounds how long a request retries while there is no leader or
	// no endpoint answers (default 5s; 0 = DefaultConfig's). A write's
	// budget starts again after each retry of an unknown outcome.
	RetryFor time.Duration
	// WriteRetries bounds how many times a write whose outcome is unknown
	// (a timeout, leadership lost while it was in flight) is retried with
	// its idempotency key (default 3; 0 = DefaultConfig's; negative: never).
	WriteRetries int
	// IdempotencyWindow is how long after a write's first attempt the
	// client may still retry it: past it, a node may have forgotten the
	// write's idempotency key, so the retry is not sent and the write fails
	// with ErrIdempotencyExpired. Keep it at most the nodes'
	// --idempotency-window (default 10m, as theirs; 0 = DefaultConfig's).
	IdempotencyWindow time.Duration
	// NoIdempotencyKeys sends every write without an idempotency key, as
	// clients did before keys existed: plain puts and deletes, never
	// retried after a timeout or an unknown outcome, and applied twice if a
	// connection breaks after the node received the write.
	NoIdempotencyKeys bool
}

// DefaultConfig returns a Config with a 5s retry budget, 3 retries of a
// write whose outcome is unknown, a 10-minute idempotency window and no
// endpoints.
func DefaultConfig() Config {
	return Config{RetryFor: 5 * time.Second, WriteRetries: 3, IdempotencyWindow: 10 * time.Minute}
}

// Validate checks that there is at least one endpoint and that each parses.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("client: Config.Endpoints: %w", ErrNoEndpoints)
	}
	for _, e := range c.Endpoints {
		if _, err := normalize(e, "http"); err != nil {
			return fmt.Errorf("client: Config.Endpoints: %w", err)
		}
	}
	if strings.ContainsAny(c.Token, "\r\n") {
		return errors.New("client: Config.Token holds a line break")
	}
	if c.RetryFor < 0 {
		return fmt.Errorf("client: Config.RetryFor %v is negative", c.RetryFor)
	}
	if c.IdempotencyWindow < 0 {
		return fmt.Errorf("client: Config.IdempotencyWindow %v is negative", c.IdempotencyWindow)
	}
	return nil
}

// normalize turns an endpoint into scheme://host:port, giving a bare
// host:port the scheme.
func normalize(e, scheme string) (string, error) {
	e = strings.TrimSpace(e)
	if e == "" {
		return "", errors.New("empty endpoint")
	}
	if !strings.Contains(e, "://") {
		e = scheme + "://" + e
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bad endpoint %q", e)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("bad endpoint %q: want http:// or https://", e)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host, "/"), nil
}

// TLSConfig returns a TLS configuration for Config.TLS: nodes'
// certificates must chain to the PEM certificates in caFile ("" = the
// system's roots), and, if certFile and keyFile are given, the client
// presents that certificate (for nodes that require client certificates).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("client: CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("client: CA file %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client: a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Client talks to a Trireme cluster. It is safe for concurrent use.
type Client struct {
	endpoints []string
	hc        *http.Client
	retryFor  time.Duration
	scheme    string // of bare addresses: "http" or "https"
	token     string

	writeRetries int           // < 0: none
	idemWindow   time.Duration // of a write's retries
	noIdemKeys   bool
	next         atomic.Uint64 // round-robin position of session and bounded reads
	mode         atomic.Int32  // the cluster's replication mode, as the nodes last said: modeUnknown, ...

	mu sync.Mutex
	// leader is the cached leader endpoint or, on a multi-leader cluster,
	// the preferred node; "" = unknown.
	leader string
	// failed is, on a multi-leader cluster, the preferred node that last
	// failed a request: the next one is chosen after it ("" = none).
	failed string
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	def := DefaultConfig()
	if cfg.RetryFor == 0 {
		cfg.RetryFor = def.RetryFor
	}
	if cfg.WriteRetries == 0 {
		cfg.WriteRetries = def.WriteRetries
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = def.IdempotencyWindow
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{hc: cfg.HTTPClient, retryFor: cfg.RetryFor, scheme: "http", token: cfg.Token,
		writeRetries: cfg.WriteRetries, idemWindow: cfg.IdempotencyWindow, noIdemKeys: cfg.NoIdempotencyKeys}
	if cfg.TLS != nil {
		c.scheme = "https"
	}
	for _, e := range cfg.Endpoints {
		if strings.HasPrefix(strings.TrimSpace(e), "https://") {
			c.scheme = "https"
		}
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.TLS != nil {
			tr.TLSClientConfig = cfg.TLS.Clone()
		}
		c.hc = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	for _, e := range cfg.Endpoints {
		n, _ := normalize(e, c.scheme)
		c.endpoints = append(c.endpoints, n)
	}
	return c, nil
}

// Endpoints returns the client's endpoints, normalized to
// scheme://host:port.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// WriteOptions say how a write is acknowledged. The zero value asks for the
// node's default ack mode and timeout.
type WriteOptions struct {
	// Ack is "", "async", "semi-sync", "sync" or "majority"; on a
	// multi-leader cluster "local" (durable on the node that takes the
	// write; the same as async), "all", "majority" or a number K of other
	// nodes that must apply it durably ("2").
	Ack      string
	Replicas int           // for semi-sync (0 = the server's default, 1)
	Timeout  time.Duration // 0 = the node's default
	// Context (multi-leader) is the causal context of an earlier read of
	// the key (ReadResult.Context), sent as X-Trireme-Context: the write
	// replaces the versions that read saw (siblings included). "" is a
	// blind write: under the lww policy it replaces what the node has,
	// under siblings it becomes one more sibling. A context the node does
	// not accept is ErrBadContext. Single-leader nodes ignore it.
	Context string
	// W (leaderless) is how many of the key's replicas must hold the write
	// durably: "1", "2", ..., "one", "quorum" (a majority) or "all"; "" is
	// the node's default. Other clusters refuse it (ErrNotSupported).
	W string
}

// WriteResult is what a write achieved.
type WriteResult struct {
	Index      uint64 `json:"index"`
	Term       uint64 `json:"term"`
	Durability string `json:"durability"`
	Replicas   int    `json:"replicas"`
	Committed  bool   `json:"committed"`
	// LeaderDurable: the write is fsynced on the leader.
	LeaderDurable bool `json:"leader_durable"`
	// Session is the write's session token: a read with consistency
	// "session" and this token (or a later one) sees the write.
	Session string `json:"session"`
	// Duplicate: the write was retried with its idempotency key and a node
	// had already applied it; this is the first application's result.
	Duplicate bool `json:"duplicate"`
	// Endpoint is the node that answered (the leader; on a multi-leader
	// cluster, the node that took the write; on a leaderless one, the node
	// that coordinated it). Not set in Error.Result.
	Endpoint string `json:"-"`
	// leaderless: the write was answered by a leaderless node (Replicas
	// counts the replicas that hold it).
	leaderless bool
}

// Leaderless reports whether a leaderless cluster answered the write:
// Replicas is then how many of the key's replicas hold it durably.
func (r WriteResult) Leaderless() bool { return r.leaderless }

// Reached describes, for a person, what the write achieved.
func (r WriteResult) Reached() string {
	if r.leaderless {
		return reachedLeaderless(r)
	}
	if r.Term == 0 && r.Index > 0 {
		// A multi-leader write: Index is its place in the stream of the
		// node that took it, Replicas the other nodes that applied it.
		where := "durable on no node yet"
		if r.LeaderDurable {
			where = fmt.Sprintf("durable on the node that took it and %d other node(s)", r.Replicas)
		}
		return fmt.Sprintf("%s, at index %d of that node's stream", where, r.Index)
	}
	return api.WriteResult{Index: r.Index, Term: r.Term, Replicas: r.Replicas,
		Committed: r.Committed, LeaderDurable: r.LeaderDurable}.Reached()
}

// ReadOptions choose how a read is served.
type ReadOptions struct {
	// Consistency is "" or "linearizable" (through the leader), "stale"
	// (any node's applied state), "session" (any node that has applied
	// Session, else the leader) or "bounded" (any node within MaxLag and/or
	// MaxLagEntries of the leader, else the leader). "local" is a stale
	// read. On a multi-leader cluster every read is local (the node's own
	// copy), whichever of "", "linearizable", "stale" and "local" is
	// given; session and bounded reads are refused there (ErrNotSupported).
	Consistency string
	// Endpoint, for stale, local, session and bounded reads, and for every
	// read on a multi-leader cluster, names the node to read from (default:
	// stale reads take the first endpoint that answers; session and
	// bounded reads go round-robin over the endpoints; multi-leader reads
	// go to the client's preferred node, the one its writes go to).
	Endpoint string
	// Session is the session token of a session read: of an earlier reply
	// ("" = a new session). A Session passes it for you.
	Session string
	// MaxLag and MaxLagEntries bound a bounded read (at least one, above 0).
	MaxLag        time.Duration
	MaxLagEntries uint64
	// R (leaderless) is how many of the key's replicas must answer: "1",
	// "2", ..., "one", "quorum" (a majority) or "all"; "" is the node's
	// default. Repair is "blocking" (reply once the stale replicas among
	// those that answered are repaired) or "background" ("", the default:
	// repair after replying). Other clusters refuse both (ErrNotSupported).
	R      string
	Repair string
}

func (o ReadOptions) query() url.Values {
	q := url.Values{}
	if o.Consistency != "" {
		q.Set("consistency", o.Consistency)
	}
	if o.Session != "" {
		q.Set("session", o.Session)
	}
	if o.MaxLag != 0 {
		q.Set("max_lag", o.MaxLag.String())
	}
	if o.MaxLagEntries != 0 {
		q.Set("max_lag_entries", strconv.FormatUint(o.MaxLagEntries, 10))
	}
	if o.R != "" {
		q.Set("r", o.R)
	}
	if o.Repair != "" {
		q.Set("repair", o.Repair)
	}
	return q
}

// ReadResult is a value read.
type ReadResult struct {
	Value      []byte
	Index      uint64 // log index that last changed the key
	LagMillis  int64  // stale and bounded reads: how far behind the node may be
	LagEntries uint64
	Endpoint   string // the node that answered
	// Session is the read's session token: pass it to the session's next
	// read (a Session does).
	Session string
	// Context (multi-leader) is the key's causal context as the node read
	// it, found or not (also after ErrNotFound): opaque; give it back in
	// WriteOptions.Context to replace what this read saw. "" from a
	// single-leader node.
	Context string
	// Siblings (multi-leader, --conflicts siblings) lists the key's
	// concurrent values when it has more than one; Value is the first.
	// nil for a key with one value.
	Siblings []Sibling
	// Replicas (leaderless) is how many of the key's replicas answered,
	// found or not (also after ErrNotFound); Repaired, how many a blocking
	// read repair updated before the reply. 0 from other clusters.
	Replicas int
	Repaired int
}

// FollowerInfo is the leader's view of one follower.
type FollowerInfo struct {
	ID            string `json:"id"`
	MatchIndex    uint64 `json:"match_index"`
	LagEntries    uint64 `json:"lag_entries"`
	LagMillis     int64  `json:"lag_ms"`
	LastContactMs int64  `json:"last_contact_ms"`
	Role          string `json:"role,omitempty"` // "voter" or "learner" ("": a voter)
}

// Status is one node's /v1/status.
type Status struct {
	ID           string         `json:"id"`
	ClusterID    string         `json:"cluster_id"`
	Role         string         `json:"role"`
	Term         uint64         `json:"term"`
	Leader       string         `json:"leader"`
	LeaderHTTP   string         `json:"leader_http"`
	LeaderRESP   string         `json:"leader_resp"`
	LastIndex    uint64         `json:"last_index"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	LagMillis    int64          `json:"lag_ms"`
	Followers    []FollowerInfo `json:"followers,omitempty"`
	// Mode is the node's replication mode: "single-leader", "multi-leader"
	// or "leaderless" ("" from a node that predates modes: single-leader).
	// A multi-leader node's Role is "multi-leader", its Leader is empty,
	// and LastIndex is the end of its own stream of writes.
	Mode string `json:"mode,omitempty"`
	// Multi-leader: per peer, how far each node applied the other's
	// stream; the conflicts this node recorded (Client.ConflictsAt lists
	// them); the peer timestamps it did not follow because they were more
	// than its --max-clock-offset ahead.
	Streams     []StreamInfo `json:"streams,omitempty"`
	Conflicts   uint64       `json:"conflicts,omitempty"`
	ClockClamps uint64       `json:"clock_clamps,omitempty"`
	// Leaderless (Mode "leaderless"): the node's share of the ring, the
	// hints it holds and its repairs.
	Leaderless *LeaderlessInfo `json:"leaderless,omitempty"`
}

// MultiLeader reports whether the node runs in multi-leader mode.
func (s Status) MultiLeader() bool { return s.Mode == ModeMultiLeader }

// Rollback is one write a node discarded from its log (and journaled).
type Rollback struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value"`
	// Cause: "conflict" (never committed: lost) or "snapshot" (replaced by
	// a snapshot that could not confirm it: it may have been committed).
	Cause string `json:"cause"`
}

func kvPath(key []byte) string { return "/v1/kv/" + url.PathEscape(string(key)) }

// Get reads key. ErrNotFound if it is absent (the ReadResult then holds
// the reply's Endpoint and Session only).
func (c *Client) Get(ctx context.Context, key []byte, o ReadOptions) (ReadResult, error) {
	return c.get(ctx, key, o, nil)
}

// get reads key; s, if not nil, takes the token of every reply.
func (c *Client) get(ctx context.Context, key []byte, o ReadOptions, s *Session) (ReadResult, error) {
	if len(key) == 0 {
		return ReadResult{}, fmt.Errorf("%w: empty key", ErrBadRequest)
	}
	if err := checkQuorum("ReadOptions.R", o.R); err != nil {
		return ReadResult{}, err
	}
	if err := checkRepair(o.Repair); err != nil {
		return ReadResult{}, err
	}
	var out ReadResult
	read := func(ep string) error {
		q := o.query()
		switch {
		case c.multiLeader() && localRead(o.Consistency):
			q.Set("consistency", "local") // what the other words mean there
		case c.leaderless() && (o.Consistency == "" || o.Consistency == "linearizable"):
			q.Del("consistency") // the node's quorum read
		}
		body, err := c.do(ctx, http.MethodGet, ep, kvPath(key)+"?"+q.Encode(), nil)
		s.observe(body, err)
		if errors.Is(err, ErrNotFound) {
			out = ReadResult{Endpoint: ep, Session: sessionOf(body), Context: contextOf(body)}
			out.Replicas, out.Repaired = replicasOf(body)
		}
		if err != nil {
			return err
		}
		var r struct {
			Value      string         `json:"value"`
			Encoding   string         `json:"encoding"`
			Index      uint64         `json:"index"`
			LagMillis  int64          `json:"lag_ms"`
			LagEntries uint64         `json:"lag_entries"`
			Session    string         `json:"session"`
			Context    string         `json:"context"`
			Siblings   []siblingReply `json:"siblings"`
			Replicas   int            `json:"replicas"`
			Repaired   int            `json:"repaired"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("%s: bad reply: %w", ep, err)
		}
		v, err := decodeValue(r.Value, r.Encoding)
		if err != nil {
			return fmt.Errorf("%s: bad base64 value: %w", ep, err)
		}
		sibs, err := siblingsOf(ep, r.Siblings)
		if err != nil {
			return err
		}
		out = ReadResult{Value: v, Index: r.Index, LagMillis: r.LagMillis, LagEntries: r.LagEntries, Endpoint: ep, Session: r.Session,
			Context: r.Context, Siblings: sibs, Replicas: r.Replicas, Repaired: r.Repaired}
		return nil
	}
	at := func(endpoint string) error {
		ep, err := normalize(endpoint, c.scheme)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		return read(ep)
	}
	switch o.Consistency {
	case "stale", "session", "bounded", "local":
		if o.Endpoint != "" {
			return out, at(o.Endpoint)
		}
		if c.multiLeader() && localRead(o.Consistency) {
			return out, c.toLeader(ctx, read) // the preferred node
		}
		if c.leaderless() {
			return out, c.coordinate(ctx, read, readMoveOn)
		}
		if o.Consistency == "stale" || o.Consistency == "local" {
			return out, c.anyEndpoint(ctx, read)
		}
		return out, c.spread(ctx, read)
	}
	if o.Endpoint != "" {
		// A node named for a linearizable read matters only on a
		// multi-leader cluster, where every read is local, and on a
		// leaderless one, where the node coordinates the read.
		m, err := c.knownMode(ctx)
		if err != nil {
			return out, err
		}
		if m == modeMulti || m == modeLeaderless {
			return out, at(o.Endpoint)
		}
	}
	return out, c.coordinate(ctx, read, readMoveOn)
}

// Status returns the /v1/status of the node at endpoint.
func (c *Client) Status(ctx context.Context, endpoint string) (Status, error) {
	ep, err := normalize(endpoint, c.scheme)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	var st Status
	body, err := c.do(ctx, http.MethodGet, ep, "/v1/status", nil)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s: bad status reply: %w", ep, err)
	}
	return st, nil
}

// EndpointStatus is one endpoint's status or the error reaching it.
type EndpointStatus struct {
	Endpoint string
	Status   Status
	Err      error
}

// Statuses asks every endpoint for its status, in parallel.
func (c *Client) Statuses(ctx context.Context) []EndpointStatus {
	out := make([]EndpointStatus, len(c.endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.endpoints {
		wg.Go(func() {
			st, err := c.Status(ctx, ep)
			out[i] = EndpointStatus{Endpoint: ep, Status: st, Err: err}
		})
	}
	wg.Wait()
	return out
}

// Rollbacks returns the rollback journal of the node at endpoint.
func (c *Client) Rollbacks(ctx context.Context, endpoint string) ([]Rollback, error) {
	ep, err := normalize(endpoint, c.scheme)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	body, err := c.do(ctx, http.MethodGet, ep, "/v1/rollbacks", nil)
	if err != nil {
		return nil, err
	}
	var rbs []Rollback
	if err := json.Unmarshal(body, &rbs); err != nil {
		return nil, fmt.Errorf("%s: bad rollbacks reply: %w", ep, err)
	}
	return rbs, nil
}

// Transfer asks the leader to hand leadership to node id, and returns once
// id leads.
func (c *Client) Transfer(ctx context.Context, to string) error {
	if to == "" {
		return fmt.Errorf("%w: no target node", ErrBadRequest)
	}
	err := c.toLeader(ctx, func(ep string) error {
		_, err := c.do(ctx, http.MethodPost, ep, "/v1/leader/transfer?to="+url.QueryEscape(to), nil)
		return err
	})
	if err == nil {
		c.setLeader("")
	}
	return err
}

// Leader returns the leader's endpoint, discovering it if needed. A
// multi-leader cluster has none: ErrNotSupported.
func (c *Client) Leader(ctx context.Context) (string, error) {
	var ep string
	err := c.retry(ctx, func() error {
		var err error
		ep, err = c.findLeader(ctx)
		return err
	})
	switch {
	case err == nil && c.multiLeader():
		return "", fmt.Errorf("%w: a multi-leader cluster has no leader: every node accepts writes", ErrNotSupported)
	case err == nil && c.leaderless():
		return "", fmt.Errorf("%w: a leaderless cluster has no leader: any node coordinates a request", ErrNotSupported)
	}
	return ep, err
}

func (c *Client) setLeader(ep string) {
	c.mu.Lock()
	c.leader = ep
	c.mu.Unlock()
}

// findLeader asks every endpoint for its status; a leader wins, else the
// leader a node names. On a multi-leader cluster it returns the preferred
// node instead: the first endpoint that answered. It records the mode the
// nodes report.
func (c *Client) findLeader(ctx context.Context) (string, error) {
	sts := c.Statuses(ctx)
	c.setMode(sts)
	if ep, ok := c.preferred(sts); ok {
		c.setLeader(ep)
		return ep, nil
	}
	named := ""
	var errs []error
	for _, s := range sts {
		if s.Err != nil {
			errs = append(errs, s.Err)
			continue
		}
		if s.Status.Role == "leader" {
			c.setLeader(s.Endpoint)
			return s.Endpoint, nil
		}
		if s.Status.LeaderHTTP != "" && named == "" {
			named, _ = normalize(s.Status.LeaderHTTP, c.scheme)
		}
	}
	if named != "" {
		c.setLeader(named)
		return named, nil
	}
	for _, err := range errs {
		if final(err) {
			return "", err
		}
	}
	if len(errs) == len(sts) {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	return "", ErrNoLeader
}

// final reports whether err will not go away by retrying: the node refused
// the credentials, or TLS failed.
func final(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrTLS)
}

// retryable reports whether err means "try again shortly": no leader, or no
// endpoint reachable (nothing was proposed).
func retryable(err error) bool {
	return errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnavailable)
}

func (c *Client) retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(c.retryFor)
	backoff := 20 * time.Millisecond
	for {
		err := f()
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while retrying: %w)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// toLeader runs f against the leader (on a multi-leader cluster, the
// preferred node), rediscovering it on a connection error or a not-leader
// reply, and retrying while there is none.
func (c *Client) toLeader(ctx context.Context, f func(ep string) error) error {
	return c.retry(ctx, func() error { return c.leaderOnce(ctx, f) })
}

// leaderOnce runs f once against the leader (discovering it if needed). A
// not-leader reply, a connection error and a removed node forget the
// leader; a not-leader reply becomes ErrNoLeader, which the caller retries.
func (c *Client) leaderOnce(ctx context.Context, f func(ep string) error) error {
	c.mu.Lock()
	ep := c.leader
	c.mu.Unlock()
	if ep == "" {
		var err error
		if ep, err = c.findLeader(ctx); err != nil {
			return err
		}
	}
	err := f(ep)
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && e.Status == http.StatusMisdirectedRequest:
		c.setLeader("")
		return fmt.Errorf("%w: %s", ErrNoLeader, e.Message) // retried with a fresh leader
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNoLeader), errors.Is(err, ErrRemoved):
		c.setLeader("")
		if c.leaderFree() {
			c.mu.Lock()
			c.failed = ep // the next preferred node is one after it
			c.mu.Unlock()
		}
	}
	return err
}

// spread runs f against the endpoints in turn, from the next one in
// round-robin order, until one answers (or refuses for good); it retries
// while none answers or no leader is known. Session and bounded reads use
// it to share their load among the nodes.
func (c *Client) spread(ctx context.Context, f func(ep string) error) error {
	return c.retry(ctx, func() error {
		start := c.next.Add(1) - 1
		var errs []error
		for i := range c.endpoints {
			ep := c.endpoints[(start+uint64(i))%uint64(len(c.endpoints))]
			err := f(ep)
			if err == nil || !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrRemoved) && !errors.Is(err, ErrNoLeader) {
				return err
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// anyEndpoint runs f against each endpoint in turn until one answers (a
// node removed from the cluster does not count).
func (c *Client) anyEndpoint(ctx context.Context, f func(ep string) error) error {
	return c.retry(ctx, func() error {
		var errs []error
		for _, ep := range c.endpoints {
			err := f(ep)
			if err == nil || !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrRemoved) {
				return err
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// do sends one request and maps an error reply to *Error. It returns the
// body for error replies too.
func (c *Client) do(ctx context.Context, method, ep, path string, body []byte) ([]byte, error) {
	return c.doWith(ctx, method, ep, path, body, nil)
}

// doWith is do with extra request headers.
func (c *Client) doWith(ctx context.Context, method, ep, path string, body []byte, hdr http.Header) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, ep+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if tlsFailed(err) {
			return nil, fmt.Errorf("%w: %s: %v", ErrTLS, ep, err)
		}
		uerr := fmt.Errorf("%w: %s: %v", ErrUnavailable, ep, err)
		if dialFailed(err) {
			return nil, notSentError{uerr}
		}
		return nil, uerr
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading the reply: %v", ErrUnavailable, ep, err)
	}
	if resp.StatusCode < 300 {
		return b, nil
	}
	var eb struct {
		Error string `json:"error"`
		Index uint64 `json:"index"`
	}
	_ = json.Unmarshal(b, &eb)
	if eb.Error == "" {
		eb.Error = strings.TrimSpace(string(b))
	}
	e := &Error{Endpoint: ep, Status: resp.StatusCode, Message: eb.Error}
	kv := strings.HasPrefix(path, "/v1/kv/")
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		e.kind = ErrUnauthorized
	case resp.StatusCode == http.StatusForbidden:
		e.kind = ErrForbidden
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(eb.Error, "HTTP request to an HTTPS server"):
		// net/http's own reply on a TLS port.
		e.kind = ErrTLS
		e.Message += " (use an https:// endpoint)"
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(eb.Error, api.ErrNotSupported.Error()):
		e.kind = ErrNotSupported
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(eb.Error, api.ErrBadContext.Error()):
		e.kind = ErrBadContext
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(eb.Error, api.ErrBadQuorum.Error()):
		e.kind = ErrBadQuorum
	case resp.StatusCode == http.StatusNotFound && kv:
		e.kind = ErrNotFound
	case resp.StatusCode == http.StatusPreconditionFailed && kv:
		e.kind, e.CurrentIndex = ErrConditionFailed, eb.Index
	case resp.StatusCode == http.StatusConflict && kv:
		e.kind = kvConflict(eb.Error)
	case resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, membersPath+"/"):
		e.kind = ErrUnknownMember
	case resp.StatusCode == http.StatusConflict && strings.Contains(eb.Error, api.ErrNotCaughtUp.Error()):
		e.kind = ErrNotCaughtUp
	case resp.StatusCode == http.StatusConflict:
		e.kind = ErrChangeInProgress
	case resp.StatusCode == http.StatusGone:
		e.kind = ErrRemoved
	case resp.StatusCode == http.StatusGatewayTimeout:
		e.kind = ErrWriteTimeout
	case resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(eb.Error, "outcome unknown"):
		e.kind = ErrOutcomeUnknown
	case resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(eb.Error, api.ErrQuorumUnavailable.Error()):
		e.kind = ErrQuorumUnavailable
	case resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(eb.Error, "no leader"):
		e.kind = ErrNoLeader
	case resp.StatusCode == http.StatusServiceUnavailable:
		e.kind = ErrUnavailable
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		e.kind = ErrBadRequest
	}
	return b, e
}

// kvConflict is the error of a 409 from /v1/kv/: the node's message names it.
func kvConflict(msg string) error {
	switch {
	case strings.Contains(msg, api.ErrNotInteger.Error()):
		return ErrNotInteger
	case strings.Contains(msg, api.ErrOverflow.Error()):
		return ErrOverflow
	case strings.Contains(msg, api.ErrRolledBack.Error()):
		return ErrRolledBack
	}
	return ErrBadRequest
}

// tlsFailed reports whether a request failed in TLS: a certificate that
// did not verify, TLS refused by the node (a client certificate missing),
// or TLS spoken to a plain HTTP port.
func tlsFailed(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		verify    *tls.CertificateVerificationError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		alert     tls.AlertError
		op        *net.OpError
	)
	// crypto/tls reports an alert from the node (a client certificate
	// missing or refused) as a net.OpError "remote error".
	remote := errors.As(err, &op) && op.Op == "remote error"
	return remote || errors.As(err, &unknownCA) || errors.As(err, &verify) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &record) || errors.As(err, &alert) ||
		errors.Is(err, http.ErrSchemeMismatch)
}
