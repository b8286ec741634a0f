package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
)

// ErrWrongLeader is fatal for a peer: the node at --leader-rpc has another
// genesis, signs with another key than the one pinned at first contact, or
// is not the node --leader-addr names.
var ErrWrongLeader = errors.New("node: refusing leader")

// Peer timing.
const (
	// leaderPoll is how often a following peer asks the leader's height, to
	// notice a lost leader and any block gossip did not bring.
	leaderPoll = time.Second
	// retryMin and retryMax bound the backoff while the leader is away.
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
	// catchUpBatch is how many blocks one catch-up request asks for.
	catchUpBatch = api.MaxBlocksBinary
	// fetchTimeout bounds an on-demand fetch from the leader: a hung leader
	// gets the same 503 as one that is gone.
	fetchTimeout = 10 * time.Second
)

// peer follows the leader. Its run goroutine is the only writer of blocks;
// HTTP handlers only read, and keep verified messages they fetched.
type peer struct {
	cfg    *Config
	st     *store.Store
	leader *api.Client

	// batch is how many blocks the next catch-up request asks for: it
	// shrinks after a failed request, so that a link too slow to carry a
	// full answer within the client's timeout still moves, and grows back
	// with each answer. Only the run goroutine uses it.
	batch int

	dialing atomic.Bool    // a p2p dial to the leader is under way
	dials   sync.WaitGroup // the dials run started
}

func newPeer(cfg *Config, st *store.Store) *peer {
	return &peer{cfg: cfg, st: st, leader: api.NewClient(cfg.LeaderRPC), batch: catchUpBatch}
}

func (p *peer) handler(host *p2p.Host) *api.Server {
	return api.NewServer(api.Config{
		Chain:      &peerChain{blocks: blocks{p.st}, p: p, host: host},
		LeaderURL:  p.cfg.LeaderRPC,
		MaxContent: p.cfg.MaxMessageBytes,
		Log:        p.cfg.Log,
	})
}

// stop closes the peer's idle connections to the leader (the API's own
// are closed by its Stop).
func (p *peer) stop() {
	p.leader.CloseIdleConnections()
}

// run follows the leader until ctx is done. While the leader is away the
// peer keeps serving what it has and retries with backoff; when the leader
// is back it catches up by itself. Only a leader it must refuse is fatal.
func (p *peer) run(ctx context.Context, host *p2p.Host) error {
	// The dials run under a context of run's own, ended before run waits
	// for them: a fatal refusal must not wait out a dial that hangs.
	ctx, cancel := context.WithCancel(ctx)
	defer p.dials.Wait()
	defer cancel()
	wait := retryMin
	for {
		followed, err := p.follow(ctx, host)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrWrongLeader) {
			return err
		}
		if followed {
			wait = retryMin
		}
		if _, damaged := store.IsCorruption(err); damaged {
			// This node's own data, not the leader: reads of it fail too.
			p.cfg.Log.Error("store damaged; serving reads, retrying", "err", err, "retry_in", wait)
		} else {
			p.cfg.Log.Warn("leader unreachable; serving reads, retrying", "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// follow contacts the leader, catches up and then applies gossiped blocks
// until the leader is lost (it returns the reason) or ctx is done. followed
// says whether the peer caught up with the leader: a leader that answers
// but whose blocks cannot be taken (refused, or too slow to arrive) is
// retried with backoff, as one that is away.
func (p *peer) follow(ctx context.Context, host *p2p.Host) (followed bool, _ error) {
	info, producer, err := p.contact(ctx)
	if err != nil {
		return false, err
	}
	if err := host.AcceptFrom(info.PeerID); err != nil {
		return false, err
	}
	p.dial(ctx, host, info, slog.LevelWarn)
	if err := p.catchUp(ctx, producer); err != nil {
		return false, err
	}
	poll := time.NewTicker(leaderPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case r, ok := <-host.Blocks():
			if !ok {
				return true, nil
			}
			if err := p.onGossip(ctx, r, info.PeerID, producer); err != nil {
				return true, err
			}
		case <-poll.C:
			h, err := p.leader.Height(ctx)
			if err != nil {
				return true, err
			}
			if h.Height > p.st.Tip().Height {
				if err := p.catchUp(ctx, producer); err != nil {
					return true, err
				}
			}
			if !host.Connected(info.PeerID) {
				// A leader restarted within a poll may listen elsewhere
				// now (the default p2p port is chosen at start): ask it
				// again, with the checks of first contact. Its peer ID is
				// pinned with its key, so AcceptFrom still holds.
				if info, producer, err = p.contact(ctx); err != nil {
					return true, err
				}
				p.dial(ctx, host, info, slog.LevelDebug)
			}
		}
	}
}

// contact asks the leader who it is, refuses a node that is not a leader,
// another genesis, another producer than the pinned one or another peer ID
// than --leader-addr names, and pins the producer at first contact.
func (p *peer) contact(ctx context.Context) (api.Health, chain.PublicKey, error) {
	info, err := p.leader.Health(ctx)
	if err != nil {
		return info, chain.PublicKey{}, err
	}
	if info.Role != api.RoleLeader {
		// Another peer, or this node itself: pinning its key would refuse
		// every block of the real leader, and the real leader for good.
		return info, chain.PublicKey{}, fmt.Errorf("%w: it reports role %q, not %q", ErrWrongLeader, info.Role, api.RoleLeader)
	}
	if info.GenesisHash != chain.GenesisHash {
		return info, chain.PublicKey{}, fmt.Errorf("%w: its genesis is %s, ours %s", ErrWrongLeader, info.GenesisHash, chain.GenesisHash)
	}
	if p.cfg.LeaderAddr != "" {
		// Config.Validate parsed it; the ID is compared as libp2p reads it,
		// whatever encoding the flag spelled it in.
		if id, err := p2p.CheckPeerAddr(p.cfg.LeaderAddr); err != nil || id != info.PeerID {
			return info, chain.PublicKey{}, fmt.Errorf("%w: it reports peer ID %s, --leader-addr names %s", ErrWrongLeader, info.PeerID, p.cfg.LeaderAddr)
		}
	}
	pub, err := p2p.PublicKeyFromPeerID(info.PeerID)
	if err != nil {
		return info, chain.PublicKey{}, fmt.Errorf("%w: peer ID %q: %w", ErrWrongLeader, info.PeerID, err)
	}
	producer := chain.PublicKey(pub)
	// The chain's producer is the pin, or without one (a pin lost with its
	// record) the signer of block 1: pinning another key over a chain
	// signed by one would make the next start refuse intact data.
	known, ok, err := p.st.ChainProducer()
	if err != nil {
		return info, chain.PublicKey{}, err
	}
	if ok && known != producer {
		return info, chain.PublicKey{}, fmt.Errorf("%w: it signs with key %x, this chain's producer is %x", ErrWrongLeader, producer[:], known[:])
	}
	_, pinned, err := p.st.Producer()
	if err != nil {
		return info, chain.PublicKey{}, err
	}
	if !pinned {
		if err := p.st.SetProducer(producer); err != nil {
			return info, chain.PublicKey{}, err
		}
		p.cfg.Log.Info("Pinned producer key", "producer", fmt.Sprintf("%x", producer[:]), "leader", info.PeerID)
	}
	return info, producer, nil
}

// dial connects to the leader over libp2p in the background, one attempt
// at a time, so that an address that does not answer (a dial may wait out
// libp2p's timeout of several seconds) never holds up polling and catch-up;
// a failure is logged at level. Gossip is the fast path only: polling and
// catch-up work without it.
func (p *peer) dial(ctx context.Context, host *p2p.Host, info api.Health, level slog.Level) {
	if !p.dialing.CompareAndSwap(false, true) {
		return
	}
	p.dials.Add(1)
	go func() {
		defer p.dials.Done()
		defer p.dialing.Store(false)
		if err := p.connect(ctx, host, info); err != nil && ctx.Err() == nil {
			p.cfg.Log.Log(ctx, level, "cannot connect to the leader over p2p; following by polling", "err", err)
		}
	}()
}

// connect dials the leader over libp2p: --leader-addr if given, else the
// addresses the leader reported that carry its peer ID.
func (p *peer) connect(ctx context.Context, host *p2p.Host, info api.Health) error {
	addrs := info.P2PAddrs
	if p.cfg.LeaderAddr != "" {
		addrs = []string{p.cfg.LeaderAddr}
	}
	var errs []error
	for _, a := range addrs {
		if id, err := p2p.CheckPeerAddr(a); err != nil || id != info.PeerID {
			continue
		}
		err := host.Connect(ctx, a)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("node: leader reported no address with /p2p/%s", info.PeerID)
	}
	return errors.Join(errs...)
}

// onGossip applies a block received on the topic. Blocks that did not come
// over the connection to the leader, old blocks and duplicates are ignored;
// a block beyond the next height starts a catch-up; an invalid one (its
// producer's signature included) is logged and dropped. Only a failure to
// reach the leader during catch-up is returned.
func (p *peer) onGossip(ctx context.Context, r p2p.Received, leaderID string, producer chain.PublicKey) error {
	if r.From != leaderID {
		p.cfg.Log.Debug("ignoring gossip not sent by the leader", "from", r.From)
		return nil
	}
	b, err := chain.DecodeBlock(r.Data)
	if err != nil {
		p.cfg.Log.Warn("Rejected block: undecodable", "err", err)
		return nil
	}
	p.cfg.Log.Debug("Received block by gossip", "height", b.Height, "bytes", len(r.Data), "messages", len(b.Entries))
	tip := p.st.Tip()
	switch {
	case b.Height <= tip.Height:
		return nil
	case b.Height > tip.Height+1:
		return p.catchUp(ctx, producer)
	}
	p.accept([]*chain.Block{b}, producer, "gossip")
	return nil
}

// accept verifies blocks as the tip's successors and stores the valid
// leading run in one atomic batch; the first invalid block and everything
// after it is rejected and logged. It returns how many it stored.
func (p *peer) accept(blocks []*chain.Block, producer chain.PublicKey, via string) int {
	tip := p.st.Tip()
	n, verr := chain.CheckSequence(&tip.Header, tip.Hash, blocks, producer)
	if n > 0 {
		if err := p.st.Commit(store.Commit{Blocks: blocks[:n]}); err != nil {
			p.cfg.Log.Error("storing blocks", "from", blocks[0].Height, "err", err)
			return 0
		}
		last := blocks[n-1]
		p.cfg.Log.Debug("Stored blocks", "from", blocks[0].Height, "to", last.Height, "via", via, "messages", countEntries(blocks[:n]))
	}
	if verr != nil {
		p.cfg.Log.Warn("Rejected block", "height", blocks[n].Height, "err", verr)
	}
	return n
}

func countEntries(blocks []*chain.Block) int {
	n := 0
	for _, b := range blocks {
		n += len(b.Entries)
	}
	return n
}

// catchUp pulls consecutive blocks from the leader until it has the leader's
// tip as of the last answer.
func (p *peer) catchUp(ctx context.Context, producer chain.PublicKey) error {
	for {
		from := p.st.Tip().Height + 1
		blocks, err := p.leader.BlockRecords(ctx, from, p.batch)
		if err != nil {
			p.batch = max(p.batch/4, 1)
			return err
		}
		p.batch = min(2*p.batch, catchUpBatch)
		if len(blocks) == 0 {
			return nil
		}
		if n := p.accept(blocks, producer, "catch-up"); n < len(blocks) {
			return fmt.Errorf("node: catch-up from %d stopped after %d of %d blocks", from, n, len(blocks))
		}
		if len(blocks) > 1 {
			p.cfg.Log.Info("Caught up", "to", blocks[len(blocks)-1].Height)
		}
	}
}

// peerChain answers the read routes from the peer's store, fetching message
// contents from the leader on demand.
type peerChain struct {
	blocks
	p    *peer
	host *p2p.Host
}

func (c *peerChain) Health() api.Health { return health(api.RolePeer, c.p.st, c.host, 0) }

// Message serves a stored message, or fetches it from the leader: a
// confirmed one is verified against this peer's own block and kept; a
// pending one is returned as the leader has it, not kept.
func (c *peerChain) Message(ctx context.Context, id chain.Hash) (api.Message, error) {
	conf, err := c.p.st.Message(id)
	if err == nil {
		return confirmedView(c.p.st, conf)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return api.Message{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	j, err := c.p.leader.Message(ctx, id)
	if err != nil {
		return api.Message{}, leaderError(err)
	}
	m, err := j.ToChain()
	if err == nil && m.ID() != id {
		err = fmt.Errorf("leader answered message %s for %s", m.ID(), id)
	}
	if err == nil {
		err = m.Verify()
	}
	if err != nil {
		return api.Message{}, &api.StatusError{Code: http.StatusBadGateway, Err: fmt.Errorf("message from leader refused: %w", err)}
	}
	if j.Status == api.StatusPending { // the client takes only pending or confirmed
		return api.NewMessage(&m), nil
	}
	if j.BlockHeight == nil || j.Index == nil {
		return api.Message{}, &api.StatusError{Code: http.StatusBadGateway, Err: errors.New("message from leader refused: confirmed without block_height and index")}
	}
	b, err := c.p.st.Block(*j.BlockHeight)
	if errors.Is(err, store.ErrNotFound) || (err == nil && *j.BlockHeight > c.p.st.Tip().Height) {
		return api.Message{}, &api.StatusError{Code: http.StatusServiceUnavailable, Err: fmt.Errorf("block %d is not on this peer yet", *j.BlockHeight)}
	}
	if err != nil { // the peer's own block does not read: its damage, not the leader's
		return api.Message{}, err
	}
	conf = store.Confirmed{Message: m, Height: b.Height, Index: *j.Index}
	if err := verifyInBlock(b, conf, j.Proof); err != nil {
		return api.Message{}, &api.StatusError{Code: http.StatusBadGateway, Err: fmt.Errorf("message from leader refused: %w", err)}
	}
	if err := c.p.st.PutMessage(conf); err != nil {
		return api.Message{}, err
	}
	return confirmedView(c.p.st, conf)
}

// verifyInBlock checks a fetched message against this peer's copy of its
// block: the leader's inclusion proof must lead from the message's leaf at
// its index to the block's message root.
func verifyInBlock(b *chain.Block, c store.Confirmed, proof []chain.Hash) error {
	e := chain.EntryOf(&c.Message)
	if err := chain.VerifyInclusion(b.MessageRoot, uint64(len(b.Entries)), uint64(c.Index), e, proof); err != nil {
		return fmt.Errorf("message %s in block %d: %w", e.ID, b.Height, err)
	}
	return nil
}

// BlockMessages returns b's messages, fetching those the peer lacks from the
// leader in one request and keeping each after verifying it.
func (c *peerChain) BlockMessages(ctx context.Context, b *chain.Block) ([]api.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	tree := chain.NewTree(b.Entries)
	out := make([]api.Message, len(b.Entries))
	var fetched *api.Block
	for i, e := range b.Entries {
		conf, err := c.p.st.Message(e.ID)
		if errors.Is(err, store.ErrNotFound) {
			if fetched == nil {
				fb, ferr := c.p.leader.BlockWithin(ctx, b.Height, true, c.listingBound(b))
				if ferr != nil {
					return nil, leaderError(ferr)
				}
				if len(fb.Messages) != len(b.Entries) {
					return nil, &api.StatusError{Code: http.StatusBadGateway, Err: fmt.Errorf("leader's block %d has %d messages, ours %d", b.Height, len(fb.Messages), len(b.Entries))}
				}
				fetched = &fb
			}
			m, terr := fetched.Messages[i].ToChain()
			if terr == nil {
				terr = m.Verify()
			}
			conf = store.Confirmed{Message: m, Height: b.Height, Index: uint32(i)}
			if terr == nil {
				terr = verifyInBlock(b, conf, fetched.Messages[i].Proof)
			}
			if terr != nil {
				return nil, &api.StatusError{Code: http.StatusBadGateway, Err: fmt.Errorf("message from leader refused: %w", terr)}
			}
			if err = c.p.st.PutMessage(conf); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		if out[i], err = viewIn(b, conf, tree); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// listingBound is what a leader's answer of b with its messages may take:
// per message, content JSON-escaped at up to six bytes a byte under this
// node's --max-message-bytes, the other fields and a proof of up to 64
// hashes; and never less than api.MaxAnswer, for a leader whose limit is
// higher than this peer's (or was, when it sealed b).
func (c *peerChain) listingBound(b *chain.Block) int64 {
	perMessage := 6*int64(c.p.cfg.MaxMessageBytes) + 1024 + 64*(2*chain.HashSize+4)
	return max(api.MaxAnswer, 64<<10+int64(len(b.Entries))*perMessage)
}

// leaderError maps a failed request to the leader: its own 4xx answers
// (404 unknown message) pass through, an answer that is wrong or refused is
// 502, and no answer at all is 503.
func leaderError(err error) error {
	var he *api.HTTPError
	var bad *api.BadAnswerError
	switch {
	case errors.As(err, &he) && he.Code/100 == 4:
		return &api.StatusError{Code: he.Code, Err: errors.New(he.Reason)}
	case errors.As(err, &he):
		return &api.StatusError{Code: http.StatusBadGateway, Err: fmt.Errorf("leader answered: %w", err)}
	case errors.As(err, &bad):
		return &api.StatusError{Code: http.StatusBadGateway, Err: fmt.Errorf("leader's answer refused: %w", err)}
	}
	return &api.StatusError{Code: http.StatusServiceUnavailable, Err: fmt.Errorf("leader unreachable: %w", err)}
}
