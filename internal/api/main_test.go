package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const maxContent = 256

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var (
	senderKey   = testKey(1)
	producerKey = testKey(2)
)

func sign(nonce uint64, content string) chain.Message {
	return chain.SignMessage(senderKey, nonce, content)
}

// testChain answers the read routes from a real store and pool, the way a
// leader does, and records what the server asked of it.
type testChain struct {
	st   *store.Store
	pool *mempool.Pool

	mu                      sync.Mutex
	lastLimit, lastMaxBytes int
	blockErr                error // when set, Block fails with it
	// listingGate, when set, holds BlockMessages until it can receive;
	// listing counts the calls in progress, maxListing the most at once.
	listingGate         chan struct{}
	listing, maxListing int
}

func (c *testChain) Health() api.Health {
	t := c.st.Tip()
	return api.Health{
		Status: "ok", Role: "leader", Height: t.Height, Hash: t.Hash, GenesisHash: chain.GenesisHash,
		PeerID: "12D3KooWtest", P2PAddrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Pending: c.pool.Len(),
	}
}

func (c *testChain) Tip() store.Tip { return c.st.Tip() }

func (c *testChain) Block(h uint64) (*chain.Block, error) {
	c.mu.Lock()
	err := c.blockErr
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if h > c.st.Tip().Height {
		return nil, store.ErrNotFound
	}
	return c.st.Block(h)
}

func (c *testChain) BlockRecords(from uint64, limit, maxBytes int) ([][]byte, error) {
	c.mu.Lock()
	c.lastLimit, c.lastMaxBytes = limit, maxBytes
	c.mu.Unlock()
	return c.st.BlockRecords(from, limit, maxBytes)
}

func (c *testChain) confirmed(conf store.Confirmed) (api.Message, error) {
	b, err := c.st.Block(conf.Height)
	if err != nil {
		return api.Message{}, err
	}
	proof, err := chain.InclusionProof(b.Entries, int(conf.Index))
	if err != nil {
		return api.Message{}, err
	}
	v := api.NewMessage(&conf.Message)
	v.Confirm(conf.Height, conf.Index, proof)
	return v, nil
}

func (c *testChain) Message(_ context.Context, id chain.Hash) (api.Message, error) {
	if conf, err := c.st.Message(id); err == nil {
		return c.confirmed(conf)
	}
	if m, ok := c.pool.Get(id); ok {
		return api.NewMessage(&m), nil
	}
	return api.Message{}, store.ErrNotFound
}

func (c *testChain) inListing() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listing
}

func (c *testChain) BlockMessages(_ context.Context, b *chain.Block) ([]api.Message, error) {
	c.mu.Lock()
	c.listing++
	c.maxListing = max(c.maxListing, c.listing)
	gate := c.listingGate
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.listing--
		c.mu.Unlock()
	}()
	if gate != nil {
		<-gate
	}
	out := make([]api.Message, len(b.Entries))
	for i, e := range b.Entries {
		conf, err := c.st.Message(e.ID)
		if err != nil {
			return nil, err
		}
		if out[i], err = c.confirmed(conf); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// node is a leader's store, pool and HTTP server.
type node struct {
	t     *testing.T
	st    *store.Store
	pool  *mempool.Pool
	chain *testChain
	srv   *httptest.Server
	api   *api.Server
	now   atomic.Uint64
	// started counts requests the server began to read.
	started atomic.Int64
}

// newNode starts a leader's API; configure, if given, changes its config.
func newNode(t *testing.T, configure ...func(*api.Config)) *node {
	t.Helper()
	n := &node{t: t}
	n.now.Store(1_700_000_000_000)
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.SetProducer(chain.PublicKey(producerKey.Public().(ed25519.PublicKey))); err != nil {
		t.Fatal(err)
	}
	pool, err := mempool.Open(st, mempool.Options{MaxContent: maxContent, Now: func() uint64 { return n.now.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	n.st, n.pool = st, pool
	n.chain = &testChain{st: st, pool: pool}
	cfg := api.Config{Chain: n.chain, Submitter: pool, MaxContent: maxContent}
	for _, f := range configure {
		f(&cfg)
	}
	n.api = api.NewServer(cfg)
	n.srv = httptest.NewUnstartedServer(n.api)
	n.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateActive {
			n.started.Add(1)
		}
	}
	n.srv.Start()
	t.Cleanup(n.srv.Close)
	return n
}

// seal submits msgs and commits them as the next block, as the leader does.
func (n *node) seal(msgs ...chain.Message) *chain.Block {
	n.t.Helper()
	if _, errs := n.pool.Submit(msgs); errors.Join(errs...) != nil {
		n.t.Fatal(errors.Join(errs...))
	}
	taken := n.pool.Peek(len(msgs))
	conf := make([]store.Confirmed, len(taken))
	seqs := make([]uint64, len(taken))
	sealed := make([]chain.Message, len(taken))
	tip := n.st.Tip()
	for i, p := range taken {
		sealed[i], seqs[i] = p.Message, p.Seq
		conf[i] = store.Confirmed{Message: p.Message, Height: tip.Height + 1, Index: uint32(i)}
	}
	b := chain.Seal(&tip.Header, sealed, n.now.Add(1000), producerKey)
	if err := n.st.Commit(store.Commit{Blocks: []*chain.Block{b}, Messages: conf, Pending: seqs}); err != nil {
		n.t.Fatal(err)
	}
	n.pool.Remove(len(taken))
	return b
}

// response is a finished HTTP exchange.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request and returns the answer as it is: the API never
// redirects, so a redirect is not followed but returned.
func (n *node) do(method, path string, body string, header ...string) response {
	n.t.Helper()
	c := *n.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return doURL(n.t, &c, method, n.srv.URL+path, body, header...)
}

func doURL(t *testing.T, c *http.Client, method, url, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

func (n *node) get(path string) response { n.t.Helper(); return n.do(http.MethodGet, path, "") }

// object decodes a JSON object answer, checking the status and content type.
func object(t *testing.T, r response, code int) map[string]json.RawMessage {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %s is not a JSON object: %v", r.body, err)
	}
	return m
}

// keys asserts the object has exactly the named fields.
func keys(t *testing.T, m map[string]json.RawMessage, want ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("fields %v, want exactly %v", got, want)
	}
}

// field decodes one field of an object.
func field[T any](t *testing.T, m map[string]json.RawMessage, name string) T {
	t.Helper()
	var v T
	raw, ok := m[name]
	if !ok {
		t.Fatalf("no field %q", name)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("field %q = %s: %v", name, raw, err)
	}
	return v
}

// wantError asserts an error answer: the status, a JSON body
// {"error": "..."} and, when withID, also the "id".
func wantError(t *testing.T, r response, code int, withID bool) map[string]json.RawMessage {
	t.Helper()
	m := object(t, r, code)
	if withID {
		keys(t, m, "error", "id")
	} else {
		keys(t, m, "error")
	}
	if reason := field[string](t, m, "error"); reason == "" {
		t.Fatal("empty error reason")
	}
	return m
}

func hexOf(b []byte) string { return fmt.Sprintf("%x", b) }

// submission is the JSON body that submits m.
func submission(m chain.Message) string {
	b, _ := json.Marshal(map[string]any{
		"sender": hexOf(m.Sender[:]), "nonce": m.Nonce, "content": m.Content, "signature": hexOf(m.Signature[:]),
	})
	return string(b)
}

// idOf is the ID of the test sender's message with nonce.
func idOf(nonce uint64) chain.Hash {
	return chain.MessageID(chain.PublicKey(senderKey.Public().(ed25519.PublicKey)), nonce)
}
