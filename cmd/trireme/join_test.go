package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

func TestJoinCluster(t *testing.T) {
	ctx := context.Background()
	f := apitest.NewFake("n2", "n3")
	mustWrites(t, f, 3)
	url := mustNode(t, f)
	// A voter asks to join: it is added as a learner all the same.
	n4 := api.MemberSpec{ID: "n4", Peer: "127.0.0.1:7004", HTTP: "127.0.0.1:8004", RESP: "127.0.0.1:9004", Role: api.RoleVoter}
	ms, err := joinCluster(ctx, url, n4, nil, "")
	if err != nil || len(ms) != 4 {
		t.Fatalf("joinCluster: %+v %v", ms, err)
	}
	if m := ms[3]; m.ID != "n4" || m.Role != api.RoleLearner || m.LagEntries != 3 || m.State != api.MemberProbe || m.RESP != "127.0.0.1:9004" {
		t.Fatalf("n4 after joining: %+v", m)
	}
	// Joining again (a restart) is not an error; with another address it is.
	if ms, err := joinCluster(ctx, strings.TrimPrefix(url, "http://"), n4, nil, ""); err != nil || len(ms) != 4 {
		t.Fatalf("joining again: %+v %v", ms, err)
	}
	moved := n4
	moved.Peer = "127.0.0.1:7104"
	if _, err := joinCluster(ctx, url, moved, nil, ""); !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "duplicate member") {
		t.Fatalf("joining with another peer address: %v", err)
	}

	// Another change in progress: the join retries until it ends, or
	// gives up with the context.
	f.SetChangeInProgress(true)
	n5 := api.MemberSpec{ID: "n5", Peer: "127.0.0.1:7005"}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	// The context may run out between two tries (the last answer: change
	// in progress) or during one (deadline exceeded); it must not succeed.
	if _, err := joinCluster(short, url, n5, nil, ""); !errors.Is(err, client.ErrChangeInProgress) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("joining during a change that never ends: %v", err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		f.SetChangeInProgress(false)
	}()
	if ms, err := joinCluster(ctx, url, n5, nil, ""); err != nil || len(ms) != 5 {
		t.Fatalf("joining once the other change ended: %+v %v", ms, err)
	}
	f.SetChangeInProgress(true)
	for _, tc := range []struct {
		url  string
		spec api.MemberSpec
	}{
		{"ftp://" + strings.TrimPrefix(url, "http://"), n5},
		{url + "/v1/members", n5},
		{"", n5},
		{url, api.MemberSpec{ID: "n 5", Peer: "127.0.0.1:7005"}},
		{url, api.MemberSpec{ID: "n5", Peer: "0.0.0.0:7005"}},
	} {
		if _, err := joinCluster(ctx, tc.url, tc.spec, nil, ""); err == nil {
			t.Errorf("joinCluster(%q, %+v) succeeded", tc.url, tc.spec)
		}
	}
}

func TestNodeJoinFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"node", "--id", "n4", "--data", dir, "--insecure-peers", "--http", "127.0.0.1:8004", "--resp", "127.0.0.1:9004"}
	// A member address where nobody listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	defer func(d time.Duration) { joinStatusRetry = d }(joinStatusRetry)
	joinStatusRetry = 300 * time.Millisecond
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"--cluster", "n4=127.0.0.1:7004", "--join", "http://" + closed}, "reading the cluster's status"},
		{[]string{"--cluster", "n4=127.0.0.1:7004", "--join", closed, "--learner"}, "reading the cluster's status"},
		{[]string{"--cluster", "n4=127.0.0.1:7004", "--learner"}, "--learner applies to --join only"},
		{[]string{"--peer", "127.0.0.1:7004"}, "--peer applies to --join only"},
		{[]string{"--peer", "127.0.0.1:7005", "--cluster", "n4=127.0.0.1:7004", "--join", closed}, "differs from this node's --cluster entry"},
		{[]string{"--peer", "127.0.0.1:7004", "--join", "http://" + closed}, "reading the cluster's status"},
		{[]string{"--cluster", "n4=127.0.0.1:7004", "--join", "ftp://h:1"}, `--join "ftp://h:1"`},
		{[]string{"--cluster", "n1=127.0.0.1:7001", "--join", "http://127.0.0.1:8001"}, "--peer HOST:PORT"},
		{[]string{"--cluster", "n4=0.0.0.0:7004", "--join", "http://127.0.0.1:8001"}, "listen-on-all"},
	} {
		code, _, errOut := runCLI(append(base, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.mention) {
			t.Errorf("%v: %d %q, want 2 mentioning %q", tc.args, code, errOut, tc.mention)
		}
	}
}

// TestPrepareJoin: --join adopts the cluster's id and member list, and
// refuses a member of another cluster than --cluster-id names.
func TestPrepareJoin(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	url := mustNode(t, f)
	logger := slog.New(slog.DiscardHandler)
	o := &nodeOpts{id: "n4", data: t.TempDir(), join: url, peer: "127.0.0.1:7004", httpAddr: "127.0.0.1:8004",
		respAddr: "127.0.0.1:9004", clusterID: "another-cluster"}
	if _, _, err := prepareJoin(context.Background(), o, logger); err == nil || !strings.Contains(err.Error(), apitest.FakeClusterID) {
		t.Fatalf("joining a member of another cluster: %v", err)
	}
	if ms, _ := f.Members(context.Background()); len(ms) != 3 {
		t.Fatalf("a refused join changed the members: %+v", ms)
	}
	o.clusterID = ""
	id, conf, err := prepareJoin(context.Background(), o, logger)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := conf.Member("n4")
	if id != apitest.FakeClusterID || !ok || !m.Learner || m.Peer != "127.0.0.1:7004" || len(conf.Members) != 4 {
		t.Fatalf("join: cluster %q, configuration %+v", id, conf)
	}
	if !strings.Contains(o.cluster, "n4=127.0.0.1:7004") || strings.Count(o.cluster, "=") != 4 {
		t.Fatalf("--cluster after the join: %q", o.cluster)
	}
}
