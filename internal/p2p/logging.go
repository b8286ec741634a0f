package p2p

import (
	"context"
	"log/slog"
)

// noisyPubsubMessages are pubsub warnings that say nothing actionable. Pubsub
// bumps a connection-manager tag for every message delivered, through a
// queue of 128, and warns for each bump that finds the queue full, which
// any burst of blocks does. The tag only ranks peers for trimming; peers
// that matter are protected by Connect. Dropped gossip messages themselves
// are reported by dropTracer.
var noisyPubsubMessages = map[string]bool{
	"error bumping delivery tag": true,
}

// demoteHandler passes pubsub's log records on, lowering the noisy ones to
// debug level.
type demoteHandler struct{ next slog.Handler }

func (h demoteHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || h.next.Enabled(ctx, slog.LevelDebug)
}

func (h demoteHandler) Handle(ctx context.Context, r slog.Record) error {
	if noisyPubsubMessages[r.Message] && r.Level > slog.LevelDebug {
		r = r.Clone()
		r.Level = slog.LevelDebug
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h demoteHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteHandler{h.next.WithAttrs(attrs)}
}

func (h demoteHandler) WithGroup(name string) slog.Handler {
	return demoteHandler{h.next.WithGroup(name)}
}
