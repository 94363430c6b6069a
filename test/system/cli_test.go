package system

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
)

// runCLI runs the trireme binary and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
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

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args     []string
		wantCode int
		mention  string
	}{
		{[]string{"node", "--data", dir, "--cluster", "n1=127.0.0.1:1"}, 2, "--id"},
		{[]string{"node", "--id", "n1", "--cluster", "n1=127.0.0.1:1"}, 2, "--data"},
		{[]string{"node", "--id", "n1", "--data", dir}, 2, "--cluster"},
		{[]string{"node", "--id", "n9", "--data", dir, "--cluster", "n1=127.0.0.1:1"}, 2, "--id"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=nowhere"}, 2, "--cluster"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1", "--ack", "fast"}, 2, "--ack"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1", "--heartbeat", "1s"}, 2, "--election-timeout"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1", "--log-level", "loud"}, 2, "--log-level"},
		{[]string{"node", "--bogus"}, 2, "bogus"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1"}, 2, "--peer-tls-dir"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1", "--peer-tls-dir", dir, "--insecure-peers"}, 2, "exclude"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1", "--peer-tls-dir", dir}, 2, "trireme certs"},
		{[]string{"node", "--id", "n1", "--data", dir, "--cluster", "n1=127.0.0.1:1", "--insecure-peers", "--http-peers", "n9=127.0.0.1:2"}, 2, "n9"},
		{[]string{"certs", "--nodes", "n1"}, 2, "--dir"},
		{[]string{"certs", "--dir", dir}, 2, "--nodes"},
		{[]string{"certs", "--dir", dir, "--nodes", "n1,a/b"}, 2, "--nodes"},
		{[]string{"put", "k"}, 2, "want 2 argument"},
		{[]string{"put", "k", "v", "--data", dir}, 1, "trireme up"},
		{[]string{"get", "k", "--consistency", "eventual"}, 2, "--consistency"},
		{[]string{"transfer"}, 2, "--to"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"up", "--nodes", "0", "--data", dir}, 1, "--nodes"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := runCLI(t, []string{"TRIREME_ENDPOINTS="}, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.mention) {
				t.Fatalf("exit %d (want %d), stderr %q should mention %q", code, tc.wantCode, stderr, tc.mention)
			}
		})
	}
}

func TestCLIHelp(t *testing.T) {
	out, _, code := runCLI(t, nil, "help")
	if code != 0 || !strings.Contains(out, "Commands:") {
		t.Fatalf("help: %d %s", code, out)
	}
	for _, c := range []string{"node", "up", "certs", "put", "get", "del", "status", "rollbacks", "transfer"} {
		for _, args := range [][]string{{"help", c}, {c, "--help"}} {
			out, _, code := runCLI(t, nil, args...)
			if code != 0 || !strings.Contains(out, "trireme "+c) || !strings.Contains(out, "Example") || !strings.Contains(out, "Flags:") {
				t.Fatalf("trireme %v: exit %d\n%s", args, code, out)
			}
		}
	}
}

func TestCLIAgainstCluster(t *testing.T) {
	x := mustStart(t)
	leader := x.mustLeader("")
	env := []string{"TRIREME_ENDPOINTS=" + strings.Join(x.c.Spec().HTTPEndpoints(), ",")}
	out, stderr, code := runCLI(t, env, "put", "greeting", "hello", "--ack", "sync")
	if code != 0 || !strings.Contains(out, "durability=sync") || !strings.Contains(out, "replicas=2") {
		t.Fatalf("put: %d %q %q", code, out, stderr)
	}
	out, _, code = runCLI(t, env, "put", "--ack", "semi-sync", "--replicas", "1", "k2", "v2")
	if code != 0 || !strings.Contains(out, "durability=semi-sync") {
		t.Fatalf("put with flags first: %d %q", code, out)
	}
	out, _, code = runCLI(t, env, "get", "greeting")
	if code != 0 || out != "hello\n" {
		t.Fatalf("get: %d %q", code, out)
	}
	out, _, code = runCLI(t, env, "get", "greeting", "--consistency", "stale", "--node", x.c.Spec().Nodes[2].HTTP)
	if code != 0 || out != "hello\n" {
		t.Fatalf("stale get: %d %q", code, out)
	}
	out, _, code = runCLI(t, env, "status")
	if code != 0 || strings.Count(out, "follower") != 2 || !strings.Contains(out, leader) {
		t.Fatalf("status: %d\n%s", code, out)
	}
	if _, _, code = runCLI(t, env, "del", "greeting"); code != 0 {
		t.Fatalf("del: %d", code)
	}
	_, stderr, code = runCLI(t, env, "get", "greeting")
	if code != 1 || !strings.Contains(stderr, "not found") {
		t.Fatalf("get after del: %d %q", code, stderr)
	}
	out, _, code = runCLI(t, env, "rollbacks")
	if code != 0 || !strings.Contains(out, "0 discarded") {
		t.Fatalf("rollbacks: %d %q", code, out)
	}
	target := x.followers(leader)[0]
	out, stderr, code = runCLI(t, env, "transfer", "--to", target)
	if code != 0 || !strings.Contains(out, target) {
		t.Fatalf("transfer: %d %q %q", code, out, stderr)
	}
	if l := x.mustLeader(""); l != target {
		t.Fatalf("leader %s after transfer to %s", l, target)
	}
}

// TestUp runs `trireme up`, writes, stops it with SIGINT, runs it again on
// the same data directory and reads the write back.
func TestUp(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	spec, err := cluster.FreeSpec(3)
	if err != nil {
		t.Fatal(err)
	}
	// Pre-write a layout on free ports: trireme up reuses cluster.json.
	if err := spec.Save(data); err != nil {
		t.Fatal(err)
	}
	up := func() (*exec.Cmd, *safeBuffer) {
		cmd := exec.Command(binary, "up", "--data", data)
		var out safeBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(out.String(), "Leader:") {
			if time.Now().After(deadline) {
				t.Fatalf("trireme up printed no leader:\n%s", out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd, &out
	}
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("trireme up exited with %v after SIGINT", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("trireme up did not stop after SIGINT")
		}
	}
	cmd, _ := up()
	env := []string{"TRIREME_ENDPOINTS="}
	out, stderr, code := runCLI(t, env, "put", "persist", "yes", "--data", data)
	if code != 0 {
		t.Fatalf("put: %d %s %s", code, out, stderr)
	}
	stop(cmd)
	cmd, _ = up()
	out, stderr, code = runCLI(t, env, "get", "persist", "--data", data)
	if code != 0 || out != "yes\n" {
		t.Fatalf("get after restart: %d %q %q", code, out, stderr)
	}
	stop(cmd)
}

// safeBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
