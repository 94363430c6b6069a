package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Outcome is what a client learned about an operation.
type Outcome string

// Outcomes. A write that Failed certainly did nothing; an Unknown one may
// take effect at any later time (or never).
const (
	OK      Outcome = "ok"
	Failed  Outcome = "fail"
	Unknown Outcome = "unknown"
	// RolledBack: the node answered that a write of the op's session was
	// discarded (HTTP 409, RESP -ROLLEDBACK); a write so answered did nothing.
	RolledBack Outcome = "rolled-back"
)

// nothingDone reports whether an op with outcome o certainly did not write.
func nothingDone(o Outcome) bool { return o == Failed || o == RolledBack }

// Result is the answer to one operation.
type Result struct {
	Outcome Outcome
	Found   bool   // reads: the key exists
	Value   string // reads: its value
	Index   uint64 // the write's log index, or the version read (a 412: the key's current index)
	Term    uint64
	Err     string
	Status  int    // HTTP status (0: none)
	Token   string // the reply's session token
	// Duplicate: a keyed write's answer is the replay of an earlier one's.
	Duplicate bool
}

// Client issues single-key operations to a chosen node. Implementations never
// retry on their own: a retried write could be applied twice.
type Client interface {
	// Put writes key=value with ack mode ack ("majority", "sync", "semi-sync", "async").
	Put(ctx context.Context, node, key, value, ack string) Result
	// Delete removes key with ack mode ack.
	Delete(ctx context.Context, node, key, ack string) Result
	// Get reads key with consistency "linearizable" or "stale".
	Get(ctx context.Context, node, key, consistency string) Result
	Close()
}

// WriteTimeout is the ack timeout the clients ask for; nodes run with the
// same --write-timeout for RESP, which cannot ask per write.
const WriteTimeout = 1500 * time.Millisecond

// HTTPClient talks to the nodes' HTTP APIs.
type HTTPClient struct {
	addrs map[string]string
	hc    *http.Client
}

// NewHTTPClient returns a client for the nodes' HTTP addresses (id -> host:port).
func NewHTTPClient(addrs map[string]string) *HTTPClient {
	return &HTTPClient{addrs: addrs, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
}

// Close closes idle connections.
func (c *HTTPClient) Close() { c.hc.CloseIdleConnections() }

type httpReply struct {
	Value string `json:"value"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Error string `json:"error"`
	Enc   string `json:"encoding"`
}

func (c *HTTPClient) do(ctx context.Context, method, u, body string) (int, httpReply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, httpReply{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, httpReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, httpReply{}, err
	}
	var r httpReply
	if err := json.Unmarshal(b, &r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("bad reply %q: %w", b, err)
	}
	return resp.StatusCode, r, nil
}

// Put implements Client.
func (c *HTTPClient) Put(ctx context.Context, node, key, value, ack string) Result {
	return c.write(ctx, http.MethodPut, node, key, value, ack)
}

// Delete implements Client.
func (c *HTTPClient) Delete(ctx context.Context, node, key, ack string) Result {
	return c.write(ctx, http.MethodDelete, node, key, "", ack)
}

func (c *HTTPClient) write(ctx context.Context, method, node, key, value, ack string) Result {
	code, r, err := c.do(ctx, method, c.url(node, key, writeQuery(ack)), value)
	if err != nil {
		// The request may have reached the node: the write may happen.
		return Result{Outcome: Unknown, Err: err.Error()}
	}
	return Result{Outcome: writeOutcome(code, r.Error), Index: r.Index, Term: r.Term, Err: r.Error, Status: code}
}

// writeOutcome classifies the answer to an HTTP write: its status and error text.
func writeOutcome(code int, errText string) Outcome {
	switch {
	case code == http.StatusOK:
		return OK
	case code == http.StatusBadRequest, code == http.StatusRequestEntityTooLarge, code == http.StatusMisdirectedRequest,
		code == http.StatusInsufficientStorage, // the leader is below its disk reserve: nothing written
		code == http.StatusGone:                // a removed node refuses everything
		return Failed
	case code == http.StatusServiceUnavailable &&
		(strings.HasPrefix(errText, "no leader") || strings.HasPrefix(errText, "unavailable (retry)")):
		// No leader, a leadership transfer, or the leader's queue is full:
		// the API promises nothing was written.
		return Failed
	case code == http.StatusConflict && strings.Contains(errText, "rolled back"):
		// A session's write refused: an earlier one was discarded.
		return RolledBack
	}
	return Unknown
}

// request sends one request with headers hdr and decodes a JSON answer
// into v (when the body is JSON). It returns the status and the answer's
// headers; err is a transport error (the request may have been served).
func (c *HTTPClient) request(ctx context.Context, method, u, body string, hdr map[string]string, v any) (int, http.Header, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, val := range hdr {
		req.Header.Set(k, val)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("bad reply %q: %w", b, err)
	}
	return resp.StatusCode, resp.Header, nil
}

// url is the address of key on node with query q.
func (c *HTTPClient) url(node, key string, q url.Values) string {
	u := "http://" + c.addrs[node] + "/v1/kv/" + url.PathEscape(key)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// writeQuery is the query of a write with ack mode ack.
func writeQuery(ack string) url.Values {
	q := url.Values{"ack": {ack}, "timeout": {WriteTimeout.String()}}
	if ack == "semi-sync" {
		q.Set("replicas", "1")
	}
	return q
}

// Get implements Client.
func (c *HTTPClient) Get(ctx context.Context, node, key, consistency string) Result {
	u := "http://" + c.addrs[node] + "/v1/kv/" + url.PathEscape(key) + "?consistency=" + consistency
	code, r, err := c.do(ctx, http.MethodGet, u, "")
	if err != nil {
		return Result{Outcome: Unknown, Err: err.Error()}
	}
	switch code {
	case http.StatusOK:
		if r.Enc != "" {
			return Result{Outcome: Unknown, Err: "unexpected encoding " + r.Enc}
		}
		return Result{Outcome: OK, Found: true, Value: r.Value, Index: r.Index}
	case http.StatusNotFound:
		return Result{Outcome: OK}
	}
	return Result{Outcome: Failed, Err: fmt.Sprintf("%d %s", code, r.Error)}
}

// RESPClient talks to the nodes' Redis protocol endpoints with go-redis. The
// ack mode and read level are per connection (TRIREME.ACK, TRIREME.CONSISTENCY),
// so it keeps one single-connection client per node and mode.
type RESPClient struct {
	addrs map[string]string
	mu    sync.Mutex
	conns map[string]*redis.Client // node/mode -> client; guarded by mu
}

// NewRESPClient returns a client for the nodes' RESP addresses (id -> host:port).
func NewRESPClient(addrs map[string]string) *RESPClient {
	return &RESPClient{addrs: addrs, conns: map[string]*redis.Client{}}
}

// Close closes every connection.
func (c *RESPClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.conns {
		r.Close()
	}
	clear(c.conns)
}

func (c *RESPClient) conn(node, mode string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := node + "/" + mode
	if r := c.conns[k]; r != nil {
		return r
	}
	setup := []any{"TRIREME.ACK", mode}
	switch mode {
	case "semi-sync":
		setup = append(setup, "1")
	case "linearizable", "stale":
		setup = []any{"TRIREME.CONSISTENCY", mode}
	}
	r := redis.NewClient(&redis.Options{
		Addr:                  c.addrs[node],
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              1,
		DialTimeout:           time.Second,
		ReadTimeout:           2 * WriteTimeout,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, setup...).Err()
		},
	})
	c.conns[k] = r
	return r
}

// respOutcome classifies a RESP error reply or a connection error.
func respOutcome(err error) Outcome {
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		// Nothing was done (the API's promise); anything else, ERR included
		// (an unexpected server error), may have written.
		for _, p := range []string{"CLUSTERDOWN", "READONLY", "TRYAGAIN", "ERR insufficient storage", "ERR this node was removed"} {
			if strings.HasPrefix(msg, p) {
				return Failed
			}
		}
	}
	return Unknown
}

// Put implements Client.
func (c *RESPClient) Put(ctx context.Context, node, key, value, ack string) Result {
	err := c.conn(node, ack).Set(ctx, key, value, 0).Err()
	if err != nil {
		return Result{Outcome: respOutcome(err), Err: err.Error()}
	}
	return Result{Outcome: OK}
}

// Delete implements Client.
func (c *RESPClient) Delete(ctx context.Context, node, key, ack string) Result {
	err := c.conn(node, ack).Del(ctx, key).Err()
	if err != nil {
		return Result{Outcome: respOutcome(err), Err: err.Error()}
	}
	return Result{Outcome: OK}
}

// Get implements Client.
func (c *RESPClient) Get(ctx context.Context, node, key, consistency string) Result {
	v, err := c.conn(node, consistency).Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Result{Outcome: OK}
	case err != nil:
		return Result{Outcome: Failed, Err: err.Error()}
	}
	return Result{Outcome: OK, Found: true, Value: v}
}
