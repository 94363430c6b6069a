package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/trireme-db/trireme/internal/auth"
)

const usersDetails = `
Manages a users file for trireme node --users, so that nobody writes
password hashes by hand.

  add NAME --role ROLE     adds a user with a password, read from the terminal
                           (twice, not echoed) or from the first line of
                           standard input; the password is stored as a bcrypt
                           hash. With --token, the user gets an API token
                           instead of a password.
  token NAME               adds an API token to an existing user.

A token is printed once, on standard output; the file keeps only its
SHA-256. Clients send it as "Authorization: Bearer TOKEN" (trireme put/get
... --token-file FILE, or $TRIREME_TOKEN; the Go client's Config.Token).
Passwords serve Redis clients (AUTH user password); HTTP takes tokens.
Without --file, add prints the user line instead of appending it.

Roles: read (reads, status, metrics), write (also writes and deletes),
admin (also leadership transfers). A node reads the file when it starts.

Examples:
  trireme users add alice --role admin --file users.txt
  echo "$PASSWORD" | trireme users add bob --role read --file users.txt
  trireme users add ci --role write --token --file users.txt > ci.token
  trireme users token alice --label laptop --file users.txt
`

type usersOpts struct {
	role, file, label string
	token             bool
	cost              int
}

func usersFlags() (*flag.FlagSet, *usersOpts) {
	o := &usersOpts{}
	fs := flag.NewFlagSet("users", flag.ContinueOnError)
	fs.StringVar(&o.role, "role", "", "add: the user's role: read, write or admin (required)")
	fs.StringVar(&o.file, "file", "", "users file to append to, created with mode 0600 if missing (required for tokens)")
	fs.BoolVar(&o.token, "token", false, "add: give the user an API token instead of a password")
	fs.StringVar(&o.label, "label", "", "a name for the token, shown in the node's logs")
	fs.IntVar(&o.cost, "cost", auth.DefaultCost, "add: bcrypt cost of the password hash (each +1 doubles the time to check it)")
	return fs, o
}

func runUsers(args []string, stdout, stderr io.Writer) int {
	fs, o := usersFlags()
	pos, err := parse(fs, "users", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "trireme users: %v\n", err)
		return code
	}
	if len(pos) != 2 || (pos[0] != "add" && pos[0] != "token") {
		return fail(2, errors.New("want: trireme users add NAME --role ROLE, or trireme users token NAME --file FILE"))
	}
	name := pos[1]
	if err := auth.CheckName(name); err != nil {
		return fail(2, err)
	}
	if o.label != "" {
		if err := auth.CheckName(o.label); err != nil {
			return fail(2, fmt.Errorf("--label: %w", err))
		}
	}
	if pos[0] == "token" {
		if o.role != "" {
			return fail(2, errors.New("--role applies to add; a token has its user's role"))
		}
		return runUsersToken(o, name, stdout, stderr, fail)
	}
	role, err := auth.ParseRole(o.role)
	if err != nil {
		return fail(2, fmt.Errorf("--role: %w", err))
	}
	if o.token {
		if o.file == "" {
			return fail(2, errors.New("--token needs --file: the token is shown once, and its digest must be stored"))
		}
		if err := auth.AppendLine(o.file, auth.UserLine(name, role, "")); err != nil {
			return fail(1, err)
		}
		return runUsersToken(o, name, stdout, stderr, fail)
	}
	pw, err := readPassword(name, os.Stdin, stderr)
	if err != nil {
		return fail(1, err)
	}
	hash, err := auth.HashPassword(pw, o.cost)
	if err != nil {
		return fail(1, err)
	}
	line := auth.UserLine(name, role, hash)
	if o.file == "" {
		fmt.Fprintln(stdout, line)
		return 0
	}
	if err := auth.AppendLine(o.file, line); err != nil {
		return fail(1, err)
	}
	fmt.Fprintf(stderr, "added user %s (role %s) to %s\n", name, role, o.file)
	return 0
}

func runUsersToken(o *usersOpts, name string, stdout, stderr io.Writer, fail func(int, error) int) int {
	if o.file == "" {
		return fail(2, errors.New("token needs --file: the token is shown once, and its digest must be stored"))
	}
	if u, err := auth.LoadUsers(o.file); err == nil {
		if _, ok := u.Lookup(name); !ok {
			return fail(1, fmt.Errorf("%s has no user %s; add it first: trireme users add %s --role ROLE --file %s", o.file, name, name, o.file))
		}
	}
	tok, digest, err := auth.NewToken(nil)
	if err != nil {
		return fail(1, err)
	}
	if err := auth.AppendLine(o.file, auth.TokenLine(name, digest, o.label)); err != nil {
		return fail(1, err)
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "added a token of %s to %s. It is shown only now: give it to the client (--token-file FILE, or $%s); restart the nodes to load it\n",
		name, o.file, envToken)
	return 0
}

// readPassword reads the password from the terminal, twice and without
// echo, or else from the first line of in.
func readPassword(name string, in *os.File, stderr io.Writer) (string, error) {
	if !isTerminal(in) {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	var pws [2]string
	for i, prompt := range []string{"Password for " + name + ": ", "Again: "} {
		fmt.Fprint(stderr, prompt)
		pw, _, err := readHidden(in)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		pws[i] = pw
	}
	if pws[0] != pws[1] {
		return "", errors.New("the two passwords differ")
	}
	return pws[0], nil
}
