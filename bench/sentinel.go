package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelSettings are how the failover part runs Redis with Sentinel.
type SentinelSettings struct {
	Replicas  int // replicas of the master
	Sentinels int
	Quorum    int // sentinels that must agree the master is down
	// DownAfter is down-after-milliseconds: how long the master must not
	// answer before a sentinel thinks it down.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout: how long a failover may take
	// before another is tried (after twice this long, with the same master).
	FailoverTimeout time.Duration
	ParallelSyncs   int
}

// DefaultSentinelSettings are the tightest settings that make sense on
// loopback: the master is down after 1 s of silence (Redis's default is 30
// s); a failover that stalls is retried after 2 x 5 s (default 2 x 3 min).
// A shorter failover-timeout aborts failovers whose promotion the
// sentinels have not seen yet (they read the promoted replica's INFO once
// a second).
func DefaultSentinelSettings() SentinelSettings {
	return SentinelSettings{Replicas: 2, Sentinels: 3, Quorum: 2, DownAfter: time.Second,
		FailoverTimeout: 5 * time.Second, ParallelSyncs: 1}
}

// Validate checks the settings and names the bad field.
func (s SentinelSettings) Validate() error {
	switch {
	case s.Replicas < 1 || s.Sentinels < 1:
		return fmt.Errorf("bench: SentinelSettings.Replicas %d / Sentinels %d: want >= 1", s.Replicas, s.Sentinels)
	case s.Quorum < 1 || s.Quorum > s.Sentinels:
		return fmt.Errorf("bench: SentinelSettings.Quorum %d: want 1..Sentinels (%d)", s.Quorum, s.Sentinels)
	case s.DownAfter < time.Millisecond || s.FailoverTimeout < time.Millisecond || s.ParallelSyncs < 1:
		return fmt.Errorf("bench: SentinelSettings.DownAfter %v / FailoverTimeout %v / ParallelSyncs %d: want >= 1 ms / >= 1 ms / >= 1",
			s.DownAfter, s.FailoverTimeout, s.ParallelSyncs)
	}
	return nil
}

// String is the settings as the report gives them.
func (s SentinelSettings) String() string {
	return fmt.Sprintf("1 master + %d replicas (appendonly yes, appendfsync always, asynchronous replication), %d sentinels, quorum %d, down-after-milliseconds %d, failover-timeout %d, parallel-syncs %d",
		s.Replicas, s.Sentinels, s.Quorum, s.DownAfter.Milliseconds(), s.FailoverTimeout.Milliseconds(), s.ParallelSyncs)
}

// sentinelMaster is the name the sentinels monitor the master under.
const sentinelMaster = "bench"

// sentinelConf is the configuration file of a sentinel listening on port
// with its working directory dir, monitoring the master at masterAddr
// (host:port). Sentinel rewrites the file as it learns, so it must be
// writable.
func sentinelConf(port int, dir, masterAddr string, s SentinelSettings) string {
	host, mport, _ := net.SplitHostPort(masterAddr)
	var b strings.Builder
	fmt.Fprintf(&b, "port %d\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir %s\nlogfile \"\"\n", port, dir)
	fmt.Fprintf(&b, "sentinel monitor %s %s %s %d\n", sentinelMaster, host, mport, s.Quorum)
	fmt.Fprintf(&b, "sentinel down-after-milliseconds %s %d\n", sentinelMaster, s.DownAfter.Milliseconds())
	fmt.Fprintf(&b, "sentinel failover-timeout %s %d\n", sentinelMaster, s.FailoverTimeout.Milliseconds())
	fmt.Fprintf(&b, "sentinel parallel-syncs %s %d\n", sentinelMaster, s.ParallelSyncs)
	return b.String()
}

// redisProc is one redis-server or redis-sentinel process, restartable
// with the same arguments.
type redisProc struct {
	bin  string
	args []string
	log  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *redisProc) start() error { return p.startWith(p.args) }

// startWith starts the process with args instead of p.args.
func (p *redisProc) startWith(args []string) error {
	cmd, done, err := startProc(p.bin, args, nil, p.log)
	if err != nil {
		return err
	}
	p.cmd, p.done = cmd, done
	return nil
}

// running reports whether the process was started and has not exited.
func (p *redisProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Sentinel is a Redis master with replicas and the sentinels that watch it.
type Sentinel struct {
	settings  SentinelSettings
	dir       string
	servers   []*redisProc
	sentinels []*redisProc
}

// StartSentinel starts a master, s.Replicas replicas and s.Sentinels
// sentinels under dir, on free loopback ports, and waits until the
// replicas are in sync and every sentinel knows the replicas and the other
// sentinels. An *errNotInstalled says that redis-server or redis-sentinel
// is missing.
func StartSentinel(ctx context.Context, dir string, s SentinelSettings) (*Sentinel, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	srv, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, &errNotInstalled{"redis-server not found in PATH (apt-get install redis-server)"}
	}
	sen, err := exec.LookPath("redis-sentinel")
	if err != nil {
		return nil, &errNotInstalled{"redis-sentinel not found in PATH (apt-get install redis-sentinel)"}
	}
	st := &Sentinel{settings: s, dir: dir}
	fail := func(err error) (*Sentinel, error) {
		st.Stop()
		return nil, err
	}
	if err := st.startServers(ctx, srv); err != nil {
		return fail(err)
	}
	if err := st.startSentinels(sen); err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := st.waitWhole(wctx); err != nil {
		return fail(err)
	}
	return st, nil
}

// startServers starts the master and its replicas (appendonly yes,
// appendfsync always, as the load part's Redis) and waits until the
// replicas are in sync.
func (st *Sentinel) startServers(ctx context.Context, bin string) error {
	for i := 0; i <= st.settings.Replicas; i++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		d := filepath.Join(st.dir, fmt.Sprintf("redis%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		p := &redisProc{bin: bin, log: filepath.Join(d, "redis.log"), addr: fmt.Sprintf("127.0.0.1:%d", port),
			args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", d, "--daemonize", "no",
				"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--repl-diskless-sync-delay", "0",
				"--protected-mode", "no", "--logfile", ""}}
		st.servers = append(st.servers, p)
		first := p.args
		if i > 0 {
			first = slices.Concat(p.args, []string{"--replicaof", "127.0.0.1", strconv.Itoa(cPort(st.servers[0].addr))})
		}
		if err := p.startWith(first); err != nil {
			return err
		}
	}
	// In sync before the sentinels start: a sentinel learns of the
	// replicas from the master's INFO, which it asks for every 10 s.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return st.waitReplicas(rctx, st.servers[0].addr)
}

// startSentinels writes each sentinel's configuration and starts it.
func (st *Sentinel) startSentinels(bin string) error {
	for i := range st.settings.Sentinels {
		port, err := freePort()
		if err != nil {
			return err
		}
		d := filepath.Join(st.dir, fmt.Sprintf("sentinel%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		conf := filepath.Join(d, "sentinel.conf")
		if err := os.WriteFile(conf, []byte(sentinelConf(port, d, st.servers[0].addr, st.settings)), 0o644); err != nil {
			return err
		}
		p := &redisProc{bin: bin, args: []string{conf}, log: filepath.Join(d, "sentinel.log"), addr: fmt.Sprintf("127.0.0.1:%d", port)}
		st.sentinels = append(st.sentinels, p)
		if err := p.start(); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops the sentinels, then the servers.
func (st *Sentinel) Stop() {
	for _, p := range slices.Concat(st.sentinels, st.servers) {
		if p.running() {
			stopProc(p.cmd, p.done, 10*time.Second)
		}
	}
}

// sentinelClient opens a client to sentinel i.
func (st *Sentinel) sentinelClient(i int) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: st.sentinels[i].addr, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})
}

// masterAddr returns the master's address if every sentinel names the
// same one and none sees it down or a failover under way.
func (st *Sentinel) masterAddr(ctx context.Context) (string, error) {
	addr := ""
	for i := range st.sentinels {
		c := st.sentinelClient(i)
		m, err := c.Master(ctx, sentinelMaster).Result()
		c.Close()
		if err != nil {
			return "", fmt.Errorf("sentinel %d: %w", i, err)
		}
		a := net.JoinHostPort(m["ip"], m["port"])
		if m["flags"] != "master" {
			return "", fmt.Errorf("sentinel %d sees master %s as %q", i, a, m["flags"])
		}
		if m["num-slaves"] != strconv.Itoa(st.settings.Replicas) || m["num-other-sentinels"] != strconv.Itoa(len(st.sentinels)-1) {
			return "", fmt.Errorf("sentinel %d knows %s replicas and %s other sentinels", i, m["num-slaves"], m["num-other-sentinels"])
		}
		if addr != "" && a != addr {
			return "", fmt.Errorf("sentinels disagree on the master: %s and %s", addr, a)
		}
		addr = a
	}
	return addr, nil
}

// waitMaster waits until the sentinels agree on a master (masterAddr)
// and returns it.
func (st *Sentinel) waitMaster(ctx context.Context) (string, error) {
	for {
		addr, err := st.masterAddr(ctx)
		if err == nil {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("redis sentinel: no agreed master (logs in %s): %w", st.dir, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitWhole waits until every server runs, the sentinels agree on the
// master, and the master has every replica connected and online.
func (st *Sentinel) waitWhole(ctx context.Context) error {
	var last error
	for {
		last = st.whole(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis sentinel: not whole (logs in %s): %w", st.dir, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (st *Sentinel) whole(ctx context.Context) error {
	for _, p := range st.servers {
		if !p.running() {
			return fmt.Errorf("%s is not running", p.addr)
		}
	}
	addr, err := st.masterAddr(ctx)
	if err != nil {
		return err
	}
	return st.replicasOnline(ctx, addr)
}

// waitReplicas waits until the master at addr has every replica online.
func (st *Sentinel) waitReplicas(ctx context.Context, addr string) error {
	for {
		err := st.replicasOnline(ctx, addr)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis: replicas not in sync (logs in %s): %w", st.dir, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replicasOnline reports whether the server at addr is a master with
// every replica connected and online.
func (st *Sentinel) replicasOnline(ctx context.Context, addr string) error {
	c, err := dialRESP(ctx, addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master") || !strings.Contains(info, fmt.Sprintf("connected_slaves:%d", st.settings.Replicas)) ||
		strings.Count(info, "state=online") != st.settings.Replicas {
		return fmt.Errorf("master %s: replicas not all online: %s", addr, strings.Join(strings.Fields(info), " "))
	}
	return nil
}

// failoverClient opens a Sentinel-aware client, as an application would.
func (st *Sentinel) failoverClient() *redis.Client {
	var addrs []string
	for _, p := range st.sentinels {
		addrs = append(addrs, p.addr)
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sentinelMaster, SentinelAddrs: addrs,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 64, PoolTimeout: probeTimeout,
		DialTimeout: time.Second, ReadTimeout: probeTimeout, WriteTimeout: probeTimeout, ContextTimeoutEnabled: true})
}

// sentinelTarget is Redis with Sentinel under the failover measurement; a
// victim is a server's address.
type sentinelTarget struct{ st *Sentinel }

func (tg sentinelTarget) primary(ctx context.Context) (string, error) {
	return tg.st.masterAddr(ctx)
}

// redisWriter is the probe's Sentinel-aware client.
type redisWriter struct{ c *redis.Client }

func (w redisWriter) Write(ctx context.Context, key, value string) error {
	return w.c.Set(ctx, key, value, 0).Err()
}

func (w redisWriter) Close() { w.c.Close() }

func (tg sentinelTarget) writer(ctx context.Context) (probeWriter, error) {
	return redisWriter{tg.st.failoverClient()}, nil
}

func (tg sentinelTarget) server(victim string) (*redisProc, error) {
	for _, p := range tg.st.servers {
		if p.addr == victim {
			return p, nil
		}
	}
	return nil, fmt.Errorf("redis: no server at %s", victim)
}

func (tg sentinelTarget) kill(victim string) error {
	p, err := tg.server(victim)
	if err != nil {
		return err
	}
	if !p.running() {
		return fmt.Errorf("redis: %s is not running", victim)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// restore restarts the killed server as a replica of the new master and
// waits until it is in sync and the sentinels see the whole set again.
// (Restarted as the master it was, it would be made a replica all the same,
// by the sentinels, but only once one of them next asks it for INFO, up
// to 10 s later; its writes the new master lacks are dropped either way.)
func (tg sentinelTarget) restore(ctx context.Context, victim string) error {
	p, err := tg.server(victim)
	if err != nil {
		return err
	}
	master, err := tg.st.waitMaster(ctx)
	if err != nil {
		return err
	}
	if err := p.startWith(slices.Concat(p.args, []string{"--replicaof", "127.0.0.1", strconv.Itoa(cPort(master))})); err != nil {
		return err
	}
	return tg.st.waitWhole(ctx)
}

func (tg sentinelTarget) readBack(ctx context.Context, keys []string) (map[string]string, error) {
	c := tg.st.failoverClient()
	defer c.Close()
	return respGetAll(ctx, c, keys)
}
