package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Counters: clients increment keys c-K by 1 (POST ?op=incr) with an
// Idempotency-Key per logical increment, and retry an increment with the
// same key, through any node, until it is answered (or their bounds run
// out): the database must apply each at most once, so that after recovery
// every node holds acknowledged + k, 0 <= k <= the increments whose outcome
// stayed unknown. Each attempt is an op of kind incr in the history; the
// increments are grouped by Op.IdemKey. CheckCounters judges them.

// Retry bounds of one logical increment.
const (
	incrAttempts = 10
	incrRetryFor = 20 * time.Second
)

func counterKey(k int) string { return fmt.Sprintf("c-%d", k) }

// incrReply is the answer to POST ?op=incr.
type incrReply struct {
	Value     *int64 `json:"value"`
	Index     uint64 `json:"index"`
	Term      uint64 `json:"term"`
	Session   string `json:"session"`
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error"`
}

// Incr adds 1 to key through node with ack mode ack and Idempotency-Key
// idem. Result.Value is the new value (decimal) when the answer is 200.
func (c *HTTPClient) Incr(ctx context.Context, node, key, ack, idem string) Result {
	q := writeQuery(ack)
	q.Set("op", "incr")
	q.Set("by", "1")
	var r incrReply
	code, _, err := c.request(ctx, http.MethodPost, c.url(node, key, q), "", map[string]string{"Idempotency-Key": idem}, &r)
	if err != nil {
		return Result{Outcome: Unknown, Err: err.Error(), Status: code}
	}
	res := Result{Outcome: writeOutcome(code, r.Error), Index: r.Index, Term: r.Term, Err: r.Error, Status: code,
		Token: r.Session, Duplicate: r.Duplicate}
	if code == http.StatusConflict {
		res.Outcome = Failed // not an integer, or an overflow: nothing changed
	}
	if res.Outcome == OK {
		if r.Value == nil {
			res.Outcome, res.Err = Unknown, "200 without a value"
		} else {
			res.Value = strconv.FormatInt(*r.Value, 10)
		}
	}
	return res
}

// counterWorker increments the counters.
type counterWorker struct {
	id  int
	cl  *HTTPClient
	h   *History
	cfg *RunConfig
	ids func() []string
	rnd *rand.Rand
	n   int
}

func (w *counterWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.increment(ctx)
		if w.cfg.OpDelayMax > 0 {
			sleepCtx(ctx, time.Duration(w.rnd.Int64N(int64(w.cfg.OpDelayMax))))
		}
	}
}

// increment is one logical increment: attempts with one idempotency key
// until one is answered 200 or certainly refused for good (400, 409, 413),
// at most incrAttempts within incrRetryFor, and none once the run is over.
func (w *counterWorker) increment(ctx context.Context) {
	w.n++
	key := counterKey(w.rnd.IntN(w.cfg.Counters))
	idem := fmt.Sprintf("chaos-%d-%d-%d", w.cfg.Seed, w.id, w.n)
	ack := w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]
	start := time.Now()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ids := w.ids()
		op := Op{Worker: w.id, Proto: "http", Node: ids[w.rnd.IntN(len(ids))], Kind: KindIncr, Key: key, Ack: ack,
			IdemKey: idem, Attempt: attempt}
		octx, cancel := context.WithTimeout(context.Background(), 2*WriteTimeout)
		id := w.h.Invoke(op)
		res := w.cl.Incr(octx, op.Node, key, ack, idem)
		w.h.Complete(id, res)
		cancel()
		switch {
		case res.Outcome == OK,
			res.Status == http.StatusBadRequest, res.Status == http.StatusConflict, res.Status == http.StatusRequestEntityTooLarge:
			return
		case attempt >= incrAttempts, time.Since(start) > incrRetryFor, ctx.Err() != nil:
			return
		}
		sleepCtx(ctx, backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// CounterStats counts the logical increments (acknowledged: some attempt
// answered 200; unknown: none did and some attempt may have written;
// failed: every attempt certainly wrote nothing) and the attempts.
type CounterStats struct {
	Keys       int            `json:"keys"`
	Acked      int            `json:"acked"`
	Unknown    int            `json:"unknown"`
	Failed     int            `json:"failed"`
	Attempts   int            `json:"attempts"`
	Retried    int            `json:"retried"`    // increments that took more than one attempt
	Duplicates int            `json:"duplicates"` // 200 answers that were replays
	Final      map[string]int `json:"final"`      // key -> value on the leader (-1: unreadable)
}

// increment is one logical increment, from its attempts.
type increment struct {
	key      string
	idem     string
	attempts int
	acked    bool
	unknown  bool
	values   []int64 // the values of the 200 answers
	ops      []int
}

// CheckCounters checks the counters after recovery. final holds each
// node's state (id -> key -> value), leader the node whose values go into
// the stats. Per key: every node's value v must satisfy A <= v <= A + U (A
// acknowledged increments, U of unknown outcome); more is a double apply.
// Every 200 answer of one increment (a retry's replay included) must name
// the same value, and distinct acknowledged increments distinct values, none
// above v.
func CheckCounters(ops []Op, final map[string]map[string]FinalRead, leader string) ([]Anomaly, CounterStats) {
	st := CounterStats{Final: map[string]int{}}
	incs := groupIncrements(ops, &st)
	out, t := tallyIncrements(incs, &st)
	keys := map[string]bool{}
	for _, in := range incs {
		keys[in.key] = true
	}
	st.Keys = len(keys)
	ids := make([]string, 0, len(final))
	for id := range final {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for key := range keys {
		for _, id := range ids {
			out = append(out, t.check(key, id, final[id][key], id == leader, &st)...)
		}
	}
	return out, st
}

// groupIncrements groups the incr attempts by idempotency key, in the
// order of their first attempts, and counts attempts and replays.
func groupIncrements(ops []Op, st *CounterStats) []*increment {
	byKey := map[string]*increment{}
	var incs []*increment
	for _, op := range ops {
		if op.Kind != KindIncr {
			continue
		}
		st.Attempts++
		in := byKey[op.IdemKey]
		if in == nil {
			in = &increment{key: op.Key, idem: op.IdemKey}
			byKey[op.IdemKey] = in
			incs = append(incs, in)
		}
		in.attempts++
		in.ops = append(in.ops, op.ID)
		switch {
		case op.Outcome == OK:
			in.acked = true
			if op.Duplicate {
				st.Duplicates++
			}
			if v, err := strconv.ParseInt(op.Value, 10, 64); err == nil {
				in.values = append(in.values, v)
			}
		case !nothingDone(op.Outcome):
			in.unknown = true
		}
	}
	return incs
}

// counterTally is, per key, what the increments allow the final value to be.
type counterTally struct {
	acked, unknown map[string]int
	maxValue       map[string]int64 // the largest value an increment was answered with
}

// tallyIncrements classifies the increments and checks their answers:
// one value per increment, one increment per value.
func tallyIncrements(incs []*increment, st *CounterStats) ([]Anomaly, counterTally) {
	t := counterTally{acked: map[string]int{}, unknown: map[string]int{}, maxValue: map[string]int64{}}
	byValue := map[string]map[int64]string{} // key -> value -> idem
	var out []Anomaly
	for _, in := range incs {
		if in.attempts > 1 {
			st.Retried++
		}
		switch {
		case in.acked:
			st.Acked++
			t.acked[in.key]++
		case in.unknown:
			st.Unknown++
			t.unknown[in.key]++
			continue
		default:
			st.Failed++
			continue
		}
		if len(in.values) == 0 {
			continue
		}
		v := in.values[0]
		if slices.ContainsFunc(in.values, func(x int64) bool { return x != v }) {
			out = append(out, Anomaly{Kind: AnomalyDuplicated, Key: in.key,
				Detail: fmt.Sprintf("increment %s (ops %v) was answered with values %v: a retry was applied again", in.idem, in.ops, in.values)})
		}
		if byValue[in.key] == nil {
			byValue[in.key] = map[int64]string{}
		}
		if other, dup := byValue[in.key][v]; dup {
			out = append(out, Anomaly{Kind: AnomalyDuplicated, Key: in.key,
				Detail: fmt.Sprintf("increments %s and %s were both answered with the value %d", other, in.idem, v)})
		}
		byValue[in.key][v] = in.idem
		t.maxValue[in.key] = max(t.maxValue[in.key], v)
	}
	return out, t
}

// check checks node id's final value f of counter key.
func (t counterTally) check(key, id string, f FinalRead, leader bool, st *CounterStats) []Anomaly {
	a, u := t.acked[key], t.unknown[key]
	var v int64
	if f.Found {
		var err error
		if v, err = strconv.ParseInt(f.Value, 10, 64); err != nil {
			return []Anomaly{{Kind: AnomalyWrongVersion, Key: key, Detail: fmt.Sprintf("%s holds %q, not a counter", id, f.Value)}}
		}
	}
	if leader {
		st.Final[key] = int(v)
	}
	switch {
	case v < int64(a):
		return []Anomaly{{Kind: AnomalyLostWrite, Key: key,
			Detail: fmt.Sprintf("%s holds %d, but %d increments were acknowledged (%d unknown)", id, v, a, u)}}
	case v > int64(a+u):
		return []Anomaly{{Kind: AnomalyDuplicated, Key: key,
			Detail: fmt.Sprintf("%s holds %d, more than the %d acknowledged and %d unknown increments: an increment was applied twice", id, v, a, u)}}
	case t.maxValue[key] > v:
		return []Anomaly{{Kind: AnomalyLostWrite, Key: key,
			Detail: fmt.Sprintf("%s holds %d, but an increment was answered with %d", id, v, t.maxValue[key])}}
	}
	return nil
}

// counterSummary is the counters' line of the summary.
func (st CounterStats) summary() string {
	keys := make([]string, 0, len(st.Final))
	for k := range st.Final {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var fs []string
	for _, k := range keys {
		fs = append(fs, fmt.Sprintf("%s=%d", k, st.Final[k]))
	}
	return fmt.Sprintf("counters: %d increments acknowledged, %d unknown, %d failed (%d attempts, %d increments retried, %d duplicate answers); final on the leader: %s\n",
		st.Acked, st.Unknown, st.Failed, st.Attempts, st.Retried, st.Duplicates, strings.Join(fs, " "))
}
