// Command trireme is Trireme's one binary: it runs a node, a local cluster,
// and the client commands. It is wiring only; the logic lives in packages
// (internal/node, internal/api/..., internal/cluster, client).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is Trireme's version string.
const version = "0.1.0-dev"

type command struct {
	name    string
	summary string
	usage   string // after "trireme NAME"
	details string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"node", "run one node", "--id ID --data DIR --cluster ID=HOST:PORT,... [flags]",
			nodeDetails, runNode},
		{"up", "start a local cluster of node processes", "[--nodes 3] [--data ./trireme-data] [--base-port 7001] [flags]",
			upDetails, runUp},
		{"certs", "create a cluster CA and node certificates for peer TLS", "--dir DIR --nodes ID,... [--cluster-id ID]",
			certsDetails, runCerts},
		{"users", "add users and API tokens to a users file (trireme node --users)",
			"add NAME --role ROLE [--file FILE] [--token] | token NAME --file FILE [--label L]", usersDetails, runUsers},
		{"put", "write a key", "KEY VALUE [--ack MODE] [--replicas K] [--timeout DUR] [--node ID] [--context TOKEN] [--w Q]", putDetails, runPut},
		{"get", "read a key", "KEY [--consistency linearizable|stale|local] [--node ID] [--r Q] [--repair blocking|background] [-v]", getDetails, runGet},
		{"del", "delete a key", "KEY [--ack MODE] [--replicas K] [--timeout DUR] [--node ID] [--context TOKEN] [--w Q]", delDetails, runDel},
		{"incr", "add to a key's integer value (a counter)", "KEY [--by N] [--node ID]", incrDetails, runIncr},
		{"status", "show every node: role, term, indexes, lag (multi-leader: streams, conflicts, clocks; leaderless: ring, hints, repairs)", "", statusDetails, runStatus},
		{"conflicts", "show the conflict log of a multi-leader cluster", "[--node ID] [--after N] [--limit N]", conflictsDetails, runConflicts},
		{"rollbacks", "show the writes each node discarded (rollback journal)", "[--node ID]", rollbacksDetails, runRollbacks},
		{"transfer", "hand leadership to another node", "--to ID", transferDetails, runTransfer},
		{"member", "list, add, promote or remove cluster members",
			"list | add --id ID --peer HOST:PORT [--http HOST:PORT] [--resp HOST:PORT] [--learner] | promote ID [--timeout DUR] | remove ID",
			memberDetails, runMember},
		{"version", "print the version", "", "", func([]string, io.Writer, io.Writer) int { fmt.Println("trireme", version); return 0 }},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := lookup(args[1]); ok {
				commandHelp(stdout, c)
				return 0
			}
			fmt.Fprintf(stderr, "trireme: unknown command %q\n\n", args[1])
			usage(stderr)
			return 2
		}
		usage(stdout)
		return 0
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "trireme: unknown command %q (see trireme help)\n", name)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Trireme: a replicated key-value store with tunable durability.

Usage:
  trireme COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "trireme help COMMAND" or "trireme COMMAND --help" for a command's flags and examples.

A five-minute start:
  trireme up                               # three nodes on 127.0.0.1, data in ./trireme-data
  trireme put greeting hello --ack sync    # in another terminal
  trireme get greeting
  trireme status
  redis-cli -p 9001 GET greeting
`)
}

func commandHelp(w io.Writer, c command) {
	fmt.Fprintf(w, "trireme %s: %s\n\nUsage:\n  trireme %s %s\n", c.name, c.summary, c.name, c.usage)
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.details))
	}
	if fs := flagSetFor(c.name); fs != nil {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// flagSetFor returns the command's flag set, for help output.
func flagSetFor(name string) *flag.FlagSet {
	switch name {
	case "node":
		fs, _ := nodeFlags()
		return fs
	case "up":
		fs, _ := upFlags()
		return fs
	case "certs":
		fs, _ := certsFlags()
		return fs
	case "users":
		fs, _ := usersFlags()
		return fs
	case "put", "del":
		fs, _ := writeFlags(name)
		return fs
	case "get":
		fs, _ := getFlags()
		return fs
	case "incr":
		fs, _ := incrFlags()
		return fs
	case "conflicts":
		fs, _ := conflictsFlags()
		return fs
	case "status", "rollbacks", "transfer":
		fs, _ := adminFlags(name)
		return fs
	case "member":
		fs, _ := memberFlags()
		return fs
	}
	return nil
}

// parse parses flags that may come before, between or after positional
// arguments, and returns the positional ones. -h/--help prints the
// command's help and returns errHelp.
func parse(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			if c, ok := lookup(name); ok {
				commandHelp(stdout, c)
			}
			return nil, errHelp
		}
		if err != nil {
			fmt.Fprintf(stderr, "trireme %s: %v (see trireme %s --help)\n", name, err, name)
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

var errHelp = errors.New("help shown")

// exitParse turns a parse error into an exit code.
func exitParse(err error) int {
	if errors.Is(err, errHelp) {
		return 0
	}
	return 2
}
