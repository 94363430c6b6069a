package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trireme-db/trireme/internal/auth"
)

// requirepassEnv holds the default user's password when --requirepass-file
// is not given. Unlike a flag value, the environment of a process is not
// shown by ps to other users.
const requirepassEnv = "TRIREME_REQUIREPASS"

// clientAuthOpts are the node flags for client credentials and for TLS on
// the client ports.
type clientAuthOpts struct {
	users, requirepassFile string
	tls                    auth.ServerTLS
	openMetrics            bool
}

func (o *clientAuthOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.users, "users", "", "users file (made with trireme users): clients must authenticate, over HTTP with \"Authorization: Bearer TOKEN\"")
	fs.StringVar(&o.requirepassFile, "requirepass-file", "", "file whose first line is the password of the user \"default\" (role admin), like Redis's requirepass (default $"+requirepassEnv+"); never on the command line, where ps shows it")
	fs.StringVar(&o.tls.CertFile, "tls-cert", "", "certificate (PEM) for clients: HTTPS on --http, TLS on --resp")
	fs.StringVar(&o.tls.KeyFile, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&o.tls.ClientCAFile, "tls-client-ca", "", "CA (PEM) whose certificates clients must present (mutual TLS), on top of credentials")
	fs.BoolVar(&o.openMetrics, "open-metrics", false, "with credentials on: serve /metrics without them")
}

// load builds the authenticator (disabled without --users and a default
// password) and the client-port TLS configuration (nil without
// --tls-cert), naming the flag at fault.
func (o *clientAuthOpts) load(logger *slog.Logger, httpAddr string) (*auth.Authenticator, *tls.Config, error) {
	cfg := auth.DefaultConfig()
	cfg.Logger = logger
	if o.users != "" {
		u, err := auth.LoadUsers(o.users)
		if err != nil {
			return nil, nil, fmt.Errorf("--users: %w", err)
		}
		if u.Mode&0o077 != 0 {
			logger.Warn("the users file is readable by other users; its password hashes can be attacked offline (chmod 600 it)",
				"file", o.users, "mode", u.Mode.String())
		}
		cfg.Users = u
	}
	pw, err := o.defaultPassword()
	if err != nil {
		return nil, nil, err
	}
	cfg.DefaultPassword = pw
	a, err := auth.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--users / --requirepass-file: %w", err)
	}
	if o.openMetrics && !a.Enabled() {
		return nil, nil, errors.New("--open-metrics applies only with --users or a default password")
	}
	tcfg, err := o.tls.Config()
	if err != nil {
		return nil, nil, err
	}
	if a.Enabled() && tcfg == nil && !loopback(httpAddr) {
		logger.Warn("client credentials travel in clear text: give --tls-cert and --tls-key")
	}
	users, tokens := 0, 0
	if cfg.Users != nil {
		users, tokens = len(cfg.Users.Users), len(cfg.Users.Tokens)
	}
	logger.Info("client access", "auth", a.Enabled(), "users", users, "tokens", tokens,
		"default_password", pw != "", "tls", tcfg != nil, "client_certs", o.tls.ClientCAFile != "")
	return a, tcfg, nil
}

// defaultPassword reads --requirepass-file, else $TRIREME_REQUIREPASS.
func (o *clientAuthOpts) defaultPassword() (string, error) {
	env, inEnv := os.LookupEnv(requirepassEnv)
	if o.requirepassFile == "" {
		return env, nil
	}
	if inEnv && env != "" {
		return "", fmt.Errorf("--requirepass-file and $%s are both set; keep one", requirepassEnv)
	}
	b, err := os.ReadFile(o.requirepassFile)
	if err != nil {
		return "", fmt.Errorf("--requirepass-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("--requirepass-file %s: the first line is empty", o.requirepassFile)
	}
	return line, nil
}

// httpTLS is the client TLS configuration for the HTTP port: HTTP/1.1
// only, the protocol whose limits the API sets and tests.
func httpTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{"http/1.1"}
	return c
}

// authRegistry is a metrics registry for the node that also counts auth
// failures, labelled with the node's id as the node's own metrics are; nil
// (the node's default registry) when auth is off.
func authRegistry(id string, a *auth.Authenticator) (prometheus.Registerer, error) {
	if !a.Enabled() {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	if err := prometheus.WrapRegistererWith(prometheus.Labels{"node": id}, reg).Register(a); err != nil {
		return nil, err
	}
	return reg, nil
}

// loopback reports whether addr listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
