package store

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/chain"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) chain.PublicKey {
	return chain.PublicKey(k.Public().(ed25519.PublicKey))
}

var producerKey = testKey(1)

// mustOpen opens the store in dir; the caller closes it.
func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

// newStore opens a store in a fresh directory, closed when the test ends.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s := mustOpen(t, dir)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, dir
}

// builder seals blocks of freshly signed messages on a store's tip.
type builder struct {
	sender ed25519.PrivateKey
	nonce  uint64
	now    uint64
}

func newBuilder() *builder { return &builder{sender: testKey(2), now: 1_700_000_000_000} }

// messages returns n new signed, stamped messages.
func (bl *builder) messages(n int) []chain.Message {
	msgs := make([]chain.Message, n)
	for i := range msgs {
		bl.nonce++
		bl.now++
		msgs[i] = chain.SignMessage(bl.sender, bl.nonce, "message body")
		msgs[i].Timestamp = bl.now
	}
	return msgs
}

// seal builds the block that extends tip with msgs.
func (bl *builder) seal(tip Tip, msgs []chain.Message) *chain.Block {
	bl.now += 1000
	return chain.Seal(&tip.Header, msgs, bl.now, producerKey)
}

func confirmedOf(b *chain.Block, msgs []chain.Message) []Confirmed {
	out := make([]Confirmed, len(msgs))
	for i := range msgs {
		out[i] = Confirmed{Message: msgs[i], Height: b.Height, Index: uint32(i)}
	}
	return out
}

// extend commits one block with n new messages and returns it.
func (bl *builder) extend(t *testing.T, s *Store, n int) (*chain.Block, []chain.Message) {
	t.Helper()
	msgs := bl.messages(n)
	b := bl.seal(s.Tip(), msgs)
	if err := s.Commit(Commit{Blocks: []*chain.Block{b}, Messages: confirmedOf(b, msgs)}); err != nil {
		t.Fatalf("commit block %d: %v", b.Height, err)
	}
	return b, msgs
}

// buildChain pins the producer and commits blocks with the given numbers of
// messages on top of genesis.
func buildChain(t *testing.T, s *Store, sizes ...int) ([]*chain.Block, *builder) {
	t.Helper()
	if err := s.SetProducer(pub(producerKey)); err != nil {
		t.Fatal(err)
	}
	bl := newBuilder()
	blocks := []*chain.Block{chain.Genesis()}
	for _, n := range sizes {
		b, _ := bl.extend(t, s, n)
		blocks = append(blocks, b)
	}
	return blocks, bl
}

// wantCorruption asserts that VerifyChain reports a *CorruptionError at height.
func wantCorruption(t *testing.T, s *Store, height uint64) *CorruptionError {
	t.Helper()
	n, err := s.VerifyChain(t.Context(), nil)
	ce, ok := IsCorruption(err)
	if !ok {
		t.Fatalf("VerifyChain = %d, %v; want a *CorruptionError at height %d", n, err, height)
	}
	if ce.Height != height {
		t.Fatalf("VerifyChain reports height %d (%s), want %d", ce.Height, ce.Reason, height)
	}
	return ce
}

func wantIntact(t *testing.T, s *Store, blocks uint64) {
	t.Helper()
	n, err := s.VerifyChain(t.Context(), nil)
	if err != nil || n != blocks {
		t.Fatalf("VerifyChain = %d, %v; want %d blocks, no error", n, err, blocks)
	}
}

// setRaw writes a value behind the store's back, as damage on disk would.
func setRaw(t *testing.T, s *Store, key, value []byte) {
	t.Helper()
	if err := s.db.Set(key, value, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
}

func notFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("%s: %v, want ErrNotFound", what, err)
	}
}

// quietDefaults are Pebble's default options with the logging silenced: the
// on-disk format must be readable by a plain Pebble (SPEC "On-disk schema").
func quietDefaults() *pebble.Options {
	return &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}}
}
