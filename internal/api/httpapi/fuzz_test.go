package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/command"
)

// countingService is a Fake that counts the calls that can fail, so that a
// test can tell a 5xx the service caused from one the handler made up.
type countingService struct {
	*apitest.Fake
	calls atomic.Int32
}

func (s *countingService) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	s.calls.Add(1)
	return s.Fake.Put(ctx, key, value, w)
}

func (s *countingService) Delete(ctx context.Context, key []byte, w api.WriteOptions) (api.WriteResult, error) {
	s.calls.Add(1)
	return s.Fake.Delete(ctx, key, w)
}

func (s *countingService) Get(ctx context.Context, key []byte, c api.Consistency) (api.ReadResult, error) {
	s.calls.Add(1)
	return s.Fake.Get(ctx, key, c)
}

func (s *countingService) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	s.calls.Add(1)
	return s.Fake.Read(ctx, key, o)
}

func (s *countingService) Exec(ctx context.Context, cmd *command.Command, w api.WriteOptions) (api.WriteResult, error) {
	s.calls.Add(1)
	return s.Fake.Exec(ctx, cmd, w)
}

func (s *countingService) Rollbacks() ([]api.Rollback, error) {
	s.calls.Add(1)
	return s.Fake.Rollbacks()
}

func (s *countingService) Conflicts(ctx context.Context, after uint64, limit int) ([]api.ConflictRecord, uint64, error) {
	s.calls.Add(1)
	return s.Fake.Conflicts(ctx, after, limit)
}

func (s *countingService) TransferLeadership(ctx context.Context, to string) error {
	s.calls.Add(1)
	return s.Fake.TransferLeadership(ctx, to)
}

func (s *countingService) Members(ctx context.Context) ([]api.MemberStatus, error) {
	s.calls.Add(1)
	return s.Fake.Members(ctx)
}

func (s *countingService) AddMember(ctx context.Context, m api.MemberSpec) ([]api.MemberStatus, error) {
	s.calls.Add(1)
	return s.Fake.AddMember(ctx, m)
}

func (s *countingService) PromoteMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	s.calls.Add(1)
	return s.Fake.PromoteMember(ctx, id)
}

func (s *countingService) RemoveMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	s.calls.Add(1)
	return s.Fake.RemoveMember(ctx, id)
}

var fuzzMethods = []string{"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"}

// knownParams returns the query parameters the endpoint at escapedPath takes
// with method, and false where no request can succeed or queries are not
// checked (/metrics).
func knownParams(method, escapedPath string) ([]string, bool) {
	switch {
	case strings.HasPrefix(escapedPath, kvPrefix):
		switch method {
		case "GET", "HEAD":
			return readParams, true
		case "PUT", "DELETE":
			return writeParams, true
		case "POST":
			return postParams, true
		}
	case escapedPath == "/v1/status" || escapedPath == "/v1/rollbacks":
		return nil, method == "GET" || method == "HEAD"
	case escapedPath == conflictsPath:
		return conflictsParams, method == "GET" || method == "HEAD"
	case escapedPath == "/v1/leader/transfer":
		return transferParams, method == "POST"
	case escapedPath == membersPath:
		switch method {
		case "GET", "HEAD":
			return nil, true
		case "POST":
			return memberParams, true
		}
	case strings.HasPrefix(escapedPath, membersPath+"/"):
		return memberParams, memberChange(escapedPath, method)
	}
	return nil, false
}

// FuzzRequest serves requests built from a fuzzed method, path, raw query
// string, headers and body (so membership bodies too), and checks that the handler
// never panics; that it
// answers 200 to 499, or 5xx only after calling the service; that every
// error is a JSON object with an "error"; that a 200 went to a query that
// url.ParseQuery decodes too, with each parameter known and given once, and
// to a key within the limit, with valid idempotency and condition headers,
// and that a write's 200 carries a session token; and that ParseQuery
// agrees with url.ParseQuery on every query it accepts.
func FuzzRequest(f *testing.F) {
	for _, s := range []struct {
		method      uint8
		path, query string
		body        string
	}{
		// The reproducers of issue 15.
		{0, "/v1/kv/k", "consistency=%zz", ""},
		{0, "/v1/kv/k", "consistency=stale;raw=1", ""},
		{2, "/v1/kv/k", "ack=sync&ack=async", "v"},
		{0, "/v1/kv/" + strings.Repeat("k", 17), "", ""},
		{4, "/v1/kv/" + strings.Repeat("%41", 17), "", ""},
		// Requests that succeed, and 5xx the service causes.
		{2, "/v1/kv/k", "ack=semi-sync&replicas=1&timeout=1s", "value"},
		{3, "/v1/kv/a%2Fb", "ack=sync&timeout=10m", "v"},
		{4, "/v1/kv/%00%FF", "ack=async", ""},
		{1, "/v1/kv/k", "consistency=stale&raw=1", ""},
		{3, "/v1/leader/transfer", "to=n2&timeout=1s", ""},
		{3, "/v1/leader/transfer", "to=n9", ""},
		{0, "/v1/status", "", ""},
		{0, "/v1/rollbacks", "", ""},
		// Membership: a list, changes that succeed, and each refusal.
		{0, "/v1/members", "", ""},
		{3, "/v1/members", "timeout=1s", `{"id":"n4","peer":"127.0.0.1:7004","role":"learner"}`},
		{3, "/v1/members", "", `{"id":"n4","peer":"127.0.0.1:7002"}`},
		{3, "/v1/members", "", `{"id":"n4","peer":"h:1","extra":1}`},
		{3, "/v1/members", "", `{"id":"n4","peer":"h:1"}{}`},
		{3, "/v1/members", "", `{"id":"` + strings.Repeat("é", 40) + `","peer":"h:1"}`},
		{3, "/v1/members/n2/promote", "", ""},
		{3, "/v1/members/n9/promote", "timeout=1ms", ""},
		{4, "/v1/members/n3", "", ""},
		{4, "/v1/members/n1", "", ""},
		{4, "/v1/members/", "", ""},
		{4, "/v1/members/%6E2", "", ""},
		{0, "/v1/members/n2/promote", "", ""},
		// Edges of the query syntax.
		{0, "/v1/status", "verbose=1", ""},
		{2, "/v1/kv/k", "ack=&replicas", "v"},
		{2, "/v1/kv/k", "a%63k=sync&&timeout=1s", "v"},
		{2, "/v1/kv/k", "timeout=1s&timeout=1s", strings.Repeat("x", 65)},
		{5, "/v1/kv/k", "", ""},
		{0, "/v1/kv/", "", ""},
		{0, "/v1/kv/%zz", "", ""},
		{0, "/metrics", "x=%zz", ""},
		// Leaderless parameters (refused by the Fake, a single-leader node).
		{2, "/v1/kv/k", "w=quorum&ack=majority", "v"},
		{0, "/v1/kv/k", "r=2&repair=blocking", ""},
		{0, "/v1/kv/k", "r=0&repair=maybe", ""},
	} {
		f.Add(s.method, s.path, s.query, "", []byte(s.body))
	}
	// Sessions, bounds, commands, conditions and idempotency keys: each
	// header is a "Name: value" line.
	for _, s := range []struct {
		method             uint8
		path, query, heads string
		body               string
	}{
		{0, "/v1/kv/k", "consistency=session&session=1.1.1", "", ""},
		{0, "/v1/kv/k", "consistency=session", "X-Trireme-Session: 1.1.0", ""},
		{0, "/v1/kv/k", "consistency=session&session=1.1.1", "X-Trireme-Session: 1.1.2", ""},
		{0, "/v1/kv/k", "consistency=session&session=1.1.99", "", ""},
		{0, "/v1/kv/k", "consistency=stale&session=1.1.1", "", ""},
		{1, "/v1/kv/k", "consistency=bounded&max_lag=100ms&max_lag_entries=5&raw=1", "", ""},
		{0, "/v1/kv/k", "consistency=bounded&max_lag=-1s", "", ""},
		{0, "/v1/kv/k", "consistency=bounded", "", ""},
		{3, "/v1/kv/k", "op=incr&by=-3", "Idempotency-Key: a", ""},
		{3, "/v1/kv/k", "op=incr&by=9223372036854775808", "", ""},
		{3, "/v1/kv/k", "op=append&ack=async", "", "tail"},
		{3, "/v1/kv/k", "op=incr", "", "body"},
		{3, "/v1/kv/k", "op=decr", "", ""},
		{2, "/v1/kv/k", "if_index=0", "Idempotency-Key: k1", "v"},
		{2, "/v1/kv/k", "", "If-Match: \"0\"\nIf-Match: 0", "v"},
		{4, "/v1/kv/k", "if_index=x", "", ""},
		{4, "/v1/kv/k", "", "If-Match: *", ""},
		{2, "/v1/kv/k", "op=incr", "", "v"},
		{2, "/v1/kv/k", "", "Idempotency-Key: " + strings.Repeat("i", command.MaxIdemKey+1), "v"},
		{4, "/v1/kv/k", "", "Idempotency-Key: ", ""},
		// Multi-leader: causal contexts, ack words and the conflict log.
		{2, "/v1/kv/k", "context=abc&ack=local", "X-Trireme-Context: abc", "v"},
		{2, "/v1/kv/k", "context=abc", "X-Trireme-Context: abd", "v"},
		{4, "/v1/kv/k", "ack=all", "X-Trireme-Context: a\nX-Trireme-Context: a", ""},
		{3, "/v1/kv/k", "op=incr&ack=3&replicas=2", "", ""},
		{3, "/v1/kv/k", "op=append&ack=1&context=%2B%2F", "", "t"},
		{2, "/v1/kv/k", "ack=1001", "", "v"},
		{2, "/v1/kv/k", "ack=0&context=", "", "v"},
		{2, "/v1/kv/k", "", "X-Trireme-Context: " + strings.Repeat("c", MaxContextBytes+1), "v"},
		{2, "/v1/kv/k", "context=" + strings.Repeat("c", MaxContextBytes), "", "v"},
		{0, "/v1/kv/k", "context=abc", "X-Trireme-Context: abc", ""},
		{0, "/v1/conflicts", "after=0&limit=1000", "", ""},
		{1, "/v1/conflicts", "after=18446744073709551615&limit=1", "", ""},
		{0, "/v1/conflicts", "limit=0", "", ""},
		{0, "/v1/conflicts", "after=-1&limit=1001", "", ""},
		{3, "/v1/conflicts", "", "", ""},
	} {
		f.Add(s.method, s.path, s.query, s.heads, []byte(s.body))
	}
	cfg := DefaultConfig()
	cfg.MaxKeyBytes = 16
	f.Fuzz(func(t *testing.T, m uint8, path, query, heads string, body []byte) {
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		checkParseQuery(t, query)

		target := path
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		fake := apitest.NewFake("n2", "n3")
		fake.SetDown("n3", true) // so that sync writes wait
		fake.SetMaxValueBytes(64)
		fake.SetDefaultTimeout(time.Millisecond)
		svc := &countingService{Fake: fake}
		h := newHandler(svc, nil, cfg)

		// The context bounds waits that the query asks to be long.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, method, "/", bytes.NewReader(body))
		req.URL, req.RequestURI = u, target
		for line := range strings.SplitSeq(heads, "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok {
				req.Header.Add(name, strings.TrimSpace(value))
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		code := rec.Code
		if code < 200 || code >= 600 || code >= 500 && svc.calls.Load() == 0 {
			t.Fatalf("%s %s: status %d (service calls: %d): %s", method, target, code, svc.calls.Load(), rec.Body)
		}
		if code >= 400 {
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: status %d with a reply that is not a JSON error: %q", method, target, code, rec.Body)
			}
		}
		if code == http.StatusOK {
			checkAccepted(t, method, u, target)
			checkAcceptedHeaders(t, method, u, req.Header, rec.Header())
		}
	})
}

// checkAccepted checks a request that got 200: its query is one url.ParseQuery
// decodes, with every parameter known to the endpoint and given once, and
// its key is within the limit.
func checkAccepted(t *testing.T, method string, u *url.URL, target string) {
	t.Helper()
	known, ok := knownParams(method, u.EscapedPath())
	if !ok {
		t.Fatalf("%s %s: 200 from an endpoint that takes no such request", method, target)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		t.Fatalf("%s %s: 200 to a query url.ParseQuery refuses: %v", method, target, err)
	}
	for name, vs := range q {
		if !slices.Contains(known, name) || len(vs) != 1 || vs[0] == "" {
			t.Fatalf("%s %s: 200 despite parameter %q = %q", method, target, name, vs)
		}
	}
	if key, err := ParseKey(u.EscapedPath()); err == nil && len(key) > 16 {
		t.Fatalf("%s %s: 200 for a key of %d bytes", method, target, len(key))
	}
}

// checkAcceptedHeaders checks the headers of a request that got 200: an
// Idempotency-Key within its limit, given once; and a session token in the
// reply to a write.
func checkAcceptedHeaders(t *testing.T, method string, u *url.URL, req, reply http.Header) {
	t.Helper()
	if ks := req.Values(IdempotencyKeyHeader); len(ks) > 1 || len(ks) == 1 && (ks[0] == "" || len(ks[0]) > command.MaxIdemKey) {
		t.Fatalf("%s %s: 200 despite %s %q", method, u, IdempotencyKeyHeader, ks)
	}
	if len(req.Values("If-Match")) > 1 {
		t.Fatalf("%s %s: 200 despite If-Match given twice", method, u)
	}
	if cs := req.Values(ContextHeader); len(cs) > 1 || len(cs) == 1 && len(cs[0]) > MaxContextBytes {
		t.Fatalf("%s %s: 200 despite %s %.60q", method, u, ContextHeader, cs)
	}
	if strings.HasPrefix(u.EscapedPath(), kvPrefix) && method != "GET" && method != "HEAD" && reply.Get(SessionHeader) == "" {
		t.Fatalf("%s %s: a write's 200 without a session token", method, u)
	}
}

// checkParseQuery checks ParseQuery against url.ParseQuery: whatever it
// accepts, url.ParseQuery decodes to the same single values.
func checkParseQuery(t *testing.T, query string) {
	t.Helper()
	all := slices.Concat(postParams, readParams, transferParams, memberParams, conflictsParams)
	q, err := ParseQuery(query, all)
	if err != nil {
		return
	}
	uq, uerr := url.ParseQuery(query)
	if uerr != nil {
		t.Fatalf("ParseQuery accepted %q, which url.ParseQuery refuses: %v", query, uerr)
	}
	if len(q) != len(uq) {
		t.Fatalf("ParseQuery(%q) = %v, url.ParseQuery = %v", query, q, uq)
	}
	for name, vs := range uq {
		if len(vs) != 1 || q.Get(name) != vs[0] || vs[0] == "" {
			t.Fatalf("ParseQuery(%q) = %v, url.ParseQuery = %v", query, q, uq)
		}
	}
}
