package api

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// MemberRole is what a member does in the cluster: a voter counts towards
// elections and commits; a learner only receives the log (a read replica, or
// a new node catching up before it is promoted).
type MemberRole string

// Member roles, as they appear in the HTTP API.
const (
	RoleVoter   MemberRole = "voter"
	RoleLearner MemberRole = "learner"
)

// ParseMemberRole parses "voter" or "learner"; "" is a voter, the default of
// POST /v1/members.
func ParseMemberRole(s string) (MemberRole, error) {
	switch MemberRole(s) {
	case "", RoleVoter:
		return RoleVoter, nil
	case RoleLearner:
		return RoleLearner, nil
	}
	return "", fmt.Errorf("%w: role %q: want voter or learner", ErrBadMember, s)
}

// MemberSpec names a member and its addresses: what POST /v1/members takes.
type MemberSpec struct {
	ID   string     `json:"id"`
	Peer string     `json:"peer"` // host:port of the peer (replication) port; required
	HTTP string     `json:"http"` // host:port of the HTTP API; "" = none
	RESP string     `json:"resp"` // host:port of the Redis protocol; "" = none
	Role MemberRole `json:"role"` // RoleVoter or RoleLearner
}

// MemberStatus is one member as GET /v1/members shows it: its spec and, as
// the leader sees it, how far its log has come.
type MemberStatus struct {
	MemberSpec
	// MatchIndex is the highest log index known to be on the member.
	MatchIndex uint64 `json:"match_index"`
	// LagEntries is the leader's last index minus MatchIndex.
	LagEntries uint64 `json:"lag_entries"`
	// State is MemberLeader, MemberReplicate, MemberProbe, MemberSnapshot
	// or MemberUnknown.
	State string `json:"state"`
	// While State is MemberSnapshot: bytes of the snapshot sent so far and
	// its size (0 when unknown, or when no snapshot is being sent).
	SnapshotBytesSent  int64 `json:"snapshot_bytes_sent"`
	SnapshotBytesTotal int64 `json:"snapshot_bytes_total"`
}

// Values of MemberStatus.State.
const (
	MemberLeader    = "leader"    // the member is the leader itself
	MemberReplicate = "replicate" // entries stream to it
	MemberProbe     = "probe"     // the leader is finding where its log ends (or it is unreachable)
	MemberSnapshot  = "snapshot"  // it is receiving a snapshot
	MemberUnknown   = "unknown"   // served by a follower, which does not track progress
)

// Limits of a MemberSpec.
const (
	MaxMemberIDBytes   = 64
	MaxMemberAddrBytes = 255
)

// Errors of membership changes (wrapped, with details). HTTP answers them
// with the status in brackets.
var (
	// ErrBadMember: a MemberSpec field is malformed (400); Validate names it.
	ErrBadMember = errors.New("bad member")
	// ErrChangeInProgress: another membership change is not yet committed;
	// nothing was done, retry later (409).
	ErrChangeInProgress = errors.New("another membership change is in progress")
	// ErrNotCaughtUp: the learner is too far behind to be promoted; the
	// wrapping error says how far, in entries (409).
	ErrNotCaughtUp = errors.New("the learner has not caught up")
	// ErrUnknownMember: no member has that id (404).
	ErrUnknownMember = errors.New("unknown member")
	// ErrDuplicateMember: a member has that id, or one of those addresses (400).
	ErrDuplicateMember = errors.New("duplicate member")
	// ErrLastVoter: removing the only voter would leave nobody to commit (400).
	ErrLastVoter = errors.New("cannot remove the last voter")
	// ErrAlreadyVoter: the member to promote already votes (400).
	ErrAlreadyVoter = errors.New("the member is already a voter")
	// ErrRemoved: this node is no longer a member; it serves nothing (410).
	ErrRemoved = errors.New("this node was removed from the cluster")
)

// Validate checks the fields of m, naming the first bad one (wrapping
// ErrBadMember): an ID of 1 to 64 bytes of [A-Za-z0-9_.-], not "." or "..";
// a Peer address, and HTTP and RESP addresses if given, each host:port
// with a host name or an IP address that other nodes can dial (not 0.0.0.0
// or ::) and a port from 1 to 65535, all three different; a Role of voter
// or learner (fill in RoleVoter for a default first).
func (m MemberSpec) Validate() error {
	if err := ValidMemberID(m.ID); err != nil {
		return err
	}
	if m.Peer == "" {
		return fmt.Errorf("%w: peer: the peer address (host:port) is required", ErrBadMember)
	}
	seen := map[string]string{}
	for _, a := range []struct{ field, addr string }{{"peer", m.Peer}, {"http", m.HTTP}, {"resp", m.RESP}} {
		if a.addr == "" {
			continue
		}
		if err := validAddr(a.addr); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrBadMember, a.field, a.addr, err)
		}
		if other, ok := seen[a.addr]; ok {
			return fmt.Errorf("%w: %s %q is also the %s address", ErrBadMember, a.field, a.addr, other)
		}
		seen[a.addr] = a.field
	}
	if m.Role != RoleVoter && m.Role != RoleLearner {
		return fmt.Errorf("%w: role %q: want voter or learner", ErrBadMember, m.Role)
	}
	return nil
}

// ValidMemberID checks a member id: 1 to 64 bytes of letters, digits, '_',
// '.' and '-', other than "." and "..".
func ValidMemberID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: id: empty", ErrBadMember)
	}
	if len(id) > MaxMemberIDBytes {
		return fmt.Errorf("%w: id: %d bytes, limit %d", ErrBadMember, len(id), MaxMemberIDBytes)
	}
	if id == "." || id == ".." {
		// Path segments that URLs (DELETE /v1/members/{id}) treat specially.
		return fmt.Errorf("%w: id %q is not allowed", ErrBadMember, id)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("%w: id %q: byte %d (%q) is not a letter, digit, '_', '.' or '-'", ErrBadMember, id, i, id[i])
		}
	}
	return nil
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

// validAddr checks host:port: a host that is an IP address (not 0.0.0.0 or
// ::) or a DNS name (letters, digits, '-', '_', '.'), and a port from 1 to
// 65535.
func validAddr(addr string) error {
	if len(addr) > MaxMemberAddrBytes {
		return fmt.Errorf("%d bytes, limit %d", len(addr), MaxMemberAddrBytes)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || port[0] == '0' {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	if host == "" {
		return errors.New("the host is empty")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return fmt.Errorf("host %s is a listen-on-all address, not one other nodes can reach", host)
		}
		return nil
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !idByte(c) {
			return fmt.Errorf("host %q: want an IP address or a host name", host)
		}
	}
	return nil
}
