package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
)

// leader seals the pending queue into blocks. The sealing loop is the only
// writer of blocks; the pool owns the queue; the store owns the tip.
type leader struct {
	cfg  *Config
	st   *store.Store
	key  ed25519.PrivateKey
	pool *mempool.Pool
}

func nowMillis() uint64 { return uint64(time.Now().UnixMilli()) }

func newLeader(cfg *Config, st *store.Store, key ed25519.PrivateKey) (*leader, error) {
	var self chain.PublicKey
	copy(self[:], key.Public().(ed25519.PublicKey))
	producer, known, err := st.ChainProducer()
	if err != nil {
		return nil, err
	}
	if known && producer != self {
		return nil, fmt.Errorf("%w: blocks are signed by %x, %s holds %x", ErrWrongProducer, producer[:], cfg.keyPath(), self[:])
	}
	if err := st.SetProducer(self); err != nil { // pins it when the pin is missing
		return nil, err
	}
	pool, err := mempool.Open(st, mempool.Options{MaxContent: cfg.MaxMessageBytes, MaxBytes: cfg.MaxPendingBytes, Now: nowMillis})
	if err != nil {
		return nil, err
	}
	cfg.Log.Info(fmt.Sprintf("Leader resuming from height %d", st.Tip().Height), "pending", pool.Len())
	return &leader{cfg: cfg, st: st, key: key, pool: pool}, nil
}

// stop has nothing to release: the leader dials no one over HTTP.
func (l *leader) stop() {}

func (l *leader) handler(host *p2p.Host) *api.Server {
	return api.NewServer(api.Config{
		Chain:      &leaderChain{blocks: blocks{l.st}, l: l, host: host},
		Submitter:  l.pool,
		MaxContent: l.cfg.MaxMessageBytes,
		Log:        l.cfg.Log,
	})
}

// run seals a block every interval, empty ones too, until ctx is done. A
// block being sealed when ctx ends is finished and committed first.
func (l *leader) run(ctx context.Context, host *p2p.Host) error {
	t := time.NewTicker(l.cfg.BlockInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			b, err := l.seal()
			if err != nil {
				return err
			}
			// Published only once durable; a peer that misses it catches up.
			if err := host.Publish(ctx, b.Encode()); err != nil && ctx.Err() == nil {
				l.cfg.Log.Warn("publishing block", "height", b.Height, "err", err)
			}
		}
	}
}

// seal builds the next block from the head of the queue and commits it with
// the removal of exactly those messages from the queue.
func (l *leader) seal() (*chain.Block, error) {
	ps := l.pool.Peek(l.cfg.MaxBlockMessages)
	msgs := make([]chain.Message, len(ps))
	seqs := make([]uint64, len(ps))
	for i := range ps {
		msgs[i], seqs[i] = ps[i].Message, ps[i].Seq
	}
	tip := l.st.Tip()
	b := chain.Seal(&tip.Header, msgs, nowMillis(), l.key)
	confirmed := make([]store.Confirmed, len(msgs))
	for i := range msgs {
		confirmed[i] = store.Confirmed{Message: msgs[i], Height: b.Height, Index: uint32(i)}
	}
	if err := l.st.Commit(store.Commit{Blocks: []*chain.Block{b}, Messages: confirmed, Pending: seqs}); err != nil {
		return nil, fmt.Errorf("node: seal block %d: %w", b.Height, err)
	}
	l.pool.Remove(len(ps))
	l.cfg.Log.Info(fmt.Sprintf("Produced block %d with %d messages", b.Height, len(msgs)))
	return b, nil
}

// leaderChain answers the read routes from the leader's store and queue.
type leaderChain struct {
	blocks
	l    *leader
	host *p2p.Host
}

func (c *leaderChain) Health() api.Health {
	return health(api.RoleLeader, c.l.st, c.host, c.l.pool.Len())
}

func (c *leaderChain) Message(_ context.Context, id chain.Hash) (api.Message, error) {
	conf, err := c.l.st.Message(id)
	if err == nil {
		return confirmedView(c.l.st, conf)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return api.Message{}, err
	}
	if m, ok := c.l.pool.Get(id); ok {
		return api.NewMessage(&m), nil
	}
	// It may have been confirmed between the two looks.
	if conf, err := c.l.st.Message(id); err == nil {
		return confirmedView(c.l.st, conf)
	}
	return api.Message{}, store.ErrNotFound
}

func (c *leaderChain) BlockMessages(_ context.Context, b *chain.Block) ([]api.Message, error) {
	tree := chain.NewTree(b.Entries)
	out := make([]api.Message, len(b.Entries))
	for i, e := range b.Entries {
		conf, err := c.l.st.Message(e.ID)
		if errors.Is(err, store.ErrNotFound) {
			// The leader commits a block with its messages: one missing is
			// damage to the store, not an unknown message.
			return nil, &store.CorruptionError{Height: b.Height, Reason: fmt.Sprintf("message %s of the block has no record", e.ID)}
		}
		if err != nil {
			return nil, fmt.Errorf("node: message %s of block %d: %w", e.ID, b.Height, err)
		}
		if out[i], err = viewIn(b, conf, tree); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// blocks answers the block routes the same way on every role: from the
// store, and nothing above the committed tip.
type blocks struct{ st *store.Store }

func (b blocks) Tip() store.Tip { return b.st.Tip() }

func (b blocks) Block(h uint64) (*chain.Block, error) {
	if h > b.st.Tip().Height {
		return nil, store.ErrNotFound
	}
	return b.st.Block(h)
}

func (b blocks) BlockRecords(from uint64, n, maxBytes int) ([][]byte, error) {
	return b.st.BlockRecords(from, n, maxBytes)
}
