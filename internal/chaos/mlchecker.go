package chaos

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The checks of a multi-leader run (multileader.go). They take the history
// and the final state of every node that could be read (node -> key ->
// MLRead, read after every stream caught up), and the values of the
// versions any node's conflict log records as losers (key -> value). None
// of them assumes an order of writes across nodes.

// AnomalyIdemAccepted: a multi-leader node applied an increment that
// carried an Idempotency-Key, which it promises to refuse (a retry would
// count twice).
const AnomalyIdemAccepted = "idempotency-key-accepted"

// MLStats are a multi-leader run's figures (Report.ML).
type MLStats struct {
	Policy string `json:"policy"`
	// Convergence is the time from healing every fault (killed nodes
	// restarted, paused ones resumed) to every node having applied every
	// peer's stream to its end; Converged says whether that happened
	// within the deadline.
	Convergence time.Duration `json:"convergence"`
	Converged   bool          `json:"converged"`
	// Keys read on every node at the end.
	Keys int `json:"keys"`
	// The conflict logs: records over all nodes, the keys they name, and
	// the records the nodes dropped to bound their logs.
	ConflictRecords  int    `json:"conflict_records"`
	ConflictKeys     int    `json:"conflict_keys"`
	ConflictsDropped uint64 `json:"conflicts_dropped"`
	MLCheckStats
}

// MLCheckStats are the figures of the checks.
type MLCheckStats struct {
	Inserts   MLInsertStats    `json:"inserts"`
	Contended MLContendedStats `json:"contended"`
	Counters  MLCounterStats   `json:"counters"`
}

// mlDurable reports whether a multi-leader write is durable on the node
// that took it: answered 200, or 504 with its position in that node's
// stream (its ack mode was not met in time, but the node says it is
// durable there and still replicates: so it must reach every node).
func mlDurable(op Op) bool {
	return op.Outcome == OK || (op.Status == http.StatusGatewayTimeout && op.Index > 0)
}

// mlIDs are the nodes of states, sorted.
func mlIDs(states map[string]map[string]MLRead) []string {
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// CheckMLConverged reports every key whose state (first value, siblings,
// causal context) is not the same on every node.
func CheckMLConverged(states map[string]map[string]MLRead) []Anomaly {
	ids := mlIDs(states)
	keys := map[string]bool{}
	for _, s := range states {
		for k := range s {
			keys[k] = true
		}
	}
	var out []Anomaly
	for k := range keys {
		same := true
		var parts []string
		for i, id := range ids {
			r, ok := states[id][k]
			if !ok || (i > 0 && !r.Equal(states[ids[0]][k])) {
				same = false
			}
			if ok {
				parts = append(parts, id+"="+r.String())
			} else {
				parts = append(parts, id+"=unread")
			}
		}
		if !same {
			out = append(out, Anomaly{Kind: AnomalyDiverged, Key: k, Detail: strings.Join(parts, "; ")})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// MLInsertStats counts the unique-key inserts by outcome.
// MLOutcomes counts writes by what their answers say of them.
type MLOutcomes struct {
	Acked   int `json:"acked"`   // answered 200
	Durable int `json:"durable"` // answered 504 with a stream position
	Unknown int `json:"unknown"` // anything else that may have written
	Failed  int `json:"failed"`  // certainly did nothing
}

// mlClass is what a write's answer says of it.
type mlClass int

const (
	mlAcked mlClass = iota
	mlDurableTimeout
	mlFailed
	mlUnknown
)

// count classifies op's answer, counts it and returns its class.
func (c *MLOutcomes) count(op Op) mlClass {
	switch {
	case op.Outcome == OK:
		c.Acked++
		return mlAcked
	case mlDurable(op):
		c.Durable++
		return mlDurableTimeout
	case nothingDone(op.Outcome):
		c.Failed++
		return mlFailed
	}
	c.Unknown++
	return mlUnknown
}

type MLInsertStats struct {
	MLOutcomes
	// UnknownPresent: unknown ones present at the end (on the first node).
	UnknownPresent int `json:"unknown_present"`
}

// CheckMLInserts checks the unique inserts (puts of keys u-...; each key
// is written once, so nothing can overwrite or conflict with it). On every
// node: an insert durable on the node that took it (mlDurable) is present
// with its value; a failed one is absent; an unknown one may be either;
// and a key holds no value but its insert's, and no siblings.
func CheckMLInserts(ops []Op, states map[string]map[string]MLRead) ([]Anomaly, MLInsertStats) {
	var st MLInsertStats
	ids := mlIDs(states)
	var out []Anomaly
	for _, op := range ops {
		if op.Kind != KindPut || !strings.HasPrefix(op.Key, "u-") {
			continue
		}
		st.count(op)
		durable := mlDurable(op)
		var missing, shown, other []string
		for i, id := range ids {
			f, ok := states[id][op.Key]
			if !ok {
				continue
			}
			present := f.Found && f.Value == op.Value && len(f.Siblings) == 0
			if f.Found && !present {
				other = append(other, id+"="+f.String())
			}
			switch {
			case durable && !present:
				missing = append(missing, id)
			case nothingDone(op.Outcome) && f.Found:
				shown = append(shown, id)
			case !durable && !nothingDone(op.Outcome) && present && i == 0:
				st.UnknownPresent++
			}
		}
		if len(other) > 0 {
			out = append(out, Anomaly{Kind: AnomalyUnwrittenRead, Key: op.Key,
				Detail: fmt.Sprintf("written once (op %d, %q), but held as %s", op.ID, op.Value, strings.Join(other, ", "))})
		}
		if len(missing) > 0 {
			out = append(out, Anomaly{Kind: AnomalyLostWrite, Key: op.Key,
				Detail: fmt.Sprintf("op %d (%s via %s/%s, ack=%s, status %d, stream index %d) is missing on %v",
					op.ID, opOutcome(op), op.Proto, op.Node, op.Ack, op.Status, op.Index, missing)})
		}
		if len(shown) > 0 {
			out = append(out, Anomaly{Kind: AnomalyFailedWriteSeen, Key: op.Key,
				Detail: fmt.Sprintf("op %d was answered as failed (%s) but is present on %v", op.ID, op.Err, shown)})
		}
	}
	return out, st
}

// opOutcome names an op's outcome, "durable" for a 504 with a stream position.
func opOutcome(op Op) string {
	if op.Outcome != OK && mlDurable(op) {
		return "durable (504)"
	}
	return string(op.Outcome)
}

// MLContendedStats counts the writes to the contended keys (k-...) and
// what became of the durable ones.
type MLContendedStats struct {
	Keys int `json:"keys"`
	MLOutcomes
	// Of the acknowledged and durable ones: a final value or sibling on
	// every node; else a loser in some node's conflict log; else
	// causally overwritten (LWW only: see CheckMLContended).
	Final         int `json:"final"`
	InConflictLog int `json:"in_conflict_log"`
	Overwritten   int `json:"overwritten"`
	// Values: the final values (siblings included) summed over the keys,
	// on the first node.
	Values int `json:"values"`
}

// CheckMLContended checks the contended keys (k-...), written blindly (no
// causal context) with distinct values from every node.
//
//   - Every final value, and every sibling, on every node was written to
//     that key by a client, by a write not answered as failed.
//   - Every write durable on the node that took it (mlDurable) is, on every
//     node, a final value or sibling, or a version (by value) that some
//     node's conflict log records as a loser (LWW, or siblings beyond
//     --max-siblings), or was causally overwritten. A version recorded
//     only as the winner or as a kept sibling of a conflict was not lost
//     there, so it does not count.
//
// Causal overwrites cannot be seen: a blind LWW write overwrites whatever
// the node that takes it holds, without a conflict, so a write W that had
// replicated to node X is silently replaced by the next write X takes.
// Under LWW, W missing from the final state and every conflict log is
// therefore allowed only if some other write W2 to the key (not answered as
// failed) may have been accepted after W existed somewhere: W2 was
// answered after W was invoked (W2.Return > W.Call), or W2's outcome is
// unknown (it may have been accepted at any time after its call). The
// bound is W's invocation, not its acknowledgement: with ack=K or all, W is
// acknowledged only once peers applied it, and a peer that applied it may
// have taken (and acknowledged) a later write in the meantime; and even
// with ack=local two clients' answers can arrive in either order. So only
// an acknowledged write with no possible successor (the last one) must be
// visible. Under the siblings policy a blind write supersedes nothing (it
// becomes a sibling), and a node drops siblings beyond --max-siblings only
// as recorded conflicts, so there every durable write must be final or in
// a conflict log as a loser, with no excuse.
func CheckMLContended(ops []Op, states map[string]map[string]MLRead, conflicts map[string]map[string]bool, siblings bool) ([]Anomaly, MLContendedStats) {
	var st MLContendedStats
	ids := mlIDs(states)
	byKey := map[string][]Op{}
	written := map[[2]string]Op{}
	for _, op := range ops {
		if op.Kind != KindPut || !strings.HasPrefix(op.Key, "k-") {
			continue
		}
		byKey[op.Key] = append(byKey[op.Key], op)
		written[[2]string{op.Key, op.Value}] = op
	}
	keys := map[string]bool{}
	for k := range byKey {
		keys[k] = true
	}
	for _, id := range ids {
		for k := range states[id] {
			if strings.HasPrefix(k, "k-") {
				keys[k] = true
			}
		}
	}
	st.Keys = len(keys)
	var out []Anomaly
	// Final values: each written, and not by a failed write.
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		bad := map[string][]string{} // value -> nodes
		for i, id := range ids {
			f, ok := states[id][k]
			if !ok {
				continue
			}
			vals := f.Values()
			if i == 0 {
				st.Values += len(vals)
			}
			for _, v := range vals {
				if w, ok := written[[2]string{k, v}]; !ok || nothingDone(w.Outcome) {
					bad[v] = append(bad[v], id)
				}
			}
		}
		for _, v := range slices.Sorted(maps.Keys(bad)) {
			if w, ok := written[[2]string{k, v}]; ok {
				out = append(out, Anomaly{Kind: AnomalyFailedWriteSeen, Key: k,
					Detail: fmt.Sprintf("%q, written by op %d, answered as failed (%s), is a final value on %v", v, w.ID, w.Err, bad[v])})
			} else {
				out = append(out, Anomaly{Kind: AnomalyUnwrittenRead, Key: k,
					Detail: fmt.Sprintf("final value %q on %v was written by no client", v, bad[v])})
			}
		}
	}
	// Durable writes: final, in a conflict log, or (LWW) overwritten.
	for _, op := range ops {
		if op.Kind != KindPut || !strings.HasPrefix(op.Key, "k-") {
			continue
		}
		if class := st.count(op); class == mlFailed || class == mlUnknown {
			continue
		}
		var notFinal []string
		for _, id := range ids {
			if f, ok := states[id][op.Key]; ok && !slices.Contains(f.Values(), op.Value) {
				notFinal = append(notFinal, id)
			}
		}
		switch {
		case len(notFinal) == 0:
			st.Final++
		case conflicts[op.Key][op.Value]:
			st.InConflictLog++
		case !siblings && mayOverwrite(op, byKey[op.Key]):
			st.Overwritten++
		default:
			why := "no other write to the key may have been accepted after it was invoked"
			if siblings {
				why = "under the siblings policy a blind write overwrites nothing"
			}
			out = append(out, Anomaly{Kind: AnomalyLostWrite, Key: op.Key,
				Detail: fmt.Sprintf("op %d (%q, %s via %s/%s, ack=%s) is not a final value on %v and no conflict log records it as a loser; %s",
					op.ID, op.Value, opOutcome(op), op.Proto, op.Node, op.Ack, notFinal, why)})
		}
	}
	return out, st
}

// mayOverwrite reports whether some write in others (to w's key) other than
// w, not answered as failed, may have been accepted after w was invoked:
// answered after w's call, or of unknown outcome.
func mayOverwrite(w Op, others []Op) bool {
	for _, o := range others {
		if o.ID == w.ID || nothingDone(o.Outcome) {
			continue
		}
		if o.Return < 0 || o.Return > w.Call || !mlDurable(o) {
			return true
		}
	}
	return false
}

// MLCounterStats counts the increments (KindAdd) by outcome, and their sums.
type MLCounterStats struct {
	Keys    int `json:"keys"`
	Acked   int `json:"acked"`
	Durable int `json:"durable"` // 504 with a stream position
	Unknown int `json:"unknown"`
	Failed  int `json:"failed"`
	// IdemRefused: increments with an Idempotency-Key answered 400, as
	// they must be.
	IdemRefused int `json:"idem_refused"`
	// AckedSum: the sum of the acknowledged and durable increments;
	// UnknownSum: of the unknown ones.
	AckedSum   int64 `json:"acked_sum"`
	UnknownSum int64 `json:"unknown_sum"`
	// Final: each counter on the first node.
	Final map[string]int64 `json:"final"`
}

// CheckMLCounters checks the counters (increments by N >= 1, KindAdd). On
// every node, every counter's value v must satisfy A <= v <= A + U, where
// A sums the increments durable on the node that took them (mlDurable) and
// U those of unknown outcome (a failed one, a 400 included, counts for
// neither): less is a lost increment, more one counted twice or one that
// was refused. An answered value (that node's count just after the
// increment) above v is a lost increment too, and an increment with an
// Idempotency-Key must be refused (400).
func CheckMLCounters(ops []Op, states map[string]map[string]MLRead) ([]Anomaly, MLCounterStats) {
	st := MLCounterStats{Final: map[string]int64{}}
	acked, unknown, maxAnswer := map[string]int64{}, map[string]int64{}, map[string]int64{}
	maxOp := map[string]int{}
	var out []Anomaly
	for _, op := range ops {
		if op.Kind != KindAdd {
			continue
		}
		if _, ok := acked[op.Key]; !ok {
			acked[op.Key], unknown[op.Key] = 0, 0
		}
		durable := mlDurable(op)
		switch {
		case op.Outcome == OK:
			st.Acked++
		case durable:
			st.Durable++
		case nothingDone(op.Outcome):
			st.Failed++
		default:
			st.Unknown++
		}
		switch {
		case durable:
			acked[op.Key] += op.By
			st.AckedSum += op.By
		case !nothingDone(op.Outcome):
			unknown[op.Key] += op.By
			st.UnknownSum += op.By
		}
		if op.IdemKey != "" {
			switch {
			case op.Status == http.StatusBadRequest:
				st.IdemRefused++
			case op.Outcome == OK:
				out = append(out, Anomaly{Kind: AnomalyIdemAccepted, Key: op.Key,
					Detail: fmt.Sprintf("op %d: an increment with Idempotency-Key %s was answered 200 via %s", op.ID, op.IdemKey, op.Node)})
			}
		}
		if op.Outcome == OK {
			if v, err := strconv.ParseInt(op.Value, 10, 64); err == nil && v > maxAnswer[op.Key] {
				maxAnswer[op.Key], maxOp[op.Key] = v, op.ID
			}
		}
	}
	st.Keys = len(acked)
	ids := mlIDs(states)
	for _, k := range slices.Sorted(maps.Keys(acked)) {
		a, u := acked[k], unknown[k]
		for i, id := range ids {
			f, ok := states[id][k]
			if !ok {
				continue
			}
			var v int64
			if f.Found {
				var err error
				if v, err = strconv.ParseInt(f.Value, 10, 64); err != nil || len(f.Siblings) > 0 {
					out = append(out, Anomaly{Kind: AnomalyUnwrittenRead, Key: k, Detail: fmt.Sprintf("%s holds %s, not a counter", id, f)})
					continue
				}
			}
			if i == 0 {
				st.Final[k] = v
			}
			switch {
			case v < a:
				out = append(out, Anomaly{Kind: AnomalyLostWrite, Key: k,
					Detail: fmt.Sprintf("%s holds %d, but the acknowledged (or durable) increments sum to %d (unknown: %d)", id, v, a, u)})
			case v > a+u:
				out = append(out, Anomaly{Kind: AnomalyDuplicated, Key: k,
					Detail: fmt.Sprintf("%s holds %d, more than the acknowledged %d plus the unknown %d: an increment counted twice, or one that failed counted", id, v, a, u)})
			case maxAnswer[k] > v:
				out = append(out, Anomaly{Kind: AnomalyLostWrite, Key: k,
					Detail: fmt.Sprintf("%s holds %d, but op %d was answered with %d", id, v, maxOp[k], maxAnswer[k])})
			}
		}
	}
	return out, st
}

// summary is the multi-leader part of Report.Summary.
func (m *MLStats) summary() string {
	var b strings.Builder
	conv := "did not converge within the deadline"
	if m.Converged {
		conv = "converged"
	}
	fmt.Fprintf(&b, "multi-leader (%s): %s %v after healing (every node applied every stream to its end); %d keys read on every node\n",
		m.Policy, conv, m.Convergence.Round(time.Millisecond), m.Keys)
	i := m.Inserts
	fmt.Fprintf(&b, "inserts: acknowledged %d, durable 504 %d, unknown %d (present %d), failed %d\n",
		i.Acked, i.Durable, i.Unknown, i.UnknownPresent, i.Failed)
	c := m.Contended
	fmt.Fprintf(&b, "contended writes (%d keys): acknowledged %d, durable 504 %d, unknown %d, failed %d; of the durable: final %d, a conflict loser %d, causally overwritten %d; %d final values\n",
		c.Keys, c.Acked, c.Durable, c.Unknown, c.Failed, c.Final, c.InConflictLog, c.Overwritten, c.Values)
	fmt.Fprintf(&b, "conflicts seen: %d records on %d keys (over all nodes; %d dropped)\n", m.ConflictRecords, m.ConflictKeys, m.ConflictsDropped)
	n := m.Counters
	keys := slices.Sorted(maps.Keys(n.Final))
	var fs []string
	for _, k := range keys {
		fs = append(fs, fmt.Sprintf("%s=%d", k, n.Final[k]))
	}
	fmt.Fprintf(&b, "counters: increments acknowledged %d, durable 504 %d, unknown %d, failed %d (idempotency keys refused %d); acknowledged sum %d, unknown sum %d; final %s\n",
		n.Acked, n.Durable, n.Unknown, n.Failed, n.IdemRefused, n.AckedSum, n.UnknownSum, strings.Join(fs, " "))
	return b.String()
}
