package chain

import (
	"encoding/hex"
	"fmt"

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
// value has one spelling. It is on the path of every submission, so it
// checks and decodes in one pass.
func DecodeHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex characters, got %d", 2*len(dst), len(s))
	}
	for i := range dst {
		hi, lo := lowerHex[s[2*i]], lowerHex[s[2*i+1]]
		if hi|lo > 0x0f {
			return badHex(s)
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

// lowerHex maps a lowercase hex digit to its value and any other byte to 0xff.
var lowerHex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// badHex says what is wrong with the first byte of s that is not a
// lowercase hex digit.
func badHex(s string) error {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case lowerHex[c] <= 0x0f:
		case 'A' <= c && c <= 'F':
			return fmt.Errorf("invalid hex: uppercase %q at offset %d, want lowercase", c, i)
		default:
			return fmt.Errorf("invalid hex: byte %q at offset %d", c, i)
		}
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
