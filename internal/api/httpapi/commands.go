package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
)

// Writes that are state-machine commands (internal/command):
//
//	POST   /v1/kv/{key}?op=incr[&by=N]      the value + N (default 1), as a base-10 int64
//	POST   /v1/kv/{key}?op=append           body appended to the value
//	PUT    /v1/kv/{key}  If-Match: INDEX    (or ?if_index=INDEX) set only if the key's index is INDEX
//	DELETE /v1/kv/{key}  If-Match: INDEX    delete only if the key's index is INDEX
//	any of them, or a plain PUT or DELETE, with Idempotency-Key: K
//
// INDEX 0 means the key must not exist. A write with none of these is a
// plain Service.Put or Delete, exactly as before commands existed.

// writeRequest is a parsed PUT, POST or DELETE.
type writeRequest struct {
	opts    api.WriteOptions
	op      command.Op // 0: a plain put or delete (with a condition or key, OpSet or OpDelete)
	del     bool
	cond    bool   // If-Match or if_index given
	ifIndex uint64 // with cond
	delta   int64  // op=incr
	idemKey []byte // nil: none
}

// command reports whether the request needs Service.Exec.
func (wr *writeRequest) command() bool {
	return wr.op != 0 || wr.cond || wr.idemKey != nil
}

// toCommand returns the command wr asks for on key with value.
func (wr *writeRequest) toCommand(key, value []byte) *command.Command {
	c := &command.Command{Op: wr.op, Key: key, IdemKey: wr.idemKey}
	switch {
	case c.Op == command.OpIncr:
		c.Delta = wr.delta
	case c.Op == command.OpAppend:
		c.Value = value
	case wr.del:
		c.Op = command.OpDelete
	default:
		c.Op, c.Value = command.OpSet, value
	}
	if wr.cond {
		c.Cond, c.IfIndex = command.CondIndex, wr.ifIndex
	}
	return c
}

// parseWriteRequest parses a write's query string (strictly, with the
// parameters its method takes) and its If-Match, Idempotency-Key,
// X-Trireme-Session and X-Trireme-Context headers. A causal context over
// MaxContextBytes is refused first.
func parseWriteRequest(r *http.Request) (writeRequest, error) {
	ctxHeader := r.Header.Values(ContextHeader)
	if err := checkContextHeader(ctxHeader); err != nil {
		return writeRequest{}, err
	}
	known := writeParams
	if r.Method == http.MethodPost {
		known = postParams
	}
	q, err := ParseQuery(r.URL.RawQuery, known)
	if err != nil {
		return writeRequest{}, err
	}
	wr := writeRequest{del: r.Method == http.MethodDelete}
	causal, err := parseContext(q.Get("context"), ctxHeader)
	if err != nil {
		return writeRequest{}, err
	}
	if wr.opts, err = ParseWriteOptions(q); err != nil {
		return writeRequest{}, err
	}
	wr.opts.Context = causal
	if wr.op, wr.delta, err = parseOp(q.Get("op"), q.Get("by")); err != nil {
		return writeRequest{}, err
	}
	if wr.cond, wr.ifIndex, err = parseIfIndex(q.Get("if_index"), r.Header.Values("If-Match")); err != nil {
		return writeRequest{}, err
	}
	if wr.idemKey, err = parseIdempotencyKey(r.Header.Values(IdempotencyKeyHeader)); err != nil {
		return writeRequest{}, err
	}
	// A session's write carries its token: the leader refuses the write
	// (writing nothing) if an earlier write of the session was discarded.
	if wr.opts.Session, err = parseSessionToken(api.Session, q.Get("session"), r.Header.Values(SessionHeader)); err != nil {
		return writeRequest{}, err
	}
	return wr, nil
}

// parseOp parses op= and by= of a POST: "" (a plain write), "incr" with an
// optional by (a base-10 int64, default 1) or "append".
func parseOp(op, by string) (command.Op, int64, error) {
	switch op {
	case "":
		if by != "" {
			return 0, 0, fmt.Errorf("%w: by=%q applies to op=incr only", ErrBadRequest, by)
		}
		return 0, 0, nil
	case "incr":
		if by == "" {
			return command.OpIncr, 1, nil
		}
		n, err := strconv.ParseInt(by, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: by=%q: want a whole number from %d to %d", ErrBadRequest, by, int64(math.MinInt64), int64(math.MaxInt64))
		}
		return command.OpIncr, n, nil
	case "append":
		if by != "" {
			return 0, 0, fmt.Errorf("%w: by=%q applies to op=incr only", ErrBadRequest, by)
		}
		return command.OpAppend, 0, nil
	}
	return 0, 0, fmt.Errorf("%w: op=%q: want incr or append", ErrBadRequest, op)
}

// parseIfIndex parses the condition of a write: if_index=N or the If-Match
// header, N or "N" (an ETag), not both. It reports whether one was given.
func parseIfIndex(param string, ifMatch []string) (bool, uint64, error) {
	if len(ifMatch) > 1 {
		return false, 0, fmt.Errorf("%w: header If-Match is given more than once", ErrBadRequest)
	}
	if len(ifMatch) == 1 {
		if param != "" {
			return false, 0, fmt.Errorf("%w: give If-Match or if_index, not both", ErrBadRequest)
		}
		v := strings.TrimSpace(ifMatch[0])
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return false, 0, fmt.Errorf("%w: If-Match %q: want the key's index, a whole number (0: the key must not exist), bare or quoted",
				ErrBadRequest, ifMatch[0])
		}
		return true, n, nil
	}
	if param == "" {
		return false, 0, nil
	}
	n, err := strconv.ParseUint(param, 10, 64)
	if err != nil {
		return false, 0, fmt.Errorf("%w: if_index=%q: want the key's index, a whole number (0: the key must not exist)", ErrBadRequest, param)
	}
	return true, n, nil
}

// parseIdempotencyKey parses the Idempotency-Key header: nil if absent,
// else 1 to command.MaxIdemKey bytes.
func parseIdempotencyKey(vs []string) ([]byte, error) {
	switch {
	case len(vs) == 0:
		return nil, nil
	case len(vs) > 1:
		return nil, fmt.Errorf("%w: header %s is given more than once", ErrBadRequest, IdempotencyKeyHeader)
	}
	k := strings.TrimSpace(vs[0])
	if k == "" {
		return nil, fmt.Errorf("%w: header %s is empty", ErrBadRequest, IdempotencyKeyHeader)
	}
	if len(k) > command.MaxIdemKey {
		return nil, fmt.Errorf("%w: header %s of %d bytes (at most %d)", ErrBadRequest, IdempotencyKeyHeader, len(k), command.MaxIdemKey)
	}
	return []byte(k), nil
}

// commandResult is what a command's reply adds to a write's.
type commandResult struct {
	value, length *int64
}

// exec runs wr as a command on key and answers its result.
func (h *handler) exec(w http.ResponseWriter, r *http.Request, wr writeRequest, key, value []byte) {
	if wr.op == command.OpIncr && len(value) > 0 {
		h.writeError(w, http.StatusBadRequest, fmt.Errorf("%w: op=incr takes no body (the increment is by=N)", ErrBadRequest))
		return
	}
	res, err := h.svc.Exec(r.Context(), wr.toCommand(key, value), wr.opts)
	if res.Cmd.Duplicate {
		w.Header().Set(ReplayedHeader, "true")
	}
	if err != nil && res.Cmd.Code != command.CodeOK {
		h.writeCommandError(w, r, res, err)
		return
	}
	var cr commandResult
	if err == nil {
		n := res.Cmd.Int
		switch wr.op {
		case command.OpIncr:
			cr.value = &n
		case command.OpAppend:
			cr.length = &n
		}
	}
	h.writeResult(w, r, res, err, &cr)
}

// writeCommandError answers a command that took its log index but changed
// nothing: its condition did not hold (412, with the key's current index in
// the body and the X-Trireme-Index header), or the key's value refused it
// (409, 413).
func (h *handler) writeCommandError(w http.ResponseWriter, r *http.Request, res api.WriteResult, err error) {
	class := api.ClassOf(err)
	switch class {
	case api.ClassConditionFailed, api.ClassConflict, api.ClassTooLarge, api.ClassBadRequest: // api.CmdErr's
	default:
		h.writeServiceError(w, r, err)
		return
	}
	rep := CommandErrorReply{Error: err.Error(), Session: res.Token().String(), Duplicate: res.Cmd.Duplicate}
	if res.Cmd.Code == command.CodeCondFailed {
		v := res.Cmd.Version
		rep.Index = &v
		w.Header().Set(IndexHeader, strconv.FormatUint(v, 10))
	}
	setSession(w, rep.Session)
	h.setWriteReplicas(w, res)
	h.writeJSON(w, class.HTTPStatus(), rep)
}
