package resp

import (
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/auth"
)

func msDuration(ms int64) time.Duration {
	const max = int64(time.Duration(1<<62) / time.Millisecond)
	if ms > max {
		ms = max
	}
	return time.Duration(ms) * time.Millisecond
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// globMatch matches Redis-style glob patterns (*, ?, [...]); a malformed
// pattern matches only itself.
func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	if err != nil {
		return pattern == s
	}
	return ok
}

// commandTable lists every command the server knows, with Redis's arity
// convention and key positions (for COMMAND), and what each does for roles
// (internal/auth's doc lists the same classes).
func (s *Server) commandTable() map[string]*command {
	const (
		read  = auth.ActionRead
		write = auth.ActionWrite
		admin = auth.ActionAdmin
	)
	list := []*command{
		{name: "ping", arity: -1, flags: []string{"fast", "no_auth"}, run: s.cmdPing},
		{name: "auth", arity: -2, flags: []string{"noscript", "loading", "stale", "fast", "no_auth"}, run: s.cmdAuth},
		{name: "hello", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth"}, run: s.cmdHello},
		{name: "quit", arity: -1, flags: []string{"fast", "no_auth"}, run: s.cmdQuit},
		{name: "echo", arity: 2, flags: []string{"fast"}, action: read, run: func(c *conn, _ *connState, a [][]byte) { c.WriteBulk(a[1]) }},
		{name: "get", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, action: read, run: s.cmdGet},
		{name: "mget", arity: -2, flags: []string{"readonly", "fast"}, first: 1, last: -1, step: 1, action: read, run: s.cmdMGet},
		{name: "exists", arity: -2, flags: []string{"readonly", "fast"}, first: 1, last: -1, step: 1, action: read, run: s.cmdExists},
		{name: "strlen", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, action: read, run: s.cmdStrlen},
		{name: "ttl", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, action: read, run: s.cmdTTL},
		{name: "set", arity: -3, flags: []string{"write", "denyoom"}, first: 1, last: 1, step: 1, action: write, run: s.cmdSet},
		{name: "setnx", arity: 3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdSetNX},
		{name: "getset", arity: 3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdGetSet},
		{name: "getdel", arity: 2, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdGetDel},
		{name: "mset", arity: -3, flags: []string{"write", "denyoom"}, first: 1, last: -1, step: 2, action: write, run: s.cmdMSet},
		{name: "incr", arity: 2, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdIncr},
		{name: "incrby", arity: 3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdIncrBy},
		{name: "decr", arity: 2, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdDecr},
		{name: "decrby", arity: 3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, action: write, run: s.cmdDecrBy},
		{name: "append", arity: 3, flags: []string{"write", "denyoom"}, first: 1, last: 1, step: 1, action: write, run: s.cmdAppend},
		{name: "del", arity: -2, flags: []string{"write"}, first: 1, last: -1, step: 1, action: write, run: s.cmdDel},
		{name: "dbsize", arity: 1, flags: []string{"readonly", "fast"}, action: read, run: s.cmdDBSize},
		{name: "info", arity: -1, flags: []string{"loading", "stale"}, action: read, run: s.cmdInfo},
		{name: "role", arity: 1, flags: []string{"loading", "stale", "fast"}, action: read, run: s.cmdRole},
		{name: "wait", arity: 3, flags: []string{}, action: write, run: s.cmdWait},
		{name: "waitaof", arity: 4, flags: []string{}, action: write, run: s.cmdWaitAOF},
		{name: "client", arity: -2, flags: []string{"loading", "stale"}, action: read, run: s.cmdClient}, // CLIENT ACK: write
		{name: "command", arity: -1, flags: []string{"loading", "stale"}, action: read, run: s.cmdCommand},
		{name: "config", arity: -2, flags: []string{"admin", "loading", "stale"}, action: read, run: s.cmdConfig}, // GET only
		{name: "select", arity: 2, flags: []string{"loading", "stale", "fast"}, action: read, run: s.cmdSelect},
		{name: "readonly", arity: 1, flags: []string{"fast"}, action: read, run: s.cmdReadOnly},
		{name: "readwrite", arity: 1, flags: []string{"fast"}, action: read, run: s.cmdReadOnly},
		{name: "trireme.ack", arity: -1, flags: []string{"fast"}, action: write, run: s.cmdAck},
		{name: "trireme.consistency", arity: -1, flags: []string{"fast"}, action: read, run: s.cmdConsistency},
		{name: "trireme.session", arity: -1, flags: []string{"fast"}, action: read, run: s.cmdSession},
		{name: "trireme.transfer", arity: -2, flags: []string{"admin"}, action: admin, run: s.cmdTransfer},
		{name: "trireme.getctx", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, action: read, run: s.cmdGetCtx},
		{name: "trireme.setctx", arity: 4, flags: []string{"write", "denyoom"}, first: 1, last: 1, step: 1, action: write, run: s.cmdSetCtx},
		{name: "trireme.w", arity: -1, flags: []string{"fast"}, action: write, run: s.cmdW},
		{name: "trireme.r", arity: -1, flags: []string{"fast"}, action: read, run: s.cmdR},
	}
	for _, c := range list {
		if c.action != 0 {
			c.needs = c.action.Needs()
		}
	}
	m := make(map[string]*command, len(list))
	for _, c := range list {
		m[c.name] = c
	}
	return m
}

func writeCommandInfo(c *conn, d *command) {
	c.WriteArray(6)
	c.WriteBulkString(d.name)
	c.WriteInt(d.arity)
	c.WriteArray(len(d.flags))
	for _, f := range d.flags {
		c.WriteString(f)
	}
	c.WriteInt(d.first)
	c.WriteInt(d.last)
	c.WriteInt(d.step)
}

func (s *Server) cmdCommand(c *conn, st *connState, args [][]byte) {
	names := slices.Sorted(maps.Keys(s.cmds))
	if len(args) == 1 {
		c.WriteArray(len(names))
		for _, n := range names {
			writeCommandInfo(c, s.cmds[n])
		}
		return
	}
	switch lower(args[1]) {
	case "count":
		c.WriteInt(len(s.cmds))
	case "docs":
		// Docs are optional for clients (redis-cli uses them for hints);
		// an empty map means "no docs".
		c.WriteArray(0)
	case "info":
		c.WriteArray(len(args) - 2)
		for _, a := range args[2:] {
			if d, ok := s.cmds[lower(a)]; ok {
				writeCommandInfo(c, d)
			} else {
				c.WriteNull()
			}
		}
	case "list":
		c.WriteArray(len(names))
		for _, n := range names {
			c.WriteBulkString(n)
		}
	default:
		c.WriteError(fmt.Sprintf("ERR unknown subcommand '%s'. Try COMMAND HELP.", clip(args[1])))
	}
}

// hostPort splits a RESP address for INFO and ROLE; a missing address gives
// the node id and port 0.
func (s *Server) hostPort(id, addr string) (string, int) {
	if addr == "" {
		addr = s.cfg.PeerRESP[id]
	}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		port, _ := strconv.Atoi(p)
		return h, port
	}
	return id, 0
}

// onlineMillis is how recently a follower must have been heard from to be
// listed as a connected replica.
const onlineMillis = 5000

func connected(fs []api.FollowerInfo) []api.FollowerInfo {
	var out []api.FollowerInfo
	for _, f := range fs {
		if f.LastContactMs >= 0 && f.LastContactMs < onlineMillis {
			out = append(out, f)
		}
	}
	return out
}

// multiLeader reports whether st is a multi-leader node's: every node takes
// writes, so to Redis clients each is a master with no replicas.
func multiLeader(st api.NodeStatus) bool { return st.Mode == "multi-leader" }

// multiLeaderInfo is INFO replication on a multi-leader node: Redis's
// master fields, then one line per peer stream and the conflict counts.
func multiLeaderInfo(b *strings.Builder, st api.NodeStatus) {
	fmt.Fprintf(b, "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:%040x\r\nmaster_repl_offset:%d\r\n", 0, st.LastIndex)
	fmt.Fprintf(b, "trireme_mode:multi-leader\r\ntrireme_peers:%d\r\n", len(st.Streams))
	for i, p := range st.Streams {
		fmt.Fprintf(b, "trireme_peer%d:id=%s,peer_acked=%d,applied=%d,known=%d,lag_entries=%d,lag_ms=%d,last_contact_ms=%d,clock_offset_ms=%.3f\r\n",
			i, p.Peer, p.PeerAcked, p.Applied, p.Known, p.LagEntries, p.LagMillis, p.LastContactMs, p.ClockOffsetMs)
	}
	fmt.Fprintf(b, "trireme_conflicts:%d\r\ntrireme_clock_clamps:%d\r\n", st.Conflicts, st.ClockClamps)
}

func (s *Server) replicationInfo(b *strings.Builder, st api.NodeStatus) {
	b.WriteString("# Replication\r\n")
	if multiLeader(st) {
		multiLeaderInfo(b, st)
	} else if leaderless(st) {
		leaderlessInfo(b, st)
	} else if st.Role == "leader" {
		fs := connected(st.Followers)
		fmt.Fprintf(b, "role:master\r\nconnected_slaves:%d\r\n", len(fs))
		learners := 0
		for i, f := range fs {
			h, p := s.hostPort(f.ID, f.RESP)
			role := api.RoleVoter
			if f.Learner() {
				role = api.RoleLearner
				learners++
			}
			// Redis's fields, then Trireme's: clients that parse the line
			// as key=value pairs skip the ones they do not know.
			fmt.Fprintf(b, "slave%d:ip=%s,port=%d,state=online,offset=%d,lag=%d,trireme_id=%s,trireme_role=%s,trireme_lag_entries=%d\r\n",
				i, h, p, f.MatchIndex, f.LastContactMs/1000, f.ID, role, f.LagEntries)
		}
		fmt.Fprintf(b, "trireme_connected_learners:%d\r\n", learners)
		fmt.Fprintf(b, "master_failover_state:no-failover\r\nmaster_replid:%040x\r\nmaster_repl_offset:%d\r\n", st.Term, st.LastIndex)
	} else {
		h, p := s.hostPort(st.Leader, st.LeaderRESP)
		link := "up"
		if st.Leader == "" {
			link, h, p = "down", "", 0
		}
		fmt.Fprintf(b, "role:slave\r\nmaster_host:%s\r\nmaster_port:%d\r\nmaster_link_status:%s\r\n", h, p, link)
		fmt.Fprintf(b, "master_last_io_seconds_ago:%d\r\nmaster_sync_in_progress:0\r\n", st.LagMillis/1000)
		fmt.Fprintf(b, "slave_repl_offset:%d\r\nslave_read_only:0\r\nreplica_announced:1\r\nconnected_slaves:0\r\n", st.AppliedIndex)
		fmt.Fprintf(b, "master_replid:%040x\r\nmaster_repl_offset:%d\r\n", st.Term, st.AppliedIndex)
	}
	fmt.Fprintf(b, "trireme_node:%s\r\ntrireme_role:%s\r\ntrireme_term:%d\r\ntrireme_leader:%s\r\n", st.ID, st.Role, st.Term, st.Leader)
	fmt.Fprintf(b, "trireme_last_index:%d\r\ntrireme_commit_index:%d\r\ntrireme_applied_index:%d\r\n", st.LastIndex, st.CommitIndex, st.AppliedIndex)
}

var infoSections = []string{"server", "clients", "persistence", "replication", "keyspace"}

func (s *Server) cmdInfo(c *conn, st *connState, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		switch sec := lower(a); sec {
		case "all", "everything", "default":
			for _, n := range infoSections {
				want[n] = true
			}
		default:
			want[sec] = true
		}
	}
	if len(want) == 0 {
		for _, n := range infoSections {
			want[n] = true
		}
	}
	status := s.svc.Status()
	var b strings.Builder
	for _, sec := range infoSections {
		if !want[sec] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		switch sec {
		case "server":
			fmt.Fprintf(&b, "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\ntrireme_version:%s\r\ntrireme_node:%s\r\n",
				RedisVersion, s.cfg.Version, status.ID)
			if a := s.listenAddr(); a != "" {
				if _, p, err := net.SplitHostPort(a); err == nil {
					fmt.Fprintf(&b, "tcp_port:%s\r\n", p)
				}
			}
		case "clients":
			fmt.Fprintf(&b, "# Clients\r\nconnected_clients:%d\r\nmaxclients:%d\r\n", s.conns.Load(), s.cfg.MaxClients)
			fmt.Fprintf(&b, "rejected_connections:%d\r\ntrireme_pending_bytes:%d\r\ntrireme_max_pending_bytes:%d\r\n",
				s.rejected.Load(), s.pending.inUse(), s.pending.limit)
		case "persistence":
			b.WriteString("# Persistence\r\nloading:0\r\naof_enabled:1\r\nrdb_bgsave_in_progress:0\r\n")
		case "replication":
			s.replicationInfo(&b, status)
		case "keyspace":
			b.WriteString("# Keyspace\r\n")
			if n, err := s.svc.Count(s.ctx); err == nil && n > 0 {
				fmt.Fprintf(&b, "db0:keys=%d,expires=0,avg_ttl=0\r\n", n)
			}
		}
	}
	c.WriteBulkString(b.String())
}

func (s *Server) cmdRole(c *conn, st *connState, args [][]byte) {
	status := s.svc.Status()
	if multiLeader(status) || leaderless(status) {
		// Every node takes writes: a master with no replicas.
		c.WriteArray(3)
		c.WriteBulkString("master")
		c.WriteInt64(int64(status.LastIndex))
		c.WriteArray(0)
		return
	}
	if status.Role == "leader" {
		fs := connected(status.Followers)
		c.WriteArray(3)
		c.WriteBulkString("master")
		c.WriteInt64(int64(status.LastIndex))
		c.WriteArray(len(fs))
		for _, f := range fs {
			// Learners too, as Redis lists every replica; their lag is the
			// master offset minus theirs. The entries keep Redis's three
			// fields: clients read them by position.
			h, p := s.hostPort(f.ID, f.RESP)
			c.WriteArray(3)
			c.WriteBulkString(h)
			c.WriteBulkString(strconv.Itoa(p))
			c.WriteBulkString(strconv.FormatUint(f.MatchIndex, 10))
		}
		return
	}
	h, p := s.hostPort(status.Leader, status.LeaderRESP)
	state := "connected"
	if status.Leader == "" {
		state, h, p = "connect", "", 0
	}
	c.WriteArray(5)
	c.WriteBulkString("slave")
	c.WriteBulkString(h)
	c.WriteInt(p)
	c.WriteBulkString(state)
	c.WriteInt64(int64(status.AppliedIndex))
}
