package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// renderReply reads one reply and renders it whole: a status without its
// '+', an error with its '-', an integer's digits, a bulk string quoted
// (%q), "(nil)", and an array as [elements separated by spaces].
func renderReply(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "(nil)", err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(rd, b); err != nil {
			return "", err
		}
		return strconv.Quote(string(b[:n])), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		elems := make([]string, 0, max(n, 0))
		for range max(n, 0) {
			e, err := renderReply(rd)
			if err != nil {
				return "", err
			}
			elems = append(elems, e)
		}
		return "[" + strings.Join(elems, " ") + "]", nil
	}
	return "", fmt.Errorf("unknown reply %q", line)
}

// mustRendered sends each step's command and checks its whole reply, as
// renderReply renders it.
func mustRendered(t *testing.T, c net.Conn, rd *bufio.Reader, steps []step) {
	t.Helper()
	for _, s := range steps {
		if _, err := io.WriteString(c, encode(s.args...)); err != nil {
			t.Fatalf("%q: %v", s.args, err)
		}
		got, err := renderReply(rd)
		if err != nil {
			t.Fatalf("%q: reading the reply: %v", s.args, err)
		}
		if got != s.want && !(s.prefix && strings.HasPrefix(got, s.want)) {
			t.Fatalf("%q = %s, want %s", s.args, got, s.want)
		}
	}
}

// TestGetCtxSetCtx: TRIREME.GETCTX answers the context and every value,
// TRIREME.SETCTX writes with the context and the connection's ack mode,
// and GET still answers one value.
func TestGetCtxSetCtx(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)

	// Single-leader: no context, one value or none.
	mustRendered(t, c, rd, []step{
		{args: []string{"SET", "k", "v"}, want: "OK"},
		{args: []string{"TRIREME.GETCTX", "k"}, want: `["" ["v"]]`},
		{args: []string{"trireme.getctx", "absent"}, want: `["" []]`},
	})

	f.SetReadContext("ctx-1")
	f.SetSiblings("s",
		api.Sibling{Value: []byte("left"), Node: "n1", Counter: 1, Time: "1.0"},
		api.Sibling{Value: []byte{0xff, '\r', '\n'}, Node: "n2", Counter: 2, Time: "1.1"})
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.GETCTX", "s"}, want: `["ctx-1" ["left" "\xff\r\n"]]`},
		{args: []string{"GET", "s"}, want: `"left"`},
		{args: []string{"MGET", "s", "k"}, want: `["left" "v"]`},
		{args: []string{"TRIREME.GETCTX", "k"}, want: `["ctx-1" ["v"]]`},
		{args: []string{"TRIREME.GETCTX", "absent"}, want: `["ctx-1" []]`},
		{args: []string{"TRIREME.ACK", "2"}, want: "OK"},
		{args: []string{"TRIREME.SETCTX", "s", "ctx-1", "merged"}, want: "OK"},
		{args: []string{"TRIREME.GETCTX", "s"}, want: `["ctx-1" ["merged"]]`},
	})
	w, _ := f.LastWrite()
	if w.Context != "ctx-1" || w.Default || w.Ack != (api.Ack{Mode: api.AckSemiSync, Replicas: 2}) {
		t.Fatalf("SETCTX gave the service %+v", w)
	}
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.SETCTX", "s", "", "blind"}, want: "OK"},
		{args: []string{"GET", "s"}, want: `"blind"`},
	})
	if w, _ := f.LastWrite(); w.Context != "" {
		t.Fatalf("SETCTX with an empty context passed %q", w.Context)
	}

	// Refusals, and the service's own.
	_, n := f.LastWrite()
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.GETCTX"}, want: wrongArgs("trireme.getctx")},
		{args: []string{"TRIREME.GETCTX", "a", "b"}, want: wrongArgs("trireme.getctx")},
		{args: []string{"TRIREME.SETCTX", "a", "b"}, want: wrongArgs("trireme.setctx")},
		{args: []string{"TRIREME.SETCTX", "a", "b", "c", "d"}, want: wrongArgs("trireme.setctx")},
		{args: []string{"TRIREME.SETCTX", "a", strings.Repeat("c", maxContextBytes+1), "v"}, want: "-ERR causal context of 4097 bytes (at most 4096)"},
	})
	if _, m := f.LastWrite(); m != n {
		t.Fatalf("refused SETCTX reached the service: %d writes", m-n)
	}
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.SETCTX", "a", strings.Repeat("c", maxContextBytes), "v"}, want: "OK"},
		{args: []string{"TRIREME.SETCTX", "", "c", "v"}, want: "-ERR empty key"},
	})
	f.FailNext(fmt.Errorf("%w: from another cluster", api.ErrBadContext))
	mustRendered(t, c, rd, []step{{args: []string{"TRIREME.SETCTX", "a", "c", "v"}, want: "-ERR invalid causal context", prefix: true}})
	f.FailNext(api.ErrNoLeader)
	mustRendered(t, c, rd, []step{{args: []string{"TRIREME.GETCTX", "a"}, want: "-CLUSTERDOWN", prefix: true}})

	// Both are in the command table, with their key positions.
	mustRendered(t, c, rd, []step{{args: []string{"COMMAND", "INFO", "trireme.getctx", "trireme.setctx"},
		want: `[["trireme.getctx" 2 [readonly fast] 1 1 1] ["trireme.setctx" 4 [write denyoom] 1 1 1]]`}})
}

// TestCtxCommandsNeedRoles: GETCTX needs role read, as GET; SETCTX role
// write, as SET.
func TestCtxCommandsNeedRoles(t *testing.T) {
	a, _ := mustAuthenticator(t)
	cfg := DefaultConfig()
	cfg.Auth = a
	_, addr := mustServeConfig(t, apitest.NewFake("n2"), cfg)
	for _, tc := range []struct {
		user, pass     string
		getctx, setctx string
	}{
		{"", "", "-" + errNoAuth, "-" + errNoAuth},
		{"reader", "reader pass", `["" []]`, noperm("trireme.setctx")},
		{"writer", "writer pass", `["" []]`, "OK"},
	} {
		c, rd := mustDial(t, addr)
		if tc.user != "" {
			mustRendered(t, c, rd, []step{{args: []string{"AUTH", tc.user, tc.pass}, want: "OK"}})
		}
		mustRendered(t, c, rd, []step{
			{args: []string{"TRIREME.GETCTX", "k"}, want: tc.getctx},
			{args: []string{"TRIREME.SETCTX", "w", "c", "v"}, want: tc.setctx},
		})
	}
}

// TestAckWords: TRIREME.ACK and CLIENT ACK take local, all and a number K.
func TestAckWords(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	_, addr := mustServeConfig(t, f, DefaultConfig())
	c, rd := mustDial(t, addr)
	for _, tc := range []struct {
		cmd   []string
		want  api.Ack
		query string
	}{
		{[]string{"TRIREME.ACK", "local"}, api.Ack{Mode: api.AckAsync}, "async"},
		{[]string{"TRIREME.ACK", "ALL"}, api.Ack{Mode: api.AckSync}, "sync"},
		{[]string{"TRIREME.ACK", "2"}, api.Ack{Mode: api.AckSemiSync, Replicas: 2}, "semi-sync 2"},
		{[]string{"CLIENT", "ACK", "1"}, api.Ack{Mode: api.AckSemiSync, Replicas: 1}, "semi-sync 1"},
		{[]string{"client", "ack", "local"}, api.Ack{Mode: api.AckAsync}, "async"},
	} {
		mustRendered(t, c, rd, []step{
			{args: tc.cmd, want: "OK"},
			{args: []string{"TRIREME.ACK"}, want: strconv.Quote(tc.query)},
			{args: []string{"SET", "k", "v"}, want: "OK"},
		})
		if w, _ := f.LastWrite(); w.Default || w.Ack != tc.want {
			t.Fatalf("after %q the service saw %+v, want %+v", tc.cmd, w, tc.want)
		}
	}
	mustRendered(t, c, rd, []step{
		{args: []string{"TRIREME.ACK", "0"}, want: "-" + errReplicaCount},
		{args: []string{"TRIREME.ACK", "1001"}, want: "-" + errReplicaCount},
		{args: []string{"TRIREME.ACK", "99999999999999999999"}, want: "-" + errReplicaCount},
		{args: []string{"TRIREME.ACK", "2", "1"}, want: "-ERR syntax error", prefix: true},
		{args: []string{"TRIREME.ACK", "local", "1"}, want: "-ERR a replica count applies only to semi-sync, not async"},
		{args: []string{"TRIREME.ACK", "-1"}, want: "-ERR unknown ack mode '-1'", prefix: true},
		{args: []string{"TRIREME.ACK"}, want: `"async"`}, // unchanged by the refusals
	})
}

// mlService reports a multi-leader node's status.
type mlService struct {
	api.Service
	st api.NodeStatus
}

func (m mlService) Status() api.NodeStatus { return m.st }

func TestMultiLeaderInfoAndRole(t *testing.T) {
	st := api.NodeStatus{ID: "n1", Role: "multi-leader", Mode: "multi-leader", LastIndex: 7, Conflicts: 3, ClockClamps: 1,
		Streams: []api.StreamInfo{{Peer: "n2", PeerAcked: 7, Applied: 5, Known: 9, LagEntries: 4, LagMillis: 120, LastContactMs: 10, ClockOffsetMs: 1.5}}}
	_, addr := mustServeConfig(t, mlService{apitest.NewFake("n2"), st}, DefaultConfig())
	rdb := mustClient(t, addr)
	ctx := context.Background()
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"role:master", "connected_slaves:0", "master_repl_offset:7", "trireme_mode:multi-leader",
		"trireme_peer0:id=n2,peer_acked=7,applied=5,known=9,lag_entries=4,lag_ms=120,last_contact_ms=10,clock_offset_ms=1.500",
		"trireme_conflicts:3", "trireme_clock_clamps:1"} {
		if !strings.Contains(info, want) {
			t.Fatalf("INFO replication lacks %q:\n%s", want, info)
		}
	}
	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) != 3 || role[0] != "master" || role[1] != int64(7) {
		t.Fatalf("ROLE: %v %v", role, err)
	}
}
