package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
	"github.com/trireme-db/trireme/internal/cluster"
	cmdpkg "github.com/trireme-db/trireme/internal/command"
)

func TestPutGetSession(t *testing.T) {
	f := apitest.NewFake("n2")
	url := mustNode(t, f)

	code, out, errOut := runCLI("put", "k", "v1", "-v", "--endpoints", url)
	if code != 0 || !strings.HasPrefix(out, "OK index=1 ") || errOut != "session=1.1.1\n" {
		t.Fatalf("put -v: %d %q %q", code, out, errOut)
	}
	// Without -v, no token.
	if code, _, errOut = runCLI("put", "other", "x", "--endpoints", url); code != 0 || errOut != "" {
		t.Fatalf("put: %d %q", code, errOut)
	}
	for _, args := range [][]string{
		{"get", "k", "--session", "1.1.1"},
		{"get", "k", "--consistency", "session", "--session", "1.1.1"},
		{"get", "k", "--consistency", "session"},
		{"get", "k", "-v"},
	} {
		code, out, errOut = runCLI(append(args, "--endpoints", url)...)
		if code != 0 || out != "v1\n" || errOut != "session=1.1.2\n" {
			t.Fatalf("%q: %d %q %q, want v1 and session=1.1.2", args, code, out, errOut)
		}
	}
	code, out, errOut = runCLI("get", "k", "--max-lag", "100ms", "--endpoints", url)
	if code != 0 || out != "v1\n" || !strings.Contains(errOut, "lag 0 entries") {
		t.Fatalf("get --max-lag: %d %q %q", code, out, errOut)
	}
	// A missing key: the session has read its absence.
	code, _, errOut = runCLI("get", "absent", "--session", "1.1.1", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "key not found") || !strings.Contains(errOut, "session=1.1.2\n") {
		t.Fatalf("get absent --session: %d %q", code, errOut)
	}
	code, _, errOut = runCLI("get", "k", "--session", "1.banana", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "malformed session token") {
		t.Fatalf("get with a bad token: %d %q", code, errOut)
	}
}

func TestGetFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"get", "k", "--consistency", "stale", "--session", "1.1.1"}, "--session applies to --consistency session only"},
		{[]string{"get", "k", "--consistency", "bounded"}, "needs --max-lag"},
		{[]string{"get", "k", "--consistency", "session", "--max-lag", "1s"}, "apply to --consistency bounded only"},
		{[]string{"get", "k", "--session", "1.1.1", "--max-lag-entries", "3"}, "exclude each other"},
		{[]string{"get", "k", "--consistency", "eventual"}, "want linearizable, stale, session, bounded or local"},
		{[]string{"get", "k", "--node", "n2"}, "--node applies to"},
		{[]string{"put", "k", "v", "--if-index", "x"}, "if-index"},
		{[]string{"del", "k", "--if-index", "-1"}, "if-index"},
	} {
		code, _, errOut := runCLI(append(tc.args, "--endpoints", "127.0.0.1:1")...)
		if code != 2 || !strings.Contains(errOut, tc.mention) {
			t.Errorf("%q: %d %q, want exit 2 mentioning %q", tc.args, code, errOut, tc.mention)
		}
	}
}

func TestPutDelIfIndex(t *testing.T) {
	f := apitest.NewFake("n2")
	url := mustNode(t, f)
	if code, out, errOut := runCLI("put", "k", "v1", "--if-index", "0", "--endpoints", url); code != 0 {
		t.Fatalf("put --if-index 0: %d %q %q", code, out, errOut)
	}
	code, _, errOut := runCLI("put", "k", "v2", "--if-index", "0", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "the key is at index 1") {
		t.Fatalf("put --if-index 0 of an existing key: %d %q", code, errOut)
	}
	if code, out, errOut := runCLI("put", "k", "v2", "--if-index", "1", "--endpoints", url); code != 0 || !strings.HasPrefix(out, "OK index=3") {
		t.Fatalf("put --if-index 1: %d %q %q", code, out, errOut)
	}
	if v, _ := f.Value("k"); string(v) != "v2" {
		t.Fatalf("k = %q", v)
	}
	code, _, errOut = runCLI("del", "k", "--if-index", "1", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "the key is at index 3") {
		t.Fatalf("del --if-index 1: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("del", "k", "--if-index", "3", "--endpoints", url); code != 0 {
		t.Fatalf("del --if-index 3: %d %q", code, errOut)
	}
	if _, ok := f.Value("k"); ok {
		t.Fatal("k survived its delete")
	}
}

// mlFake is a multi-leader node over an apitest.Fake (as the client
// package's tests fake one): its status says "multi-leader" with peer
// streams, its writes have no term and durability "local", every read is
// local, and it refuses what a multi-leader node refuses (session and
// bounded reads, conditional writes, an idempotency key on an increment).
type mlFake struct {
	*apitest.Fake
	id string

	mu      sync.Mutex
	streams []api.StreamInfo
	clamps  uint64
	members []api.MemberStatus
}

func (f *mlFake) Status() api.NodeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	recs, _, _ := f.Fake.Conflicts(context.Background(), 0, 1<<20)
	last := f.Fake.Status().LastIndex
	return api.NodeStatus{ID: f.id, ClusterID: apitest.FakeClusterID, Role: "multi-leader", Mode: modeMultiLeader,
		LastIndex: last, CommitIndex: last, AppliedIndex: last,
		Streams: slices.Clone(f.streams), Conflicts: uint64(len(recs)), ClockClamps: f.clamps}
}

func (f *mlFake) setStreams(clamps uint64, streams ...api.StreamInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams, f.clamps = streams, clamps
}

func mlResult(res api.WriteResult, err error) (api.WriteResult, error) {
	res.Term, res.Committed, res.LeaderDurable, res.Durability = 0, false, true, "local"
	return res, err
}

func checkCausal(o api.WriteOptions) error {
	if o.Context == "bad" {
		return fmt.Errorf("%w: not from this cluster", api.ErrBadContext)
	}
	return nil
}

func (f *mlFake) Put(ctx context.Context, key, value []byte, o api.WriteOptions) (api.WriteResult, error) {
	if err := checkCausal(o); err != nil {
		return api.WriteResult{}, err
	}
	return mlResult(f.Fake.Put(ctx, key, value, o))
}

func (f *mlFake) Delete(ctx context.Context, key []byte, o api.WriteOptions) (api.WriteResult, error) {
	if err := checkCausal(o); err != nil {
		return api.WriteResult{}, err
	}
	return mlResult(f.Fake.Delete(ctx, key, o))
}

func (f *mlFake) Exec(ctx context.Context, cmd *cmdpkg.Command, o api.WriteOptions) (api.WriteResult, error) {
	switch {
	case cmd.Cond != cmdpkg.CondNone:
		return api.WriteResult{}, fmt.Errorf("%w: conditional writes need a single leader (--mode single-leader)", api.ErrNotSupported)
	case cmd.Op == cmdpkg.OpIncr && len(cmd.IdemKey) > 0:
		return api.WriteResult{}, fmt.Errorf("%w: exactly-once increments need a single leader; retry without an idempotency key", api.ErrNotSupported)
	}
	if err := checkCausal(o); err != nil {
		return api.WriteResult{}, err
	}
	return mlResult(f.Fake.Exec(ctx, cmd, o))
}

func (f *mlFake) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if o.Consistency == api.Session || o.Consistency == api.Bounded {
		return api.ReadResult{}, fmt.Errorf("%w: %s reads need a single leader; multi-leader reads are local", api.ErrNotSupported, o.Consistency)
	}
	r, err := f.Fake.Get(ctx, key, api.Stale)
	r.Token = api.Token{}
	return r, err
}

func (f *mlFake) Get(ctx context.Context, key []byte, c api.Consistency) (api.ReadResult, error) {
	return f.Read(ctx, key, api.ReadOptions{Consistency: c})
}

func (f *mlFake) Members(context.Context) ([]api.MemberStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members), nil
}

// mustMLCluster serves multi-leader fakes with the given ids and saves
// their layout, as trireme up --mode multi-leader would, in a new data
// directory. The ids in down are in the layout, on ports where nothing
// listens. Every node lists them all as members.
func mustMLCluster(t *testing.T, ids []string, down ...string) (string, map[string]*mlFake, map[string]string) {
	t.Helper()
	fakes, urls := map[string]*mlFake{}, map[string]string{}
	var spec cluster.Spec
	var members []api.MemberStatus
	for i, id := range ids {
		n := testNode(id, 17201+10*i, "")
		if !slices.Contains(down, id) {
			f := &mlFake{Fake: apitest.NewFakeID(id), id: id}
			fakes[id], urls[id] = f, mustService(t, f)
			n = testNode(id, 17201+10*i, hostPort(urls[id]))
		}
		spec.Nodes = append(spec.Nodes, n)
		members = append(members, api.MemberStatus{MemberSpec: api.MemberSpec{ID: id, Peer: n.Peer, HTTP: n.HTTP, RESP: n.RESP,
			Role: api.RoleVoter}, State: api.MemberUnknown})
	}
	for _, f := range fakes {
		f.members = members
	}
	spec.Mode = modeMultiLeader
	dir := t.TempDir()
	mustLayout(t, dir, spec)
	t.Setenv("TRIREME_ENDPOINTS", "")
	return dir, fakes, urls
}

func mustService(t *testing.T, s api.Service) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(s, nil, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestMultiLeaderKeyCommands: put, get, del and incr against a multi-leader
// cluster found through cluster.json: no leader needed, --node picks the
// node, get -v shows the context and the siblings, put --context sends one.
func TestMultiLeaderKeyCommands(t *testing.T) {
	dir, fakes, urls := mustMLCluster(t, []string{"n1", "n2"})
	n1, n2 := fakes["n1"], fakes["n2"]
	n1.SetReadContext("ctx-1")
	n2.SetReadContext("ctx-2")

	code, out, errOut := runCLI("put", "k", "v1", "--data", dir)
	if code != 0 || out != "OK index=1 durability=local replicas=0 node=n1\n" || errOut != "" {
		t.Fatalf("put: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI("put", "k", "v2", "--node", "n2", "--ack", "local", "--data", dir)
	if code != 0 || out != "OK index=1 durability=local replicas=0 node=n2\n" {
		t.Fatalf("put --node n2: %d %q %q", code, out, errOut)
	}
	if v, _ := n2.Value("k"); string(v) != "v2" {
		t.Fatalf("n2 has k = %q", v)
	}
	if v, _ := n1.Value("k"); string(v) != "v1" {
		t.Fatalf("n1 has k = %q", v)
	}

	// get: the first node, or --node (no --consistency needed).
	if code, out, errOut = runCLI("get", "k", "--data", dir); code != 0 || out != "v1\n" || errOut != "" {
		t.Fatalf("get: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI("get", "k", "--node", "n2", "-v", "--data", dir)
	if code != 0 || out != "v2\n" || errOut != "node=n2\ncontext=ctx-2\n" {
		t.Fatalf("get --node n2 -v: %d %q %q", code, out, errOut)
	}
	// A missing key: -v gives its context too.
	code, _, errOut = runCLI("get", "absent", "-v", "--data", dir)
	if code != 1 || !strings.Contains(errOut, "key not found") || !strings.Contains(errOut, "context=ctx-1\n") {
		t.Fatalf("get absent -v: %d %q", code, errOut)
	}

	// Siblings: the first value, and a note; -v lists them.
	n1.SetSiblings("k", api.Sibling{Value: []byte("a"), Node: "n1", Counter: 2, Time: "1700000000000000000.0"},
		api.Sibling{Value: []byte("b"), Node: "n2", Counter: 1, Time: "1700000000001000000.3"})
	code, out, errOut = runCLI("get", "k", "--data", dir)
	if code != 0 || out != "a\n" || !strings.Contains(errOut, "2 concurrent values") {
		t.Fatalf("get of a key with siblings: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI("get", "k", "-v", "--data", dir)
	want := "node=n1\ncontext=ctx-1\n" +
		"sibling=n1:2 node=n1 time=2023-11-14T22:13:20.000000Z value=\"a\"\n" +
		"sibling=n2:1 node=n2 time=2023-11-14T22:13:20.001000Z+3 value=\"b\"\n"
	if code != 0 || out != "a\n" || errOut != want {
		t.Fatalf("get -v of a key with siblings: %d %q\n%s\nwant\n%s", code, out, errOut, want)
	}
	// put --context sends the read's context back.
	if code, _, errOut = runCLI("put", "k", "ab", "--context", "ctx-1", "--data", dir); code != 0 {
		t.Fatalf("put --context: %d %q", code, errOut)
	}
	if w, _ := n1.LastWrite(); w.Context != "ctx-1" {
		t.Fatalf("the node saw context %q", w.Context)
	}
	code, _, errOut = runCLI("del", "k", "--context", "bad", "--data", dir)
	if code != 1 || !strings.Contains(errOut, "refused the causal context") {
		t.Fatalf("del --context bad: %d %q", code, errOut)
	}
	if code, out, errOut = runCLI("del", "k", "--node", "n2", "--data", dir); code != 0 || !strings.Contains(out, "node=n2") {
		t.Fatalf("del --node n2: %d %q %q", code, out, errOut)
	}
	if _, ok := n2.Value("k"); ok {
		t.Fatal("k survived its delete on n2")
	}

	// incr: a counter on each node, no idempotency key (the fake refuses one).
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"incr", "visits", "--by", "5"}, "5\n"},
		{[]string{"incr", "visits", "--by", "-2"}, "3\n"},
		{[]string{"incr", "visits", "--node", "n2"}, "1\n"},
	} {
		if code, out, errOut = runCLI(append(tc.args, "--data", dir)...); code != 0 || out != tc.want {
			t.Fatalf("%q: %d %q %q, want %q", tc.args, code, out, errOut, tc.want)
		}
	}

	// What the mode does not offer: the node's words.
	for _, args := range [][]string{
		{"get", "k", "--consistency", "session"},
		{"get", "k", "--max-lag", "1s"},
		{"put", "k", "v", "--if-index", "0"},
	} {
		code, _, errOut = runCLI(append(args, "--data", dir)...)
		if code != 1 || !strings.Contains(errOut, "not supported in this replication mode") {
			t.Fatalf("%q: %d %q, want the node's refusal", args, code, errOut)
		}
	}

	// With --endpoints the mode is not known before asking: --node needs
	// --consistency local (or stale).
	eps := urls["n1"] + "," + urls["n2"]
	code, _, errOut = runCLI("get", "k2", "--node", hostPort(urls["n2"]), "--endpoints", eps)
	if code != 2 || !strings.Contains(errOut, "add --consistency local") {
		t.Fatalf("get --node --endpoints: %d %q", code, errOut)
	}
	if _, err := n2.Put(context.Background(), []byte("k2"), []byte("on-n2"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("get", "k2", "--node", hostPort(urls["n2"]), "--consistency", "local", "--endpoints", eps)
	if code != 0 || out != "on-n2\n" {
		t.Fatalf("get --node --consistency local --endpoints: %d %q %q", code, out, errOut)
	}
	if code, _, errOut = runCLI("put", "k", "v", "--node", "n9", "--data", dir); code != 1 || !strings.Contains(errOut, `--node "n9"`) {
		t.Fatalf("put --node n9: %d %q", code, errOut)
	}
}

// TestMultiLeaderFirstNodeDown: the client commands go to the next node
// when the first of cluster.json does not answer.
func TestMultiLeaderFirstNodeDown(t *testing.T) {
	dir, fakes, _ := mustMLCluster(t, []string{"n1", "n2", "n3"}, "n1")
	code, out, errOut := runCLI("put", "k", "v", "--data", dir)
	if code != 0 || out != "OK index=1 durability=local replicas=0 node=n2\n" {
		t.Fatalf("put with n1 down: %d %q %q", code, out, errOut)
	}
	if v, _ := fakes["n2"].Value("k"); string(v) != "v" {
		t.Fatalf("n2 has k = %q", v)
	}
	if code, out, errOut = runCLI("get", "k", "--data", dir); code != 0 || out != "v\n" {
		t.Fatalf("get with n1 down: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = runCLI("incr", "n", "--data", dir); code != 0 || out != "1\n" {
		t.Fatalf("incr with n1 down: %d %q %q", code, out, errOut)
	}
}

// TestConflictsCommand: trireme conflicts lists every node's conflict log,
// one row per version, pages with --after and --limit, and says that a
// single-leader cluster has none.
func TestConflictsCommand(t *testing.T) {
	dir, fakes, _ := mustMLCluster(t, []string{"n1", "n2"})
	lww := api.ConflictRecord{Node: "n1", Key: []byte("race"), Winner: "n2:1", Losers: []string{"n1:1"},
		Reason: "lww: higher hybrid timestamp wins", Versions: []api.ConflictVersion{
			{Dot: "n1:1", Node: "n1", Time: "1700000000000000000.0", Value: []byte("from-n1")},
			{Dot: "n2:1", Node: "n2", Time: "1700000000002000000.0", Value: []byte("from-n2")}}}
	fakes["n1"].AddConflict(lww)
	fakes["n1"].AddConflict(api.ConflictRecord{Node: "n1", Key: []byte("s"), Reason: "siblings: concurrent values kept",
		Versions: []api.ConflictVersion{
			{Dot: "n1:4", Node: "n1", Time: "1700000000000000000.0", Value: []byte("x")},
			{Dot: "n2:3", Node: "n2", Time: "1700000000000000000.1", Deleted: true}}})
	lww.Node = "n2"
	fakes["n2"].AddConflict(lww)

	code, out, errOut := runCLI("conflicts", "--data", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("conflicts: %d\n%s%s", code, out, errOut)
	}
	// Rows with their blanks squeezed (a version after the first leaves the
	// conflict's columns empty).
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	want := []string{
		`NODE SEQ KEY VERSION FROM TIME VALUE RESULT REASON`,
		`n1 1 "race" n1:1 n1 2023-11-14T22:13:20.000000Z "from-n1" lost lww: higher hybrid timestamp wins`,
		`n2:1 n2 2023-11-14T22:13:20.002000Z "from-n2" won`,
		`n1 2 "s" n1:4 n1 2023-11-14T22:13:20.000000Z "x" kept siblings: concurrent values kept`,
		`n2:3 n2 2023-11-14T22:13:20.000000Z+1 (deleted) kept`,
		`n2 1 "race" n1:1 n1 2023-11-14T22:13:20.000000Z "from-n1" lost lww: higher hybrid timestamp wins`,
		`n2:1 n2 2023-11-14T22:13:20.002000Z "from-n2" won`,
		"3 conflict record(s)",
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("conflicts:\n%s\nwant (blanks squeezed):\n%s", out, strings.Join(want, "\n"))
	}

	code, out, errOut = runCLI("conflicts", "--node", "n1", "--after", "1", "--data", dir)
	if code != 0 || strings.Contains(out, `"race"`) || !strings.Contains(out, `"s"`) || !strings.Contains(out, "1 conflict record(s)") {
		t.Fatalf("conflicts --node n1 --after 1: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI("conflicts", "--node", "n1", "--limit", "1", "--data", dir)
	if code != 0 || !strings.Contains(out, "1 conflict record(s)") || !strings.Contains(errOut, "trireme conflicts --node n1 --after 1") {
		t.Fatalf("conflicts --limit 1: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = runCLI("conflicts", "--limit", "0", "--data", dir); code != 2 {
		t.Fatalf("conflicts --limit 0: %d %q", code, errOut)
	}

	// A single-leader node has no conflict log.
	sl := mustService(t, struct{ api.Service }{apitest.NewFake()})
	code, _, errOut = runCLI("conflicts", "--endpoints", sl)
	if code != 1 || !strings.Contains(errOut, "not supported in this replication mode") {
		t.Fatalf("conflicts on a single-leader cluster: %d %q", code, errOut)
	}
}

// TestMultiLeaderHelp: the new commands and flags are described.
func TestMultiLeaderHelp(t *testing.T) {
	for cmd, mentions := range map[string][]string{
		"incr":      {"--by", "counter", "the nodes refuse one"},
		"conflicts": {"--after", "--limit", "--node", "won", "lost", "kept"},
		"put":       {"--context", "--node", "multi-leader"},
		"get":       {"context=TOKEN", "sibling=", "local"},
		"status":    {"STREAMS", "CLOCK-OFFSET", "CONFLICTS"},
	} {
		code, out, _ := runCLI("help", cmd)
		for _, m := range mentions {
			if code != 0 || !strings.Contains(out, m) {
				t.Errorf("trireme help %s: %d, does not mention %q", cmd, code, m)
			}
		}
	}
}
