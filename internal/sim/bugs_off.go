//go:build !replbugs

package sim

import "github.com/trireme-db/trireme/internal/repl"

// bugsCompiled reports whether this binary can inject the test-only bugs.
const bugsCompiled = false

func applyCoreBugs(*repl.Config, Bugs) {}

func bugAckBeforeFsync(Bugs) bool { return false }

func bugCompactUndurable(Bugs) bool { return false }

func bugSessionReadEarly(Bugs) bool { return false }

func bugDuplicateApply(Bugs) bool { return false }

func bugBoundedNoCheck(Bugs) bool { return false }

func bugSettleEarly(Bugs) bool { return false }
