package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

const membersPath = "/v1/members"

// Member roles.
const (
	RoleVoter   = "voter"
	RoleLearner = "learner"
)

// MemberSpec is a member to add: its id, its peer address and its client
// addresses (each host:port; HTTP and RESP may be empty), and its role
// (RoleVoter or RoleLearner; "" = RoleVoter).
type MemberSpec struct {
	ID   string `json:"id"`
	Peer string `json:"peer"`
	HTTP string `json:"http"`
	RESP string `json:"resp"`
	Role string `json:"role"`
}

// Member is one member as the leader sees it (GET /v1/members).
type Member struct {
	MemberSpec
	MatchIndex uint64 `json:"match_index"` // highest log index known to be on the member
	LagEntries uint64 `json:"lag_entries"` // the leader's last index minus MatchIndex
	// State is "leader" (the leader itself), "replicate", "probe",
	// "snapshot" or, from a follower that does not track progress, "unknown".
	State string `json:"state"`
	// While State is "snapshot": bytes sent so far, and the snapshot's size.
	SnapshotBytesSent  int64 `json:"snapshot_bytes_sent"`
	SnapshotBytesTotal int64 `json:"snapshot_bytes_total"`
}

// Members lists the cluster's members, voters and learners, as the leader
// sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	return c.members(ctx, http.MethodGet, membersPath, nil)
}

// AddMember adds a member and returns the members once the change is
// committed. ErrChangeInProgress while another change is; ErrBadRequest for
// a duplicate id or address, or a malformed field.
//
// A request whose connection broke after it was sent is retried like a
// write: if the first attempt took effect, the retry answers ErrBadRequest
// (duplicate member), and Members shows the member.
func (c *Client) AddMember(ctx context.Context, m MemberSpec) ([]Member, error) {
	if m.ID == "" {
		return nil, fmt.Errorf("%w: empty member id", ErrBadRequest)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return c.members(ctx, http.MethodPost, membersPath, body)
}

// PromoteMember makes learner id a voter and returns the members once it
// votes. ErrNotCaughtUp while it is too far behind (retry: Members shows
// its progress); ErrUnknownMember; ErrBadRequest if it is already a voter.
func (c *Client) PromoteMember(ctx context.Context, id string) ([]Member, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty member id", ErrBadRequest)
	}
	return c.members(ctx, http.MethodPost, membersPath+"/"+url.PathEscape(id)+"/promote", nil)
}

// RemoveMember removes member id and returns the members once the change is
// committed. ErrUnknownMember; ErrBadRequest for the last voter.
func (c *Client) RemoveMember(ctx context.Context, id string) ([]Member, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty member id", ErrBadRequest)
	}
	return c.members(ctx, http.MethodDelete, membersPath+"/"+url.PathEscape(id), nil)
}

// members sends a membership request to the leader and decodes the member
// list it answers.
func (c *Client) members(ctx context.Context, method, path string, body []byte) ([]Member, error) {
	var out []Member
	err := c.toLeader(ctx, func(ep string) error {
		b, err := c.do(ctx, method, ep, path, body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("%s: bad member list: %w", ep, err)
		}
		return nil
	})
	return out, err
}
