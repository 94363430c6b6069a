package vclock

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The client-facing causal context token: base64url (no padding) of
//
//	offset  size  field
//	0       1     version (TokenVersion)
//	1       ...   cluster id: uvarint length (0..255), bytes
//	...     4     CRC-32C of the key the read was of, big-endian
//	...     ...   Context encoding
//	end-4   4     CRC-32C (Castagnoli) of every byte before it, big-endian
//
// The token is opaque to clients: they hand back what a read gave them. The
// checksum catches corruption and hand edits; the cluster id turns a token
// from another cluster into ErrForeignToken instead of a silent misreading.
// It is not a signature: a client that forges a well-formed token can only
// hurt its own writes (claim to have seen what it has not).
const (
	TokenVersion   = 1
	MaxTokenLen    = 64 << 10 // encoded characters
	maxClusterID   = 255
	tokenCRCLength = 4
)

var (
	// ErrBadToken: a context token is malformed, corrupt or of an unknown version.
	ErrBadToken = errors.New("vclock: bad context token")
	// ErrForeignToken: a context token was minted by another cluster.
	ErrForeignToken = errors.New("vclock: context token from another cluster")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeToken returns the opaque token for a read of key with context c,
// minted by cluster.
func EncodeToken(cluster, key string, c Context) string {
	if len(cluster) > maxClusterID {
		cluster = cluster[:maxClusterID]
	}
	b := []byte{TokenVersion}
	b = binary.AppendUvarint(b, uint64(len(cluster)))
	b = append(b, cluster...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(key), castagnoli))
	b = AppendContext(b, c)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeToken decodes a token minted by cluster for a read of key. Errors
// wrap ErrBadToken or ErrForeignToken.
func DecodeToken(cluster, key, tok string) (Context, error) {
	if len(tok) > MaxTokenLen {
		return Context{}, fmt.Errorf("%w: %d characters, max %d", ErrBadToken, len(tok), MaxTokenLen)
	}
	for i := 0; i < len(tok); i++ {
		// The decoder skips '\r' and '\n'; a token is canonical, so refuse them.
		if c := tok[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return Context{}, fmt.Errorf("%w: character %q at %d", ErrBadToken, c, i)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return Context{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if len(b) < 1+1+tokenCRCLength {
		return Context{}, fmt.Errorf("%w: %d bytes", ErrBadToken, len(b))
	}
	body, sum := b[:len(b)-tokenCRCLength], binary.BigEndian.Uint32(b[len(b)-tokenCRCLength:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Context{}, fmt.Errorf("%w: checksum mismatch", ErrBadToken)
	}
	if body[0] != TokenVersion {
		return Context{}, fmt.Errorf("%w: version %d", ErrBadToken, body[0])
	}
	r := NewReader(body[1:])
	id := r.Bytes()
	if r.Err() == nil && len(id) > maxClusterID {
		return Context{}, fmt.Errorf("%w: cluster id of %d bytes", ErrBadToken, len(id))
	}
	if r.Err() == nil && string(id) != clip(cluster) {
		return Context{}, fmt.Errorf("%w: minted by %q, this is %q", ErrForeignToken, id, clip(cluster))
	}
	var sum4 uint32
	for range 4 {
		sum4 = sum4<<8 | uint32(r.Byte())
	}
	if r.Err() == nil && sum4 != crc32.Checksum([]byte(key), castagnoli) {
		return Context{}, fmt.Errorf("%w: read of another key", ErrForeignToken)
	}
	c := r.Context()
	if err := r.Finish(); err != nil {
		return Context{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	return c, nil
}

func clip(cluster string) string {
	if len(cluster) > maxClusterID {
		return cluster[:maxClusterID]
	}
	return cluster
}
