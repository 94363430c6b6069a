package resp

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/trireme-db/trireme/internal/api"
)

// Read levels and sessions on a connection.
//
// Every connection tracks a session token (api.Token): each write's token
// and each read reply's token move it on (Token.Max), whatever the read
// level, so a client may switch to session reads at any point and keep
// reading its own writes. TRIREME.SESSION returns it; TRIREME.SESSION TOKEN
// replaces it (to carry a session from one connection to another).
//
// At read level session, reads carry the token: a node serves them once it
// has applied the token's entry. A token whose entry was discarded in a
// failover fails the read with ErrRolledBack, answered -ROLLEDBACK. No
// later token of the new history covers a discarded one by Max (the new
// history may be shorter), so the connection then drops its token and
// re-anchors: its next session read is linearizable, and the token of that
// read, or of the next write, is the session's from then on (either covers
// every committed write). TRIREME.SESSION TOKEN also ends the re-anchoring.

// readOptions is how the connection's reads are served now: its read
// level, and on a leaderless node its R and read repair.
func (st *connState) readOptions() api.ReadOptions {
	o := api.ReadOptions{Consistency: st.read, R: st.r, Repair: st.repair}
	switch st.read {
	case api.Session:
		if st.reanchor {
			o.Consistency = api.Linearizable
		} else {
			o.Token = st.token
		}
	case api.Bounded:
		o.MaxLag, o.MaxLagEntries = st.maxLag, st.maxLagEntries
	}
	return o
}

// writeOptions is how the connection's writes are acknowledged (with the
// leaderless W of TRIREME.W); in session
// mode they carry the token, so that the leader refuses a write (writing
// nothing) after a write of the session was discarded: the new write's token
// would otherwise cover the lost one and hide it.
func (st *connState) writeOptions() api.WriteOptions {
	w := st.write
	w.W = st.w
	if st.read == api.Session && !st.reanchor {
		w.Session = st.token
	}
	return w
}

// wrote records a write that took a log entry (also one that failed after
// it did: a timeout, a condition not met): WAIT's index and the session
// token.
func (st *connState) wrote(res api.WriteResult) {
	if res.Index == 0 {
		return
	}
	st.lastIndex = res.Index
	if tok := res.Token(); tok.Term != 0 {
		st.token = st.token.Max(tok)
		st.reanchor = false
	}
}

// read reads key at the connection's read level and moves its token on.
func (s *Server) read(st *connState, key []byte) (api.ReadResult, error) {
	o := st.readOptions()
	res, err := s.svc.Read(st.ctx, key, o)
	if err != nil {
		if errors.Is(err, api.ErrRolledBack) {
			st.token, st.reanchor = api.Token{}, true
		}
		return res, err
	}
	if o.Consistency == api.Linearizable {
		st.reanchor = false
	}
	st.token = st.token.Max(res.Token)
	return res, nil
}

// consistencyString is the connection's read level as TRIREME.CONSISTENCY
// takes it.
func (st *connState) consistencyString() string {
	if st.read == api.Bounded {
		return fmt.Sprintf("bounded %d %d", st.maxLag.Milliseconds(), st.maxLagEntries)
	}
	return st.read.String()
}

// errBound answers a bounded read level without a positive bound.
const errBound = "ERR a bounded read level needs MAXLAG_MS or MAXLAG_ENTRIES above 0"

// maxLagMillis is the largest MAXLAG_MS accepted (a year): the bound is a
// duration, and anything larger means no bound in practice.
const maxLagMillis = 365 * 24 * 3600 * 1000

// cmdConsistency is TRIREME.CONSISTENCY [linearizable | stale | session |
// bounded MAXLAG_MS [MAXLAG_ENTRIES]]: without arguments it returns the
// connection's read level (bounded with both numbers).
func (s *Server) cmdConsistency(c *conn, st *connState, args [][]byte) {
	if len(args) == 1 {
		c.WriteBulkString(st.consistencyString())
		return
	}
	r, err := api.ParseConsistency(lower(args[1]))
	if err != nil || len(args[1]) == 0 {
		c.WriteError(fmt.Sprintf("ERR unknown consistency '%s' (want linearizable, stale, session or bounded MAXLAG_MS [MAXLAG_ENTRIES])", clip(args[1])))
		return
	}
	if r != api.Bounded {
		if len(args) > 2 {
			c.WriteError("ERR wrong number of arguments for 'trireme.consistency' command")
			return
		}
		st.read = r
		c.WriteString("OK")
		return
	}
	if len(args) < 3 || len(args) > 4 {
		c.WriteError("ERR syntax error: BOUNDED takes MAXLAG_MS [MAXLAG_ENTRIES]")
		return
	}
	ms, err1 := strconv.ParseInt(string(args[2]), 10, 64)
	var entries uint64
	var err2 error
	if len(args) == 4 {
		entries, err2 = strconv.ParseUint(string(args[3]), 10, 64)
	}
	if err1 != nil || err2 != nil || ms < 0 || ms > maxLagMillis {
		c.WriteError(errNotInteger)
		return
	}
	if ms == 0 && entries == 0 {
		c.WriteError(errBound)
		return
	}
	st.read, st.maxLag, st.maxLagEntries = api.Bounded, time.Duration(ms)*time.Millisecond, entries
	c.WriteString("OK")
}

// cmdReadOnly is READONLY (read level stale) and READWRITE (linearizable).
func (s *Server) cmdReadOnly(c *conn, st *connState, args [][]byte) {
	if lower(args[0]) == "readonly" {
		st.read = api.Stale
	} else {
		st.read = api.Linearizable
	}
	c.WriteString("OK")
}

// cmdSession is TRIREME.SESSION [TOKEN]: without an argument it returns
// the connection's session token ("" for none); with one it adopts TOKEN
// (an empty one starts a new session).
func (s *Server) cmdSession(c *conn, st *connState, args [][]byte) {
	switch len(args) {
	case 1:
		c.WriteBulkString(st.token.String())
	case 2:
		tok, err := api.ParseToken(string(args[1]))
		if err != nil {
			c.WriteError(s.serviceError(err))
			return
		}
		st.token, st.reanchor = tok, false
		c.WriteString("OK")
	default:
		c.WriteError("ERR wrong number of arguments for 'trireme.session' command")
	}
}
