package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
)

const memberDetails = `
Lists and changes the cluster's members. Any node may be asked; changes go
to the leader and return once committed. Changes need role admin when the
nodes require credentials.

  list      every member: role (voter or learner), state, match index, lag
            in entries, snapshot progress, addresses
  add       adds a member: a voter unless --learner. A new node should join
            as a learner, catch up, then be promoted (trireme node --join
            does the first step)
  promote   makes learner ID a voter. A learner that has not caught up is
            not promoted: this waits, showing its progress (a bar on a
            terminal, a line per change otherwise), and retries until it
            is promoted or --timeout passes
  remove    removes member ID (not the last voter). When the cluster was
            found through DATA/cluster.json (trireme up's layout), a read
            replica's entry is dropped from it too, so that trireme up
            no longer starts it; its data directory stays

Examples:
  trireme member list
  trireme member add --id n4 --peer 10.0.0.4:7001 --http 10.0.0.4:8001 --resp 10.0.0.4:9001 --learner
  trireme member promote n4 --timeout 30m
  trireme member remove n4
` + endpointHelp

type memberOpts struct {
	endpointOpts
	id, peer, httpAddr, respAddr string
	learner                      bool
	timeout, interval            time.Duration
}

func memberFlags() (*flag.FlagSet, *memberOpts) {
	o := &memberOpts{}
	fs := flag.NewFlagSet("member", flag.ContinueOnError)
	fs.StringVar(&o.id, "id", "", "add: the new member's id")
	fs.StringVar(&o.peer, "peer", "", "add: the new member's peer address, host:port (required)")
	fs.StringVar(&o.httpAddr, "http", "", "add: the new member's HTTP address, host:port")
	fs.StringVar(&o.respAddr, "resp", "", "add: the new member's Redis protocol address, host:port")
	fs.BoolVar(&o.learner, "learner", false, "add: as a learner (receives the log, does not vote), not a voter")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "promote: how long to wait for the learner to catch up and be promoted")
	fs.DurationVar(&o.interval, "interval", 500*time.Millisecond, "promote: how often to check the learner's progress")
	o.register(fs)
	return fs, o
}

// memberUsage is the usage of each subcommand.
var memberUsage = map[string]string{
	"list":    "trireme member list",
	"add":     "trireme member add --id ID --peer HOST:PORT [--http HOST:PORT] [--resp HOST:PORT] [--learner]",
	"promote": "trireme member promote ID [--timeout DUR]",
	"remove":  "trireme member remove ID",
}

// memberOnly lists the flags that only one subcommand takes.
var memberOnly = map[string]string{
	"id": "add", "peer": "add", "http": "add", "resp": "add", "learner": "add",
	"timeout": "promote", "interval": "promote",
}

func runMember(args []string, stdout, stderr io.Writer) int {
	fs, o := memberFlags()
	pos, err := parse(fs, "member", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "trireme member: %s\nUsage:\n", msg)
		for _, sub := range []string{"list", "add", "promote", "remove"} {
			fmt.Fprintf(stderr, "  %s\n", memberUsage[sub])
		}
		return 2
	}
	if len(pos) == 0 {
		return usage("want a subcommand: list, add, promote or remove")
	}
	sub := pos[0]
	wantArgs, ok := map[string]int{"list": 0, "add": 0, "promote": 1, "remove": 1}[sub]
	if !ok {
		return usage(fmt.Sprintf("unknown subcommand %q", sub))
	}
	if len(pos)-1 != wantArgs {
		fmt.Fprintf(stderr, "trireme member %s: want %d argument(s): %s\n", sub, wantArgs, memberUsage[sub])
		return 2
	}
	var misplaced []string
	fs.Visit(func(f *flag.Flag) {
		if only, ok := memberOnly[f.Name]; ok && only != sub {
			misplaced = append(misplaced, fmt.Sprintf("--%s applies to member %s only", f.Name, only))
		}
	})
	if len(misplaced) > 0 {
		fmt.Fprintf(stderr, "trireme member %s: %s\n", sub, strings.Join(misplaced, "; "))
		return 2
	}
	var spec client.MemberSpec
	if sub == "add" {
		if spec, err = o.spec(); err != nil {
			fmt.Fprintf(stderr, "trireme member add: %v\n", err)
			return 2
		}
	}
	cl, _, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "trireme member %s: %v\n", sub, err)
		return 1
	}
	budget := o.endpointOpts.timeout
	if sub == "promote" {
		budget = o.timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	var ms []client.Member
	switch sub {
	case "list":
		ms, err = cl.Members(ctx)
	case "add":
		if ms, err = cl.AddMember(ctx, spec); err == nil {
			fmt.Fprintf(stdout, "OK: %s added as a %s\n", spec.ID, roleOf(spec.Role))
			if spec.Role == client.RoleLearner {
				fmt.Fprintf(stdout, "Once it has caught up, make it vote with: trireme member promote %s\n", spec.ID)
			}
		}
	case "promote":
		p := newProgress(stdout)
		if ms, err = promoteWhenCaughtUp(ctx, cl, pos[1], o.interval, p); err == nil {
			fmt.Fprintf(stdout, "OK: %s is a voter\n", pos[1])
		}
	case "remove":
		if ms, err = cl.RemoveMember(ctx, pos[1]); err == nil {
			fmt.Fprintf(stdout, "OK: %s removed\n", pos[1])
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "trireme member %s: %s\n", sub, explainMember(err, sub, budget))
		return 1
	}
	fmt.Fprint(stdout, formatMembers(ms))
	if sub == "remove" && o.fromLayout() {
		return forgetInLayout(o.data, pos[1], stdout, stderr)
	}
	return 0
}

// forgetInLayout drops member id, just removed from the cluster, from the
// layout of the local cluster whose endpoints the command used
// (DATA/cluster.json), so that the next trireme up does not start it and
// wait for it. It returns the exit status: 1 if the layout could not be
// written (the member is removed all the same).
func forgetInLayout(data, id string, stdout, stderr io.Writer) int {
	file := filepath.Join(data, cluster.SpecFile)
	switch what, r, err := dropFromLayout(data, id); {
	case err != nil:
		fmt.Fprintf(stderr, "trireme member remove: %s is removed from the cluster, but %s still lists it: %v "+
			"(trireme up skips it once the cluster's members no longer list it)\n", id, file, err)
		return 1
	case what == layoutDropped:
		fmt.Fprintf(stdout, "%s: dropped read replica %s (its data stays in %s)\n", file, id, filepath.Join(data, r.Dir))
	case what == layoutVoter:
		fmt.Fprintf(stderr, "trireme member remove: note: %s keeps voter %s: trireme up lays voters out by position and starts each with all of them\n",
			file, id)
	}
	return 0
}

// spec returns the member that add's flags describe. The node checks the
// fields; this checks that the required ones are there.
func (o *memberOpts) spec() (client.MemberSpec, error) {
	if o.id == "" {
		return client.MemberSpec{}, errors.New("--id is required")
	}
	if o.peer == "" {
		return client.MemberSpec{}, errors.New("--peer HOST:PORT (the new member's peer address) is required")
	}
	s := client.MemberSpec{ID: o.id, Peer: o.peer, HTTP: o.httpAddr, RESP: o.respAddr, Role: client.RoleVoter}
	if o.learner {
		s.Role = client.RoleLearner
	}
	return s, nil
}

func roleOf(r string) string {
	if r == "" {
		return client.RoleVoter
	}
	return r
}

// explainMember turns a membership error into a sentence for a person.
func explainMember(err error, sub string, budget time.Duration) string {
	switch {
	case errors.Is(err, client.ErrChangeInProgress):
		return "another membership change is in progress; try again once it is committed (" + explain(err) + ")"
	case errors.Is(err, client.ErrUnknownMember):
		return "no such member; see trireme member list (" + explain(err) + ")"
	case errors.Is(err, client.ErrRemoved):
		return "the node asked was removed from the cluster; give another one with --endpoints (" + explain(err) + ")"
	case sub == "promote" && errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("not promoted within --timeout %s: %v", budget, err)
	}
	return explain(err)
}

// memberAPI is what promoteWhenCaughtUp needs of a client.
type memberAPI interface {
	Members(ctx context.Context) ([]client.Member, error)
	PromoteMember(ctx context.Context, id string) ([]client.Member, error)
}

// promoteWhenCaughtUp asks for learner id's promotion until it succeeds. A
// refusal because the learner has not caught up, or because another change
// is in progress, is retried every interval, showing the learner's progress
// meanwhile; any other error, or the end of ctx, stops it.
func promoteWhenCaughtUp(ctx context.Context, cl memberAPI, id string, interval time.Duration, p *progress) ([]client.Member, error) {
	defer p.done()
	var refused error // the last refusal
	for {
		ms, err := cl.PromoteMember(ctx, id)
		if err == nil {
			return ms, nil
		}
		if ctx.Err() != nil && refused != nil {
			return nil, fmt.Errorf("%w (last refusal: %s)", ctx.Err(), explain(refused))
		}
		if !errors.Is(err, client.ErrNotCaughtUp) && !errors.Is(err, client.ErrChangeInProgress) {
			return nil, err
		}
		refused = err
		if ms, lerr := cl.Members(ctx); lerr == nil {
			for _, m := range ms {
				if m.ID == id {
					p.show(m)
				}
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last refusal: %s)", ctx.Err(), explain(err))
		case <-t.C:
		}
	}
}

// progress shows a learner's catch-up: a bar redrawn in place on a
// terminal, else a line each time it changes.
type progress struct {
	w        io.Writer
	terminal bool
	last     string // the last line shown
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, terminal: ok && isTerminal(f)}
}

// progressWidth is the width of the bar, in characters.
const progressWidth = 30

func (p *progress) show(m client.Member) {
	line := fmt.Sprintf("%s: match index %d, %d entries behind, %s", m.ID, m.MatchIndex, m.LagEntries, m.State)
	frac := 1.0
	if m.MatchIndex+m.LagEntries > 0 {
		frac = float64(m.MatchIndex) / float64(m.MatchIndex+m.LagEntries)
	}
	if m.State == "snapshot" && m.SnapshotBytesTotal > 0 {
		line += fmt.Sprintf(", snapshot %s of %s", formatBytes(m.SnapshotBytesSent), formatBytes(m.SnapshotBytesTotal))
		frac = float64(m.SnapshotBytesSent) / float64(m.SnapshotBytesTotal)
	}
	if line == p.last {
		return
	}
	p.last = line
	if !p.terminal {
		fmt.Fprintln(p.w, line)
		return
	}
	frac = min(max(frac, 0), 1)
	n := int(frac * progressWidth)
	bar := strings.Repeat("#", n) + strings.Repeat("-", progressWidth-n)
	// \r and clear-to-end-of-line redraw the bar in place.
	fmt.Fprintf(p.w, "\r[%s] %3.0f%% %s\x1b[K", bar, frac*100, line)
}

// done ends the bar's line on a terminal.
func (p *progress) done() {
	if p.terminal && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

// formatBytes renders n bytes for a person (binary units).
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

// formatMembers renders the member list as a table.
func formatMembers(ms []client.Member) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSTATE\tMATCH\tLAG\tSNAPSHOT\tPEER\tHTTP\tRESP")
	for _, m := range ms {
		snap := "-"
		if m.SnapshotBytesTotal > 0 {
			snap = formatBytes(m.SnapshotBytesSent) + " / " + formatBytes(m.SnapshotBytesTotal)
		}
		lag := fmt.Sprint(m.LagEntries)
		if m.State == "unknown" {
			lag = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.ID, roleOf(m.Role), m.State, m.MatchIndex, lag, snap,
			orDash(m.Peer), orDash(m.HTTP), orDash(m.RESP))
	}
	tw.Flush()
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
