package datadir

import (
	"errors"
	"strings"
	"testing"
)

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	f, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	f.Close()
	g, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	g.Close()
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	id := Identity{NodeID: "n1", ClusterID: "c1", Members: []string{"n1=a:1"}}
	if err := CheckIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	if err := CheckIdentity(dir, id); err != nil {
		t.Fatalf("same identity again: %v", err)
	}
	for _, c := range []struct {
		name string
		id   Identity
		want string
	}{
		{"node", Identity{NodeID: "n2", ClusterID: "c1"}, `node "n1"`},
		{"cluster", Identity{NodeID: "n1", ClusterID: "c2"}, "cluster c1"},
		{"mode", Identity{NodeID: "n1", ClusterID: "c1", Mode: "multi-leader"}, "single-leader node's data; this node runs multi-leader"},
	} {
		err := CheckIdentity(dir, c.id)
		if !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrWrongIdentity saying %q", c.name, err, c.want)
		}
	}
}
