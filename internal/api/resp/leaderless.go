package resp

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/trireme-db/trireme/internal/api"
)

// Leaderless (api/quorum.go): the connection's quorums and read repair.
//
//	TRIREME.W [Q|default]                          the replicas that must hold each later write
//	TRIREME.R [Q|default] [blocking|background]    the replicas that must answer each later read,
//	                                               and whether it waits for read repair
//
// Q is a number from 1, or one, quorum (a majority of the key's replicas)
// or all; default (as at connect) is the node's default. Each replies +OK,
// or, without arguments, the connection's current setting as a bulk
// string ("default", "quorum", "2", ...; TRIREME.R adds " blocking" when
// reads wait for their repair). An unknown Q or repair word is an -ERR that
// says what is wanted; so is a Q above the replicas of each key (the
// node's replication factor, from its status),
// and too few replicas reachable is -TRYAGAIN (api.ErrQuorumUnavailable).
// TRIREME.ACK leaves W as it is, and TRIREME.W the ack mode.
//
// A node of another mode refuses a W or R other than default (-ERR, not
// supported in this replication mode), rather than ignore it. INFO
// replication and ROLE of a leaderless node describe it as a master with
// no replicas (every node coordinates writes), with the ring, hints and
// repairs in trireme_ fields.

// leaderless reports whether st is a leaderless node's.
func leaderless(st api.NodeStatus) bool {
	return st.Mode == "leaderless" || st.Leaderless != nil
}

// quorumString is q as TRIREME.W and TRIREME.R name it.
func quorumString(q api.Quorum) string {
	if q == api.QuorumDefault {
		return "default"
	}
	return q.String()
}

// parseQuorumArg parses the Q of TRIREME.W or TRIREME.R.
func parseQuorumArg(cmd string, arg []byte) (api.Quorum, error) {
	word := lower(arg)
	if word == "default" {
		return api.QuorumDefault, nil
	}
	q, err := api.ParseQuorum(word)
	if err != nil || word == "" {
		return 0, fmt.Errorf("ERR %s: invalid quorum '%s' (want a number from 1, one, quorum, all or default)", cmd, clip(arg))
	}
	return q, nil
}

// checkQuorum refuses cmd's setting q (other than the default) on a node
// that is not leaderless, and a q above the replicas of each key when the
// node says how many that is.
func (s *Server) checkQuorum(cmd string, q api.Quorum) error {
	st := s.svc.Status()
	if !leaderless(st) {
		mode := st.Mode
		if mode == "" {
			mode = "single-leader"
		}
		return fmt.Errorf("ERR %s applies to leaderless nodes only: %s (this node is %s)", cmd, api.ErrNotSupported, mode)
	}
	if l := st.Leaderless; l != nil && l.ReplicationFactor > 0 {
		if _, err := q.Resolve(l.ReplicationFactor); err != nil {
			return fmt.Errorf("ERR %s: %v", cmd, err)
		}
	}
	return nil
}

// cmdW is TRIREME.W [Q|default].
func (s *Server) cmdW(c *conn, st *connState, args [][]byte) {
	switch len(args) {
	case 1:
		c.WriteBulkString(quorumString(st.w))
		return
	case 2:
	default:
		c.WriteError("ERR wrong number of arguments for 'trireme.w' command")
		return
	}
	q, err := parseQuorumArg("TRIREME.W", args[1])
	if err == nil && q != api.QuorumDefault {
		err = s.checkQuorum("TRIREME.W", q)
	}
	if err != nil {
		c.WriteError(err.Error())
		return
	}
	st.w = q
	c.WriteString("OK")
}

// cmdR is TRIREME.R [Q|default] [blocking|background].
func (s *Server) cmdR(c *conn, st *connState, args [][]byte) {
	switch len(args) {
	case 1:
		r := quorumString(st.r)
		if st.repair {
			r += " blocking"
		}
		c.WriteBulkString(r)
		return
	case 2, 3:
	default:
		c.WriteError("ERR wrong number of arguments for 'trireme.r' command")
		return
	}
	q, err := parseQuorumArg("TRIREME.R", args[1])
	repair := false
	if err == nil && len(args) == 3 {
		switch lower(args[2]) {
		case "blocking":
			repair = true
		case "background":
		default:
			err = fmt.Errorf("ERR TRIREME.R: unknown read repair '%s' (want blocking or background)", clip(args[2]))
		}
	}
	if err == nil && (q != api.QuorumDefault || repair) {
		err = s.checkQuorum("TRIREME.R", q)
	}
	if err != nil {
		c.WriteError(err.Error())
		return
	}
	st.r, st.repair = q, repair
	c.WriteString("OK")
}

// reached is what a write reached, for a person: api.WriteResult.Reached,
// or on a leaderless node the replicas that hold it.
func (s *Server) reached(res api.WriteResult) string {
	if leaderless(s.svc.Status()) {
		return fmt.Sprintf("durable on %d replica(s) of the key", res.Replicas)
	}
	return res.Reached()
}

// leaderlessInfo is INFO replication on a leaderless node: Redis's master
// fields, then the ring (each member's share of the key space it
// replicates, by id), the hints this node holds (by the replica they are
// for), the read repairs, the Merkle anti-entropy exchanges (and per peer
// the buckets that differed in the last one, -1 before any) and the peers
// it considers down.
func leaderlessInfo(b *strings.Builder, st api.NodeStatus) {
	fmt.Fprintf(b, "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:%040x\r\nmaster_repl_offset:%d\r\n", 0, st.LastIndex)
	b.WriteString("trireme_mode:leaderless\r\n")
	l := st.Leaderless
	if l == nil {
		return
	}
	sloppy := 0
	if l.SloppyQuorum {
		sloppy = 1
	}
	fmt.Fprintf(b, "trireme_replication_factor:%d\r\ntrireme_sloppy_quorum:%d\r\n", l.ReplicationFactor, sloppy)
	owners := slices.Sorted(maps.Keys(l.Ownership))
	fmt.Fprintf(b, "trireme_ring_members:%d\r\n", len(owners))
	for i, id := range owners {
		fmt.Fprintf(b, "trireme_ring%d:id=%s,share=%.4f\r\n", i, id, l.Ownership[id])
	}
	pending := 0
	for _, n := range l.HintsPending {
		pending += n
	}
	fmt.Fprintf(b, "trireme_hints_pending:%d\r\n", pending)
	for i, id := range slices.Sorted(maps.Keys(l.HintsPending)) {
		fmt.Fprintf(b, "trireme_hints%d:for=%s,pending=%d\r\n", i, id, l.HintsPending[id])
	}
	fmt.Fprintf(b, "trireme_hints_stored:%d\r\ntrireme_hints_delivered:%d\r\ntrireme_hints_refused:%d\r\n",
		l.HintsStored, l.HintsDelivered, l.HintsRefused)
	fmt.Fprintf(b, "trireme_read_repairs:%d\r\n", l.ReadRepairs)
	fmt.Fprintf(b, "trireme_ae_exchanges:%d\r\ntrireme_ae_buckets_compared:%d\r\ntrireme_ae_buckets_differ:%d\r\ntrireme_ae_repairs:%d\r\n",
		l.AEExchanges, l.AEBucketsCompared, l.AEBucketsDiffer, l.AERepairs)
	for i, id := range slices.Sorted(maps.Keys(l.AEDiffering)) {
		fmt.Fprintf(b, "trireme_ae_peer%d:id=%s,differing=%d\r\n", i, id, l.AEDiffering[id])
	}
	fmt.Fprintf(b, "trireme_tombstones_collected:%d\r\ntrireme_down:%s\r\n", l.TombstonesGC, strings.Join(l.Down, ","))
}
