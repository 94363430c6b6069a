//go:build unix

package transport

import (
	"syscall"
	"time"
)

// processCPU returns the user plus system CPU time used by the process so far,
// or 0 if it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
