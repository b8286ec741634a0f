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
	bv := vo.NewBatchVerifierWithCapacity(len(msgs))
	idx := make([]int, 0, len(msgs))
	for i := range msgs {
		if err := msgs[i].checkContent(); err != nil {
			errs[i] = err
			continue
		}
		m := &msgs[i]
		ek := expandedKey(m.Sender)
		if ek == nil {
			errs[i] = m.signatureError()
			continue
		}
		bv.AddExpandedWithOptions(ek, SigningBytes(m.Sender, m.Nonce, m.Content), m.Signature[:], acceptance)
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return errs
	}
	if ok, valid := bv.Verify(rand.Reader); !ok {
		for j, i := range idx {
			if !valid[j] {
				errs[i] = msgs[i].signatureError()
			}
		}
	}
	return errs
}

// FirstBadBlockSignature batch-verifies sigs[i] as producer's signatures over
// hashes[i] and returns the index of the first invalid one, or len(hashes).
// It runs on the calling goroutine.
func FirstBadBlockSignature(producer PublicKey, hashes []Hash, sigs []Signature) int {
	if len(hashes) >= minBatch && expandedKey(producer) != nil && sameKeyBatch(producer, hashes, sigs) {
		return len(hashes)
	}
	for i := range hashes {
		if !verifySig(producer, hashes[i][:], sigs[i]) {
			return i
		}
	}
	return len(hashes)
}

// sameKeyBatch reports whether every sigs[i] is a valid signature by pub
// over hashes[i], for a pub that expandedKey accepts. It checks the
// cofactored batch equation that curve25519-voi's batch verifier checks,
//
//	[8]( -[sum z_i s_i]B + sum [z_i]R_i + sum [z_i k_i]A_i ) = 0,
//
// with random 128-bit z_i, but since all A_i are one key it adds their terms
// up front into the single term [sum z_i k_i]A. That is the same equation,
// so it accepts exactly what the general verifier and ZIP-215 single
// verification accept; it only leaves out half the points of the
// multiscalar multiplication (about a quarter of the time per signature).
// It answers for the batch as a whole: false means at least one is invalid.
func sameKeyBatch(pub PublicKey, hashes []Hash, sigs []Signature) bool {
	n := len(hashes)
	var A curve.EdwardsPoint
	if !decompress(&A, pub[:]) || A.IsSmallOrder() {
		return false
	}
	z := make([]byte, 16*n)
	if _, err := rand.Read(z); err != nil {
		panic("chain: no randomness for batch verification: " + err.Error())
	}
	// Terms: B, A, then each R_i.
	Rs := make([]curve.EdwardsPoint, n)
	coeffs := make([]scalar.Scalar, 2+n)
	scalars := make([]*scalar.Scalar, 2+n)
	points := make([]*curve.EdwardsPoint, 2+n)
	var sumZS, sumZK, s, k, t scalar.Scalar
	var wide [64]byte
	var narrow [32]byte
	h := sha512.New()
	for i := range n {
		sig := sigs[i][:]
		// S canonical (no malleability); R any encoding of a point (ZIP-215).
		if !scalar.ScMinimalVartime(sig[32:]) || !decompress(&Rs[i], sig[:32]) {
			return false
		}
		if _, err := s.SetBytesModOrder(sig[32:]); err != nil {
			return false
		}
		h.Reset()
		h.Write(sig[:32])
		h.Write(pub[:])
		h.Write(hashes[i][:])
		if _, err := k.SetBytesModOrderWide(h.Sum(wide[:0])); err != nil {
			return false
		}
		zi := &coeffs[2+i]
		copy(narrow[:16], z[16*i:16*i+16])
		if _, err := zi.SetBytesModOrder(narrow[:]); err != nil {
			return false
		}
		sumZS.Add(&sumZS, t.Mul(zi, &s))
		sumZK.Add(&sumZK, t.Mul(zi, &k))
		scalars[2+i], points[2+i] = zi, &Rs[i]
	}
	coeffs[0].Neg(&sumZS)
	coeffs[1] = sumZK
	scalars[0], points[0] = &coeffs[0], curve.ED25519_BASEPOINT_POINT
	scalars[1], points[1] = &coeffs[1], &A
	var sum curve.EdwardsPoint
	return sum.MultiscalarMulVartime(scalars, points).IsSmallOrder()
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
