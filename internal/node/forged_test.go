package node

import (
	"context"
	"math"
	"net"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// metricValue reads one of n's metrics (0 if it is not there).
func metricValue(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	n.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestForgedPeerMessagesDropped: the transport hands a single-leader message
// to the node as its connection's member's (with peer TLS, the member its
// certificate names; here plaintext, the member its handshake names), and
// the node drops a message that claims another sender or names another
// recipient: a member cannot speak for the leader (plant a key, start an
// election, raise the term), nor pass messages on. They are counted
// (peer_messages_forged_total) and change nothing; an undecodable one is
// refused; the member's own messages still count.
func TestForgedPeerMessagesDropped(t *testing.T) {
	c := newTestCluster(t, 3, false)
	li := c.leader()
	fi := c.follower(li)
	gi := 3 - li - fi
	lead, fol, other := repl.NodeID(c.cfgs[li].ID), repl.NodeID(c.cfgs[fi].ID), repl.NodeID(c.cfgs[gi].ID)
	f := c.nodes[fi]
	// The third member is stopped: its redial would replace our session
	// (one inbound connection per member) before the node read it.
	c.stop(gi)
	before := f.Status()
	forged0, refused0 := metricValue(t, f, "trireme_peer_messages_forged_total"), metricValue(t, f, "trireme_peer_messages_refused_total")

	// A session to the follower as the third member (without TLS, the
	// handshake's word is taken; with TLS, the certificate's member).
	conn, err := net.Dial("tcp", c.cfgs[fi].Cluster[fi].PeerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(transport.AppendHandshake(nil, &transport.Handshake{ClusterID: f.clusterID, NodeID: transport.NodeID(other)}))
	if fr, err := transport.ReadFrame(conn, transport.MaxHandshakeBytes); err != nil || fr.Type != transport.FrameHandshake {
		t.Fatalf("handshake: %v %+v", err, fr)
	}
	send := func(m repl.Message) {
		conn.Write(transport.AppendPayload(nil, &transport.Payload{Engine: transport.EngineSingleLeader, Data: repl.AppendMessage(nil, &m)}))
	}
	send(repl.Message{Type: repl.MsgApp, From: lead, To: fol, Term: before.Term, LogTerm: before.Term,
		Index: before.LastIndex, Commit: before.LastIndex + 1, Entries: []entry.Entry{{Term: before.Term, Index: before.LastIndex + 1,
			Kind: entry.KindPut, Key: []byte("planted"), Value: []byte("evil"), RequestID: 1}}})
	send(repl.Message{Type: repl.MsgTimeoutNow, From: lead, To: fol, Term: before.Term})
	send(repl.Message{Type: repl.MsgHeartbeat, From: lead, To: fol, Term: math.MaxUint64})
	send(repl.Message{Type: repl.MsgHeartbeat, From: other, To: lead, Term: math.MaxUint64}) // for another node
	conn.Write(transport.AppendPayload(nil, &transport.Payload{Engine: transport.EngineSingleLeader, Data: []byte("not a message")}))
	// The member's own message, of an old term: taken (and ignored).
	send(repl.Message{Type: repl.MsgHeartbeatResp, From: other, To: fol, Term: 1})

	deadline := time.Now().Add(5 * time.Second)
	for f.forgedMsgs.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := f.forgedMsgs.Load(); got != 4 {
		t.Fatalf("forged count %d, want 4", got)
	}
	if got := metricValue(t, f, "trireme_peer_messages_forged_total") - forged0; got != 4 {
		t.Fatalf("peer_messages_forged_total rose by %v, want 4", got)
	}
	for time.Now().Before(deadline) && metricValue(t, f, "trireme_peer_messages_refused_total")-refused0 < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	if got := metricValue(t, f, "trireme_peer_messages_refused_total") - refused0; got != 1 {
		t.Fatalf("peer_messages_refused_total rose by %v, want 1 (the undecodable message)", got)
	}
	time.Sleep(300 * time.Millisecond) // let anything that got through act
	for _, n := range []*Node{c.nodes[li], f} {
		st := n.Status()
		if st.Term != before.Term || st.Leader != string(lead) {
			t.Fatalf("%s: term %d, leader %s; want term %d, leader %s", n.ID(), st.Term, st.Leader, before.Term, lead)
		}
	}
	if r, err := f.Get(context.Background(), []byte("planted"), api.Stale); err != nil || r.Found {
		t.Fatalf("planted key on the follower: %q %v", r.Value, err)
	}
	// The connection stayed up: the cluster still replicates through it.
	if _, err := c.nodes[li].Put(context.Background(), []byte("after"), []byte("ok"), api.WriteOptions{Ack: api.Ack{Mode: api.AckMajority}}); err != nil {
		t.Fatal(err)
	}
}
