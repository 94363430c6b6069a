package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names in a certificate directory. Part of the directory layout.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CertFile is the name of member id's certificate file.
func CertFile(id string) string { return id + ".crt" }

// KeyFile is the name of member id's private key file.
func KeyFile(id string) string { return id + ".key" }

// URI forms in certificates. Part of the certificate format.
const (
	uriScheme      = "trireme"
	clusterURIHost = "cluster"
	memberURIHost  = "member"
)

// Errors returned (wrapped) by this package.
var (
	// ErrNoIdentity: a certificate names no member id or cluster id (or several).
	ErrNoIdentity = errors.New("pki: certificate names no single trireme identity")
	// ErrBadID: a member or cluster id that cannot be put in a certificate or a file name.
	ErrBadID = errors.New("pki: bad id")
	// ErrNotIssued: a member certificate does not chain to the directory's CA.
	ErrNotIssued = errors.New("pki: certificate not issued by this cluster's CA")
)

// Config says how new certificates are made.
type Config struct {
	// ClusterID goes into a new CA; empty mints a random one (NewClusterID).
	// Ignored when the directory already has a CA.
	ClusterID string
	// CAValidity and MemberValidity are the lifetimes of new certificates.
	CAValidity, MemberValidity time.Duration
	// Rand is the source of keys, serial numbers and cluster ids; nil = crypto/rand.
	Rand io.Reader
	// Now is the clock for validity periods; nil = time.Now.
	Now func() time.Time
}

// DefaultConfig: a CA valid for 10 years, member certificates for 5.
func DefaultConfig() Config {
	return Config{CAValidity: 10 * 365 * 24 * time.Hour, MemberValidity: 5 * 365 * 24 * time.Hour}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	if c.ClusterID != "" {
		if err := CheckID(c.ClusterID); err != nil {
			return fmt.Errorf("pki: Config.ClusterID: %w", err)
		}
	}
	if c.CAValidity <= 0 || c.MemberValidity <= 0 {
		return errors.New("pki: Config.CAValidity and MemberValidity must be > 0")
	}
	return nil
}

func (c *Config) rand() io.Reader {
	if c.Rand == nil {
		return rand.Reader
	}
	return c.Rand
}

func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// CheckID reports whether id can name a member or a cluster: 1 to 64
// letters, digits, '-', '_' or '.', not starting with '.' (ids become file
// names and URI paths).
func CheckID(id string) error {
	if id == "" || len(id) > 64 || id[0] == '.' {
		return fmt.Errorf("%w %q: want 1-64 of [A-Za-z0-9._-], not starting with '.'", ErrBadID, id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("%w %q: want 1-64 of [A-Za-z0-9._-], not starting with '.'", ErrBadID, id)
		}
	}
	return nil
}

// NewClusterID returns a random cluster id: 16 bytes from r, in hex.
func NewClusterID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("pki: minting a cluster id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Result is what Ensure found and did.
type Result struct {
	ClusterID string   // the CA's cluster id
	Created   []string // files written, in order
}

// Ensure makes dir hold a CA and a certificate for each of ids, creating what
// is missing: a CA (with cfg.ClusterID, or a random id) if dir has none, and
// the certificate and key of each member that has none. Existing files are
// never overwritten; a member certificate already there must chain to the CA.
// It needs ca.key only when it has a certificate to issue.
func Ensure(dir string, ids []string, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	for _, id := range ids {
		if err := CheckID(id); err != nil {
			return Result{}, fmt.Errorf("pki: member id: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("pki: %w", err)
	}
	var res Result
	ca, caKey, err := loadCA(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !exists(filepath.Join(dir, CACertFile)):
		if ca, caKey, err = newCA(dir, &cfg); err != nil {
			return res, err
		}
		res.Created = append(res.Created, CACertFile, CAKeyFile)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return res, err
	}
	// ca is set from here; caKey may be nil (ca.key kept elsewhere).
	if res.ClusterID, err = ClusterIDOf(ca); err != nil {
		return res, fmt.Errorf("pki: %s: %w", filepath.Join(dir, CACertFile), err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, id := range ids {
		certPath := filepath.Join(dir, CertFile(id))
		if exists(certPath) {
			if _, err := loadMemberCert(certPath, roots, id); err != nil {
				return res, err
			}
			continue
		}
		if caKey == nil {
			return res, fmt.Errorf("pki: cannot issue %s: %s is missing", certPath, filepath.Join(dir, CAKeyFile))
		}
		if err := issue(dir, id, ca, caKey, &cfg); err != nil {
			return res, err
		}
		res.Created = append(res.Created, CertFile(id), KeyFile(id))
	}
	return res, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// loadCA reads ca.crt and, if present, ca.key (nil when absent).
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca, err := readCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, err
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	key, err := readKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return ca, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("pki: %s does not match %s", keyPath, filepath.Join(dir, CACertFile))
	}
	return ca, key, nil
}

func newCA(dir string, cfg *Config) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	clusterID := cfg.ClusterID
	if clusterID == "" {
		var err error
		if clusterID, err = NewClusterID(cfg.rand()); err != nil {
			return nil, nil, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), cfg.rand())
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA key: %w", err)
	}
	serial, err := newSerial(cfg.rand())
	if err != nil {
		return nil, nil, err
	}
	now := cfg.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Trireme cluster CA"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between machines
		NotAfter:              now.Add(cfg.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: uriScheme, Host: clusterURIHost, Path: "/" + clusterID}},
	}
	der, err := x509.CreateCertificate(cfg.rand(), tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	// The key first: a ca.crt without its ca.key is a directory that can verify
	// but not issue; the reverse would be unusable.
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(filepath.Join(dir, CACertFile), "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func issue(dir, id string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cfg *Config) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), cfg.rand())
	if err != nil {
		return fmt.Errorf("pki: key for %s: %w", id, err)
	}
	serial, err := newSerial(cfg.rand())
	if err != nil {
		return err
	}
	now := cfg.now()
	notAfter := now.Add(cfg.MemberValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{memberURI(id)},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(cfg.rand(), tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: certificate for %s: %w", id, err)
	}
	if err := writeKey(filepath.Join(dir, KeyFile(id)), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, CertFile(id)), "CERTIFICATE", der, 0o644)
}

func memberURI(id string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: memberURIHost, Path: "/" + id}
}

func newSerial(r io.Reader) (*big.Int, error) {
	n, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// uriID returns the one id under trireme://HOST/ in cert's URI SANs.
func uriID(cert *x509.Certificate, host string) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme && u.Host == host {
			ids = append(ids, strings.TrimPrefix(u.Path, "/"))
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%w: %d trireme://%s/ URIs", ErrNoIdentity, len(ids), host)
	}
	if err := CheckID(ids[0]); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoIdentity, err)
	}
	return ids[0], nil
}

// MemberID returns the member id a (verified) member certificate names.
func MemberID(cert *x509.Certificate) (string, error) {
	return uriID(cert, memberURIHost)
}

// ClusterIDOf returns the cluster id a CA certificate names.
func ClusterIDOf(ca *x509.Certificate) (string, error) {
	return uriID(ca, clusterURIHost)
}

// Member is what one node needs to authenticate itself and its peers.
type Member struct {
	// ID is the member id its certificate names.
	ID string
	// ClusterID is the id the CA names: the cluster's identity.
	ClusterID string
	// Cert is the member's certificate chain and private key.
	Cert tls.Certificate
	// Roots holds the cluster CA: a peer's certificate must chain to it.
	Roots *x509.CertPool
	// KeyMode is the permission bits of the key file (0600 expected).
	KeyMode fs.FileMode
}

// LoadMember reads dir/ca.crt, dir/ID.crt and dir/ID.key and checks that the
// certificate names id, chains to the CA and matches the key.
func LoadMember(dir, id string) (*Member, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	ca, err := readCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	clusterID, err := ClusterIDOf(ca)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", filepath.Join(dir, CACertFile), err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	certPath, keyPath := filepath.Join(dir, CertFile(id)), filepath.Join(dir, KeyFile(id))
	leaf, err := loadMemberCert(certPath, roots, id)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("pki: %s does not match %s", keyPath, certPath)
	}
	st, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &Member{ID: id, ClusterID: clusterID, Roots: roots, KeyMode: st.Mode().Perm(),
		Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}}, nil
}

// loadMemberCert reads a member certificate and checks its chain, its usages and its id.
func loadMemberCert(path string, roots *x509.CertPool, id string) (*x509.Certificate, error) {
	leaf, err := readCert(path)
	if err != nil {
		return nil, err
	}
	if _, err := VerifyMember(leaf, nil, roots, time.Now(), x509.ExtKeyUsageClientAuth); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	got, err := MemberID(leaf)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	if got != id {
		return nil, fmt.Errorf("pki: %s names member %q, not %q", path, got, id)
	}
	return leaf, nil
}

// VerifyMember checks that leaf chains to roots (through intermediates, if
// any) for usage at time now, and returns the member id it names.
func VerifyMember(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool,
	now time.Time, usage x509.ExtKeyUsage) (string, error) {
	var inter *x509.CertPool
	if len(intermediates) > 0 {
		inter = x509.NewCertPool()
		for _, c := range intermediates {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotIssued, err)
	}
	return MemberID(leaf)
}

// Members lists the member ids that have a certificate in dir, sorted.
func Members(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".crt"); ok && e.Name() != CACertFile {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("pki: %s holds no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: %s: a %T, want an ECDSA key", path, k)
	}
	return ek, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writePEM creates path (never replacing a file) with mode, writes and fsyncs it.
func writePEM(path, typ string, der []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: typ, Bytes: der})
	if err == nil {
		err = f.Chmod(mode) // exactly mode, whatever the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	return nil
}
