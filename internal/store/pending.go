package store

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// Pending is a message in the leader's queue. Seq orders the queue: the
// caller allocates it, increasing, and seals messages in Seq order.
type Pending struct {
	Seq     uint64
	Message chain.Message
}

// AddPending makes ps durable in one synced batch. When it returns nil every
// one of them survives a crash. Concurrent calls share WAL fsyncs.
func (s *Store) AddPending(ps []Pending) error {
	b, err := s.pendingBatch(ps)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("store: add pending: %w", err)
	}
	return nil
}

// pendingBatch is the batch that writes ps, sized by pendingSize.
func (s *Store) pendingBatch(ps []Pending) (*pebble.Batch, error) {
	b := s.db.NewBatchWithSize(pendingSize(ps))
	var seq [8]byte
	for i := range ps {
		binary.BigEndian.PutUint64(seq[:], ps[i].Seq)
		if err := setMessage(b, pendingPrefix, seq[:], nil, &ps[i].Message); err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("store: batch pending: %w", err)
		}
	}
	return b, nil
}

// pendingSize is the size of the batch that writes ps, or a little more.
func pendingSize(ps []Pending) int {
	size := batchHeader
	for i := range ps {
		size += len(pendingPrefix) + 8 + ps[i].Message.EncodedSize() + entryOverhead
	}
	return size
}

// LoadPending returns the whole queue in Seq order.
func (s *Store) LoadPending() ([]Pending, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: pendingPrefix, UpperBound: prefixEnd(pendingPrefix)})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	var out []Pending
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		if len(key) != len(pendingPrefix)+8 {
			return nil, fmt.Errorf("store: malformed pending key %x", key)
		}
		m, err := chain.DecodeMessage(it.Value())
		if err != nil {
			return nil, fmt.Errorf("store: pending %x: %w", key, err)
		}
		out = append(out, Pending{Seq: binary.BigEndian.Uint64(key[len(pendingPrefix):]), Message: m})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: scan pending: %w", err)
	}
	return out, nil
}
