package chaos

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/trireme-db/trireme/internal/leaderless"
	"github.com/trireme-db/trireme/internal/leaderless/ring"
)

// The checks of a leaderless run (leaderless.go). They take the history
// (LLOp: the history's Op and what a leaderless reply adds) and the final
// state of every key on each of its home replicas (node -> key -> MLRead,
// read with consistency=local after quiescence), and N.
//
// Versions. Every put writes a value unique to the run, so a value names
// one write, and a write is versioned (minted: given its dot) at most once,
// by a home replica, before any replica acknowledges it. Write X is
// *certainly minted* (llMinted) when it was answered 200, or 504 naming
// replicas that hold it (the minter is among them); it was then minted
// between its call and its return. A write Y can supersede X (its context
// cover X's dot) only if Y was minted after X was: so only if Y was not
// answered as failed and was not certainly minted before X was called
// (mayFollow). A write of unknown outcome may be minted at any time after
// its call: its message to the minter may arrive late.
//
// Superseded values (supersededBy). An acknowledged write W certainly
// supersedes:
//
//   - the values the read whose causal context W carried returned (the
//     context covers their dots);
//   - for a blind W (no context) sent to a home replica C of the key: the
//     values of the puts sent to C that were certainly minted before W was
//     called. A home replica mints the writes it coordinates itself, and a
//     blind write supersedes what its minter holds, which includes
//     everything C minted (or what superseded it).
//
// A blind write through another node is minted by some home replica the
// harness cannot name, and so certainly supersedes nothing here. A blind
// write supersedes only what its minter held: a blind delete through C
// leaves alive, as siblings, the values minted at other home replicas that
// C had not received. So "the key's last acknowledged operation was a
// delete" does not mean the key must be absent; a value the delete
// superseded must be.

// Anomaly kinds of leaderless runs.
const (
	// AnomalyStaleRead: with strict quorums, a read with R + W > N that
	// began after a write was acknowledged by W replicas returned neither
	// it nor anything that may supersede it, or returned a value it
	// certainly superseded.
	AnomalyStaleRead = "stale-quorum-read"
	// AnomalyResurrected: after quiescence a home replica holds, alive, a
	// value an acknowledged delete (or overwrite) certainly superseded.
	AnomalyResurrected = "superseded-value-alive"
)

// LLExtra is what a leaderless reply adds to an Op.
type LLExtra struct {
	// W and R are the write's w= and the read's r=, resolved against N.
	W int `json:"w,omitempty"`
	R int `json:"r,omitempty"`
	// Values are a read's live values (Value and its siblings).
	Values []string `json:"values,omitempty"`
	// Replicas is how many replicas a write's reply (200 or 504) says hold it.
	Replicas int `json:"replicas,omitempty"`
	// Context: the write carried the causal context of a read, which
	// returned Saw.
	Context bool     `json:"with_context,omitempty"`
	Saw     []string `json:"saw,omitempty"`
	// Minter and Counter: a blind write answered 200 whose minter the
	// harness can name (the node asked, if it is a home replica of the key:
	// a home replica coordinating a write mints it itself) and its
	// version's counter (the reply's index: the state a blind write mints
	// holds its own version only). Its dot is (the minter's actor,
	// Counter).
	Minter  string `json:"minter,omitempty"`
	Counter uint64 `json:"counter,omitempty"`
	// Seen is a read's causal context, decoded: actor -> counter.
	Seen map[string]uint64 `json:"seen,omitempty"`
}

// LLCheckConfig says what a leaderless run's checks may assume.
type LLCheckConfig struct {
	N int // the replication factor
	// Strict: the nodes ran with --sloppy-quorum=false, so a read with
	// R + W > N shares a replica with every write acknowledged (by W home
	// replicas) before it began.
	Strict bool
	// NoGC: no tombstone was collected while the workload ran (the grace
	// outlasted it), so a replica's causal context only grows.
	NoGC bool
}

// LLOp is one operation of a leaderless run.
type LLOp struct {
	Op
	LLExtra
}

// LLHomes returns the function from a key to its N home replicas among
// ids: the ring every node builds from the member ids.
func LLHomes(ids []string, n int) (func(key string) []string, error) {
	r, err := ring.New(ids, leaderless.DefaultVNodes)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	return func(key string) []string { return r.Replicas([]byte(key), n) }, nil
}

// llMinted reports whether write op was certainly minted before it
// returned: answered 200, or 504 with replicas that hold it.
func llMinted(op LLOp) bool {
	return op.Outcome == OK || (op.Status == http.StatusGatewayTimeout && op.Replicas > 0)
}

// mayFollow reports whether write y may have been minted after write x
// (and so may supersede it).
func mayFollow(y, x LLOp) bool {
	if y.ID == x.ID || nothingDone(y.Outcome) {
		return false
	}
	return !llMinted(y) || y.Return < 0 || y.Return > x.Call
}

// supersededBy returns the values write w certainly supersedes (see the
// package comment above); puts are the puts to w's key.
func supersededBy(w LLOp, puts []LLOp, homes []string) []string {
	if w.Context {
		return slices.Clone(w.Saw)
	}
	if !slices.Contains(homes, w.Node) {
		return nil
	}
	var out []string
	for _, y := range puts {
		if y.ID != w.ID && y.Node == w.Node && llMinted(y) && y.Return >= 0 && y.Return < w.Call {
			out = append(out, y.Value)
		}
	}
	return out
}

// LLOutcomes counts writes by outcome.
type LLOutcomes struct {
	Acked   int `json:"acked"`   // 200
	Durable int `json:"durable"` // 504 naming replicas that hold it
	Unknown int `json:"unknown"` // anything else that may have written
	Failed  int `json:"failed"`  // certainly did nothing (503 quorum unavailable, ...)
}

func (c *LLOutcomes) count(op LLOp) {
	switch {
	case op.Outcome == OK:
		c.Acked++
	case llMinted(op):
		c.Durable++
	case nothingDone(op.Outcome):
		c.Failed++
	default:
		c.Unknown++
	}
}

// LLCheckStats are the figures of the leaderless checks.
type LLCheckStats struct {
	Puts          LLOutcomes `json:"puts"`
	Deletes       LLOutcomes `json:"deletes"`
	ContextWrites int        `json:"context_writes"`
	ReadsOK       int        `json:"reads_ok"`
	ReadsFailed   int        `json:"reads_failed"`
	ReadsUnknown  int        `json:"reads_unknown"`
	SiblingReads  int        `json:"sibling_reads"` // reads that returned more than one value
	// Quorum reads: (acknowledged put X, read that began after it with
	// R + W > N) pairs, and what the read returned: X itself, a value that
	// may supersede X, or (nothing of the kind) with a delete that may
	// supersede X; Stale are the pairs with none of these (anomalies with
	// strict quorums; only counted with sloppy ones).
	QuorumReads int `json:"quorum_reads"`
	Pairs       int `json:"pairs"`
	PairsSeen   int `json:"pairs_seen"`
	PairsNewer  int `json:"pairs_newer"`
	PairsDelete int `json:"pairs_delete"`
	Stale       int `json:"stale"`
	// DotsChecked: (acknowledged blind write with a known version, later
	// read with R + W > N) pairs where the read's context had to cover the
	// version (no tombstone collected meanwhile); DotsMissed: it did not
	// (anomalies with strict quorums).
	DotsChecked int `json:"dots_checked"`
	DotsMissed  int `json:"dots_missed"`
	// SupersededReads: quorum reads that returned a value an acknowledged
	// write certainly superseded (anomalies with strict quorums).
	SupersededReads int `json:"superseded_reads"`
	// Superseding: acknowledged or durable writes that certainly
	// superseded some values; Superseded: those values (each must be dead
	// on every home replica at the end).
	Superseding int `json:"superseding"`
	Superseded  int `json:"superseded"`
	// Final: (acknowledged or durable put, home replica) pairs: present,
	// superseded by a value there that may supersede it, possibly deleted,
	// lost.
	FinalPresent int `json:"final_present"`
	FinalNewer   int `json:"final_newer"`
	FinalDeleted int `json:"final_deleted"`
	FinalLost    int `json:"final_lost"`
	// The keys at the end (on their first home replica): with one value,
	// with siblings, absent.
	KeysValue, KeysSiblings, KeysAbsent int
}

// CheckLeaderless runs every leaderless check.
func CheckLeaderless(ops []LLOp, final map[string]map[string]MLRead, homes func(string) []string, cfg LLCheckConfig) ([]Anomaly, LLCheckStats) {
	var st LLCheckStats
	keys := map[string]bool{}
	for _, op := range ops {
		keys[op.Key] = true
	}
	for _, s := range final {
		for k := range s {
			keys[k] = true
		}
	}
	ks := slices.Sorted(maps.Keys(keys))
	out := CheckLLValues(ops, final)
	out = append(out, CheckLLConverged(final, ks, homes)...)
	an := CheckLLReads(ops, cfg, homes, &st)
	out = append(out, an...)
	out = append(out, CheckLLFinal(ops, final, homes, &st)...)
	for _, k := range ks {
		hs := homes(k)
		if len(hs) == 0 {
			continue
		}
		f, ok := final[hs[0]][k]
		switch {
		case !ok:
		case len(f.Siblings) > 0:
			st.KeysSiblings++
		case f.Found:
			st.KeysValue++
		default:
			st.KeysAbsent++
		}
	}
	return out, st
}

// llWritten maps (key, value) to the put that wrote it.
func llWritten(ops []LLOp) map[[2]string]LLOp {
	w := map[[2]string]LLOp{}
	for _, op := range ops {
		if op.Kind == KindPut {
			w[[2]string{op.Key, op.Value}] = op
		}
	}
	return w
}

// CheckLLValues checks that every value a read returned, and every live
// value a replica holds at the end, was written to that key by a put not
// answered as failed (a 503 promises nothing was written), and that no read
// returned a value before its put was called; and that no state holds one
// value twice (a write minted twice).
func CheckLLValues(ops []LLOp, final map[string]map[string]MLRead) []Anomaly {
	written := llWritten(ops)
	var out []Anomaly
	check := func(key, v, where string, ret int64) {
		w, ok := written[[2]string{key, v}]
		switch {
		case !ok:
			out = append(out, Anomaly{Kind: AnomalyUnwrittenRead, Key: key, Detail: fmt.Sprintf("%s: %q, which no client wrote", where, v)})
		case nothingDone(w.Outcome):
			out = append(out, Anomaly{Kind: AnomalyFailedWriteSeen, Key: key,
				Detail: fmt.Sprintf("%s: %q, written by op %d via %s, which was answered as failed (%d %s)", where, v, w.ID, w.Node, w.Status, w.Err)})
		case ret >= 0 && ret < w.Call:
			out = append(out, Anomaly{Kind: AnomalyFutureRead, Key: key, Detail: fmt.Sprintf("%s: %q before op %d wrote it", where, v, w.ID)})
		}
	}
	twice := func(key, where string, vals []string) {
		seen := map[string]bool{}
		for _, v := range vals {
			if seen[v] {
				out = append(out, Anomaly{Kind: AnomalyDuplicated, Key: key, Detail: fmt.Sprintf("%s: %q twice among the siblings %v (one write, two versions)", where, v, vals)})
			}
			seen[v] = true
		}
	}
	for _, op := range ops {
		if op.Kind != KindGet || op.Outcome != OK {
			continue
		}
		where := fmt.Sprintf("op %d (read %s via %s)", op.ID, op.Consistency, op.Node)
		for _, v := range op.Values {
			check(op.Key, v, where, op.Return)
		}
		twice(op.Key, where, op.Values)
	}
	for _, id := range slices.Sorted(maps.Keys(final)) {
		for _, k := range slices.Sorted(maps.Keys(final[id])) {
			vals := final[id][k].Values()
			for _, v := range vals {
				check(k, v, "final state on "+id, -1)
			}
			twice(k, "final state on "+id, vals)
		}
	}
	return out
}

// CheckLLConverged reports every key whose home replicas (among those
// final holds) do not hold the same state: live values, siblings (dot and
// value) and causal context.
func CheckLLConverged(final map[string]map[string]MLRead, keys []string, homes func(string) []string) []Anomaly {
	var out []Anomaly
	for _, k := range keys {
		var ids []string
		for _, h := range homes(k) {
			if _, ok := final[h]; ok {
				ids = append(ids, h)
			}
		}
		same := true
		var parts []string
		for i, id := range ids {
			r, ok := final[id][k]
			if !ok || (i > 0 && !r.Equal(final[ids[0]][k])) {
				same = false
			}
			if ok {
				parts = append(parts, id+"="+r.String())
			} else {
				parts = append(parts, id+"=unread")
			}
		}
		if !same {
			out = append(out, Anomaly{Kind: AnomalyDiverged, Key: k, Detail: "home replicas after quiescence: " + strings.Join(parts, "; ")})
		}
	}
	return out
}

// llByKey groups the puts, the deletes and the reads of each key.
type llKeyOps struct{ puts, dels, reads []LLOp }

func llGroup(ops []LLOp) map[string]*llKeyOps {
	out := map[string]*llKeyOps{}
	for _, op := range ops {
		g := out[op.Key]
		if g == nil {
			g = &llKeyOps{}
			out[op.Key] = g
		}
		switch op.Kind {
		case KindPut:
			g.puts = append(g.puts, op)
		case KindDelete:
			g.dels = append(g.dels, op)
		case KindGet:
			g.reads = append(g.reads, op)
		}
	}
	return out
}

// describe is a write for an anomaly's detail.
func (op LLOp) describe() string {
	what := fmt.Sprintf("put %q", op.Value)
	if op.Kind == KindDelete {
		what = "delete"
	}
	if op.Context {
		what += fmt.Sprintf(" (with the context of a read of %v)", op.Saw)
	}
	outcome := string(op.Outcome)
	if op.Outcome != OK && llMinted(op) {
		outcome = fmt.Sprintf("504, durable on %d", op.Replicas)
	}
	return fmt.Sprintf("op %d %s via %s %s: %s, called %s returned %s", op.ID, what, op.Node, op.Ack, outcome, llTime(op.Call), llTime(op.Return))
}

func llTime(ns int64) string {
	if ns < 0 {
		return "never"
	}
	return (time.Duration(ns) * time.Nanosecond).Round(time.Microsecond).String()
}

// llActors maps each node to the actor its versions carry (node id "." an
// incarnation), as the reads' contexts name them; a node seen with two
// actors (a wiped data directory) is left out.
func llActors(ops []LLOp) map[string]string {
	out := map[string]string{}
	bad := map[string]bool{}
	for _, op := range ops {
		for a := range op.Seen {
			node, _, ok := strings.Cut(a, ".")
			if !ok {
				continue
			}
			if prev, ok := out[node]; ok && prev != a {
				bad[node] = true
			}
			out[node] = a
		}
	}
	for n := range bad {
		delete(out, n)
	}
	return out
}

// CheckLLReads checks the reads against the writes acknowledged before
// they began (check a). For a read Rd with R that returned values V, and
// each put X answered 200 with W before Rd was called, R + W > N:
//
//   - X's value is in V; or
//   - some value in V was written by a put that may supersede X
//     (mayFollow); or
//   - some delete that may supersede X was called before Rd returned (a
//     tombstone does not show in a read);
//
// else the read is stale. Moreover, when X's dot is known (a blind write,
// LLExtra.Minter) and no tombstone was collected (cfg.NoGC: a replica's
// context then only grows), Rd's context must cover X's dot, whatever V
// is, and the same holds for a blind delete answered 200: one of the R
// replicas that answered holds X, and the merge of their answers has seen
// it. And no value in V may be one that a write answered 200 with W'
// before Rd was called, R + W' > N, certainly superseded (supersededBy).
// With strict quorums (cfg.Strict) all of this is checked (the W replicas
// that hold X and the R that answered share one); with sloppy quorums,
// where the W may be stand-ins, it is only counted.
func CheckLLReads(ops []LLOp, cfg LLCheckConfig, homes func(string) []string, st *LLCheckStats) []Anomaly {
	var out []Anomaly
	n := cfg.N
	written := llWritten(ops)
	actors := llActors(ops)
	for _, op := range ops {
		switch {
		case op.Kind == KindPut:
			st.Puts.count(op)
		case op.Kind == KindDelete:
			st.Deletes.count(op)
		case op.Outcome == OK:
			st.ReadsOK++
			if len(op.Values) > 1 {
				st.SiblingReads++
			}
		case nothingDone(op.Outcome):
			st.ReadsFailed++
		default:
			st.ReadsUnknown++
		}
		if op.Context && op.Kind != KindGet {
			st.ContextWrites++
		}
	}
	// dot returns write x's dot if known, for reads' contexts to cover.
	dot := func(x LLOp) (string, uint64, bool) {
		a, ok := actors[x.Minter]
		return a, x.Counter, ok && cfg.NoGC && x.Counter > 0
	}
	groups := llGroup(ops)
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		var acked []LLOp // puts and deletes answered 200
		for _, x := range append(slices.Clone(g.puts), g.dels...) {
			if x.Outcome == OK {
				acked = append(acked, x)
			}
		}
		// killed[v][w]: the earliest return of a write answered 200 with
		// W = w that certainly superseded value v.
		killed := map[string]map[int]LLOp{}
		for _, w := range acked {
			for _, v := range supersededBy(w, g.puts, homes(key)) {
				if killed[v] == nil {
					killed[v] = map[int]LLOp{}
				}
				if k, ok := killed[v][w.W]; !ok || w.Return < k.Return {
					killed[v][w.W] = w
				}
			}
		}
		for _, rd := range g.reads {
			if rd.Outcome != OK {
				continue
			}
			// Deletes called before the read returned: any of unknown
			// outcome, and the latest return of the certainly minted ones.
			uncertainDel, lastDel := false, int64(-1)
			for _, d := range g.dels {
				if nothingDone(d.Outcome) || d.Call > rd.Return {
					continue
				}
				if !llMinted(d) || d.Return < 0 {
					uncertainDel = true
				} else {
					lastDel = max(lastDel, d.Return)
				}
			}
			var writers []LLOp
			for _, v := range rd.Values {
				if w, ok := written[[2]string{key, v}]; ok {
					writers = append(writers, w)
				}
			}
			var missed []string
			counted := false
			for _, x := range acked {
				if x.Return < 0 || x.Return >= rd.Call || rd.R+x.W <= n {
					continue
				}
				if !counted {
					st.QuorumReads++
					counted = true
				}
				if a, c, ok := dot(x); ok && rd.Seen != nil {
					st.DotsChecked++
					if rd.Seen[a] < c {
						st.DotsMissed++
						missed = append(missed, fmt.Sprintf("%s (version %s:%d, which the read's context %v does not cover)", x.describe(), a, c, rd.Seen))
						continue
					}
				}
				if x.Kind != KindPut {
					continue
				}
				st.Pairs++
				switch {
				case slices.Contains(rd.Values, x.Value):
					st.PairsSeen++
				case slices.ContainsFunc(writers, func(y LLOp) bool { return mayFollow(y, x) }):
					st.PairsNewer++
				case uncertainDel || lastDel > x.Call:
					st.PairsDelete++
				default:
					st.Stale++
					missed = append(missed, x.describe()+" (no write that may supersede it is in the read or deleted the key)")
				}
			}
			var dead []string
			for _, v := range rd.Values {
				for w, k := range killed[v] {
					if rd.R+w > n && k.Return >= 0 && k.Return < rd.Call {
						dead = append(dead, fmt.Sprintf("%q (superseded by %s)", v, k.describe()))
						break
					}
				}
			}
			if len(dead) > 0 {
				st.SupersededReads++
			}
			if !cfg.Strict {
				continue
			}
			if len(missed) > 0 {
				if len(missed) > 3 {
					missed = append(missed[:3], fmt.Sprintf("and %d more", len(missed)-3))
				}
				out = append(out, Anomaly{Kind: AnomalyStaleRead, Key: key,
					Detail: fmt.Sprintf("op %d (read via %s %s, R=%d, called %s returned %s) returned %v, missing acknowledged writes it must see (R+W>N): %s",
						rd.ID, rd.Node, rd.Consistency, rd.R, llTime(rd.Call), llTime(rd.Return), rd.Values, strings.Join(missed, "; "))})
			}
			if len(dead) > 0 {
				out = append(out, Anomaly{Kind: AnomalyStaleRead, Key: key,
					Detail: fmt.Sprintf("op %d (read via %s %s, R=%d, called %s) returned values that writes acknowledged before it began (R+W>N) had superseded: %s",
						rd.ID, rd.Node, rd.Consistency, rd.R, llTime(rd.Call), strings.Join(dead, "; "))})
			}
		}
	}
	return out
}

// CheckLLFinal checks the final states on the home replicas (checks b and
// c), after quiescence:
//
//   - every put certainly minted (answered 200, or 504 naming replicas
//     that hold it: durable there, and repair spreads it) is, on each home
//     replica of its key, a live value, or some live value there was
//     written by a put that may supersede it, or some delete may supersede
//     it;
//   - no value that a certainly minted write certainly superseded
//     (supersededBy) is alive on any home replica: deleted values do not
//     come back, overwritten ones neither.
func CheckLLFinal(ops []LLOp, final map[string]map[string]MLRead, homes func(string) []string, st *LLCheckStats) []Anomaly {
	var out []Anomaly
	written := llWritten(ops)
	groups := llGroup(ops)
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		hs := homes(key)
		var ids []string
		for _, h := range hs {
			if _, ok := final[h][key]; ok {
				ids = append(ids, h)
			}
		}
		uncertainDel, lastDel := false, int64(-1)
		for _, d := range g.dels {
			switch {
			case nothingDone(d.Outcome):
			case !llMinted(d) || d.Return < 0:
				uncertainDel = true
			default:
				lastDel = max(lastDel, d.Return)
			}
		}
		for _, x := range g.puts {
			if !llMinted(x) {
				continue
			}
			var lost []string
			for _, h := range ids {
				f := final[h][key]
				vals := f.Values()
				switch {
				case slices.Contains(vals, x.Value):
					st.FinalPresent++
				case slices.ContainsFunc(vals, func(v string) bool {
					y, ok := written[[2]string{key, v}]
					return ok && mayFollow(y, x)
				}):
					st.FinalNewer++
				case uncertainDel || lastDel > x.Call:
					st.FinalDeleted++
				default:
					st.FinalLost++
					lost = append(lost, h+"="+f.String())
				}
			}
			if len(lost) > 0 {
				out = append(out, Anomaly{Kind: AnomalyLostWrite, Key: key,
					Detail: fmt.Sprintf("%s is not on home replicas %s, and no write that may supersede it is there or deleted the key",
						x.describe(), strings.Join(lost, ", "))})
			}
		}
		for _, w := range append(slices.Clone(g.puts), g.dels...) {
			if !llMinted(w) {
				continue
			}
			sup := supersededBy(w, g.puts, hs)
			if len(sup) == 0 {
				continue
			}
			st.Superseding++
			st.Superseded += len(sup)
			for _, v := range sup {
				var alive []string
				for _, h := range ids {
					if slices.Contains(final[h][key].Values(), v) {
						alive = append(alive, h)
					}
				}
				if len(alive) > 0 {
					by := "overwritten"
					if w.Kind == KindDelete {
						by = "deleted"
					}
					out = append(out, Anomaly{Kind: AnomalyResurrected, Key: key,
						Detail: fmt.Sprintf("%q, %s by %s, is alive on %v after quiescence", v, by, w.describe(), alive)})
				}
			}
		}
	}
	return out
}

// LLStats are a leaderless run's figures (Report.LL).
type LLStats struct {
	N      int  `json:"n"`
	Sloppy bool `json:"sloppy_quorum"`
	// Quiescence is the time from healing every fault to the replicas
	// being quiet (waitQuiet); Quiet says whether that happened within
	// the deadline.
	Quiescence time.Duration `json:"quiescence"`
	Quiet      bool          `json:"quiet"`
	// NoGC: the tombstone grace outlasted the workload (LLCheckConfig.NoGC).
	NoGC bool `json:"no_gc"`
	// Keys read on their home replicas at the end, in FinalReads rounds
	// (more than one while a tombstone collection was under way).
	Keys       int `json:"keys"`
	FinalReads int `json:"final_reads"`
	// Over all nodes, at the end (a restarted node's counters restart).
	HintsStored, HintsDelivered, HintsRefused uint64
	ReadRepairs, AERepairs, TombstonesGC      uint64
	LLCheckStats
}

// summary is the leaderless part of Report.Summary.
func (s *LLStats) summary() string {
	var b strings.Builder
	q := "strict quorums"
	if s.Sloppy {
		q = "sloppy quorums"
	}
	quiet := "did not quiesce within the deadline"
	if s.Quiet {
		quiet = "quiet"
	}
	fmt.Fprintf(&b, "leaderless (N=%d, %s): %s %v after healing (hints handed over, anti-entropy finding no difference); %d keys read on their home replicas (%d rounds)\n",
		s.N, q, quiet, s.Quiescence.Round(time.Millisecond), s.Keys, s.FinalReads)
	fmt.Fprintf(&b, "puts: acknowledged %d, durable 504 %d, unknown %d, failed %d; deletes: acknowledged %d, durable 504 %d, unknown %d, failed %d; %d writes carried a read's context\n",
		s.Puts.Acked, s.Puts.Durable, s.Puts.Unknown, s.Puts.Failed, s.Deletes.Acked, s.Deletes.Durable, s.Deletes.Unknown, s.Deletes.Failed, s.ContextWrites)
	fmt.Fprintf(&b, "reads: ok %d (%d with siblings), failed %d, unknown %d\n", s.ReadsOK, s.SiblingReads, s.ReadsFailed, s.ReadsUnknown)
	enforced := "anomalies"
	if s.Sloppy {
		enforced = "allowed with sloppy quorums"
	}
	fmt.Fprintf(&b, "quorum reads (R+W>N after an acknowledged write): %d reads; contexts covering the write's version %d of %d (%s); put pairs %d: saw it %d, a newer value %d, excused by a delete %d, stale %d; returned a superseded value %d\n",
		s.QuorumReads, s.DotsChecked-s.DotsMissed, s.DotsChecked, enforced, s.Pairs, s.PairsSeen, s.PairsNewer, s.PairsDelete, s.Stale, s.SupersededReads)
	fmt.Fprintf(&b, "final (durable put, home replica): present %d, superseded %d, possibly deleted %d, lost %d; %d writes certainly superseded %d values, none may be alive; keys: %d one value, %d siblings, %d absent\n",
		s.FinalPresent, s.FinalNewer, s.FinalDeleted, s.FinalLost, s.Superseding, s.Superseded, s.KeysValue, s.KeysSiblings, s.KeysAbsent)
	fmt.Fprintf(&b, "repair: hints stored %d, delivered %d, refused %d; read repairs %d; anti-entropy repairs %d; tombstones collected %d\n",
		s.HintsStored, s.HintsDelivered, s.HintsRefused, s.ReadRepairs, s.AERepairs, s.TombstonesGC)
	return b.String()
}
