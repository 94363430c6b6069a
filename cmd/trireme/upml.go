package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
)

// modeOf is a cluster layout's replication mode.
func modeOf(spec cluster.Spec) string {
	if spec.Mode == "" {
		return modeSingleLeader
	}
	return spec.Mode
}

// checkUpMode refuses trireme up flags that the cluster's mode does not use.
func checkUpMode(spec cluster.Spec, o *upOpts, set map[string]bool) error {
	mode := modeOf(spec)
	if mode != modeSingleLeader {
		for _, f := range []string{"heartbeat", "election-timeout", "failure-detector", "coordinator", "log-retain"} {
			if set[f] {
				return fmt.Errorf("--%s applies to single-leader clusters only", f)
			}
		}
		if o.replicas > 0 || len(spec.Replicas) > 0 {
			return fmt.Errorf("--replicas: a %s cluster has no read replicas (every node takes writes and reads)", mode)
		}
	}
	if mode == modeLeaderless && set["ack"] {
		return fmt.Errorf("--ack: a leaderless write is acknowledged by W replicas (w= per request)")
	}
	if set["conflicts"] && mode != modeMultiLeader {
		return fmt.Errorf("--conflicts applies to --mode multi-leader only")
	}
	if set["replication-factor"] && mode != modeLeaderless {
		return fmt.Errorf("--replication-factor applies to --mode leaderless only")
	}
	if mode == modeLeaderless && (spec.ReplicationFactor < 0 || spec.ReplicationFactor > len(spec.Nodes)) {
		return fmt.Errorf("--replication-factor %d: want 1..%d (the nodes)", spec.ReplicationFactor, len(spec.Nodes))
	}
	return nil
}

// upMultiLeader waits for every node of a multi-leader cluster to answer,
// prints how to use it, and runs until a signal.
func upMultiLeader(ctx context.Context, cl *cluster.Cluster, o *upOpts, sig <-chan os.Signal, stdout, stderr io.Writer) int {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range cl.Spec().IDs() {
		if err := cl.WaitReady(wctx, id); err != nil {
			fmt.Fprintf(stdout, "Node %s does not answer yet (%v); node logs are in %s.\n", id, err, filepath.Join(cl.DataDir(), "logs"))
		}
	}
	nodes := cl.Spec().Nodes
	a, b := nodes[0].HTTP, nodes[min(1, len(nodes)-1)].HTTP
	if modeOf(cl.Spec()) == modeLeaderless {
		fmt.Fprintf(stdout, `Leaderless: each key lives on %[3]d nodes of a hash ring; the node you ask coordinates W-of-N writes and R-of-N reads.
  curl -X PUT --data-binary v1 'http://%[1]s/v1/kv/k?w=2'
  curl 'http://%[2]s/v1/kv/k?r=2'                # the value, "replicas" that answered, "context" (and "siblings")
  curl 'http://%[2]s/v1/kv/k?consistency=local'  # this node's own copy
  curl 'http://%[1]s/v1/status'                  # ring ownership, hints, repairs
Running until Ctrl-C.
`, a, b, cl.Spec().ReplicationFactor)
	} else {
		fmt.Fprintf(stdout, `Multi-leader: every node accepts writes and reads its own copy; writes reach the others asynchronously.
  curl -X PUT --data-binary from-1 'http://%[1]s/v1/kv/k'
  curl -X PUT --data-binary from-2 'http://%[2]s/v1/kv/k'
  curl 'http://%[1]s/v1/kv/k'            # the value, its "context" (and "siblings" with --conflicts siblings)
  curl 'http://%[1]s/v1/conflicts'       # every conflict: versions, winner, why
  curl 'http://%[1]s/v1/status'          # per-peer stream positions, lag, clock offsets
Running until Ctrl-C.
`, a, b)
	}
	s := <-sig
	return stopCluster(cl, s, sig, o.data, stdout, stderr)
}
