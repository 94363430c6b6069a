package coordinator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseEndpoints(t *testing.T) {
	good := []struct {
		in   string
		want []string
	}{
		{"etcd://127.0.0.1:2379", []string{"127.0.0.1:2379"}},
		{"etcd://a:1,b:2,c:3", []string{"a:1", "b:2", "c:3"}},
		{"etcd://a:1,etcd://b:2", []string{"a:1", "b:2"}},
		{"ETCD://a:1, etcd://b:2 ,c:3", []string{"a:1", "b:2", "c:3"}},
		{"  etcd://etcd-0.example_net:65535  ", []string{"etcd-0.example_net:65535"}},
		{"etcd://[::1]:2379,[fe80::1]:2380", []string{"[::1]:2379", "[fe80::1]:2380"}},
		{"etcd://h:02379", []string{"h:2379"}}, // canonical port
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEndpoints(tc.in)
			if err != nil {
				t.Fatalf("ParseEndpoints(%q): %v", tc.in, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ParseEndpoints(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}

	bad := []struct {
		in, why string // why: a fragment the error must contain
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"127.0.0.1:2379", "missing the etcd:// scheme"},
		{"http://127.0.0.1:2379", `scheme "http://" is not supported`},
		{"etcd://a:1,https://b:2", `element 2: scheme "https://"`},
		{"etcd://", "empty endpoint"},
		{"etcd://a:1,", "element 2: empty endpoint"},
		{"etcd://a:1,,b:2", "element 2: empty endpoint"},
		{"etcd://host", "missing port"},
		{"etcd://host:", "missing port"},
		{"etcd://:2379", "missing host"},
		{"etcd://host:0", "want a number 1..65535"},
		{"etcd://host:65536", "want a number 1..65535"},
		{"etcd://host:-1", "want a number 1..65535"},
		{"etcd://host:+80", "want a number 1..65535"},
		{"etcd://host:http", "want a number 1..65535"},
		{"etcd://host:2379/v3", "want a number 1..65535"},
		{"etcd://user@host:2379", "not allowed in a host name"},
		{"etcd://ho st:2379", "not allowed in a host name"},
		{"etcd://::1:2379", "too many colons"},
		{"etcd://[notip]:2379", "brackets are for IPv6"},
		{"etcd://a:1,a:01", "given twice"},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			got, err := ParseEndpoints(tc.in)
			if err == nil {
				t.Fatalf("ParseEndpoints(%q) = %q, want an error", tc.in, got)
			}
			if !errors.Is(err, ErrBadEndpoint) {
				t.Errorf("error %v is not ErrBadEndpoint", err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("ParseEndpoints(%q) error %q, want it to say %q", tc.in, err, tc.why)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Endpoints, c.Cluster, c.ID = []string{"127.0.0.1:2379"}, "c1", "n1"
		return c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	if got := (Config{}).withDefaults(); got.TTL != DefaultTTL || got.DialTimeout != DefaultDialTimeout || got.Logger == nil {
		t.Fatalf("withDefaults = %+v, want TTL %v, DialTimeout %v and a logger", got, DefaultTTL, DefaultDialTimeout)
	}
	cases := []struct {
		name   string
		change func(*Config)
		field  string // the field the error must name
	}{
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "Config.Endpoints"},
		{"bad endpoint", func(c *Config) { c.Endpoints = []string{"a:1", "b"} }, "Config.Endpoints[1]"},
		{"no cluster", func(c *Config) { c.Cluster = "" }, "Config.Cluster"},
		{"slash in cluster", func(c *Config) { c.Cluster = "a/b" }, "Config.Cluster"},
		{"control char in cluster", func(c *Config) { c.Cluster = "a\nb" }, "Config.Cluster"},
		{"no id", func(c *Config) { c.ID = "" }, "Config.ID"},
		{"long id", func(c *Config) { c.ID = strings.Repeat("x", maxIDBytes+1) }, "Config.ID"},
		{"ttl below a second", func(c *Config) { c.TTL = 500 * time.Millisecond }, "at least 1s"},
		{"ttl not whole seconds", func(c *Config) { c.TTL = 1500 * time.Millisecond }, "whole number of seconds"},
		{"ttl huge", func(c *Config) { c.TTL = 48 * time.Hour }, "Config.TTL"},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -time.Second }, "Config.DialTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.change(&c)
			err := c.Validate()
			if err == nil || !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want ErrBadConfig naming %s", err, tc.field)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	_, err := New(Config{Endpoints: []string{"127.0.0.1:2379"}, Cluster: "c", ID: "n", TTL: 1500 * time.Millisecond})
	if !errors.Is(err, ErrBadConfig) {
		t.Fatalf("New with TTL 1.5s: %v, want ErrBadConfig", err)
	}
}
