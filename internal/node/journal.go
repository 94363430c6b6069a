package node

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/api"
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
}

// journal is the rollback journal: an append-only, fsynced JSON-lines file of
// every entry this node discarded from its log.
type journal struct {
	path string
	mu   sync.Mutex // serializes appends with reads
	f    *os.File   // guarded by mu
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: open rollback journal %s: %w", path, err)
	}
	return &journal{path: path, f: f}, nil
}

// append writes ents durably (one write, one fsync). An error is fatal to the node.
func (j *journal) append(ents []entry.Entry, now time.Time) error {
	var buf []byte
	for i := range ents {
		e := &ents[i]
		b, err := json.Marshal(journalRecord{Term: e.Term, Index: e.Index, Op: e.Kind.String(), Key: e.Key, Value: e.Value, At: now.UTC()})
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
		out = append(out, api.Rollback{Term: r.Term, Index: r.Index, Op: r.Op, Key: string(r.Key), Value: string(r.Value)})
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
