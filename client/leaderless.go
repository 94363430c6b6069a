package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/api"
)

// The client's leaderless side: quorums (WriteOptions.W, ReadOptions.R),
// read repair (ReadOptions.Repair), the replicas that answered, the ring
// and repairs of /v1/status, and routing without a leader. The package
// comment says how requests are routed in that mode.

// ModeLeaderless is the mode of a leaderless (Dynamo-style) cluster, as
// Status.Mode and Client.Mode name it.
const ModeLeaderless = "leaderless"

// Read repair words (ReadOptions.Repair).
const (
	RepairBackground = "background"
	RepairBlocking   = "blocking"
)

// LeaderlessInfo is, in a leaderless node's Status, its share of the ring,
// the hints it holds and its repairs.
type LeaderlessInfo struct {
	// ReplicationFactor is N, the replicas of each key; SloppyQuorum: a
	// write whose home replicas are unreachable is held by stand-ins (as
	// hints) instead of failing.
	ReplicationFactor int  `json:"replication_factor"`
	SloppyQuorum      bool `json:"sloppy_quorum"`
	// Ownership: each member's share of the key space it replicates, by
	// node id (the shares sum to the replication factor; 1 is every key).
	Ownership map[string]float64 `json:"ownership"`
	// HintsPending: the hints this node holds, by the node they are for;
	// HintsStored, HintsDelivered, HintsRefused count them since the node
	// started.
	HintsPending   map[string]int `json:"hints_pending"`
	HintsStored    uint64         `json:"hints_stored"`
	HintsDelivered uint64         `json:"hints_delivered"`
	HintsRefused   uint64         `json:"hints_refused"`
	// ReadRepairs: replicas this node updated after reads found them stale.
	ReadRepairs uint64 `json:"read_repairs"`
	// Anti-entropy (Merkle trees): exchanges started, buckets compared and
	// found different, keys this node repaired from them, and per peer the
	// buckets that differed in the last exchange (-1: none yet).
	AEExchanges       uint64         `json:"ae_exchanges"`
	AEBucketsCompared uint64         `json:"ae_buckets_compared"`
	AEBucketsDiffer   uint64         `json:"ae_buckets_differ"`
	AERepairs         uint64         `json:"ae_repairs"`
	AEDiffering       map[string]int `json:"ae_differing"`
	// TombstonesGC: deletes whose tombstones were collected once every
	// member had them.
	TombstonesGC uint64 `json:"tombstones_collected"`
	// Down: the peers this node considers unreachable.
	Down []string `json:"down,omitempty"`
}

// leaderless reports whether the nodes said, when last asked, that the
// cluster is leaderless (false while the client has not asked).
func (c *Client) leaderless() bool { return c.mode.Load() == modeLeaderless }

// leaderFree reports whether the cluster, as last known, has no leader:
// multi-leader or leaderless.
func (c *Client) leaderFree() bool {
	m := c.mode.Load()
	return m == modeMulti || m == modeLeaderless
}

// checkQuorum checks a W or an R (field names it) before it is sent.
func checkQuorum(field, q string) error {
	if _, err := api.ParseQuorum(q); err != nil {
		return fmt.Errorf("%w: %s %q: want a number from 1, one, quorum or all (\"\": the node's default)", ErrBadQuorum, field, q)
	}
	return nil
}

// checkRepair checks ReadOptions.Repair.
func checkRepair(r string) error {
	switch r {
	case "", RepairBackground, RepairBlocking:
		return nil
	}
	return fmt.Errorf("%w: ReadOptions.Repair %q: want %q or %q (\"\": background)", ErrBadRequest, r, RepairBlocking, RepairBackground)
}

// coordinate runs f against the node that serves a request that names
// none: on a leaderless cluster any node (coordOnce), else the leader or
// the preferred node (toLeader); retrying while none can serve it.
func (c *Client) coordinate(ctx context.Context, f func(ep string) error, moveOn func(error) bool) error {
	return c.retry(ctx, func() error { return c.coordOnce(ctx, f, moveOn) })
}

// coordOnce runs f once against the node that serves a request: on a
// leaderless cluster, the endpoints in turn from the next one in
// round-robin order, moving on while moveOn says so (spreadOnce); else the
// leader (leaderOnce). It learns the mode first if the client does not
// know it.
func (c *Client) coordOnce(ctx context.Context, f func(ep string) error, moveOn func(error) bool) error {
	if c.mode.Load() == modeUnknown {
		if _, err := c.findLeader(ctx); err != nil && !c.leaderless() {
			return err
		}
	}
	if c.leaderless() {
		return c.spreadOnce(f, moveOn)
	}
	return c.leaderOnce(ctx, f)
}

// spreadOnce runs f against each endpoint in turn, from the next one in
// round-robin order, until one answers or fails in a way that moveOn says
// another node would not help with. It returns every failure if none
// answered.
func (c *Client) spreadOnce(f func(ep string) error, moveOn func(error) bool) error {
	start := c.next.Add(1) - 1
	var errs []error
	for i := range c.endpoints {
		ep := c.endpoints[(start+uint64(i))%uint64(len(c.endpoints))]
		err := f(ep)
		if err == nil || !moveOn(err) {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readMoveOn says whether a leaderless read that failed with err is tried
// on the next node: it could not be sent or answered (ErrUnavailable, with
// ErrQuorumUnavailable), the node was removed, or the read timed out.
func readMoveOn(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRemoved) || errors.Is(err, ErrNoLeader) ||
		errors.Is(err, ErrWriteTimeout)
}

// writeMoveOn says whether a leaderless write that failed with err is sent
// to the next node: the node refused it writing nothing (a reply of
// ErrUnavailable's, ErrQuorumUnavailable among them; ErrRemoved;
// ErrNoLeader), or it never reached the node. A write whose connection
// broke after it was sent moves on too (it may be applied twice: the same
// value), but not an increment (once is all it may count).
func writeMoveOn(incr bool) func(error) bool {
	return func(err error) bool {
		switch {
		case errors.Is(err, ErrRemoved), errors.Is(err, ErrNoLeader):
			return true
		case !errors.Is(err, ErrUnavailable):
			return false
		}
		return !incr || !maybeSent(err) || nodeReplied(err)
	}
}

// nodeReplied reports whether err is a node's reply (not a connection that
// failed).
func nodeReplied(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// reachedLeaderless is WriteResult.Reached for a leaderless write.
func reachedLeaderless(r WriteResult) string {
	return fmt.Sprintf("durable on %d replica(s) of the key", r.Replicas)
}

// replicasOf returns the replica counts of a reply's JSON body (0 if none).
func replicasOf(body []byte) (int, int) {
	var r struct {
		Replicas int `json:"replicas"`
		Repaired int `json:"repaired"`
	}
	_ = json.Unmarshal(body, &r)
	return r.Replicas, r.Repaired
}
