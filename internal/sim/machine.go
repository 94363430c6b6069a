package sim

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/trireme-db/trireme/internal/command"
)

// machine is a node's replicated state, what internal/store keeps below its
// applied index: the keys with their versions (the index of the entry that
// set each), the idempotency table of commands with an idempotency key, and
// the term history (where each applied no-op started its term). It is part
// of the store: flushed, reverted by a crash and carried by a snapshot as a
// whole.
type machine struct {
	kv    map[string]kvVal
	idem  map[string]idemRec
	terms []termStart // ascending index
	// Hashes of the idempotency table (a sum of per-record hashes, kept
	// as records come and go) and of the term history, so that the
	// fingerprint compared after every apply costs O(keys), not O(records).
	idemSum, termsSum uint64
}

// kvVal is a key's value and version.
type kvVal struct {
	val string
	ver uint64
}

// idemRec is the recorded result of the command that first used an
// idempotency key, kept until expiry (log time: the commands' stamped Time).
type idemRec struct {
	expiry int64
	r      command.Result
}

// termStart is one entry of the term history: an applied no-op.
type termStart struct{ index, term uint64 }

// idemExpirePerCommand is internal/store's maxExpirePerCommand: the most
// records one command with an idempotency key drops.
const idemExpirePerCommand = 8

func newMachine() machine {
	return machine{kv: map[string]kvVal{}, idem: map[string]idemRec{}}
}

func (m machine) clone() machine {
	out := machine{kv: make(map[string]kvVal, len(m.kv)), idem: make(map[string]idemRec, len(m.idem))}
	for k, v := range m.kv {
		out.kv[k] = v
	}
	for k, v := range m.idem {
		out.idem[k] = v
	}
	out.terms = append([]termStart(nil), m.terms...)
	out.idemSum, out.termsSum = m.idemSum, m.termsSum
	return out
}

// get is command.Eval's Getter over the applied keys.
func (m *machine) get(key []byte) ([]byte, uint64, bool, error) {
	v, ok := m.kv[string(key)]
	if !ok {
		return nil, 0, false, nil
	}
	return []byte(v.val), v.ver, true, nil
}

// noteNoop records where an applied no-op's term starts (as the store does
// for every no-op entry).
func (m *machine) noteNoop(index, term uint64) {
	if k := len(m.terms); k > 0 && m.terms[k-1].index >= index {
		return
	}
	m.terms = append(m.terms, termStart{index: index, term: term})
	m.termsSum = mix(mix(m.termsSum, index), term)
}

// mix folds v into the FNV-1a style hash h.
func mix(h, v uint64) uint64 {
	if h == 0 {
		h = 14695981039346656037
	}
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= 1099511628211
		v >>= 8
	}
	return h
}

// recHash is the hash of one idempotency record.
func recHash(key string, rec idemRec) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	r := rec.r
	flags := uint64(r.Code)
	if r.Applied {
		flags |= 1 << 8
	}
	if r.Duplicate {
		flags |= 1 << 9
	}
	for _, v := range []uint64{uint64(rec.expiry), flags, r.Index, r.Version, uint64(r.Int)} {
		h = mix(h, v)
	}
	return h
}

func (m *machine) setIdem(key string, rec idemRec) {
	if old, ok := m.idem[key]; ok {
		m.idemSum -= recHash(key, old)
	}
	m.idem[key] = rec
	m.idemSum += recHash(key, rec)
}

func (m *machine) dropIdem(key string) {
	if old, ok := m.idem[key]; ok {
		m.idemSum -= recHash(key, old)
		delete(m.idem, key)
	}
}

// termAt is the store's TermAt: the term of the applied entry at index, the
// term of the last no-op at or below it; known=false above the applied index
// or below the first recorded no-op.
func (m *machine) termAt(index, applied uint64) (uint64, bool) {
	if index == 0 || index > applied {
		return 0, false
	}
	i := sort.Search(len(m.terms), func(i int) bool { return m.terms[i].index > index })
	if i == 0 {
		return 0, false
	}
	return m.terms[i-1].term, true
}

// lookupIdem returns key's live record at log time now.
func (m *machine) lookupIdem(key []byte, now int64) (command.Result, bool) {
	rec, ok := m.idem[string(key)]
	if !ok || rec.expiry <= now {
		return command.Result{}, false
	}
	return rec.r, true
}

// expireIdem drops up to idemExpirePerCommand records, oldest expiry first
// (ties by key, the store's key order), that expired by now or exceed
// capRecords (0: no cap) once one more is added. It returns how many.
func (m *machine) expireIdem(now int64, capRecords uint32) int {
	n := len(m.idem)
	if n == 0 {
		return 0
	}
	type rec struct {
		expiry int64
		key    string
	}
	order := make([]rec, 0, n)
	for k, r := range m.idem {
		order = append(order, rec{r.expiry, k})
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].expiry != order[j].expiry {
			return order[i].expiry < order[j].expiry
		}
		return order[i].key < order[j].key
	})
	dropped := 0
	for _, r := range order {
		if dropped >= idemExpirePerCommand {
			break
		}
		over := capRecords > 0 && uint64(n-dropped) >= uint64(capRecords)
		if r.expiry > now && !over {
			break
		}
		m.dropIdem(r.key)
		dropped++
	}
	return dropped
}

// applyCommand applies command c at index as internal/store's applyCommand
// does: with an idempotency key, expire old records, then answer a live
// record's result without applying (Duplicate); else command.Eval, apply its
// effects, and record the result. ignoreIdem (the DuplicateApply bug) skips
// the lookup. It returns the keys written and the result.
func (m *machine) applyCommand(c *command.Command, index uint64, ignoreIdem bool) (written []string, r command.Result, expired int) {
	if len(c.IdemKey) > 0 {
		expired = m.expireIdem(c.Time, c.IdemCap)
		if rec, ok := m.lookupIdem(c.IdemKey, c.Time); ok && !ignoreIdem {
			rec.Duplicate = true
			return nil, rec, expired
		}
	}
	effs, r, _ := command.Eval(c, index, m.get) // m.get never fails
	for _, ef := range effs {
		k := string(ef.Key)
		written = append(written, k)
		if ef.Delete {
			delete(m.kv, k)
			continue
		}
		m.kv[k] = kvVal{val: string(ef.Value), ver: index}
	}
	if len(c.IdemKey) > 0 {
		rec := r
		rec.Old = bytes.Clone(r.Old)
		m.setIdem(string(c.IdemKey), idemRec{expiry: c.Time + c.IdemWindow, r: rec})
	}
	return written, r, expired
}

// fingerprint is the machine's state as text, in a fixed order: keys with
// values and versions, then the size and hash of the idempotency table and
// of the term history.
func (m *machine) fingerprint(b *strings.Builder) {
	keys := make([]string, 0, len(m.kv))
	for key := range m.kv {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	buf := make([]byte, 0, 64)
	for _, key := range keys {
		v := m.kv[key]
		buf = strconv.AppendQuote(append(append(buf[:0], key...), '='), v.val)
		buf = append(strconv.AppendUint(append(buf, '@'), v.ver, 10), ';')
		b.Write(buf)
	}
	if len(m.idem) > 0 {
		buf = strconv.AppendInt(append(buf[:0], "|idem:"...), int64(len(m.idem)), 10)
		buf = strconv.AppendUint(append(buf, '#'), m.idemSum, 16)
		b.Write(buf)
	}
	if len(m.terms) > 0 {
		buf = strconv.AppendInt(append(buf[:0], "|terms:"...), int64(len(m.terms)), 10)
		buf = strconv.AppendUint(append(buf, '#'), m.termsSum, 16)
		b.Write(buf)
	}
}

func describeCmdResult(r command.Result) string {
	return fmt.Sprintf("%s/applied=%t/i%d/v%d/int=%d/dup=%t", r.Code, r.Applied, r.Index, r.Version, r.Int, r.Duplicate)
}

// sameCmdResult reports whether two results of one command agree (ignoring
// Duplicate, which differs between a retry's answer and the first one's).
func sameCmdResult(a, b command.Result) bool {
	return a.Code == b.Code && a.Applied == b.Applied && a.Index == b.Index && a.Version == b.Version && a.Int == b.Int
}

// appliedCmd is a command's result as a node applied it, kept for the
// writer's answer.
type appliedCmd struct {
	term uint64
	r    command.Result
}

// applyEffect is what applying one entry did, for the checker: the keys it
// wrote and, for a command, the command and its result.
type applyEffect struct {
	written []string
	cmd     *command.Command
	res     command.Result
}

func describeCmd(c *command.Command) string {
	s := c.Op.String() + " " + string(c.Key)
	switch c.Op {
	case command.OpIncr:
		s += fmt.Sprintf(" %+d", c.Delta)
	case command.OpSet, command.OpAppend:
		s += fmt.Sprintf("=%q", c.Value)
	}
	if c.Cond == command.CondIndex {
		s += fmt.Sprintf(" if-version=%d", c.IfIndex)
	}
	if len(c.IdemKey) > 0 {
		s += " idem=" + string(c.IdemKey)
	}
	if c.Time != 0 {
		s += fmt.Sprintf(" time=%d", c.Time)
	}
	return s
}
