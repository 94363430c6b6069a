package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
)

// mustNode serves f's HTTP API and returns its URL.
func mustNode(t *testing.T, f *apitest.Fake) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(f, nil, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// mustWrites makes n writes on f, so that a new learner lags n entries.
func mustWrites(t *testing.T, f *apitest.Fake, n int) {
	t.Helper()
	for range n {
		if _, err := f.Put(context.Background(), []byte("k"), []byte("v"), api.WriteOptions{Default: true}); err != nil {
			t.Fatal(err)
		}
	}
}

func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMemberCommands(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	mustWrites(t, f, 10)
	f.SetLearnerCatchUp(4)
	url := mustNode(t, f)

	code, out, errOut := runCLI("member", "list", "--endpoints", url)
	if code != 0 || !strings.Contains(out, "ID  ROLE") || !strings.Contains(out, "n1  voter  leader") {
		t.Fatalf("member list: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI("member", "add", "--id", "n4", "--peer", "127.0.0.1:7004", "--http", "127.0.0.1:8004",
		"--resp", "127.0.0.1:9004", "--learner", "--endpoints", url)
	if code != 0 || !strings.Contains(out, "OK: n4 added as a learner") || !strings.Contains(out, "trireme member promote n4") {
		t.Fatalf("member add: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCLI("member", "add", "--id", "n4", "--peer", "127.0.0.1:7005", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "duplicate member") {
		t.Fatalf("member add twice: %d %s", code, errOut)
	}
	// Not a terminal: a line each time the learner's progress changes.
	code, out, errOut = runCLI("member", "promote", "n4", "--interval", "1ms", "--endpoints", url)
	if code != 0 || !strings.Contains(out, "n4: match index 4, 6 entries behind, replicate\n") ||
		!strings.Contains(out, "OK: n4 is a voter") || strings.Contains(out, "\r") {
		t.Fatalf("member promote: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI("member", "remove", "n4", "--endpoints", url)
	if code != 0 || !strings.Contains(out, "OK: n4 removed") || strings.Contains(out, "\nn4 ") {
		t.Fatalf("member remove: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCLI("member", "remove", "n4", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "no such member") {
		t.Fatalf("member remove twice: %d %s", code, errOut)
	}
	f.SetChangeInProgress(true)
	code, _, errOut = runCLI("member", "remove", "n3", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "another membership change is in progress") {
		t.Fatalf("member remove during a change: %d %s", code, errOut)
	}
}

func TestMemberUsage(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"member"}, "want a subcommand"},
		{[]string{"member", "join"}, `unknown subcommand "join"`},
		{[]string{"member", "list", "extra"}, "want 0 argument(s)"},
		{[]string{"member", "promote"}, "want 1 argument(s)"},
		{[]string{"member", "list", "--id", "n4"}, "--id applies to member add only"},
		{[]string{"member", "remove", "n4", "--timeout", "1s"}, "--timeout applies to member promote only"},
		{[]string{"member", "add", "--peer", "h:1"}, "--id is required"},
		{[]string{"member", "add", "--id", "n4"}, "--peer"},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.mention) {
			t.Errorf("%v: %d %q, want 2 mentioning %q", tc.args, code, errOut, tc.mention)
		}
	}
	code, out, _ := runCLI("member", "--help")
	if code != 0 || !strings.Contains(out, "promote") || !strings.Contains(out, "-learner") {
		t.Errorf("member --help: %d\n%s", code, out)
	}
}

func TestPromoteWhenCaughtUp(t *testing.T) {
	ctx := context.Background()
	f := apitest.NewFake("n2")
	mustWrites(t, f, 8)
	cl, err := client.New(client.Config{Endpoints: []string{mustNode(t, f)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddMember(ctx, client.MemberSpec{ID: "n3", Peer: "127.0.0.1:7103", Role: client.RoleLearner}); err != nil {
		t.Fatal(err)
	}

	// Stuck: the learner never catches up; the wait ends with the context.
	var buf bytes.Buffer
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = promoteWhenCaughtUp(short, cl, "n3", time.Millisecond, &progress{w: &buf})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "8 entries behind") {
		t.Fatalf("stuck learner: %v", err)
	}
	if got := strings.Count(buf.String(), "\n"); got != 1 {
		t.Fatalf("an unchanged learner should be shown once, got:\n%s", buf.String())
	}

	// A snapshot, then entries; on a terminal, a bar redrawn in place. A
	// fresh node: a request of the wait above may still be running on the
	// first one, and each member list moves the fake's learner on.
	f = apitest.NewFake("n2")
	mustWrites(t, f, 8)
	if cl, err = client.New(client.Config{Endpoints: []string{mustNode(t, f)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddMember(ctx, client.MemberSpec{ID: "n3", Peer: "127.0.0.1:7103", Role: client.RoleLearner}); err != nil {
		t.Fatal(err)
	}
	f.SetMemberProgress("n3", 0, api.MemberSnapshot, 0, 3<<20)
	f.SetLearnerCatchUp(5)
	buf.Reset()
	ms, err := promoteWhenCaughtUp(ctx, cl, "n3", time.Millisecond, &progress{w: &buf, terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := ms[len(ms)-1]; m.ID != "n3" || m.Role != client.RoleVoter {
		t.Fatalf("after the promotion: %+v", ms)
	}
	for _, want := range []string{"\r[", "snapshot 1.5 MiB of 3.0 MiB", "50%", "\x1b[K"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("progress lacks %q: %q", want, buf.String())
		}
	}
	if !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("the bar's line should end once done: %q", buf.String())
	}

	// Any other refusal stops at once.
	if _, err := promoteWhenCaughtUp(ctx, cl, "n9", time.Millisecond, &progress{w: &buf}); !errors.Is(err, client.ErrUnknownMember) {
		t.Fatalf("unknown member: %v", err)
	}
}

func TestFormatMembers(t *testing.T) {
	out := formatMembers([]client.Member{
		{MemberSpec: client.MemberSpec{ID: "n1", Peer: "h:1", Role: "voter"}, State: "leader", MatchIndex: 9},
		{MemberSpec: client.MemberSpec{ID: "n4", Peer: "h:4", Role: "learner"}, State: "snapshot", LagEntries: 9,
			SnapshotBytesSent: 512, SnapshotBytesTotal: 5 << 30},
		{MemberSpec: client.MemberSpec{ID: "n5", Peer: "h:5"}, State: "unknown"},
	})
	for _, want := range []string{
		"n1  voter    leader    9      0    -                h:1   -     -",
		"n4  learner  snapshot  0      9    512 B / 5.0 GiB  h:4",
		"n5  voter    unknown   0      -    -",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %q:\n%s", want, out)
		}
	}
}
