package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// Errors of this package (wrapped with details).
var (
	// ErrBadCredentials: an unknown user, a wrong password, an unknown
	// token. Which one is never told to the client.
	ErrBadCredentials = errors.New("auth: invalid username-password pair or token")
	// ErrNoCredentials: auth is on and the request carries no credentials.
	ErrNoCredentials = errors.New("auth: authentication required")
	// ErrNotEnabled: a client sent credentials to a node that has none
	// configured (Redis answers AUTH so).
	ErrNotEnabled = errors.New("auth: no credentials are configured on this node")
	// ErrForbidden: the user's role does not allow the action.
	ErrForbidden = errors.New("auth: permission denied")

	ErrUsersFile   = errors.New("auth: bad users file")
	ErrBadRole     = errors.New("auth: unknown role")
	ErrBadName     = errors.New("auth: bad user name")
	ErrBadHash     = errors.New("auth: bad hash")
	ErrBadPassword = errors.New("auth: unusable password")
	ErrConfig      = errors.New("auth: bad config")
	ErrTLS         = errors.New("auth: client TLS")
)

// Config says which credentials a node accepts.
type Config struct {
	// Users is the users file's content; nil = none.
	Users *Users
	// DefaultPassword, if not empty, is the password of the user "default",
	// role admin, like Redis's requirepass: "AUTH password" and "Bearer
	// password" authenticate with it. At least MinDefaultPasswordBytes. It
	// must not also be a user of Users.
	DefaultPassword string
	// MaxConcurrentHashes bounds the bcrypt verifications that run at once
	// (each takes a core for about 0.1 s); more wait their turn, so that a
	// flood of AUTH attempts cannot take every core from the node.
	MaxConcurrentHashes int
	// MaxLogsPerSecond bounds the failed attempts logged per second; the
	// rest are counted and summed up in the next log line.
	MaxLogsPerSecond int
	// Logger receives failed attempts and denials (Info), never a secret;
	// nil discards.
	Logger *slog.Logger
	// Now is the clock for the log limiter; nil = time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with no credentials, half the cores for
// password hashing and 10 failure logs per second.
func DefaultConfig() Config {
	return Config{MaxConcurrentHashes: max(1, runtime.GOMAXPROCS(0)/2), MaxLogsPerSecond: 10}
}

// Validate checks the fields and their relations, naming the field.
func (c Config) Validate() error {
	if c.MaxConcurrentHashes <= 0 {
		return fmt.Errorf("%w: MaxConcurrentHashes %d must be above 0", ErrConfig, c.MaxConcurrentHashes)
	}
	if c.MaxLogsPerSecond <= 0 {
		return fmt.Errorf("%w: MaxLogsPerSecond %d must be above 0", ErrConfig, c.MaxLogsPerSecond)
	}
	if c.DefaultPassword != "" {
		if len(c.DefaultPassword) < MinDefaultPasswordBytes {
			return fmt.Errorf("%w: DefaultPassword is %d bytes, fewer than %d (it is checked with a fast hash, so it must be too long to guess; e.g. openssl rand -base64 24)",
				ErrConfig, len(c.DefaultPassword), MinDefaultPasswordBytes)
		}
		if IsToken(c.DefaultPassword) {
			return fmt.Errorf("%w: DefaultPassword has the form of an API token (%s...); choose another", ErrConfig, TokenPrefix)
		}
		if c.Users != nil {
			if u, ok := c.Users.Lookup(DefaultUser); ok {
				return fmt.Errorf("%w: DefaultPassword is set and %s line %d also defines the user %q; keep one of them",
					ErrConfig, c.Users.Name, u.Line, DefaultUser)
			}
		}
	}
	return nil
}

// Credentials are what a client presents, and where from.
type Credentials struct {
	// User is the user name given ("" if none: Redis's one-argument AUTH,
	// an HTTP bearer token).
	User string
	// Secret is a password or an API token. Never logged.
	Secret string
	// Remote is the client's address, and Proto the front end ("http",
	// "resp"): for logs and metrics.
	Remote, Proto string
}

// Principal is an authenticated client.
type Principal struct {
	User string
	Role Role
	// Token is the ID of the API token used, "" for a password.
	Token string
}

// Allows reports whether p's role allows a.
func (p Principal) Allows(a Action) bool { return p.Role.Allows(a) }

// Authenticator checks credentials against a users file and a default
// password. It is safe for concurrent use. A nil *Authenticator, or one
// with no credentials, is disabled: front ends then serve everyone.
type Authenticator struct {
	users  map[string]User
	tokens map[[sha256.Size]byte]Token
	// defaultDigest is the SHA-256 of Config.DefaultPassword (hasDefault).
	defaultDigest [sha256.Size]byte
	hasDefault    bool
	// decoy is a bcrypt hash of a random password, at the cost most users
	// have: compared against when the user is unknown or has no password,
	// so that the reply takes as long as for a real user.
	decoy []byte
	hash  chan struct{} // semaphore of MaxConcurrentHashes
	log   *slog.Logger
	now   func() time.Time

	mu        sync.Mutex
	failures  map[failureKey]uint64 // guarded by mu
	window    time.Time             // start of the current log second; guarded by mu
	logged    int                   // failures logged in window; guarded by mu
	suppressd int                   // failures not logged since the last log; guarded by mu
	maxLogs   int
}

type failureKey struct{ proto, reason string }

// Reasons a check fails, in logs and in trireme_auth_failures_total.
const (
	reasonNoCredentials = "no_credentials"
	reasonUnknownUser   = "unknown_user"
	reasonBadPassword   = "bad_password"
	reasonNoPassword    = "no_password"
	reasonBadToken      = "bad_token"
	reasonTokenUser     = "token_of_other_user"
	reasonForbidden     = "forbidden"
)

// New returns an Authenticator for cfg.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{
		users:    map[string]User{},
		tokens:   map[[sha256.Size]byte]Token{},
		hash:     make(chan struct{}, cfg.MaxConcurrentHashes),
		log:      cfg.Logger,
		now:      cfg.Now,
		failures: map[failureKey]uint64{},
		maxLogs:  cfg.MaxLogsPerSecond,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if cfg.DefaultPassword != "" {
		a.defaultDigest, a.hasDefault = sha256.Sum256([]byte(cfg.DefaultPassword)), true
	}
	if cfg.Users != nil {
		for _, u := range cfg.Users.Users {
			a.users[u.Name] = u
		}
		for _, t := range cfg.Users.Tokens {
			a.tokens[t.Digest] = t
		}
	}
	if a.Enabled() {
		decoy, err := makeDecoy(a.users)
		if err != nil {
			return nil, err
		}
		a.decoy = decoy
	}
	return a, nil
}

// makeDecoy hashes a random password at the cost most users' hashes have
// (DefaultCost if none has a password).
func makeDecoy(users map[string]User) ([]byte, error) {
	costs := map[int]int{}
	best, cost := 0, DefaultCost
	for _, u := range users {
		if u.Hash == nil {
			continue
		}
		c, _ := bcrypt.Cost(u.Hash)
		costs[c]++
		if costs[c] > best || costs[c] == best && c > cost {
			best, cost = costs[c], c
		}
	}
	pw, _, err := NewToken(nil)
	if err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw[:MaxPasswordBytes/2]), cost)
	if err != nil {
		return nil, fmt.Errorf("auth: decoy hash: %w", err)
	}
	return h, nil
}

// Enabled reports whether credentials are configured. When not, front ends
// serve every request as before auth existed.
func (a *Authenticator) Enabled() bool {
	return a != nil && (a.hasDefault || len(a.users) > 0)
}

// Check verifies credentials given to Redis's AUTH or HELLO ... AUTH: a
// password of c.User ("" = the user "default"), or an API token (of c.User
// if given). It may run bcrypt: it waits, up to ctx, for one of
// MaxConcurrentHashes slots.
//
// Whether the user exists is not told by the error, nor by the time taken:
// an unknown user, or one without a password, costs the same bcrypt
// comparison as a known one. The default password and tokens take one
// SHA-256.
func (a *Authenticator) Check(ctx context.Context, c Credentials) (Principal, error) {
	if !a.Enabled() {
		return Principal{}, ErrNotEnabled
	}
	if IsToken(c.Secret) {
		p, reason := a.token(c)
		return a.result(c, p, reason)
	}
	name := c.User
	if name == "" {
		name = DefaultUser
	}
	if name == DefaultUser && a.hasDefault {
		if a.defaultMatches(c.Secret) {
			return a.result(c, Principal{User: DefaultUser, Role: RoleAdmin}, "")
		}
		return a.result(c, Principal{}, reasonBadPassword)
	}
	if c.Secret == "" {
		return a.result(c, Principal{}, reasonNoCredentials)
	}
	if len(c.Secret) > MaxPasswordBytes {
		// Refused whoever the user is: bcrypt would check only a prefix.
		return a.result(c, Principal{}, reasonBadPassword)
	}
	u, known := a.users[name]
	hash := a.decoy
	if known && u.Hash != nil {
		hash = u.Hash
	}
	select {
	case a.hash <- struct{}{}:
	case <-ctx.Done():
		return Principal{}, ctx.Err()
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(c.Secret)) == nil
	<-a.hash
	switch {
	case !known:
		return a.result(c, Principal{}, reasonUnknownUser)
	case u.Hash == nil:
		return a.result(c, Principal{}, reasonNoPassword)
	case !match:
		return a.result(c, Principal{}, reasonBadPassword)
	}
	return a.result(c, Principal{User: u.Name, Role: u.Role}, "")
}

// CheckBearer verifies an HTTP bearer credential: an API token, or the
// default password. It never runs bcrypt (a request that did would cost a
// core for 0.1 s), so it takes one SHA-256 and constant-time comparisons.
// c.User is ignored.
func (a *Authenticator) CheckBearer(c Credentials) (Principal, error) {
	if !a.Enabled() {
		return Principal{}, ErrNotEnabled
	}
	c.User = ""
	switch {
	case c.Secret == "":
		return a.result(c, Principal{}, reasonNoCredentials)
	case IsToken(c.Secret):
		p, reason := a.token(c)
		return a.result(c, p, reason)
	case a.hasDefault && a.defaultMatches(c.Secret):
		return a.result(c, Principal{User: DefaultUser, Role: RoleAdmin}, "")
	}
	return a.result(c, Principal{}, reasonBadToken)
}

// token looks a token up by its digest. The map lookup's timing depends
// on the digest only, which tells nothing about the stored tokens; the
// comparison after it is constant-time all the same.
func (a *Authenticator) token(c Credentials) (Principal, string) {
	d := TokenDigest(c.Secret)
	t, ok := a.tokens[d]
	if !ok || subtle.ConstantTimeCompare(t.Digest[:], d[:]) != 1 {
		return Principal{}, reasonBadToken
	}
	if c.User != "" && c.User != t.User {
		return Principal{}, reasonTokenUser
	}
	u, ok := a.users[t.User]
	if !ok {
		// ParseUsers refuses a token without its user.
		panic(fmt.Sprintf("auth: token %s of user %q, who is not loaded", t.ID(), t.User))
	}
	return Principal{User: u.Name, Role: u.Role, Token: t.ID()}, ""
}

func (a *Authenticator) defaultMatches(secret string) bool {
	d := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(d[:], a.defaultDigest[:]) == 1
}

// result logs and counts a failure (reason != ""), or logs a success at
// Debug.
func (a *Authenticator) result(c Credentials, p Principal, reason string) (Principal, error) {
	if reason == "" {
		if !a.log.Enabled(context.Background(), slog.LevelDebug) {
			return p, nil
		}
		a.log.Debug("authenticated", "user", p.User, "role", p.Role.String(), "token", p.Token,
			"remote", c.Remote, "proto", c.Proto)
		return p, nil
	}
	a.fail(c, reason, "authentication failed", "user", loggableName(c.User))
	if reason == reasonNoCredentials {
		return Principal{}, ErrNoCredentials
	}
	return Principal{}, ErrBadCredentials
}

// Denied logs and counts a request that p's role does not allow, and
// returns the error to report (wrapping ErrForbidden).
func (a *Authenticator) Denied(p Principal, act Action, c Credentials) error {
	if a != nil {
		a.fail(c, reasonForbidden, "permission denied", "user", p.User, "role", p.Role.String(), "action", act.String())
	}
	return fmt.Errorf("%w: user %q has role %s, and %s needs role %s", ErrForbidden, p.User, p.Role, act, act.Needs())
}

// loggableName returns name if it could be a user name, else a placeholder:
// a client that mixed up its arguments may have sent a password as the name.
func loggableName(name string) string {
	if name == "" || CheckName(name) == nil {
		return name
	}
	return "(not a valid user name)"
}

func (a *Authenticator) fail(c Credentials, reason, msg string, attrs ...any) {
	a.mu.Lock()
	a.failures[failureKey{c.Proto, reason}]++
	now := a.now()
	if now.Sub(a.window) >= time.Second {
		a.window, a.logged = now, 0
	}
	log := a.logged < a.maxLogs
	suppressed := 0
	if log {
		a.logged++
		suppressed, a.suppressd = a.suppressd, 0
	} else {
		a.suppressd++
	}
	a.mu.Unlock()
	if !log {
		return
	}
	attrs = append(attrs, "reason", reason, "remote", c.Remote, "proto", c.Proto)
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_before", suppressed)
	}
	a.log.Info(msg, attrs...)
}

// Failures returns the number of failed checks and denials so far, by
// front end and reason (as in trireme_auth_failures_total).
func (a *Authenticator) Failures() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	if a == nil {
		return out
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, n := range a.failures {
		if out[k.proto] == nil {
			out[k.proto] = map[string]uint64{}
		}
		out[k.proto][k.reason] = n
	}
	return out
}

var failuresDesc = prometheus.NewDesc("trireme_auth_failures_total",
	"Failed authentications and denied requests, by front end (http, resp) and reason.",
	[]string{"proto", "reason"}, nil)

// Describe implements prometheus.Collector.
func (a *Authenticator) Describe(ch chan<- *prometheus.Desc) { ch <- failuresDesc }

// Collect implements prometheus.Collector.
func (a *Authenticator) Collect(ch chan<- prometheus.Metric) {
	for proto, byReason := range a.Failures() {
		for reason, n := range byReason {
			ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(n), proto, reason)
		}
	}
}
