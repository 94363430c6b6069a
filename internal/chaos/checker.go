package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Anomaly is one violated guarantee.
type Anomaly struct {
	Kind   string `json:"kind"`
	Key    string `json:"key,omitempty"`
	Detail string `json:"detail"`
}

func (a Anomaly) String() string {
	if a.Key != "" {
		return fmt.Sprintf("%s [key %s]: %s", a.Kind, a.Key, a.Detail)
	}
	return a.Kind + ": " + a.Detail
}

// Anomaly kinds.
const (
	AnomalyNotLinearizable = "not-linearizable"
	AnomalyUnwrittenRead   = "read-never-written"
	AnomalyFailedWriteSeen = "failed-write-visible"
	AnomalyFutureRead      = "read-from-future"
	AnomalyWrongVersion    = "wrong-version"
	AnomalyLostWrite       = "lost-acknowledged-write"
	AnomalySilentLoss      = "lost-write-not-journaled"
	AnomalyDiverged        = "replicas-diverged"
	AnomalyDurableRolled   = "durable-write-rolled-back"
	AnomalyDuplicated      = "duplicated-write"
	AnomalyJournalUnknown  = "journal-unknown-value"
	AnomalyNoRecovery      = "no-recovery"
	AnomalyCrash           = "node-crashed"
	AnomalyMembership      = "membership"
)

// Register model for porcupine: one key's value; absent is Found=false.
type regInput struct {
	Write  bool
	Delete bool
	Value  string
}

type regOutput struct {
	Found bool
	Value string
}

type regState struct {
	Found bool
	Value string
}

// registerModel is porcupine's model of one key (the history is partitioned by key).
var registerModel = porcupine.Model{
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(regState), input.(regInput)
		if in.Delete {
			return true, regState{}
		}
		if in.Write {
			return true, regState{Found: true, Value: in.Value}
		}
		out := output.(regOutput)
		return out.Found == s.Found && out.Value == s.Value, s
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.Delete {
			if output == nil {
				return "delete() -> ?"
			}
			return "delete()"
		}
		if in.Write {
			if output == nil {
				return fmt.Sprintf("put(%s) -> ?", in.Value)
			}
			return fmt.Sprintf("put(%s)", in.Value)
		}
		out := output.(regOutput)
		if !out.Found {
			return "get() -> absent"
		}
		return fmt.Sprintf("get() -> %s", out.Value)
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		if !s.Found {
			return "absent"
		}
		return s.Value
	},
}

// LinStats counts what the linearizability check covered.
type LinStats struct {
	Keys, Ops    int
	Inconclusive []string // keys the checker could not decide within its timeout
}

// CheckLinearizable checks, per key for which include(key) holds, that the
// writes (acknowledged, or of unknown outcome: those may take effect at any
// later time) and the acknowledged linearizable reads form a linearizable
// history of a register. Failed writes and failed reads are left out. For
// every violation it writes porcupine's visualization to visDir/lin-KEY.html
// (when visDir is not empty).
func CheckLinearizable(ops []Op, include func(key string) bool, timeout time.Duration, visDir string) ([]Anomaly, LinStats) {
	var end int64
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	end++
	byKey := map[string][]porcupine.Operation{}
	for _, op := range ops {
		if !include(op.Key) {
			continue
		}
		po := porcupine.Operation{ClientId: op.Worker, Call: op.Call, Return: op.Return,
			Metadata: fmt.Sprintf("op %d via %s/%s", op.ID, op.Proto, op.Node)}
		switch {
		case op.Kind == KindPut && op.Outcome == OK:
			po.Input = regInput{Write: true, Value: op.Value}
		case op.Kind == KindPut && (op.Outcome == Unknown || op.Return < 0):
			po.Input = regInput{Write: true, Value: op.Value}
			po.Return = end // may take effect at any later point
		case op.Kind == KindDelete && op.Outcome == OK:
			po.Input = regInput{Delete: true}
		case op.Kind == KindDelete && (op.Outcome == Unknown || op.Return < 0):
			po.Input = regInput{Delete: true}
			po.Return = end
		case op.Kind == KindGet && op.Outcome == OK && op.Consistency == "linearizable":
			po.Input = regInput{}
			po.Output = regOutput{Found: op.Found, Value: op.Value}
		default:
			continue
		}
		byKey[op.Key] = append(byKey[op.Key], po)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Anomaly
	var st LinStats
	for _, k := range keys {
		hist := byKey[k]
		st.Keys++
		st.Ops += len(hist)
		res, info := porcupine.CheckOperationsVerbose(registerModel, hist, timeout)
		switch res {
		case porcupine.Unknown:
			st.Inconclusive = append(st.Inconclusive, k)
		case porcupine.Illegal:
			detail := fmt.Sprintf("%d operations are not linearizable", len(hist))
			if visDir != "" {
				p := filepath.Join(visDir, "lin-"+safeName(k)+".html")
				if err := porcupine.VisualizePath(registerModel, info, p); err == nil {
					detail += "; visualization: " + p
				} else {
					detail += "; visualization failed: " + err.Error()
				}
			}
			out = append(out, Anomaly{Kind: AnomalyNotLinearizable, Key: k, Detail: detail})
		}
	}
	return out, st
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// CheckReadsWritten checks every acknowledged read, whatever its level, that
// found a value: the value must have been written to that key by a write (a
// put or a cas) that did not certainly fail (a cas answered 412 certainly
// did nothing), and that write must have begun before the read returned.
func CheckReadsWritten(ops []Op) []Anomaly {
	writes := map[[2]string]Op{}
	for _, op := range ops {
		if isWrite(op.Kind) {
			writes[[2]string{op.Key, op.Value}] = op
		}
	}
	var out []Anomaly
	for _, op := range ops {
		if op.Kind != KindGet || op.Outcome != OK || !op.Found {
			continue
		}
		w, ok := writes[[2]string{op.Key, op.Value}]
		switch {
		case !ok:
			out = append(out, Anomaly{Kind: AnomalyUnwrittenRead, Key: op.Key,
				Detail: fmt.Sprintf("op %d (%s read via %s/%s) returned %q, which no client wrote", op.ID, op.Consistency, op.Proto, op.Node, op.Value)})
		case nothingDone(w.Outcome):
			out = append(out, Anomaly{Kind: AnomalyFailedWriteSeen, Key: op.Key,
				Detail: fmt.Sprintf("op %d (%s read) returned %q, written by op %d, which was answered as %s (%s)", op.ID, op.Consistency, op.Value, w.ID, w.Outcome, w.Err)})
		case op.Return >= 0 && op.Return < w.Call:
			out = append(out, Anomaly{Kind: AnomalyFutureRead, Key: op.Key,
				Detail: fmt.Sprintf("op %d returned %q before op %d wrote it", op.ID, op.Value, w.ID)})
		case op.Index != 0 && w.Outcome == OK && w.Index != 0 && op.Index != w.Index:
			out = append(out, Anomaly{Kind: AnomalyWrongVersion, Key: op.Key,
				Detail: fmt.Sprintf("op %d read %q at version %d, but op %d wrote it at index %d", op.ID, op.Value, op.Index, w.ID, w.Index)})
		}
	}
	return out
}

// FinalRead is the value of one key read after the faults healed.
type FinalRead struct {
	Found bool
	Value string
}

// SetStats counts what the set check saw, by ack mode.
type SetStats struct {
	Acked     map[string]int // acknowledged inserts
	Lost      map[string]int // acknowledged inserts missing at the end
	Journaled map[string]int // missing ones found in a rollback journal
	Unknown   map[string]int // inserts of unknown outcome
}

// DurableAck reports whether an acknowledged write with ack mode mode must
// survive every failover in a cluster of n nodes.
func DurableAck(mode string, n int) bool {
	switch mode {
	case "majority", "sync":
		return true
	case "semi-sync": // leader + 1 follower (the harness always asks for 1)
		return 2 >= n/2+1
	}
	return false
}

// CheckSet checks the set workload: inserts are puts of unique keys; final
// holds the final read of every inserted key. An acknowledged insert whose ack
// mode guarantees durability must be present; one that does not (async,
// semi-sync without a majority) may be missing only if some node's rollback
// journal holds it; an insert answered as failed must be absent.
func CheckSet(ops []Op, final map[string]FinalRead, rollbacks []Rollback, nodes int) ([]Anomaly, SetStats) {
	st := SetStats{Acked: map[string]int{}, Lost: map[string]int{}, Journaled: map[string]int{}, Unknown: map[string]int{}}
	journal := map[[2]string]bool{}
	for _, rb := range rollbacks {
		journal[[2]string{rb.Key, rb.Value}] = true
	}
	var out []Anomaly
	for _, op := range ops {
		if op.Kind != KindPut {
			continue
		}
		f, read := final[op.Key]
		if !read {
			continue
		}
		present := f.Found && f.Value == op.Value
		switch op.Outcome {
		case OK:
			st.Acked[op.Ack]++
			if present {
				continue
			}
			st.Lost[op.Ack]++
			inJournal := journal[[2]string{op.Key, op.Value}]
			if inJournal {
				st.Journaled[op.Ack]++
			}
			switch {
			case DurableAck(op.Ack, nodes):
				out = append(out, Anomaly{Kind: AnomalyLostWrite, Key: op.Key,
					Detail: fmt.Sprintf("op %d: %s write acknowledged at index %d term %d is gone (journaled: %v)", op.ID, op.Ack, op.Index, op.Term, inJournal)})
			case !inJournal:
				out = append(out, Anomaly{Kind: AnomalySilentLoss, Key: op.Key,
					Detail: fmt.Sprintf("op %d: %s write acknowledged at index %d term %d is gone and in no rollback journal", op.ID, op.Ack, op.Index, op.Term)})
			}
		case Failed:
			if present {
				out = append(out, Anomaly{Kind: AnomalyFailedWriteSeen, Key: op.Key,
					Detail: fmt.Sprintf("op %d: write answered as failed (%s) is present", op.ID, op.Err)})
			}
		default:
			st.Unknown[op.Ack]++
		}
	}
	return out, st
}

// CheckRollbacks checks the rollback journals against the history: a
// journaled value must have been written by a client to that key; a write
// whose acknowledgement promised durability (DurableAck) must never be
// rolled back; and a value both rolled back and present in the final state
// (final, nil if unknown) was appended twice. Keys starting with "chaos-"
// (the harness's probes and barriers) are skipped, and so are records a
// snapshot left as uncertain (cause "snapshot": the write may have been
// committed; the final state shows whether it was).
func CheckRollbacks(ops []Op, final map[string]FinalRead, rollbacks []Rollback, nodes int) []Anomaly {
	writes := map[[2]string]Op{}
	for _, op := range ops {
		if op.Kind == KindPut {
			writes[[2]string{op.Key, op.Value}] = op
		}
	}
	var out []Anomaly
	for _, rb := range rollbacks {
		if strings.HasPrefix(rb.Key, "chaos-") || rb.Op != "put" {
			continue
		}
		w, ok := writes[[2]string{rb.Key, rb.Value}]
		if !ok {
			out = append(out, Anomaly{Kind: AnomalyJournalUnknown, Key: rb.Key,
				Detail: fmt.Sprintf("rollback of %q at index %d term %d: no client wrote it", rb.Value, rb.Index, rb.Term)})
			continue
		}
		journal := "a rollback journal"
		if rb.Node != "" {
			journal = rb.Node + "'s rollback journal"
		}
		if rb.Cause == "snapshot" {
			// Not a claim of loss: the write may have been committed
			// (the final-state checks judge it).
			continue
		}
		if w.Outcome == OK && DurableAck(w.Ack, nodes) {
			out = append(out, Anomaly{Kind: AnomalyDurableRolled, Key: rb.Key,
				Detail: fmt.Sprintf("op %d (%s, acknowledged at index %d term %d) is in %s at index %d term %d",
					w.ID, w.Ack, w.Index, w.Term, journal, rb.Index, rb.Term)})
			continue
		}
		if f, ok := final[rb.Key]; ok && f.Found && f.Value == rb.Value && strings.HasPrefix(rb.Key, "s-") {
			out = append(out, Anomaly{Kind: AnomalyDuplicated, Key: rb.Key,
				Detail: fmt.Sprintf("op %d's value is both applied and in %s (index %d term %d): it was appended twice", w.ID, journal, rb.Index, rb.Term)})
		}
	}
	return out
}

// CheckConverged compares the state every node holds (key -> value) and
// reports keys on which two nodes differ.
func CheckConverged(states map[string]map[string]FinalRead) []Anomaly {
	ids := make([]string, 0, len(states))
	keys := map[string]bool{}
	for id, s := range states {
		ids = append(ids, id)
		for k := range s {
			keys[k] = true
		}
	}
	slices.Sort(ids)
	var out []Anomaly
	for k := range keys {
		var parts []string
		same := true
		for i, id := range ids {
			v := states[id][k]
			if i > 0 && v != states[ids[0]][k] {
				same = false
			}
			if v.Found {
				parts = append(parts, id+"="+v.Value)
			} else {
				parts = append(parts, id+"=absent")
			}
		}
		if !same {
			out = append(out, Anomaly{Kind: AnomalyDiverged, Key: k, Detail: strings.Join(parts, " ")})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// writeFile is os.WriteFile with a chaos-prefixed error.
func writeFile(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}
