package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/httpapi"
	"github.com/trireme-db/trireme/internal/api/resp"
	"github.com/trireme-db/trireme/internal/coordinator"
	"github.com/trireme-db/trireme/internal/leaderless/llnode"
	"github.com/trireme-db/trireme/internal/multileader/mlnode"
	"github.com/trireme-db/trireme/internal/node"
	"github.com/trireme-db/trireme/internal/repl"
)

const nodeDetails = `
Runs one Trireme node: the replicated log, the store, the HTTP API (--http)
and the Redis protocol (--resp). Every node of a cluster gets the same
--cluster list. The node stops cleanly on SIGINT or SIGTERM (within 5
seconds in every state; a second signal exits at once) and exits non-zero
on a fatal error: a failed fsync, corruption on disk, a full disk, an I/O
error, a data directory removed or remounted read-only. Below
--disk-reserve of free space the leader refuses writes (HTTP 507, RESP
"-ERR insufficient storage ...") until space is freed.

Peers authenticate each other with mutual TLS: --peer-tls-dir names a
directory made by trireme certs, and a node accepts a peer connection only
from a certificate of that CA naming a member of --cluster. Without it the
node refuses to start, unless --insecure-peers (tests only) opens the peer
port to anyone. --http-peers and --resp-peers give the other nodes' client
addresses, which a follower names when it sends a client to the leader.

Clients are served openly unless credentials are configured: --users FILE
(users with roles read, write, admin, and their API tokens; made with
trireme users) and/or a password for the user "default" (admin), from
--requirepass-file or $TRIREME_REQUIREPASS. Then every HTTP request needs
"Authorization: Bearer TOKEN". --tls-cert and --tls-key serve the client
ports over TLS (HTTPS on --http); clients check the certificate with
their --cacert.

Ack modes (--ack, the default for writes that do not choose):
  async        durable (fsynced) on the leader
  semi-sync    durable on the leader and on --replicas followers
  sync         durable on the leader and on every follower
  majority     committed: durable on a majority (the safe default)

Example (certificates, then three terminals):
  trireme certs --dir certs --nodes n1,n2,n3
  trireme node --id n1 --data d/n1 --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \
      --peer-tls-dir certs --http 127.0.0.1:8001 --resp 127.0.0.1:9001
  trireme node --id n2 --data d/n2 --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \
      --peer-tls-dir certs --http 127.0.0.1:8002 --resp 127.0.0.1:9002
  trireme node --id n3 --data d/n3 --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \
      --peer-tls-dir certs --http 127.0.0.1:8003 --resp 127.0.0.1:9003
`

type nodeOpts struct {
	id, data, cluster, httpAddr, respAddr, respPeers string
	ack                                              string
	replicas                                         int
	heartbeat, election, writeTimeout                time.Duration
	electionMin, hbPause                             time.Duration
	detector, electionMode, coordinator              string
	coordTTL                                         time.Duration
	idemWindow, sessionWait                          time.Duration
	priority, maxValue, idemMaxKeys                  int
	logLevel                                         string
	clusterID, priorities                            string
	pprofAddr                                        string
	diskReserve, logRetain                           string
	join                                             string // a member's HTTP address (join.go)
	peer                                             string // with join: this node's peer address
	learner                                          bool   // with join: stay a learner
	peers                                            peerOpts
	clientAuth                                       clientAuthOpts
	mode                                             string // --mode: single-leader or multi-leader
	ml                                               mlOpts
	ll                                               llOpts
	set                                              map[string]bool // flags given on the command line
}

func nodeFlags() (*flag.FlagSet, *nodeOpts) {
	d := node.DefaultConfig()
	o := &nodeOpts{}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.StringVar(&o.id, "id", "", "this node's id; must be in --cluster (required)")
	fs.StringVar(&o.data, "data", "", "data directory: WAL, store, rollback journal (required)")
	fs.StringVar(&o.cluster, "cluster", "", "every member: id=host:port of its peer address, comma-separated (required)")
	fs.StringVar(&o.clusterID, "cluster-id", "", "cluster identity shared by all members (default: the id in --peer-tls-dir's CA; with --insecure-peers, a hash of --cluster); with --insecure-peers, set it when members reach each other through different addresses")
	fs.StringVar(&o.priorities, "priorities", "", "other members' priorities, id=N,... (missing ids: 1), so a leader knows whom to hand over to")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8001", "HTTP API listen address (empty = no HTTP)")
	fs.StringVar(&o.respAddr, "resp", "127.0.0.1:9001", "Redis protocol listen address (empty = no RESP)")
	fs.StringVar(&o.respPeers, "resp-peers", "", "other nodes' RESP addresses, id=host:port,... (for INFO replication and ROLE)")
	fs.StringVar(&o.ack, "ack", d.DefaultAck.Mode.String(), "default ack mode: async, semi-sync, sync or majority")
	fs.IntVar(&o.replicas, "replicas", 1, "followers a semi-sync write waits for (with --ack semi-sync)")
	fs.DurationVar(&o.heartbeat, "heartbeat", d.Heartbeat, "leader heartbeat interval")
	fs.DurationVar(&o.election, "election-timeout", d.ElectionTimeout, "fixed detector: minimum election timeout (randomized up to 2x); adaptive: the upper bound of the learned timeout; >= 3 x --heartbeat")
	fs.StringVar(&o.detector, "failure-detector", d.FailureDetector, "how followers detect a failed leader: adaptive (learns heartbeat arrivals, within --election-timeout-min and --election-timeout; acts at once on a refused connection) or fixed (--election-timeout, randomized)")
	fs.DurationVar(&o.electionMin, "election-timeout-min", d.ElectionTimeoutMin, "adaptive detector: the lower bound; no follower votes for another leader within it of hearing its own, and the read lease is shorter; >= 2 x --heartbeat")
	fs.StringVar(&o.electionMode, "election", d.Election, "who chooses the leader: quorum (the nodes elect among themselves) or coordinator (a lease-backed key in etcd, --coordinator)")
	fs.StringVar(&o.coordinator, "coordinator", "", "with --election coordinator: the etcd cluster, etcd://HOST:PORT[,HOST:PORT...]")
	fs.DurationVar(&o.coordTTL, "coordinator-ttl", d.CoordinatorTTL, "with --election coordinator: the leadership key's lease (whole seconds): how long a dead leader's key blocks a successor")
	fs.DurationVar(&o.hbPause, "heartbeat-pause", d.HeartbeatPause, "adaptive detector: silence beyond the learned heartbeat spread tolerated before suspecting the leader (stalls, pauses); 0 = none")
	fs.DurationVar(&o.writeTimeout, "write-timeout", d.WriteTimeout, "default time a write waits for its ack mode")
	fs.IntVar(&o.priority, "priority", d.Priority, "leadership priority: 0 never leads; higher takes over when caught up")
	fs.IntVar(&o.maxValue, "max-value-bytes", d.MaxValueBytes, "largest value accepted, in bytes")
	fs.DurationVar(&o.idemWindow, "idempotency-window", d.IdempotencyWindow, "how long the result of a write with an idempotency key is kept (log time): a retry within it returns the first result and applies nothing")
	fs.IntVar(&o.idemMaxKeys, "idempotency-max-keys", d.IdempotencyMaxKeys, "most idempotency records kept; beyond it the oldest go first")
	fs.DurationVar(&o.sessionWait, "session-wait", d.SessionWait, "how long a session read waits for this node to apply the session's token before it forwards to the leader")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.pprofAddr, "pprof", "", "serve Go runtime profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (empty = off)")
	fs.StringVar(&o.diskReserve, "disk-reserve", "256MiB", "free space on the data directory's file system below which the leader refuses writes (bytes, or with KiB, MiB, GiB); 0 = off")
	fs.StringVar(&o.logRetain, "log-retain", "256MiB", "WAL kept for followers that fall behind, beyond what the store needs (bytes, or with KiB, MiB, GiB); older segments are dropped")
	fs.StringVar(&o.join, "join", "", "join a running cluster through this member's HTTP address (http://HOST:PORT): added as a learner, promoted to voter once caught up; give this node's peer address with --peer (or --cluster ID=HOST:PORT); uses $TRIREME_CACERT and $TRIREME_TOKEN if the API needs them; a restart on the same --data does not ask again")
	fs.StringVar(&o.peer, "peer", "", "with --join: this node's peer address (host:port) that the other members dial; instead of --cluster ID=HOST:PORT")
	fs.BoolVar(&o.learner, "learner", false, "with --join: stay a learner (a read replica that does not vote)")
	fs.StringVar(&o.mode, "mode", modeSingleLeader, "replication mode: single-leader (one leader orders every write; the flags above) multi-leader (every node accepts writes and streams them to the others; concurrent writes resolved by --conflicts; --ack local, all, majority or a number of other nodes, default local) or leaderless (Dynamo-style: each key on --replication-factor nodes of a hash ring, the contacted node coordinates W-of-N writes and R-of-N reads; --w, --r, --sloppy-quorum, --anti-entropy-rate)")
	o.ml.register(fs)
	o.ll.register(fs)
	o.peers.register(fs)
	o.clientAuth.register(fs)
	return fs, o
}

func nodeLogger(o *nodeOpts, stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), nil
}

// nodeConfig turns flags into a node.Config and a logger, naming the bad flag.
func nodeConfig(o *nodeOpts, stderr io.Writer) (node.Config, *slog.Logger, error) {
	logger, err := nodeLogger(o, stderr)
	if err != nil {
		return node.Config{}, nil, err
	}
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.HTTPAddr, cfg.RESPAddr = o.id, o.data, o.httpAddr, o.respAddr
	if o.id == "" {
		return cfg, nil, errors.New("--id is required")
	}
	if o.data == "" {
		return cfg, nil, errors.New("--data is required")
	}
	if o.cluster == "" {
		return cfg, nil, errors.New("--cluster is required (id=host:port,...)")
	}
	members, err := node.ParseCluster(o.cluster)
	if err != nil {
		return cfg, nil, err
	}
	cfg.Cluster = members
	cfg.ClusterID = o.clusterID
	if o.priorities != "" {
		cfg.Priorities = map[string]int{}
		for _, part := range strings.Split(o.priorities, ",") {
			id, n, ok := strings.Cut(strings.TrimSpace(part), "=")
			p, err := strconv.Atoi(n)
			if !ok || err != nil || p < 0 {
				return cfg, nil, fmt.Errorf("--priorities: %q: want id=N with N >= 0", part)
			}
			cfg.Priorities[id] = p
		}
	}
	if o.mode == modeSingleLeader { // the other engines read --ack themselves (mlConfig, llConfig)
		mode, err := api.ParseAckMode(o.ack)
		if err != nil {
			return cfg, nil, fmt.Errorf("--ack: %w", err)
		}
		cfg.DefaultAck = api.Ack{Mode: mode}
		if mode == api.AckSemiSync {
			if o.replicas < 1 || o.replicas >= len(members) {
				return cfg, nil, fmt.Errorf("--replicas %d must be from 1 to %d (the number of followers)", o.replicas, len(members)-1)
			}
			cfg.DefaultAck.Replicas = o.replicas
		}
	}
	cfg.Heartbeat, cfg.ElectionTimeout, cfg.WriteTimeout = o.heartbeat, o.election, o.writeTimeout
	cfg.FailureDetector, cfg.ElectionTimeoutMin, cfg.HeartbeatPause = o.detector, o.electionMin, o.hbPause
	cfg.Election, cfg.CoordinatorTTL = o.electionMode, o.coordTTL
	if o.coordinator != "" {
		if cfg.CoordinatorEndpoints, err = coordinator.ParseEndpoints(o.coordinator); err != nil {
			return cfg, nil, fmt.Errorf("--coordinator: %w", err)
		}
	}
	if o.hbPause == 0 {
		cfg.HeartbeatPause = -1 // the flag's 0 means none; the config's 0 means the default
	}
	if o.electionMin <= 0 {
		return cfg, nil, fmt.Errorf("--election-timeout-min %v must be > 0", o.electionMin)
	}
	cfg.Priority, cfg.MaxValueBytes = o.priority, o.maxValue
	cfg.IdempotencyWindow, cfg.IdempotencyMaxKeys, cfg.SessionWait = o.idemWindow, o.idemMaxKeys, o.sessionWait
	if cfg.DiskReserveBytes, err = node.ParseBytes(o.diskReserve); err != nil {
		return cfg, nil, fmt.Errorf("--disk-reserve: %w", err)
	}
	if cfg.LogRetainBytes, err = node.ParseBytes(o.logRetain); err != nil {
		return cfg, nil, fmt.Errorf("--log-retain: %w", err)
	}
	cfg.Logger = logger
	for _, a := range []struct{ flag, addr string }{{"--http", o.httpAddr}, {"--resp", o.respAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return cfg, nil, fmt.Errorf("%s %q: %v", a.flag, a.addr, err)
		}
	}
	if err := o.peers.apply(&cfg, o.respPeers, logger); err != nil {
		return cfg, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	if err := o.peers.check(&cfg); err != nil {
		return cfg, nil, err
	}
	return cfg, logger, nil
}

// engine is what the shell runs behind its client listeners: one
// replication engine (internal/node for single-leader, mlnode for
// multi-leader).
type engine interface {
	api.Service
	Metrics() http.Handler
	Fatal() <-chan error
	Stop() error
}

// startEngine turns an engine's typed start result into the shell's
// interface, keeping a nil engine nil.
func startEngine[E engine](e E, err error) (engine, error) {
	if err != nil {
		return nil, err
	}
	return e, nil
}

func parsePeers(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	ms, err := node.ParseCluster(s)
	if err != nil {
		return nil, fmt.Errorf("--resp-peers: %w", err)
	}
	for _, m := range ms {
		out[m.ID] = m.PeerAddr
	}
	return out, nil
}

func runNode(args []string, stdout, stderr io.Writer) int {
	fs, o := nodeFlags()
	pos, err := parse(fs, "node", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "trireme node: %v\n", err)
		return 2
	}
	if len(pos) > 0 {
		return fail(fmt.Errorf("unexpected argument %q (flags start with --)", pos[0]))
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if err := checkModeFlags(o.mode, o.set); err != nil {
		return fail(err)
	}
	if o.learner && o.join == "" {
		return fail(errors.New("--learner applies to --join only"))
	}
	if o.peer != "" && o.join == "" {
		return fail(errors.New("--peer applies to --join only (otherwise this node's peer address is its --cluster entry)"))
	}
	var joinID string
	var joinConf *repl.ConfState
	if o.join != "" {
		jlog, err := nodeLogger(o, stderr)
		if err != nil {
			return fail(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), joinRetryFor+5*time.Second)
		joinID, joinConf, err = prepareJoin(ctx, o, jlog)
		cancel()
		if err != nil {
			return fail(err)
		}
	}
	cfg, logger, err := nodeConfig(o, stderr)
	if err != nil {
		return fail(err)
	}
	if joinConf != nil {
		cfg.ClusterID, cfg.JoinConf = joinID, joinConf
	}
	if cfg.PeerTLS == nil {
		warnInsecurePeers(stderr, logger, o.id)
	}
	authn, clientTLS, err := o.clientAuth.load(logger, o.httpAddr)
	if err != nil {
		return fail(err)
	}
	if cfg.Registerer, err = authRegistry(cfg.ID, authn); err != nil {
		return fail(err)
	}
	peers, err := parsePeers(o.respPeers)
	if err != nil {
		return fail(err)
	}

	// Listen before starting the node, so that a taken port fails fast.
	var hln, rln net.Listener
	if o.httpAddr != "" {
		if hln, err = net.Listen("tcp", o.httpAddr); err != nil {
			return fail(fmt.Errorf("--http %s: %w", o.httpAddr, err))
		}
	}
	if o.respAddr != "" {
		if rln, err = net.Listen("tcp", o.respAddr); err != nil {
			if hln != nil {
				hln.Close()
			}
			return fail(fmt.Errorf("--resp %s: %w", o.respAddr, err))
		}
	}

	closeListeners := func() {
		if hln != nil {
			hln.Close()
		}
		if rln != nil {
			rln.Close()
		}
	}
	var start func() (engine, error)
	switch o.mode {
	case modeMultiLeader:
		mc, cerr := mlConfig(cfg, o)
		start, err = func() (engine, error) { return startEngine(mlnode.Start(mc)) }, cerr
	case modeLeaderless:
		lc, cerr := llConfig(cfg, o)
		start, err = func() (engine, error) { return startEngine(llnode.Start(lc)) }, cerr
	default:
		start = func() (engine, error) { return startEngine(node.Start(cfg)) }
	}
	if err != nil { // a flag of the engine's is wrong
		closeListeners()
		return fail(err)
	}
	n, err := start()
	if err != nil {
		closeListeners()
		fmt.Fprintf(stderr, "trireme node: starting node %s: %v\n", o.id, err)
		return 1
	}
	logger.Info("node started", "data", o.data, "http", o.httpAddr, "resp", o.respAddr, "cluster", o.cluster,
		"gomaxprocs", runtime.GOMAXPROCS(0))
	if sl, ok := n.(*node.Node); ok && joinConf != nil && !o.learner {
		pctx, cancelPromote := context.WithCancel(context.Background())
		defer cancelPromote()
		go promoteSelf(pctx, sl, o.id, logger)
	}

	serveErr := make(chan error, 2)
	var hs *http.Server
	if hln != nil {
		hcfg := httpapi.DefaultConfig()
		hcfg.MaxKeyBytes, hcfg.Logger = node.MaxKeyBytes, logger
		hcfg.Auth, hcfg.OpenMetrics = authn, o.clientAuth.openMetrics
		if clientTLS != nil {
			hln = tls.NewListener(hln, httpTLS(clientTLS))
		}
		if hs, err = httpapi.NewServer(n, n.Metrics(), hcfg); err != nil {
			hln.Close()
			serveErr <- fmt.Errorf("HTTP server: %w", err)
		} else {
			go func() {
				if err := hs.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					serveErr <- fmt.Errorf("HTTP server: %w", err)
				}
			}()
		}
	}
	var rs *resp.Server
	if rln != nil {
		rcfg := resp.DefaultConfig()
		rcfg.Logger, rcfg.PeerRESP, rcfg.Version = logger, peers, version
		// With --tls-cert the RESP port speaks TLS only (Redis's tls-port
		// with port 0); with --users or a default password, AUTH first.
		rcfg.Auth, rcfg.TLS = authn, clientTLS
		rs = resp.New(n, rcfg)
		go func() {
			if err := rs.Serve(rln); err != nil {
				serveErr <- fmt.Errorf("RESP server: %w", err)
			}
		}()
	}

	if o.pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		ps := &http.Server{Addr: o.pprofAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ps.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Warn("pprof server", "addr", o.pprofAddr, "err", err)
			}
		}()
		defer ps.Close()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	code, reason := 0, ""
	select {
	case s := <-sig:
		logger.Info("stopping", "signal", s.String())
		reason = "signal " + s.String()
	case err := <-n.Fatal():
		logger.Error("fatal node error; stopping", "err", err)
		code, reason = 1, "fatal error: "+err.Error()
	case err := <-serveErr:
		logger.Error("client server failed; stopping", "err", err)
		code, reason = 1, err.Error()
	}
	// The shutdown is bounded in every state: after a disk failure a
	// goroutine may be held inside the store for good (the node bounds
	// its own waits for it; this bounds everything else). A second
	// signal exits at once.
	stopped := make(chan error, 1)
	go func() {
		if hs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = hs.Shutdown(ctx)
			cancel()
			hs.Close()
		}
		if rs != nil {
			rs.Close()
		}
		stopped <- n.Stop()
	}()
	timer := time.NewTimer(shutdownTimeout)
	defer timer.Stop()
	select {
	case err := <-stopped:
		if err != nil {
			logger.Error("stopping the node", "err", err)
			code = 1
		}
	case <-timer.C:
		logger.Error("the shutdown did not finish in time; exiting anyway", "timeout", shutdownTimeout.String())
		code = 1
	case s := <-sig:
		logger.Error("second signal; exiting without finishing the shutdown", "signal", s.String())
		code = 1
	}
	if code != 0 {
		logger.Error("stopped", "exit_code", code, "reason", reason)
	} else {
		logger.Info("stopped", "exit_code", code, "reason", reason)
	}
	return code
}

// shutdownTimeout bounds a node's shutdown (HTTP, RESP, the node and its
// storage) after a signal or a fatal error; the process then exits anyway.
const shutdownTimeout = 5 * time.Second
