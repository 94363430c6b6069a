//go:build !replbugs

package sim

import "github.com/trireme-db/trireme/internal/repl"

// bugsCompiled reports whether this binary can inject the test-only bugs.
const bugsCompiled = false

func applyCoreBugs(*repl.Config, Bugs) {}

func bugAckBeforeFsync(Bugs) bool { return false }

func bugCompactUndurable(Bugs) bool { return false }
