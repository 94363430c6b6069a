package node

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/datadir"
)

// extractTgz unpacks a .tgz of regular files and directories into dir.
func extractTgz(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			out.Close()
		}
	}
}

// TestDataDirFromPreviousRelease starts a node on a data directory written by
// the release before log compaction, snapshots and membership (stop 22,
// commit 4e5a23b: a one-node cluster, key-1..key-100 = value-1..value-100
// written with ack=majority, then SIGTERM). It must start, serve the keys,
// take writes, list itself as the only member, and restart again.
func TestDataDirFromPreviousRelease(t *testing.T) {
	dir := t.TempDir()
	extractTgz(t, filepath.Join("testdata", "datadir-stop22.tgz"), dir)
	b, err := os.ReadFile(filepath.Join(dir, "n1", datadir.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	var id datadir.Identity
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &testCluster{t: t}
	cfg := testConfig(t, "n1", []Member{{ID: "n1", PeerAddr: addr}}, filepath.Join(dir, "n1"))
	cfg.ClusterID = id.ClusterID // recorded from the old --cluster (another port)
	c.cfgs = []Config{cfg}
	c.nodes = []*Node{nil}
	c.start(0)
	t.Cleanup(func() { c.stop(0) })
	c.leader()
	for i := 1; i <= 100; i++ {
		c.waitStale(0, fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i))
	}
	mustPut(t, c.nodes[0], "after-upgrade", "1", api.Ack{Mode: api.AckMajority})
	ms, err := c.nodes[0].Members(ctxT(t))
	if err != nil || len(ms) != 1 || ms[0].ID != "n1" || ms[0].Role != api.RoleVoter {
		t.Fatalf("members of the upgraded cluster: %+v, %v", ms, err)
	}
	c.stop(0)
	c.start(0)
	c.leader()
	c.waitStale(0, "after-upgrade", "1")
	c.waitStale(0, "key-100", "value-100")
}
