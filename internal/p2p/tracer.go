package p2p

import (
	"log/slog"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// dropTracer turns the messages gossipsub drops, which it logs only at debug
// level, into a counter and warnings. Pubsub calls it from its event loop, so
// every method must return at once.
type dropTracer struct {
	log     *slog.Logger
	drops   atomic.Uint64
	ignored atomic.Uint64 // messages Host.validate turned away
	lastLog atomic.Int64  // unix nanoseconds of the last warning
}

var _ pubsub.RawTracer = (*dropTracer)(nil)

// dropLogInterval spaces the warnings: a reader that falls behind drops
// messages by the thousand, and one line per second (with the running
// total) says as much as a thousand lines.
const dropLogInterval = time.Second

// drop counts n dropped messages and logs msg unless it logged recently.
func (t *dropTracer) drop(n int, msg string, args ...any) {
	total := t.drops.Add(uint64(n))
	now := time.Now().UnixNano()
	last := t.lastLog.Load()
	if now-last < int64(dropLogInterval) || !t.lastLog.CompareAndSwap(last, now) {
		return
	}
	t.log.Warn(msg, append(args, "dropped_total", total)...)
}

// RejectMessage reports inbound messages refused before validation; only
// refusals for want of capacity are drops, the rest (bad signatures, our
// own messages echoed back) are pubsub doing its job.
func (t *dropTracer) RejectMessage(msg *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationQueueFull, pubsub.RejectValidationThrottled:
		t.drop(1, "gossip message dropped on receipt", "reason", reason,
			"from", msg.ReceivedFrom.String(), "bytes", len(msg.GetData()))
	case pubsub.RejectValidationIgnored:
		t.ignored.Add(1)
		t.log.Debug("gossip message ignored: not from this node's source", "from", msg.ReceivedFrom.String(), "bytes", len(msg.GetData()))
	}
}

// DropRPC reports outbound RPCs not queued for a peer. Only RPCs carrying
// messages count: control-only RPCs are retried by gossipsub.
func (t *dropTracer) DropRPC(rpc *pubsub.RPC, p peer.ID) {
	if n := len(rpc.GetPublish()); n > 0 {
		t.drop(n, "gossip messages not sent to peer (outbound queue full or message too large)",
			"peer", p.String(), "messages", n)
	}
}

// UndeliverableMessage reports messages dropped because our subscription's
// buffer was full, i.e. the reader of Host.Blocks fell far behind.
func (t *dropTracer) UndeliverableMessage(msg *pubsub.Message) {
	t.drop(1, "gossip message dropped: Blocks reader too slow",
		"from", msg.GetFrom().String(), "bytes", len(msg.GetData()))
}

func (t *dropTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (t *dropTracer) OnClosedOutboundStream(peer.ID)                       {}
func (t *dropTracer) Join(string)                                          {}
func (t *dropTracer) Leave(string)                                         {}
func (t *dropTracer) Graft(peer.ID, string)                                {}
func (t *dropTracer) Prune(peer.ID, string)                                {}
func (t *dropTracer) ValidateMessage(*pubsub.Message)                      {}
func (t *dropTracer) DeliverMessage(*pubsub.Message)                       {}
func (t *dropTracer) DuplicateMessage(*pubsub.Message)                     {}
func (t *dropTracer) ThrottlePeer(peer.ID)                                 {}
func (t *dropTracer) RecvRPC(*pubsub.RPC)                                  {}
func (t *dropTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (t *dropTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
