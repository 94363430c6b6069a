package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Errors returned by this package, wrapped with detail; test with errors.Is.
var (
	// ErrBadConfig: a Config field is out of range (the message names it).
	ErrBadConfig = errors.New("coordinator: bad config")
	// ErrBadEndpoint: a --coordinator value that ParseEndpoints refuses.
	ErrBadEndpoint = errors.New("coordinator: bad endpoint")
	// ErrBadTerm: the term key in etcd holds something other than a canonical
	// decimal uint64. Nothing is written over it; an operator must look.
	ErrBadTerm = errors.New("coordinator: bad term value in etcd")
	// ErrTermExhausted: the stored term is the largest uint64; no higher one exists.
	ErrTermExhausted = errors.New("coordinator: term exhausted")
	// ErrLeaseLost: the acquisition went through in etcd, but this Elector's
	// lease validity ran out before the answer arrived, so it may not act as
	// the holder. The key expires with the lease; try again.
	ErrLeaseLost = errors.New("coordinator: lease validity ran out during acquisition")
	// ErrContended: the term key kept changing under TryAcquire.
	ErrContended = errors.New("coordinator: term key contended, try again")
	// ErrClosed: the Elector was closed.
	ErrClosed = errors.New("coordinator: elector closed")
)

const (
	// DefaultTTL is the etcd lease TTL when Config.TTL is zero.
	DefaultTTL = 2 * time.Second
	// DefaultDialTimeout bounds New's first contact with etcd when
	// Config.DialTimeout is zero.
	DefaultDialTimeout = 2 * time.Second

	maxIDBytes      = 256
	maxClusterBytes = 128
	// maxTTL keeps the TTL in seconds well inside etcd's limit (9e9 s) and
	// keeps a misconfigured TTL from making failover take days.
	maxTTL = time.Hour
)

// Config for an Elector.
type Config struct {
	// Endpoints are etcd client endpoints, "host:port" (see ParseEndpoints).
	Endpoints []string
	// Cluster is the Trireme cluster id: keys live under /trireme/<Cluster>/.
	// Non-empty, no '/', no control characters.
	Cluster string
	// ID is this node's id, stored as the leader key's value.
	ID string
	// TTL is the etcd lease TTL. etcd grants whole seconds, at least 1 s, and
	// may raise it to its own minimum; the Elector uses what etcd granted.
	// Zero means DefaultTTL.
	TTL time.Duration
	// DialTimeout bounds New's first contact with etcd. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger receives the Elector's events (keys node, term, err). Nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the default TTL and dial timeout; the
// caller fills in Endpoints, Cluster and ID.
func DefaultConfig() Config {
	return Config{TTL: DefaultTTL, DialTimeout: DefaultDialTimeout}
}

// withDefaults fills the zero fields that have defaults.
func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first bad field, by name.
func (c Config) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return fmt.Errorf("%w: Config.Endpoints is empty", ErrBadConfig)
	case c.Cluster == "" || len(c.Cluster) > maxClusterBytes:
		return fmt.Errorf("%w: Config.Cluster = %q, want 1..%d bytes", ErrBadConfig, c.Cluster, maxClusterBytes)
	case strings.ContainsFunc(c.Cluster, func(r rune) bool { return r == '/' || r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%w: Config.Cluster = %q, want no '/' or control characters (it is a key path element)", ErrBadConfig, c.Cluster)
	case c.ID == "" || len(c.ID) > maxIDBytes:
		return fmt.Errorf("%w: Config.ID = %q, want 1..%d bytes", ErrBadConfig, c.ID, maxIDBytes)
	case c.TTL < time.Second || c.TTL > maxTTL:
		return fmt.Errorf("%w: Config.TTL = %v, want 1s..%v (etcd grants leases in whole seconds, at least 1s)", ErrBadConfig, c.TTL, maxTTL)
	case c.TTL%time.Second != 0:
		return fmt.Errorf("%w: Config.TTL = %v, want a whole number of seconds (etcd grants leases in whole seconds)", ErrBadConfig, c.TTL)
	case c.DialTimeout <= 0:
		return fmt.Errorf("%w: Config.DialTimeout = %v, want > 0", ErrBadConfig, c.DialTimeout)
	}
	for i, ep := range c.Endpoints {
		if _, err := parseHostPort(ep); err != nil {
			return fmt.Errorf("%w: Config.Endpoints[%d]: %w", ErrBadConfig, i, err)
		}
	}
	return nil
}

// endpointScheme is the only scheme the --coordinator flag accepts.
const endpointScheme = "etcd://"

// ParseEndpoints parses the --coordinator flag value
// "etcd://HOST:PORT[,HOST:PORT...]"; each further element may repeat the
// scheme ("etcd://h1:p1,etcd://h2:p2"). HOST is a host name or an IP address
// (IPv6 in brackets); PORT is 1..65535. Spaces around elements are ignored.
// It returns the endpoints as "host:port", in order, and refuses duplicates.
func ParseEndpoints(s string) ([]string, error) {
	trimmed := strings.TrimSpace(s)
	if trimmed == "" {
		return nil, fmt.Errorf("%w: empty; want etcd://HOST:PORT[,HOST:PORT...]", ErrBadEndpoint)
	}
	rest, ok := cutScheme(trimmed)
	if !ok {
		return nil, fmt.Errorf("%w: %q: %s", ErrBadEndpoint, s, schemeProblem(trimmed))
	}
	var out []string
	seen := make(map[string]bool)
	for i, elem := range strings.Split(rest, ",") {
		elem = strings.TrimSpace(elem)
		if i > 0 {
			if r, ok := cutScheme(elem); ok {
				elem = r
			} else if strings.Contains(elem, "://") {
				return nil, fmt.Errorf("%w: %q: element %d: %s", ErrBadEndpoint, s, i+1, schemeProblem(elem))
			}
		}
		ep, err := parseHostPort(elem)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: element %d: %w", ErrBadEndpoint, s, i+1, err)
		}
		if seen[ep] {
			return nil, fmt.Errorf("%w: %q: endpoint %s given twice", ErrBadEndpoint, s, ep)
		}
		seen[ep] = true
		out = append(out, ep)
	}
	return out, nil
}

// cutScheme removes a leading "etcd://" (case-insensitive, as URL schemes are).
func cutScheme(s string) (string, bool) {
	if len(s) >= len(endpointScheme) && strings.EqualFold(s[:len(endpointScheme)], endpointScheme) {
		return s[len(endpointScheme):], true
	}
	return s, false
}

// schemeProblem says what is wrong with the scheme of s, which lacks etcd://.
func schemeProblem(s string) string {
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		return fmt.Sprintf("scheme %q is not supported, want etcd://HOST:PORT", scheme+"://")
	}
	return "missing the etcd:// scheme, want etcd://HOST:PORT"
}

// parseHostPort checks one "host:port" and returns it in canonical form.
func parseHostPort(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty endpoint (stray comma?)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q: want HOST:PORT: %w", s, err)
	}
	if err := checkHost(host); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if strings.HasPrefix(s, "[") && net.ParseIP(host) == nil {
		return "", fmt.Errorf("%q: brackets are for IPv6 addresses only", s)
	}
	p, err := parsePort(port)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// checkHost accepts an IP address or a host name of letters, digits, '-',
// '_' and '.', so that paths, user info and queries are refused rather than
// passed to the dialer.
func checkHost(host string) error {
	if host == "" {
		return errors.New("missing host")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 {
		return fmt.Errorf("host is %d bytes, want at most 253", len(host))
	}
	for _, r := range host {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("host %q: character %q is not allowed in a host name", host, r)
		}
	}
	return nil
}

// parsePort accepts 1..65535 in decimal digits only (no sign, no spaces).
func parsePort(port string) (int, error) {
	if port == "" {
		return 0, errors.New("missing port")
	}
	if len(port) > 5 || strings.ContainsFunc(port, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, fmt.Errorf("port %q: want a number 1..65535", port)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q: want a number 1..65535", port)
	}
	return p, nil
}
