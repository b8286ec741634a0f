package chain_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// groupOrder is L, the order of Ed25519's prime-order subgroup.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994961819077587000710893227580263355232460069", 10)

// nonCanonicalS returns sig with S replaced by S + L: the same value modulo
// L, encoded above L. Every Ed25519 rule (ZIP-215 included) must refuse it,
// or signatures would be malleable.
func nonCanonicalS(sig chain.Signature) chain.Signature {
	le := slices.Clone(sig[32:])
	slices.Reverse(le)
	s := new(big.Int).SetBytes(le)
	s.Add(s, groupOrder)
	be := s.FillBytes(make([]byte, 32))
	slices.Reverse(be)
	copy(sig[32:], be)
	return sig
}

// identityKey is the neutral point (y = 1), a small-order public key; with
// the neutral point as R and S = 0, the cofactored ZIP-215 equation holds
// for every message, which is why Kimura's rule refuses small-order keys.
var identityKey = chain.PublicKey{1}

// identityKeyNonCanonical encodes y = p + 1, the neutral point again, in a
// non-canonical encoding that ZIP-215 accepts.
var identityKeyNonCanonical = func() chain.PublicKey {
	var k chain.PublicKey
	k[0] = 0xee
	for i := 1; i < 31; i++ {
		k[i] = 0xff
	}
	k[31] = 0x7f
	return k
}()

func identitySignature() chain.Signature { return chain.Signature{1} } // R = neutral, S = 0

// sigCase is a message and whether the acceptance rule takes it.
type sigCase struct {
	name string
	m    chain.Message
	want error // nil, chain.ErrBadSignature or chain.ErrBadContent
}

func sigCases() []sigCase {
	key := testKey(60)
	good := chain.SignMessage(key, 1, "good")
	tampered := chain.SignMessage(key, 2, "tampered")
	tampered.Content = "Tampered"
	malleable := chain.SignMessage(key, 3, "malleable")
	malleable.Signature = nonCanonicalS(malleable.Signature)
	notUTF8 := chain.SignMessage(key, 4, "\xff")
	small := chain.Message{Sender: identityKey, Nonce: 5, Content: "anyone can sign this", Signature: identitySignature()}
	smallNC := chain.Message{Sender: identityKeyNonCanonical, Nonce: 6, Content: "and this", Signature: identitySignature()}
	notAPoint := chain.SignMessage(key, 7, "sender is not a point")
	notAPoint.Sender = chain.PublicKey{2} // y = 2 is not on the curve
	zeroSig := chain.SignMessage(key, 8, "zero signature")
	zeroSig.Signature = chain.Signature{}
	return []sigCase{
		{"valid", good, nil},
		{"tampered content", tampered, chain.ErrBadSignature},
		{"S not canonical", malleable, chain.ErrBadSignature},
		{"not UTF-8", notUTF8, chain.ErrBadContent},
		{"small-order key (refused: anyone could sign for it)", small, chain.ErrBadSignature},
		{"small-order key, non-canonical encoding (refused)", smallNC, chain.ErrBadSignature},
		{"sender not a point", notAPoint, chain.ErrBadSignature},
		{"zero signature", zeroSig, chain.ErrBadSignature},
	}
}

// One acceptance rule, ZIP-215 without small-order keys, for every message signature: single
// verification gives the documented answer for each edge case.
func TestVerifyAcceptanceRule(t *testing.T) {
	for _, c := range sigCases() {
		err := c.m.Verify()
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

// Batch and single verification always agree, whatever the mix and size of
// the batch (below and above the batching threshold).
func TestVerifyMessagesAgreesWithVerify(t *testing.T) {
	cases := sigCases()
	var valid []chain.Message
	for i := range 10 {
		valid = append(valid, chain.SignMessage(testKey(61), uint64(100+i), fmt.Sprint("valid ", i)))
	}
	batches := [][]chain.Message{nil}
	for _, c := range cases {
		batches = append(batches, []chain.Message{c.m})
		// The odd one hidden among valid messages, at the front, middle and end.
		for _, at := range []int{0, 5, 10} {
			b := slices.Insert(slices.Clone(valid), at, c.m)
			batches = append(batches, b, b[:min(len(b), 3)])
		}
	}
	all := make([]chain.Message, 0, len(cases))
	for _, c := range cases {
		all = append(all, c.m)
	}
	batches = append(batches, all, append(slices.Clone(all), all...))

	for bi, batch := range batches {
		errs := chain.VerifyMessages(batch)
		if len(errs) != len(batch) {
			t.Fatalf("batch %d: %d errors for %d messages", bi, len(errs), len(batch))
		}
		for i := range batch {
			single := batch[i].Verify()
			if (single == nil) != (errs[i] == nil) ||
				single != nil && !(errors.Is(errs[i], chain.ErrBadSignature) == errors.Is(single, chain.ErrBadSignature) &&
					errors.Is(errs[i], chain.ErrBadContent) == errors.Is(single, chain.ErrBadContent)) {
				t.Fatalf("batch %d of %d, message %d (%q): batch says %v, single says %v", bi, len(batch), i, batch[i].Content, errs[i], single)
			}
		}
	}
}

// Batches of one sender, a few, and mostly distinct ones (the last take the
// general verifier, the others add up each key's terms) accept valid
// messages and single out a bad one wherever it is.
func TestVerifyMessagesBySenders(t *testing.T) {
	for _, senders := range []int{1, 3, 150} {
		msgs := make([]chain.Message, 200)
		for i := range msgs {
			msgs[i] = chain.SignMessage(testKey(byte(70+i%senders)), uint64(i), fmt.Sprint("message ", i))
		}
		for i, err := range chain.VerifyMessages(msgs) {
			if err != nil {
				t.Fatalf("%d senders: message %d: %v", senders, i, err)
			}
		}
		for _, bad := range []int{0, 117, 199} {
			b := slices.Clone(msgs)
			b[bad].Content += "!"
			for i, err := range chain.VerifyMessages(b) {
				if (i == bad) != errors.Is(err, chain.ErrBadSignature) {
					t.Fatalf("%d senders, bad %d: message %d: %v", senders, bad, i, err)
				}
			}
		}
	}
}

// blockSigs returns n block hashes and the producer's signatures over them.
func blockSigs(key ed25519.PrivateKey, n int) ([]chain.Hash, []chain.Signature) {
	hashes := make([]chain.Hash, n)
	sigs := make([]chain.Signature, n)
	for i := range hashes {
		hashes[i] = chain.Sum([]byte{'b', byte(i), byte(i >> 8)})
		copy(sigs[i][:], ed25519.Sign(key, hashes[i][:]))
	}
	return hashes, sigs
}

func TestFirstBadBlockSignature(t *testing.T) {
	key := testKey(62)
	producer := publicKey(key)
	for _, n := range []int{0, 1, 3, 4, 5, 70} {
		hashes, sigs := blockSigs(key, n)
		if got := chain.FirstBadBlockSignature(producer, hashes, sigs); got != n {
			t.Fatalf("n=%d all valid: %d, want %d", n, got, n)
		}
		for _, bad := range []int{0, 1, n / 2, n - 2, n - 1} {
			if bad < 0 || bad >= n {
				continue
			}
			for _, second := range []int{-1, bad + 1, n - 1} {
				s := slices.Clone(sigs)
				s[bad][10] ^= 1
				if second > bad && second < n {
					s[second] = nonCanonicalS(s[second])
				}
				if got := chain.FirstBadBlockSignature(producer, hashes, s); got != bad {
					t.Fatalf("n=%d, bad at %d (and %d): %d", n, bad, second, got)
				}
				// Single verification agrees, on the bad ones and their neighbours.
				for _, i := range []int{bad - 1, bad, bad + 1, second - 1, second, second + 1} {
					if i < 0 || i >= n {
						continue
					}
					err := chain.VerifyBlockSignature(producer, hashes[i], s[i])
					if wantBad := i == bad || i == second && second > bad; wantBad != (err != nil) {
						t.Fatalf("n=%d: VerifyBlockSignature of %d = %v", n, i, err)
					}
				}
			}
		}
		if n > 0 {
			if got := chain.FirstBadBlockSignature(publicKey(testKey(63)), hashes, sigs); got != 0 {
				t.Fatalf("n=%d under a foreign key: %d, want 0", n, got)
			}
			if got := chain.FirstBadBlockSignature(chain.PublicKey{2}, hashes, sigs); got != 0 {
				t.Fatalf("n=%d under a key that is no point: %d, want 0", n, got)
			}
		}
	}
}

// The batch path for block signatures agrees with single verification on
// every edge case of the acceptance rule, hidden among valid signatures.
func TestFirstBadBlockSignatureEdgeCases(t *testing.T) {
	key := testKey(67)
	producer := publicKey(key)
	hashes, sigs := blockSigs(key, 70)
	notAPointR := sigs[0]
	notAPointR[0] = 2 // R: y = 2, not on the curve
	clear(notAPointR[1:32])
	for _, c := range []struct {
		name string
		sig  chain.Signature
	}{
		{"zero signature", chain.Signature{}},
		{"neutral R, S = 0", identitySignature()},
		{"S not canonical", nonCanonicalS(sigs[33])},
		{"signature over another block", sigs[34]},
		{"R not a point", notAPointR},
	} {
		s := slices.Clone(sigs)
		s[33] = c.sig
		if err := chain.VerifyBlockSignature(producer, hashes[33], c.sig); err == nil {
			t.Fatalf("%s: single verification accepts it", c.name)
		}
		if got := chain.FirstBadBlockSignature(producer, hashes, s); got != 33 {
			t.Fatalf("%s: FirstBadBlockSignature = %d, want 33", c.name, got)
		}
	}
	// Under a small-order key the neutral signature satisfies the cofactored
	// equation for every hash; the rule refuses such a key, batched or not.
	forged := make([]chain.Signature, len(hashes))
	for i := range forged {
		forged[i] = identitySignature()
	}
	for _, k := range []chain.PublicKey{identityKey, identityKeyNonCanonical} {
		if got := chain.FirstBadBlockSignature(k, hashes, forged); got != 0 {
			t.Fatalf("small-order key %x: FirstBadBlockSignature = %d, want 0", k[:4], got)
		}
	}
}

// sequence seals n consecutive blocks on genesis with key.
func sequence(key ed25519.PrivateKey, n int) []*chain.Block {
	parent := chain.Genesis().Header
	blocks := make([]*chain.Block, n)
	msgs := testMessages(testKey(64), 2)
	for i := range blocks {
		blocks[i] = chain.Seal(&parent, msgs[:i%3], uint64(1000+i), key)
		parent = blocks[i].Header
	}
	return blocks
}

func TestCheckSequence(t *testing.T) {
	key := testKey(65)
	producer := publicKey(key)
	g := chain.Genesis()
	blocks := sequence(key, 200)
	for _, n := range []int{0, 1, 5, 200} {
		if got, err := chain.CheckSequence(&g.Header, chain.GenesisHash, blocks[:n], producer); got != n || err != nil {
			t.Fatalf("n=%d valid: %d, %v", n, got, err)
		}
	}

	resign := func(b *chain.Block, k ed25519.PrivateKey) *chain.Block {
		c := *b
		h := c.Hash()
		copy(c.Signature[:], ed25519.Sign(k, h[:]))
		return &c
	}
	badSig := func(i int) func([]*chain.Block) {
		return func(bs []*chain.Block) { c := *bs[i]; c.Signature[0] ^= 1; bs[i] = &c }
	}
	badLink := func(i int) func([]*chain.Block) {
		return func(bs []*chain.Block) { c := *bs[i]; c.PrevHash[0] ^= 1; bs[i] = resign(&c, key) }
	}
	badRoot := func(i int) func([]*chain.Block) {
		return func(bs []*chain.Block) { c := *bs[i]; c.Entries = nil; bs[i] = &c }
	}
	foreign := func(i int) func([]*chain.Block) {
		return func(bs []*chain.Block) {
			c := *bs[i]
			c.Producer = publicKey(testKey(66))
			bs[i] = resign(&c, testKey(66))
		}
	}
	for _, c := range []struct {
		name   string
		damage []func([]*chain.Block)
		good   int
		want   error
	}{
		{"signature at 0", []func([]*chain.Block){badSig(0)}, 0, chain.ErrBadSignature},
		{"signature at 170", []func([]*chain.Block){badSig(170)}, 170, chain.ErrBadSignature},
		{"signatures at 140 and 20", []func([]*chain.Block){badSig(140), badSig(20)}, 20, chain.ErrBadSignature},
		{"link at 100", []func([]*chain.Block){badLink(100)}, 100, chain.ErrPrevHash},
		{"signature before link", []func([]*chain.Block){badLink(100), badSig(99)}, 99, chain.ErrBadSignature},
		{"link before signature", []func([]*chain.Block){badLink(100), badSig(101)}, 100, chain.ErrPrevHash},
		{"root at 7", []func([]*chain.Block){badRoot(7)}, 7, chain.ErrMessageRoot},
		{"foreign producer at 199", []func([]*chain.Block){foreign(199)}, 199, chain.ErrProducer},
	} {
		t.Run(c.name, func(t *testing.T) {
			bs := slices.Clone(blocks)
			for _, d := range c.damage {
				d(bs)
			}
			got, err := chain.CheckSequence(&g.Header, chain.GenesisHash, bs, producer)
			if got != c.good || !errors.Is(err, c.want) {
				t.Fatalf("CheckSequence = %d, %v; want %d, %v", got, err, c.good, c.want)
			}
		})
	}
	// Starting from the wrong parent fails at once.
	if got, err := chain.CheckSequence(&blocks[0].Header, blocks[0].Hash(), blocks, producer); got != 0 || !errors.Is(err, chain.ErrHeight) {
		t.Fatalf("from the wrong parent: %d, %v", got, err)
	}
}
