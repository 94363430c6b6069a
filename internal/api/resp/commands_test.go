package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/auth"
	statecmd "github.com/trireme-db/trireme/internal/command"
)

// isErrorReply reports whether a reply rendered by readValue is an error
// (not a negative integer).
func isErrorReply(got string) bool {
	return len(got) > 1 && got[0] == '-' && (got[1] < '0' || got[1] > '9')
}

func wrongArgs(cmd string) string {
	return "-ERR wrong number of arguments for '" + cmd + "' command"
}

// mustFakeValue checks key's value in the service ("(nil)": absent).
func mustFakeValue(t *testing.T, f *apitest.Fake, key, want string) {
	t.Helper()
	got := "(nil)"
	if v, ok := f.Value(key); ok {
		got = string(v)
	}
	if got != want {
		t.Fatalf("service holds %s = %q, want %q", key, got, want)
	}
}

// TestStringCommands: the replies and errors of INCR, INCRBY, DECR,
// DECRBY, APPEND, STRLEN, SETNX, GETSET, GETDEL and MSET, Redis's.
func TestStringCommands(t *testing.T) {
	const (
		notInt   = "-" + errNotInteger
		overflow = "-" + errOverflow
		emptyKey = "-ERR empty key"
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"incr and decr", []step{
			{args: []string{"INCR", "n"}, want: "1"},
			{args: []string{"INCR", "n"}, want: "2"},
			{args: []string{"INCRBY", "n", "10"}, want: "12"},
			{args: []string{"DECR", "n"}, want: "11"},
			{args: []string{"DECRBY", "n", "20"}, want: "-9"},
			{args: []string{"INCRBY", "n", "-1"}, want: "-10"},
			{args: []string{"DECRBY", "n", "-10"}, want: "0"},
			{args: []string{"decr", "fresh"}, want: "-1"},
			{args: []string{"GET", "n"}, want: "0"},
		}},
		{"not an integer", []step{
			{args: []string{"SET", "s", "abc"}, want: "OK"},
			{args: []string{"INCR", "s"}, want: notInt},
			{args: []string{"DECR", "s"}, want: notInt},
			{args: []string{"SET", "s", "01"}, want: "OK"},
			{args: []string{"INCRBY", "s", "1"}, want: notInt},
			{args: []string{"SET", "s", " 1"}, want: "OK"},
			{args: []string{"INCR", "s"}, want: notInt},
			{args: []string{"SET", "s", "9223372036854775808"}, want: "OK"},
			{args: []string{"INCR", "s"}, want: notInt},
			{args: []string{"GET", "s"}, want: "9223372036854775808"},
			{args: []string{"INCRBY", "n", "x"}, want: notInt},
			{args: []string{"INCRBY", "n", "1.5"}, want: notInt},
			{args: []string{"INCRBY", "n", "+1"}, want: notInt},
			{args: []string{"INCRBY", "n", "01"}, want: notInt},
			{args: []string{"INCRBY", "n", "-0"}, want: notInt},
			{args: []string{"INCRBY", "n", ""}, want: notInt},
			{args: []string{"INCRBY", "n", "9223372036854775808"}, want: notInt},
			{args: []string{"DECRBY", "n", "1e3"}, want: notInt},
			{args: []string{"EXISTS", "n"}, want: "0"}, // bad arguments write nothing
		}},
		{"overflow", []step{
			{args: []string{"SET", "big", "9223372036854775807"}, want: "OK"},
			{args: []string{"INCR", "big"}, want: overflow},
			{args: []string{"INCRBY", "big", "-1"}, want: "9223372036854775806"},
			{args: []string{"INCRBY", "big", "2"}, want: overflow},
			{args: []string{"SET", "small", "-9223372036854775808"}, want: "OK"},
			{args: []string{"DECR", "small"}, want: overflow},
			{args: []string{"DECRBY", "small", "9223372036854775807"}, want: overflow},
			{args: []string{"INCRBY", "small", "-9223372036854775808"}, want: overflow},
			{args: []string{"DECRBY", "n", "-9223372036854775808"}, want: "-" + errDecrOverflow},
			{args: []string{"GET", "small"}, want: "-9223372036854775808"},
		}},
		{"append and strlen", []step{
			{args: []string{"STRLEN", "a"}, want: "0"},
			{args: []string{"APPEND", "a", "ab"}, want: "2"},
			{args: []string{"APPEND", "a", "cde"}, want: "5"},
			{args: []string{"APPEND", "a", ""}, want: "5"},
			{args: []string{"GET", "a"}, want: "abcde"},
			{args: []string{"STRLEN", "a"}, want: "5"},
			{args: []string{"SET", "n", "7"}, want: "OK"},
			{args: []string{"APPEND", "n", "0"}, want: "2"},
			{args: []string{"INCR", "n"}, want: "71"},
		}},
		{"setnx getset getdel", []step{
			{args: []string{"SETNX", "k", "v"}, want: "1"},
			{args: []string{"SETNX", "k", "w"}, want: "0"},
			{args: []string{"GET", "k"}, want: "v"},
			{args: []string{"GETSET", "k", "x"}, want: "v"},
			{args: []string{"GETSET", "j", "y"}, want: "(nil)"},
			{args: []string{"GET", "j"}, want: "y"},
			{args: []string{"GETDEL", "j"}, want: "y"},
			{args: []string{"GETDEL", "j"}, want: "(nil)"},
			{args: []string{"EXISTS", "j", "k"}, want: "1"},
		}},
		{"mset", []step{
			{args: []string{"MSET", "a", "1", "b", "2", "a", "3"}, want: "OK"},
			{args: []string{"GET", "a"}, want: "3"}, // the last pair wins, as in Redis
			{args: []string{"GET", "b"}, want: "2"},
			{args: []string{"MSET", "c", "1", "", "2"}, want: emptyKey},
			{args: []string{"EXISTS", "c"}, want: "0"},
			{args: []string{"MSET", "c", "1", "d"}, want: wrongArgs("mset")},
			{args: []string{"MSET", "c"}, want: wrongArgs("mset")},
			{args: []string{"MSET"}, want: wrongArgs("mset")},
			{args: []string{"EXISTS", "c", "d"}, want: "0"},
		}},
		{"empty keys", []step{
			{args: []string{"INCR", ""}, want: emptyKey},
			{args: []string{"DECRBY", "", "1"}, want: emptyKey},
			{args: []string{"APPEND", "", "x"}, want: emptyKey},
			{args: []string{"SETNX", "", "x"}, want: emptyKey},
			{args: []string{"GETSET", "", "x"}, want: emptyKey},
			{args: []string{"GETDEL", ""}, want: emptyKey},
			{args: []string{"SET", "", "x", "NX"}, want: emptyKey},
			{args: []string{"SET", "", "x"}, want: emptyKey},
			{args: []string{"STRLEN", ""}, want: emptyKey},
		}},
		{"wrong arity", []step{
			{args: []string{"INCR"}, want: wrongArgs("incr")},
			{args: []string{"INCR", "a", "b"}, want: wrongArgs("incr")},
			{args: []string{"DECR"}, want: wrongArgs("decr")},
			{args: []string{"INCRBY", "a"}, want: wrongArgs("incrby")},
			{args: []string{"DECRBY", "a", "1", "2"}, want: wrongArgs("decrby")},
			{args: []string{"APPEND", "a"}, want: wrongArgs("append")},
			{args: []string{"STRLEN"}, want: wrongArgs("strlen")},
			{args: []string{"STRLEN", "a", "b"}, want: wrongArgs("strlen")},
			{args: []string{"SETNX", "a"}, want: wrongArgs("setnx")},
			{args: []string{"GETSET", "a", "b", "c"}, want: wrongArgs("getset")},
			{args: []string{"GETDEL"}, want: wrongArgs("getdel")},
			{args: []string{"GETDEL", "a", "b"}, want: wrongArgs("getdel")},
			{args: []string{"TRIREME.SESSION", "a", "b"}, want: wrongArgs("trireme.session")},
			{args: []string{"PING"}, want: "PONG"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := apitest.NewFake("n2")
			_, addr := mustServeConfig(t, f, DefaultConfig())
			c, rd := mustDial(t, addr)
			mustScript(t, c, rd, tc.steps)
		})
	}
}

// TestSetConditions: SET with NX, XX and GET in every combination, on a
// key that exists and on one that does not.
func TestSetConditions(t *testing.T) {
	tests := []struct {
		exists bool
		opts   []string
		want   string // reply
		after  string // the key's value after ("(nil)": absent)
	}{
		{false, []string{"NX"}, "OK", "new"},
		{true, []string{"NX"}, "(nil)", "old"},
		{false, []string{"XX"}, "(nil)", "(nil)"},
		{true, []string{"XX"}, "OK", "new"},
		{false, []string{"GET"}, "(nil)", "new"},
		{true, []string{"GET"}, "old", "new"},
		{false, []string{"NX", "GET"}, "(nil)", "new"},
		{true, []string{"nx", "get"}, "old", "old"},
		{false, []string{"GET", "XX"}, "(nil)", "(nil)"},
		{true, []string{"XX", "GET"}, "old", "new"},
		{true, []string{"KEEPTTL", "XX", "KEEPTTL"}, "OK", "new"},
		{true, []string{"NX", "NX"}, "(nil)", "old"},
		{true, []string{"GET", "GET"}, "old", "new"},
		{true, []string{"NX", "XX"}, "-" + errSyntax, "old"},
		{false, []string{"XX", "GET", "NX"}, "-" + errSyntax, "(nil)"},
		{true, []string{"GET", "BOGUS"}, "-" + errSyntax, "old"},
		{true, []string{"NX", "EX", "10"}, "-ERR SET option EX is not supported: Trireme keys do not expire", "old"},
		{true, []string{"GET", "px"}, "-ERR SET option PX is not supported: Trireme keys do not expire", "old"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("exists=%v,%s", tc.exists, strings.Join(tc.opts, " ")), func(t *testing.T) {
			f := apitest.NewFake("n2")
			_, addr := mustServeConfig(t, f, DefaultConfig())
			c, rd := mustDial(t, addr)
			if tc.exists {
				mustScript(t, c, rd, []step{{args: []string{"SET", "k", "old"}, want: "OK"}})
			}
			mustScript(t, c, rd, []step{{args: append([]string{"SET", "k", "new"}, tc.opts...), want: tc.want}})
			mustFakeValue(t, f, "k", tc.after)
			if strings.HasPrefix(tc.want, "-") {
				return
			}
			// NX, XX and GET go to the state machine as one command.
			cmd := f.LastCommand()
			wantCond := statecmd.CondNone
			if slices.ContainsFunc(tc.opts, func(o string) bool { return strings.EqualFold(o, "nx") }) {
				wantCond = statecmd.CondNX
			}
			if slices.Contains(tc.opts, "XX") {
				wantCond = statecmd.CondXX
			}
			if cmd == nil || cmd.Op != statecmd.OpSet || cmd.Cond != wantCond ||
				cmd.ReturnOld != slices.ContainsFunc(tc.opts, func(o string) bool { return strings.EqualFold(o, "get") }) {
				t.Fatalf("the service got the command %+v", cmd)
			}
		})
	}
}

// TestCommandsUseAckMode: every new write goes through Exec with the
// connection's ack mode, and leaves its index for WAIT and its token for
// the session.
func TestCommandsUseAckMode(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	s := New(f, DefaultConfig())
	defer s.Close()
	c := newRecConn()
	rd := bufio.NewReader(c.buf)
	run := func(args ...string) string {
		t.Helper()
		argv := make([][]byte, len(args))
		for i, a := range args {
			argv[i] = []byte(a)
		}
		s.handle(c.conn, argv)
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		got, err := readValue(rd)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return got
	}
	if got := run("TRIREME.ACK", "semi-sync", "2"); got != "OK" {
		t.Fatalf("TRIREME.ACK: %q", got)
	}
	for _, cmd := range [][]string{
		{"INCR", "n"}, {"INCRBY", "n", "2"}, {"DECR", "n"}, {"DECRBY", "n", "2"}, {"APPEND", "a", "x"},
		{"SETNX", "s", "1"}, {"SET", "s", "2", "XX"}, {"GETSET", "s", "3"}, {"GETDEL", "s"}, {"MSET", "m", "1"},
		{"INCR", "a"}, // not an integer: the command still took a log entry
	} {
		_, before := f.LastWrite()
		got := run(cmd...)
		w, n := f.LastWrite()
		if n != before+1 || w.Default || w.Ack != (api.Ack{Mode: api.AckSemiSync, Replicas: 2}) {
			t.Fatalf("%q (%q): the service saw %d writes, the last with %+v", cmd, got, n-before, w)
		}
		last := f.Status().LastIndex
		if c.st.lastIndex != last || c.st.token != (api.Token{Term: 1, Index: last}) {
			t.Fatalf("%q: WAIT's index %d, token %v; the write's index is %d", cmd, c.st.lastIndex, c.st.token, last)
		}
	}
}

// TestCommandServiceErrors: a command's service error is answered as a
// SET's is.
func TestCommandServiceErrors(t *testing.T) {
	f := apitest.NewFake("n2")
	f.SetMaxValueBytes(4)
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	mustScript(t, c, rd, []step{
		{args: []string{"APPEND", "a", "abc"}, want: "3"},
		{args: []string{"APPEND", "a", "de"}, want: "-ERR value too large", prefix: true},
		{args: []string{"MSET", "a", "12345"}, want: "-ERR value too large", prefix: true},
		{args: []string{"GET", "a"}, want: "abc"},
	})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{api.ErrNoLeader, "-CLUSTERDOWN no leader"},
		{api.ErrNotLeader, "-READONLY"},
		{fmt.Errorf("x: %w", api.ErrOutcomeUnknown), "-UNKNOWN"},
		{fmt.Errorf("wrapped: %w", api.ErrNotInteger), "-" + errNotInteger},
		{fmt.Errorf("wrapped: %w", api.ErrOverflow), "-" + errOverflow},
	} {
		f.FailNext(tc.err)
		mustScript(t, c, rd, []step{{args: []string{"INCR", "n"}, want: tc.want, prefix: true}})
	}
	mustScript(t, c, rd, []step{{args: []string{"INCR", "n"}, want: "1"}})
}

// TestPipelinedCommands: the new commands pipelined among plain SETs (which
// are batched) are answered in order, each seeing the effects of those
// before it.
func TestPipelinedCommands(t *testing.T) {
	f := &batchFake{Fake: apitest.NewFake("n2")}
	rdb := mustClient(t, serveService(t, f))
	ctx := context.Background()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "a", "1", 0)
		p.Set(ctx, "a", "2", 0)
		p.Incr(ctx, "a") // 3
		p.Set(ctx, "a", "10", 0)
		p.Append(ctx, "a", "x") // 10x: 3
		p.Set(ctx, "b", "5", 0)
		p.Set(ctx, "c", "6", 0)
		p.IncrBy(ctx, "b", 2)     // 7
		p.GetSet(ctx, "c", "1")   // 6
		p.SetNX(ctx, "c", "9", 0) // false
		p.MSet(ctx, "d", "1", "e", "2")
		p.GetDel(ctx, "d")                      // 1
		p.SetNX(ctx, "f", "1", 0)               // true
		p.Do(ctx, "SET", "f", "2", "XX", "GET") // 1
		p.Incr(ctx, "a")                        // error: 10x
		p.DecrBy(ctx, "e", 3)                   // -1
		p.StrLen(ctx, "a")                      // 3
		p.Set(ctx, "g", "1", 0)
		p.Set(ctx, "h", "1", 0)
		p.Get(ctx, "f") // 2
		return nil
	})
	if len(cmds) != 20 {
		t.Fatalf("%d replies, want 20 (err %v)", len(cmds), err)
	}
	want := []string{"OK", "OK", "3", "OK", "3", "OK", "OK", "7", "6", "false", "OK", "1", "true", "1",
		"ERR " + api.ErrNotInteger.Error(), "-1", "3", "OK", "OK", "2"}
	for i, c := range cmds {
		got := ""
		switch c := c.(type) {
		case *redis.StatusCmd:
			got = c.Val()
		case *redis.IntCmd:
			got = fmt.Sprint(c.Val())
		case *redis.StringCmd:
			got = c.Val()
		case *redis.BoolCmd:
			got = fmt.Sprint(c.Val())
		case *redis.Cmd:
			got = fmt.Sprint(c.Val())
		}
		if c.Err() != nil {
			got = c.Err().Error()
		}
		if got != want[i] {
			t.Fatalf("reply %d to %v = %q, want %q", i, c.Args(), got, want[i])
		}
	}
	for k, v := range map[string]string{"a": "10x", "b": "7", "c": "1", "d": "(nil)", "e": "-1", "f": "2", "g": "1"} {
		mustFakeValue(t, f.Fake, k, v)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) == 0 || f.batches[0] != 2 {
		t.Fatalf("batches %v: want the first two SETs in one batch", f.batches)
	}
}

// TestNewCommandsNeedRoles: the new write commands need role write, as
// SET; STRLEN and the session commands need role read, as GET.
func TestNewCommandsNeedRoles(t *testing.T) {
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth = a
	_, addr := mustServeConfig(t, apitest.NewFake("n2"), cfg)
	writes := [][]string{{"INCR", "n"}, {"INCRBY", "n", "1"}, {"DECR", "n"}, {"DECRBY", "n", "1"},
		{"APPEND", "n", "1"}, {"SETNX", "s", "1"}, {"SET", "s", "1", "NX"}, {"GETSET", "s", "1"},
		{"GETDEL", "s"}, {"MSET", "m", "1"}}
	reader, readerRd := mustDial(t, addr)
	steps := []step{{args: []string{"AUTH", "reader", "reader pass"}, want: "OK"}}
	for _, w := range writes {
		steps = append(steps, step{args: w, want: noperm(strings.ToLower(w[0]))})
	}
	steps = append(steps,
		step{args: []string{"INCR"}, want: noperm("incr")}, // before the arity check
		step{args: []string{"STRLEN", "n"}, want: "0"},
		step{args: []string{"TRIREME.SESSION"}, want: ""},
		step{args: []string{"TRIREME.CONSISTENCY", "session"}, want: "OK"},
		step{args: []string{"GET", "n"}, want: "(nil)"},
	)
	mustScript(t, reader, readerRd, steps)

	writer, writerRd := mustDial(t, addr)
	mustScript(t, writer, writerRd, []step{{args: []string{"AUTH", "writer", "writer pass"}, want: "OK"}})
	for _, w := range writes {
		io.WriteString(writer, encode(w...))
		if got, err := readValue(writerRd); err != nil || isErrorReply(got) {
			t.Fatalf("writer %q: %q %v", w, got, err)
		}
	}
	unauth, unauthRd := mustDial(t, addr)
	mustScript(t, unauth, unauthRd, []step{
		{args: []string{"STRLEN", "n"}, want: "-" + errNoAuth},
		{args: []string{"TRIREME.SESSION"}, want: "-" + errNoAuth},
	})
}

// TestCommandTableRoles: a command flagged write needs role write, one
// flagged readonly role read, so that COMMAND and the roles agree.
func TestCommandTableRoles(t *testing.T) {
	s := New(apitest.NewFake(), DefaultConfig())
	defer s.Close()
	for name, d := range s.cmds {
		if slices.Contains(d.flags, "write") && d.action != auth.ActionWrite {
			t.Errorf("%s is flagged write but needs %v", name, d.action)
		}
		if slices.Contains(d.flags, "readonly") && d.action != auth.ActionRead {
			t.Errorf("%s is flagged readonly but needs %v", name, d.action)
		}
		if d.first > 0 && d.step == 0 {
			t.Errorf("%s has keys but no key step", name)
		}
	}
	for _, name := range []string{"incr", "incrby", "decr", "decrby", "append", "strlen", "setnx", "getset",
		"getdel", "mset", "trireme.session", "trireme.getctx", "trireme.setctx",
		"trireme.w", "trireme.r"} {
		if _, ok := s.cmds[name]; !ok {
			t.Errorf("%s is not in the command table", name)
		}
	}
	if d := s.cmds["mset"]; d.first != 1 || d.last != -1 || d.step != 2 || d.arity != -3 {
		t.Errorf("mset's key positions %d %d %d, arity %d: want 1 -1 2, -3 as Redis", d.first, d.last, d.step, d.arity)
	}
}
