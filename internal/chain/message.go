package chain

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/zeebo/blake3"
)

// Sizes of the fixed fields of a message.
const (
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
	// messageFixedSize is sender, nonce, timestamp and signature: the
	// encoding's length before the content.
	messageFixedSize = PublicKeySize + 8 + 8 + SignatureSize
)

// messageDomain prefixes the bytes a sender signs, so that a message
// signature can never be replayed as any other kind of signature.
const messageDomain = "kimura/message/v1"

// PublicKey is an Ed25519 public key: a message's sender or a block's producer.
type PublicKey [PublicKeySize]byte

// Signature is an Ed25519 signature.
type Signature [SignatureSize]byte

// Errors a message may fail with. They are wrapped with detail; test with errors.Is.
var (
	ErrBadSignature = errors.New("invalid signature")
	ErrBadContent   = errors.New("content is not valid UTF-8")
	ErrTruncated    = errors.New("truncated encoding")
)

// Message is a sender's signed text. Sender, Nonce, Content and Signature come
// from the sender; Timestamp (Unix milliseconds) is stamped by the leader when
// it accepts the message and is not covered by the sender's signature.
type Message struct {
	Sender    PublicKey
	Nonce     uint64
	Content   string
	Signature Signature
	Timestamp uint64
}

// MessageID is BLAKE3(sender || nonce as 8 bytes big-endian). Content and
// timestamp are deliberately not part of it: (sender, nonce) is unique forever.
func MessageID(sender PublicKey, nonce uint64) Hash {
	var buf [PublicKeySize + 8]byte
	copy(buf[:], sender[:])
	binary.BigEndian.PutUint64(buf[PublicKeySize:], nonce)
	return Sum(buf[:])
}

// ID returns the message's ID.
func (m *Message) ID() Hash { return MessageID(m.Sender, m.Nonce) }

// SigningBytes returns what a sender signs:
// "kimura/message/v1" || sender (32) || nonce (8, big-endian) || content.
func SigningBytes(sender PublicKey, nonce uint64, content string) []byte {
	buf := make([]byte, 0, len(messageDomain)+PublicKeySize+8+len(content))
	buf = append(buf, messageDomain...)
	buf = append(buf, sender[:]...)
	buf = binary.BigEndian.AppendUint64(buf, nonce)
	return append(buf, content...)
}

// SignMessage builds a message from sender key priv and signs it. The
// timestamp is left zero for the leader to stamp.
func SignMessage(priv ed25519.PrivateKey, nonce uint64, content string) Message {
	var m Message
	copy(m.Sender[:], priv.Public().(ed25519.PublicKey))
	m.Nonce = nonce
	m.Content = content
	copy(m.Signature[:], ed25519.Sign(priv, SigningBytes(m.Sender, nonce, content)))
	return m
}

// Verify checks what the sender vouches for: the content is UTF-8 and the
// signature is the sender's over SigningBytes. It does not check size
// limits, which are a node's policy.
func (m *Message) Verify() error {
	if err := m.checkContent(); err != nil {
		return err
	}
	if !verifySig(m.Sender, SigningBytes(m.Sender, m.Nonce, m.Content), m.Signature) {
		return m.signatureError()
	}
	return nil
}

func (m *Message) checkContent() error {
	if !utf8.ValidString(m.Content) {
		return ErrBadContent
	}
	return nil
}

func (m *Message) signatureError() error {
	return fmt.Errorf("message %s: %w", m.ID(), ErrBadSignature)
}

// Encoding of a message, the form that is stored and hashed:
//
//	sender     32 bytes
//	nonce       8 bytes, big-endian
//	timestamp   8 bytes, big-endian, Unix milliseconds
//	signature  64 bytes
//	content    the remaining bytes, UTF-8
//
// The content's length is implied by the record's length, so every byte
// string of at least 112 bytes with UTF-8 content decodes, and decoding then
// encoding gives the same bytes back.

// EncodedSize returns the length of m's encoding.
func (m *Message) EncodedSize() int { return messageFixedSize + len(m.Content) }

// AppendEncoding appends m's canonical encoding to dst.
func (m *Message) AppendEncoding(dst []byte) []byte {
	dst = append(dst, m.Sender[:]...)
	dst = binary.BigEndian.AppendUint64(dst, m.Nonce)
	dst = binary.BigEndian.AppendUint64(dst, m.Timestamp)
	dst = append(dst, m.Signature[:]...)
	return append(dst, m.Content...)
}

// Encode returns m's canonical encoding.
func (m *Message) Encode() []byte { return m.AppendEncoding(make([]byte, 0, m.EncodedSize())) }

// DecodeMessage decodes a canonical message encoding. It does not verify the
// signature.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if len(b) < messageFixedSize {
		return m, fmt.Errorf("message: %w: %d bytes, need at least %d", ErrTruncated, len(b), messageFixedSize)
	}
	copy(m.Sender[:], b[0:32])
	m.Nonce = binary.BigEndian.Uint64(b[32:40])
	m.Timestamp = binary.BigEndian.Uint64(b[40:48])
	copy(m.Signature[:], b[48:112])
	content := b[messageFixedSize:]
	if !utf8.Valid(content) {
		return Message{}, fmt.Errorf("message: %w", ErrBadContent)
	}
	m.Content = string(content)
	return m, nil
}

// Hash is BLAKE3 of the message's canonical encoding: it covers sender, nonce,
// content, signature and timestamp. A block's Merkle leaf binds it to the ID.
func (m *Message) Hash() Hash {
	h := blake3.New()
	var fixed [messageFixedSize]byte
	copy(fixed[0:32], m.Sender[:])
	binary.BigEndian.PutUint64(fixed[32:40], m.Nonce)
	binary.BigEndian.PutUint64(fixed[40:48], m.Timestamp)
	copy(fixed[48:112], m.Signature[:])
	_, _ = h.Write(fixed[:])
	_, _ = h.WriteString(m.Content)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Entry is what a block records of each message: its ID and the hash of
// the whole message. Entries are the leaves of the block's Merkle tree.
type Entry struct {
	ID          Hash
	MessageHash Hash
}

// EntryOf returns m's block entry.
func EntryOf(m *Message) Entry { return Entry{ID: m.ID(), MessageHash: m.Hash()} }
