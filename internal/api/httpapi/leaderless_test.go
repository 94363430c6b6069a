package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// llInfo is a leaderless status for the tests.
var llInfo = api.LeaderlessInfo{ReplicationFactor: 3, SloppyQuorum: true,
	Ownership:    map[string]float64{"n1": 1, "n2": 1, "n3": 1},
	HintsPending: map[string]int{"n3": 4}, HintsStored: 9, ReadRepairs: 2, AERepairs: 5,
	AEBucketsCompared: 640, AEBucketsDiffer: 3, AEDiffering: map[string]int{"n2": 0, "n3": -1}}

// mustLeaderless returns a leaderless Fake and a server for it.
func mustLeaderless(t *testing.T) (*apitest.Fake, *httptest.Server) {
	t.Helper()
	f := apitest.NewFake("n2", "n3")
	f.SetLeaderless(llInfo)
	return f, mustServer(t, f)
}

// w= and r= take a number from 1 or one, quorum, all; repair= blocking or
// background; anything else is ErrBadRequest wrapping api.ErrBadQuorum
// (or naming repair=).
func TestParseQuorumParams(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want api.Quorum
	}{
		{"1", 1}, {"3", 3}, {"12", 12}, {"one", api.QuorumOne}, {"quorum", api.QuorumMajority}, {"all", api.QuorumAll},
	} {
		w, err := ParseWriteOptions(map[string][]string{"w": {tc.v}})
		if err != nil || w.W != tc.want || !w.Default {
			t.Errorf("w=%s: %+v %v, want W %v and the default ack", tc.v, w, err, tc.want)
		}
		o, _, err := ParseReadOptions(map[string][]string{"r": {tc.v}}, nil)
		if err != nil || o.R != tc.want || o.Repair {
			t.Errorf("r=%s: %+v %v, want R %v", tc.v, o, err, tc.want)
		}
	}
	for _, v := range []string{"0", "-1", "two", "1.5", "QUORUM", " 2", "majority"} {
		_, err := ParseWriteOptions(map[string][]string{"w": {v}})
		if !errors.Is(err, ErrBadRequest) || !errors.Is(err, api.ErrBadQuorum) || !strings.Contains(err.Error(), "w=") {
			t.Errorf("w=%q: %v, want ErrBadRequest and ErrBadQuorum naming w=", v, err)
		}
		_, _, err = ParseReadOptions(map[string][]string{"r": {v}}, nil)
		if !errors.Is(err, ErrBadRequest) || !errors.Is(err, api.ErrBadQuorum) || !strings.Contains(err.Error(), "r=") {
			t.Errorf("r=%q: %v, want ErrBadRequest and ErrBadQuorum naming r=", v, err)
		}
	}
	for v, want := range map[string]bool{"blocking": true, "background": false} {
		if o, _, err := ParseReadOptions(map[string][]string{"repair": {v}}, nil); err != nil || o.Repair != want {
			t.Errorf("repair=%s: %+v %v", v, o, err)
		}
	}
	for _, v := range []string{"yes", "1", "Blocking", "none"} {
		if _, _, err := ParseReadOptions(map[string][]string{"repair": {v}}, nil); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "repair=") {
			t.Errorf("repair=%q: %v, want ErrBadRequest naming repair=", v, err)
		}
	}
}

// TestLeaderlessOptionsReachService: w=, r= and repair= reach the service,
// and every reply says how many replicas answered.
func TestLeaderlessOptionsReachService(t *testing.T) {
	f, srv := mustLeaderless(t)
	c := srv.Client()

	for _, tc := range []struct {
		method, target string
		body           []byte
		want           api.Quorum
	}{
		{"PUT", "/v1/kv/k?w=2", []byte("v"), 2},
		{"PUT", "/v1/kv/k?w=all&ack=majority&timeout=1s", []byte("v"), api.QuorumAll},
		{"PUT", "/v1/kv/k", []byte("v"), api.QuorumDefault},
		{"DELETE", "/v1/kv/gone?w=one", nil, api.QuorumOne},
		{"POST", "/v1/kv/n?op=incr&w=quorum", nil, api.QuorumMajority},
		{"PUT", "/v1/kv/k?w=quorum&if_index=0", []byte("v"), api.QuorumMajority}, // a command: Exec
	} {
		code, b, h := mustDo(t, c, tc.method, srv.URL+tc.target, tc.body)
		if tc.target == "/v1/kv/k?w=quorum&if_index=0" {
			if code != http.StatusPreconditionFailed || h.Get(ReplicasHeader) != "3" {
				t.Fatalf("%s %s: %d %s %v, want 412 with %s", tc.method, tc.target, code, b, h, ReplicasHeader)
			}
		} else if m := mustJSON(t, b); code != 200 || m["replicas"] != 3.0 || h.Get(ReplicasHeader) != "3" || h.Get(SessionHeader) != "" {
			t.Fatalf("%s %s: %d %s %v, want 200, 3 replicas, no session token", tc.method, tc.target, code, b, h)
		}
		if w, _ := f.LastWrite(); w.W != tc.want {
			t.Fatalf("%s %s: the service saw W %v, want %v", tc.method, tc.target, w.W, tc.want)
		}
	}

	// Reads: R and repair reach the service; the reply has replicas and,
	// after a blocking repair that did something, repaired.
	f.SetRepaired(2)
	for _, tc := range []struct {
		query    string
		want     api.ReadOptions
		repaired float64
	}{
		{"", api.ReadOptions{}, 0},
		{"?r=one", api.ReadOptions{R: api.QuorumOne}, 0},
		{"?r=3&repair=background", api.ReadOptions{R: 3}, 0},
		{"?r=all&repair=blocking", api.ReadOptions{R: api.QuorumAll, Repair: true}, 2},
		{"?repair=blocking&consistency=stale", api.ReadOptions{Consistency: api.Stale, Repair: true}, 2},
	} {
		code, b, h := mustDo(t, c, "GET", srv.URL+"/v1/kv/k"+tc.query, nil)
		m := mustJSON(t, b)
		if code != 200 || m["value"] != "v" || m["replicas"] != 3.0 || h.Get(ReplicasHeader) != "3" {
			t.Fatalf("GET %s: %d %s %v", tc.query, code, b, h)
		}
		if got, _ := m["repaired"].(float64); got != tc.repaired || (tc.repaired == 0) != (h.Get(RepairedHeader) == "") {
			t.Fatalf("GET %s: repaired %v, header %q, want %v", tc.query, m["repaired"], h.Get(RepairedHeader), tc.repaired)
		}
		if o, _ := f.LastRead(); o != tc.want {
			t.Fatalf("GET %s: the service saw %+v, want %+v", tc.query, o, tc.want)
		}
	}
	// Raw, HEAD and 404 replies say it too.
	code, b, h := mustDo(t, c, "GET", srv.URL+"/v1/kv/k?raw=1&r=2&repair=blocking", nil)
	if code != 200 || string(b) != "v" || h.Get(ReplicasHeader) != "3" || h.Get(RepairedHeader) != "2" {
		t.Fatalf("raw read: %d %q %v", code, b, h)
	}
	if code, _, h = mustDo(t, c, "HEAD", srv.URL+"/v1/kv/k?r=2", nil); code != 200 || h.Get(ReplicasHeader) != "3" {
		t.Fatalf("HEAD: %d %v", code, h)
	}
	code, b, h = mustDo(t, c, "GET", srv.URL+"/v1/kv/absent?r=one", nil)
	if m := mustJSON(t, b); code != 404 || m["replicas"] != 3.0 || m["repaired"] != nil || h.Get(ReplicasHeader) != "3" {
		t.Fatalf("read of a missing key: %d %s %v", code, b, h)
	}

	// The status carries the ring, hints and repairs.
	_, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/status", nil)
	var st api.NodeStatus
	if err := json.Unmarshal(b, &st); err != nil || st.Mode != ModeLeaderless || st.Leaderless == nil ||
		st.Leaderless.HintsPending["n3"] != 4 || st.Leaderless.Ownership["n2"] != 1 || st.Leaderless.AEDiffering["n3"] != -1 {
		t.Fatalf("status: %s %v", b, err)
	}
}

// TestLeaderlessQuorumErrors: a bad quorum is a 400 with api.ErrBadQuorum's
// message, before the service sees the request (a word it does not know)
// or from it (more than the key's replicas); too few replicas up is a 503
// with api.ErrQuorumUnavailable's.
func TestLeaderlessQuorumErrors(t *testing.T) {
	f, srv := mustLeaderless(t)
	c := srv.Client()
	for _, target := range []string{"PUT /v1/kv/k?w=0", "PUT /v1/kv/k?w=two", "DELETE /v1/kv/k?w=-1", "POST /v1/kv/n?op=incr&w=x",
		"GET /v1/kv/k?r=0", "GET /v1/kv/k?r=most", "PUT /v1/kv/k?w=", "GET /v1/kv/k?r=1&r=2"} {
		method, path, _ := strings.Cut(target, " ")
		var body []byte
		if method == "PUT" {
			body = []byte("v")
		}
		code, b, _ := mustDo(t, c, method, srv.URL+path, body)
		e, _ := mustJSON(t, b)["error"].(string)
		if code != http.StatusBadRequest || !strings.Contains(e, "bad request") {
			t.Fatalf("%s: %d %s, want 400", target, code, b)
		}
		if !strings.HasSuffix(path, "=") && !strings.Contains(path, "&r=2") && !strings.Contains(e, api.ErrBadQuorum.Error()) {
			t.Fatalf("%s: error %q does not say %q", target, e, api.ErrBadQuorum)
		}
	}
	if _, n := f.LastWrite(); n != 0 {
		t.Fatalf("the service saw %d writes", n)
	}
	if _, n := f.LastRead(); n != 0 {
		t.Fatalf("the service saw %d reads", n)
	}
	// From the service: W or R above N = 3.
	for _, target := range []string{"PUT /v1/kv/k?w=4", "GET /v1/kv/k?r=4"} {
		method, path, _ := strings.Cut(target, " ")
		code, b, _ := mustDo(t, c, method, srv.URL+path, []byte("v"))
		if e, _ := mustJSON(t, b)["error"].(string); code != http.StatusBadRequest || !strings.Contains(e, api.ErrBadQuorum.Error()) {
			t.Fatalf("%s: %d %s, want 400 with ErrBadQuorum", target, code, b)
		}
	}
	for _, wrapped := range []error{fmt.Errorf("%w: the key's replicas", api.ErrBadQuorum), api.ErrorOf(api.CodeBadQuorum, "from n2")} {
		f.FailNext(wrapped)
		if code, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v")); code != http.StatusBadRequest {
			t.Fatalf("a forwarded ErrBadQuorum: %d %s", code, b)
		}
	}

	// One replica of three up: a majority cannot be met, one can.
	f.SetReplicasUp(1)
	for _, target := range []string{"PUT /v1/kv/k", "PUT /v1/kv/k?w=2", "DELETE /v1/kv/k?w=all", "GET /v1/kv/k", "GET /v1/kv/k?r=quorum"} {
		method, path, _ := strings.Cut(target, " ")
		code, b, h := mustDo(t, c, method, srv.URL+path, []byte("v"))
		e, _ := mustJSON(t, b)["error"].(string)
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(e, "unavailable (retry): ") ||
			!strings.Contains(e, api.ErrQuorumUnavailable.Error()) || h.Get(ReplicasHeader) != "" {
			t.Fatalf("%s with one replica up: %d %s %v, want 503 saying the quorum is not reachable", target, code, b, h)
		}
	}
	code, b, h := mustDo(t, c, "PUT", srv.URL+"/v1/kv/k?w=one", []byte("v1"))
	if code != 200 || h.Get(ReplicasHeader) != "1" || mustJSON(t, b)["replicas"] != 1.0 {
		t.Fatalf("w=one with one replica up: %d %s %v", code, b, h)
	}
	code, b, h = mustDo(t, c, "GET", srv.URL+"/v1/kv/k?r=one", nil)
	if code != 200 || h.Get(ReplicasHeader) != "1" || mustJSON(t, b)["replicas"] != 1.0 {
		t.Fatalf("r=one with one replica up: %d %s %v", code, b, h)
	}
}

// timeoutService answers every write as a leaderless write that met one
// replica of its W in time.
type timeoutService struct{ *apitest.Fake }

func (s timeoutService) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	res, err := s.Fake.Put(ctx, key, value, w)
	if err != nil {
		return res, err
	}
	res.Replicas = 1
	return res, fmt.Errorf("%w: 1 of W=2 replicas in time", api.ErrWriteTimeout)
}

// A leaderless write whose W was not met in time: 504, with the replicas
// that hold it, in the leaderless words.
func TestLeaderlessWriteTimeout(t *testing.T) {
	f := apitest.NewFake()
	f.SetLeaderless(llInfo)
	srv := httptest.NewServer(New(timeoutService{f}, nil, nil))
	t.Cleanup(srv.Close)
	code, b, h := mustDo(t, srv.Client(), "PUT", srv.URL+"/v1/kv/k?w=2", []byte("v"))
	m := mustJSON(t, b)
	e, _ := m["error"].(string)
	if code != http.StatusGatewayTimeout || h.Get(ReplicasHeader) != "1" || m["replicas"] != 1.0 ||
		!strings.Contains(e, "reached: durable on 1 replica(s) of the key") || strings.Contains(e, "leader") {
		t.Fatalf("a leaderless timeout: %d %s %v", code, b, h)
	}
}

// TestLeaderlessParamsElsewhere: a node of another mode refuses w=, r= and
// repair= (400, not supported), and its replies have no replica count.
func TestLeaderlessParamsElsewhere(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	for _, target := range []string{"PUT /v1/kv/k?w=2", "DELETE /v1/kv/k?w=one", "POST /v1/kv/n?op=incr&w=all",
		"GET /v1/kv/k?r=one", "GET /v1/kv/k?repair=background", "GET /v1/kv/k?repair=blocking&consistency=stale"} {
		method, path, _ := strings.Cut(target, " ")
		var body []byte
		if method == "PUT" {
			body = []byte("v")
		}
		code, b, _ := mustDo(t, c, method, srv.URL+path, body)
		e, _ := mustJSON(t, b)["error"].(string)
		if code != http.StatusBadRequest || !strings.Contains(e, api.ErrNotSupported.Error()) || !strings.Contains(e, "leaderless nodes only") {
			t.Fatalf("%s on a single-leader node: %d %s, want 400 not supported", target, code, b)
		}
	}
	if _, n := f.LastWrite(); n != 0 {
		t.Fatalf("the service saw %d writes", n)
	}
	// A bad value is still a bad value.
	if code, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/k?w=zero", []byte("v")); code != 400 || !strings.Contains(string(b), api.ErrBadQuorum.Error()) {
		t.Fatalf("w=zero on a single-leader node: %d %s", code, b)
	}

	// Replies as before: no replica header, no replica count in reads.
	code, b, h := mustDo(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"))
	if code != 200 || h.Get(ReplicasHeader) != "" || h.Get(SessionHeader) == "" {
		t.Fatalf("single-leader write: %d %s %v", code, b, h)
	}
	for _, path := range []string{"/v1/kv/k", "/v1/kv/k?raw=1", "/v1/kv/absent"} {
		_, b, h := mustDo(t, c, "GET", srv.URL+path, nil)
		if h.Get(ReplicasHeader) != "" || h.Get(RepairedHeader) != "" || strings.Contains(string(b), "replicas") || strings.Contains(string(b), "repaired") {
			t.Fatalf("single-leader read %s: %s %v", path, b, h)
		}
	}
	_, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/status", nil)
	if strings.Contains(string(b), "leaderless") {
		t.Fatalf("single-leader status: %s", b)
	}
}
