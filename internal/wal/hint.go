package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// The commit hint: the highest index known committed, written far more often
// than the hard state and with none of its cost. It is one fixed-size record,
// overwritten in place and never fsynced:
//
//	offset  size  field
//	0       4     magic "TRCH"
//	4       8     commit
//	12      4     CRC-32C of bytes [0, 12)
//
// A crash may leave an older value, a torn record or no file at all; each is
// safe, because the hint only lets a restarted node apply sooner what it would
// otherwise relearn from the leader. So a record that fails its check is
// ignored (and logged), never ErrCorrupt.
const (
	commitHintName  = "commit-hint"
	commitHintMagic = "TRCH"
	commitHintSize  = 4 + 8 + 4
)

func encodeCommitHint(b []byte, commit uint64) []byte {
	b = append(b[:0], commitHintMagic...)
	b = binary.LittleEndian.AppendUint64(b, commit)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeCommitHint returns the hint in b, or ok false if b is not a whole,
// intact record.
func decodeCommitHint(b []byte) (commit uint64, ok bool) {
	if len(b) != commitHintSize || string(b[:4]) != commitHintMagic {
		return 0, false
	}
	if crc32.Checksum(b[:12], crcTable) != binary.LittleEndian.Uint32(b[12:]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[4:]), true
}

// loadCommitHint returns the stored hint, or 0 if there is none or it is
// damaged. Only a failure to read the directory's files is an error.
func (l *Log) loadCommitHint() (uint64, error) {
	path := l.path(commitHintName)
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if isNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	b := make([]byte, commitHintSize+1)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("wal: read %s: %w", path, err)
	}
	commit, ok := decodeCommitHint(b[:n])
	if !ok {
		l.logger.Warn("wal: ignoring a damaged commit hint (it is not fsynced, so a crash can tear it; the node relearns the commit index from the leader)",
			"file", path, "bytes", n)
		return 0, nil
	}
	return commit, nil
}

// SetCommitHint records commit as the highest index known committed. It
// overwrites one small record in place and does not fsync: it costs a write
// to the page cache, not a disk flush, so a caller may set it often. After a
// crash HardState().Commit may be older than the last hint (never newer), so
// the hint must never exceed the durable log: callers pass at most
// LastIndex(). A hint below the current commit is ignored. Errors are
// returned but are not sticky: the log stays usable.
func (l *Log) SetCommitHint(commit uint64) error {
	l.hsMu.Lock()
	defer l.hsMu.Unlock()
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case commit <= l.hs.Commit:
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	if l.hintF == nil {
		path := l.path(commitHintName)
		f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("wal: open %s: %w", path, err)
		}
		l.hintF = f
	}
	l.hintBuf = encodeCommitHint(l.hintBuf, commit)
	if _, err := l.hintF.WriteAt(l.hintBuf, 0); err != nil {
		return fmt.Errorf("wal: write %s: %w", l.path(commitHintName), err)
	}
	l.mu.Lock()
	l.hs.Commit = commit
	l.mu.Unlock()
	return nil
}
