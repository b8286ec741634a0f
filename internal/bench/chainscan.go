package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// pollEvery is how often the waits below look again.
const pollEvery = 20 * time.Millisecond

// waitDrained polls a leader's /health until nothing is pending and
// returns its height at that moment: every message acknowledged before the
// call is then in a block at or below it.
func waitDrained(ctx context.Context, c *api.Client, timeout time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		h, err := c.Health(ctx)
		if err == nil && h.Pending == 0 {
			return h.Height, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d messages still pending", h.Pending)
			}
			return 0, fmt.Errorf("bench: waiting for the leader to seal its queue: %w", err)
		case <-time.After(pollEvery):
		}
	}
}

// waitHeight polls a node's /height until it is at least h and returns
// when it first saw that.
func waitHeight(ctx context.Context, c *api.Client, h uint64, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		got, err := c.Height(ctx)
		if err == nil && got.Height >= h {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("at %d", got.Height)
			}
			return time.Time{}, fmt.Errorf("bench: waiting for %s to reach height %d: %w", c.Base(), h, err)
		case <-time.After(pollEvery / 4):
		}
	}
}

// readBlocks calls fn with every block from height from to height to, in
// order, read in the binary form of GET /blocks.
func readBlocks(ctx context.Context, c *api.Client, from, to uint64, fn func(*chain.Block)) error {
	for h := from; h <= to; {
		bs, err := c.BlockRecords(ctx, h, api.MaxBlocksBinary)
		if err != nil {
			return fmt.Errorf("bench: read blocks from %d: %w", h, err)
		}
		if len(bs) == 0 {
			return fmt.Errorf("bench: node has no block %d", h)
		}
		for _, b := range bs {
			if h > to {
				return nil
			}
			if b.Height != h {
				return fmt.Errorf("bench: asked for block %d, got %d", h, b.Height)
			}
			fn(b)
			h++
		}
	}
	return nil
}

// inclusion is where a load's messages ended up.
type inclusion struct {
	from      int      // the first message looked for
	height    []uint64 // per message from from: the height of the block holding it; 0 in none
	last      uint64   // the highest block that holds a message of the load
	confirmed int      // the load's messages in blocks
	foreign   int      // entries in blocks that are not the load's
	twice     int      // the load's messages found in more than one block
}

// findMessages reads the chain up to height and locates the messages
// [from, to) of pool.
func findMessages(ctx context.Context, c *api.Client, pool *Pool, from, to int, height uint64) (*inclusion, error) {
	in := &inclusion{from: from, height: make([]uint64, to-from)}
	err := readBlocks(ctx, c, 1, height, func(b *chain.Block) { in.add(pool, b) })
	return in, err
}

// add records where b's entries are.
func (in *inclusion) add(pool *Pool, b *chain.Block) {
	for _, e := range b.Entries {
		i, ok := pool.Index(e.ID)
		if !ok || i < in.from || i >= in.from+len(in.height) {
			in.foreign++
			continue
		}
		if in.height[i-in.from] != 0 {
			in.twice++
			continue
		}
		in.height[i-in.from] = b.Height
		in.confirmed++
		in.last = max(in.last, b.Height)
	}
}

// has reports whether a block holds message i.
func (in *inclusion) has(i int) bool { return in.heightOf(i) != 0 }

// heightOf is the height of the block that holds message i; 0 if none does.
func (in *inclusion) heightOf(i int) uint64 {
	if j := i - in.from; j >= 0 && j < len(in.height) {
		return in.height[j]
	}
	return 0
}

// ackedMissing counts the messages looked for that acked says were
// acknowledged and that no block holds: each is a broken promise, since
// an acknowledgement says the message is durable and will be sealed.
func (in *inclusion) ackedMissing(acked func(i int) bool) int {
	n := 0
	for j := range in.height {
		if i := in.from + j; acked(i) && !in.has(i) {
			n++
		}
	}
	return n
}
