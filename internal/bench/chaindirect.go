package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/node"
	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
)

// The direct builder signs a group of blocks as one job and commits it as
// one batch. A group is at most directGroup blocks, directGroupMessages
// messages and directGroupBytes bytes in memory, and at least one block.
const (
	directGroup         = 256
	directGroupMessages = 1 << 16
	directGroupBytes    = 64 << 20
)

// directMessageBytes estimates what one message of contentBytes takes in
// the direct builder's memory: the signed message, its copy in the
// commit's Confirmed list and its encodings in the batch, about what a
// pre-signed message takes in a pool.
func directMessageBytes(contentBytes int) int64 {
	return int64(2*contentBytes + poolOverhead)
}

// directGroupBlocks is how many blocks of messagesPerBlock messages of
// contentBytes a group holds.
func directGroupBlocks(messagesPerBlock, contentBytes int) int {
	if messagesPerBlock == 0 {
		return directGroup
	}
	byCount := directGroupMessages / messagesPerBlock
	byBytes := int(directGroupBytes / (int64(messagesPerBlock) * directMessageBytes(contentBytes)))
	return max(1, min(directGroup, byCount, byBytes))
}

// directInFlight is how many groups the direct builder holds at once with
// workers signing: those queued in signGroups' ordered channel, the one
// waiting to be queued, and the one being committed.
func directInFlight(workers int) int { return 2*workers + 2 }

// buildChainDirect writes the chain straight into a new data directory with
// the node's own store and chain packages, as a leader would have sealed it:
// node.key is the producer key, every message is signed by its sender and
// stamped, every block is sealed on its parent, and meta: is kept by
// store.Commit. ChainConfig.Validate bounds what it holds in memory (no
// block over directGroupBytes). It skips HTTP, the queue and the block interval, which is
// what makes a chain of 1,000,000 blocks take minutes rather than half an
// hour; the restart that is measured afterwards runs a real leader on it.
// Messages are signed on every core; blocks are committed in order.
func buildChainDirect(ctx context.Context, sup *Supervisor, cfg ChainConfig, what string) (*builtChain, error) {
	start := time.Now()
	dir, err := sup.TempDir("builder")
	if err != nil {
		return nil, err
	}
	key, err := p2p.LoadOrCreateKey(node.KeyPath(dir))
	if err != nil {
		return nil, err
	}
	st, err := store.Open(node.ChainDir(dir), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.SetProducer(chain.PublicKey(key.Public().(ed25519.PublicKey))); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	groups := signGroups(ctx, cfg)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var height uint64
	messages := 0
	for g := range groups {
		select {
		case <-g.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c := store.Commit{Blocks: make([]*chain.Block, 0, g.blocks)}
		now := uint64(time.Now().UnixMilli())
		for b := range g.blocks {
			msgs := g.msgs[b*cfg.MessagesPerBlock : (b+1)*cfg.MessagesPerBlock]
			tip := st.Tip().Header
			if len(c.Blocks) > 0 {
				tip = c.Blocks[len(c.Blocks)-1].Header
			}
			blk := chain.Seal(&tip, msgs, now, key)
			c.Blocks = append(c.Blocks, blk)
			for i := range msgs {
				c.Messages = append(c.Messages, store.Confirmed{Message: msgs[i], Height: blk.Height, Index: uint32(i)})
			}
		}
		if err := st.Commit(c); err != nil {
			return nil, fmt.Errorf("bench: building the chain: %w", err)
		}
		height = c.Blocks[len(c.Blocks)-1].Height
		messages += len(c.Messages)
		select {
		case <-tick.C:
			sup.Progressf("%s: building chain directly: height %d of %d (%v)", what, height, cfg.Blocks, time.Since(start).Round(time.Second))
		default:
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	bc := &builtChain{dir: dir, height: height, messages: messages, took: time.Since(start)}
	if bc.disk, bc.apparent, err = diskUsage(dir); err != nil {
		return nil, fmt.Errorf("bench: disk usage: %w", err)
	}
	sup.Progressf("%s: built %d blocks with %d messages directly in %v", what, bc.height, bc.messages, bc.took.Round(time.Millisecond))
	return bc, nil
}

// signedGroup is the messages of blocks [first, first+blocks), signed;
// done is closed once msgs is filled.
type signedGroup struct {
	first, blocks int
	msgs          []chain.Message
	done          chan struct{}
}

// signGroups signs the chain's messages on every core, a group of blocks
// per job, and yields the groups in block order.
func signGroups(ctx context.Context, cfg ChainConfig) <-chan *signedGroup {
	workers := runtime.NumCPU()
	jobs := make(chan *signedGroup)
	ordered := make(chan *signedGroup, directInFlight(workers)-2)
	keys := NewPool(cfg.ContentBytes, "chain").keys
	stamp := uint64(time.Now().UnixMilli())
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range jobs {
				for i := range g.msgs {
					g.msgs[i] = signed(keys, cfg.ContentBytes, g.first*cfg.MessagesPerBlock+i)
					g.msgs[i].Timestamp = stamp
				}
				close(g.done)
			}
		}()
	}
	go func() {
		defer close(ordered)
		defer func() { close(jobs); wg.Wait() }()
		group := directGroupBlocks(cfg.MessagesPerBlock, cfg.ContentBytes)
		for first := 0; first < cfg.Blocks; first += group {
			n := min(group, cfg.Blocks-first)
			g := &signedGroup{first: first, blocks: n, msgs: make([]chain.Message, n*cfg.MessagesPerBlock), done: make(chan struct{})}
			select {
			case ordered <- g:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- g:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ordered
}
