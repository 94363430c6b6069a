package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/trireme-db/trireme/internal/node"
	"github.com/trireme-db/trireme/internal/pki"
)

// peerOpts are the node flags that decide how peers are authenticated and
// where their client addresses come from.
type peerOpts struct {
	tlsDir    string
	insecure  bool
	httpPeers string
}

func (o *peerOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.tlsDir, "peer-tls-dir", "", "certificate directory (trireme certs): peers authenticate with mutual TLS; this node reads ca.crt, ID.crt, ID.key")
	fs.BoolVar(&o.insecure, "insecure-peers", false, "run the peer port without TLS: anyone who reaches it can act as a member (tests only)")
	fs.StringVar(&o.httpPeers, "http-peers", "", "other nodes' HTTP addresses, id=host:port,... (where a follower sends clients to the leader)")
}

// apply loads the peer certificate (if any) and the peers' client addresses into cfg.
func (o *peerOpts) apply(cfg *node.Config, respPeers string, logger *slog.Logger) error {
	if o.tlsDir != "" && o.insecure {
		return errors.New("--peer-tls-dir and --insecure-peers exclude each other")
	}
	if o.tlsDir != "" {
		m, err := pki.LoadMember(o.tlsDir, cfg.ID)
		if err != nil {
			return fmt.Errorf("--peer-tls-dir %s: %w (create the certificates with: trireme certs --dir %s --nodes %s)",
				o.tlsDir, err, o.tlsDir, cfg.ID)
		}
		if m.KeyMode&0o077 != 0 {
			logger.Warn("the node's private key is readable by other users (chmod 600 it)",
				"file", filepath.Join(o.tlsDir, pki.KeyFile(cfg.ID)), "mode", m.KeyMode.String())
		}
		cfg.PeerTLS = m
	}
	httpAddrs, err := parseAddrs("--http-peers", o.httpPeers)
	if err != nil {
		return err
	}
	respAddrs, err := parseAddrs("--resp-peers", respPeers)
	if err != nil {
		return err
	}
	cfg.PeerClients = map[string]node.ClientAddrs{}
	for id, a := range httpAddrs {
		c := cfg.PeerClients[id]
		c.HTTP = a
		cfg.PeerClients[id] = c
	}
	for id, a := range respAddrs {
		c := cfg.PeerClients[id]
		c.RESP = a
		cfg.PeerClients[id] = c
	}
	delete(cfg.PeerClients, cfg.ID)
	return nil
}

// check refuses a node that is neither authenticated nor explicitly insecure.
func (o *peerOpts) check(cfg *node.Config) error {
	if cfg.PeerTLS == nil && !o.insecure {
		return errors.New("peer TLS is off: give --peer-tls-dir DIR (certificates from: trireme certs --dir DIR --nodes ID,...), or --insecure-peers to run unauthenticated (tests only)")
	}
	return nil
}

// warnInsecurePeers says loudly that the peer port is open to anyone.
func warnInsecurePeers(stderr io.Writer, logger *slog.Logger, id string) {
	fmt.Fprintf(stderr, "\n*** WARNING: node %s runs with --insecure-peers: its peer port has no TLS and no\n"+
		"*** authentication; any process that reaches it can act as a member of the cluster\n"+
		"*** (write data, win elections). Use --peer-tls-dir (trireme certs) outside tests.\n\n", id)
	logger.Warn("peer traffic is NOT authenticated (--insecure-peers)")
}

// parseAddrs parses "id=host:port,..." for flag name.
func parseAddrs(name, s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	ms, err := node.ParseCluster(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, m := range ms {
		out[m.ID] = m.PeerAddr
	}
	return out, nil
}
