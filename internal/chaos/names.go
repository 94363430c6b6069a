package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Named peers: the address layout for runs whose membership changes.
//
// A configuration entry in the log carries one peer address per member, and
// every node dials what the configuration in effect says. With the classic
// layout (each node's --cluster names, for every other member Y, the proxy
// X→Y) the first membership change replaces every node's addresses with the
// proposing leader's view: the others then dial the leader directly and
// everyone else through the leader's proxies. So with membership changes
// every node gets the same addresses, host names, and each node resolves them
// differently: it runs in a private mount namespace whose /etc/hosts maps its
// own name to its real address and every other member's name to the address
// of its own proxy to that member.
//
//	Y's peer address (everywhere):  Y.chaos.test:PORT_Y
//	Y listens on (Y's hosts file):  127.B.0.y:PORT_Y
//	proxy X→Y (X's hosts file):     127.B.x.y:PORT_Y  → 127.B.0.y:PORT_Y
//
// x and y are 1-based indexes of the ids (initial members, then spares), B is
// chosen from the seed. Linux routes all of 127.0.0.0/8 to the loopback
// interface, so no interface needs to be configured.

// ErrNamedPeers: this machine cannot run nodes with private /etc/hosts files.
var ErrNamedPeers = errors.New("chaos: named peers (a private /etc/hosts per node) are not available")

// namedDomain is the domain of the nodes' peer host names (RFC 6761 .test).
const namedDomain = ".chaos.test"

// namedPeers lays out the named peer addresses of one cluster.
type namedPeers struct {
	base  int            // second octet
	index map[string]int // id -> 1..len(ids)
	ids   []string
	dir   string // hosts files: dir/ID
}

func newNamedPeers(ids []string, seed uint64, dir string) (*namedPeers, error) {
	if len(ids) > 254 {
		return nil, fmt.Errorf("chaos: named peers: %d ids, at most 254", len(ids))
	}
	p := &namedPeers{base: 128 + int(seed%100), index: map[string]int{}, ids: ids, dir: dir}
	for i, id := range ids {
		p.index[id] = i + 1
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	for _, id := range ids {
		if err := os.WriteFile(p.hostsFile(id), p.hosts(id), 0o644); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	return p, nil
}

// host is id's peer host name.
func (p *namedPeers) host(id string) string { return id + namedDomain }

// realIP is the address id's node listens on for peers.
func (p *namedPeers) realIP(id string) string { return fmt.Sprintf("127.%d.0.%d", p.base, p.index[id]) }

// linkIP is the address of the proxy from -> to.
func (p *namedPeers) linkIP(from, to string) string {
	return fmt.Sprintf("127.%d.%d.%d", p.base, p.index[from], p.index[to])
}

func (p *namedPeers) hostsFile(id string) string { return filepath.Join(p.dir, id) }

// hosts is node id's /etc/hosts.
func (p *namedPeers) hosts(self string) []byte {
	var b bytes.Buffer
	b.WriteString("# chaos: named peers of " + self + "\n127.0.0.1 localhost\n::1 localhost\n")
	for _, id := range p.ids {
		ip := p.linkIP(self, id)
		if id == self {
			ip = p.realIP(id)
		}
		fmt.Fprintf(&b, "%s %s\n", ip, p.host(id))
	}
	return b.Bytes()
}

// prefix is the command that runs a program with hostsFile as its /etc/hosts:
// unshare(1) makes a private mount namespace (and, without root, a user
// namespace that maps the caller to root in it), sh bind-mounts the file and
// execs the program, which keeps the process id (signals reach the node).
func namedPrefix(hostsFile string) []string {
	p := []string{"unshare", "--mount", "--propagation", "private"}
	if os.Geteuid() != 0 {
		p = []string{"unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"}
	}
	return append(p, "sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, hostsFile)
}

// CheckNamedPeers reports whether nodes can run with private /etc/hosts files
// (Linux, unshare(1), mount namespaces: root or unprivileged user namespaces)
// and listen on 127.x.y.z; the error wraps ErrNamedPeers and says why not.
func CheckNamedPeers() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: needs Linux (this is %s)", ErrNamedPeers, runtime.GOOS)
	}
	for _, bin := range []string{"unshare", "sh", "mount"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrNamedPeers, bin, err)
		}
	}
	ln, err := net.Listen("tcp", "127.201.1.2:0")
	if err != nil {
		return fmt.Errorf("%w: cannot listen on 127.201.1.2: %v", ErrNamedPeers, err)
	}
	ln.Close()
	dir, err := os.MkdirTemp("", "chaos-hosts-")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNamedPeers, err)
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "hosts")
	if err := os.WriteFile(f, []byte("127.201.1.2 probe"+namedDomain+"\n"), 0o644); err != nil {
		return fmt.Errorf("%w: %v", ErrNamedPeers, err)
	}
	args := append(namedPrefix(f), "cat", "/etc/hosts")
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "probe"+namedDomain) {
		return fmt.Errorf("%w: %s: %v: %s", ErrNamedPeers, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
