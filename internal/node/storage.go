package node

import (
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
	"github.com/trireme-db/trireme/internal/wal"
)

// walStorage is the core's read-only view of the WAL (repl.Storage).
type walStorage struct {
	log   *wal.Log
	fatal func(error) // called for read errors other than "not in the log"
}

func (s walStorage) InitialState() (repl.HardState, error) {
	hs := s.log.HardState()
	return repl.HardState{Term: hs.Term, Vote: repl.NodeID(hs.Vote), Commit: hs.Commit}, nil
}

func (s walStorage) FirstIndex() uint64 { return s.log.FirstIndex() }

func (s walStorage) LastIndex() uint64 { return s.log.LastIndex() }

func (s walStorage) Term(i uint64) (uint64, error) {
	if i == 0 {
		return 0, nil
	}
	t, err := s.log.Term(i)
	if err != nil {
		return 0, s.mapErr(err, i)
	}
	return t, nil
}

func (s walStorage) Entries(lo, hi uint64, maxBytes int) ([]entry.Entry, error) {
	ents, err := s.log.Entries(lo, hi, maxBytes)
	if err != nil {
		return nil, s.mapErr(err, lo)
	}
	return ents, nil
}

// mapWALErr turns "not in the log" into repl.ErrUnavailable; anything else
// (corruption, I/O) stays what it is.
func (s walStorage) mapErr(err error, i uint64) error {
	if errors.Is(err, wal.ErrCompacted) || errors.Is(err, wal.ErrUnavailable) {
		return fmt.Errorf("%w: index %d: %w", repl.ErrUnavailable, i, err)
	}
	if s.fatal != nil {
		s.fatal(fmt.Errorf("node: read WAL at index %d: %w", i, err))
	}
	return err
}
