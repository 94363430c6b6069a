package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/command"
)

// mustDoH is mustDo with request headers, each "Name: value".
func mustDoH(t *testing.T, c *http.Client, method, u string, body []byte, headers ...string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(name, strings.TrimSpace(value))
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

// mustValue checks the Fake's value of key.
func mustValue(t *testing.T, f *apitest.Fake, key, want string) {
	t.Helper()
	if v, ok := f.Value(key); !ok || string(v) != want {
		t.Fatalf("value of %q: %q %v, want %q", key, v, ok, want)
	}
}

func TestIncr(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	for _, tc := range []struct {
		query string
		want  float64
	}{
		{"op=incr", 1},
		{"op=incr&by=5", 6},
		{"op=incr&by=-10", -4},
		{"by=0&op=incr", -4},
	} {
		code, b, h := mustDo(t, c, "POST", srv.URL+"/v1/kv/n?"+tc.query, nil)
		m := mustJSON(t, b)
		if code != 200 || m["value"] != tc.want || m["session"] == nil || h.Get(SessionHeader) != m["session"] {
			t.Fatalf("POST ?%s: %d %s, want value %v with a session", tc.query, code, b, tc.want)
		}
	}
	mustValue(t, f, "n", "-4")
	if cmd := f.LastCommand(); cmd.Op != command.OpIncr || cmd.Delta != 0 || cmd.IdemKey != nil {
		t.Fatalf("last command %+v", cmd)
	}

	// A value that is not an integer, and an overflow: 409, nothing changed.
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/s", []byte("abc"))
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/big", []byte("9223372036854775807"))
	for _, tc := range []struct{ path, mention, value string }{
		{"/v1/kv/s?op=incr", api.ErrNotInteger.Error(), "abc"},
		{"/v1/kv/big?op=incr", api.ErrOverflow.Error(), "9223372036854775807"},
	} {
		code, b, h := mustDo(t, c, "POST", srv.URL+tc.path, nil)
		m := mustJSON(t, b)
		if code != http.StatusConflict || !strings.Contains(m["error"].(string), tc.mention) || m["session"] == nil || h.Get(SessionHeader) == "" {
			t.Fatalf("POST %s: %d %s, want 409 naming %q, with a session", tc.path, code, b, tc.mention)
		}
		mustValue(t, f, strings.TrimPrefix(strings.Split(tc.path, "?")[0], "/v1/kv/"), tc.value)
	}
}

func TestAppend(t *testing.T) {
	f := apitest.NewFake("n2")
	f.SetMaxValueBytes(6)
	srv := mustServer(t, f)
	c := srv.Client()
	for _, tc := range []struct {
		body string
		want float64
	}{{"ab", 2}, {"", 2}, {"cd", 4}} {
		code, b, _ := mustDo(t, c, "POST", srv.URL+"/v1/kv/a?op=append", []byte(tc.body))
		if m := mustJSON(t, b); code != 200 || m["length"] != tc.want || m["value"] != nil {
			t.Fatalf("append %q: %d %s, want length %v", tc.body, code, b, tc.want)
		}
	}
	mustValue(t, f, "a", "abcd")
	// Past the value limit: 413, nothing changed.
	code, b, _ := mustDo(t, c, "POST", srv.URL+"/v1/kv/a?op=append", []byte("efg"))
	if m := mustJSON(t, b); code != http.StatusRequestEntityTooLarge || m["session"] == nil {
		t.Fatalf("append past the limit: %d %s", code, b)
	}
	mustValue(t, f, "a", "abcd")
}

func TestCompareAndSet(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	u := srv.URL + "/v1/kv/k"

	// 0: the key must not exist.
	if code, b, _ := mustDoH(t, c, "PUT", u, []byte("v1"), "If-Match: 0"); code != 200 {
		t.Fatalf("create with If-Match 0: %d %s", code, b)
	}
	if cmd := f.LastCommand(); cmd.Op != command.OpSet || cmd.Cond != command.CondIndex || cmd.IfIndex != 0 {
		t.Fatalf("command %+v", cmd)
	}
	for _, tc := range []struct {
		method, query string
		headers       []string
	}{
		{"PUT", "", []string{"If-Match: 0"}},
		{"PUT", "?if_index=7", nil},
		{"DELETE", "", []string{`If-Match: "9"`}},
		{"POST", "?op=incr&if_index=2", nil},
	} {
		code, b, h := mustDoH(t, c, tc.method, u+tc.query, nil, tc.headers...)
		m := mustJSON(t, b)
		if code != http.StatusPreconditionFailed || m["index"] != 1.0 || h.Get(IndexHeader) != "1" ||
			!strings.Contains(m["error"].(string), api.ErrConditionFailed.Error()) || m["session"] == nil {
			t.Fatalf("%s%s %v: %d %s %v, want 412 with index 1", tc.method, tc.query, tc.headers, code, b, h)
		}
	}
	mustValue(t, f, "k", "v1")
	// The current index, bare, quoted or as a parameter.
	if code, b, _ := mustDoH(t, c, "PUT", u, []byte("v2"), `If-Match: "1"`); code != 200 {
		t.Fatalf("PUT with the current index quoted: %d %s", code, b)
	}
	if code, b, _ := mustDo(t, c, "POST", u+"?if_index=6", []byte("v3")); code != 200 || mustJSON(t, b)["index"] != 7.0 {
		t.Fatalf("POST with the current index: %d %s", code, b)
	}
	if code, b, _ := mustDoH(t, c, "DELETE", u, nil, "If-Match: 7"); code != 200 {
		t.Fatalf("DELETE with the current index: %d %s", code, b)
	}
	if _, ok := f.Value("k"); ok {
		t.Fatal("the key survived its conditional delete")
	}
	if code, b, _ := mustDoH(t, c, "PUT", u, []byte("v1"), "If-Match: 7"); code != 412 || mustJSON(t, b)["index"] != 0.0 {
		t.Fatalf("PUT of an absent key with an index: %d %s, want 412 with index 0", code, b)
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	put := func(value string) (int, map[string]any, http.Header) {
		code, b, h := mustDoH(t, c, "PUT", srv.URL+"/v1/kv/k", []byte(value), "Idempotency-Key: write-1")
		return code, mustJSON(t, b), h
	}
	code, first, h := put("a")
	if code != 200 || first["duplicate"] != nil || h.Get(ReplayedHeader) != "" {
		t.Fatalf("first write: %d %v %v", code, first, h)
	}
	if cmd := f.LastCommand(); string(cmd.IdemKey) != "write-1" || cmd.Op != command.OpSet || cmd.Cond != command.CondNone {
		t.Fatalf("command %+v", cmd)
	}
	code, again, h := put("b")
	if code != 200 || again["duplicate"] != true || h.Get(ReplayedHeader) != "true" || again["index"] != first["index"] {
		t.Fatalf("retry: %d %v %v, want the first reply (index %v) marked duplicate", code, again, h, first["index"])
	}
	mustValue(t, f, "k", "a")

	// An increment retried is applied once, and answers the first value.
	for range 2 {
		code, b, _ := mustDoH(t, c, "POST", srv.URL+"/v1/kv/n?op=incr&by=3", nil, "Idempotency-Key: incr-1")
		if m := mustJSON(t, b); code != 200 || m["value"] != 3.0 {
			t.Fatalf("incr: %d %s", code, b)
		}
	}
	mustValue(t, f, "n", "3")
	// A delete.
	if code, b, _ := mustDoH(t, c, "DELETE", srv.URL+"/v1/kv/k", nil, "Idempotency-Key: del-1"); code != 200 {
		t.Fatalf("delete: %d %s", code, b)
	}
	if cmd := f.LastCommand(); cmd.Op != command.OpDelete || string(cmd.IdemKey) != "del-1" {
		t.Fatalf("command %+v", cmd)
	}
	// A key at the limit is taken.
	long := strings.Repeat("x", command.MaxIdemKey)
	if code, b, _ := mustDoH(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"), "Idempotency-Key: "+long); code != 200 {
		t.Fatalf("key of %d bytes: %d %s", len(long), code, b)
	}
}

// A PUT or DELETE without a condition, op or idempotency key is a plain
// Put or Delete, not a command.
func TestPlainWritesStayPlain(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/v1/kv/a?ack=majority"}, {"POST", "/v1/kv/b"}, {"DELETE", "/v1/kv/a"},
	} {
		code, b, h := mustDo(t, c, tc.method, srv.URL+tc.path, []byte("v"))
		if m := mustJSON(t, b); code != 200 || m["session"] == nil || h.Get(SessionHeader) != m["session"] {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, code, b)
		}
	}
	if cmd := f.LastCommand(); cmd != nil {
		t.Fatalf("a plain write went through Exec: %+v", cmd)
	}
	if _, n := f.LastWrite(); n != 3 {
		t.Fatalf("%d writes, want 3", n)
	}
}

// Bad commands, conditions and keys are 400s that name what is wrong, and
// never reach the service.
func TestBadCommands(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	tooLong := strings.Repeat("k", command.MaxIdemKey+1)
	for _, tc := range []struct {
		method, path string
		body         string
		headers      []string
		mention      string
	}{
		{"POST", "/v1/kv/k?op=decr", "", nil, "op="},
		{"POST", "/v1/kv/k?op=", "", nil, `"op"`},
		{"POST", "/v1/kv/k?op=incr&by=x", "", nil, "by="},
		{"POST", "/v1/kv/k?op=incr&by=1.5", "", nil, "by="},
		{"POST", "/v1/kv/k?op=incr&by=9223372036854775808", "", nil, "by="},
		{"POST", "/v1/kv/k?by=2", "", nil, "op=incr only"},
		{"POST", "/v1/kv/k?op=append&by=2", "", nil, "op=incr only"},
		{"POST", "/v1/kv/k?op=incr", "body", nil, "no body"},
		{"PUT", "/v1/kv/k?op=incr", "", nil, `"op"`},
		{"DELETE", "/v1/kv/k?by=1", "", nil, `"by"`},
		{"PUT", "/v1/kv/k?if_index=x", "v", nil, "if_index"},
		{"PUT", "/v1/kv/k?if_index=-1", "v", nil, "if_index"},
		{"DELETE", "/v1/kv/k", "", []string{"If-Match: *"}, "If-Match"},
		{"DELETE", "/v1/kv/k", "", []string{`If-Match: W/"1"`}, "If-Match"},
		{"PUT", "/v1/kv/k", "v", []string{"If-Match: 1, 2"}, "If-Match"},
		{"PUT", "/v1/kv/k", "v", []string{"If-Match: 1", "If-Match: 1"}, "more than once"},
		{"PUT", "/v1/kv/k?if_index=1", "v", []string{"If-Match: 1"}, "not both"},
		{"PUT", "/v1/kv/k", "v", []string{"Idempotency-Key: " + tooLong}, "at most 256"},
		{"POST", "/v1/kv/k?op=incr", "", []string{"Idempotency-Key: a", "Idempotency-Key: b"}, "more than once"},
		{"DELETE", "/v1/kv/k", "", []string{"Idempotency-Key: "}, "empty"},
	} {
		t.Run(tc.method+" "+tc.path+" "+strings.Join(tc.headers, ","), func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			code, b, _ := mustDoH(t, srv.Client(), tc.method, srv.URL+tc.path, body, tc.headers...)
			if code != http.StatusBadRequest {
				t.Fatalf("code %d, want 400: %s", code, b)
			}
			if e, _ := mustJSON(t, b)["error"].(string); !strings.Contains(e, tc.mention) {
				t.Fatalf("error %q should mention %q", e, tc.mention)
			}
		})
	}
	if _, n := f.LastWrite(); n != 0 || f.LastCommand() != nil {
		t.Fatalf("bad requests reached the service: %d writes, command %+v", n, f.LastCommand())
	}
}
