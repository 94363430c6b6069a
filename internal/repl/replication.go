package repl

import (
	"fmt"
	"sort"

	"github.com/trireme-db/trireme/internal/entry"
)

type progressState uint8

const (
	// stateProbe: one MsgApp at a time, waiting for its answer; used after a
	// rejection, and at the start of a term, to find where logs match.
	stateProbe progressState = iota
	// stateReplicate: pipelining, up to MaxInflightMsgs unacknowledged MsgApps.
	stateReplicate
	// stateSnapshot: the follower needs entries this log no longer holds;
	// the runtime is sending it a snapshot (Ready.Snapshots) and reports
	// the end with ReportSnapshot. Nothing but heartbeats is sent meanwhile.
	stateSnapshot
)

func (s progressState) String() string {
	switch s {
	case stateProbe:
		return "probe"
	case stateReplicate:
		return "replicate"
	case stateSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// progress is the leader's view of one follower.
type progress struct {
	id           NodeID
	learner      bool // receives the log, never counts
	removed      bool // removed by an uncommitted configuration (learner is set too)
	match, next  uint64
	state        progressState
	probeSent    bool // probe: a MsgApp is out, wait for its answer
	inflight     inflights
	recentActive bool  // heard from since the last check-quorum
	lastContact  int64 // tick of the last message from it
	ackedCtx     uint64
	// sentRound is the heartbeat round current when the last MsgApp went to
	// this follower. An answer to a later round means a heartbeat that left
	// after that MsgApp came back: if the MsgApp is still unanswered, it (or
	// its answer) was most likely lost.
	sentRound uint64
}

func newProgress(id NodeID, next uint64, maxInflight int) *progress {
	return &progress{id: id, next: next, inflight: inflights{buf: make([]uint64, maxInflight)}}
}

func (pr *progress) becomeProbe(next uint64) {
	pr.state = stateProbe
	pr.next = max(next, pr.match+1)
	pr.probeSent = false
	pr.inflight.reset()
}

func (pr *progress) becomeSnapshot() {
	pr.state = stateSnapshot
	pr.probeSent = false
	pr.inflight.reset()
}

func (pr *progress) becomeReplicate() {
	pr.state = stateReplicate
	pr.next = pr.match + 1
	pr.probeSent = false
	pr.inflight.reset()
}

// inflights is a ring of the last indexes of unacknowledged MsgApps.
type inflights struct {
	buf          []uint64
	start, count int
}

func (in *inflights) full() bool { return in.count == len(in.buf) }
func (in *inflights) reset()     { in.start, in.count = 0, 0 }
func (in *inflights) add(i uint64) {
	in.buf[(in.start+in.count)%len(in.buf)] = i
	in.count++
}

func (in *inflights) freeLE(i uint64) {
	for in.count > 0 && in.buf[in.start] <= i {
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
}

// sendAppend sends one MsgApp to pr if flow control allows. With allowEmpty it
// sends even when there are no entries to carry (to probe, or to carry the
// commit index). It reports whether a message was sent.
func (c *Core) sendAppend(pr *progress, allowEmpty bool) bool {
	if pr.state == stateSnapshot {
		return false
	}
	if pr.state == stateProbe && pr.probeSent {
		return false
	}
	if pr.state == stateReplicate && pr.inflight.full() {
		return false
	}
	last := c.log.lastIndex()
	if pr.next > last+1 {
		pr.next = last + 1
	}
	prev := pr.next - 1
	prevTerm, err := c.log.term(prev)
	if err != nil || pr.next < c.log.firstIndex() {
		c.logger.Info("follower needs entries no longer in the log: sending a snapshot", "peer", string(pr.id), "index", prev, "first_index", c.log.firstIndex())
		pr.becomeSnapshot()
		c.snapReqs = append(c.snapReqs, pr.id)
		return false
	}
	var ents []entry.Entry
	if pr.next <= last {
		ents, err = c.log.entries(pr.next, last+1, c.cfg.MaxMsgBytes)
		if err != nil {
			c.logger.Error("reading entries to send", "peer", string(pr.id), "index", pr.next, "err", err)
			return false
		}
	}
	if len(ents) == 0 && !allowEmpty {
		return false
	}
	c.send(Message{Type: MsgApp, To: pr.id, Term: c.term, Index: prev, LogTerm: prevTerm,
		Commit: c.log.committed, Entries: ents})
	pr.sentRound = c.rs.ctx
	switch pr.state {
	case stateReplicate:
		if n := len(ents); n > 0 {
			pr.next = ents[n-1].Index + 1
			pr.inflight.add(ents[n-1].Index)
		}
	case stateProbe:
		pr.probeSent = true
	}
	return true
}

// sendAppends sends pr everything flow control allows; with allowEmpty at
// least one message if possible.
func (c *Core) sendAppends(pr *progress, allowEmpty bool) {
	if !c.sendAppend(pr, allowEmpty) {
		return
	}
	for pr.state == stateReplicate && c.sendAppend(pr, false) {
	}
}

// flush sends what Propose, becomeLeader and commit advances deferred, so
// that many proposals between two Readys share one MsgApp per follower.
func (c *Core) flush() {
	if c.role != RoleLeader || !c.needBcast {
		return
	}
	c.needBcast = false
	for _, pr := range c.followers {
		c.sendAppends(pr, true)
	}
}

func (c *Core) handleAppend(m Message) {
	c.leaderCommit = m.Commit
	if commit := c.log.committed; m.Index < commit {
		// Entries at or below the commit index are already here (they
		// match every leader's log). Keep only the part above it.
		if m.Index+uint64(len(m.Entries)) <= commit {
			c.send(Message{Type: MsgAppResp, To: m.From, Term: c.term, Index: commit})
			return
		}
		k := commit - m.Index
		m.LogTerm = m.Entries[k-1].Term
		m.Entries = m.Entries[k:]
		m.Index = commit
	}
	if !c.log.matchTerm(m.Index, m.LogTerm) {
		hintTerm, hintIndex := c.rejectHint(m.Index, m.LogTerm)
		c.send(Message{Type: MsgAppResp, To: m.From, Term: c.term, Index: m.Index, Reject: true,
			HintTerm: hintTerm, HintIndex: hintIndex})
		return
	}
	lastNew := m.Index + uint64(len(m.Entries))
	if ci := c.log.findConflict(m.Entries); ci != 0 {
		// validate refused conflicts at or below the commit index.
		if last := c.log.lastIndex(); ci <= last {
			gone, err := c.log.entries(ci, last+1, 0)
			if err != nil {
				c.logger.Error("reading entries to discard", "index", ci, "err", err)
			}
			c.discarded = append(c.discarded, gone...)
			c.logger.Info("truncating divergent log suffix", "index", ci, "count", last-ci+1, "term", c.term)
		}
		app := m.Entries[ci-m.Index-1:]
		c.noteTruncated(ci)
		c.log.truncateAndAppend(app)
		c.noteAppended(app)
	}
	c.log.commitTo(min(m.Commit, lastNew))
	c.send(Message{Type: MsgAppResp, To: m.From, Term: c.term, Index: lastNew})
}

// rejectHint computes the backtracking hint for a MsgApp whose previous entry
// (index, logTerm) does not match: the largest local index j <= index whose
// term is at most logTerm, and that term. Every local entry in (j, index] has
// a term above logTerm, and the leader's terms up to index are at most logTerm,
// so none of them can match the leader's: the logs agree at j or below. Terms
// never decrease along a log, so j is found by binary search; the search stays
// at or above the commit index, which matches the leader (and whose term is at
// most logTerm, since index >= commit here).
func (c *Core) rejectHint(index, logTerm uint64) (hintTerm, hintIndex uint64) {
	hi := min(index, c.log.lastIndex())
	lo := max(c.log.committed, c.log.firstIndex()-1)
	if lo > hi {
		lo = hi
	}
	j := lastAtMostTerm(c.log, lo, hi, logTerm)
	t, err := c.log.term(j)
	if err != nil {
		return 0, lo
	}
	return t, j
}

// lastAtMostTerm returns the largest i in [lo, hi] whose term is at most t,
// or lo if there is none (an unreadable term counts as above t).
func lastAtMostTerm(l *raftLog, lo, hi, t uint64) uint64 {
	if lo >= hi {
		return lo
	}
	// first i in [lo+1, hi+1] with term(i) > t; hi+1 stands for "none"
	k := searchIndex(lo+1, hi+1, func(i uint64) bool {
		if i > hi {
			return true
		}
		ti, err := l.term(i)
		return err != nil || ti > t
	})
	return k - 1
}

// searchIndex returns the smallest i in [lo, hi] for which f is true, given
// that f is monotone (false then true) and f(hi) is true.
func searchIndex(lo, hi uint64, f func(uint64) bool) uint64 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		if f(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

func (c *Core) handleHeartbeat(m Message) {
	c.leaderCommit = m.Index
	last := c.log.lastIndex()
	c.log.commitTo(min(m.Commit, last))
	c.send(Message{Type: MsgHeartbeatResp, To: m.From, Term: c.term, Context: m.Context})
	if m.Commit > last {
		// m.Commit is at most the index this node acknowledged to this
		// leader as durable: a log that ends below it lost entries (the
		// data directory was wiped or replaced). Say where it ends, as a
		// rejected append would (the leader's lostEntries), so that an
		// idle leader catches this node up now, not at its next write.
		t, err := c.log.term(last)
		if err != nil {
			t = 0
		}
		c.send(Message{Type: MsgAppResp, To: m.From, Term: c.term, Index: m.Commit, Reject: true,
			HintTerm: t, HintIndex: last})
	}
}

func (c *Core) stepLeader(m Message) error {
	pr := c.prs[m.From]
	if pr == nil {
		return nil
	}
	switch m.Type {
	case MsgAppResp:
		pr.recentActive = true
		pr.lastContact = c.now
		return c.handleAppResp(pr, m)
	case MsgHeartbeatResp:
		pr.recentActive = true
		pr.lastContact = c.now
		c.handleHeartbeatResp(pr, m)
	}
	return nil
}

func (c *Core) handleAppResp(pr *progress, m Message) error {
	if pr.state == stateSnapshot {
		// Only an acknowledgement of the snapshot (or of a later index)
		// ends the state; older answers are stale.
		if m.Reject || m.Index+1 < c.log.firstIndex() || m.Index > c.log.lastIndex() {
			return nil
		}
		pr.becomeProbe(m.Index + 1)
	}
	if m.Reject {
		if m.Index <= pr.match {
			if m.HintIndex < pr.match && (pr.state == stateReplicate || m.Index == pr.next-1) {
				c.lostEntries(pr, m)
			}
			return nil // stale, or handled as a lost log
		}
		if pr.state == stateProbe && m.Index != pr.next-1 {
			return nil // answer to an older probe
		}
		next := c.backtrack(pr, m)
		pr.becomeProbe(next)
		c.logger.Debug("follower rejected append", "peer", string(pr.id), "index", m.Index, "next", pr.next)
		c.sendAppends(pr, true)
		return nil
	}
	if m.Index > c.log.lastIndex() {
		// Within one term only this leader appends to the followers, and
		// its log only grows: such an acknowledgement is a protocol
		// violation (a bug or a forgery). It is never counted.
		return fmt.Errorf("%w: %s acknowledged index %d beyond our last index %d", ErrMalformedMessage, pr.id, m.Index, c.log.lastIndex())
	}
	updated := m.Index > pr.match
	if updated {
		pr.match = m.Index
	}
	if pr.next < m.Index+1 {
		pr.next = m.Index + 1
	}
	switch pr.state {
	case stateProbe:
		if m.Index >= pr.match {
			pr.becomeReplicate()
		}
	case stateReplicate:
		pr.inflight.freeLE(m.Index)
	}
	if updated {
		if c.maybeCommit() {
			c.needBcast = true
		}
		if pr.removed {
			c.dropRemoved()
		}
		c.props.evaluate(c)
		c.maybeSendTimeoutNow(pr)
	}
	c.sendAppends(pr, false)
	return nil
}

// lostEntries handles a rejection (of an append in flight, or of the
// current probe) at an index the follower had acknowledged: its log now ends below its match (HintIndex).
// A follower's log is durable, so either it lost its disk or data
// directory and came back empty under its old id, or the rejection is an
// old one, sent before the match, that arrived late. Either way the
// follower's word for where its log ends is safe to take: the match goes
// down to HintIndex and probing starts again from there (a snapshot if the
// log no longer reaches it). A follower that did have the entries accepts
// the next probe and its match comes back; one that lost them is caught up
// instead of being left behind for good, as it was when every such
// rejection was dropped as stale. The commit index never goes down.
func (c *Core) lostEntries(pr *progress, m Message) {
	c.logger.Warn("follower rejected an index it had acknowledged: it lost entries (data directory wiped or replaced?); catching it up again",
		"peer", string(pr.id), "match", pr.match, "its_last", m.HintIndex)
	pr.match = m.HintIndex
	pr.becomeProbe(c.backtrack(pr, m))
	c.sendAppends(pr, true)
}

// backtrack picks the next index to probe after a rejection (see DESIGN.md):
// right after the largest index k <= HintIndex whose term here is at most
// HintTerm. The follower's entries up to HintIndex have terms at most
// HintTerm, so our entries in (k, HintIndex] (terms above it) cannot match
// theirs, and the follower told us nothing in (HintIndex, m.Index] matches.
// The result is below the rejected next index (m.Index+1), so probing always
// makes progress, and above the follower's known match.
func (c *Core) backtrack(pr *progress, m Message) uint64 {
	if m.Index == 0 {
		return 1
	}
	hi := min(m.HintIndex, m.Index-1, c.log.lastIndex())
	lo := max(pr.match, c.log.firstIndex()-1)
	k := hi
	if lo < hi {
		k = lastAtMostTerm(c.log, lo, hi, m.HintTerm)
	}
	return max(min(k+1, m.Index), pr.match+1, 1)
}

// maybeCommit advances the commit index to the highest index durable on a
// quorum (the leader counts itself only for entries it has made durable),
// provided that entry is from the current term.
func (c *Core) maybeCommit() bool {
	matches := make([]uint64, 0, c.voters)
	if c.isVoter(c.id) {
		matches = append(matches, c.log.stableIndex())
	}
	for _, pr := range c.followers {
		if !pr.learner {
			matches = append(matches, pr.match)
		}
	}
	if len(matches) < c.quorum {
		return false
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i] > matches[j] })
	mci := matches[c.quorum-1]
	if mci <= c.log.committed {
		return false
	}
	if !c.bugs.commitOldTerm() {
		if t, err := c.log.term(mci); err != nil || t != c.term {
			return false
		}
	}
	c.log.commitTo(mci)
	c.dropRemoved()
	return true
}

func (c *Core) tickLeader() {
	if c.externalExpired() {
		// The coordinator may grant the key to another node from now on
		// (the grant's end is computed conservatively): stop leading.
		c.logger.Warn("the coordinator's grant ended; stepping down", "term", c.term)
		c.becomeFollower(c.term, None)
		return
	}
	c.heartbeatElapsed++
	c.electionElapsed++
	if c.electionElapsed >= c.quorumTicks() {
		c.electionElapsed = 0
		if c.cfg.CheckQuorum {
			active := 0
			if c.isVoter(c.id) {
				active++
			}
			for _, pr := range c.followers {
				if pr.recentActive && !pr.learner {
					active++
				}
				pr.recentActive = false
			}
			if active < c.quorum {
				c.logger.Warn("lost contact with a quorum; stepping down", "term", c.term)
				c.becomeFollower(c.term, None)
				return
			}
		}
	}
	if c.transferee != None {
		c.transferElapsed++
		if c.transferElapsed >= c.cfg.ElectionTicks {
			c.abortTransfer("timed out")
		}
	}
	if c.heartbeatElapsed >= c.cfg.HeartbeatTicks {
		c.heartbeatElapsed = 0
		c.bcastHeartbeat()
	}
	c.props.expire(c)
	c.expireReads()
	c.dropRemoved()
	c.maybePriorityTransfer()
}

// bcastHeartbeat starts a new heartbeat round.
func (c *Core) bcastHeartbeat() {
	ctx := c.rs.newRound(c.now)
	for _, pr := range c.followers {
		c.send(Message{Type: MsgHeartbeat, To: pr.id, Term: c.term,
			Commit: min(pr.match, c.log.committed), Index: c.log.committed, Context: ctx})
	}
	c.updateReadQuorum()
}

func (c *Core) handleHeartbeatResp(pr *progress, m Message) {
	if m.Context > c.rs.ctx {
		return // not a round of this term's leadership: ignore
	}
	if m.Context > pr.ackedCtx {
		pr.ackedCtx = m.Context
		c.updateReadQuorum()
	}
	if m.Context <= pr.sentRound {
		// The heartbeat left before our last MsgApp: that MsgApp may
		// still be on its way (round trips can be longer than the
		// heartbeat interval), so resending now would only duplicate it.
		return
	}
	switch pr.state {
	case stateSnapshot:
		// The runtime reports the snapshot's end.
	case stateProbe:
		// The probe (or its answer) was lost; a probe at next-1 may also
		// be needed to carry entries appended since.
		if (pr.probeSent && !c.bugs.noProbeResend()) || (!pr.probeSent && pr.match < c.log.lastIndex()) {
			pr.probeSent = false
			c.sendAppends(pr, true)
		}
	case stateReplicate:
		if pr.match+1 < pr.next {
			// Unacknowledged MsgApps outlived a heartbeat round trip. An
			// empty MsgApp at next-1, outside flow control, either
			// acknowledges everything sent (freeing the window) or is
			// rejected and sends the follower back to probing. It costs
			// nothing when the entries were merely slow.
			prev := pr.next - 1
			if t, err := c.log.term(prev); err == nil {
				c.send(Message{Type: MsgApp, To: pr.id, Term: c.term, Index: prev, LogTerm: t, Commit: c.log.committed})
				pr.sentRound = c.rs.ctx
			} else {
				// next-1 was compacted while its entries were in flight:
				// nothing can confirm them any more. Probe from the
				// acknowledged match; sendAppend turns that into a
				// snapshot request when match is compacted too.
				pr.becomeProbe(pr.match + 1)
				c.sendAppends(pr, true)
			}
		} else if pr.match < c.log.lastIndex() {
			c.sendAppends(pr, false)
		}
	}
}
