package chain

import (
	"crypto/rand"
	"crypto/sha512"
	"sync"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	vo "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Kimura's one signature acceptance rule is ZIP-215 Ed25519 (cofactored
// verification; non-canonical point encodings accepted; S must be canonical)
// with one restriction: a small-order public key is refused, since anyone can
// forge a signature by such a key. Every node applies the rule to every
// signature, messages and blocks alike, one at a time or in batches: it is a
// rule under which single and batch verification always agree, so a leader
// that batch-verifies and a peer that checks one message never disagree about
// a signature. Signing is plain RFC 8032 (crypto/ed25519), whose signatures
// every rule accepts.
var acceptance = &vo.Options{Verify: &vo.VerifyOptions{
	AllowSmallOrderA:   false,
	AllowSmallOrderR:   true,
	AllowNonCanonicalA: true,
	AllowNonCanonicalR: true,
}}

// verifySig reports whether sig is pub's signature over msg.
func verifySig(pub PublicKey, msg []byte, sig Signature) bool {
	ek := expandedKey(pub)
	if ek == nil {
		return false
	}
	return vo.VerifyExpandedWithOptions(ek, msg, sig[:], acceptance)
}

// keyCache memoises decompressed public keys: a sender usually sends many
// messages and a chain has one producer, and decompressing a key costs as
// much as a third of a verification. It is bounded; when full it starts over.
var keyCache = struct {
	sync.Mutex
	m map[PublicKey]*vo.ExpandedPublicKey
}{m: make(map[PublicKey]*vo.ExpandedPublicKey)}

const keyCacheSize = 4096

// expandedKey returns pub decompressed, or nil when pub is not a point.
func expandedKey(pub PublicKey) *vo.ExpandedPublicKey {
	keyCache.Lock()
	ek, ok := keyCache.m[pub]
	keyCache.Unlock()
	if ok {
		return ek
	}
	ek, err := vo.NewExpandedPublicKey(pub[:])
	if err != nil {
		ek = nil
	}
	keyCache.Lock()
	if len(keyCache.m) >= keyCacheSize {
		clear(keyCache.m)
	}
	keyCache.m[pub] = ek
	keyCache.Unlock()
	return ek
}

// minBatch is the size below which one-by-one verification is as fast.
const minBatch = 4

// VerifyMessages checks each message as Message.Verify does, batching the
// signature checks; errs[i] is nil for a valid msgs[i]. It runs on the
// calling goroutine.
func VerifyMessages(msgs []Message) []error {
	errs := make([]error, len(msgs))
	if len(msgs) < minBatch {
		for i := range msgs {
			errs[i] = msgs[i].Verify()
		}
		return errs
	}
	var (
		keys   []PublicKey
		keyIdx = make(map[PublicKey]int)
		batch  keyedBatch
		idx    = make([]int, 0, len(msgs)) // idx[j]: the message of batch entry j
	)
	for i := range msgs {
		m := &msgs[i]
		if err := m.checkContent(); err != nil {
			errs[i] = err
			continue
		}
		if expandedKey(m.Sender) == nil {
			errs[i] = m.signatureError()
			continue
		}
		k, ok := keyIdx[m.Sender]
		if !ok {
			k = len(keys)
			keyIdx[m.Sender] = k
			keys = append(keys, m.Sender)
		}
		batch.add(k, SigningBytes(m.Sender, m.Nonce, m.Content), &m.Signature)
		idx = append(idx, i)
	}
	if len(idx) == 0 || batch.verify(keys) {
		return errs
	}
	// At least one is invalid: find which, one by one.
	for j, i := range idx {
		if !verifySig(keys[batch.key[j]], batch.msg[j], msgs[i].Signature) {
			errs[i] = msgs[i].signatureError()
		}
	}
	return errs
}

// FirstBadBlockSignature batch-verifies sigs[i] as producer's signatures over
// hashes[i] and returns the index of the first invalid one, or len(hashes).
// It runs on the calling goroutine.
func FirstBadBlockSignature(producer PublicKey, hashes []Hash, sigs []Signature) int {
	if len(hashes) >= minBatch && expandedKey(producer) != nil {
		var batch keyedBatch
		for i := range hashes {
			batch.add(0, hashes[i][:], &sigs[i])
		}
		if batch.verify([]PublicKey{producer}) {
			return len(hashes)
		}
	}
	for i := range hashes {
		if !verifySig(producer, hashes[i][:], sigs[i]) {
			return i
		}
	}
	return len(hashes)
}

// keyedBatch is a batch of signatures to verify together: entry j is a
// signature sig[j] over msg[j] by the key numbered key[j].
type keyedBatch struct {
	key []int
	msg [][]byte
	sig []*Signature
}

func (b *keyedBatch) add(key int, msg []byte, sig *Signature) {
	b.key, b.msg, b.sig = append(b.key, key), append(b.msg, msg), append(b.sig, sig)
}

// verify reports whether every signature in b is valid, by keys[b.key[j]],
// for keys that expandedKey accepts. It checks the cofactored batch
// equation that curve25519-voi's batch verifier checks,
//
//	[8]( -[sum z_j s_j]B + sum [z_j]R_j + sum [z_j k_j]A_j ) = 0,
//
// with random 128-bit z_j, but it adds up the terms of each key first, so
// the equation has one term per distinct key rather than one per signature:
// sum over keys A of [sum of z_j k_j for A's signatures]A. That is the same
// equation, so it accepts exactly what the general verifier and ZIP-215
// single verification accept; it only leaves out points of the multiscalar
// multiplication. A chain's blocks have one key, and a sender usually sends
// many messages: a batch of n signatures by m keys costs n + m + 1 points
// instead of 2n + 1 (about 35% less time per signature with one key). When
// most keys are distinct, the general verifier, whose keys come with
// precomputed tables, is faster, and verify uses it.
//
// It answers for the batch as a whole: false means at least one is invalid.
func (b *keyedBatch) verify(keys []PublicKey) bool {
	n := len(b.sig)
	if 2*len(keys) > n {
		return b.verifyGeneral(keys)
	}
	z := make([]byte, 16*n)
	if _, err := rand.Read(z); err != nil {
		panic("chain: no randomness for batch verification: " + err.Error())
	}
	// Terms: B, each key, then each R_j.
	m := len(keys)
	pts := make([]curve.EdwardsPoint, m+n)
	coeffs := make([]scalar.Scalar, 1+m+n)
	scalars := make([]*scalar.Scalar, 1+m+n)
	points := make([]*curve.EdwardsPoint, 1+m+n)
	scalars[0], points[0] = &coeffs[0], curve.ED25519_BASEPOINT_POINT
	for k := range keys {
		if !decompress(&pts[k], keys[k][:]) || pts[k].IsSmallOrder() {
			return false
		}
		scalars[1+k], points[1+k] = &coeffs[1+k], &pts[k]
	}
	var sumZS, s, k, t scalar.Scalar
	var wide [64]byte
	var narrow [32]byte
	h := sha512.New()
	for j := range n {
		sig, R := b.sig[j][:], &pts[m+j]
		// S canonical (no malleability); R any encoding of a point (ZIP-215).
		if !scalar.ScMinimalVartime(sig[32:]) || !decompress(R, sig[:32]) {
			return false
		}
		if _, err := s.SetBytesModOrder(sig[32:]); err != nil {
			return false
		}
		h.Reset()
		h.Write(sig[:32])
		h.Write(keys[b.key[j]][:])
		h.Write(b.msg[j])
		if _, err := k.SetBytesModOrderWide(h.Sum(wide[:0])); err != nil {
			return false
		}
		zj := &coeffs[1+m+j]
		copy(narrow[:16], z[16*j:16*j+16])
		if _, err := zj.SetBytesModOrder(narrow[:]); err != nil {
			return false
		}
		sumZS.Add(&sumZS, t.Mul(zj, &s))
		keyCoeff := &coeffs[1+b.key[j]]
		keyCoeff.Add(keyCoeff, t.Mul(zj, &k))
		scalars[1+m+j], points[1+m+j] = zj, R
	}
	coeffs[0].Neg(&sumZS)
	var sum curve.EdwardsPoint
	return sum.MultiscalarMulVartime(scalars, points).IsSmallOrder()
}

// verifyGeneral checks b with curve25519-voi's batch verifier.
func (b *keyedBatch) verifyGeneral(keys []PublicKey) bool {
	bv := vo.NewBatchVerifierWithCapacity(len(b.sig))
	for j := range b.sig {
		bv.AddExpandedWithOptions(expandedKey(keys[b.key[j]]), b.msg[j], b.sig[j][:], acceptance)
	}
	return bv.VerifyBatchOnly(rand.Reader)
}

// decompress sets p to the point that b encodes, in any encoding ZIP-215
// takes (y need not be reduced), and reports whether b encodes a point.
func decompress(p *curve.EdwardsPoint, b []byte) bool {
	var c curve.CompressedEdwardsY
	if _, err := c.SetBytes(b); err != nil {
		return false
	}
	_, err := p.SetCompressedY(&c)
	return err == nil
}
