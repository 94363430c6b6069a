package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrStale is returned by operations on a Mem file handle opened before the
// last Mem.Crash: the process that held it is gone.
var ErrStale = errors.New("vfs: file handle from before a crash")

// Faults are hooks that make Mem operations fail. A nil hook never fails.
type Faults struct {
	// Sync is called before each File.Sync (with the file's name) and each
	// SyncDir (with the directory's name). A non-nil result fails the call and
	// nothing becomes durable (as after a real failed fsync).
	Sync func(name string) error
	// Write is called before each File.Write or File.WriteAt of n bytes. It
	// returns how many of them to actually write (clamped to [0, n]) and an
	// error; a short write with an error models a torn write or a full disk.
	Write func(name string, n int) (int, error)
}

// CrashOptions say how Mem.Crash treats data that was not synced.
type CrashOptions struct {
	// Rand chooses torn prefixes; required when TearUnsynced is set.
	Rand *rand.Rand
	// TearUnsynced keeps, for each file, a random prefix of its unsynced
	// changes (a torn write) instead of dropping them all: the bytes from the
	// first one that differs from the synced content up to a random point take
	// their current value, the rest keep their synced value (and the file
	// keeps its synced size if that is longer).
	TearUnsynced bool
}

// Mem is an in-memory FS that tracks what is durable. Directories are implicit:
// MkdirAll records them and they are always durable. Safe for concurrent use.
type Mem struct {
	mu      sync.Mutex
	gen     int                 // incremented by Crash; stale handles fail
	names   map[string]*memNode // current directory entries
	durable map[string]*memNode // directory entries that survive a crash
	dirs    map[string]bool
	faults  Faults
}

type memNode struct {
	data   []byte // current content
	synced []byte // content that survives a crash
	// shared: synced aliases data's backing array (set by Sync), so data must
	// be copied before bytes below len(synced) are overwritten in place.
	shared bool
}

var _ FS = (*Mem)(nil)

// NewMem returns an empty in-memory file system.
func NewMem() *Mem {
	return &Mem{
		names:   make(map[string]*memNode),
		durable: make(map[string]*memNode),
		dirs:    map[string]bool{".": true, "/": true},
	}
}

// NewFaulty returns an empty in-memory file system with fault hooks installed
// (the same as NewMem followed by SetFaults).
func NewFaulty(f Faults) *Mem {
	m := NewMem()
	m.SetFaults(f)
	return m
}

// SetFaults installs fault hooks (replacing previous ones).
func (m *Mem) SetFaults(f Faults) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = f
}

// Crash simulates a power loss: directory entries revert to their last
// SyncDir, file contents to their last Sync (plus a torn prefix of the
// unsynced tail if opts.TearUnsynced), and all open handles become stale.
func (m *Mem) Crash(opts CrashOptions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	names := make(map[string]*memNode, len(m.durable))
	fresh := make(map[*memNode]*memNode)
	for _, name := range sortedKeys(m.durable) {
		old := m.durable[name]
		n, ok := fresh[old]
		if !ok {
			content := append([]byte(nil), old.synced...)
			if opts.TearUnsynced && !bytes.Equal(old.data, old.synced) {
				// p: length of the common prefix; writes land in file order up
				// to a random point at or after it.
				p := 0
				for p < len(old.data) && p < len(old.synced) && old.data[p] == old.synced[p] {
					p++
				}
				end := p + opts.Rand.IntN(len(old.data)-p+1)
				content = append(content[:0], old.data[:end]...)
				if end < len(old.synced) {
					content = append(content, old.synced[end:]...)
				}
			}
			n = &memNode{data: content, synced: append([]byte(nil), content...)}
			fresh[old] = n
		}
		names[name] = n
	}
	m.names = names
	m.durable = make(map[string]*memNode, len(names))
	for k, v := range names {
		m.durable[k] = v
	}
}

// ReadFile returns a copy of name's current content (a test helper).
func (m *Mem) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.names[filepath.Clean(name)]
	if !ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), n.data...), nil
}

// WriteFile replaces name's content durably, creating it if needed (a test
// helper for damaging files: cutting them, flipping bits).
func (m *Mem) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if !m.dirs[filepath.Dir(name)] {
		return &os.PathError{Op: "write", Path: name, Err: fs.ErrNotExist}
	}
	n, ok := m.names[name]
	if !ok {
		n = &memNode{}
		m.names[name] = n
	}
	n.data = append([]byte(nil), data...)
	n.synced = append([]byte(nil), data...)
	n.shared = false
	m.durable[name] = n
	return nil
}

func sortedKeys(mp map[string]*memNode) []string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// OpenFile implements FS.
func (m *Mem) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	n, ok := m.names[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		if !m.dirs[filepath.Dir(name)] {
			return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = &memNode{}
		m.names[name] = n
	}
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if flag&os.O_TRUNC != 0 && writable {
		n.data = n.data[:0:0]
	}
	return &memFile{fs: m, node: n, name: name, gen: m.gen, flag: flag, writable: writable}, nil
}

// Create implements FS.
func (m *Mem) Create(name string) (File, error) {
	return m.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Rename implements FS.
func (m *Mem) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	n, ok := m.names[oldname]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if !m.dirs[filepath.Dir(newname)] {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	delete(m.names, oldname)
	m.names[newname] = n
	return nil
}

// Remove implements FS.
func (m *Mem) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if _, ok := m.names[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.names, name)
	return nil
}

// ReadDir implements FS. It lists files only (Mem directories are implicit).
func (m *Mem) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = filepath.Clean(dir)
	if !m.dirs[dir] {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []string
	for name := range m.names {
		if filepath.Dir(name) == dir {
			out = append(out, filepath.Base(name))
		}
	}
	sort.Strings(out)
	return out, nil
}

// MkdirAll implements FS.
func (m *Mem) MkdirAll(dir string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, isFile := m.names[d]; isFile {
			return &os.PathError{Op: "mkdir", Path: d, Err: fs.ErrExist}
		}
		m.dirs[d] = true
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// SyncDir implements FS.
func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = filepath.Clean(dir)
	if !m.dirs[dir] {
		return &os.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	if h := m.faults.Sync; h != nil {
		if err := h(dir); err != nil {
			return &os.PathError{Op: "syncdir", Path: dir, Err: err}
		}
	}
	for name := range m.durable {
		if filepath.Dir(name) == dir {
			delete(m.durable, name)
		}
	}
	for name, n := range m.names {
		if filepath.Dir(name) == dir {
			m.durable[name] = n
		}
	}
	return nil
}

type memFile struct {
	fs       *Mem
	node     *memNode
	name     string
	gen      int
	flag     int
	writable bool
	off      int64 // guarded by fs.mu
	closed   bool  // guarded by fs.mu
}

func (f *memFile) check(op string) error {
	if f.closed {
		return &os.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	if f.gen != f.fs.gen {
		return &os.PathError{Op: op, Path: f.name, Err: ErrStale}
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if f.flag&os.O_APPEND != 0 {
		f.off = int64(len(f.node.data))
	}
	n, err := f.writeLocked("write", p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("writeat"); err != nil {
		return 0, err
	}
	if f.flag&os.O_APPEND != 0 {
		// As os.File: pwrite on an O_APPEND file would write at the end.
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	if off < 0 {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: fs.ErrInvalid}
	}
	return f.writeLocked("writeat", p, off)
}

// writeLocked writes p at off, extending the file with zeros up to off if
// needed, after consulting the Write fault hook. Needs fs.mu.
func (f *memFile) writeLocked(op string, p []byte, off int64) (int, error) {
	if !f.writable {
		return 0, &os.PathError{Op: op, Path: f.name, Err: fs.ErrPermission}
	}
	n, ferr := len(p), error(nil)
	if h := f.fs.faults.Write; h != nil {
		n, ferr = h(f.name, len(p))
		n = max(0, min(n, len(p)))
	}
	node := f.node
	if node.shared && off < int64(len(node.data)) && n > 0 {
		// Overwrite: copy first, because synced shares the backing array.
		node.data = append([]byte(nil), node.data...)
		node.shared = false
	}
	end := off + int64(n)
	if n > 0 && end > int64(len(node.data)) { // an empty write never extends
		node.data = append(node.data, make([]byte, end-int64(len(node.data)))...)
	}
	if n > 0 {
		copy(node.data[off:end], p[:n])
	}
	if ferr != nil {
		return n, &os.PathError{Op: op, Path: f.name, Err: ferr}
	}
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: fs.ErrInvalid}
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync"); err != nil {
		return err
	}
	if h := f.fs.faults.Sync; h != nil {
		if err := h(f.name); err != nil {
			return &os.PathError{Op: "sync", Path: f.name, Err: err}
		}
	}
	// Share the backing array: until an overwrite copies data (see
	// writeLocked and Truncate), data is only appended to in place, beyond
	// synced's view, so that view never changes.
	f.node.synced = f.node.data[:len(f.node.data):len(f.node.data)]
	f.node.shared = true
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate"); err != nil {
		return err
	}
	if !f.writable || size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: fs.ErrInvalid}
	}
	if size <= int64(len(f.node.data)) {
		// Copy, so that later writes never touch synced's backing array.
		f.node.data = append([]byte(nil), f.node.data[:size]...)
		f.node.shared = false
	} else {
		f.node.data = append(f.node.data, make([]byte, size-int64(len(f.node.data)))...)
	}
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat"); err != nil {
		return nil, err
	}
	return memInfo{name: filepath.Base(f.name), size: int64(len(f.node.data))}, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// String describes the durable and current state (for test failure messages).
func (m *Mem) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, name := range sortedKeys(m.names) {
		n := m.names[name]
		_, dur := m.durable[name]
		fmt.Fprintf(&b, "%s size=%d synced=%d durable-entry=%v\n", name, len(n.data), len(n.synced), dur)
	}
	return b.String()
}
