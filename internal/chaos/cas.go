package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// A CAS register: clients loop over a linearizable read of x-0 and a
// PUT with If-Match: the index read (0 when absent) and a new value. The
// history (reads, and puts of kind cas) is checked with porcupine against
// a register whose version is the log index that last changed it
// (casModel): a 200 sets the value at the index it names; a 412 changed
// nothing and names the current index; a write of unknown outcome may take
// effect at any later point, or never.

const casKey = "x-0"

// CAS writes value to key through node with ack mode ack, only if the
// key's index is ifIndex (0: it must not exist). A 412 is Failed with
// Status 412 and Index the key's current index.
func (c *HTTPClient) CAS(ctx context.Context, node, key, value, ack string, ifIndex uint64) Result {
	var r sessionReply
	code, _, err := c.request(ctx, http.MethodPut, c.url(node, key, writeQuery(ack)), value,
		map[string]string{"If-Match": strconv.FormatUint(ifIndex, 10)}, &r)
	if err != nil {
		return Result{Outcome: Unknown, Err: err.Error(), Status: code}
	}
	res := Result{Outcome: writeOutcome(code, r.Error), Index: r.Index, Term: r.Term, Err: r.Error, Status: code, Token: r.Session}
	if code == http.StatusPreconditionFailed {
		res.Outcome = Failed
	}
	return res
}

// casWorker is one CAS client.
type casWorker struct {
	id  int
	cl  *HTTPClient
	h   *History
	cfg *RunConfig
	ids func() []string
	rnd *rand.Rand
	seq int
}

func (w *casWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.step()
		if w.cfg.OpDelayMax > 0 {
			sleepCtx(ctx, time.Duration(w.rnd.Int64N(int64(w.cfg.OpDelayMax))))
		}
	}
}

// step reads the register, then writes it if still at the index read.
func (w *casWorker) step() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*WriteTimeout)
	defer cancel()
	ids := w.ids()
	rd := Op{Worker: w.id, Proto: "http", Node: ids[w.rnd.IntN(len(ids))], Kind: KindGet, Key: casKey, Consistency: "linearizable"}
	id := w.h.Invoke(rd)
	res := w.cl.Get(ctx, rd.Node, casKey, "linearizable")
	w.h.Complete(id, res)
	if res.Outcome != OK {
		return
	}
	w.seq++
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*WriteTimeout)
	defer cancel2()
	op := Op{Worker: w.id, Proto: "http", Node: rd.Node, Kind: KindCAS, Key: casKey, IfIndex: res.Index,
		Value: fmt.Sprintf("x%d-%d", w.id, w.seq), Ack: w.cfg.Acks[w.rnd.IntN(len(w.cfg.Acks))]}
	id = w.h.Invoke(op)
	w.h.Complete(id, w.cl.CAS(ctx2, op.Node, op.Key, op.Value, op.Ack, op.IfIndex))
}

// CAS register model for porcupine. The version is the log index that last
// changed the key (0: absent); VerKnown is false after a write of unknown
// outcome took effect (its index is unknown until a read or a 412 names it).
type casInput struct {
	Read    bool
	IfIndex uint64
	Value   string
}

type casOutput struct {
	Unknown bool   // a cas of unknown outcome
	Refused bool   // a cas answered 412
	Found   bool   // reads
	Value   string // reads
	Index   uint64 // reads: the version read; 200: the write's index; 412: the current version
}

type casState struct {
	Found    bool
	Value    string
	Ver      uint64
	VerKnown bool
}

// holds reports whether the condition IfIndex may hold in s.
func (s casState) holds(ifIndex uint64) bool {
	if ifIndex == 0 {
		return !s.Found
	}
	return s.Found && (!s.VerKnown || s.Ver == ifIndex)
}

// at reports whether s may be at version v (0: absent).
func (s casState) at(v uint64) bool {
	return (v == 0) == !s.Found && (!s.VerKnown || s.Ver == v)
}

func casStep(state, input, output any) (bool, any) {
	s, in := state.(casState), input.(casInput)
	out := output.(casOutput)
	switch {
	case in.Read:
		if out.Found != s.Found || out.Value != s.Value || !s.at(out.Index) {
			return false, s
		}
		s.Ver, s.VerKnown = out.Index, true
		return true, s
	case out.Unknown:
		// At its linearization point it applies if its condition holds;
		// a write that never applied is the same as one linearized last.
		if s.holds(in.IfIndex) {
			return true, casState{Found: true, Value: in.Value}
		}
		return true, s
	case out.Refused:
		if out.Index == in.IfIndex || !s.at(out.Index) {
			return false, s
		}
		s.Ver, s.VerKnown = out.Index, true
		return true, s
	}
	if !s.holds(in.IfIndex) {
		return false, s
	}
	return true, casState{Found: true, Value: in.Value, Ver: out.Index, VerKnown: true}
}

// casModel is porcupine's model of the CAS register.
var casModel = porcupine.Model{
	Init:  func() any { return casState{VerKnown: true} },
	Step:  casStep,
	Equal: func(a, b any) bool { return a.(casState) == b.(casState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(casInput), output.(casOutput)
		switch {
		case in.Read && !out.Found:
			return "get() -> absent"
		case in.Read:
			return fmt.Sprintf("get() -> %s @%d", out.Value, out.Index)
		case out.Unknown:
			return fmt.Sprintf("cas(@%d, %s) -> ?", in.IfIndex, in.Value)
		case out.Refused:
			return fmt.Sprintf("cas(@%d, %s) -> 412 @%d", in.IfIndex, in.Value, out.Index)
		}
		return fmt.Sprintf("cas(@%d, %s) -> ok @%d", in.IfIndex, in.Value, out.Index)
	},
	DescribeState: func(state any) string {
		s := state.(casState)
		switch {
		case !s.Found:
			return "absent"
		case !s.VerKnown:
			return s.Value + " @?"
		}
		return fmt.Sprintf("%s @%d", s.Value, s.Ver)
	},
}

// CASStats counts the CAS register's operations.
type CASStats struct {
	Reads, OK, Refused, Unknown, Failed int
	// Checked is the number of operations porcupine checked.
	Checked      int
	Inconclusive bool
}

// CheckCAS checks the CAS register's history (key casKey: linearizable
// reads that succeeded, and cas writes that succeeded, were refused with
// 412, or whose outcome is unknown) with porcupine and casModel; a
// violation writes visDir/lin-KEY.html.
func CheckCAS(ops []Op, timeout time.Duration, visDir string) ([]Anomaly, CASStats) {
	var st CASStats
	var end int64
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	end++
	var hist []porcupine.Operation
	for _, op := range ops {
		if op.Key != casKey {
			continue
		}
		po := porcupine.Operation{ClientId: op.Worker, Call: op.Call, Return: op.Return,
			Metadata: fmt.Sprintf("op %d via %s/%s", op.ID, op.Proto, op.Node)}
		in := casInput{IfIndex: op.IfIndex, Value: op.Value}
		switch {
		case op.Kind == KindGet && op.Outcome == OK && op.Consistency == "linearizable":
			st.Reads++
			po.Input, po.Output = casInput{Read: true}, casOutput{Found: op.Found, Value: op.Value, Index: op.Index}
		case op.Kind != KindCAS:
			continue
		case op.Outcome == OK:
			st.OK++
			po.Input, po.Output = in, casOutput{Index: op.Index}
		case op.Outcome == Failed && op.Status == http.StatusPreconditionFailed:
			st.Refused++
			po.Input, po.Output = in, casOutput{Refused: true, Index: op.Index}
		case op.Outcome == Unknown || op.Return < 0:
			st.Unknown++
			po.Input, po.Output, po.Return = in, casOutput{Unknown: true}, end
		default:
			st.Failed++
			continue
		}
		hist = append(hist, po)
	}
	if len(hist) == 0 {
		return nil, st
	}
	st.Checked = len(hist)
	sort.SliceStable(hist, func(i, j int) bool { return hist[i].Call < hist[j].Call })
	res, info := porcupine.CheckOperationsVerbose(casModel, hist, timeout)
	switch res {
	case porcupine.Unknown:
		st.Inconclusive = true
	case porcupine.Illegal:
		detail := fmt.Sprintf("%d operations of the CAS register are not linearizable", len(hist))
		if visDir != "" {
			p := filepath.Join(visDir, "lin-"+safeName(casKey)+".html")
			if err := porcupine.VisualizePath(casModel, info, p); err == nil {
				detail += "; visualization: " + p
			} else {
				detail += "; visualization failed: " + err.Error()
			}
		}
		return []Anomaly{{Kind: AnomalyNotLinearizable, Key: casKey, Detail: detail}}, st
	}
	return nil, st
}

func (st CASStats) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cas register: %d reads, %d writes ok, %d refused (412), %d unknown, %d failed; linearizability checked %d ops",
		st.Reads, st.OK, st.Refused, st.Unknown, st.Failed, st.Checked)
	if st.Inconclusive {
		b.WriteString(" (inconclusive)")
	}
	b.WriteString("\n")
	return b.String()
}
