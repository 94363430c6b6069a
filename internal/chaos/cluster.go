package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/pki"
)

// NodeAddrs are one node's real listen addresses.
type NodeAddrs struct {
	ID         string
	Peer       string
	HTTP, RESP string
}

// ClusterConfig describes a cluster under test.
type ClusterConfig struct {
	// Binary is the trireme executable.
	Binary string
	// Dir holds each node's data directory (Dir/data/ID) and log (Dir/logs/ID.log).
	Dir string
	// Nodes is the number of nodes (ids n1..nN).
	Nodes int
	// Spares are the ids of nodes that may join later (trireme node --join):
	// each gets its addresses, proxies and peer certificate up front, but is
	// not started. Joining needs NamedPeers.
	Spares []string
	// NamedPeers gives every node the same peer addresses, host names that
	// each node resolves through a private /etc/hosts to its own proxies (see
	// names.go); needed when the membership changes, because configurations
	// in the log carry one peer address per member. Linux only
	// (CheckNamedPeers). Without it each node's --cluster lists its proxies.
	NamedPeers bool
	// ClusterID is the id of the cluster's CA (Dir/certs, peer TLS) and is
	// also passed as --cluster-id; required.
	ClusterID string
	// NodeArgs are extra flags for every node (e.g. --write-timeout 1s).
	NodeArgs []string
	// Seed seeds the proxies' randomness.
	Seed uint64
	// Logger receives harness logs; nil discards.
	Logger *slog.Logger
}

// Cluster is a cluster of real node processes whose peer traffic goes through
// a Net of fault proxies.
type Cluster struct {
	cfg ClusterConfig
	// IDs are the initial members, all voters (n1..nN); Spares may join later.
	IDs, Spares []string
	// Addrs are the real addresses of every id, spares included.
	Addrs map[string]NodeAddrs
	Net   *Net
	Procs *Procs
	named *namedPeers // nil: classic layout (per-node --cluster)
	certs string
	http  *http.Client
	log   *slog.Logger

	mu      sync.Mutex
	members map[string]bool // the members as the harness knows them: id -> is a learner; guarded by mu
	wiped   int             // data directories moved aside; guarded by mu
}

// NewCluster lays out the cluster and its proxies; Start runs the nodes.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Binary == "" || cfg.Dir == "" || cfg.Nodes < 1 || cfg.ClusterID == "" {
		return nil, errors.New("chaos: ClusterConfig needs Binary, Dir, Nodes >= 1 and ClusterID")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, Addrs: map[string]NodeAddrs{}, log: cfg.Logger, members: map[string]bool{},
		certs: filepath.Join(cfg.Dir, "certs"),
		http:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		c.IDs = append(c.IDs, id)
		c.members[id] = false
	}
	for _, id := range cfg.Spares {
		if slices.Contains(c.IDs, id) || slices.Contains(c.Spares, id) {
			return nil, fmt.Errorf("chaos: ClusterConfig.Spares: id %q is used twice", id)
		}
		c.Spares = append(c.Spares, id)
	}
	all := c.AllIDs()
	if err := c.layout(); err != nil {
		return nil, err
	}
	// Peer TLS as trireme up runs it; the proxies carry the TLS bytes, and
	// nodes check member ids, not addresses.
	pc := pki.DefaultConfig()
	pc.ClusterID = cfg.ClusterID
	if _, err := pki.Ensure(c.certs, all, pc); err != nil {
		c.Net.Close()
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var err error
	if c.Procs, err = NewProcs(cfg.Binary, c.initialArgs(), filepath.Join(cfg.Dir, "logs")); err != nil {
		c.Net.Close()
		return nil, err
	}
	if c.named != nil {
		for _, id := range all {
			c.Procs.SetPrefix(id, namedPrefix(c.named.hostsFile(id)))
		}
	}
	return c, nil
}

// layout picks every id's addresses (free loopback ports; with named
// peers, the peer port on the id's own 127.B.0.y) and starts the proxies.
func (c *Cluster) layout() error {
	all := c.AllIDs()
	ports, err := cluster.FreeAddrs(3 * len(all))
	if err != nil {
		return fmt.Errorf("chaos: free ports: %w", err)
	}
	if c.cfg.NamedPeers {
		if c.named, err = newNamedPeers(all, c.cfg.Seed, filepath.Join(c.cfg.Dir, "hosts")); err != nil {
			return err
		}
	}
	real := map[string]string{}
	for i, id := range all {
		peer := ports[3*i]
		if c.named != nil {
			peer = net.JoinHostPort(c.named.realIP(id), portOf(peer))
		}
		c.Addrs[id] = NodeAddrs{ID: id, Peer: peer, HTTP: ports[3*i+1], RESP: ports[3*i+2]}
		real[id] = peer
	}
	var listen func(from, to string) string
	if c.named != nil {
		listen = func(from, to string) string { return net.JoinHostPort(c.named.linkIP(from, to), portOf(real[to])) }
	}
	c.Net, err = NewNetAt(all, real, listen, c.cfg.Seed, c.cfg.Logger)
	return err
}

// initialArgs are the arguments of the initial members: --cluster names,
// for each other member, its proxy from this node (or, with named peers,
// its host name, the same for all).
func (c *Cluster) initialArgs() map[string][]string {
	args := map[string][]string{}
	var respPeers, httpPeers []string
	for _, id := range c.IDs {
		respPeers = append(respPeers, id+"="+c.Addrs[id].RESP)
		httpPeers = append(httpPeers, id+"="+c.Addrs[id].HTTP)
	}
	for _, id := range c.IDs {
		var members []string
		for _, other := range c.IDs {
			addr := c.Addrs[other].Peer
			switch {
			case c.named != nil:
				addr = c.PeerAddr(other)
			case other != id:
				addr = c.Net.Link(id, other).Addr()
			}
			members = append(members, other+"="+addr)
		}
		a := c.Addrs[id]
		args[id] = append([]string{"node", "--id", id, "--data", c.DataDir(id),
			"--cluster", strings.Join(members, ","), "--cluster-id", c.cfg.ClusterID,
			"--http", a.HTTP, "--resp", a.RESP, "--resp-peers", strings.Join(respPeers, ","),
			"--http-peers", strings.Join(httpPeers, ","), "--peer-tls-dir", c.certs},
			c.cfg.NodeArgs...)
	}
	return args
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// AllIDs are the initial members followed by the spares.
func (c *Cluster) AllIDs() []string { return append(slices.Clone(c.IDs), c.Spares...) }

// DataDir is node id's data directory.
func (c *Cluster) DataDir(id string) string { return filepath.Join(c.cfg.Dir, "data", id) }

// PeerAddr is the peer address of id as configurations carry it: its host
// name with NamedPeers, else its real address (which only its own --cluster
// names; the others name their proxies).
func (c *Cluster) PeerAddr(id string) string {
	if c.named != nil {
		return net.JoinHostPort(c.named.host(id), portOf(c.Addrs[id].Peer))
	}
	return c.Addrs[id].Peer
}

// JoinArgs are the arguments of node id joining the cluster through the
// HTTP API of member via (trireme node --join), as a learner that stays one
// if learner is set. It needs NamedPeers: a joining node advertises one peer
// address, which every member then dials.
func (c *Cluster) JoinArgs(id, via string, learner bool) ([]string, error) {
	if c.named == nil {
		return nil, errors.New("chaos: joining needs ClusterConfig.NamedPeers")
	}
	if _, ok := c.Addrs[id]; !ok {
		return nil, fmt.Errorf("chaos: unknown node %q", id)
	}
	a := c.Addrs[id]
	args := []string{"node", "--id", id, "--data", c.DataDir(id), "--peer", c.PeerAddr(id),
		"--http", a.HTTP, "--resp", a.RESP, "--join", "http://" + c.Addrs[via].HTTP,
		"--cluster-id", c.cfg.ClusterID, "--peer-tls-dir", c.certs}
	if learner {
		args = append(args, "--learner")
	}
	return append(args, c.cfg.NodeArgs...), nil
}

// MemberIDs are the members as the harness knows them (voters and learners),
// in the order of AllIDs.
func (c *Cluster) MemberIDs() []string { return c.memberIDs(true) }

// VoterIDs are the voters as the harness knows them, in the order of AllIDs.
func (c *Cluster) VoterIDs() []string { return c.memberIDs(false) }

func (c *Cluster) memberIDs(learners bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range c.AllIDs() {
		if l, ok := c.members[id]; ok && (learners || !l) {
			out = append(out, id)
		}
	}
	return out
}

// Member reports whether the harness knows id as a member, and as a learner.
func (c *Cluster) Member(id string) (member, learner bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.members[id]
	return ok, l
}

// SetMember records that id is a member (a learner or a voter).
func (c *Cluster) SetMember(id string, learner bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[id] = learner
}

// DropMember records that id is no longer a member.
func (c *Cluster) DropMember(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.members, id)
}

// MoveAside moves node id's data directory (the node must be stopped) to
// Dir/data/ID.removed-K, kept for the post-mortem, so that the node starts
// afresh; it returns the new path and the rollback journal found there.
func (c *Cluster) MoveAside(id string) (string, []Rollback, error) {
	c.mu.Lock()
	c.wiped++
	to := fmt.Sprintf("%s.removed-%d", c.DataDir(id), c.wiped)
	c.mu.Unlock()
	if err := os.Rename(c.DataDir(id), to); err != nil {
		return "", nil, fmt.Errorf("chaos: wipe %s: %w", id, err)
	}
	rbs, err := readJournal(filepath.Join(to, "rollbacks.jsonl"))
	for i := range rbs {
		rbs[i].Node = filepath.Base(to)
	}
	return to, rbs, err
}

// readJournal reads a node's rollback journal file (JSON lines; key and
// value base64-encoded). A missing file is an empty journal.
func readJournal(path string) ([]Rollback, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var out []Rollback
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r struct {
			Term  uint64 `json:"term"`
			Index uint64 `json:"index"`
			Op    string `json:"op"`
			Key   []byte `json:"key"`
			Value []byte `json:"value"`
			Cause string `json:"cause"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return out, fmt.Errorf("chaos: %s:%d: %w", path, i+1, err)
		}
		// The cause matters to the checker: a "snapshot" record is not a
		// claim of loss (CheckRollbacks).
		out = append(out, Rollback{Term: r.Term, Index: r.Index, Op: r.Op, Key: string(r.Key), Value: string(r.Value), Cause: r.Cause})
	}
	return out, nil
}

// Start starts every initial member.
func (c *Cluster) Start() error {
	for _, id := range c.IDs {
		if err := c.Procs.Start(id); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every node and proxy.
func (c *Cluster) Close() error {
	err := c.Procs.StopAll(10 * time.Second)
	c.Net.Close()
	c.http.CloseIdleConnections()
	return err
}

// Status is the part of GET /v1/status the harness uses.
type Status struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	Term         uint64 `json:"term"`
	Leader       string `json:"leader"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// Rollback is one entry of GET /v1/rollbacks.
type Rollback struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value"`
	// Cause is "conflict" (never committed) or "snapshot" (replaced by a
	// snapshot that could not confirm it: it may have been committed).
	Cause string `json:"cause"`
	// Node is whose journal it is in (set by the harness; "ID.removed-K"
	// for a data directory a membership cycle moved aside).
	Node string `json:"-"`
}

func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chaos: GET %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// Status asks node id for its status (timeout 500ms).
func (c *Cluster) Status(ctx context.Context, id string) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var st Status
	err := c.getJSON(ctx, "http://"+c.Addrs[id].HTTP+"/v1/status", &st)
	return st, err
}

// Statuses asks every member in parallel; unreachable nodes are missing.
func (c *Cluster) Statuses(ctx context.Context) map[string]Status {
	return memberStatuses(ctx, c, func(Status) bool { return true })
}

// memberStatuses asks every member for its /v1/status as a T, in parallel
// (timeout 500ms each); nodes that do not answer, or whose answer keep
// refuses, are missing.
func memberStatuses[T any](ctx context.Context, c *Cluster, keep func(T) bool) map[string]T {
	out := map[string]T{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range c.MemberIDs() {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			var st T
			if err := c.getJSON(sctx, "http://"+c.Addrs[id].HTTP+"/v1/status", &st); err == nil && keep(st) {
				mu.Lock()
				out[id] = st
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// waitAllStatuses polls fetch every 50ms until every member answers and
// healthy holds for each answer; on ctx's end it returns an error saying
// what it waited for, with the last statuses.
func waitAllStatuses[T any](ctx context.Context, c *Cluster, fetch func(context.Context) map[string]T, healthy func(T) bool, what string) error {
	for {
		sts := fetch(ctx)
		ok := len(sts) == len(c.MemberIDs())
		for _, st := range sts {
			ok = ok && healthy(st)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: cluster not healthy (%s): last statuses %+v", what, sts)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Leader returns the node that says it leads in the highest term, among the
// reachable ones, with that term; "" if none.
func (c *Cluster) Leader(ctx context.Context) (string, uint64) {
	var lead string
	var term uint64
	for id, st := range c.Statuses(ctx) {
		if st.Role == "leader" && st.Term >= term {
			lead, term = id, st.Term
		}
	}
	return lead, term
}

// Rollbacks reads node id's rollback journal.
func (c *Cluster) Rollbacks(ctx context.Context, id string) ([]Rollback, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rbs []Rollback
	err := c.getJSON(ctx, "http://"+c.Addrs[id].HTTP+"/v1/rollbacks", &rbs)
	for i := range rbs {
		rbs[i].Node = id
	}
	return rbs, err
}

// Healthy waits until every member runs, answers, and all agree on one
// leader in one term; it returns that leader.
func (c *Cluster) Healthy(ctx context.Context) (string, error) {
	var last string
	for {
		want := len(c.MemberIDs())
		sts := c.Statuses(ctx)
		lead, term := "", uint64(0)
		ok := len(sts) == want
		for _, st := range sts {
			if st.Role == "leader" {
				lead, term = st.ID, st.Term
			}
		}
		if ok && lead != "" {
			for _, st := range sts {
				if st.Leader != lead || st.Term != term {
					ok = false
				}
			}
		} else {
			ok = false
		}
		if ok {
			return lead, nil
		}
		last = fmt.Sprintf("%+v", sts)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("chaos: cluster not healthy (no agreed leader): last statuses %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
