package system

import (
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/client"
)

// TestRESPAuthTLS runs a 3-node cluster with a users file (trireme users)
// and a client certificate (trireme certs), and uses its RESP ports over
// TLS with go-redis and redis-cli: AUTH user pass, each role, no
// credentials (NOAUTH), no TLS, and a leadership transfer by the admin.
func TestRESPAuthTLS(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "client-certs")
	if out, stderr, code := runCLIStdin(t, "", "certs", "--dir", certs, "--nodes", "api"); code != 0 {
		t.Fatalf("certs: %d %s %s", code, out, stderr)
	}
	ca := filepath.Join(certs, "ca.crt")
	users := filepath.Join(dir, "users.txt")
	passwords := map[string]string{"root": "root password", "app": "app password", "dash": "dash password"}
	for name, role := range map[string]string{"root": "admin", "app": "write", "dash": "read"} {
		if _, stderr, code := runCLIStdin(t, passwords[name]+"\n", "users", "add", name, "--role", role, "--file", users, "--cost", "4"); code != 0 {
			t.Fatalf("users add %s: %d %s", name, code, stderr)
		}
	}
	x := mustStart(t, "--users", users, "--tls-cert", filepath.Join(certs, "api.crt"), "--tls-key", filepath.Join(certs, "api.key"))
	tc, err := client.TLSConfig(ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := x.ctx(60 * time.Second)
	rdb := func(id, user string, tlsCfg *tls.Config) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: x.node(id).RESP, TLSConfig: tlsCfg, Username: user, Password: passwords[user],
			MaxRetries: -1, PoolSize: 1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { c.Close() })
		return c
	}

	// The leader, as its RESP port says (ROLE over TLS, as the admin).
	leader := ""
	for deadline := time.Now().Add(20 * time.Second); leader == "" && time.Now().Before(deadline); {
		for _, n := range x.c.Spec().Nodes {
			if role, err := rdb(n.ID, "root", tc).Do(ctx, "ROLE").Slice(); err == nil && role[0] == "master" {
				leader = n.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if leader == "" {
		t.Fatal("no node says ROLE master over TLS")
	}
	follower := x.followers(leader)[0]

	// go-redis over TLS: a write through a follower (forwarded), a read.
	if err := rdb(follower, "app", tc).Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatalf("SET as app via follower %s: %v", follower, err)
	}
	if v, err := rdb(leader, "dash", tc).Get(ctx, "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("GET as dash: %q %v", v, err)
	}
	for _, tc := range []struct {
		name    string
		c       *redis.Client
		wantErr string
	}{
		{"no credentials", rdb(leader, "", tc), "NOAUTH Authentication required."},
		{"reader writes", rdb(leader, "dash", tc), "NOPERM this user has no permissions to run the 'set' command"},
		{"no TLS", rdb(leader, "app", nil), ""}, // any error: go-redis reads the plain error line, tries AUTH, meets EOF
	} {
		if err := tc.c.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Fatalf("%s: SET = %v, want %q", tc.name, err, tc.wantErr)
		}
	}

	// redis-cli over TLS, where it has TLS.
	if cli, err := exec.LookPath("redis-cli"); err != nil {
		t.Log("redis-cli is not installed (apt-get install -y redis-tools): its checks skipped")
	} else if help, _ := exec.Command(cli, "--help").CombinedOutput(); !strings.Contains(string(help), "--tls") {
		t.Log("redis-cli is built without TLS (no --tls in its help): its checks skipped")
	} else {
		host, port, _ := net.SplitHostPort(x.node(follower).RESP)
		run := func(args ...string) string {
			t.Helper()
			args = append([]string{"-h", host, "-p", port, "--no-auth-warning", "--tls", "--cacert", ca}, args...)
			out, _ := exec.CommandContext(ctx, cli, args...).CombinedOutput() // an error reply may exit 1
			return strings.TrimSpace(string(out))
		}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--user", "app", "--pass", passwords["app"], "SET", "cli", "hello world"}, "OK"},
			{[]string{"--user", "dash", "--pass", passwords["dash"], "GET", "cli"}, "hello world"},
			{[]string{"GET", "cli"}, "NOAUTH Authentication required."},
			{[]string{"--user", "dash", "--pass", "wrong", "GET", "cli"}, "WRONGPASS"},
			{[]string{"--user", "app", "--pass", passwords["app"], "TRIREME.TRANSFER", leader}, "NOPERM"},
		} {
			if out := run(c.args...); !strings.Contains(out, c.want) {
				t.Fatalf("redis-cli %q = %q, want %q", c.args, out, c.want)
			}
		}
	}

	// The admin hands leadership to the follower, over RESP.
	if err := rdb(leader, "root", tc).Do(ctx, "TRIREME.TRANSFER", follower).Err(); err != nil {
		t.Fatalf("TRIREME.TRANSFER %s as root: %v", follower, err)
	}
	if role, err := rdb(follower, "root", tc).Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("ROLE on %s after the transfer: %v %v", follower, role, err)
	}

	// Failures are logged with proto=resp and never with a password.
	time.Sleep(100 * time.Millisecond)
	logs := ""
	for _, n := range x.c.Spec().Nodes {
		b, _ := os.ReadFile(x.c.LogPath(n.ID))
		logs += string(b)
	}
	if !strings.Contains(logs, `msg="authentication failed"`) || !strings.Contains(logs, "proto=resp") {
		t.Fatal("no failed RESP authentication in the logs")
	}
	for _, pw := range passwords {
		if strings.Contains(logs, pw) {
			t.Fatal("a node logged a password")
		}
	}
}
