package resp

import (
	"fmt"
	"math"
	"strings"

	"github.com/trireme-db/trireme/internal/api"
	statecmd "github.com/trireme-db/trireme/internal/command"
)

// Read-modify-write commands. Each is one state-machine command
// (internal/command, imported as statecmd: in this package a command is an
// entry of the command table) given to Service.Exec with the connection's ack mode:
// the leader evaluates it against its applied state, in log order, so it is
// atomic however many clients write the same key. Arguments are checked
// here first, so that a bad one gets Redis's error without a log entry.

// Error replies of the string commands, in Redis's words (clients match on
// them).
const (
	errNotInteger   = "ERR value is not an integer or out of range"
	errOverflow     = "ERR increment or decrement would overflow"
	errDecrOverflow = "ERR decrement would overflow" // DECRBY of the smallest int64, which has no negation
	errSyntax       = "ERR syntax error"
)

// exec runs cmd with the connection's ack mode. On failure it answers the
// error itself and reports false.
func (s *Server) exec(c *conn, st *connState, cmd *statecmd.Command) (statecmd.Result, bool) {
	res, err := s.svc.Exec(st.ctx, cmd, st.writeOptions())
	if err != nil {
		s.writeError(c, st, res, err)
		return statecmd.Result{}, false
	}
	st.wrote(res)
	return res.Cmd, true
}

// emptyKey answers an empty key as Put would (the command would not pass
// statecmd.Command.Validate) and reports whether it did.
func (s *Server) emptyKey(c *conn, key []byte) bool {
	if len(key) > 0 {
		return false
	}
	c.WriteError(s.serviceError(api.ErrEmptyKey))
	return true
}

// writeOld answers a command's old value (nil if there was none).
func writeOld(c *conn, r statecmd.Result) {
	if r.OldFound {
		c.WriteBulk(r.Old)
	} else {
		c.WriteNull()
	}
}

// setOptions are SET's options that need a command.
type setOptions struct {
	cond statecmd.Cond // CondNX, CondXX or CondNone
	get  bool
}

// parseSetOptions parses SET's options after the value, left to right as
// Redis does: the first bad one is the error. EX, PX, EXAT and PXAT are
// refused (keys do not expire); KEEPTTL is accepted and does nothing.
func parseSetOptions(opts [][]byte) (setOptions, string) {
	var o setOptions
	for _, a := range opts {
		switch lower(a) {
		case "keepttl":
			// No key has an expiry, so keeping it is a no-op.
		case "ex", "px", "exat", "pxat":
			return o, fmt.Sprintf("ERR SET option %s is not supported: Trireme keys do not expire", strings.ToUpper(string(a)))
		case "nx":
			if o.cond == statecmd.CondXX {
				return o, errSyntax
			}
			o.cond = statecmd.CondNX
		case "xx":
			if o.cond == statecmd.CondNX {
				return o, errSyntax
			}
			o.cond = statecmd.CondXX
		case "get":
			o.get = true
		default:
			return o, errSyntax
		}
	}
	return o, ""
}

// cmdSet is SET key value [NX|XX] [GET] [KEEPTTL]. A plain SET is a Put
// (batched when pipelined); NX, XX and GET make it a command. Replies: OK;
// nil when NX or XX is not met; with GET, the old value (nil if none),
// whether or not the value was set.
func (s *Server) cmdSet(c *conn, st *connState, args [][]byte) {
	o, bad := parseSetOptions(args[3:])
	if bad != "" {
		c.WriteError(bad)
		return
	}
	if o.cond == statecmd.CondNone && !o.get {
		s.plainSet(c, st, args)
		return
	}
	if s.emptyKey(c, args[1]) {
		return
	}
	r, ok := s.exec(c, st, &statecmd.Command{Op: statecmd.OpSet, Cond: o.cond, ReturnOld: o.get, Key: args[1], Value: args[2]})
	switch {
	case !ok:
	case o.get:
		writeOld(c, r)
	case r.Applied:
		c.WriteString("OK")
	default:
		c.WriteNull()
	}
}

// cmdSetNX is SETNX key value: 1 if it set the key, 0 if the key existed.
func (s *Server) cmdSetNX(c *conn, st *connState, args [][]byte) {
	if s.emptyKey(c, args[1]) {
		return
	}
	if r, ok := s.exec(c, st, &statecmd.Command{Op: statecmd.OpSet, Cond: statecmd.CondNX, Key: args[1], Value: args[2]}); ok {
		if r.Applied {
			c.WriteInt(1)
		} else {
			c.WriteInt(0)
		}
	}
}

// cmdGetSet is GETSET key value: the old value (nil if none).
func (s *Server) cmdGetSet(c *conn, st *connState, args [][]byte) {
	if s.emptyKey(c, args[1]) {
		return
	}
	if r, ok := s.exec(c, st, &statecmd.Command{Op: statecmd.OpSet, ReturnOld: true, Key: args[1], Value: args[2]}); ok {
		writeOld(c, r)
	}
}

// cmdGetDel is GETDEL key: the value it deleted (nil if none). A missing
// key still takes a log entry: the command is decided where it applies.
func (s *Server) cmdGetDel(c *conn, st *connState, args [][]byte) {
	if s.emptyKey(c, args[1]) {
		return
	}
	if r, ok := s.exec(c, st, &statecmd.Command{Op: statecmd.OpDelete, ReturnOld: true, Key: args[1]}); ok {
		writeOld(c, r)
	}
}

// incr adds delta to key's integer value and answers the new value.
func (s *Server) incr(c *conn, st *connState, key []byte, delta int64) {
	if s.emptyKey(c, key) {
		return
	}
	if r, ok := s.exec(c, st, &statecmd.Command{Op: statecmd.OpIncr, Delta: delta, Key: key}); ok {
		c.WriteInt64(r.Int)
	}
}

func (s *Server) cmdIncr(c *conn, st *connState, args [][]byte) { s.incr(c, st, args[1], 1) }
func (s *Server) cmdDecr(c *conn, st *connState, args [][]byte) { s.incr(c, st, args[1], -1) }

// cmdIncrBy is INCRBY key increment; the increment has INCR's syntax
// (statecmd.ParseInt).
func (s *Server) cmdIncrBy(c *conn, st *connState, args [][]byte) {
	d, ok := statecmd.ParseInt(args[2])
	if !ok {
		c.WriteError(errNotInteger)
		return
	}
	s.incr(c, st, args[1], d)
}

// cmdDecrBy is DECRBY key decrement.
func (s *Server) cmdDecrBy(c *conn, st *connState, args [][]byte) {
	d, ok := statecmd.ParseInt(args[2])
	if !ok {
		c.WriteError(errNotInteger)
		return
	}
	if d == math.MinInt64 {
		c.WriteError(errDecrOverflow)
		return
	}
	s.incr(c, st, args[1], -d)
}

// cmdAppend is APPEND key value: the value's new length.
func (s *Server) cmdAppend(c *conn, st *connState, args [][]byte) {
	if s.emptyKey(c, args[1]) {
		return
	}
	if r, ok := s.exec(c, st, &statecmd.Command{Op: statecmd.OpAppend, Key: args[1], Value: args[2]}); ok {
		c.WriteInt64(r.Int)
	}
}

// cmdStrlen is STRLEN key, read at the connection's read level: the value's
// length, 0 for a missing key.
func (s *Server) cmdStrlen(c *conn, st *connState, args [][]byte) {
	res, err := s.read(st, args[1])
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	c.WriteInt(len(res.Value))
}

// cmdMSet is MSET key value [key value ...]: one command, so that every key
// is set in the same log entry or none is (a reader never sees some of
// them set). OK.
func (s *Server) cmdMSet(c *conn, st *connState, args [][]byte) {
	if len(args)%2 == 0 {
		c.WriteError("ERR wrong number of arguments for 'mset' command")
		return
	}
	n := (len(args) - 1) / 2
	if n > statecmd.MaxPairs {
		c.WriteError(fmt.Sprintf("ERR MSET of %d keys is over the limit of %d keys; split it", n, statecmd.MaxPairs))
		return
	}
	cmd := &statecmd.Command{Op: statecmd.OpMSet, Keys: make([][]byte, n), Values: make([][]byte, n)}
	for i := range n {
		cmd.Keys[i], cmd.Values[i] = args[1+2*i], args[2+2*i]
		if s.emptyKey(c, cmd.Keys[i]) {
			return
		}
	}
	if _, ok := s.exec(c, st, cmd); ok {
		c.WriteString("OK")
	}
}
