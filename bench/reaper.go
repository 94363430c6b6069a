package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A reaper is this program re-run (like an etcd member) to own one
// process tree that would otherwise escape: Patroni starts PostgreSQL in a
// session of its own through a helper that exits, so the postmaster is
// orphaned, and on this machine nothing reaps orphans (a killed postmaster
// stays a zombie, and PostgreSQL then refuses to start on its data
// directory: its lock file names a pid that still exists). The reaper is a
// child subreaper: every orphan of the tree becomes its child, and it reaps
// them all. On SIGTERM or SIGINT (also when the benchmark dies: its parent
// death signal) it kills every process of the tree with SIGKILL, as a
// machine crash would, and exits once none is left.

// ReaperEnv names the environment variable that turns this program into a
// reaper (see RunHelperIfAsked).
const ReaperEnv = "TRIREME_BENCH_REAPER"

// reaperSpec is what a reaper runs, passed as JSON in ReaperEnv.
type reaperSpec struct {
	Args []string // the program and its arguments
	Env  []string // its whole environment
	Dir  string   // its working directory
	// AsUID, if set, runs the program as this user and group.
	AsUID    bool
	UID, GID uint32
}

// RunHelperIfAsked turns this program into an embedded etcd member
// (EtcdMemberEnv) or a reaper (ReaperEnv) and exits, if the environment
// asks for one; otherwise it returns. Call it first in main and TestMain.
func RunHelperIfAsked() {
	if js := os.Getenv(ReaperEnv); js != "" {
		os.Exit(runReaper(js))
	}
	RunEtcdMemberIfAsked()
}

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER (linux/prctl.h).
const prSetChildSubreaper = 36

func runReaper(js string) int {
	var s reaperSpec
	if err := json.Unmarshal([]byte(js), &s); err != nil || len(s.Args) == 0 {
		fmt.Fprintf(os.Stderr, "reaper: bad %s (%v)\n", ReaperEnv, err)
		return 2
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "reaper: prctl(PR_SET_CHILD_SUBREAPER):", errno)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	cmd := exec.Command(s.Args[0], s.Args[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = s.Env, s.Dir, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.AsUID {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.UID, Gid: s.GID}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		return 1
	}
	var once sync.Once
	go func() {
		<-sig
		once.Do(func() { go killTree() })
	}()
	// Reap every child, the program's and the orphans, until none is left.
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-1, &ws, 0, nil)
		switch err {
		case nil, syscall.EINTR:
		case syscall.ECHILD:
			return 0
		default:
			fmt.Fprintln(os.Stderr, "reaper: wait4:", err)
			return 1
		}
	}
}

// killTree kills, with SIGKILL, every child of this process and every
// process in its group (the program leads one, the postmaster its own
// session), again and again until the reaper exits: a process forked
// meanwhile is caught by the next round.
func killTree() {
	for {
		for _, pid := range childrenOf(os.Getpid()) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		child, ppid, ok := parseStatParent(string(b))
		if ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// parseStatParent returns the pid and parent pid of a /proc/PID/stat line:
// "PID (COMM) STATE PPID ...", where COMM may hold spaces and parentheses.
func parseStatParent(stat string) (pid, ppid int, ok bool) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 1 || end < open {
		return 0, 0, false
	}
	fs := strings.Fields(stat[end+1:])
	if len(fs) < 2 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(stat[:open]))
	ppid, err2 := strconv.Atoi(fs[1])
	return pid, ppid, err1 == nil && err2 == nil
}

// startReaped starts s under a reaper (this program re-run), its output in
// logPath. The reaper gets SIGTERM when the benchmark dies, so the tree
// dies with it; signal the reaper with SIGTERM to kill the tree, and wait
// on done for every process of it to be gone.
func startReaped(s reaperSpec, logPath string) (*exec.Cmd, chan struct{}, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	js, err := json.Marshal(s)
	if err != nil {
		return nil, nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), ReaperEnv+"="+string(js))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("starting a reaper for %s: %w", s.Args[0], err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	return cmd, done, nil
}
