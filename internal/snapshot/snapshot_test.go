package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/store"
)

func testConfig() Config {
	c := DefaultConfig()
	c.Logger = slog.New(slog.DiscardHandler)
	c.ChunkBytes = 64 << 10
	c.WindowBytes = 256 << 10
	return c
}

func storeConfig() store.Config {
	c := store.DefaultConfig()
	c.Logger = slog.New(slog.DiscardHandler)
	c.CacheBytes = 1 << 20
	c.MemTableBytes = 1 << 20
	return c
}

func mustStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, storeConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mustFill applies n puts of random values of valueBytes (and deletes of
// every seventh key) in batches.
func mustFill(t testing.TB, s *store.Store, n, valueBytes int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	idx := s.AppliedIndex() + 1
	var ents []entry.Entry
	for i := 0; i < n; i++ {
		v := make([]byte, valueBytes)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		ents = append(ents, entry.Entry{Term: 2, Index: idx, Kind: entry.KindPut, Key: fmt.Appendf(nil, "key%08d", i), Value: v})
		idx++
		if i%7 == 6 {
			ents = append(ents, entry.Entry{Term: 2, Index: idx, Kind: entry.KindDelete, Key: fmt.Appendf(nil, "key%08d", i-3)})
			idx++
		}
		if len(ents) >= 1024 || i == n-1 {
			if err := s.Apply(ents); err != nil {
				t.Fatal(err)
			}
			ents = ents[:0]
		}
	}
}

// dump renders every key, version and value of s.
func dump(t testing.TB, s *store.Store) string {
	t.Helper()
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var sb strings.Builder
	fmt.Fprintf(&sb, "index=%d term=%d\n", v.AppliedIndex(), v.AppliedTerm())
	err = v.Scan(nil, nil, 0, func(k, val []byte, ver uint64) bool {
		fmt.Fprintf(&sb, "%s@%d=%x\n", k, ver, val)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// transfer runs Send and Receive on the two ends of a net.Pipe; wrap, if
// not nil, wraps the sender's end.
func transfer(t testing.TB, dir, staging string, id Identity, wrap func(net.Conn) net.Conn) (Stats, Result, error, error) {
	t.Helper()
	return transferWith(t, dir, staging, id, wrap, Version, nil)
}

// transferWith is transfer with the sender offering format version v and the
// receiver installing with install.
func transferWith(t testing.TB, dir, staging string, id Identity, wrap func(net.Conn) net.Conn, v int, install func(Result) error) (Stats, Result, error, error) {
	t.Helper()
	a, b := net.Pipe()
	var sconn net.Conn = a
	if wrap != nil {
		sconn = wrap(a)
	}
	var st Stats
	var serr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sconn.Close()
		cfg := testConfig()
		cfg.Version = v
		st, serr = Send(context.Background(), sconn, dir, id, cfg, nil)
	}()
	res, rerr := Receive(context.Background(), b, staging, testConfig(), nil, install)
	b.Close()
	wg.Wait()
	return st, res, serr, rerr
}

func TestRoundTripStoreCheckpoint(t *testing.T) {
	base := t.TempDir()
	src := mustStore(t, filepath.Join(base, "src"))
	mustFill(t, src, 20000, 100, 1)
	want := dump(t, src)
	ck := filepath.Join(base, "ckpt")
	index, term, err := src.Checkpoint(ck)
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Index: index, Term: term, Meta: []byte("members: a b c")}
	staging := filepath.Join(base, "follower", "incoming")
	st, res, serr, rerr := transfer(t, ck, staging, id, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("Send: %v; Receive: %v", serr, rerr)
	}
	if res.ID.Index != index || res.ID.Term != term || string(res.ID.Meta) != "members: a b c" {
		t.Fatalf("received identity %+v", res.ID)
	}
	if st.Sent != st.Total || st.Held != 0 || res.Stats.Sent != st.Total {
		t.Fatalf("stats: sender %+v receiver %+v", st, res.Stats)
	}
	dst := mustStore(t, filepath.Join(base, "follower", "store"))
	if _, _, err := dst.Install(res.Dir); err != nil {
		t.Fatalf("Install: %v", err)
	}
	if got := dump(t, dst); got != want {
		t.Fatalf("installed store differs from the source (%d vs %d bytes of dump)", len(got), len(want))
	}
}

// cutConn closes the connection once more than limit bytes were written.
type cutConn struct {
	net.Conn
	limit   int64
	written atomic.Int64
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.written.Add(int64(len(b))) > c.limit {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func mustCheckpointFiles(t testing.TB, base string, files int, size int) string {
	t.Helper()
	dir := filepath.Join(base, "src")
	os.MkdirAll(dir, 0o755)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < files; i++ {
		b := make([]byte, size+i*1000)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d.sst", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "EMPTY"), nil, 0o644)
	return dir
}

func mustSameFiles(t testing.TB, a, b string) {
	t.Helper()
	fa, err := Manifest(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := Manifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fa) != fmt.Sprint(fb) {
		t.Fatalf("directories differ:\n%v\n%v", fa, fb)
	}
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	for v := 1; v <= Version; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testResumeAfterDroppedConnection(t, v) })
	}
}

func testResumeAfterDroppedConnection(t *testing.T, v int) {
	base := t.TempDir()
	src := mustCheckpointFiles(t, base, 5, 300<<10)
	staging := filepath.Join(base, "staging")
	id := Identity{Index: 10, Term: 2}
	_, total := manifestTotal(t, src)
	_, _, serr, rerr := transferWith(t, src, staging, id, func(c net.Conn) net.Conn {
		return &cutConn{Conn: c, limit: total * 6 / 10}
	}, v, nil)
	if serr == nil || rerr == nil {
		t.Fatalf("a cut transfer succeeded: Send %v, Receive %v", serr, rerr)
	}
	st, res, serr, rerr := transferWith(t, src, staging, id, nil, v, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("resumed transfer: Send %v, Receive %v", serr, rerr)
	}
	if st.Held == 0 || st.Sent >= st.Total || st.Held+st.Sent != st.Total {
		t.Fatalf("resume sent %d of %d bytes (receiver held %d)", st.Sent, st.Total, st.Held)
	}
	t.Logf("resumed: %d of %d bytes sent again", st.Sent, st.Total)
	mustSameFiles(t, src, res.Dir)

	// A different identity discards what is staged.
	st, res, serr, rerr = transferWith(t, src, staging, Identity{Index: 11, Term: 2}, nil, v, nil)
	if serr != nil || rerr != nil || st.Held != 0 || st.Sent != st.Total {
		t.Fatalf("another snapshot: Send %v, Receive %v, stats %+v", serr, rerr, st)
	}
	mustSameFiles(t, src, res.Dir)
}

// TestResumeChecksHeldBytes: staged bytes that differ from the sender's
// (a torn write, say) are sent again, not trusted, whether the damaged file
// was held in part or whole.
func TestResumeChecksHeldBytes(t *testing.T) {
	for v := 1; v <= Version; v++ {
		for _, cut := range []struct {
			name     string
			num, den int64
		}{{"part", 1, 4}, {"whole", 3, 4}} {
			t.Run(fmt.Sprintf("v%d/%s", v, cut.name), func(t *testing.T) {
				base := t.TempDir()
				src := mustCheckpointFiles(t, base, 2, 200<<10)
				staging := filepath.Join(base, "staging")
				id := Identity{Index: 10, Term: 2}
				files, total := manifestTotal(t, src)
				transferWith(t, src, staging, id, func(c net.Conn) net.Conn {
					return &cutConn{Conn: c, limit: total * cut.num / cut.den}
				}, v, nil)
				// Damage the staged copy of the first file.
				p := filepath.Join(staging, dataDir, "000000.sst")
				b, err := os.ReadFile(p)
				if err != nil || len(b) == 0 {
					t.Fatalf("staged file: %d bytes, %v", len(b), err)
				}
				if whole := int64(len(b)) == files[0].Size; whole != (cut.name == "whole") {
					t.Fatalf("staged %d of %d bytes of the first file, want it held %s", len(b), files[0].Size, cut.name)
				}
				b[len(b)/2] ^= 1
				os.WriteFile(p, b, 0o644)
				_, res, serr, rerr := transferWith(t, src, staging, id, nil, v, nil)
				if serr != nil || rerr != nil {
					t.Fatalf("Send %v, Receive %v", serr, rerr)
				}
				mustSameFiles(t, src, res.Dir)
			})
		}
	}
}

// TestInstallReported: with format version 2 the sender returns only once
// the receiver's install ended, and learns its outcome: installed, failed
// (ErrNotInstalled), or of no use (ErrNotNeeded). With version 1 (a sender
// of an earlier build) the install still runs but the sender is not told.
func TestInstallReported(t *testing.T) {
	failed := errors.New("the store refused it")
	for _, tc := range []struct {
		name      string
		v         int
		install   error
		wantSend  error // nil: success
		installed bool
	}{
		{"v2 installed", 2, nil, nil, true},
		{"v2 install failed", 2, failed, ErrNotInstalled, false},
		{"v2 not needed", 2, fmt.Errorf("%w: stale", ErrNotNeeded), ErrNotNeeded, false},
		{"v1 installed", 1, nil, nil, false},
		{"v1 install failed", 1, failed, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src := mustCheckpointFiles(t, base, 3, 50<<10)
			var calls atomic.Int32
			install := func(res Result) error {
				calls.Add(1)
				mustSameFiles(t, src, res.Dir)
				return tc.install
			}
			st, res, serr, rerr := transferWith(t, src, filepath.Join(base, "staging"), Identity{Index: 4, Term: 1}, nil, tc.v, install)
			if calls.Load() != 1 {
				t.Fatalf("install called %d times, want 1", calls.Load())
			}
			if !errors.Is(rerr, tc.install) || (tc.install == nil && rerr != nil) {
				t.Fatalf("Receive = %v, want %v", rerr, tc.install)
			}
			if tc.wantSend == nil && serr != nil || tc.wantSend != nil && !errors.Is(serr, tc.wantSend) {
				t.Fatalf("Send = %v, want %v", serr, tc.wantSend)
			}
			if tc.wantSend != nil && !errors.Is(serr, ErrRefused) {
				t.Fatalf("Send = %v, want it to wrap ErrRefused", serr)
			}
			if st.Installed != tc.installed || res.Stats.Installed != (tc.install == nil) {
				t.Fatalf("Installed: sender %v, receiver %v", st.Installed, res.Stats.Installed)
			}
		})
	}
}

// TestInstallNotReportedIsFailure: a version 2 receiver that hangs up after
// done without reporting its install (it crashed while installing) is a
// failure for the sender, never a success.
func TestInstallNotReportedIsFailure(t *testing.T) {
	base := t.TempDir()
	src := mustCheckpointFiles(t, base, 1, 10<<10)
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		defer a.Close()
		_, err := Send(context.Background(), a, src, Identity{Index: 2, Term: 1}, testConfig(), nil)
		errc <- err
	}()
	Receive(context.Background(), b, filepath.Join(base, "staging"), testConfig(), nil, func(Result) error {
		b.Close() // the crash: the connection ends before the report
		return nil
	})
	if err := <-errc; !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Send = %v, want an error wrapping ErrNotInstalled", err)
	}
}

// TestOfferRefusedByEarlierVersion: a receiver that reads only version 1
// answers a version 2 offer with "bad stream"; one that reads version 2
// answers a later one with "unsupported version". Either way the sender's
// error wraps ErrOfferRefused, and sending in version 1 works.
func TestOfferRefusedByEarlierVersion(t *testing.T) {
	base := t.TempDir()
	src := mustCheckpointFiles(t, base, 1, 10<<10)
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		defer a.Close()
		_, err := Send(context.Background(), a, src, Identity{Index: 2, Term: 1}, testConfig(), nil)
		errc <- err
	}()
	fr := &frameReader{r: b}
	if typ, _, err := fr.next(); err != nil || typ != frameOffer {
		t.Fatalf("first frame %s, %v", frameName(typ), err)
	}
	b.Write(appendError(nil, reasonBadStream)) // what a version 1 receiver says
	b.Close()
	if err := <-errc; !errors.Is(err, ErrOfferRefused) {
		t.Fatalf("Send = %v, want an error wrapping ErrOfferRefused", err)
	}

	// A later version, offered to this build's receiver.
	a, b = net.Pipe()
	go func() {
		defer a.Close()
		a.Write(appendFrame(nil, frameOffer, appendOffer(nil, &offer{version: Version + 1})))
		_, body, err := (&frameReader{r: a}).next()
		if err != nil {
			errc <- err
			return
		}
		reason, err := errorReason(body)
		errc <- errors.Join(err, fmt.Errorf("reason %q", reason))
	}()
	_, rerr := Receive(context.Background(), b, filepath.Join(base, "staging2"), testConfig(), nil, nil)
	b.Close()
	if !errors.Is(rerr, ErrBadStream) {
		t.Fatalf("Receive of a version %d offer = %v", Version+1, rerr)
	}
	if err := <-errc; !strings.Contains(err.Error(), fmt.Sprintf("%q", reasonVersion)) {
		t.Fatalf("the receiver answered %v, want the reason %q", err, reasonVersion)
	}

	st, _, serr, rerr := transferWith(t, src, filepath.Join(base, "staging3"), Identity{Index: 2, Term: 1}, nil, 1, nil)
	if serr != nil || rerr != nil || st.Installed {
		t.Fatalf("version 1: Send %v, Receive %v, stats %+v", serr, rerr, st)
	}
}

func manifestTotal(t testing.TB, dir string) ([]FileInfo, int64) {
	files, err := Manifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return files, n
}

// flipConn flips one bit of the byte at offset at of what is written.
type flipConn struct {
	net.Conn
	at  int64
	off int64
}

func (c *flipConn) Write(b []byte) (int, error) {
	if c.off <= c.at && c.at < c.off+int64(len(b)) {
		b = bytes.Clone(b)
		b[c.at-c.off] ^= 0x10
	}
	c.off += int64(len(b))
	return c.Conn.Write(b)
}

func TestCorruptChunkRefused(t *testing.T) {
	base := t.TempDir()
	src := mustCheckpointFiles(t, base, 2, 200<<10)
	staging := filepath.Join(base, "staging")
	_, _, serr, rerr := transfer(t, src, staging, Identity{Index: 1, Term: 1}, func(c net.Conn) net.Conn {
		return &flipConn{Conn: c, at: 100 << 10}
	})
	if !errors.Is(rerr, ErrBadStream) || !strings.Contains(rerr.Error(), "checksum") {
		t.Fatalf("Receive of a corrupted chunk = %v, want a checksum error", rerr)
	}
	if !errors.Is(serr, ErrRefused) {
		t.Fatalf("Send = %v, want the receiver's refusal", serr)
	}
}

func TestAcceptRefuses(t *testing.T) {
	base := t.TempDir()
	src := mustCheckpointFiles(t, base, 1, 1000)
	a, b := net.Pipe()
	go func() {
		defer a.Close()
		Send(context.Background(), a, src, Identity{Index: 3}, testConfig(), nil)
	}()
	stale := errors.New("stale")
	_, err := Receive(context.Background(), b, filepath.Join(base, "staging"), testConfig(), func(id Identity, _ []FileInfo) error {
		if id.Index < 5 {
			return stale
		}
		return nil
	}, nil)
	if !errors.Is(err, stale) {
		t.Fatalf("Receive = %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "staging")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused snapshot created the staging directory")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"ChunkBytes", func(c *Config) { c.ChunkBytes = 0 }},
		{"ChunkBytes", func(c *Config) { c.ChunkBytes = MaxChunkBytes + 1 }},
		{"WindowBytes", func(c *Config) { c.WindowBytes = int64(c.ChunkBytes - 1) }},
		{"IdleTimeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"Logger", func(c *Config) { c.Logger = nil }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidArg) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate = %v, want an error naming %s", err, tc.field)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeOfferBounds(t *testing.T) {
	good := &offer{id: Identity{Index: 1, Term: 1}, files: []FileInfo{{Name: "a", Size: 3}}}
	if _, err := decodeOffer(appendOffer(nil, good)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    *offer
	}{
		{"dotdot", &offer{files: []FileInfo{{Name: ".."}}}},
		{"dot", &offer{files: []FileInfo{{Name: "."}}}},
		{"slash", &offer{files: []FileInfo{{Name: "../etc/passwd"}}}},
		{"backslash", &offer{files: []FileInfo{{Name: `..\x`}}}},
		{"nul", &offer{files: []FileInfo{{Name: "a\x00b"}}}},
		{"empty", &offer{files: []FileInfo{{Name: ""}}}},
		{"long", &offer{files: []FileInfo{{Name: strings.Repeat("n", MaxNameBytes+1)}}}},
		{"duplicate", &offer{files: []FileInfo{{Name: "a"}, {Name: "a"}}}},
		{"huge file", &offer{files: []FileInfo{{Name: "a", Size: MaxFileBytes + 1}}}},
		{"huge total", &offer{files: func() []FileInfo {
			var fs []FileInfo
			for i := range 17 {
				fs = append(fs, FileInfo{Name: fmt.Sprint(i), Size: MaxFileBytes})
			}
			return fs
		}()}},
		{"meta", &offer{id: Identity{Meta: make([]byte, MaxMetaBytes+1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeOffer(appendOffer(nil, tc.o)); !errors.Is(err, ErrBadStream) {
				t.Fatalf("decodeOffer = %v, want ErrBadStream", err)
			}
		})
	}
	// A file count that cannot fit is refused before anything is allocated.
	b := appendOffer(nil, &offer{})
	b[len(b)-4], b[len(b)-3] = 0xff, 0xff
	if _, err := decodeOffer(b); !errors.Is(err, ErrBadStream) {
		t.Fatalf("decodeOffer with a forged count = %v", err)
	}
}

func TestReadFrameBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"unknown type", appendFrame(nil, 9)},
		{"type zero", appendFrame(nil, 0)},
		{"ack too long", appendFrame(nil, frameAck, make([]byte, 9))},
		{"chunk too long", []byte{frameChunk, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}},
		{"bad crc", func() []byte { b := appendFrame(nil, frameAck, make([]byte, 8)); b[9] ^= 1; return b }()},
		{"cut body", appendFrame(nil, frameAck, make([]byte, 8))[:12]},
		{"cut header", []byte{frameAck, 8, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := &frameReader{r: bytes.NewReader(tc.in)}
			if _, _, err := fr.next(); !errors.Is(err, ErrBadStream) {
				t.Fatalf("next = %v, want ErrBadStream", err)
			}
		})
	}
	fr := &frameReader{r: bytes.NewReader(nil)}
	if _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("next on an empty stream = %v, want io.EOF", err)
	}
}
