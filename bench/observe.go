package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
)

// What the parts of issue 16 (running for months) read from a running
// cluster besides its load figures: each node's WAL and store on disk, a
// node's metrics, the leader's member list over time, and stale reads over
// HTTP. Everything goes through the nodes' public interfaces or their data
// directories, never through internal state.

// nodeDataDir is node id's data directory.
func nodeDataDir(cl *cluster.Cluster, id string) (string, error) {
	n, err := cl.Node(id)
	if err != nil {
		return "", err
	}
	return cl.NodeDir(n), nil
}

// WALInfo is what a node's WAL directory holds.
type WALInfo struct {
	Segments   int    `json:"segments"`
	Bytes      int64  `json:"bytes"`
	FirstIndex uint64 `json:"first_index"` // of the oldest segment (its file name)
}

// walInfo lists the segment files (named by the index of their first entry,
// internal/wal) in node id's WAL directory.
func walInfo(cl *cluster.Cluster, id string) (WALInfo, error) {
	dir, err := nodeDataDir(cl, id)
	if err != nil {
		return WALInfo{}, err
	}
	return walInfoIn(filepath.Join(dir, "wal"))
}

// walInfoIn lists the segment files in the WAL directory dir.
func walInfoIn(dir string) (WALInfo, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return WALInfo{}, err
	}
	var w WALInfo
	for _, e := range es {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok || len(name) != 20 {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		if w.Segments == 0 || first < w.FirstIndex {
			w.FirstIndex = first
		}
		w.Segments++
		if fi, err := e.Info(); err == nil {
			w.Bytes += fi.Size()
		}
	}
	if w.Segments == 0 {
		return w, fmt.Errorf("no WAL segment in %s", dir)
	}
	return w, nil
}

// storeBytes is the size of the files under node id's store directory.
func storeBytes(cl *cluster.Cluster, id string) int64 {
	dir, err := nodeDataDir(cl, id)
	if err != nil {
		return 0
	}
	var n int64
	filepath.WalkDir(filepath.Join(dir, "store"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// waitCompacted waits until the WAL of every node in ids no longer holds
// entry index+1 (its oldest segment starts above it), so that a node whose
// log ends at index cannot catch up from theirs, or until limit passes, or
// until it cannot happen: a node still holds entry index+1 and has a
// single segment, the one it writes to, which is never dropped. It returns
// each node's WAL as last seen and whether all of them had compacted.
func waitCompacted(ctx context.Context, cl *cluster.Cluster, ids []string, index uint64, limit time.Duration) (map[string]WALInfo, bool) {
	deadline := time.Now().Add(limit)
	for {
		out := map[string]WALInfo{}
		all, never := true, false
		for _, id := range ids {
			w, err := walInfo(cl, id)
			out[id] = w
			if err != nil || w.FirstIndex <= index+1 {
				all = false
				never = never || (err == nil && w.Segments == 1)
			}
		}
		if all || never || time.Now().After(deadline) || ctx.Err() != nil {
			return out, all
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrapeMetrics returns the samples of the node at httpAddr whose metric
// name contains one of words (e.g. "snapshot"), by sample as written
// ("name{labels}" -> value).
func scrapeMetrics(ctx context.Context, httpAddr string, words ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics of %s: %s", httpAddr, resp.Status)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		l := s.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		name := l[:i]
		match := false
		for _, w := range words {
			match = match || strings.Contains(name, w)
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[name] = v
		}
	}
	return out, s.Err()
}

// staleGet reads key from the node at httpAddr with consistency=stale and
// reports whether it answered 200 with value.
func staleGet(ctx context.Context, hc *http.Client, httpAddr, key string, value []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/kv/"+key+"?consistency=stale&raw=1", nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK && string(b) == string(value), nil
}

// MemberState is a state the leader reported for a member, from when it
// was first seen (seconds from the watch's start) in a row of equal states.
type MemberState struct {
	State              string  `json:"state"`
	Role               string  `json:"role"`
	AtSeconds          float64 `json:"at_s"`
	MatchIndex         uint64  `json:"match_index"`
	SnapshotBytesSent  int64   `json:"snapshot_bytes_sent,omitempty"`
	SnapshotBytesTotal int64   `json:"snapshot_bytes_total,omitempty"`
}

// memberWatch polls the leader's GET /v1/members (through any voter) and
// records the states it reports for one member.
type memberWatch struct {
	id     string
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}

	mu                           sync.Mutex
	seen                         []MemberState // one per change of state or role
	polls, listed, snapshotPolls int
	maxSent, maxTotal            int64
	lastErr                      string
}

// watchMember starts polling every interval until stop.
func watchMember(ctx context.Context, cl *cluster.Cluster, id string, interval time.Duration) *memberWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &memberWatch{id: id, start: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			ms, err := cl.Client().Members(pctx)
			pcancel()
			w.mu.Lock()
			w.polls++
			if err != nil {
				w.lastErr = err.Error()
			}
			for _, m := range ms {
				if m.ID != id {
					continue
				}
				w.listed++
				st := MemberState{State: m.State, Role: m.Role, AtSeconds: time.Since(w.start).Seconds(), MatchIndex: m.MatchIndex,
					SnapshotBytesSent: m.SnapshotBytesSent, SnapshotBytesTotal: m.SnapshotBytesTotal}
				if n := len(w.seen); n == 0 || w.seen[n-1].State != st.State || w.seen[n-1].Role != st.Role {
					w.seen = append(w.seen, st)
				}
				if m.State == "snapshot" {
					w.snapshotPolls++
				}
				w.maxSent = max(w.maxSent, m.SnapshotBytesSent)
				w.maxTotal = max(w.maxTotal, m.SnapshotBytesTotal)
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}()
	return w
}

// MemberWatch is what a memberWatch saw.
type MemberWatch struct {
	Polls int `json:"polls"`
	// Listed is how many polls listed the member; SnapshotPolls how many
	// of those in state "snapshot".
	Listed        int           `json:"listed"`
	SnapshotPolls int           `json:"snapshot_polls"`
	States        []MemberState `json:"states"`
	// The largest snapshot_bytes_sent and snapshot_bytes_total seen.
	MaxSnapshotBytesSent  int64  `json:"max_snapshot_bytes_sent"`
	MaxSnapshotBytesTotal int64  `json:"max_snapshot_bytes_total"`
	LastError             string `json:"last_error,omitempty"`
}

// stop ends the polling and returns what it saw.
func (w *memberWatch) stop() MemberWatch {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return MemberWatch{Polls: w.polls, Listed: w.listed, SnapshotPolls: w.snapshotPolls, States: w.seen,
		MaxSnapshotBytesSent: w.maxSent, MaxSnapshotBytesTotal: w.maxTotal, LastError: w.lastErr}
}

// statesPath renders the states as "probe (0.0 s) > snapshot (0.2 s) > replicate (9.8 s)".
func (m MemberWatch) statesPath() string {
	if len(m.States) == 0 {
		return "never listed"
	}
	parts := make([]string, len(m.States))
	for i, s := range m.States {
		parts[i] = fmt.Sprintf("%s %s (%.1f s)", s.Role, s.State, s.AtSeconds)
	}
	return strings.Join(parts, " > ")
}

// loadAverage is /proc/loadavg's three figures, "" if unreadable.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], ", ")
}

// coresSince samples the CPU time of the running nodes ids now and returns
// a function that gives, for each, the CPU time used since divided by the
// time passed (cores). A node started after the sample counts from its
// start.
func coresSince(cl *cluster.Cluster, ids []string) func() map[string]float64 {
	t0 := time.Now()
	c0 := map[string]time.Duration{}
	for _, id := range ids {
		if pid, err := cl.Pid(id); err == nil {
			c0[id], _ = procCPU(pid)
		}
	}
	return func() map[string]float64 {
		secs := time.Since(t0).Seconds()
		out := map[string]float64{}
		for _, id := range ids {
			pid, err := cl.Pid(id)
			if err != nil {
				continue
			}
			if c, err := procCPU(pid); err == nil && secs > 0 {
				out[id] = (c - c0[id]).Seconds() / secs
			}
		}
		return out
	}
}

// snapshotSecs is how long the leader reported the member in state
// "snapshot": from the first poll that showed it to the first that showed
// another state after it (or the end of the watch, endSecs), 0 if never.
func (m MemberWatch) snapshotSecs(endSecs float64) float64 {
	for i, s := range m.States {
		if s.State != "snapshot" {
			continue
		}
		if i+1 < len(m.States) {
			return m.States[i+1].AtSeconds - s.AtSeconds
		}
		return endSecs - s.AtSeconds
	}
	return 0
}
