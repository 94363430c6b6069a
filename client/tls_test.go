package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
	"github.com/trireme-db/trireme/internal/auth"
)

// testCA is a throwaway certificate authority, written to dir/NAME.crt.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of cert
	dir  string
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustWritePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustCA(t *testing.T, name string) testCA {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := testCA{cert: cert, key: key, file: filepath.Join(dir, name+".crt"), dir: dir}
	mustWritePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// mustIssue returns a certificate for 127.0.0.1 (server) or a client, and
// the paths of its PEM files.
func (ca testCA) mustIssue(t *testing.T, name string, server bool) (tls.Certificate, string, string) {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	mustWritePEM(t, certFile, "CERTIFICATE", der)
	mustWritePEM(t, keyFile, "PRIVATE KEY", kder)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c, certFile, keyFile
}

// secureNode serves f over HTTPS with a certificate of ca, and with auth
// when users is not empty (users file text).
func secureNode(t *testing.T, f *apitest.Fake, ca testCA, users string, clientCA *x509.CertPool) string {
	t.Helper()
	cfg := httpapi.DefaultConfig()
	if users != "" {
		u, err := auth.ParseUsers(strings.NewReader(users), "users")
		if err != nil {
			t.Fatal(err)
		}
		acfg := auth.DefaultConfig()
		acfg.Users = u
		if cfg.Auth, err = auth.New(acfg); err != nil {
			t.Fatal(err)
		}
	}
	h, err := httpapi.NewHandler(f, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, _ := ca.mustIssue(t, "node", true)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		srv.TLS.ClientCAs, srv.TLS.ClientAuth = clientCA, tls.RequireAndVerifyClientCert
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// tokenUsers returns a users file with a writer and a reader, and their tokens.
func tokenUsers(t *testing.T) (string, string, string) {
	t.Helper()
	wt, wd, err := auth.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, rd, err := auth.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join([]string{
		auth.UserLine("w", auth.RoleWrite, ""), auth.TokenLine("w", wd, ""),
		auth.UserLine("r", auth.RoleRead, ""), auth.TokenLine("r", rd, ""),
	}, "\n")
	return text, wt, rt
}

func mustTLSClient(t *testing.T, caFile, token string, endpoints ...string) *Client {
	t.Helper()
	tc, err := TLSConfig(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Endpoints: endpoints, RetryFor: 2 * time.Second, TLS: tc, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSWithToken(t *testing.T) {
	ca := mustCA(t, "ca")
	users, writer, reader := tokenUsers(t)
	url := secureNode(t, apitest.NewFake("n2"), ca, users, nil)
	ctx := context.Background()

	// A bare host:port takes https when TLS is configured.
	c := mustTLSClient(t, ca.file, writer, strings.TrimPrefix(url, "https://"))
	if eps := c.Endpoints(); eps[0] != url {
		t.Fatalf("endpoint %q, want %q", eps[0], url)
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Get(ctx, []byte("k"), ReadOptions{}); err != nil || string(r.Value) != "v" {
		t.Fatalf("Get: %+v %v", r, err)
	}

	// Refusals are final: they come back at once, not after RetryFor.
	tests := []struct {
		name  string
		token string
		op    func(*Client) error
		want  error
		msg   string
	}{
		{"no token", "", func(c *Client) error { _, err := c.Get(ctx, []byte("k"), ReadOptions{}); return err }, ErrUnauthorized, "authentication required"},
		{"bad token", writer[:len(writer)-1] + "x", func(c *Client) error { _, err := c.Put(ctx, []byte("k"), nil, WriteOptions{}); return err }, ErrUnauthorized, "not valid"},
		{"reader writes", reader, func(c *Client) error { _, err := c.Put(ctx, []byte("k"), nil, WriteOptions{}); return err }, ErrForbidden, "has role read"},
		{"reader transfers", reader, func(c *Client) error { return c.Transfer(ctx, "n2") }, ErrForbidden, "needs role admin"},
		{"no token status", "", func(c *Client) error { _, err := c.Status(ctx, url); return err }, ErrUnauthorized, "HTTP 401"},
		{"no token leader", "", func(c *Client) error { _, err := c.Leader(ctx); return err }, ErrUnauthorized, "Bearer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustTLSClient(t, ca.file, tc.token, url)
			start := time.Now()
			err := tc.op(c)
			var ce *Error
			if !errors.Is(err, tc.want) || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
			if errors.Is(err, ErrBadRequest) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("err %v is also %v", err, ErrBadRequest)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("refusal took %v: it was retried", d)
			}
		})
	}
	if r, err := mustTLSClient(t, ca.file, reader, url).Get(ctx, []byte("k"), ReadOptions{}); err != nil || string(r.Value) != "v" {
		t.Fatalf("reader Get: %+v %v", r, err)
	}
}

func TestTLSFailuresAreFinal(t *testing.T) {
	ca, other := mustCA(t, "ca"), mustCA(t, "other")
	secure := secureNode(t, apitest.NewFake("n2"), ca, "", nil)
	plain := mustNode(t, apitest.NewFake("n2"))
	tests := []struct {
		name, caFile, endpoint, mention string
	}{
		{"unknown CA", other.file, secure, "certificate"},
		{"system roots", "", secure, "certificate"},
		{"http to an https port", ca.file, strings.Replace(secure, "https://", "http://", 1), "https://"},
		{"https to an http port", ca.file, strings.Replace(plain, "http://", "https://", 1), "HTTP response to HTTPS client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tcfg, err := TLSConfig(tc.caFile, "", "")
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Config{Endpoints: []string{tc.endpoint}, RetryFor: 2 * time.Second, TLS: tcfg})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{})
			if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("err %v, want ErrTLS mentioning %q", err, tc.mention)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v: it was retried", d)
			}
		})
	}
}

func TestTLSFollowsLeaderOverHTTPS(t *testing.T) {
	ca := mustCA(t, "ca")
	leader := apitest.NewFakeID("n2", "n1")
	leaderURL := secureNode(t, leader, ca, "", nil)
	follower := apitest.NewFakeID("n1", "n2")
	follower.SetLeader("n2")
	follower.SetLeaderAddrs(strings.TrimPrefix(leaderURL, "https://"), "")
	followerURL := secureNode(t, follower, ca, "", nil)
	// Only an https:// endpoint: the leader named as host:port is https too.
	c, err := New(Config{Endpoints: []string{followerURL}, RetryFor: 2 * time.Second, TLS: mustTLS(t, ca.file, "", "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.Value("k"); !ok {
		t.Fatal("write did not reach the leader")
	}
}

func mustTLS(t *testing.T, ca, cert, key string) *tls.Config {
	t.Helper()
	c, err := TLSConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSClientCertificate(t *testing.T) {
	ca, clients := mustCA(t, "ca"), mustCA(t, "clients")
	url := secureNode(t, apitest.NewFake("n2"), ca, "", x509Pool(clients.cert))
	_, certFile, keyFile := clients.mustIssue(t, "alice", false)
	_, otherCert, otherKey := mustCA(t, "stranger").mustIssue(t, "mallory", false)
	for _, tc := range []struct {
		name, cert, key string
		ok              bool
	}{{"with", certFile, keyFile, true}, {"without", "", "", false}, {"from another CA", otherCert, otherKey, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Endpoints: []string{url}, RetryFor: time.Second, TLS: mustTLS(t, ca.file, tc.cert, tc.key)})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Put(context.Background(), []byte("k"), []byte("v"), WriteOptions{})
			if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, ErrTLS) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

func x509Pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.crt")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct{ ca, cert, key, mention string }{
		{filepath.Join(dir, "missing.crt"), "", "", "no such file"},
		{notPEM, "", "", "no PEM certificate"},
		{"", notPEM, "", "both"},
		{"", notPEM, notPEM, "client certificate"},
	} {
		if _, err := TLSConfig(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("TLSConfig(%q, %q, %q): %v, want %q", tc.ca, tc.cert, tc.key, err, tc.mention)
		}
	}
	if _, err := New(Config{Endpoints: []string{"ftp://x:1"}}); err == nil {
		t.Error("ftp endpoint accepted")
	}
	if _, err := New(Config{Endpoints: []string{"x:1"}, Token: "a\nb"}); err == nil {
		t.Error("token with a line break accepted")
	}
}
