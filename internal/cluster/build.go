package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildBinary builds cmd/trireme into dir and returns the binary's path. Tests
// that start real node processes (test/system, test/chaos) call it once.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	binary := filepath.Join(dir, "trireme")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", binary, "github.com/trireme-db/trireme/cmd/trireme").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building trireme: %v\n%s", err, out)
	}
	return binary, nil
}
