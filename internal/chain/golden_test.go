package chain_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// update rewrites testdata/golden.json from the current code. The vectors pin
// what is on the wire and on disk, so a change to them must be deliberate:
// run `go test ./internal/chain/ -run TestGolden -update` and review the diff.
var update = flag.Bool("update", false, "rewrite testdata/golden.json from the current code")

const goldenPath = "testdata/golden.json"

// golden is the layout of testdata/golden.json. Inputs are fixed here in the
// test and written to the file beside the outputs so that the file explains
// itself; every field is compared.
type golden struct {
	GenesisHash string        `json:"genesis_hash"`
	EmptyRoot   string        `json:"empty_root"`
	Header      goldenHeader  `json:"header"`
	Message     goldenMessage `json:"message"`
	Block       goldenBlock   `json:"block"`
}

type goldenHeader struct {
	Height      uint64 `json:"height"`
	Timestamp   uint64 `json:"timestamp"`
	PrevHash    string `json:"prev_hash"`
	MessageRoot string `json:"message_root"`
	Producer    string `json:"producer"`
	Encoding    string `json:"encoding"`
	Hash        string `json:"hash"`
}

type goldenMessage struct {
	SenderSeed string `json:"sender_seed"` // Ed25519 seed; signatures are deterministic
	Nonce      uint64 `json:"nonce"`
	Content    string `json:"content"`
	Timestamp  uint64 `json:"timestamp"`
	Sender     string `json:"sender"`
	Signature  string `json:"signature"`
	ID         string `json:"id"`
	Encoding   string `json:"encoding"`
	Hash       string `json:"hash"`
	LeafHash   string `json:"leaf_hash"`
}

type goldenBlock struct {
	// The block seals Messages on top of the header above, at Now.
	ProducerSeed string          `json:"producer_seed"`
	Now          uint64          `json:"now"`
	Messages     []goldenMessage `json:"messages"`
	Height       uint64          `json:"height"`
	PrevHash     string          `json:"prev_hash"`
	MessageRoot  string          `json:"message_root"`
	Signature    string          `json:"signature"`
	Hash         string          `json:"hash"`
	Record       string          `json:"record"`
}

func seedOf(b byte) []byte { return bytes.Repeat([]byte{b}, ed25519.SeedSize) }

func filled(b byte) (h chain.Hash) {
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

func goldenMessageOf(seed []byte, nonce uint64, content string, ts uint64) (goldenMessage, chain.Message) {
	m := chain.SignMessage(ed25519.NewKeyFromSeed(seed), nonce, content)
	m.Timestamp = ts
	return goldenMessage{
		SenderSeed: hex.EncodeToString(seed),
		Nonce:      nonce,
		Content:    content,
		Timestamp:  ts,
		Sender:     hex.EncodeToString(m.Sender[:]),
		Signature:  hex.EncodeToString(m.Signature[:]),
		ID:         m.ID().String(),
		Encoding:   hex.EncodeToString(m.Encode()),
		Hash:       m.Hash().String(),
		LeafHash:   chain.LeafHash(chain.EntryOf(&m)).String(),
	}, m
}

// computeGolden derives every vector from the fixed inputs with the code
// under test.
func computeGolden() golden {
	hdr := chain.Header{
		Height:      7,
		Timestamp:   1_700_000_000_123,
		PrevHash:    filled(0x10),
		MessageRoot: filled(0x40),
		Producer:    chain.PublicKey(filled(0x80)),
	}
	g := golden{
		GenesisHash: chain.GenesisHash.String(),
		EmptyRoot:   chain.EmptyRoot.String(),
		Header: goldenHeader{
			Height:      hdr.Height,
			Timestamp:   hdr.Timestamp,
			PrevHash:    hdr.PrevHash.String(),
			MessageRoot: hdr.MessageRoot.String(),
			Producer:    hex.EncodeToString(hdr.Producer[:]),
			Encoding:    hex.EncodeToString(hdr.AppendEncoding(nil)),
			Hash:        hdr.Hash().String(),
		},
	}
	g.Message, _ = goldenMessageOf(seedOf(0x01), 0x0102030405060708, "héllo, kimura ✓", 1_700_000_000_456)

	var msgs []chain.Message
	for i, content := range []string{"first", "", "third: 三"} {
		gm, m := goldenMessageOf(seedOf(byte(0x02+i)), uint64(i), content, 1_700_000_000_500+uint64(i))
		g.Block.Messages = append(g.Block.Messages, gm)
		msgs = append(msgs, m)
	}
	producer := seedOf(0x09)
	g.Block.ProducerSeed = hex.EncodeToString(producer)
	g.Block.Now = 1_700_000_001_000
	b := chain.Seal(&hdr, msgs, g.Block.Now, ed25519.NewKeyFromSeed(producer))
	g.Block.Height = b.Height
	g.Block.PrevHash = b.PrevHash.String()
	g.Block.MessageRoot = b.MessageRoot.String()
	g.Block.Signature = hex.EncodeToString(b.Signature[:])
	g.Block.Hash = b.Hash().String()
	g.Block.Record = hex.EncodeToString(b.Encode())
	return g
}

// flatten turns a JSON document into path -> value, for a field-by-field diff.
func flatten(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			flatten(prefix+"."+k, x, out)
		}
	case []any:
		out[prefix+".length"] = fmt.Sprint(len(v))
		for i, x := range v {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	default:
		out[prefix] = fmt.Sprint(v)
	}
}

func flat(t *testing.T, data []byte) map[string]string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", goldenPath, err)
	}
	out := map[string]string{}
	flatten("", v, out)
	return out
}

// TestGolden pins the header encoding and block hash, a message's encoding,
// hash and ID, a block record, GenesisHash and EmptyRoot against
// testdata/golden.json.
func TestGolden(t *testing.T) {
	got, err := json.MarshalIndent(computeGolden(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", goldenPath)
		return
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	gotFlat, wantFlat := flat(t, got), flat(t, want)
	var keys []string
	for k := range wantFlat {
		keys = append(keys, k)
	}
	for k := range gotFlat {
		if _, ok := wantFlat[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if gotFlat[k] != wantFlat[k] {
			t.Errorf("%s:\n got  %q\n want %q", k, gotFlat[k], wantFlat[k])
		}
	}
}

// The golden file's bytes are not only what the code produces but what the
// SPEC describes: the header encoding is laid out field by field, genesis is
// hashed from its definition and the empty root is BLAKE3("").
func TestGoldenMatchesSpecLayout(t *testing.T) {
	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		t.Helper()
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("hex %q: %v", s, err)
		}
		return b
	}
	be := func(v uint64) []byte {
		return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}

	// Header: height, timestamp, prev_hash, message_root, producer.
	enc := append(be(g.Header.Height), be(g.Header.Timestamp)...)
	enc = append(enc, unhex(g.Header.PrevHash)...)
	enc = append(enc, unhex(g.Header.MessageRoot)...)
	enc = append(enc, unhex(g.Header.Producer)...)
	if hex.EncodeToString(enc) != g.Header.Encoding {
		t.Errorf("header encoding %s is not the SPEC layout %x", g.Header.Encoding, enc)
	}
	if h := chain.Sum(enc); h.String() != g.Header.Hash {
		t.Errorf("header hash %s is not BLAKE3 of the encoding (%s)", g.Header.Hash, h)
	}

	// Genesis: height 0, timestamp 0, zero prev_hash, empty root, no producer.
	empty := chain.Sum(nil)
	if empty.String() != g.EmptyRoot {
		t.Errorf("empty root %s, want BLAKE3(\"\") = %s", g.EmptyRoot, empty)
	}
	gen := append(make([]byte, 8+8+32), empty[:]...)
	gen = append(gen, make([]byte, 32)...)
	if h := chain.Sum(gen); h.String() != g.GenesisHash {
		t.Errorf("genesis hash %s, want %s", g.GenesisHash, h)
	}

	// Message: ID = BLAKE3(sender || nonce), hash = BLAKE3(encoding), and the
	// encoding is sender, nonce, timestamp, signature, content.
	m := g.Message
	if h := chain.Sum(append(unhex(m.Sender), be(m.Nonce)...)); h.String() != m.ID {
		t.Errorf("message id %s, want %s", m.ID, h)
	}
	menc := append(unhex(m.Sender), be(m.Nonce)...)
	menc = append(menc, be(m.Timestamp)...)
	menc = append(menc, unhex(m.Signature)...)
	menc = append(menc, m.Content...)
	if hex.EncodeToString(menc) != m.Encoding {
		t.Errorf("message encoding %s is not the documented layout %x", m.Encoding, menc)
	}
	if h := chain.Sum(menc); h.String() != m.Hash {
		t.Errorf("message hash %s, want %s", m.Hash, h)
	}
	leaf := chain.Sum(append(append([]byte{0}, unhex(m.ID)...), unhex(m.Hash)...))
	if leaf.String() != m.LeafHash {
		t.Errorf("leaf hash %s, want BLAKE3(0x00 || id || hash) = %s", m.LeafHash, leaf)
	}

	// Block record: header, signature, count, entries.
	rec := unhex(g.Block.Record)
	if h := chain.Sum(rec[:chain.HeaderSize]); h.String() != g.Block.Hash {
		t.Errorf("block hash %s is not BLAKE3 of the record's first %d bytes", g.Block.Hash, chain.HeaderSize)
	}
	if got := hex.EncodeToString(rec[chain.HeaderSize : chain.HeaderSize+64]); got != g.Block.Signature {
		t.Errorf("record signature %s, want %s", got, g.Block.Signature)
	}
	if n := len(g.Block.Messages); !bytes.Equal(rec[chain.HeaderSize+64:chain.HeaderSize+68], []byte{0, 0, 0, byte(n)}) {
		t.Errorf("record count % x, want %d", rec[chain.HeaderSize+64:chain.HeaderSize+68], n)
	}
	for i, gm := range g.Block.Messages {
		off := chain.HeaderSize + 68 + i*64
		if got, want := hex.EncodeToString(rec[off:off+64]), gm.ID+gm.Hash; got != want {
			t.Errorf("record entry %d = %s, want id||hash %s", i, got, want)
		}
	}
	// Three leaves: the RFC 6962 shape is ((l0, l1), l2).
	node := func(l, r []byte) []byte {
		h := chain.Sum(append(append([]byte{1}, l...), r...))
		return h[:]
	}
	ms := g.Block.Messages
	root := node(node(unhex(ms[0].LeafHash), unhex(ms[1].LeafHash)), unhex(ms[2].LeafHash))
	if hex.EncodeToString(root) != g.Block.MessageRoot {
		t.Errorf("block message root %s, want %x", g.Block.MessageRoot, root)
	}
	if len(rec) != chain.HeaderSize+68+64*len(g.Block.Messages) {
		t.Errorf("record of %d bytes, want %d", len(rec), chain.HeaderSize+68+64*len(g.Block.Messages))
	}
}
