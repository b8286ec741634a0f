package bench

import (
	"crypto/ed25519"
	"math"
	"os"
	"strings"
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

// chainCfg is a valid chain configuration changed by f.
func chainCfg(f func(*ChainConfig)) ChainConfig {
	c := ChainConfig{Blocks: 100_000, MessagesPerBlock: 10, BuildInterval: time.Millisecond, ContentBytes: 100, Builder: "leader"}
	f(&c)
	return c
}

// Chains too long to build, too large for the disk, or too large for the
// direct builder's memory are refused up front in one line that starts
// with the flag to change; --blocks of math.MaxInt64, which overflowed
// --blocks × --messages-per-block and built forever, is one of them. The
// chains the README measures are accepted.
func TestChainConfigIsBounded(t *testing.T) {
	for _, c := range []struct {
		cfg  ChainConfig
		flag string
	}{
		{chainCfg(func(c *ChainConfig) { c.Blocks = math.MaxInt64 }), "--blocks must be"},
		{chainCfg(func(c *ChainConfig) { c.Blocks = math.MaxInt64; c.MessagesPerBlock = 10000 }), "--blocks must be"},
		{chainCfg(func(c *ChainConfig) { c.Blocks = maxChainBlocks + 1 }), "--blocks must be"},
		{chainCfg(func(c *ChainConfig) { c.MessagesPerBlock = 10000 }), "--blocks 100000 × --messages-per-block 10000 is 1,000,000,000 messages"},
		{chainCfg(func(c *ChainConfig) { c.MessagesPerBlock = 10000; c.ContentBytes = 64 << 10; c.Builder = "direct" }), "--blocks 100000 × --messages-per-block 10000 is"},
		{chainCfg(func(c *ChainConfig) { c.Blocks = 1_000_000; c.ContentBytes = 64 << 10 }), "--blocks 1000000 × --messages-per-block 10 × --content-bytes 65536"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v; want one line starting with %q", c.cfg, err, c.flag)
		}
	}
	for _, cfg := range []ChainConfig{
		chainCfg(func(*ChainConfig) {}),
		chainCfg(func(c *ChainConfig) { c.Blocks = 1_000_000; c.Builder = "direct" }),
		chainCfg(func(c *ChainConfig) { c.Blocks = maxChainBlocks; c.MessagesPerBlock = 0 }),
		chainCfg(func(c *ChainConfig) { c.Blocks = 100; c.MessagesPerBlock = 10000; c.Builder = "direct" }),
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v refused: %v", cfg, err)
		}
	}

	// Blocks of 10,000 messages of 64 KiB take 1.3 GB each in the direct
	// builder, more than a group may hold: refused, whatever the machine,
	// and a leader-built chain of them is not.
	big := chainCfg(func(c *ChainConfig) {
		c.Blocks = 10
		c.MessagesPerBlock = 10000
		c.ContentBytes = 64 << 10
		c.Builder = "direct"
	})
	if err := big.Validate(); err == nil || !strings.HasPrefix(err.Error(), "--messages-per-block 10000 of --content-bytes 65536") {
		t.Errorf("a direct build of 1.3 GB blocks: %v; want it refused, naming the flags", err)
	}
	big.Builder = "leader"
	if err := big.Validate(); err != nil {
		t.Errorf("a leader-built chain of 1.3 GB blocks refused: %v", err)
	}
}

// The direct builder's groups shrink for large blocks, down to one block,
// so that what it holds stays within directGroupBytes a group; small
// blocks still go 256 to a group.
func TestDirectGroupsShrinkForLargeBlocks(t *testing.T) {
	for _, c := range []struct{ perBlock, content, want int }{
		{10, 100, directGroup},
		{0, 100, directGroup},
		{1000, 100, directGroupMessages / 1000},
		{10000, 100, directGroupMessages / 10000},
		{10000, 64 << 10, 1},
		{100, 64 << 10, 5},
	} {
		got := directGroupBlocks(c.perBlock, c.content)
		if got != c.want {
			t.Errorf("directGroupBlocks(%d, %d) = %d, want %d", c.perBlock, c.content, got, c.want)
		}
		if bytes := int64(got) * int64(c.perBlock) * directMessageBytes(c.content); got > 1 && bytes > directGroupBytes {
			t.Errorf("a group of %d blocks of %d messages of %d bytes holds %d bytes, more than %d", got, c.perBlock, c.content, bytes, directGroupBytes)
		}
	}
}
