package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pvfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/vfs"
)

// failingFS is Pebble's file system with a switch: once set, every file
// creation and write fails with the errno, as on a full disk (ENOSPC), a
// dead device (EIO) or a file system remounted read-only (EROFS).
type failingFS struct {
	pvfs.FS
	errno atomic.Pointer[syscall.Errno]
}

func (fs *failingFS) err(op, name string) error {
	if e := fs.errno.Load(); e != nil {
		return &os.PathError{Op: op, Path: name, Err: *e}
	}
	return nil
}

func (fs *failingFS) Create(name string, c pvfs.DiskWriteCategory) (pvfs.File, error) {
	if err := fs.err("open", name); err != nil {
		return nil, err
	}
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &failingFile{File: f, fs: fs, name: name}, nil
}

type failingFile struct {
	pvfs.File
	fs   *failingFS
	name string
}

func (f *failingFile) Write(p []byte) (int, error) {
	if err := f.fs.err("write", f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func mustLead(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Status().Role != "leader" {
		if time.Now().After(deadline) {
			t.Fatal("single node never became leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustStopWithin stops n and fails if that takes longer than d.
func mustStopWithin(t *testing.T, n *Node, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Stop() }()
	select {
	case err := <-done:
		t.Logf("Stop took %v (err: %v)", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(d):
		t.Fatalf("Stop did not return within %v", d)
	}
}

// TestStoreWriteErrorIsFatal: when Pebble can no longer write (its flushes
// fail: a full disk, an I/O error, a read-only file system), the node stops
// within a bounded time with an error that names the store's directory and
// the cause, instead of leading on while Pebble retries the flush forever
// (issue 15); and Stop returns.
func TestStoreWriteErrorIsFatal(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO, syscall.EROFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			cfg := soloConfig(t, dir, []Member{{"n1", "127.0.0.1:7001"}})
			ffs := &failingFS{FS: pvfs.Default}
			cfg.Store.FS = ffs
			n, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Stop()
			mustLead(t, n)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := n.Put(ctx, []byte("before"), []byte("x"), api.WriteOptions{Default: true}); err != nil {
				t.Fatal(err)
			}
			ffs.errno.Store(&errno)
			start := time.Now()
			// Writers fill the write buffer and the memtable until Pebble
			// must flush, and the flush fails.
			value := bytes.Repeat([]byte("v"), 32<<10)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := n.Put(ctx, []byte(fmt.Sprintf("k%d-%d", w, i%64)), value, api.WriteOptions{Default: true}); errors.Is(err, api.ErrStopped) {
							return
						}
					}
				}()
			}
			var ferr error
			select {
			case ferr = <-n.Fatal():
			case <-time.After(20 * time.Second):
				close(stop)
				wg.Wait()
				t.Fatalf("the node did not stop within 20s of every Pebble write failing with %v", errno)
			}
			took := time.Since(start)
			close(stop)
			wg.Wait()
			t.Logf("fatal after %v: %v", took.Round(time.Millisecond), ferr)
			storePath := filepath.Join(dir, storeDir)
			if msg := ferr.Error(); !strings.Contains(msg, storePath) || !strings.Contains(msg, errno.Error()) {
				t.Fatalf("the fatal error does not name %s and %q: %v", storePath, errno.Error(), ferr)
			}
			if _, err := n.Put(ctx, []byte("after"), []byte("y"), api.WriteOptions{Default: true}); !errors.Is(err, api.ErrStopped) {
				t.Fatalf("write after the fatal error: %v, want ErrStopped", err)
			}
			if st := n.Status(); st.Role != "stopped" {
				t.Fatalf("role after the fatal error: %q", st.Role)
			}
			mustStopWithin(t, n, 10*time.Second)
		})
	}
}

// TestDataDirRemovedIsFatal: a data directory removed (rm -rf) or replaced
// under a running node stops it within a few check intervals, even when it
// writes nothing (its open files would otherwise stay writable).
func TestDataDirRemovedIsFatal(t *testing.T) {
	tests := []struct {
		name  string
		fault func(dir string) error
		want  string
	}{
		{"data dir removed", os.RemoveAll, "vanished"},
		{"wal removed", func(dir string) error { return os.RemoveAll(filepath.Join(dir, walDir)) }, "vanished"},
		{"store replaced", func(dir string) error {
			if err := os.Rename(filepath.Join(dir, storeDir), filepath.Join(dir, "old-store")); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(dir, storeDir), 0o755)
		}, "replaced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			cfg := soloConfig(t, dir, []Member{{"n1", "127.0.0.1:7001"}})
			cfg.DiskCheckInterval = 100 * time.Millisecond
			n, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Stop()
			mustLead(t, n)
			if err := tt.fault(dir); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			select {
			case ferr := <-n.Fatal():
				t.Logf("fatal after %v: %v", time.Since(start).Round(time.Millisecond), ferr)
				if !strings.Contains(ferr.Error(), dir) || !strings.Contains(ferr.Error(), tt.want) {
					t.Fatalf("the fatal error does not name the directory and say %q: %v", tt.want, ferr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the node did not stop within 5s")
			}
			mustStopWithin(t, n, 10*time.Second)
		})
	}
}

// TestDiskGuard checks the guard's decisions with a fake statfs: the reserve
// (and its crossings, logged once each way), a read-only file system, a
// statfs error, and the refusal's error.
func TestDiskGuard(t *testing.T) {
	dir := t.TempDir()
	for _, d := range guardedDirs(dir, vfs.OS{}) {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g, err := newDiskGuard(dir, guardedDirs(dir, vfs.OS{}), 100<<20, time.Second, log, nil, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	var st fsStat
	var stErr error
	g.statfs = func(string) (fsStat, error) { return st, stErr }
	steps := []struct {
		name    string
		st      fsStat
		stErr   error
		low     bool
		fault   string // "" = none
		warns   int    // Warn lines so far
		infoUps int    // "above the reserve again" lines so far
	}{
		{"plenty", fsStat{free: 1 << 30}, nil, false, "", 0, 0},
		{"below the reserve", fsStat{free: 10 << 20}, nil, true, "", 1, 0},
		{"still below", fsStat{free: 5 << 20}, nil, true, "", 1, 0},
		{"above again", fsStat{free: 200 << 20}, nil, false, "", 1, 1},
		{"read-only", fsStat{free: 200 << 20, readOnly: true}, nil, false, "read-only", 1, 1},
		{"statfs error", fsStat{}, syscall.EIO, false, "statfs", 1, 1},
	}
	for _, s := range steps {
		st, stErr = s.st, s.stErr
		err := g.check()
		switch {
		case s.fault == "" && err != nil:
			t.Fatalf("%s: check = %v", s.name, err)
		case s.fault != "" && (err == nil || !strings.Contains(err.Error(), s.fault) || !strings.Contains(err.Error(), dir)):
			t.Fatalf("%s: check = %v, want an error naming %s and saying %q", s.name, err, dir, s.fault)
		}
		if s.fault != "" {
			continue
		}
		if got := g.low.Load(); got != s.low {
			t.Fatalf("%s: low = %v, want %v", s.name, got, s.low)
		}
		rerr := g.refuse()
		if s.low != (rerr != nil) {
			t.Fatalf("%s: refuse = %v with low %v", s.name, rerr, s.low)
		}
		if rerr != nil && (!errors.Is(rerr, api.ErrInsufficientStorage) || !strings.Contains(rerr.Error(), dir) || !strings.Contains(rerr.Error(), "reserve")) {
			t.Fatalf("%s: refuse = %v, want ErrInsufficientStorage naming %s and the reserve", s.name, rerr, dir)
		}
		if w := strings.Count(logs.String(), "level=WARN"); w != s.warns {
			t.Fatalf("%s: %d Warn lines, want %d:\n%s", s.name, w, s.warns, logs.String())
		}
		if u := strings.Count(logs.String(), "above the reserve again"); u != s.infoUps {
			t.Fatalf("%s: %d recovery lines, want %d:\n%s", s.name, u, s.infoUps, logs.String())
		}
	}
	// No reserve: never low.
	g0, err := newDiskGuard(dir, nil, 0, time.Second, log, nil, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	defer g0.close()
	g0.statfs = func(string) (fsStat, error) { return fsStat{free: 0}, nil }
	if err := g0.check(); err != nil || g0.low.Load() || g0.refuse() != nil {
		t.Fatalf("reserve 0: check %v, low %v", err, g0.low.Load())
	}
}

// TestDiskReserve: a leader below its reserve refuses client writes (Put,
// Delete, PutBatch, and writes forwarded by a follower) with
// ErrInsufficientStorage and writes nothing; reads still work; the status
// and the metrics say so. A follower below its reserve keeps accepting
// replicated entries.
func TestDiskReserve(t *testing.T) {
	c := newTestCluster(t, 3, true)
	lead := c.leader()
	l := c.nodes[lead]
	f := c.nodes[c.follower(lead)]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := api.WriteOptions{Default: true}
	if _, err := l.Put(ctx, []byte("k"), []byte("v1"), w); err != nil {
		t.Fatal(err)
	}
	// Stop the guards' periodic checks (no reserve in testConfig) and set
	// the state a check below the reserve would set.
	setLow := func(n *Node, low bool) {
		n.disk.close()
		n.disk.reserve = 0
		if low {
			n.disk.reserve = 1 << 62
		}
		n.disk.setFree(1 << 30)
	}
	setLow(l, true)
	last := l.Status().LastIndex
	if _, err := l.Put(ctx, []byte("k"), []byte("v2"), w); !errors.Is(err, api.ErrInsufficientStorage) {
		t.Fatalf("Put on a leader below its reserve: %v", err)
	}
	if _, err := l.Delete(ctx, []byte("k"), w); !errors.Is(err, api.ErrInsufficientStorage) {
		t.Fatalf("Delete on a leader below its reserve: %v", err)
	}
	if _, err := f.Put(ctx, []byte("k"), []byte("v3"), w); !errors.Is(err, api.ErrInsufficientStorage) {
		t.Fatalf("Put forwarded to a leader below its reserve: %v", err)
	}
	_, errs := l.PutBatch(ctx, [][]byte{[]byte("a"), []byte("b")}, [][]byte{[]byte("1"), []byte("2")}, w)
	for i, err := range errs {
		if !errors.Is(err, api.ErrInsufficientStorage) {
			t.Fatalf("PutBatch[%d] on a leader below its reserve: %v", i, err)
		}
	}
	if got := l.Status().LastIndex; got != last {
		t.Fatalf("the leader's log grew from %d to %d while it refused writes", last, got)
	}
	if st := l.Status(); !st.DiskLow {
		t.Fatalf("status of a leader below its reserve: %+v", st)
	}
	if got, err := l.Get(ctx, []byte("k"), api.Linearizable); err != nil || string(got.Value) != "v1" {
		t.Fatalf("read on a leader below its reserve: %+v %v", got, err)
	}
	rec := httptest.NewRecorder()
	l.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"trireme_disk_low{node=\"" + l.ID() + "\"} 1", "trireme_writes_refused_disk_total{node=\"" + l.ID() + "\"} 5"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("metrics lack %q:\n%s", want, grepLines(rec.Body.String(), "trireme_disk|refused_disk"))
		}
	}
	setLow(l, false)

	// Followers below their reserve still take replicated entries.
	for i, n := range c.nodes {
		if i != lead {
			setLow(n, true)
		}
	}
	res, err := l.Put(ctx, []byte("k"), []byte("v4"), api.WriteOptions{Ack: api.Ack{Mode: api.AckSync}})
	if err != nil || res.Replicas != 2 {
		t.Fatalf("sync write with both followers below their reserve: %+v %v", res, err)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, p := range strings.Split(substr, "|") {
			if strings.Contains(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false},
		{"268435456", 256 << 20, false},
		{"256MiB", 256 << 20, false},
		{"256 MiB", 256 << 20, false},
		{"1G", 1 << 30, false},
		{"2gb", 2 << 30, false},
		{"512k", 512 << 10, false},
		{"10B", 10, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1", 0, true},
		{"1.5G", 0, true},
		{"3 parsecs", 0, true},
		{"99999999999T", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

// TestJournalCutsTornLine: an append that a full disk (or a crash) cut
// short leaves a torn last line in the rollback journal; reopening cuts it,
// so that the records before it and every record appended later stay
// readable.
func TestJournalCutsTornLine(t *testing.T) {
	ents := func(i uint64) []entry.Entry {
		return []entry.Entry{{Term: 1, Index: i, Kind: entry.KindPut, Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}}
	}
	for _, tt := range []struct {
		name  string
		whole int // records before the torn one
		torn  string
	}{
		{"torn after records", 2, `{"term":1,"index":3,"op":"pu`},
		{"only a torn record", 0, `{"te`},
		{"nothing torn", 2, ""},
		{"empty", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), journalFile)
			log := slog.New(slog.DiscardHandler)
			j, err := openJournal(path, log)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.whole {
				if err := j.append(ents(uint64(i+1)), time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			j.close()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(tt.torn); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if j, err = openJournal(path, log); err != nil {
				t.Fatal(err)
			}
			defer j.close()
			if err := j.append(ents(9), time.Now()); err != nil {
				t.Fatal(err)
			}
			rbs, err := j.list()
			if err != nil || len(rbs) != tt.whole+1 || rbs[len(rbs)-1].Index != 9 {
				t.Fatalf("journal after a torn record and one more append: %+v %v, want %d records ending with index 9", rbs, err, tt.whole+1)
			}
		})
	}
}
