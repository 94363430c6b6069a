package node

import (
	"errors"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/pki"
)

// With peer TLS, the cluster id is the CA's (random, minted with it), and the
// certificate must be this node's.
func TestConfigPeerTLS(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Ensure(dir, []string{"n1", "n2"}, pki.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	m1, err := pki.LoadMember(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	members := []Member{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}}
	base := func() Config {
		cfg := DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.Cluster, cfg.PeerTLS = "n1", t.TempDir(), members, m1
		return cfg
	}
	cfg := base()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.clusterID(); got != m1.ClusterID || got == ClusterID(members) || len(got) != 32 {
		t.Fatalf("cluster id %q, want the CA's %q", got, m1.ClusterID)
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		mention string
	}{
		{"another node's certificate", func(c *Config) { c.ID = "n2" }, "--peer-tls-dir"},
		{"another cluster id", func(c *Config) { c.ClusterID = "other" }, "--cluster-id"},
		{"client addresses of a non-member", func(c *Config) { c.PeerClients = map[string]ClientAddrs{"n9": {HTTP: "h:1"}} }, "n9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.edit(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("got %v, want an ErrConfig naming %s", err, tc.mention)
			}
		})
	}
	cfg = base()
	cfg.ClusterID = m1.ClusterID // the same id, given twice: fine
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
