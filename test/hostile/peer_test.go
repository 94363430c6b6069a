package hostile

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/pki"
	"github.com/trireme-db/trireme/internal/transport"
)

// Peer-port attacks with peer TLS on. The forged messages of issue 15 are
// TestPeerPortRefusesOutsiders in test/system; these are about memory and
// connections that never finish their handshakes.

// peerEnd is how a hostile peer connection ended.
type peerEnd struct {
	closed bool          // the node ended it (any error but our deadline)
	after  time.Duration // from the dial
	sent   int64
	got    string // what the node sent, summarized
}

// peerCloseBound is how long the node may keep a connection that has not
// completed both handshakes: its handshake deadline plus scheduling slack.
const peerCloseBound = peerHandshakeTimeout + 2*time.Second

// waitEnd reads from c until the node ends the connection or the deadline
// start+wait passes, and summarizes what it sent.
func waitEnd(c net.Conn, start time.Time, wait time.Duration) peerEnd {
	c.SetReadDeadline(start.Add(wait))
	n, err := io.Copy(io.Discard, c)
	e := peerEnd{after: time.Since(start), got: fmt.Sprintf("%d bytes", n)}
	var ne net.Error
	e.closed = !(errors.As(err, &ne) && ne.Timeout())
	if err != nil {
		e.got += fmt.Sprintf(", then %v", err)
	} else {
		e.got += ", then EOF"
	}
	return e
}

// dialTLS opens a TLS connection to addr, with member's certificate if it
// is not nil. With TLS 1.3 the client's handshake ends before the server
// has checked the client's certificate: it succeeds without one.
func dialTLS(addr string, member *pki.Member) (net.Conn, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if member != nil {
		cfg.Certificates = []tls.Certificate{member.Cert}
	}
	c := tls.Client(raw, cfg)
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

func peerGroup(t *testing.T, x *env) {
	leader := x.mustLeader("")
	f := x.follower()
	member, err := pki.LoadMember(x.c.CertDir(), f)
	if err != nil {
		t.Fatal(err)
	}
	g := x.beginGroup("peer", 80, peerConnBytes)
	peerBigFrames(t, x, leader, member)
	peerGarbage(t, x, leader)
	peerHelloStall(t, x, f)
	peerSeeds(t, x, leader, member)
	g.end()
}

// bigFrameConns is how many connections of each kind claim a 16 MiB frame.
const bigFrameConns = 40

// peerBigFrames: 40 TLS connections with a member's certificate (the
// bytes reach the frame reader) and 40 with none claim a 16 MiB handshake
// frame and send up to 1 MiB of it, all at once (issue 15: 40 such
// connections cost a node 160 MB). The node must refuse each, within its
// handshake deadline, and stay within its memory bound.
func peerBigFrames(t *testing.T, x *env, id string, member *pki.Member) {
	addr := x.node(id).Peer
	pid := x.pid(id)
	rss0 := mustRSS(t, pid)
	hdr := []byte{0, 0, 0, 1, byte(transport.FrameHandshake)} // length 16 MiB, little-endian
	chunk := make([]byte, 64<<10)
	type result struct {
		withCert bool
		err      error
		end      peerEnd
	}
	results := make([]result, 2*bigFrameConns)
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range results {
		withCert := i < bigFrameConns
		wg.Go(func() {
			start := time.Now()
			var m *pki.Member
			if withCert {
				m = member
			}
			c, err := dialTLS(addr, m)
			if err != nil {
				results[i] = result{withCert: withCert, err: err}
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open by us until the end
			mu.Unlock()
			c.SetWriteDeadline(start.Add(peerCloseBound))
			n, err := c.Write(hdr)
			sent := int64(n)
			for j := 0; err == nil && j < 16; j++ {
				n, err = c.Write(chunk)
				sent += int64(n)
			}
			e := waitEnd(c, start, peerCloseBound)
			e.sent = sent
			results[i] = result{withCert: withCert, end: e}
		})
	}
	wg.Wait()
	rss1 := mustRSS(t, pid)
	for _, c := range conns {
		c.Close()
	}
	for i, r := range results {
		kind := "without a certificate"
		if r.withCert {
			kind = "with member " + member.ID + "'s certificate"
		}
		if i == 0 || i == bigFrameConns {
			t.Logf("16 MiB frame claimed before the handshake over TLS %s to %s: TLS handshake %v; %s sent; the node sent %s, closed %v after %v",
				kind, id, errOrOK(r.err), size(r.end.sent), r.end.got, r.end.closed, r.end.after.Round(time.Millisecond))
		}
		if r.err == nil && !r.end.closed {
			t.Errorf("16 MiB frame over TLS %s: the node kept the connection for %v", kind, r.end.after)
		}
	}
	t.Logf("%d connections claiming 16 MiB frames: node %s RSS %s -> %s while we still held them", len(results), id, mib(rss0), mib(rss1))
}

func errOrOK(err error) string {
	if err == nil {
		return "completed"
	}
	return err.Error()
}

// peerGarbage: plain-TCP garbage on the TLS peer port is refused at once.
func peerGarbage(t *testing.T, x *env, id string) {
	addr := x.node(id).Peer
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for i, payload := range [][]byte{junk, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte("*1\r\n$4\r\nPING\r\n"), {0, 0, 0, 1, 1}} {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			c.SetWriteDeadline(start.Add(peerCloseBound))
			c.Write(payload)
		})
		e := waitEnd(c, start, peerCloseBound)
		wg.Wait()
		c.Close()
		t.Logf("plain TCP to %s's peer port, %d bytes (%q...): the node sent %s, closed %v after %v",
			id, len(payload), payload[:min(8, len(payload))], e.got, e.closed, e.after.Round(time.Millisecond))
		if !e.closed {
			t.Errorf("garbage %d: the node kept the connection for %v", i, e.after)
		}
	}
}

// clientHello returns the first TLS record a Go client sends: its ClientHello.
func clientHello(t *testing.T) []byte {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}).Handshake()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, rec); err != nil {
		t.Fatal(err)
	}
	return append(hdr, rec...)
}

// helloStallConns is how many connections send a ClientHello and stall.
const helloStallConns = 40

// peerHelloStall: connections that send a TLS ClientHello and then nothing,
// and one that completes TLS with a member's certificate and then sends
// nothing, are dropped at the handshake deadline.
func peerHelloStall(t *testing.T, x *env, id string) {
	addr := x.node(id).Peer
	hello := clientHello(t)
	ends := make([]peerEnd, helloStallConns)
	var wg sync.WaitGroup
	for i := range ends {
		wg.Go(func() {
			start := time.Now()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				ends[i] = peerEnd{got: err.Error()}
				return
			}
			defer c.Close()
			c.Write(hello)
			ends[i] = waitEnd(c, start, peerCloseBound+time.Second)
		})
	}
	wg.Wait()
	sort.Slice(ends, func(i, j int) bool { return ends[i].after < ends[j].after })
	for _, e := range ends {
		if !e.closed || e.after > peerCloseBound {
			t.Errorf("ClientHello then stall on %s: closed %v after %v (bound %v)", id, e.closed, e.after, peerCloseBound)
		}
	}
	t.Logf("%d ClientHellos (%d bytes) then stall on %s's peer port: the node sent %s; closed after %v to %v (handshake deadline %v)",
		helloStallConns, len(hello), id, ends[0].got, ends[0].after.Round(time.Millisecond), ends[len(ends)-1].after.Round(time.Millisecond), peerHandshakeTimeout)

	member, err := pki.LoadMember(x.c.CertDir(), x.mustLeader(""))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := dialTLS(addr, member)
	if err != nil {
		t.Fatalf("TLS with member %s's certificate: %v", member.ID, err)
	}
	defer c.Close()
	e := waitEnd(c, start, peerCloseBound+time.Second)
	t.Logf("TLS handshake with member %s's certificate, then no node handshake, on %s: the node sent %s, closed %v after %v",
		member.ID, id, e.got, e.closed, e.after.Round(time.Millisecond))
	if !e.closed || e.after > peerCloseBound {
		t.Errorf("TLS then stall on %s: closed %v after %v (bound %v)", id, e.closed, e.after, peerCloseBound)
	}
}

// peerSeeds replays internal/transport's FuzzDecodeFrame corpus as the
// first bytes of a TLS connection with a member's certificate: a session
// must never open (the seeds' handshakes name another cluster; other
// frames come before a handshake).
func peerSeeds(t *testing.T, x *env, id string, member *pki.Member) {
	dir := filepath.Join("..", "..", "internal", "transport", "testdata", "fuzz", "FuzzDecodeFrame")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("peer frame seeds: %v", err)
	}
	for _, fe := range files {
		b, err := os.ReadFile(filepath.Join(dir, fe.Name()))
		if err != nil {
			t.Fatal(err)
		}
		vals, err := parseCorpus(b)
		if err != nil || len(vals) != 1 {
			t.Fatalf("%s: %v (%d values)", fe.Name(), err, len(vals))
		}
		start := time.Now()
		c, err := dialTLS(x.node(id).Peer, member)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(start.Add(peerCloseBound))
		c.Write(vals[0].([]byte))
		f, ferr := transport.ReadFrame(c, transport.MaxHandshakeBytes)
		got := fmt.Sprintf("%v", ferr)
		if ferr == nil {
			got = fmt.Sprintf("a %s frame %q", f.Type, f.Reject)
		}
		e := waitEnd(c, start, peerCloseBound)
		c.Close()
		t.Logf("peer seed %s (%d bytes) to %s: the node answered %s, then closed %v after %v", fe.Name(), len(vals[0].([]byte)), id, got, e.closed, e.after.Round(time.Millisecond))
		if ferr == nil && f.Type == transport.FrameHandshake {
			t.Errorf("peer seed %s opened a session on %s", fe.Name(), id)
		}
		if !e.closed {
			t.Errorf("peer seed %s: the node kept the connection for %v", fe.Name(), e.after)
		}
	}
}
