// Package node is the shell around Kimura's core: it starts a leader or a
// peer in order (store, integrity check, key, queue, network, HTTP), runs the
// leader's sealing loop or the peer's follower, and stops them in reverse.
package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/p2p"
)

// Defaults of the Config fields.
const (
	DefaultBlockInterval    = 5 * time.Second
	TestModeBlockInterval   = 100 * time.Millisecond
	DefaultMaxBlockMessages = 10000
	DefaultMaxMessageBytes  = 64 << 10
	// DefaultMaxPendingBytes bounds the leader's pending queue in memory
	// (content plus mempool.MessageOverhead a message): about 3.3 million
	// 100-byte messages, or 16,000 of 64 KiB.
	DefaultMaxPendingBytes = 1 << 30
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout = 5 * time.Second
)

// Config is everything a node is started with. Flags live in main; this is
// their validated form.
type Config struct {
	Leader           bool
	DBPath           string
	RPCAddr          string // host:port of the HTTP API
	ListenAddr       string // libp2p listen multiaddr
	LeaderRPC        string // peers: the leader's HTTP API URL
	LeaderAddr       string // peers: the leader's libp2p multiaddr with /p2p/ID; learned from /health when empty
	BlockInterval    time.Duration
	MaxBlockMessages int
	MaxMessageBytes  int
	MaxPendingBytes  int64 // leader: the pending queue's bound
	Log              *slog.Logger
}

// ErrConfig wraps every configuration problem.
var ErrConfig = errors.New("invalid configuration")

// Validate checks c. Zero limits, intervals and addresses are not defaults
// (the flags carry those); only a nil Log becomes a discarding one.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	if c.DBPath == "" {
		return bad("--db-path is empty")
	}
	if err := checkHostPort(c.RPCAddr); err != nil {
		return bad("--rpc-addr: %w", err)
	}
	if err := p2p.CheckListenAddr(c.ListenAddr); err != nil {
		return bad("--listen-addr: %w", err)
	}
	if c.BlockInterval < time.Millisecond {
		return bad("--block-interval %s is below 1ms", c.BlockInterval)
	}
	if c.MaxBlockMessages < 1 || c.MaxBlockMessages > MaxBlockMessagesLimit {
		return bad("--max-block-messages must be from 1 to %d", MaxBlockMessagesLimit)
	}
	if c.MaxMessageBytes < 1 || c.MaxMessageBytes > MaxMessageBytesLimit {
		return bad("--max-message-bytes must be from 1 to %d", MaxMessageBytesLimit)
	}
	if c.MaxPendingBytes < 1 || c.MaxPendingBytes > MaxPendingBytesLimit {
		return bad("--max-pending-bytes must be from 1 to %d", int64(MaxPendingBytesLimit))
	}
	if c.Leader {
		if c.LeaderRPC != "" || c.LeaderAddr != "" {
			return bad("--leader-rpc and --leader-addr are for peers")
		}
		if room := int64(c.MaxMessageBytes) + mempool.MessageOverhead; c.MaxPendingBytes < room {
			return bad("--max-pending-bytes must leave room for one message: at least %d with --max-message-bytes %d", room, c.MaxMessageBytes)
		}
	} else {
		if c.LeaderRPC == "" {
			return bad("a peer needs --leader-rpc (or run with --leader)")
		}
		if err := api.CheckNodeURL(c.LeaderRPC); err != nil {
			return bad("--leader-rpc %w", err)
		}
		if c.LeaderAddr != "" {
			if _, err := p2p.CheckPeerAddr(c.LeaderAddr); err != nil {
				return bad("--leader-addr: %w", err)
			}
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// checkHostPort reports whether addr is HOST:PORT with a port number (0
// picks a free one). An empty host means every interface.
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: %q is not a port number", addr, port)
	}
	return nil
}

// The layout of a data directory (--db-path): the Pebble database and the
// node key, whose Ed25519 key signs the leader's blocks.

// ChainDir is where the chain database of the node at dbPath lives.
func ChainDir(dbPath string) string { return filepath.Join(dbPath, "chain") }

// KeyPath is the node key file of the node at dbPath.
func KeyPath(dbPath string) string { return filepath.Join(dbPath, "node.key") }

func (c *Config) chainDir() string { return ChainDir(c.DBPath) }
func (c *Config) keyPath() string  { return KeyPath(c.DBPath) }

// gossipLimit is the gossipsub message size every node accepts. It is one
// constant, not derived from a flag, because a receiver silently drops what
// is over its own limit: a full block of MaxBlockMessagesLimit fits.
const gossipLimit = 64 << 20

// MaxBlockMessagesLimit keeps the largest block's record under gossipLimit.
const MaxBlockMessagesLimit = 500_000

// MaxPendingBytesLimit bounds --max-pending-bytes. A block may take the
// whole queue, and its messages are written in one Pebble batch, which
// Pebble refuses (with a panic) from 4 GiB: a block of a full queue of
// this size, records and keys included, stays well under that, and so does
// a combined write of submissions.
const MaxPendingBytesLimit = 2 << 30

// MaxMessageBytesLimit bounds --max-message-bytes: a submission's body may
// be six times its content (JSON escapes), and one message's body must fit
// under api.MaxBody.
const MaxMessageBytesLimit = 16 << 20

// A message at the limit, escaped, fits in a body: this does not compile
// (a negative constant is no uint) when it would not.
const _ = uint(api.MaxBody - (6*MaxMessageBytesLimit + 4096))
