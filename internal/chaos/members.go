package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MemberStatus is one member as GET /v1/members shows it.
type MemberStatus struct {
	ID                 string `json:"id"`
	Peer               string `json:"peer"`
	HTTP               string `json:"http"`
	RESP               string `json:"resp"`
	Role               string `json:"role"` // "voter" or "learner"
	MatchIndex         uint64 `json:"match_index"`
	LagEntries         uint64 `json:"lag_entries"`
	State              string `json:"state"` // leader, replicate, probe, snapshot, unknown
	SnapshotBytesSent  int64  `json:"snapshot_bytes_sent"`
	SnapshotBytesTotal int64  `json:"snapshot_bytes_total"`
}

// MemberReply is a node's answer to a membership request: the HTTP status,
// the error message (if not 200) and the member list (if 200). Code 0 means
// no answer (Err says why: a timeout, a refused connection).
type MemberReply struct {
	Code    int
	Err     string
	Members []MemberStatus
}

// String is "200", "409 another membership change ..." or "no answer: ...".
func (r MemberReply) String() string {
	switch {
	case r.Code == 0:
		return "no answer: " + r.Err
	case r.Err == "":
		return strconv.Itoa(r.Code)
	}
	msg := r.Err
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return fmt.Sprintf("%d %s", r.Code, msg)
}

// Find returns the member with id, if listed.
func (r MemberReply) Find(id string) (MemberStatus, bool) {
	for _, m := range r.Members {
		if m.ID == id {
			return m, true
		}
	}
	return MemberStatus{}, false
}

// memberTimeout is the ?timeout of the harness's membership changes; the
// HTTP request itself may take memberTimeout plus a forwarding hop.
const memberTimeout = 4 * time.Second

func (c *Cluster) memberCall(ctx context.Context, via, method, path string, body any) MemberReply {
	ctx, cancel := context.WithTimeout(ctx, memberTimeout+3*time.Second)
	defer cancel()
	u := "http://" + c.Addrs[via].HTTP + path
	if method != http.MethodGet {
		u += "?" + url.Values{"timeout": {memberTimeout.String()}}.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return MemberReply{Err: err.Error()}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return MemberReply{Err: err.Error()}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return MemberReply{Err: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return MemberReply{Code: resp.StatusCode, Err: "reading the answer: " + err.Error()}
	}
	r := MemberReply{Code: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			r.Err = e.Error
		} else {
			r.Err = strings.TrimSpace(string(b))
		}
		return r
	}
	if err := json.Unmarshal(b, &r.Members); err != nil {
		r.Err = fmt.Sprintf("member list does not decode: %v", err)
	}
	return r
}

// ListMembers asks node via for the member list (a follower forwards to the
// leader, or answers its own view without progress: State "unknown").
func (c *Cluster) ListMembers(ctx context.Context, via string) MemberReply {
	return c.memberCall(ctx, via, http.MethodGet, "/v1/members", nil)
}

// AddMember asks node via to add id with its own addresses and role
// ("voter" or "learner").
func (c *Cluster) AddMember(ctx context.Context, via, id, role string) MemberReply {
	a := c.Addrs[id]
	spec := map[string]string{"id": id, "peer": c.PeerAddr(id), "http": a.HTTP, "resp": a.RESP, "role": role}
	return c.memberCall(ctx, via, http.MethodPost, "/v1/members", spec)
}

// RemoveMember asks node via to remove id.
func (c *Cluster) RemoveMember(ctx context.Context, via, id string) MemberReply {
	return c.memberCall(ctx, via, http.MethodDelete, "/v1/members/"+url.PathEscape(id), nil)
}

// PromoteMember asks node via to promote learner id.
func (c *Cluster) PromoteMember(ctx context.Context, via, id string) MemberReply {
	return c.memberCall(ctx, via, http.MethodPost, "/v1/members/"+url.PathEscape(id)+"/promote", nil)
}

// Metrics returns the lines of node id's /metrics (Prometheus text) whose
// metric name contains substr, comments left out.
func (c *Cluster) Metrics(ctx context.Context, id, substr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addrs[id].HTTP+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("chaos: GET /metrics on %s: %s", id, resp.Status)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if strings.Contains(name, substr) {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// Metric returns the sum of the series of metric name on node id, and
// whether the node exports it.
func (c *Cluster) Metric(ctx context.Context, id, name string) (float64, bool, error) {
	lines, err := c.Metrics(ctx, id, name)
	if err != nil {
		return 0, false, err
	}
	var sum float64
	found := false
	for _, l := range lines {
		n, _, _ := strings.Cut(l, "{")
		n, _, _ = strings.Cut(n, " ")
		if n != name {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, false, fmt.Errorf("chaos: metric line %q: %w", l, err)
		}
		sum += v
		found = true
	}
	return sum, found, nil
}

// Compacted reports whether the leader's WAL and those of a majority of
// the voters have been compacted (trireme_wal_first_index above 1): a node
// that joins now must catch up by snapshot. It also returns each voter's
// first index (-1: no answer).
func (c *Cluster) Compacted(ctx context.Context) (bool, map[string]int64) {
	lead, _ := c.Leader(ctx)
	out := map[string]int64{}
	voters := c.VoterIDs()
	n := 0
	for _, id := range voters {
		v, ok, err := c.Metric(ctx, id, "trireme_wal_first_index")
		if err != nil || !ok {
			out[id] = -1
			continue
		}
		out[id] = int64(v)
		if v > 1 {
			n++
		}
	}
	return lead != "" && out[lead] > 1 && n >= len(voters)/2+1, out
}
