package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// TestMaxBlockMessagesAndArrivalOrder: a block takes at most
// --max-block-messages pending messages, the rest wait for the next blocks,
// and messages are sealed in the order they were acknowledged.
func TestMaxBlockMessagesAndArrivalOrder(t *testing.T) {
	t.Parallel()
	const limit, n = 5, 12
	leader := startNode(t, "--leader", "--block-interval", "300ms", "--max-block-messages", fmt.Sprint(limit))
	key := newSender(t)
	msgs := make([]chain.Message, n)
	for i := range msgs {
		msgs[i] = chain.SignMessage(key, uint64(100+i), fmt.Sprintf("in order %d", i))
	}
	results, err := leader.Client().SubmitBatch(t.Context(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Error != "" {
			t.Fatalf("message %d refused: %s", i, r.Error)
		}
	}
	last := waitConfirmed(t, leader, msgs[n-1].ID(), 10*time.Second)
	first := waitConfirmed(t, leader, msgs[0].ID(), time.Second)

	// Walk the blocks that hold them: full blocks first, in submission order.
	var sealed []chain.Hash
	for h := *first.BlockHeight; h <= *last.BlockHeight; h++ {
		b, err := leader.Client().Block(t.Context(), h, false)
		if err != nil {
			t.Fatal(err)
		}
		if b.MessageCount > limit {
			t.Fatalf("block %d holds %d messages, --max-block-messages is %d", h, b.MessageCount, limit)
		}
		sealed = append(sealed, b.MessageIDs...)
	}
	if len(sealed) != n {
		t.Fatalf("blocks %d..%d hold %d messages, want exactly the %d submitted", *first.BlockHeight, *last.BlockHeight, len(sealed), n)
	}
	for i := range msgs {
		if sealed[i] != msgs[i].ID() {
			t.Fatalf("position %d holds %s, want message %d (%s): not sealed in acknowledgement order", i, sealed[i], i, msgs[i].ID())
		}
	}
	if blocks := *last.BlockHeight - *first.BlockHeight + 1; blocks != (n+limit-1)/limit {
		t.Fatalf("%d messages took %d blocks, want %d at %d a block", n, blocks, (n+limit-1)/limit, limit)
	}
}
