package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ServerTLS names the files of the client-facing TLS setup (the HTTP port,
// and the RESP port): the node's certificate and key, and optionally a CA
// that client certificates must chain to.
type ServerTLS struct {
	CertFile, KeyFile string // PEM; both or neither
	// ClientCAFile, if set, makes clients present a certificate issued by
	// this CA (PEM) before they can send anything: mutual TLS, on top of
	// (not instead of) the users file.
	ClientCAFile string
}

// Enabled reports whether TLS is configured.
func (s ServerTLS) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// Validate checks that the fields go together, naming them as flags.
func (s ServerTLS) Validate() error {
	switch {
	case s.CertFile != "" && s.KeyFile == "":
		return fmt.Errorf("%w: --tls-cert needs --tls-key", ErrTLS)
	case s.KeyFile != "" && s.CertFile == "":
		return fmt.Errorf("%w: --tls-key needs --tls-cert", ErrTLS)
	case s.ClientCAFile != "" && s.CertFile == "":
		return fmt.Errorf("%w: --tls-client-ca needs --tls-cert and --tls-key", ErrTLS)
	}
	return nil
}

// Config loads the files and returns the server's TLS configuration (nil
// if TLS is not enabled): TLS 1.2 or later, Go's default cipher suites
// (which redis-cli, OpenSSL and browsers all share). A front end may set
// NextProtos on it.
func (s ServerTLS) Config() (*tls.Config, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if !s.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: --tls-cert %s / --tls-key %s: %v", ErrTLS, s.CertFile, s.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.ClientCAFile != "" {
		pool, err := LoadCertPool(s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// LoadCertPool reads PEM certificates from file into a pool; it fails if
// the file holds none.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrTLS, file)
	}
	return pool, nil
}
