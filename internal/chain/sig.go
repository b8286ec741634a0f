package chain

import (
	"crypto/rand"
	"sync"

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
	if len(hashes) < minBatch {
		for i := range hashes {
			if !verifySig(producer, hashes[i][:], sigs[i]) {
				return i
			}
		}
		return len(hashes)
	}
	ek := expandedKey(producer)
	if ek == nil {
		return 0 // not a point: no signature by it can be valid
	}
	bv := vo.NewBatchVerifierWithCapacity(len(hashes))
	for i := range hashes {
		bv.AddExpandedWithOptions(ek, hashes[i][:], sigs[i][:], acceptance)
	}
	ok, valid := bv.Verify(rand.Reader)
	if ok {
		return len(hashes)
	}
	for i, v := range valid {
		if !v {
			return i
		}
	}
	return len(hashes)
}
