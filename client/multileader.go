package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
)

// The client's multi-leader side: the cluster's mode, siblings, causal
// contexts, the conflict log and the peer streams of /v1/status. The
// package comment says how requests are routed in that mode.

// Replication modes, as Status.Mode and Client.Mode name them.
const (
	ModeSingleLeader = "single-leader"
	ModeMultiLeader  = "multi-leader"
)

// Client.mode values.
const (
	modeUnknown int32 = iota
	modeSingle
	modeMulti
	modeLeaderless
)

// Sibling is one of a key's concurrent values (multi-leader, --conflicts
// siblings): writes on different nodes that had not seen each other.
type Sibling struct {
	Value []byte
	// Dot names the write: "node:counter", the node that accepted it and
	// its count of writes to the key there.
	Dot  string
	Node string
	// Time is the write's hybrid logical time, "wall.logical" (wall in
	// Unix nanoseconds).
	Time string
}

// StreamInfo is, in a multi-leader node's Status, one peer: how far each of
// the two applied the other's stream of writes, and the peer's clock.
type StreamInfo struct {
	Peer string `json:"peer"`
	// PeerAcked: how far the peer applied this node's stream, from its
	// acks (the stream ends at Status.LastIndex).
	PeerAcked uint64 `json:"peer_acked"`
	// Applied: how far this node applied the peer's stream; Known: the end
	// of the peer's stream as last heard. LagEntries = Known - Applied;
	// LagMillis: how long this node has been behind it (0: caught up).
	Applied    uint64 `json:"applied"`
	Known      uint64 `json:"known"`
	LagEntries uint64 `json:"lag_entries"`
	LagMillis  int64  `json:"lag_ms"`
	// LastContactMs: since the peer was last heard (-1: not since the node
	// started).
	LastContactMs int64 `json:"last_contact_ms"`
	// ClockOffsetMs: the largest offset seen in the peer's timestamps
	// (positive: the peer's clock is ahead of this node's).
	ClockOffsetMs float64 `json:"clock_offset_ms"`
}

// Conflict is one record of a multi-leader node's conflict log: concurrent
// versions of a key that met at a node, and what the conflict policy did.
type Conflict struct {
	// Seq is the record's place in the log of the node that recorded it
	// (from 1); each node numbers its own log.
	Seq      uint64
	Node     string // the node that recorded it
	Key      []byte
	Versions []ConflictVersion
	// Winner is the dot kept ("" when every version was kept, as
	// siblings); Losers the dots the policy dropped.
	Winner string
	Losers []string
	Reason string // e.g. "lww: higher hybrid timestamp wins"
}

// ConflictVersion is one of the versions of a Conflict.
type ConflictVersion struct {
	Dot     string // "node:counter"
	Node    string // the node that accepted the write
	Time    string // hybrid logical time, "wall.logical"
	Value   []byte // nil for a delete
	Deleted bool
}

// ConflictPage is a page of a node's conflict log.
type ConflictPage struct {
	Conflicts []Conflict
	// Dropped counts the oldest records the node dropped to keep its log
	// bounded: a reader that sees it grow missed that many.
	Dropped uint64
	// Next is the after of the next page (the last Seq returned, or the
	// after asked when the page is empty).
	Next uint64
	// Endpoint is the node that answered: seqs are that node's, so page
	// on with ConflictsAt(ctx, page.Endpoint, page.Next, limit).
	Endpoint string
}

// Mode returns the cluster's replication mode, ModeSingleLeader,
// ModeMultiLeader or ModeLeaderless, as the nodes' /v1/status says, asking
// them when the client has not yet (retrying while none answers, up to
// Config.RetryFor).
func (c *Client) Mode(ctx context.Context) (string, error) {
	m, err := c.knownMode(ctx)
	switch {
	case err != nil:
		return "", err
	case m == modeMulti:
		return ModeMultiLeader, nil
	case m == modeLeaderless:
		return ModeLeaderless, nil
	}
	return ModeSingleLeader, nil
}

// multiLeader reports whether the nodes said, when last asked, that the
// cluster is multi-leader (false while the client has not asked).
func (c *Client) multiLeader() bool { return c.mode.Load() == modeMulti }

// knownMode returns the cluster's mode (a Client.mode value), asking the
// nodes first if it is not known.
func (c *Client) knownMode(ctx context.Context) (int32, error) {
	if m := c.mode.Load(); m != modeUnknown {
		return m, nil
	}
	err := c.retry(ctx, func() error {
		_, err := c.findLeader(ctx)
		if c.mode.Load() != modeUnknown {
			return nil // a node answered: a single-leader cluster may have no leader now
		}
		return err
	})
	if err != nil {
		return modeUnknown, err
	}
	return c.mode.Load(), nil
}

// setMode records the mode that the answering nodes report: multi-leader
// or leaderless if any says so.
func (c *Client) setMode(sts []EndpointStatus) {
	m := modeUnknown
	for _, s := range sts {
		switch {
		case s.Err != nil:
		case s.Status.MultiLeader():
			m = modeMulti
		case s.Status.Mode == ModeLeaderless:
			m = modeLeaderless
		case m == modeUnknown:
			m = modeSingle
		}
	}
	if m != modeUnknown {
		c.mode.Store(m)
	}
}

// preferred returns, on a multi-leader cluster, the node that requests go
// to: of the endpoints of sts (in the client's order) that answered as
// multi-leader nodes, the first one, or, after a preferred node failed a
// request, the first one after it (wrapping around; itself only if no
// other answered). On a leaderless cluster, likewise, the node that the
// requests that need one node go to (the member list, the conflict log);
// reads and writes go to every node in turn (coordOnce).
func (c *Client) preferred(sts []EndpointStatus) (string, bool) {
	c.mu.Lock()
	failed := c.failed
	c.failed = ""
	c.mu.Unlock()
	start := 0
	for i, s := range sts {
		if s.Endpoint == failed {
			start = i + 1
		}
	}
	for i := range sts {
		if s := sts[(start+i)%len(sts)]; s.Err == nil && (s.Status.MultiLeader() || s.Status.Mode == ModeLeaderless) {
			return s.Endpoint, true
		}
	}
	return "", false
}

// localRead reports whether a read at consistency is served from the
// node's own copy on a multi-leader cluster (sent as consistency=local).
func localRead(consistency string) bool {
	switch consistency {
	case "", "linearizable", "stale", "local":
		return true
	}
	return false
}

// Conflicts returns the conflict log of the client's preferred node (see
// the package comment; it is the node the client's writes go to): up to
// limit records (0: the node's default, 100; at most 1000) with Seq above
// after, oldest first. Seqs are per node, and the preferred node changes
// when it cannot be reached, so page on with ConflictsAt and the page's
// Endpoint. A single-leader node answers ErrNotSupported.
func (c *Client) Conflicts(ctx context.Context, after uint64, limit int) (ConflictPage, error) {
	var page ConflictPage
	err := c.toLeader(ctx, func(ep string) error {
		var err error
		page, err = c.conflictsAt(ctx, ep, after, limit)
		return err
	})
	return page, err
}

// ConflictsAt returns the conflict log of the node at endpoint, as
// Conflicts.
func (c *Client) ConflictsAt(ctx context.Context, endpoint string, after uint64, limit int) (ConflictPage, error) {
	ep, err := normalize(endpoint, c.scheme)
	if err != nil {
		return ConflictPage{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return c.conflictsAt(ctx, ep, after, limit)
}

func (c *Client) conflictsAt(ctx context.Context, ep string, after uint64, limit int) (ConflictPage, error) {
	if limit < 0 {
		return ConflictPage{}, fmt.Errorf("%w: negative limit %d", ErrBadRequest, limit)
	}
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/conflicts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	body, err := c.do(ctx, http.MethodGet, ep, path, nil)
	if err != nil {
		return ConflictPage{}, err
	}
	var r struct {
		Conflicts []struct {
			Seq         uint64 `json:"seq"`
			Node        string `json:"node"`
			Key         string `json:"key"`
			KeyEncoding string `json:"key_encoding"`
			Versions    []struct {
				Dot      string `json:"dot"`
				Node     string `json:"node"`
				Time     string `json:"time"`
				Value    string `json:"value"`
				Encoding string `json:"encoding"`
				Deleted  bool   `json:"deleted"`
			} `json:"versions"`
			Winner string   `json:"winner"`
			Losers []string `json:"losers"`
			Reason string   `json:"reason"`
		} `json:"conflicts"`
		Dropped uint64 `json:"dropped"`
		Next    uint64 `json:"next"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return ConflictPage{}, fmt.Errorf("%s: bad conflicts reply: %w", ep, err)
	}
	page := ConflictPage{Dropped: r.Dropped, Next: r.Next, Endpoint: ep, Conflicts: make([]Conflict, len(r.Conflicts))}
	for i, rc := range r.Conflicts {
		key, err := decodeValue(rc.Key, rc.KeyEncoding)
		if err != nil {
			return ConflictPage{}, fmt.Errorf("%s: conflict %d: bad key: %w", ep, rc.Seq, err)
		}
		cf := Conflict{Seq: rc.Seq, Node: rc.Node, Key: key, Winner: rc.Winner, Losers: rc.Losers, Reason: rc.Reason,
			Versions: make([]ConflictVersion, len(rc.Versions))}
		for j, v := range rc.Versions {
			cv := ConflictVersion{Dot: v.Dot, Node: v.Node, Time: v.Time, Deleted: v.Deleted}
			if !v.Deleted {
				if cv.Value, err = decodeValue(v.Value, v.Encoding); err != nil {
					return ConflictPage{}, fmt.Errorf("%s: conflict %d: version %s: bad value: %w", ep, rc.Seq, v.Dot, err)
				}
			}
			cf.Versions[j] = cv
		}
		page.Conflicts[i] = cf
	}
	return page, nil
}

// siblingReply is one element of a read reply's "siblings".
type siblingReply struct {
	Value    string `json:"value"`
	Encoding string `json:"encoding"`
	Dot      string `json:"dot"`
	Node     string `json:"node"`
	Time     string `json:"time"`
}

// siblingsOf decodes a read reply's siblings (nil for none).
func siblingsOf(ep string, rs []siblingReply) ([]Sibling, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := make([]Sibling, len(rs))
	for i, r := range rs {
		v, err := decodeValue(r.Value, r.Encoding)
		if err != nil {
			return nil, fmt.Errorf("%s: sibling %s: bad value: %w", ep, r.Dot, err)
		}
		out[i] = Sibling{Value: v, Dot: r.Dot, Node: r.Node, Time: r.Time}
	}
	return out, nil
}

// decodeValue returns a reply's key or value: as is, or from base64 when
// encoding says so.
func decodeValue(s, encoding string) ([]byte, error) {
	if encoding == "base64" {
		return base64.StdEncoding.DecodeString(s)
	}
	return []byte(s), nil
}

// contextOf returns the causal context of a reply's JSON body ("" if none).
func contextOf(body []byte) string {
	var r struct {
		Context string `json:"context"`
	}
	_ = json.Unmarshal(body, &r)
	return r.Context
}

// notSentError is a request that never reached a node: the connection
// could not be made. Its write cannot have been applied.
type notSentError struct{ error }

func (e notSentError) Unwrap() error { return e.error }

// dialFailed reports whether err (from http.Client.Do) failed to connect.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// maybeSent reports whether a request that failed with err may have
// reached the node.
func maybeSent(err error) bool {
	var ns notSentError
	return !errors.As(err, &ns)
}
