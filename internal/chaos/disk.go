package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Disk faults on real processes (Linux, as root): a small file system
// mounted at a node's data directory, which the harness fills, remounts
// read-only or removes under the running node.
//
//   - tmpfs: fills like any disk (ENOSPC); cannot be remounted read-only
//     while the node holds files open for writing (the kernel refuses with
//     EBUSY), like every Linux file system.
//   - ext4 on a loop device over an image file, mounted with
//     errors=remount-ro: the harness makes the kernel record a file-system
//     error (/sys/fs/ext4/DEV/trigger_fs_error), and the kernel remounts it
//     read-only at once, open files and all, as it does on a real I/O
//     error. Writes then fail with EROFS. Repair unmounts, runs e2fsck and
//     mounts it again.
//
// The data directory's own removal (rm -rf) needs no mount: RemoveDir.

// ErrDiskUnsupported: disk faults cannot be injected here (not Linux, not
// root, or mounting is not permitted). Tests skip with its message.
var ErrDiskUnsupported = errors.New("chaos: disk faults unsupported")

// DiskKind is the file system of a Disk.
type DiskKind string

// Disk kinds.
const (
	Tmpfs DiskKind = "tmpfs"
	Ext4  DiskKind = "ext4"
)

// fillerName is the file Fill writes into the mounted file system.
const fillerName = "chaos-filler"

// Disk is a file system mounted at one directory.
type Disk struct {
	Dir   string   // the mount point (a node's data directory)
	Kind  DiskKind //
	Size  int64    // bytes
	image string   // Ext4: the backing image file
}

// CheckDiskFaults reports whether this process can mount file systems (a
// 1 MiB tmpfs in a temporary directory), or ErrDiskUnsupported with why not.
func CheckDiskFaults() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (mount needs CAP_SYS_ADMIN)", ErrDiskUnsupported)
	}
	dir, err := os.MkdirTemp("", "chaos-mount-check-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		return fmt.Errorf("%w: mount -t tmpfs: %v", ErrDiskUnsupported, err)
	}
	return unix.Unmount(dir, 0)
}

// CheckExt4 reports whether ext4 images can be made and loop-mounted here
// (mkfs.ext4, e2fsck, loop devices), or ErrDiskUnsupported with why not.
func CheckExt4() error {
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found", ErrDiskUnsupported, tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("%w: no loop devices (/dev/loop-control: %v)", ErrDiskUnsupported, err)
	}
	return nil
}

// MountTmpfs mounts a tmpfs of size bytes at dir (created if needed).
func MountTmpfs(dir string, size int64) (*Disk, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		return nil, fmt.Errorf("chaos: mount tmpfs (size %d) at %s: %w", size, dir, err)
	}
	return &Disk{Dir: dir, Kind: Tmpfs, Size: size}, nil
}

// MountExt4 makes an ext4 file system of size bytes in image and mounts it
// at dir (created if needed) through a loop device, with errors=remount-ro.
func MountExt4(dir, image string, size int64) (*Disk, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(image, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: image %s: %w", image, err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", image).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chaos: mkfs.ext4 %s: %v: %s", image, err, out)
	}
	d := &Disk{Dir: dir, Kind: Ext4, Size: size, image: image}
	if err := d.mountExt4(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Disk) mountExt4() error {
	if out, err := exec.Command("mount", "-o", "loop,errors=remount-ro", d.image, d.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("chaos: mount %s at %s: %v: %s", d.image, d.Dir, err, out)
	}
	return nil
}

// FreeBytes is the space available to unprivileged users (what a node sees).
func (d *Disk) FreeBytes() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.Dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// Fill allocates a file in the file system until at most leave bytes are
// free (another process filling the disk).
func (d *Disk) Fill(leave int64) error {
	free, err := d.FreeBytes()
	if err != nil {
		return err
	}
	if free <= leave {
		return nil
	}
	path := filepath.Join(d.Dir, fillerName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, st.Size(), free-leave); err != nil && !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("chaos: fill %s: %w", path, err)
	}
	return nil
}

// Unfill removes what Fill allocated.
func (d *Disk) Unfill() error {
	err := os.Remove(filepath.Join(d.Dir, fillerName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// loopDevice returns the device (e.g. "loop3") mounted at d.Dir.
func (d *Disk) loopDevice() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()
	dir, err := filepath.Abs(d.Dir)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[1] == dir && strings.HasPrefix(fields[0], "/dev/loop") {
			return strings.TrimPrefix(fields[0], "/dev/"), nil
		}
	}
	return "", fmt.Errorf("chaos: no loop device mounted at %s", dir)
}

// RemountReadOnly makes the kernel record an error on the ext4 file system;
// mounted with errors=remount-ro, it is read-only at once, with the node's
// files open.
func (d *Disk) RemountReadOnly() error {
	if d.Kind != Ext4 {
		return fmt.Errorf("chaos: %s at %s cannot be remounted read-only while files are open for writing (EBUSY); use ext4", d.Kind, d.Dir)
	}
	dev, err := d.loopDevice()
	if err != nil {
		return err
	}
	trigger := "/sys/fs/ext4/" + dev + "/trigger_fs_error"
	if err := os.WriteFile(trigger, []byte("chaos: injected file-system error"), 0); err != nil {
		return fmt.Errorf("chaos: %s: %w", trigger, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !d.ReadOnly() {
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %s still takes writes 2s after an ext4 error (mounted without errors=remount-ro?)", d.Dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// ReadOnly reports whether the file system refuses writes (EROFS). Recent
// kernels keep an ext4 stopped by an error mounted "rw" (with the
// emergency_ro option) and refuse writes, so statfs's flags do not tell.
func (d *Disk) ReadOnly() bool {
	path := filepath.Join(d.Dir, "chaos-ro-probe")
	err := os.WriteFile(path, []byte("x"), 0o644)
	if err == nil {
		os.Remove(path)
	}
	return errors.Is(err, syscall.EROFS)
}

// Repair makes an ext4 file system writable again after RemountReadOnly:
// unmount, e2fsck -fy, mount. No process may hold files in it.
func (d *Disk) Repair() error {
	if d.Kind != Ext4 {
		return nil
	}
	if err := unix.Unmount(d.Dir, 0); err != nil {
		return fmt.Errorf("chaos: unmount %s: %w", d.Dir, err)
	}
	out, err := exec.Command("e2fsck", "-f", "-y", d.image).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() <= 2 { // 1, 2: errors corrected
		err = nil
	}
	if err != nil {
		return fmt.Errorf("chaos: e2fsck %s: %v: %s", d.image, err, out)
	}
	return d.mountExt4()
}

// Unmount unmounts the file system (lazily if it is still busy) and removes
// an ext4 image.
func (d *Disk) Unmount() error {
	err := unix.Unmount(d.Dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = unix.Unmount(d.Dir, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted
		return fmt.Errorf("chaos: unmount %s: %w", d.Dir, err)
	}
	if d.image != "" {
		return os.Remove(d.image)
	}
	return nil
}

// RemoveDir removes a node's data directory and everything in it (rm -rf)
// while the node runs.
func RemoveDir(dir string) error { return os.RemoveAll(dir) }

// String describes the disk.
func (d *Disk) String() string {
	return string(d.Kind) + " of " + strconv.FormatInt(d.Size>>20, 10) + " MiB at " + d.Dir
}
