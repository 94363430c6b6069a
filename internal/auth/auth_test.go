package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// testCost keeps bcrypt fast in tests; the production default is DefaultCost.
const testCost = bcrypt.MinCost

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := HashPassword(pw, testCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustToken(t *testing.T) (string, [sha256.Size]byte) {
	t.Helper()
	tok, d, err := NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok, d
}

// fixture is a users file with one user per role, a token-only user, and
// the tokens and passwords that go with them.
type fixture struct {
	text   string
	tokens map[string]string // user -> token
}

func mustFixture(t *testing.T) fixture {
	t.Helper()
	f := fixture{tokens: map[string]string{}}
	var b strings.Builder
	b.WriteString("# test users\n\n")
	for _, u := range []struct {
		name string
		role Role
		pw   string
	}{{"reader", RoleRead, "reader-pw"}, {"writer", RoleWrite, "writer-pw"}, {"admin", RoleAdmin, "admin-pw"}, {"ci", RoleWrite, ""}} {
		h := ""
		if u.pw != "" {
			h = mustHash(t, u.pw)
		}
		b.WriteString(UserLine(u.name, u.role, h) + "\n")
		tok, d := mustToken(t)
		f.tokens[u.name] = tok
		b.WriteString("   " + TokenLine(u.name, d, u.name+"-token") + "   \n")
	}
	f.text = b.String()
	return f
}

func mustAuth(t *testing.T, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustParse(t *testing.T, text string) *Users {
	t.Helper()
	u, err := ParseUsers(strings.NewReader(text), "users.txt")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseUsersErrors(t *testing.T) {
	h := mustHash(t, "pw")
	_, d := mustToken(t)
	tl := TokenLine("bob", d, "")
	tests := []struct {
		name, text string
		line       int
		mention    string
		is         error
	}{
		{"unknown record", "# c\ngroup x\n", 2, "unknown record", ErrUsersFile},
		{"few fields", "user bob read\n", 1, "user NAME ROLE HASH", ErrUsersFile},
		{"many fields", "user bob read " + h + " extra\n", 1, "got 5 fields", ErrUsersFile},
		{"bad role", "\n\nuser bob root " + h + "\n", 3, "read, write or admin", ErrBadRole},
		{"bad name", "user -bob read -\n", 1, "starting with a letter", ErrBadName},
		{"not bcrypt", "user bob read plaintext\n", 1, "trireme users add bob", ErrBadHash},
		{"duplicate user", "user bob read -\n#\nuser bob write -\n", 3, "already defined on line 1", ErrUsersFile},
		{"token bad hex", "user bob read -\ntoken bob zz\n", 2, "64 hex digits", ErrBadHash},
		{"token short digest", "user bob read -\ntoken bob abcd\n", 2, "64 hex digits", ErrBadHash},
		{"token of nobody", "user ann read -\n" + tl + "\n", 2, `user "bob", who has no user line`, ErrUsersFile},
		{"duplicate token", "user bob read -\n" + tl + "\n" + tl + " again\n", 3, "already listed on line 2", ErrUsersFile},
		{"token fields", "user bob read -\ntoken bob\n", 2, "token NAME SHA256-HEX", ErrUsersFile},
		{"bad label", "user bob read -\n" + tl + " a/b\n", 2, "token label", ErrBadName},
		{"long line", "user bob read -\n" + strings.Repeat("x", 5000) + "\n", 2, "too long", ErrUsersFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseUsers(strings.NewReader(tc.text), "users.txt")
			if err == nil {
				t.Fatal("parsed")
			}
			want := "users.txt line " + strconv.Itoa(tc.line) + ":"
			if !errors.Is(err, ErrUsersFile) || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q: want %v, %q and %q", err, tc.is, want, tc.mention)
			}
		})
	}
}

func TestParseUsersOrderIndependentAndLookup(t *testing.T) {
	_, d := mustToken(t)
	u := mustParse(t, TokenLine("bob", d, "")+"\nuser bob write -\n")
	if len(u.Users) != 1 || len(u.Tokens) != 1 || u.Tokens[0].Line != 1 || u.Users[0].Line != 2 {
		t.Fatalf("%+v", u)
	}
	if b, ok := u.Lookup("bob"); !ok || b.Role != RoleWrite || b.Hash != nil {
		t.Fatalf("lookup bob: %+v %v", b, ok)
	}
	if _, ok := u.Lookup("ann"); ok {
		t.Fatal("found ann")
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		role  Role
		allow map[Action]bool
	}{
		{RoleNone, map[Action]bool{ActionRead: false, ActionWrite: false, ActionAdmin: false}},
		{RoleRead, map[Action]bool{ActionRead: true, ActionWrite: false, ActionAdmin: false}},
		{RoleWrite, map[Action]bool{ActionRead: true, ActionWrite: true, ActionAdmin: false}},
		{RoleAdmin, map[Action]bool{ActionRead: true, ActionWrite: true, ActionAdmin: true, Action(99): false}},
	}
	for _, tc := range tests {
		t.Run(tc.role.String(), func(t *testing.T) {
			for a, want := range tc.allow {
				if got := tc.role.Allows(a); got != want {
					t.Errorf("%s allows %s = %v, want %v", tc.role, a, got, want)
				}
			}
		})
	}
	for _, s := range []string{"read", "write", "admin"} {
		if r, err := ParseRole(s); err != nil || r.String() != s {
			t.Fatalf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	for _, s := range []string{"none", "", "Admin", "root"} {
		if _, err := ParseRole(s); !errors.Is(err, ErrBadRole) {
			t.Fatalf("ParseRole(%q): %v", s, err)
		}
	}
}

func TestCheckPasswords(t *testing.T) {
	f := mustFixture(t)
	cfg := DefaultConfig()
	cfg.Users = mustParse(t, f.text)
	a := mustAuth(t, cfg)
	ctx := context.Background()
	tests := []struct {
		name, user, secret string
		want               Principal
		err                error
	}{
		{"reader", "reader", "reader-pw", Principal{User: "reader", Role: RoleRead}, nil},
		{"writer", "writer", "writer-pw", Principal{User: "writer", Role: RoleWrite}, nil},
		{"admin", "admin", "admin-pw", Principal{User: "admin", Role: RoleAdmin}, nil},
		{"wrong password", "admin", "reader-pw", Principal{}, ErrBadCredentials},
		{"password prefix", "admin", "admin-p", Principal{}, ErrBadCredentials},
		{"unknown user", "mallory", "admin-pw", Principal{}, ErrBadCredentials},
		{"no default user", "", "admin-pw", Principal{}, ErrBadCredentials},
		{"token-only user", "ci", "anything", Principal{}, ErrBadCredentials},
		{"empty password", "admin", "", Principal{}, ErrNoCredentials},
		{"too long", "admin", "admin-pw" + strings.Repeat("x", 80), Principal{}, ErrBadCredentials},
		{"token as password", "ci", f.tokens["ci"], Principal{User: "ci", Role: RoleWrite, Token: "ci-token"}, nil},
		{"token alone", "", f.tokens["admin"], Principal{User: "admin", Role: RoleAdmin, Token: "admin-token"}, nil},
		{"token of another user", "admin", f.tokens["reader"], Principal{}, ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Check(ctx, Credentials{User: tc.user, Secret: tc.secret, Remote: "10.0.0.1:5000", Proto: "resp"})
			if p != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("Check = %+v, %v; want %+v, %v", p, err, tc.want, tc.err)
			}
		})
	}
	got := a.Failures()["resp"]
	want := map[string]uint64{reasonBadPassword: 3, reasonUnknownUser: 2, reasonNoPassword: 1, reasonNoCredentials: 1, reasonTokenUser: 1}
	for r, n := range want {
		if got[r] != n {
			t.Errorf("failures[%s] = %d, want %d (all: %v)", r, got[r], n, got)
		}
	}
}

func TestCheckBearer(t *testing.T) {
	f := mustFixture(t)
	cfg := DefaultConfig()
	cfg.Users = mustParse(t, f.text)
	a := mustAuth(t, cfg)
	p, err := a.CheckBearer(Credentials{Secret: f.tokens["writer"], Proto: "http"})
	if err != nil || p != (Principal{User: "writer", Role: RoleWrite, Token: "writer-token"}) {
		t.Fatalf("writer token: %+v %v", p, err)
	}
	// The user is ignored: a bearer credential names its own user.
	if p, err := a.CheckBearer(Credentials{User: "admin", Secret: f.tokens["reader"], Proto: "http"}); err != nil || p.User != "reader" {
		t.Fatalf("reader token: %+v %v", p, err)
	}
	forged := f.tokens["writer"][:len(f.tokens["writer"])-1] + "A"
	if forged == f.tokens["writer"] {
		forged = f.tokens["writer"][:len(f.tokens["writer"])-1] + "B"
	}
	for name, secret := range map[string]string{
		"forged token": forged,
		"password":     "writer-pw", // passwords are for AUTH: bearer never runs bcrypt
		"prefix only":  TokenPrefix,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := a.CheckBearer(Credentials{Secret: secret, Proto: "http"}); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("CheckBearer: %v", err)
			}
		})
	}
	if _, err := a.CheckBearer(Credentials{Proto: "http"}); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no secret: %v", err)
	}
}

func TestDefaultPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	cfg := DefaultConfig()
	cfg.DefaultPassword = pw
	a := mustAuth(t, cfg)
	ctx := context.Background()
	want := Principal{User: DefaultUser, Role: RoleAdmin}
	for _, c := range []Credentials{{Secret: pw}, {User: "default", Secret: pw}} {
		if p, err := a.Check(ctx, c); err != nil || p != want {
			t.Fatalf("Check(%q) = %+v, %v", c.User, p, err)
		}
	}
	if p, err := a.CheckBearer(Credentials{Secret: pw}); err != nil || p != want {
		t.Fatalf("CheckBearer = %+v, %v", p, err)
	}
	for _, c := range []Credentials{{Secret: pw + "x"}, {User: "default", Secret: "nope"}, {User: "other", Secret: pw}} {
		if _, err := a.Check(ctx, c); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("Check(%q, wrong) = %v", c.User, err)
		}
	}
	if _, err := a.CheckBearer(Credentials{Secret: "nope"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	users := mustParse(t, "user default admin -\n")
	tests := []struct {
		name    string
		mod     func(*Config)
		mention string
	}{
		{"short default password", func(c *Config) { c.DefaultPassword = "short" }, "DefaultPassword is 5 bytes"},
		{"default twice", func(c *Config) { c.DefaultPassword = strings.Repeat("p", 20); c.Users = users }, `users.txt line 1 also defines the user "default"`},
		{"token as password", func(c *Config) { tok, _ := mustToken(t); c.DefaultPassword = tok }, "form of an API token"},
		{"hashes", func(c *Config) { c.MaxConcurrentHashes = 0 }, "MaxConcurrentHashes"},
		{"logs", func(c *Config) { c.MaxLogsPerSecond = 0 }, "MaxLogsPerSecond"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			if _, err := New(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("New: %v; want %q", err, tc.mention)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	var nilAuth *Authenticator
	a := mustAuth(t, DefaultConfig())
	for _, x := range []*Authenticator{nilAuth, a} {
		if x.Enabled() {
			t.Fatal("enabled without credentials")
		}
		if _, err := x.Check(context.Background(), Credentials{Secret: "pw"}); !errors.Is(err, ErrNotEnabled) {
			t.Fatal(err)
		}
		if _, err := x.CheckBearer(Credentials{Secret: "pw"}); !errors.Is(err, ErrNotEnabled) {
			t.Fatal(err)
		}
	}
	if err := nilAuth.Denied(Principal{User: "u", Role: RoleRead}, ActionWrite, Credentials{}); !errors.Is(err, ErrForbidden) {
		t.Fatal(err)
	}
}

// TestUnknownUserCostsABcrypt checks that an unknown user, a user without
// a password, and a wrong password all go through one bcrypt comparison at
// the users' cost, which is what hides whether a user exists. It counts
// the comparisons through the semaphore instead of timing them.
func TestUnknownUserCostsABcrypt(t *testing.T) {
	const cost = bcrypt.MinCost + 1
	h, err := HashPassword("pw", cost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Users = mustParse(t, UserLine("bob", RoleRead, h)+"\n"+UserLine("ci", RoleRead, "")+"\n")
	cfg.MaxConcurrentHashes = 1
	a := mustAuth(t, cfg)
	if c, _ := bcrypt.Cost(a.decoy); c != cost {
		t.Fatalf("decoy cost %d, want the users' %d", c, cost)
	}
	for _, user := range []string{"bob", "nobody", "ci"} {
		t.Run(user, func(t *testing.T) {
			// Hold the only slot: a check that hashes must wait for it.
			a.hash <- struct{}{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := a.Check(ctx, Credentials{User: user, Secret: "wrong"})
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("check of %s did not wait for a hashing slot: %v", user, err)
			case <-time.After(50 * time.Millisecond):
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("check of %s after cancel: %v", user, err)
			}
			<-a.hash
			if _, err := a.Check(context.Background(), Credentials{User: user, Secret: "wrong"}); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("check of %s: %v", user, err)
			}
		})
	}
}

func TestFailureLogsNeverHoldSecrets(t *testing.T) {
	f := mustFixture(t)
	var buf bytes.Buffer
	cfg := DefaultConfig()
	cfg.Users = mustParse(t, f.text)
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := time.Unix(1000, 0)
	cfg.Now = func() time.Time { return now }
	cfg.MaxLogsPerSecond = 2
	a := mustAuth(t, cfg)
	secrets := []string{"hunter2-secret", f.tokens["admin"] + "x", f.tokens["admin"]}
	_, _ = a.Check(context.Background(), Credentials{User: "admin", Secret: secrets[0], Remote: "192.0.2.7:4242", Proto: "resp"})
	_, _ = a.CheckBearer(Credentials{Secret: secrets[1], Remote: "192.0.2.8:80", Proto: "http"})
	_, _ = a.Check(context.Background(), Credentials{User: "hunter2-secret!", Secret: "x", Proto: "resp"}) // over the limit
	_, _ = a.CheckBearer(Credentials{Secret: secrets[2], Proto: "http"})                                   // success, Debug
	now = now.Add(time.Second)
	_ = a.Denied(Principal{User: "reader", Role: RoleRead}, ActionWrite, Credentials{Remote: "192.0.2.9:1", Proto: "http"})
	out := buf.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("log holds a secret %q:\n%s", s, out)
		}
	}
	for _, want := range []string{"remote=192.0.2.7:4242", "reason=bad_password", "remote=192.0.2.8:80", "reason=bad_token",
		"permission denied", "action=write", "not_logged_before=1", "level=INFO"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("log holds a user name that was not a user name:\n%s", out)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "trireme_auth_failures_total" {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	got := map[string]float64{}
	for _, m := range mfs[0].GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		got[strings.Join(labels, ",")] = m.GetCounter().GetValue()
	}
	want := map[string]float64{"proto=http,reason=bad_token": 1, "proto=http,reason=forbidden": 1,
		"proto=resp,reason=bad_password": 1, "proto=resp,reason=unknown_user": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("trireme_auth_failures_total = %v, want %v", got, want)
	}
}

func TestTokens(t *testing.T) {
	tok, d, err := NewToken(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil || !IsToken(tok) || d != TokenDigest(tok) || !strings.HasPrefix(tok, "trireme_") || len(tok) != 51 {
		t.Fatalf("token %q %v", tok, err)
	}
	if _, _, err := NewToken(bytes.NewReader(nil)); err == nil {
		t.Fatal("token from no randomness")
	}
	a, _ := mustToken(t)
	b, _ := mustToken(t)
	if a == b {
		t.Fatal("two equal tokens")
	}
	for _, s := range []string{"", "trireme_", tok[:50], tok + "x", "x" + tok[1:]} {
		if IsToken(s) {
			t.Errorf("IsToken(%q)", s)
		}
	}
}

func TestHashPassword(t *testing.T) {
	h := mustHash(t, "pw with spaces")
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("pw with spaces")) != nil {
		t.Fatal("hash does not verify")
	}
	for _, pw := range []string{"", strings.Repeat("x", 73), "a\nb"} {
		if _, err := HashPassword(pw, testCost); !errors.Is(err, ErrBadPassword) {
			t.Errorf("HashPassword(%q): %v", pw, err)
		}
	}
	if _, err := HashPassword("pw", 99); !errors.Is(err, ErrBadPassword) {
		t.Error(err)
	}
}

func TestAppendLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := AppendLine(path, UserLine("bob", RoleRead, "")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v %v", st, err)
	}
	// A file without a final newline gets one before the new line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("# no newline")
	f.Close()
	_, d := mustToken(t)
	if err := AppendLine(path, TokenLine("bob", d, "laptop")); err != nil {
		t.Fatal(err)
	}
	if err := AppendLine(path, UserLine("bob", RoleAdmin, "")); !errors.Is(err, ErrUsersFile) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("second bob: %v", err)
	}
	if err := AppendLine(path, TokenLine("ann", d, "")); !errors.Is(err, ErrUsersFile) {
		t.Fatalf("token of nobody: %v", err)
	}
	u, err := LoadUsers(path)
	if err != nil || len(u.Users) != 1 || len(u.Tokens) != 1 || u.Tokens[0].ID() != "laptop" || u.Mode != 0o600 {
		t.Fatalf("%+v %v", u, err)
	}
}

// BenchmarkCheckBearer is the cost auth adds to each HTTP request.
func BenchmarkCheckBearer(b *testing.B) {
	tok, d, err := NewToken(nil)
	if err != nil {
		b.Fatal(err)
	}
	u, err := ParseUsers(strings.NewReader(UserLine("u", RoleWrite, "")+"\n"+TokenLine("u", d, "")), "users")
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Users = u
	a, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	c := Credentials{Secret: tok, Remote: "127.0.0.1:1", Proto: "http"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.CheckBearer(c); err != nil {
			b.Fatal(err)
		}
	}
}
