package node

import "github.com/trireme-db/trireme/internal/datadir"

// Errors for a data directory that cannot be used.
var (
	ErrLocked        = datadir.ErrLocked
	ErrWrongIdentity = datadir.ErrWrongIdentity
)

// Files in the data directory. Their names are part of the on-disk layout
// (LOCK and identity.json are internal/datadir's).
const (
	journalFile = "rollbacks.jsonl"
	walDir      = "wal"
	storeDir    = "store"
	// diskCheckFile holds 8 bytes the disk guard overwrites in place every
	// check, to find a file system that no longer takes writes.
	diskCheckFile = "disk-check"
)

var (
	writeFileSync = datadir.WriteJSON
	syncDir       = datadir.SyncDir
)
