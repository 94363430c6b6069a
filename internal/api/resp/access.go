package resp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/trireme-db/trireme/internal/auth"
)

// Error replies about access, in Redis's words (clients match on them).
const (
	errNoAuth      = "NOAUTH Authentication required."
	errHelloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errWrongPass   = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPassword  = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
)

// refuse answers a command the connection may not run: NOAUTH before it
// has authenticated, else NOPERM (logged and counted by the Authenticator).
func (s *Server) refuse(c *conn, st *connState, name string, act auth.Action) {
	if st.who.Role == auth.RoleNone {
		c.WriteError(errNoAuth)
		return
	}
	if s.auth != nil {
		s.auth.Denied(st.who, act, auth.Credentials{User: st.who.User, Remote: c.addr, Proto: "resp"})
	}
	c.WriteError(fmt.Sprintf("NOPERM this user has no permissions to run the '%s' command", name))
}

// authenticate checks credentials (s.auth != nil) and, if they are good,
// makes the connection theirs; if not it answers the error, and the
// connection keeps the user it had (as in Redis). It may run bcrypt, on
// this connection's goroutine: other connections go on meanwhile.
func (s *Server) authenticate(c *conn, st *connState, user, secret string) bool {
	p, err := s.auth.Check(st.ctx, auth.Credentials{User: user, Secret: secret, Remote: c.addr, Proto: "resp"})
	switch {
	case err == nil:
		st.who = p
		return true
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrNoCredentials):
		c.WriteError(errWrongPass)
	default: // the connection or the server is closing
		c.WriteError(s.serviceError(err))
	}
	return false
}

// cmdAuth is AUTH [user] password. The one-argument form is the user
// "default" (the node's default password, or a "default" user of the
// users file). A password may also be one of the user's API tokens.
func (s *Server) cmdAuth(c *conn, st *connState, args [][]byte) {
	if len(args) > 3 {
		c.WriteError("ERR syntax error")
		return
	}
	if s.auth == nil {
		// Redis's answer to AUTH password without requirepass. AUTH user
		// pass is accepted as HELLO 2 AUTH is: everyone may do everything.
		if len(args) == 2 {
			c.WriteError(errNoPassword)
		} else {
			c.WriteString("OK")
		}
		return
	}
	user, secret := "", args[1]
	if len(args) == 3 {
		user, secret = string(args[1]), args[2]
	}
	if s.authenticate(c, st, user, string(secret)) {
		c.WriteString("OK")
	}
}

// DefaultTransferTimeout bounds TRIREME.TRANSFER when no timeout is given
// (as POST /v1/leader/transfer).
const DefaultTransferTimeout = 10 * time.Second

// cmdTransfer is TRIREME.TRANSFER node-id [timeout-ms]: hand leadership to
// node-id; OK once it leads.
func (s *Server) cmdTransfer(c *conn, st *connState, args [][]byte) {
	if len(args) > 3 {
		c.WriteError("ERR syntax error")
		return
	}
	d := DefaultTransferTimeout
	if len(args) == 3 {
		ms, err := strconv.ParseInt(string(args[2]), 10, 64)
		if err != nil || ms <= 0 {
			c.WriteError("ERR timeout is not a positive integer (milliseconds)")
			return
		}
		d = msDuration(ms)
	}
	to := string(args[1])
	ctx, cancel := context.WithTimeout(st.ctx, d)
	defer cancel()
	err := s.svc.TransferLeadership(ctx, to)
	switch {
	case err == nil:
		c.WriteString("OK")
	case errors.Is(err, context.DeadlineExceeded):
		c.WriteError(fmt.Sprintf("TIMEOUT leadership transfer to %s not done within %s", clip(args[1]), d))
	default:
		c.WriteError(s.serviceError(err))
	}
}
