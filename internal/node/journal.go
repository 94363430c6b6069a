package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
)

// journalRecord is one line of DATA/rollbacks.jsonl. Key and Value are []byte,
// so JSON carries them base64-encoded and binary keys survive.
type journalRecord struct {
	Term  uint64    `json:"term"`
	Index uint64    `json:"index"`
	Op    string    `json:"op"`
	Key   []byte    `json:"key,omitempty"`
	Value []byte    `json:"value,omitempty"`
	At    time.Time `json:"at"`
	Cause string    `json:"cause,omitempty"` // "" (api.CauseConflict) or api.CauseSnapshot
}

// journal is the rollback journal: an append-only, fsynced JSON-lines file of
// every entry this node discarded from its log.
type journal struct {
	path string
	mu   sync.Mutex // serializes appends with reads
	f    *os.File   // guarded by mu
}

func openJournal(path string, log *slog.Logger) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: open rollback journal %s: %w", path, err)
	}
	if err := cutTornLine(f, path, log); err != nil {
		f.Close()
		return nil, err
	}
	return &journal{path: path, f: f}, nil
}

// cutTornLine removes a last record that a failed append left incomplete (a
// full disk, a crash mid-write): appends are fsynced one after the other, so
// only the last line can be torn, and a record appended after it would be
// unreadable. The file is cut after its last newline and fsynced.
func cutTornLine(f *os.File, path string, log *slog.Logger) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("node: stat rollback journal %s: %w", path, err)
	}
	size := st.Size()
	end := size // the file is whole up to end
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return fmt.Errorf("node: read rollback journal %s: %w", path, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return nil
	}
	log.Warn("cutting a torn last record off the rollback journal", "file", path, "offset", end, "bytes", size-end)
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("node: cut torn record of rollback journal %s at %d: %w", path, end, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("node: fsync rollback journal %s: %w", path, err)
	}
	return nil
}

// append writes ents durably (one write, one fsync). An error is fatal to the node.
func (j *journal) append(ents []entry.Entry, now time.Time) error {
	return j.appendCause(ents, now, "")
}

// appendCause is append with a cause other than a conflicting log (see
// api.Rollback.Cause).
func (j *journal) appendCause(ents []entry.Entry, now time.Time, cause string) error {
	var buf []byte
	for i := range ents {
		e := &ents[i]
		op, key, value := describeForJournal(e)
		b, err := json.Marshal(journalRecord{Term: e.Term, Index: e.Index, Op: op, Key: key, Value: value, At: now.UTC(), Cause: cause})
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("node: write rollback journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("node: fsync rollback journal %s: %w", j.path, err)
	}
	return nil
}

// list reads every journaled entry, oldest first.
func (j *journal) list() ([]api.Rollback, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.Open(j.path)
	if err != nil {
		return nil, fmt.Errorf("node: open rollback journal %s: %w", j.path, err)
	}
	defer f.Close()
	var out []api.Rollback
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4*maxValueLimit)
	var off int64
	for sc.Scan() {
		line := sc.Bytes()
		var r journalRecord
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("node: rollback journal %s: bad record at offset %d: %w", j.path, off, err)
		}
		off += int64(len(line)) + 1
		cause := r.Cause
		if cause == "" {
			cause = api.CauseConflict
		}
		out = append(out, api.Rollback{Term: r.Term, Index: r.Index, Op: r.Op, Key: string(r.Key), Value: string(r.Value), Cause: cause})
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		return out, fmt.Errorf("node: read rollback journal %s at offset %d: %w", j.path, off, err)
	}
	return out, nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// describeForJournal is what the journal records of an entry: its kind, key
// and value; for a command, the command's op ("incr", "append", "set",
// "delete", "mset"), its key (the first one of an mset) and what it would
// have written (the value; the delta of an incr; "k=v ..." of an mset).
func describeForJournal(e *entry.Entry) (op string, key, value []byte) {
	if e.Kind != entry.KindCommand {
		return e.Kind.String(), e.Key, e.Value
	}
	c, err := command.Decode(e.Value)
	if err != nil {
		return e.Kind.String(), e.Key, e.Value
	}
	switch c.Op {
	case command.OpIncr:
		return c.Op.String(), c.Key, strconv.AppendInt(nil, c.Delta, 10)
	case command.OpMSet:
		var v []byte
		for i := range c.Keys {
			if i > 0 {
				v = append(v, ' ')
			}
			v = append(append(append(v, c.Keys[i]...), '='), c.Values[i]...)
		}
		return c.Op.String(), c.Keys[0], v
	}
	return c.Op.String(), c.Key, c.Value
}
