//go:build linux

package node

import "golang.org/x/sys/unix"

// statfs reports the free space and the read-only flag of the file system
// holding path.
func statfs(path string) (fsStat, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fsStat{}, err
	}
	return fsStat{free: st.Bavail * uint64(st.Bsize), readOnly: st.Flags&unix.ST_RDONLY != 0}, nil
}
