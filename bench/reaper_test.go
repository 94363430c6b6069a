package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReaperKillsTree runs, under a reaper, a shell that starts a child in
// its own process group and another in a session of its own (as Patroni
// starts PostgreSQL), then signals the reaper as the failover part does: the
// reaper must exit with both gone, reaped rather than left as zombies.
func TestReaperKillsTree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	script := fmt.Sprintf(`setsid sh -c 'echo $$ >> %[1]s; exec sleep 600' & sleep 600 & echo $! >> %[1]s; wait`, pids)
	cmd, done, err := startReaped(reaperSpec{Args: []string{"/bin/sh", "-c", script}, Env: os.Environ(), Dir: dir}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	var ps []int
	for deadline := time.Now().Add(10 * time.Second); len(ps) < 2; {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the script did not record its two children: %v", ps)
		}
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(pids)
		ps = ps[:0]
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				ps = append(ps, n)
			}
		}
	}
	for _, p := range ps {
		if err := syscall.Kill(p, 0); err != nil {
			t.Fatalf("child %d not running before the kill: %v", p, err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the reaper did not exit within 10 s of SIGTERM")
	}
	for _, p := range ps {
		if err := syscall.Kill(p, 0); err != syscall.ESRCH {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
			t.Errorf("child %d still exists after the reaper exited (kill 0: %v; stat %q)", p, err, b)
		}
	}
}
