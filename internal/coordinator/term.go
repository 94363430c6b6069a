package coordinator

import (
	"fmt"
	"math"
	"strconv"
)

// keys names the etcd keys of one Trireme cluster.
type keys struct {
	leader string // /trireme/<cluster>/leader: the holder's id, attached to its lease
	term   string // /trireme/<cluster>/term: the last term handed out
}

func keysFor(cluster string) keys {
	prefix := "/trireme/" + cluster + "/"
	return keys{leader: prefix + "leader", term: prefix + "term"}
}

// maxTermBytes is the length of the largest uint64 in decimal.
const maxTermBytes = 20

// formatTerm encodes a term as stored in etcd: canonical decimal ASCII, so an
// operator can read it with etcdctl. This is part of the stored format.
func formatTerm(t uint64) string {
	return strconv.FormatUint(t, 10)
}

// parseTerm decodes a stored term. Only what formatTerm writes is accepted:
// decimal digits, no sign, no spaces, no leading zero (except "0" itself), at
// most 20 bytes, no overflow. Anything else is ErrBadTerm.
func parseTerm(b []byte) (uint64, error) {
	bad := func(why string) (uint64, error) {
		return 0, fmt.Errorf("%w: %q: %s", ErrBadTerm, truncate(b, 40), why)
	}
	switch {
	case len(b) == 0:
		return bad("empty")
	case len(b) > maxTermBytes:
		return bad("too long")
	case len(b) > 1 && b[0] == '0':
		return bad("leading zero")
	}
	var t uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return bad("not a decimal number")
		}
		d := uint64(c - '0')
		if t > (math.MaxUint64-d)/10 {
			return bad("larger than a uint64")
		}
		t = t*10 + d
	}
	return t, nil
}

// truncate shortens garbage for an error message.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

// nextTerm is the term a new holder takes: one past the stored term, and at
// least minTerm, the caller's own floor (its current term + 1).
func nextTerm(stored, minTerm uint64) (uint64, error) {
	if stored == math.MaxUint64 {
		return 0, fmt.Errorf("%w: stored term is %d", ErrTermExhausted, stored)
	}
	return max(stored+1, minTerm), nil
}
