package chain

import (
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// The message root is an RFC 6962 Merkle tree over the block's entries in
// block order, with BLAKE3 in place of SHA-256:
//
//	empty tree:  BLAKE3("")
//	leaf:        BLAKE3(0x00 || id || message_hash)
//	inner node:  BLAKE3(0x01 || left || right)
//
// The distinct prefixes keep a leaf from ever being passed off as a node.
// The tree's shape is RFC 6962's: the left subtree of n leaves holds the
// largest power of two below n. Built level by level, that is the same as
// pairing neighbours and carrying a lone last node up unchanged.
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// EmptyRoot is the message root of a block without messages.
var EmptyRoot = Sum(nil)

// ErrBadProof is returned when an inclusion proof does not lead to the root.
var ErrBadProof = errors.New("inclusion proof does not match message root")

// LeafHash returns the Merkle leaf of an entry.
func LeafHash(e Entry) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = leafPrefix
	copy(buf[1:], e.ID[:])
	copy(buf[1+HashSize:], e.MessageHash[:])
	return blake3.Sum256(buf[:])
}

func nodeHash(left, right Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = nodePrefix
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return blake3.Sum256(buf[:])
}

// MessageRoot returns the Merkle root over entries.
func MessageRoot(entries []Entry) Hash {
	if len(entries) == 0 {
		return EmptyRoot
	}
	var small [16]Hash // most blocks are small: keep them off the heap
	level := small[:0]
	if len(entries) > len(small) {
		level = make([]Hash, 0, len(entries))
	}
	level = level[:len(entries)]
	for i := range entries {
		level[i] = LeafHash(entries[i])
	}
	for len(level) > 1 {
		level = reduceLevel(level)
	}
	return level[0]
}

// reduceLevel hashes neighbours pairwise in place and returns the next level
// up; a lone last node is carried up unchanged.
func reduceLevel(level []Hash) []Hash {
	n := 0
	for i := 0; i < len(level); i += 2 {
		if i+1 < len(level) {
			level[n] = nodeHash(level[i], level[i+1])
		} else {
			level[n] = level[i]
		}
		n++
	}
	return level[:n]
}

// Tree holds every level of a message tree, so that the proofs of all of a
// block's messages cost one tree build rather than one each.
type Tree struct {
	levels [][]Hash // levels[0] are the leaves; the last level is the root
}

// NewTree builds the Merkle tree over entries.
func NewTree(entries []Entry) *Tree {
	leaves := make([]Hash, len(entries))
	for i := range entries {
		leaves[i] = LeafHash(entries[i])
	}
	t := &Tree{levels: [][]Hash{leaves}}
	for level := leaves; len(level) > 1; {
		level = reduceLevel(append([]Hash(nil), level...))
		t.levels = append(t.levels, level)
	}
	return t
}

// Root returns the tree's root, EmptyRoot for no entries.
func (t *Tree) Root() Hash {
	top := t.levels[len(t.levels)-1]
	if len(top) == 0 {
		return EmptyRoot
	}
	return top[0]
}

// Proof returns the RFC 6962 audit path of the entry at index: the sibling
// hashes from the leaf up to the root.
func (t *Tree) Proof(index int) ([]Hash, error) {
	if index < 0 || index >= len(t.levels[0]) {
		return nil, fmt.Errorf("proof: index %d out of range for %d entries", index, len(t.levels[0]))
	}
	path := []Hash{}
	i := index
	for _, level := range t.levels[:len(t.levels)-1] {
		if sib := i ^ 1; sib < len(level) {
			path = append(path, level[sib])
		}
		i /= 2
	}
	return path, nil
}

// InclusionProof returns the audit path of the entry at index.
func InclusionProof(entries []Entry, index int) ([]Hash, error) {
	return NewTree(entries).Proof(index)
}

// VerifyInclusion checks that entry sits at index of a tree of size entries
// with the given root, by the RFC 9162 (section 2.1.3.2) algorithm.
func VerifyInclusion(root Hash, size, index uint64, e Entry, proof []Hash) error {
	if index >= size {
		return fmt.Errorf("%w: index %d not below size %d", ErrBadProof, index, size)
	}
	fn, sn := index, size-1
	r := LeafHash(e)
	for _, p := range proof {
		if sn == 0 {
			return fmt.Errorf("%w: proof too long", ErrBadProof)
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || r != root {
		return ErrBadProof
	}
	return nil
}
