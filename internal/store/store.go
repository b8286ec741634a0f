package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// Tip is the last block of the stored chain.
type Tip struct {
	Height uint64
	Hash   chain.Hash
	Header chain.Header
}

// Store is a node's chain database. Its methods are safe for concurrent use;
// commits are serialised so that the chain only ever grows by whole blocks.
type Store struct {
	db       *pebble.DB
	fsCloser io.Closer // the disk-health checker of db's files
	lock     *os.File
	log      *slog.Logger
	readOnly bool

	commitMu sync.Mutex          // serialises Commit; guards nothing else
	tip      atomic.Pointer[Tip] // the committed tip; replaced after each commit
	ids      *idFilter           // every stored block's message IDs (FilterMessageIDs); nil on a peer

	closeOnce sync.Once
	closeErr  error

	// beforeApply, when set (by tests), is called with Commit's assembled
	// batch just before it is applied; an error aborts the commit there.
	beforeApply func(*pebble.Batch) error
}

// ErrNoDatabase is returned by OpenExisting when dir holds no database.
var ErrNoDatabase = errors.New("store: no chain database")

// Open opens (creating if needed) the chain database in dir, after taking an
// exclusive lock on dir/LOCK.kimura so that two nodes never share it. A new
// database is initialised with the genesis block. Open does not verify the
// chain: call VerifyChain before serving it.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	return open(vfs.Default, dir, log, false)
}

// OpenExisting opens the database in dir read-only, for an offline check.
// It fails with ErrNoDatabase when dir holds none; it writes nothing but
// the lock files.
func OpenExisting(dir string, log *slog.Logger) (*Store, error) {
	found, err := pebbleFiles(vfs.Default, dir)
	if err != nil {
		return nil, err
	}
	if !found.current && !found.data {
		return nil, fmt.Errorf("%w in %s", ErrNoDatabase, dir)
	}
	return open(vfs.Default, dir, log, true)
}

// dbFiles is what a directory holds of a Pebble database.
type dbFiles struct {
	current bool // a manifest (Pebble's list of files) that a marker.manifest.* names
	data    bool // tables or logs
	// staleMarkers name manifests that are not there. With no data and no
	// current manifest, they are all a first start left: Pebble makes a
	// new database's manifest current before it writes a log or a table,
	// and a power cut may keep the marker and lose the manifest.
	staleMarkers []string
}

// pebbleFiles reads what dir holds of a Pebble database; a directory that
// does not exist holds nothing.
func pebbleFiles(files vfs.FS, dir string) (dbFiles, error) {
	var found dbFiles
	names, err := files.List(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return found, nil
	}
	if err != nil {
		return found, fmt.Errorf("store: read %s: %w", dir, err)
	}
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "marker.manifest."):
			// marker.manifest.<iteration>.<the manifest's name>
			_, manifest, _ := strings.Cut(strings.TrimPrefix(n, "marker.manifest."), ".")
			if slices.Contains(names, manifest) {
				found.current = true
			} else {
				found.staleMarkers = append(found.staleMarkers, n)
			}
		case strings.HasSuffix(n, ".sst"), strings.HasSuffix(n, ".log"):
			found.data = true
		}
	}
	return found, nil
}

// damaged says whether Pebble failed to open a database, one with a
// manifest, for damage to its files: a checksum that does not match, a file
// the manifest lists that is gone or not the size it lists. Any other
// failure (permissions, a full disk, too many open files, a lock held) is
// the machine's, not the chain's.
func damaged(err error) bool {
	return pebble.IsCorruptionError(err) || errors.Is(err, fs.ErrNotExist) ||
		strings.Contains(err.Error(), "object size mismatch") // Pebble marks this one with no type
}

// open opens the database in dir on files (vfs.Default but in tests); the
// directory lock is always taken on the real file system.
func open(files vfs.FS, dir string, log *slog.Logger, readOnly bool) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	found, err := pebbleFiles(files, dir)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	switch {
	case found.data && !found.current:
		// Pebble makes a new database's manifest current before it writes
		// a log or a table, so these are a database's whose manifest (or
		// the marker naming it) is lost. Pebble would start a new database
		// here and delete them as obsolete.
		_ = lock.Close()
		return nil, corrupt(0, "%s holds tables or logs but no current manifest (marker.manifest.*)", dir)
	case !found.data && !found.current && !readOnly:
		// Nothing was written but a marker whose manifest never reached
		// the disk, which Pebble would refuse to open.
		for _, n := range found.staleMarkers {
			if err := files.Remove(files.PathJoin(dir, n)); err != nil {
				_ = lock.Close()
				return nil, fmt.Errorf("store: remove %s, left by a first start that stopped: %w", n, err)
			}
			log.Info("store: removed a manifest marker left by a first start that stopped", "marker", n)
		}
	}
	// The disk-health checker is the store's own, not one Pebble makes for
	// itself: Pebble closes its own only in DB.Close, so a failed Open
	// would leave its goroutine behind.
	checked, fsCloser := vfs.WithDiskHealthChecks(files, 5*time.Second, nil, func(i vfs.DiskSlowInfo) {
		log.Warn("store: disk operation slow", "path", i.Path, "op", i.OpType.String(), "took", i.Duration.Round(time.Millisecond))
	})
	db, err := pebble.Open(dir, pebbleOptions(log, checked, readOnly))
	if err != nil {
		_ = fsCloser.Close()
		_ = lock.Close()
		switch {
		case pebble.IsCorruptionError(err) || (found.current && damaged(err)):
			// No block of it can be read, from height 0 on.
			return nil, corrupt(0, "the database in %s does not open: %v", dir, err)
		}
		return nil, fmt.Errorf("store: open pebble in %s: %w", dir, err)
	}
	s := &Store{db: db, fsCloser: fsCloser, lock: lock, log: log, readOnly: readOnly}
	if readOnly {
		// Nothing written yet, not even genesis (a first start that
		// stopped early): no chain to check, as for an empty directory.
		if empty, eerr := s.isEmpty(); eerr == nil && empty {
			_ = s.Close()
			return nil, fmt.Errorf("%w in %s", ErrNoDatabase, dir)
		}
		err = s.loadTip()
	} else {
		err = s.init()
	}
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK.kimura"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("store: lock %s: %w", dir, err)
	}
	return f, nil
}

// init writes genesis into an empty database and loads the tip. A database
// with metadata but a damaged tip is left for VerifyChain to report.
func (s *Store) init() error {
	_, err := s.get(keyLastHeight)
	if errors.Is(err, ErrNotFound) {
		empty, err := s.isEmpty()
		if pebble.IsCorruptionError(err) {
			s.tip.Store(&Tip{}) // damaged data: VerifyChain reports it
			return nil
		}
		if err != nil {
			return err
		}
		if !empty {
			// Data but no metadata: leave it for VerifyChain to report.
			s.tip.Store(&Tip{})
			return nil
		}
		g := chain.Genesis()
		b := s.db.NewBatch()
		defer b.Close()
		_ = b.Set(blockKey(0), storedBlock(g.Encode()), nil)
		_ = b.Set(keyGenesisHash, chain.GenesisHash[:], nil)
		putTip(b, 0, chain.GenesisHash)
		if err := s.db.Apply(b, pebble.Sync); err != nil {
			return fmt.Errorf("store: write genesis: %w", err)
		}
		s.tip.Store(&Tip{Height: 0, Hash: chain.GenesisHash, Header: g.Header})
		return nil
	} else if pebble.IsCorruptionError(err) {
		s.tip.Store(&Tip{}) // damaged metadata: VerifyChain reports it
		return nil
	} else if err != nil {
		return err
	}
	return s.loadTip()
}

func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	if it.First() {
		return false, nil
	}
	// An iterator that found nothing because it could not read is not an
	// empty database: genesis must not be written over damage.
	if err := it.Error(); err != nil {
		return false, fmt.Errorf("store: look for data: %w", err)
	}
	return true, nil
}

// loadTip reads the tip from meta and its block; on any damage it stores a
// zero tip and leaves the finding to VerifyChain.
func (s *Store) loadTip() error {
	h, hash, err := s.metaTip()
	if err == nil {
		var b *chain.Block
		if b, err = s.Block(h); err == nil {
			s.tip.Store(&Tip{Height: h, Hash: hash, Header: b.Header})
			return nil
		}
	}
	s.tip.Store(&Tip{})
	return nil
}

func (s *Store) metaTip() (uint64, chain.Hash, error) {
	hb, err := s.get(keyLastHeight)
	if err != nil {
		return 0, chain.Hash{}, err
	}
	hh, err := s.get(keyLastHash)
	if err != nil {
		return 0, chain.Hash{}, err
	}
	if len(hb) != 8 || len(hh) != chain.HashSize {
		return 0, chain.Hash{}, fmt.Errorf("store: malformed meta:last_height or meta:last_hash")
	}
	return binary.BigEndian.Uint64(hb), chain.Hash(hh), nil
}

func putTip(b *pebble.Batch, height uint64, hash chain.Hash) {
	_ = b.Set(keyLastHeight, binary.BigEndian.AppendUint64(nil, height), nil)
	_ = b.Set(keyLastHash, hash[:], nil)
}

// pebbleOptions are Pebble's defaults with these changes, none of which a
// reader needs to know of (the database stays readable by Pebble v2.1 with
// default options):
//   - Bloom filters on every level: the duplicate check of every submission
//     looks up an ID that is almost never there, which a filter answers
//     without reading a table block (HasMessages reads the bottom level's
//     filters too);
//   - 12 MiB memtables: a pending message's write and its deletion a block
//     interval later mostly meet in memory, so little of the queue's churn
//     is flushed and compacted, and there are fewer, larger flushes;
//   - L0 compactions from 8 files (default 4; writes stop at 32, default
//     12). Message keys are random, so every flushed file spans the whole
//     key space and every L0 compaction rewrites the whole base level:
//     taking twice as much L0 data each time halves that rewriting.
//     Together with the memtables this cut the leader's CPU per message
//     under 30 s of batch load from about 43 to 39 µs. More L0 files cost
//     lookups little now that the ID filter answers most of them;
//   - a 32 MiB block cache. Pebble reserves its memtables out of the cache,
//     so the default 8 MiB cache held nothing at all, and every lookup read
//     index and filter blocks from the files (about a fifth of the leader's
//     CPU under load). Peak RSS stays under 150 MB after a million messages
//     (16 MiB memtables would take it to the limit).
//
// A damaged file found by Pebble's own checksums is logged and the read that
// found it fails (Pebble's default exits the process): at startup the
// integrity check names the height, and a node that is serving answers
// that read with an error and goes on.
func pebbleOptions(log *slog.Logger, files vfs.FS, readOnly bool) *pebble.Options {
	o := &pebble.Options{
		FS: files, Logger: pebbleLogger{log}, ReadOnly: readOnly,
		MemTableSize: 12 << 20, CacheSize: 32 << 20,
		L0CompactionThreshold: 8, L0StopWritesThreshold: 32,
		EventListener: &pebble.EventListener{DataCorruption: func(i pebble.DataCorruptionInfo) {
			reason, _, _ := strings.Cut(i.Details.Error(), "\n")
			log.Error("pebble: on-disk corruption", "path", i.Path, "err", reason)
		}},
	}
	o.Levels[0].FilterPolicy = bloom.FilterPolicy(10) // later levels inherit it
	return o
}

// Close flushes the memtable, so that the next Open need not replay the
// log (every acknowledged write is already synced), closes the database
// and releases the directory lock. Closing again returns the first answer.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	if !s.readOnly {
		if ferr := s.db.Flush(); ferr != nil {
			s.log.Warn("store: flush before close", "err", ferr)
		}
	}
	if err := errors.Join(s.db.Close(), s.fsCloser.Close(), s.lock.Close()); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Tip returns the committed tip. It changes only after a commit is durable.
func (s *Store) Tip() Tip { return *s.tip.Load() }

// get returns a copy of the value at key, or ErrNotFound.
func (s *Store) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, nil
}

// Producer returns the key the chain's blocks are signed by, and whether one
// has been pinned.
func (s *Store) Producer() (chain.PublicKey, bool, error) {
	v, err := s.get(keyProducer)
	if errors.Is(err, ErrNotFound) {
		return chain.PublicKey{}, false, nil
	}
	if err != nil {
		return chain.PublicKey{}, false, err
	}
	if len(v) != chain.PublicKeySize {
		return chain.PublicKey{}, false, fmt.Errorf("store: meta:producer has %d bytes", len(v))
	}
	return chain.PublicKey(v), true, nil
}

// SetProducer pins the chain's producer key (synced). Pinning a different
// key over an existing one is refused: a chain has one producer.
func (s *Store) SetProducer(pk chain.PublicKey) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	old, ok, err := s.Producer()
	if err != nil {
		return err
	}
	if ok {
		if old != pk {
			return fmt.Errorf("store: producer already pinned to %x, refusing %x", old[:], pk[:])
		}
		return nil
	}
	if err := s.db.Set(keyProducer, pk[:], pebble.Sync); err != nil {
		return fmt.Errorf("store: pin producer: %w", err)
	}
	return nil
}

// BlockRecord returns the stored record of the block at height.
func (s *Store) BlockRecord(height uint64) ([]byte, error) {
	if height > s.Tip().Height {
		return nil, ErrNotFound
	}
	return s.record(height)
}

// Block returns the block at height, or ErrNotFound when none is stored.
func (s *Store) Block(height uint64) (*chain.Block, error) {
	rec, err := s.record(height)
	if err != nil {
		return nil, err
	}
	b, err := chain.DecodeBlock(rec)
	if err != nil {
		return nil, fmt.Errorf("store: %w", corrupt(height, "undecodable block record: %v", err))
	}
	return b, nil
}

// record reads the block record at height and checks its checksum.
func (s *Store) record(height uint64) ([]byte, error) {
	v, err := s.get(blockKey(height))
	if err != nil {
		return nil, err
	}
	rec, cerr := openStoredBlock(height, v)
	if cerr != nil {
		return nil, fmt.Errorf("store: %w", cerr)
	}
	return rec, nil
}

// Confirmed is a message with its place in the chain.
type Confirmed struct {
	Message chain.Message
	Height  uint64
	Index   uint32
}

// A confirmed message is stored as its height (8 bytes, big-endian), its
// index in the block (4 bytes) and the message's canonical encoding.
const confirmedHeadSize = 12

func confirmedHead(c *Confirmed) [confirmedHeadSize]byte {
	var h [confirmedHeadSize]byte
	binary.BigEndian.PutUint64(h[:8], c.Height)
	binary.BigEndian.PutUint32(h[8:], c.Index)
	return h
}

func encodeConfirmed(c *Confirmed) []byte {
	h := confirmedHead(c)
	return c.Message.AppendEncoding(append(make([]byte, 0, confirmedHeadSize+c.Message.EncodedSize()), h[:]...))
}

// setMessage adds prefix || tail → head || m's encoding to b, encoding in
// place in the batch's buffer: under load the queue and the sealer write
// tens of thousands of messages a second, and a key and a value allocated
// for each only to be copied were a good part of the leader's garbage.
func setMessage(b *pebble.Batch, prefix, tail, head []byte, m *chain.Message) error {
	op := b.SetDeferred(len(prefix)+len(tail), len(head)+m.EncodedSize())
	copy(op.Key[copy(op.Key, prefix):], tail)
	m.AppendEncoding(op.Value[:copy(op.Value, head)])
	return op.Finish()
}

// Batches are sized up front (pebble.DB.NewBatchWithSize, which also
// resizes a batch taken from Pebble's pool): an estimate even a little
// short makes the batch double its buffer, and copy it, for its last
// entries. entryOverhead is what a batch reserves for each entry besides
// its key and value (its kind and two length varints of up to 5 bytes);
// batchHeader is the batch's own header.
const (
	entryOverhead = 1 + 2*binary.MaxVarintLen32
	batchHeader   = batchrepr.HeaderLen
)

// Message returns a confirmed message, or ErrNotFound. A message of a block
// above the tip is not found: Pebble may show a batch's keys before its
// fsync returns, but nothing of a block is visible until the tip moves.
func (s *Store) Message(id chain.Hash) (Confirmed, error) {
	v, err := s.get(msgKey(id))
	if err != nil {
		return Confirmed{}, err
	}
	if len(v) < 12 {
		return Confirmed{}, fmt.Errorf("store: message %s: record of %d bytes", id, len(v))
	}
	height := binary.BigEndian.Uint64(v)
	if height > s.Tip().Height {
		return Confirmed{}, ErrNotFound
	}
	m, err := chain.DecodeMessage(v[12:])
	if err != nil {
		return Confirmed{}, fmt.Errorf("store: message %s: %w", id, err)
	}
	return Confirmed{Message: m, Height: height, Index: binary.BigEndian.Uint32(v[8:])}, nil
}

// FilterMessageIDs makes the store keep an in-memory filter of the message
// IDs of its blocks, which answers most HasMessages lookups without reading
// the database (about 2.5 bytes per stored message). The store that judges
// submissions (the leader's) wants it; call it after Open and before
// VerifyChain, which fills the filter and puts it to use. Called later,
// the filter is never used.
func (s *Store) FilterMessageIDs() {
	if s.ids == nil {
		s.ids = newIDFilter(firstPartIDs)
	}
}

// HasMessage reports whether a confirmed message with id is stored.
func (s *Store) HasMessage(id chain.Hash) (bool, error) {
	has, err := s.HasMessages([]chain.Hash{id})
	if err != nil {
		return false, err
	}
	return has[0], nil
}

// HasMessages reports for each id whether a confirmed message with it is
// stored. It answers the uniqueness check of every submission, which is
// almost always "no". With FilterMessageIDs, once VerifyChain has passed,
// the in-memory ID filter rules out nearly every absent ID; the rest share
// one iterator, which consults the bloom filters of every level, the bottom
// one included (Pebble's Get skips those, reading a data block for every
// absent key).
func (s *Store) HasMessages(ids []chain.Hash) ([]bool, error) {
	has := make([]bool, len(ids))
	// Only the IDs the filter cannot rule out are looked up, in key order:
	// each seek starts where the last one ended.
	var maybe []int
	for i := range ids {
		if s.ids.mayContain(&ids[i]) {
			maybe = append(maybe, i)
		}
	}
	if len(maybe) == 0 {
		return has, nil
	}
	slices.SortFunc(maybe, func(a, b int) int { return bytes.Compare(ids[a][:], ids[b][:]) })
	it, err := s.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	key := make([]byte, 0, len(msgPrefix)+chain.HashSize)
	for _, i := range maybe {
		key = append(append(key[:0], msgPrefix...), ids[i][:]...)
		has[i] = it.SeekPrefixGE(key) && bytes.Equal(it.Key(), key)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("store: look up messages: %w", err)
	}
	return has, nil
}

// PutMessage keeps a confirmed message that the caller has verified against
// its block (a peer's on-demand cache). It is not synced: a message lost in a
// crash is fetched again.
func (s *Store) PutMessage(c Confirmed) error {
	if err := s.db.Set(msgKey(c.Message.ID()), encodeConfirmed(&c), pebble.NoSync); err != nil {
		return fmt.Errorf("store: put message: %w", err)
	}
	return nil
}

type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}
