package bench

import (
	"crypto/ed25519"
	"os"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/node"
	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
)

// The direct builder writes a chain that passes the node's own integrity
// check, signed by the data directory's node key, with every message kept.
func TestBuildChainDirect(t *testing.T) {
	self, err := os.Executable() // any executable will do: no node is started
	if err != nil {
		t.Fatal(err)
	}
	sup, err := NewSupervisor(self, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sup.Close)
	cfg := ChainConfig{Blocks: 600, MessagesPerBlock: 3, BuildInterval: time.Millisecond, ContentBytes: 40, Builder: "direct"}
	bc, err := buildChainDirect(t.Context(), sup, cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	if bc.height != 600 || bc.messages != 1800 {
		t.Fatalf("built height %d with %d messages, want 600 and 1800", bc.height, bc.messages)
	}

	st, err := store.OpenExisting(node.ChainDir(bc.dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.VerifyChain(t.Context(), nil)
	if err != nil || n != 601 {
		t.Fatalf("VerifyChain = %d, %v; want 601 blocks intact", n, err)
	}
	key, err := p2p.LoadOrCreateKey(node.KeyPath(bc.dir))
	if err != nil {
		t.Fatal(err)
	}
	producer, pinned, err := st.Producer()
	if err != nil || !pinned || producer != chain.PublicKey(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("producer %x (pinned %v, %v), want the node key's", producer[:], pinned, err)
	}
	b, err := st.Block(600)
	if err != nil || len(b.Entries) != 3 {
		t.Fatalf("block 600: %v, %v", b, err)
	}
	for _, e := range b.Entries {
		c, err := st.Message(e.ID)
		if err != nil || c.Height != 600 || c.Message.Verify() != nil {
			t.Fatalf("message %s of block 600: %+v, %v", e.ID, c, err)
		}
	}
}
