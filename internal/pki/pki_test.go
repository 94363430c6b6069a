package pki

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustEnsure(t *testing.T, dir string, ids []string, clusterID string) Result {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ClusterID = clusterID
	res, err := Ensure(dir, ids, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(to)
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	res := mustEnsure(t, dir, []string{"n1", "n2"}, "")
	want := []string{CACertFile, CAKeyFile, "n1.crt", "n1.key", "n2.crt", "n2.key"}
	if !slices.Equal(res.Created, want) || len(res.ClusterID) != 32 {
		t.Fatalf("created %v, cluster id %q", res.Created, res.ClusterID)
	}
	for _, f := range want {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".key") {
			mode = 0o600
		}
		if st.Mode().Perm() != mode {
			t.Fatalf("%s has mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}
	// Idempotent; a new member gets a certificate from the same CA.
	if again := mustEnsure(t, dir, []string{"n1", "n2"}, ""); len(again.Created) != 0 || again.ClusterID != res.ClusterID {
		t.Fatalf("second Ensure: %+v", again)
	}
	if more := mustEnsure(t, dir, []string{"n1", "n2", "n3"}, "ignored-for-an-existing-ca"); !slices.Equal(more.Created, []string{"n3.crt", "n3.key"}) ||
		more.ClusterID != res.ClusterID {
		t.Fatalf("adding n3: %+v", more)
	}
	if ids, err := Members(dir); err != nil || !slices.Equal(ids, []string{"n1", "n2", "n3"}) {
		t.Fatalf("Members: %v %v", ids, err)
	}
	m, err := LoadMember(dir, "n3")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "n3" || m.ClusterID != res.ClusterID || m.KeyMode != 0o600 || m.Cert.Leaf == nil {
		t.Fatalf("member %+v", m)
	}
	leaf := m.Cert.Leaf
	if leaf.Subject.CommonName != "n3" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "trireme://member/n3" {
		t.Fatalf("certificate names %q %v", leaf.Subject.CommonName, leaf.URIs)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if id, err := VerifyMember(leaf, nil, m.Roots, time.Now(), u); err != nil || id != "n3" {
			t.Fatalf("VerifyMember for usage %v: %q %v", u, id, err)
		}
	}
	// Another directory: another random cluster id, or the one asked for.
	if other := mustEnsure(t, t.TempDir(), []string{"n1"}, ""); other.ClusterID == res.ClusterID {
		t.Fatal("two CAs share a cluster id")
	}
	if given := mustEnsure(t, t.TempDir(), []string{"n1"}, "chaos-7"); given.ClusterID != "chaos-7" {
		t.Fatalf("cluster id %q", given.ClusterID)
	}
}

func TestLoadMemberRefuses(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	mustEnsure(t, dir, []string{"n1", "n2"}, "")
	mustEnsure(t, other, []string{"n1"}, "")
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		id      string
		mention string
	}{
		{"missing certificate", func(*testing.T, string) {}, "n9", "n9.crt"},
		{"certificate of another CA", func(t *testing.T, d string) {
			mustCopy(t, filepath.Join(other, "n1.crt"), filepath.Join(d, "n1.crt"))
			mustCopy(t, filepath.Join(other, "n1.key"), filepath.Join(d, "n1.key"))
		}, "n1", "not issued"},
		{"certificate of another member", func(t *testing.T, d string) {
			mustCopy(t, filepath.Join(d, "n2.crt"), filepath.Join(d, "n1.crt"))
		}, "n1", `names member "n2"`},
		{"key of another member", func(t *testing.T, d string) {
			mustCopy(t, filepath.Join(d, "n2.key"), filepath.Join(d, "n1.key"))
		}, "n1", "does not match"},
		{"bad id", func(*testing.T, string) {}, "../n1", "bad id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			for _, f := range []string{CACertFile, "n1.crt", "n1.key", "n2.crt", "n2.key"} {
				mustCopy(t, filepath.Join(dir, f), filepath.Join(d, f))
			}
			tc.setup(t, d)
			_, err := LoadMember(d, tc.id)
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.mention)
			}
		})
	}
}

func TestEnsureWithoutCAKey(t *testing.T) {
	dir := t.TempDir()
	mustEnsure(t, dir, []string{"n1"}, "")
	os.Remove(filepath.Join(dir, CAKeyFile))
	// What exists still checks out; a new certificate needs the key.
	if res := mustEnsure(t, dir, []string{"n1"}, ""); len(res.Created) != 0 {
		t.Fatalf("created %v", res.Created)
	}
	if _, err := Ensure(dir, []string{"n1", "n2"}, DefaultConfig()); err == nil || !strings.Contains(err.Error(), CAKeyFile) {
		t.Fatalf("issuing without ca.key: %v", err)
	}
	// A CA key alone is not overwritten by a new CA.
	d2 := t.TempDir()
	os.WriteFile(filepath.Join(d2, CAKeyFile), []byte("x"), 0o600)
	if _, err := Ensure(d2, []string{"n1"}, DefaultConfig()); err == nil {
		t.Fatal("Ensure replaced a lone ca.key")
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"n1", "node-2", "a.b_c", strings.Repeat("x", 64)} {
		if err := CheckID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", ".hidden", "a/b", "a b", "a=b", "é", strings.Repeat("x", 65)} {
		if err := CheckID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("%q accepted: %v", id, err)
		}
	}
}
