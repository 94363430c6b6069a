package system

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
)

// runCLIStdin is runCLI with stdin.
func runCLIStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "TRIREME_ENDPOINTS=", "TRIREME_TOKEN=", "TRIREME_CACERT=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("trireme %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustCLIToken runs a `trireme users` command that prints a token.
func mustCLIToken(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code := runCLIStdin(t, "", args...)
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "trireme_") {
		t.Fatalf("trireme %v: exit %d, stdout %q, stderr %s", args, code, out, stderr)
	}
	return tok
}

// TestClientAuthTLS runs a 3-node cluster whose client ports need TLS and
// credentials (trireme node --users --tls-cert --tls-key), made with the
// CLI (trireme certs, trireme users), and uses it through the CLI and the
// Go client: tokens of each role, no token, no CA.
func TestClientAuthTLS(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "client-certs")
	// A CA of its own for the client ports, and a certificate for 127.0.0.1.
	if out, stderr, code := runCLIStdin(t, "", "certs", "--dir", certs, "--nodes", "api"); code != 0 {
		t.Fatalf("certs: %d %s %s", code, out, stderr)
	}
	ca := filepath.Join(certs, "ca.crt")
	users := filepath.Join(dir, "users.txt")
	if _, stderr, code := runCLIStdin(t, "root password\n", "users", "add", "root", "--role", "admin", "--file", users, "--cost", "4"); code != 0 {
		t.Fatalf("users add root: %d %s", code, stderr)
	}
	admin := mustCLIToken(t, "users", "token", "root", "--file", users, "--label", "ops")
	writer := mustCLIToken(t, "users", "add", "app", "--role", "write", "--token", "--file", users)
	reader := mustCLIToken(t, "users", "add", "dash", "--role", "read", "--token", "--file", users)
	b, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"root password", admin, writer, reader} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("the users file holds a secret in the clear:\n%s", b)
		}
	}
	writerFile := filepath.Join(dir, "writer.token")
	if err := os.WriteFile(writerFile, []byte(writer+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	x := mustStart(t, "--users", users, "--tls-cert", filepath.Join(certs, "api.crt"), "--tls-key", filepath.Join(certs, "api.key"))
	eps := strings.Join(x.c.Spec().HTTPEndpoints(), ",")

	// The Go client: a CA file and a token.
	tc, err := client.TLSConfig(ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	gc, err := client.New(client.Config{Endpoints: x.c.Spec().HTTPEndpoints(), RetryFor: 15 * time.Second, TLS: tc, Token: writer})
	if err != nil {
		t.Fatal(err)
	}
	leader, err := gc.Leader(x.ctx(20 * time.Second))
	if err != nil {
		t.Fatalf("no leader over HTTPS: %v", err)
	}
	if !strings.HasPrefix(leader, "https://") {
		t.Fatalf("leader endpoint %q", leader)
	}
	if _, err := gc.Put(x.ctx(10*time.Second), []byte("from-go"), []byte("1"), client.WriteOptions{Ack: "sync"}); err != nil {
		t.Fatal(err)
	}

	cli := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, append([]string{"TRIREME_ENDPOINTS=" + eps, "TRIREME_TOKEN=", "TRIREME_CACERT="}, env...),
			append(args, "--wait", "10s")...)
	}
	tests := []struct {
		name      string
		env       []string
		args      []string
		code      int
		stdout    string // must contain, on success
		stderr    string // must contain, on failure
		notStderr string
	}{
		{"put with --cacert and --token", nil, []string{"put", "greeting", "hello", "--ack", "majority", "--cacert", ca, "--token", writer}, 0, "OK index=", "", ""},
		{"get with env", []string{"TRIREME_CACERT=" + ca, "TRIREME_TOKEN=" + reader}, []string{"get", "greeting"}, 0, "hello", "", ""},
		{"get with --token-file", nil, []string{"get", "from-go", "--cacert", ca, "--token-file", writerFile}, 0, "1", "", ""},
		{"status", []string{"TRIREME_TOKEN=" + reader}, []string{"status", "--cacert", ca}, 0, "leader", "", ""},
		{"no token", nil, []string{"get", "greeting", "--cacert", ca}, 1, "", "HTTP 401", "no node answered"},
		{"no token put", nil, []string{"put", "k", "v", "--cacert", ca}, 1, "", "requires credentials", ""},
		{"bad token", nil, []string{"get", "greeting", "--cacert", ca, "--token", writer[:len(writer)-1] + "x"}, 1, "", "not valid", ""},
		{"reader writes", nil, []string{"put", "k", "v", "--cacert", ca, "--token", reader}, 1, "", "HTTP 403", ""},
		{"writer transfers", nil, []string{"transfer", "--to", "n1", "--cacert", ca, "--token", writer}, 1, "", "needs role admin", ""},
		{"no CA", nil, []string{"get", "greeting", "--token", reader}, 1, "", "--cacert", ""},
		{"plain http", nil, []string{"get", "greeting", "--token", reader, "--endpoints", "http://" + x.c.Spec().HTTPEndpoints()[0]}, 1, "", "https://", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, stderr, code := cli(tc.env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, stderr)
			}
			if !strings.Contains(out, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("stdout %q should contain %q, stderr %q should contain %q", out, tc.stdout, stderr, tc.stderr)
			}
			if tc.notStderr != "" && strings.Contains(stderr, tc.notStderr) {
				t.Fatalf("stderr %q should not contain %q", stderr, tc.notStderr)
			}
			for _, secret := range []string{admin, writer, reader} {
				if strings.Contains(out+stderr, secret) {
					t.Fatalf("output shows a token: %s %s", out, stderr)
				}
			}
			if tc.code != 0 && time.Since(start) > 8*time.Second {
				t.Fatalf("refusal took %v: it was retried", time.Since(start))
			}
		})
	}

	// An admin transfers leadership, through the environment's token.
	var target string
	for _, n := range x.c.Spec().Nodes {
		if !strings.HasSuffix(leader, n.HTTP) {
			target = n.ID
			break
		}
	}
	if out, stderr, code := cli([]string{"TRIREME_TOKEN=" + admin, "TRIREME_CACERT=" + ca}, "transfer", "--to", target); code != 0 || !strings.Contains(out, target+" leads") {
		t.Fatalf("transfer: %d %s %s", code, out, stderr)
	}

	// Plain HTTP gets nothing; HTTPS without a token gets 401 and a challenge.
	resp, err := http.Get("http://" + x.c.Spec().HTTPEndpoints()[0] + "/v1/status")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP: %d", resp.StatusCode)
		}
	}
	st, err := client.New(client.Config{Endpoints: x.c.Spec().HTTPEndpoints(), TLS: tc, RetryFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Status(x.ctx(5*time.Second), x.c.Spec().HTTPEndpoints()[1]); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("status without a token: %v", err)
	}

	// Failed attempts are logged with the client's address, never the token.
	time.Sleep(100 * time.Millisecond)
	logs := ""
	for _, n := range x.c.Spec().Nodes {
		b, _ := os.ReadFile(x.c.LogPath(n.ID))
		logs += string(b)
	}
	if !strings.Contains(logs, `msg="authentication failed"`) || !strings.Contains(logs, "remote=127.0.0.1:") || !strings.Contains(logs, `msg="permission denied"`) {
		t.Fatalf("no failed attempt in the logs")
	}
	for _, secret := range []string{admin, writer, reader, writer[:len(writer)-1] + "x"} {
		if strings.Contains(logs, secret) {
			t.Fatal("a node logged a token")
		}
	}
}

// TestClientAuthFlags: a node with bad client auth or TLS flags refuses to
// start, naming the flag.
func TestClientAuthFlags(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	badUsers := filepath.Join(dir, "users")
	os.WriteFile(badUsers, []byte("# users\nuser bob superuser -\n"), 0o600)
	base := []string{"node", "--id", "n1", "--data", filepath.Join(dir, "d"), "--cluster", "n1=127.0.0.1:1", "--insecure-peers",
		"--http", "127.0.0.1:0", "--resp", ""}
	tests := []struct {
		args    []string
		env     []string
		mention string
	}{
		{[]string{"--tls-cert", short}, nil, "--tls-key"},
		{[]string{"--tls-cert", short, "--tls-key", short}, nil, "--tls-cert"},
		{[]string{"--users", badUsers}, nil, "line 2"},
		{[]string{"--users", filepath.Join(dir, "missing")}, nil, "--users"},
		{[]string{"--requirepass-file", short}, nil, "fewer than 16"},
		{nil, []string{"TRIREME_REQUIREPASS=tooshort"}, "fewer than 16"},
		{[]string{"--open-metrics"}, nil, "--open-metrics"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(append(tc.args, tc.env...), " "), func(t *testing.T) {
			_, stderr, code := runCLI(t, append([]string{"TRIREME_REQUIREPASS="}, tc.env...), append(base, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.mention) {
				t.Fatalf("exit %d (want 2), stderr %q should mention %q", code, stderr, tc.mention)
			}
		})
	}
}
