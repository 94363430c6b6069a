package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/command"
)

func mustServer(t *testing.T, f *apitest.Fake) *httptest.Server {
	t.Helper()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "trireme_test_metric 1\n")
	})
	srv := httptest.NewServer(New(f, metrics, nil))
	t.Cleanup(srv.Close)
	return srv
}

func mustDo(t *testing.T, c *http.Client, method, u string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

func mustJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("reply is not a JSON object: %q: %v", b, err)
	}
	return m
}

func TestPutGetDelete(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	srv := mustServer(t, f)
	c := srv.Client()

	code, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/hello", []byte("world"))
	if code != 200 {
		t.Fatalf("PUT: %d %s", code, b)
	}
	m := mustJSON(t, b)
	if m["index"] != 1.0 || m["term"] != 1.0 || m["durability"] != "majority" || m["replicas"] != 2.0 {
		t.Fatalf("PUT reply %v", m)
	}
	if w, _ := f.LastWrite(); !w.Default {
		t.Fatalf("no ack param should ask for the default mode, got %+v", w)
	}

	code, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/kv/hello", nil)
	m = mustJSON(t, b)
	if code != 200 || m["key"] != "hello" || m["value"] != "world" || m["index"] != 1.0 {
		t.Fatalf("GET: %d %v", code, m)
	}
	if _, ok := m["lag_ms"]; ok {
		t.Fatalf("linearizable read must not report lag: %v", m)
	}
	code, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/kv/hello?consistency=stale", nil)
	m = mustJSON(t, b)
	if _, ok := m["lag_ms"]; code != 200 || !ok || m["lag_entries"] == nil {
		t.Fatalf("stale GET: %d %v", code, m)
	}

	code, b, _ = mustDo(t, c, "DELETE", srv.URL+"/v1/kv/hello?ack=async", nil)
	if m := mustJSON(t, b); code != 200 || m["index"] != 2.0 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	code, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/kv/hello", nil)
	if m := mustJSON(t, b); code != 404 || m["error"] == nil {
		t.Fatalf("GET after delete: %d %s", code, b)
	}
}

func TestAckModes(t *testing.T) {
	tests := []struct {
		query    string
		down     []string
		wantCode int
		wantMode api.AckMode
		wantReps int
		wantDur  string
	}{
		{"ack=async", nil, 200, api.AckAsync, 0, "async"},
		{"ack=semi-sync", nil, 200, api.AckSemiSync, 1, "semi-sync"},
		{"ack=semi-sync&replicas=2", nil, 200, api.AckSemiSync, 2, "semi-sync"},
		{"ack=sync", nil, 200, api.AckSync, 0, "sync"},
		{"ack=majority", nil, 200, api.AckMajority, 0, "majority"},
		{"ack=sync&timeout=50ms", []string{"n3"}, 504, api.AckSync, 0, "majority"},
		{"ack=semi-sync&replicas=1", []string{"n3"}, 200, api.AckSemiSync, 1, "semi-sync"},
		{"ack=semi-sync&replicas=2&timeout=30ms", []string{"n3"}, 504, api.AckSemiSync, 2, "majority"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			f := apitest.NewFake("n2", "n3")
			for _, id := range tc.down {
				f.SetDown(id, true)
			}
			srv := mustServer(t, f)
			code, b, _ := mustDo(t, srv.Client(), "PUT", srv.URL+"/v1/kv/k?"+tc.query, []byte("v"))
			if code != tc.wantCode {
				t.Fatalf("code %d, want %d: %s", code, tc.wantCode, b)
			}
			m := mustJSON(t, b)
			if m["durability"] != tc.wantDur {
				t.Fatalf("durability %v, want %s: %s", m["durability"], tc.wantDur, b)
			}
			if m["index"] != 1.0 || m["term"] != 1.0 {
				t.Fatalf("reply lacks index/term: %s", b)
			}
			if code == 504 && !strings.Contains(fmt.Sprint(m["error"]), "not final") {
				t.Fatalf("504 must say the outcome is not final: %s", b)
			}
			w, n := f.LastWrite()
			if n != 1 || w.Default || w.Ack.Mode != tc.wantMode || w.Ack.Replicas != tc.wantReps {
				t.Fatalf("service saw %+v (%d writes), want mode %v replicas %d", w, n, tc.wantMode, tc.wantReps)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	f.SetMaxValueBytes(16)
	srv := mustServer(t, f)
	tests := []struct {
		method, path string
		body         string
		want         int
		mention      string
	}{
		{"PUT", "/v1/kv/", "v", 400, "empty key"},
		{"GET", "/v1/kv", "", 400, "empty key"},
		{"PUT", "/v1/kv/k?ack=fast", "v", 400, "ack"},
		{"PUT", "/v1/kv/k?ack=semi-sync&replicas=0", "v", 400, "replicas"},
		{"PUT", "/v1/kv/k?ack=semi-sync&replicas=x", "v", 400, "replicas"},
		{"PUT", "/v1/kv/k?ack=sync&replicas=2", "v", 400, "semi-sync"},
		{"PUT", "/v1/kv/k?replicas=2", "v", 400, "semi-sync"},
		{"PUT", "/v1/kv/k?timeout=soon", "v", 400, "timeout"},
		{"PUT", "/v1/kv/k?timeout=-1s", "v", 400, "timeout"},
		{"DELETE", "/v1/kv/k?ack=nope", "", 400, "ack"},
		{"GET", "/v1/kv/k?consistency=eventual", "", 400, "consistency"},
		{"GET", "/v1/kv/k?raw=maybe", "", 400, "raw"},
		{"PUT", "/v1/kv/k", strings.Repeat("x", 17), 413, "too large"},
		{"PATCH", "/v1/kv/k", "", 405, "not allowed"},
		{"DELETE", "/v1/status", "", 405, "not allowed"},
		{"GET", "/v1/leader/transfer?to=n2", "", 405, "not allowed"},
		{"POST", "/v1/leader/transfer", "", 400, "to=ID"},
		{"GET", "/v2/nothing", "", 404, "no such endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			code, b, _ := mustDo(t, srv.Client(), tc.method, srv.URL+tc.path, body)
			if code != tc.want {
				t.Fatalf("code %d, want %d: %s", code, tc.want, b)
			}
			m := mustJSON(t, b)
			if e, _ := m["error"].(string); !strings.Contains(e, tc.mention) {
				t.Fatalf("error %q should mention %q", e, tc.mention)
			}
		})
	}
	if _, n := f.LastWrite(); n != 0 {
		t.Fatalf("bad requests reached the service: %d writes", n)
	}
}

// A body larger than the limit without a Content-Length (chunked) is cut off
// at the limit and refused.
func TestChunkedBodyOverLimit(t *testing.T) {
	f := apitest.NewFake("n2")
	f.SetMaxValueBytes(1000)
	srv := mustServer(t, f)
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("a"), 100)
		for range 50 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", srv.URL+"/v1/kv/big", pr)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("code %d, want 413", resp.StatusCode)
	}
	if _, ok := f.Value("big"); ok {
		t.Fatal("an oversized value was stored")
	}
}

func TestKeysAreBytes(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	tests := []struct{ escaped, key string }{
		{"a%2Fb", "a/b"},
		{"a/b//c", "a/b//c"},
		{"sp%20ace", "sp ace"},
		{"%00%FF", "\x00\xff"},
		{"..", ".."},
		{"%E2%9C%93", "✓"},
	}
	for _, tc := range tests {
		t.Run(tc.escaped, func(t *testing.T) {
			code, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/"+tc.escaped, []byte("v-"+tc.escaped))
			if code != 200 {
				t.Fatalf("PUT %d %s", code, b)
			}
			v, ok := f.Value(tc.key)
			if !ok || string(v) != "v-"+tc.escaped {
				t.Fatalf("stored under the wrong key: %q -> %q %v", tc.key, v, ok)
			}
			code, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/kv/"+tc.escaped, nil)
			m := mustJSON(t, b)
			key, _ := m["key"].(string)
			if m["key_encoding"] == "base64" {
				kb, _ := base64.StdEncoding.DecodeString(key)
				key = string(kb)
			}
			if code != 200 || key != tc.key {
				t.Fatalf("GET %d key %q, want %q", code, key, tc.key)
			}
		})
	}
}

func TestBinaryValues(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	val := []byte{0xff, 0x00, 0xfe, 'x'}
	if code, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/bin", val); code != 200 {
		t.Fatalf("PUT %d %s", code, b)
	}
	code, b, _ := mustDo(t, c, "GET", srv.URL+"/v1/kv/bin", nil)
	m := mustJSON(t, b)
	if code != 200 || m["encoding"] != "base64" {
		t.Fatalf("GET %d %s", code, b)
	}
	got, err := base64.StdEncoding.DecodeString(m["value"].(string))
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("base64 value %q -> %x, want %x", m["value"], got, val)
	}
	code, b, h := mustDo(t, c, "GET", srv.URL+"/v1/kv/bin?raw=1", nil)
	if code != 200 || !bytes.Equal(b, val) || h.Get("X-Trireme-Index") != "1" {
		t.Fatalf("raw GET %d %x %v", code, b, h)
	}
	// Text stays text.
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/txt", []byte("héllo"))
	_, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/kv/txt", nil)
	if m := mustJSON(t, b); m["value"] != "héllo" || m["encoding"] != nil {
		t.Fatalf("text value: %s", b)
	}
}

func TestServiceErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		method  string
		want    int
		mention string
	}{
		{"no leader put", api.ErrNoLeader, "PUT", 503, "no leader"},
		{"no leader get", api.ErrNoLeader, "GET", 503, "no leader"},
		{"outcome unknown", fmt.Errorf("w: %w", api.ErrOutcomeUnknown), "PUT", 503, "outcome unknown"},
		{"stopped", api.ErrStopped, "DELETE", 503, "stopped"},
		{"not leader", api.ErrNotLeader, "PUT", 421, "not the leader"},
		{"internal", errors.New("disk on fire"), "PUT", 500, "disk on fire"},
		{"too large", api.ErrValueTooLarge, "PUT", 413, "too large"},
		{"rolled back", fmt.Errorf("%w: index 7", api.ErrRolledBack), "GET", 409, "rolled back"},
		{"bad token", api.ErrBadToken, "GET", 400, "malformed session token"},
		{"bad bound", api.ErrBadBound, "GET", 400, "max_lag"},
		{"not integer", api.ErrNotInteger, "PUT", 409, "not an integer"},
		{"overflow", api.ErrOverflow, "PUT", 409, "overflow"},
		{"condition", api.ErrConditionFailed, "DELETE", 412, "condition not met"},
		{"bad command", api.ErrBadCommand, "PUT", 400, "malformed command"},
		{"disk", api.ErrInsufficientStorage, "PUT", 507, "insufficient storage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := apitest.NewFake("n2")
			srv := mustServer(t, f)
			f.FailNext(tc.err)
			code, b, _ := mustDo(t, srv.Client(), tc.method, srv.URL+"/v1/kv/k", []byte("v"))
			if code != tc.want {
				t.Fatalf("code %d, want %d: %s", code, tc.want, b)
			}
			if e, _ := mustJSON(t, b)["error"].(string); !strings.Contains(e, tc.mention) {
				t.Fatalf("error %q should mention %q", e, tc.mention)
			}
		})
	}
}

// TestEverySentinelStatus: every error of the classification, as the node
// that served it returns it and as a follower that forwarded the request
// rebuilds it (api.ErrorOf), gets its class's status on every kind of
// request.
func TestEverySentinelStatus(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	for _, sentinel := range api.Sentinels() {
		class, code := api.Classify(sentinel)
		for _, err := range []error{fmt.Errorf("%w: detail", sentinel), api.ErrorOf(code, "leader n1: detail")} {
			for _, req := range []struct{ method, path string }{
				{"PUT", "/v1/kv/k"}, {"GET", "/v1/kv/k"}, {"DELETE", "/v1/members/n1"}, {"POST", "/v1/leader/transfer?to=n2"},
				{"GET", "/v1/conflicts"},
			} {
				f.FailNext(err)
				code, b, _ := mustDo(t, srv.Client(), req.method, srv.URL+req.path, []byte("v"))
				if code != class.HTTPStatus() {
					t.Errorf("%s %s failing with %q: %d, want %d (%s): %s", req.method, req.path, err, code, class.HTTPStatus(), class, b)
				}
			}
		}
	}
}

func TestStatusRollbacksTransferMetrics(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	srv := mustServer(t, f)
	c := srv.Client()

	code, b, _ := mustDo(t, c, "GET", srv.URL+"/v1/rollbacks", nil)
	if code != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("empty rollbacks: %d %s", code, b)
	}
	f.AddRollback(api.Rollback{Term: 1, Index: 7, Op: "put", Key: "k", Value: "lost"})
	_, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/rollbacks", nil)
	var rbs []api.Rollback
	if err := json.Unmarshal(b, &rbs); err != nil || len(rbs) != 1 || rbs[0].Index != 7 || rbs[0].Value != "lost" {
		t.Fatalf("rollbacks %s: %v", b, err)
	}

	mustDo(t, c, "PUT", srv.URL+"/v1/kv/a", []byte("1"))
	code, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/status", nil)
	var st api.NodeStatus
	if err := json.Unmarshal(b, &st); err != nil || code != 200 || st.Role != "leader" || st.LastIndex != 1 || len(st.Followers) != 2 {
		t.Fatalf("status %d %s: %v", code, b, err)
	}

	code, b, _ = mustDo(t, c, "POST", srv.URL+"/v1/leader/transfer?to=n9", nil)
	if code != 500 || !strings.Contains(string(b), "n9") {
		t.Fatalf("transfer to unknown node: %d %s", code, b)
	}
	code, b, _ = mustDo(t, c, "POST", srv.URL+"/v1/leader/transfer?to=n3", nil)
	if m := mustJSON(t, b); code != 200 || m["leader"] != "n3" {
		t.Fatalf("transfer: %d %s", code, b)
	}
	if st := f.Status(); st.Leader != "n3" {
		t.Fatalf("leader after transfer: %q", st.Leader)
	}

	code, b, _ = mustDo(t, c, "GET", srv.URL+"/metrics", nil)
	if code != 200 || !strings.Contains(string(b), "trireme_test_metric") {
		t.Fatalf("metrics: %d %s", code, b)
	}
}

// Keep-alive: many requests reuse one connection.
func TestKeepAlive(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := httptest.NewUnstartedServer(New(f, nil, nil))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := srv.Client()
	for i := range 20 {
		code, b, _ := mustDo(t, c, "PUT", fmt.Sprintf("%s/v1/kv/k%d", srv.URL, i), []byte("v"))
		if code != 200 {
			t.Fatalf("PUT %d %s", code, b)
		}
	}
	srv.Close()
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests used %d connections, want 1", n)
	}
}

func TestParseWriteOptions(t *testing.T) {
	tests := []struct {
		q       string
		want    api.WriteOptions
		wantErr bool
	}{
		{"", api.WriteOptions{Default: true}, false},
		{"timeout=2s", api.WriteOptions{Default: true, Timeout: 2 * time.Second}, false},
		{"ack=async", api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}}, false},
		{"ack=semi-sync&replicas=3", api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 3}}, false},
		{"ack=semisync", api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 1}}, false},
		{"ack=majority&timeout=100ms", api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}, Timeout: 100 * time.Millisecond}, false},
		{"ack=local", api.WriteOptions{Ack: api.Ack{Mode: api.AckAsync}}, false},
		{"ack=all", api.WriteOptions{Ack: api.Ack{Mode: api.AckSync}}, false},
		{"ack=3", api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 3}}, false},
		{"ack=1000&timeout=1s", api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 1000}, Timeout: time.Second}, false},
		{"ack=MAJORITY", api.WriteOptions{}, true},
		{"ack=0", api.WriteOptions{}, true},
		{"ack=1001", api.WriteOptions{}, true},
		{"ack=3&replicas=2", api.WriteOptions{}, true},
		{"ack=3&replicas=3", api.WriteOptions{}, true},
		{"ack=local&replicas=1", api.WriteOptions{}, true},
		{"timeout=11m", api.WriteOptions{}, true},
		{"timeout=0s", api.WriteOptions{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.q)
			got, err := ParseWriteOptions(q)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if err != nil && !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
		})
	}
}

// FuzzParse checks that path and query parsing never panics, that a parsed
// key is never empty, and that parsed options are within their bounds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/v1/kv/a", "/v1/kv/%2F%00", "/v1/kv/", "/v1/kv/%zz", "/x"} {
		f.Add(s, "ack=semi-sync&replicas=2&timeout=1s&consistency=stale&raw=1")
	}
	f.Add("/v1/kv/k", "consistency=session&session=1.2.3&if_index=7&op=incr&by=-5&idem=abc")
	f.Add("/v1/kv/k", "consistency=bounded&max_lag=100ms&max_lag_entries=0&if_match=%2212%22&op=append&by=1")
	f.Add("/v1/kv/k", "consistency=session&session=1.0.3&if_match=W/%221%22&if_match=2&idem=&max_lag=-1s")
	f.Add("/v1/kv/k", "ack=%ZZ&replicas=-1&timeout=9999999h")
	f.Add("/v1/kv/k", "ack=local&context=abc&ctx_header=abc")
	f.Add("/v1/kv/k", "ack=3&replicas=2&context=a&ctx_header=b")
	f.Add("/v1/kv/k", "ack=1000&ctx_header=x&ctx_header=x")
	f.Add("/v1/kv/k", "ack=0001&context=c%2B%2F&ctx_header=c+/")
	f.Add("/v1/kv/k", "ack=all&replicas=1&after=7&limit=1000")
	f.Fuzz(func(t *testing.T, path, query string) {
		if k, err := ParseKey(path); err == nil && len(k) == 0 {
			t.Fatalf("empty key accepted from %q", path)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		if w, err := ParseWriteOptions(q); err == nil {
			if w.Timeout < 0 || w.Timeout > MaxTimeout {
				t.Fatalf("timeout %v out of bounds from %q", w.Timeout, query)
			}
			if w.Ack.Mode == api.AckSemiSync && w.Ack.Replicas < 1 {
				t.Fatalf("semi-sync with %d replicas from %q", w.Ack.Replicas, query)
			}
			if w.Default && q.Get("ack") != "" {
				t.Fatalf("default mode despite ack=%q", q.Get("ack"))
			}
			if isDigits(q.Get("ack")) && (w.Ack.Mode != api.AckSemiSync || w.Ack.Replicas > 1000 || q.Get("replicas") != "") {
				t.Fatalf("%+v from a numeric ack in %q", w.Ack, query)
			}
		}
		if err := checkContextHeader(q["ctx_header"]); err == nil {
			if c, err := parseContext(q.Get("context"), q["ctx_header"]); err == nil {
				if len(c) > MaxContextBytes || c != q.Get("context") && q.Get("context") != "" {
					t.Fatalf("context %.60q from %.100q", c, query)
				}
			}
		}
		if after, limit, err := parseConflictsQuery(q); err == nil && (limit < 1 || limit > MaxConflictsLimit || q.Get("after") == "" && after != 0) {
			t.Fatalf("after %d limit %d from %q", after, limit, query)
		}
		if o, _, err := ParseReadOptions(q, q["session"]); err == nil {
			if o.Consistency == api.Bounded && (o.MaxLag <= 0 && o.MaxLagEntries == 0 || o.MaxLag < 0) {
				t.Fatalf("bounded read without a positive bound from %q: %+v", query, o)
			}
			if o.Consistency != api.Bounded && (o.MaxLag != 0 || o.MaxLagEntries != 0) {
				t.Fatalf("bounds on a %s read from %q", o.Consistency, query)
			}
			if o.Consistency != api.Session && !o.Token.IsZero() {
				t.Fatalf("a token on a %s read from %q", o.Consistency, query)
			}
		}
		if cond, _, err := parseIfIndex(q.Get("if_index"), q["if_match"]); err == nil && cond != (q.Get("if_index") != "" || len(q["if_match"]) > 0) {
			t.Fatalf("condition %v from %q", cond, query)
		}
		if op, _, err := parseOp(q.Get("op"), q.Get("by")); err == nil && op != 0 && op != command.OpIncr && op != command.OpAppend {
			t.Fatalf("op %v from %q", op, query)
		}
		if k, err := parseIdempotencyKey(q["idem"]); err == nil && len(k) > command.MaxIdemKey {
			t.Fatalf("an idempotency key of %d bytes from %q", len(k), query)
		}
	})
}
