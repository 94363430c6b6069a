package store

import (
	"bytes"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
)

// The configuration of the last config entry applied survives a restart,
// with the buffered and the direct apply paths mixed.
func TestConfKeptWithTheData(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if c, err := s.Conf(); err != nil || c != nil {
		t.Fatalf("new store: Conf() = %q, %v; want nil", c, err)
	}
	ents := []entry.Entry{
		{Term: 1, Index: 1, Kind: entry.KindPut, Key: []byte("a"), Value: []byte("1")},
		{Term: 1, Index: 2, Kind: entry.KindConfig, Value: []byte(`{"members":["first"]}`)},
		{Term: 1, Index: 3, Kind: entry.KindPut, Key: []byte("b"), Value: []byte("2")},
	}
	if err := s.Apply(ents); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]entry.Entry{{Term: 2, Index: 4, Kind: entry.KindConfig, Value: []byte(`second`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]entry.Entry{{Term: 2, Index: 5, Kind: entry.KindPut, Key: []byte("c"), Value: []byte("3")}}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Conf(); err != nil || !bytes.Equal(c, []byte("second")) {
		t.Fatalf("Conf() = %q, %v; want second", c, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if c, err := s.Conf(); err != nil || !bytes.Equal(c, []byte("second")) {
		t.Fatalf("after reopening: Conf() = %q, %v; want second", c, err)
	}
	if v, _, ok, err := s.Get([]byte("c")); err != nil || !ok || string(v) != "3" {
		t.Fatalf("Get(c) = %q %v %v", v, ok, err)
	}
}
