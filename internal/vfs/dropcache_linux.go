//go:build linux

package vfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop f's clean cached pages
// (posix_fadvise POSIX_FADV_DONTNEED over the whole file).
func (f osFile) dropCache() error {
	rc, err := f.File.SyscallConn()
	if err != nil {
		return err
	}
	var aerr error
	if err := rc.Control(func(fd uintptr) { aerr = unix.Fadvise(int(fd), 0, 0, unix.FADV_DONTNEED) }); err != nil {
		return err // closed
	}
	if aerr != nil {
		return &os.PathError{Op: "fadvise", Path: f.Name(), Err: aerr}
	}
	return nil
}
