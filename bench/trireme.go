package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
)

// FindRepo walks up from dir to the checkout of github.com/trireme-db/trireme.
func FindRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		f, err := os.Open(filepath.Join(d, "go.mod"))
		if err == nil {
			s := bufio.NewScanner(f)
			first := ""
			if s.Scan() {
				first = strings.TrimSpace(s.Text())
			}
			f.Close()
			if first == "module github.com/trireme-db/trireme" {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no checkout of github.com/trireme-db/trireme above %s (use -trireme-bin)", dir)
		}
	}
}

// BuildTrireme builds cmd/trireme of the checkout at repo into dir.
func BuildTrireme(ctx context.Context, repo, dir string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bin", "trireme")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/trireme")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/trireme in %s: %w\n%s", repo, err, out)
	}
	return bin, nil
}

// TriremeNoTLS is the system name of the Trireme cluster that runs without
// peer TLS next to the one with it (Config.PeerTLS "both").
const TriremeNoTLS = "trireme-notls"

// Trireme is a local Trireme cluster of real node processes.
type Trireme struct {
	cl  *cluster.Cluster
	log *slog.Logger
	// System is the name its variants, and so its results, carry:
	// "trireme" unless set (TriremeNoTLS for the cluster without peer TLS
	// next to the one with it).
	System string
	// InsecurePeers: the nodes run without peer TLS (--insecure-peers).
	InsecurePeers bool
}

// StartTrireme starts an n-node cluster of binary under dir with the
// nodes' default settings and waits for a leader. procs is each node's
// GOMAXPROCS: 0 leaves Go's default (every core), as `trireme up` does; -1
// shares this machine's cores among the nodes (cluster.SharedProcs). The
// nodes authenticate each other with mutual TLS (certificates made by
// internal/cluster), as `trireme up` runs them, unless insecurePeers.
func StartTrireme(ctx context.Context, binary, dir string, n, procs int, insecurePeers bool, log *slog.Logger) (*Trireme, error) {
	return StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: n, Procs: procs, InsecurePeers: insecurePeers, Log: log})
}

// TriremeSetup is the layout and settings of a cluster StartTriremeSetup
// starts.
type TriremeSetup struct {
	// Voters is the number of voting nodes, n1..nN.
	Voters int
	// Replicas is the number of read replicas (learners r1..rN) laid out
	// next to the voters, on free ports; they are not started:
	// Trireme.Cluster().StartReplicas joins them.
	Replicas int
	// Procs is each node's GOMAXPROCS setting (see StartTrireme), shared
	// among the voters when -1.
	Procs int
	// InsecurePeers runs the nodes without peer TLS.
	InsecurePeers bool
	// NodeArgs are extra flags for every node (e.g. --log-retain 64MiB).
	NodeArgs []string
	// Mode is the nodes' replication mode (trireme node --mode): "" or
	// "single-leader", or MultiLeaderMode or LeaderlessMode, whose nodes
	// all accept writes; then there is no leader to wait for, and no read
	// replicas.
	Mode string
	// ReplicationFactor is a leaderless cluster's N (0: the node's
	// default).
	ReplicationFactor int
	// Spec, if set, is the layout to start instead of a new one on free
	// ports: to restart a cluster on its data with other flags.
	Spec *cluster.Spec
	Log  *slog.Logger
}

// MultiLeaderMode is the replication mode in which every node accepts
// writes (trireme node --mode multi-leader).
const MultiLeaderMode = "multi-leader"

// LeaderlessMode is the Dynamo-style replication mode (trireme node --mode
// leaderless): each key on N nodes of a hash ring, any node coordinates.
const LeaderlessMode = "leaderless"

// StartTriremeSetup starts the voters of the cluster s lays out under dir
// and waits for a leader (in multi-leader mode, for every node to answer).
func StartTriremeSetup(ctx context.Context, binary, dir string, s TriremeSetup) (*Trireme, error) {
	var spec cluster.Spec
	var err error
	if s.Spec != nil {
		spec = *s.Spec
	} else if spec, err = cluster.FreeSpec(s.Voters); err != nil {
		return nil, err
	}
	noLeader := s.Mode == MultiLeaderMode || s.Mode == LeaderlessMode
	if noLeader && s.Replicas > 0 {
		return nil, fmt.Errorf("bench: a %s cluster has no read replicas", s.Mode)
	}
	if s.Mode != "" && s.Mode != "single-leader" {
		spec.Mode = s.Mode
	}
	if s.ReplicationFactor > 0 {
		spec.ReplicationFactor = s.ReplicationFactor
	}
	if s.Replicas > 0 {
		if spec, err = spec.WithFreeReplicas(s.Replicas); err != nil {
			return nil, err
		}
	}
	cfg := cluster.DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.Spec, cfg.Logger = binary, dir, spec, s.Log
	cfg.InsecurePeers = s.InsecurePeers
	if cfg.NodeProcs, err = cluster.Procs(s.Procs, s.Voters); err != nil {
		return nil, err
	}
	cfg.NodeArgs = append([]string{"--log-level", "warn"}, s.NodeArgs...)
	cl, err := cluster.New(cfg)
	if err != nil {
		return nil, err
	}
	t := &Trireme{cl: cl, log: s.Log, System: "trireme", InsecurePeers: s.InsecurePeers}
	if err := cl.StartAll(); err != nil {
		t.Stop()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, ns := range spec.Nodes {
		if err := cl.WaitReady(wctx, ns.ID); err != nil {
			t.Stop()
			return nil, err
		}
	}
	if noLeader {
		return t, nil
	}
	if _, err := cl.WaitLeader(wctx, ""); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

// Cluster is the supervisor of the node processes.
func (t *Trireme) Cluster() *cluster.Cluster { return t.cl }

// Stop stops every node.
func (t *Trireme) Stop() error { return t.cl.StopAll() }

// Leader returns the current leader's spec, waiting up to 10s for one.
func (t *Trireme) Leader(ctx context.Context) (cluster.NodeSpec, error) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id, err := t.cl.WaitLeader(wctx, "")
	if err != nil {
		return cluster.NodeSpec{}, err
	}
	return t.cl.Node(id)
}

// RESPAddrs returns every node's RESP address, the leader's first.
func (t *Trireme) RESPAddrs(ctx context.Context) ([]string, error) {
	l, err := t.Leader(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{l.RESP}
	for _, ns := range t.cl.Spec().Nodes {
		if ns.ID != l.ID {
			out = append(out, ns.RESP)
		}
	}
	return out, nil
}

// Variant returns a RESP variant: writes with ack mode ack (and K
// replicas for semi-sync), reads at level consistency; all connections go
// to the leader unless consistency is "stale", which spreads them over
// every node.
func (t *Trireme) Variant(ctx context.Context, name, ack string, k int, consistency string) (Variant, error) {
	addrs, err := t.RESPAddrs(ctx)
	if err != nil {
		return Variant{}, err
	}
	ackCmd := []any{"TRIREME.ACK", ack}
	if ack == "semi-sync" {
		ackCmd = append(ackCmd, k)
	}
	setup := [][]any{ackCmd, {"TRIREME.CONSISTENCY", consistency}}
	pick := func() []string { return addrs[:1] }
	if consistency == "stale" {
		pick = func() []string { return addrs }
	}
	return respVariant(t.System, name, pick, setup, 0, t.Pids), nil
}

// Pids returns the running nodes' process ids.
func (t *Trireme) Pids() []int {
	var out []int
	for _, ns := range t.cl.Spec().Nodes {
		if p, err := t.cl.Pid(ns.ID); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// NodePid returns the process id of node id.
func (t *Trireme) NodePid(id string) (int, error) { return t.cl.Pid(id) }

// errNoProgress is returned when a wait makes no progress.
var errNoProgress = errors.New("bench: no progress")
