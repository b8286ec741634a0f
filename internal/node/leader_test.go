package node

import (
	"context"
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
