package node

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

// The pubsub goroutine let pass sleeps up to a second after the host closes
// (see internal/p2p's TestMain) and then exits.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p-pubsub.(*PubSub).announceRetry"))
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
