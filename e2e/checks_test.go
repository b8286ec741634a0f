package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// Checks of what the API serves, against SPEC's rules, shared by the tests.

// newSender returns a fresh Ed25519 sender key.
func newSender(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// headerOf is the header a JSON block claims.
func headerOf(t testing.TB, b *api.Block) chain.Header {
	t.Helper()
	h := chain.Header{Height: b.Height, Timestamp: b.Timestamp, PrevHash: b.PrevHash, MessageRoot: b.MessageRoot}
	switch len(b.Producer) {
	case chain.PublicKeySize:
		copy(h.Producer[:], b.Producer)
	case 0:
	default:
		t.Fatalf("block %d: producer of %d bytes", b.Height, len(b.Producer))
	}
	return h
}

// checkBlock checks what one JSON block says about itself: its hash is the
// hash of its header, the message list agrees with the count, an empty block
// has the empty root, genesis is exactly genesis, and any other block is
// signed by its producer over its hash.
func checkBlock(t testing.TB, b *api.Block) {
	t.Helper()
	h := headerOf(t, b)
	if got := h.Hash(); got != b.Hash {
		t.Errorf("block %d: hash %s, but its header hashes to %s", b.Height, b.Hash, got)
	}
	if b.MessageCount != len(b.MessageIDs) {
		t.Errorf("block %d: message_count %d, %d message_ids", b.Height, b.MessageCount, len(b.MessageIDs))
	}
	if b.MessageCount == 0 && b.MessageRoot != chain.EmptyRoot {
		t.Errorf("block %d: empty, but message_root %s is not the empty root %s", b.Height, b.MessageRoot, chain.EmptyRoot)
	}
	if b.Height == 0 {
		if b.Hash != chain.GenesisHash || b.Timestamp != 0 || !b.PrevHash.IsZero() || b.MessageCount != 0 {
			t.Errorf("block 0 is not the genesis block: %+v", b)
		}
		return
	}
	if len(b.Producer) != ed25519.PublicKeySize {
		t.Fatalf("block %d: producer of %d bytes", b.Height, len(b.Producer))
	}
	if !ed25519.Verify(ed25519.PublicKey(b.Producer), b.Hash[:], b.Signature) {
		t.Errorf("block %d: signature does not verify against producer %x over hash %s", b.Height, b.Producer, b.Hash)
	}
}

// checkChain checks blocks, consecutive from blocks[0].Height, one by one
// (checkBlock) and as a chain: heights consecutive, each prev_hash the hash
// of the block before, timestamps never decreasing, one producer.
func checkChain(t testing.TB, blocks []api.Block) {
	t.Helper()
	for i := range blocks {
		b := &blocks[i]
		checkBlock(t, b)
		if i == 0 {
			continue
		}
		p := &blocks[i-1]
		if b.Height != p.Height+1 {
			t.Fatalf("block after %d has height %d", p.Height, b.Height)
		}
		if b.PrevHash != p.Hash {
			t.Errorf("block %d: prev_hash %s, block %d has hash %s", b.Height, b.PrevHash, p.Height, p.Hash)
		}
		if b.Timestamp < p.Timestamp {
			t.Errorf("block %d: timestamp %d below its parent's %d", b.Height, b.Timestamp, p.Timestamp)
		}
		if p.Height > 0 && string(b.Producer) != string(p.Producer) {
			t.Errorf("block %d: producer %x, block %d's was %x", b.Height, b.Producer, p.Height, p.Producer)
		}
	}
}

// blocksUpTo reads blocks from..to one at a time with GET /block/{h}.
func blocksUpTo(t testing.TB, n *Node, from, to uint64) []api.Block {
	t.Helper()
	out := make([]api.Block, 0, to-from+1)
	for h := from; h <= to; h++ {
		b, err := n.Client().Block(context.Background(), h, false)
		if err != nil {
			t.Fatalf("GET /block/%d: %v", h, err)
		}
		out = append(out, b)
	}
	return out
}

// blocksJSON reads GET /blocks?from=..&limit=.. in its JSON form.
func blocksJSON(t testing.TB, n *Node, from uint64, limit int) []api.Block {
	t.Helper()
	path := fmt.Sprintf("/blocks?from=%d&limit=%d", from, limit)
	r := n.request(http.MethodGet, path, "", nil)
	if r.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Code, r.Body)
	}
	var out struct {
		Blocks []api.Block `json:"blocks"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.Body)
	}
	return out.Blocks
}

// allBlocks reads every block from 0 to at least tip through GET /blocks,
// page by page.
func allBlocks(t testing.TB, n *Node, tip uint64) []api.Block {
	t.Helper()
	var out []api.Block
	for uint64(len(out)) <= tip {
		page := blocksJSON(t, n, uint64(len(out)), 500)
		if len(page) == 0 {
			t.Fatalf("GET /blocks?from=%d: no blocks, but the tip is %d", len(out), tip)
		}
		if page[0].Height != uint64(len(out)) {
			t.Fatalf("GET /blocks?from=%d starts at height %d", len(out), page[0].Height)
		}
		out = append(out, page...)
	}
	return out
}

// waitConfirmed polls GET /message/{id} until it is confirmed.
func waitConfirmed(t testing.TB, n *Node, id chain.Hash, timeout time.Duration) api.Message {
	t.Helper()
	var m api.Message
	eventually(t, timeout, "message "+id.String()+" confirmed", func() error {
		var err error
		if m, err = n.Client().Message(context.Background(), id); err != nil {
			return err
		}
		if m.Status != api.StatusConfirmed {
			return fmt.Errorf("status %q", m.Status)
		}
		return nil
	})
	return m
}

// checkConfirmed checks a confirmed JSON message against SPEC: its ID is
// BLAKE3(sender || nonce), its signature verifies, it sits at its index of
// its block's message_ids, and its proof leads from its entry to that
// block's message_root. It returns the block.
func checkConfirmed(t testing.TB, n *Node, m *api.Message) api.Block {
	t.Helper()
	cm := checkMessage(t, m)
	if m.Status != api.StatusConfirmed || m.BlockHeight == nil || m.Index == nil {
		t.Fatalf("message %s: status %q, block_height %s, index %s: want confirmed with both",
			m.ID, m.Status, optString(m.BlockHeight), optString(m.Index))
	}
	b, err := n.Client().Block(context.Background(), *m.BlockHeight, false)
	if err != nil {
		t.Fatalf("message %s is confirmed at height %d, but GET /block/%d: %v (the claim of TestConfirmationVisibleWithItsBlock)",
			m.ID, *m.BlockHeight, *m.BlockHeight, err)
	}
	checkBlock(t, &b)
	idx := uint64(*m.Index)
	if idx >= uint64(len(b.MessageIDs)) || b.MessageIDs[idx] != m.ID {
		t.Errorf("message %s: index %d, but block %d's message_ids are %v", m.ID, idx, b.Height, b.MessageIDs)
	}
	// A one-message block's proof is empty; whether the empty "proof" is
	// present in the JSON is checked on its own (checkProofField).
	if m.Proof == nil && b.MessageCount > 1 {
		t.Errorf("message %s: confirmed in block %d of %d messages without a proof", m.ID, b.Height, b.MessageCount)
	}
	if err := chain.VerifyInclusion(b.MessageRoot, uint64(b.MessageCount), idx, chain.EntryOf(&cm), m.Proof); err != nil {
		t.Errorf("message %s: proof against block %d's message_root: %v", m.ID, b.Height, err)
	}
	if m.Timestamp == 0 || m.Timestamp > b.Timestamp {
		t.Errorf("message %s: timestamp %d, its block %d's is %d", m.ID, m.Timestamp, b.Height, b.Timestamp)
	}
	return b
}

// checkMessage checks a JSON message's ID and signature and returns it
// in chain form.
func checkMessage(t testing.TB, m *api.Message) chain.Message {
	t.Helper()
	cm, err := m.ToChain()
	if err != nil {
		t.Fatalf("message %s: %v", m.ID, err)
	}
	if id := chain.MessageID(cm.Sender, cm.Nonce); id != m.ID {
		t.Errorf("message %s: BLAKE3(sender || nonce) is %s", m.ID, id)
	}
	if err := cm.Verify(); err != nil {
		t.Errorf("message %s: %v", m.ID, err)
	}
	return cm
}

// httpCode returns the status of an *api.HTTPError, or 0.
func httpCode(err error) int {
	var he *api.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

// peerIDOf is the libp2p peer ID of an Ed25519 public key, computed here
// from the definition rather than with libp2p: base58btc of the identity
// multihash (0x00, length 36) of the protobuf PublicKey{Type: Ed25519 (1),
// Data: key (32 bytes)}.
func peerIDOf(pub []byte) string {
	mh := append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, pub...)
	return base58(mh)
}

func base58(b []byte) string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	var out []byte
	n := new(big.Int).SetBytes(b)
	base, mod := big.NewInt(58), new(big.Int)
	for n.Sign() > 0 {
		n.DivMod(n, base, mod)
		out = append(out, alphabet[mod.Int64()])
	}
	for i := 0; i < len(b) && b[i] == 0; i++ {
		out = append(out, alphabet[0])
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

// checkProofField checks that the raw JSON of confirmed message id holds
// "block_height", "index" and "proof" (an array, empty for the only message
// of a block): SPEC has all three on every confirmed message.
func checkProofField(t testing.TB, n *Node, id chain.Hash) {
	t.Helper()
	r := n.request(http.MethodGet, "/message/"+id.String(), "", nil)
	var raw map[string]json.RawMessage
	if r.Code != http.StatusOK || json.Unmarshal(r.Body, &raw) != nil {
		t.Fatalf("GET /message/%s: %d %s", id, r.Code, r.Body)
	}
	for _, k := range []string{"block_height", "index", "proof"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("GET /message/%s: confirmed message without %q: %s", id, k, r.Body)
		}
	}
	if p, ok := raw["proof"]; ok && (len(p) == 0 || p[0] != '[') {
		t.Errorf("GET /message/%s: \"proof\" is %s, want an array", id, p)
	}
}

// optString formats an optional number.
func optString[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}
