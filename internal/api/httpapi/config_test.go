package httpapi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api/apitest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		mention string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"no key limit", func(c *Config) { c.MaxKeyBytes = 0 }, "MaxKeyBytes"},
		{"no idle timeout", func(c *Config) { c.IdleTimeout = 0 }, "IdleTimeout"},
		{"no rate", func(c *Config) { c.MinBytesPerSecond = 0 }, "MinBytesPerSecond"},
		{"headers slower than the request", func(c *Config) { c.ReadHeaderTimeout = c.ReadTimeout + 1 }, "ReadHeaderTimeout"},
		{"headers too small for an escaped key", func(c *Config) { c.MaxHeaderBytes = 3 * c.MaxKeyBytes }, "MaxHeaderBytes"},
		{"bigger keys, bigger headers", func(c *Config) { c.MaxKeyBytes, c.MaxHeaderBytes = 100<<10, 304<<10 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.mention == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %v should wrap ErrConfig and name %s", err, tc.mention)
			}
		})
	}
}

// The server's timeouts are the documented ones (docs/API.md, "Limits").
func TestNewServerLimits(t *testing.T) {
	f := apitest.NewFake("n2")
	for _, tc := range []struct {
		maxValue int
		read     time.Duration
	}{
		{1 << 20, 26 * time.Second},
		{8 << 20, 138 * time.Second},
		{1000, 10*time.Second + 1000*time.Second/(64<<10)},
	} {
		f.SetMaxValueBytes(tc.maxValue)
		srv, err := NewServer(f, nil, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		if srv.ReadTimeout != tc.read || srv.ReadHeaderTimeout != 10*time.Second || srv.WriteTimeout != 10*time.Second ||
			srv.IdleTimeout != 2*time.Minute || srv.MaxHeaderBytes != 256<<10 {
			t.Fatalf("value limit %d: read %v (want %v), header %v, write %v, idle %v, header bytes %d", tc.maxValue,
				srv.ReadTimeout, tc.read, srv.ReadHeaderTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
		}
	}
	bad := DefaultConfig()
	bad.MaxHeaderBytes = 1 << 10
	if _, err := NewServer(f, nil, bad); !errors.Is(err, ErrConfig) {
		t.Fatalf("NewServer with a bad config: %v", err)
	}
}
