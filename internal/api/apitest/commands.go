package apitest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
)

// Exec implements api.Service: the command is evaluated with command.Eval
// against the Fake's map, so its effects and results are the real ones. An
// idempotency key seen before returns the recorded result (Duplicate set)
// and changes nothing. Every Exec is acknowledged at once (the Fake's
// followers are not consulted).
func (f *Fake) Exec(ctx context.Context, cmd *command.Command, w api.WriteOptions) (api.WriteResult, error) {
	if err := cmd.Validate(); err != nil {
		return api.WriteResult{}, fmt.Errorf("%w: %w", api.ErrBadCommand, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return api.WriteResult{}, err
	}
	if f.mem.removed {
		return api.WriteResult{}, api.ErrRemoved
	}
	if f.ll.on {
		// Leaderless: no leader; W as a plain write's; no term.
		if err := f.quorum(w.W, "W"); err != nil {
			return api.WriteResult{}, err
		}
		res, err := f.exec(cmd, w)
		res.Term, res.Replicas = 0, f.ll.up
		return res, err
	}
	if f.leader == "" {
		return api.WriteResult{}, api.ErrNoLeader
	}
	if f.leader != f.id {
		return api.WriteResult{}, api.ErrNotLeader
	}
	return f.exec(cmd, w)
}

// exec is Exec once the node takes the command. Called with f.mu held.
func (f *Fake) exec(cmd *command.Command, w api.WriteOptions) (api.WriteResult, error) {
	f.lastWrite = w
	f.writes++
	f.lastCmd = cmd
	if len(cmd.IdemKey) > 0 {
		if r, ok := f.idem[string(cmd.IdemKey)]; ok {
			// As the node: the first request's result and position,
			// nothing new written.
			r.Duplicate = true
			res := api.WriteResult{Index: r.Index, Term: f.term, Durability: "majority", Committed: true, LeaderDurable: true, Cmd: r}
			return res, api.CmdErr(r)
		}
	}
	f.index++
	idx := f.index
	res := api.WriteResult{Index: idx, Term: f.term, Durability: "majority", Committed: true, LeaderDurable: true}
	c := *cmd
	c.Stamp(time.Now().UnixNano(), int64(10*time.Minute), 1<<20, uint32(f.maxValue))
	effs, r, err := command.Eval(&c, idx, func(key []byte) ([]byte, uint64, bool, error) {
		v, ok := f.data[string(key)]
		return slices.Clone(v.value), v.index, ok, nil
	})
	if err != nil {
		return api.WriteResult{}, err
	}
	for _, e := range effs {
		delete(f.ver.siblings, string(e.Key))
		if e.Delete {
			delete(f.data, string(e.Key))
		} else {
			f.data[string(e.Key)] = fakeValue{value: slices.Clone(e.Value), index: idx}
		}
	}
	if len(cmd.IdemKey) > 0 {
		if f.idem == nil {
			f.idem = map[string]command.Result{}
		}
		f.idem[string(cmd.IdemKey)] = r
	}
	res.Cmd = r
	return res, api.CmdErr(r)
}

// LastCommand returns the last command given to Exec (nil if none).
func (f *Fake) LastCommand() *command.Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastCmd
}

// Read implements api.Service. Session and bounded reads are served from
// the map (the Fake is never behind); a session read whose token is past
// the Fake's last index waits for ctx and then fails, as a node that never
// catches up would. Every reply carries the token of the Fake's last index.
// A leaderless Fake serves every read alike (leaderless.go). LastRead
// returns the options of the last one.
func (f *Fake) Read(ctx context.Context, key []byte, o api.ReadOptions) (api.ReadResult, error) {
	f.mu.Lock()
	f.lastRead = o
	f.reads++
	if f.ll.on {
		defer f.mu.Unlock()
		if err := f.llCheck(ctx, key); err != nil {
			return api.ReadResult{}, err
		}
		return f.llRead(key, o)
	}
	f.mu.Unlock()
	switch o.Consistency {
	case api.Session:
		f.mu.Lock()
		ahead := o.Token.Index > f.index
		f.mu.Unlock()
		if ahead {
			<-ctx.Done()
			return api.ReadResult{}, ctx.Err()
		}
		r, err := f.Get(ctx, key, api.Stale)
		if err == nil {
			r.Token = f.token().Max(o.Token)
		}
		return r, err
	case api.Bounded:
		if o.MaxLag < 0 || (o.MaxLag == 0 && o.MaxLagEntries == 0) {
			return api.ReadResult{}, api.ErrBadBound
		}
		r, err := f.Get(ctx, key, api.Stale)
		if err == nil {
			r.Token = f.token()
		}
		return r, err
	}
	r, err := f.Get(ctx, key, o.Consistency)
	if err == nil {
		r.Token = f.token()
	}
	return r, err
}

func (f *Fake) token() api.Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.index == 0 {
		return api.Token{}
	}
	return api.Token{Term: f.term, Index: f.index}
}
