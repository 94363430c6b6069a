package resp

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/auth"
)

// testUsers are the users file of the auth tests (bcrypt cost 4, the
// lowest, to keep the tests fast).
var testUsers = []struct {
	name     string
	role     auth.Role
	password string
}{
	{"reader", auth.RoleRead, "reader pass"},
	{"writer", auth.RoleWrite, "writer pass"},
	{"root", auth.RoleAdmin, "root pass"},
}

// testDefaultPassword is the default user's password (requirepass).
const testDefaultPassword = "the default password, 16+ bytes"

// mustAuthenticator returns an Authenticator with testUsers, the default
// password and an API token of writer (returned).
func mustAuthenticator(t testing.TB) (*auth.Authenticator, string) {
	t.Helper()
	var lines []string
	for _, u := range testUsers {
		h, err := auth.HashPassword(u.password, 4)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, auth.UserLine(u.name, u.role, h))
	}
	tok, digest, err := auth.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, auth.TokenLine("writer", digest, "ci"))
	users, err := auth.ParseUsers(strings.NewReader(strings.Join(lines, "\n")+"\n"), "test users")
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.Users, cfg.DefaultPassword = users, testDefaultPassword
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, tok
}

// readValue reads one reply and renders it: a status without its '+', an
// error with its '-', an integer's digits, a bulk string's bytes, "(nil)",
// or "*N" for an array (whose elements are read and dropped).
func readValue(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "(nil)", err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(rd, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		for range max(n, 0) {
			if _, err := readValue(rd); err != nil {
				return "", err
			}
		}
		return line, nil
	}
	return "", fmt.Errorf("unknown reply %q", line)
}

// encode writes args as a RESP array.
func encode(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// step is one command and its expected reply (as readValue renders it);
// with prefix, the reply need only start with want.
type step struct {
	args   []string
	want   string
	prefix bool
}

// mustScript sends each step's command on one connection and checks its
// reply.
func mustScript(t *testing.T, c net.Conn, rd *bufio.Reader, steps []step) {
	t.Helper()
	for _, s := range steps {
		if _, err := io.WriteString(c, encode(s.args...)); err != nil {
			t.Fatalf("%q: %v", s.args, err)
		}
		got, err := readValue(rd)
		if err != nil {
			t.Fatalf("%q: reading the reply: %v", s.args, err)
		}
		if got != s.want && !(s.prefix && strings.HasPrefix(got, s.want)) {
			t.Fatalf("%q = %q, want %q", s.args, got, s.want)
		}
	}
}

func noperm(cmd string) string {
	return "-NOPERM this user has no permissions to run the '" + cmd + "' command"
}

// TestAuthOff: without credentials (no Authenticator, or one with none)
// every client may do everything, as before auth existed; AUTH password
// gets Redis's error, AUTH user pass and HELLO 2 AUTH are accepted.
func TestAuthOff(t *testing.T) {
	disabled, err := auth.New(auth.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*auth.Authenticator{nil, disabled} {
		t.Run(fmt.Sprintf("enabled=%v,nil=%v", a.Enabled(), a == nil), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Auth = a
			_, addr := mustServeConfig(t, apitest.NewFake("n2", "n3"), cfg)
			c, rd := mustDial(t, addr)
			mustScript(t, c, rd, []step{
				{args: []string{"SET", "k", "v"}, want: "OK"},
				{args: []string{"GET", "k"}, want: "v"},
				{args: []string{"TRIREME.ACK", "sync"}, want: "OK"},
				{args: []string{"NOSUCH"}, want: "-ERR unknown command 'NOSUCH'", prefix: true},
				{args: []string{"AUTH", "pw"}, want: "-" + errNoPassword},
				{args: []string{"AUTH", "alice", "pw"}, want: "OK"},
				{args: []string{"AUTH", "a", "b", "c"}, want: "-ERR syntax error"},
				{args: []string{"HELLO", "2", "AUTH", "alice", "pw", "SETNAME", "app"}, want: "*14"},
				{args: []string{"CLIENT", "GETNAME"}, want: "app"},
				{args: []string{"CLIENT", "INFO"}, want: "id=", prefix: true},
			})
			io.WriteString(c, encode("CLIENT", "INFO"))
			if info, err := readValue(rd); err != nil || !strings.Contains(info, " user=default ") {
				t.Fatalf("CLIENT INFO %q %v, want user=default", info, err)
			}
			// go-redis with credentials: HELLO 2 AUTH is accepted.
			rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, Username: "alice", Password: "pw", MaxRetries: -1})
			defer rdb.Close()
			if err := rdb.Set(context.Background(), "k2", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			mustScript(t, c, rd, []step{{args: []string{"TRIREME.TRANSFER", "n2"}, want: "OK"}})
		})
	}
}

// TestAuthRequired: before it authenticates a connection may send only
// AUTH, HELLO, PING and QUIT; everything else, unknown commands included,
// gets NOAUTH. Bad credentials get WRONGPASS, whatever is wrong.
func TestAuthRequired(t *testing.T) {
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth = a
	f := apitest.NewFake("n2", "n3")
	_, addr := mustServeConfig(t, f, cfg)
	c, rd := mustDial(t, addr)
	const noauth = "-" + errNoAuth
	wrongpass := "-WRONGPASS invalid username-password pair or user is disabled."
	mustScript(t, c, rd, []step{
		{args: []string{"GET", "k"}, want: noauth},
		{args: []string{"SET", "k", "v"}, want: noauth},
		{args: []string{"SET", "k"}, want: noauth}, // before the arity check
		{args: []string{"NOSUCH", "x"}, want: noauth},
		{args: []string{"CLIENT", "SETNAME", "x"}, want: noauth},
		{args: []string{"INFO"}, want: noauth},
		{args: []string{"COMMAND"}, want: noauth},
		{args: []string{"TRIREME.ACK", "sync"}, want: noauth},
		{args: []string{"PING"}, want: "PONG"},
		{args: []string{"PING", "hi"}, want: "hi"},
		{args: []string{"HELLO"}, want: "-" + errHelloNoAuth},
		{args: []string{"HELLO", "2", "SETNAME", "x"}, want: "-" + errHelloNoAuth},
		{args: []string{"HELLO", "3"}, want: "-NOPROTO", prefix: true},
		{args: []string{"AUTH"}, want: "-ERR wrong number of arguments for 'auth' command"},
		{args: []string{"AUTH", "a", "b", "c"}, want: "-ERR syntax error"},
		{args: []string{"AUTH", "wrong password"}, want: wrongpass},
		{args: []string{"AUTH", "writer", "wrong password"}, want: wrongpass},
		{args: []string{"AUTH", "nobody", "writer pass"}, want: wrongpass},
		{args: []string{"AUTH", "writer", ""}, want: wrongpass},
		{args: []string{"AUTH", "writer", strings.Repeat("x", 100)}, want: wrongpass},
		{args: []string{"AUTH", "trireme_" + strings.Repeat("x", 43)}, want: wrongpass},
		{args: []string{"GET", "k"}, want: noauth},
		{args: []string{"AUTH", "writer", "writer pass"}, want: "OK"},
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"GET", "k"}, want: "v"},
		{args: []string{"NOSUCH", "x"}, want: "-ERR unknown command 'NOSUCH'", prefix: true},
		{args: []string{"QUIT"}, want: "OK"},
	})
	if v, ok := f.Value("k"); !ok || string(v) != "v" {
		t.Fatalf("service holds %q %v", v, ok)
	}
	// QUIT is allowed before authentication too.
	c2, rd2 := mustDial(t, addr)
	mustScript(t, c2, rd2, []step{{args: []string{"QUIT"}, want: "OK"}})
	mustBeClosed(t, rd2)
	if n := a.Failures()["resp"]["bad_password"]; n < 3 {
		t.Fatalf("failures counted: %v", a.Failures())
	}
}

// TestAuthRoles: once authenticated, each command is checked against the
// user's role: read < write < admin.
func TestAuthRoles(t *testing.T) {
	a, token := mustAuthenticator(t)
	tests := []struct {
		name  string
		auth  []string
		steps []step
	}{
		{"read", []string{"AUTH", "reader", "reader pass"}, []step{
			{args: []string{"GET", "k"}, want: "(nil)"},
			{args: []string{"MGET", "k", "j"}, want: "*2"},
			{args: []string{"EXISTS", "k"}, want: "0"},
			{args: []string{"DBSIZE"}, want: "0"},
			{args: []string{"ROLE"}, want: "*3"},
			{args: []string{"CLIENT", "SETNAME", "dash"}, want: "OK"},
			{args: []string{"TRIREME.CONSISTENCY", "stale"}, want: "OK"},
			{args: []string{"READWRITE"}, want: "OK"},
			{args: []string{"SET", "k", "v"}, want: noperm("set")},
			{args: []string{"set", "k"}, want: noperm("set")},
			{args: []string{"DEL", "k"}, want: noperm("del")},
			{args: []string{"WAIT", "1", "0"}, want: noperm("wait")},
			{args: []string{"WAITAOF", "1", "1", "0"}, want: noperm("waitaof")},
			{args: []string{"TRIREME.ACK", "sync"}, want: noperm("trireme.ack")},
			{args: []string{"CLIENT", "ACK", "sync"}, want: noperm("client|ack")},
			{args: []string{"TRIREME.TRANSFER", "n2"}, want: noperm("trireme.transfer")},
			{args: []string{"GET", "k"}, want: "(nil)"},
		}},
		{"write", []string{"AUTH", "writer", "writer pass"}, []step{
			{args: []string{"SET", "k", "v"}, want: "OK"},
			{args: []string{"DEL", "k"}, want: "1"},
			{args: []string{"TRIREME.ACK", "async"}, want: "OK"},
			{args: []string{"CLIENT", "ACK", "default"}, want: "OK"},
			{args: []string{"TRIREME.TRANSFER", "n2"}, want: noperm("trireme.transfer")},
		}},
		{"write, by token", []string{"AUTH", "writer", token}, []step{
			{args: []string{"SET", "k", "v"}, want: "OK"},
			{args: []string{"TRIREME.TRANSFER", "n2"}, want: noperm("trireme.transfer")},
		}},
		{"token alone", []string{"AUTH", token}, []step{
			{args: []string{"SET", "k", "v"}, want: "OK"},
		}},
		{"admin", []string{"AUTH", "root", "root pass"}, []step{
			{args: []string{"SET", "k", "v"}, want: "OK"},
			{args: []string{"TRIREME.TRANSFER", "nosuch"}, want: "-ERR unknown node", prefix: true},
			{args: []string{"TRIREME.TRANSFER", "n2", "x"}, want: "-ERR timeout", prefix: true},
			{args: []string{"TRIREME.TRANSFER", "n2", "5000"}, want: "OK"},
		}},
		{"default password", []string{"AUTH", testDefaultPassword}, []step{
			{args: []string{"SET", "k", "v"}, want: "OK"},
			{args: []string{"TRIREME.TRANSFER", "n3"}, want: "OK"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Auth = a
			_, addr := mustServeConfig(t, apitest.NewFake("n2", "n3"), cfg)
			c, rd := mustDial(t, addr)
			mustScript(t, c, rd, append([]step{{args: tc.auth, want: "OK"}}, tc.steps...))
		})
	}
	if n := a.Failures()["resp"]["forbidden"]; n == 0 {
		t.Fatalf("denials not counted: %v", a.Failures())
	}
}

// TestAuthChangesUser: AUTH on an authenticated connection changes its
// user, also in the middle of a pipeline of SETs (which are batched); a
// failed AUTH keeps the user it had.
func TestAuthChangesUser(t *testing.T) {
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth = a
	f := &batchFake{Fake: apitest.NewFake("n2")}
	_, addr := mustServeConfig(t, f, cfg)
	c, rd := mustDial(t, addr)
	mustScript(t, c, rd, []step{
		{args: []string{"AUTH", "writer", "writer pass"}, want: "OK"},
		{args: []string{"AUTH", "writer", "wrong"}, want: "-WRONGPASS", prefix: true},
		{args: []string{"SET", "k", "v"}, want: "OK"},
	})
	pipeline := [][]string{
		{"SET", "a", "1"}, {"SET", "b", "2"}, {"AUTH", "reader", "reader pass"}, {"SET", "c", "3"}, {"SET", "d", "4"},
		{"GET", "a"}, {"AUTH", "writer", "writer pass"}, {"SET", "e", "5"},
	}
	want := []string{"OK", "OK", "OK", noperm("set"), noperm("set"), "1", "OK", "OK"}
	var b strings.Builder
	for _, p := range pipeline {
		b.WriteString(encode(p...))
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got, err := readValue(rd); err != nil || got != w {
			t.Fatalf("reply to %q = %q %v, want %q", pipeline[i], got, err, w)
		}
	}
	for k, want := range map[string]bool{"a": true, "b": true, "c": false, "d": false, "e": true} {
		if _, ok := f.Value(k); ok != want {
			t.Fatalf("key %s written = %v, want %v", k, ok, want)
		}
	}
}

// TestHelloAuth: HELLO 2 AUTH user pass [SETNAME name] authenticates and
// names the connection; a failed one does neither. go-redis sends it
// (Protocol 2), or HELLO 3 then AUTH (Protocol 3, the default).
func TestHelloAuth(t *testing.T) {
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth = a
	_, addr := mustServeConfig(t, apitest.NewFake("n2"), cfg)
	c, rd := mustDial(t, addr)
	mustScript(t, c, rd, []step{
		{args: []string{"HELLO", "2", "AUTH", "writer", "wrong", "SETNAME", "x"}, want: "-WRONGPASS", prefix: true},
		{args: []string{"HELLO", "2", "AUTH", "writer"}, want: "-ERR Syntax error in HELLO option 'auth'"},
		{args: []string{"HELLO", "3", "AUTH", "writer", "writer pass"}, want: "-NOPROTO", prefix: true},
		{args: []string{"CLIENT", "GETNAME"}, want: "-" + errNoAuth},
		{args: []string{"HELLO", "2", "AUTH", "writer", "writer pass", "SETNAME", "app"}, want: "*14"},
		{args: []string{"CLIENT", "GETNAME"}, want: "app"},
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"HELLO"}, want: "*14"}, // authenticated: no AUTH needed
	})

	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		opt     redis.Options
		wantErr string
	}{
		{"HELLO 2 AUTH", redis.Options{Protocol: 2, Username: "writer", Password: "writer pass", ClientName: "app"}, ""},
		{"HELLO 3, then AUTH", redis.Options{Username: "writer", Password: "writer pass", ClientName: "app"}, ""},
		{"default password", redis.Options{Password: testDefaultPassword}, ""},
		{"wrong password", redis.Options{Username: "writer", Password: "nope"}, "WRONGPASS"},
		{"wrong password, HELLO 2", redis.Options{Protocol: 2, Username: "writer", Password: "nope"}, "WRONGPASS"},
		{"no password", redis.Options{}, "NOAUTH"},
		{"reader", redis.Options{Username: "reader", Password: "reader pass"}, "NOPERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := tc.opt
			opt.Addr, opt.MaxRetries = addr, -1
			rdb := redis.NewClient(&opt)
			defer rdb.Close()
			err := rdb.Set(ctx, "k", "v", 0).Err()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if opt.ClientName != "" {
					if n, err := rdb.ClientGetName(ctx).Result(); err != nil || n != opt.ClientName {
						t.Fatalf("CLIENT GETNAME %q %v", n, err)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("SET: %v, want %s", err, tc.wantErr)
			}
		})
	}
}

// testPKI is a throwaway CA and a server certificate for 127.0.0.1 and
// localhost, made for one test.
type testPKI struct {
	server *tls.Config // the certificate
	client *tls.Config // trusts the CA
	caFile string      // the CA, PEM
}

func mustTestPKI(t *testing.T) testPKI {
	t.Helper()
	mustKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := mustKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "resp test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey()
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		client: &tls.Config{RootCAs: pool},
		caFile: caFile,
	}
}

// mustServeTLS serves f over TLS with the test users.
func mustServeTLS(t *testing.T, f api.Service, pki testPKI, edit func(*Config)) string {
	t.Helper()
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth, cfg.TLS = a, pki.server
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, addr := mustServeConfig(t, f, cfg)
	return addr
}

// TestGoRedisTLSAuth: go-redis over TLS, with a CA made here and
// credentials; without credentials NOAUTH; without TLS or the CA, nothing.
func TestGoRedisTLSAuth(t *testing.T) {
	pki := mustTestPKI(t)
	f := apitest.NewFake("n2")
	addr := mustServeTLS(t, f, pki, nil)
	ctx := context.Background()
	client := func(opt redis.Options) *redis.Client {
		opt.Addr, opt.MaxRetries, opt.DialTimeout = addr, -1, 5*time.Second
		rdb := redis.NewClient(&opt)
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}

	rdb := client(redis.Options{TLSConfig: pki.client, Username: "writer", Password: "writer pass"})
	if err := rdb.Set(ctx, "k", "over tls", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "over tls" {
		t.Fatalf("GET over TLS: %q %v", v, err)
	}
	if v, ok := f.Value("k"); !ok || string(v) != "over tls" {
		t.Fatalf("service holds %q %v", v, ok)
	}
	// A rediss:// URL, the CA given to the TLS configuration it makes.
	opt, err := redis.ParseURL("rediss://reader:reader%20pass@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	opt.TLSConfig.RootCAs = pki.client.RootCAs
	if v, err := client(*opt).Get(ctx, "k").Result(); err != nil || v != "over tls" {
		t.Fatalf("GET through rediss://: %q %v", v, err)
	}
	if err := client(redis.Options{TLSConfig: pki.client}).Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET over TLS without credentials: %v, want NOAUTH", err)
	}
	if err := client(redis.Options{TLSConfig: &tls.Config{}, Password: testDefaultPassword}).Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("GET without the CA: %v, want a certificate error", err)
	}
	if err := client(redis.Options{Password: testDefaultPassword}).Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET in plain text to the TLS port succeeded")
	}

	// A plain RESP client is told, in plain text, that the port speaks TLS.
	c, rd := mustDial(t, addr)
	io.WriteString(c, "PING\r\n")
	if line, err := rd.ReadString('\n'); err != nil || line != "-"+errNotTLS+"\r\n" {
		t.Fatalf("plain PING to the TLS port: %q %v", line, err)
	}
	mustBeClosed(t, rd)
}

// TestTLSHandshake: a client that connects and never handshakes neither
// holds up other clients (the handshake runs on its connection's
// goroutine) nor keeps its connection beyond TLSHandshakeTimeout.
func TestTLSHandshake(t *testing.T) {
	pki := mustTestPKI(t)
	ctx := context.Background()
	t.Run("others go on", func(t *testing.T) {
		addr := mustServeTLS(t, apitest.NewFake("n2"), pki, func(c *Config) { c.TLSHandshakeTimeout = time.Minute })
		for range 3 {
			mustDial(t, addr) // silent
		}
		rdb := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: pki.client, Password: testDefaultPassword,
			MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second})
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING while silent clients handshake: %v", err)
		}
	})
	t.Run("silent client dropped", func(t *testing.T) {
		addr := mustServeTLS(t, apitest.NewFake("n2"), pki, func(c *Config) { c.TLSHandshakeTimeout = 200 * time.Millisecond })
		c, rd := mustDial(t, addr) // deadline 10 s
		start := time.Now()
		if _, err := rd.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("silent client: %v after %v, want EOF (closed by the server)", err, time.Since(start))
		}
		c.Close()
	})
}

// redisCLITLS returns redis-cli, skipping the test if it is missing or
// built without TLS.
func redisCLITLS(t *testing.T) string {
	t.Helper()
	cli := mustTool(t, "redis-cli")
	out, _ := exec.Command(cli, "--help").CombinedOutput()
	if !strings.Contains(string(out), "--tls") {
		t.Skip("redis-cli is built without TLS support (no --tls in redis-cli --help); skipping")
	}
	return cli
}

// TestRedisCLITLSAuth: redis-cli --tls --cacert with --user/--pass or -a.
func TestRedisCLITLSAuth(t *testing.T) {
	cli := redisCLITLS(t)
	pki := mustTestPKI(t)
	f := apitest.NewFake("n2")
	addr := mustServeTLS(t, f, pki, nil)
	host, port, _ := net.SplitHostPort(addr)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		args = append([]string{"-h", host, "-p", port, "--no-auth-warning"}, args...)
		out, _ := exec.CommandContext(ctx, cli, args...).CombinedOutput() // an error reply may exit 1
		return strings.TrimSpace(string(out))
	}
	tls := []string{"--tls", "--cacert", pki.caFile}
	tests := []struct {
		args []string
		want string
	}{
		{append(tls, "--user", "writer", "--pass", "writer pass", "SET", "greeting", "hello tls"), "OK"},
		{append(tls, "--user", "reader", "--pass", "reader pass", "GET", "greeting"), "hello tls"},
		{append(tls, "-a", testDefaultPassword, "GET", "greeting"), "hello tls"},
		{append(tls, "--user", "reader", "--pass", "reader pass", "SET", "greeting", "x"), strings.TrimPrefix(noperm("set"), "-")},
		{append(tls, "--user", "reader", "--pass", "wrong", "GET", "greeting"), "WRONGPASS"},
		{append(tls, "GET", "greeting"), "NOAUTH Authentication required."},
		{append(tls, "PING"), "PONG"},
		{[]string{"-u", "rediss://reader:reader%20pass@" + addr, "--cacert", pki.caFile, "GET", "greeting"}, "hello tls"},
		{[]string{"-a", testDefaultPassword, "GET", "greeting"}, "this port speaks TLS only"},
	}
	for _, tc := range tests {
		if out := run(tc.args...); !strings.Contains(out, tc.want) {
			t.Fatalf("redis-cli %q = %q, want %q", tc.args, out, tc.want)
		}
	}
	if v, ok := f.Value("greeting"); !ok || string(v) != "hello tls" {
		t.Fatalf("service holds %q %v", v, ok)
	}
}
