// Package p2p is Kimura's only libp2p importer: the node's libp2p identity,
// a host that dials nothing on its own, and the gossipsub topic on which the
// leader publishes committed blocks.
//
// The rest of the project sees peer IDs as strings, keys as stdlib Ed25519
// keys and blocks as opaque byte slices, so that libp2p can be upgraded or
// replaced here alone.
//
// # Delivery
//
// Gossip is a fast path, not a guarantee: a block published while a peer is
// not (yet) known to be subscribed is not sent to it, and is not sent again
// if republished soon after, so callers must still be able to fetch missed
// blocks by other means. Within that limit this package avoids silent loss:
// queues are large, and every message gossipsub drops for want of queue
// space is counted and logged at warn level (see Host.Drops).
//
// Messages from a directly connected publisher arrive in the order it
// published them. Messages relayed through other nodes carry no such
// promise.
package p2p

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	mafmt "github.com/multiformats/go-multiaddr-fmt"
)

// Topic is the gossipsub topic on which committed blocks are published.
const Topic = "kimura/blocks/1.0.0"

// DefaultMaxMessageSize is used when Config.MaxMessageSize is zero. Pubsub's
// own default of 1 MiB would silently drop larger blocks.
const DefaultMaxMessageSize = 64 << 20

// envelopeOverhead is room kept in MaxMessageSize for what pubsub wraps
// around a payload: the topic and protobuf framing, a few dozen bytes (a few
// hundred if messages were signed).
const envelopeOverhead = 1 << 10

// DefaultQueueSize is used when Config.QueueSize is zero: far beyond the
// burst of one block per interval, and small enough that a full set of
// queues of small blocks costs little memory.
const DefaultQueueSize = 1024

const (
	// protectTag is the connection manager tag for peers given to Connect.
	protectTag = "kimura-connect"
	// pollInterval is how often WaitForTopicPeers looks at the topic.
	pollInterval = 10 * time.Millisecond
)

// Errors returned (wrapped) by Host methods; check them with errors.Is.
var (
	// ErrClosed is returned by methods of a Host that has been closed.
	ErrClosed = errors.New("host closed")
	// ErrMessageTooLarge is returned by Publish for a payload above
	// Host.MaxPayload; gossipsub would drop it on the wire without a word.
	ErrMessageTooLarge = errors.New("message too large")
)

// Config holds what New needs. The zero value is not valid: Key and
// ListenAddr are required.
type Config struct {
	// Key is the node key: its public half is the peer ID, which the Noise
	// handshake proves to every connection.
	Key ed25519.PrivateKey
	// ListenAddr is a TCP multiaddr such as /ip4/127.0.0.1/tcp/0 (port 0
	// picks a free port; Addrs reports the bound one).
	ListenAddr string
	// MaxMessageSize is gossipsub's limit on one wire message in bytes; zero
	// means DefaultMaxMessageSize. Every node must use the same value, since
	// receivers drop anything above their own limit.
	MaxMessageSize int
	// QueueSize is the number of messages each pubsub queue (per-peer
	// outbound, validation, subscription) and the Blocks channel holds; zero
	// means DefaultQueueSize. Pubsub drops messages when a queue is full.
	// A reader of Blocks that stalls lets up to twice QueueSize received
	// messages pile up in memory.
	QueueSize int
	// Follower makes the host take incoming connections only from the
	// peer given to AcceptFrom, and from no one before that. A peer, which
	// dials its leader and is dialled by no one, sets it; see connGater.
	Follower bool
	// Logger receives this package's, pubsub's and libp2p's logs; nil
	// discards them. Of libp2p's own, only warnings and errors are kept,
	// whatever Logger's level, and those that repeat an error New returns
	// are lowered to debug. libp2p's loggers are shared by the whole
	// process, so its lines go to the Logger of the host started last of
	// those still open.
	Logger *slog.Logger
}

// tcpListenAddr matches the only listen addresses the host can serve.
var tcpListenAddr = mafmt.And(mafmt.IP, mafmt.Base(ma.P_TCP))

func (c *Config) validate() error {
	if len(c.Key) != ed25519.PrivateKeySize {
		return fmt.Errorf("p2p: config: key has %d bytes, want %d", len(c.Key), ed25519.PrivateKeySize)
	}
	if c.ListenAddr == "" {
		return errors.New("p2p: config: no listen address")
	}
	// Checked here rather than left to libp2p, which leaks goroutines when it
	// fails to start for want of a transport.
	if err := CheckListenAddr(c.ListenAddr); err != nil {
		return fmt.Errorf("p2p: config: %w", err)
	}
	if c.MaxMessageSize < 0 {
		return fmt.Errorf("p2p: config: negative max message size %d", c.MaxMessageSize)
	}
	if c.QueueSize < 0 {
		return fmt.Errorf("p2p: config: negative queue size %d", c.QueueSize)
	}
	if c.MaxMessageSize != 0 && c.MaxMessageSize <= envelopeOverhead {
		return fmt.Errorf("p2p: config: max message size %d leaves no room for a payload", c.MaxMessageSize)
	}
	return nil
}

// CheckListenAddr reports whether s is a listen address the host can serve:
// /ip4|ip6/<host>/tcp/<port>.
func CheckListenAddr(s string) error {
	addr, err := ma.NewMultiaddr(s)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", s, err)
	}
	if !tcpListenAddr.Matches(addr) {
		return fmt.Errorf("listen address %q is not /ip4|ip6/<host>/tcp/<port>", s)
	}
	return nil
}

// peerTCPAddr matches the only transport part of a peer address Connect
// dials. /dnsaddr is left out, though mafmt.TCP takes it: libp2p resolves it
// through DNS TXT records into whatever addresses they list, which this node
// was never given.
var peerTCPAddr = mafmt.And(
	mafmt.Or(mafmt.IP, mafmt.Base(ma.P_DNS), mafmt.DNS4, mafmt.DNS6),
	mafmt.Base(ma.P_TCP),
)

// CheckPeerAddr reports whether s is an address Connect can dial:
// /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/p2p/<peer ID>. It returns the peer
// ID. /dnsaddr is refused: it stands for whatever addresses a DNS TXT record
// lists, and a node dials only addresses it was given.
func CheckPeerAddr(s string) (peerID string, err error) {
	ai, err := parsePeerAddr(s)
	if err != nil {
		return "", err
	}
	return ai.ID.String(), nil
}

// parsePeerAddr is CheckPeerAddr giving the parsed address.
func parsePeerAddr(s string) (*peer.AddrInfo, error) {
	ai, err := peer.AddrInfoFromString(s)
	if err != nil {
		return nil, fmt.Errorf("peer address %q: want a multiaddr ending in /p2p/<peer ID>: %w", s, err)
	}
	if len(ai.Addrs) == 1 && startsWith(ai.Addrs[0], ma.P_DNSADDR) {
		return nil, fmt.Errorf("peer address %q: /dnsaddr is not accepted, as it would dial whatever addresses "+
			"DNS TXT records list; give /dns|dns4|dns6/<host>/tcp/<port>/p2p/<peer ID>", s)
	}
	if len(ai.Addrs) != 1 || !peerTCPAddr.Matches(ai.Addrs[0]) {
		return nil, fmt.Errorf("peer address %q is not /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/p2p/<peer ID>", s)
	}
	return ai, nil
}

// startsWith reports whether addr's first component is of protocol code.
func startsWith(addr ma.Multiaddr, code int) bool {
	return len(addr) > 0 && addr[0].Protocol().Code == code
}

// Received is one message taken from the topic.
type Received struct {
	// From is the peer ID of the connection the message came through,
	// authenticated by the Noise handshake. Messages carry no author and no
	// pubsub signature (see New), so this is not necessarily the node that
	// first published it: a payload must carry its own proof of origin, as
	// a block carries its producer's signature.
	From string
	// Data is the payload exactly as published.
	Data []byte
}

// Host is a running libp2p host joined to Topic. Its methods are safe for
// concurrent use. Close it to release its listener, connections and
// goroutines.
type Host struct {
	host    host.Host
	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	gater   *connGater // also holds the source (AcceptFrom)
	tracer  *dropTracer
	log     *slog.Logger
	unlog   func() // stops sending libp2p's logs to log
	maxData int

	blocks  chan Received
	cancel  context.CancelFunc // stops pubsub and the forwarding goroutine
	fwdDone chan struct{}      // closed when the forwarding goroutine is gone

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// New starts a libp2p host listening on cfg.ListenAddr and gossipsub on it,
// and subscribes to Topic. ctx bounds only the start; the host runs until
// Close.
//
// The host speaks TCP with Noise and Yamux only, and does no discovery of
// any kind: no mDNS, DHT, relay, NAT port mapping, AutoNAT probing, hole
// punching, identify-based address discovery or gossipsub peer exchange.
// A connection gater refuses every outgoing dial except to peers given to
// Connect, which takes no /dnsaddr address, so the node dials only addresses
// it was given; a follower's gater also refuses incoming connections from
// anyone but its source.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("p2p: start: %w", err)
	}
	maxSize := cfg.MaxMessageSize
	if maxSize == 0 {
		maxSize = DefaultMaxMessageSize
	}
	queueSize := cfg.QueueSize
	if queueSize == 0 {
		queueSize = DefaultQueueSize
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "p2p")

	sk, err := libp2pKey(cfg.Key)
	if err != nil {
		return nil, err
	}
	// Before libp2p.New, which logs its own start failures.
	unlog := libp2pLogs.install(demoteHandler{
		next:  logger.With("subsystem", "libp2p").Handler(),
		noisy: noisyLibp2pMessages,
		floor: libp2pLogFloor,
	})
	gater := newConnGater(cfg.Follower)
	lh, err := libp2p.New(
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings(cfg.ListenAddr),
		// Naming transport, security and muxer replaces libp2p's defaults
		// (QUIC, WebTransport, WebRTC, WebSocket, TLS) instead of extending them.
		// Without port sharing (SO_REUSEPORT, libp2p's default), a second
		// node given the same --listen-addr fails to bind it (exit 1)
		// instead of sharing the port, the kernel handing each incoming
		// connection to either node.
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.DisableIdentifyAddressDiscovery(),
		// A fixed reachability replaces the AutoNAT client, which would
		// otherwise probe reachability through connected peers.
		libp2p.ForceReachabilityPublic(),
		libp2p.Ping(false),
		libp2p.ConnectionGater(gater),
		// Not set, and so off: NATPortMap, EnableHolePunching,
		// EnableAutoRelay*, EnableNATService, EnableAutoNATv2, Routing.
	)
	if err != nil {
		unlog()
		return nil, fmt.Errorf("p2p: start libp2p host: %w", err)
	}

	tracer := &dropTracer{log: logger}
	psCtx, cancel := context.WithCancel(context.Background())
	h := &Host{
		host:    lh,
		gater:   gater,
		tracer:  tracer,
		log:     logger,
		unlog:   unlog,
		maxData: maxSize - envelopeOverhead,
		blocks:  make(chan Received, queueSize),
		cancel:  cancel,
		fwdDone: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	fail := func(err error) (*Host, error) {
		cancel()
		_ = lh.Close()
		unlog()
		return nil, err
	}

	ps, err := pubsub.NewGossipSub(psCtx, lh,
		pubsub.WithMaxMessageSize(maxSize),
		pubsub.WithPeerOutboundQueueSize(queueSize),
		// The topic's validator (see validate) sends every received
		// message through pubsub's validation queue. One worker keeps each
		// connection's order (several would let a small block overtake a big
		// one), and the queue absorbs bursts.
		pubsub.WithValidateQueueSize(queueSize),
		pubsub.WithValidateWorkers(1),
		// No author, sequence number or pubsub signature: a block is signed
		// by its producer and every peer checks that signature before it
		// stores the block, so signing the envelope too only cost time. It
		// cost the most on the path that matters, from the leader's commit to
		// the peers': for a 1,500-message block (100 KB) the leader hashed
		// the payload twice to sign it and once more to check its own
		// signature, and each peer once more: 3 of the 11 ms median under load.
		// Peers refuse signed messages (StrictNoSign), so a mixed network
		// falls back to catching up over HTTP rather than mixing rules.
		pubsub.WithNoAuthor(),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		// Content-addressed IDs, which unsigned messages need in place of
		// author and sequence number, also make a block republished (by the
		// leader after a restart, or by anyone relaying it) a duplicate
		// rather than a new message.
		pubsub.WithMessageIdFn(contentID),
		// The leader sends its own blocks straight to every subscribed peer,
		// without waiting for the mesh to form (pubsub's default, stated).
		pubsub.WithFloodPublish(true),
		// We send no peer exchange. Addresses others send us that way are
		// kept by pubsub, but a dial to them is refused by the gater: we dial
		// only peers given to Connect.
		pubsub.WithPeerExchange(false),
		pubsub.WithGossipSubParams(gossipParams()),
		pubsub.WithSubscriptionFilter(pubsub.NewAllowlistSubscriptionFilter(Topic)),
		pubsub.WithRawTracer(tracer),
		pubsub.WithLogger(slog.New(demoteHandler{
			next:  logger.With("subsystem", "pubsub").Handler(),
			noisy: noisyPubsubMessages,
			floor: libp2pLogFloor, // as for libp2p: its info lines ("pubsub processloop shutting down") are not the node's
		})),
		// The RPC logger dumps whole RPCs, blocks included, at debug level.
		pubsub.WithRPCLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return fail(fmt.Errorf("p2p: start gossipsub: %w", err))
	}
	// Inline: the check is a comparison, cheaper than a hand-off to a
	// worker, and it runs before pubsub keeps or relays the message.
	if err := ps.RegisterTopicValidator(Topic, h.validate, pubsub.WithValidatorInline(true)); err != nil {
		return fail(fmt.Errorf("p2p: validator for topic %s: %w", Topic, err))
	}
	h.topic, err = ps.Join(Topic)
	if err != nil {
		return fail(fmt.Errorf("p2p: join topic %s: %w", Topic, err))
	}
	h.sub, err = h.topic.Subscribe(pubsub.WithBufferSize(queueSize))
	if err != nil {
		return fail(fmt.Errorf("p2p: subscribe to topic %s: %w", Topic, err))
	}
	go h.forward(psCtx)
	logger.Info("p2p host started", "peer_id", lh.ID().String(), "addrs", h.Addrs())
	return h, nil
}

// validate takes a message on the topic only from this host itself or from
// the peer given to AcceptFrom, judged by the connection it came through.
// Anything else is ignored before pubsub buffers, delivers or relays it: a
// stranger who connects cannot fill this node's queues or reach the nodes
// behind it through this one.
func (h *Host) validate(_ context.Context, from peer.ID, _ *pubsub.Message) pubsub.ValidationResult {
	if from == h.host.ID() {
		return pubsub.ValidationAccept
	}
	if h.gater.isSource(from) {
		return pubsub.ValidationAccept
	}
	return pubsub.ValidationIgnore
}

// AcceptFrom makes peerID the one peer whose messages on the topic this host
// takes, in place of any before, and for a follower (Config.Follower) the
// one peer it takes incoming connections from. Until it is called the host
// takes only its own messages, as a leader, which follows nobody, does for
// good.
func (h *Host) AcceptFrom(peerID string) error {
	id, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("p2p: accept from %q: %w", peerID, err)
	}
	h.gater.source.Store(&id)
	return nil
}

// contentID is the pubsub message ID: the SHA-256 of the payload.
func contentID(m *pubsubpb.Message) string {
	sum := sha256.Sum256(m.GetData())
	return string(sum[:])
}

// forward is the single owner of the send side of h.blocks: it moves
// messages from the subscription to h.blocks, skipping our own, and closes
// h.blocks when the subscription or ctx ends. Blocking on a full h.blocks is
// deliberate: it lets the subscription's buffer absorb the burst next, and
// only past that does pubsub drop (and dropTracer report) messages.
func (h *Host) forward(ctx context.Context) {
	defer close(h.fwdDone)
	defer close(h.blocks)
	self := h.host.ID()
	for {
		msg, err := h.sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == self {
			continue
		}
		select {
		case h.blocks <- Received{From: msg.ReceivedFrom.String(), Data: msg.GetData()}:
		case <-ctx.Done():
			return
		}
	}
}

// PeerID is this node's peer ID, derived from Config.Key.
func (h *Host) PeerID() string {
	return h.host.ID().String()
}

// Addrs gives the addresses others can Connect to: each listen address with
// its bound port and a /p2p/<peer ID> suffix.
func (h *Host) Addrs() []string {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.host.ID(), Addrs: h.host.Addrs()})
	if err != nil {
		// Only possible for an empty peer ID, which a running host cannot have.
		h.log.Error("p2p addresses", "err", err)
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// MaxPayload is the largest payload Publish accepts: MaxMessageSize less room
// for pubsub's envelope.
func (h *Host) MaxPayload() int {
	return h.maxData
}

// Connect dials addr, an address CheckPeerAddr accepts, unless that peer
// is already connected, and waits for the libp2p handshake (identify) to
// finish. The peer is then protected from the connection manager's trimming
// and its address kept for good, so the connection is kept for the host's
// life.
//
// Connect does not reconnect by itself: when a connection is lost, call
// Connect again (it is cheap when connected, and it ignores libp2p's dial
// backoff so a restarted peer is reached at once).
//
// Returning means the connection is up, not that gossip flows yet: the two
// pubsubs still exchange subscriptions, typically within milliseconds on a
// LAN. See WaitForTopicPeers.
func (h *Host) Connect(ctx context.Context, addr string) error {
	if h.isClosed() {
		return fmt.Errorf("p2p: connect %s: %w", addr, ErrClosed)
	}
	ai, err := parsePeerAddr(addr)
	if err != nil {
		return fmt.Errorf("p2p: connect: %w", err)
	}
	if ai.ID == h.host.ID() {
		return fmt.Errorf("p2p: connect %s: that is this node", addr)
	}
	h.gater.allow(ai.ID)
	h.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	h.host.ConnManager().Protect(ai.ID, protectTag)
	if h.host.Network().Connectedness(ai.ID) == network.Connected {
		return nil
	}
	// The connectedness check above keeps this from opening a second
	// connection; forcing a direct dial only skips the dial backoff.
	dctx := network.WithForceDirectDial(ctx, "kimura: dial requested")
	if err := h.host.Connect(dctx, *ai); err != nil {
		return fmt.Errorf("p2p: connect %s: %w", addr, err)
	}
	h.log.Debug("p2p connected", "peer", ai.ID.String())
	return nil
}

// Connected reports whether there is a live connection to peerID.
func (h *Host) Connected(peerID string) bool {
	id, err := peer.Decode(peerID)
	if err != nil {
		return false
	}
	return h.host.Network().Connectedness(id) == network.Connected
}

// TopicPeers lists the peers this node knows to be subscribed to Topic: the
// peers its Publish reaches directly.
func (h *Host) TopicPeers() []string {
	ids := h.topic.ListPeers()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// WaitForTopicPeers polls until at least n peers are known to be subscribed
// to Topic, or ctx ends. A message published after it returns reaches those
// peers (flood publishing sends it to every known subscriber). It says
// nothing of the other direction: to be sure of receiving from a peer, that
// peer must see us, which it learns in the same subscription exchange, in
// practice within milliseconds of it.
func (h *Host) WaitForTopicPeers(ctx context.Context, n int) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		have := len(h.topic.ListPeers())
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("p2p: wait for %d topic peers (have %d): %w", n, have, ctx.Err())
		case <-h.closed:
			return fmt.Errorf("p2p: wait for %d topic peers: %w", n, ErrClosed)
		case <-t.C:
		}
	}
}

// Publish sends data, unsigned (the payload carries its own signature), on
// Topic to every peer known to be subscribed. A nil error means the message was accepted for
// sending, not that anyone received it. Publishing the same data again within
// pubsub's seen-message window (two minutes) is a no-op, as its ID is the
// hash of the data.
func (h *Host) Publish(ctx context.Context, data []byte) error {
	if len(data) > h.maxData {
		return fmt.Errorf("p2p: publish %d bytes (max %d): %w", len(data), h.maxData, ErrMessageTooLarge)
	}
	if h.isClosed() {
		return fmt.Errorf("p2p: publish: %w", ErrClosed)
	}
	if err := h.topic.Publish(ctx, data); err != nil {
		if h.isClosed() {
			err = errors.Join(ErrClosed, err)
		}
		return fmt.Errorf("p2p: publish: %w", err)
	}
	return nil
}

// Blocks returns the messages received on Topic from other nodes, in arrival
// order; messages this node published are not included. The channel is
// closed when the host is closed. Read it promptly: with pubsub's own buffer
// it holds twice Config.QueueSize messages, and messages beyond that are
// dropped, with a warning, not queued.
func (h *Host) Blocks() <-chan Received {
	return h.blocks
}

// Drops counts the messages gossipsub has dropped for want of queue space
// (or for exceeding the size limit) since the host started. Drops are also
// logged at warn level, at most once a second, with this running total.
func (h *Host) Drops() uint64 {
	return h.tracer.drops.Load()
}

// Ignored counts the messages received on the topic from peers other than
// the one given to AcceptFrom, which the host turned away unread.
func (h *Host) Ignored() uint64 {
	return h.tracer.ignored.Load()
}

func (h *Host) isClosed() bool {
	select {
	case <-h.closed:
		return true
	default:
		return false
	}
}

// Close leaves the topic, stops gossipsub and the host, and waits for the
// goroutine feeding Blocks to exit, which then closes the channel. It is
// idempotent: later calls return the first call's result.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		close(h.closed)
		// Leaving first tells peers we unsubscribed, so they stop sending.
		h.sub.Cancel()
		var errs []error
		if err := h.topic.Close(); err != nil {
			errs = append(errs, fmt.Errorf("p2p: close topic: %w", err))
		}
		h.cancel()
		if err := h.host.Close(); err != nil {
			errs = append(errs, fmt.Errorf("p2p: close host: %w", err))
		}
		// Bounded: the forwarding goroutine selects on the cancelled context.
		<-h.fwdDone
		h.closeErr = errors.Join(errs...)
		h.unlog()
		h.log.Info("p2p host closed")
	})
	return h.closeErr
}

// gossipParams are pubsub's defaults but for the message cache, which keeps
// every published block in memory for HistoryLength heartbeats (1 s each)
// to answer IWANT gossip: 1 rather than 5. Blocks reach peers by flood
// publishing, and a peer that misses one pulls it from the leader over HTTP
// within a second, so the longer history bought nothing but memory (at 10
// blocks a second of 10,000 messages, 5 heartbeats held 30 MB).
func gossipParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.HistoryLength = 1
	p.HistoryGossip = 1
	return p
}
