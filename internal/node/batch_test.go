package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
)

// TestPutBatch checks that a batch is written in order, one entry per key,
// with per-key errors for bad keys, on the leader (one step into the core)
// and on a follower (forwarded one by one).
func TestPutBatch(t *testing.T) {
	c := newTestCluster(t, 3, true)
	li := c.leader()
	fi := c.follower(li)
	for _, tc := range []struct {
		name string
		node int
	}{{"leader", li}, {"follower", fi}} {
		t.Run(tc.name, func(t *testing.T) {
			n := c.nodes[tc.node]
			// The same key written three times: the last value must win,
			// and the indexes must rise in slice order.
			var keys, vals [][]byte
			for i := range 10 {
				k := fmt.Sprintf("%s-k%d", tc.name, i%4)
				if i == 5 {
					k = "" // refused alone: ErrEmptyKey
				}
				keys = append(keys, []byte(k))
				vals = append(vals, []byte(fmt.Sprint(i)))
			}
			res, errs := n.PutBatch(ctxT(t), keys, vals, api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}})
			if len(res) != len(keys) || len(errs) != len(keys) {
				t.Fatalf("%d results, %d errors for %d keys", len(res), len(errs), len(keys))
			}
			var prev uint64
			for i := range keys {
				if i == 5 {
					if !errors.Is(errs[i], api.ErrEmptyKey) {
						t.Fatalf("write %d (empty key): err %v, want ErrEmptyKey", i, errs[i])
					}
					continue
				}
				if errs[i] != nil {
					t.Fatalf("write %d: %v", i, errs[i])
				}
				if res[i].Index <= prev || res[i].Durability != "majority" {
					t.Fatalf("write %d: index %d after %d, durability %q", i, res[i].Index, prev, res[i].Durability)
				}
				prev = res[i].Index
			}
			for k, want := range map[int]string{0: "8", 1: "9", 2: "6", 3: "7"} {
				got, err := c.nodes[li].Get(ctxT(t), fmt.Appendf(nil, "%s-k%d", tc.name, k), api.Linearizable)
				if err != nil || string(got.Value) != want {
					t.Fatalf("key %d = %q, %v; want %q", k, got.Value, err, want)
				}
			}
		})
	}
}
