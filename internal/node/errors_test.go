package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/repl"
)

// TestFollowerAnswersLikeTheLeader: a write the leader refuses gets the same
// error identity, class and so HTTP status and RESP prefix, whether it was
// sent to the leader or to a follower that forwarded it. Semi-sync with 5
// replicas on a 3-node cluster was a 400 on the leader and a 500 on a
// follower, which had no code for the leader's error.
func TestFollowerAnswersLikeTheLeader(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	l, f := c.nodes[li], c.nodes[c.follower(li)]
	ctx := ctxT(t)
	tooMany := api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 5}}
	incr := &command.Command{Op: command.OpIncr, Key: []byte("n"), Delta: 1}

	for _, tc := range []struct {
		name  string
		write func(n *Node) error
		want  error
	}{
		{"put, semi-sync 5", func(n *Node) error {
			_, err := n.Put(ctx, []byte("k"), []byte("v"), tooMany)
			return err
		}, api.ErrNotEnoughReplicas},
		{"delete, semi-sync 5", func(n *Node) error {
			_, err := n.Delete(ctx, []byte("k"), tooMany)
			return err
		}, api.ErrNotEnoughReplicas},
		{"incr, semi-sync 5", func(n *Node) error {
			_, err := n.Exec(ctx, incr, tooMany)
			return err
		}, api.ErrNotEnoughReplicas},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lerr, ferr := tc.write(l), tc.write(f)
			for _, r := range []struct {
				who string
				err error
			}{{"leader", lerr}, {"follower", ferr}} {
				if !errors.Is(r.err, tc.want) {
					t.Fatalf("on the %s: %v, want %q", r.who, r.err, tc.want)
				}
			}
			lc, lcode := api.Classify(lerr)
			fc, fcode := api.Classify(ferr)
			if lc != fc || lcode != fcode || lc != api.ClassBadRequest {
				t.Fatalf("leader %s (%d, HTTP %d), follower %s (%d, HTTP %d); want both bad request",
					lc, lcode, lc.HTTPStatus(), fc, fcode, fc.HTTPStatus())
			}
			t.Logf("leader: %v; follower: %v", lerr, ferr)
		})
	}
}

// TestEngineErrors: each error of the replication core that reaches a
// client is wrapped with the API's, keeping both identities; others pass.
func TestEngineErrors(t *testing.T) {
	for _, m := range engineErrors {
		err := engineErr(fmt.Errorf("%w: detail", m.core))
		if !errors.Is(err, m.api) || !errors.Is(err, m.core) {
			t.Errorf("%v: %v is not both", m.core, err)
		}
		if api.ClassOf(err) == api.ClassInternal || api.CodeOf(err) == api.CodeOther {
			t.Errorf("%v: classified as %s, code %d", err, api.ClassOf(err), api.CodeOf(err))
		}
	}
	other := errors.New("x")
	classified := fmt.Errorf("%w: %w", api.ErrNoLeader, repl.ErrReadTimeout)
	if engineErr(nil) != nil || engineErr(other) != other || engineErr(classified) != classified {
		t.Error("engineErr changed an error that is not the core's, or is already the API's")
	}
}
