package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/store"
)

// A committed block whose message record is gone is corruption, which the
// API answers 500, not an unknown message's 404.
func TestLeaderBlockMessagesMissingRecordIsCorruption(t *testing.T) {
	f := newFixture(t, "")
	msgs := signed(t, 2)
	b := f.next(chain.Genesis(), msgs...)
	// The block alone, without its msg: records.
	if err := f.st.Commit(store.Commit{Blocks: []*chain.Block{b}}); err != nil {
		t.Fatal(err)
	}
	c := &leaderChain{blocks: blocks{f.st}, l: &leader{st: f.st}}
	_, err := c.BlockMessages(context.Background(), b)
	var ce *store.CorruptionError
	if !errors.As(err, &ce) || ce.Height != 1 {
		t.Fatalf("BlockMessages = %v, want a corruption error at height 1", err)
	}
	if errors.Is(err, store.ErrNotFound) {
		t.Fatalf("BlockMessages error %v reads as not found (404)", err)
	}
}

// The chain's producer binds a leader even when meta:producer, its pin, was
// lost: a leader with another key refuses to extend a chain whose block 1 it
// did not sign (its blocks would fail the next integrity check), and the
// rightful leader pins itself again.
func TestLeaderRefusesChainOfAnotherKeyWithoutPin(t *testing.T) {
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_, owner, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	b1 := chain.Seal(&chain.Genesis().Header, nil, 1, owner)
	if err := st.Commit(store.Commit{Blocks: []*chain.Block{b1}}); err != nil {
		t.Fatal(err)
	}
	if _, pinned, _ := st.Producer(); pinned {
		t.Fatal("the test needs a chain without meta:producer")
	}
	cfg := &Config{DBPath: t.TempDir(), MaxMessageBytes: DefaultMaxMessageBytes, MaxPendingBytes: DefaultMaxPendingBytes, Log: discard()}

	if _, err := newLeader(cfg, st, other); !errors.Is(err, ErrWrongProducer) {
		t.Fatalf("leader with a key that did not sign block 1: %v, want ErrWrongProducer", err)
	}
	if _, pinned, _ := st.Producer(); pinned {
		t.Fatal("a refused leader pinned its key")
	}
	if _, err := newLeader(cfg, st, owner); err != nil {
		t.Fatalf("leader with the key that signed block 1: %v", err)
	}
	if pk, pinned, _ := st.Producer(); !pinned || pk != b1.Producer {
		t.Fatalf("after the rightful leader started, meta:producer is %x (pinned %v), want %x", pk, pinned, b1.Producer)
	}
}
