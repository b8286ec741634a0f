package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// ErrNotNext is returned by Commit when its blocks do not extend the tip.
var ErrNotNext = errors.New("store: blocks do not extend the tip")

// Commit is one atomic change to the chain.
type Commit struct {
	// Blocks are appended to the tip, in order; they must extend it.
	Blocks []*chain.Block
	// Messages are the confirmed messages to keep (the leader keeps every
	// message it seals; a peer keeps what it fetched).
	Messages []Confirmed
	// Pending are the sequence numbers of exactly the pending messages that
	// these blocks confirm; only they leave the queue.
	Pending []uint64
}

// Commit writes c as one synced Pebble batch: the blocks, the messages, the
// removal of exactly c.Pending from the queue and the new meta:last_height and
// meta:last_hash. Either all of it is durable when Commit returns nil, or
// none of it is visible. The tip advances only after the batch is durable.
//
// Commit checks that the blocks are consecutive and link to the tip by
// height and prev_hash; the signature and message rules are the caller's.
func (s *Store) Commit(c Commit) error {
	if len(c.Blocks) == 0 {
		return fmt.Errorf("store: commit without blocks")
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()

	tip := s.Tip()
	parentHeight, parentHash := tip.Height, tip.Hash
	for _, b := range c.Blocks {
		if b.Height != parentHeight+1 || b.PrevHash != parentHash {
			return fmt.Errorf("%w: block %d (prev %s) after %d (%s)", ErrNotNext, b.Height, b.PrevHash, parentHeight, parentHash)
		}
		parentHeight, parentHash = b.Height, b.Hash()
	}
	last := c.Blocks[len(c.Blocks)-1]

	batch := s.db.NewBatchWithSize(commitSize(&c))
	defer batch.Close()
	for _, b := range c.Blocks {
		if err := batch.Set(blockKey(b.Height), storedBlock(b.Encode()), nil); err != nil {
			return fmt.Errorf("store: batch block %d: %w", b.Height, err)
		}
	}
	for i := range c.Messages {
		m := &c.Messages[i]
		id, head := m.Message.ID(), confirmedHead(m)
		if err := setMessage(batch, msgPrefix, id[:], head[:], &m.Message); err != nil {
			return fmt.Errorf("store: batch message: %w", err)
		}
	}
	for _, seq := range c.Pending {
		if err := batch.Delete(pendingKey(seq), nil); err != nil {
			return fmt.Errorf("store: batch pending delete: %w", err)
		}
	}
	putTip(batch, last.Height, parentHash)
	// Before the batch: an ID leaves the pending queue only after it is in
	// the filter, so the uniqueness check always sees it in one or the other.
	for _, b := range c.Blocks {
		s.ids.addBlock(b)
	}
	if s.beforeApply != nil {
		if err := s.beforeApply(batch); err != nil {
			return fmt.Errorf("store: commit block %d: %w", last.Height, err)
		}
	}
	if err := s.db.Apply(batch, pebble.Sync); err != nil {
		return fmt.Errorf("store: commit block %d: %w", last.Height, err)
	}
	s.tip.Store(&Tip{Height: last.Height, Hash: parentHash, Header: last.Header})
	return nil
}

// commitSize is the size of c's batch, or a little more.
func commitSize(c *Commit) int {
	size := batchHeader + len(c.Pending)*(len(pendingPrefix)+8+entryOverhead)
	for i := range c.Messages {
		size += len(msgPrefix) + chain.HashSize + confirmedHeadSize + c.Messages[i].Message.EncodedSize() + entryOverhead
	}
	for _, b := range c.Blocks {
		size += len(blockPrefix) + 8 + b.EncodedSize() + checksumSize + entryOverhead
	}
	return size + len(keyLastHeight) + 8 + len(keyLastHash) + chain.HashSize + 2*entryOverhead
}

// BlockRecords returns the records of up to limit consecutive blocks from
// height from, stopping at the tip, and before the records would pass
// maxBytes in all; the first block is returned whatever its size.
func (s *Store) BlockRecords(from uint64, limit, maxBytes int) ([][]byte, error) {
	tip := s.Tip().Height
	if from > tip || limit <= 0 {
		return nil, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: blockKey(from), UpperBound: prefixEnd(blockPrefix)})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	var out [][]byte
	size := 0
	want := from
	for ok := it.First(); ok && len(out) < limit && want <= tip; ok = it.Next() {
		if h := binary.BigEndian.Uint64(it.Key()[len(blockPrefix):]); h != want {
			return nil, corrupt(want, "block missing")
		}
		rec, cerr := openStoredBlock(want, it.Value())
		if cerr != nil {
			return nil, cerr
		}
		if size += len(rec); len(out) > 0 && size > maxBytes {
			break
		}
		out = append(out, append([]byte(nil), rec...))
		want++
	}
	return out, it.Error()
}
