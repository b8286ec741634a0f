package p2p

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

func newTestHost(t *testing.T) *Host {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(context.Background(), Config{Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// Network rule: a node dials only addresses it was given. A host that only
// accepted a connection cannot dial that peer back, even knowing its address.
func TestGaterRefusesDialsNotRequested(t *testing.T) {
	a, b := newTestHost(t), newTestHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	aID := a.host.ID()
	if err := b.host.Network().ClosePeer(aID); err != nil {
		t.Fatal(err)
	}
	err := b.host.Connect(ctx, peer.AddrInfo{ID: aID, Addrs: a.host.Addrs()})
	if !errors.Is(err, swarm.ErrGaterDisallowedConnection) {
		t.Fatalf("dial to a peer never given to Connect: got %v, want the gater's refusal", err)
	}
	if !a.gater.InterceptPeerDial(b.host.ID()) {
		t.Fatal("gater refuses a peer given to Connect")
	}
}

// Pubsub's warning for each delivery-tag bump it cannot queue is lowered to
// debug; other records pass unchanged.
func TestDemoteHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(demoteHandler{
		next:  slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}),
		noisy: noisyPubsubMessages,
		floor: slog.LevelDebug,
	})
	log.Warn("error bumping delivery tag", "err", "queue full")
	log.Warn("something else")
	out := buf.String()
	if strings.Contains(out, "bumping") {
		t.Errorf("noisy warning not demoted: %s", out)
	}
	if !strings.Contains(out, "level=WARN msg=\"something else\"") {
		t.Errorf("other warning lost: %q", out)
	}
}
