// Package apitest provides Fake, an in-memory api.Service for testing client
// protocols (HTTP, RESP) and the Go client without a real node.
//
// Fake keeps a real map of keys, assigns log indexes and terms, and models a
// leader with a configurable number of followers, some of which can be down.
// Each write reaches every follower that is up at once, so the ack modes
// behave as on a real cluster: sync blocks (until its timeout) while any
// follower is down, semi-sync K needs K followers up, majority needs a
// majority of the cluster up. It promises nothing about concurrency beyond
// being safe for concurrent use. SetLeaderless makes it a leaderless node
// instead (leaderless.go).
package apitest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
)

// Fake is an in-memory api.Service. The zero value is not usable; use NewFake.
type Fake struct {
	mu                     sync.Mutex
	id                     string
	followers              []string        // follower ids
	down                   map[string]bool // followers that are down
	data                   map[string]fakeValue
	index                  uint64
	term                   uint64
	leader                 string // "" = no leader
	leaderHTTP, leaderRESP string
	maxValue               int
	defAck                 api.Ack
	defTO                  time.Duration
	durable                map[string]uint64 // follower -> highest durable index
	rollbacks              []api.Rollback
	failNext               error // returned once by the next call that can fail
	lastWrite              api.WriteOptions
	writes                 int
	mem                    fakeMembership // members.go
	idem                   map[string]command.Result
	lastCmd                *command.Command
	ver                    fakeVersions   // versions.go
	ll                     fakeLeaderless // leaderless.go
	lastRead               api.ReadOptions
	reads                  int
}

type fakeValue struct {
	value []byte
	index uint64
}

// NewFakeID is NewFake with node id id (leading).
func NewFakeID(id string, followers ...string) *Fake {
	f := NewFake(followers...)
	f.id, f.leader = id, id
	return f
}

// NewFake returns a Fake leader "n1" with the given followers, all up, a
// default ack of majority and a 1 MiB value limit.
func NewFake(followers ...string) *Fake {
	return &Fake{
		id:        "n1",
		followers: slices.Clone(followers),
		down:      map[string]bool{},
		data:      map[string]fakeValue{},
		term:      1,
		leader:    "n1",
		maxValue:  1 << 20,
		defAck:    api.Ack{Mode: api.AckMajority},
		defTO:     2 * time.Second,
		durable:   map[string]uint64{},
		mem:       newFakeMembership(),
	}
}

// SetDown marks follower id down (true) or up (false). An up follower
// catches up at once.
func (f *Fake) SetDown(id string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[id] = down
	if !down {
		f.durable[id] = f.index
	}
}

// SetLeader sets the known leader ("" = none). Writes fail with ErrNoLeader
// when there is none.
func (f *Fake) SetLeader(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader = id
}

// SetLeaderAddrs sets the leader's client addresses reported by Status.
func (f *Fake) SetLeaderAddrs(httpAddr, respAddr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaderHTTP, f.leaderRESP = httpAddr, respAddr
}

// SetMaxValueBytes sets the value size limit.
func (f *Fake) SetMaxValueBytes(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxValue = n
}

// SetDefaultTimeout sets the write timeout used when a write gives none.
func (f *Fake) SetDefaultTimeout(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.defTO = d
}

// FailNext makes the next Put, Delete, Exec, Get, Read, TransferLeadership,
// Conflicts or membership call (Members, AddMember, PromoteMember,
// RemoveMember) return err.
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = err
}

// AddRollback appends r to the rollback journal.
func (f *Fake) AddRollback(r api.Rollback) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rollbacks = append(f.rollbacks, r)
}

// LastWrite returns the options of the last write and the number of writes.
func (f *Fake) LastWrite() (api.WriteOptions, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastWrite, f.writes
}

// Value returns the stored value of key.
func (f *Fake) Value(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[key]
	return v.value, ok
}

func (f *Fake) takeFail() error {
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *Fake) upCount() int {
	n := 0
	for _, id := range f.followers {
		if !f.down[id] {
			n++
		}
	}
	return n
}

// met reports the strongest mode satisfied with up followers, and whether
// ack is satisfied.
func (f *Fake) met(ack api.Ack, up int) (string, bool) {
	all := len(f.followers)
	majority := up+1 > (all+1)/2
	best := "async"
	if up >= 1 {
		best = "semi-sync"
	}
	if majority {
		best = "majority"
	}
	if up == all {
		best = "sync"
	}
	switch ack.Mode {
	case api.AckAsync:
		return best, true
	case api.AckSemiSync:
		return best, up >= ack.Replicas
	case api.AckSync:
		return best, up == all
	case api.AckMajority:
		return best, majority
	}
	return best, false
}

func (f *Fake) write(ctx context.Context, key, value []byte, del bool, w api.WriteOptions) (api.WriteResult, error) {
	f.mu.Lock()
	if f.ll.on {
		defer f.mu.Unlock()
		if err := f.llCheck(ctx, key); err != nil {
			return api.WriteResult{}, err
		}
		if len(value) > f.maxValue {
			return api.WriteResult{}, fmt.Errorf("%w: %d bytes (limit %d)", api.ErrValueTooLarge, len(value), f.maxValue)
		}
		return f.llWrite(key, value, del, w)
	}
	if err := f.takeFail(); err != nil {
		f.mu.Unlock()
		return api.WriteResult{}, err
	}
	if f.mem.removed {
		f.mu.Unlock()
		return api.WriteResult{}, api.ErrRemoved
	}
	if len(key) == 0 {
		f.mu.Unlock()
		return api.WriteResult{}, api.ErrEmptyKey
	}
	if len(value) > f.maxValue {
		f.mu.Unlock()
		return api.WriteResult{}, fmt.Errorf("%w: %d bytes (limit %d)", api.ErrValueTooLarge, len(value), f.maxValue)
	}
	if f.leader == "" {
		f.mu.Unlock()
		return api.WriteResult{}, api.ErrNoLeader
	}
	if f.leader != f.id {
		f.mu.Unlock()
		return api.WriteResult{}, api.ErrNotLeader
	}
	f.lastWrite = w
	f.writes++
	ack := w.Ack
	if w.Default {
		ack = f.defAck
	}
	f.index++
	idx := f.index
	if del {
		delete(f.data, string(key))
	} else {
		f.data[string(key)] = fakeValue{value: slices.Clone(value), index: idx}
	}
	delete(f.ver.siblings, string(key))
	up := f.upCount()
	for _, id := range f.followers {
		if !f.down[id] {
			f.durable[id] = idx
		}
	}
	f.mem.follow(idx)
	best, ok := f.met(ack, up)
	res := api.WriteResult{Index: idx, Term: f.term, Durability: ack.Mode.String(), Replicas: up,
		Committed: up+1 > (len(f.followers)+1)/2, LeaderDurable: true}
	timeout := w.Timeout
	if timeout == 0 {
		timeout = f.defTO
	}
	f.mu.Unlock()
	if ok {
		return res, nil
	}
	res.Durability = best
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return res, fmt.Errorf("%w: reached %s with %d replicas", api.ErrWriteTimeout, best, up)
}

// Put implements api.Service.
func (f *Fake) Put(ctx context.Context, key, value []byte, w api.WriteOptions) (api.WriteResult, error) {
	return f.write(ctx, key, value, false, w)
}

// Delete implements api.Service.
func (f *Fake) Delete(ctx context.Context, key []byte, w api.WriteOptions) (api.WriteResult, error) {
	return f.write(ctx, key, nil, true, w)
}

// Get implements api.Service.
func (f *Fake) Get(ctx context.Context, key []byte, c api.Consistency) (api.ReadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ll.on {
		if err := f.llCheck(ctx, key); err != nil {
			return api.ReadResult{}, err
		}
		return f.llRead(key, api.ReadOptions{Consistency: c})
	}
	if err := f.takeFail(); err != nil {
		return api.ReadResult{}, err
	}
	if f.mem.removed {
		return api.ReadResult{}, api.ErrRemoved
	}
	if len(key) == 0 {
		return api.ReadResult{}, api.ErrEmptyKey
	}
	if c == api.Linearizable && f.leader == "" {
		return api.ReadResult{}, api.ErrNoLeader
	}
	if c == api.Linearizable && f.leader != f.id {
		return api.ReadResult{}, api.ErrNotLeader
	}
	v, ok := f.data[string(key)]
	r := api.ReadResult{Found: ok, Value: slices.Clone(v.value), Index: v.index}
	f.versionsOf(key, &r)
	if c == api.Stale {
		r.LagEntries, r.LagMillis = 0, 0
	}
	return r, nil
}

// Count implements api.Service.
func (f *Fake) Count(ctx context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.data), nil
}

// FakeClusterID is the cluster id a Fake reports.
const FakeClusterID = "fake-cluster"

// Status implements api.Service.
func (f *Fake) Status() api.NodeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ll.on {
		return f.llStatus()
	}
	s := api.NodeStatus{ID: f.id, ClusterID: FakeClusterID, Role: "follower", Term: f.term, Leader: f.leader,
		LeaderHTTP: f.leaderHTTP, LeaderRESP: f.leaderRESP,
		LastIndex: f.index, CommitIndex: f.index, AppliedIndex: f.index}
	if f.leader == f.id {
		s.Role = "leader"
		for _, id := range f.followers {
			fi := api.FollowerInfo{ID: id, MatchIndex: f.durable[id], Role: api.RoleVoter, RESP: f.mem.specs[id].RESP}
			fi.LagEntries = f.index - f.durable[id]
			s.Followers = append(s.Followers, fi)
		}
		for _, id := range f.mem.learners {
			p := f.mem.progress[id]
			s.Followers = append(s.Followers, api.FollowerInfo{ID: id, MatchIndex: p.match,
				LagEntries: f.index - p.match, Role: api.RoleLearner, RESP: f.mem.specs[id].RESP})
		}
	}
	return s
}

// Rollbacks implements api.Service.
func (f *Fake) Rollbacks() ([]api.Rollback, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rollbacks), nil
}

// TransferLeadership implements api.Service.
func (f *Fake) TransferLeadership(ctx context.Context, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return err
	}
	if to == f.id && f.leader == f.id {
		return nil
	}
	if !slices.Contains(f.followers, to) {
		return fmt.Errorf("unknown node %q", to)
	}
	if f.down[to] {
		return fmt.Errorf("node %q is down", to)
	}
	f.leader = to
	f.term++
	return nil
}

// WaitReplicas implements api.Service.
func (f *Fake) WaitReplicas(ctx context.Context, index uint64, n int) (int, error) {
	count := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		c := 0
		for _, id := range f.followers {
			if f.durable[id] >= index {
				c++
			}
		}
		return c
	}
	for {
		c := count()
		if c >= n {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return c, nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// MaxValueBytes implements api.Service.
func (f *Fake) MaxValueBytes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxValue
}

var _ api.Service = (*Fake)(nil)
