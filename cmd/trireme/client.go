package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/cluster"
)

const putDetails = `
Writes KEY=VALUE through the leader (found automatically) and prints the
index, term, the durability reached and the number of followers that hold
the write. A write whose ack mode is not met before --timeout fails with
what it reached: its outcome is then not final.

On a multi-leader cluster (trireme up --mode multi-leader) every node takes
writes: the write goes to --node, else to the first node that answers, and
prints its index in that node's stream, the durability reached (local, K,
all) and the other nodes that applied it. --ack takes local (default), all,
majority or a number K of other nodes. --context TOKEN (printed by trireme
get -v) makes the write replace the versions that read saw. The nodes do
not deduplicate writes: a put retried after its connection broke is
written again (the same value).

Examples:
  trireme put greeting hello                        # the node's default mode (majority)
  trireme put greeting hello --ack async            # fsynced on the leader only
  trireme put greeting hello --ack semi-sync --replicas 1
  trireme put greeting hello --ack sync --timeout 2s
  trireme put k v --endpoints 127.0.0.1:8001,127.0.0.1:8002
  trireme put k v2 --if-index 7                     # only if k's index is still 7 (0: only if k is absent)
  trireme put k v -v                                # also print the write's session token to stderr
  trireme put k v --node n2 --ack all               # multi-leader: on n2, applied by every node
  trireme put k merged --context ASA4...            # multi-leader: replace what trireme get -v read

On a leaderless cluster (trireme up --mode leaderless) any node coordinates
the write to the key's replicas: the write goes to --node, else to the
nodes in turn, the next one when a node cannot reach enough replicas. --w
sets how many of the key's replicas must hold it durably: a number, one,
quorum (a majority) or all (default: the node's). It prints the replicas
that hold it and the node that coordinated it. A write that met fewer
than --w replicas in time fails saying how many hold it; it may still
reach the others (hinted handoff, read repair, anti-entropy).

  trireme put k v --w all                           # leaderless: durable on every replica of k
  trireme put k v --w one --node n3                 # leaderless: n3 coordinates, one replica suffices

Each write (but an --ack async one, and those of a leaderless cluster)
carries an idempotency key: if it times out or its outcome is unknown, it
is retried with the same key, so it is applied at most once.
--if-index makes it conditional: if the key is at another index, nothing is
written and the command fails (exit 1) naming the key's current index.
-v prints "session=TOKEN" on stderr: pass it to trireme get --session to
read this write from any node.
` + endpointHelp

const delDetails = `
Deletes KEY, with the same ack flags as put (and, on a multi-leader
cluster, --node and --context; on a leaderless one, --node and --w).

Examples:
  trireme del greeting
  trireme del greeting --ack majority
  trireme del greeting --if-index 12                # only if greeting's index is still 12
  trireme del greeting --w quorum                   # leaderless: a majority of the key's replicas
` + endpointHelp

const getDetails = `
Reads KEY and prints its value. Linearizable reads (the default) go to the
leader and see every acknowledged write; stale reads are served by any node
(--node picks one) from its applied state and report how far behind it may be.
Session reads (--session TOKEN, a token that -v printed) are served by any node
that has applied the token's write or read, so they see it; they print the
session's next token on stderr ("session=TOKEN"). Bounded reads are served by
any node within --max-lag and/or --max-lag-entries of the leader.

On a multi-leader cluster every read is local: the node's own copy, from
--node, else from the first node that answers (the consistency words
linearizable, stale and local all mean that; session and bounded reads are
refused). --node needs no --consistency when the cluster comes from
DATA/cluster.json; with --endpoints, add --consistency local. -v prints,
on stderr, the node read (node=ID), the key's causal context
(context=TOKEN: give it to trireme put --context to replace what was read)
and, when concurrent writes left several values (--conflicts siblings),
each one (sibling=DOT node=ID time=... value=...); the value printed is the
first.

On a leaderless cluster any node coordinates a read of the key's replicas:
--node, else the nodes in turn (the next one when a node cannot reach
enough replicas). --r sets how many replicas must answer (a number, one,
quorum or all; default: the node's); --repair blocking waits until the
stale replicas among them are repaired before printing (background, the
default, repairs after). -v prints, on stderr, the node that coordinated
it (node=ID), the replicas that answered (replicas=N) and those repaired
(repaired=N), and the key's causal context and values as above when the
read has them.

Examples:
  trireme get greeting
  trireme get greeting --consistency stale --node n3
  trireme get greeting --session 1.4.1207 --node n2  # sees the write that returned 1.4.1207
  trireme get greeting --consistency bounded --max-lag 200ms
  trireme get greeting --node n2 -v                  # multi-leader: n2's copy, its context and siblings
  trireme get greeting --r all --repair blocking -v  # leaderless: every replica answers, stale ones repaired
` + endpointHelp

const incrDetails = `
Adds --by (default 1; negative subtracts) to KEY's value, read as a base-10
64-bit integer (an absent key is 0), and prints the new value. It fails if
the value is not such an integer or the sum would overflow.

On a single-leader cluster the increment carries an idempotency key and is
applied exactly once, retries included. On a multi-leader cluster KEY is a
counter that every node increments (concurrent increments on different
nodes all count); --node picks the node. There the increment carries no
key (the nodes refuse one), so it is not retried once sent: if the
connection breaks, its outcome is unknown (read the key).

Examples:
  trireme incr visits
  trireme incr visits --by -5
  trireme incr visits --node n3                     # multi-leader: on n3
` + endpointHelp

const conflictsDetails = `
Prints the conflict log of a multi-leader cluster: every time concurrent
writes to a key (made on different nodes, neither seeing the other) met at
a node, that node recorded the versions, what the conflict policy kept and
why. One row per version: the node that recorded the conflict and its
sequence number there, the key, the version's dot (node:counter), the node
that accepted it, its hybrid logical time (UTC, +N: the logical counter),
its value, and whether it won (lww), lost, or was kept (siblings); the
reason is on the conflict's first row.

Every node is asked unless --node is given; each node has its own log,
numbered from 1. --after N lists the records after sequence number N
(per node), --limit N at most N records per node (default 100, at most
1000); when there are more, a note on stderr gives the --after to page on.
A single-leader cluster has no conflict log.

Examples:
  trireme conflicts
  trireme conflicts --node n1 --after 100 --limit 1000
` + endpointHelp

const statusDetails = `
Prints a table of every member of the cluster: role (leader, follower, or
learner for a read replica), term, leader, last/commit/applied indexes and
how far it lags. A node that does not answer is shown as down. The members
are those the cluster lists (GET /v1/members), read replicas included,
besides the endpoints asked; when no node can list them, the endpoints and
the read replicas of DATA/cluster.json are shown (with a note on stderr).

On a multi-leader cluster, one row per node: MODE, LAST (the end of the
node's own stream of writes), STREAMS (for each peer, how far this node is
behind the peer's stream: PEER:ENTRIES/MS, and "(silent 12s)" when the
peer was last heard over a second ago, "(unheard)" when never since the
node started), CONFLICTS (recorded on the node: trireme conflicts lists
them), CLAMPS (peer timestamps too far ahead of its clock) and CLOCK-OFFSET
(the largest offset seen in a peer's timestamps; positive: the peer's clock
is ahead).

On a leaderless cluster, one row per node: MODE, RING (the share of the
key space the node replicates), HINTS (the hints it holds for unreachable
replicas: the total, then per replica), READ-REPAIRS, AE-REPAIRS (keys it
repaired by anti-entropy), MERKLE (anti-entropy exchanges/buckets
compared/buckets found different) and DOWN (the peers it considers
unreachable); then the replication factor and whether quorums are sloppy.

Example:
  trireme status
` + endpointHelp

const rollbacksDetails = `
Prints the writes that nodes discarded from their logs when they rejoined
after losing leadership (typically async writes nobody else had). Every
node is asked unless --node is given.

Examples:
  trireme rollbacks
  trireme rollbacks --node n1
` + endpointHelp

const transferDetails = `
Asks the leader to hand leadership to node --to (a planned switchover: the
leader brings it up to date, then it campaigns). Returns once it leads.

Example:
  trireme transfer --to n2
` + endpointHelp

const endpointHelp = `
The cluster is found through --endpoints (HTTP addresses), else
$TRIREME_ENDPOINTS, else DATA/cluster.json (DATA = --data, default
./trireme-data, as written by trireme up).

Nodes that serve HTTPS (trireme node --tls-cert) need https:// endpoints
or --cacert (then bare HOST:PORT endpoints are https too). Nodes that
require credentials (trireme node --users) need an API token:
--token-file FILE or $TRIREME_TOKEN (--token TOKEN also works, but other
users of the machine can read it in the process list).`

// Environment variables of the client commands.
const (
	envCACert = "TRIREME_CACERT"
	envToken  = "TRIREME_TOKEN"
)

type endpointOpts struct {
	endpoints string
	data      string
	timeout   time.Duration
	// TLS and credentials.
	cacert, cert, key string
	token, tokenFile  string
}

func (e *endpointOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&e.endpoints, "endpoints", "", "nodes' HTTP addresses, comma-separated (default $TRIREME_ENDPOINTS or DATA/cluster.json)")
	fs.StringVar(&e.data, "data", "./trireme-data", "data directory of a cluster started with trireme up")
	fs.DurationVar(&e.timeout, "wait", 15*time.Second, "give up after this long")
	fs.StringVar(&e.cacert, "cacert", "", "CA certificate (PEM) that the nodes' HTTPS certificates must chain to; implies https (default $"+envCACert+")")
	fs.StringVar(&e.cert, "cert", "", "client certificate (PEM), for nodes started with --tls-client-ca")
	fs.StringVar(&e.key, "key", "", "private key (PEM) of --cert")
	fs.StringVar(&e.tokenFile, "token-file", "", "file holding the API token (or default password) sent as \"Authorization: Bearer\"")
	fs.StringVar(&e.token, "token", "", "API token sent as \"Authorization: Bearer\" (default $"+envToken+"); visible to other users in ps: prefer --token-file or $"+envToken)
}

// credentials returns the TLS configuration (nil for plain HTTP with the
// system's roots) and the token, from flags, then the environment.
func (e *endpointOpts) credentials() (*tls.Config, string, error) {
	token := e.token
	if e.tokenFile != "" {
		if token != "" {
			return nil, "", errors.New("--token and --token-file exclude each other")
		}
		b, err := os.ReadFile(e.tokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("--token-file: %w", err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if token = strings.TrimSpace(first); token == "" {
			return nil, "", fmt.Errorf("--token-file %s: the first line is empty", e.tokenFile)
		}
	}
	if token == "" {
		token = os.Getenv(envToken)
	}
	ca := e.cacert
	if ca == "" {
		ca = os.Getenv(envCACert)
	}
	if ca == "" && e.cert == "" && e.key == "" {
		return nil, token, nil
	}
	tc, err := client.TLSConfig(ca, e.cert, e.key)
	if err != nil {
		return nil, "", fmt.Errorf("--cacert / --cert / --key: %w", err)
	}
	return tc, token, nil
}

// fromLayout reports whether the endpoints come from DATA/cluster.json:
// neither --endpoints nor $TRIREME_ENDPOINTS is given.
func (e *endpointOpts) fromLayout() bool {
	return e.endpoints == "" && os.Getenv("TRIREME_ENDPOINTS") == ""
}

// resolve returns the endpoints and, when known, the node ids by endpoint.
func (e *endpointOpts) resolve() ([]string, map[string]string, error) {
	names := map[string]string{}
	if e.endpoints != "" {
		return strings.Split(e.endpoints, ","), names, nil
	}
	if env := os.Getenv("TRIREME_ENDPOINTS"); env != "" {
		return strings.Split(env, ","), names, nil
	}
	spec, err := e.layout()
	if err != nil {
		return nil, nil, err
	}
	var eps []string
	for _, n := range spec.Nodes {
		eps = append(eps, n.HTTP)
		names[n.HTTP] = n.ID
	}
	return eps, names, nil
}

// layout reads DATA/cluster.json, with an error for a person when there is
// none.
func (e *endpointOpts) layout() (cluster.Spec, error) {
	spec, err := cluster.LoadSpec(e.data)
	if errors.Is(err, os.ErrNotExist) {
		return spec, fmt.Errorf("no cluster found: give --endpoints HOST:PORT,..., set TRIREME_ENDPOINTS, or start one with `trireme up` (looked for %s)",
			filepath.Join(e.data, cluster.SpecFile))
	}
	return spec, err
}

// client returns a client and the node ids by the client's endpoints
// (scheme://host:port), when cluster.json names them.
func (e *endpointOpts) client() (*client.Client, map[string]string, error) {
	eps, names, err := e.resolve()
	if err != nil {
		return nil, nil, err
	}
	tc, token, err := e.credentials()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(client.Config{Endpoints: eps, RetryFor: e.timeout, TLS: tc, Token: token})
	if err != nil {
		return nil, nil, err
	}
	byEndpoint := map[string]string{}
	for i, ep := range c.Endpoints() {
		if id, ok := names[eps[i]]; ok {
			byEndpoint[ep] = id
		}
	}
	return c, byEndpoint, nil
}

// clientFor returns a client as client() does or, with node set, one whose
// only endpoint is that node (its id in cluster.json, or an HTTP address):
// a multi-leader cluster's writes then go to that node.
func (e *endpointOpts) clientFor(node string) (*client.Client, map[string]string, error) {
	cl, names, err := e.client()
	if err != nil || node == "" {
		return cl, names, err
	}
	ep := resolveNode(names, node)
	if ep == node && !strings.Contains(node, ":") {
		return nil, nil, fmt.Errorf("--node %q: no node has that id in %s; give the node's HTTP address (HOST:PORT)", node, cluster.SpecFile)
	}
	if all := cl.Endpoints(); !strings.Contains(ep, "://") && len(all) > 0 {
		scheme, _, _ := strings.Cut(all[0], "://") // the cluster's endpoints' scheme
		ep = scheme + "://" + ep
	}
	tc, token, err := e.credentials()
	if err != nil {
		return nil, nil, err
	}
	one, err := client.New(client.Config{Endpoints: []string{ep}, RetryFor: e.timeout, TLS: tc, Token: token})
	if err != nil {
		return nil, nil, fmt.Errorf("--node %q: neither a node of the cluster nor an HTTP address: %w", node, err)
	}
	return one, names, nil
}

// layoutMode returns the mode of the cluster that DATA/cluster.json
// describes, if that is where the cluster comes from (no --endpoints, no
// $TRIREME_ENDPOINTS); "" otherwise.
func (e *endpointOpts) layoutMode() string {
	if !e.fromLayout() {
		return ""
	}
	spec, err := e.layout()
	if err != nil {
		return ""
	}
	return modeOf(spec)
}

// resolveNode returns the endpoint of node: the client endpoint that
// cluster.json names node, else node itself (an HTTP address).
func resolveNode(names map[string]string, node string) string {
	for ep, id := range names {
		if id == node {
			return ep
		}
	}
	return node
}

// explain turns a client error into a sentence for a person.
func explain(err error) string {
	var ce *client.Error
	switch {
	case errors.Is(err, client.ErrWriteTimeout) && errors.As(err, &ce) && ce.Result != nil && ce.Result.Leaderless():
		return fmt.Sprintf("the write did not reach --w replicas in time. It is %s and may still reach the others (hinted handoff, read repair, anti-entropy), or be superseded. (%s)",
			ce.Result.Reached(), ce.Message)
	case errors.Is(err, client.ErrWriteTimeout) && errors.As(err, &ce) && ce.Result != nil && ce.Result.Term == 0 && ce.Result.LeaderDurable:
		// A multi-leader write: durable where it was taken.
		return fmt.Sprintf("the write's ack mode was not met in time, but the write is done: it will still reach the other nodes. It reached: %s", ce.Result.Reached())
	case errors.Is(err, client.ErrWriteTimeout) && errors.As(err, &ce) && ce.Result != nil:
		return fmt.Sprintf("the write's ack mode was not met in time. Its outcome is not final (it may still survive or be lost). It reached: %s", ce.Result.Reached())
	case errors.Is(err, client.ErrOutcomeUnknown) && errors.Is(err, client.ErrUnavailable):
		return "the connection broke after the write was sent: it may or may not have been applied, and it was not retried (a multi-leader or leaderless node cannot tell a retried increment from a new one); read the key to find out. (" + err.Error() + ")"
	case errors.Is(err, client.ErrBadContext) && errors.As(err, &ce):
		return fmt.Sprintf("the node refused the causal context (%s); nothing was written. Give --context the context that trireme get -v printed for this key, read from a node of this cluster that has the writes it names", ce.Message)
	case errors.Is(err, client.ErrOutcomeUnknown):
		return "the leader changed while the write was in flight: it may or may not have been applied; read the key to find out. (" + err.Error() + ")"
	case errors.Is(err, client.ErrNoLeader):
		return "the cluster has no leader right now (an election is running, or too few nodes are up); see trireme status"
	case errors.Is(err, client.ErrQuorumUnavailable) && errors.As(err, &ce):
		return fmt.Sprintf("no node could reach enough replicas of the key for the quorum (--w / --r); a write was not written. Retry, or ask for fewer replicas; trireme status shows the nodes each one considers down. (%s)", ce.Message)
	case errors.Is(err, client.ErrUnavailable):
		return "no node answered; is the cluster running? (`trireme up` starts one; `trireme status` shows the nodes). (" + err.Error() + ")"
	case errors.Is(err, client.ErrNotFound):
		return "key not found"
	case errors.Is(err, client.ErrConditionFailed) && errors.As(err, &ce):
		return fmt.Sprintf("the key is at index %d, not the one given (0: absent); nothing was written", ce.CurrentIndex)
	case errors.Is(err, client.ErrIdempotencyExpired):
		return "the write's outcome is unknown and its idempotency window has passed, so it was not retried: read the key to find out. (" + err.Error() + ")"
	case errors.Is(err, client.ErrRolledBack) && errors.As(err, &ce):
		return "the session's write was rolled back in a failover; it will never be visible: start a new session (read without --session). (" + ce.Message + ")"
	case errors.Is(err, client.ErrUnauthorized) && errors.As(err, &ce):
		return fmt.Sprintf("the node requires credentials (HTTP 401: %s): give an API token with --token-file FILE or $%s (trireme users token NAME makes one)",
			ce.Message, envToken)
	case errors.Is(err, client.ErrForbidden) && errors.As(err, &ce):
		return fmt.Sprintf("not allowed (HTTP 403: %s)", ce.Message)
	case errors.Is(err, client.ErrTLS):
		return fmt.Sprintf("%v. Nodes started with --tls-cert need https:// endpoints or --cacert FILE (or $%s) with the CA that issued their certificate", err, envCACert)
	case errors.As(err, &ce):
		return ce.Message
	}
	return err.Error()
}

// writeOpts are the flags of put and del.
type writeOpts struct {
	endpointOpts
	ack       string
	replicas  int
	timeout   time.Duration
	ifIndex   *uint64 // nil: unconditional
	verbose   bool
	node      string
	causalCtx string
	w         string
}

// quorumFlag registers a leaderless quorum flag (--w, --r) that takes a
// number, one, quorum or all.
func quorumFlag(fs *flag.FlagSet, p *string, name, usage string) {
	fs.Func(name, usage, func(v string) error {
		if _, err := api.ParseQuorum(v); err != nil || v == "" {
			return errors.New("want a number from 1, one, quorum or all")
		}
		*p = v
		return nil
	})
}

func writeFlags(name string) (*flag.FlagSet, *writeOpts) {
	o := &writeOpts{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.ack, "ack", "", "ack mode: async, semi-sync, sync or majority; multi-leader: local, all, majority or a number K of other nodes (default: the node's)")
	fs.StringVar(&o.node, "node", "", "send the write to this node (id from cluster.json, or HTTP address): on a multi-leader cluster, the node that takes it; a single-leader cluster's writes go to the leader wherever they are sent")
	fs.StringVar(&o.causalCtx, "context", "", "multi-leader: the causal context of an earlier read of the key (trireme get -v prints it): the write replaces what that read saw")
	fs.IntVar(&o.replicas, "replicas", 0, "followers a semi-sync write waits for (default 1)")
	fs.DurationVar(&o.timeout, "timeout", 0, "how long the write may wait for its ack mode (default: the node's)")
	fs.Func("if-index", "write only if the key's index is `N` (0: only if the key is absent)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("want the key's index, a whole number (0: the key must be absent)")
		}
		o.ifIndex = &n
		return nil
	})
	fs.BoolVar(&o.verbose, "v", false, "also print the write's session token on stderr (session=TOKEN)")
	quorumFlag(fs, &o.w, "w", "leaderless: how many of the key's replicas must hold the write durably: `Q`, a number, one, quorum or all (default: the node's)")
	o.register(fs)
	return fs, o
}

func runPut(args []string, stdout, stderr io.Writer) int {
	return runWrite("put", args, stdout, stderr)
}
func runDel(args []string, stdout, stderr io.Writer) int {
	return runWrite("del", args, stdout, stderr)
}

func runWrite(name string, args []string, stdout, stderr io.Writer) int {
	fs, o := writeFlags(name)
	pos, err := parse(fs, name, args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	want := 2
	if name == "del" {
		want = 1
	}
	if len(pos) != want {
		c, _ := lookup(name)
		fmt.Fprintf(stderr, "trireme %s: want %d argument(s): trireme %s %s\n", name, want, name, c.usage)
		return 2
	}
	if pos[0] == "" {
		fmt.Fprintf(stderr, "trireme %s: the key is empty\n", name)
		return 2
	}
	cl, names, err := o.clientFor(o.node)
	if err != nil {
		fmt.Fprintf(stderr, "trireme %s: %v\n", name, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.endpointOpts.timeout+o.timeout)
	defer cancel()
	res, err := o.write(ctx, cl, name == "put", pos)
	if err != nil {
		fmt.Fprintf(stderr, "trireme %s: %s\n", name, explain(err))
		return 1
	}
	switch {
	case res.Leaderless():
		// Any node coordinates: the replicas that hold it, and where.
		fmt.Fprintf(stdout, "OK replicas=%d durability=%s node=%s\n", res.Replicas, res.Durability, nameOf(names, res.Endpoint))
	case res.Term == 0 && res.Index > 0:
		// A multi-leader write: no term; the node that took it matters.
		fmt.Fprintf(stdout, "OK index=%d durability=%s replicas=%d node=%s\n", res.Index, res.Durability, res.Replicas, nameOf(names, res.Endpoint))
	default:
		fmt.Fprintf(stdout, "OK index=%d term=%d durability=%s replicas=%d\n", res.Index, res.Term, res.Durability, res.Replicas)
	}
	if o.verbose {
		printSession(stderr, res.Session)
	}
	return 0
}

// write sends a put (KEY VALUE) or a delete (KEY), conditional with
// --if-index.
func (o *writeOpts) write(ctx context.Context, cl *client.Client, put bool, pos []string) (client.WriteResult, error) {
	wo := client.WriteOptions{Ack: o.ack, Replicas: o.replicas, Timeout: o.timeout, Context: o.causalCtx, W: o.w}
	key := []byte(pos[0])
	switch {
	case put && o.ifIndex != nil:
		return cl.PutIfIndex(ctx, key, []byte(pos[1]), *o.ifIndex, wo)
	case put:
		return cl.Put(ctx, key, []byte(pos[1]), wo)
	case o.ifIndex != nil:
		return cl.DeleteIfIndex(ctx, key, *o.ifIndex, wo)
	}
	return cl.Delete(ctx, key, wo)
}

// printSession prints a reply's session token on stderr: one line,
// "session=TOKEN", which scripts can cut at the '='.
func printSession(stderr io.Writer, token string) {
	if token != "" {
		fmt.Fprintf(stderr, "session=%s\n", token)
	}
}

// getOpts are the flags of get.
type getOpts struct {
	endpointOpts
	consistency, node, session string
	maxLag                     time.Duration
	maxLagEntries              uint64
	verbose                    bool
	r, repair                  string
}

func getFlags() (*flag.FlagSet, *getOpts) {
	o := &getOpts{}
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.StringVar(&o.consistency, "consistency", "linearizable",
		"linearizable (through the leader), stale (any node), session (any node that has applied --session) or bounded (any node within --max-lag / --max-lag-entries); local: a stale read, and the only read of a multi-leader cluster, which takes linearizable and stale to mean it")
	fs.StringVar(&o.node, "node", "", "for stale, local, session and bounded reads, and every read of a multi-leader or leaderless cluster: the node to read from, or that coordinates the read (id from cluster.json, or HTTP address)")
	fs.StringVar(&o.session, "session", "", "session token of an earlier reply (printed by -v): read at least what it saw; implies --consistency session")
	fs.DurationVar(&o.maxLag, "max-lag", 0, "for bounded reads: how far behind the leader, in time, the node may be (implies --consistency bounded)")
	fs.Uint64Var(&o.maxLagEntries, "max-lag-entries", 0, "for bounded reads: how far behind the leader, in log entries, the node may be (implies --consistency bounded)")
	fs.BoolVar(&o.verbose, "v", false, "also print the read's session token on stderr (session=TOKEN); multi-leader: the node read, the key's causal context (context=TOKEN) and its concurrent values; leaderless: the node, the replicas that answered and those repaired")
	quorumFlag(fs, &o.r, "r", "leaderless: how many of the key's replicas must answer: `Q`, a number, one, quorum or all (default: the node's)")
	fs.Func("repair", "leaderless: `blocking` (reply once the stale replicas that answered are repaired) or background (the default: repair after replying)", func(v string) error {
		if v != client.RepairBlocking && v != client.RepairBackground {
			return errors.New("want blocking or background")
		}
		o.repair = v
		return nil
	})
	o.register(fs)
	return fs, o
}

// check settles the consistency (--session and the bounds imply theirs,
// given flags, the names of the flags given) and checks the flags against
// it. mode is the mode of the cluster that DATA/cluster.json describes,
// if the cluster comes from there: every read of a multi-leader cluster
// is local, and any node coordinates a read of a leaderless one. It
// returns a message for a person, or "".
func (o *getOpts) check(given map[string]bool, mode string) string {
	multiLeader := mode == modeMultiLeader
	bounded := given["max-lag"] || given["max-lag-entries"]
	if !given["consistency"] {
		switch {
		case given["session"] && bounded:
			return "--session and --max-lag / --max-lag-entries exclude each other"
		case given["session"]:
			o.consistency = "session"
		case bounded:
			o.consistency = "bounded"
		case multiLeader:
			o.consistency = "local"
		}
	}
	switch o.consistency {
	case "linearizable", "stale", "session", "bounded", "local":
	default:
		return fmt.Sprintf("--consistency %q: want linearizable, stale, session, bounded or local", o.consistency)
	}
	switch {
	case given["session"] && o.consistency != "session":
		return "--session applies to --consistency session only"
	case bounded && o.consistency != "bounded":
		return "--max-lag and --max-lag-entries apply to --consistency bounded only"
	case o.consistency == "bounded" && o.maxLag <= 0 && o.maxLagEntries == 0:
		return "--consistency bounded needs --max-lag DURATION (above 0) and/or --max-lag-entries N (above 0)"
	case o.node != "" && o.consistency == "linearizable" && !multiLeader && mode != client.ModeLeaderless && !given["r"] && !given["repair"]:
		return "--node applies to --consistency stale, local, session or bounded only (on a multi-leader cluster, every read is local: add --consistency local)"
	}
	return ""
}

func runGet(args []string, stdout, stderr io.Writer) int {
	fs, o := getFlags()
	pos, err := parse(fs, "get", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintf(stderr, "trireme get: want one non-empty KEY\n")
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if msg := o.check(given, o.layoutMode()); msg != "" {
		fmt.Fprintf(stderr, "trireme get: %s\n", msg)
		return 2
	}
	cl, names, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme get: %v\n", err)
		return 1
	}
	ro := client.ReadOptions{Consistency: o.consistency, Session: o.session, MaxLag: o.maxLag, MaxLagEntries: o.maxLagEntries,
		R: o.r, Repair: o.repair}
	if o.node != "" {
		ro.Endpoint = o.node
		for ep, id := range names {
			if id == o.node {
				ro.Endpoint = ep
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	r, err := cl.Get(ctx, []byte(pos[0]), ro)
	// Only a multi-leader or leaderless node's reads carry a causal
	// context, found or not; only a leaderless node's count replicas.
	ml, ll := r.Context != "", r.Replicas > 0
	if err != nil {
		fmt.Fprintf(stderr, "trireme get: %s\n", explain(err))
		if errors.Is(err, client.ErrNotFound) && (o.verbose || o.consistency == "session") {
			printSession(stderr, r.Session) // the session has read the key's absence
		}
		if errors.Is(err, client.ErrNotFound) && (ml || ll) && o.verbose {
			printVersions(stderr, r, names) // a write with this context replaces the delete read
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", r.Value)
	if !ml && (o.consistency == "stale" || o.consistency == "bounded") {
		fmt.Fprintf(stderr, "(index %d, from %s, lag %d entries / %d ms)\n", r.Index, nameOf(names, r.Endpoint), r.LagEntries, r.LagMillis)
	}
	if o.verbose || o.consistency == "session" {
		printSession(stderr, r.Session)
	}
	switch {
	case (ml || ll) && o.verbose:
		printVersions(stderr, r, names)
	case len(r.Siblings) > 1:
		fmt.Fprintf(stderr, "(%d concurrent values, the first printed; -v lists them)\n", len(r.Siblings))
	}
	return 0
}

// printVersions prints, on stderr, what a multi-leader or leaderless read
// found besides the value: the node read (that coordinated the read), on
// a leaderless cluster the replicas that answered and those repaired, the
// key's causal context (if any) and its concurrent values, one
// "key=value" line each (scripts cut at the first '=').
func printVersions(stderr io.Writer, r client.ReadResult, names map[string]string) {
	fmt.Fprintf(stderr, "node=%s\n", nameOf(names, r.Endpoint))
	if r.Replicas > 0 {
		fmt.Fprintf(stderr, "replicas=%d\nrepaired=%d\n", r.Replicas, r.Repaired)
	}
	if r.Context != "" || r.Replicas == 0 {
		fmt.Fprintf(stderr, "context=%s\n", r.Context)
	}
	for _, s := range r.Siblings {
		fmt.Fprintf(stderr, "sibling=%s node=%s time=%s value=%s\n", s.Dot, s.Node, hlcTime(s.Time), quoteValue(s.Value))
	}
}

// hlcTime renders a hybrid logical time, "wall.logical" with wall in Unix
// nanoseconds, as a UTC time with microseconds and, when the logical
// counter is not 0, "+N". Anything else is returned as it is.
func hlcTime(t string) string {
	wall, logical, _ := strings.Cut(t, ".")
	ns, err := strconv.ParseInt(wall, 10, 64)
	if err != nil {
		return t
	}
	s := time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000Z")
	if logical != "" && logical != "0" {
		s += "+" + logical
	}
	return s
}

// quoteValue is a value for a table: quoted (Go syntax), its first 40
// bytes only, with the length when it is longer.
func quoteValue(v []byte) string {
	const most = 40
	if len(v) <= most {
		return strconv.Quote(string(v))
	}
	return fmt.Sprintf("%s...(%d bytes)", strconv.Quote(string(v[:most])), len(v))
}

func nameOf(names map[string]string, ep string) string {
	if id, ok := names[ep]; ok {
		return id
	}
	return ep
}

func adminFlags(name string) (*flag.FlagSet, *struct {
	endpointOpts
	node, to string
}) {
	o := &struct {
		endpointOpts
		node, to string
	}{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	switch name {
	case "rollbacks":
		fs.StringVar(&o.node, "node", "", "ask only this node (id from cluster.json, or HTTP address)")
	case "transfer":
		fs.StringVar(&o.to, "to", "", "id of the node that should lead (required)")
	}
	o.register(fs)
	return fs, o
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs, o := adminFlags("status")
	pos, err := parse(fs, "status", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trireme status: unexpected argument %q\n", pos[0])
		return 2
	}
	cl, names, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme status: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(o.timeout, statusWait))
	defer cancel()
	sts, notes := clusterStatuses(ctx, cl, names, &o.endpointOpts)
	fmt.Fprint(stdout, formatStatus(sts, names))
	for _, n := range notes {
		fmt.Fprintf(stderr, "trireme status: note: %s\n", n)
	}
	for _, s := range sts {
		if s.Err == nil {
			return 0
		}
	}
	for _, s := range sts {
		// A node that answered, but refused the credentials or the TLS.
		if errors.Is(s.Err, client.ErrUnauthorized) || errors.Is(s.Err, client.ErrForbidden) || errors.Is(s.Err, client.ErrTLS) {
			fmt.Fprintf(stderr, "trireme status: %s\n", explain(s.Err))
			return 1
		}
	}
	fmt.Fprintf(stderr, "trireme status: no node answered; is the cluster running?\n")
	return 1
}

func runRollbacks(args []string, stdout, stderr io.Writer) int {
	fs, o := adminFlags("rollbacks")
	pos, err := parse(fs, "rollbacks", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trireme rollbacks: unexpected argument %q\n", pos[0])
		return 2
	}
	cl, names, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme rollbacks: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(o.timeout, 5*time.Second))
	defer cancel()
	eps := cl.Endpoints()
	if o.node != "" {
		eps = []string{o.node}
		for ep, id := range names {
			if id == o.node {
				eps = []string{ep}
			}
		}
	}
	sort.Strings(eps)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tTERM\tINDEX\tOP\tKEY\tVALUE")
	total, failed := 0, 0
	for _, ep := range eps {
		rbs, err := cl.Rollbacks(ctx, ep)
		if err != nil {
			fmt.Fprintf(stderr, "trireme rollbacks: %s: %s\n", nameOf(names, ep), explain(err))
			failed++
			continue
		}
		for _, r := range rbs {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%q\t%q\n", nameOf(names, ep), r.Term, r.Index, r.Op, r.Key, r.Value)
			total++
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d discarded write(s)\n", total)
	if failed == len(eps) {
		return 1
	}
	return 0
}

func runTransfer(args []string, stdout, stderr io.Writer) int {
	fs, o := adminFlags("transfer")
	pos, err := parse(fs, "transfer", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trireme transfer: unexpected argument %q (use --to ID)\n", pos[0])
		return 2
	}
	if o.to == "" {
		fmt.Fprintf(stderr, "trireme transfer: --to ID is required\n")
		return 2
	}
	cl, _, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme transfer: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := cl.Transfer(ctx, o.to); err != nil {
		fmt.Fprintf(stderr, "trireme transfer: %s\n", explain(err))
		return 1
	}
	fmt.Fprintf(stdout, "OK: %s leads\n", o.to)
	return 0
}

// incrOpts are the flags of incr.
type incrOpts struct {
	endpointOpts
	by   int64
	node string
}

func incrFlags() (*flag.FlagSet, *incrOpts) {
	o := &incrOpts{}
	fs := flag.NewFlagSet("incr", flag.ContinueOnError)
	fs.Int64Var(&o.by, "by", 1, "what to add (negative: subtract)")
	fs.StringVar(&o.node, "node", "", "send the increment to this node (id from cluster.json, or HTTP address): on a multi-leader cluster, the node that counts it")
	o.register(fs)
	return fs, o
}

func runIncr(args []string, stdout, stderr io.Writer) int {
	fs, o := incrFlags()
	pos, err := parse(fs, "incr", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintf(stderr, "trireme incr: want one non-empty KEY (and --by N to add N)\n")
		return 2
	}
	cl, _, err := o.clientFor(o.node)
	if err != nil {
		fmt.Fprintf(stderr, "trireme incr: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	v, err := cl.Incr(ctx, []byte(pos[0]), o.by)
	if err != nil {
		fmt.Fprintf(stderr, "trireme incr: %s\n", explain(err))
		return 1
	}
	fmt.Fprintf(stdout, "%d\n", v)
	return 0
}

// conflictsOpts are the flags of conflicts.
type conflictsOpts struct {
	endpointOpts
	node  string
	after uint64
	limit int
}

func conflictsFlags() (*flag.FlagSet, *conflictsOpts) {
	o := &conflictsOpts{}
	fs := flag.NewFlagSet("conflicts", flag.ContinueOnError)
	fs.StringVar(&o.node, "node", "", "ask only this node (id from cluster.json, or HTTP address)")
	fs.Uint64Var(&o.after, "after", 0, "list the records after this sequence number (each node numbers its own)")
	fs.IntVar(&o.limit, "limit", 100, "at most this many records per node (1 to 1000)")
	o.register(fs)
	return fs, o
}

func runConflicts(args []string, stdout, stderr io.Writer) int {
	fs, o := conflictsFlags()
	pos, err := parse(fs, "conflicts", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trireme conflicts: unexpected argument %q\n", pos[0])
		return 2
	}
	if o.limit < 1 || o.limit > 1000 {
		fmt.Fprintf(stderr, "trireme conflicts: --limit %d: want 1 to 1000\n", o.limit)
		return 2
	}
	cl, names, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme conflicts: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(o.timeout, 5*time.Second))
	defer cancel()
	eps := cl.Endpoints()
	if o.node != "" {
		eps = []string{resolveNode(names, o.node)}
	}
	sort.Slice(eps, func(i, j int) bool { return nameOf(names, eps[i]) < nameOf(names, eps[j]) })
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSEQ\tKEY\tVERSION\tFROM\tTIME\tVALUE\tRESULT\tREASON")
	total, failed := 0, 0
	var notes []string
	for _, ep := range eps {
		page, err := cl.ConflictsAt(ctx, ep, o.after, o.limit)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: %s", nameOf(names, ep), explain(err)))
			failed++
			continue
		}
		for _, c := range page.Conflicts {
			writeConflict(tw, nameOf(names, ep), c)
			total++
		}
		if page.Dropped > 0 {
			notes = append(notes, fmt.Sprintf("%s: note: the node dropped its %d oldest record(s) to keep its log bounded", nameOf(names, ep), page.Dropped))
		}
		if len(page.Conflicts) == o.limit {
			notes = append(notes, fmt.Sprintf("%s: note: there may be more: trireme conflicts --node %s --after %d", nameOf(names, ep), nameOf(names, ep), page.Next))
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d conflict record(s)\n", total)
	for _, n := range notes {
		fmt.Fprintf(stderr, "trireme conflicts: %s\n", n)
	}
	if failed == len(eps) {
		return 1
	}
	return 0
}

// writeConflict writes one conflict's rows: one per version, the node that
// recorded it, its seq, its key and its reason on the first.
func writeConflict(tw io.Writer, node string, c client.Conflict) {
	losers := map[string]bool{}
	for _, l := range c.Losers {
		losers[l] = true
	}
	for i, v := range c.Versions {
		result := "kept"
		switch {
		case v.Dot == c.Winner:
			result = "won"
		case losers[v.Dot]:
			result = "lost"
		}
		value := quoteValue(v.Value)
		if v.Deleted {
			value = "(deleted)"
		}
		head := [4]string{node, strconv.FormatUint(c.Seq, 10), quoteValue(c.Key), c.Reason}
		if i > 0 {
			head = [4]string{}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", head[0], head[1], head[2], v.Dot, v.Node, hlcTime(v.Time), value, result, head[3])
	}
	if len(c.Versions) == 0 {
		fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t%s\n", node, c.Seq, quoteValue(c.Key), c.Reason)
	}
}
