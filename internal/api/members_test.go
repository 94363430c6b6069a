package api

import (
	"errors"
	"strings"
	"testing"
)

func TestMemberSpecValidate(t *testing.T) {
	ok := MemberSpec{ID: "n4", Peer: "10.0.0.4:7001", HTTP: "10.0.0.4:8001", RESP: "node4.example:9001", Role: RoleLearner}
	with := func(f func(*MemberSpec)) MemberSpec {
		m := ok
		f(&m)
		return m
	}
	tests := []struct {
		name    string
		m       MemberSpec
		mention string // "" = valid
	}{
		{"valid", ok, ""},
		{"voter", with(func(m *MemberSpec) { m.Role = RoleVoter }), ""},
		{"no client addresses", with(func(m *MemberSpec) { m.HTTP, m.RESP = "", "" }), ""},
		{"ipv6", with(func(m *MemberSpec) { m.Peer = "[::1]:7001" }), ""},
		{"id of 64 bytes", with(func(m *MemberSpec) { m.ID = strings.Repeat("a", 64) }), ""},
		{"id with every allowed kind", with(func(m *MemberSpec) { m.ID = "Az09_.-" }), ""},
		{"empty id", with(func(m *MemberSpec) { m.ID = "" }), "id: empty"},
		{"id of 65 bytes", with(func(m *MemberSpec) { m.ID = strings.Repeat("a", 65) }), "65 bytes, limit 64"},
		{"id with a slash", with(func(m *MemberSpec) { m.ID = "n/4" }), "byte 1"},
		{"id with a space", with(func(m *MemberSpec) { m.ID = "n 4" }), "byte 1"},
		{"id with unicode", with(func(m *MemberSpec) { m.ID = "nö" }), "byte 1"},
		{"id ..", with(func(m *MemberSpec) { m.ID = ".." }), "not allowed"},
		{"no peer", with(func(m *MemberSpec) { m.Peer = "" }), "peer"},
		{"peer without port", with(func(m *MemberSpec) { m.Peer = "10.0.0.4" }), "peer"},
		{"peer port 0", with(func(m *MemberSpec) { m.Peer = "10.0.0.4:0" }), "port"},
		{"peer port too large", with(func(m *MemberSpec) { m.Peer = "10.0.0.4:65536" }), "port"},
		{"peer port by name", with(func(m *MemberSpec) { m.Peer = "10.0.0.4:http" }), "port"},
		{"peer port with a leading zero", with(func(m *MemberSpec) { m.Peer = "10.0.0.4:07001" }), "port"},
		{"peer without host", with(func(m *MemberSpec) { m.Peer = ":7001" }), "host is empty"},
		{"peer on every interface", with(func(m *MemberSpec) { m.Peer = "0.0.0.0:7001" }), "listen-on-all"},
		{"peer on every interface v6", with(func(m *MemberSpec) { m.Peer = "[::]:7001" }), "listen-on-all"},
		{"host with a space", with(func(m *MemberSpec) { m.HTTP = "a b:8001" }), "http"},
		{"url instead of address", with(func(m *MemberSpec) { m.HTTP = "http://10.0.0.4:8001" }), "http"},
		{"long address", with(func(m *MemberSpec) { m.RESP = strings.Repeat("a", 250) + ".b:9001" }), "resp"},
		{"same address twice", with(func(m *MemberSpec) { m.RESP = m.Peer }), "also the peer address"},
		{"empty role", with(func(m *MemberSpec) { m.Role = "" }), "role"},
		{"unknown role", with(func(m *MemberSpec) { m.Role = "witness" }), "role"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if tc.mention == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tc.m, err)
				}
				return
			}
			if !errors.Is(err, ErrBadMember) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("Validate(%+v) = %v, want ErrBadMember mentioning %q", tc.m, err, tc.mention)
			}
		})
	}
}

func TestParseMemberRole(t *testing.T) {
	for in, want := range map[string]MemberRole{"": RoleVoter, "voter": RoleVoter, "learner": RoleLearner} {
		if got, err := ParseMemberRole(in); err != nil || got != want {
			t.Errorf("ParseMemberRole(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Voter", "observer", " learner"} {
		if _, err := ParseMemberRole(in); !errors.Is(err, ErrBadMember) {
			t.Errorf("ParseMemberRole(%q) = %v, want ErrBadMember", in, err)
		}
	}
}
