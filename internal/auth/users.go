package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Record kinds: the first field of a line. Part of the users file format.
const (
	kindUser  = "user"
	kindToken = "token"
	noHash    = "-" // a user line's hash field when the user has no password
)

// Token format. Part of the token format: changing it invalidates nothing
// stored (only digests are stored), but clients and secret scanners match it.
const (
	// TokenPrefix starts every API token, so that a token is told from a
	// password, and a leaked one is easy to find.
	TokenPrefix = "trireme_"
	// tokenBytes of randomness follow the prefix, base64url without padding.
	tokenBytes = 32
)

// tokenLen is the length of a token: the prefix and 43 base64 characters.
var tokenLen = len(TokenPrefix) + base64.RawURLEncoding.EncodedLen(tokenBytes)

// MaxPasswordBytes is the longest password: bcrypt reads no further, so a
// longer one would be checked only in part.
const MaxPasswordBytes = 72

// MinDefaultPasswordBytes is the shortest default-user password
// (Config.DefaultPassword). It is compared with a fast hash, so, unlike the
// bcrypt-hashed passwords of the users file, it must be too long to guess
// by asking.
const MinDefaultPasswordBytes = 16

// DefaultCost is the bcrypt cost of new password hashes (2^11 rounds: about
// 0.1 s on a server core).
const DefaultCost = 11

// DefaultUser is the user that a password alone (Redis's "AUTH password")
// authenticates as.
const DefaultUser = "default"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CheckName reports whether name can be a user name: 1 to 64 letters,
// digits, '.', '_', '@' or '-', starting with a letter or digit.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q (want 1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit)", ErrBadName, name)
	}
	return nil
}

// User is one user of a users file.
type User struct {
	Name string
	Role Role
	// Hash is the bcrypt hash of the user's password; nil if the user has
	// none (and authenticates with tokens only).
	Hash []byte
	Line int // where it was defined
}

// Token is one API token of a users file: only its digest is stored.
type Token struct {
	User   string
	Digest [sha256.Size]byte // SHA-256 of the whole token, prefix included
	Label  string            // optional, for people and logs
	Line   int
}

// ID is a short, non-secret name for the token in logs: its label if it has
// one, else the start of its digest.
func (t Token) ID() string {
	if t.Label != "" {
		return t.Label
	}
	return hex.EncodeToString(t.Digest[:4])
}

// Users is the content of a users file.
type Users struct {
	Name   string      // where it came from, for messages
	Mode   fs.FileMode // permission bits of the file (LoadUsers only)
	Users  []User      // in file order
	Tokens []Token     // in file order
}

// Lookup returns the user called name.
func (u *Users) Lookup(name string) (User, bool) {
	i := slices.IndexFunc(u.Users, func(x User) bool { return x.Name == name })
	if i < 0 {
		return User{}, false
	}
	return u.Users[i], true
}

// LoadUsers reads and parses the users file at path.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	u, err := ParseUsers(f, path)
	if err != nil {
		return nil, err
	}
	u.Mode = st.Mode().Perm()
	return u, nil
}

// maxLineBytes bounds a line of a users file.
const maxLineBytes = 4 << 10

// ParseUsers parses a users file (see the package documentation for the
// format). name is used in error messages, which also give the line number.
func ParseUsers(r io.Reader, name string) (*Users, error) {
	u := &Users{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLineBytes)
	lineNo := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s line %d: %w", ErrUsersFile, name, lineNo, fmt.Errorf(format, args...))
	}
	byName := map[string]int{}
	digests := map[[sha256.Size]byte]int{}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case kindUser:
			if len(f) != 4 {
				return nil, bad("want \"user NAME ROLE HASH\" (HASH: a bcrypt hash, or - for none), got %d fields", len(f))
			}
			usr, err := parseUser(f[1], f[2], f[3])
			if err != nil {
				return nil, bad("%w", err)
			}
			if prev, dup := byName[usr.Name]; dup {
				return nil, bad("user %q is already defined on line %d", usr.Name, prev)
			}
			usr.Line = lineNo
			byName[usr.Name] = lineNo
			u.Users = append(u.Users, usr)
		case kindToken:
			if len(f) != 3 && len(f) != 4 {
				return nil, bad("want \"token NAME SHA256-HEX [LABEL]\", got %d fields", len(f))
			}
			tok, err := parseToken(f[1:])
			if err != nil {
				return nil, bad("%w", err)
			}
			if prev, dup := digests[tok.Digest]; dup {
				return nil, bad("the same token is already listed on line %d", prev)
			}
			tok.Line = lineNo
			digests[tok.Digest] = lineNo
			u.Tokens = append(u.Tokens, tok)
		default:
			return nil, bad("unknown record %q (want user or token)", f[0])
		}
	}
	if err := sc.Err(); err != nil {
		lineNo++
		return nil, bad("%w", err)
	}
	for _, t := range u.Tokens {
		if _, ok := byName[t.User]; !ok {
			lineNo = t.Line
			return nil, bad("token of user %q, who has no user line", t.User)
		}
	}
	return u, nil
}

func parseUser(name, role, hash string) (User, error) {
	if err := CheckName(name); err != nil {
		return User{}, err
	}
	r, err := ParseRole(role)
	if err != nil {
		return User{}, err
	}
	usr := User{Name: name, Role: r}
	if hash == noHash {
		return usr, nil
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return User{}, fmt.Errorf("%w: the password hash of %q is not a bcrypt hash ($2a$, $2b$ or $2y$): %v (make one with: trireme users add %s --role %s)",
			ErrBadHash, name, err, name, role)
	}
	usr.Hash = []byte(hash)
	return usr, nil
}

func parseToken(f []string) (Token, error) {
	if err := CheckName(f[0]); err != nil {
		return Token{}, err
	}
	t := Token{User: f[0]}
	d, err := hex.DecodeString(f[1])
	if err != nil || len(d) != sha256.Size {
		return Token{}, fmt.Errorf("%w: token digest %.16q... is not 64 hex digits (a SHA-256); the file stores digests, never tokens (make one with: trireme users token %s)",
			ErrBadHash, f[1], f[0])
	}
	copy(t.Digest[:], d)
	if len(f) == 3 {
		t.Label = f[2]
		if err := CheckName(t.Label); err != nil {
			return Token{}, fmt.Errorf("token label: %w", err)
		}
	}
	return t, nil
}

// HashPassword returns the bcrypt hash of password at cost (DefaultCost if
// 0), for a users file. It refuses an empty password, one longer than
// MaxPasswordBytes and one with a line break.
func HashPassword(password string, cost int) (string, error) {
	if cost == 0 {
		cost = DefaultCost
	}
	if err := checkPassword(password); err != nil {
		return "", err
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return "", fmt.Errorf("%w: bcrypt cost %d (want %d to %d)", ErrBadPassword, cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadPassword, err)
	}
	return string(h), nil
}

func checkPassword(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty", ErrBadPassword)
	case len(p) > MaxPasswordBytes:
		return fmt.Errorf("%w: %d bytes, longer than bcrypt's %d", ErrBadPassword, len(p), MaxPasswordBytes)
	case strings.ContainsAny(p, "\r\n"):
		return fmt.Errorf("%w: it holds a line break", ErrBadPassword)
	}
	return nil
}

// NewToken returns a new API token, made of tokenBytes from random (nil =
// crypto/rand), and its digest, which is all a users file keeps. The token
// is shown once, to its owner.
func NewToken(random io.Reader) (string, [sha256.Size]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	b := make([]byte, tokenBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", [sha256.Size]byte{}, fmt.Errorf("auth: making a token: %w", err)
	}
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return tok, TokenDigest(tok), nil
}

// TokenDigest is what a users file stores for token: its SHA-256. A token
// carries 256 random bits, so a fast hash suffices: it cannot be guessed
// from its digest.
func TokenDigest(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// IsToken reports whether s has the form of an API token (not whether it
// is a valid one).
func IsToken(s string) bool { return len(s) == tokenLen && strings.HasPrefix(s, TokenPrefix) }

// UserLine is the users file line of a user; hash "" means no password.
func UserLine(name string, role Role, hash string) string {
	if hash == "" {
		hash = noHash
	}
	return fmt.Sprintf("%s %s %s %s", kindUser, name, role, hash)
}

// TokenLine is the users file line of a token of user name; label may be "".
func TokenLine(name string, digest [sha256.Size]byte, label string) string {
	l := fmt.Sprintf("%s %s %s", kindToken, name, hex.EncodeToString(digest[:]))
	if label != "" {
		l += " " + label
	}
	return l
}

// AppendLine appends line to the users file at path, creating it with mode
// 0600 if missing, and fsyncs it. The file is parsed with the line added
// first, so a line that would make it invalid (a second user of the same
// name, a token of nobody) is refused and nothing is written.
func AppendLine(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	sep := ""
	if len(old) > 0 && old[len(old)-1] != '\n' {
		sep = "\n"
	}
	add := sep + line + "\n"
	if _, err := ParseUsers(strings.NewReader(string(old)+add), path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	if _, err := f.WriteString(add); err != nil {
		f.Close()
		return fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	return nil
}
