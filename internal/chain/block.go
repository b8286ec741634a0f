package chain

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// HeaderSize is the length of a header's canonical encoding.
const HeaderSize = 8 + 8 + HashSize + HashSize + PublicKeySize

// Header is what a block hash commits to.
type Header struct {
	Height      uint64
	Timestamp   uint64 // Unix milliseconds; never below the parent's
	PrevHash    Hash
	MessageRoot Hash
	Producer    PublicKey // the leader's node key; zero for genesis
}

// Canonical header encoding, 112 bytes, the preimage of the block hash:
//
//	height        8 bytes, big-endian
//	timestamp     8 bytes, big-endian
//	prev_hash    32 bytes
//	message_root 32 bytes
//	producer     32 bytes
//
// Pinned by the golden vector in testdata/golden.json.

// AppendEncoding appends h's canonical encoding to dst.
func (h *Header) AppendEncoding(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, h.Height)
	dst = binary.BigEndian.AppendUint64(dst, h.Timestamp)
	dst = append(dst, h.PrevHash[:]...)
	dst = append(dst, h.MessageRoot[:]...)
	return append(dst, h.Producer[:]...)
}

// DecodeHeader decodes exactly HeaderSize bytes.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) != HeaderSize {
		return h, fmt.Errorf("header: %w: %d bytes, want %d", ErrTruncated, len(b), HeaderSize)
	}
	h.Height = binary.BigEndian.Uint64(b[0:8])
	h.Timestamp = binary.BigEndian.Uint64(b[8:16])
	copy(h.PrevHash[:], b[16:48])
	copy(h.MessageRoot[:], b[48:80])
	copy(h.Producer[:], b[80:112])
	return h, nil
}

// Hash is the block hash: BLAKE3 of the canonical header encoding.
func (h *Header) Hash() Hash {
	var buf [HeaderSize]byte
	return Sum(h.AppendEncoding(buf[:0]))
}

// Block is a header, the producer's signature over its hash, and the entries
// of its messages in block order. Message contents live apart from blocks:
// a peer may hold a block without its messages and fetch them on demand.
type Block struct {
	Header
	Signature Signature
	Entries   []Entry
}

// Genesis is block 0: timestamp 0, zero parent, no messages, no producer and
// no signature. It is the same on every node.
func Genesis() *Block {
	return &Block{Header: Header{MessageRoot: EmptyRoot}}
}

// GenesisHash is the hash of Genesis().
var GenesisHash = Genesis().Hash()

// MessageIDs returns the IDs of the block's messages in block order.
func (b *Block) MessageIDs() []Hash {
	ids := make([]Hash, len(b.Entries))
	for i, e := range b.Entries {
		ids[i] = e.ID
	}
	return ids
}

// Seal builds the block that extends parent with msgs, whose timestamps the
// caller has stamped, and signs it with the producer's key. The timestamp is
// now, raised to the parent's if the clock went back.
func Seal(parent *Header, msgs []Message, now uint64, key ed25519.PrivateKey) *Block {
	entries := make([]Entry, len(msgs))
	for i := range msgs {
		entries[i] = EntryOf(&msgs[i])
	}
	b := &Block{
		Header: Header{
			Height:      parent.Height + 1,
			Timestamp:   max(now, parent.Timestamp),
			PrevHash:    parent.Hash(),
			MessageRoot: MessageRoot(entries),
		},
		Entries: entries,
	}
	copy(b.Producer[:], key.Public().(ed25519.PublicKey))
	h := b.Hash()
	copy(b.Signature[:], ed25519.Sign(key, h[:]))
	return b
}

// Block record encoding, used on disk and on the wire:
//
//	header     112 bytes (see Header)
//	signature   64 bytes
//	count        4 bytes, big-endian
//	entries    count × (id 32 bytes || message_hash 32 bytes)
//
// Every byte of a record is covered by the block hash: the header directly,
// the signature by verifying it against the hash, and the entries through
// the message root they must reproduce (see CheckRecord).

const recordFixedSize = HeaderSize + SignatureSize + 4

// MaxEntries bounds the entry count a record may declare, so that a corrupt
// count can never make a decoder allocate without limit.
const MaxEntries = 1 << 22

// EncodedSize returns the length of b's record encoding.
func (b *Block) EncodedSize() int { return recordFixedSize + len(b.Entries)*2*HashSize }

// AppendEncoding appends b's record encoding to dst.
func (b *Block) AppendEncoding(dst []byte) []byte {
	dst = b.Header.AppendEncoding(dst)
	dst = append(dst, b.Signature[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.Entries)))
	for i := range b.Entries {
		dst = append(dst, b.Entries[i].ID[:]...)
		dst = append(dst, b.Entries[i].MessageHash[:]...)
	}
	return dst
}

// Encode returns b's record encoding.
func (b *Block) Encode() []byte { return b.AppendEncoding(make([]byte, 0, b.EncodedSize())) }

// DecodeBlock decodes a block record. It checks the framing only; use
// CheckRecord for the message root and Link/VerifySignature for the chain.
func DecodeBlock(rec []byte) (*Block, error) {
	if len(rec) < recordFixedSize {
		return nil, fmt.Errorf("block: %w: %d bytes, need at least %d", ErrTruncated, len(rec), recordFixedSize)
	}
	h, _ := DecodeHeader(rec[:HeaderSize])
	b := &Block{Header: h}
	copy(b.Signature[:], rec[HeaderSize:HeaderSize+SignatureSize])
	n := binary.BigEndian.Uint32(rec[HeaderSize+SignatureSize:])
	if n > MaxEntries {
		return nil, fmt.Errorf("block %d: %w: %d entries, at most %d", h.Height, ErrTooLarge, n, MaxEntries)
	}
	body := rec[recordFixedSize:]
	if uint64(len(body)) != uint64(n)*2*HashSize {
		return nil, fmt.Errorf("block %d: %w: %d entries need %d bytes, have %d",
			h.Height, ErrTruncated, n, uint64(n)*2*HashSize, len(body))
	}
	if n > 0 {
		b.Entries = make([]Entry, n)
		for i := range b.Entries {
			off := i * 2 * HashSize
			copy(b.Entries[i].ID[:], body[off:off+HashSize])
			copy(b.Entries[i].MessageHash[:], body[off+HashSize:off+2*HashSize])
		}
	}
	return b, nil
}

// Reasons a block is refused. They are wrapped with detail; test with errors.Is.
var (
	ErrTooLarge    = errors.New("too many entries")
	ErrMessageRoot = errors.New("message root does not match entries")
	ErrHeight      = errors.New("wrong height")
	ErrPrevHash    = errors.New("prev_hash does not link to parent")
	ErrTimestamp   = errors.New("timestamp below parent's")
	ErrProducer    = errors.New("wrong producer")
	ErrGenesis     = errors.New("not the genesis block")
)

// CheckRecord checks what a block says about itself: its entries reproduce
// its message root, and a genesis block is exactly Genesis().
func (b *Block) CheckRecord() error {
	if b.Height == 0 {
		if b.Hash() != GenesisHash || b.Signature != (Signature{}) || len(b.Entries) != 0 {
			return ErrGenesis
		}
		return nil
	}
	if MessageRoot(b.Entries) != b.MessageRoot {
		return fmt.Errorf("block %d: %w", b.Height, ErrMessageRoot)
	}
	return nil
}

// Link checks that b may follow parent, whose hash is parentHash: the next
// height, the parent's hash, a timestamp not below the parent's.
func (b *Block) Link(parent *Header, parentHash Hash) error {
	switch {
	case b.Height != parent.Height+1:
		return fmt.Errorf("block %d: %w: want %d", b.Height, ErrHeight, parent.Height+1)
	case b.PrevHash != parentHash:
		return fmt.Errorf("block %d: %w: prev_hash %s, parent %s", b.Height, ErrPrevHash, b.PrevHash, parentHash)
	case b.Timestamp < parent.Timestamp:
		return fmt.Errorf("block %d: %w: %d < %d", b.Height, ErrTimestamp, b.Timestamp, parent.Timestamp)
	}
	return nil
}

// VerifySignature checks that b was produced and signed by producer.
func (b *Block) VerifySignature(producer PublicKey) error {
	if b.Producer != producer {
		return fmt.Errorf("block %d: %w: %x, want %x", b.Height, ErrProducer, b.Producer[:], producer[:])
	}
	if err := VerifyBlockSignature(producer, b.Hash(), b.Signature); err != nil {
		return fmt.Errorf("block %d: %w", b.Height, err)
	}
	return nil
}

// VerifyBlockSignature checks sig as producer's signature over a block hash.
func VerifyBlockSignature(producer PublicKey, hash Hash, sig Signature) error {
	if !verifySig(producer, hash[:], sig) {
		return ErrBadSignature
	}
	return nil
}

// CheckNext is every stateless rule for b to extend parent under producer:
// CheckRecord, Link, the producer and its signature.
func (b *Block) CheckNext(parent *Header, parentHash Hash, producer PublicKey) error {
	_, err := CheckSequence(parent, parentHash, []*Block{b}, producer)
	return err
}

// CheckSequence checks that blocks extend parent one after another, each by
// CheckNext's rules, with the signature checks batched and spread over every
// core. It returns how many leading blocks passed and, if one failed, why.
func CheckSequence(parent *Header, parentHash Hash, blocks []*Block, producer PublicKey) (int, error) {
	hashes := make([]Hash, len(blocks))
	good := len(blocks)
	var linkErr error
	for i, b := range blocks {
		if err := b.CheckRecord(); err != nil {
			good, linkErr = i, err
			break
		}
		if err := b.Link(parent, parentHash); err != nil {
			good, linkErr = i, err
			break
		}
		if b.Producer != producer {
			good, linkErr = i, fmt.Errorf("block %d: %w: %x, want %x", b.Height, ErrProducer, b.Producer[:], producer[:])
			break
		}
		hashes[i] = b.Hash()
		parent, parentHash = &b.Header, hashes[i]
	}
	if bad := firstBadSignature(blocks[:good], hashes[:good], producer); bad < good {
		return bad, fmt.Errorf("block %d: %w", blocks[bad].Height, ErrBadSignature)
	}
	return good, linkErr
}

// firstBadSignature returns the index of the first block whose signature
// over hashes[i] is not producer's, or len(blocks). It splits the work in
// contiguous chunks over every core, each batch-verified.
func firstBadSignature(blocks []*Block, hashes []Hash, producer PublicKey) int {
	sigs := make([]Signature, len(blocks))
	for i, b := range blocks {
		sigs[i] = b.Signature
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), len(blocks)/64))
	chunk := (len(blocks) + workers - 1) / workers
	bad := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := min(w*chunk, len(blocks)), min((w+1)*chunk, len(blocks))
		wg.Add(1)
		go func() {
			defer wg.Done()
			bad[w] = lo + FirstBadBlockSignature(producer, hashes[lo:hi], sigs[lo:hi])
		}()
	}
	wg.Wait()
	first := len(blocks)
	for w, b := range bad {
		if hi := min((w+1)*chunk, len(blocks)); b < hi {
			first = min(first, b)
		}
	}
	return first
}
