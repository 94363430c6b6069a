package system

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/cluster"
)

// mlCluster starts a 3-node multi-leader cluster with the given --conflicts.
func mlCluster(t *testing.T, conflicts string) *tc {
	t.Helper()
	return mustStartWith(t, func(c *cluster.Config) {
		c.Spec.Mode = "multi-leader"
		c.NodeArgs = []string{"--log-level", "debug", "--conflicts", conflicts}
	})
}

// do sends an HTTP request and returns the status, the headers and the body.
func do(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

type mlRead struct {
	Value    string `json:"value"`
	Context  string `json:"context"`
	Siblings []struct {
		Value string `json:"value"`
		Node  string `json:"node"`
	} `json:"siblings"`
}

func readKey(t *testing.T, addr, key string) (int, mlRead) {
	t.Helper()
	code, _, body := do(t, "GET", "http://"+addr+"/v1/kv/"+key, "", nil)
	var r mlRead
	if code == 200 {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("GET %s: %v: %s", key, err, body)
		}
	}
	return code, r
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMultiLeaderSiblingsOverHTTPAndRESP(t *testing.T) {
	x := mlCluster(t, "siblings")
	nodes := x.c.Spec().Nodes
	for _, n := range nodes {
		if err := x.c.WaitReady(x.ctx(20*time.Second), n.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Two nodes write the same key while cut off from each other: the
	// writes are concurrent. Cutting links needs proxies; instead, write
	// at the same time on two nodes many times and require that at least
	// one round produced siblings (the streams take milliseconds).
	var r mlRead
	for round := 0; round < 50; round++ {
		key := fmt.Sprintf("k%d", round)
		done := make(chan struct{}, 2)
		for i, n := range nodes[:2] {
			go func() {
				do(t, "PUT", "http://"+n.HTTP+"/v1/kv/"+key, fmt.Sprintf("from-%d", i), nil)
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		waitFor(t, "the key converges on every node", func() bool {
			_, a := readKey(t, nodes[0].HTTP, key)
			_, b := readKey(t, nodes[1].HTTP, key)
			_, c := readKey(t, nodes[2].HTTP, key)
			return a.Context != "" && a.Context == b.Context && b.Context == c.Context
		})
		if _, r = readKey(t, nodes[2].HTTP, key); len(r.Siblings) == 2 {
			// A write carrying the context replaces both siblings.
			code, _, body := do(t, "PUT", "http://"+nodes[2].HTTP+"/v1/kv/"+key, "merged", map[string]string{"X-Trireme-Context": r.Context})
			if code != 200 {
				t.Fatalf("PUT with context: %d %s", code, body)
			}
			waitFor(t, "the merge reaches node 1", func() bool {
				_, a := readKey(t, nodes[0].HTTP, key)
				return a.Value == "merged" && len(a.Siblings) == 0
			})
			// Conflicts were recorded, with both versions.
			code, _, body = do(t, "GET", "http://"+nodes[2].HTTP+"/v1/conflicts", "", nil)
			if code != 200 || !strings.Contains(body, `"key":"`+key+`"`) || !strings.Contains(body, "siblings: concurrent values kept") {
				t.Fatalf("conflicts: %d %s", code, body)
			}
			break
		}
		if round == 49 {
			t.Skip("no two writes were concurrent in 50 rounds (the streams were faster than the clients)")
		}
	}
	// A context for another key is refused.
	code, _, body := do(t, "PUT", "http://"+nodes[0].HTTP+"/v1/kv/other", "v", map[string]string{"X-Trireme-Context": r.Context})
	if code != 400 || !strings.Contains(body, "causal context") {
		t.Fatalf("foreign context: %d %s", code, body)
	}
	// RESP: counters on every node all count; GETCTX and SETCTX.
	ctx := x.ctx(10 * time.Second)
	for _, n := range nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.RESP})
		for i := 0; i < 10; i++ {
			if err := rc.IncrBy(ctx, "hits", 2).Err(); err != nil {
				t.Fatal(err)
			}
		}
		rc.Close()
	}
	waitFor(t, "30 increments of 2 on every node", func() bool {
		for _, n := range nodes {
			if _, r := readKey(t, n.HTTP, "hits"); r.Value != "60" {
				return false
			}
		}
		return true
	})
	rc := redis.NewClient(&redis.Options{Addr: nodes[1].RESP})
	defer rc.Close()
	got, err := rc.Do(ctx, "TRIREME.GETCTX", "hits").Slice()
	if err != nil || len(got) != 2 {
		t.Fatalf("GETCTX: %v %v", got, err)
	}
	if err := rc.Do(ctx, "TRIREME.SETCTX", "greeting", "", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.SetNX(ctx, "greeting", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("SETNX on multi-leader: %v", err)
	}
}

func TestMultiLeaderModeIsRecorded(t *testing.T) {
	x := mlCluster(t, "lww")
	n := x.c.Spec().Nodes[0]
	if err := x.c.WaitReady(x.ctx(20*time.Second), n.ID); err != nil {
		t.Fatal(err)
	}
	code, _, body := do(t, "GET", "http://"+n.HTTP+"/v1/status", "", nil)
	if code != 200 || !strings.Contains(body, `"mode":"multi-leader"`) || !strings.Contains(body, `"streams":[`) {
		t.Fatalf("status: %d %s", code, body)
	}
	if err := x.c.Stop(n.ID); err != nil {
		t.Fatal(err)
	}
	// The same data directory as a single-leader node: refused, naming both modes.
	args := x.c.Args(n)
	var sl []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--mode" || args[i] == "--conflicts" {
			i++
			continue
		}
		sl = append(sl, args[i])
	}
	_, stderr, exit := runCLI(t, nil, sl...)
	if exit == 0 || !strings.Contains(stderr, "multi-leader node's data") {
		t.Fatalf("single-leader node on a multi-leader directory: exit %d, %s", exit, stderr)
	}
	// Flags of the other mode are refused.
	_, stderr, exit = runCLI(t, nil, append(args, "--election-timeout", "1s")...)
	if exit != 2 || !strings.Contains(stderr, "--election-timeout applies to --mode single-leader only") {
		t.Fatalf("--election-timeout with multi-leader: exit %d, %s", exit, stderr)
	}
}
