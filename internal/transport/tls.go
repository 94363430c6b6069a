package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/trireme-db/trireme/internal/pki"
)

// newServerTLS is the acceptor's TLS configuration: TLS 1.3 only, a client
// certificate that chains to the cluster CA (checked by crypto/tls) and names
// a member other than this node (checked here).
func (t *TCP) newServerTLS() *tls.Config {
	m := t.cfg.TLS
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.Roots,
		// Every connection shows its certificate: no resumption from a ticket
		// issued while the peer was (still) a member.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no client certificate", ErrHandshake)
			}
			id, err := pki.MemberID(cs.PeerCertificates[0])
			if err != nil {
				return fmt.Errorf("%w: %w", ErrHandshake, err)
			}
			if t.peer(NodeID(id)) == nil {
				return fmt.Errorf("%w: certificate of %q, not a member", ErrHandshake, id)
			}
			return nil
		},
	}
}

// newClientTLS is the dialer's TLS configuration for peer want: the server's
// certificate must chain to the cluster CA and name want. Host names are not
// checked (a peer address may be a proxy or a NAT): the member id is the
// identity.
func (t *TCP) newClientTLS(want NodeID) *tls.Config {
	m := t.cfg.TLS
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.Cert},
		// Chain and identity are checked in VerifyConnection instead of
		// against a host name; the handshake still proves the server holds
		// the certificate's key.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: %s sent no certificate", ErrHandshake, want)
			}
			id, err := pki.VerifyMember(cs.PeerCertificates[0], cs.PeerCertificates[1:], m.Roots, time.Now(),
				x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrHandshake, want, err)
			}
			if NodeID(id) != want {
				return fmt.Errorf("%w: dialed %q but the certificate names %q (check --cluster addresses)", ErrHandshake, want, id)
			}
			return nil
		},
	}
}

// certPeer returns the member id of a verified TLS connection's peer.
func certPeer(tc *tls.Conn) NodeID {
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, _ := pki.MemberID(cs.PeerCertificates[0]) // verified in VerifyConnection
	return NodeID(id)
}

// remoteTLSRefusal wraps in ErrHandshake an error that says the peer refused
// our certificate (a TLS alert), so that it is logged as a refusal.
func remoteTLSRefusal(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return err
}

// warnLimiter logs a warning at most once per interval and counts the rest,
// so that a stranger hammering the peer port cannot flood the log.
type warnLimiter struct {
	log   *slog.Logger
	every time.Duration

	mu         sync.Mutex
	last       time.Time // guarded by mu
	suppressed int       // guarded by mu
}

func (w *warnLimiter) warn(msg string, args ...any) {
	w.mu.Lock()
	now := time.Now()
	if now.Sub(w.last) < w.every {
		w.suppressed++
		w.mu.Unlock()
		return
	}
	n := w.suppressed
	w.last, w.suppressed = now, 0
	w.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	w.log.Warn(msg, args...)
}
