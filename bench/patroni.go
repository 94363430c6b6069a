package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PatroniSettings are how the failover part runs PostgreSQL with Patroni.
type PatroniSettings struct {
	Nodes int // Patroni nodes, each with its PostgreSQL
	Etcd  int // etcd members (Patroni's DCS)
	// TTL, LoopWait and RetryTimeout are Patroni's ttl, loop_wait and
	// retry_timeout (whole seconds): the leader key expires TTL after the
	// leader's last renewal; Patroni checks every LoopWait; a DCS or
	// PostgreSQL operation is retried for RetryTimeout. Patroni wants
	// TTL >= LoopWait + 2 x RetryTimeout.
	TTL, LoopWait, RetryTimeout time.Duration
	// MaxLagOnFailover is maximum_lag_on_failover: a replica further
	// behind than this does not take over.
	MaxLagOnFailover int64
	// Password is that of the superuser (postgres) and of the replication
	// user; the servers listen on loopback only.
	Password string
}

// DefaultPatroniSettings are the tightest timings Patroni accepts: ttl 5,
// loop_wait 1, retry_timeout 2 (5 >= 1 + 2 x 2); Patroni's defaults are
// 30, 10, 10. Replication is asynchronous, Patroni's default
// (synchronous_mode off).
func DefaultPatroniSettings() PatroniSettings {
	return PatroniSettings{Nodes: 3, Etcd: 3, TTL: 5 * time.Second, LoopWait: time.Second, RetryTimeout: 2 * time.Second,
		MaxLagOnFailover: 1 << 20, Password: "trireme-bench"}
}

// Validate checks the settings against what Patroni accepts and names
// the bad field.
func (s PatroniSettings) Validate() error {
	whole := func(d time.Duration) bool { return d > 0 && d%time.Second == 0 }
	switch {
	case s.Nodes < 2 || s.Etcd < 1:
		return fmt.Errorf("bench: PatroniSettings.Nodes %d / Etcd %d: want >= 2 / >= 1", s.Nodes, s.Etcd)
	case !whole(s.TTL) || !whole(s.LoopWait) || !whole(s.RetryTimeout):
		return fmt.Errorf("bench: PatroniSettings.TTL %v, LoopWait %v, RetryTimeout %v: want whole seconds", s.TTL, s.LoopWait, s.RetryTimeout)
	case s.TTL < s.LoopWait+2*s.RetryTimeout:
		return fmt.Errorf("bench: PatroniSettings.TTL %v: Patroni wants >= LoopWait + 2 x RetryTimeout (%v)", s.TTL, s.LoopWait+2*s.RetryTimeout)
	case s.Password == "":
		return fmt.Errorf("bench: PatroniSettings.Password is empty")
	}
	return nil
}

// String is the settings as the report gives them.
func (s PatroniSettings) String() string {
	return fmt.Sprintf("%d Patroni nodes over a %d-member etcd (Debian etcd-server); ttl %d, loop_wait %d, retry_timeout %d, maximum_lag_on_failover %d; asynchronous replication (synchronous_mode off, the default), use_pg_rewind; PostgreSQL fsync on; watchdog off",
		s.Nodes, s.Etcd, int(s.TTL.Seconds()), int(s.LoopWait.Seconds()), int(s.RetryTimeout.Seconds()), s.MaxLagOnFailover)
}

// patroniScope is the cluster name (Patroni's scope) in etcd.
const patroniScope = "trireme-bench"

// patroniNode is one Patroni node's layout.
type patroniNode struct {
	Name      string // pg1, pg2, ...
	Dir       string // holds data/, the socket, pgpass, its config
	PGPort    int
	APIPort   int // Patroni's REST API
	BinDir    string
	EtcdHosts []string // host:port of every etcd member

	cmd  *exec.Cmd // the reaper that owns its process tree
	done chan struct{}
}

func (n *patroniNode) configPath() string { return filepath.Join(n.Dir, "patroni.yml") }
func (n *patroniNode) dataDir() string    { return filepath.Join(n.Dir, "data") }

// patroniConfig is node n's Patroni configuration (YAML).
func patroniConfig(n *patroniNode, s PatroniSettings) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("scope: %s", patroniScope)
	w("namespace: /service/")
	w("name: %s", n.Name)
	w("log:\n  level: WARNING")
	w("restapi:\n  listen: 127.0.0.1:%d\n  connect_address: 127.0.0.1:%d", n.APIPort, n.APIPort)
	w("etcd3:\n  hosts: %s", strings.Join(n.EtcdHosts, ","))
	w("watchdog:\n  mode: 'off'") // quoted: YAML reads a bare off as false
	w("bootstrap:")
	w("  dcs:")
	w("    ttl: %d\n    loop_wait: %d\n    retry_timeout: %d", int(s.TTL.Seconds()), int(s.LoopWait.Seconds()), int(s.RetryTimeout.Seconds()))
	w("    maximum_lag_on_failover: %d", s.MaxLagOnFailover)
	w("    synchronous_mode: false")
	w("    postgresql:")
	w("      use_pg_rewind: true")
	w("      use_slots: true")
	w("      parameters:")
	w("        wal_level: replica\n        hot_standby: 'on'\n        max_wal_senders: 10\n        max_replication_slots: 10\n        wal_keep_size: 128MB")
	w("  initdb:\n  - encoding: UTF8\n  - auth-local: trust")
	w("  pg_hba:")
	w("  - local all all trust")
	w("  - host replication replicator 127.0.0.1/32 md5")
	w("  - host all all 127.0.0.1/32 md5")
	w("postgresql:")
	w("  listen: 127.0.0.1:%d\n  connect_address: 127.0.0.1:%d", n.PGPort, n.PGPort)
	w("  data_dir: %s", n.dataDir())
	w("  bin_dir: %s", n.BinDir)
	w("  pgpass: %s", filepath.Join(n.Dir, "pgpass"))
	w("  remove_data_directory_on_rewind_failure: true")
	w("  remove_data_directory_on_diverged_timelines: true")
	w("  authentication:")
	w("    superuser:\n      username: postgres\n      password: %s", s.Password)
	w("    replication:\n      username: replicator\n      password: %s", s.Password)
	w("    rewind:\n      username: postgres\n      password: %s", s.Password)
	w("  parameters:")
	w("    unix_socket_directories: '%s'", n.Dir)
	w("    shared_buffers: 64MB")
	return b.String()
}

// Patroni is a PostgreSQL cluster run by Patroni over its own etcd.
type Patroni struct {
	settings PatroniSettings
	base     string // the nodes' directories (owned by the postgres user)
	logDir   string // etcd's data and every process's log
	keep     bool
	etcd     []*redisProc // Debian etcd members, restartable processes like Redis's
	nodes    []*patroniNode
	spec     reaperSpec // how every node runs (Args[1] is replaced by its config)
	versions string
	http     *http.Client
}

// postgresBinDir returns the newest /usr/lib/postgresql/VERSION/bin that
// holds postgres, initdb and pg_rewind.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		ok := true
		for _, p := range []string{"postgres", "initdb", "pg_rewind", "pg_ctl"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", &errNotInstalled{"PostgreSQL not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"}
}

// StartPatroni starts s.Etcd Debian etcd members and s.Nodes Patroni nodes
// (as the postgres user when run as root, since PostgreSQL refuses root),
// waits until one leads and the others stream from it, and creates the
// probe's table. The nodes live in a new directory under the system's
// temporary directory, which the postgres user can reach (dir, the run's,
// may be under a home it cannot enter); dir holds etcd and the logs. An
// *errNotInstalled says what is missing.
func StartPatroni(ctx context.Context, dir string, s PatroniSettings, keep bool, progress func(string)) (*Patroni, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	patroniBin, err := exec.LookPath("patroni")
	if err != nil {
		return nil, &errNotInstalled{"patroni not found in PATH (apt-get install patroni)"}
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, &errNotInstalled{"etcd not found in PATH (apt-get install etcd-server)"}
	}
	binDir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	spec, err := patroniSpec(patroniBin)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "trireme-bench-patroni-")
	if err != nil {
		return nil, err
	}
	p := &Patroni{settings: s, base: base, logDir: dir, keep: keep, spec: spec, http: &http.Client{Timeout: 2 * time.Second}}
	p.versions = strings.Join([]string{commandVersion(patroniBin, "--version"), commandVersion(filepath.Join(binDir, "postgres"), "--version"),
		strings.SplitN(commandVersion(etcdBin, "--version"), "\n", 2)[0]}, ", ")
	fail := func(err error) (*Patroni, error) {
		p.Stop()
		return nil, err
	}
	if err := p.startEtcd(ctx, etcdBin); err != nil {
		return fail(err)
	}
	if err := p.layout(binDir); err != nil {
		return fail(err)
	}
	progress(fmt.Sprintf("patroni: %s; nodes in %s", p.versions, base))
	for _, n := range p.nodes {
		if err := p.startNode(n); err != nil {
			return fail(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := p.waitWhole(wctx); err != nil {
		return fail(err)
	}
	if err := p.exec(wctx, "CREATE TABLE IF NOT EXISTS probe (k text PRIMARY KEY, v text NOT NULL)"); err != nil {
		return fail(err)
	}
	return p, nil
}

// patroniSpec is how every Patroni node runs under its reaper: as the
// postgres user if this program is root (PostgreSQL refuses root), else as
// this user. Args[1] is each node's configuration.
func patroniSpec(patroniBin string) (reaperSpec, error) {
	spec := reaperSpec{Args: []string{patroniBin, ""}}
	if os.Geteuid() != 0 {
		return spec, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return spec, &errNotInstalled{"no postgres user to run PostgreSQL as (PostgreSQL refuses root; apt-get install postgresql makes it)"}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return spec, fmt.Errorf("patroni: user postgres: uid %q, gid %q", u.Uid, u.Gid)
	}
	spec.AsUID, spec.UID, spec.GID = true, uint32(uid), uint32(gid)
	return spec, nil
}

// layout lays the nodes out under p.base, on free loopback ports, and
// writes their configurations, owned by the user they run as.
func (p *Patroni) layout(binDir string) error {
	var hosts []string
	for _, e := range p.etcd {
		hosts = append(hosts, e.addr)
	}
	ports, err := freePorts(2 * p.settings.Nodes)
	if err != nil {
		return err
	}
	for i := range p.settings.Nodes {
		n := &patroniNode{Name: fmt.Sprintf("pg%d", i+1), Dir: filepath.Join(p.base, fmt.Sprintf("pg%d", i+1)),
			PGPort: ports[2*i], APIPort: ports[2*i+1], BinDir: binDir, EtcdHosts: hosts}
		p.nodes = append(p.nodes, n)
		if err := os.MkdirAll(n.Dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(n.configPath(), []byte(patroniConfig(n, p.settings)), 0o600); err != nil {
			return err
		}
		if p.spec.AsUID {
			for _, f := range []string{p.base, n.Dir, n.configPath()} {
				if err := os.Chown(f, int(p.spec.UID), int(p.spec.GID)); err != nil {
					return err
				}
			}
		}
	}
	return os.Chmod(p.base, 0o755) // MkdirTemp made it 0700; postgres must enter it
}

// commandVersion returns the first line bin prints for arg, trimmed.
func commandVersion(bin, arg string) string {
	out, err := exec.Command(bin, arg).CombinedOutput()
	if err != nil {
		return filepath.Base(bin) + " (version unknown)"
	}
	return strings.TrimSpace(string(out))
}

// freePorts returns n distinct loopback ports the kernel says are free.
func freePorts(n int) ([]int, error) {
	var out []int
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// startEtcd starts the Debian etcd members (v3 API; Patroni's etcd3).
func (p *Patroni) startEtcd(ctx context.Context, bin string) error {
	dir := p.logDir
	ports, err := freePorts(2 * p.settings.Etcd)
	if err != nil {
		return err
	}
	var initial []string
	for i := range p.settings.Etcd {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	for i := range p.settings.Etcd {
		client, peer := fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		e := &redisProc{bin: bin, addr: client, log: filepath.Join(dir, fmt.Sprintf("etcd%d.log", i+1)), args: []string{
			"--name", fmt.Sprintf("e%d", i+1), "--data-dir", filepath.Join(dir, fmt.Sprintf("etcd%d", i+1)),
			"--listen-client-urls", "http://" + client, "--advertise-client-urls", "http://" + client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "trireme-bench-patroni", "--logger", "zap", "--log-level", "error"}}
		p.etcd = append(p.etcd, e)
		if err := e.start(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, e := range p.etcd {
		for {
			var h struct{ Health string }
			err := p.getJSON(ctx, "http://"+e.addr+"/health", &h)
			if err == nil && h.Health == "true" {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("patroni's etcd at %s not healthy (%v; log %s)", e.addr, err, e.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// startNode starts node n's Patroni under a reaper; its log (and its
// PostgreSQL's) goes to logDir/NAME.log.
func (p *Patroni) startNode(n *patroniNode) error {
	s := p.spec
	s.Args = []string{s.Args[0], n.configPath()}
	s.Dir = n.Dir
	s.Env = []string{"HOME=" + n.Dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "PGPASSFILE=" + filepath.Join(n.Dir, "pgpass")}
	cmd, done, err := startReaped(s, filepath.Join(p.logDir, n.Name+".log"))
	if err != nil {
		return err
	}
	n.cmd, n.done = cmd, done
	return nil
}

// running reports whether node n's process tree is alive.
func (n *patroniNode) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// killNode kills node n's Patroni and PostgreSQL with SIGKILL (its reaper
// does, on SIGTERM) and waits until every process of it is gone.
func (p *Patroni) killNode(n *patroniNode) error {
	if !n.running() {
		return fmt.Errorf("patroni: %s is not running", n.Name)
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-n.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		return fmt.Errorf("patroni: %s's processes still alive 30 s after the kill", n.Name)
	}
}

// Stop kills every node and etcd member, and removes the nodes'
// directory unless keep.
func (p *Patroni) Stop() {
	for _, n := range p.nodes {
		if n.running() {
			_ = p.killNode(n)
		}
	}
	for _, e := range p.etcd {
		if e.running() {
			stopProc(e.cmd, e.done, 10*time.Second)
		}
	}
	if !p.keep {
		os.RemoveAll(p.base)
	}
}

func (p *Patroni) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.Unmarshal(b, v)
}

// patroniMember is a member as Patroni's GET /cluster lists it.
type patroniMember struct {
	Name     string `json:"name"`
	Role     string `json:"role"`  // "leader", "replica", "sync_standby"
	State    string `json:"state"` // "running", "streaming", "starting", ...
	Timeline int    `json:"timeline"`
	Lag      any    `json:"lag"` // bytes, or "unknown"
}

// members asks the running nodes' REST APIs, in turn, for the cluster's
// members, as the DCS has them.
func (p *Patroni) members(ctx context.Context) ([]patroniMember, error) {
	var last error
	for _, n := range p.nodes {
		if !n.running() {
			continue
		}
		var c struct{ Members []patroniMember }
		if last = p.getJSON(ctx, fmt.Sprintf("http://127.0.0.1:%d/cluster", n.APIPort), &c); last == nil {
			return c.Members, nil
		}
	}
	return nil, fmt.Errorf("no Patroni REST API answered: %v", last)
}

// patroniWhole reports whether members are a whole cluster of n: one
// leader running, the others replicas running with a known lag, all on
// the leader's timeline; the error says what is not.
func patroniWhole(members []patroniMember, n int) error {
	if len(members) != n {
		return fmt.Errorf("%d members of %d", len(members), n)
	}
	var leader *patroniMember
	for i := range members {
		if members[i].Role == "leader" {
			leader = &members[i]
		}
	}
	if leader == nil || leader.State != "running" {
		return fmt.Errorf("no running leader: %+v", members)
	}
	for _, m := range members {
		if m.Name == leader.Name {
			continue
		}
		if _, known := m.Lag.(float64); !known || (m.State != "running" && m.State != "streaming") || m.Timeline != leader.Timeline {
			return fmt.Errorf("replica %s not streaming on timeline %d: %+v", m.Name, leader.Timeline, m)
		}
	}
	return nil
}

// leader returns the name of the member that leads, with every member up.
func (p *Patroni) leader(ctx context.Context) (string, error) {
	ms, err := p.members(ctx)
	if err != nil {
		return "", err
	}
	if err := patroniWhole(ms, len(p.nodes)); err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Role == "leader" {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("no leader")
}

// waitWhole waits until every node runs and the cluster is whole as
// Patroni sees it, and the primary streams to every replica.
func (p *Patroni) waitWhole(ctx context.Context) error {
	var last error
	for {
		if last = p.whole(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("patroni: not whole (logs in %s, data in %s): %w", p.logDir, p.base, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *Patroni) whole(ctx context.Context) error {
	for _, n := range p.nodes {
		if !n.running() {
			return fmt.Errorf("%s is not running", n.Name)
		}
	}
	if _, err := p.leader(ctx); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(qctx, p.connString())
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var streaming int
	if err := c.QueryRow(qctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").Scan(&streaming); err != nil {
		return err
	}
	if streaming != len(p.nodes)-1 {
		return fmt.Errorf("the primary streams to %d replicas of %d", streaming, len(p.nodes)-1)
	}
	return nil
}

// connString is the multi-host connection string an application gives
// pgx: every node, and only a server that takes writes will do.
func (p *Patroni) connString() string {
	var hosts []string
	for _, n := range p.nodes {
		hosts = append(hosts, fmt.Sprintf("127.0.0.1:%d", n.PGPort))
	}
	return fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=1",
		p.settings.Password, strings.Join(hosts, ","))
}

// exec runs sql on the primary.
func (p *Patroni) exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, p.connString())
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

func (p *Patroni) node(name string) (*patroniNode, error) {
	for _, n := range p.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("patroni: no node %q", name)
}

// patroniTarget is PostgreSQL + Patroni under the failover measurement; a
// victim is a node's name.
type patroniTarget struct{ p *Patroni }

func (tg patroniTarget) primary(ctx context.Context) (string, error) { return tg.p.leader(ctx) }

// describe adds the versions that ran to the report's settings.
func (tg patroniTarget) describe() string { return tg.p.versions }

// pgWriter is the probe's client: a pgx pool over the multi-host
// connection string, which connects only to a server that takes writes.
type pgWriter struct{ pool *pgxpool.Pool }

func (w pgWriter) Write(ctx context.Context, key, value string) error {
	_, err := w.pool.Exec(ctx, "INSERT INTO probe (k, v) VALUES ($1, $2)", key, value)
	return err
}

func (w pgWriter) Close() { w.pool.Close() }

func (tg patroniTarget) writer(ctx context.Context) (probeWriter, error) {
	cfg, err := pgxpool.ParseConfig(tg.p.connString())
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return pgWriter{pool}, nil
}

func (tg patroniTarget) kill(victim string) error {
	n, err := tg.p.node(victim)
	if err != nil {
		return err
	}
	return tg.p.killNode(n)
}

// restore starts the killed node's Patroni again, which rewinds its
// PostgreSQL (or copies it anew) and makes it a replica of the new
// primary, and waits until the cluster is whole.
func (tg patroniTarget) restore(ctx context.Context, victim string) error {
	n, err := tg.p.node(victim)
	if err != nil {
		return err
	}
	if err := tg.p.startNode(n); err != nil {
		return err
	}
	return tg.p.waitWhole(ctx)
}

func (tg patroniTarget) readBack(ctx context.Context, keys []string) (map[string]string, error) {
	c, err := pgx.Connect(ctx, tg.p.connString())
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, "SELECT k, v FROM probe WHERE k = ANY($1)", keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}
