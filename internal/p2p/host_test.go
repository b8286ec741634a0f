package p2p_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/p2p"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, ignorePubsubRetry)
}

// ignorePubsubRetry lets pass the one goroutine gossipsub may leave behind
// for up to a second after Close: when a subscription announcement cannot be
// queued to a peer that is disconnecting, pubsub retries after a random sleep
// of up to 1 s that does not watch its context, and exits after the sleep.
var ignorePubsubRetry = goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p-pubsub.(*PubSub).announceRetry")

// testTimeout bounds every wait in these tests; on a healthy machine they
// finish in well under a second.
const testTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newHost(t *testing.T) *p2p.Host {
	t.Helper()
	return newHostWith(t, p2p.Config{})
}

// newHostWith starts a host on a free loopback port with cfg's sizes.
func newHostWith(t *testing.T, cfg p2p.Config) *p2p.Host {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	cfg.ListenAddr = "/ip4/127.0.0.1/tcp/0"
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := p2p.New(testContext(t), cfg)
	if err != nil {
		t.Fatalf("new host: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}

// testWriter sends log lines to t.Log, so warnings (such as dropped
// messages) show up next to the failing test.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// connectPair makes a dial b and each take the other's messages, and waits
// until each sees the other subscribed, after which what either publishes
// reaches the other.
func connectPair(t *testing.T, a, b *p2p.Host) {
	t.Helper()
	ctx := testContext(t)
	if err := a.Connect(ctx, b.Addrs()[0]); err != nil {
		t.Fatalf("connect: %v", err)
	}
	for _, pair := range [][2]*p2p.Host{{a, b}, {b, a}} {
		if err := pair[0].AcceptFrom(pair[1].PeerID()); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*p2p.Host{a, b} {
		if err := h.WaitForTopicPeers(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// receive reads n messages from h, failing the test at the deadline.
func receive(t *testing.T, h *p2p.Host, n int) []p2p.Received {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	var got []p2p.Received
	for len(got) < n {
		select {
		case r, ok := <-h.Blocks():
			if !ok {
				t.Fatalf("Blocks closed after %d of %d messages", len(got), n)
			}
			got = append(got, r)
		case <-deadline.C:
			t.Fatalf("received %d of %d messages before the deadline (drops: %d)", len(got), n, h.Drops())
		}
	}
	return got
}

func TestAddrs(t *testing.T) {
	h := newHost(t)
	addrs := h.Addrs()
	if len(addrs) == 0 {
		t.Fatal("no addresses")
	}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") || strings.Contains(a, "/tcp/0/") {
			t.Errorf("address %s is not a bound loopback TCP address", a)
		}
		if !strings.HasSuffix(a, "/p2p/"+h.PeerID()) {
			t.Errorf("address %s does not end in /p2p/%s", a, h.PeerID())
		}
	}
}

func TestPeerIDMatchesKey(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.New(testContext(t), p2p.Config{Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want, err := p2p.PeerIDFromPublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if h.PeerID() != want {
		t.Fatalf("host peer ID %s, key gives %s", h.PeerID(), want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]p2p.Config{
		"no key":         {ListenAddr: "/ip4/127.0.0.1/tcp/0"},
		"no address":     {Key: key},
		"bad address":    {Key: key, ListenAddr: "127.0.0.1:0"},
		"udp address":    {Key: key, ListenAddr: "/ip4/127.0.0.1/udp/0/quic-v1"},
		"websocket":      {Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0/ws"},
		"tiny size":      {Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0", MaxMessageSize: 100},
		"negative size":  {Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0", MaxMessageSize: -1},
		"negative queue": {Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0", QueueSize: -1},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			h, err := p2p.New(testContext(t), cfg)
			if err == nil {
				h.Close()
				t.Fatal("bad config accepted")
			}
			if !strings.HasPrefix(err.Error(), "p2p: ") {
				t.Errorf("error %q does not name the package", err)
			}
		})
	}
}

func TestCheckPeerAddr(t *testing.T) {
	h := newHost(t)
	if len(h.Addrs()) == 0 {
		t.Fatal("host reports no addresses")
	}
	for _, a := range h.Addrs() {
		id, err := p2p.CheckPeerAddr(a)
		if err != nil || id != h.PeerID() {
			t.Errorf("CheckPeerAddr(%q) = %q, %v; want %q", a, id, err, h.PeerID())
		}
	}
	id := h.PeerID()
	for _, bad := range []string{
		"",
		"garbage",
		"/ip4/127.0.0.1/tcp/4001", // no peer ID
		"/p2p/" + id,              // no transport
		"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + id, // not TCP
		"/ip4/127.0.0.1/tcp/4001/p2p/notanid",
		"/ip4/127.0.0.1/tcp/4001/ws/p2p/" + id, // not plain TCP
		"/ip6zone/eth0/ip6/fe80::1/tcp/4001/p2p/" + id,
	} {
		if _, err := p2p.CheckPeerAddr(bad); err == nil {
			t.Errorf("CheckPeerAddr(%q) accepted it", bad)
		}
	}
	for _, good := range []string{
		"/ip6/::1/tcp/4001/p2p/" + id,
		"/dns/leader.example.com/tcp/4001/p2p/" + id,
		"/dns4/leader.example.com/tcp/4001/p2p/" + id,
		"/dns6/leader.example.com/tcp/4001/p2p/" + id,
	} {
		if got, err := p2p.CheckPeerAddr(good); err != nil || got != id {
			t.Errorf("CheckPeerAddr(%q) = %q, %v; want %q", good, got, err, id)
		}
	}
}

// Network rule: a node dials only addresses it was given or learned from the
// leader. A /dnsaddr address stands for whatever multiaddrs a DNS TXT record
// lists, so it is refused, by CheckPeerAddr (which vets --leader-addr and the
// leader's p2p_addrs) and by Connect, with an error that says why.
func TestDNSAddrRefused(t *testing.T) {
	a, b := newHost(t), newHost(t)
	for _, addr := range []string{
		"/dnsaddr/leader.example.com/p2p/" + b.PeerID(),
		"/dnsaddr/leader.example.com/tcp/4001/p2p/" + b.PeerID(),
		"/dnsaddr/localhost/tcp/4001/p2p/" + b.PeerID(),
	} {
		if _, err := p2p.CheckPeerAddr(addr); err == nil || !strings.Contains(err.Error(), "/dnsaddr is not accepted") {
			t.Errorf("CheckPeerAddr(%q): got %v, want /dnsaddr refused", addr, err)
		}
		err := a.Connect(testContext(t), addr)
		if err == nil || !strings.Contains(err.Error(), "/dnsaddr is not accepted") {
			t.Errorf("Connect(%q): got %v, want /dnsaddr refused", addr, err)
		}
	}
	if a.Connected(b.PeerID()) {
		t.Error("connected through a /dnsaddr address")
	}
}

// The main claim: blocks published by one node reach a directly connected
// node, large and in bursts, none lost, and a node never receives its own.
func TestPublishReachesConnectedPeer(t *testing.T) {
	leader, follower := newHost(t), newHost(t)
	connectPair(t, follower, leader) // peers dial the leader, as in Kimura
	ctx := testContext(t)

	if !follower.Connected(leader.PeerID()) || !leader.Connected(follower.PeerID()) {
		t.Fatal("hosts not connected after Connect")
	}

	big := make([]byte, 4<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	want := [][]byte{big}
	for i := range 200 {
		want = append(want, fmt.Appendf(nil, "small block %d", i))
	}
	for _, data := range want {
		if err := leader.Publish(ctx, data); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	// From a directly connected publisher, messages arrive whole and in
	// the order published: the 4 MiB block is not overtaken by the small ones.
	got := receive(t, follower, len(want))
	for i, r := range got {
		if r.From != leader.PeerID() {
			t.Errorf("message %d from %s, want the leader %s", i, r.From, leader.PeerID())
		}
		if !bytes.Equal(r.Data, want[i]) {
			t.Fatalf("message %d: got %d bytes (%.20q), want %d bytes (%.20q)", i, len(r.Data), r.Data, len(want[i]), want[i])
		}
	}

	// Self-delivery would have happened on the leader before its messages
	// left it, so once the follower's reply arrives, anything of the
	// leader's own would already be in its channel ahead of the reply.
	if err := follower.Publish(ctx, []byte("reply")); err != nil {
		t.Fatal(err)
	}
	r := receive(t, leader, 1)[0]
	if string(r.Data) != "reply" || r.From != follower.PeerID() {
		t.Fatalf("leader received %q from %s, want the follower's reply", r.Data, r.From)
	}
	select {
	case r := <-leader.Blocks():
		t.Fatalf("leader received an extra message (%d bytes from %s)", len(r.Data), r.From)
	default:
	}
	select {
	case r := <-follower.Blocks():
		t.Fatalf("follower received an extra message (%d bytes from %s)", len(r.Data), r.From)
	default:
	}
	if d := leader.Drops() + follower.Drops(); d != 0 {
		t.Errorf("%d messages dropped", d)
	}
}

// A host takes messages only from its source (AcceptFrom) and itself: what
// a stranger connected to the leader publishes reaches neither the leader's
// queue nor, through the leader, its followers.
func TestGossipOnlyFromAcceptedSource(t *testing.T) {
	leader, follower, stranger := newHost(t), newHost(t), newHost(t)
	ctx := testContext(t)
	for _, h := range []*p2p.Host{follower, stranger} {
		if err := h.Connect(ctx, leader.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.WaitForTopicPeers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*p2p.Host{follower, stranger} {
		if err := h.WaitForTopicPeers(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := follower.AcceptFrom(leader.PeerID()); err != nil {
		t.Fatal(err)
	}
	const junk = 50
	for i := range junk {
		if err := stranger.Publish(ctx, fmt.Appendf(nil, "junk %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The leader follows nobody: it turns every one away on receipt.
	waitFor(t, func() bool { return leader.Ignored() == junk })
	select {
	case r := <-leader.Blocks():
		t.Fatalf("leader received %q from %s", r.Data, r.From)
	default:
	}
	// Relayed junk would have left the leader for the follower ahead of
	// the leader's own block, over the same connection.
	if err := leader.Publish(ctx, []byte("block")); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, follower, 1)[0]; string(r.Data) != "block" || r.From != leader.PeerID() {
		t.Fatalf("follower received %q from %s first, want the leader's block", r.Data, r.From)
	}
	select {
	case r := <-follower.Blocks():
		t.Fatalf("follower received %q from %s as well", r.Data, r.From)
	default:
	}
	if err := follower.AcceptFrom("not a peer ID"); err == nil {
		t.Error("AcceptFrom took a malformed peer ID")
	}
}

// A follower takes incoming connections only from its source. A stranger
// connected to it could otherwise send it a copy of the leader's block
// first: pubsub marks the copy seen before the validator turns it away, and
// then drops the leader's own copy as a duplicate.
func TestFollowerTakesConnectionsOnlyFromSource(t *testing.T) {
	leader, stranger := newHost(t), newHost(t)
	follower := newHostWith(t, p2p.Config{Follower: true})
	ctx := testContext(t)
	// The follower closes the connection once the handshake proves who
	// dials, which may be after the stranger's side counts it as up.
	refused := func(when string) {
		t.Helper()
		_ = stranger.Connect(ctx, follower.Addrs()[0])
		waitFor(t, func() bool { return !stranger.Connected(follower.PeerID()) })
		if follower.Connected(stranger.PeerID()) {
			t.Fatalf("%s, the follower kept a stranger's connection", when)
		}
	}
	refused("with no source yet")
	if err := follower.Connect(ctx, leader.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if err := follower.AcceptFrom(leader.PeerID()); err != nil {
		t.Fatal(err)
	}
	refused("following the leader")
	// A leader is no follower: it takes anyone's connection.
	if err := stranger.Connect(ctx, leader.Addrs()[0]); err != nil {
		t.Fatalf("the leader refused a connection: %v", err)
	}
	if err := leader.WaitForTopicPeers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*p2p.Host{follower, stranger} {
		if err := h.WaitForTopicPeers(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	// The stranger's copy goes first, and only to the leader, which turns
	// it away; the leader's own copy then reaches the follower.
	block := []byte("block 7, signed by the leader")
	if err := stranger.Publish(ctx, block); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return leader.Ignored() == 1 })
	if err := leader.Publish(ctx, block); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, follower, 1)[0]; !bytes.Equal(r.Data, block) || r.From != leader.PeerID() {
		t.Fatalf("follower received %q from %s, want the leader's block", r.Data, r.From)
	}
}

// A reader that falls behind makes gossip drop messages, but never silently:
// every message the follower does not deliver is counted (and logged) there.
func TestSlowReaderDropsAreCounted(t *testing.T) {
	const queue = 16
	leader, follower := newHost(t), newHostWith(t, p2p.Config{QueueSize: queue})
	connectPair(t, follower, leader)
	ctx := testContext(t)

	// More than the follower can buffer (Blocks plus pubsub's subscription
	// buffer), with nobody reading; the leader's queues hold them all.
	const n = 10 * queue
	for i := range n {
		if err := leader.Publish(ctx, fmt.Appendf(nil, "block %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return follower.Drops() > 0 })
	// Now read: delivered and dropped add up to every message published.
	received := 0
	deadline := time.After(testTimeout)
	for uint64(received)+follower.Drops() < n {
		select {
		case <-follower.Blocks():
			received++
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d received + %d dropped, want %d", received, follower.Drops(), n)
		}
	}
	if got := uint64(received) + follower.Drops(); got != n || leader.Drops() != 0 {
		t.Fatalf("%d received + %d dropped = %d, want %d; leader dropped %d", received, follower.Drops(), got, n, leader.Drops())
	}
}

// Message IDs are content hashes, so republishing a block is not delivered
// twice.
func TestRepublishIsDeduplicated(t *testing.T) {
	leader, follower := newHost(t), newHost(t)
	connectPair(t, follower, leader)
	ctx := testContext(t)

	for _, data := range []string{"block 1", "block 1", "block 2"} {
		if err := leader.Publish(ctx, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	got := receive(t, follower, 2)
	if string(got[0].Data) != "block 1" || string(got[1].Data) != "block 2" {
		t.Fatalf("received %q then %q, want block 1 once then block 2", got[0].Data, got[1].Data)
	}
}

func TestPublishRejectsOversizedPayload(t *testing.T) {
	h := newHost(t)
	err := h.Publish(testContext(t), make([]byte, h.MaxPayload()+1))
	if !errors.Is(err, p2p.ErrMessageTooLarge) {
		t.Fatalf("got %v, want ErrMessageTooLarge", err)
	}
	if h.MaxPayload() < 32<<20 {
		t.Errorf("default max payload %d is below 32 MiB", h.MaxPayload())
	}
}

func TestConnect(t *testing.T) {
	a, b := newHost(t), newHost(t)
	ctx := testContext(t)

	if err := a.Connect(ctx, "/ip4/127.0.0.1/tcp/1"); err == nil {
		t.Error("address without /p2p/ accepted")
	}
	if err := a.Connect(ctx, a.Addrs()[0]); err == nil {
		t.Error("connecting to self accepted")
	}
	if a.Connected(b.PeerID()) {
		t.Fatal("connected before Connect")
	}
	if err := a.Connect(ctx, b.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if !a.Connected(b.PeerID()) {
		t.Fatal("not connected after Connect")
	}
	// Connecting again is a no-op.
	if err := a.Connect(ctx, b.Addrs()[0]); err != nil {
		t.Fatalf("second Connect: %v", err)
	}
	if a.Connected("garbage") {
		t.Error("Connected true for a malformed peer ID")
	}
}

// A peer that comes back (same key, same port) is reached again by calling
// Connect, without waiting out libp2p's dial backoff.
func TestReconnectAfterPeerRestart(t *testing.T) {
	a := newHost(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	b, err := p2p.New(ctx, p2p.Config{Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	first := b
	t.Cleanup(func() { _ = first.Close() }) // Close is idempotent
	addr := b.Addrs()[0]
	connectPair(t, a, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// A dial while b is down fails and would start libp2p's backoff.
	waitFor(t, func() bool { return !a.Connected(b.PeerID()) })
	if err := a.Connect(ctx, addr); err == nil {
		t.Fatal("Connect to a closed host succeeded")
	}

	// The same port again: another test may hold it for a moment.
	listen := strings.Split(addr, "/p2p/")[0]
	var b2 *p2p.Host
	waitFor(t, func() bool {
		b2, err = p2p.New(ctx, p2p.Config{Key: key, ListenAddr: listen})
		return err == nil
	})
	b = b2
	t.Cleanup(func() { _ = b2.Close() })
	if err := a.Connect(ctx, addr); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	if err := b.WaitForTopicPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, []byte("after restart")); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, a, 1)[0]; string(r.Data) != "after restart" {
		t.Fatalf("received %q", r.Data)
	}
}

func TestCloseIsIdempotentAndClosesBlocks(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	h, err := p2p.New(ctx, p2p.Config{Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("first close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	select {
	case _, ok := <-h.Blocks():
		if ok {
			t.Fatal("message on Blocks after Close")
		}
	default:
		t.Fatal("Blocks not closed by Close")
	}
	if err := h.Publish(ctx, []byte("x")); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if err := h.WaitForTopicPeers(ctx, 1); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("WaitForTopicPeers after Close: %v, want ErrClosed", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Pubsub's own records below warnings stay out of the node's log, as
// libp2p's do, even at debug: a host that starts and closes (pubsub logs
// "pubsub processloop shutting down" at info) leaves none.
func TestPubsubInfoLinesStayOut(t *testing.T) {
	var out syncBuffer
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.New(testContext(t), p2p.Config{
		Key: key, ListenAddr: "/ip4/127.0.0.1/tcp/0",
		Logger: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "subsystem=pubsub") && (strings.Contains(line, "level=INFO") || strings.Contains(line, "level=DEBUG")) {
			t.Errorf("pubsub line below warnings in the node's log: %s", line)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the host's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
