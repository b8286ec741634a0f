package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// Progress reports how far VerifyChain has got.
type Progress struct {
	Done, Total uint64
	Elapsed     time.Duration
}

// chunkSize is how many consecutive blocks one verification job holds: big
// enough for batch signature verification to pay, small enough to keep
// every core busy.
const chunkSize = 1024

// VerifyChain is the startup integrity check. It reads every block from 0
// to meta:last_height in key order and checks that each is present, matches
// its checksum, decodes, has the height of its key, links to its parent by
// prev_hash and timestamp, and carries a valid signature by the chain's
// producer; that the tip's hash is meta:last_hash, that block 0 is the
// genesis block and matches meta:genesis_hash, and that nothing is stored
// past the tip. The checksum covers every byte of a stored record (see
// storedBlock), so a damaged byte anywhere in one is caught.
//
// One goroutine reads the records in order and hands them out in chunks;
// every core decodes, hashes, links and batch-verifies the signatures of a
// chunk; the chunks are then stitched together in order. progress, if not
// nil, is called about once a second once the scan has run for two seconds.
// It returns the number of blocks verified, or a *CorruptionError naming the
// first bad height.
func (s *Store) VerifyChain(ctx context.Context, progress func(Progress)) (uint64, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	gh, err := s.get(keyGenesisHash)
	if err != nil {
		return 0, corrupt(0, "meta:genesis_hash unreadable: %v", err)
	}
	if len(gh) != chain.HashSize || chain.Hash(gh) != chain.GenesisHash {
		return 0, corrupt(0, "meta:genesis_hash %x is not the genesis hash %s", gh, chain.GenesisHash)
	}
	last, lastHash, err := s.metaTip()
	if err != nil {
		return 0, corrupt(0, "chain metadata unreadable: %v", err)
	}
	producer, _, err := s.chainProducer(last)
	if err != nil {
		return 0, err
	}

	st := newStitcher(producer, s.ids)
	scanErr, err := s.scanBlocks(ctx, last, st, func(done uint64) {
		if progress != nil && time.Since(start) > 2*time.Second {
			progress(Progress{Done: done, Total: last + 1, Elapsed: time.Since(start)})
		}
	})
	if err != nil {
		return 0, err
	}
	tip, tipHash, firstBad := st.finish()
	// The lowest bad height wins: a bad block, then a missing one, then a
	// tip that does not match the metadata, then a block past the tip.
	switch {
	case firstBad != nil:
		return 0, firstBad
	case scanErr != nil && scanErr.Height <= last:
		return 0, scanErr
	case tipHash != lastHash:
		return 0, corrupt(last, "hash %s does not match meta:last_hash %s", tipHash, lastHash)
	case scanErr != nil:
		return 0, scanErr
	}
	s.tip.Store(&Tip{Height: last, Hash: lastHash, Header: tip})
	s.ids.arm()
	return last + 1, nil
}

// ChainProducer returns the key every block after genesis is signed by: the
// pinned one (meta:producer), or else block 1's. known is false when there
// is neither, a chain of genesis alone with nothing pinned. A leader whose
// key is not the known one must not extend the chain, even when the pin was
// lost: its blocks would make the chain fail its next integrity check.
func (s *Store) ChainProducer() (producer chain.PublicKey, known bool, err error) {
	return s.chainProducer(s.Tip().Height)
}

// chainProducer is ChainProducer for a chain whose tip is at last.
func (s *Store) chainProducer(last uint64) (chain.PublicKey, bool, error) {
	producer, pinned, err := s.Producer()
	if err != nil {
		return producer, false, corrupt(0, "meta:producer unreadable: %v", err)
	}
	if pinned || last == 0 {
		return producer, pinned, nil
	}
	v, err := s.get(blockKey(1))
	if err != nil {
		return producer, false, corrupt(1, "block missing: %v", err)
	}
	rec, cerr := openStoredBlock(1, v)
	if cerr != nil {
		return producer, false, cerr
	}
	b, err := chain.DecodeBlock(rec)
	if err != nil {
		return producer, false, corrupt(1, "block record does not decode: %v", err)
	}
	return b.Producer, true, nil
}

// scanBlocks reads blocks 0..last in key order and feeds them to st in
// chunks. It returns what it found wrong with the keys themselves (a
// missing block, or one past the tip); other errors are the store's own.
func (s *Store) scanBlocks(ctx context.Context, last uint64, st *stitcher, progress func(uint64)) (*CorruptionError, error) {
	defer st.stop() // its goroutines end on every return
	sc := &blockScan{ctx: ctx, st: st, progress: progress, last: last,
		c: &chunk{first: 0, recs: make([][]byte, 0, chunkSize)}, nextReport: time.Now()}
	bad, more, itErr, err := s.scanRange(sc, blockKey(0), prefixEnd(blockPrefix))
	switch {
	case err != nil || !more:
		return nil, err
	case bad != nil:
		return sc.end(bad)
	case itErr == nil:
		switch {
		case sc.next <= last:
			return sc.end(corrupt(sc.next, "block missing (meta:last_height is %d)", last))
		case sc.beyond:
			return sc.end(corrupt(last+1, "block stored beyond meta:last_height %d", last))
		}
		return sc.end(nil)
	}
	// The iterator reads ahead of its position: positioning it reads the
	// first data block of every table that overlaps its range, so a
	// damaged one fails the scan while it is still at a lower height. A
	// point read touches only the tables whose range holds its key: the
	// first height that cannot be read is found one key at a time, then
	// the keys below it are scanned again, by an iterator whose range ends
	// there (a missing or malformed key below the damage is the first
	// error).
	from := sc.next
	unreadable, reason := last+1, itErr
	for h := from; h <= last; h++ {
		if (h-from)%chunkSize == 0 {
			if err := sc.ctx.Err(); err != nil {
				return nil, err
			}
		}
		if _, err := s.get(blockKey(h)); err != nil {
			if !errors.Is(err, ErrNotFound) && !pebble.IsCorruptionError(err) {
				return nil, err
			}
			unreadable, reason = h, err
			break
		}
	}
	if from < unreadable {
		bad, more, itErr, err = s.scanRange(sc, blockKey(from), blockKey(unreadable))
		switch {
		case err != nil || !more:
			return nil, err
		case bad != nil:
			return sc.end(bad)
		case itErr != nil: // damaged again: the scan vouches for nothing from here
			return sc.end(corrupt(sc.next, "block unreadable: %v", itErr))
		case sc.next < unreadable:
			return sc.end(corrupt(sc.next, "block missing"))
		}
	}
	if errors.Is(reason, ErrNotFound) {
		return sc.end(corrupt(unreadable, "block missing"))
	}
	return sc.end(corrupt(unreadable, "block unreadable: %v", reason))
}

// blockScan is the state of a scan of the blocks in height order.
type blockScan struct {
	ctx        context.Context
	st         *stitcher
	progress   func(uint64)
	last       uint64
	next       uint64 // the height the next key must have
	c          *chunk // the chunk being filled, from height c.first
	nextReport time.Time
	beyond     bool // a block key past last was found
}

// end hands the last chunk to the stitcher and ends the scan with bad, what
// it found wrong with the keys (nil for nothing).
func (sc *blockScan) end(bad *CorruptionError) (*CorruptionError, error) {
	sc.st.submit(sc.c)
	return bad, nil
}

// scanRange reads the block keys in [lower, upper), which must begin at
// sc.next, up to sc.last, and feeds their records to the scan's chunks. bad
// is what is wrong with the keys (a malformed one, a height skipped); more
// is false when the scan must end here, with err (nil when an earlier chunk
// is bad, which is the first error); itErr is the iterator's corruption
// error, with sc.next the height it could not reach.
func (s *Store) scanRange(sc *blockScan, lower, upper []byte) (bad *CorruptionError, more bool, itErr, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, nil, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if sc.next > sc.last {
			sc.beyond = true
			break
		}
		key := it.Key()
		if len(key) != len(blockPrefix)+8 {
			return corrupt(sc.next, "malformed block key %x", key), true, nil, nil
		}
		if h := binary.BigEndian.Uint64(key[len(blockPrefix):]); h != sc.next {
			return corrupt(sc.next, "block missing"), true, nil, nil
		}
		if more, err := sc.keep(it.Value()); !more {
			return nil, false, nil, err
		}
	}
	if err := it.Error(); err != nil {
		if !pebble.IsCorruptionError(err) {
			return nil, false, nil, fmt.Errorf("store: scan blocks: %w", err)
		}
		return nil, true, err, nil
	}
	return nil, true, nil, nil
}

// keep adds block sc.next's record, first handing a full chunk to the
// stitcher. It is false when the scan must end: with err, or with nil when
// an earlier chunk is bad (that is the first error).
func (sc *blockScan) keep(rec []byte) (more bool, err error) {
	if len(sc.c.recs) == chunkSize {
		if err := sc.ctx.Err(); err != nil {
			return false, err
		}
		if sc.st.failed() {
			return false, nil
		}
		sc.st.submit(sc.c)
		sc.c = &chunk{first: sc.next, recs: make([][]byte, 0, chunkSize)}
		if time.Now().After(sc.nextReport) {
			sc.progress(sc.next)
			sc.nextReport = time.Now().Add(time.Second)
		}
	}
	sc.c.add(rec)
	sc.next++
	return true, nil
}

// chunk is a run of consecutive block records starting at height first.
type chunk struct {
	seq   int
	first uint64
	recs  [][]byte
	arena []byte // holds the records' bytes, a few allocations per chunk
}

// add appends a copy of rec: the iterator's value is only valid until it moves.
func (c *chunk) add(rec []byte) {
	if cap(c.arena)-len(c.arena) < len(rec) {
		// Room for the rest of the chunk at this record's size, within reason.
		c.arena = make([]byte, 0, max(len(rec), min(len(rec)*(chunkSize-len(c.recs)), 4<<20)))
	}
	at := len(c.arena)
	c.arena = append(c.arena, rec...)
	c.recs = append(c.recs, c.arena[at:len(c.arena):len(c.arena)])
}

// checked is what verifying a chunk on its own found: its ends, for
// stitching to its neighbours, and its first error.
type checked struct {
	seq       int
	first     chain.Header // the first block's header, to link to the previous chunk
	last      chain.Header
	lastHash  chain.Hash
	n         int
	err       *CorruptionError // the lowest bad height within the chunk
	goodUntil int              // blocks before the error (n when none)
}

// stitcher verifies chunks on every core and joins the results in order.
type stitcher struct {
	producer chain.PublicKey
	ids      *idFilter // takes the message IDs of every block checked
	work     chan *chunk
	results  chan checked
	workers  sync.WaitGroup
	joined   chan struct{}
	seq      int
	once     sync.Once
	bad      atomic.Bool

	// Owned by the joining goroutine until joined is closed.
	tip      chain.Header
	tipHash  chain.Hash
	firstBad *CorruptionError
}

func newStitcher(producer chain.PublicKey, ids *idFilter) *stitcher {
	n := runtime.GOMAXPROCS(0)
	st := &stitcher{
		producer: producer,
		ids:      ids,
		work:     make(chan *chunk, 2*n),
		results:  make(chan checked, 2*n),
		joined:   make(chan struct{}),
	}
	for range n {
		st.workers.Add(1)
		go func() {
			defer st.workers.Done()
			for c := range st.work {
				st.results <- checkChunk(c, st.producer, st.ids)
			}
		}()
	}
	go st.join()
	return st
}

func (st *stitcher) submit(c *chunk) {
	if len(c.recs) == 0 {
		return
	}
	c.seq = st.seq
	st.seq++
	st.work <- c
}

func (st *stitcher) failed() bool { return st.bad.Load() }

// stop ends intake and waits for every worker; idempotent.
func (st *stitcher) stop() {
	st.once.Do(func() {
		close(st.work)
		st.workers.Wait()
		close(st.results)
		<-st.joined
	})
}

// finish waits for everything and returns the last good block's header and
// hash, and the first error found in a block.
func (st *stitcher) finish() (chain.Header, chain.Hash, *CorruptionError) {
	st.stop()
	return st.tip, st.tipHash, st.firstBad
}

// join takes results in chunk order and checks each chunk's first block
// against the previous chunk's last.
func (st *stitcher) join() {
	defer close(st.joined)
	pending := map[int]checked{}
	next := 0
	for r := range st.results {
		pending[r.seq] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			st.take(r)
		}
	}
}

func (st *stitcher) take(r checked) {
	if st.firstBad != nil {
		return
	}
	if r.first.Height > 0 {
		b := chain.Block{Header: r.first}
		if err := b.Link(&st.tip, st.tipHash); err != nil && (r.err == nil || r.first.Height <= r.err.Height) {
			st.fail(corrupt(r.first.Height, "%v", err))
			return
		}
	}
	if r.err != nil {
		st.fail(r.err)
		return
	}
	st.tip, st.tipHash = r.last, r.lastHash
}

func (st *stitcher) fail(err *CorruptionError) {
	st.firstBad = err
	st.bad.Store(true)
}

// checkChunk verifies a chunk on its own: each record matches its checksum,
// decodes, has its height, links to the one before it in the chunk and is
// signed by producer (batch-verified). It adds the message IDs of the blocks
// it decodes to ids.
func checkChunk(c *chunk, producer chain.PublicKey, ids *idFilter) checked {
	r := checked{seq: c.seq, n: len(c.recs), goodUntil: len(c.recs)}
	hashes := make([]chain.Hash, 0, len(c.recs))
	sigs := make([]chain.Signature, 0, len(c.recs))
	sigAt := make([]int, 0, len(c.recs))
	var prev chain.Header
	var prevHash chain.Hash
	for i, v := range c.recs {
		h := c.first + uint64(i)
		rec, bad := openStoredBlock(h, v)
		var b *chain.Block
		var err error
		if bad == nil {
			b, err = chain.DecodeBlock(rec)
		}
		switch {
		case bad != nil:
		case err != nil:
			bad = corrupt(h, "block record does not decode: %v", err)
		case b.Height != h:
			bad = corrupt(h, "block record says height %d", b.Height)
		default:
			// The checksum vouches for the entries; genesis must be exact.
			if h == 0 && b.CheckRecord() != nil {
				bad = corrupt(h, "%v", b.CheckRecord())
			} else if i > 0 {
				if err := b.Link(&prev, prevHash); err != nil {
					bad = corrupt(h, "%v", err)
				}
			}
			if bad == nil && h > 0 && b.Producer != producer {
				bad = corrupt(h, "produced by %x, the chain's producer is %x", b.Producer[:], producer[:])
			}
		}
		if bad != nil {
			r.err, r.goodUntil = bad, i
			break
		}
		ids.addBlock(b)
		hash := b.Hash()
		if i == 0 {
			r.first = b.Header
		}
		if h > 0 {
			hashes, sigs, sigAt = append(hashes, hash), append(sigs, b.Signature), append(sigAt, i)
		}
		prev, prevHash = b.Header, hash
	}
	// A bad signature below the first other problem is the chunk's first error.
	if i := chain.FirstBadBlockSignature(producer, hashes, sigs); i < len(hashes) {
		h := c.first + uint64(sigAt[i])
		r.err, r.goodUntil = corrupt(h, "block %d: %v", h, chain.ErrBadSignature), sigAt[i]
	}
	r.last, r.lastHash = prev, prevHash
	return r
}

// IsCorruption reports whether err is a *CorruptionError, and returns it.
func IsCorruption(err error) (*CorruptionError, bool) {
	var ce *CorruptionError
	ok := errors.As(err, &ce)
	return ce, ok
}
