package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/auth"
)

// ErrConfig is returned (wrapped, naming the field) by Config.Validate.
var ErrConfig = errors.New("httpapi: bad config")

// Config holds the limits and timeouts of the HTTP API. Each one bounds what
// a client that sends too much, or too slowly, can make a node hold. The
// handler enforces the key limit and the reply deadlines; NewServer hands
// the rest to the http.Server.
type Config struct {
	// MaxKeyBytes is the longest key accepted, in bytes after
	// percent-decoding, by every endpoint that takes a key (413 above it).
	// Set it to the node's limit, so that reads and writes agree.
	MaxKeyBytes int
	// MaxHeaderBytes bounds the request line and headers together
	// (http.Server.MaxHeaderBytes; net/http allows 4 KiB on top and answers
	// 431 beyond). It must hold a key of MaxKeyBytes fully percent-encoded.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time from the first byte of a request to
	// the end of its headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout, plus the time the node's value limit takes to arrive at
	// MinBytesPerSecond, bounds reading a whole request, headers and body. A
	// body still incomplete then gets 408 and its connection is closed. It
	// ends with the body: the time a write then waits does not count.
	ReadTimeout time.Duration
	// ReplyTimeout, plus the time the reply takes at MinBytesPerSecond,
	// bounds writing a reply, counted from when the reply is ready: the time
	// a request waits for its ack mode or a transfer does not count. A
	// client that does not read its reply in time loses the connection.
	ReplyTimeout time.Duration
	// MinBytesPerSecond is the slowest link a body or a reply is given time
	// for: each of the two deadlines grows by one second per this many bytes.
	MinBytesPerSecond int
	// IdleTimeout is how long a kept-alive connection may wait for its next
	// request.
	IdleTimeout time.Duration
	// Logger receives failed requests and net/http's own errors; nil
	// discards them.
	Logger *slog.Logger
	// Auth, if it is enabled, checks the "Authorization: Bearer" credential
	// of every request before anything else, and its role against the
	// request. nil, or an Authenticator without credentials: every request
	// is served, as without auth.
	Auth Authenticator
	// OpenMetrics serves /metrics without a credential when Auth is on (for
	// scrapers that cannot send one); otherwise it needs role read.
	OpenMetrics bool
}

// Authenticator is what the API needs from internal/auth.
type Authenticator interface {
	// Enabled reports whether credentials are configured.
	Enabled() bool
	// CheckBearer verifies a bearer credential, cheaply (no slow KDF).
	CheckBearer(c auth.Credentials) (auth.Principal, error)
	// Denied records a request the principal's role does not allow and
	// returns the error to report.
	Denied(p auth.Principal, a auth.Action, c auth.Credentials) error
}

// DefaultConfig returns the limits a node serves with.
//
// Keys: 64 KiB, the node's limit; headers: 256 KiB, room for such a key
// fully escaped (192 KiB) and ordinary headers, which must arrive within
// 10 s. A request gets 10 s plus 1 s per 64 KiB of the value limit (26 s
// for the default 1 MiB, 138 s for the largest allowed, 8 MiB); a reply
// gets 10 s plus 1 s per 64 KiB of it.
// Idle connections are closed after 2 minutes, later than clients drop
// their own idle connections (net/http's Transport: 90 s), so that a client
// seldom reuses a connection the server is closing.
func DefaultConfig() Config {
	return Config{
		MaxKeyBytes:       64 << 10,
		MaxHeaderBytes:    256 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		ReplyTimeout:      10 * time.Second,
		MinBytesPerSecond: 64 << 10,
		IdleTimeout:       2 * time.Minute,
	}
}

// escapedBytesPerKeyByte is the length of a percent-escape ("%FF").
const escapedBytesPerKeyByte = 3

// minHeaderRoom is what MaxHeaderBytes must leave, beyond the longest
// escaped key, for the method, the query and the other headers.
const minHeaderRoom = 4 << 10

// Validate checks each field and the relation between the header and key
// limits, naming the offending field.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"MaxKeyBytes", c.MaxKeyBytes <= 0},
		{"MaxHeaderBytes", c.MaxHeaderBytes <= 0},
		{"ReadHeaderTimeout", c.ReadHeaderTimeout <= 0},
		{"ReadTimeout", c.ReadTimeout <= 0},
		{"ReplyTimeout", c.ReplyTimeout <= 0},
		{"MinBytesPerSecond", c.MinBytesPerSecond <= 0},
		{"IdleTimeout", c.IdleTimeout <= 0},
	} {
		if f.bad {
			return fmt.Errorf("%w: %s must be above 0", ErrConfig, f.name)
		}
	}
	if c.ReadHeaderTimeout > c.ReadTimeout {
		return fmt.Errorf("%w: ReadHeaderTimeout %v exceeds ReadTimeout %v, which includes the headers",
			ErrConfig, c.ReadHeaderTimeout, c.ReadTimeout)
	}
	if need := escapedBytesPerKeyByte*c.MaxKeyBytes + minHeaderRoom; c.MaxHeaderBytes < need {
		return fmt.Errorf("%w: MaxHeaderBytes %d cannot hold a key of MaxKeyBytes %d percent-encoded (want at least %d)",
			ErrConfig, c.MaxHeaderBytes, c.MaxKeyBytes, need)
	}
	return nil
}

// transferTime is base plus the time n bytes take at MinBytesPerSecond.
func (c Config) transferTime(base time.Duration, n int) time.Duration {
	rate := c.MinBytesPerSecond
	return base + time.Duration(n/rate)*time.Second + time.Duration(n%rate)*time.Second/time.Duration(rate)
}

// NewHandler returns the API's handler with cfg's key limit, reply
// deadlines and auth, without a server (tests, or a caller with its own).
func NewHandler(svc api.Service, metrics http.Handler, cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newHandler(svc, metrics, cfg), nil
}

// NewServer returns an http.Server that serves the API (as New does) with
// cfg's limits and auth. The caller serves it on its listener, plain or
// wrapped in TLS, and shuts it down.
func NewServer(svc api.Service, metrics http.Handler, cfg Config) (*http.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := newHandler(svc, metrics, cfg)
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// Long enough for the largest value on a slow link. It does not cut
		// short a write that waits for its ack mode or a transfer (up to
		// MaxTimeout): once the body is read, net/http lifts the read
		// deadline and reads on in the background only to notice a client
		// hanging up (TestLongWaitOutlivesReadTimeout holds it to that).
		ReadTimeout: cfg.transferTime(cfg.ReadTimeout, svc.MaxValueBytes()),
		// net/http arms WriteTimeout when a request's headers are read, so on
		// its own it would count the handler's wait too; the handler re-arms
		// the write deadline when its reply is ready (Config.ReplyTimeout).
		// On the server, it bounds what net/http writes by itself (100
		// Continue, 431, 400) and anything written before that re-arming.
		WriteTimeout: cfg.ReplyTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		ErrorLog:     slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}, nil
}
