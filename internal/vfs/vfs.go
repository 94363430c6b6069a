// Package vfs is the small file-system abstraction under Trireme's write-ahead
// log: just the operations the log needs, with a real implementation (OS) and an
// in-memory one (Mem) that can simulate crashes and inject faults.
//
// What it promises:
//
//   - File.Sync makes the file's data (and the size needed to read it back)
//     durable. On Linux, OS uses fdatasync(2).
//   - FS.SyncDir makes the directory's entries durable: files created, renamed or
//     removed in it survive a crash only after SyncDir returns nil.
//   - Nothing else is durable. Mem models exactly this: a crash (Mem.Crash) keeps
//     only synced file data and synced directory entries, optionally with a torn,
//     random prefix (in file order) of each file's unsynced changes: the bytes
//     written since the last Sync, whether appended or overwritten with WriteAt.
//
// A failed Sync must never be retried by callers as if it were harmless: after
// a failed fsync Linux may mark the dirty pages clean, and a second fsync
// "succeeds" with the data gone. Mem models this too: a failed Sync makes nothing
// durable.
package vfs

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// File is an open file.
type File interface {
	// Write writes p at the file offset; for files opened with os.O_APPEND, at
	// the end of the file.
	io.Writer
	// WriteAt writes p at off (io.WriterAt semantics), without moving the file
	// offset; writing past the end extends the file, with zeros in any gap. Like
	// os.File, it fails on files opened with os.O_APPEND.
	io.WriterAt
	// ReadAt reads len(p) bytes at off (io.ReaderAt semantics). Safe to call
	// concurrently with Write.
	io.ReaderAt
	// Sync makes the file's data durable (fdatasync on Linux).
	Sync() error
	// Truncate changes the file's size. Not durable until Sync.
	Truncate(size int64) error
	// Stat returns the file's metadata; Size() is the current size.
	Stat() (fs.FileInfo, error)
	Close() error
}

// FS is a file system. Names are slash- or OS-separated paths; implementations
// clean them with filepath.Clean.
type FS interface {
	// OpenFile opens name with os.OpenFile flags (O_RDONLY, O_RDWR, O_CREATE,
	// O_EXCL, O_TRUNC, O_APPEND are honoured).
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Create creates or truncates name for reading and writing.
	Create(name string) (File, error)
	// Rename atomically replaces newname with oldname. Not durable until SyncDir.
	Rename(oldname, newname string) error
	// Remove removes a file. Not durable until SyncDir.
	Remove(name string) error
	// ReadDir returns the names of the entries in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string, perm fs.FileMode) error
	// SyncDir makes dir's entries (creations, renames, removals) durable.
	SyncDir(dir string) error
}

// OS is the real file system.
type OS struct{}

var _ FS = OS{}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return fdatasync(f.File) }

// OpenFile implements FS.
func (OS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Create implements FS.
func (o OS) Create(name string) (File, error) {
	return o.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Rename implements FS.
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OS) Remove(name string) error { return os.Remove(name) }

// ReadDir implements FS.
func (OS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS.
func (OS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }

// SyncDir implements FS: it opens dir and fsyncs it.
func (OS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// CacheDropper is implemented by files whose cached pages can be dropped.
type CacheDropper interface {
	// DropCache tells the operating system that the file's cached data will
	// not be read again soon: its clean pages may be freed now (dirty pages
	// are not lost; they are written back as usual). It changes no data.
	DropCache() error
}

// DropCache drops f's clean cached pages if f is a CacheDropper (a real
// file on Linux: posix_fadvise DONTNEED), else it does nothing. A file
// written once and not read again (a sealed log segment) otherwise keeps
// its pages cached until the kernel needs memory, and the page cache grows
// by every byte written.
func DropCache(f File) error {
	if d, ok := f.(CacheDropper); ok {
		return d.DropCache()
	}
	return nil
}

// DropCache implements CacheDropper.
func (f osFile) DropCache() error { return f.dropCache() }
