package system

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/transport"
)

// How an outsider reaches a peer port.
type outsiderMode int

const (
	plainTCP     outsiderMode = iota // the project's frames over plain TCP
	tlsNoCert                        // TLS, no client certificate
	tlsForeignCA                     // TLS, a certificate from another CA naming a member
)

func (m outsiderMode) String() string {
	return [...]string{"plain TCP", "TLS without a certificate", "TLS with another CA's certificate"}[m]
}

// openPeerSession dials addr as an outsider and sends a handshake claiming
// to be member as, advertising httpAddr. It returns the connection once the
// node answers with its own handshake (a session is open), or an error.
func openPeerSession(t *testing.T, addr string, mode outsiderMode, foreign *pki.Member, as, clusterID, httpAddr string) (net.Conn, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := raw
	if mode != plainTCP {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
		if mode == tlsForeignCA {
			cfg.Certificates = []tls.Certificate{foreign.Cert}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = tc
	}
	if _, err := c.Write(transport.AppendHandshake(nil, &transport.Handshake{ClusterID: clusterID,
		NodeID: transport.NodeID(as), HTTPAddr: httpAddr})); err != nil {
		return nil, err
	}
	f, err := transport.ReadFrame(c, transport.MaxHandshakeBytes)
	if err != nil {
		return nil, err
	}
	if f.Type != transport.FrameHandshake {
		return nil, fmt.Errorf("refused: %s %q", f.Type, f.Reject)
	}
	return c, nil
}

// messageFrame is the peer frame (type 3) that carries m.
func messageFrame(m *repl.Message) []byte {
	return transport.AppendPayload(nil, &transport.Payload{Engine: transport.EngineSingleLeader, Data: repl.AppendMessage(nil, m)})
}

// attack is the reproducers: against follower f (claiming to be
// leader l) a planted key, a false leader_http, a MsgTimeoutNow and a
// heartbeat at term 2^64-1; against l (claiming to be f) a forwarded write.
// It returns how many of the two sessions opened. disrupt adds the
// MsgTimeoutNow and the heartbeat (which would upset a cluster they reach).
func attack(t *testing.T, x *tc, mode outsiderMode, foreign *pki.Member, clusterID, l, f string, disrupt bool) int {
	t.Helper()
	st, err := x.c.Status(x.ctx(5*time.Second), f)
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	if c, err := openPeerSession(t, x.node(f).Peer, mode, foreign, l, clusterID, "127.0.0.1:1"); err == nil {
		opened++
		lead, fol := repl.NodeID(l), repl.NodeID(f)
		plant := repl.Message{Type: repl.MsgApp, From: lead, To: fol, Term: st.Term, LogTerm: st.Term,
			Index: st.LastIndex, Commit: st.LastIndex + 1, Entries: []entry.Entry{{Term: st.Term, Index: st.LastIndex + 1,
				Kind: entry.KindPut, Key: []byte("planted"), Value: []byte("evil"), RequestID: 1}}}
		c.Write(messageFrame(&plant))
		if disrupt {
			c.Write(messageFrame(&repl.Message{Type: repl.MsgTimeoutNow, From: lead, To: fol, Term: st.Term}))
			c.Write(messageFrame(&repl.Message{Type: repl.MsgHeartbeat, From: lead, To: fol, Term: math.MaxUint64}))
		}
	} else {
		t.Logf("%s: session to %s as %s refused: %v", mode, f, l, err)
	}
	if c, err := openPeerSession(t, x.node(l).Peer, mode, foreign, f, clusterID, ""); err == nil {
		opened++
		c.Write(transport.AppendForwardRequest(nil, &transport.ForwardRequest{ID: 1, Op: transport.OpPut,
			Key: []byte("forwarded"), Value: []byte("evil"), DefaultAck: true}))
		transport.ReadFrame(c, 1<<20) // the leader's answer: the write is done
	} else {
		t.Logf("%s: session to %s as %s refused: %v", mode, l, f, err)
	}
	return opened
}

// TestPeerPortRefusesOutsiders runs issue 15's reproducers against a cluster
// with peer TLS (as trireme up runs it): no session opens, nothing changes.
func TestPeerPortRefusesOutsiders(t *testing.T) {
	x := mustStart(t)
	l := x.mustLeader("")
	f := x.followers(l)[0]
	before, err := x.c.Status(x.ctx(5*time.Second), l)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pki.LoadMember(x.c.CertDir(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	foreignDir := t.TempDir()
	if _, err := pki.Ensure(foreignDir, []string{l, f}, pki.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.LoadMember(foreignDir, l)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []outsiderMode{plainTCP, tlsNoCert, tlsForeignCA} {
		// The outsider even knows the real cluster id.
		if n := attack(t, x, mode, foreign, m.ClusterID, l, f, true); n != 0 {
			t.Fatalf("%s: %d peer sessions opened", mode, n)
		}
	}
	time.Sleep(500 * time.Millisecond) // let anything that got through act
	after, err := x.c.Status(x.ctx(5*time.Second), l)
	if err != nil || after.Role != "leader" || after.Term != before.Term {
		t.Fatalf("leader %s: before %+v, after %+v (%v)", l, before, after, err)
	}
	fs, err := x.c.Status(x.ctx(5*time.Second), f)
	if err != nil || fs.Leader != l || fs.LeaderHTTP != x.node(l).HTTP || fs.Term != before.Term {
		t.Fatalf("follower %s status %+v (%v), want leader %s at %s, term %d", f, fs, err, l, x.node(l).HTTP, before.Term)
	}
	stale := client.ReadOptions{Consistency: "stale", Endpoint: x.node(f).HTTP}
	if r, err := x.cl.Get(x.ctx(5*time.Second), []byte("planted"), stale); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("planted key on the follower: %q %v", r.Value, err)
	}
	if r, err := x.cl.Get(x.ctx(5*time.Second), []byte("forwarded"), client.ReadOptions{}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("forged forwarded write: %q %v", r.Value, err)
	}
	// The cluster still works, and the follower logged the refusals.
	x.mustPut("after", "ok", client.WriteOptions{Ack: "majority"})
	if b, _ := os.ReadFile(x.c.LogPath(f)); !strings.Contains(string(b), "refused peer connection") {
		t.Fatalf("%s logged no refused peer connection", f)
	}
	assertNoPreHandshakeMemory(t, x, f)
}

// TestInsecurePeersControl: the same forgeries against --insecure-peers
// nodes do get in (what peer TLS is for), the start-up says so, and what
// does not depend on TLS holds even there: leader_http comes from
// configuration, and pre-handshake frames are bounded.
func TestInsecurePeersControl(t *testing.T) {
	x := mustStartWith(t, func(c *cluster.Config) { c.InsecurePeers = true })
	l := x.mustLeader("")
	f := x.followers(l)[0]
	if b, _ := os.ReadFile(x.c.LogPath(f)); !strings.Contains(string(b), "WARNING") || !strings.Contains(string(b), "--insecure-peers") {
		t.Fatalf("%s did not warn about --insecure-peers:\n%s", f, b)
	}
	st, err := x.c.Status(x.ctx(5*time.Second), f)
	if err != nil {
		t.Fatal(err)
	}
	// Without TLS the cluster id is still the hash of --cluster; an outsider
	// who knows the members computes it.
	clusterID := nodeClusterID(t, x, f)
	// An impostor's session replaces the member's own (one inbound connection
	// per member), and the member's redial may replace it back before the
	// forged write is proposed: try a few times.
	var err2 error
	for try := 0; ; try++ {
		if n := attack(t, x, plainTCP, nil, clusterID, l, f, false); n != 2 {
			t.Fatalf("%d sessions opened without TLS, want 2", n)
		}
		var r client.ReadResult
		if r, err2 = x.cl.Get(x.ctx(5*time.Second), []byte("forwarded"), client.ReadOptions{}); err2 == nil && string(r.Value) == "evil" {
			break
		}
		if try == 10 {
			t.Fatalf("forged forward did not write without TLS in %d tries: %v", try+1, err2)
		}
	}
	fs, err := x.c.Status(x.ctx(5*time.Second), f)
	if err != nil || fs.Leader == l && fs.LeaderHTTP != x.node(l).HTTP {
		t.Fatalf("follower's leader_http %q (leader %s at %s), %v; term was %d", fs.LeaderHTTP, l, x.node(l).HTTP, err, st.Term)
	}
	assertNoPreHandshakeMemory(t, x, f)
}

// nodeClusterID reads the cluster id node id recorded in its data directory.
func nodeClusterID(t *testing.T, x *tc, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(x.c.NodeDir(x.node(id)), "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), `"cluster_id": "`)
	cid, _, _ := strings.Cut(rest, `"`)
	return cid
}

// assertNoPreHandshakeMemory: 40 connections to id's peer port that each
// claim a 16 MiB frame before any handshake cost the node next to nothing
// (they cost it 160 MB before issue 15).
func assertNoPreHandshakeMemory(t *testing.T, x *tc, id string) {
	t.Helper()
	pid, err := x.c.Pid(id)
	if err != nil {
		t.Fatal(err)
	}
	rss0 := rssBytes(t, pid)
	hdr := []byte{0, 0, 0, 1, byte(transport.FrameHandshake)} // length 16 MiB, little-endian
	chunk := make([]byte, 64<<10)
	for range 40 {
		c, err := net.Dial("tcp", x.node(id).Peer)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(hdr)
		for range 4 { // and some of the body, which the node must not keep
			if _, err := c.Write(chunk); err != nil {
				break
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	if grew := int64(rssBytes(t, pid)) - int64(rss0); grew > 32<<20 {
		t.Fatalf("node %s grew by %d MiB after 40 connections claiming 16 MiB frames", id, grew>>20)
	}
}

func rssBytes(t *testing.T, pid int) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestCertsCommand: `trireme certs` makes a directory that nodes start from.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, stderr, code := runCLI(t, nil, "certs", "--dir", dir, "--nodes", "n1,n2,n3")
	if code != 0 || !strings.Contains(out, "created "+filepath.Join(dir, "n3.key")) || !strings.Contains(out, "cluster id") {
		t.Fatalf("certs: %d %q %q", code, out, stderr)
	}
	for _, f := range []string{"ca.key", "n1.key", "n2.key", "n3.key"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, err, st)
		}
	}
	if out, _, code := runCLI(t, nil, "certs", "--dir", dir, "--nodes", "n1,n2,n3"); code != 0 || !strings.Contains(out, "nothing to create") {
		t.Fatalf("second certs: %d %q", code, out)
	}
	m, err := pki.LoadMember(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	x := mustStartWith(t, func(c *cluster.Config) { c.CertDir = dir })
	l := x.mustLeader("")
	x.mustPut("k", "v", client.WriteOptions{Ack: "sync"})
	for _, id := range x.followers(l) {
		x.waitStale(id, map[string]string{"k": "v"})
		if got := nodeClusterID(t, x, id); got != m.ClusterID {
			t.Fatalf("%s recorded cluster id %q, want the CA's %q", id, got, m.ClusterID)
		}
	}
	// A follower names the leader's HTTP address.
	st, err := x.c.Status(context.Background(), x.followers(l)[0])
	if err != nil || st.LeaderHTTP != x.node(l).HTTP {
		t.Fatalf("follower status %+v %v", st, err)
	}
}
