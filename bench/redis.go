package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoRedis means redis-server is not installed.
var ErrNoRedis = errors.New("bench: redis-server not found in PATH (apt-get install redis-server)")

// Redis is a local Redis primary with replicas, every one with
// appendonly yes and appendfsync always, each in its own directory.
type Redis struct {
	Addrs []string // primary first
	procs []*exec.Cmd
	done  []chan struct{}
}

// freePort returns a loopback port the kernel says is free.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProc starts a process in its own group that dies with its parent,
// with its output appended to logPath.
func startProc(name string, args []string, env []string, logPath string) (*exec.Cmd, chan struct{}, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) // a restart appends
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	return cmd, done, nil
}

// stopProc sends SIGTERM and waits up to timeout, then SIGKILL.
func stopProc(cmd *exec.Cmd, done chan struct{}, timeout time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
	}
}

// StartRedis starts a primary and replicas under dir and waits until every
// replica is connected and in sync.
func StartRedis(ctx context.Context, dir string, replicas int) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedis
	}
	r := &Redis{}
	for i := 0; i <= replicas; i++ {
		port, err := freePort()
		if err != nil {
			r.Stop()
			return nil, err
		}
		d := filepath.Join(dir, fmt.Sprintf("redis%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			r.Stop()
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", d,
			"--daemonize", "no", "--appendonly", "yes", "--appendfsync", "always",
			"--save", "", "--repl-diskless-sync-delay", "0", "--protected-mode", "no", "--logfile", ""}
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(cPort(r.Addrs[0])))
		}
		cmd, done, err := startProc(bin, args, nil, filepath.Join(d, "redis.log"))
		if err != nil {
			r.Stop()
			return nil, err
		}
		r.procs, r.done = append(r.procs, cmd), append(r.done, done)
		r.Addrs = append(r.Addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := dialRESP(wctx, r.Addrs[0], nil)
		if err == nil {
			info, ierr := c.Info(wctx, "replication").Result()
			c.Close()
			if ierr == nil && strings.Contains(info, fmt.Sprintf("connected_slaves:%d", replicas)) &&
				strings.Count(info, "state=online") == replicas {
				return r, nil
			}
		}
		select {
		case <-wctx.Done():
			r.Stop()
			return nil, fmt.Errorf("redis: replicas not in sync after 30s (logs in %s)", dir)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func cPort(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Stop stops every server.
func (r *Redis) Stop() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		stopProc(r.procs[i], r.done[i], 10*time.Second)
	}
	r.procs, r.done = nil, nil
}

// Pids returns every server's process id.
func (r *Redis) Pids() []int {
	var out []int
	for _, p := range r.procs {
		out = append(out, p.Process.Pid)
	}
	return out
}

// Pid returns the primary's process id.
func (r *Redis) Pid() int { return r.procs[0].Process.Pid }

// Variant returns a variant on the primary: SET, then WAIT wait when wait > 0.
func (r *Redis) Variant(name string, wait int) Variant {
	return respVariant("redis", name, func() []string { return r.Addrs[:1] }, nil, wait, r.Pids)
}
