package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// TestLargeBlockReachesPeerByGossip: a block whose record is well over
// gossipsub's default 1 MiB message limit (20,000 messages × 64 bytes of
// entries) still reaches a peer over gossip, not only by catch-up: every node
// raises the limit, and the burst of submissions does not overflow a queue.
func TestLargeBlockReachesPeerByGossip(t *testing.T) {
	t.Parallel()
	const n = 20000
	leader := startNode(t, "--leader", "--block-interval", "2s", "--max-block-messages", strconv.Itoa(n))
	peer := startNode(t, "--leader-rpc", leader.URL(), "--log-level", "debug")

	// Sign before the clock matters.
	key := newSender(t)
	msgs := make([]chain.Message, n)
	for i := range msgs {
		msgs[i] = chain.SignMessage(key, uint64(i), fmt.Sprintf("message %d", i))
	}
	// Right after a block is sealed, all n fit in the next interval.
	leader.WaitLog("Produced block 1 with", 10*time.Second)
	ctx := t.Context()
	for lo := 0; lo < n; lo += 1000 {
		results, err := leader.Client().SubmitBatch(ctx, msgs[lo:lo+1000])
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range results {
			if r.Error != "" {
				t.Fatalf("message %d refused: %s", lo+i, r.Error)
			}
		}
	}
	line := leader.WaitLog(fmt.Sprintf("with %d messages", n), 10*time.Second)
	m := regexp.MustCompile(`Produced block (\d+) with`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no block of %d messages: %q", n, line)
	}
	height, _ := strconv.ParseUint(m[1], 10, 64)
	// The peer logs every block gossip brings, before deciding whether it
	// still needs it; a catch-up by polling cannot produce this line.
	want := fmt.Sprintf(`msg="Received block by gossip" height=%d bytes=%d messages=%d`, height, 180+64*n, n)
	peer.WaitLog(want, 10*time.Second)
	peer.WaitHeight(height, 10*time.Second)
	lb, err := leader.Client().Block(ctx, height, false)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := peer.Client().Block(ctx, height, false)
	if err != nil {
		t.Fatal(err)
	}
	if pb.Hash != lb.Hash || pb.MessageCount != n {
		t.Fatalf("peer's block %d: hash %s with %d messages; leader's %s", height, pb.Hash, pb.MessageCount, lb.Hash)
	}
}
