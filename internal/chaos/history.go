package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Op kinds. A cas is a put with If-Match (Op.IfIndex); an incr is one
// attempt of a logical increment (Op.IdemKey names the increment).
const (
	KindPut    = "put"
	KindDelete = "delete"
	KindGet    = "get"
	KindCAS    = "cas"
	KindIncr   = "incr"
)

// isWrite reports whether an op of kind k writes a value (Op.Value) to its key.
func isWrite(k string) bool { return k == KindPut || k == KindCAS }

// Op is one client operation: its call and its return, in nanoseconds since
// the history began. Return is -1 while the operation is pending.
type Op struct {
	ID          int     `json:"id"`
	Worker      int     `json:"worker"`
	Proto       string  `json:"proto"` // "http" or "resp"
	Node        string  `json:"node"`
	Kind        string  `json:"kind"`
	Key         string  `json:"key"`
	Value       string  `json:"value,omitempty"` // written, or read
	Ack         string  `json:"ack,omitempty"`
	Consistency string  `json:"consistency,omitempty"`
	Call        int64   `json:"call_ns"`
	Return      int64   `json:"return_ns"`
	Outcome     Outcome `json:"outcome"`
	Found       bool    `json:"found,omitempty"`
	Index       uint64  `json:"index,omitempty"`
	Term        uint64  `json:"term,omitempty"`
	Err         string  `json:"err,omitempty"`
	// Status is the HTTP status of the answer (0: none, or RESP).
	Status int `json:"status,omitempty"`
	// Session clients (sessions.go): the session (client and epoch), the
	// token the op carried and the token of the reply (or, over RESP, the
	// connection's token after the op).
	Session  string `json:"session,omitempty"`
	Token    string `json:"token,omitempty"`
	RepToken string `json:"rep_token,omitempty"`
	// IfIndex is a cas's If-Match.
	IfIndex uint64 `json:"if_index,omitempty"`
	// IdemKey is the Idempotency-Key of an incr (the same for every attempt
	// of one increment), Attempt its attempt (1, 2, ...), Duplicate that
	// the answer was the replay of an earlier attempt's.
	IdemKey   string `json:"idem_key,omitempty"`
	Attempt   int    `json:"attempt,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// By is the increment of a multi-leader add (KindAdd).
	By int64 `json:"by,omitempty"`
}

// FaultEvent is one injected fault: when it began and ended (ns since the history began).
type FaultEvent struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	Start  int64  `json:"start_ns"`
	End    int64  `json:"end_ns"`
}

// History records operations and faults concurrently.
type History struct {
	start time.Time

	mu     sync.Mutex
	ops    []Op         // guarded by mu
	faults []FaultEvent // guarded by mu
}

// NewHistory starts a history now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the time since the history began, in ns (monotonic).
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Invoke records the call of op and returns its id.
func (h *History) Invoke(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	op.Call = h.Now()
	op.Return = -1
	h.ops = append(h.ops, op)
	return op.ID
}

// Complete records the result of operation id.
func (h *History) Complete(id int, r Result) {
	now := h.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	op := &h.ops[id]
	op.Return = now
	op.Outcome, op.Found, op.Index, op.Term, op.Err = r.Outcome, r.Found, r.Index, r.Term, r.Err
	op.Status, op.RepToken, op.Duplicate = r.Status, r.Token, r.Duplicate
	if op.Kind == KindGet || op.Kind == KindIncr || op.Kind == KindAdd {
		op.Value = r.Value
	}
}

// Fault records a fault; the returned function records its end.
func (h *History) Fault(kind, detail string) func() {
	h.mu.Lock()
	i := len(h.faults)
	h.faults = append(h.faults, FaultEvent{Kind: kind, Detail: detail, Start: h.Now(), End: -1})
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		h.faults[i].End = h.Now()
		h.mu.Unlock()
	}
}

// Ops returns a copy of the operations.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Faults returns a copy of the fault events.
func (h *History) Faults() []FaultEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]FaultEvent(nil), h.faults...)
}

// WriteJSON saves the history (operations and faults) to path.
func (h *History) WriteJSON(path string) error {
	v := struct {
		Start  time.Time    `json:"start"`
		Ops    []Op         `json:"ops"`
		Faults []FaultEvent `json:"faults"`
	}{h.start, h.Ops(), h.Faults()}
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("chaos: write history: %w", err)
	}
	return nil
}

// ReadHistory loads a history saved by WriteJSON.
func ReadHistory(path string) ([]Op, []FaultEvent, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var v struct {
		Ops    []Op         `json:"ops"`
		Faults []FaultEvent `json:"faults"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, nil, fmt.Errorf("chaos: %s: %w", path, err)
	}
	return v.Ops, v.Faults, nil
}
