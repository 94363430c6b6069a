package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// snapshotRewrite bounds what the snapshot part writes before its second
// and later catch-ups: enough to compact the log past the follower again
// (the retention plus a few 64 MiB segments); the snapshot holds the whole
// store anyway.
const snapshotRewrite = 256 << 20

// SnapshotTrial is one catch-up of a follower after the leader and the
// other follower compacted past the end of its log.
type SnapshotTrial struct {
	Follower string `json:"follower"`
	Leader   string `json:"leader"`
	// Terms is the leader's term when the follower was stopped and when
	// the catch-up ended, and LeaderAfter the leader then: a change means
	// elections during the trial.
	Terms       [2]uint64 `json:"terms"`
	LeaderAfter string    `json:"leader_after"`
	// FollowerLast is the follower's last log index when it was stopped.
	FollowerLast uint64  `json:"follower_last_index"`
	Written      int64   `json:"written_bytes"` // while it was down
	WriteMBps    float64 `json:"write_mb_per_sec"`
	// WALs are the leader's and the other follower's WALs when the
	// follower restarted; Compacted: neither held FollowerLast+1 any more.
	WALs      map[string]WALInfo `json:"wals"`
	Compacted bool               `json:"compacted"`
	// Target is the leader's commit index when the follower restarted;
	// the catch-up ends when the follower has applied it.
	Target      uint64  `json:"target_index"`
	LeaderStore int64   `json:"leader_store_bytes"` // when the follower restarted
	CaughtUp    bool    `json:"caught_up"`
	ReadySecs   float64 `json:"ready_seconds"` // process start to answering /v1/status
	Secs        float64 `json:"seconds"`       // process start to applied Target
	Path        string  `json:"path"`          // PathSnapshot, PathLog or PathNone
	// StoreBytes is the store bytes the follower received: the node's
	// metric of snapshot bytes received if it has one; else, if it caught
	// up by log, the values written while it was down; else the largest
	// snapshot_bytes_total the leader reported, else the leader's store
	// size when the follower restarted (BytesFrom says which).
	StoreBytes int64   `json:"store_bytes"`
	BytesFrom  string  `json:"bytes_from"`
	MBPerSec   float64 `json:"mb_per_sec"`
	OfDisk     float64 `json:"of_disk"` // MBPerSec over the disk's sequential write MB/s
	// SnapshotSecs is how long the leader reported the follower in state
	// "snapshot" (polls 100 ms apart); TransferMBps is StoreBytes over it.
	SnapshotSecs float64 `json:"snapshot_state_seconds"`
	TransferMBps float64 `json:"snapshot_state_mb_per_sec"`
	// Cores is each node's CPU time over the catch-up divided by its
	// length (the follower's from its start).
	Cores         map[string]float64 `json:"cores"`
	FollowerStore int64              `json:"follower_store_bytes"` // at the end
	// Members is what the leader's GET /v1/members said of the follower.
	Members    MemberWatch        `json:"members"`
	Metrics    map[string]float64 `json:"metrics"` // the follower's, "snapshot" in the name, at the end
	Writes     []PhaseWrites      `json:"writes"`  // "before", "catch-up"
	LoadBefore string             `json:"load_average_before"`
	LoadAfter  string             `json:"load_average_after"`
}

// SnapshotResult is the snapshot part: a follower's catch-ups against the
// disk's sequential write bandwidth measured in the same run.
type SnapshotResult struct {
	Bytes      int64  `json:"bytes"` // written before the first catch-up
	Rewrite    int64  `json:"rewrite_bytes"`
	ValueBytes int    `json:"value_bytes"`
	LogRetain  string `json:"log_retain"`
	// DiskMBps is the median of DiskSamples: the disk's sequential write
	// bandwidth measured before the first catch-up and after each one,
	// in the same run; each trial's OfDisk is against it.
	DiskMBps    float64         `json:"disk_seq_write_mb_per_sec"`
	DiskSamples []float64       `json:"disk_samples_mb_per_sec"`
	LimitSecs   float64         `json:"limit_seconds"`
	Trials      []SnapshotTrial `json:"trials"`
	// Medians over the trials that caught up by snapshot.
	MBPerSec    float64 `json:"median_mb_per_sec"`
	OfDisk      float64 `json:"median_of_disk"`
	Secs        float64 `json:"median_seconds"`
	P99BeforeUs float64 `json:"median_write_p99_before_us"`
	P99DuringUs float64 `json:"median_write_p99_during_us"`
	P99Ratio    float64 `json:"median_write_p99_ratio"`
	// LeaderMetrics: the last leader's, "snapshot" in the name, at the end.
	LeaderMetrics map[string]float64 `json:"leader_metrics"`
}

// TriremeSnapshot runs the snapshot part on a fresh cluster under dir: 3
// voters with --log-retain monthsLogRetain; trials times, a follower is
// stopped, values of valueBytes are written (ack majority; bytes the first
// time, at most snapshotRewrite after), the other nodes are given time to
// compact past the follower's log, a paced write load on the leader is
// measured for window, then the follower restarts and is timed until it
// has applied the leader's commit index. diskMBps is the disk's sequential
// write bandwidth measured before; disk measures it again, after each
// catch-up (the disk is shared and moves), and the catch-ups are compared
// with the median of all these.
func TriremeSnapshot(ctx context.Context, binary, dir string, procs int, insecurePeers bool, bytes int64, valueBytes, trials int, window time.Duration, diskMBps float64, disk func() (float64, error), progress func(string)) (SnapshotResult, error) {
	res := SnapshotResult{Bytes: bytes, Rewrite: min(bytes, snapshotRewrite), ValueBytes: valueBytes, LogRetain: monthsLogRetain,
		DiskSamples: []float64{diskMBps}, LimitSecs: catchUpLimit(bytes).Seconds()}
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecurePeers,
		NodeArgs: []string{"--log-retain", monthsLogRetain}})
	if err != nil {
		return res, err
	}
	defer t.Stop()
	err = res.runTrials(ctx, t, trials, valueBytes, window, disk, progress)
	res.summarize()
	if l, lerr := t.Leader(ctx); lerr == nil {
		res.LeaderMetrics, _ = scrapeMetrics(ctx, l.HTTP, "snapshot")
	}
	return res, err
}

// runTrials runs the catch-ups one after the other, measuring the disk
// after each.
func (res *SnapshotResult) runTrials(ctx context.Context, t *Trireme, trials, valueBytes int, window time.Duration, disk func() (float64, error), progress func(string)) error {
	follower := ""
	for i := range trials {
		b := res.Bytes
		if i > 0 {
			b = res.Rewrite
		}
		tr, err := snapshotTrial(ctx, t, follower, b, valueBytes, catchUpLimit(res.Bytes), window, progress)
		res.Trials = append(res.Trials, tr)
		if err != nil {
			return fmt.Errorf("catch-up %d/%d: %w", i+1, trials, err)
		}
		follower = tr.Follower
		d, err := disk()
		if err != nil {
			return err
		}
		res.DiskSamples = append(res.DiskSamples, d)
		progress(fmt.Sprintf("snapshot: disk sequential write %.0f MB/s (after catch-up %d)", d, i+1))
	}
	return nil
}

// summarize compares each catch-up with the disk's median bandwidth and
// takes the medians over the catch-ups by snapshot.
func (res *SnapshotResult) summarize() {
	res.DiskMBps = median(res.DiskSamples)
	var mbps, of, secs, before, during, ratios []float64
	for i := range res.Trials {
		tr := &res.Trials[i]
		if res.DiskMBps > 0 {
			tr.OfDisk = tr.MBPerSec / res.DiskMBps
		}
		if tr.Path != PathSnapshot || len(tr.Writes) != 2 {
			continue
		}
		mbps, of, secs = append(mbps, tr.MBPerSec), append(of, tr.OfDisk), append(secs, tr.Secs)
		before, during = append(before, tr.Writes[0].P99us), append(during, tr.Writes[1].P99us)
		ratios = append(ratios, ratio(tr.Writes[1].P99us, tr.Writes[0].P99us))
	}
	res.MBPerSec, res.OfDisk, res.Secs = median(mbps), median(of), median(secs)
	res.P99BeforeUs, res.P99DuringUs, res.P99Ratio = median(before), median(during), median(ratios)
}

// snapshotTrial stops a follower (prev if it is one), writes bytes, and
// times the follower's catch-up.
func snapshotTrial(ctx context.Context, t *Trireme, prev string, bytes int64, valueBytes int, limit, window time.Duration, progress func(string)) (SnapshotTrial, error) {
	cl := t.Cluster()
	tr := SnapshotTrial{LoadBefore: loadAverage()}
	leader, err := t.Leader(ctx)
	if err != nil {
		return tr, err
	}
	var others []string
	for _, ns := range cl.Spec().Nodes {
		if ns.ID != leader.ID {
			others = append(others, ns.ID)
		}
	}
	tr.Follower = others[0]
	if slices.Contains(others, prev) {
		tr.Follower = prev
	}
	others = slices.DeleteFunc(others, func(id string) bool { return id == tr.Follower })
	fs, err := cl.Status(ctx, tr.Follower)
	if err != nil {
		return tr, err
	}
	tr.FollowerLast = fs.LastIndex
	if _, st, err := cl.Leader(ctx); err == nil {
		tr.Terms[0] = st.Term
	}
	if err := cl.Stop(tr.Follower); err != nil {
		return tr, err
	}
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return tr, err
	}
	n := int((bytes + int64(valueBytes) - 1) / int64(valueBytes))
	tr.Written = int64(n) * int64(valueBytes)
	progress(fmt.Sprintf("snapshot: writing %d MiB (%d values of %d B, ack majority) while %s is down (its log ends at %d), --log-retain %s",
		tr.Written>>20, n, valueBytes, tr.Follower, tr.FollowerLast, monthsLogRetain))
	w0 := time.Now()
	if retries, err := Preload(ctx, v, n, valueBytes, 16, 30*time.Second); err != nil {
		return tr, err
	} else if retries > 0 {
		progress(fmt.Sprintf("snapshot: NOTE: %d writes were retried (leader change under load?)", retries))
	}
	tr.WriteMBps = float64(tr.Written) / 1e6 / time.Since(w0).Seconds()
	if leader, err = t.Leader(ctx); err != nil {
		return tr, err
	}
	tr.Leader = leader.ID
	tr.WALs, tr.Compacted = waitCompacted(ctx, cl, append([]string{leader.ID}, others...), tr.FollowerLast, 30*time.Second)
	var walDesc []string
	for id, w := range tr.WALs {
		walDesc = append(walDesc, fmt.Sprintf("%s %d segments from index %d", id, w.Segments, w.FirstIndex))
	}
	slices.Sort(walDesc)
	progress(fmt.Sprintf("snapshot: wrote at %.1f MB/s; WALs: %s; compacted past %s's log: %v", tr.WriteMBps, strings.Join(walDesc, "; "), tr.Follower, tr.Compacted))
	if v, err = t.Variant(ctx, "majority", "majority", 0, "linearizable"); err != nil {
		return tr, err
	}
	bg, err := startBackgroundWrites(ctx, v, []string{"before", "catch-up"})
	if err != nil {
		return tr, err
	}
	bg.nextPhase()
	time.Sleep(window)
	_, lst, err := cl.Leader(ctx)
	if err != nil {
		bg.stop()
		return tr, err
	}
	tr.Target, tr.LeaderStore = lst.CommitIndex, storeBytes(cl, leader.ID)
	progress(fmt.Sprintf("snapshot: restarting %s (target index %d, leader store %d MiB) with %d writes/s of %d B on the leader",
		tr.Follower, tr.Target, tr.LeaderStore>>20, bgRate, bgValueBytes))
	watch := watchMember(ctx, cl, tr.Follower, 100*time.Millisecond)
	bg.nextPhase()
	t0 := time.Now()
	if err := cl.Start(tr.Follower); err != nil {
		bg.stop()
		watch.stop()
		return tr, err
	}
	cores := coresSince(cl, cl.Spec().IDs())
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for wctx.Err() == nil && cl.Running(tr.Follower) {
		st, err := cl.Status(wctx, tr.Follower)
		if err == nil && tr.ReadySecs == 0 {
			tr.ReadySecs = time.Since(t0).Seconds()
		}
		if err == nil && st.AppliedIndex >= tr.Target {
			tr.Secs, tr.CaughtUp = time.Since(t0).Seconds(), true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	tr.Cores = cores()
	if id, st, err := cl.Leader(ctx); err == nil {
		tr.Terms[1], tr.LeaderAfter = st.Term, id
	}
	tr.Writes = bg.stop()
	tr.Members = watch.stop()
	fn, _ := cl.Node(tr.Follower)
	tr.Metrics, _ = scrapeMetrics(ctx, fn.HTTP, "snapshot")
	tr.FollowerStore = storeBytes(cl, tr.Follower)
	tr.Path = catchUpPath(tr.Members, tr.Metrics, tr.CaughtUp)
	tr.StoreBytes, tr.BytesFrom = snapshotBytes(tr)
	if tr.CaughtUp {
		tr.MBPerSec = float64(tr.StoreBytes) / 1e6 / tr.Secs
		if tr.SnapshotSecs = tr.Members.snapshotSecs(tr.Secs); tr.SnapshotSecs > 0 && tr.Path == PathSnapshot {
			tr.TransferMBps = float64(tr.StoreBytes) / 1e6 / tr.SnapshotSecs
		}
	}
	tr.LoadAfter = loadAverage()
	if !cl.Running(tr.Follower) {
		return tr, fmt.Errorf("%s exited during its catch-up (see %s)", tr.Follower, cl.LogPath(tr.Follower))
	}
	if tr.Terms[0] != tr.Terms[1] {
		progress(fmt.Sprintf("snapshot: NOTE: elections while %s was down or catching up: term %d when it stopped, %d at the end (leader %s when it restarted, %s at the end)",
			tr.Follower, tr.Terms[0], tr.Terms[1], leader.ID, tr.LeaderAfter))
	}
	if tr.CaughtUp {
		progress(fmt.Sprintf("snapshot: %s applied index %d %.2f s after its start, by %s: %d MiB (%s) at %.1f MB/s (%.1f s in state snapshot); member states: %s; cores: %s",
			tr.Follower, tr.Target, tr.Secs, tr.Path, tr.StoreBytes>>20, tr.BytesFrom, tr.MBPerSec, tr.SnapshotSecs, tr.Members.statesPath(), coresOf(tr.Cores)))
	} else {
		progress(fmt.Sprintf("snapshot: NOTE: %s did not apply index %d within %.0f s; member states: %s; its store holds %d MiB",
			tr.Follower, tr.Target, limit.Seconds(), tr.Members.statesPath(), tr.FollowerStore>>20))
	}
	for _, w := range tr.Writes {
		progress(fmt.Sprintf("snapshot: writes %-8s %5.1f s: %6.0f writes/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  errors %d",
			w.Phase, w.Seconds, w.WritesPerSec, w.P50us/1000, w.P99us/1000, w.MaxUs/1000, w.Errors))
	}
	if !tr.CaughtUp {
		return tr, fmt.Errorf("%s did not catch up within %v", tr.Follower, limit)
	}
	return tr, nil
}

// snapshotBytes picks the store bytes the follower received (see
// SnapshotTrial.StoreBytes) and says where the figure comes from.
func snapshotBytes(r SnapshotTrial) (int64, string) {
	for name, v := range r.Metrics {
		if v > 0 && strings.Contains(name, "bytes") && strings.Contains(name, "received") {
			return int64(v), "the follower's " + name
		}
	}
	if r.Path == PathLog {
		return r.Written, "the values written while it was down: it caught up by log"
	}
	if r.Members.MaxSnapshotBytesTotal > 0 {
		return r.Members.MaxSnapshotBytesTotal, "snapshot_bytes_total in GET /v1/members"
	}
	return r.LeaderStore, "the leader's store directory when the follower restarted"
}
