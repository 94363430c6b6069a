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
	"github.com/trireme-db/trireme/internal/cluster"
)

const putDetails = `
Writes KEY=VALUE through the leader (found automatically) and prints the
index, term, the durability reached and the number of followers that hold
the write. A write whose ack mode is not met before --timeout fails with
what it reached: its outcome is then not final.

Examples:
  trireme put greeting hello                        # the node's default mode (majority)
  trireme put greeting hello --ack async            # fsynced on the leader only
  trireme put greeting hello --ack semi-sync --replicas 1
  trireme put greeting hello --ack sync --timeout 2s
  trireme put k v --endpoints 127.0.0.1:8001,127.0.0.1:8002
  trireme put k v2 --if-index 7                     # only if k's index is still 7 (0: only if k is absent)
  trireme put k v -v                                # also print the write's session token to stderr

Each write (but an --ack async one) carries an idempotency key: if it times
out or its outcome is unknown, it is retried with the same key, so it is
applied at most once.
--if-index makes it conditional: if the key is at another index, nothing is
written and the command fails (exit 1) naming the key's current index.
-v prints "session=TOKEN" on stderr: pass it to trireme get --session to
read this write from any node.
` + endpointHelp

const delDetails = `
Deletes KEY, with the same ack flags as put.

Examples:
  trireme del greeting
  trireme del greeting --ack majority
  trireme del greeting --if-index 12                # only if greeting's index is still 12
` + endpointHelp

const getDetails = `
Reads KEY and prints its value. Linearizable reads (the default) go to the
leader and see every acknowledged write; stale reads are served by any node
(--node picks one) from its applied state and report how far behind it may be.
Session reads (--session TOKEN, a token that -v printed) are served by any node
that has applied the token's write or read, so they see it; they print the
session's next token on stderr ("session=TOKEN"). Bounded reads are served by
any node within --max-lag and/or --max-lag-entries of the leader.

Examples:
  trireme get greeting
  trireme get greeting --consistency stale --node n3
  trireme get greeting --session 1.4.1207 --node n2  # sees the write that returned 1.4.1207
  trireme get greeting --consistency bounded --max-lag 200ms
` + endpointHelp

const statusDetails = `
Prints a table of every member of the cluster: role (leader, follower, or
learner for a read replica), term, leader, last/commit/applied indexes and
how far it lags. A node that does not answer is shown as down. The members
are those the cluster lists (GET /v1/members), read replicas included,
besides the endpoints asked; when no node can list them, the endpoints and
the read replicas of DATA/cluster.json are shown (with a note on stderr).

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

// explain turns a client error into a sentence for a person.
func explain(err error) string {
	var ce *client.Error
	switch {
	case errors.Is(err, client.ErrWriteTimeout) && errors.As(err, &ce) && ce.Result != nil:
		return fmt.Sprintf("the write's ack mode was not met in time. Its outcome is not final (it may still survive or be lost). It reached: %s", ce.Result.Reached())
	case errors.Is(err, client.ErrOutcomeUnknown):
		return "the leader changed while the write was in flight: it may or may not have been applied; read the key to find out. (" + err.Error() + ")"
	case errors.Is(err, client.ErrNoLeader):
		return "the cluster has no leader right now (an election is running, or too few nodes are up); see trireme status"
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
	ack      string
	replicas int
	timeout  time.Duration
	ifIndex  *uint64 // nil: unconditional
	verbose  bool
}

func writeFlags(name string) (*flag.FlagSet, *writeOpts) {
	o := &writeOpts{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.ack, "ack", "", "ack mode: async, semi-sync, sync or majority (default: the node's)")
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
	cl, _, err := o.client()
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
	fmt.Fprintf(stdout, "OK index=%d term=%d durability=%s replicas=%d\n", res.Index, res.Term, res.Durability, res.Replicas)
	if o.verbose {
		printSession(stderr, res.Session)
	}
	return 0
}

// write sends a put (KEY VALUE) or a delete (KEY), conditional with
// --if-index.
func (o *writeOpts) write(ctx context.Context, cl *client.Client, put bool, pos []string) (client.WriteResult, error) {
	wo := client.WriteOptions{Ack: o.ack, Replicas: o.replicas, Timeout: o.timeout}
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
}

func getFlags() (*flag.FlagSet, *getOpts) {
	o := &getOpts{}
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.StringVar(&o.consistency, "consistency", "linearizable",
		"linearizable (through the leader), stale (any node), session (any node that has applied --session) or bounded (any node within --max-lag / --max-lag-entries)")
	fs.StringVar(&o.node, "node", "", "for stale, session and bounded reads: the node to read from (id from cluster.json, or HTTP address)")
	fs.StringVar(&o.session, "session", "", "session token of an earlier reply (printed by -v): read at least what it saw; implies --consistency session")
	fs.DurationVar(&o.maxLag, "max-lag", 0, "for bounded reads: how far behind the leader, in time, the node may be (implies --consistency bounded)")
	fs.Uint64Var(&o.maxLagEntries, "max-lag-entries", 0, "for bounded reads: how far behind the leader, in log entries, the node may be (implies --consistency bounded)")
	fs.BoolVar(&o.verbose, "v", false, "also print the read's session token on stderr (session=TOKEN)")
	o.register(fs)
	return fs, o
}

// check settles the consistency (--session and the bounds imply theirs,
// given flags, the names of the flags given) and checks the flags against
// it. It returns a message for a person, or "".
func (o *getOpts) check(given map[string]bool) string {
	bounded := given["max-lag"] || given["max-lag-entries"]
	if !given["consistency"] {
		switch {
		case given["session"] && bounded:
			return "--session and --max-lag / --max-lag-entries exclude each other"
		case given["session"]:
			o.consistency = "session"
		case bounded:
			o.consistency = "bounded"
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
	case o.node != "" && o.consistency == "linearizable":
		return "--node applies to --consistency stale, session or bounded only"
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
	if msg := o.check(given); msg != "" {
		fmt.Fprintf(stderr, "trireme get: %s\n", msg)
		return 2
	}
	cl, names, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme get: %v\n", err)
		return 1
	}
	ro := client.ReadOptions{Consistency: o.consistency, Session: o.session, MaxLag: o.maxLag, MaxLagEntries: o.maxLagEntries}
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
	if err != nil {
		fmt.Fprintf(stderr, "trireme get: %s\n", explain(err))
		if errors.Is(err, client.ErrNotFound) && (o.verbose || o.consistency == "session") {
			printSession(stderr, r.Session) // the session has read the key's absence
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", r.Value)
	if o.consistency == "stale" || o.consistency == "bounded" {
		fmt.Fprintf(stderr, "(index %d, from %s, lag %d entries / %d ms)\n", r.Index, nameOf(names, r.Endpoint), r.LagEntries, r.LagMillis)
	}
	if o.verbose || o.consistency == "session" {
		printSession(stderr, r.Session)
	}
	return 0
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
	fmt.Fprint(stdout, cluster.FormatStatus(sts, names))
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
