package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/trireme-db/trireme/internal/pki"
)

const certsDetails = `
Creates the certificates that let nodes authenticate each other (mutual TLS
on the peer port): a cluster CA and one certificate per node, in --dir.
Run it again with more --nodes to add certificates: what exists is kept
(ca.key is then needed to sign). The CA carries the cluster's id, random
unless --cluster-id is given; a node's data directory remembers it.

Files: ca.crt (every node), ca.key (signing only: keep it off the nodes),
ID.crt and ID.key (node ID only; keys are written with mode 0600). A node
uses them with "trireme node --id ID --peer-tls-dir DIR"; it reads only
ca.crt, ID.crt and ID.key. trireme up does this by itself in DATA/certs.

Example:
  trireme certs --dir certs --nodes n1,n2,n3
  trireme node --id n1 --data d/n1 --peer-tls-dir certs \
      --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
`

type certsOpts struct {
	dir, nodes, clusterID string
}

func certsFlags() (*flag.FlagSet, *certsOpts) {
	o := &certsOpts{}
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "certificate directory, created if missing (required)")
	fs.StringVar(&o.nodes, "nodes", "", "node ids to issue certificates for, comma-separated, e.g. n1,n2,n3 (required)")
	fs.StringVar(&o.clusterID, "cluster-id", "", "cluster id for a new CA (default: random); give the old one to re-create a lost CA for existing data directories")
	return fs, o
}

func runCerts(args []string, stdout, stderr io.Writer) int {
	fs, o := certsFlags()
	pos, err := parse(fs, "certs", args, stdout, stderr)
	if err != nil {
		return exitParse(err)
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "trireme certs: %v\n", err)
		return code
	}
	switch {
	case len(pos) > 0:
		return fail(2, fmt.Errorf("unexpected argument %q (flags start with --)", pos[0]))
	case o.dir == "":
		return fail(2, errors.New("--dir is required"))
	case strings.TrimSpace(o.nodes) == "":
		return fail(2, errors.New("--nodes is required (e.g. n1,n2,n3)"))
	}
	var ids []string
	for _, id := range strings.Split(o.nodes, ",") {
		id = strings.TrimSpace(id)
		if err := pki.CheckID(id); err != nil {
			return fail(2, fmt.Errorf("--nodes: %w", err))
		}
		ids = append(ids, id)
	}
	cfg := pki.DefaultConfig()
	cfg.ClusterID = o.clusterID
	if err := cfg.Validate(); err != nil {
		return fail(2, fmt.Errorf("--cluster-id: %w", err))
	}
	res, err := pki.Ensure(o.dir, ids, cfg)
	if err != nil {
		return fail(1, err)
	}
	for _, f := range res.Created {
		fmt.Fprintf(stdout, "created %s\n", filepath.Join(o.dir, f))
	}
	if len(res.Created) == 0 {
		fmt.Fprintf(stdout, "nothing to create: %s already has the CA and %s\n", o.dir, strings.Join(ids, ", "))
	}
	fmt.Fprintf(stdout, "cluster id %s; start each node with --peer-tls-dir %s (it needs ca.crt, ID.crt and ID.key)\n",
		res.ClusterID, o.dir)
	return 0
}
