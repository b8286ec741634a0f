package store

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// idFilter answers in memory whether a message ID might be confirmed here,
// so that the uniqueness check of a submission, whose answer is almost
// always "no", need not search every level of the database.
//
// It is a Bloom filter over the ID of every message of every stored block: a
// superset of the msg: keys, since a leader keeps every message it seals and
// a peer only those it fetched. VerifyChain adds the IDs of the blocks it
// scans and arms the filter once the whole chain has passed; Commit adds a
// commit's IDs before its batch is applied. So once armed, "no" is certain;
// "maybe" costs one database lookup (about 1% of absent IDs).
//
// Only a store that answers uniqueness checks (the leader's) keeps one; a
// nil *idFilter adds nothing and rules nothing out.
//
// It grows as a scalable Bloom filter: when the newest part holds its
// capacity, a part twice as large takes the new IDs, and a lookup asks every
// part. Its memory is about 2.5 bytes per stored message.
type idFilter struct {
	armed  atomic.Bool
	growMu sync.Mutex                   // serialises growth
	parts  atomic.Pointer[[]*bloomPart] // oldest first; replaced, never changed, on growth
}

// firstPartIDs is the capacity of the first part: 1.25 MiB of bits.
const firstPartIDs = 1 << 20

// bloomPart is a blocked Bloom filter: each ID sets its bits within one
// 512-bit block (one cache line), so a lookup touches one line per part.
type bloomPart struct {
	blocks [][8]uint64
	cap    int64
	n      atomic.Int64
}

const (
	bitsPerID = 10 // at 7 bits set per ID: about 1% false positives
	probes    = 7
)

func newBloomPart(capacity int64) *bloomPart {
	return &bloomPart{blocks: make([][8]uint64, capacity*bitsPerID/512+1), cap: capacity}
}

// newIDFilter returns an empty, unarmed filter whose first part holds
// firstCap IDs.
func newIDFilter(firstCap int64) *idFilter {
	f := &idFilter{}
	f.parts.Store(&[]*bloomPart{newBloomPart(firstCap)})
	return f
}

// locate returns the block of p that id maps to and the probe positions
// within it. Message IDs are BLAKE3 outputs, so their bytes serve as
// independent hash values: bytes 0..7 pick the block, bytes 8..15 give
// seven 9-bit positions.
func (p *bloomPart) locate(id *chain.Hash) (*[8]uint64, uint64) {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(id[0:8]), uint64(len(p.blocks)))
	return &p.blocks[hi], binary.LittleEndian.Uint64(id[8:16])
}

func (p *bloomPart) add(id *chain.Hash) {
	b, h := p.locate(id)
	for range probes {
		atomic.OrUint64(&b[h&511>>6], 1<<(h&63))
		h >>= 9
	}
}

func (p *bloomPart) mayContain(id *chain.Hash) bool {
	b, h := p.locate(id)
	for range probes {
		if atomic.LoadUint64(&b[h&511>>6])&(1<<(h&63)) == 0 {
			return false
		}
		h >>= 9
	}
	return true
}

// addBlock records the IDs of b's messages. It is safe to call from several
// goroutines.
func (f *idFilter) addBlock(b *chain.Block) {
	if f == nil || len(b.Entries) == 0 {
		return
	}
	ps := *f.parts.Load()
	p := ps[len(ps)-1]
	if n := int64(len(b.Entries)); p.n.Add(n) > p.cap {
		p = f.grow(p)
		p.n.Add(n) // the IDs go to the new part: its count must hold them
	}
	for i := range b.Entries {
		p.add(&b.Entries[i].ID)
	}
}

// grow adds a part twice the size of full unless another caller already
// has, and returns the newest part.
func (f *idFilter) grow(full *bloomPart) *bloomPart {
	f.growMu.Lock()
	defer f.growMu.Unlock()
	ps := *f.parts.Load()
	if last := ps[len(ps)-1]; last != full {
		return last
	}
	next := append(ps[:len(ps):len(ps)], newBloomPart(2*full.cap))
	f.parts.Store(&next)
	return next[len(next)-1]
}

// arm marks the filter as holding every stored block's IDs.
func (f *idFilter) arm() {
	if f != nil {
		f.armed.Store(true)
	}
}

// mayContain reports whether id might have been added. Before the filter is
// armed, or without one, it answers true for everything.
func (f *idFilter) mayContain(id *chain.Hash) bool {
	if f == nil || !f.armed.Load() {
		return true
	}
	for _, p := range *f.parts.Load() {
		if p.mayContain(id) {
			return true
		}
	}
	return false
}
