//go:build !linux

package node

// statfs is not implemented here: the disk reserve is not enforced and a
// read-only file system is noticed only by a failed write.
func statfs(string) (fsStat, error) { return fsStat{}, errStatfsUnsupported }
