package leaderless

import (
	"bytes"
	"slices"

	"github.com/trireme-db/trireme/internal/leaderless/merkle"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Anti-entropy: every AETicks the node sends the next reachable peer (in
// turn) the leaves of its Merkle tree over the keys both replicate. The peer
// compares them with its own tree for the sender and answers with its
// copies of the shared keys in the buckets that differ (at most AEKeys and AEBytes),
// asking for the sender's copies of the same buckets in return. Both sides
// merge what they receive, so one exchange repairs both directions.

// leaf returns key's bucket at MerkleDepth.
func leaf(key []byte) int { return int(merkle.BucketHash(key) >> (64 - MerkleDepth)) }

func (c *Core) aeDiff() map[string]int {
	out := map[string]int{}
	for _, p := range c.peers {
		if n, ok := c.aeLast[p]; ok {
			out[p] = n
		} else {
			out[p] = -1
		}
	}
	return out
}

func (c *Core) startExchange() {
	for range c.peers {
		p := c.peers[c.aeNext%len(c.peers)]
		c.aeNext++
		if !c.Up(p) {
			continue
		}
		c.stats.AEExchanges++
		c.send(p, Message{Type: MsgTree, Depth: MerkleDepth, Hashes: c.trees[p].Level(MerkleDepth)})
		return
	}
}

func (c *Core) onTree(m Message) {
	t := c.trees[m.From]
	if t == nil || m.Depth != MerkleDepth || len(m.Hashes) != 1<<MerkleDepth {
		return
	}
	mine := t.Level(MerkleDepth)
	var diff []int
	for b := range mine {
		if mine[b] != m.Hashes[b] && !c.bugs().skipBucket(b) {
			diff = append(diff, b)
		}
	}
	c.stats.AEBucketsCompared += uint64(len(mine))
	c.stats.AEBucketsDiffer += uint64(len(diff))
	c.aeLast[m.From] = len(diff)
	if len(diff) == 0 {
		return
	}
	buckets, items := c.sharedItems(m.From, diff)
	c.send(m.From, Message{Type: MsgBuckets, Reply: true, Buckets: buckets, Items: items})
}

func (c *Core) onBuckets(m Message) {
	if c.trees[m.From] == nil {
		return
	}
	for _, it := range m.Items {
		if !c.isHome(c.cfg.ID, it.Key) || !c.isHome(m.From, it.Key) {
			continue
		}
		if c.merge(it.Key, it.Set) {
			c.stats.AERepairs++
		}
	}
	if m.Reply && len(m.Buckets) > 0 {
		buckets, items := c.sharedItems(m.From, m.Buckets)
		c.send(m.From, Message{Type: MsgBuckets, Buckets: buckets, Items: items})
	}
}

// sharedItems returns this node's copies of the keys it shares with peer in
// buckets, and the buckets they cover, within the exchange's bounds: at
// most AEKeys items, AEBytes bytes (roughly, as itemBytes counts them) and
// MaxItems. Whole buckets are sent while they fit. The first bucket is
// always sent, cut to the bounds if it alone exceeds them.
//
// Each exchange starts at a different bucket of the list and, in a cut
// bucket, at a different item (c.aeRound turns both), so a bucket larger
// than the bounds does not hold back the buckets after it, nor its own keys
// after the cut: successive exchanges cover all of them.
func (c *Core) sharedItems(peer string, buckets []int) ([]int, []Item) {
	c.aeRound++
	keysLeft, bytesLeft := min(c.cfg.AEKeys, MaxItems), c.cfg.AEBytes
	var outB []int
	var out []Item
	start := 0
	if len(buckets) > 0 {
		start = int(c.aeRound % uint64(len(buckets)))
	}
	for k := range buckets {
		b := buckets[(start+k)%len(buckets)]
		items, ok := c.bucketItems(peer, b)
		if !ok {
			return nil, nil
		}
		size := 0
		for _, it := range items {
			size += itemBytes(it)
		}
		if len(items) <= keysLeft && size <= bytesLeft {
			outB = append(outB, b)
			out = append(out, items...)
			keysLeft -= len(items)
			bytesLeft -= size
			continue
		}
		if len(outB) > 0 {
			break
		}
		// The first bucket alone is over the bounds: a window of it, from
		// an offset that moves with every exchange.
		outB = append(outB, b)
		off := int(c.aeRound % uint64(len(items)))
		for n := range items {
			it := items[(off+n)%len(items)]
			sz := itemBytes(it)
			if n > 0 && (keysLeft == 0 || sz > bytesLeft) {
				break
			}
			out = append(out, it)
			keysLeft--
			bytesLeft -= sz
		}
		break
	}
	slices.Sort(outB) // the wire wants buckets in increasing order
	return outB, out
}

// bucketItems returns this node's copies (overlay first) of the keys in
// bucket b that it shares with peer, in key order: the message, and what a
// bound cuts, must not depend on the store's or the overlay map's order.
// false: the store failed (c.err is set).
func (c *Core) bucketItems(peer string, b int) ([]Item, bool) {
	if c.err != nil {
		return nil, false
	}
	stored, err := c.store.Bucket(b)
	if err != nil {
		c.err = err
		return nil, false
	}
	var items []Item
	seen := map[string]bool{}
	for _, it := range stored {
		if o, ok := c.overlay[string(it.Key)]; ok {
			seen[string(it.Key)] = true
			if !o.present {
				continue
			}
			it.Set = o.set
		}
		items = append(items, it)
	}
	for k, o := range c.overlay {
		if !seen[k] && o.present && leaf([]byte(k)) == b {
			items = append(items, Item{Key: []byte(k), Set: o.set})
		}
	}
	items = slices.DeleteFunc(items, func(it Item) bool {
		return !c.isHome(c.cfg.ID, it.Key) || !c.isHome(peer, it.Key)
	})
	slices.SortFunc(items, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) })
	return items, true
}

// itemBytes is about what it takes on the wire: the key, each sibling's
// value and node id, and fixed allowances for counters, times and lengths.
func itemBytes(it Item) int {
	n := len(it.Key) + 16
	for _, e := range it.Set.Context {
		n += len(e.Node) + 12
	}
	for _, s := range it.Set.Siblings {
		n += len(s.Value) + len(s.Dot.Node) + 32
	}
	return n
}

// Tombstone collection: the first home replica of a key (its collector)
// tracks the keys whose copy holds only tombstones. When every member is up,
// it asks every member whether its copy is the same tombstone (a home
// replica) and whether it holds a hint for the key (anyone). If all say yes,
// that is the first confirmation; at least GCGraceTicks after it came in, it
// asks again, and only if all say yes again, and its own copy is still the
// same, does it drop its copy and tell the other home replicas to drop
// theirs if still unchanged. A no, a changed copy or a timeout starts over.
//
// One confirmation is not enough: a copy older than the tombstone may still
// be on its way to some node (a write's store, a read's repair, a store to a
// stand-in), read from a replica before that replica had the tombstone. The
// first confirmation proves every replica had it by then; any such copy was
// read before that and is sent within RequestTicks of it (a request's
// lifetime; Validate requires GCGraceTicks > RequestTicks), so it has landed
// by the second round (as a hint, which makes a stand-in answer no, or merged
// into a tombstone that covers it). Dropped, the tombstone could no longer
// cover it, and the old value would come back.
func (c *Core) collect() {
	const perRound = 64
	if len(c.tombs) == 0 {
		return
	}
	for _, p := range c.peers {
		if !c.Up(p) {
			return
		}
	}
	probing := map[string]bool{}
	for _, g := range c.gcs {
		probing[g.key] = true
	}
	keys := make([]string, 0, len(c.tombs))
	for k := range c.tombs {
		if !probing[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	sent := 0
	for _, k := range keys {
		if sent == perRound {
			break
		}
		cur, ok := c.get([]byte(k))
		if !ok || !tombstone(cur) {
			delete(c.tombs, k)
			delete(c.gcOK, k)
			continue
		}
		if c.bugs().earlyGC() {
			c.drop([]byte(k), cur)
			continue
		}
		final := false
		if ok1, seen := c.gcOK[k]; seen && ok1.set.Equal(cur) {
			if c.tick-ok1.at < int64(c.cfg.GCGraceTicks) {
				continue
			}
			final = true
		} else {
			delete(c.gcOK, k)
		}
		sent++
		rid := c.reqID()
		c.gcs[rid] = &gcOp{key: k, set: cur, votes: map[string]bool{}, final: final, deadline: c.tick + int64(c.cfg.RequestTicks)}
		for _, p := range c.peers {
			c.send(p, Message{Type: MsgGCProbe, ReqID: rid, Key: []byte(k), Set: cur})
		}
	}
}

func (c *Core) onGCProbe(m Message) {
	_, hinted := c.hinted(m.Key)
	ok := !hinted
	if ok && c.isHome(c.cfg.ID, m.Key) {
		cur, had := c.get(m.Key)
		ok = had && cur.Equal(m.Set)
	}
	c.send(m.From, Message{Type: MsgGCVote, ReqID: m.ReqID, Key: m.Key, OK: ok})
}

func (c *Core) onGCVote(m Message) {
	g := c.gcs[m.ReqID]
	if g == nil || g.key != string(m.Key) {
		return
	}
	if !m.OK {
		delete(c.gcs, m.ReqID)
		delete(c.gcOK, g.key)
		return
	}
	g.votes[m.From] = true
	if len(g.votes) < len(c.peers) {
		return
	}
	delete(c.gcs, m.ReqID)
	cur, ok := c.get(m.Key)
	if !ok || !cur.Equal(g.set) {
		delete(c.gcOK, g.key)
		return
	}
	if !g.final {
		c.gcOK[g.key] = gcConfirm{set: g.set, at: c.tick}
		return
	}
	delete(c.gcOK, g.key)
	c.drop(m.Key, cur)
}

// drop collects the tombstone key at this node and tells the other home
// replicas to drop their copies if they still equal it.
func (c *Core) drop(key []byte, cur vclock.Set) {
	c.put(key, vclock.Set{}, false)
	c.stats.TombstonesGC++
	for _, h := range c.ring.Replicas(key, c.cfg.N) {
		if h != c.cfg.ID {
			c.send(h, Message{Type: MsgGCDrop, Key: key, Set: cur})
		}
	}
}
