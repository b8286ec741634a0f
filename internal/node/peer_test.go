package node

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
	"github.com/kimura-ledger/kimura/internal/store/storetest"
)

// fixture is a peer's store with a producer pinned, and that producer's key
// to craft blocks with.
type fixture struct {
	st       *store.Store
	key      ed25519.PrivateKey
	producer chain.PublicKey
	peer     *peer
}

func newFixture(t *testing.T, leaderURL string) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	f := &fixture{st: st, key: key}
	copy(f.producer[:], key.Public().(ed25519.PublicKey))
	if err := st.SetProducer(f.producer); err != nil {
		t.Fatal(err)
	}
	if leaderURL == "" {
		leaderURL = "http://127.0.0.1:1"
	}
	cfg := &Config{
		DBPath: t.TempDir(), RPCAddr: "127.0.0.1:0", ListenAddr: "/ip4/127.0.0.1/tcp/0", LeaderRPC: leaderURL,
		BlockInterval: DefaultBlockInterval, MaxBlockMessages: DefaultMaxBlockMessages, MaxMessageBytes: DefaultMaxMessageBytes,
		MaxPendingBytes: DefaultMaxPendingBytes,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f.peer = newPeer(cfg, st)
	return f
}

// next seals the block after parent with msgs, signed by the fixture's key.
func (f *fixture) next(parent *chain.Block, msgs ...chain.Message) *chain.Block {
	return chain.Seal(&parent.Header, msgs, parent.Timestamp+1, f.key)
}

func signed(t *testing.T, n int) []chain.Message {
	t.Helper()
	_, sender, _ := ed25519.GenerateKey(nil)
	out := make([]chain.Message, n)
	for i := range out {
		out[i] = chain.SignMessage(sender, uint64(i), "message")
		out[i].Timestamp = 1000
	}
	return out
}

func TestPeerAcceptsNextBlock(t *testing.T) {
	f := newFixture(t, "")
	b1 := f.next(chain.Genesis(), signed(t, 3)...)
	if n := f.peer.accept([]*chain.Block{b1}, f.producer, "test"); n != 1 {
		t.Fatalf("accepted %d blocks, want 1", n)
	}
	if tip := f.st.Tip(); tip.Height != 1 || tip.Hash != b1.Hash() {
		t.Fatalf("tip %d %s, want 1 %s", tip.Height, tip.Hash, b1.Hash())
	}
}

// rejected asserts that b is not stored and the tip stays at want.
func (f *fixture) rejected(t *testing.T, b *chain.Block, want uint64) {
	t.Helper()
	if n := f.peer.accept([]*chain.Block{b}, f.producer, "test"); n != 0 {
		t.Fatalf("accepted a block that must be rejected")
	}
	if tip := f.st.Tip(); tip.Height != want {
		t.Fatalf("tip moved to %d, want %d", tip.Height, want)
	}
	if _, err := f.st.BlockRecord(b.Height); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rejected block %d is readable: %v", b.Height, err)
	}
}

func TestPeerRejectsWrongPrevHash(t *testing.T) {
	f := newFixture(t, "")
	b1 := f.next(chain.Genesis())
	f.peer.accept([]*chain.Block{b1}, f.producer, "test")
	bad := *b1 // a sibling of b1 as parent: right height, wrong prev_hash
	bad.Timestamp++
	b2 := f.next(&bad)
	f.rejected(t, b2, 1)
}

func TestPeerRejectsForeignSignature(t *testing.T) {
	f := newFixture(t, "")
	_, foreign, _ := ed25519.GenerateKey(nil)
	g := chain.Genesis()
	// Signed by another key and claiming it as producer.
	f.rejected(t, chain.Seal(&g.Header, nil, 1, foreign), 0)
	// Claiming our producer but signed by another key.
	b := chain.Seal(&g.Header, nil, 1, f.key)
	h := b.Hash()
	copy(b.Signature[:], ed25519.Sign(foreign, h[:]))
	f.rejected(t, b, 0)
}

func TestPeerRejectsSkippedHeight(t *testing.T) {
	f := newFixture(t, "")
	b1 := f.next(chain.Genesis())
	b2 := f.next(b1)
	f.rejected(t, b2, 0)
}

func TestPeerRejectsTimestampBelowParent(t *testing.T) {
	f := newFixture(t, "")
	b1 := f.next(chain.Genesis())
	b1.Timestamp = 500
	h := b1.Hash()
	copy(b1.Signature[:], ed25519.Sign(f.key, h[:]))
	f.peer.accept([]*chain.Block{b1}, f.producer, "test")
	b2 := chain.Seal(&b1.Header, nil, 0, f.key)
	b2.Timestamp = 499
	h = b2.Hash()
	copy(b2.Signature[:], ed25519.Sign(f.key, h[:]))
	f.rejected(t, b2, 1)
}

func TestPeerRejectsEntriesNotMatchingRoot(t *testing.T) {
	f := newFixture(t, "")
	b1 := f.next(chain.Genesis(), signed(t, 2)...)
	b1.Entries[1].MessageHash[0] ^= 1 // the signed header no longer covers the entries
	f.rejected(t, b1, 0)
}

func TestPeerStoresValidPrefixOfCatchUp(t *testing.T) {
	f := newFixture(t, "")
	b1 := f.next(chain.Genesis())
	b2 := f.next(b1)
	b3 := f.next(b2)
	b3.Signature[0] ^= 1
	if n := f.peer.accept([]*chain.Block{b1, b2, b3}, f.producer, "test"); n != 2 {
		t.Fatalf("stored %d blocks, want the 2 valid ones", n)
	}
	if tip := f.st.Tip(); tip.Height != 2 {
		t.Fatalf("tip %d, want 2", tip.Height)
	}
}

// TestPeerGossipNeedsLeaderConnectionAndSignature: gossip carries no pubsub
// signature, so a gossiped block is taken only from the connection to the
// leader, and only with the producer's signature on it.
func TestPeerGossipNeedsLeaderConnectionAndSignature(t *testing.T) {
	f := newFixture(t, "")
	const leaderID, otherID = "12D3KooWLeader", "12D3KooWOther"
	ctx := context.Background()
	b1 := f.next(chain.Genesis(), signed(t, 2)...)
	_, foreign, _ := ed25519.GenerateKey(nil)
	forged := chain.Seal(&chain.Genesis().Header, nil, 1, foreign)
	copy(forged.Producer[:], f.producer[:])
	for _, r := range []p2p.Received{
		{From: otherID, Data: b1.Encode()},      // valid, but not from the leader
		{From: leaderID, Data: forged.Encode()}, // from the leader's connection, not its signature
		{From: leaderID, Data: []byte("junk")},  // undecodable
	} {
		if err := f.peer.onGossip(ctx, r, leaderID, f.producer); err != nil {
			t.Fatal(err)
		}
		if tip := f.st.Tip(); tip.Height != 0 {
			t.Fatalf("gossip from %s moved the tip to %d", r.From, tip.Height)
		}
	}
	if err := f.peer.onGossip(ctx, p2p.Received{From: leaderID, Data: b1.Encode()}, leaderID, f.producer); err != nil {
		t.Fatal(err)
	}
	if tip := f.st.Tip(); tip.Height != 1 || tip.Hash != b1.Hash() {
		t.Fatalf("tip %d %s, want block 1 %s from the leader", tip.Height, tip.Hash, b1.Hash())
	}
}

// fakeLeader answers GET /message/{id} with whatever msg says, and GET
// /health with health.
func fakeLeader(t *testing.T, health api.Health, msg *api.Message) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(health) })
	mux.HandleFunc("GET /message/{id}", func(w http.ResponseWriter, _ *http.Request) {
		if msg == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"unknown"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(msg)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPeerFetchesAndKeepsVerifiedMessage(t *testing.T) {
	var view api.Message
	srv := fakeLeader(t, api.Health{}, &view)
	f := newFixture(t, srv.URL)
	msgs := signed(t, 5)
	b1 := f.next(chain.Genesis(), msgs...)
	f.peer.accept([]*chain.Block{b1}, f.producer, "test")
	var err error
	if view, err = viewIn(b1, store.Confirmed{Message: msgs[3], Height: 1, Index: 3}, chain.NewTree(b1.Entries)); err != nil {
		t.Fatal(err)
	}
	c := &peerChain{blocks: blocks{f.st}, p: f.peer}
	got, err := c.Message(context.Background(), msgs[3].ID())
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if got.Status != api.StatusConfirmed || *got.BlockHeight != 1 || *got.Index != 3 {
		t.Fatalf("got %+v", got)
	}
	if _, err := f.st.Message(msgs[3].ID()); err != nil {
		t.Fatalf("verified message not kept: %v", err)
	}
}

func TestPeerRefusesMessageNotMatchingProof(t *testing.T) {
	var view api.Message
	srv := fakeLeader(t, api.Health{}, &view)
	f := newFixture(t, srv.URL)
	msgs := signed(t, 4)
	b1 := f.next(chain.Genesis(), msgs...)
	f.peer.accept([]*chain.Block{b1}, f.producer, "test")

	// The leader answers with a message whose content differs from what the
	// block committed to; it is correctly signed by its sender, so only the
	// inclusion proof can catch it.
	_, sender, _ := ed25519.GenerateKey(nil)
	orig := chain.SignMessage(sender, 9, "original")
	orig.Timestamp = 1000
	b2 := f.next(b1, orig)
	f.peer.accept([]*chain.Block{b2}, f.producer, "test")
	forged := chain.SignMessage(sender, 9, "forged")
	forged.Timestamp = 1000
	if view, _ = viewIn(b2, store.Confirmed{Message: orig, Height: 2, Index: 0}, chain.NewTree(b2.Entries)); view.Content != "original" {
		t.Fatal("setup")
	}
	proof := view.Proof
	view = api.NewMessage(&forged)
	view.Confirm(2, 0, proof)

	c := &peerChain{blocks: blocks{f.st}, p: f.peer}
	_, err := c.Message(context.Background(), orig.ID())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadGateway {
		t.Fatalf("want a 502 refusal, got %v", err)
	}
	if !errors.Is(err, chain.ErrBadProof) {
		t.Fatalf("refusal does not say the proof failed: %v", err)
	}
	if _, err := f.st.Message(orig.ID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused message was kept: %v", err)
	}
}

// A leader that answers about another message than the one asked for was
// reached and answered wrongly: 502, not the 503 of a leader that is away.
func TestPeerRefusesAnswerAboutAnotherMessage(t *testing.T) {
	msgs := signed(t, 2)
	view := api.NewMessage(&msgs[1])
	srv := fakeLeader(t, api.Health{}, &view)
	f := newFixture(t, srv.URL)
	_, err := (&peerChain{blocks: blocks{f.st}, p: f.peer}).Message(context.Background(), msgs[0].ID())
	var se *api.StatusError
	var bad *api.BadAnswerError
	if !errors.As(err, &se) || se.Code != http.StatusBadGateway || !errors.As(err, &bad) {
		t.Fatalf("answer about message %s when %s was asked: %v; want a 502 refusal", msgs[1].ID(), msgs[0].ID(), err)
	}
}

func TestPeerReturnsPendingWithoutKeeping(t *testing.T) {
	_, sender, _ := ed25519.GenerateKey(nil)
	m := chain.SignMessage(sender, 1, "waiting")
	view := api.NewMessage(&m)
	srv := fakeLeader(t, api.Health{}, &view)
	f := newFixture(t, srv.URL)
	got, err := (&peerChain{blocks: blocks{f.st}, p: f.peer}).Message(context.Background(), m.ID())
	if err != nil || got.Status != api.StatusPending {
		t.Fatalf("got %+v, %v; want pending", got, err)
	}
	if _, err := f.st.Message(m.ID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pending message was kept: %v", err)
	}
}

func TestPeerRefusesLeaderWithAnotherProducer(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(nil)
	id, err := p2p.PeerIDFromPublicKey(other.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	srv := fakeLeader(t, api.Health{Status: "ok", Role: api.RoleLeader, GenesisHash: chain.GenesisHash, PeerID: id}, nil)
	f := newFixture(t, srv.URL)
	_, _, err = f.peer.contact(context.Background())
	if !errors.Is(err, ErrWrongLeader) {
		t.Fatalf("want ErrWrongLeader, got %v", err)
	}
	if pinned, _, _ := f.st.Producer(); pinned != f.producer {
		t.Fatal("pinned producer changed")
	}
}

// At first contact a peer refuses a node with another genesis, and a node
// that is not a leader (--leader-rpc naming another peer, or this node,
// whose key would make the real leader's blocks, and the real leader
// itself, refused for good), and pins nothing.
func TestPeerRefusesAtFirstContactAndPinsNothing(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	id, _ := p2p.PeerIDFromPublicKey(key.Public().(ed25519.PublicKey))
	for name, h := range map[string]api.Health{
		"another genesis": {Status: "ok", Role: api.RoleLeader, GenesisHash: chain.Hash{1}, PeerID: id},
		"not a leader":    {Status: "ok", Role: api.RolePeer, GenesisHash: chain.GenesisHash, PeerID: id},
	} {
		srv := fakeLeader(t, h, nil)
		st, err := store.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		p := newPeer(&Config{LeaderRPC: srv.URL, Log: discard()}, st)
		if _, _, err := p.contact(context.Background()); !errors.Is(err, ErrWrongLeader) {
			t.Errorf("%s: contact = %v, want ErrWrongLeader", name, err)
		}
		if _, ok, _ := st.Producer(); ok {
			t.Errorf("%s: a producer was pinned from a refused node", name)
		}
		_ = st.Close()
	}
}

// stop leaves no connection to the leader behind: the peer's keep-alive
// connections (and their goroutines) end with it.
func TestPeerStopClosesConnectionsToLeader(t *testing.T) {
	srv := fakeLeader(t, api.Health{Status: "ok", Role: api.RoleLeader, GenesisHash: chain.GenesisHash}, nil)
	f := newFixture(t, srv.URL)
	before := goleak.IgnoreCurrent()
	if _, err := f.peer.leader.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(before); err == nil {
		t.Fatal("no connection goroutine after a request: the test sees nothing")
	}
	f.peer.stop()
	if err := goleak.Find(before); err != nil {
		t.Errorf("after stop: %v", err)
	}
}

// A leader whose answers to large catch-up requests fail (here: any over
// 100 blocks, as a link too slow to carry them within the client's
// timeout would) is still caught up with: the requests shrink after a
// failure and grow again after each answer.
func TestPeerCatchUpShrinksRequestsThatFail(t *testing.T) {
	var (
		f      *fixture
		blocks []*chain.Block
		mu     sync.Mutex
		asked  []int // the limit of each request
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blocks", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		mu.Lock()
		asked = append(asked, limit)
		mu.Unlock()
		if limit > 100 {
			http.Error(w, `{"error":"too slow"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", api.BlockRecordsType)
		var out []byte
		for h := from; h <= len(blocks) && h < from+limit; h++ {
			rec := blocks[h-1].Encode()
			out = binary.BigEndian.AppendUint32(out, uint32(len(rec)))
			out = append(out, rec...)
		}
		_, _ = w.Write(out)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f = newFixture(t, srv.URL)
	parent := chain.Genesis()
	for range 300 {
		parent = f.next(parent)
		blocks = append(blocks, parent)
	}
	for range 20 { // each failed request ends a catch-up; the run loop retries
		if err := f.peer.catchUp(context.Background(), f.producer); err == nil {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if tip := f.st.Tip(); tip.Height != 300 {
		t.Fatalf("peer at height %d after catching up, want 300 (requests asked for %v)", tip.Height, asked)
	}
	shrank, grew := false, false
	for i := 1; i < len(asked); i++ {
		shrank = shrank || asked[i-1] > 100 && asked[i] == asked[i-1]/4
		grew = grew || asked[i-1] <= 100 && asked[i] == 2*asked[i-1]
	}
	if !shrank || !grew {
		t.Errorf("requests asked for %v: want a quarter after a failure (%v) and twice as many after an answer (%v)", asked, shrank, grew)
	}
}

// A leader that answers but whose blocks are refused (here: signed by
// another key than the one it reports) is not being followed: follow says
// so, and run backs off from it as from a leader that is away, instead of
// asking it for blocks ten times a second.
func TestPeerRefusedCatchUpIsNotFollowing(t *testing.T) {
	_, leaderKey, _ := ed25519.GenerateKey(nil)
	id, err := p2p.PeerIDFromPublicKey(leaderKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	_, forger, _ := ed25519.GenerateKey(nil)
	forged := chain.Seal(&chain.Genesis().Header, nil, 1, forger).Encode()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(api.Health{Status: "ok", Role: api.RoleLeader, GenesisHash: chain.GenesisHash, PeerID: id, P2PAddrs: []string{}})
	})
	mux.HandleFunc("GET /blocks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.BlockRecordsType)
		if r.URL.Query().Get("from") == "1" {
			_, _ = w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(forged))), forged...))
		}
	})
	p, st, host := followerOf(t, mux)
	t.Cleanup(p.dials.Wait)

	followed, err := p.follow(t.Context(), host)
	if followed || err == nil {
		t.Fatalf("follow of a leader whose block 1 is refused = %v, %v; want false and the reason", followed, err)
	}
	if tip := st.Tip(); tip.Height != 0 {
		t.Fatalf("peer stored the forged block: tip %d", tip.Height)
	}
}

// A fatal refusal ends run at once, not after a p2p dial that hangs (one to
// an address that takes connections and never answers waits out libp2p's
// timeout of 5 s): here the node at --leader-rpc says it is a peer from its
// second answer on, which the first poll's re-contact finds.
func TestPeerRefusalDoesNotWaitForDial(t *testing.T) {
	tarpit, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tarpit.Close() })
	_, leaderKey, _ := ed25519.GenerateKey(nil)
	id, _ := p2p.PeerIDFromPublicKey(leaderKey.Public().(ed25519.PublicKey))
	addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tarpit.Addr().(*net.TCPAddr).Port, id)
	var answers atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		role := api.RoleLeader
		if answers.Add(1) > 1 {
			role = api.RolePeer
		}
		_ = json.NewEncoder(w).Encode(api.Health{Status: "ok", Role: role, GenesisHash: chain.GenesisHash, PeerID: id, P2PAddrs: []string{addr}})
	})
	mux.HandleFunc("GET /height", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(api.Height{Height: 0, Hash: chain.Genesis().Hash()})
	})
	mux.HandleFunc("GET /blocks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", api.BlockRecordsType)
	})
	p, _, host := followerOf(t, mux)

	start := time.Now()
	if err := p.run(t.Context(), host); !errors.Is(err, ErrWrongLeader) {
		t.Fatalf("run = %v, want ErrWrongLeader", err)
	}
	// The refusal is found at the first poll, about a second in; the dial
	// started before it would hold run until 5 s.
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("run returned the refusal after %v: it waited for the hanging dial", took)
	}
}

// followerOf returns a peer of its own store and libp2p host (on
// 127.0.0.1) whose leader is a test server of leader's routes.
func followerOf(t *testing.T, leader http.Handler) (*peer, *store.Store, *p2p.Host) {
	t.Helper()
	srv := httptest.NewServer(leader)
	t.Cleanup(srv.Close)
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_, nodeKey, _ := ed25519.GenerateKey(nil)
	host, err := p2p.New(t.Context(), p2p.Config{Key: nodeKey, ListenAddr: "/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Close() })
	return newPeer(&Config{LeaderRPC: srv.URL, Log: discard()}, st), st, host
}

// A peer whose chain has lost its meta:producer pin still knows the
// chain's producer from block 1, as the leader does
// (TestLeaderRefusesChainOfAnotherKeyWithoutPin): it refuses a leader of
// another key instead of pinning it, which would make the next start
// refuse its intact chain.
func TestPeerWithoutPinRefusesLeaderOfAnotherKey(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, owner, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	if err := st.Commit(store.Commit{Blocks: []*chain.Block{chain.Seal(&chain.Genesis().Header, nil, 1, owner)}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Producer(); ok {
		t.Fatal("committing a block pinned its producer: the test needs a chain without a pin")
	}
	id, _ := p2p.PeerIDFromPublicKey(other.Public().(ed25519.PublicKey))
	srv := fakeLeader(t, api.Health{Status: "ok", Role: api.RoleLeader, GenesisHash: chain.GenesisHash, PeerID: id}, nil)
	p := newPeer(&Config{LeaderRPC: srv.URL, Log: discard()}, st)
	if _, _, err := p.contact(context.Background()); !errors.Is(err, ErrWrongLeader) {
		t.Errorf("contact with a leader of another key = %v, want ErrWrongLeader", err)
	}
	if _, ok, _ := st.Producer(); ok {
		t.Error("the other leader's key was pinned")
	}
	_ = st.Close()
	st, err = store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.VerifyChain(context.Background(), nil); err != nil {
		t.Errorf("after contact, the intact chain fails its integrity check: %v", err)
	}
}

// A fetched message whose block the peer holds but cannot read (its own
// disk's damage) is the peer's failure, answered 500, not "not on this
// peer yet" (503), which would send the client to retry for ever.
func TestPeerFetchOverDamagedBlockIsItsOwnFailure(t *testing.T) {
	var view api.Message
	srv := fakeLeader(t, api.Health{}, &view)
	f := newFixture(t, srv.URL)
	msgs := signed(t, 5)
	b1 := f.next(chain.Genesis(), msgs...)
	var err error
	if view, err = viewIn(b1, store.Confirmed{Message: msgs[3], Height: 1, Index: 3}, chain.NewTree(b1.Entries)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(store.Commit{Blocks: []*chain.Block{b1}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil { // the block is in a table now
		t.Fatal(err)
	}
	storetest.FlipBitInTables(t, dir, b1.Signature[16:48], 16, false) // the middle: compression keeps it
	if st, err = store.Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Block(1); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("reading the damaged block 1: %v; the test needs a read that fails", err)
	}
	f.peer.st = st
	_, err = (&peerChain{blocks: blocks{st}, p: f.peer}).Message(context.Background(), msgs[3].ID())
	var se *api.StatusError
	if err == nil || errors.As(err, &se) { // a plain error is a 500
		t.Fatalf("fetch over a damaged block: %v; want the store's error (500)", err)
	}
}
