package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// waitTriremeCaughtUp waits until node id has applied the leader's commit index.
func waitTriremeCaughtUp(ctx context.Context, t *Trireme, id string, limit time.Duration) error {
	cl := t.Cluster()
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := cl.WaitReady(wctx, id); err != nil {
		return err
	}
	for {
		_, lst, lerr := cl.Leader(wctx)
		st, err := cl.Status(wctx, id)
		if lerr == nil && err == nil && st.AppliedIndex >= lst.CommitIndex && st.Term == lst.Term {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("node %s did not catch up within %v: %w", id, limit, errNoProgress)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitMember waits until member i answers a status request with a leader
// known and has applied what the leader had committed.
func (e *Etcd) waitMember(ctx context.Context, i int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if !e.Running(i) {
			return fmt.Errorf("etcd member %d exited (log: %s)", i, filepath.Join(e.dir, e.members[i].Name+".log"))
		}
		c, err := e.Client(i)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := c.Status(sctx, e.Clients[i])
			cancel()
			c.Close()
			if err == nil && st.Leader != 0 && st.RaftAppliedIndex >= st.RaftIndex {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd member %d not back within %v", i, limit)
}

// CatchUpResult is how fast a restarted follower caught up.
type CatchUpResult struct {
	Bytes        int64   `json:"bytes"`
	Entries      int     `json:"entries"`
	ValueBytes   int     `json:"value_bytes"`
	Seconds      float64 `json:"seconds"`
	MBPerSec     float64 `json:"mb_per_sec"`
	ReadySeconds float64 `json:"ready_seconds"` // process start to answering /v1/status
	WriteMBps    float64 `json:"write_mb_per_sec"`
}

// TriremeCatchUp starts a fresh cluster, stops one follower, writes about
// bytes of values (majority acks: leader and the other follower), then
// restarts the follower and times it from process start until it has
// applied everything. insecurePeers runs the nodes without peer TLS.
func TriremeCatchUp(ctx context.Context, binary, dir string, procs int, insecurePeers bool, bytes int64, valueBytes int, progress func(string)) (CatchUpResult, error) {
	t, err := StartTrireme(ctx, binary, dir, 3, procs, insecurePeers, nil)
	if err != nil {
		return CatchUpResult{}, err
	}
	defer t.Stop()
	cl := t.Cluster()
	leader, err := t.Leader(ctx)
	if err != nil {
		return CatchUpResult{}, err
	}
	var follower string
	for _, ns := range cl.Spec().Nodes {
		if ns.ID != leader.ID {
			follower = ns.ID
			break
		}
	}
	if err := cl.Stop(follower); err != nil {
		return CatchUpResult{}, err
	}
	n := int((bytes + int64(valueBytes) - 1) / int64(valueBytes))
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return CatchUpResult{}, err
	}
	progress(fmt.Sprintf("catch-up: writing %d MiB (%d values of %d B) while %s is down", bytes>>20, n, valueBytes, follower))
	w0 := time.Now()
	retries, err := Preload(ctx, v, n, valueBytes, 16, 30*time.Second)
	if err != nil {
		return CatchUpResult{}, err
	}
	if retries > 0 {
		progress(fmt.Sprintf("catch-up: NOTE: %d writes were retried (leader change under load?)", retries))
	}
	wsec := time.Since(w0).Seconds()
	_, lst, err := cl.Leader(ctx)
	if err != nil {
		return CatchUpResult{}, err
	}
	target := lst.CommitIndex
	t0 := time.Now()
	if err := cl.Start(follower); err != nil {
		return CatchUpResult{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := cl.WaitReady(wctx, follower); err != nil {
		return CatchUpResult{}, err
	}
	ready := time.Since(t0)
	for {
		st, err := cl.Status(wctx, follower)
		if err == nil && st.AppliedIndex >= target {
			break
		}
		select {
		case <-wctx.Done():
			return CatchUpResult{}, fmt.Errorf("catch-up: %s did not reach index %d: %w", follower, target, wctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	d := time.Since(t0)
	total := int64(n) * int64(valueBytes)
	r := CatchUpResult{Bytes: total, Entries: n, ValueBytes: valueBytes, Seconds: d.Seconds(),
		MBPerSec: float64(total) / 1e6 / d.Seconds(), ReadySeconds: ready.Seconds(),
		WriteMBps: float64(total) / 1e6 / wsec}
	progress(fmt.Sprintf("catch-up: %s applied %d entries in %v (%.1f MB/s)", follower, n, d.Round(time.Millisecond), r.MBPerSec))
	return r, nil
}

// DiskResult is the disk's speed measured in the run's temporary directory.
type DiskResult struct {
	SeqWriteMBps   float64 `json:"seq_write_mb_per_sec"` // 1 MiB writes, one fsync at the end
	SeqWriteBytes  int64   `json:"seq_write_bytes"`
	FsyncP50us     float64 `json:"fsync_4k_p50_us"` // 4 KiB append + fdatasync, one at a time
	FsyncP99us     float64 `json:"fsync_4k_p99_us"`
	FsyncPerSecond float64 `json:"fsyncs_per_sec"`
}

// MeasureDisk writes bytes sequentially and fsyncs once (the dd-like
// figure), then times 4 KiB append+fsync pairs (the group-commit bound).
func MeasureDisk(dir string, bytes int64, fsyncs int) (DiskResult, error) {
	r := DiskResult{SeqWriteBytes: bytes}
	p := filepath.Join(dir, "disk-test")
	defer os.Remove(p)
	f, err := os.Create(p)
	if err != nil {
		return r, err
	}
	buf := MakeValue(1<<20, 3)
	t0 := time.Now()
	for w := int64(0); w < bytes; w += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return r, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return r, err
	}
	r.SeqWriteMBps = float64(bytes) / 1e6 / time.Since(t0).Seconds()
	f.Close()
	os.Remove(p)
	f, err = os.Create(p)
	if err != nil {
		return r, err
	}
	defer f.Close()
	var h Hist
	t0 = time.Now()
	for range fsyncs {
		s := time.Now()
		if _, err := f.Write(buf[:4096]); err != nil {
			return r, err
		}
		if err := f.Sync(); err != nil {
			return r, err
		}
		h.Record(time.Since(s))
	}
	r.FsyncPerSecond = float64(fsyncs) / time.Since(t0).Seconds()
	r.FsyncP50us = float64(h.Quantile(0.5).Microseconds())
	r.FsyncP99us = float64(h.Quantile(0.99).Microseconds())
	return r, nil
}

// MemoryResult is the resident size of a process holding some values.
type MemoryResult struct {
	System     string  `json:"system"`
	Role       string  `json:"role"`
	Values     int     `json:"values"`
	ValueBytes int     `json:"value_bytes"`
	EmptyRSSMB float64 `json:"empty_rss_mb"`
	RSSMB      float64 `json:"rss_mb"`
	BytesPer   float64 `json:"bytes_per_value"` // (RSS - empty RSS) / values
}

// RSS reads VmRSS of process pid from /proc, in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) >= 1 {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TriremeMemory starts a fresh cluster, loads n values of valueBytes with
// distinct keys, waits until every node applied them, and reads every
// node's resident size. insecurePeers runs the nodes without peer TLS.
func TriremeMemory(ctx context.Context, binary, dir string, procs int, insecurePeers bool, n, valueBytes int, progress func(string)) ([]MemoryResult, error) {
	t, err := StartTrireme(ctx, binary, dir, 3, procs, insecurePeers, nil)
	if err != nil {
		return nil, err
	}
	defer t.Stop()
	cl := t.Cluster()
	empty := map[string]int64{}
	for _, ns := range cl.Spec().Nodes {
		pid, err := cl.Pid(ns.ID)
		if err != nil {
			return nil, err
		}
		if empty[ns.ID], err = RSS(pid); err != nil {
			return nil, err
		}
	}
	v, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("memory: loading %d values of %d B into trireme", n, valueBytes))
	retries, err := Preload(ctx, v, n, valueBytes, 64, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if retries > 0 {
		progress(fmt.Sprintf("memory: NOTE: %d writes were retried (leader change under load?)", retries))
	}
	leader, err := t.Leader(ctx)
	if err != nil {
		return nil, err
	}
	var out []MemoryResult
	for _, ns := range cl.Spec().Nodes {
		if err := waitTriremeCaughtUp(ctx, t, ns.ID, 60*time.Second); err != nil {
			return nil, err
		}
		pid, err := cl.Pid(ns.ID)
		if err != nil {
			return nil, err
		}
		rss, err := RSS(pid)
		if err != nil {
			return nil, err
		}
		role := "follower"
		if ns.ID == leader.ID {
			role = "leader"
		}
		out = append(out, MemoryResult{System: "trireme", Role: role + " " + ns.ID, Values: n, ValueBytes: valueBytes,
			EmptyRSSMB: float64(empty[ns.ID]) / (1 << 20), RSSMB: float64(rss) / (1 << 20),
			BytesPer: float64(rss-empty[ns.ID]) / float64(n)})
	}
	return out, nil
}

// RedisMemory loads n values into the primary of a fresh Redis and reads
// the primary's resident size, for comparison.
func RedisMemory(ctx context.Context, dir string, n, valueBytes int) ([]MemoryResult, error) {
	r, err := StartRedis(ctx, dir, 0)
	if err != nil {
		return nil, err
	}
	defer r.Stop()
	e0, err := RSS(r.Pid())
	if err != nil {
		return nil, err
	}
	if _, err := Preload(ctx, r.Variant("SET", 0), n, valueBytes, 64, 30*time.Second); err != nil {
		return nil, err
	}
	rss, err := RSS(r.Pid())
	if err != nil {
		return nil, err
	}
	return []MemoryResult{{System: "redis", Role: "primary (no replicas)", Values: n, ValueBytes: valueBytes,
		EmptyRSSMB: float64(e0) / (1 << 20), RSSMB: float64(rss) / (1 << 20), BytesPer: float64(rss-e0) / float64(n)}}, nil
}
