package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// statuses decodes /v1/status replies as a multi-leader node writes them.
func statuses(t *testing.T, replies ...string) map[string]nodeStatus {
	t.Helper()
	out := map[string]nodeStatus{}
	for _, r := range replies {
		var st nodeStatus
		if err := json.Unmarshal([]byte(r), &st); err != nil {
			t.Fatal(err)
		}
		out[st.ID] = st
	}
	return out
}

func mlReply(id string, last uint64, applied map[string]uint64) string {
	var streams []string
	for _, peer := range []string{"n1", "n2", "n3"} {
		if a, ok := applied[peer]; ok {
			streams = append(streams, fmt.Sprintf(`{"peer":%q,"peer_acked":0,"applied":%d,"known":%d,"lag_entries":0,"lag_ms":0,"last_contact_ms":3,"clock_offset_ms":0.1}`, peer, a, a))
		}
	}
	return fmt.Sprintf(`{"id":%q,"cluster_id":"c","role":"multi-leader","term":0,"leader":"","last_index":%d,"commit_index":%d,"applied_index":%d,"lag_ms":0,"mode":"multi-leader","streams":[%s],"conflicts":7}`,
		id, last, last, last, strings.Join(streams, ","))
}

func TestMLConverged(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	tests := []struct {
		name    string
		replies []string
		want    bool
		why     string
	}{
		{"caught up", []string{
			mlReply("n1", 10, map[string]uint64{"n2": 20, "n3": 0}),
			mlReply("n2", 20, map[string]uint64{"n1": 10, "n3": 0}),
			mlReply("n3", 0, map[string]uint64{"n1": 10, "n2": 20}),
		}, true, ""},
		{"one stream behind", []string{
			mlReply("n1", 10, map[string]uint64{"n2": 20, "n3": 5}),
			mlReply("n2", 20, map[string]uint64{"n1": 10, "n3": 5}),
			mlReply("n3", 6, map[string]uint64{"n1": 10, "n2": 20}),
		}, false, "n1 applied 5 of n3's 6 entries"},
		// A status polled after a peer's (its applied beyond the
		// peer's last_index as that one reported it) is caught up.
		{"applied past a stale last_index", []string{
			mlReply("n1", 10, map[string]uint64{"n2": 21, "n3": 3}),
			mlReply("n2", 20, map[string]uint64{"n1": 10, "n3": 3}),
			mlReply("n3", 3, map[string]uint64{"n1": 10, "n2": 20}),
		}, true, ""},
		{"a node not answering", []string{
			mlReply("n1", 0, map[string]uint64{"n2": 0, "n3": 0}),
			mlReply("n3", 0, map[string]uint64{"n1": 0, "n2": 0}),
		}, false, "no status from n2"},
		{"a stream missing", []string{
			mlReply("n1", 0, map[string]uint64{"n2": 0, "n3": 0}),
			mlReply("n2", 0, map[string]uint64{"n1": 0}),
			mlReply("n3", 0, map[string]uint64{"n1": 0, "n2": 0}),
		}, false, "n2 lists no stream of n3"},
		{"a single-leader status", []string{
			`{"id":"n1","role":"leader","last_index":5,"applied_index":5}`,
			`{"id":"n2","role":"follower","last_index":5,"applied_index":5}`,
			`{"id":"n3","role":"follower","last_index":5,"applied_index":5}`,
		}, false, "n1 lists no stream of n2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := mlConverged(ids, statuses(t, tc.replies...))
			if ok != tc.want || why != tc.why {
				t.Errorf("mlConverged = %v, %q; want %v, %q", ok, why, tc.want, tc.why)
			}
		})
	}
}

func TestMLBacklog(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	// n3 was cut off: it has 40 entries the others lack, and lacks 100 of
	// n1's and 90 of n2's; n1 and n2 are 2 behind each other.
	sts := statuses(t,
		mlReply("n1", 300, map[string]uint64{"n2": 298, "n3": 10}),
		mlReply("n2", 300, map[string]uint64{"n1": 298, "n3": 10}),
		mlReply("n3", 50, map[string]uint64{"n1": 200, "n2": 210}),
	)
	total, worst := mlBacklog(ids, sts)
	if total != 2+40+2+40+100+90 || worst != 100 {
		t.Errorf("mlBacklog = %d, %d; want 274, 100", total, worst)
	}
	delete(sts, "n3")
	if total, worst := mlBacklog(ids, sts); total != 4 || worst != 2 {
		t.Errorf("without n3's status: %d, %d; want 4, 2", total, worst)
	}
}

func TestSLCaughtUp(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	st := func(id, role string, last, applied uint64) string {
		return fmt.Sprintf(`{"id":%q,"role":%q,"last_index":%d,"applied_index":%d}`, id, role, last, applied)
	}
	if ok, why := slCaughtUp(ids, statuses(t, st("n1", "follower", 9, 9), st("n2", "leader", 9, 9), st("n3", "follower", 9, 9))); !ok {
		t.Errorf("caught up: %q", why)
	}
	if ok, why := slCaughtUp(ids, statuses(t, st("n1", "follower", 9, 7), st("n2", "leader", 9, 9), st("n3", "follower", 9, 9))); ok || why != "n1 applied 7 of the leader's 9" {
		t.Errorf("behind: %v %q", ok, why)
	}
	if ok, why := slCaughtUp(ids, statuses(t, st("n1", "follower", 9, 9), st("n2", "follower", 9, 9), st("n3", "candidate", 9, 9))); ok || why != "no leader" {
		t.Errorf("no leader: %v %q", ok, why)
	}
	if ok, _ := slCaughtUp(ids, statuses(t, st("n1", "leader", 9, 9), st("n2", "follower", 9, 9))); ok {
		t.Error("caught up without n3's status")
	}
}

func TestUniqueValueAndSlots(t *testing.T) {
	if v := string(uniqueValue("n1/w3", 42, 20)); v != "n1/w3/42/..........." || len(v) != 20 {
		t.Errorf("uniqueValue = %q (%d B)", v, len(v))
	}
	if v := string(uniqueValue("n2/paced", 12345, 4)); v != "n2/paced/12345/" {
		t.Errorf("uniqueValue shorter than its prefix = %q", v)
	}
	start := time.Unix(100, 0)
	if d := pacedSlot(start, 500, 500).Sub(start); d != time.Second {
		t.Errorf("slot 500 at 500/s: %v", d)
	}
	if d := pacedSlot(start, 1, 3).Sub(start); d != 333333333*time.Nanosecond {
		t.Errorf("slot 1 at 3/s: %v", d)
	}
}

func TestConflictIdentityAndKeyStates(t *testing.T) {
	if conflictIdentity("hot001", []string{"n2:7", "n1:5"}) != conflictIdentity("hot001", []string{"n1:5", "n2:7"}) {
		t.Error("conflictIdentity depends on the versions' order")
	}
	if conflictIdentity("hot001", []string{"n1:5"}) == conflictIdentity("hot002", []string{"n1:5"}) {
		t.Error("conflictIdentity ignores the key")
	}
	one, err := keyState([]byte(`{"key":"hot001","value":"n1/w0/3/..","index":3,"context":"abc"}`))
	if err != nil || one != "value :n1/w0/3/.." {
		t.Errorf("keyState = %q, %v", one, err)
	}
	sibA, _ := keyState([]byte(`{"value":"b","siblings":[{"value":"b","dot":"n2:1"},{"value":"a","dot":"n1:1"}]}`))
	sibB, _ := keyState([]byte(`{"value":"a","siblings":[{"value":"a","dot":"n1:1"},{"value":"b","dot":"n2:1"}]}`))
	if sibA != sibB || !strings.HasPrefix(sibA, "siblings ") {
		t.Errorf("siblings in another order read differently: %q vs %q", sibA, sibB)
	}
	if _, err := keyState([]byte("not json")); err == nil {
		t.Error("keyState of a raw body: no error")
	}
	states := map[string]map[string]string{
		"n1": {"hot000": "value :x", "hot001": "value :y", "hot002": sibA},
		"n2": {"hot000": "value :x", "hot001": "value :z", "hot002": sibB},
		"n3": {"hot000": "value :x", "hot001": "value :y", "hot002": sibA},
	}
	checked, differing, siblings, first := compareKeyStates(states, "")
	if checked != 3 || differing != 1 || siblings != 1 || !strings.HasPrefix(first, "hot001: n1: value :y; n2: value :z; n3: value :y") {
		t.Errorf("compareKeyStates = %d, %d, %d, %q", checked, differing, siblings, first)
	}
	delete(states["n3"], "hot000")
	if _, differing, _, first := compareKeyStates(states, "kept"); differing != 2 || first != "kept" {
		t.Errorf("a key missing on one node: %d differing, first %q", differing, first)
	}
}

// TestReadConflicts pages a fake node's conflict log: every page, the
// hot keys, the distinct conflicts over two nodes that recorded some of
// the same ones.
func TestReadConflicts(t *testing.T) {
	type rec struct {
		Seq      uint64              `json:"seq"`
		Key      string              `json:"key"`
		Versions []map[string]string `json:"versions"`
	}
	logOf := func(node string, n int, shared int) []rec {
		var out []rec
		for i := 1; i <= n; i++ {
			key, dots := fmt.Sprintf("hot%03d", i%100), []map[string]string{{"dot": fmt.Sprintf("%s:%d", node, i)}, {"dot": fmt.Sprintf("x:%d", i)}}
			if i <= shared { // the same conflict as the other node's record i, versions in the other order
				dots = []map[string]string{{"dot": fmt.Sprintf("x:%d", i)}, {"dot": fmt.Sprintf("y:%d", i)}}
				if node == "n2" {
					dots[0], dots[1] = dots[1], dots[0]
				}
			}
			if i%10 == 0 {
				key = fmt.Sprintf("k%07d", i)
			}
			out = append(out, rec{Seq: uint64(i), Key: key, Versions: dots})
		}
		return out
	}
	var pages int
	serve := func(log []rec) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pages++
			after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
			limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
			page := []rec{}
			next := after
			for _, c := range log {
				if c.Seq > after && len(page) < limit {
					page = append(page, c)
					next = c.Seq
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"conflicts": page, "dropped": 3, "next": next})
		}))
	}
	s1, s2 := serve(logOf("n1", 2500, 300)), serve(logOf("n2", 1000, 300))
	defer s1.Close()
	defer s2.Close()
	distinct := map[string]bool{}
	ctx := context.Background()
	logged, hot, dropped, complete, err := readConflicts(ctx, http.DefaultClient, strings.TrimPrefix(s1.URL, "http://"), 500, distinct)
	if err != nil || logged != 2000 || hot != 1800 || dropped != 3 || !complete || pages != 3 {
		t.Errorf("n1 after 500: logged %d, hot %d, dropped %d, complete %v, err %v, %d pages; want 2000, 1800, 3, true, nil, 3",
			logged, hot, dropped, complete, err, pages)
	}
	pages = 0
	logged, _, _, complete, err = readConflicts(ctx, http.DefaultClient, strings.TrimPrefix(s2.URL, "http://"), 0, distinct)
	if err != nil || logged != 1000 || !complete || pages != 2 {
		t.Errorf("n2: logged %d, complete %v, err %v, %d pages (a full page, then an empty one)", logged, complete, err, pages)
	}
	// n1's 2000 after seq 500 and n2's 1000, of which n2's first 300 are
	// the same as n1's first 300, which n1's read skipped: all distinct.
	if len(distinct) != 3000 {
		t.Errorf("distinct %d, want 3000", len(distinct))
	}
	distinct = map[string]bool{}
	readConflicts(ctx, http.DefaultClient, strings.TrimPrefix(s1.URL, "http://"), 0, distinct)
	readConflicts(ctx, http.DefaultClient, strings.TrimPrefix(s2.URL, "http://"), 0, distinct)
	if len(distinct) != 2500+1000-300 {
		t.Errorf("distinct over both logs from the start: %d, want %d", len(distinct), 2500+1000-300)
	}
}

func TestWriteMultiLeader(t *testing.T) {
	run := func(system, variant string, round int, ops float64) LoadResult {
		return LoadResult{System: system, Variant: variant, Workload: "write", Round: round, OpsPerSec: ops, P50us: 500, P99us: 3000, P999us: 6000}
	}
	runs := []LoadResult{run(MLSystem, SideMLLocal, 1, 3000), run(SLSystem, SideSLAsync, 1, 2000), run(SLSystem, SideSLAsync, 2, 2500), run(MLSystem, SideMLLocal, 2, 2500)}
	x := &MultiLeaderResult{ValueBytes: 100, Keys: 1000, Clients: 64, Rounds: 2, Warmup: 0.5, Duration: 3, Conflicts: "lww", PeerTLS: true, Runs: runs,
		Comparison: compare("c", runs, []string{MLSystem + " " + SideMLLocal, SLSystem + " " + SideSLAsync}),
		Drains:     []MLDrain{{Round: 1, Side: MLSystem + " " + SideMLLocal, Ms: 12, CaughtUp: true}, {Round: 1, Side: SLSystem + " " + SideSLAsync, Lag: "n2 applied 3 of the leader's 9"}},
		Contended: &MLContended{HotKeys: 100, Clients: 64, Seconds: 3.5, Acked: 9000, Distinct: 700, DistinctPerSec: 200, LogComplete: true, Converged: true,
			ConvergeMs: 40, KeysChecked: 100, Nodes: []MLNodeConflicts{{ID: "n1", Metric: 400, PerSec: 114, Logged: 400, HotLogged: 400}}},
		Convergence: &MLConvergence{Rate: 500, PartitionS: 10, LeadInS: 1, PollMs: 15, LimitS: 60, MedianMs: 230, Converged: 1,
			Reps: []MLPartitionRep{{Rep: 1, Isolated: "n1", PartitionS: 10.02, Acked: 5500, AckedByNode: map[string]uint64{"n1": 1833, "n2": 1834, "n3": 1833},
				Converged: true, ConvergeMs: 230, Polls: 9, Backlog: 7300, MaxStream: 1834}, {Rep: 2, Isolated: "n2", Lag: "n1 applied 3 of n2's 9 entries"}}},
	}
	var b strings.Builder
	writeMultiLeader(&b, &Results{MultiLeader: x})
	md := b.String()
	for _, s := range []string{"## Multi-leader mode", "### Writes: ack=local on every node vs single-leader async", "**median 1.25x**",
		"| 1 | single-leader SET ack=async, leader | 0 | no: n2 applied 3 of the leader's 9 |",
		"### Conflicts under contention", "Distinct conflicts: **700**, **200/s**.", "Converged: **yes**",
		"| n1 | 400 | 114 | 400 | 400 | 0 |",
		"### Convergence after a partition heals", "**500 writes/s**", "**230 ms** (1 of 2 reps)",
		"| 1 | n1 | 10.0 | 5500 (n1 1833, n2 1834, n3 1833) |", "not converged: n1 applied 3 of n2's 9 entries"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
}

// fakeRESP is a minimal RESP2 server that answers +OK to every command
// but HELLO, and records the commands it got.
type fakeRESP struct {
	ln   net.Listener
	mu   sync.Mutex
	cmds [][]string
	wg   sync.WaitGroup
}

func newFakeRESP(t *testing.T) *fakeRESP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRESP{ln: ln}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.serve(c) })
		}
	})
	return f
}

func (f *fakeRESP) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		return strings.TrimSuffix(s, "\r\n"), err
	}
	for {
		h, err := line()
		if err != nil || !strings.HasPrefix(h, "*") {
			return
		}
		n, _ := strconv.Atoi(h[1:])
		var cmd []string
		for range n {
			l, err := line()
			if err != nil {
				return
			}
			size, _ := strconv.Atoi(strings.TrimPrefix(l, "$"))
			b := make([]byte, size+2)
			if _, err := io.ReadFull(r, b); err != nil {
				return
			}
			cmd = append(cmd, string(b[:size]))
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, cmd)
		f.mu.Unlock()
		reply := "+OK\r\n"
		if strings.EqualFold(cmd[0], "HELLO") {
			reply = "-ERR unknown command 'HELLO'\r\n" // as an old Redis: go-redis goes on without it
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
	}
}

func (f *fakeRESP) close() { f.ln.Close() }

// TestPacedWrite runs the paced writer against three fake nodes for half
// a second at 200 writes/s: every slot is written, round-robin, with ack
// local on every connection, unique values, and the writer returns once
// stopped.
func TestPacedWrite(t *testing.T) {
	var nodes []mlNode
	var fakes []*fakeRESP
	for i := range 3 {
		f := newFakeRESP(t)
		defer f.close()
		fakes = append(fakes, f)
		nodes = append(nodes, mlNode{ID: fmt.Sprintf("n%d", i+1), RESP: f.ln.Addr().String()})
	}
	stop := make(chan struct{})
	time.AfterFunc(500*time.Millisecond, func() { close(stop) })
	res := pacedWrite(context.Background(), nodes, 200, 30, 1, stop)
	if res.Slots < 80 || res.Slots > 120 || res.Acked != res.Slots || res.Errors != 0 || res.Missed != 0 {
		t.Fatalf("paced writer: %+v; want about 100 slots, all acknowledged", res)
	}
	values := map[string]bool{}
	for i, f := range fakes {
		f.mu.Lock()
		sets, acks := 0, 0
		for _, c := range f.cmds {
			switch strings.ToUpper(c[0]) {
			case "TRIREME.ACK":
				if len(c) != 2 || c[1] != "local" {
					t.Errorf("node %d: %v", i, c)
				}
				acks++
			case "SET":
				sets++
				if len(c[2]) != 30 || !strings.HasPrefix(c[2], nodes[i].ID+"/paced/") || values[c[2]] {
					t.Errorf("node %d: value %q: want 30 B, unique, from the node's writer", i, c[2])
				}
				values[c[2]] = true
			}
		}
		f.mu.Unlock()
		if uint64(sets) != res.AckedByNode[nodes[i].ID] || sets < int(res.Slots)/3 || sets > int(res.Slots)/3+1 || acks == 0 {
			t.Errorf("node %d: %d SETs (%d counted), %d TRIREME.ACK; want a third of %d slots, ack set on connect", i, sets, res.AckedByNode[nodes[i].ID], acks, res.Slots)
		}
	}
}
