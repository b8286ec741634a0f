package chain_test

import (
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// benchMessages returns n signed, stamped 100-byte messages from a few senders.
func benchMessages(n int) []chain.Message {
	keys := make([]ed25519.PrivateKey, 8)
	for i := range keys {
		keys[i] = testKey(byte(100 + i))
	}
	content := string(make([]byte, 100))
	msgs := make([]chain.Message, n)
	for i := range msgs {
		msgs[i] = chain.SignMessage(keys[i%len(keys)], uint64(i), content)
		msgs[i].Timestamp = 1_700_000_000_000
	}
	return msgs
}

func BenchmarkMessageVerify(b *testing.B) {
	msgs := benchMessages(64)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := msgs[i%len(msgs)].Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyMessagesBatch(b *testing.B) {
	for _, n := range []int{64, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			msgs := benchMessages(n)
			for b.Loop() {
				for _, err := range chain.VerifyMessages(msgs) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
		})
	}
}

func BenchmarkSeal10000(b *testing.B) {
	msgs := benchMessages(10000)
	key := testKey(1)
	parent := chain.Genesis().Header
	for b.Loop() {
		chain.Seal(&parent, msgs, 1, key)
	}
}

func BenchmarkProofs10000(b *testing.B) {
	entries := testEntries(10000)
	b.Run("tree+all", func(b *testing.B) {
		for b.Loop() {
			t := chain.NewTree(entries)
			for i := range entries {
				if _, err := t.Proof(i); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("one", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := chain.InclusionProof(entries, i%len(entries)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		root := chain.MessageRoot(entries)
		proof, _ := chain.InclusionProof(entries, 1234)
		for b.Loop() {
			if err := chain.VerifyInclusion(root, uint64(len(entries)), 1234, entries[1234], proof); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBlockSignatures(b *testing.B) {
	key := testKey(2)
	producer := publicKey(key)
	const n = 512
	hashes := make([]chain.Hash, n)
	sigs := make([]chain.Signature, n)
	for i := range hashes {
		hashes[i] = chain.Sum([]byte{byte(i), byte(i >> 8)})
		copy(sigs[i][:], ed25519.Sign(key, hashes[i][:]))
	}
	b.Run("single", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := chain.VerifyBlockSignature(producer, hashes[i%n], sigs[i%n]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch512", func(b *testing.B) {
		for b.Loop() {
			if bad := chain.FirstBadBlockSignature(producer, hashes, sigs); bad != n {
				b.Fatal("bad signature", bad)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sig")
	})
}
