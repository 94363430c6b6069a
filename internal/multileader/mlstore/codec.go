package mlstore

import (
	"encoding/binary"
	"fmt"

	"github.com/trireme-db/trireme/internal/multileader"
	"github.com/trireme-db/trireme/internal/vclock"
)

// Key prefixes and metadata keys. Part of the format.
const (
	prefixMeta     byte = 0x00
	prefixStream   byte = 0x01
	prefixState    byte = 0x02
	prefixPosition byte = 0x03
	prefixConflict byte = 0x04
	prefixEnd      byte = 0x05 // exclusive upper bound of the conflict log
)

var (
	keyFormat  = []byte{prefixMeta, 'f'}
	keyDropped = []byte{prefixMeta, 'd'}
)

// Format versions. Part of the format.
const (
	formatVersion   uint64 = 1 // the database (under keyFormat)
	stateVersion    byte   = 1 // a key state value
	conflictVersion byte   = 1 // a conflict record value
)

func seqKey(prefix byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefix}, seq)
}

func stringKey(prefix byte, s string) []byte {
	return append([]byte{prefix}, s...)
}

// keySeq returns the sequence number of a stream or conflict key.
func keySeq(k []byte) (uint64, bool) {
	if len(k) != 9 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

func be64(u uint64) []byte { return binary.BigEndian.AppendUint64(nil, u) }

func decodeBE64(v []byte) (uint64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func appendState(b []byte, st *multileader.KeyState) []byte {
	b = append(b, stateVersion)
	b = vclock.AppendSet(b, st.Reg)
	return vclock.AppendCounter(b, st.Ctr)
}

// decodeState decodes a key state. Its values alias b.
func decodeState(b []byte) (multileader.KeyState, error) {
	r := vclock.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != stateVersion {
		return multileader.KeyState{}, fmt.Errorf("key state version %d (this build reads %d)", v, stateVersion)
	}
	st := multileader.KeyState{Reg: r.Set(), Ctr: r.Counter()}
	if err := r.Finish(); err != nil {
		return multileader.KeyState{}, err
	}
	return st, nil
}

// minDot is the smallest encoded loser.
const minDot = 1 + 1

func appendConflict(b []byte, c *multileader.Conflict) []byte {
	b = append(b, conflictVersion)
	b = appendString(b, c.Node)
	b = appendString(b, c.Key)
	b = appendString(b, c.Reason)
	b = appendDot(b, c.Winner)
	b = binary.AppendUvarint(b, uint64(len(c.Versions)))
	for _, x := range c.Versions {
		b = vclock.AppendSibling(b, x)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Losers)))
	for _, d := range c.Losers {
		b = appendDot(b, d)
	}
	return b
}

// decodeConflict decodes a conflict record. Empty values and lists decode
// as nil; values alias b.
func decodeConflict(b []byte) (multileader.Conflict, error) {
	r := vclock.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != conflictVersion {
		return multileader.Conflict{}, fmt.Errorf("conflict record version %d (this build reads %d)", v, conflictVersion)
	}
	c := multileader.Conflict{Node: string(r.Bytes()), Key: string(r.Bytes()), Reason: string(r.Bytes()), Winner: readDot(r)}
	n := r.Count(vclock.MinSiblingLen)
	if n > 0 {
		c.Versions = make([]vclock.Sibling, 0, n)
	}
	for range n {
		c.Versions = append(c.Versions, r.Sibling())
	}
	n = r.Count(minDot)
	if n > 0 {
		c.Losers = make([]vclock.Dot, 0, n)
	}
	for range n {
		c.Losers = append(c.Losers, readDot(r))
	}
	if err := r.Finish(); err != nil {
		return multileader.Conflict{}, err
	}
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendDot(b []byte, d vclock.Dot) []byte {
	return binary.AppendUvarint(appendString(b, d.Node), d.Counter)
}

func readDot(r *vclock.Reader) vclock.Dot {
	return vclock.Dot{Node: string(r.Bytes()), Counter: r.Uvarint()}
}
