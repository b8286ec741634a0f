package chain

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/zeebo/blake3"
)

// HashSize is the size of every hash in Kimura: BLAKE3-256.
const HashSize = 32

// Hash is a BLAKE3-256 digest. Its text form is 64 lowercase hex characters.
type Hash [HashSize]byte

// Sum hashes data with BLAKE3-256.
func Sum(data []byte) Hash { return blake3.Sum256(data) }

// String returns the lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero bytes (the genesis parent).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses exactly 64 lowercase hex characters.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if err := DecodeHex(h[:], s); err != nil {
		return Hash{}, fmt.Errorf("hash: %w", err)
	}
	return h, nil
}

// DecodeHex decodes s, lowercase hex that fills dst exactly, into dst. The
// text form of every byte string is lowercase, so uppercase is refused: one
// value has one spelling.
func DecodeHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex characters, got %d", 2*len(dst), len(s))
	}
	if i := strings.IndexAny(s, "ABCDEF"); i >= 0 {
		return fmt.Errorf("invalid hex: uppercase %q at offset %d, want lowercase", s[i], i)
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("invalid hex: %w", err)
	}
	return nil
}

// MarshalText encodes h as lowercase hex, for JSON.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses 64 lowercase hex characters.
func (h *Hash) UnmarshalText(text []byte) error {
	v, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = v
	return nil
}
