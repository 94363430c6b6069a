package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/auth"
)

// authFixture is a server with auth on: one token per role.
type authFixture struct {
	url    string
	tokens map[string]string // role name -> token
	auth   *auth.Authenticator
}

const testDefaultPassword = "a-default-password-long-enough"

func mustAuthServer(t *testing.T, openMetrics bool) authFixture {
	t.Helper()
	fx := authFixture{tokens: map[string]string{}}
	var lines []string
	for _, r := range []auth.Role{auth.RoleRead, auth.RoleWrite, auth.RoleAdmin} {
		tok, d, err := auth.NewToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		fx.tokens[r.String()] = tok
		lines = append(lines, auth.UserLine("u-"+r.String(), r, ""), auth.TokenLine("u-"+r.String(), d, ""))
	}
	users, err := auth.ParseUsers(strings.NewReader(strings.Join(lines, "\n")), "users")
	if err != nil {
		t.Fatal(err)
	}
	acfg := auth.DefaultConfig()
	acfg.Users = users
	if fx.auth, err = auth.New(acfg); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Auth, cfg.OpenMetrics = fx.auth, openMetrics
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "m 1\n") })
	h, err := NewHandler(apitest.NewFake("n2", "n3"), metrics, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	fx.url = srv.URL
	return fx
}

func mustDoAuth(t *testing.T, method, u, authz string, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAuthRoles(t *testing.T) {
	fx := mustAuthServer(t, false)
	type req struct{ method, path, body string }
	put := req{"PUT", "/v1/kv/k", "v"}
	post := req{"POST", "/v1/kv/k", "v"}
	del := req{"DELETE", "/v1/kv/k", ""}
	get := req{"GET", "/v1/kv/k", ""}
	status := req{"GET", "/v1/status", ""}
	rollbacks := req{"GET", "/v1/rollbacks", ""}
	conflicts := req{"GET", "/v1/conflicts?limit=5", ""}
	metrics := req{"GET", "/metrics", ""}
	transfer := req{"POST", "/v1/leader/transfer?to=n2", ""}
	missing := req{"GET", "/nope", ""}
	// Expected status by role; "" is no credentials.
	tests := []struct {
		r    req
		want map[string]int
	}{
		// put first, so that get finds the key.
		{put, map[string]int{"": 401, "read": 403, "write": 200, "admin": 200}},
		{post, map[string]int{"": 401, "read": 403, "write": 200, "admin": 200}},
		{get, map[string]int{"": 401, "read": 200, "write": 200, "admin": 200}},
		{status, map[string]int{"": 401, "read": 200, "write": 200, "admin": 200}},
		{rollbacks, map[string]int{"": 401, "read": 200, "write": 200, "admin": 200}},
		{conflicts, map[string]int{"": 401, "read": 200, "write": 200, "admin": 200}},
		{metrics, map[string]int{"": 401, "read": 200, "write": 200, "admin": 200}},
		{missing, map[string]int{"": 401, "read": 404, "write": 404, "admin": 404}},
		{del, map[string]int{"": 401, "read": 403, "write": 200, "admin": 200}},
		// Last: the node hands leadership away.
		{transfer, map[string]int{"": 401, "read": 403, "write": 403, "admin": 200}},
	}
	for _, tc := range tests {
		for _, role := range []string{"", "read", "write", "admin"} {
			t.Run(tc.r.method+" "+tc.r.path+" as "+role, func(t *testing.T) {
				authz := ""
				if role != "" {
					authz = "Bearer " + fx.tokens[role]
				}
				code, body, hdr := mustDoAuth(t, tc.r.method, fx.url+tc.r.path, authz, tc.r.body)
				if code != tc.want[role] {
					t.Fatalf("%d %s, want %d", code, body, tc.want[role])
				}
				switch code {
				case 401:
					if hdr.Get("WWW-Authenticate") != `Bearer realm="trireme"` || !strings.Contains(body, "Authorization: Bearer") {
						t.Fatalf("401 without a challenge: %q %s", hdr.Get("WWW-Authenticate"), body)
					}
				case 403:
					if !strings.Contains(hdr.Get("WWW-Authenticate"), "insufficient_scope") || !strings.Contains(body, "has role read") && !strings.Contains(body, "has role write") {
						t.Fatalf("403: %q %s", hdr.Get("WWW-Authenticate"), body)
					}
				}
			})
		}
	}
	if f := fx.auth.Failures()["http"]; f["no_credentials"] != uint64(len(tests)) || f["forbidden"] != 5 {
		t.Fatalf("failures %v", f)
	}
}

func TestAuthBadCredentials(t *testing.T) {
	fx := mustAuthServer(t, false)
	forged := fx.tokens["admin"][:len(fx.tokens["admin"])-2] + "zz"
	tests := []struct {
		name, authz, mention, challenge string
	}{
		{"forged token", "Bearer " + forged, "not valid", `Bearer realm="trireme", error="invalid_token"`},
		{"password", "Bearer hunter2", "not valid", `Bearer realm="trireme", error="invalid_token"`},
		{"empty bearer", "Bearer ", "authentication required", `Bearer realm="trireme"`},
		{"basic", "Basic dTpw", "only", `Bearer realm="trireme"`},
		{"scheme only", "Bearer", "authentication required", `Bearer realm="trireme"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := mustDoAuth(t, "GET", fx.url+"/v1/status", tc.authz, "")
			if code != 401 || !strings.Contains(body, tc.mention) || hdr.Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("%d %s %q", code, body, hdr.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, forged) {
				t.Fatal("reply echoes the credential")
			}
		})
	}
	// The scheme is case-insensitive (RFC 7235); the token is not.
	if code, body, _ := mustDoAuth(t, "GET", fx.url+"/v1/status", "bearer "+fx.tokens["read"], ""); code != 200 {
		t.Fatalf("lower-case scheme: %d %s", code, body)
	}
	// Two Authorization headers are refused.
	req, _ := http.NewRequest("GET", fx.url+"/v1/status", nil)
	req.Header.Add("Authorization", "Bearer "+fx.tokens["read"])
	req.Header.Add("Authorization", "Bearer "+fx.tokens["admin"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("two headers: %d", resp.StatusCode)
	}
}

// TestAuthBeforeValidation: a client without credentials learns nothing
// from the node, not even that its request was malformed.
func TestAuthBeforeValidation(t *testing.T) {
	fx := mustAuthServer(t, false)
	for _, u := range []string{"/v1/kv/" + strings.Repeat("k", 70<<10), "/v1/kv/k?acks=1", "/v1/kv/"} {
		code, _, _ := mustDoAuth(t, "PUT", fx.url+u, "", "v")
		if code != 401 {
			t.Fatalf("%.40s: %d, want 401", u, code)
		}
		// A reader asking to write gets 403 before any validation, too.
		code, _, _ = mustDoAuth(t, "PUT", fx.url+u, "Bearer "+fx.tokens["read"], "v")
		if code != 403 {
			t.Fatalf("%.40s as reader: %d, want 403", u, code)
		}
	}
}

func TestAuthOpenMetricsAndDefaultPassword(t *testing.T) {
	fx := mustAuthServer(t, true)
	if code, body, _ := mustDoAuth(t, "GET", fx.url+"/metrics", "", ""); code != 200 || body != "m 1\n" {
		t.Fatalf("open metrics: %d %s", code, body)
	}
	if code, _, _ := mustDoAuth(t, "GET", fx.url+"/v1/status", "", ""); code != 401 {
		t.Fatalf("status with open metrics: %d", code)
	}

	acfg := auth.DefaultConfig()
	acfg.DefaultPassword = testDefaultPassword
	a, err := auth.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Auth = a
	h, err := NewHandler(apitest.NewFake("n2"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if code, body, _ := mustDoAuth(t, "POST", srv.URL+"/v1/leader/transfer?to=n2", "Bearer "+testDefaultPassword, ""); code != 200 {
		t.Fatalf("default password transfers (admin): %d %s", code, body)
	}
	if code, _, _ := mustDoAuth(t, "GET", srv.URL+"/v1/status", "Bearer "+testDefaultPassword+"x", ""); code != 401 {
		t.Fatalf("wrong default password: %d", code)
	}
}

// TestNoAuthIsOpen: without credentials configured, a nil Authenticator or
// a disabled one, nothing changes, whatever the request carries.
func TestNoAuthIsOpen(t *testing.T) {
	disabled, err := auth.New(auth.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var nilAuth *auth.Authenticator
	for name, a := range map[string]Authenticator{"nil": nil, "nil pointer": nilAuth, "disabled": disabled} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Auth = a
			h, err := NewHandler(apitest.NewFake("n2"), nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			for _, authz := range []string{"", "Bearer junk", "Basic dTpw"} {
				if code, body, hdr := mustDoAuth(t, "PUT", srv.URL+"/v1/kv/k", authz, "v"); code != 200 || hdr.Get("WWW-Authenticate") != "" {
					t.Fatalf("put with %q: %d %s", authz, code, body)
				}
			}
			if code, _, _ := mustDoAuth(t, "POST", srv.URL+"/v1/leader/transfer?to=n2", "Bearer junk", ""); code != 200 {
				t.Fatalf("transfer: %d", code)
			}
		})
	}
}

func TestAuthMembers(t *testing.T) {
	fx := mustAuthServer(t, false)
	tests := []struct {
		method, path, body string
		want               map[string]int // by role; "" is no credentials
	}{
		{"GET", "/v1/members", "", map[string]int{"": 401, "read": 200, "write": 200, "admin": 200}},
		{"POST", "/v1/members", `{"id":"n4","peer":"127.0.0.1:7004","role":"learner"}`,
			map[string]int{"": 401, "read": 403, "write": 403, "admin": 200}},
		{"POST", "/v1/members/n4/promote", "", map[string]int{"": 401, "read": 403, "write": 403, "admin": 200}},
		{"DELETE", "/v1/members/n4", "", map[string]int{"": 401, "read": 403, "write": 403, "admin": 200}},
		// Requests that get 405 or 404 need read only.
		{"POST", "/v1/members/n4", "", map[string]int{"": 401, "read": 405, "write": 405, "admin": 405}},
		{"DELETE", "/v1/members/n4/x", "", map[string]int{"": 401, "read": 404, "write": 404, "admin": 404}},
		{"DELETE", "/v1/members", "", map[string]int{"": 401, "read": 405, "write": 405, "admin": 405}},
	}
	for _, tc := range tests {
		for _, role := range []string{"", "read", "write", "admin"} {
			t.Run(tc.method+" "+tc.path+" as "+role, func(t *testing.T) {
				authz := ""
				if role != "" {
					authz = "Bearer " + fx.tokens[role]
				}
				code, body, _ := mustDoAuth(t, tc.method, fx.url+tc.path, authz, tc.body)
				if code != tc.want[role] {
					t.Fatalf("%d %s, want %d", code, body, tc.want[role])
				}
				if code == 403 && !strings.Contains(body, "admin") {
					t.Fatalf("403 should name the role needed: %s", body)
				}
			})
		}
	}
}
