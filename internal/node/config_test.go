package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/transport"
	"github.com/trireme-db/trireme/internal/vfs"
)

func TestParseCluster(t *testing.T) {
	tests := []struct {
		in      string
		want    []Member
		wantErr string
	}{
		{"n1=127.0.0.1:7001", []Member{{"n1", "127.0.0.1:7001"}}, ""},
		{"n1=127.0.0.1:7001, n2=localhost:7002", []Member{{"n1", "127.0.0.1:7001"}, {"n2", "localhost:7002"}}, ""},
		{"", nil, "--cluster is empty"},
		{"n1", nil, "not id=host:port"},
		{"=127.0.0.1:1", nil, "not id=host:port"},
		{"n1=nohostport", nil, "bad address"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCluster(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrConfig) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v %v", got, err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("member %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.ID = "n1"
		c.DataDir = "/tmp/x"
		c.Cluster = []Member{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}, {"n3", "127.0.0.1:7003"}}
		return c
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no id", func(c *Config) { c.ID = "" }, "--id"},
		{"id not a member", func(c *Config) { c.ID = "n9" }, "--id \"n9\" is not in --cluster"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "--data"},
		{"empty cluster", func(c *Config) { c.Cluster = nil }, "--cluster is empty"},
		{"duplicate id", func(c *Config) { c.Cluster[2].ID = "n2" }, "duplicate node id \"n2\""},
		{"duplicate address", func(c *Config) { c.Cluster[2].PeerAddr = "127.0.0.1:7001" }, "share the peer address"},
		{"bad address", func(c *Config) { c.Cluster[1].PeerAddr = "x" }, "bad peer address"},
		{"election vs heartbeat", func(c *Config) { c.ElectionTimeout = 2 * c.Heartbeat }, "--election-timeout"},
		{"negative priority", func(c *Config) { c.Priority = -1 }, "--priority"},
		{"semi-sync default without replicas", func(c *Config) { c.DefaultAck = api.Ack{Mode: api.AckSemiSync} }, "semi-sync"},
		{"value limit", func(c *Config) { c.MaxValueBytes = 1 << 30 }, "--max-value-bytes"},
		{"unknown priority id", func(c *Config) { c.Priorities = map[string]int{"zz": 1} }, "Priorities"},
		{"negative log retain", func(c *Config) { c.LogRetainBytes = -1 }, "--log-retain"},
		{"no log retain", func(c *Config) { c.LogRetainBytes = 0 }, ""},
		{"compact interval", func(c *Config) { c.LogCompactInterval = time.Hour }, "LogCompactInterval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if a, b := ClusterID(base().Cluster), ClusterID([]Member{{"n3", "127.0.0.1:7003"}, {"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}}); a != b {
		t.Fatalf("cluster id depends on member order: %s %s", a, b)
	}
	if a, b := ClusterID(base().Cluster), ClusterID(base().Cluster[:2]); a == b {
		t.Fatal("different member lists share a cluster id")
	}
}

func soloConfig(t testing.TB, dir string, members []Member) Config {
	cfg := testConfig(t, "n1", members, dir)
	cfg.Transport = transport.NewNetwork().Endpoint(transport.PeerInfo{ID: "n1"}, 16)
	return cfg
}

func TestStartRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	members := []Member{{"n1", "127.0.0.1:7001"}}
	n, err := Start(soloConfig(t, dir, members))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("locked", func(t *testing.T) {
		_, err := Start(soloConfig(t, dir, members))
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "LOCK") {
			t.Fatalf("second start on a locked dir: %v", err)
		}
	})
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	t.Run("other node id", func(t *testing.T) {
		cfg := soloConfig(t, dir, []Member{{"n2", "127.0.0.1:7001"}})
		cfg.ID = "n2"
		_, err := Start(cfg)
		if !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "node \"n1\"") {
			t.Fatalf("start as another node: %v", err)
		}
	})
	t.Run("other cluster", func(t *testing.T) {
		_, err := Start(soloConfig(t, dir, []Member{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}}))
		if !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "cluster") {
			t.Fatalf("start in another cluster: %v", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		cfg := soloConfig(t, dir, members)
		cfg.ID = "n7"
		if _, err := Start(cfg); !errors.Is(err, ErrConfig) {
			t.Fatalf("start with a bad config: %v", err)
		}
	})
	t.Run("same identity starts again", func(t *testing.T) {
		n, err := Start(soloConfig(t, dir, members))
		if err != nil {
			t.Fatal(err)
		}
		n.Stop()
	})
}

// TestFsyncFailureIsFatal: a failed WAL fsync stops the node; it is reported
// on Fatal and never retried.
func TestFsyncFailureIsFatal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := soloConfig(t, dir, []Member{{"n1", "127.0.0.1:7001"}})
	fs := vfs.NewMem()
	cfg.WAL.FS = fs
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n.Status().Role != "leader" {
		select {
		case <-ctx.Done():
			t.Fatal("single node never became leader")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := n.Put(ctx, []byte("a"), []byte("1"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	fs.SetFaults(vfs.Faults{Sync: func(string) error { return errors.New("injected EIO") }})
	_, err = n.Put(ctx, []byte("b"), []byte("2"), api.WriteOptions{Default: true})
	if err == nil {
		t.Fatal("write acknowledged although fsync failed")
	}
	select {
	case ferr := <-n.Fatal():
		if !strings.Contains(ferr.Error(), "injected EIO") && !strings.Contains(ferr.Error(), "fsync") {
			t.Fatalf("fatal error does not say what failed: %v", ferr)
		}
	case <-ctx.Done():
		t.Fatal("no fatal error reported")
	}
	if _, err := n.Put(ctx, []byte("c"), []byte("3"), api.WriteOptions{Default: true}); !errors.Is(err, api.ErrStopped) {
		t.Fatalf("write after a fatal error: %v", err)
	}
	if st := n.Status(); st.Role != "stopped" {
		t.Fatalf("status after a fatal error: %+v", st)
	}
}

// TestReplayRebuildsStoreFromWAL: a store that lost applied state (here: all
// of it) is rebuilt at start from the committed WAL entries.
func TestReplayRebuildsStoreFromWAL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	members := []Member{{"n1", "127.0.0.1:7001"}}
	n, err := Start(soloConfig(t, dir, members))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n.Status().Role != "leader" {
		time.Sleep(5 * time.Millisecond)
	}
	var last uint64
	for i := range 50 {
		res, err := n.Put(ctx, []byte(fmt.Sprint("k", i)), []byte(fmt.Sprint(i)), api.WriteOptions{Default: true})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Index
	}
	if _, err := n.Delete(ctx, []byte("k7"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, storeDir)); err != nil {
		t.Fatal(err)
	}
	n, err = Start(soloConfig(t, dir, members))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	// Served before any new leader could commit anything: this is the replay.
	if a := n.store.AppliedIndex(); a <= last {
		t.Fatalf("after replay the store applied %d, want > %d", a, last)
	}
	for i := range 50 {
		got, err := n.Get(ctx, []byte(fmt.Sprint("k", i)), api.Stale)
		if err != nil || got.Found != (i != 7) || (i != 7 && string(got.Value) != fmt.Sprint(i)) {
			t.Fatalf("k%d after replay: %+v %v", i, got, err)
		}
	}
}
