package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Errors of the process supervisor.
var (
	ErrNotRunning = errors.New("chaos: node is not running")
	ErrRunning    = errors.New("chaos: node is already running")
)

// proc is one node process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // set before exited closes
	paused bool
}

// Procs runs node processes: each node has its fixed argument list, its data
// directory (kept across restarts) and a log file that restarts append to.
type Procs struct {
	binary string
	logDir string

	mu     sync.Mutex
	args   map[string][]string // guarded by mu
	prefix map[string][]string // command that runs the binary (see namedPrefix); guarded by mu
	procs  map[string]*proc    // guarded by mu
}

// NewProcs prepares to run binary with args[id] for every node; logs go to logDir/ID.log.
func NewProcs(binary string, args map[string][]string, logDir string) (*Procs, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	return &Procs{binary: binary, args: args, prefix: map[string][]string{}, logDir: logDir, procs: map[string]*proc{}}, nil
}

// SetArgs replaces node id's arguments for its next starts (a node that
// joins a running cluster gets its arguments when it joins).
func (p *Procs) SetArgs(id string, args []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.args[id] = args
}

// SetPrefix makes node id run as prefix... binary args... (nil: the binary itself).
func (p *Procs) SetPrefix(id string, prefix []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prefix[id] = prefix
}

// Retire forgets node id's process once it has exited (a member that was
// removed on purpose), so that Exited does not report it as a crash. It
// returns ErrRunning if the process is still alive.
func (p *Procs) Retire(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.live(id); err == nil {
		return fmt.Errorf("%w: %s", ErrRunning, id)
	}
	delete(p.procs, id)
	return nil
}

// LogPath is the log file of node id.
func (p *Procs) LogPath(id string) string { return filepath.Join(p.logDir, id+".log") }

// Start starts node id.
func (p *Procs) Start(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr := p.procs[id]; pr != nil {
		select {
		case <-pr.exited:
		default:
			return fmt.Errorf("%w: %s", ErrRunning, id)
		}
	}
	args, ok := p.args[id]
	if !ok {
		return fmt.Errorf("chaos: unknown node %q", id)
	}
	lf, err := os.OpenFile(p.LogPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	fmt.Fprintf(lf, "==== chaos: starting %s at %s\n", id, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.binary, args...)
	if pre := p.prefix[id]; len(pre) > 0 {
		cmd = exec.Command(pre[0], append(append(pre[1:len(pre):len(pre)], p.binary), args...)...)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("chaos: starting %s: %w", id, err)
	}
	pr := &proc{cmd: cmd, exited: make(chan struct{})}
	p.procs[id] = pr
	go func() {
		pr.err = cmd.Wait()
		fmt.Fprintf(lf, "==== chaos: %s exited at %s: %v\n", id, time.Now().UTC().Format(time.RFC3339Nano), pr.err)
		lf.Close()
		close(pr.exited)
	}()
	return nil
}

func (p *Procs) live(id string) (*proc, error) {
	pr := p.procs[id]
	if pr == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	select {
	case <-pr.exited:
		return nil, fmt.Errorf("%w: %s (exited: %v)", ErrNotRunning, id, pr.err)
	default:
	}
	return pr, nil
}

// Running reports whether node id's process is alive (possibly paused).
func (p *Procs) Running(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.live(id)
	return err == nil
}

// Paused reports whether node id is stopped with SIGSTOP.
func (p *Procs) Paused(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, err := p.live(id)
	return err == nil && pr.paused
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Procs) Kill(id string) error {
	p.mu.Lock()
	pr, err := p.live(id)
	if err == nil {
		err = pr.cmd.Process.Signal(syscall.SIGKILL)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-pr.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("chaos: %s did not exit after SIGKILL", id)
	}
}

// Pause sends SIGSTOP.
func (p *Procs) Pause(id string) error { return p.signal(id, syscall.SIGSTOP, true) }

// Resume sends SIGCONT.
func (p *Procs) Resume(id string) error { return p.signal(id, syscall.SIGCONT, false) }

func (p *Procs) signal(id string, s syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, err := p.live(id)
	if err != nil {
		return err
	}
	if err := pr.cmd.Process.Signal(s); err != nil {
		return fmt.Errorf("chaos: %s: %w", id, err)
	}
	pr.paused = paused
	return nil
}

// Exited reports node ids whose process ended although nobody killed or
// stopped it (a crash), with the exit error.
func (p *Procs) Exited() map[string]error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]error{}
	for id, pr := range p.procs {
		select {
		case <-pr.exited:
			out[id] = pr.err
		default:
		}
	}
	return out
}

// Stop resumes (if paused) and terminates node id with SIGTERM, then SIGKILL
// after timeout.
func (p *Procs) Stop(id string, timeout time.Duration) error {
	p.mu.Lock()
	pr, err := p.live(id)
	if err == nil {
		_ = pr.cmd.Process.Signal(syscall.SIGCONT)
		err = pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	p.mu.Unlock()
	if err != nil {
		return nil // not running: nothing to stop
	}
	select {
	case <-pr.exited:
		return nil
	case <-time.After(timeout):
		_ = pr.cmd.Process.Signal(syscall.SIGKILL)
		<-pr.exited
		return fmt.Errorf("chaos: %s did not stop within %v; killed", id, timeout)
	}
}

// StopAll stops every node.
func (p *Procs) StopAll(timeout time.Duration) error {
	p.mu.Lock()
	ids := make([]string, 0, len(p.procs))
	for id := range p.procs {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(id, timeout); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
