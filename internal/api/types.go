package api

import (
	"encoding/hex"
	"fmt"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// Block is the JSON form of a block (SPEC "HTTP API").
type Block struct {
	Height       uint64       `json:"height"`
	Timestamp    uint64       `json:"timestamp"`
	PrevHash     chain.Hash   `json:"prev_hash"`
	MessageRoot  chain.Hash   `json:"message_root"`
	Producer     HexBytes     `json:"producer"`
	Signature    HexBytes     `json:"signature"`
	Hash         chain.Hash   `json:"hash"`
	MessageCount int          `json:"message_count"`
	MessageIDs   []chain.Hash `json:"message_ids"`
	Messages     []Message    `json:"messages,omitzero"`
}

// Message is the JSON form of a message. BlockHeight, Index and Proof are
// present only when Status is "confirmed".
type Message struct {
	ID          chain.Hash   `json:"id"`
	Sender      HexBytes     `json:"sender"`
	Nonce       uint64       `json:"nonce"`
	Content     string       `json:"content"`
	Signature   HexBytes     `json:"signature"`
	Timestamp   uint64       `json:"timestamp"`
	Status      string       `json:"status"`
	BlockHeight *uint64      `json:"block_height,omitempty"`
	Index       *uint32      `json:"index,omitempty"`
	Proof       []chain.Hash `json:"proof,omitzero"`
}

// Message statuses.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
)

// Submission is the body of POST /message and an element of POST /messages.
// Pointers tell a missing field from a zero one.
type Submission struct {
	Sender    *string `json:"sender"`
	Nonce     *uint64 `json:"nonce"`
	Content   *string `json:"content"`
	Signature *string `json:"signature"`
}

// Accepted is the answer to an accepted submission.
type Accepted struct {
	ID     chain.Hash `json:"id"`
	Status string     `json:"status"`
}

// Result is one element of POST /messages' results: either accepted (ID and
// Status) or refused (Error, Code and, when known, ID).
type Result struct {
	ID     *chain.Hash `json:"id,omitempty"`
	Status string      `json:"status,omitempty"`
	Error  string      `json:"error,omitempty"`
	Code   int         `json:"code,omitempty"`
}

// The roles GET /health reports.
const (
	RoleLeader = "leader"
	RolePeer   = "peer"
)

// Health is the answer to GET /health.
type Health struct {
	Status      string     `json:"status"`
	Role        string     `json:"role"`
	Height      uint64     `json:"height"`
	Hash        chain.Hash `json:"hash"`
	GenesisHash chain.Hash `json:"genesis_hash"`
	PeerID      string     `json:"peer_id"`
	P2PAddrs    []string   `json:"p2p_addrs"`
	Pending     int        `json:"pending"`
}

// Height is the answer to GET /height.
type Height struct {
	Height uint64     `json:"height"`
	Hash   chain.Hash `json:"hash"`
}

// HexBytes is a byte string in lowercase hex.
type HexBytes []byte

// MarshalText encodes lowercase hex.
func (b HexBytes) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out, nil
}

// UnmarshalText decodes lowercase hex.
func (b *HexBytes) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if err := chain.DecodeHex(out, string(text)); err != nil {
		return err
	}
	*b = out
	return nil
}

// NewBlock returns the JSON form of b.
func NewBlock(b *chain.Block) Block {
	ids := b.MessageIDs()
	return Block{
		Height:       b.Height,
		Timestamp:    b.Timestamp,
		PrevHash:     b.PrevHash,
		MessageRoot:  b.MessageRoot,
		Producer:     b.Producer[:],
		Signature:    b.Signature[:],
		Hash:         b.Hash(),
		MessageCount: len(ids),
		MessageIDs:   ids,
	}
}

// NewMessage returns the JSON form of m; a confirmed message carries its
// place and inclusion proof.
func NewMessage(m *chain.Message) Message {
	return Message{
		ID:        m.ID(),
		Sender:    m.Sender[:],
		Nonce:     m.Nonce,
		Content:   m.Content,
		Signature: m.Signature[:],
		Timestamp: m.Timestamp,
		Status:    StatusPending,
	}
}

// Confirm marks the JSON message confirmed at height and index with proof.
func (j *Message) Confirm(height uint64, index uint32, proof []chain.Hash) {
	j.Status = StatusConfirmed
	j.BlockHeight = &height
	j.Index = &index
	if proof == nil {
		proof = []chain.Hash{}
	}
	j.Proof = proof
}

// ToChain converts the JSON message back, checking field sizes. It does not
// verify the signature or that ID matches.
func (j *Message) ToChain() (chain.Message, error) {
	var m chain.Message
	if len(j.Sender) != chain.PublicKeySize {
		return m, fmt.Errorf("sender: want %d bytes, got %d", chain.PublicKeySize, len(j.Sender))
	}
	if len(j.Signature) != chain.SignatureSize {
		return m, fmt.Errorf("signature: want %d bytes, got %d", chain.SignatureSize, len(j.Signature))
	}
	copy(m.Sender[:], j.Sender)
	copy(m.Signature[:], j.Signature)
	m.Nonce, m.Content, m.Timestamp = j.Nonce, j.Content, j.Timestamp
	return m, nil
}

// ToChain checks that every field is present and well formed and returns
// the message (timestamp zero, signature not yet verified).
func (s *Submission) ToChain() (chain.Message, error) {
	var m chain.Message
	switch {
	case s.Sender == nil:
		return m, fmt.Errorf("missing field: sender")
	case s.Nonce == nil:
		return m, fmt.Errorf("missing field: nonce")
	case s.Content == nil:
		return m, fmt.Errorf("missing field: content")
	case s.Signature == nil:
		return m, fmt.Errorf("missing field: signature")
	}
	if err := chain.DecodeHex(m.Sender[:], *s.Sender); err != nil {
		return m, fmt.Errorf("sender: %w", err)
	}
	if err := chain.DecodeHex(m.Signature[:], *s.Signature); err != nil {
		return m, fmt.Errorf("signature: %w", err)
	}
	m.Nonce, m.Content = *s.Nonce, *s.Content
	return m, nil
}

// NewSubmission is the JSON body that submits m.
func NewSubmission(m *chain.Message) Submission {
	sender, sig := hex.EncodeToString(m.Sender[:]), hex.EncodeToString(m.Signature[:])
	nonce, content := m.Nonce, m.Content
	return Submission{Sender: &sender, Nonce: &nonce, Content: &content, Signature: &sig}
}
