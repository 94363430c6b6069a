// Package resp serves the Redis protocol (RESP2) on top of an api.Service, so
// that redis-cli, redis-benchmark and Redis client libraries work against any
// Trireme node unchanged.
//
// It owns the per-connection state (ack mode, read consistency, the index of
// the connection's last write for WAIT, client name) and the translation of
// service errors into Redis-style error replies. It promises: a malformed
// frame, or one over a limit of Config, gets an "ERR Protocol error" reply
// and closes only that connection, and no length a client declares is
// allocated or looped over before it is checked against its limit; the
// commands of all connections together hold at most Config.MaxPendingBytes
// (a command that would go over gets an error and closes its connection),
// and at most Config.MaxClients connections are open; an
// unknown command or a wrong number of arguments gets an error reply like
// Redis's and the connection stays usable; pipelined commands are answered in
// order, with one write per batch; nothing a client sends panics the server,
// and a panic in a command's handler closes only its connection.
//
// With Config.Auth enabled, a connection may send only AUTH, HELLO, PING
// and QUIT until it authenticates (anything else gets Redis's NOAUTH), and
// then only the commands its role allows (NOPERM); without it every client
// may send everything, as before auth existed. With Config.TLS the port
// speaks TLS only. See DESIGN.md.
//
// Trireme-specific commands (see docs/API.md):
//
//	TRIREME.ACK [default|async|semi-sync [K]|sync|majority|local|all|K]  (alias CLIENT ACK ...)
//	TRIREME.CONSISTENCY [linearizable|stale|session|bounded MAXLAG_MS [MAXLAG_ENTRIES]]
//	                                                         (READONLY = stale, READWRITE = linearizable)
//	TRIREME.SESSION [token]                                  (the connection's session token; session.go)
//	TRIREME.TRANSFER node-id [timeout-ms]                    (role admin)
//	TRIREME.GETCTX key                                       (multi-leader: [context, [value ...]]; versions.go)
//	TRIREME.SETCTX key context value                         (multi-leader: SET carrying a read's context)
//	TRIREME.W [Q|default]                                    (leaderless: each write's W; leaderless.go)
//	TRIREME.R [Q|default] [blocking|background]              (leaderless: each read's R and read repair)
//
// The ack words local (= async) and all (= sync), and a number K alone
// (= semi-sync K), are the multi-leader ones. On a multi-leader node GET and
// every other read answer a key's first concurrent value, so that
// unchanged clients keep working; TRIREME.GETCTX answers every value and
// the causal context, which TRIREME.SETCTX sends back with a write that
// supersedes them.
//
// On a leaderless node, Q is a number from 1, one, quorum or all: how many
// of a key's replicas must hold each write (W) or answer each read (R).
//
// Read-modify-write commands (INCR, APPEND, SET NX/XX/GET, GETSET, GETDEL,
// MSET, ...) are state-machine commands given to Service.Exec, so each is
// atomic (commands.go).
package resp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/auth"
)

// RedisVersion is the Redis version the server reports (INFO, HELLO). Some
// clients enable features by version; 7.2 is what the command set mimics.
const RedisVersion = "7.2.0"

// Config configures a Server. The limits bound what one client command may
// make the server read and hold; a command over a limit gets "-ERR Protocol
// error: ..." and its connection is closed, as in Redis. MaxClients and
// MaxPendingBytes bound all connections together. Zero (or negative) limits
// take their defaults.
type Config struct {
	// Logger receives connection errors. nil = discard.
	Logger *slog.Logger
	// PeerRESP maps node ids to their RESP addresses ("host:port"); used to
	// describe followers in INFO replication and ROLE. Optional: a follower
	// without an entry is shown with ip=<its id> and port=0.
	PeerRESP map[string]string
	// Version is Trireme's version string, shown in INFO server.
	Version string

	// Auth checks AUTH and HELLO ... AUTH, and each command against the
	// connection's role. nil, or one that is not Enabled, serves every
	// client everything, as before auth existed.
	Auth *auth.Authenticator
	// TLS, if set, makes the server speak TLS only (like Redis's tls-port
	// with port 0): each connection's handshake runs on its own goroutine,
	// within TLSHandshakeTimeout. nil = plain TCP.
	TLS *tls.Config
	// TLSHandshakeTimeout bounds a TLS handshake, so that a client that
	// connects and sends nothing holds its connection that long at most.
	// Default 10 s.
	TLSHandshakeTimeout time.Duration

	// MaxArgs is the most arguments (array elements) one command may have.
	// Default 1 Mi, Redis's historical limit.
	MaxArgs int
	// MaxBulkBytes is the longest bulk string (one key or value) accepted,
	// Redis's proto-max-bulk-len. Default: the service's MaxValueBytes plus
	// DefaultBulkSlackBytes, so that a value a little too long still reaches
	// the service and gets its "value too large" error on a live connection,
	// while a declared length far beyond anything storable is refused from
	// its header, before a byte of it is read. (Redis's 512 MiB would let
	// each connection make the node buffer half a gigabyte it must refuse.)
	MaxBulkBytes int
	// MaxInlineBytes is the longest inline command line (telnet style).
	// Default 64 KiB, as Redis.
	MaxInlineBytes int
	// MaxCommandBytes bounds one command's arguments together (their bytes,
	// plus 40 bytes of bookkeeping per argument), like Redis's
	// client-query-buffer-limit: without it MaxArgs bulk strings of
	// MaxBulkBytes each would be terabytes. Default: twice the bulk limit
	// (plus bookkeeping), at least DefaultMinCommandBytes (4 MiB): room for
	// a SET of a key and a value at the bulk limit each, the largest command
	// there is, and for MGET, DEL or EXISTS of some 80,000 short keys. It
	// must leave room for a SET of a key and a value of MaxBulkBytes each.
	MaxCommandBytes int
	// MaxClients is the most RESP connections open at once (Redis's
	// maxclients). One more gets "-ERR max number of clients reached" and is
	// closed (with TLS, once its handshake is done; at most 64 connections
	// are being turned away at a time, the others are closed without a
	// word). Default 10,000, as Redis.
	MaxClients int
	// MaxPendingBytes bounds the memory that the arguments of commands being
	// received or run hold, over all connections together (each connection
	// holds up to 16 KiB of it without counting: small commands never touch
	// the shared count). A connection whose command would take it beyond
	// the bound gets "-ERR server is out of memory for incoming commands,
	// try again" and is closed; a command's bytes count from their arrival
	// until its batch is answered or its connection closes. Default:
	// DefaultPendingCommands (16) times MaxCommandBytes (64 MiB at value
	// limits up to 1.9 MiB, 258 MiB at the 8 MiB maximum); at least twice
	// MaxCommandBytes (a smaller value is raised to that), so that a
	// command at the limit can always be received when nothing else is.
	MaxPendingBytes int
	// CommandTimeout is how long a partly received command may go without
	// any byte arriving before the connection is closed. A connection idle
	// between commands is never closed (Redis's default timeout 0).
	// Default 30 s.
	CommandTimeout time.Duration
}

// Defaults of the Config limits.
const (
	DefaultMaxArgs         = 1 << 20
	DefaultBulkSlackBytes  = 64 << 10 // room for a key (internal/node's MaxKeyBytes is 64 KiB) and an over-long value
	DefaultMaxInlineBytes  = 64 << 10
	DefaultMinCommandBytes = 4 << 20
	DefaultPendingCommands = 16
	DefaultMaxClients      = 10_000
	DefaultCommandTimeout  = 30 * time.Second
	DefaultTLSHandshake    = 10 * time.Second
)

// commandBytesFor is the default MaxCommandBytes for a bulk limit.
func commandBytesFor(bulk int) int {
	return max(2*(bulk+argOverhead), DefaultMinCommandBytes)
}

// DefaultConfig returns a Config with no peers, version "dev" and the
// default limits (MaxBulkBytes, MaxCommandBytes and MaxPendingBytes 0:
// derived from the service's value limit).
func DefaultConfig() Config {
	return Config{
		Version:        "dev",
		MaxArgs:        DefaultMaxArgs,
		MaxInlineBytes: DefaultMaxInlineBytes,
		MaxClients:     DefaultMaxClients,
		CommandTimeout: DefaultCommandTimeout,

		TLSHandshakeTimeout: DefaultTLSHandshake,
	}
}

// Validate checks the PeerRESP addresses, the limits and that TLS has a
// certificate.
func (c Config) Validate() error {
	for id, a := range c.PeerRESP {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("resp: Config.PeerRESP[%q] = %q: %w", id, a, err)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxArgs", int64(c.MaxArgs)},
		{"MaxBulkBytes", int64(c.MaxBulkBytes)},
		{"MaxInlineBytes", int64(c.MaxInlineBytes)},
		{"MaxCommandBytes", int64(c.MaxCommandBytes)},
		{"MaxClients", int64(c.MaxClients)},
		{"MaxPendingBytes", int64(c.MaxPendingBytes)},
		{"CommandTimeout", int64(c.CommandTimeout)},
		{"TLSHandshakeTimeout", int64(c.TLSHandshakeTimeout)},
	} {
		if f.v < 0 {
			return fmt.Errorf("resp: Config.%s = %d, want >= 0 (0 = default)", f.name, f.v)
		}
	}
	if c.MaxBulkBytes > 0 && c.MaxCommandBytes > 0 && c.MaxCommandBytes < 2*(c.MaxBulkBytes+argOverhead) {
		return fmt.Errorf("resp: Config.MaxCommandBytes = %d is less than a SET of a key and a value of Config.MaxBulkBytes = %d each",
			c.MaxCommandBytes, c.MaxBulkBytes)
	}
	command := c.MaxCommandBytes
	if command <= 0 && c.MaxBulkBytes > 0 {
		command = commandBytesFor(c.MaxBulkBytes)
	}
	if c.MaxPendingBytes > 0 && command > 0 && c.MaxPendingBytes < 2*command {
		return fmt.Errorf("resp: Config.MaxPendingBytes = %d is less than twice the command limit (%d bytes)",
			c.MaxPendingBytes, command)
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		return errors.New("resp: Config.TLS has no certificate")
	}
	return nil
}

// withDefaults replaces zero and negative limits by their defaults.
func (c Config) withDefaults() Config {
	if c.MaxArgs <= 0 {
		c.MaxArgs = DefaultMaxArgs
	}
	if c.MaxBulkBytes < 0 {
		c.MaxBulkBytes = 0
	}
	if c.MaxInlineBytes <= 0 {
		c.MaxInlineBytes = DefaultMaxInlineBytes
	}
	if c.MaxCommandBytes < 0 {
		c.MaxCommandBytes = 0
	}
	if c.MaxClients <= 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.MaxPendingBytes < 0 {
		c.MaxPendingBytes = 0
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.TLSHandshakeTimeout <= 0 {
		c.TLSHandshakeTimeout = DefaultTLSHandshake
	}
	return c
}

// Server is a RESP server for one node.
type Server struct {
	svc    api.Service
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	nextID atomic.Int64
	conns  atomic.Int64 // open connections (INFO clients)
	cmds   map[string]*command
	// setNeeds is the role SET needs (for pipelined SETs, which are
	// batched without going through handle).
	setNeeds auth.Role
	// auth is Config.Auth if it is enabled, else nil.
	auth *auth.Authenticator
	// everyone is what a new connection may do before it authenticates:
	// everything when auth is off, nothing (RoleNone) when it is on.
	everyone auth.Principal
	// pending is the budget of Config.MaxPendingBytes, shared by every
	// connection's reader.
	pending *budget
	// rejecting counts the connections over MaxClients being answered
	// (at most maxRejecting); rejected counts every connection turned away.
	rejecting atomic.Int64
	rejected  atomic.Int64
	// lastWarn (UnixNano) rate-limits warnings about refused clients.
	lastWarn atomic.Int64

	mu     sync.Mutex
	ln     net.Listener
	open   map[*conn]struct{} // guarded by mu
	closed bool               // guarded by mu
}

// New returns a Server for svc.
func New(svc api.Service, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{svc: svc, cfg: cfg.withDefaults(), log: cfg.Logger, ctx: ctx, cancel: cancel,
		open: map[*conn]struct{}{}}
	s.pending = newBudget(s.pendingBytes())
	s.cmds = s.commandTable()
	s.setNeeds = s.cmds["set"].needs
	if cfg.Auth.Enabled() {
		s.auth = cfg.Auth
	} else {
		s.everyone = auth.Principal{User: auth.DefaultUser, Role: auth.RoleAdmin}
	}
	return s
}

// limits returns the reader's limits for a new connection.
func (s *Server) limits() limits {
	return limits{
		maxArgs:    s.cfg.MaxArgs,
		maxBulk:    s.maxBulkBytes(),
		maxInline:  s.cfg.MaxInlineBytes,
		maxCommand: s.maxCommandBytes(),
		pending:    s.pending,
	}
}

// maxCommandBytes is Config.MaxCommandBytes, or the default derived from
// the bulk limit.
func (s *Server) maxCommandBytes() int {
	if s.cfg.MaxCommandBytes > 0 {
		return s.cfg.MaxCommandBytes
	}
	return commandBytesFor(s.maxBulkBytes())
}

// pendingBytes is the limit of the budget for commands being received or
// run: Config.MaxPendingBytes or its default, at least twice the command
// limit. It is computed once, in New, from the service's value limit then.
func (s *Server) pendingBytes() int {
	command := min(s.maxCommandBytes(), math.MaxInt/DefaultPendingCommands)
	if s.cfg.MaxPendingBytes > 0 {
		return max(s.cfg.MaxPendingBytes, 2*command)
	}
	return DefaultPendingCommands * command
}

// maxBulkBytes is Config.MaxBulkBytes, or the default derived from the
// service's value limit.
func (s *Server) maxBulkBytes() int {
	if s.cfg.MaxBulkBytes > 0 {
		return s.cfg.MaxBulkBytes
	}
	return s.svc.MaxValueBytes() + DefaultBulkSlackBytes
}

// Serve is a shorthand for New(svc, cfg with logger).Serve(ln). Closing ln
// stops it and closes its connections.
func Serve(ln net.Listener, svc api.Service, logger *slog.Logger) error {
	cfg := DefaultConfig()
	cfg.Logger = logger
	return New(svc, cfg).Serve(ln)
}

// Serve accepts connections on ln until Close (or until ln is closed),
// then closes them. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	return s.acceptLoop(ln)
}

// Close stops accepting, closes every connection and cancels the requests in
// flight.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	ln := s.ln
	s.mu.Unlock()
	s.closeConns()
	if ln != nil {
		return ln.Close()
	}
	return nil
}

// connState is the per-connection state.
type connState struct {
	// ctx is canceled when the connection closes or the server closes. It
	// is the connection's own (not the server's), so that the writers of
	// different connections share no lock when they wait on it.
	ctx       context.Context
	cancel    context.CancelFunc
	id        int64
	name      string
	lib       string
	write     api.WriteOptions
	read      api.Consistency
	lastIndex uint64 // index of this connection's last write, for WAIT
	// The bound of read level bounded (0 = none of that kind; one is set).
	maxLag        time.Duration
	maxLagEntries uint64
	// token is the newest session token this connection wrote or read,
	// whatever its read level; reanchor: a session read found it rolled
	// back, and the next session read is linearizable (session.go).
	token    api.Token
	reanchor bool
	// who is the authenticated client (Role RoleNone: not yet); with auth
	// off, everyone (role admin) from the start.
	who auth.Principal

	// Leaderless (TRIREME.W, TRIREME.R): the quorums of later writes and
	// reads, and whether reads wait for their read repair.
	w, r   api.Quorum
	repair bool
}

// command is one entry of the command table.
type command struct {
	name  string
	arity int // Redis convention: N = exactly N args (with the name), -N = at least N
	flags []string
	first int // first key argument position (0 = none)
	last  int // last key position (-1 = last argument)
	step  int
	// action is what the command does, for roles; 0 = allowed before
	// authentication (AUTH, HELLO, PING, QUIT).
	action auth.Action
	// needs is the lowest role that may run it (action.Needs(), or
	// RoleNone for action 0): one comparison per command.
	needs auth.Role
	run   func(c *conn, st *connState, args [][]byte)
}

// handle runs one command. Its arguments are valid only until it returns.
func (s *Server) handle(c *conn, args [][]byte) {
	st := c.st
	if st == nil {
		st = &connState{ctx: s.ctx, write: api.WriteOptions{Default: true}, who: s.everyone}
		c.st = st
	}
	if len(args) == 0 {
		return
	}
	def, ok := s.lookup(args[0])
	if !ok {
		if st.who.Role == auth.RoleNone {
			c.WriteError(errNoAuth) // nothing is told before authentication
			return
		}
		c.WriteError(unknownCommand(args))
		return
	}
	if st.who.Role < def.needs {
		s.refuse(c, st, def.name, def.action)
		return
	}
	n := len(args)
	if (def.arity > 0 && n != def.arity) || (def.arity < 0 && n < -def.arity) {
		c.WriteError(fmt.Sprintf("ERR wrong number of arguments for '%s' command", def.name))
		return
	}
	def.run(c, st, args)
}

// lookup finds a command by its case-insensitive name without allocating
// (command names are ASCII, as in Redis).
func (s *Server) lookup(name []byte) (*command, bool) {
	var buf [24]byte
	if len(name) > len(buf) {
		return nil, false // longer than any command's name
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	def, ok := s.cmds[string(buf[:len(name)])]
	return def, ok
}

func unknownCommand(args [][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ERR unknown command '%s', with args beginning with: ", clip(args[0]))
	for i, a := range args[1:] {
		if i == 10 {
			break
		}
		fmt.Fprintf(&b, "'%s' ", clip(a))
	}
	return b.String()
}

// clip shortens a client-supplied argument for an error message and removes
// characters that would break a RESP simple string.
func clip(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, string(b))
}

func lower(b []byte) string { return strings.ToLower(string(b)) }

// serviceError turns a service error into a RESP error line: its class's
// prefix (api.Classify, the classification HTTP and forwarding share) and
// its message. Some replies keep Redis's own words (INCR's errors), a fixed
// text, or name the leader.
func (s *Server) serviceError(err error) string {
	class := api.ClassOf(err)
	switch {
	case errors.Is(err, api.ErrNotInteger):
		return errNotInteger
	case errors.Is(err, api.ErrOverflow):
		return errOverflow
	case errors.Is(err, api.ErrBadToken):
		return "ERR " + api.ErrBadToken.Error()
	case class == api.ClassNotLeader:
		st := s.svc.Status()
		if st.LeaderRESP != "" {
			return fmt.Sprintf("READONLY this node is not the leader; the leader is %s at %s", st.Leader, st.LeaderRESP)
		}
		return "READONLY this node is not the leader and cannot forward"
	case class == api.ClassGone:
		// -ERR, not -CLUSTERDOWN, which clients retry: this node will not
		// serve again; the client must use another one.
		return "ERR " + api.ErrRemoved.Error() + "; connect to a current member"
	case class == api.ClassInternal && errors.Is(err, context.Canceled):
		return "ERR server shutting down"
	case class == api.ClassInternal:
		s.log.Warn("resp request failed", "err", err)
	}
	return class.RESPPrefix() + " " + oneLine(err.Error())
}

// oneLine makes an error message fit a RESP simple string.
func oneLine(msg string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
}

// writeError answers a failed write. A timeout says what was achieved.
func (s *Server) writeError(c *conn, st *connState, res api.WriteResult, err error) {
	st.wrote(res)
	if errors.Is(err, api.ErrRolledBack) {
		// A session write refused: an earlier write of the session was
		// discarded. As after a read told so, the connection re-anchors.
		st.token, st.reanchor = api.Token{}, true
	}
	// The replies of a write's own errors say what it reached.
	if errors.Is(err, api.ErrWriteTimeout) {
		c.WriteError(api.ClassTimeout.RESPPrefix() + " ack mode not met in time; the outcome is not final; reached: " + s.reached(res))
		return
	}
	if api.ClassOf(err) == api.ClassOutcomeUnknown {
		c.WriteError(api.ClassOutcomeUnknown.RESPPrefix() + " outcome unknown (leadership lost while the write was in flight); reached: " + s.reached(res))
		return
	}
	c.WriteError(s.serviceError(err))
}

func (s *Server) cmdPing(c *conn, st *connState, args [][]byte) {
	switch len(args) {
	case 1:
		c.WriteString("PONG")
	case 2:
		c.WriteBulk(args[1])
	default:
		c.WriteError("ERR wrong number of arguments for 'ping' command")
	}
}

func (s *Server) cmdGet(c *conn, st *connState, args [][]byte) {
	res, err := s.read(st, args[1])
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	if !res.Found {
		c.WriteNull()
		return
	}
	c.WriteBulk(res.Value)
}

func (s *Server) cmdMGet(c *conn, st *connState, args [][]byte) {
	vals := make([][]byte, 0, len(args)-1)
	found := make([]bool, 0, len(args)-1)
	for _, k := range args[1:] {
		res, err := s.read(st, k)
		if err != nil {
			c.WriteError(s.serviceError(err))
			return
		}
		vals = append(vals, res.Value)
		found = append(found, res.Found)
	}
	c.WriteArray(len(vals))
	for i, v := range vals {
		if found[i] {
			c.WriteBulk(v)
		} else {
			c.WriteNull()
		}
	}
}

// plainSet is SET key value [KEEPTTL]: a Put, or with more plain SETs
// pipelined after it, a PutBatch (setPipeline).
func (s *Server) plainSet(c *conn, st *connState, args [][]byte) {
	if bp, ok := s.svc.(BatchPutter); ok && len(args) == 3 {
		if next := c.peekPipeline(); len(next) > 0 && s.batchable(st, next[0]) {
			s.setPipeline(c, st, bp, args)
			return
		}
	}
	res, err := s.svc.Put(st.ctx, args[1], args[2], st.writeOptions())
	s.setReply(c, st, res, err)
}

func (s *Server) setReply(c *conn, st *connState, res api.WriteResult, err error) {
	if err != nil {
		s.writeError(c, st, res, err)
		return
	}
	st.wrote(res)
	c.WriteString("OK")
}

// BatchPutter is implemented by a service that can take several writes at
// once, in order (internal/node does): each key is its own write, as if Put
// were called for each in slice order, with one result and one error per key.
// The server uses it for runs of pipelined SETs.
type BatchPutter interface {
	PutBatch(ctx context.Context, keys, values [][]byte, w api.WriteOptions) ([]api.WriteResult, []error)
}

// isPlainSet reports whether cmd is SET key value with no options.
func isPlainSet(args [][]byte) bool {
	return len(args) == 3 && len(args[0]) == 3 && strings.EqualFold(string(args[0]), "set")
}

// batchable reports whether cmd is a plain SET that the connection's role
// allows, so that it may join a PutBatch without going through handle. (An
// AUTH earlier in the pipeline may have changed the role.)
func (s *Server) batchable(st *connState, cmd [][]byte) bool {
	return isPlainSet(cmd) && st.who.Role >= s.setNeeds
}

// setPipeline serves a plain SET (first) followed by the rest of the
// connection's pipeline: every run of consecutive plain SETs becomes one
// PutBatch (written in order, so the effects are those of executing them one
// by one); every other command runs in its turn, after the run before it has
// been answered. Replies are written in command order.
func (s *Server) setPipeline(c *conn, st *connState, bp BatchPutter, first [][]byte) {
	rest := c.takePipeline()
	i := 0
	keys, vals := [][]byte{first[1]}, [][]byte{first[2]}
	for {
		for i < len(rest) && s.batchable(st, rest[i]) {
			keys, vals = append(keys, rest[i][1]), append(vals, rest[i][2])
			i++
		}
		res, errs := bp.PutBatch(st.ctx, keys, vals, st.writeOptions())
		for k := range keys {
			s.setReply(c, st, res[k], errs[k])
		}
		for i < len(rest) && !s.batchable(st, rest[i]) && !c.closing {
			s.handle(c, rest[i])
			i++
		}
		if i == len(rest) || c.closing {
			return
		}
		keys, vals = append(keys[:0], rest[i][1]), append(vals[:0], rest[i][2])
		i++
	}
}

func (s *Server) cmdDel(c *conn, st *connState, args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		res, err := s.svc.Read(st.ctx, k, api.ReadOptions{Consistency: api.Linearizable, R: st.r, Repair: st.repair})
		if err != nil {
			c.WriteError(s.serviceError(err))
			return
		}
		st.token = st.token.Max(res.Token)
		if !res.Found {
			continue
		}
		wr, err := s.svc.Delete(st.ctx, k, st.writeOptions())
		if err != nil {
			s.writeError(c, st, wr, err)
			return
		}
		st.wrote(wr)
		n++
	}
	c.WriteInt(n)
}

func (s *Server) cmdExists(c *conn, st *connState, args [][]byte) {
	n := 0
	for _, k := range args[1:] {
		res, err := s.read(st, k)
		if err != nil {
			c.WriteError(s.serviceError(err))
			return
		}
		if res.Found {
			n++
		}
	}
	c.WriteInt(n)
}

func (s *Server) cmdTTL(c *conn, st *connState, args [][]byte) {
	res, err := s.read(st, args[1])
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	if res.Found {
		c.WriteInt(-1)
	} else {
		c.WriteInt(-2)
	}
}

func (s *Server) cmdDBSize(c *conn, st *connState, args [][]byte) {
	n, err := s.svc.Count(st.ctx)
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	c.WriteInt(n)
}

func (s *Server) cmdSelect(c *conn, st *connState, args [][]byte) {
	if string(args[1]) == "0" {
		c.WriteString("OK")
		return
	}
	if _, err := strconv.Atoi(string(args[1])); err != nil {
		c.WriteError(errNotInteger)
		return
	}
	c.WriteError("ERR DB index is out of range (Trireme has a single database, 0)")
}

func (s *Server) cmdQuit(c *conn, st *connState, args [][]byte) {
	c.WriteString("OK")
	c.closeAfterReply()
}

// errReplicaCount answers a replica count out of range.
const errReplicaCount = "ERR replica count must be a whole number from 1 to 1000"

// parseAck parses TRIREME.ACK's arguments: a mode (api.ParseAckMode's
// words, with local and all) with K for semi-sync, default, or a number K
// alone (semi-sync K).
func parseAck(args [][]byte) (api.WriteOptions, error) {
	mode := lower(args[0])
	if mode == "default" {
		if len(args) > 1 {
			return api.WriteOptions{}, errors.New("ERR syntax error: DEFAULT takes no replica count")
		}
		return api.WriteOptions{Default: true}, nil
	}
	if isDigits(mode) {
		if len(args) > 1 {
			return api.WriteOptions{}, errors.New("ERR syntax error: a number is the replica count already")
		}
		k, err := strconv.Atoi(mode)
		if err != nil || k < 1 || k > 1000 {
			return api.WriteOptions{}, errors.New(errReplicaCount)
		}
		return api.WriteOptions{Ack: api.Ack{Mode: api.AckSemiSync, Replicas: k}}, nil
	}
	m, err := api.ParseAckMode(mode)
	if err != nil {
		return api.WriteOptions{}, fmt.Errorf("ERR unknown ack mode '%s' (want default, async, semi-sync [K], sync, majority, local, all or a replica count K)", clip(args[0]))
	}
	w := api.WriteOptions{Ack: api.Ack{Mode: m}}
	if m == api.AckSemiSync {
		w.Ack.Replicas = 1
	}
	if len(args) > 2 {
		return w, errors.New("ERR syntax error: too many arguments")
	}
	if len(args) == 2 {
		if m != api.AckSemiSync {
			return w, fmt.Errorf("ERR a replica count applies only to semi-sync, not %s", m)
		}
		k, err := strconv.Atoi(string(args[1]))
		if err != nil || k < 1 || k > 1000 {
			return w, errors.New(errReplicaCount)
		}
		w.Ack.Replicas = k
	}
	return w, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func ackString(w api.WriteOptions) string {
	if w.Default {
		return "default"
	}
	if w.Ack.Mode == api.AckSemiSync {
		return fmt.Sprintf("semi-sync %d", w.Ack.Replicas)
	}
	return w.Ack.Mode.String()
}

// cmdAck is TRIREME.ACK [mode [K]]: with no argument it returns the
// connection's ack mode.
func (s *Server) cmdAck(c *conn, st *connState, args [][]byte) {
	if len(args) == 1 {
		c.WriteBulkString(ackString(st.write))
		return
	}
	w, err := parseAck(args[1:])
	if err != nil {
		c.WriteError(err.Error())
		return
	}
	st.write = w
	c.WriteString("OK")
}

func (s *Server) cmdClient(c *conn, st *connState, args [][]byte) {
	sub := lower(args[1])
	switch sub {
	case "setinfo":
		if len(args) != 4 {
			c.WriteError("ERR wrong number of arguments for 'client|setinfo' command")
			return
		}
		switch lower(args[2]) {
		case "lib-name", "lib-ver":
			if lower(args[2]) == "lib-name" {
				st.lib = string(args[3])
			}
			c.WriteString("OK")
		default:
			c.WriteError(fmt.Sprintf("ERR Unrecognized option '%s'", clip(args[2])))
		}
	case "setname":
		if len(args) != 3 {
			c.WriteError("ERR wrong number of arguments for 'client|setname' command")
			return
		}
		if strings.ContainsAny(string(args[2]), " \n\r") {
			c.WriteError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		st.name = string(args[2])
		c.WriteString("OK")
	case "getname":
		if st.name == "" {
			c.WriteNull()
		} else {
			c.WriteBulkString(st.name)
		}
	case "id":
		c.WriteInt64(st.id)
	case "info":
		c.WriteBulkString(fmt.Sprintf("id=%d addr=%s name=%s db=0 user=%s lib-name=%s ack=%s\n",
			st.id, c.RemoteAddr(), st.name, st.who.User, st.lib, strings.ReplaceAll(ackString(st.write), " ", ":")))
	case "ack":
		if ack := s.cmds["trireme.ack"]; st.who.Role < ack.needs {
			s.refuse(c, st, "client|ack", ack.action)
			return
		}
		s.cmdAck(c, st, args[1:])
	default:
		c.WriteError(fmt.Sprintf("ERR unknown subcommand '%s'. Try CLIENT HELP.", clip(args[1])))
	}
}

// cmdHello answers HELLO like Redis for protocol 2 and refuses 3 with
// NOPROTO, which clients (go-redis) take as "fall back to RESP2".
func (s *Server) cmdHello(c *conn, st *connState, args [][]byte) {
	rest := args[1:]
	if len(rest) > 0 {
		v, err := strconv.Atoi(string(rest[0]))
		if err != nil {
			c.WriteError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 {
			c.WriteError("NOPROTO sorry, this protocol version is not supported (Trireme speaks RESP2)")
			return
		}
		rest = rest[1:]
	}
	var creds, name [][]byte // AUTH user pass, SETNAME name
	for len(rest) > 0 {
		switch lower(rest[0]) {
		case "auth":
			if len(rest) < 3 {
				c.WriteError("ERR Syntax error in HELLO option 'auth'")
				return
			}
			creds, rest = rest[1:3], rest[3:]
		case "setname":
			if len(rest) < 2 {
				c.WriteError("ERR Syntax error in HELLO option 'setname'")
				return
			}
			name, rest = rest[1:2], rest[2:]
		default:
			c.WriteError(fmt.Sprintf("ERR Syntax error in HELLO option '%s'", clip(rest[0])))
			return
		}
	}
	// As Redis: authenticate, then require authentication, then set the
	// name. Without auth configured, any credentials are accepted (every
	// client may do everything anyway).
	if creds != nil && s.auth != nil && !s.authenticate(c, st, string(creds[0]), string(creds[1])) {
		return
	}
	if st.who.Role == auth.RoleNone {
		c.WriteError(errHelloNoAuth)
		return
	}
	if name != nil {
		st.name = string(name[0])
	}
	role := "master"
	if status := s.svc.Status(); status.Role != "leader" && !leaderless(status) {
		role = "replica"
	}
	c.WriteArray(14)
	c.WriteBulkString("server")
	c.WriteBulkString("redis")
	c.WriteBulkString("version")
	c.WriteBulkString(RedisVersion)
	c.WriteBulkString("proto")
	c.WriteInt(2)
	c.WriteBulkString("id")
	c.WriteInt64(st.id)
	c.WriteBulkString("mode")
	c.WriteBulkString("standalone")
	c.WriteBulkString("role")
	c.WriteBulkString(role)
	c.WriteBulkString("modules")
	c.WriteArray(0)
}

func (s *Server) cmdConfig(c *conn, st *connState, args [][]byte) {
	switch lower(args[1]) {
	case "get":
		if len(args) < 3 {
			c.WriteError("ERR wrong number of arguments for 'config|get' command")
			return
		}
		params := map[string]string{
			"save":               "",
			"appendonly":         "yes",
			"appendfsync":        "always",
			"databases":          "1",
			"maxmemory":          "0",
			"port":               "0",
			"bind":               "",
			"protected-mode":     "no",
			"timeout":            "0",
			"maxclients":         strconv.Itoa(s.cfg.MaxClients),
			"proto-max-bulk-len": strconv.Itoa(s.maxBulkBytes()),
		}
		if ln := s.listenAddr(); ln != "" {
			if h, p, err := net.SplitHostPort(ln); err == nil {
				params["port"], params["bind"] = p, h
			}
		}
		var out []string
		seen := map[string]bool{}
		for _, pat := range args[2:] {
			for _, k := range sortedKeys(params) {
				if !seen[k] && globMatch(lower(pat), k) {
					seen[k] = true
					out = append(out, k, params[k])
				}
			}
		}
		c.WriteArray(len(out))
		for _, v := range out {
			c.WriteBulkString(v)
		}
	case "set", "resetstat", "rewrite":
		c.WriteError("ERR CONFIG " + strings.ToUpper(string(args[1])) + " is not supported by Trireme; configure nodes with trireme node flags")
	default:
		c.WriteError(fmt.Sprintf("ERR unknown subcommand '%s'. Try CONFIG HELP.", clip(args[1])))
	}
}

func (s *Server) listenAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

func (s *Server) cmdWait(c *conn, st *connState, args [][]byte) {
	n, err1 := strconv.Atoi(string(args[1]))
	ms, err2 := strconv.ParseInt(string(args[2]), 10, 64)
	if err1 != nil || err2 != nil || n < 0 {
		c.WriteError(errNotInteger)
		return
	}
	if ms < 0 {
		c.WriteError("ERR timeout is negative")
		return
	}
	got, err := s.waitReplicas(st, n, ms)
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	c.WriteInt(got)
}

func (s *Server) waitReplicas(st *connState, n int, ms int64) (int, error) {
	ctx, cancel := st.ctx, context.CancelFunc(func() {})
	if ms > 0 {
		ctx, cancel = context.WithTimeout(st.ctx, msDuration(ms))
	}
	defer cancel()
	return s.svc.WaitReplicas(ctx, st.lastIndex, n)
}

// cmdWaitAOF is WAITAOF numlocal numreplicas timeout. Every Trireme write is
// fsynced on the leader before it is acknowledged, so numlocal is 1 once the
// connection has written (and 1 with nothing to wait for).
func (s *Server) cmdWaitAOF(c *conn, st *connState, args [][]byte) {
	local, err1 := strconv.Atoi(string(args[1]))
	n, err2 := strconv.Atoi(string(args[2]))
	ms, err3 := strconv.ParseInt(string(args[3]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || local < 0 || n < 0 {
		c.WriteError(errNotInteger)
		return
	}
	if ms < 0 {
		c.WriteError("ERR timeout is negative")
		return
	}
	if local > 1 {
		c.WriteError("ERR WAITAOF numlocal can be at most 1 (the local node)")
		return
	}
	got, err := s.waitReplicas(st, n, ms)
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	c.WriteArray(2)
	c.WriteInt(1)
	c.WriteInt(got)
}
