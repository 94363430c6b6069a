package apitest

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/trireme-db/trireme/internal/api"
)

// The Fake's leaderless side (api/quorum.go): W and R quorums, the
// replicas that answered, read repair and the status of the ring. A Fake
// on which SetLeaderless was not called answers as a single-leader node.
//
// A leaderless Fake models every key with N replicas (the info's
// ReplicationFactor, 3 if 0), of which a set number answer (SetReplicasUp;
// all N at first). A write or read resolves its W or R against N
// (api.ErrBadQuorum beyond it) and fails with api.ErrQuorumUnavailable,
// doing nothing, when fewer replicas answer than it needs; otherwise it is
// served from the Fake's map at once, whatever the leader, and its result
// says how many replicas answered. A write has no term (so no session
// token). A read with Repair reports the replicas set with SetRepaired as
// repaired by it.

// ModeLeaderless is what a leaderless node's status says in Mode and Role.
const ModeLeaderless = "leaderless"

// fakeLeaderless is the Fake's leaderless state. Guarded by Fake.mu.
type fakeLeaderless struct {
	on       bool
	info     api.LeaderlessInfo
	up       int // replicas of every key that answer
	repaired int // replicas a blocking read repair updates
}

// n is the replication factor.
func (l *fakeLeaderless) n() int {
	if l.info.ReplicationFactor > 0 {
		return l.info.ReplicationFactor
	}
	return 3
}

// SetLeaderless makes the Fake a leaderless node whose status carries info
// (copied), with every replica of every key answering.
func (f *Fake) SetLeaderless(info api.LeaderlessInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ll.on = true
	f.ll.info = cloneLeaderlessInfo(info)
	f.ll.up = f.ll.n()
}

// SetReplicasUp sets how many replicas of every key answer (leaderless).
func (f *Fake) SetReplicasUp(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ll.up = n
}

// SetRepaired sets how many replicas a read with Repair reports repaired
// (leaderless).
func (f *Fake) SetRepaired(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ll.repaired = n
}

// LastRead returns the options of the last Read and the number of Reads.
func (f *Fake) LastRead() (api.ReadOptions, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastRead, f.reads
}

// quorum checks q (a W or an R) against the replicas that answer. Called
// with f.mu held.
func (f *Fake) quorum(q api.Quorum, what string) error {
	need, err := q.Resolve(f.ll.n())
	if err != nil {
		return err
	}
	if f.ll.up < need {
		return fmt.Errorf("%w: %d of %d replicas answered, %s=%d", api.ErrQuorumUnavailable, f.ll.up, f.ll.n(), what, need)
	}
	return nil
}

// llWrite is a write on a leaderless Fake. Called with f.mu held.
func (f *Fake) llWrite(key, value []byte, del bool, w api.WriteOptions) (api.WriteResult, error) {
	if err := f.quorum(w.W, "W"); err != nil {
		return api.WriteResult{}, err
	}
	f.lastWrite = w
	f.writes++
	f.index++
	if del {
		delete(f.data, string(key))
	} else {
		f.data[string(key)] = fakeValue{value: slices.Clone(value), index: f.index}
	}
	delete(f.ver.siblings, string(key))
	durability := w.W.String()
	if durability == "" {
		durability = "quorum"
	}
	return api.WriteResult{Index: f.index, Durability: durability, Replicas: f.ll.up}, nil
}

// llRead is a read on a leaderless Fake, at any consistency. Called with
// f.mu held.
func (f *Fake) llRead(key []byte, o api.ReadOptions) (api.ReadResult, error) {
	if err := f.quorum(o.R, "R"); err != nil {
		return api.ReadResult{}, err
	}
	v, ok := f.data[string(key)]
	r := api.ReadResult{Found: ok, Value: slices.Clone(v.value), Index: v.index, Replicas: f.ll.up}
	f.versionsOf(key, &r)
	if o.Repair {
		r.Repaired = f.ll.repaired
	}
	return r, nil
}

// llStatus is a leaderless Fake's status. Called with f.mu held.
func (f *Fake) llStatus() api.NodeStatus {
	info := cloneLeaderlessInfo(f.ll.info)
	info.ReplicationFactor = f.ll.n()
	return api.NodeStatus{ID: f.id, ClusterID: FakeClusterID, Role: ModeLeaderless, Mode: ModeLeaderless,
		LastIndex: f.index, CommitIndex: f.index, AppliedIndex: f.index, Leaderless: &info}
}

func cloneLeaderlessInfo(i api.LeaderlessInfo) api.LeaderlessInfo {
	i.Ownership = maps.Clone(i.Ownership)
	i.HintsPending = maps.Clone(i.HintsPending)
	i.AEDiffering = maps.Clone(i.AEDiffering)
	i.Down = slices.Clone(i.Down)
	return i
}

// llCheck is what every leaderless request checks first: a failure set
// with FailNext, a removed node, an empty key. Called with f.mu held.
func (f *Fake) llCheck(ctx context.Context, key []byte) error {
	if err := f.takeFail(); err != nil {
		return err
	}
	if f.mem.removed {
		return api.ErrRemoved
	}
	if len(key) == 0 {
		return api.ErrEmptyKey
	}
	return ctx.Err()
}
