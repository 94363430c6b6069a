package auth

import (
	"fmt"
	"strings"
)

// Role is what a user may do. Roles are ordered: each one allows what the
// ones below it allow.
type Role uint8

// Roles, lowest first. The names are part of the users file format.
const (
	// RoleNone allows nothing but the commands every client may send before
	// it authenticates (Redis's AUTH, HELLO, PING, QUIT).
	RoleNone Role = iota
	// RoleRead reads keys and the node's state.
	RoleRead
	// RoleWrite also writes and deletes keys.
	RoleWrite
	// RoleAdmin also changes the cluster: leadership transfers, and later
	// membership.
	RoleAdmin
)

var roleNames = [...]string{RoleNone: "none", RoleRead: "read", RoleWrite: "write", RoleAdmin: "admin"}

// String returns the role's name in the users file ("read", "write", "admin").
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", r)
}

// ParseRole parses "read", "write" or "admin".
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if r != int(RoleNone) && s == name {
			return Role(r), nil
		}
	}
	return RoleNone, fmt.Errorf("%w: %q (want read, write or admin)", ErrBadRole, s)
}

// Action is a kind of request, as the front ends classify them.
type Action uint8

// Actions, with the lowest role that allows each.
const (
	// ActionRead: read a key, a node's status, its rollback journal,
	// metrics; over RESP, GET, MGET, EXISTS, TTL, STRLEN, DBSIZE, INFO, ROLE, ...
	ActionRead Action = iota + 1
	// ActionWrite: write or delete a key; over RESP, SET, DEL, INCR, APPEND,
	// MSET and the other writes, and WAIT / WAITAOF (which follow the
	// connection's writes).
	ActionWrite
	// ActionAdmin: change the cluster (POST /v1/leader/transfer).
	ActionAdmin
)

// Needs returns the lowest role that allows a.
func (a Action) Needs() Role {
	switch a {
	case ActionRead:
		return RoleRead
	case ActionWrite:
		return RoleWrite
	case ActionAdmin:
		return RoleAdmin
	}
	// An unknown action is allowed to nobody.
	return RoleAdmin + 1
}

// String names the action ("read", "write", "admin").
func (a Action) String() string {
	switch a {
	case ActionRead, ActionWrite, ActionAdmin:
		return a.Needs().String()
	}
	return fmt.Sprintf("action(%d)", a)
}

// Allows reports whether role r may perform a.
func (r Role) Allows(a Action) bool { return r >= a.Needs() }

// roleList is "read, write, admin" for messages.
func roleList() string { return strings.Join(roleNames[RoleRead:], ", ") }
