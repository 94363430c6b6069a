package apitest

import (
	"context"
	"slices"

	"github.com/trireme-db/trireme/internal/api"
)

// The Fake's multi-leader side (api/versions.go): siblings, causal contexts
// and a conflict log, set by the test rather than made by concurrent
// writes. A Fake on which none of these is set answers as a single-leader
// node, except that it implements api.ConflictLog (with an empty log); a
// test that needs a Service without it wraps the Fake in a struct that
// embeds only api.Service.

// fakeVersions is the Fake's multi-leader state. Guarded by Fake.mu.
type fakeVersions struct {
	siblings  map[string][]api.Sibling // keys with concurrent values
	context   string                   // the causal context of every read ("" = none)
	conflicts []api.ConflictRecord     // oldest first
	nextSeq   uint64                   // the Seq of the last record added
	dropped   uint64                   // records dropped from the front
}

// SetSiblings gives key the concurrent values sibs (at least two, for a
// read to report them): a read then finds the key with the first one's
// value and lists them all in ReadResult.Siblings. The next write to key
// replaces them. No sibling at all removes them.
func (f *Fake) SetSiblings(key string, sibs ...api.Sibling) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(sibs) == 0 {
		delete(f.ver.siblings, key)
		return
	}
	if f.ver.siblings == nil {
		f.ver.siblings = map[string][]api.Sibling{}
	}
	f.ver.siblings[key] = slices.Clone(sibs)
}

// SetReadContext makes every read reply, found or not, carry the causal
// context token ("" = none, as a single-leader node).
func (f *Fake) SetReadContext(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ver.context = token
}

// AddConflict appends r to the conflict log with the next Seq (from 1)
// and returns that Seq; r.Seq is ignored.
func (f *Fake) AddConflict(r api.ConflictRecord) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ver.nextSeq++
	r.Seq = f.ver.nextSeq
	f.ver.conflicts = append(f.ver.conflicts, r)
	return r.Seq
}

// DropConflicts removes the n oldest records of the conflict log (all of
// them if there are fewer), as a node bounding its log does; Conflicts
// counts them as dropped.
func (f *Fake) DropConflicts(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n = min(n, len(f.ver.conflicts))
	f.ver.conflicts = slices.Delete(f.ver.conflicts, 0, n)
	f.ver.dropped += uint64(n)
}

// Conflicts implements api.ConflictLog: up to limit records with Seq >
// after, oldest first, and how many records were dropped.
func (f *Fake) Conflicts(ctx context.Context, after uint64, limit int) ([]api.ConflictRecord, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return nil, 0, err
	}
	var out []api.ConflictRecord
	for _, r := range f.ver.conflicts {
		if len(out) == limit {
			break
		}
		if r.Seq > after {
			out = append(out, r)
		}
	}
	return out, f.ver.dropped, nil
}

// versionsOf fills in r's siblings and context for key. Called with f.mu
// held.
func (f *Fake) versionsOf(key []byte, r *api.ReadResult) {
	r.Context = f.ver.context
	sibs := f.ver.siblings[string(key)]
	if len(sibs) == 0 {
		return
	}
	r.Found, r.Value = true, slices.Clone(sibs[0].Value)
	r.Siblings = slices.Clone(sibs)
}

var _ api.ConflictLog = (*Fake)(nil)
