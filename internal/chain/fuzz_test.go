package chain_test

import (
	"bytes"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// Every decoder is fuzzed for the round trip: whatever decodes encodes to
// the same bytes, and nothing panics. `go test` runs the seeds only; fuzz
// with e.g. go test -run=^$ -fuzz=FuzzDecodeBlock -fuzztime=10s ./internal/chain/

func FuzzDecodeMessage(f *testing.F) {
	for i, content := range []string{"", "hello", "日本語", "\xff"} {
		m := chain.SignMessage(testKey(byte(40+i)), uint64(i)<<40, content)
		m.Timestamp = 1_700_000_000_000
		f.Add(m.Encode())
	}
	f.Add([]byte{})
	f.Add(make([]byte, 111))
	f.Add(make([]byte, 112))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := chain.DecodeMessage(b)
		if err != nil {
			return
		}
		if got := m.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("round trip: %x -> %x", b, got)
		}
		if m.EncodedSize() != len(b) {
			t.Fatalf("EncodedSize %d, encoding %d bytes", m.EncodedSize(), len(b))
		}
		if m.Hash() != chain.Sum(b) {
			t.Fatal("Hash is not BLAKE3 of the encoding")
		}
	})
}

func FuzzDecodeBlock(f *testing.F) {
	key := testKey(50)
	g := chain.Genesis()
	f.Add(g.Encode())
	parent := &g.Header
	for _, n := range []int{0, 1, 3} {
		b := chain.Seal(parent, testMessages(testKey(51), n), 1_000, key)
		f.Add(b.Encode())
		parent = &b.Header
	}
	f.Add([]byte{})
	f.Add(make([]byte, chain.HeaderSize+chain.SignatureSize+4))
	huge := make([]byte, chain.HeaderSize+chain.SignatureSize+4)
	copy(huge[chain.HeaderSize+chain.SignatureSize:], []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(huge)
	f.Fuzz(func(t *testing.T, rec []byte) {
		b, err := chain.DecodeBlock(rec)
		if err != nil {
			return
		}
		if got := b.Encode(); !bytes.Equal(got, rec) {
			t.Fatalf("round trip: %x -> %x", rec, got)
		}
		if b.EncodedSize() != len(rec) {
			t.Fatalf("EncodedSize %d, record %d bytes", b.EncodedSize(), len(rec))
		}
		// The stateless checks must not panic on anything that decodes.
		_ = b.CheckRecord()
		_ = b.Link(&g.Header, chain.GenesisHash)
		_ = b.VerifySignature(b.Producer)
	})
}

func FuzzDecodeHeader(f *testing.F) {
	b := chain.Seal(&chain.Genesis().Header, testMessages(testKey(52), 2), 5, testKey(53))
	f.Add(b.Header.AppendEncoding(nil))
	f.Add(chain.Genesis().Header.AppendEncoding(nil))
	f.Add([]byte{})
	f.Add(make([]byte, chain.HeaderSize+1))
	f.Fuzz(func(t *testing.T, enc []byte) {
		h, err := chain.DecodeHeader(enc)
		if err != nil {
			return
		}
		if got := h.AppendEncoding(nil); !bytes.Equal(got, enc) {
			t.Fatalf("round trip: %x -> %x", enc, got)
		}
		if h.Hash() != chain.Sum(enc) {
			t.Fatal("Hash is not BLAKE3 of the encoding")
		}
	})
}
