package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
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
	cfg   ClusterConfig
	IDs   []string
	Addrs map[string]NodeAddrs
	Net   *Net
	Procs *Procs
	http  *http.Client
	log   *slog.Logger
}

// NewCluster lays out the cluster and its proxies; Start runs the nodes.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Binary == "" || cfg.Dir == "" || cfg.Nodes < 1 || cfg.ClusterID == "" {
		return nil, errors.New("chaos: ClusterConfig needs Binary, Dir, Nodes >= 1 and ClusterID")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, Addrs: map[string]NodeAddrs{}, log: cfg.Logger,
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	ports, err := cluster.FreeAddrs(3 * cfg.Nodes)
	if err != nil {
		return nil, fmt.Errorf("chaos: free ports: %w", err)
	}
	real := map[string]string{}
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		c.IDs = append(c.IDs, id)
		c.Addrs[id] = NodeAddrs{ID: id, Peer: ports[3*i], HTTP: ports[3*i+1], RESP: ports[3*i+2]}
		real[id] = ports[3*i]
	}
	if c.Net, err = NewNet(c.IDs, real, cfg.Seed, cfg.Logger); err != nil {
		return nil, err
	}
	// Peer TLS as trireme up runs it; the proxies carry the TLS bytes, and
	// nodes check member ids, not addresses.
	certDir := filepath.Join(cfg.Dir, "certs")
	pc := pki.DefaultConfig()
	pc.ClusterID = cfg.ClusterID
	if _, err := pki.Ensure(certDir, c.IDs, pc); err != nil {
		c.Net.Close()
		return nil, fmt.Errorf("chaos: %w", err)
	}
	args := map[string][]string{}
	var respPeers, httpPeers []string
	for _, id := range c.IDs {
		respPeers = append(respPeers, id+"="+c.Addrs[id].RESP)
		httpPeers = append(httpPeers, id+"="+c.Addrs[id].HTTP)
	}
	for _, id := range c.IDs {
		var members []string
		for _, other := range c.IDs {
			addr := real[other]
			if other != id {
				addr = c.Net.Link(id, other).Addr()
			}
			members = append(members, other+"="+addr)
		}
		a := c.Addrs[id]
		args[id] = append([]string{"node", "--id", id, "--data", filepath.Join(cfg.Dir, "data", id),
			"--cluster", strings.Join(members, ","), "--cluster-id", cfg.ClusterID,
			"--http", a.HTTP, "--resp", a.RESP, "--resp-peers", strings.Join(respPeers, ","),
			"--http-peers", strings.Join(httpPeers, ","), "--peer-tls-dir", certDir},
			cfg.NodeArgs...)
	}
	if c.Procs, err = NewProcs(cfg.Binary, args, filepath.Join(cfg.Dir, "logs")); err != nil {
		c.Net.Close()
		return nil, err
	}
	return c, nil
}

// Start starts every node.
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

// Statuses asks every node in parallel; unreachable nodes are missing.
func (c *Cluster) Statuses(ctx context.Context) map[string]Status {
	out := map[string]Status{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range c.IDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := c.Status(ctx, id); err == nil {
				mu.Lock()
				out[id] = st
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
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
	return rbs, err
}

// Healthy waits until every node runs, answers, and all agree on one leader
// in one term; it returns that leader.
func (c *Cluster) Healthy(ctx context.Context) (string, error) {
	var last string
	for {
		sts := c.Statuses(ctx)
		lead, term := "", uint64(0)
		ok := len(sts) == len(c.IDs)
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
