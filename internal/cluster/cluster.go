// Package cluster supervises a local Trireme cluster of node processes: it
// lays out the cluster (ids, peer, HTTP and RESP addresses on loopback) in
// DATA/cluster.json, creates the cluster's CA and node certificates in
// DATA/certs, starts each node as a `trireme node` process with peer mutual
// TLS, and can stop (SIGTERM), kill (SIGKILL), pause (SIGSTOP), resume
// (SIGCONT) and restart them, and wait for a leader. Besides the voters, a
// cluster may have read replicas (learners), which join through a voter once
// the voters have a leader. `trireme up`, the system tests and the benchmark
// use it.
//
// It promises: the same data directory always gives the same cluster (ids,
// addresses, per-node data directories, certificates and cluster id), so a
// restart resumes with its data; cluster.json is written atomically; nodes
// authenticate each other unless Config.InsecurePeers; every process it
// starts is stopped by StopAll (and killed if the supervisor dies, through
// the parent-death signal); a node's output goes to DATA/logs/ID.log.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/pki"
)

// Errors.
var (
	ErrUnknownNode = errors.New("cluster: unknown node")
	ErrNotRunning  = errors.New("cluster: node is not running")
	ErrRunning     = errors.New("cluster: node is already running")
	ErrNoLeader    = errors.New("cluster: no leader")
	// ErrFewerReplicas: Spec.WithReplicas never removes a read replica
	// (removing one is a membership change: trireme member remove ID).
	ErrFewerReplicas = errors.New("cluster: fewer read replicas than the layout has")
	// ErrNoPortScheme: the voters' ports do not follow NewSpec's scheme, so
	// Spec.WithReplicas cannot place new replicas after them.
	ErrNoPortScheme = errors.New("cluster: the voters' ports do not follow the --base-port scheme")
)

// SpecFile is the name of the cluster layout file in the data directory.
const SpecFile = "cluster.json"

// CertsDir is the default certificate directory, inside the data directory.
const CertsDir = "certs"

// NodeSpec describes one node of a local cluster.
type NodeSpec struct {
	ID   string `json:"id"`
	Peer string `json:"peer"` // host:port for node-to-node traffic
	HTTP string `json:"http"` // host:port of the HTTP API
	RESP string `json:"resp"` // host:port of the Redis protocol
	Dir  string `json:"dir"`  // data directory, relative to the cluster's
}

// Spec is the layout of a local cluster (the content of cluster.json).
type Spec struct {
	// Nodes are the voters: every voter starts with all of them as its
	// --cluster.
	Nodes []NodeSpec `json:"nodes"`
	// Replicas are the read replicas (learners, ids r1, r2, ...). Each one
	// starts with only itself as its --cluster and joins through a voter
	// (trireme node --join --learner); its data directory then records the
	// cluster it joined, so a restart does not join again. cluster.json
	// files written before read replicas have none.
	Replicas []NodeSpec `json:"replicas,omitempty"`
	// Mode is the nodes' replication mode (trireme node --mode); "" is
	// single-leader (and every cluster.json written before modes).
	Mode string `json:"mode,omitempty"`
	// ReplicationFactor is a leaderless cluster's N (trireme node
	// --replication-factor); 0 is the node's default.
	ReplicationFactor int `json:"replication_factor,omitempty"`
}

// MaxNodes bounds the voters and, separately, the read replicas of a spec
// made by NewSpec and WithReplicas.
const MaxNodes = 99

// NewSpec lays out n nodes n1..nN on 127.0.0.1: node i (from 0) gets peer
// port base+i, HTTP port base+1000+i and RESP port base+2000+i.
func NewSpec(n, base int) (Spec, error) {
	if n < 1 || n > MaxNodes {
		return Spec{}, fmt.Errorf("cluster: --nodes %d must be from 1 to %d", n, MaxNodes)
	}
	if base < 1024 || base+2000+n > 65535 {
		return Spec{}, fmt.Errorf("cluster: --base-port %d must be from 1024 to %d", base, 65535-2000-n)
	}
	var s Spec
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		s.Nodes = append(s.Nodes, schemeNode(id, "127.0.0.1", base, i))
	}
	return s, nil
}

// schemeNode is node id at index i of the port scheme from base.
func schemeNode(id, host string, base, i int) NodeSpec {
	addr := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	return NodeSpec{ID: id, Peer: addr(base + i), HTTP: addr(base + 1000 + i), RESP: addr(base + 2000 + i), Dir: id}
}

// portBase returns the host and base port of the voters' scheme (node i on
// base+i, base+1000+i, base+2000+i), or ok false if they do not follow it.
func (s Spec) portBase() (host string, base int, ok bool) {
	if len(s.Nodes) == 0 {
		return "", 0, false
	}
	host, _, err := net.SplitHostPort(s.Nodes[0].Peer)
	if err != nil {
		return "", 0, false
	}
	base = Port(s.Nodes[0].Peer)
	for i, n := range s.Nodes {
		want := schemeNode(n.ID, host, base, i)
		if n.Peer != want.Peer || n.HTTP != want.HTTP || n.RESP != want.RESP {
			return "", 0, false
		}
	}
	return host, base, true
}

// replicaID is the id of read replica j (from 0).
func replicaID(j int) string { return fmt.Sprintf("r%d", j+1) }

// WithReplicas returns s with r read replicas: the ones s has, then new
// ones r(K+1)..rR laid out after the voters on NewSpec's port scheme:
// replica j (from 0) takes index len(Nodes)+j, so with base the first
// voter's peer port it listens on base+len(Nodes)+j (peer),
// base+1000+len(Nodes)+j (HTTP) and base+2000+len(Nodes)+j (RESP). It never
// removes a replica (ErrFewerReplicas), and needs voters that follow the
// scheme to add one (ErrNoPortScheme; see WithFreeReplicas).
func (s Spec) WithReplicas(r int) (Spec, error) {
	return s.addReplicas(r, func(j int) (NodeSpec, error) {
		host, base, ok := s.portBase()
		if !ok {
			return NodeSpec{}, fmt.Errorf("%w (the first voter's ports are %s, %s, %s): add read replicas to %s by hand",
				ErrNoPortScheme, s.Nodes[0].Peer, s.Nodes[0].HTTP, s.Nodes[0].RESP, SpecFile)
		}
		i := len(s.Nodes) + j
		if base+2000+i > 65535 {
			return NodeSpec{}, fmt.Errorf("cluster: read replica %s would need port %d, past 65535", replicaID(j), base+2000+i)
		}
		return schemeNode(replicaID(j), host, base, i), nil
	})
}

// WithFreeReplicas is WithReplicas with the new replicas on free loopback
// ports that the spec does not use already (see FreeAddrs; for tests, next
// to FreeSpec, whose ports are free again until the nodes bind them).
func (s Spec) WithFreeReplicas(r int) (Spec, error) {
	var addrs []string
	return s.addReplicas(r, func(j int) (NodeSpec, error) {
		if addrs == nil {
			var err error
			if addrs, err = s.freeAddrs(3 * (r - len(s.Replicas))); err != nil {
				return NodeSpec{}, err
			}
		}
		k := 3 * (j - len(s.Replicas))
		return NodeSpec{ID: replicaID(j), Dir: replicaID(j), Peer: addrs[k], HTTP: addrs[k+1], RESP: addrs[k+2]}, nil
	})
}

// freeAddrs returns n distinct free loopback addresses that s does not use.
func (s Spec) freeAddrs(n int) ([]string, error) {
	used := map[string]bool{}
	for _, m := range s.All() {
		used[m.Peer], used[m.HTTP], used[m.RESP] = true, true, true
	}
	var out []string
	for len(out) < n {
		more, err := FreeAddrs(n - len(out))
		if err != nil {
			return nil, err
		}
		for _, a := range more {
			if !used[a] {
				used[a] = true
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// addReplicas returns s with replicas up to r, the missing ones made by
// place, and checks the result.
func (s Spec) addReplicas(r int, place func(j int) (NodeSpec, error)) (Spec, error) {
	switch {
	case r < 0 || r > MaxNodes:
		return Spec{}, fmt.Errorf("cluster: %d read replicas: want 0 to %d", r, MaxNodes)
	case r < len(s.Replicas):
		return Spec{}, fmt.Errorf("%w: %d wanted, %d in the layout (%s)", ErrFewerReplicas, r, len(s.Replicas),
			strings.Join(s.ReplicaIDs(), ", "))
	}
	out := Spec{Nodes: slices.Clone(s.Nodes), Replicas: slices.Clone(s.Replicas)}
	for j := len(s.Replicas); j < r; j++ {
		n, err := place(j)
		if err != nil {
			return Spec{}, err
		}
		out.Replicas = append(out.Replicas, n)
	}
	if err := out.Validate(); err != nil {
		return Spec{}, err
	}
	return out, nil
}

// FreeSpec lays out n nodes on free loopback ports (see FreeAddrs; for
// tests: a port may in principle be taken again before the node binds it).
func FreeSpec(n int) (Spec, error) {
	addrs, err := FreeAddrs(3 * n)
	if err != nil {
		return Spec{}, err
	}
	var s Spec
	for i := range n {
		s.Nodes = append(s.Nodes, NodeSpec{ID: fmt.Sprintf("n%d", i+1), Dir: fmt.Sprintf("n%d", i+1),
			Peer: addrs[3*i], HTTP: addrs[3*i+1], RESP: addrs[3*i+2]})
	}
	return s, nil
}

// Free ports are drawn from [freePortLow, freePortHigh): below Linux's
// ephemeral range (32768-60999 by default), from which the kernel picks the
// local port of every outgoing connection. A port taken with "127.0.0.1:0"
// comes from that range, and between the moment it is released and the
// moment a node binds it, any test's outgoing connection can take it ("bind:
// address already in use"); that happened to a chaos test while a node
// spent longer opening its storage.
const (
	freePortLow  = 20000
	freePortHigh = 32000
)

// FreeAddrs returns n distinct loopback addresses ("127.0.0.1:PORT") that
// were free a moment ago, on ports outside the ephemeral range.
func FreeAddrs(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	out := make([]string, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n+1000 {
			return nil, fmt.Errorf("cluster: no free port in %d-%d after %d tries", freePortLow, freePortHigh-1, tries)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", freePortLow+rng.IntN(freePortHigh-freePortLow))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken (or held by us already): try another
		}
		lns = append(lns, l)
		out = append(out, addr)
	}
	return out, nil
}

// Validate checks ids and addresses, voters' and read replicas' together:
// every id and every address is used once.
func (s Spec) Validate() error {
	if len(s.Nodes) == 0 {
		return errors.New("cluster: spec has no nodes")
	}
	ids, addrs := map[string]bool{}, map[string]string{}
	for _, n := range s.All() {
		if n.ID == "" || strings.ContainsAny(n.ID, "=, /") {
			return fmt.Errorf("cluster: bad node id %q", n.ID)
		}
		if ids[n.ID] {
			return fmt.Errorf("cluster: duplicate node id %q", n.ID)
		}
		ids[n.ID] = true
		if n.Dir == "" || filepath.IsAbs(n.Dir) || strings.Contains(n.Dir, "..") {
			return fmt.Errorf("cluster: node %s: dir %q must be a relative path inside the data directory", n.ID, n.Dir)
		}
		for what, a := range map[string]string{"peer": n.Peer, "http": n.HTTP, "resp": n.RESP} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("cluster: node %s: bad %s address %q: %v", n.ID, what, a, err)
			}
			if other, dup := addrs[a]; dup {
				return fmt.Errorf("cluster: nodes %s and %s share the address %s", other, n.ID, a)
			}
			addrs[a] = n.ID
		}
	}
	return nil
}

// ClusterFlag is the --cluster value: "n1=peer1,n2=peer2,...".
func (s Spec) ClusterFlag() string {
	parts := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		parts[i] = n.ID + "=" + n.Peer
	}
	return strings.Join(parts, ",")
}

// HTTPPeersFlag is the --http-peers value: "n1=http1,...".
func (s Spec) HTTPPeersFlag() string {
	parts := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		parts[i] = n.ID + "=" + n.HTTP
	}
	return strings.Join(parts, ",")
}

// IDs lists the voters' ids.
func (s Spec) IDs() []string { return idsOf(s.Nodes) }

// ReplicaIDs lists the read replicas' ids.
func (s Spec) ReplicaIDs() []string { return idsOf(s.Replicas) }

func idsOf(ns []NodeSpec) []string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return ids
}

// All lists the voters, then the read replicas.
func (s Spec) All() []NodeSpec {
	return append(slices.Clone(s.Nodes), s.Replicas...)
}

// IsReplica reports whether id is one of the read replicas.
func (s Spec) IsReplica(id string) bool {
	return slices.ContainsFunc(s.Replicas, func(n NodeSpec) bool { return n.ID == id })
}

// RESPPeersFlag is the --resp-peers value: "n1=resp1,...".
func (s Spec) RESPPeersFlag() string {
	parts := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		parts[i] = n.ID + "=" + n.RESP
	}
	return strings.Join(parts, ",")
}

// HTTPEndpoints lists the voters' HTTP addresses.
func (s Spec) HTTPEndpoints() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.HTTP
	}
	return out
}

// LoadSpec reads DATA/cluster.json. It returns an error wrapping
// os.ErrNotExist when there is none.
func LoadSpec(dataDir string) (Spec, error) {
	p := filepath.Join(dataDir, SpecFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return Spec{}, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return Spec{}, fmt.Errorf("cluster: %s: %w", p, err)
	}
	if err := s.Validate(); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", p, err)
	}
	return s, nil
}

// Save writes DATA/cluster.json atomically (temporary file, fsync, rename,
// directory fsync).
func (s Spec) Save(dataDir string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// A unique temporary name: several processes may save at once.
	f, err := os.CreateTemp(dataDir, SpecFile+".tmp*")
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("cluster: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cluster: fsync %s: %w", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, SpecFile)); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	d, err := os.Open(dataDir)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cluster: fsync %s: %w", dataDir, err)
	}
	return nil
}

// Config configures a Cluster.
type Config struct {
	// Binary is the trireme executable to run as `Binary node ...`.
	Binary string
	// DataDir holds cluster.json, each node's data directory and logs/.
	DataDir string
	// Spec is the layout; it is saved to DataDir/cluster.json by New.
	Spec Spec
	// NodeArgs are extra flags for every node (e.g. --heartbeat 50ms).
	NodeArgs []string
	// CertDir holds the CA and the nodes' certificates (internal/pki); New
	// creates what is missing. Empty: DataDir/certs.
	CertDir string
	// InsecurePeers runs the nodes without peer TLS (--insecure-peers): any
	// process that reaches a peer port can act as a member. For tests only.
	InsecurePeers bool
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL (default 10s).
	StopTimeout time.Duration
	// Logger receives process events; nil = discard.
	Logger *slog.Logger
	// Output, if set, also receives every node's output (each line as written).
	Output io.Writer
	// NodeProcs, if above 0, is each node process's GOMAXPROCS. 0 leaves
	// Go's default, every core. Nodes that share a machine use less CPU
	// with a share each (SharedProcs), at the cost of longer latency tails
	// (DESIGN.md). A GOMAXPROCS set in the supervisor's environment wins.
	NodeProcs int
}

// SharedProcs is each node's share of this machine's cores when nodes node
// processes run on it (at least 1).
func SharedProcs(nodes int) int {
	return max(1, runtime.NumCPU()/max(1, nodes))
}

// Procs turns a user's GOMAXPROCS setting for nodes node processes into
// Config.NodeProcs: 0 is Go's default (0), -1 a share of the cores
// (SharedProcs), a count is itself. Anything else is an error.
func Procs(setting, nodes int) (int, error) {
	switch {
	case setting == -1:
		return SharedProcs(nodes), nil
	case setting >= 0:
		return setting, nil
	}
	return 0, fmt.Errorf("cluster: GOMAXPROCS setting %d: want a count, 0 (Go's default) or -1 (a share of the cores)", setting)
}

// ProcsEnv is what a child process's environment adds for a GOMAXPROCS of
// procs: nothing if procs is 0 or the supervisor's environment sets
// GOMAXPROCS (which the child inherits, and which wins).
func ProcsEnv(procs int) []string {
	if _, set := os.LookupEnv("GOMAXPROCS"); procs <= 0 || set {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(procs)}
}

// DefaultConfig returns a Config with a 10s stop timeout.
func DefaultConfig() Config { return Config{StopTimeout: 10 * time.Second} }

// Validate checks the fields.
func (c Config) Validate() error {
	if c.Binary == "" {
		return errors.New("cluster: Config.Binary is empty")
	}
	if c.DataDir == "" {
		return errors.New("cluster: Config.DataDir is empty")
	}
	if c.StopTimeout <= 0 {
		return fmt.Errorf("cluster: Config.StopTimeout %v must be > 0", c.StopTimeout)
	}
	if c.NodeProcs < 0 {
		return fmt.Errorf("cluster: Config.NodeProcs %d must be >= 0", c.NodeProcs)
	}
	return c.Spec.Validate()
}

// Cluster supervises the node processes of one local cluster.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	client *client.Client

	mu    sync.Mutex
	procs map[string]*proc // running (or paused) processes by id
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
	log  *os.File
}

// New checks cfg and saves the spec to DataDir/cluster.json.
func New(cfg Config) (*Cluster, error) {
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultConfig().StopTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cfg.DataDir = abs
	if cfg.CertDir == "" {
		cfg.CertDir = filepath.Join(abs, CertsDir)
	}
	if cfg.CertDir, err = filepath.Abs(cfg.CertDir); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := cfg.Spec.Save(cfg.DataDir); err != nil {
		return nil, err
	}
	if !cfg.InsecurePeers {
		if err := ensureCerts(&cfg); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cl, err := client.New(client.Config{Endpoints: cfg.Spec.HTTPEndpoints(), RetryFor: 5 * time.Second,
		HTTPClient: nil})
	if err != nil {
		return nil, err
	}
	return &Cluster{cfg: cfg, log: cfg.Logger, client: cl, procs: map[string]*proc{}}, nil
}

// Spec returns the cluster's layout.
func (c *Cluster) Spec() Spec { return c.cfg.Spec }

// DataDir is the cluster's data directory (absolute).
func (c *Cluster) DataDir() string { return c.cfg.DataDir }

// Client returns a client for every voter's HTTP endpoint.
func (c *Cluster) Client() *client.Client { return c.client }

// Node returns the spec of node id, a voter or a read replica.
func (c *Cluster) Node(id string) (NodeSpec, error) {
	for _, n := range c.cfg.Spec.All() {
		if n.ID == id {
			return n, nil
		}
	}
	return NodeSpec{}, fmt.Errorf("%w: %q", ErrUnknownNode, id)
}

// LogPath is where node id's output goes.
func (c *Cluster) LogPath(id string) string {
	return filepath.Join(c.cfg.DataDir, "logs", id+".log")
}

// NodeDir is node id's data directory.
func (c *Cluster) NodeDir(n NodeSpec) string { return filepath.Join(c.cfg.DataDir, n.Dir) }

// CertDir is the certificate directory the nodes use (absolute).
func (c *Cluster) CertDir() string { return c.cfg.CertDir }

// Args returns the command-line arguments that start node n. A read
// replica joins through the first voter (see ReplicaArgs).
func (c *Cluster) Args(n NodeSpec) []string {
	if c.cfg.Spec.IsReplica(n.ID) {
		return c.ReplicaArgs(n, c.cfg.Spec.Nodes[0].HTTP)
	}
	args := []string{"node", "--id", n.ID, "--data", c.NodeDir(n), "--cluster", c.cfg.Spec.ClusterFlag(),
		"--http", n.HTTP, "--resp", n.RESP, "--http-peers", c.cfg.Spec.HTTPPeersFlag(),
		"--resp-peers", c.cfg.Spec.RESPPeersFlag()}
	if c.cfg.Spec.Mode != "" {
		args = append(args, "--mode", c.cfg.Spec.Mode)
	}
	if c.cfg.Spec.ReplicationFactor > 0 {
		args = append(args, "--replication-factor", strconv.Itoa(c.cfg.Spec.ReplicationFactor))
	}
	return c.withCommonArgs(args)
}

// ReplicaArgs returns the command-line arguments that start read replica
// n, joining through the voter whose HTTP API is at via (host:port) as a
// learner that stays one. Its --cluster names only itself (its peer
// address); the members come from the join, which its data directory
// records, so a restart does not ask again (and ignores via).
func (c *Cluster) ReplicaArgs(n NodeSpec, via string) []string {
	args := []string{"node", "--id", n.ID, "--data", c.NodeDir(n), "--cluster", n.ID + "=" + n.Peer,
		"--join", "http://" + via, "--learner", "--http", n.HTTP, "--resp", n.RESP}
	return c.withCommonArgs(args)
}

// withCommonArgs adds what every node gets: peer TLS (or --insecure-peers)
// and Config.NodeArgs.
func (c *Cluster) withCommonArgs(args []string) []string {
	if c.cfg.InsecurePeers {
		args = append(args, "--insecure-peers")
	} else {
		args = append(args, "--peer-tls-dir", c.cfg.CertDir)
	}
	return append(args, c.cfg.NodeArgs...)
}

// ensureCerts creates the CA and the certificates of the voters and read
// replicas that cfg.CertDir lacks (a replica added to an existing cluster
// gets one from the existing CA). A new CA takes the cluster id the nodes'
// data directories already recorded, if any (a cluster created before peer
// TLS keeps its data).
func ensureCerts(cfg *Config) error {
	pc := pki.DefaultConfig()
	all := cfg.Spec.All()
	for _, n := range all {
		if id := recordedClusterID(filepath.Join(cfg.DataDir, n.Dir)); id != "" && pki.CheckID(id) == nil {
			pc.ClusterID = id
			break
		}
	}
	if _, err := pki.Ensure(cfg.CertDir, idsOf(all), pc); err != nil {
		return fmt.Errorf("cluster: peer certificates: %w", err)
	}
	return nil
}

// recordedClusterID is the cluster id in a node data directory's
// identity.json (written by internal/node on first start), or "".
func recordedClusterID(nodeDir string) string {
	b, err := os.ReadFile(filepath.Join(nodeDir, "identity.json"))
	if err != nil {
		return ""
	}
	var id struct {
		ClusterID string `json:"cluster_id"`
	}
	if json.Unmarshal(b, &id) != nil {
		return ""
	}
	return id.ClusterID
}

// StartAll starts every voter that is not running. Read replicas join
// through a voter: StartReplicas starts them once the voters have a leader.
func (c *Cluster) StartAll() error {
	for _, n := range c.cfg.Spec.Nodes {
		if c.Running(n.ID) {
			continue
		}
		if err := c.Start(n.ID); err != nil {
			return err
		}
	}
	return nil
}

// Start starts node id's process (a voter or a read replica) with Args.
func (c *Cluster) Start(id string) error {
	n, err := c.Node(id)
	if err != nil {
		return err
	}
	return c.start(id, c.Args(n))
}

// start starts node id's process with args.
func (c *Cluster) start(id string, args []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.procs[id]; ok {
		return fmt.Errorf("%w: %s", ErrRunning, id)
	}
	lf, err := os.OpenFile(c.LogPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	cmd := exec.Command(c.cfg.Binary, args...)
	cmd.Env = c.nodeEnv()
	var out io.Writer = lf
	if c.cfg.Output != nil {
		out = io.MultiWriter(lf, c.cfg.Output)
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a Ctrl-C in the terminal reaches the supervisor
	// only, which stops the nodes in order. Parent death kills the node.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("cluster: starting %s: %w", id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: lf}
	c.procs[id] = p
	c.log.Info("node started", "node", id, "pid", cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
		c.log.Info("node exited", "node", id, "err", p.err)
	}()
	return nil
}

// nodeEnv is a node process's environment: the supervisor's, plus
// GOMAXPROCS from Config.NodeProcs unless the supervisor's has one.
func (c *Cluster) nodeEnv() []string {
	return append(os.Environ(), ProcsEnv(c.cfg.NodeProcs)...)
}

// Running reports whether node id's process is alive (possibly paused).
func (c *Cluster) Running(id string) bool {
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when node id's current process exits, and
// a function returning its exit error. It fails if the node was never started.
func (c *Cluster) Exited(id string) (<-chan struct{}, func() error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[id]
	if p == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	return p.done, func() error { return p.err }, nil
}

// Pid returns node id's process id.
func (c *Cluster) Pid(id string) (int, error) {
	p, err := c.live(id)
	if err != nil {
		return 0, err
	}
	return p.cmd.Process.Pid, nil
}

func (c *Cluster) live(id string) (*proc, error) {
	if _, err := c.Node(id); err != nil {
		return nil, err
	}
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	select {
	case <-p.done:
		c.forget(id, p)
		return nil, fmt.Errorf("%w: %s (exited: %v)", ErrNotRunning, id, p.err)
	default:
	}
	return p, nil
}

func (c *Cluster) forget(id string, p *proc) {
	c.mu.Lock()
	if c.procs[id] == p {
		delete(c.procs, id)
	}
	c.mu.Unlock()
}

// Stop sends SIGTERM to node id (and SIGCONT, in case it is paused), waits
// for it to exit, and kills it after Config.StopTimeout. It returns the
// process's exit error, or nil for a clean exit.
func (c *Cluster) Stop(id string) error {
	p, err := c.live(id)
	if err != nil {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(c.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		c.log.Warn("node did not stop in time; killing it", "node", id, "timeout", c.cfg.StopTimeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	c.forget(id, p)
	if p.err != nil {
		return fmt.Errorf("cluster: node %s: %w", id, p.err)
	}
	return nil
}

// Kill sends SIGKILL to node id and waits for it to die.
func (c *Cluster) Kill(id string) error {
	p, err := c.live(id)
	if err != nil {
		return err
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	c.forget(id, p)
	c.log.Info("node killed", "node", id)
	return nil
}

// Pause sends SIGSTOP to node id and waits (up to a second) until the
// kernel shows it stopped.
func (c *Cluster) Pause(id string) error {
	if err := c.signal(id, syscall.SIGSTOP); err != nil {
		return err
	}
	pid, err := c.Pid(id)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil // no procfs: trust the signal
		}
		// The state follows the command name in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("cluster: node %s did not stop after SIGSTOP", id)
}

// Resume sends SIGCONT to node id.
func (c *Cluster) Resume(id string) error { return c.signal(id, syscall.SIGCONT) }

func (c *Cluster) signal(id string, sig syscall.Signal) error {
	p, err := c.live(id)
	if err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("cluster: signal %v to %s: %w", sig, id, err)
	}
	return nil
}

// Restart stops node id (if running) and starts it again.
func (c *Cluster) Restart(id string) error {
	if c.Running(id) {
		if err := c.Stop(id); err != nil {
			c.log.Warn("node exited with an error while stopping", "node", id, "err", err)
		}
	}
	return c.Start(id)
}

// StopAll stops every running node, in parallel, and returns their errors.
func (c *Cluster) StopAll() error {
	c.mu.Lock()
	var ids []string
	for id := range c.procs {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := c.Stop(id); err != nil && !errors.Is(err, ErrNotRunning) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Status asks node id for its status.
func (c *Cluster) Status(ctx context.Context, id string) (client.Status, error) {
	n, err := c.Node(id)
	if err != nil {
		return client.Status{}, err
	}
	return c.client.Status(ctx, n.HTTP)
}

// Leader returns the id of the voter that says it leads with the highest
// term among the running voters, or ErrNoLeader.
func (c *Cluster) Leader(ctx context.Context) (string, client.Status, error) {
	var best client.Status
	for _, n := range c.cfg.Spec.Nodes {
		if !c.Running(n.ID) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := c.client.Status(sctx, n.HTTP)
		cancel()
		if err == nil && st.Role == "leader" && st.Term >= best.Term {
			best = st
		}
	}
	if best.ID == "" {
		return "", best, ErrNoLeader
	}
	return best.ID, best, nil
}

// WaitLeader waits until a running node leads and, if except is not empty,
// that it is not node except. It polls every 25ms.
func (c *Cluster) WaitLeader(ctx context.Context, except string) (string, error) {
	for {
		id, _, err := c.Leader(ctx)
		if err == nil && id != except {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w within the deadline: %w", ErrNoLeader, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// WaitReady waits until node id answers /v1/status.
func (c *Cluster) WaitReady(ctx context.Context, id string) error {
	for {
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := c.Status(sctx, id)
		cancel()
		if err == nil {
			return nil
		}
		if !c.Running(id) {
			return fmt.Errorf("%w: %s exited (see %s)", ErrNotRunning, id, c.LogPath(id))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: node %s not ready: %w (last error: %v)", id, ctx.Err(), err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Port returns the port of a host:port address.
func Port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
