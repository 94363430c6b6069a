package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
)

// TestUpReplicas runs `trireme up --replicas 2 --quiet`: the replicas join
// as learners, serve stale reads of majority writes (HTTP and RESP), stop
// cleanly on SIGINT, and come back on a restart of the same --data without
// joining again.
func TestUpReplicas(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	spec, err := cluster.FreeSpec(3)
	if err != nil {
		t.Fatal(err)
	}
	if spec, err = spec.WithFreeReplicas(2); err != nil {
		t.Fatal(err)
	}
	// Pre-write a layout on free ports: trireme up reuses cluster.json.
	if err := spec.Save(data); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Endpoints: spec.HTTPEndpoints(), RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dumpLogs := func() {
		for _, n := range spec.All() {
			b, _ := os.ReadFile(filepath.Join(data, "logs", n.ID+".log"))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("---- last lines of %s's log ----\n%s", n.ID, strings.Join(lines[max(0, len(lines)-20):], "\n"))
		}
	}
	up := func(args ...string) *upProc {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"up", "--data", data, "--quiet"}, args...)...)
		p := &upProc{cmd: cmd, done: make(chan error, 1)}
		cmd.Stdout, cmd.Stderr = &p.out, &p.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		// The REPLICA section is printed once the leader lists every replica.
		deadline := time.NewTimer(30 * time.Second)
		defer deadline.Stop()
		for !strings.Contains(p.out.String(), "REPLICA ") {
			select {
			case err := <-p.done:
				dumpLogs()
				t.Fatalf("trireme up exited (%v) before listing its read replicas:\n%s", err, p.out.String())
			case <-deadline.C:
				dumpLogs()
				t.Fatalf("trireme up printed no read replicas:\n%s", p.out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
		for _, r := range spec.Replicas {
			if !strings.Contains(p.out.String(), r.ID+"       "+r.HTTP) {
				t.Fatalf("trireme up does not print %s's endpoints:\n%s", r.ID, p.out.String())
			}
		}
		return p
	}
	stop := func(p *upProc) {
		t.Helper()
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-p.done:
			if err != nil || !strings.Contains(p.out.String(), "Stopped.") {
				t.Fatalf("trireme up exited with %v after SIGINT:\n%s", err, p.out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("trireme up did not stop after SIGINT:\n%s", p.out.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p := up("--replicas", "2")
	want := map[string]string{}
	for i := range 5 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if _, err := cl.Put(ctx, []byte(k), []byte(v), client.WriteOptions{Ack: "majority"}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		want[k] = v
	}
	waitReplicaReads(t, ctx, cl, spec.Replicas, want)
	before := mustMembers(t, ctx, cl, spec)
	stop(p)
	for _, r := range spec.Replicas {
		if n := joins(t, data, r.ID); n != 1 {
			t.Fatalf("%s joined %d times in the first run", r.ID, n)
		}
	}

	// A restart brings the replicas back (cluster.json has them) without a
	// second join: the member list is the same.
	p = up()
	if !strings.Contains(p.out.String(), "3 nodes and 2 read replicas") {
		t.Fatalf("restart output:\n%s", p.out.String())
	}
	if after := mustMembers(t, ctx, cl, spec); !slices.Equal(after, before) {
		t.Fatalf("members after a restart %v, before %v", after, before)
	}
	for _, r := range spec.Replicas {
		b, _ := os.ReadFile(filepath.Join(data, "logs", r.ID+".log"))
		if n := joins(t, data, r.ID); n != 1 || !strings.Contains(string(b), "not asking again") {
			dumpLogs()
			t.Fatalf("%s after a restart: %d joins in its log, or no \"not asking again\"", r.ID, n)
		}
	}
	want["k-after"] = "restarted"
	if _, err := cl.Put(ctx, []byte("k-after"), []byte("restarted"), client.WriteOptions{Ack: "majority"}); err != nil {
		t.Fatal(err)
	}
	waitReplicaReads(t, ctx, cl, spec.Replicas, want)
	stop(p)
}

// upProc is a running `trireme up`.
type upProc struct {
	cmd  *exec.Cmd
	out  safeBuffer
	done chan error // receives cmd.Wait's result
}

// waitReplicaReads waits (10s at most) until every replica serves want with
// stale reads over HTTP, and the first one over RESP.
func waitReplicaReads(t *testing.T, ctx context.Context, cl *client.Client, replicas []cluster.NodeSpec, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range replicas {
		for k, v := range want {
			for {
				res, err := cl.Get(ctx, []byte(k), client.ReadOptions{Consistency: "stale", Endpoint: r.HTTP})
				if err == nil && string(res.Value) == v {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("replica %s: stale read of %s = %q, %v; want %q", r.ID, k, res.Value, err, v)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: replicas[0].RESP, PoolSize: 1, MaxRetries: -1})
	defer rdb.Close()
	for k, v := range want {
		for {
			got, err := rdb.Get(ctx, k).Result()
			if err == nil && got == v {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s: RESP GET %s = %q, %v; want %q", replicas[0].ID, k, got, err, v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// mustMembers checks that the cluster lists the voters and the replicas
// (as learners), and returns them as "id role" lines, sorted.
func mustMembers(t *testing.T, ctx context.Context, cl *client.Client, spec cluster.Spec) []string {
	t.Helper()
	ms, err := cl.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, m := range ms {
		got = append(got, m.ID+" "+m.Role)
	}
	for _, id := range spec.IDs() {
		want = append(want, id+" "+client.RoleVoter)
	}
	for _, id := range spec.ReplicaIDs() {
		want = append(want, id+" "+client.RoleLearner)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	return got
}

// joins counts the join requests in node id's log.
func joins(t *testing.T, data, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "logs", id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "joining the cluster as a learner")
}
