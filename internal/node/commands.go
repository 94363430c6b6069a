package node

import (
	"context"
	"fmt"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// Commands (internal/command): read-modify-write, conditional and
// idempotent writes. A command is proposed like a put, as an entry of kind
// KindCommand, but its reply needs the command's result, which only exists
// once the entry is applied: the applier answers a command's writer after
// both the ack mode is met and the entry is applied (cmdWaits). So a
// command's reply always implies commit, whatever its ack mode.

// Exec implements api.Service.
func (n *Node) Exec(ctx context.Context, cmd *command.Command, w api.WriteOptions) (api.WriteResult, error) {
	if n.removed.Load() {
		return api.WriteResult{}, api.ErrRemoved
	}
	c := *cmd
	c.Stamp(0, 0, 0, 0) // the leader stamps
	if err := n.checkCommand(&c); err != nil {
		return api.WriteResult{}, err
	}
	return n.write(ctx, entry.KindCommand, c.Key, nil, &c, w, false)
}

// checkCommand validates a command from a client or a follower.
func (n *Node) checkCommand(c *command.Command) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", api.ErrBadCommand, err)
	}
	if c.Op != command.OpMSet {
		if err := n.checkWrite(c.Key, c.Value); err != nil {
			return err
		}
	}
	// The entry's value is the encoding: it must fit the WAL's limit.
	if size, limit := command.EncodedLen(c), maxEntryValue(n.cfg.MaxValueBytes); size > limit {
		return fmt.Errorf("%w: a command of %d bytes encoded, limit %d", api.ErrValueTooLarge, size, limit)
	}
	if c.Op != command.OpMSet {
		return nil
	}
	total := 0
	for i := range c.Keys {
		if err := n.checkWrite(c.Keys[i], c.Values[i]); err != nil {
			return err
		}
		total += len(c.Keys[i]) + len(c.Values[i])
	}
	if total > n.cfg.MaxValueBytes {
		return fmt.Errorf("%w: a multi-key write of %d bytes, limit %d", api.ErrValueTooLarge, total, n.cfg.MaxValueBytes)
	}
	return nil
}

// prepareCommand turns a checked, unstamped command into the entry value the
// leader proposes: stamped with the leader's clock and limits, encoded once.
// If the command's idempotency key already has a live record in the applied
// state, dup is set and nothing is to be proposed.
func (n *Node) prepareCommand(cmd *command.Command) (value []byte, dup *api.WriteResult, err error) {
	now := time.Now().UnixNano()
	if len(cmd.IdemKey) > 0 {
		r, found, err := n.store.Idempotent(cmd.IdemKey, now)
		if err != nil {
			return nil, nil, err
		}
		if found {
			r.Duplicate = true
			term, _, _ := n.store.TermAt(r.Index)
			n.m.idemDuplicates.Inc()
			return nil, &api.WriteResult{Index: r.Index, Term: term, Durability: api.AckMajority.String(),
				Committed: true, LeaderDurable: true, Cmd: r}, nil
		}
	}
	c := *cmd // the caller's copy stays unstamped, for a retry elsewhere
	c.Stamp(now, int64(n.cfg.idempotencyWindow()), uint32(n.cfg.idempotencyMaxKeys()), uint32(n.cfg.MaxValueBytes))
	return command.Encode(nil, &c), nil, nil
}

// forwardCommand handles OpCommand from a follower.
func (n *Node) forwardCommand(ctx context.Context, req *transport.ForwardRequest, w api.WriteOptions, resp *transport.ForwardResponse) error {
	c, err := command.Decode(req.Value)
	if err != nil {
		return fmt.Errorf("%w: %w", api.ErrBadCommand, err)
	}
	c.Stamp(0, 0, 0, 0)
	if err := n.checkCommand(&c); err != nil {
		return err
	}
	res, err := n.write(ctx, entry.KindCommand, c.Key, nil, &c, w, true)
	resp.Write = res
	if err == nil || res.Cmd.Code != command.CodeOK {
		// Applied (or refused by its own condition): the result says it all.
		resp.CmdSet = true
		return nil
	}
	return err
}

// cmdWaits is the applier's side of command replies: the results of
// recently applied commands, and the writers whose ack came before their
// entry was applied. Owned by the applier goroutine.
type cmdWaits struct {
	recent map[uint64]appliedCmd
	order  []uint64 // recent's keys, oldest first
	parked map[uint64]propDone
}

type appliedCmd struct {
	term uint64
	r    command.Result
}

// maxRecentCmds bounds cmdWaits.recent: a writer's ack arrives at most a few
// Readies after its entry is applied.
const maxRecentCmds = 1 << 14

func newCmdWaits() *cmdWaits {
	return &cmdWaits{recent: map[uint64]appliedCmd{}, parked: map[uint64]propDone{}}
}

// applied is the store's CommandReport.
func (c *cmdWaits) applied(index, term uint64, r command.Result) {
	if d, ok := c.parked[index]; ok {
		delete(c.parked, index)
		c.answer(d, appliedCmd{term: term, r: r})
		return
	}
	c.recent[index] = appliedCmd{term: term, r: r}
	c.order = append(c.order, index)
	if len(c.order) > maxRecentCmds {
		delete(c.recent, c.order[0])
		c.order = c.order[1:]
	}
}

// answer answers writer d with its applied entry a: a different term means
// the entry at its index is another one (its own was discarded).
func (c *cmdWaits) answer(d propDone, a appliedCmd) {
	if a.term != d.r.Term {
		d.w.done <- propResp{err: fmt.Errorf("%w: the entry at index %d was replaced by one of term %d", api.ErrOutcomeUnknown, d.r.Index, a.term)}
		return
	}
	d.w.done <- propResp{res: d.r, cmd: a.r}
}

// result answers a command's writer whose ack arrived, or parks it until its
// entry is applied. applied is the store's applied index.
func (c *cmdWaits) result(d propDone, applied uint64) {
	if d.r.Outcome != repl.OutcomeOK {
		d.w.done <- propResp{res: d.r}
		return
	}
	if a, ok := c.recent[d.r.Index]; ok {
		c.answer(d, a)
		return
	}
	if d.r.Index <= applied {
		d.w.done <- propResp{err: fmt.Errorf("%w: command at index %d applied but its result is no longer known", api.ErrOutcomeUnknown, d.r.Index)}
		return
	}
	c.parked[d.r.Index] = d
}

// settle answers every parked writer whose index was applied without a
// command (the entry there is another one, or a snapshot covered it).
func (c *cmdWaits) settle(applied uint64) {
	for i, d := range c.parked {
		if i <= applied {
			delete(c.parked, i)
			d.w.done <- propResp{err: fmt.Errorf("%w: the entry at index %d was replaced or covered by a snapshot", api.ErrOutcomeUnknown, i)}
		}
	}
}

// fail answers every parked writer with err.
func (c *cmdWaits) fail(err error) {
	for i, d := range c.parked {
		delete(c.parked, i)
		d.w.done <- propResp{err: err}
	}
}
