package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Put writes key=value.
func (c *Client) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResult, error) {
	r, err := c.write(ctx, writeCall{method: http.MethodPut, key: key, value: value, o: o}, nil)
	return r.WriteResult, err
}

// Delete removes key. Deleting an absent key succeeds.
func (c *Client) Delete(ctx context.Context, key []byte, o WriteOptions) (WriteResult, error) {
	r, err := c.write(ctx, writeCall{method: http.MethodDelete, key: key, o: o}, nil)
	return r.WriteResult, err
}

// PutIfIndex writes key=value only if the key's index (the log index that
// last changed it: ReadResult.Index, WriteResult.Index) is index; index 0
// means the key must not exist. Otherwise nothing changes and the error is
// ErrConditionFailed, with the key's current index in Error.CurrentIndex:
//
//	_, err := c.PutIfIndex(ctx, k, v, r.Index, client.WriteOptions{})
//	var ce *client.Error
//	if errors.Is(err, client.ErrConditionFailed) && errors.As(err, &ce) {
//		// someone else wrote k: it is now at ce.CurrentIndex
//	}
func (c *Client) PutIfIndex(ctx context.Context, key, value []byte, index uint64, o WriteOptions) (WriteResult, error) {
	r, err := c.write(ctx, writeCall{method: http.MethodPut, key: key, value: value, o: o, ifIndex: &index}, nil)
	return r.WriteResult, err
}

// DeleteIfIndex removes key only if its index is index, as PutIfIndex.
func (c *Client) DeleteIfIndex(ctx context.Context, key []byte, index uint64, o WriteOptions) (WriteResult, error) {
	r, err := c.write(ctx, writeCall{method: http.MethodDelete, key: key, o: o, ifIndex: &index}, nil)
	return r.WriteResult, err
}

// Incr adds by (which may be negative) to key's value, read as a base-10
// 64-bit integer (an absent key is 0), and returns the new value, with the
// node's default ack mode. ErrNotInteger if the value is not such an
// integer, ErrOverflow if the sum would not be one.
//
// On a multi-leader cluster the key is a counter that every node
// increments (concurrent increments on different nodes all count; Incr of
// a key that holds a value is ErrNotInteger) and the call carries no
// idempotency key: the nodes refuse one on an increment, since they cannot
// recognise a retry. So an Incr whose outcome is unknown is not retried: a
// connection that broke after the request was sent returns
// ErrOutcomeUnknown (wrapping ErrUnavailable) and ErrWriteTimeout comes
// back at once; only a node that could not be connected to at all is
// replaced by another.
func (c *Client) Incr(ctx context.Context, key []byte, by int64) (int64, error) {
	return c.incr(ctx, key, by, nil)
}

// Append appends value to key's value (an absent key is empty) and returns
// the new length in bytes, with the node's default ack mode.
func (c *Client) Append(ctx context.Context, key, value []byte) (int64, error) {
	return c.append(ctx, key, value, nil)
}

func (c *Client) incr(ctx context.Context, key []byte, by int64, s *Session) (int64, error) {
	r, err := c.write(ctx, writeCall{method: http.MethodPost, key: key, op: "incr", by: by}, s)
	if err != nil {
		return 0, err
	}
	if r.Value == nil {
		return 0, fmt.Errorf("%s: bad reply to op=incr: no value", r.endpoint)
	}
	return *r.Value, nil
}

func (c *Client) append(ctx context.Context, key, value []byte, s *Session) (int64, error) {
	if value == nil {
		value = []byte{}
	}
	r, err := c.write(ctx, writeCall{method: http.MethodPost, key: key, value: value, op: "append"}, s)
	if err != nil {
		return 0, err
	}
	if r.Length == nil {
		return 0, fmt.Errorf("%s: bad reply to op=append: no length", r.endpoint)
	}
	return *r.Length, nil
}

// writeCall is one logical write.
type writeCall struct {
	method     string
	key, value []byte
	o          WriteOptions
	op         string  // "", "incr" or "append" (POST)
	by         int64   // op=incr
	ifIndex    *uint64 // nil: unconditional
}

// command reports whether the write is a state-machine command whatever
// its idempotency key: an op or a condition.
func (w *writeCall) command() bool { return w.op != "" || w.ifIndex != nil }

func (w *writeCall) path() string {
	q := w.o.query()
	if w.op != "" {
		q.Set("op", w.op)
	}
	if w.op == "incr" {
		q.Set("by", strconv.FormatInt(w.by, 10))
	}
	if w.ifIndex != nil {
		q.Set("if_index", strconv.FormatUint(*w.ifIndex, 10))
	}
	return kvPath(w.key) + "?" + q.Encode()
}

// writeReply is a node's reply to a write.
type writeReply struct {
	WriteResult
	Value    *int64 `json:"value"`  // op=incr
	Length   *int64 `json:"length"` // op=append
	endpoint string
}

// newIdempotencyKey returns 128 random bits in hex.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// idempotent reports whether w gets an idempotency key: every write but a
// plain async put or delete, unless keys are off.
func (c *Client) idempotent(w *writeCall) bool {
	return !c.noIdemKeys && (w.command() || w.o.Ack != "async")
}

// write sends w to the leader (on a multi-leader cluster, the preferred
// node) and retries it: while there is no leader or no endpoint answers
// (up to RetryFor), and, with an idempotency key, after an unknown outcome
// (up to WriteRetries times, within the idempotency window). s, if not
// nil, takes the token of every reply.
//
// On a multi-leader cluster an increment goes without its idempotency key
// and is retried only when it was not sent (see Incr), and a write that
// timed out but is durable on the node that took it is not retried. On a
// leaderless cluster no write carries a key: one that timed out is not
// retried, and one refused for want of replicas, or that could not reach
// its node, goes to the next node (writeOnce).
func (c *Client) write(ctx context.Context, w writeCall, s *Session) (writeReply, error) {
	if len(w.key) == 0 {
		return writeReply{}, fmt.Errorf("%w: empty key", ErrBadRequest)
	}
	if err := checkQuorum("WriteOptions.W", w.o.W); err != nil {
		return writeReply{}, err
	}
	var hdr http.Header
	if c.idempotent(&w) {
		hdr = http.Header{idempotencyKeyHeader: {newIdempotencyKey()}}
	}
	if tok := s.writeToken(); tok != "" {
		// The leader refuses the write (ErrRolledBack, nothing written) if
		// an earlier write of the session was discarded.
		if hdr == nil {
			hdr = http.Header{}
		}
		hdr.Set("X-Trireme-Session", tok)
	}
	keyed := hdr != nil
	if w.o.Context != "" {
		if hdr == nil {
			hdr = http.Header{}
		}
		hdr.Set(contextHeader, w.o.Context)
	}
	incr := w.op == "incr"
	path := w.path()
	first := time.Now()
	deadline := first.Add(c.retryFor)
	backoff := 20 * time.Millisecond
	retries := 0
	var unknown error // the last failure after which the write may have been applied
	for {
		rep, err := c.writeOnce(ctx, w.method, path, w.value, hdr, incr, s)
		if err == nil {
			if rep.Duplicate && unknown != nil && !duplicateMeets(w.o.Ack) {
				return rep, unconfirmed(unknown, rep, w.o.Ack)
			}
			return rep, nil
		}
		ml, ll := c.multiLeader(), c.leaderless()
		withKey := keyed && !ll // leaderless writes go without their key (writeOnce)
		switch {
		case (ml || ll) && incr && rep.endpoint != "" && errors.Is(err, ErrUnavailable) && maybeSent(err) && !(ll && nodeReplied(err)):
			// Sent without a key: a retry might count it twice.
			return rep, fmt.Errorf("%w: the increment was sent to %s and the connection failed; it was not retried, since a %s node cannot tell a retry from a new increment: %w",
				ErrOutcomeUnknown, rep.endpoint, modeName(ml), err)
		case ml && errors.Is(err, ErrWriteTimeout) && durableThere(err):
			// The node says where the write is: durable there, it will
			// still replicate. A retry would write it again.
			return rep, err
		case ll && (errors.Is(err, ErrWriteTimeout) || errors.Is(err, ErrOutcomeUnknown)):
			// Held by fewer replicas than W, or by none: without a key,
			// a retry would write it again.
			return rep, err
		case withKey && !(ml && incr) && (errors.Is(err, ErrWriteTimeout) || errors.Is(err, ErrOutcomeUnknown)):
			retries++
			if c.writeRetries < 0 || retries > c.writeRetries {
				return rep, err
			}
			unknown = err
			c.setLeader("") // a timed-out or deposed leader may not be the leader now
			deadline = time.Now().Add(c.retryFor)
		case retryable(err):
			if errors.Is(err, ErrUnavailable) {
				unknown = err // the connection may have broken after the node took the write
			}
			if time.Now().After(deadline) {
				return rep, err
			}
		default:
			return rep, err
		}
		if serr := sleep(ctx, backoff); serr != nil {
			return rep, fmt.Errorf("%w (while retrying: %w)", serr, err)
		}
		backoff = min(backoff*2, 500*time.Millisecond)
		if withKey && unknown != nil && time.Since(first) >= c.idemWindow {
			return rep, fmt.Errorf("%w: %v since its first attempt, window %v; last attempt: %w",
				ErrIdempotencyExpired, time.Since(first).Round(time.Millisecond), c.idemWindow, err)
		}
	}
}

// writeOnce sends a write to the leader (the preferred node) once; on a
// leaderless cluster, to the endpoints in turn until one takes it or
// refuses it for good (writeMoveOn). An increment (incr) to a multi-leader
// node, and every write to a leaderless one, goes without its idempotency
// key. rep.endpoint is set once the write is sent.
func (c *Client) writeOnce(ctx context.Context, method, path string, value []byte, hdr http.Header, incr bool, s *Session) (writeReply, error) {
	var rep writeReply
	err := c.coordOnce(ctx, func(ep string) error {
		rep.endpoint = ep
		h := hdr
		ll := c.leaderless()
		if (ll || incr && c.multiLeader()) && h.Get(idempotencyKeyHeader) != "" {
			h = h.Clone()
			h.Del(idempotencyKeyHeader)
		}
		body, err := c.doWith(ctx, method, ep, path, value, h)
		s.observe(body, err)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && len(body) > 0 && e.Result == nil &&
				(errors.Is(err, ErrWriteTimeout) || errors.Is(err, ErrOutcomeUnknown)) {
				var r WriteResult
				if json.Unmarshal(body, &r) == nil && (r.Index > 0 || ll) {
					r.leaderless = ll
					e.Result = &r
				}
			}
			return err
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			return fmt.Errorf("%s: bad reply: %w", ep, err)
		}
		rep.Endpoint, rep.leaderless = ep, ll
		return nil
	}, writeMoveOn(incr))
	return rep, err
}

// modeName names a cluster without a leader: multi-leader (ml) or
// leaderless.
func modeName(ml bool) string {
	if ml {
		return ModeMultiLeader
	}
	return ModeLeaderless
}

// Headers a write may carry.
const (
	idempotencyKeyHeader = "Idempotency-Key"
	contextHeader        = "X-Trireme-Context"
)

// durableThere reports whether a write error's result says that the write
// is durable on the node that answered (a multi-leader node's timeout).
func durableThere(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Result != nil && e.Result.LeaderDurable
}

// duplicateMeets reports whether a duplicate reply, which proves that the
// write is committed (durable on a majority) and nothing more, meets ack.
func duplicateMeets(ack string) bool {
	return ack == "" || ack == "majority" || ack == "async"
}

// unconfirmed is the error of a write whose retry found it applied
// (committed), when its ack mode asks for more than a commit: the ack mode
// was not confirmed. It keeps the 504 that started the retries, if any.
func unconfirmed(unknown error, rep writeReply, ack string) error {
	note := fmt.Sprintf("a retry with the same idempotency key found the write applied and committed at index %d, but not that its ack mode %s was met",
		rep.Index, ack)
	var e *Error
	if errors.Is(unknown, ErrWriteTimeout) && errors.As(unknown, &e) {
		e2 := *e
		e2.Message += "; " + note
		if e2.Result == nil {
			e2.Result = &rep.WriteResult
		}
		return &e2
	}
	return &Error{Endpoint: rep.endpoint, Status: http.StatusGatewayTimeout, Result: &rep.WriteResult, kind: ErrWriteTimeout,
		Message: fmt.Sprintf("ack mode not met: the outcome is not final (%v); %s", unknown, note)}
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// query is the query string of a write's ack options.
func (o WriteOptions) query() url.Values {
	q := url.Values{}
	if o.Ack != "" {
		q.Set("ack", o.Ack)
	}
	if o.Replicas > 0 {
		q.Set("replicas", fmt.Sprint(o.Replicas))
	}
	if o.Timeout > 0 {
		q.Set("timeout", o.Timeout.String())
	}
	if o.W != "" {
		q.Set("w", o.W)
	}
	return q
}
