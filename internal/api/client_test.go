package api_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

func TestClient(t *testing.T) {
	n := newNode(t)
	b := n.seal(sign(1, "a"), sign(2, "b"))
	c := api.NewClient(n.srv.URL + "/")
	if c.Base() != n.srv.URL {
		t.Fatalf("Base = %q, want %q without the trailing slash", c.Base(), n.srv.URL)
	}
	ctx := t.Context()

	h, err := c.Health(ctx)
	if err != nil || h.Status != "ok" || h.Role != "leader" || h.Height != 1 || h.Hash != b.Hash() || h.GenesisHash != chain.GenesisHash {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	ht, err := c.Height(ctx)
	if err != nil || ht.Height != 1 || ht.Hash != b.Hash() {
		t.Fatalf("Height = %+v, %v", ht, err)
	}
	latest, err := c.Latest(ctx)
	if err != nil || latest.Hash != b.Hash() || latest.MessageCount != 2 || latest.Messages != nil {
		t.Fatalf("Latest = %+v, %v", latest, err)
	}
	jb, err := c.Block(ctx, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if jb.Height != 1 || jb.Hash != b.Hash() || jb.MessageRoot != b.MessageRoot || string(jb.Producer) != string(b.Producer[:]) ||
		string(jb.Signature) != string(b.Signature[:]) || len(jb.MessageIDs) != 2 || len(jb.Messages) != 2 {
		t.Fatalf("Block(1, true) = %+v", jb)
	}
	for i, jm := range jb.Messages {
		m, err := jm.ToChain()
		if err != nil || chain.EntryOf(&m) != b.Entries[i] || jm.Status != api.StatusConfirmed || *jm.Index != uint32(i) {
			t.Fatalf("block message %d = %+v, %v", i, jm, err)
		}
		if err := chain.VerifyInclusion(b.MessageRoot, 2, uint64(i), b.Entries[i], jm.Proof); err != nil {
			t.Fatal(err)
		}
	}
	if g, err := c.Block(ctx, 0, false); err != nil || g.Hash != chain.GenesisHash || len(g.MessageIDs) != 0 {
		t.Fatalf("Block(0) = %+v, %v", g, err)
	}

	var he *api.HTTPError
	if _, err := c.Block(ctx, 7, false); !errors.As(err, &he) || he.Code != http.StatusNotFound || !strings.Contains(he.Reason, "7") {
		t.Fatalf("Block(7) = %v, want an HTTPError 404 naming the height", err)
	}

	m := sign(3, "submitted by the client")
	a, err := c.Submit(ctx, &m)
	if err != nil || a.ID != m.ID() || a.Status != api.StatusPending {
		t.Fatalf("Submit = %+v, %v", a, err)
	}
	got, err := c.Message(ctx, m.ID())
	if err != nil || got.Status != api.StatusPending || got.Content != m.Content || got.BlockHeight != nil || got.Proof != nil {
		t.Fatalf("Message of a pending one = %+v, %v", got, err)
	}
	confirmed, err := c.Message(ctx, b.Entries[1].ID)
	if err != nil || confirmed.Status != api.StatusConfirmed || *confirmed.BlockHeight != 1 || *confirmed.Index != 1 {
		t.Fatalf("Message of a confirmed one = %+v, %v", confirmed, err)
	}
	if _, err := c.Submit(ctx, &m); !errors.As(err, &he) || he.Code != http.StatusConflict || he.ID == nil || *he.ID != m.ID() {
		t.Fatalf("duplicate Submit = %v, want an HTTPError 409 with the ID", err)
	}
	bad := sign(4, "x")
	bad.Content = "y"
	if _, err := c.Submit(ctx, &bad); !errors.As(err, &he) || he.Code != http.StatusBadRequest || he.Reason == "" {
		t.Fatalf("Submit with a bad signature = %v, want an HTTPError 400", err)
	}
	if _, err := c.Message(ctx, idOf(99)); !errors.As(err, &he) || he.Code != http.StatusNotFound {
		t.Fatalf("Message of an unknown ID = %v, want an HTTPError 404", err)
	}

	results, err := c.SubmitBatch(ctx, []chain.Message{sign(5, "e"), m, sign(6, "f")})
	if err != nil || len(results) != 3 {
		t.Fatalf("SubmitBatch = %+v, %v", results, err)
	}
	if results[0].Status != api.StatusPending || *results[0].ID != idOf(5) ||
		results[1].Code != http.StatusConflict || *results[1].ID != m.ID() ||
		results[2].Status != api.StatusPending || *results[2].ID != idOf(6) {
		t.Fatalf("SubmitBatch results %+v", results)
	}

	blocks, err := c.BlockRecords(ctx, 0, 10)
	if err != nil || len(blocks) != 2 || blocks[1].Hash() != b.Hash() || blocks[0].Hash() != chain.GenesisHash {
		t.Fatalf("BlockRecords = %v, %v", blocks, err)
	}
}

// The client refuses answers that are not what it asked for.
func TestClientRefusesBadAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/blocks":
			if r.URL.Query().Get("from") == "1" {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"blocks":[]}`))
				return
			}
			w.Header().Set("Content-Type", api.BlockRecordsType)
			_, _ = w.Write([]byte{0, 0, 1, 0, 1, 2}) // a record of 256 bytes, 2 given
		case "/height":
			_, _ = w.Write([]byte("not json"))
		case "/latest", "/block/1": // an answer that never ends
			chunk := make([]byte, 1<<20)
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/message/" + strings.Repeat("11", 32): // about another message
			_, _ = w.Write([]byte(`{"id":"` + strings.Repeat("00", 32) + `","status":"pending"}`))
		case "/message/" + strings.Repeat("22", 32): // neither pending nor confirmed
			_, _ = w.Write([]byte(`{"id":"` + strings.Repeat("22", 32) + `","status":"lost"}`))
		case "/message": // 202, but for another message
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"id":"` + strings.Repeat("00", 32) + `","status":"pending"}`))
		case "/messages": // a proxy's error page
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>\n<body>\n" + strings.Repeat("<p>bad gateway</p>\n", 100) + "</body>\n</html>\n"))
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("plain text failure"))
		}
	}))
	defer srv.Close()
	c := api.NewClient(srv.URL)
	ctx := t.Context()
	if _, err := c.BlockRecords(ctx, 0, 1); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated records: %v", err)
	}
	if _, err := c.BlockRecords(ctx, 1, 1); err == nil {
		t.Error("BlockRecords accepted a JSON answer")
	}
	if _, err := c.Height(ctx); err == nil {
		t.Error("Height accepted a body that is not JSON")
	}
	if _, err := c.Latest(ctx); err == nil || !strings.Contains(err.Error(), "answer over") {
		t.Errorf("Latest of an endless answer: %v", err)
	}
	if _, err := c.BlockWithin(ctx, 1, true, 1<<20); err == nil || !strings.Contains(err.Error(), "answer over") {
		t.Errorf("BlockWithin of an endless answer: %v", err)
	}
	var he *api.HTTPError
	if _, err := c.Health(ctx); !errors.As(err, &he) || he.Code != http.StatusBadGateway || he.Reason != "plain text failure" {
		t.Errorf("Health from a failing server = %v", err)
	}
	if _, err := c.SubmitBatch(ctx, []chain.Message{sign(1, "x")}); !errors.As(err, &he) || he.Code != http.StatusBadGateway ||
		strings.ContainsAny(he.Reason, "\r\n") || len(he.Reason) > 210 || !strings.HasPrefix(he.Reason, "<html> <body> <p>bad gateway</p>") {
		t.Errorf("SubmitBatch answered by an HTML page = %v; want a 502 with its start on one line", err)
	}
	m := sign(2, "y")
	if _, err := c.Submit(ctx, &m); err == nil || !strings.Contains(err.Error(), "does not acknowledge") {
		t.Errorf("Submit acknowledged with another message's ID: %v", err)
	}
	var asked chain.Hash
	copy(asked[:], bytes.Repeat([]byte{0x11}, chain.HashSize))
	if _, err := c.Message(ctx, asked); err == nil || !strings.Contains(err.Error(), "about message") {
		t.Errorf("Message answered about another message: %v", err)
	}
	copy(asked[:], bytes.Repeat([]byte{0x22}, chain.HashSize))
	if _, err := c.Message(ctx, asked); err == nil || !strings.Contains(err.Error(), `status "lost"`) {
		t.Errorf("Message answered with an unknown status: %v", err)
	}
}

// A node dials other nodes directly: neither its client nor a peer's
// forwarding to the leader takes a proxy from the environment (HTTP_PROXY
// and the like), which would be an address nobody gave it.
func TestNodeRequestsUseNoProxy(t *testing.T) {
	srv := api.NewServer(api.Config{Chain: nil, LeaderURL: "http://leader.example:8545", MaxContent: 1024})
	client, forward := api.Transports(api.NewClient("http://leader.example:8545"), srv)
	for name, rt := range map[string]http.RoundTripper{"client": client, "forwarding": forward} {
		tr, ok := rt.(*http.Transport)
		if !ok {
			t.Errorf("%s: transport %T, want *http.Transport", name, rt)
			continue
		}
		if tr.Proxy != nil {
			t.Errorf("%s: the transport has a proxy function; want none", name)
		}
	}
}
