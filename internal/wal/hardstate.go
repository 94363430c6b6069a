package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// HardState is the node's persistent vote state: the current term, the vote
// cast in it, and the highest index known committed.
type HardState struct {
	Term   uint64
	Vote   string
	Commit uint64
}

// Hard-state file constants. Part of the format.
const (
	hardStateMagic   = "TRHS"
	hardStateVersion = 1
	hardStateFixed   = 4 + 1 + 8 + 8 + 2 // bytes before the vote
)

func encodeHardState(hs HardState) []byte {
	b := make([]byte, 0, hardStateFixed+len(hs.Vote)+4)
	b = append(b, hardStateMagic...)
	b = append(b, hardStateVersion)
	b = binary.LittleEndian.AppendUint64(b, hs.Term)
	b = binary.LittleEndian.AppendUint64(b, hs.Commit)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hs.Vote)))
	b = append(b, hs.Vote...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeHardState(b []byte, path string) (HardState, error) {
	if len(b) < hardStateFixed+4 {
		return HardState{}, corruptf(path, 0, "hard state is %d bytes, need at least %d", len(b), hardStateFixed+4)
	}
	if string(b[:4]) != hardStateMagic {
		return HardState{}, corruptf(path, 0, "bad hard state magic %q", b[:4])
	}
	if b[4] != hardStateVersion {
		return HardState{}, corruptf(path, 4, "unknown hard state version %d", b[4])
	}
	v := int(binary.LittleEndian.Uint16(b[21:]))
	if v > MaxVoteBytes || len(b) != hardStateFixed+v+4 {
		return HardState{}, corruptf(path, 21, "vote length %d does not match file size %d", v, len(b))
	}
	body := b[:hardStateFixed+v]
	if got, want := crc32.Checksum(body, crcTable), binary.LittleEndian.Uint32(b[len(body):]); got != want {
		return HardState{}, corruptf(path, int64(len(body)), "hard state checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return HardState{
		Term:   binary.LittleEndian.Uint64(b[5:]),
		Commit: binary.LittleEndian.Uint64(b[13:]),
		Vote:   string(b[hardStateFixed : hardStateFixed+v]),
	}, nil
}

func (l *Log) loadHardState() (HardState, error) {
	path := l.path(hardStateName)
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if isNotExist(err) {
		return HardState{}, nil
	}
	if err != nil {
		return HardState{}, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return HardState{}, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	if info.Size() > hardStateFixed+MaxVoteBytes+4 {
		return HardState{}, corruptf(path, 0, "hard state file is %d bytes, too large", info.Size())
	}
	b := make([]byte, info.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return HardState{}, fmt.Errorf("wal: read %s: %w", path, err)
	}
	return decodeHardState(b, path)
}

// SetHardState persists hs atomically and durably (temporary file, fsync,
// rename, directory fsync) before returning. A vote longer than MaxVoteBytes is
// ErrTooLarge. Setting the current value again does no I/O. Any I/O failure is
// sticky, as on the append path.
func (l *Log) SetHardState(hs HardState) error {
	if len(hs.Vote) > MaxVoteBytes {
		return fmt.Errorf("%w: vote is %d bytes, limit %d", ErrTooLarge, len(hs.Vote), MaxVoteBytes)
	}
	l.hsMu.Lock()
	defer l.hsMu.Unlock()
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.failed != nil:
		l.mu.Unlock()
		return l.failed
	case hs == l.hs:
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	if err := l.writeHardState(hs); err != nil {
		return l.fail(err)
	}
	l.mu.Lock()
	l.hs = hs
	l.mu.Unlock()
	return nil
}

func (l *Log) writeHardState(hs HardState) error {
	return l.writeFileAtomic(hardStateName, encodeHardState(hs))
}

// writeFileAtomic replaces the file name in the log's directory with data,
// durably: a temporary file, fsync, rename, directory fsync.
func (l *Log) writeFileAtomic(name string, data []byte) error {
	path := l.path(name)
	tmp := path + tmpSuffix
	f, err := l.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("%w: create %s: %v", ErrWriteFailed, tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%w: write %s: %v", ErrWriteFailed, tmp, err)
	}
	if err := l.syncFile(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: close %s: %v", ErrWriteFailed, tmp, err)
	}
	if err := l.fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: rename %s: %v", ErrWriteFailed, tmp, err)
	}
	return l.syncDir()
}
