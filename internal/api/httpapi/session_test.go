package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// Every reply to a read or a write carries the session token, in the body
// and the header alike.
func TestSessionTokenOnEveryReply(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	for i, tc := range []struct {
		method, path string
		want         int
		token        string
	}{
		{"PUT", "/v1/kv/k", 200, "1.1.1"},
		{"GET", "/v1/kv/k", 200, "1.1.1"},
		{"GET", "/v1/kv/k?consistency=stale", 200, "1.1.1"},
		{"POST", "/v1/kv/n?op=incr", 200, "1.1.2"},
		{"DELETE", "/v1/kv/n", 200, "1.1.3"},
		{"GET", "/v1/kv/n", 404, "1.1.3"},
		{"GET", "/v1/kv/k?raw=1", 200, "1.1.3"},
	} {
		var body []byte
		if tc.method == "PUT" {
			body = []byte("v")
		}
		code, b, h := mustDo(t, c, tc.method, srv.URL+tc.path, body)
		if code != tc.want || h.Get(SessionHeader) != tc.token {
			t.Fatalf("%d: %s %s: %d %s (header %q), want %d with token %s", i, tc.method, tc.path, code, b, h.Get(SessionHeader), tc.want, tc.token)
		}
		if !strings.Contains(tc.path, "raw=1") && mustJSON(t, b)["session"] != tc.token {
			t.Fatalf("%s %s: body %s, want session %s", tc.method, tc.path, b, tc.token)
		}
	}
}

func TestSessionRead(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	_, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"))
	tok := mustJSON(t, b)["session"].(string)
	for _, tc := range []struct {
		query   string
		headers []string
	}{
		{"consistency=session&session=" + tok, nil},
		{"consistency=session", []string{SessionHeader + ": " + tok}},
		{"consistency=session&session=" + tok, []string{SessionHeader + ": " + tok}},
		{"consistency=session", nil}, // a new session
		// The header is ignored on other reads, so that a client may always send it.
		{"consistency=stale", []string{SessionHeader + ": not a token"}},
	} {
		code, b, h := mustDoH(t, c, "GET", srv.URL+"/v1/kv/k?"+tc.query, nil, tc.headers...)
		m := mustJSON(t, b)
		if code != 200 || m["value"] != "v" || m["session"] != tok || h.Get(SessionHeader) != tok {
			t.Fatalf("GET ?%s %v: %d %s", tc.query, tc.headers, code, b)
		}
	}
	f.FailNext(api.ErrRolledBack)
	code, b, _ := mustDo(t, c, "GET", srv.URL+"/v1/kv/k?consistency=session&session="+tok, nil)
	if e, _ := mustJSON(t, b)["error"].(string); code != http.StatusConflict || !strings.Contains(e, api.ErrRolledBack.Error()) {
		t.Fatalf("rolled back: %d %s, want 409 naming the error", code, b)
	}
}

func TestBoundedRead(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"))
	for _, q := range []string{"max_lag=100ms", "max_lag_entries=3", "max_lag=2s&max_lag_entries=1"} {
		code, b, _ := mustDo(t, c, "GET", srv.URL+"/v1/kv/k?consistency=bounded&"+q, nil)
		m := mustJSON(t, b)
		if code != 200 || m["value"] != "v" || m["lag_ms"] == nil || m["lag_entries"] == nil || m["session"] == nil {
			t.Fatalf("bounded ?%s: %d %s", q, code, b)
		}
	}
}

func TestParseReadOptions(t *testing.T) {
	for _, tc := range []struct {
		query  string
		header []string
		want   api.ReadOptions
	}{
		{"", nil, api.ReadOptions{}},
		{"consistency=session", nil, api.ReadOptions{Consistency: api.Session}},
		{"consistency=session&session=1.4.9", nil, api.ReadOptions{Consistency: api.Session, Token: api.Token{Term: 4, Index: 9}}},
		{"consistency=session", []string{" 1.4.9 "}, api.ReadOptions{Consistency: api.Session, Token: api.Token{Term: 4, Index: 9}}},
		{"consistency=linearizable", []string{"junk"}, api.ReadOptions{}},
		{"consistency=bounded&max_lag=1.5s", nil, api.ReadOptions{Consistency: api.Bounded, MaxLag: 1500 * time.Millisecond}},
		{"consistency=bounded&max_lag_entries=10", nil, api.ReadOptions{Consistency: api.Bounded, MaxLagEntries: 10}},
	} {
		q, err := ParseQuery(tc.query, readParams)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := ParseReadOptions(q, tc.header)
		if err != nil || got != tc.want {
			t.Errorf("?%s %v: %+v %v, want %+v", tc.query, tc.header, got, err, tc.want)
		}
	}
}

// Bad tokens and bounds are 400s that name what is wrong.
func TestBadReadOptions(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	for _, tc := range []struct {
		query   string
		headers []string
		mention string
	}{
		{"consistency=session&session=abc", nil, "malformed session token"},
		{"consistency=session&session=2.1.1", nil, "malformed session token"},
		{"consistency=session&session=1.0.5", nil, "malformed session token"},
		{"consistency=session&session=1.1.99999999999999999999", nil, "malformed session token"},
		{"consistency=session", []string{SessionHeader + ": 1.x.1"}, "malformed session token"},
		{"consistency=session", []string{SessionHeader + ": 1.1.1", SessionHeader + ": 1.1.2"}, "more than once"},
		{"consistency=session&session=1.1.1", []string{SessionHeader + ": 1.1.2"}, "differ"},
		{"consistency=stale&session=1.1.1", nil, "consistency=session only"},
		{"session=1.1.1", nil, "consistency=session only"},
		{"consistency=bounded", nil, "needs max_lag"},
		{"consistency=bounded&max_lag=soon", nil, "max_lag="},
		{"consistency=bounded&max_lag=-1s", nil, "max_lag="},
		{"consistency=bounded&max_lag=0s", nil, "max_lag="},
		{"consistency=bounded&max_lag_entries=-1", nil, "max_lag_entries="},
		{"consistency=bounded&max_lag_entries=0", nil, "max_lag_entries="},
		{"consistency=bounded&max_lag_entries=x", nil, "max_lag_entries="},
		{"consistency=stale&max_lag=1s", nil, "consistency=bounded only"},
		{"max_lag_entries=1", nil, "consistency=bounded only"},
		{"consistency=bounded&max_lag=1s&max_lag=2s", nil, "more than once"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, b, _ := mustDoH(t, srv.Client(), "GET", srv.URL+"/v1/kv/k?"+tc.query, nil, tc.headers...)
			if code != http.StatusBadRequest {
				t.Fatalf("code %d, want 400: %s", code, b)
			}
			if e, _ := mustJSON(t, b)["error"].(string); !strings.Contains(e, tc.mention) {
				t.Fatalf("error %q should mention %q", e, tc.mention)
			}
		})
	}
}

// A write with a session token (header or session=) passes it to the
// service, which refuses the write if the session lost an earlier one.
func TestSessionWrite(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	for _, tc := range []struct {
		path    string
		headers []string
	}{
		{"/v1/kv/k?session=1.1.7", nil},
		{"/v1/kv/k", []string{SessionHeader + ": 1.1.7"}},
	} {
		code, b, _ := mustDoH(t, c, "PUT", srv.URL+tc.path, []byte("v"), tc.headers...)
		if w, _ := f.LastWrite(); code != 200 || w.Session != (api.Token{Term: 1, Index: 7}) {
			t.Fatalf("PUT %s %v: %d %s, the service got %+v", tc.path, tc.headers, code, b, w)
		}
	}
	if code, b, _ := mustDoH(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"), SessionHeader+": bogus"); code != http.StatusBadRequest {
		t.Fatalf("a bad token on a write: %d %s", code, b)
	}
	f.FailNext(api.ErrRolledBack)
	if code, b, _ := mustDoH(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"), SessionHeader+": 1.1.7"); code != http.StatusConflict {
		t.Fatalf("a session write after a lost one: %d %s, want 409", code, b)
	}
}
