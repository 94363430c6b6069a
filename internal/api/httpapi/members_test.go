package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

const n4Body = `{"id":"n4","peer":"127.0.0.1:7004","http":"127.0.0.1:8004","resp":"127.0.0.1:9004","role":"learner"}`

func mustMemberList(t *testing.T, b []byte) map[string]api.MemberStatus {
	t.Helper()
	var ms []api.MemberStatus
	if err := json.Unmarshal(b, &ms); err != nil {
		t.Fatalf("reply is not a member list: %q: %v", b, err)
	}
	out := map[string]api.MemberStatus{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func TestMembersList(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	f.SetDown("n3", true)
	srv := mustServer(t, f)
	mustDo(t, srv.Client(), "PUT", srv.URL+"/v1/kv/k", []byte("v"))
	code, b, hdr := mustDo(t, srv.Client(), "GET", srv.URL+"/v1/members", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/members: %d %s", code, b)
	}
	// The contract's field names, exactly.
	var raw []map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || len(raw) != 3 {
		t.Fatalf("%s: %v", b, err)
	}
	for _, field := range []string{"id", "peer", "http", "resp", "role", "match_index", "lag_entries", "state",
		"snapshot_bytes_sent", "snapshot_bytes_total"} {
		if _, ok := raw[0][field]; !ok {
			t.Fatalf("member %s lacks %q", b, field)
		}
	}
	if len(raw[0]) != 10 {
		t.Fatalf("member has fields beyond the contract: %v", raw[0])
	}
	ms := mustMemberList(t, b)
	if ms["n1"].State != "leader" || ms["n2"].State != "replicate" || ms["n2"].MatchIndex != 1 ||
		ms["n3"].State != "probe" || ms["n3"].LagEntries != 1 || ms["n3"].Role != "voter" {
		t.Fatalf("members: %s", b)
	}
	code, b, _ = mustDo(t, srv.Client(), "HEAD", srv.URL+"/v1/members", nil)
	if code != 200 || len(b) != 0 {
		t.Fatalf("HEAD: %d %q", code, b)
	}
}

func TestMembersStatusCodes(t *testing.T) {
	type step struct {
		name         string
		setup        func(f *apitest.Fake)
		method, path string
		body         string
		want         int
		mention      string
		checkMembers func(t *testing.T, ms map[string]api.MemberStatus)
	}
	steps := []step{
		{name: "add a learner", method: "POST", path: "/v1/members", body: n4Body, want: 200,
			checkMembers: func(t *testing.T, ms map[string]api.MemberStatus) {
				if m := ms["n4"]; m.Role != "learner" || m.Peer != "127.0.0.1:7004" || m.LagEntries != 2 || m.State != "probe" {
					t.Fatalf("n4: %+v", m)
				}
			}},
		{name: "role defaults to voter", method: "POST", path: "/v1/members",
			body: `{"id":"n5","peer":"127.0.0.1:7005"}`, want: 200,
			checkMembers: func(t *testing.T, ms map[string]api.MemberStatus) {
				if m := ms["n5"]; m.Role != "voter" || m.HTTP != "" {
					t.Fatalf("n5: %+v", m)
				}
			}},
		{name: "duplicate id", method: "POST", path: "/v1/members", body: n4Body, want: 400, mention: "duplicate member"},
		{name: "duplicate address", method: "POST", path: "/v1/members",
			body: `{"id":"n6","peer":"127.0.0.1:9004"}`, want: 400, mention: "duplicate member"},
		{name: "empty id", method: "POST", path: "/v1/members", body: `{"id":"","peer":"h:1"}`, want: 400, mention: "id: empty"},
		{name: "bad id", method: "POST", path: "/v1/members", body: `{"id":"n 6","peer":"h:1"}`, want: 400, mention: "id"},
		{name: "long id", method: "POST", path: "/v1/members",
			body: `{"id":"` + strings.Repeat("x", 65) + `","peer":"h:1"}`, want: 400, mention: "limit 64"},
		{name: "bad address", method: "POST", path: "/v1/members", body: `{"id":"n6","peer":"h"}`, want: 400, mention: "peer"},
		{name: "missing peer", method: "POST", path: "/v1/members", body: `{"id":"n6"}`, want: 400, mention: "peer"},
		{name: "unknown role", method: "POST", path: "/v1/members", body: `{"id":"n6","peer":"h:1","role":"witness"}`, want: 400, mention: "role"},
		{name: "bad JSON", method: "POST", path: "/v1/members", body: `{"id":`, want: 400, mention: "JSON object"},
		{name: "not an object", method: "POST", path: "/v1/members", body: `["n6"]`, want: 400, mention: "JSON object"},
		{name: "empty body", method: "POST", path: "/v1/members", body: ``, want: 400, mention: "JSON object"},
		{name: "unknown field", method: "POST", path: "/v1/members", body: `{"id":"n6","peer":"h:1","voter":true}`, want: 400, mention: "voter"},
		{name: "trailing data", method: "POST", path: "/v1/members", body: `{"id":"n6","peer":"h:1"} {}`, want: 400, mention: "nothing after it"},
		{name: "oversized body", method: "POST", path: "/v1/members",
			body: `{"id":"n6","peer":"h:1","http":"` + strings.Repeat("h", MaxMemberBodyBytes) + `"}`, want: 413, mention: "too large"},
		{name: "unknown query parameter", method: "POST", path: "/v1/members?role=learner", body: n4Body, want: 400, mention: "role"},
		{name: "bad timeout", method: "POST", path: "/v1/members/n4/promote?timeout=forever", want: 400, mention: "timeout"},
		{name: "change in progress", setup: func(f *apitest.Fake) { f.SetChangeInProgress(true) },
			method: "POST", path: "/v1/members", body: `{"id":"n6","peer":"127.0.0.1:7006"}`, want: 409, mention: "in progress"},
		{name: "remove during a change", method: "DELETE", path: "/v1/members/n5", want: 409, mention: "in progress"},
		{name: "promote not caught up", setup: func(f *apitest.Fake) { f.SetChangeInProgress(false) },
			method: "POST", path: "/v1/members/n4/promote", want: 409, mention: "2 entries behind"},
		{name: "promote unknown", method: "POST", path: "/v1/members/n9/promote", want: 404, mention: "unknown member"},
		{name: "promote a voter", method: "POST", path: "/v1/members/n2/promote", want: 400, mention: "already a voter"},
		{name: "promote caught up", setup: func(f *apitest.Fake) { f.SetMemberProgress("n4", 2, "replicate", 0, 0) },
			method: "POST", path: "/v1/members/n4/promote", want: 200,
			checkMembers: func(t *testing.T, ms map[string]api.MemberStatus) {
				if ms["n4"].Role != "voter" {
					t.Fatalf("n4 after promotion: %+v", ms["n4"])
				}
			}},
		{name: "remove unknown", method: "DELETE", path: "/v1/members/n9", want: 404, mention: "unknown member"},
		{name: "remove escaped id", method: "DELETE", path: "/v1/members/n%35", want: 200,
			checkMembers: func(t *testing.T, ms map[string]api.MemberStatus) {
				if _, ok := ms["n5"]; ok || len(ms) != 4 {
					t.Fatalf("after removing n5: %v", ms)
				}
			}},
		{name: "remove empty id", method: "DELETE", path: "/v1/members/", want: 400, mention: "empty member id"},
		{name: "nested path", method: "DELETE", path: "/v1/members/n4/x", want: 404, mention: "no such endpoint"},
		{name: "GET a member", method: "GET", path: "/v1/members/n4", want: 405, mention: "DELETE"},
		{name: "GET promote", method: "GET", path: "/v1/members/n4/promote", want: 405, mention: "POST"},
		{name: "PUT members", method: "PUT", path: "/v1/members", want: 405, mention: "GET, HEAD, POST"},
		{name: "list takes no query", method: "GET", path: "/v1/members?timeout=1s", want: 400, mention: "timeout"},
		{name: "remove voters", method: "DELETE", path: "/v1/members/n2", want: 200},
		{name: "remove n3", method: "DELETE", path: "/v1/members/n3", want: 200},
		{name: "remove n4", method: "DELETE", path: "/v1/members/n4", want: 200},
		{name: "remove the last voter", method: "DELETE", path: "/v1/members/n1", want: 400, mention: "last voter"},
		{name: "not the leader", setup: func(f *apitest.Fake) { f.SetLeader("n2"); f.SetLeaderAddrs("127.0.0.1:8002", "") },
			method: "POST", path: "/v1/members", body: `{"id":"n6","peer":"127.0.0.1:7006"}`, want: 421, mention: "not the leader"},
		{name: "no leader", setup: func(f *apitest.Fake) { f.SetLeader("") },
			method: "DELETE", path: "/v1/members/n1", want: 503, mention: "no leader"},
		{name: "removed", setup: func(f *apitest.Fake) { f.SetRemoved(true) },
			method: "GET", path: "/v1/members", want: 410, mention: "removed from the cluster"},
		{name: "removed write", method: "PUT", path: "/v1/kv/k", body: "v", want: 410, mention: "removed from the cluster"},
	}
	f := apitest.NewFake("n2", "n3")
	srv := mustServer(t, f)
	c := srv.Client()
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/a", []byte("1"))
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/b", []byte("2"))
	// The steps run in order, on one Fake: each starts where the last left it.
	for _, s := range steps {
		if s.setup != nil {
			s.setup(f)
		}
		var body []byte
		if s.body != "" {
			body = []byte(s.body)
		}
		code, b, _ := mustDo(t, c, s.method, srv.URL+s.path, body)
		if code != s.want {
			t.Fatalf("%s: %s %s: %d %s, want %d", s.name, s.method, s.path, code, b, s.want)
		}
		if code != 200 {
			if e, _ := mustJSON(t, b)["error"].(string); !strings.Contains(e, s.mention) {
				t.Fatalf("%s: error %q should mention %q", s.name, e, s.mention)
			}
			continue
		}
		ms := mustMemberList(t, b)
		if s.checkMembers != nil {
			s.checkMembers(t, ms)
		}
	}
}

// slowService is a Fake whose membership changes wait for their context.
type slowService struct{ *apitest.Fake }

func (s slowService) AddMember(ctx context.Context, m api.MemberSpec) ([]api.MemberStatus, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("waiting for the commit: %w", ctx.Err())
}

func TestMemberChangeTimeout(t *testing.T) {
	srv := httptest.NewServer(newHandler(slowService{apitest.NewFake("n2")}, nil, DefaultConfig()))
	t.Cleanup(srv.Close)
	start := time.Now()
	code, b, _ := mustDo(t, srv.Client(), "POST", srv.URL+"/v1/members?timeout=50ms", []byte(n4Body))
	if code != http.StatusGatewayTimeout || !strings.Contains(string(b), "may still take effect") {
		t.Fatalf("%d %s", code, b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}
