package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
)

// The replica and snapshot parts time a node that catches up with a
// cluster whose leader has compacted its log, so the node needs a
// snapshot. Their clusters run with a small retention (monthsLogRetain):
// the WAL keeps at least that much of its newest segments (64 MiB each)
// beyond what the store needs, so a few hundred MiB written are enough to
// compact the start of the log away.
const monthsLogRetain = "64MiB"

// catchUpLimit bounds a catch-up of bytes: 30 s plus 10 MB/s (a tenth of
// what the log catch-up gives on the test machine).
func catchUpLimit(bytes int64) time.Duration {
	return 30*time.Second + time.Duration(float64(bytes)/10e6*float64(time.Second))
}

// Catch-up paths, as seen from outside.
const (
	PathSnapshot = "snapshot" // the node's metrics count a snapshot received, or the leader reported it in state "snapshot"
	PathLog      = "log"      // it caught up and was never seen in state "snapshot"
	PathNone     = "none"     // it did not catch up within the limit
)

// catchUpPath tells how a node caught up from what the leader reported and
// the node's metrics with "snapshot" in their names.
func catchUpPath(m MemberWatch, metrics map[string]float64, caughtUp bool) string {
	for name, v := range metrics {
		if v > 0 && strings.Contains(name, "received") && caughtUp {
			return PathSnapshot
		}
	}
	switch {
	case m.SnapshotPolls > 0 && caughtUp:
		return PathSnapshot
	case caughtUp:
		return PathLog
	}
	return PathNone
}

// ReplicaTrial is one read replica added to the cluster.
type ReplicaTrial struct {
	Replica string `json:"replica"`
	Leader  string `json:"leader"` // it joined through the leader's HTTP address
	// Terms is the leader's term when the trial began and when the
	// replica served (or the limit passed), LeaderAfter the leader then: a
	// change means elections during the trial.
	Terms       [2]uint64 `json:"terms"`
	LeaderAfter string    `json:"leader_after"`
	// The leader's WAL and store when the replica started; Compacted: the
	// WAL no longer held entry 1.
	LeaderWAL   WALInfo `json:"leader_wal"`
	Compacted   bool    `json:"leader_compacted"`
	LeaderStore int64   `json:"leader_store_bytes"`
	// From the process start: the replica answers /v1/status (ReadySecs),
	// it serves the last key written before it started with a stale read
	// over HTTP (ServeSecs; 0 if it did not within the limit).
	ReadySecs float64 `json:"ready_seconds"`
	ServeSecs float64 `json:"serve_seconds"`
	Served    bool    `json:"served"`
	// SnapshotSecs is how long the leader reported the replica in state
	// "snapshot" (polls 100 ms apart); SnapshotBytes what the replica's
	// metrics say it received.
	SnapshotSecs  float64 `json:"snapshot_state_seconds"`
	SnapshotBytes int64   `json:"snapshot_bytes_received"`
	// Cores is each node's CPU time from the replica's start until it
	// served, divided by that time.
	Cores map[string]float64 `json:"cores"`
	Path  string             `json:"path"` // PathSnapshot, PathLog or PathNone
	// Members is what the leader's GET /v1/members said of the replica.
	Members MemberWatch `json:"members"`
	// Metrics are the replica's samples with "snapshot" in their name,
	// once it served (or at the limit).
	Metrics      map[string]float64 `json:"metrics"`
	ReplicaStore int64              `json:"replica_store_bytes"`
	Writes       []PhaseWrites      `json:"writes"` // "before", "catch-up"
	LoadBefore   string             `json:"load_average_before"`
	LoadAfter    string             `json:"load_average_after"`
}

// ReplicaResult is the time to add a read replica to a cluster holding
// Bytes, with a write load on the leader, over several replicas added one
// after the other (each removed before the next).
type ReplicaResult struct {
	Bytes       int64          `json:"bytes"`
	Values      int            `json:"values"`
	ValueBytes  int            `json:"value_bytes"`
	LogRetain   string         `json:"log_retain"`
	PreloadSecs float64        `json:"preload_seconds"`
	PreloadMBps float64        `json:"preload_mb_per_sec"`
	LimitSecs   float64        `json:"limit_seconds"`
	Trials      []ReplicaTrial `json:"trials"`
	// Medians over the trials that served: time to serve, and the write
	// p99 before and during the catch-up, and their per-trial ratio.
	ServeSecs     float64            `json:"median_serve_seconds"`
	P99BeforeUs   float64            `json:"median_write_p99_before_us"`
	P99DuringUs   float64            `json:"median_write_p99_during_us"`
	P99Ratio      float64            `json:"median_write_p99_ratio"`
	LeaderMetrics map[string]float64 `json:"leader_metrics"` // "snapshot" in the name, at the end
}

// TriremeReplica runs the replica part on a fresh cluster under dir: 3
// voters with --log-retain monthsLogRetain and bytes written in values of
// valueBytes (ack majority); then, trials times: leadership moved to n1 if
// needed (read replicas join through n1, cluster.Cluster.Args, so that it
// is `--join http://LEADER`), a paced write load on the leader measured
// for window, a marker key written, a read replica started and timed until
// a stale read of the marker on it returns the marker's value, then the
// replica removed from the cluster and stopped.
func TriremeReplica(ctx context.Context, binary, dir string, procs int, insecurePeers bool, bytes int64, valueBytes, trials int, window time.Duration, progress func(string)) (ReplicaResult, error) {
	n := int((bytes + int64(valueBytes) - 1) / int64(valueBytes))
	res := ReplicaResult{Bytes: int64(n) * int64(valueBytes), Values: n, ValueBytes: valueBytes, LogRetain: monthsLogRetain,
		LimitSecs: catchUpLimit(bytes).Seconds()}
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: 3, Replicas: trials, Procs: procs, InsecurePeers: insecurePeers,
		NodeArgs: []string{"--log-retain", monthsLogRetain}})
	if err != nil {
		return res, err
	}
	defer t.Stop()
	cl := t.Cluster()
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return res, err
	}
	progress(fmt.Sprintf("replica: writing %d MiB (%d values of %d B, ack majority), --log-retain %s", res.Bytes>>20, n, valueBytes, monthsLogRetain))
	w0 := time.Now()
	if retries, err := Preload(ctx, v, n, valueBytes, 16, 30*time.Second); err != nil {
		return res, err
	} else if retries > 0 {
		progress(fmt.Sprintf("replica: NOTE: %d writes were retried (leader change under load?)", retries))
	}
	res.PreloadSecs = time.Since(w0).Seconds()
	res.PreloadMBps = float64(res.Bytes) / 1e6 / res.PreloadSecs
	progress(fmt.Sprintf("replica: wrote at %.1f MB/s", res.PreloadMBps))
	var leader cluster.NodeSpec
	for i, id := range cl.Spec().ReplicaIDs() {
		if leader, err = leadFrom(ctx, t, cl.Spec().Nodes[0].ID); err != nil {
			return res, err
		}
		tr, err := replicaTrial(ctx, t, leader, id, catchUpLimit(bytes), window, progress)
		res.Trials = append(res.Trials, tr)
		if err != nil {
			return res, fmt.Errorf("replica %d/%d: %w", i+1, trials, err)
		}
	}
	res.LeaderMetrics, _ = scrapeMetrics(ctx, leader.HTTP, "snapshot")
	var serve, before, during, ratios []float64
	for _, tr := range res.Trials {
		if !tr.Served || len(tr.Writes) != 2 {
			continue
		}
		serve = append(serve, tr.ServeSecs)
		before, during = append(before, tr.Writes[0].P99us), append(during, tr.Writes[1].P99us)
		ratios = append(ratios, ratio(tr.Writes[1].P99us, tr.Writes[0].P99us))
	}
	res.ServeSecs, res.P99BeforeUs, res.P99DuringUs, res.P99Ratio = median(serve), median(before), median(during), median(ratios)
	return res, nil
}

// leadFrom makes node id the leader (a leadership transfer) unless it
// leads, and returns its spec.
func leadFrom(ctx context.Context, t *Trireme, id string) (cluster.NodeSpec, error) {
	cl := t.Cluster()
	if l, err := t.Leader(ctx); err == nil && l.ID == id {
		return l, nil
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Client().Transfer(tctx, id); err != nil {
		return cluster.NodeSpec{}, fmt.Errorf("moving leadership to %s: %w", id, err)
	}
	for {
		if l, err := t.Leader(tctx); err == nil && l.ID == id {
			return l, nil
		}
		select {
		case <-tctx.Done():
			return cluster.NodeSpec{}, fmt.Errorf("%s did not take the lead: %w", id, tctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// replicaTrial adds read replica id through leader, times it, then removes
// and stops it.
func replicaTrial(ctx context.Context, t *Trireme, leader cluster.NodeSpec, id string, limit, window time.Duration, progress func(string)) (ReplicaTrial, error) {
	cl := t.Cluster()
	tr := ReplicaTrial{Replica: id, Leader: leader.ID, LoadBefore: loadAverage()}
	if _, st, err := cl.Leader(ctx); err == nil {
		tr.Terms[0] = st.Term
	}
	rs, err := cl.Node(id)
	if err != nil {
		return tr, err
	}
	walm, compacted := waitCompacted(ctx, cl, []string{leader.ID}, 0, 30*time.Second)
	tr.LeaderWAL, tr.Compacted, tr.LeaderStore = walm[leader.ID], compacted, storeBytes(cl, leader.ID)
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return tr, err
	}
	bg, err := startBackgroundWrites(ctx, v, []string{"before", "catch-up"})
	if err != nil {
		return tr, err
	}
	bg.nextPhase()
	time.Sleep(window)
	marker := MakeValue(64, uint64(time.Now().UnixNano()))
	mc, err := dialRESP(ctx, leader.RESP, [][]any{{"TRIREME.ACK", "majority"}})
	if err == nil {
		err = mc.Set(ctx, "replica-marker", marker, 0).Err()
		mc.Close()
	}
	if err != nil {
		bg.stop()
		return tr, fmt.Errorf("writing the marker: %w", err)
	}
	progress(fmt.Sprintf("replica: starting read replica %s (trireme node --join http://%s --learner; leader %s WAL %d segments from index %d, entry 1 compacted away: %v; store %d MiB) with %d writes/s of %d B on the leader",
		id, leader.HTTP, leader.ID, tr.LeaderWAL.Segments, tr.LeaderWAL.FirstIndex, compacted, tr.LeaderStore>>20, bgRate, bgValueBytes))
	watch := watchMember(ctx, cl, id, 100*time.Millisecond)
	bg.nextPhase()
	t0 := time.Now()
	if err := cl.Start(id); err != nil {
		bg.stop()
		watch.stop()
		return tr, err
	}
	cores := coresSince(cl, append(cl.Spec().IDs(), id))
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{}
	for sctx.Err() == nil && cl.Running(id) {
		if tr.ReadySecs == 0 {
			stx, c := context.WithTimeout(sctx, 200*time.Millisecond)
			if _, err := cl.Status(stx, id); err == nil {
				tr.ReadySecs = time.Since(t0).Seconds()
			}
			c()
		}
		if ok, _ := staleGet(sctx, hc, rs.HTTP, "replica-marker", marker); ok {
			tr.ServeSecs, tr.Served = time.Since(t0).Seconds(), true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr.Cores = cores()
	if lid, st, err := cl.Leader(ctx); err == nil {
		tr.Terms[1], tr.LeaderAfter = st.Term, lid
	}
	tr.Writes = bg.stop()
	tr.Members = watch.stop()
	tr.ReplicaStore = storeBytes(cl, id)
	tr.Metrics, _ = scrapeMetrics(ctx, rs.HTTP, "snapshot")
	for name, v := range tr.Metrics {
		if strings.Contains(name, "bytes_received") {
			tr.SnapshotBytes = int64(v)
		}
	}
	end := tr.ServeSecs
	if !tr.Served {
		end = time.Since(t0).Seconds()
	}
	tr.SnapshotSecs = tr.Members.snapshotSecs(end)
	tr.Path = catchUpPath(tr.Members, tr.Metrics, tr.Served)
	tr.LoadAfter = loadAverage()
	if !cl.Running(id) {
		return tr, fmt.Errorf("%s exited (see %s)", id, cl.LogPath(id))
	}
	if tr.Terms[0] != tr.Terms[1] {
		progress(fmt.Sprintf("replica: NOTE: elections while %s joined: term %d, leader %s before; term %d, leader %s at the end",
			id, tr.Terms[0], leader.ID, tr.Terms[1], tr.LeaderAfter))
	}
	if tr.Served {
		progress(fmt.Sprintf("replica: %s served the marker with a stale read %.2f s after its start (answered /v1/status at %.2f s); caught up by %s; member states: %s",
			id, tr.ServeSecs, tr.ReadySecs, tr.Path, tr.Members.statesPath()))
	} else {
		progress(fmt.Sprintf("replica: NOTE: %s did not serve the marker within %.0f s (answered /v1/status at %.2f s); member states: %s; its store holds %d MiB",
			id, limit.Seconds(), tr.ReadySecs, tr.Members.statesPath(), tr.ReplicaStore>>20))
	}
	for _, w := range tr.Writes {
		progress(fmt.Sprintf("replica: writes %-8s %5.1f s: %6.0f writes/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  errors %d",
			w.Phase, w.Seconds, w.WritesPerSec, w.P50us/1000, w.P99us/1000, w.MaxUs/1000, w.Errors))
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	if _, err := cl.Client().RemoveMember(rctx, id); err != nil {
		return tr, fmt.Errorf("removing %s: %w", id, err)
	}
	if err := cl.Stop(id); err != nil && !errors.Is(err, cluster.ErrNotRunning) {
		progress(fmt.Sprintf("replica: %s exited with %v once removed", id, err))
	}
	return tr, nil
}

// mib formats bytes in MiB.
func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 0, 64) }
