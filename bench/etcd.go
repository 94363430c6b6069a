package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trireme-db/trireme/internal/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdMemberEnv names the environment variable that turns this program
// into one embedded etcd member (see RunEtcdMemberIfAsked): the benchmark
// runs each member in its own process so that it can be killed with -9 and
// its memory read, like a Trireme node.
const EtcdMemberEnv = "TRIREME_BENCH_ETCD_MEMBER"

// etcdMember is one member's configuration, passed as JSON in EtcdMemberEnv.
type etcdMember struct {
	Name, Dir, PeerURL, ClientURL, InitialCluster, State string
}

// RunEtcdMemberIfAsked runs an embedded etcd member and exits if
// EtcdMemberEnv is set; otherwise it returns. Call it first in main (and in
// TestMain). The member runs with etcd's default settings (fsync on,
// heartbeat 100ms, election timeout 1s) except: logs at error level,
// revision-based auto-compaction keeping 10000 revisions and an 8 GiB
// quota, so that a long benchmark does not fill the default 2 GiB quota.
func RunEtcdMemberIfAsked() {
	js := os.Getenv(EtcdMemberEnv)
	if js == "" {
		return
	}
	os.Exit(runEtcdMember(js))
}

func runEtcdMember(js string) int {
	var m etcdMember
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		fmt.Fprintf(os.Stderr, "etcd member: bad %s: %v\n", EtcdMemberEnv, err)
		return 2
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.Name, m.Dir
	pu, err := url.Parse(m.PeerURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		return 2
	}
	cu, err := url.Parse(m.ClientURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		return 2
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.InitialCluster, cfg.ClusterState, cfg.InitialClusterToken = m.InitialCluster, m.State, "trireme-bench"
	cfg.LogLevel = "error"
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "revision", "10000"
	cfg.QuotaBackendBytes = 8 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		return 1
	case <-sig:
		e.Close()
		return 0
	}
	select {
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		e.Close()
		return 1
	case <-sig:
		e.Close()
		return 0
	}
}

// Etcd is a local etcd cluster of member processes.
type Etcd struct {
	dir     string
	members []etcdMember
	Clients []string // client URLs, by member
	procs   []*exec.Cmd
	done    []chan struct{}
	env     []string // extra environment of every member process
}

// StartEtcd starts n members (this executable, re-run with EtcdMemberEnv)
// under dir and waits until they have a leader. procs is each member's
// GOMAXPROCS, as for Trireme's nodes (StartTrireme): 0 leaves Go's default,
// -1 shares this machine's cores among the members.
func StartEtcd(ctx context.Context, dir string, n, procs int) (*Etcd, error) {
	e := &Etcd{dir: dir}
	procs, err := cluster.Procs(procs, n)
	if err != nil {
		return nil, err
	}
	e.env = cluster.ProcsEnv(procs)
	var ic []string
	// Every port distinct: two members given the same port (freePort can
	// hand one out twice) would leave one dead from the start, and the
	// cluster would elect with two and lose its quorum at the first kill.
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		pp, cp := ports[2*i], ports[2*i+1]
		m := etcdMember{Name: fmt.Sprintf("e%d", i+1), Dir: filepath.Join(dir, fmt.Sprintf("e%d", i+1)),
			PeerURL: fmt.Sprintf("http://127.0.0.1:%d", pp), ClientURL: fmt.Sprintf("http://127.0.0.1:%d", cp), State: "new"}
		e.members = append(e.members, m)
		e.Clients = append(e.Clients, m.ClientURL)
		ic = append(ic, m.Name+"="+m.PeerURL)
	}
	for i := range e.members {
		e.members[i].InitialCluster = strings.Join(ic, ",")
	}
	e.procs, e.done = make([]*exec.Cmd, n), make([]chan struct{}, n)
	for i := range e.members {
		if err := e.Start(i); err != nil {
			e.Stop()
			return nil, err
		}
	}
	if _, err := e.WaitLeader(ctx, -1, 30*time.Second); err != nil {
		e.Stop()
		return nil, err
	}
	// A leader needs only two of three: wait for every member, so that a
	// member that failed to start is an error here, not a cluster that
	// cannot survive the loss of another.
	for i := range e.members {
		if err := e.waitMember(ctx, i, 30*time.Second); err != nil {
			e.Stop()
			return nil, err
		}
	}
	return e, nil
}

// Running reports whether member i's process is running.
func (e *Etcd) Running(i int) bool {
	select {
	case <-e.done[i]:
		return false
	default:
		return true
	}
}

// Start starts member i's process (again, with its existing data).
func (e *Etcd) Start(i int) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if e.procs[i] != nil {
		e.members[i].State = "existing"
	}
	js, _ := json.Marshal(e.members[i])
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	cmd, done, err := startProc(exe, nil, append([]string{EtcdMemberEnv + "=" + string(js)}, e.env...),
		filepath.Join(e.dir, e.members[i].Name+".log"))
	if err != nil {
		return err
	}
	e.procs[i], e.done[i] = cmd, done
	return nil
}

// Kill kills member i with SIGKILL and waits for it to die.
func (e *Etcd) Kill(i int) {
	_ = e.procs[i].Process.Kill()
	<-e.done[i]
}

// Pid returns member i's process id.
func (e *Etcd) Pid(i int) int { return e.procs[i].Process.Pid }

// Stop stops every member.
func (e *Etcd) Stop() {
	for i, p := range e.procs {
		if p != nil {
			stopProc(p, e.done[i], 10*time.Second)
		}
	}
}

// Client opens a client to the given member indexes.
func (e *Etcd) Client(members ...int) (*clientv3.Client, error) {
	var eps []string
	for _, i := range members {
		eps = append(eps, e.Clients[i])
	}
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// WaitLeader waits until a member other than except (-1: any) says it leads,
// and returns its index.
func (e *Etcd) WaitLeader(ctx context.Context, except int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		for i := range e.members {
			if i == except {
				continue
			}
			select {
			case <-e.done[i]:
				continue
			default:
			}
			c, err := e.Client(i)
			if err != nil {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := c.Status(sctx, e.Clients[i])
			cancel()
			c.Close()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return -1, fmt.Errorf("etcd: no leader within %v (logs in %s)", timeout, e.dir)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// etcdDoer issues puts and gets through one client.
type etcdDoer struct {
	c            *clientv3.Client
	serializable bool
}

func (d *etcdDoer) Write(ctx context.Context, key string, value []byte) error {
	_, err := d.c.Put(ctx, key, string(value))
	return err
}

func (d *etcdDoer) Read(ctx context.Context, key string) error {
	var opts []clientv3.OpOption
	if d.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	r, err := d.c.Get(ctx, key, opts...)
	if err == nil && len(r.Kvs) == 0 {
		return fmt.Errorf("etcd: key %s not found", key)
	}
	return err
}

// Close does nothing: the variant's Release closes the shared clients.
func (d *etcdDoer) Close() error { return nil }

// Variant returns a clientv3 variant. Linearizable operations go to the
// leader's endpoint (as Trireme's go to its leader); serializable reads
// spread over every member. Workers share one gRPC connection per 16
// workers (clientv3 multiplexes requests on a connection).
func (e *Etcd) Variant(ctx context.Context, name string, serializable bool) (Variant, error) {
	leader, err := e.WaitLeader(ctx, -1, 10*time.Second)
	if err != nil {
		return Variant{}, err
	}
	var mu sync.Mutex
	clients := map[int]*clientv3.Client{}
	return Variant{System: "etcd", Name: name,
		Pids: func() []int {
			var out []int
			for i := range e.procs {
				out = append(out, e.Pid(i))
			}
			return out
		},
		Open: func(ctx context.Context, i, n int) (Doer, error) {
			member, slot := leader, i/16
			if serializable {
				member = i % len(e.Clients)
				slot = member*100000 + i/(16*len(e.Clients))
			}
			mu.Lock()
			defer mu.Unlock()
			c := clients[slot]
			if c == nil {
				var err error
				if c, err = e.Client(member); err != nil {
					return nil, err
				}
				clients[slot] = c
			}
			return &etcdDoer{c: c, serializable: serializable}, nil
		},
		Release: func() {
			mu.Lock()
			defer mu.Unlock()
			for k, c := range clients {
				c.Close()
				delete(clients, k)
			}
		}}, nil
}
