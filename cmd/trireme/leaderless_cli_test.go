package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// newCLILeaderless returns a leaderless Fake with node id id whose status
// carries info.
func newCLILeaderless(id string, info api.LeaderlessInfo) *apitest.Fake {
	f := apitest.NewFakeID(id)
	f.SetLeaderless(info)
	return f
}

// TestLeaderlessClientCommands: put, del and get take --w, --r and
// --repair, send them, and print the replicas that answered.
func TestLeaderlessClientCommands(t *testing.T) {
	f := newCLILeaderless("n1", api.LeaderlessInfo{ReplicationFactor: 3})
	f.SetRepaired(1)
	url := mustService(t, f)

	code, out, errOut := runCLI("put", "k", "v", "--w", "2", "--endpoints", url)
	if code != 0 || out != "OK replicas=3 durability=2 node="+url+"\n" || errOut != "" {
		t.Fatalf("put --w 2: %d %q %q", code, out, errOut)
	}
	if w, _ := f.LastWrite(); w.W != 2 {
		t.Fatalf("put --w 2: the node saw W %v", w.W)
	}
	code, out, errOut = runCLI("get", "k", "--r", "one", "--repair", "blocking", "-v", "--endpoints", url)
	if code != 0 || out != "v\n" || !strings.Contains(errOut, "node="+url+"\nreplicas=3\nrepaired=1\n") {
		t.Fatalf("get --r one --repair blocking -v: %d %q %q", code, out, errOut)
	}
	if o, _ := f.LastRead(); o.R != api.QuorumOne || !o.Repair || o.Consistency != api.Linearizable {
		t.Fatalf("get: the node saw %+v", o)
	}
	// A named node coordinates the read, without --consistency.
	if code, out, errOut = runCLI("get", "k", "--node", url, "--r", "all", "--endpoints", url); code != 0 || out != "v\n" {
		t.Fatalf("get --node --r all: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = runCLI("del", "k", "--w", "all", "--endpoints", url); code != 0 || !strings.HasPrefix(out, "OK replicas=3 ") {
		t.Fatalf("del --w all: %d %q %q", code, out, errOut)
	}
	if w, _ := f.LastWrite(); w.W != api.QuorumAll {
		t.Fatalf("del --w all: the node saw W %v", w.W)
	}
	code, _, errOut = runCLI("get", "k", "-v", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "key not found") || !strings.Contains(errOut, "replicas=3\n") {
		t.Fatalf("get of a deleted key -v: %d %q", code, errOut)
	}

	// Too few replicas reachable: the write is refused, nothing written.
	f.SetReplicasUp(1)
	_, before := f.LastWrite()
	code, _, errOut = runCLI("put", "k", "v", "--wait", "100ms", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "could reach enough replicas") || !strings.Contains(errOut, "not written") {
		t.Fatalf("put with one replica of three up: %d %q", code, errOut)
	}
	if _, n := f.LastWrite(); n != before {
		t.Fatal("a refused write was written")
	}
	if code, _, errOut = runCLI("put", "k", "v", "--w", "one", "--endpoints", url); code != 0 {
		t.Fatalf("put --w one with one replica up: %d %q", code, errOut)
	}
	// A W above the replication factor: the node's refusal.
	if code, _, errOut = runCLI("put", "k", "v", "--w", "5", "--endpoints", url); code != 1 || !strings.Contains(errOut, api.ErrBadQuorum.Error()) {
		t.Fatalf("put --w 5: %d %q", code, errOut)
	}
}

// TestLeaderlessFlagsRefused: a quorum or repair word the CLI cannot send
// is a usage error (exit 2).
func TestLeaderlessFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"put", "k", "v", "--w", "0"},
		{"put", "k", "v", "--w", "two"},
		{"del", "k", "--w", "QUORUM"},
		{"get", "k", "--r", "-1"},
		{"get", "k", "--r", ""},
		{"get", "k", "--repair", "eager"},
	} {
		code, _, errOut := runCLI(append(args, "--endpoints", "127.0.0.1:1")...)
		if code != 2 || !strings.Contains(errOut, "want ") {
			t.Errorf("%q: %d %q, want exit 2", args, code, errOut)
		}
	}
}

// TestStatusLeaderless: on a leaderless cluster, trireme status prints a
// row per node with its share of the ring, the hints it holds, its
// repairs, its Merkle exchanges and the peers it considers down.
func TestStatusLeaderless(t *testing.T) {
	own := map[string]float64{"n1": 1, "n2": 0.75, "n3": 1.25}
	n1 := newCLILeaderless("n1", api.LeaderlessInfo{ReplicationFactor: 3, SloppyQuorum: true, Ownership: own,
		HintsPending: map[string]int{"n3": 4, "n2": 1, "n4": 0}, ReadRepairs: 2, AERepairs: 5,
		AEExchanges: 7, AEBucketsCompared: 640, AEBucketsDiffer: 3, Down: []string{"n3"}})
	n2 := newCLILeaderless("n2", api.LeaderlessInfo{ReplicationFactor: 3, SloppyQuorum: true, Ownership: own})
	u1, u2 := mustService(t, n1), mustService(t, n2)
	down := "127.0.0.1:1"
	code, out, errOut := runCLI("status", "--endpoints", u1+","+u2+","+down)
	if code != 0 {
		t.Fatalf("status: %d\n%s%s", code, out, errOut)
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	want := []string{
		"NODE MODE RING HINTS READ-REPAIRS AE-REPAIRS MERKLE DOWN ENDPOINT",
		"n1 leaderless 100.0% 5 (n2:1 n3:4) 2 5 7/640/3 n3 " + u1,
		"n2 leaderless 75.0% 0 0 0 0/0/0 - " + u2,
		"? down - - - - - - http://" + down,
		"replication factor 3, sloppy quorums (hinted handoff)",
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("status:\n%s\nwant (blanks squeezed):\n%s", out, strings.Join(want, "\n"))
	}
}

// TestLeaderlessHelp: the new flags and columns are described.
func TestLeaderlessHelp(t *testing.T) {
	for cmd, mentions := range map[string][]string{
		"put":    {"--w", "leaderless", "quorum"},
		"del":    {"--w"},
		"get":    {"--r", "--repair", "blocking", "replicas=N"},
		"status": {"RING", "HINTS", "MERKLE", "READ-REPAIRS", "AE-REPAIRS"},
	} {
		code, out, _ := runCLI("help", cmd)
		for _, m := range mentions {
			if code != 0 || !strings.Contains(out, m) {
				t.Errorf("trireme help %s: %d, does not mention %q", cmd, code, m)
			}
		}
	}
}
