package chaos

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestProcsLifecycle(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	p, err := NewProcs(sleep, map[string][]string{"n1": {"30"}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.StopAll(time.Second)
	if err := p.Start("n1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Start("n1"); !errors.Is(err, ErrRunning) {
		t.Fatalf("second start: %v, want ErrRunning", err)
	}
	if err := p.Pause("n1"); err != nil || !p.Paused("n1") {
		t.Fatalf("pause: %v, paused %v", err, p.Paused("n1"))
	}
	if err := p.Resume("n1"); err != nil || p.Paused("n1") {
		t.Fatalf("resume: %v, paused %v", err, p.Paused("n1"))
	}
	if err := p.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	if p.Running("n1") {
		t.Fatal("running after kill")
	}
	if _, ok := p.Exited()["n1"]; !ok {
		t.Fatal("kill not reported by Exited")
	}
	if err := p.Pause("n1"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("pause of a dead node: %v, want ErrNotRunning", err)
	}
	if err := p.Start("n1"); err != nil { // restart
		t.Fatal(err)
	}
	if !p.Running("n1") {
		t.Fatal("not running after restart")
	}
	if err := p.Start("nx"); err == nil {
		t.Fatal("started an unknown node")
	}
	if err := p.StopAll(time.Second); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.LogPath("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "chaos: starting n1"); got != 2 {
		t.Fatalf("log has %d start lines, want 2:\n%s", got, b)
	}
}
