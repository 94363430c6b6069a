package resp

import "fmt"

// Multi-leader (api/versions.go): siblings and causal contexts.
//
// GET, MGET and every other read answer ReadResult.Value, the first of a
// key's concurrent values, so that a client that knows nothing of siblings
// reads as before. Two commands carry the rest:
//
//	TRIREME.GETCTX key                -> [context, [value ...]]
//	TRIREME.SETCTX key context value  -> OK
//
// GETCTX reads at the connection's read level and answers an array of two:
// the read's causal context (a bulk string, empty if it has none) and the
// key's values (every sibling; one value for a key without siblings; none
// for a missing key). SETCTX is SET key value carrying the context back,
// so that the write supersedes the values that read saw (an empty context
// is a blind write, as SET).

// maxContextBytes is the longest causal context SETCTX takes, as the HTTP
// API (httpapi.MaxContextBytes): the engine never decodes a longer one.
const maxContextBytes = 4096

// cmdGetCtx is TRIREME.GETCTX key.
func (s *Server) cmdGetCtx(c *conn, st *connState, args [][]byte) {
	res, err := s.read(st, args[1])
	if err != nil {
		c.WriteError(s.serviceError(err))
		return
	}
	c.WriteArray(2)
	c.WriteBulkString(res.Context)
	switch {
	case !res.Found:
		c.WriteArray(0)
	case len(res.Siblings) > 0:
		c.WriteArray(len(res.Siblings))
		for _, sib := range res.Siblings {
			c.WriteBulk(sib.Value)
		}
	default:
		c.WriteArray(1)
		c.WriteBulk(res.Value)
	}
}

// cmdSetCtx is TRIREME.SETCTX key context value: a Put with the connection's
// ack mode and the context.
func (s *Server) cmdSetCtx(c *conn, st *connState, args [][]byte) {
	if len(args[2]) > maxContextBytes {
		c.WriteError(fmt.Sprintf("ERR causal context of %d bytes (at most %d)", len(args[2]), maxContextBytes))
		return
	}
	w := st.writeOptions()
	w.Context = string(args[2])
	res, err := s.svc.Put(st.ctx, args[1], args[3], w)
	s.setReply(c, st, res, err)
}
