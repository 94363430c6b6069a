package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/trireme-db/trireme/internal/api"
)

// errMembersNotImplemented: the node does not change its membership online
// yet. This file keeps the build green until it does; the membership work
// replaces it.
var errMembersNotImplemented = errors.New("online membership changes are not implemented in the node yet")

// Members implements api.Service.
func (n *Node) Members(ctx context.Context) ([]api.MemberStatus, error) {
	return nil, fmt.Errorf("listing members: %w", errMembersNotImplemented)
}

// AddMember implements api.Service.
func (n *Node) AddMember(ctx context.Context, m api.MemberSpec) ([]api.MemberStatus, error) {
	return nil, fmt.Errorf("adding member %s: %w", m.ID, errMembersNotImplemented)
}

// PromoteMember implements api.Service.
func (n *Node) PromoteMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	return nil, fmt.Errorf("promoting member %s: %w", id, errMembersNotImplemented)
}

// RemoveMember implements api.Service.
func (n *Node) RemoveMember(ctx context.Context, id string) ([]api.MemberStatus, error) {
	return nil, fmt.Errorf("removing member %s: %w", id, errMembersNotImplemented)
}
