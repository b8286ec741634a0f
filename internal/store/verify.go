package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// Progress reports how far VerifyChain has got.
type Progress struct {
	Done, Total uint64
	Elapsed     time.Duration
}

// sigBatch is how many blocks go to a signature worker at a time.
const sigBatch = 512

type sigJob struct {
	height uint64
	hash   chain.Hash
	sig    chain.Signature
	signer chain.PublicKey
}

// VerifyChain is the startup integrity check. It reads every block from 0
// to meta:last_height in key order and checks that each is present, decodes,
// has the height of its key, reproduces its message root from its entries,
// links to its parent by prev_hash and timestamp, and carries a valid
// signature by the chain's producer; that the tip's hash is meta:last_hash,
// that block 0 is the genesis block and matches meta:genesis_hash, and that
// nothing is stored past the tip. Since the record's every byte is bound to
// the block hash, a damaged byte anywhere in a block record is caught.
//
// The scan is sequential; signatures are checked on all cores alongside it.
// progress, if not nil, is called about once a second once the scan has run
// for two seconds. It returns the number of blocks verified, or a
// *CorruptionError naming the first bad height.
func (s *Store) VerifyChain(ctx context.Context, progress func(Progress)) (uint64, error) {
	start := time.Now()
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
	producer, pinned, err := s.Producer()
	if err != nil {
		return 0, corrupt(0, "meta:producer unreadable: %v", err)
	}

	sv := newSigVerifier()
	defer sv.wait()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: blockKey(0), UpperBound: prefixEnd(blockPrefix)})
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	defer it.Close()

	var (
		parent     chain.Header
		parentHash chain.Hash
		want       uint64
		jobs       = make([]sigJob, 0, sigBatch)
		nextReport = start.Add(2 * time.Second)
		scanErr    *CorruptionError
	)
	for ok := it.First(); ok && want <= last; ok = it.Next() {
		if want%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if progress != nil && time.Now().After(nextReport) {
				progress(Progress{Done: want, Total: last + 1, Elapsed: time.Since(start)})
				nextReport = time.Now().Add(time.Second)
			}
		}
		key := it.Key()
		if len(key) != len(blockPrefix)+8 {
			scanErr = corrupt(want, "malformed block key %x", key)
			break
		}
		if h := binary.BigEndian.Uint64(key[len(blockPrefix):]); h != want {
			scanErr = corrupt(want, "block missing")
			break
		}
		b, err := chain.DecodeBlock(it.Value())
		if err != nil {
			scanErr = corrupt(want, "block record does not decode: %v", err)
			break
		}
		if b.Height != want {
			scanErr = corrupt(want, "block record says height %d", b.Height)
			break
		}
		if err := b.CheckRecord(); err != nil {
			scanErr = corrupt(want, "%v", err)
			break
		}
		hash := b.Hash()
		if want == 0 {
			// CheckRecord has shown it is exactly the genesis block.
		} else {
			if err := b.Link(&parent, parentHash); err != nil {
				scanErr = corrupt(want, "%v", err)
				break
			}
			if !pinned {
				producer, pinned = b.Producer, true
			}
			if b.Producer != producer {
				scanErr = corrupt(want, "produced by %x, the chain's producer is %x", b.Producer[:], producer[:])
				break
			}
			jobs = append(jobs, sigJob{height: want, hash: hash, sig: b.Signature, signer: producer})
			if len(jobs) == sigBatch {
				sv.submit(jobs)
				jobs = make([]sigJob, 0, sigBatch)
			}
		}
		parent, parentHash = b.Header, hash
		want++
	}
	if scanErr == nil {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("store: scan blocks: %w", err)
		}
		switch {
		case want <= last:
			scanErr = corrupt(want, "block missing (meta:last_height is %d)", last)
		case parentHash != lastHash:
			scanErr = corrupt(last, "hash %s does not match meta:last_hash %s", parentHash, lastHash)
		case it.Valid():
			scanErr = corrupt(last+1, "block stored beyond meta:last_height %d", last)
		}
	}
	if len(jobs) > 0 {
		sv.submit(jobs)
	}
	sigErr := sv.wait()
	if sigErr != nil && (scanErr == nil || sigErr.Height < scanErr.Height) {
		scanErr = sigErr
	}
	if scanErr != nil {
		return 0, scanErr
	}
	s.tip.Store(&Tip{Height: last, Hash: lastHash, Header: parent})
	return last + 1, nil
}

// sigVerifier checks block signatures on every core and remembers the
// lowest failing height.
type sigVerifier struct {
	jobs chan []sigJob
	wg   sync.WaitGroup
	mu   sync.Mutex
	bad  *CorruptionError
	once sync.Once
}

func newSigVerifier() *sigVerifier {
	v := &sigVerifier{jobs: make(chan []sigJob, 2*runtime.GOMAXPROCS(0))}
	for range runtime.GOMAXPROCS(0) {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			for batch := range v.jobs {
				hashes := make([]chain.Hash, len(batch))
				sigs := make([]chain.Signature, len(batch))
				for i := range batch {
					hashes[i], sigs[i] = batch[i].hash, batch[i].sig
				}
				// One producer signs the whole chain (checked by the scan).
				if i := chain.FirstBadBlockSignature(batch[0].signer, hashes, sigs); i < len(batch) {
					v.fail(corrupt(batch[i].height, "block %d: %v", batch[i].height, chain.ErrBadSignature))
				}
			}
		}()
	}
	return v
}

func (v *sigVerifier) submit(batch []sigJob) { v.jobs <- batch }

func (v *sigVerifier) fail(err *CorruptionError) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.bad == nil || err.Height < v.bad.Height {
		v.bad = err
	}
}

func (v *sigVerifier) stop() { v.once.Do(func() { close(v.jobs) }) }

// wait stops intake, waits for the workers and returns the lowest failure.
func (v *sigVerifier) wait() *CorruptionError {
	v.stop()
	v.wg.Wait()
	return v.bad
}

// IsCorruption reports whether err is a *CorruptionError, and returns it.
func IsCorruption(err error) (*CorruptionError, bool) {
	var ce *CorruptionError
	ok := errors.As(err, &ce)
	return ce, ok
}
