package chain_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/chain"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKey returns a deterministic Ed25519 key: the same seed byte always
// gives the same key, so failures reproduce.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func publicKey(k ed25519.PrivateKey) chain.PublicKey {
	return chain.PublicKey(k.Public().(ed25519.PublicKey))
}

// testEntries returns n distinct entries derived from their index.
func testEntries(n int) []chain.Entry {
	es := make([]chain.Entry, n)
	for i := range es {
		es[i] = chain.Entry{
			ID:          chain.Sum([]byte{'i', byte(i), byte(i >> 8)}),
			MessageHash: chain.Sum([]byte{'m', byte(i), byte(i >> 8)}),
		}
	}
	return es
}

// testMessages returns n messages signed by key, nonces 1..n, stamped.
func testMessages(key ed25519.PrivateKey, n int) []chain.Message {
	msgs := make([]chain.Message, n)
	for i := range msgs {
		msgs[i] = chain.SignMessage(key, uint64(i+1), "message "+string(rune('a'+i%26)))
		msgs[i].Timestamp = 1_700_000_000_000 + uint64(i)
	}
	return msgs
}
