// Package datadir is the shell's hold on a node's data directory, whatever
// replication engine the node runs: an exclusive lock (so one process uses
// a directory at a time) and the identity written on first start (node,
// cluster and replication mode), checked on every later start so that a
// directory is only ever used by the node, cluster and engine that created
// it. It also offers the durable small-file write the engines share.
package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Errors for a data directory that cannot be used.
var (
	ErrLocked        = errors.New("node: data directory is in use by another process")
	ErrWrongIdentity = errors.New("node: data directory belongs to another node or cluster")
)

// File names in every data directory; part of the on-disk layout.
const (
	LockFile     = "LOCK"
	IdentityFile = "identity.json"
)

// Identity is DATA/identity.json, written on first start.
type Identity struct {
	NodeID    string   `json:"node_id"`
	ClusterID string   `json:"cluster_id"`
	Members   []string `json:"members"` // id=peer-address, as configured at creation
	// Mode is the replication engine that owns the directory; "" is
	// single-leader (directories from before engines had names).
	Mode string `json:"mode,omitempty"`
}

// Lock takes an exclusive flock on DATA/LOCK, creating dir if needed; the
// returned file holds the lock until it is closed.
func Lock(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node: create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked (is another trireme running with --data %s?)", ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("node: lock %s: %w", path, err)
	}
	return f, nil
}

// Open locks dir (creating it if needed) and checks its identity against
// want (writing it on first start): what every node does first. The
// returned file holds the lock.
func Open(dir string, want Identity) (*os.File, error) {
	f, err := Lock(dir)
	if err != nil {
		return nil, err
	}
	if err := CheckIdentity(dir, want); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckIdentity compares DATA/identity.json with want, writing it on first
// start.
func CheckIdentity(dir string, want Identity) error {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return WriteJSON(dir, IdentityFile, want)
	}
	if err != nil {
		return fmt.Errorf("node: read %s: %w", path, err)
	}
	var have Identity
	if err := json.Unmarshal(b, &have); err != nil {
		return fmt.Errorf("node: %s is corrupt: %w", path, err)
	}
	if have.NodeID != want.NodeID {
		return fmt.Errorf("%w: %s belongs to node %q, not --id %q", ErrWrongIdentity, dir, have.NodeID, want.NodeID)
	}
	if have.ClusterID != want.ClusterID {
		return fmt.Errorf("%w: %s belongs to cluster %s (members %v), but --cluster gives cluster %s (members %v)",
			ErrWrongIdentity, dir, have.ClusterID, have.Members, want.ClusterID, want.Members)
	}
	if have.Mode != want.Mode {
		return fmt.Errorf("%w: %s holds a %s node's data; this node runs %s (--mode)",
			ErrWrongIdentity, dir, modeName(have.Mode), modeName(want.Mode))
	}
	return nil
}

func modeName(m string) string {
	if m == "" {
		return "single-leader"
	}
	return m
}

// WriteJSON writes v as JSON to dir/name through a temporary file, fsyncs
// it, renames it into place and fsyncs the directory.
func WriteJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("node: create %s: %w", tmp, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("node: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("node: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("node: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("node: rename %s: %w", tmp, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("node: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("node: fsync directory %s: %w", dir, err)
	}
	return nil
}
