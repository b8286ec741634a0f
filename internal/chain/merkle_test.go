package chain_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// An independent RFC 6962 Merkle tree (section 2.1), written from the RFC's
// recursive definition with BLAKE3: the left subtree of n > 1 leaves holds
// the largest power of two below n.

func refLeaf(e chain.Entry) chain.Hash {
	buf := append([]byte{0x00}, e.ID[:]...)
	return blake3.Sum256(append(buf, e.MessageHash[:]...))
}

func refNode(l, r chain.Hash) chain.Hash {
	buf := append([]byte{0x01}, l[:]...)
	return blake3.Sum256(append(buf, r[:]...))
}

// split is the largest power of two below n (n > 1).
func split(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

func refRoot(es []chain.Entry) chain.Hash {
	switch len(es) {
	case 0:
		return blake3.Sum256(nil)
	case 1:
		return refLeaf(es[0])
	}
	k := split(len(es))
	return refNode(refRoot(es[:k]), refRoot(es[k:]))
}

// refPath is RFC 6962's PATH(m, D[n]): the audit path bottom-up, and for
// each element whether it sits to the left of the running hash.
func refPath(m int, es []chain.Entry) (path []chain.Hash, left []bool) {
	if len(es) <= 1 {
		return nil, nil
	}
	k := split(len(es))
	if m < k {
		path, left = refPath(m, es[:k])
		return append(path, refRoot(es[k:])), append(left, false)
	}
	path, left = refPath(m-k, es[k:])
	return append(path, refRoot(es[:k])), append(left, true)
}

func TestEmptyRoot(t *testing.T) {
	want := chain.Hash(blake3.Sum256([]byte("")))
	if chain.EmptyRoot != want {
		t.Fatalf("EmptyRoot = %s, want BLAKE3(\"\") = %s", chain.EmptyRoot, want)
	}
	if got := chain.MessageRoot(nil); got != want {
		t.Errorf("MessageRoot(nil) = %s", got)
	}
	if got := chain.NewTree(nil).Root(); got != want {
		t.Errorf("NewTree(nil).Root() = %s", got)
	}
	if g := chain.Genesis(); g.MessageRoot != want {
		t.Errorf("genesis message root %s", g.MessageRoot)
	}
}

func TestLeafHashHasLeafPrefix(t *testing.T) {
	for _, e := range testEntries(3) {
		if got, want := chain.LeafHash(e), refLeaf(e); got != want {
			t.Fatalf("LeafHash = %s, want BLAKE3(0x00 || id || hash) = %s", got, want)
		}
	}
}

func TestMessageRootMatchesRFC6962(t *testing.T) {
	all := testEntries(40)
	for n := 0; n <= 40; n++ {
		es := all[:n]
		want := refRoot(es)
		if got := chain.MessageRoot(es); got != want {
			t.Errorf("n=%d: MessageRoot = %s, want %s", n, got, want)
		}
		if got := chain.NewTree(es).Root(); got != want {
			t.Errorf("n=%d: Tree.Root = %s, want %s", n, got, want)
		}
	}
	// MessageRoot works in place on its own buffer: the caller's entries
	// are left as they were.
	before := slices.Clone(all)
	chain.MessageRoot(all)
	if !slices.Equal(before, all) {
		t.Error("MessageRoot modified its input")
	}
}

func flipHash(h chain.Hash, bit int) chain.Hash {
	h[bit/8%chain.HashSize] ^= 1 << (bit % 8)
	return h
}

// For every block size 1..17 and every index, the proof verifies against
// the message root, and every kind of tampering is refused.
func TestInclusionProofs(t *testing.T) {
	all := testEntries(17)
	for n := 1; n <= 17; n++ {
		es := all[:n]
		root := chain.MessageRoot(es)
		tree := chain.NewTree(es)
		for i := range n {
			t.Run(fmt.Sprintf("n=%d/i=%d", n, i), func(t *testing.T) {
				proof, err := chain.InclusionProof(es, i)
				if err != nil {
					t.Fatal(err)
				}
				fromTree, err := tree.Proof(i)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := refPath(i, es)
				if !slices.Equal(proof, want) || !slices.Equal(fromTree, want) {
					t.Fatalf("proof %v / tree proof %v, want RFC 6962 path %v", proof, fromTree, want)
				}
				size, index, e := uint64(n), uint64(i), es[i]
				if err := chain.VerifyInclusion(root, size, index, e, proof); err != nil {
					t.Fatalf("valid proof refused: %v", err)
				}
				refuse := func(what string, root chain.Hash, size, index uint64, e chain.Entry, proof []chain.Hash) {
					t.Helper()
					if err := chain.VerifyInclusion(root, size, index, e, proof); !errors.Is(err, chain.ErrBadProof) {
						t.Errorf("%s: VerifyInclusion = %v, want ErrBadProof", what, err)
					}
				}

				refuse("entry id", root, size, index, chain.Entry{ID: flipHash(e.ID, 0), MessageHash: e.MessageHash}, proof)
				refuse("entry message hash", root, size, index, chain.Entry{ID: e.ID, MessageHash: flipHash(e.MessageHash, 255)}, proof)
				refuse("another entry", root, size, index, all[(i+1)%17], proof)
				refuse("root", flipHash(root, 7), size, index, e, proof)
				for j := range n + 2 {
					if j != i {
						refuse(fmt.Sprintf("index %d", j), root, size, uint64(j), e, proof)
					}
				}
				for k := range proof {
					bad := slices.Clone(proof)
					bad[k] = flipHash(bad[k], 100)
					refuse(fmt.Sprintf("proof element %d", k), root, size, index, e, bad)
					refuse(fmt.Sprintf("proof element %d removed", k), root, size, index, e, slices.Delete(slices.Clone(proof), k, k+1))
				}
				refuse("element appended", root, size, index, e, append(slices.Clone(proof), root))
				refuse("element prepended", root, size, index, e, append([]chain.Hash{refLeaf(e)}, proof...))
				if len(proof) > 0 {
					refuse("last element repeated", root, size, index, e, append(slices.Clone(proof), proof[len(proof)-1]))
				}

				// A tampered size is refused whenever it changes the shape of
				// the audit path (its length or the side of any element). A
				// size that gives the same shape is indistinguishable: RFC
				// 9162 verification binds the path, not the size, so a block's
				// size must come from its own record (message_count). That
				// limit of the algorithm is asserted here too, so that the
				// test states exactly what VerifyInclusion promises.
				_, sides := refPath(i, es)
				for s := 0; s <= 2*n+2; s++ {
					if s == n {
						continue
					}
					err := chain.VerifyInclusion(root, uint64(s), index, e, proof)
					sameShape := false
					if s > i {
						_, other := refPath(i, testEntries(s))
						sameShape = slices.Equal(other, sides)
					}
					if sameShape && err != nil {
						t.Errorf("size %d (same path shape as %d): %v", s, n, err)
					}
					if !sameShape && !errors.Is(err, chain.ErrBadProof) {
						t.Errorf("size %d: VerifyInclusion = %v, want ErrBadProof", s, err)
					}
				}
			})
		}
	}
}

func TestProofIndexOutOfRange(t *testing.T) {
	es := testEntries(5)
	tree := chain.NewTree(es)
	for _, i := range []int{-1, 5, 100} {
		if _, err := tree.Proof(i); err == nil {
			t.Errorf("Tree.Proof(%d) of 5 entries succeeded", i)
		}
		if _, err := chain.InclusionProof(es, i); err == nil {
			t.Errorf("InclusionProof(%d) of 5 entries succeeded", i)
		}
	}
	if _, err := chain.NewTree(nil).Proof(0); err == nil {
		t.Error("Proof(0) of an empty tree succeeded")
	}
	if err := chain.VerifyInclusion(chain.EmptyRoot, 0, 0, es[0], nil); !errors.Is(err, chain.ErrBadProof) {
		t.Errorf("VerifyInclusion in an empty tree = %v, want ErrBadProof", err)
	}
}
