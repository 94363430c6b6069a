package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/vfs"
)

// diskGuard watches the file system under the data directory, on its own
// goroutine, every Config.DiskCheckInterval:
//
//   - free space (statfs) against Config.DiskReserveBytes: below it the node
//     is "low" (status, metrics, a Warn line when it crosses), and a leader
//     refuses client writes (refuse), so that the cluster's log stops
//     growing before the disk is full. Followers keep accepting replicated
//     entries: refusing them would only stall the leader, and a follower
//     that truly runs out stops on the failed write like any other.
//   - faults that writes may not reveal for a long time: the data
//     directory, DATA/wal or DATA/store removed or replaced (the open files
//     stay writable after an rm -rf, and a follower would go on
//     acknowledging entries written into deleted files), and a file system
//     that became read-only (an idle node writes nothing). Read-only shows
//     in statfs's flags after a remount, but not when the kernel stops
//     writes after an error (ext4's errors=remount-ro on recent kernels
//     keeps the mount "rw" and fails writes with EROFS), so the guard also
//     overwrites 8 bytes of DATA/disk-check in place (no new space, no
//     fsync). Each fault is reported once through fault, which stops the
//     node; a leader that stopped lets the others elect before a client
//     write finds the fault.
//
// The checks are system calls on a path (a hung network file system would
// hold them), so they run off the run loop.
type diskGuard struct {
	dir      string
	reserve  uint64
	interval time.Duration
	log      *slog.Logger
	m        *metrics
	fault    func(error) // stops the node; called at most once
	watch    []watched
	statfs   func(path string) (fsStat, error) // statfs; tests replace it
	probe    *os.File                          // DATA/disk-check, overwritten at each check
	probeBuf [8]byte

	free atomic.Uint64 // free bytes for unprivileged users at the last check; 0 if unknown
	low  atomic.Bool   // free < reserve at the last check

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// watched is a directory whose identity must not change while the node runs.
type watched struct {
	path string
	info os.FileInfo
}

// errStatfsUnsupported: free space is not known on this platform.
var errStatfsUnsupported = errors.New("statfs not supported on this platform")

// fsStat is what the guard needs from statfs(2).
type fsStat struct {
	free     uint64 // bytes available to unprivileged users
	readOnly bool
}

// newDiskGuard records the identity of dir and of the subdirectories that
// must stay in place, and runs a first check: a data directory that is
// already read-only, gone or below the reserve is known before the node
// starts.
func newDiskGuard(dir string, subdirs []string, reserve int64, interval time.Duration, log *slog.Logger, m *metrics, fault func(error)) (*diskGuard, error) {
	g := &diskGuard{dir: dir, reserve: uint64(max(reserve, 0)), interval: interval, log: log, m: m, fault: fault,
		statfs: statfs, stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range append([]string{dir}, subdirs...) {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		g.watch = append(g.watch, watched{path: p, info: fi})
	}
	path := filepath.Join(dir, diskCheckFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	g.probe = f
	if err := g.check(); err != nil {
		f.Close()
		return nil, err
	}
	return g, nil
}

// start runs the periodic checks until close.
func (g *diskGuard) start() {
	g.started.Store(true)
	go func() {
		defer close(g.done)
		t := time.NewTicker(g.interval)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
			}
			if err := g.check(); err != nil {
				g.fault(err)
				return
			}
		}
	}()
}

// close stops the checks and waits for the goroutine (if started).
func (g *diskGuard) close() {
	g.stopOnce.Do(func() {
		close(g.stop)
		if g.started.Load() {
			<-g.done
		}
		g.probe.Close()
	})
}

// check runs every check once. An error is a fault that stops the node.
func (g *diskGuard) check() error {
	for _, w := range g.watch {
		fi, err := os.Stat(w.path)
		if err != nil {
			return fmt.Errorf("node: data directory %s vanished: %w", w.path, err)
		}
		if !os.SameFile(fi, w.info) {
			return fmt.Errorf("node: data directory %s was replaced by another directory while the node ran", w.path)
		}
	}
	binary.LittleEndian.PutUint64(g.probeBuf[:], uint64(time.Now().UnixNano()))
	if _, err := g.probe.WriteAt(g.probeBuf[:], 0); err != nil {
		return fmt.Errorf("node: cannot write in data directory %s: %w", g.dir, err)
	}
	st, err := g.statfs(g.dir)
	if errors.Is(err, errStatfsUnsupported) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: data directory %s: statfs: %w", g.dir, err)
	}
	if st.readOnly {
		return fmt.Errorf("node: the file system of data directory %s is read-only (remounted after an error?)", g.dir)
	}
	g.setFree(st.free)
	return nil
}

// explain returns err prefixed with the vanished or replaced data directory
// when that is the cause: a storage error (ENOENT from Pebble or the WAL)
// often arrives before the next periodic check, and the operator needs the
// cause, not the symptom.
func (g *diskGuard) explain(err error) error {
	for _, w := range g.watch {
		fi, serr := os.Stat(w.path)
		if serr != nil {
			return fmt.Errorf("node: data directory %s vanished: %w (first seen as: %v)", w.path, serr, err)
		}
		if !os.SameFile(fi, w.info) {
			return fmt.Errorf("node: data directory %s was replaced by another directory while the node ran (first seen as: %w)", w.path, err)
		}
	}
	return err
}

// setFree records the free space and logs a crossing of the reserve.
func (g *diskGuard) setFree(free uint64) {
	g.free.Store(free)
	low := g.reserve > 0 && free < g.reserve
	if g.m != nil {
		g.m.diskFree.Set(float64(free))
		g.m.diskLow.Set(b2f(low))
	}
	if was := g.low.Swap(low); was == low {
		return
	}
	if low {
		g.log.Warn("free disk space is below the reserve: as leader this node refuses client writes until space is freed",
			"dir", g.dir, "free_bytes", free, "reserve_bytes", g.reserve)
	} else {
		g.log.Info("free disk space is above the reserve again: writes are accepted",
			"dir", g.dir, "free_bytes", free, "reserve_bytes", g.reserve)
	}
}

// refuse returns the error a leader answers a client write with while free
// space is below the reserve, or nil. The caller counts the refused writes
// (trireme_writes_refused_disk_total).
func (g *diskGuard) refuse() error {
	if !g.low.Load() {
		return nil
	}
	return fmt.Errorf("%w: the leader's data directory %s has %s free, below the reserve of %s (--disk-reserve); writes are refused until space is freed",
		api.ErrInsufficientStorage, g.dir, mib(g.free.Load()), mib(g.reserve))
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// guardedDirs are the subdirectories of the data directory the guard
// watches: the store's, and the WAL's when the WAL is on the operating
// system's file system (tests run it in memory).
func guardedDirs(dataDir string, walFS vfs.FS) []string {
	dirs := []string{filepath.Join(dataDir, storeDir)}
	if _, ok := walFS.(vfs.OS); ok {
		dirs = append(dirs, filepath.Join(dataDir, walDir))
	}
	return dirs
}
