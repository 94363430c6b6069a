package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/trireme-db/trireme/internal/api"
)

// Session reads its own writes and never reads back in time, from any
// node: read-your-writes and monotonic reads without sending every read to
// the leader.
//
// Every reply to a read or a write carries a session token, the point in
// the cluster's history that the reply reflects. A Session keeps the
// newest token of every reply it gets (success or not: a failed condition
// and a missing key carry one too) and sends it with each read, with
// consistency "session": a node serves the read once it has applied the
// token's entry, and otherwise waits a moment and then asks the leader. So
// a read sees every write of the session acknowledged before it began, and
// at least what the session's earlier reads saw.
//
// Reads go round-robin over the client's endpoints, spreading the load;
// writes go to the leader, as the Client's do, with the same retries and
// idempotency keys. A Session is safe for concurrent use; its guarantees
// hold between an operation that returned and the ones that start after.
// The token of a write whose outcome is not known (ErrWriteTimeout,
// ErrOutcomeUnknown) is not kept.
//
// A read whose token names a write that a failover discarded fails with
// ErrRolledBack: the session can never see that write; start a new one.
// Tokens are opaque text: Token and Client.ResumeSession carry a session
// across processes.
//
// A multi-leader cluster has no single order of writes, so no session
// tokens: its nodes refuse session reads (ErrNotSupported). A client
// reads its own writes there as long as its preferred node stays up (see
// the package comment).
type Session struct {
	c *Client

	mu  sync.Mutex
	tok api.Token // guarded by mu
}

// Session returns a new session (with no token: its first read is served
// by any node at once).
func (c *Client) Session() *Session { return &Session{c: c} }

// ResumeSession returns a session that starts from token, a Session's
// Token or a reply's session token. ErrBadRequest if token is not one.
func (c *Client) ResumeSession(token string) (*Session, error) {
	t, err := api.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return &Session{c: c, tok: t}, nil
}

// Token returns the session's token ("" before its first reply).
func (s *Session) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok.String()
}

// Get reads key with consistency "session", from the next endpoint in
// round-robin order.
func (s *Session) Get(ctx context.Context, key []byte) (ReadResult, error) {
	return s.c.get(ctx, key, ReadOptions{Consistency: "session", Session: s.Token()}, s)
}

// Put writes key=value through the leader (Client.Put).
func (s *Session) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResult, error) {
	r, err := s.c.write(ctx, writeCall{method: http.MethodPut, key: key, value: value, o: o}, s)
	return r.WriteResult, err
}

// Delete removes key (Client.Delete).
func (s *Session) Delete(ctx context.Context, key []byte, o WriteOptions) (WriteResult, error) {
	r, err := s.c.write(ctx, writeCall{method: http.MethodDelete, key: key, o: o}, s)
	return r.WriteResult, err
}

// PutIfIndex writes key=value if the key's index is index (Client.PutIfIndex).
func (s *Session) PutIfIndex(ctx context.Context, key, value []byte, index uint64, o WriteOptions) (WriteResult, error) {
	r, err := s.c.write(ctx, writeCall{method: http.MethodPut, key: key, value: value, o: o, ifIndex: &index}, s)
	return r.WriteResult, err
}

// DeleteIfIndex removes key if its index is index (Client.DeleteIfIndex).
func (s *Session) DeleteIfIndex(ctx context.Context, key []byte, index uint64, o WriteOptions) (WriteResult, error) {
	r, err := s.c.write(ctx, writeCall{method: http.MethodDelete, key: key, o: o, ifIndex: &index}, s)
	return r.WriteResult, err
}

// Incr adds by to key's integer value (Client.Incr).
func (s *Session) Incr(ctx context.Context, key []byte, by int64) (int64, error) {
	return s.c.incr(ctx, key, by, s)
}

// Append appends value to key's value (Client.Append).
func (s *Session) Append(ctx context.Context, key, value []byte) (int64, error) {
	return s.c.append(ctx, key, value, s)
}

// writeToken is the token a write of the session carries ("" for none, or
// for s nil).
func (s *Session) writeToken() string {
	if s == nil {
		return ""
	}
	return s.Token()
}

// observe keeps the token of a reply's body, unless err says that the
// write's outcome is not known. s may be nil (no session).
func (s *Session) observe(body []byte, err error) {
	if s == nil || len(body) == 0 || errors.Is(err, ErrWriteTimeout) || errors.Is(err, ErrOutcomeUnknown) {
		return
	}
	t, perr := api.ParseToken(sessionOf(body))
	if perr != nil || t.IsZero() {
		return
	}
	s.mu.Lock()
	s.tok = s.tok.Max(t)
	s.mu.Unlock()
}

// sessionOf returns the session token of a reply's JSON body ("" if none).
func sessionOf(body []byte) string {
	var r struct {
		Session string `json:"session"`
	}
	_ = json.Unmarshal(body, &r)
	return r.Session
}
