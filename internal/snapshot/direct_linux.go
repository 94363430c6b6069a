package snapshot

import (
	"os"
	"syscall"
)

// openDirect opens path for writing that skips the page cache (O_DIRECT), or
// returns nil if the file system does not allow it.
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}
