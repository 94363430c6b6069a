package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/node"
)

const upDetails = `
Starts a local cluster: --nodes node processes (this binary, run as
"trireme node") on 127.0.0.1, with their data under --data. Node i gets the
peer port BASE+i, the HTTP port BASE+1000+i and the RESP port BASE+2000+i
(BASE = --base-port). The layout is saved in DATA/cluster.json; running
trireme up again on the same --data restarts the same cluster with its data
(--nodes and --base-port are then taken from cluster.json).

The nodes authenticate each other with mutual TLS: on first run trireme up
creates a cluster CA and a certificate per node in DATA/certs (as trireme
certs does) and starts each node with --peer-tls-dir DATA/certs.

With --node ID, it starts only node ID of an existing cluster (from
DATA/cluster.json) in the foreground, replacing this process with
"trireme node ..." (to bring back a node you killed while trireme up runs).

With --replicas N it also starts N read replicas r1..rN: learners that
receive the log and serve stale reads (GET /v1/kv/KEY?consistency=stale, or
the RESP port) but do not vote, so they add no latency to writes and no
weight to elections. Replica j (from 0) takes the ports after the voters':
BASE+NODES+j (peer), BASE+1000+NODES+j (HTTP), BASE+2000+NODES+j (RESP); its
certificate comes from the cluster CA. Once the voters have a leader, each
replica runs "trireme node --join http://LEADER-HTTP --learner": the leader
adds it as a learner and its data directory records the cluster it joined,
so a restart does not join again. trireme up waits (30s at most) until the
leader lists every replica as a member, then prints their endpoints. On a
restart the replicas in cluster.json start again; a larger --replicas adds
the missing ones; a smaller one is refused: remove a replica with trireme
member remove ID, which also drops its entry from cluster.json. A replica
that the cluster removed otherwise (trireme member remove --endpoints,
the HTTP API) is skipped on the next restart: once the voters have a
leader, trireme up asks it for the members (GET /v1/members), and a
replica that joined before but is no longer listed is not started or
waited for; trireme up says so and drops its entry from cluster.json. Its
data directory stays.

It prints the endpoints, then a line each time the cluster changes (leader,
term, a node or replica going down or coming back, a follower falling
behind). Ctrl-C stops every node and replica cleanly. Node logs go to
DATA/logs/ID.log.

Examples:
  trireme up
  trireme up --nodes 5 --data /tmp/t5 --base-port 17001
  trireme up --ack async --heartbeat 100ms --election-timeout 1s
  trireme up --replicas 2       # three voters and two read replicas (learners)
  trireme up --node n1          # restart node n1 of ./trireme-data (foreground)
  trireme up --node r1          # restart read replica r1 (foreground)
`

type upOpts struct {
	nodes, base       int
	data, ack         string
	heartbeat, elect  time.Duration
	detector          string
	coordinator       string
	logLevel          string
	logRetain         string
	quiet             bool
	only              string
	procs             int
	replicas          int
	mode, conflicts   string
	replicationFactor int
}

func upFlags() (*flag.FlagSet, *upOpts) {
	o := &upOpts{}
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.IntVar(&o.nodes, "nodes", 3, "number of nodes")
	fs.StringVar(&o.data, "data", "./trireme-data", "data directory of the cluster")
	fs.IntVar(&o.base, "base-port", 7001, "first peer port (HTTP = +1000, RESP = +2000)")
	fs.StringVar(&o.ack, "ack", "", "nodes' default ack mode (default: majority)")
	fs.DurationVar(&o.heartbeat, "heartbeat", 0, "nodes' heartbeat interval (default: the node's)")
	fs.DurationVar(&o.elect, "election-timeout", 0, "nodes' --election-timeout (default: the node's)")
	fs.StringVar(&o.detector, "failure-detector", "", "nodes' --failure-detector, adaptive or fixed (default: the node's, adaptive)")
	fs.StringVar(&o.coordinator, "coordinator", "", "run the nodes with --election coordinator against this etcd, etcd://HOST:PORT[,...] (default: quorum elections)")
	fs.StringVar(&o.logLevel, "log-level", "info", "nodes' log level")
	fs.StringVar(&o.logRetain, "log-retain", "", "nodes' --log-retain: WAL kept beyond what the store needs (default: the node's, 256MiB)")
	fs.BoolVar(&o.quiet, "quiet", false, "do not print status changes")
	fs.StringVar(&o.only, "node", "", "start only this node of an existing cluster, in the foreground")
	fs.IntVar(&o.replicas, "replicas", 0, "number of read replicas (learners: they do not vote) started besides --nodes; on a restart, more than cluster.json has adds the missing ones (default: cluster.json's)")
	fs.StringVar(&o.mode, "mode", "", "replication mode of a new cluster: single-leader, multi-leader (every node accepts writes) or leaderless (Dynamo-style quorums); see trireme node --help (default: cluster.json's, else single-leader)")
	fs.IntVar(&o.replicationFactor, "replication-factor", 0, "with --mode leaderless: the nodes that hold each key, recorded in cluster.json (default: the node's, 3, or the cluster's size if smaller)")
	fs.StringVar(&o.conflicts, "conflicts", "", "with --mode multi-leader: nodes' --conflicts, lww or siblings (default: the node's, lww)")
	fs.IntVar(&o.procs, "node-procs", 0, "GOMAXPROCS of each node (default: Go's, every core); -1 shares this machine's cores among the nodes: less CPU per write, longer latency tails (docs/BENCHMARKS.md); a GOMAXPROCS in the environment wins")
	return fs, o
}

func runUp(args []string, stdout, stderr io.Writer) int {
	fs, o := upFlags()
	pos, err := parse(fs, "up", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "trireme up: %v\n", err)
		return 1
	}
	if len(pos) > 0 {
		return fail(fmt.Errorf("unexpected argument %q", pos[0]))
	}
	if o.replicas < 0 {
		return fail(fmt.Errorf("--replicas %d: want 0 or more", o.replicas))
	}
	if o.replicas > 0 && o.only != "" {
		return fail(errors.New("--replicas and --node exclude each other"))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["mode"] {
		if err := checkModeFlags(o.mode, nil); err != nil {
			return fail(err)
		}
	}

	spec, err := cluster.LoadSpec(o.data)
	fromFile := err == nil
	switch {
	case err == nil && o.only != "":
	case err == nil:
		if set["replicas"] {
			if spec, err = withReplicas(spec, o); err != nil {
				return fail(err)
			}
		}
		fmt.Fprintf(stdout, "Restarting the cluster in %s (%d nodes%s, from %s).\n", o.data, len(spec.Nodes),
			replicasNote(" and", spec), cluster.SpecFile)
		if set["nodes"] && o.nodes != len(spec.Nodes) {
			fmt.Fprintf(stderr, "trireme up: note: --nodes %d ignored: %s has %d nodes (use another --data for a new cluster)\n",
				o.nodes, filepath.Join(o.data, cluster.SpecFile), len(spec.Nodes))
		}
	case errors.Is(err, os.ErrNotExist):
		if spec, err = cluster.NewSpec(o.nodes, o.base); err != nil {
			return fail(err)
		}
		if spec, err = withReplicas(spec, o); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Creating a %d-node cluster%s in %s.\n", o.nodes, replicasNote(" with", spec), o.data)
	default:
		return fail(err)
	}

	if set["mode"] && fromFile && o.mode != modeOf(spec) {
		return fail(fmt.Errorf("--mode %s: the cluster in %s is %s (use another --data for a new cluster)", o.mode, o.data, modeOf(spec)))
	}
	if !fromFile && o.mode != "" && o.mode != modeSingleLeader {
		spec.Mode = o.mode
	}
	if !fromFile && spec.Mode == modeLeaderless {
		spec.ReplicationFactor = o.replicationFactor
		if spec.ReplicationFactor == 0 {
			spec.ReplicationFactor = min(3, len(spec.Nodes))
		}
	}
	if err := checkUpMode(spec, o, set); err != nil {
		return fail(err)
	}
	if o.only != "" && !fromFile {
		return fail(fmt.Errorf("--node %s: no cluster in %s (start it with trireme up first)", o.only, o.data))
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(fmt.Errorf("finding this binary: %w", err))
	}
	cfg := cluster.DefaultConfig()
	cfg.Binary, cfg.DataDir, cfg.Spec = exe, o.data, spec
	if cfg.NodeProcs, err = cluster.Procs(o.procs, len(spec.Nodes)+len(spec.Replicas)); err != nil {
		return fail(fmt.Errorf("--node-procs: %w", err))
	}
	cfg.NodeArgs = []string{"--log-level", o.logLevel}
	if o.ack != "" {
		cfg.NodeArgs = append(cfg.NodeArgs, "--ack", o.ack)
	}
	if o.heartbeat > 0 {
		cfg.NodeArgs = append(cfg.NodeArgs, "--heartbeat", o.heartbeat.String())
	}
	if o.elect > 0 {
		cfg.NodeArgs = append(cfg.NodeArgs, "--election-timeout", o.elect.String())
	}
	if o.detector != "" {
		cfg.NodeArgs = append(cfg.NodeArgs, "--failure-detector", o.detector)
	}
	if o.coordinator != "" {
		cfg.NodeArgs = append(cfg.NodeArgs, "--election", "coordinator", "--coordinator", o.coordinator)
	}
	if o.logRetain != "" {
		if _, err := node.ParseBytes(o.logRetain); err != nil {
			return fail(fmt.Errorf("--log-retain: %w", err))
		}
		cfg.NodeArgs = append(cfg.NodeArgs, "--log-retain", o.logRetain)
	}
	if o.conflicts != "" {
		cfg.NodeArgs = append(cfg.NodeArgs, "--conflicts", o.conflicts)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cl, err := cluster.New(cfg)
	if err != nil {
		return fail(err)
	}
	if o.only != "" {
		n, err := cl.Node(o.only)
		if err != nil {
			return fail(fmt.Errorf("--node: %w", err))
		}
		args := append([]string{exe}, cl.Args(n)...)
		fmt.Fprintf(stderr, "trireme up: starting %s: %s\n", n.ID, strings.Join(args, " "))
		return fail(syscall.Exec(exe, args, os.Environ()))
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := cl.StartAll(); err != nil {
		cl.StopAll()
		return fail(err)
	}
	watchExits(ctx, cl, spec.IDs(), o.data, stdout)

	printEndpoints(stdout, cl)

	if spec.Mode == modeMultiLeader || spec.Mode == modeLeaderless {
		return upMultiLeader(ctx, cl, o, sig, stdout, stderr)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	leader, err := cl.WaitLeader(wctx, "")
	wcancel()
	if err != nil {
		fmt.Fprintf(stdout, "No leader yet (%v); node logs are in %s.\n", err, filepath.Join(cl.DataDir(), "logs"))
	} else {
		fmt.Fprintf(stdout, "Leader: %s. Watching the cluster (Ctrl-C stops every node):\n", leader)
	}
	plan := allReplicas(cl, stdout)
	if err == nil && len(spec.Replicas) > 0 {
		plan = planReplicas(ctx, cl, cfg, stdout, stderr)
	}
	s, err := startReplicasOrSignal(ctx, cancel, plan, sig)
	if err != nil {
		cancel()
		fmt.Fprintf(stderr, "trireme up: read replicas: %v; stopping the cluster\n", err)
		if err := cl.StopAll(); err != nil {
			fmt.Fprintf(stderr, "trireme up: some nodes did not stop cleanly: %v\n", err)
		}
		return 1
	}
	if s == nil {
		watchExits(ctx, cl, plan.ids, o.data, stdout)
	}
	if s == nil && !o.quiet {
		go plan.watch.Watch(ctx, 200*time.Millisecond, func(line string) {
			fmt.Fprintf(stdout, "%s  %s\n", time.Now().Format("15:04:05.000"), line)
		})
	}

	if s == nil {
		s = <-sig
	}
	cancel()
	return stopCluster(cl, s, sig, o.data, stdout, stderr)
}

// stopCluster stops every node of cl after signal s (a second signal kills
// them) and says how to restart the cluster.
func stopCluster(cl *cluster.Cluster, s os.Signal, sig <-chan os.Signal, data string, stdout, stderr io.Writer) int {
	spec := cl.Spec()
	first := time.Now()
	fmt.Fprintf(stdout, "\n%s: stopping every node (again to kill them)...\n", s)
	go func() {
		for range sig {
			// Ignore duplicates delivered together (e.g. to the process and its group).
			if time.Since(first) > time.Second {
				break
			}
		}
		fmt.Fprintln(stderr, "trireme up: second signal: killing the nodes")
		for _, n := range spec.All() {
			cl.Kill(n.ID)
		}
	}()
	if err := cl.StopAll(); err != nil {
		fmt.Fprintf(stderr, "trireme up: some nodes did not stop cleanly: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Stopped. Run trireme up --data %s again to restart this cluster with its data.\n", data)
	return 0
}

// replicaWait bounds how long trireme up waits for its read replicas to
// start and be listed as members (the wait for a leader included).
const replicaWait = 30 * time.Second

// withReplicas gives spec o.replicas read replicas, adding the missing ones;
// it refuses to remove any.
func withReplicas(spec cluster.Spec, o *upOpts) (cluster.Spec, error) {
	out, err := spec.WithReplicas(o.replicas)
	if errors.Is(err, cluster.ErrFewerReplicas) {
		return spec, fmt.Errorf("--replicas %d: %s has %d read replicas (%s) and trireme up does not remove any: "+
			"remove one with `trireme member remove ID --data %s` while the cluster runs (that also drops it from %s), "+
			"or leave --replicas out to start the ones it has", o.replicas, filepath.Join(o.data, cluster.SpecFile),
			len(spec.Replicas), strings.Join(spec.ReplicaIDs(), ", "), o.data, cluster.SpecFile)
	}
	if err == nil {
		err = checkNewReplicaDirs(spec, out, o.data)
	}
	if err != nil {
		return spec, fmt.Errorf("--replicas %d: %w", o.replicas, err)
	}
	return out, nil
}

// replicasNote is "<conj> N read replicas" for a spec that has some.
func replicasNote(conj string, spec cluster.Spec) string {
	if len(spec.Replicas) == 0 {
		return ""
	}
	if len(spec.Replicas) == 1 {
		return conj + " 1 read replica"
	}
	return fmt.Sprintf("%s %d read replicas", conj, len(spec.Replicas))
}

// replicaPlan is what trireme up does with the layout's read replicas.
type replicaPlan struct {
	ids []string // the replicas it starts
	// start starts them and waits (replicaWait at most) until the leader
	// lists each as a member.
	start func(ctx context.Context) error
	// watch is polled for the status lines: the cluster, or, when replicas
	// were skipped, a Cluster over the layout without them (it starts
	// nothing; the processes stay the cluster's).
	watch *cluster.Cluster
}

// allReplicas is the plan that starts every read replica of cl's layout.
func allReplicas(cl *cluster.Cluster, stdout io.Writer) replicaPlan {
	return replicaPlan{ids: cl.Spec().ReplicaIDs(), watch: cl, start: func(ctx context.Context) error {
		return startReplicas(ctx, cl, stdout)
	}}
}

// memberAsk bounds how long trireme up waits for the member list that says
// which read replicas the cluster removed.
const memberAsk = 5 * time.Second

// planReplicas asks the leader of cl (whose voters run and have a leader)
// for the members, and skips the read replicas of the layout that the
// cluster removed (removedReplicas): otherwise trireme up would start each
// one and wait replicaWait for the leader to list it. It says which it
// skips and why, and drops them from cluster.json (cfg is cl's
// configuration; its data directories stay). Without a member list it
// starts every replica, as before.
func planReplicas(ctx context.Context, cl *cluster.Cluster, cfg cluster.Config, stdout, stderr io.Writer) replicaPlan {
	spec := cl.Spec()
	mctx, cancel := context.WithTimeout(ctx, memberAsk)
	ms, err := cl.Client().Members(mctx)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "trireme up: note: could not list the cluster's members (%s): starting every read replica of %s\n",
			explain(err), cluster.SpecFile)
		return allReplicas(cl, stdout)
	}
	gone := removedReplicas(spec, cl.DataDir(), ms)
	if len(gone) == 0 {
		return allReplicas(cl, stdout)
	}
	var goneIDs []string
	for _, r := range gone {
		goneIDs = append(goneIDs, r.ID)
		fmt.Fprintf(stdout, "Skipping read replica %s: it joined this cluster, but the cluster's members (%s) no longer list it "+
			"(removed with trireme member remove?). Its data stays in %s.\n", r.ID, memberList(ms), cl.NodeDir(r))
	}
	kept := withoutReplicas(spec, goneIDs)
	plan := replicaPlan{ids: kept.ReplicaIDs(), watch: cl, start: func(ctx context.Context) error {
		return startKeptReplicas(ctx, cl, kept.Replicas, stdout)
	}}
	// A Cluster over the layout without them saves it (atomically) and
	// watches only the nodes that run.
	kcfg := cfg
	kcfg.Spec = kept
	if plan.watch, err = cluster.New(kcfg); err != nil {
		fmt.Fprintf(stderr, "trireme up: %s still lists %s: %v\n", filepath.Join(cl.DataDir(), cluster.SpecFile),
			strings.Join(goneIDs, ", "), err)
		plan.watch = cl
		return plan
	}
	fmt.Fprintf(stdout, "Dropped %s from %s.\n", strings.Join(goneIDs, ", "), filepath.Join(cl.DataDir(), cluster.SpecFile))
	return plan
}

// startReplicas starts the read replicas (learners) of cl once the voters
// have a leader, waits (replicaWait at most) until the leader lists each as
// a member, and prints their endpoints.
func startReplicas(ctx context.Context, cl *cluster.Cluster, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, replicaWait)
	defer cancel()
	if err := cl.StartReplicas(ctx); err != nil {
		return err
	}
	printReplicas(stdout, cl.Spec().Replicas)
	return nil
}

// startKeptReplicas is startReplicas for some of cl's read replicas, kept:
// cluster.StartReplicas starts all of its layout's. Like it, it starts them
// one at a time, each once the one before is a member (the cluster takes
// one membership change at a time). A replica that never joined joins
// through the first voter, which forwards the change to the leader.
func startKeptReplicas(ctx context.Context, cl *cluster.Cluster, kept []cluster.NodeSpec, stdout io.Writer) error {
	if len(kept) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, replicaWait)
	defer cancel()
	for _, r := range kept {
		if err := cl.Start(r.ID); err != nil {
			return err
		}
		if err := cl.WaitReady(ctx, r.ID); err != nil {
			return err
		}
		if err := waitListed(ctx, cl.Client(), r.ID); err != nil {
			return err
		}
	}
	printReplicas(stdout, kept)
	return nil
}

// waitListed polls the member list every 50ms until it holds id.
func waitListed(ctx context.Context, c *client.Client, id string) error {
	for {
		ms, err := c.Members(ctx)
		if err == nil {
			if slices.ContainsFunc(ms, func(m client.Member) bool { return m.ID == id }) {
				return nil
			}
			err = fmt.Errorf("the members are %s", memberList(ms))
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s not a member within the deadline (%w): %v", id, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// startReplicasOrSignal runs plan.start in the background, so that Ctrl-C
// works while the replicas join, and returns its error, or the signal that
// came first (then it cancels ctx and returns once plan.start has: no
// replica starts after that).
func startReplicasOrSignal(ctx context.Context, cancel context.CancelFunc, plan replicaPlan, sig <-chan os.Signal) (os.Signal, error) {
	if len(plan.ids) == 0 {
		return nil, nil
	}
	started := make(chan error, 1)
	go func() { started <- plan.start(ctx) }()
	select {
	case err := <-started:
		return nil, err
	case s := <-sig:
		cancel()
		<-started // returns at once: ctx is done
		return s, nil
	}
}

// watchExits prints a line when one of nodes exits on its own (before ctx
// ends).
func watchExits(ctx context.Context, cl *cluster.Cluster, nodes []string, data string, stdout io.Writer) {
	for _, id := range nodes {
		done, exitErr, err := cl.Exited(id)
		if err != nil {
			continue
		}
		go func() {
			select {
			case <-done:
				if ctx.Err() == nil {
					fmt.Fprintf(stdout, "%s  node %s exited: %v (log: %s; restart it with: trireme up --data %s --node %s)\n",
						time.Now().Format("15:04:05.000"), id, exitErr(), cl.LogPath(id), data, id)
				}
			case <-ctx.Done():
			}
		}()
	}
}

// printReplicas prints the read replicas' endpoints, once they are members.
func printReplicas(w io.Writer, replicas []cluster.NodeSpec) {
	if len(replicas) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-7s  %-21s  %-21s  %-21s\n", "REPLICA", "HTTP", "RESP (Redis)", "PEER")
	for _, n := range replicas {
		fmt.Fprintf(w, "%-7s  %-21s  %-21s  %-21s\n", n.ID, n.HTTP, n.RESP, n.Peer)
	}
	first := replicas[0]
	fmt.Fprintf(w, `
Read replicas (learners) serve stale reads; the cluster lists them with trireme member list:
  curl 'http://%[1]s/v1/kv/greeting?consistency=stale'
  redis-cli -h %[2]s -p %[3]d GET greeting

`, first.HTTP, hostOf(first.RESP), cluster.Port(first.RESP))
}

func printEndpoints(w io.Writer, cl *cluster.Cluster) {
	spec := cl.Spec()
	fmt.Fprintf(w, "\n%-4s  %-21s  %-21s  %-21s\n", "NODE", "HTTP", "RESP (Redis)", "PEER")
	for _, n := range spec.Nodes {
		fmt.Fprintf(w, "%-4s  %-21s  %-21s  %-21s\n", n.ID, n.HTTP, n.RESP, n.Peer)
	}
	if modeOf(spec) != modeSingleLeader {
		return // upMultiLeader says how to use it
	}
	first := spec.Nodes[0]
	fmt.Fprintf(w, `
Talk to it (any node; writes go to the leader):
  curl -X PUT --data-binary hello 'http://%[1]s/v1/kv/greeting?ack=majority'
  curl 'http://%[1]s/v1/kv/greeting'
  curl 'http://%[1]s/v1/status'
  redis-cli -h %[2]s -p %[3]d SET greeting hello
  redis-cli -h %[2]s -p %[3]d GET greeting
  trireme put greeting hello --ack sync --data %[4]s
  trireme status --data %[4]s

`, first.HTTP, hostOf(first.RESP), cluster.Port(first.RESP), cl.DataDir())
}

func hostOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i]
		}
	}
	return addr
}
