package chain_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// sealed returns a block at height 2 with n messages, its parent, and the
// producer's key.
func sealed(t *testing.T, n int) (b *chain.Block, parent *chain.Block, key ed25519.PrivateKey) {
	t.Helper()
	key = testKey(20)
	g := chain.Genesis()
	parent = chain.Seal(&g.Header, nil, 1_000, key)
	b = chain.Seal(&parent.Header, testMessages(testKey(21), n), 2_000, key)
	return b, parent, key
}

func sameBlock(t *testing.T, got, want *chain.Block) {
	t.Helper()
	if got.Header != want.Header || got.Signature != want.Signature || len(got.Entries) != len(want.Entries) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	for i := range want.Entries {
		if got.Entries[i] != want.Entries[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got.Entries[i], want.Entries[i])
		}
	}
}

func TestBlockRecordRoundTrip(t *testing.T) {
	blocks := []*chain.Block{chain.Genesis()}
	for _, n := range []int{0, 1, 3, 17} {
		b, _, _ := sealed(t, n)
		blocks = append(blocks, b)
	}
	for _, b := range blocks {
		rec := b.Encode()
		if len(rec) != b.EncodedSize() {
			t.Fatalf("record of %d bytes, EncodedSize %d", len(rec), b.EncodedSize())
		}
		if !bytes.Equal(rec[:chain.HeaderSize], b.Header.AppendEncoding(nil)) {
			t.Fatal("record does not start with the header encoding")
		}
		got, err := chain.DecodeBlock(rec)
		if err != nil {
			t.Fatalf("DecodeBlock of %d entries: %v", len(b.Entries), err)
		}
		sameBlock(t, got, b)
		if !bytes.Equal(got.Encode(), rec) {
			t.Fatal("re-encoding differs")
		}
		if got.Hash() != b.Hash() {
			t.Fatal("hash changed through the record")
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	b, _, _ := sealed(t, 2)
	enc := b.Header.AppendEncoding(nil)
	if len(enc) != chain.HeaderSize {
		t.Fatalf("header encoding of %d bytes, want %d", len(enc), chain.HeaderSize)
	}
	h, err := chain.DecodeHeader(enc)
	if err != nil || h != b.Header {
		t.Fatalf("DecodeHeader = %+v, %v; want %+v", h, err, b.Header)
	}
	for _, n := range []int{0, chain.HeaderSize - 1, chain.HeaderSize + 1} {
		buf := make([]byte, n)
		copy(buf, enc)
		if _, err := chain.DecodeHeader(buf); !errors.Is(err, chain.ErrTruncated) {
			t.Errorf("DecodeHeader of %d bytes = %v, want ErrTruncated", n, err)
		}
	}
}

func TestDecodeBlockRejectsTruncatedAndExtended(t *testing.T) {
	for _, n := range []int{0, 3} {
		b, _, _ := sealed(t, n)
		rec := b.Encode()
		for l := range len(rec) {
			if _, err := chain.DecodeBlock(rec[:l]); !errors.Is(err, chain.ErrTruncated) {
				t.Fatalf("%d entries, record cut to %d of %d bytes: %v, want ErrTruncated", n, l, len(rec), err)
			}
		}
		for extra := 1; extra <= 2*chain.HashSize+1; extra++ {
			long := append(bytes.Clone(rec), make([]byte, extra)...)
			if _, err := chain.DecodeBlock(long); !errors.Is(err, chain.ErrTruncated) {
				t.Fatalf("%d entries, record extended by %d bytes: %v, want ErrTruncated", n, extra, err)
			}
		}
	}
}

// A corrupt count can never make the decoder allocate without limit.
func TestDecodeBlockRejectsHugeCount(t *testing.T) {
	b, _, _ := sealed(t, 0)
	rec := b.Encode()
	binary.BigEndian.PutUint32(rec[chain.HeaderSize+chain.SignatureSize:], chain.MaxEntries+1)
	if _, err := chain.DecodeBlock(rec); !errors.Is(err, chain.ErrTooLarge) {
		t.Fatalf("DecodeBlock with count MaxEntries+1 = %v, want ErrTooLarge", err)
	}
	binary.BigEndian.PutUint32(rec[chain.HeaderSize+chain.SignatureSize:], ^uint32(0))
	if _, err := chain.DecodeBlock(rec); err == nil {
		t.Fatal("DecodeBlock with count 2^32-1 and no entries succeeded")
	}
}

// Every byte of the entries is bound to the header through the message root.
func TestCheckRecordCatchesFlippedEntryByte(t *testing.T) {
	b, _, _ := sealed(t, 5)
	if err := b.CheckRecord(); err != nil {
		t.Fatalf("CheckRecord of a sealed block: %v", err)
	}
	rec := b.Encode()
	start := chain.HeaderSize + chain.SignatureSize + 4
	for off := start; off < len(rec); off++ {
		bad := bytes.Clone(rec)
		bad[off] ^= 0x01
		d, err := chain.DecodeBlock(bad)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if err := d.CheckRecord(); !errors.Is(err, chain.ErrMessageRoot) {
			t.Fatalf("flipped entry byte at offset %d: CheckRecord = %v, want ErrMessageRoot", off, err)
		}
	}
	// Reordering entries changes the root too.
	swapped := *b
	swapped.Entries = append([]chain.Entry(nil), b.Entries...)
	swapped.Entries[0], swapped.Entries[1] = swapped.Entries[1], swapped.Entries[0]
	if err := swapped.CheckRecord(); !errors.Is(err, chain.ErrMessageRoot) {
		t.Fatalf("swapped entries: CheckRecord = %v, want ErrMessageRoot", err)
	}
}

func TestCheckRecordGenesis(t *testing.T) {
	if err := chain.Genesis().CheckRecord(); err != nil {
		t.Fatalf("genesis: %v", err)
	}
	if chain.GenesisHash != chain.Genesis().Hash() {
		t.Fatal("GenesisHash is not the hash of Genesis()")
	}
	g := chain.Genesis()
	if g.Height != 0 || g.Timestamp != 0 || !g.PrevHash.IsZero() || g.Producer != (chain.PublicKey{}) || len(g.Entries) != 0 {
		t.Fatalf("genesis %+v is not height 0, timestamp 0, zero parent, no producer, no messages", g)
	}
	for name, f := range map[string]func(b *chain.Block){
		"timestamp": func(b *chain.Block) { b.Timestamp = 1 },
		"signature": func(b *chain.Block) { b.Signature[0] = 1 },
		"entry":     func(b *chain.Block) { b.Entries = testEntries(1); b.MessageRoot = chain.MessageRoot(b.Entries) },
		"producer":  func(b *chain.Block) { b.Producer[0] = 1 },
	} {
		g := chain.Genesis()
		f(g)
		if err := g.CheckRecord(); !errors.Is(err, chain.ErrGenesis) {
			t.Errorf("genesis with changed %s: CheckRecord = %v, want ErrGenesis", name, err)
		}
	}
}

func TestLink(t *testing.T) {
	b, parent, _ := sealed(t, 2)
	ph := parent.Hash()
	if err := b.Link(&parent.Header, ph); err != nil {
		t.Fatalf("Link of a sealed block: %v", err)
	}
	cases := []struct {
		name string
		f    func(b *chain.Block)
		want error
	}{
		{"height too high", func(b *chain.Block) { b.Height++ }, chain.ErrHeight},
		{"height too low", func(b *chain.Block) { b.Height-- }, chain.ErrHeight},
		{"same height as parent", func(b *chain.Block) { b.Height = parent.Height }, chain.ErrHeight},
		{"prev_hash", func(b *chain.Block) { b.PrevHash[31] ^= 1 }, chain.ErrPrevHash},
		{"prev_hash zero", func(b *chain.Block) { b.PrevHash = chain.Hash{} }, chain.ErrPrevHash},
		{"timestamp below parent", func(b *chain.Block) { b.Timestamp = parent.Timestamp - 1 }, chain.ErrTimestamp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := *b
			c.f(&bad)
			if err := bad.Link(&parent.Header, ph); !errors.Is(err, c.want) {
				t.Fatalf("Link = %v, want %v", err, c.want)
			}
		})
	}
	equal := *b
	equal.Timestamp = parent.Timestamp
	if err := equal.Link(&parent.Header, ph); err != nil {
		t.Fatalf("timestamp equal to the parent's refused: %v", err)
	}
}

func TestVerifySignature(t *testing.T) {
	b, _, key := sealed(t, 3)
	producer := publicKey(key)
	if err := b.VerifySignature(producer); err != nil {
		t.Fatalf("VerifySignature of a sealed block: %v", err)
	}
	foreign := testKey(99)
	if err := b.VerifySignature(publicKey(foreign)); !errors.Is(err, chain.ErrProducer) {
		t.Errorf("VerifySignature under a foreign key = %v, want ErrProducer", err)
	}

	// Signed by a foreign key while naming the real producer.
	forged := *b
	h := forged.Hash()
	copy(forged.Signature[:], ed25519.Sign(foreign, h[:]))
	if err := forged.VerifySignature(producer); !errors.Is(err, chain.ErrBadSignature) {
		t.Errorf("foreign signature = %v, want ErrBadSignature", err)
	}
	// Signed by and naming a foreign key: refused for the chain's producer.
	forged.Producer = publicKey(foreign)
	h = forged.Hash()
	copy(forged.Signature[:], ed25519.Sign(foreign, h[:]))
	if err := forged.VerifySignature(producer); !errors.Is(err, chain.ErrProducer) {
		t.Errorf("block of a foreign producer = %v, want ErrProducer", err)
	}

	for i := range chain.SignatureSize {
		bad := *b
		bad.Signature[i] ^= 0x01
		if err := bad.VerifySignature(producer); !errors.Is(err, chain.ErrBadSignature) {
			t.Fatalf("signature byte %d flipped: %v, want ErrBadSignature", i, err)
		}
	}
	// The signature covers the hash: a changed header field invalidates it.
	moved := *b
	moved.Timestamp++
	if err := moved.VerifySignature(producer); !errors.Is(err, chain.ErrBadSignature) {
		t.Errorf("timestamp changed after signing: %v, want ErrBadSignature", err)
	}
}

func TestSeal(t *testing.T) {
	key := testKey(30)
	msgs := testMessages(testKey(31), 4)
	parent := chain.Header{Height: 9, Timestamp: 5_000, PrevHash: chain.Sum([]byte("p")), MessageRoot: chain.EmptyRoot, Producer: publicKey(key)}
	b := chain.Seal(&parent, msgs, 6_000, key)
	if b.Height != 10 || b.PrevHash != parent.Hash() || b.Timestamp != 6_000 || b.Producer != publicKey(key) {
		t.Fatalf("sealed header %+v", b.Header)
	}
	if len(b.Entries) != len(msgs) {
		t.Fatalf("%d entries, want %d", len(b.Entries), len(msgs))
	}
	for i := range msgs {
		if b.Entries[i] != chain.EntryOf(&msgs[i]) {
			t.Fatalf("entry %d is not the message's entry", i)
		}
	}
	if got := b.MessageIDs(); len(got) != 4 || got[2] != msgs[2].ID() {
		t.Fatalf("MessageIDs = %v", got)
	}
	if b.MessageRoot != chain.MessageRoot(b.Entries) {
		t.Fatal("message root does not match the entries")
	}
	if err := b.CheckNext(&parent, parent.Hash(), publicKey(key)); err != nil {
		t.Fatalf("CheckNext of a sealed block: %v", err)
	}
	if empty := chain.Seal(&parent, nil, 6_000, key); empty.MessageRoot != chain.EmptyRoot || len(empty.MessageIDs()) != 0 {
		t.Fatalf("empty block root %s, ids %v", empty.MessageRoot, empty.MessageIDs())
	}
}

// A block's timestamp is never below its parent's, even when the clock has
// gone back.
func TestSealTimestampNeverBelowParent(t *testing.T) {
	key := testKey(32)
	parent := chain.Header{Height: 3, Timestamp: 10_000}
	for _, c := range []struct{ now, want uint64 }{
		{0, 10_000},
		{9_999, 10_000},
		{10_000, 10_000},
		{10_001, 10_001},
	} {
		b := chain.Seal(&parent, nil, c.now, key)
		if b.Timestamp != c.want {
			t.Errorf("now %d after parent at %d: timestamp %d, want %d", c.now, parent.Timestamp, b.Timestamp, c.want)
		}
		if err := b.Link(&parent, parent.Hash()); err != nil {
			t.Errorf("now %d: Link: %v", c.now, err)
		}
	}
}

func TestCheckNext(t *testing.T) {
	b, parent, key := sealed(t, 3)
	ph, producer := parent.Hash(), publicKey(key)
	if err := b.CheckNext(&parent.Header, ph, producer); err != nil {
		t.Fatal(err)
	}
	rootless := *b
	rootless.Entries = b.Entries[:2]
	if err := rootless.CheckNext(&parent.Header, ph, producer); !errors.Is(err, chain.ErrMessageRoot) {
		t.Errorf("entry dropped: %v, want ErrMessageRoot", err)
	}
	if err := b.CheckNext(&b.Header, b.Hash(), producer); !errors.Is(err, chain.ErrHeight) {
		t.Errorf("against itself: %v, want ErrHeight", err)
	}
	if err := b.CheckNext(&parent.Header, ph, publicKey(testKey(1))); !errors.Is(err, chain.ErrProducer) {
		t.Errorf("other producer: %v, want ErrProducer", err)
	}
}
