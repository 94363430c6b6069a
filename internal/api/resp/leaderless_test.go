package resp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// llInfo is a leaderless status for the tests.
var llInfo = api.LeaderlessInfo{ReplicationFactor: 3, SloppyQuorum: true,
	Ownership:    map[string]float64{"n2": 1, "n1": 1, "n3": 1},
	HintsPending: map[string]int{"n3": 4, "n2": 1}, HintsStored: 9, HintsDelivered: 4, HintsRefused: 1, ReadRepairs: 2,
	AEExchanges: 7, AEBucketsCompared: 640, AEBucketsDiffer: 3, AERepairs: 5, AEDiffering: map[string]int{"n3": -1, "n2": 0},
	TombstonesGC: 11, Down: []string{"n3"}}

// TestQuorumCommands: TRIREME.W and TRIREME.R set the connection's W, R and
// read repair, which every later write and read carries; without
// arguments they answer the setting.
func TestQuorumCommands(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	f.SetLeaderless(llInfo)
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)

	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.W"}, want: `"default"`},
		{args: []string{"TRIREME.R"}, want: `"default"`},
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"GET", "k"}, want: `"v"`},
	})
	if w, _ := f.LastWrite(); w.W != api.QuorumDefault {
		t.Fatalf("SET before TRIREME.W: W %v", w.W)
	}
	if o, _ := f.LastRead(); o.R != api.QuorumDefault || o.Repair {
		t.Fatalf("GET before TRIREME.R: %+v", o)
	}

	for _, tc := range []struct {
		w, r   []string
		wantW  api.Quorum
		wantR  api.Quorum
		repair bool
		show   [2]string
	}{
		{[]string{"2"}, []string{"one"}, 2, api.QuorumOne, false, [2]string{`"2"`, `"one"`}},
		{[]string{"ALL"}, []string{"Quorum", "BLOCKING"}, api.QuorumAll, api.QuorumMajority, true, [2]string{`"all"`, `"quorum blocking"`}},
		{[]string{"quorum"}, []string{"3", "background"}, api.QuorumMajority, 3, false, [2]string{`"quorum"`, `"3"`}},
		{[]string{"default"}, []string{"default", "blocking"}, api.QuorumDefault, api.QuorumDefault, true, [2]string{`"default"`, `"default blocking"`}},
	} {
		mustRendered(t, c, rd, []step{
			{args: append([]string{"TRIREME.W"}, tc.w...), want: "OK"},
			{args: append([]string{"TRIREME.R"}, tc.r...), want: "OK"},
			{args: []string{"TRIREME.W"}, want: tc.show[0]},
			{args: []string{"TRIREME.R"}, want: tc.show[1]},
		})
		// Every kind of write carries W; every kind of read R.
		for _, cmd := range [][]string{{"SET", "k", "v"}, {"INCR", "n"}, {"TRIREME.SETCTX", "k", "", "v"}, {"DEL", "k"}, {"MSET", "a", "1"}} {
			_, before := f.LastWrite()
			mustRendered(t, c, rd, []step{{args: cmd, want: "", prefix: true}})
			if w, n := f.LastWrite(); w.W != tc.wantW || n != before+1 {
				t.Fatalf("%q after TRIREME.W %q: W %v (%d writes), want %v (1 write)", cmd, tc.w, w.W, n-before, tc.wantW)
			}
		}
		for _, cmd := range [][]string{{"GET", "k"}, {"MGET", "k", "a"}, {"EXISTS", "k"}, {"STRLEN", "a"}, {"TRIREME.GETCTX", "a"}, {"DEL", "absent"}} {
			_, before := f.LastRead()
			mustRendered(t, c, rd, []step{{args: cmd, want: "", prefix: true}})
			if o, n := f.LastRead(); o.R != tc.wantR || o.Repair != tc.repair || n == before {
				t.Fatalf("%q after TRIREME.R %q: %+v (%d reads), want R %v repair %v", cmd, tc.r, o, n-before, tc.wantR, tc.repair)
			}
		}
	}

	// TRIREME.ACK and TRIREME.W leave each other alone.
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.W", "1"}, want: "OK"},
		{args: []string{"TRIREME.ACK", "sync"}, want: "OK"},
		{args: []string{"TRIREME.W"}, want: `"1"`},
		{args: []string{"SET", "k", "v"}, want: "OK"},
	})
	if w, _ := f.LastWrite(); w.W != 1 || w.Ack.Mode != api.AckSync || w.Default {
		t.Fatalf("after TRIREME.W 1 and TRIREME.ACK sync: %+v", w)
	}

	// Refusals leave the setting as it was.
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.W", "0"}, want: "-ERR TRIREME.W: invalid quorum '0' (want a number from 1, one, quorum, all or default)"},
		{args: []string{"TRIREME.W", "two"}, want: "-ERR TRIREME.W: invalid quorum 'two'", prefix: true},
		{args: []string{"TRIREME.W", ""}, want: "-ERR TRIREME.W: invalid quorum ''", prefix: true},
		{args: []string{"TRIREME.W", "-1"}, want: "-ERR TRIREME.W: invalid quorum", prefix: true},
		{args: []string{"TRIREME.W", "1", "2"}, want: wrongArgs("trireme.w")},
		{args: []string{"TRIREME.R", "majority"}, want: "-ERR TRIREME.R: invalid quorum 'majority'", prefix: true},
		{args: []string{"TRIREME.R", "one", "later"}, want: "-ERR TRIREME.R: unknown read repair 'later' (want blocking or background)"},
		{args: []string{"TRIREME.R", "one", "blocking", "x"}, want: wrongArgs("trireme.r")},
		{args: []string{"TRIREME.W"}, want: `"1"`},
		{args: []string{"TRIREME.R"}, want: `"default blocking"`},
	})

	// A quorum above N is refused at once (N from the node's status);
	// too few replicas up, by the node at the request.
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.W", "4"}, want: "-ERR TRIREME.W: " + api.ErrBadQuorum.Error() + ": 4, but each key has 3 replicas"},
		{args: []string{"TRIREME.R", "all"}, want: "OK"},
		{args: []string{"TRIREME.R", "9", "blocking"}, want: "-ERR TRIREME.R: " + api.ErrBadQuorum.Error(), prefix: true},
		{args: []string{"TRIREME.R"}, want: `"all"`},
		{args: []string{"TRIREME.W", "default"}, want: "OK"},
		{args: []string{"TRIREME.R", "default", "blocking"}, want: "OK"},
	})
	f.SetReplicasUp(1)
	mustRendered(t, c, rd, []step{
		{args: []string{"SET", "k", "v"}, want: "-TRYAGAIN " + api.ErrQuorumUnavailable.Error(), prefix: true},
		{args: []string{"GET", "k"}, want: "-TRYAGAIN " + api.ErrQuorumUnavailable.Error(), prefix: true},
		{args: []string{"TRIREME.W", "one"}, want: "OK"},
		{args: []string{"TRIREME.R", "one"}, want: "OK"},
		{args: []string{"SET", "k", "v1"}, want: "OK"},
		{args: []string{"GET", "k"}, want: `"v1"`},
	})

	// Both are in the command table.
	mustRendered(t, c, rd, []step{{args: []string{"COMMAND", "INFO", "trireme.w", "trireme.r"},
		want: `[["trireme.w" -1 [fast] 0 0 0] ["trireme.r" -1 [fast] 0 0 0]]`}})
}

// TestQuorumCommandsElsewhere: a node of another mode answers the settings
// (default) but refuses any other.
func TestQuorumCommandsElsewhere(t *testing.T) {
	f := apitest.NewFake("n2")
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.W"}, want: `"default"`},
		{args: []string{"TRIREME.W", "2"}, want: "-ERR TRIREME.W applies to leaderless nodes only: " + api.ErrNotSupported.Error() + " (this node is single-leader)"},
		{args: []string{"TRIREME.R", "one"}, want: "-ERR TRIREME.R applies to leaderless nodes only", prefix: true},
		{args: []string{"TRIREME.R", "default", "blocking"}, want: "-ERR TRIREME.R applies to leaderless nodes only", prefix: true},
		{args: []string{"TRIREME.W", "default"}, want: "OK"},
		{args: []string{"TRIREME.R", "default", "background"}, want: "OK"},
		{args: []string{"TRIREME.W", "zero"}, want: "-ERR TRIREME.W: invalid quorum", prefix: true},
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"GET", "k"}, want: `"v"`},
	})
	if w, _ := f.LastWrite(); w.W != api.QuorumDefault {
		t.Fatalf("W %v", w.W)
	}
	if o, _ := f.LastRead(); o.R != api.QuorumDefault || o.Repair {
		t.Fatalf("read %+v", o)
	}
}

// TestQuorumCommandsNeedRoles: TRIREME.W needs role write (it sets how
// writes are acknowledged, as TRIREME.ACK), TRIREME.R role read.
func TestQuorumCommandsNeedRoles(t *testing.T) {
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth = a
	f := apitest.NewFake("n2")
	f.SetLeaderless(llInfo)
	_, addr := mustServeConfig(t, f, cfg)
	for _, tc := range []struct {
		user, pass string
		w, r       string
	}{
		{"", "", "-" + errNoAuth, "-" + errNoAuth},
		{"reader", "reader pass", noperm("trireme.w"), "OK"},
		{"writer", "writer pass", "OK", "OK"},
	} {
		c, rd := mustDial(t, addr)
		if tc.user != "" {
			mustRendered(t, c, rd, []step{{args: []string{"AUTH", tc.user, tc.pass}, want: "OK"}})
		}
		mustRendered(t, c, rd, []step{
			{args: []string{"TRIREME.W", "one"}, want: tc.w},
			{args: []string{"TRIREME.R", "one"}, want: tc.r},
		})
	}
}

// timeoutFake answers every SET as a leaderless write that met one replica
// of its W in time.
type timeoutFake struct{ *apitest.Fake }

func (f timeoutFake) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	res, err := f.Fake.Put(ctx, key, value, w)
	if err != nil {
		return res, err
	}
	res.Replicas = 1
	return res, fmt.Errorf("%w: 1 of W=2", api.ErrWriteTimeout)
}

func TestLeaderlessWriteTimeout(t *testing.T) {
	f := apitest.NewFake()
	f.SetLeaderless(llInfo)
	_, addr := mustServeConfig(t, timeoutFake{f}, DefaultConfig())
	c, rd := mustDial(t, addr)
	mustRendered(t, c, rd, []step{{args: []string{"SET", "k", "v"},
		want: "-TIMEOUT ack mode not met in time; the outcome is not final; reached: durable on 1 replica(s) of the key"}})
}

// TestLeaderlessInfoAndRole: INFO replication and ROLE describe a leaderless
// node as a master with no replicas, with the ring, hints and repairs.
func TestLeaderlessInfoAndRole(t *testing.T) {
	f := apitest.NewFake("n2")
	f.SetLeaderless(llInfo)
	_, addr := mustServeConfig(t, f, DefaultConfig())
	rdb := mustClient(t, addr)
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"role:master", "connected_slaves:0", "master_repl_offset:1", "trireme_mode:leaderless",
		"trireme_replication_factor:3", "trireme_sloppy_quorum:1", "trireme_ring_members:3",
		"trireme_ring0:id=n1,share=1.0000", "trireme_ring1:id=n2,share=1.0000", "trireme_ring2:id=n3,share=1.0000",
		"trireme_hints_pending:5", "trireme_hints0:for=n2,pending=1", "trireme_hints1:for=n3,pending=4",
		"trireme_hints_stored:9", "trireme_hints_delivered:4", "trireme_hints_refused:1", "trireme_read_repairs:2",
		"trireme_ae_exchanges:7", "trireme_ae_buckets_compared:640", "trireme_ae_buckets_differ:3", "trireme_ae_repairs:5",
		"trireme_ae_peer0:id=n2,differing=0", "trireme_ae_peer1:id=n3,differing=-1",
		"trireme_tombstones_collected:11", "trireme_down:n3", "trireme_role:leaderless"}
	for _, w := range want {
		if !strings.Contains(info, w+"\r\n") {
			t.Fatalf("INFO replication lacks %q:\n%s", w, info)
		}
	}
	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) != 3 || role[0] != "master" || role[1] != int64(1) || len(role[2].([]any)) != 0 {
		t.Fatalf("ROLE: %v %v", role, err)
	}
	hello, err := rdb.Do(ctx, "HELLO", "2").Slice()
	if err != nil || len(hello) != 14 || hello[11] != "master" {
		t.Fatalf("HELLO: %v %v", hello, err)
	}

	// A leaderless status without its info (a node still starting).
	st := f.Status()
	st.Leaderless = nil
	_, addr = mustServeConfig(t, mlService{f, st}, DefaultConfig())
	info, err = mustClient(t, addr).Info(ctx, "replication").Result()
	if err != nil || !strings.Contains(info, "trireme_mode:leaderless\r\n") || strings.Contains(info, "trireme_ring") {
		t.Fatalf("INFO replication without leaderless info: %v\n%s", err, info)
	}
}
