package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trireme-db/trireme/internal/api"
)

// Session clients: each owns a few keys (q-CLIENT-K), writes them with
// random ack modes (async included) carrying its session token, and reads
// them with consistency=session from random nodes. Its token is the newest
// (api.Token.Max) of every reply's token since the session began; a
// rolled-back answer ends the session and the client starts a new one (an
// empty token), so the history names each session "qCLIENT.EPOCH".
// Values are "qCLIENT-SEQ", SEQ growing over the client's life, so that
// "at least as new" is a comparison. CheckSessions judges the history.

// sessionKeys is the number of keys each session client owns.
const sessionKeys = 2

func sessionKey(client, k int) string { return fmt.Sprintf("q-%d-%d", client, k) }

// valueSeq is the sequence number of a session or CAS value ("PREFIX-SEQ").
func valueSeq(v string) (int, bool) {
	i := strings.LastIndexByte(v, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(v[i+1:])
	return n, err == nil
}

// sessionConn is what a session client needs from a protocol. Result.Token
// is the reply's session token ("" if none).
type sessionConn interface {
	// write writes key=value through node with ack mode ack, carrying tok.
	write(ctx context.Context, node, key, value, ack string, tok api.Token) Result
	// read reads key through node with consistency=session and tok.
	read(ctx context.Context, node, key string, tok api.Token) Result
	Close()
}

// httpSession is a sessionConn over HTTP: the token goes in the
// X-Trireme-Session header or (reads, at random) in session=.
type httpSession struct {
	c   *HTTPClient
	rnd *rand.Rand
}

// sessionReply is the part of an HTTP write or read answer a session uses.
type sessionReply struct {
	Value   string `json:"value"`
	Enc     string `json:"encoding"`
	Index   uint64 `json:"index"`
	Term    uint64 `json:"term"`
	Session string `json:"session"`
	Error   string `json:"error"`
}

func (s *httpSession) Close() { s.c.Close() }

func (s *httpSession) write(ctx context.Context, node, key, value, ack string, tok api.Token) Result {
	hdr := map[string]string{}
	if !tok.IsZero() {
		hdr["X-Trireme-Session"] = tok.String()
	}
	var r sessionReply
	code, h, err := s.c.request(ctx, http.MethodPut, s.c.url(node, key, writeQuery(ack)), value, hdr, &r)
	if err != nil && code == 0 {
		return Result{Outcome: Unknown, Err: err.Error()}
	}
	res := Result{Outcome: writeOutcome(code, r.Error), Index: r.Index, Term: r.Term, Err: r.Error, Status: code, Token: r.Session}
	if err != nil {
		res.Outcome, res.Err = Unknown, err.Error()
	}
	if res.Token == "" && h != nil {
		res.Token = h.Get("X-Trireme-Session")
	}
	return res
}

func (s *httpSession) read(ctx context.Context, node, key string, tok api.Token) Result {
	q := url.Values{"consistency": {"session"}}
	hdr := map[string]string{}
	if !tok.IsZero() {
		if s.rnd.IntN(2) == 0 {
			q.Set("session", tok.String())
		} else {
			hdr["X-Trireme-Session"] = tok.String()
		}
	}
	var r sessionReply
	code, h, err := s.c.request(ctx, http.MethodGet, s.c.url(node, key, q), "", hdr, &r)
	if err != nil {
		return Result{Outcome: Unknown, Err: err.Error(), Status: code}
	}
	res := Result{Status: code, Token: r.Session, Err: r.Error}
	if res.Token == "" {
		res.Token = h.Get("X-Trireme-Session")
	}
	switch {
	case code == http.StatusOK && r.Enc != "":
		res.Outcome, res.Err = Unknown, "unexpected encoding "+r.Enc
	case code == http.StatusOK:
		res.Outcome, res.Found, res.Value, res.Index = OK, true, r.Value, r.Index
	case code == http.StatusNotFound:
		res.Outcome = OK
	case code == http.StatusConflict && strings.Contains(r.Error, "rolled back"):
		res.Outcome = RolledBack
	default:
		res.Outcome, res.Err = Failed, fmt.Sprintf("%d %s", code, r.Error)
	}
	return res
}

// respSession is a sessionConn over RESP: one connection per node in
// session mode (TRIREME.CONSISTENCY session); each operation is one
// pipeline that gives the connection the session's token (TRIREME.SESSION
// TOKEN), sets the ack mode, runs the command and asks for the
// connection's token after it (TRIREME.SESSION).
type respSession struct {
	addrs map[string]string
	mu    sync.Mutex
	conns map[string]*redis.Client // guarded by mu
}

func newRESPSession(addrs map[string]string) *respSession {
	return &respSession{addrs: addrs, conns: map[string]*redis.Client{}}
}

func (s *respSession) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

func (s *respSession) conn(node string) *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[node]; c != nil {
		return c
	}
	c := redis.NewClient(&redis.Options{
		Addr: s.addrs[node], Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1, PoolSize: 1,
		DialTimeout: time.Second, ReadTimeout: 3 * WriteTimeout, WriteTimeout: time.Second, ContextTimeoutEnabled: true,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "TRIREME.CONSISTENCY", "session").Err()
		},
	})
	s.conns[node] = c
	return c
}

// run sends setup, then cmd, then TRIREME.SESSION in one pipeline on
// node's connection, and returns cmd's error and the token after it. A
// setup command that failed while cmd ran makes the outcome unknown.
func (s *respSession) run(ctx context.Context, node string, setup [][]any, cmd []any) (*redis.Cmd, string, error) {
	pipe := s.conn(node).Pipeline()
	var sc []*redis.Cmd
	for _, a := range setup {
		sc = append(sc, pipe.Do(ctx, a...))
	}
	c := pipe.Do(ctx, cmd...)
	after := pipe.Do(ctx, "TRIREME.SESSION")
	_, _ = pipe.Exec(ctx)
	tok, _ := after.Text()
	for _, x := range sc {
		if err := x.Err(); err != nil && c.Err() == nil {
			return c, tok, fmt.Errorf("setup %v failed (%w) but the command ran", x.Args(), err)
		}
	}
	return c, tok, c.Err()
}

// respSessionOutcome classifies a RESP session error.
func respSessionOutcome(err error) Outcome {
	var re redis.Error
	if errors.As(err, &re) && strings.HasPrefix(re.Error(), "ROLLEDBACK") {
		return RolledBack
	}
	if strings.HasPrefix(err.Error(), "setup ") {
		return Unknown
	}
	return respOutcome(err)
}

func (s *respSession) write(ctx context.Context, node, key, value, ack string, tok api.Token) Result {
	mode := []any{"TRIREME.ACK", ack}
	if ack == "semi-sync" {
		mode = append(mode, "1")
	}
	_, after, err := s.run(ctx, node, [][]any{{"TRIREME.SESSION", tok.String()}, mode}, []any{"SET", key, value})
	res := Result{Outcome: OK, Token: after}
	if err != nil {
		res.Outcome, res.Err = respSessionOutcome(err), err.Error()
	}
	// The write's own token is the newest the connection holds: a write's
	// index is past every token the session held before it.
	if t, perr := api.ParseToken(after); perr == nil && t.Index > tok.Index && res.Outcome != RolledBack {
		res.Index, res.Term = t.Index, t.Term
	}
	return res
}

func (s *respSession) read(ctx context.Context, node, key string, tok api.Token) Result {
	c, after, err := s.run(ctx, node, [][]any{{"TRIREME.SESSION", tok.String()}}, []any{"GET", key})
	res := Result{Token: after}
	switch {
	case errors.Is(err, redis.Nil):
		res.Outcome = OK
	case err != nil:
		res.Outcome, res.Err = respSessionOutcome(err), err.Error()
		if res.Outcome == Unknown && !strings.HasPrefix(err.Error(), "setup ") {
			res.Outcome = Failed // a read that failed did nothing
		}
	default:
		v, _ := c.Text()
		res.Outcome, res.Found, res.Value = OK, true, v
	}
	return res
}

// sessionWorker is one session client.
type sessionWorker struct {
	id    int // also its Worker id in the history
	proto string
	conn  sessionConn
	h     *History
	cfg   *RunConfig
	ids   func() []string
	rnd   *rand.Rand
	epoch int
	tok   api.Token
	seq   int
}

func (w *sessionWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.step()
		if w.cfg.OpDelayMax > 0 {
			sleepCtx(ctx, time.Duration(w.rnd.Int64N(int64(w.cfg.OpDelayMax))))
		}
	}
}

func (w *sessionWorker) step() {
	// A session read may wait for its token on a follower, then on the
	// leader (write timeout plus an election timeout).
	ctx, cancel := context.WithTimeout(context.Background(), 3*WriteTimeout)
	defer cancel()
	ids := w.ids()
	op := Op{Worker: w.id, Proto: w.proto, Node: ids[w.rnd.IntN(len(ids))],
		Key: sessionKey(w.id, w.rnd.IntN(sessionKeys)), Session: fmt.Sprintf("q%d.%d", w.id, w.epoch), Token: w.tok.String()}
	var res Result
	if w.rnd.IntN(100) < 40 {
		w.seq++
		op.Kind, op.Value, op.Ack = KindPut, fmt.Sprintf("q%d-%d", w.id, w.seq), w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]
		id := w.h.Invoke(op)
		res = w.conn.write(ctx, op.Node, op.Key, op.Value, op.Ack, w.tok)
		w.h.Complete(id, res)
	} else {
		op.Kind, op.Consistency = KindGet, "session"
		id := w.h.Invoke(op)
		res = w.conn.read(ctx, op.Node, op.Key, w.tok)
		w.h.Complete(id, res)
	}
	if res.Outcome == RolledBack {
		// The session lost a write: start a new one.
		w.epoch++
		w.tok = api.Token{}
		return
	}
	if t, err := api.ParseToken(res.Token); err == nil {
		w.tok = w.tok.Max(t)
	}
}

// SessionStats counts what the session check saw.
type SessionStats struct {
	Clients  int            `json:"clients"`
	Sessions int            `json:"sessions"` // client epochs: a rolled-back answer starts a new one
	Writes   map[string]int `json:"writes"`   // by outcome
	Reads    map[string]int `json:"reads"`    // by outcome
	// Claims are rolled-back answers; Journaled those whose entry a
	// rollback journal holds.
	Claims, Journaled int
	// RYW counts successful reads of a key the session had written (an
	// acknowledged write); Monotonic reads of a key it had read before.
	RYW, Monotonic int
}

// Anomaly kinds of the session check.
const (
	AnomalyReadYourWrites = "session-read-your-writes"
	AnomalyMonotonic      = "session-monotonic-reads"
	AnomalyFalseRollback  = "session-false-rollback"
	AnomalyTokenRefused   = "session-token-refused"
)

var rolledBackRE = regexp.MustCompile(`index (\d+) of term (\d+) was discarded`)

// seen is a value of a key that a session wrote (acknowledged) or read.
type seen struct {
	op    int
	found bool
	seq   int
	index uint64 // 0: not known (RESP)
}

// sessionState is what one session (a client's epoch) has written and read.
type sessionState struct {
	acked  map[string]seen  // key -> last acknowledged write
	read   map[string]seen  // key -> last successful read
	tokens map[api.Token]Op // a write's token (its entry) -> the write
}

// CheckSessions checks the session clients' operations (Op.Session set):
//
//   - read-your-writes: a successful session read of a key returns a value
//     at least as new as the session's last acknowledged write to it (a
//     higher index, or the same index and value; without an index, RESP,
//     a higher sequence number);
//   - monotonic reads: never older than what the session read before;
//   - a value older than either is accepted only if its write's outcome
//     was unknown (such a write may be applied late, after newer ones),
//     and then only at a higher index;
//   - a rolled-back answer must name a write of the session (its reply
//     token) that was not durably acknowledged, and some node's rollback
//     journal must hold that entry (term and index);
//   - a genuine token is never refused as malformed (400).
func CheckSessions(ops []Op, rollbacks []Rollback, nodes int) ([]Anomaly, SessionStats) {
	st := SessionStats{Writes: map[string]int{}, Reads: map[string]int{}}
	writes := map[[2]string]Op{}
	clients := map[int]bool{}
	for _, op := range ops {
		if op.Session != "" && op.Kind == KindPut {
			writes[[2]string{op.Key, op.Value}] = op
		}
	}
	journal := map[api.Token][]Rollback{}
	for _, rb := range rollbacks {
		t := api.Token{Term: rb.Term, Index: rb.Index}
		journal[t] = append(journal[t], rb)
	}
	sessions := map[string]*sessionState{}
	var out []Anomaly
	sorted := append([]Op(nil), ops...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	for _, op := range sorted {
		if op.Session == "" {
			continue
		}
		clients[op.Worker] = true
		s := sessions[op.Session]
		if s == nil {
			s = &sessionState{acked: map[string]seen{}, read: map[string]seen{}, tokens: map[api.Token]Op{}}
			sessions[op.Session] = s
		}
		if op.Kind == KindPut {
			st.Writes[string(op.Outcome)]++
		} else {
			st.Reads[string(op.Outcome)]++
		}
		if op.Status == http.StatusBadRequest {
			out = append(out, Anomaly{Kind: AnomalyTokenRefused, Key: op.Key,
				Detail: fmt.Sprintf("op %d (session %s %s via %s/%s, token %q) was refused: %s", op.ID, op.Session, op.Kind, op.Proto, op.Node, op.Token, op.Err)})
		}
		switch {
		case op.Outcome == RolledBack:
			st.Claims++
			an, journaled := checkRollbackClaim(op, s, journal, nodes)
			out = append(out, an...)
			if journaled {
				st.Journaled++
			}
		case op.Kind == KindPut:
			if op.Index != 0 && op.Term != 0 {
				s.tokens[api.Token{Term: op.Term, Index: op.Index}] = op
			}
			// A session that did not learn the write's token (RESP: the
			// connection failed after the write's answer) does not carry
			// it: no promise covers it.
			if op.Outcome == OK && op.RepToken != "" {
				seq, _ := valueSeq(op.Value)
				s.acked[op.Key] = seen{op: op.ID, found: true, seq: seq, index: op.Index}
			}
		case op.Kind == KindGet && op.Outcome == OK:
			out = append(out, checkSessionRead(op, s, writes, &st)...)
		}
	}
	st.Sessions = len(sessions)
	st.Clients = len(clients)
	return out, st
}

// checkSessionRead checks one successful session read against what its
// session wrote and read before, and records it.
func checkSessionRead(op Op, s *sessionState, writes map[[2]string]Op, st *SessionStats) []Anomaly {
	cur := seen{op: op.ID, found: op.Found, index: op.Index}
	if op.Found {
		cur.seq, _ = valueSeq(op.Value)
	}
	var out []Anomaly
	describe := func(x seen) string {
		if !x.found {
			return "absent"
		}
		if x.index == 0 {
			return fmt.Sprintf("seq %d", x.seq)
		}
		return fmt.Sprintf("seq %d at index %d", x.seq, x.index)
	}
	// older reports why cur is older than prev ("" if it is not).
	older := func(prev seen) string {
		switch {
		case !cur.found:
			return "the key is absent"
		case cur.index != 0 && prev.index != 0 && cur.index < prev.index:
			return "a lower index"
		case cur.index != 0 && cur.index == prev.index && cur.seq != prev.seq:
			return "another value at the same index"
		case cur.seq < prev.seq:
			w, ok := writes[[2]string{op.Key, op.Value}]
			if ok && w.Outcome == Unknown && (cur.index == 0 || prev.index == 0 || cur.index > prev.index) {
				return "" // an unknown write applied late
			}
			return "a lower sequence number"
		}
		return ""
	}
	if a, ok := s.acked[op.Key]; ok {
		st.RYW++
		if why := older(a); why != "" {
			out = append(out, Anomaly{Kind: AnomalyReadYourWrites, Key: op.Key,
				Detail: fmt.Sprintf("op %d (session %s, read via %s/%s, token %s) returned %s (%s), older than the session's acknowledged write op %d (%s)",
					op.ID, op.Session, op.Proto, op.Node, op.Token, describe(cur), why, a.op, describe(a))})
		}
	}
	if p, ok := s.read[op.Key]; ok && p.found {
		st.Monotonic++
		if why := older(p); why != "" {
			out = append(out, Anomaly{Kind: AnomalyMonotonic, Key: op.Key,
				Detail: fmt.Sprintf("op %d (session %s, read via %s/%s, token %s) returned %s (%s), older than op %d read before (%s)",
					op.ID, op.Session, op.Proto, op.Node, op.Token, describe(cur), why, p.op, describe(p))})
		}
	}
	if op.RepToken != "" { // else the session's token does not cover what it read
		s.read[op.Key] = cur
	}
	return out
}

// checkRollbackClaim checks a rolled-back answer: the entry it names must
// be the session's token, a write of the session not durably acknowledged,
// and in some rollback journal. It reports whether a journal holds it.
func checkRollbackClaim(op Op, s *sessionState, journal map[api.Token][]Rollback, nodes int) ([]Anomaly, bool) {
	claim := func(f string, a ...any) Anomaly {
		return Anomaly{Kind: AnomalyFalseRollback, Key: op.Key,
			Detail: fmt.Sprintf("op %d (session %s %s via %s/%s, token %s): ", op.ID, op.Session, op.Kind, op.Proto, op.Node, op.Token) + fmt.Sprintf(f, a...)}
	}
	m := rolledBackRE.FindStringSubmatch(op.Err)
	if m == nil {
		return []Anomaly{claim("rolled-back answer names no entry: %s", op.Err)}, false
	}
	idx, _ := strconv.ParseUint(m[1], 10, 64)
	term, _ := strconv.ParseUint(m[2], 10, 64)
	t := api.Token{Term: term, Index: idx}
	var out []Anomaly
	if t.String() != op.Token {
		out = append(out, claim("the answer names index %d term %d, not the token sent", idx, term))
	}
	w, ok := s.tokens[t]
	switch {
	case !ok:
		out = append(out, claim("index %d term %d is no write of this session (a read's token names an applied entry, which cannot be discarded): %s", idx, term, op.Err))
	case w.Outcome == OK && DurableAck(w.Ack, nodes):
		out = append(out, claim("index %d term %d is op %d, a %s write acknowledged as durable: %s", idx, term, w.ID, w.Ack, op.Err))
	}
	rbs := journal[t]
	if len(rbs) == 0 {
		return append(out, claim("no rollback journal holds index %d term %d: %s", idx, term, op.Err)), false
	}
	if ok {
		for _, rb := range rbs {
			if rb.Key != w.Key || rb.Value != w.Value {
				out = append(out, claim("%s's rollback journal holds %s=%q at index %d term %d, but op %d wrote %s=%q there",
					rb.Node, rb.Key, rb.Value, idx, term, w.ID, w.Key, w.Value))
			}
		}
	}
	return out, true
}
