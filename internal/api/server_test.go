package api_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/store"
)

var blockFields = []string{"height", "timestamp", "prev_hash", "message_root", "producer", "signature", "hash", "message_count", "message_ids"}

func TestHealth(t *testing.T) {
	n := newNode(t)
	n.seal(sign(1, "a"))
	if _, errs := n.pool.Submit([]chain.Message{sign(2, "pending")}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	m := object(t, n.get("/health"), http.StatusOK)
	keys(t, m, "status", "role", "height", "hash", "genesis_hash", "peer_id", "p2p_addrs", "pending")
	tip := n.st.Tip()
	if field[string](t, m, "status") != "ok" || field[string](t, m, "role") != "leader" ||
		field[uint64](t, m, "height") != 1 || field[string](t, m, "hash") != tip.Hash.String() ||
		field[string](t, m, "genesis_hash") != chain.GenesisHash.String() ||
		field[string](t, m, "peer_id") != "12D3KooWtest" || field[int](t, m, "pending") != 1 ||
		len(field[[]string](t, m, "p2p_addrs")) != 1 {
		t.Fatalf("health %s", n.get("/health").body)
	}
}

func TestHeight(t *testing.T) {
	n := newNode(t)
	m := object(t, n.get("/height"), http.StatusOK)
	keys(t, m, "height", "hash")
	if field[uint64](t, m, "height") != 0 || field[string](t, m, "hash") != chain.GenesisHash.String() {
		t.Fatalf("height of a new chain: %v", m)
	}
	b := n.seal(sign(1, "a"))
	m = object(t, n.get("/height"), http.StatusOK)
	if field[uint64](t, m, "height") != 1 || field[string](t, m, "hash") != b.Hash().String() {
		t.Fatalf("height after a block: %v", m)
	}
}

// checkBlock asserts the JSON block is b, field by field, in SPEC's names.
func checkBlock(t *testing.T, m map[string]json.RawMessage, b *chain.Block) {
	t.Helper()
	ids := make([]string, len(b.Entries))
	for i, e := range b.Entries {
		ids[i] = e.ID.String()
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"height", field[uint64](t, m, "height"), b.Height},
		{"timestamp", field[uint64](t, m, "timestamp"), b.Timestamp},
		{"prev_hash", field[string](t, m, "prev_hash"), b.PrevHash.String()},
		{"message_root", field[string](t, m, "message_root"), b.MessageRoot.String()},
		{"producer", field[string](t, m, "producer"), hexOf(b.Producer[:])},
		{"signature", field[string](t, m, "signature"), hexOf(b.Signature[:])},
		{"hash", field[string](t, m, "hash"), b.Hash().String()},
		{"message_count", field[int](t, m, "message_count"), len(b.Entries)},
		{"message_ids", fmt.Sprint(field[[]string](t, m, "message_ids")), fmt.Sprint(ids)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("block %d %s = %v, want %v", b.Height, c.name, c.got, c.want)
		}
	}
	if string(m["message_ids"]) == "null" {
		t.Errorf("block %d message_ids is null, want a list", b.Height)
	}
}

func TestBlock(t *testing.T) {
	n := newNode(t)
	b1 := n.seal(sign(1, "a"), sign(2, "b"), sign(3, "c"))
	b2 := n.seal()

	m := object(t, n.get("/block/0"), http.StatusOK)
	keys(t, m, blockFields...)
	checkBlock(t, m, chain.Genesis())
	for _, b := range []*chain.Block{b1, b2} {
		for _, q := range []string{"", "?messages=false", "?messages=0"} {
			m := object(t, n.get(fmt.Sprintf("/block/%d%s", b.Height, q)), http.StatusOK)
			keys(t, m, blockFields...)
			checkBlock(t, m, b)
		}
	}
	m = object(t, n.get("/latest"), http.StatusOK)
	keys(t, m, blockFields...)
	checkBlock(t, m, b2)
}

// ?messages=true adds the block's messages in block order, each confirmed
// with an inclusion proof against the block's message root.
func TestBlockWithMessages(t *testing.T) {
	n := newNode(t)
	b := n.seal(sign(1, "a"), sign(2, "b"), sign(3, "c"))
	m := object(t, n.get("/block/1?messages=true"), http.StatusOK)
	keys(t, m, append(blockFields, "messages")...)
	checkBlock(t, m, b)
	msgs := field[[]map[string]json.RawMessage](t, m, "messages")
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i, jm := range msgs {
		checkConfirmed(t, jm, b, i)
	}
	again := object(t, n.get("/latest?messages=1"), http.StatusOK)
	if len(field[[]json.RawMessage](t, again, "messages")) != 3 {
		t.Fatalf("/latest?messages=1: %s", again["messages"])
	}
	wantError(t, n.get("/block/1?messages=maybe"), http.StatusBadRequest, false)
}

// The answer, written one message at a time, is byte for byte what
// encoding/json makes of the whole block with its messages.
func TestBlockWithMessagesBytes(t *testing.T) {
	n := newNode(t)
	var msgs []chain.Message
	for i := range 300 { // past the 64 KiB the server writes at a time
		msgs = append(msgs, sign(uint64(i), strings.Repeat("<&>", 80)))
	}
	b := n.seal(msgs...)
	got := n.get("/block/1?messages=true")
	if got.code != http.StatusOK {
		t.Fatalf("status %d: %s", got.code, got.body)
	}
	want := api.NewBlock(b)
	var err error
	if want.Messages, err = n.chain.BlockMessages(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	wantBody, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.body) != string(wantBody)+"\n" {
		t.Fatalf("answer differs from encoding/json's (%d bytes against %d)", len(got.body), len(wantBody)+1)
	}
}

// At most api.MaxListings answers of a block with its messages are built at
// once; the others wait their turn and are answered in full.
func TestBlockWithMessagesListingsBounded(t *testing.T) {
	n := newNode(t)
	n.seal(sign(1, "a"))
	gate := make(chan struct{})
	// Runs before the server's own cleanup, which waits for its handlers:
	// a failure below must not leave them waiting at the gate.
	t.Cleanup(func() { close(gate) })
	n.chain.mu.Lock()
	n.chain.listingGate = gate
	n.chain.mu.Unlock()
	const clients = api.MaxListings + 3
	done := make(chan response, clients)
	for range clients {
		go func() { done <- n.get("/block/1?messages=true") }()
	}
	// Every request has reached the server; MaxListings of them are in.
	deadline := time.Now().Add(10 * time.Second)
	for n.started.Load() < clients || n.chain.inListing() < api.MaxListings {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests started, %d listings in progress", n.started.Load(), n.chain.inListing())
		}
		time.Sleep(time.Millisecond)
	}
	for range clients {
		gate <- struct{}{}
	}
	for range clients {
		if r := <-done; r.code != http.StatusOK {
			t.Fatalf("a waiting listing: status %d: %s", r.code, r.body)
		}
	}
	n.chain.mu.Lock()
	defer n.chain.mu.Unlock()
	if n.chain.maxListing != api.MaxListings {
		t.Fatalf("%d listings at once, want %d", n.chain.maxListing, api.MaxListings)
	}
}

// An empty block asked for its messages has "messages": [], not no field:
// the code means to answer [] (serveBlock replaces nil with an empty list)
// but the field's omitempty tag drops it.
func TestBlockWithMessagesEmptyBlock(t *testing.T) {
	n := newNode(t)
	n.seal()
	m := object(t, n.get("/block/1?messages=true"), http.StatusOK)
	if string(m["messages"]) != "[]" {
		t.Fatalf("messages of an empty block = %q, want []", m["messages"])
	}
}

// checkConfirmed asserts a JSON message is the index-th of block b, with a
// proof that verifies.
func checkConfirmed(t *testing.T, jm map[string]json.RawMessage, b *chain.Block, index int) {
	t.Helper()
	keys(t, jm, "id", "sender", "nonce", "content", "signature", "timestamp", "status", "block_height", "index", "proof")
	e := b.Entries[index]
	if field[string](t, jm, "id") != e.ID.String() || field[string](t, jm, "status") != "confirmed" ||
		field[uint64](t, jm, "block_height") != b.Height || field[int](t, jm, "index") != index {
		t.Fatalf("message %d of block %d: %v", index, b.Height, jm)
	}
	var m api.Message
	raw, _ := json.Marshal(jm)
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	cm, err := m.ToChain()
	if err != nil {
		t.Fatal(err)
	}
	if chain.EntryOf(&cm) != e {
		t.Fatalf("message %d does not hash to its block entry", index)
	}
	if err := cm.Verify(); err != nil {
		t.Fatalf("message %d: %v", index, err)
	}
	if err := chain.VerifyInclusion(b.MessageRoot, uint64(len(b.Entries)), uint64(index), e, m.Proof); err != nil {
		t.Fatalf("proof of message %d: %v", index, err)
	}
}

func TestBlockErrors(t *testing.T) {
	n := newNode(t)
	n.seal(sign(1, "a"))
	for _, h := range []string{"", "abc", "-1", "+1", "1.5", "0x1", "1_0", "%20"} {
		wantError(t, n.get("/block/"+h), http.StatusBadRequest, false)
	}
	// Past the tip, and past a uint64 too: still an integer, so no block.
	for _, h := range []string{"2", "18446744073709551615", "18446744073709551616", "99999999999999999999999"} {
		wantError(t, n.get("/block/"+h), http.StatusNotFound, false)
	}
}

// Errors from the chain map to their statuses, and are JSON too.
func TestChainErrorsAreJSON(t *testing.T) {
	n := newNode(t)
	n.chain.blockErr = &api.StatusError{Code: http.StatusServiceUnavailable, Err: errors.New("leader unreachable")}
	wantError(t, n.get("/block/0"), http.StatusServiceUnavailable, false)
	n.chain.blockErr = fmt.Errorf("wrapped: %w", store.ErrNotFound)
	wantError(t, n.get("/latest"), http.StatusNotFound, false)
	n.chain.blockErr = errors.New("disk on fire")
	wantError(t, n.get("/block/0"), http.StatusInternalServerError, false)
}

func TestBlocksJSON(t *testing.T) {
	n := newNode(t)
	blocks := []*chain.Block{chain.Genesis()}
	for i := range 4 {
		blocks = append(blocks, n.seal(sign(uint64(i), "m")))
	}
	m := object(t, n.get("/blocks?from=1&limit=2"), http.StatusOK)
	keys(t, m, "blocks")
	got := field[[]map[string]json.RawMessage](t, m, "blocks")
	if len(got) != 2 {
		t.Fatalf("%d blocks, want 2", len(got))
	}
	for i, jb := range got {
		keys(t, jb, blockFields...)
		checkBlock(t, jb, blocks[1+i])
	}
	all := field[[]json.RawMessage](t, object(t, n.get("/blocks?from=0"), http.StatusOK), "blocks")
	if len(all) != 5 {
		t.Fatalf("from=0 without a limit: %d blocks, want 5", len(all))
	}
	if r := object(t, n.get("/blocks?from=5"), http.StatusOK); string(r["blocks"]) != "[]" {
		t.Fatalf("blocks past the tip = %s, want []", r["blocks"])
	}
	for _, q := range []string{"", "?from=", "?from=abc", "?from=-1", "?from=0&limit=0", "?from=0&limit=-5", "?from=0&limit=x", "?from=0&limit=+5"} {
		wantError(t, n.get("/blocks"+q), http.StatusBadRequest, false)
	}
	if r := object(t, n.get("/blocks?from=99999999999999999999"), http.StatusOK); string(r["blocks"]) != "[]" {
		t.Fatalf("blocks from past a uint64 = %s, want []", r["blocks"])
	}

	// The server caps the limit it passes on.
	object(t, n.get("/blocks?from=0&limit=18446744073709551616"), http.StatusOK)
	if n.chain.lastLimit != api.MaxBlocksJSON {
		t.Errorf("JSON limit passed on: %d, want the cap %d", n.chain.lastLimit, api.MaxBlocksJSON)
	}
	n.do(http.MethodGet, "/blocks?from=0&limit=999999", "", "Accept", api.BlockRecordsType)
	if n.chain.lastLimit != api.MaxBlocksBinary {
		t.Errorf("binary limit passed on: %d, want the cap %d", n.chain.lastLimit, api.MaxBlocksBinary)
	}
	if n.chain.lastMaxBytes != api.MaxBlocksBytes {
		t.Errorf("byte budget passed on: %d, want %d", n.chain.lastMaxBytes, api.MaxBlocksBytes)
	}
}

// GET /blocks with Accept: application/x-kimura-block-records answers
// length-prefixed records, which Client.BlockRecords decodes to the blocks.
func TestBlocksBinary(t *testing.T) {
	n := newNode(t)
	blocks := []*chain.Block{chain.Genesis()}
	for i := range 5 {
		msgs := make([]chain.Message, i)
		for j := range msgs {
			msgs[j] = sign(uint64(10*i+j), "m")
		}
		blocks = append(blocks, n.seal(msgs...))
	}

	r := n.do(http.MethodGet, "/blocks?from=2&limit=3", "", "Accept", api.BlockRecordsType)
	if r.code != http.StatusOK || r.header.Get("Content-Type") != api.BlockRecordsType {
		t.Fatalf("status %d, Content-Type %q", r.code, r.header.Get("Content-Type"))
	}
	var want []byte
	for _, b := range blocks[2:5] {
		rec := b.Encode()
		want = binary.BigEndian.AppendUint32(want, uint32(len(rec)))
		want = append(want, rec...)
	}
	if string(r.body) != string(want) {
		t.Fatalf("body %x, want %x", r.body, want)
	}

	c := api.NewClient(n.srv.URL)
	for _, q := range []struct {
		from  uint64
		limit int
		want  []*chain.Block
	}{
		{0, 100, blocks},
		{2, 3, blocks[2:5]},
		{5, 10, blocks[5:]},
		{6, 10, nil},
	} {
		got, err := c.BlockRecords(t.Context(), q.from, q.limit)
		if err != nil {
			t.Fatalf("BlockRecords(%d, %d): %v", q.from, q.limit, err)
		}
		if len(got) != len(q.want) {
			t.Fatalf("BlockRecords(%d, %d): %d blocks, want %d", q.from, q.limit, len(got), len(q.want))
		}
		for i := range got {
			if string(got[i].Encode()) != string(q.want[i].Encode()) {
				t.Fatalf("BlockRecords(%d, %d)[%d] differs from block %d", q.from, q.limit, i, q.want[i].Height)
			}
			if err := got[i].CheckRecord(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestMessage(t *testing.T) {
	n := newNode(t)
	b := n.seal(sign(1, "first"), sign(2, "second"))
	if _, errs := n.pool.Submit([]chain.Message{sign(3, "pending one")}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	pending, _ := n.pool.Get(idOf(3))

	m := object(t, n.get("/message/"+pending.ID().String()), http.StatusOK)
	keys(t, m, "id", "sender", "nonce", "content", "signature", "timestamp", "status")
	checks := []struct {
		name      string
		got, want any
	}{
		{"id", field[string](t, m, "id"), pending.ID().String()},
		{"sender", field[string](t, m, "sender"), hexOf(pending.Sender[:])},
		{"nonce", field[uint64](t, m, "nonce"), uint64(3)},
		{"content", field[string](t, m, "content"), "pending one"},
		{"signature", field[string](t, m, "signature"), hexOf(pending.Signature[:])},
		{"timestamp", field[uint64](t, m, "timestamp"), pending.Timestamp},
		{"status", field[string](t, m, "status"), "pending"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("pending %s = %v, want %v", c.name, c.got, c.want)
		}
	}

	for i, e := range b.Entries {
		checkConfirmed(t, object(t, n.get("/message/"+e.ID.String()), http.StatusOK), b, i)
	}
}

// A confirmed message always carries "proof", also the empty proof of the
// only message of a block: Confirm sets [] for it, but the omitempty tag of
// Message.Proof drops the field.
func TestMessageAloneInBlockHasProof(t *testing.T) {
	n := newNode(t)
	b := n.seal(sign(1, "alone"))
	m := object(t, n.get("/message/"+b.Entries[0].ID.String()), http.StatusOK)
	if string(m["proof"]) != "[]" {
		t.Fatalf("proof of the only message in a block = %q, want []", m["proof"])
	}
	checkConfirmed(t, m, b, 0)
}

func TestMessageErrors(t *testing.T) {
	n := newNode(t)
	id := idOf(1).String()
	for _, bad := range []string{"", "zz", id[:63], id + "0", strings.Repeat("g", 64), strings.ToUpper(id)} {
		wantError(t, n.get("/message/"+bad), http.StatusBadRequest, false)
	}
	wantError(t, n.get("/message/"+id), http.StatusNotFound, false)
}

func TestPostMessage(t *testing.T) {
	n := newNode(t)
	m := sign(1, "hello")
	a := object(t, n.do(http.MethodPost, "/message", submission(m)), http.StatusAccepted)
	keys(t, a, "id", "status")
	if field[string](t, a, "id") != m.ID().String() || field[string](t, a, "status") != "pending" {
		t.Fatalf("accepted %v", a)
	}
	// Durable by the time of the 202.
	ps, err := n.st.LoadPending()
	if err != nil || len(ps) != 1 || ps[0].Message.ID() != m.ID() {
		t.Fatalf("LoadPending = %v, %v", ps, err)
	}

	for _, dup := range []chain.Message{m, sign(1, "same nonce, new content")} {
		e := wantError(t, n.do(http.MethodPost, "/message", submission(dup)), http.StatusConflict, true)
		if field[string](t, e, "id") != m.ID().String() {
			t.Fatalf("409 id %s, want %s", e["id"], m.ID())
		}
	}
	n.seal()
	e := wantError(t, n.do(http.MethodPost, "/message", submission(m)), http.StatusConflict, true)
	if field[string](t, e, "id") != m.ID().String() {
		t.Fatalf("409 for a confirmed message: id %s", e["id"])
	}

	wantError(t, n.do(http.MethodPost, "/message", submission(sign(2, strings.Repeat("x", maxContent+1)))), http.StatusRequestEntityTooLarge, false)
	huge := `{"sender":"` + strings.Repeat("a", 64) + `","nonce":1,"content":"` + strings.Repeat("x", 40*maxContent) + `","signature":"00"}`
	wantError(t, n.do(http.MethodPost, "/message", huge), http.StatusRequestEntityTooLarge, false)

	good := sign(3, "ok")
	tampered := good
	tampered.Content = "changed"
	fields := map[string]any{"sender": hexOf(good.Sender[:]), "nonce": good.Nonce, "content": good.Content, "signature": hexOf(good.Signature[:])}
	with := func(k string, v any) string {
		c := map[string]any{}
		for kk, vv := range fields {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		b, _ := json.Marshal(c)
		return string(b)
	}
	bad := map[string]string{
		"empty body":        "",
		"not JSON":          "hello",
		"truncated":         submission(good)[:20],
		"array":             "[]",
		"missing sender":    with("sender", nil),
		"missing nonce":     with("nonce", nil),
		"missing content":   with("content", nil),
		"missing signature": with("signature", nil),
		"sender not hex":    with("sender", strings.Repeat("zz", 32)),
		"sender uppercase":  with("sender", strings.ToUpper(hexOf(good.Sender[:]))),
		"signature upper":   with("signature", strings.ToUpper(hexOf(good.Signature[:]))),
		"sender short":      with("sender", hexOf(good.Sender[:31])),
		"signature long":    with("signature", hexOf(append(good.Signature[:], 0))),
		"nonce negative":    with("nonce", -1),
		"nonce string":      with("nonce", "3"),
		"nonce fraction":    with("nonce", 1.5),
		"content number":    with("content", 5),
		"bad signature":     submission(tampered),
		"invalid UTF-8":     with("content", "\xff"),
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			wantError(t, n.do(http.MethodPost, "/message", body), http.StatusBadRequest, false)
		})
	}
	if _, ok := n.pool.Get(good.ID()); ok {
		t.Fatal("a refused submission is pending")
	}
	object(t, n.do(http.MethodPost, "/message", submission(good)), http.StatusAccepted)
}

func TestPostMessages(t *testing.T) {
	n := newNode(t)
	n.seal(sign(1, "confirmed"))
	tampered := sign(4, "x")
	tampered.Content = "y"
	body := `{"messages": [` + strings.Join([]string{
		submission(sign(2, "ok")),
		submission(sign(1, "duplicate of a confirmed one")),
		`{"sender": "nothex"}`,
		submission(tampered),
		submission(sign(5, strings.Repeat("x", maxContent+1))),
		`"not an object"`,
		submission(sign(6, "ok too")),
		submission(sign(6, "duplicate within the batch")),
	}, ",") + `]}`
	m := object(t, n.do(http.MethodPost, "/messages", body), http.StatusOK)
	keys(t, m, "results")
	results := field[[]map[string]json.RawMessage](t, m, "results")
	want := []struct {
		code int
		id   string
	}{
		{0, idOf(2).String()},
		{409, idOf(1).String()},
		{400, ""},
		{400, tampered.ID().String()},
		{413, idOf(5).String()},
		{400, ""},
		{0, idOf(6).String()},
		{409, idOf(6).String()},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for i, w := range want {
		r := results[i]
		if w.code == 0 {
			keys(t, r, "id", "status")
			if field[string](t, r, "status") != "pending" || field[string](t, r, "id") != w.id {
				t.Errorf("result %d = %v, want accepted %s", i, r, w.id)
			}
			continue
		}
		if w.id == "" {
			keys(t, r, "error", "code")
		} else {
			keys(t, r, "error", "code", "id")
			if field[string](t, r, "id") != w.id {
				t.Errorf("result %d id %s, want %s", i, r["id"], w.id)
			}
		}
		if field[int](t, r, "code") != w.code || field[string](t, r, "error") == "" {
			t.Errorf("result %d = %v, want code %d", i, r, w.code)
		}
	}
	if n.pool.Len() != 2 {
		t.Fatalf("%d pending, want 2", n.pool.Len())
	}

	if r := object(t, n.do(http.MethodPost, "/messages", `{"messages": []}`), http.StatusOK); string(r["results"]) != "[]" {
		t.Fatalf("empty batch results = %s, want []", r["results"])
	}

	many := make([]string, api.MaxBatch+1)
	for i := range many {
		many[i] = submission(sign(uint64(1000+i), "m"))
	}
	wantError(t, n.do(http.MethodPost, "/messages", `{"messages": [`+strings.Join(many, ",")+`]}`), http.StatusBadRequest, false)
	if n.pool.Len() != 2 {
		t.Fatalf("an over-long batch was partly accepted: %d pending", n.pool.Len())
	}
	object(t, n.do(http.MethodPost, "/messages", `{"messages": [`+strings.Join(many[:api.MaxBatch], ",")+`]}`), http.StatusOK)
	if n.pool.Len() != 2+api.MaxBatch {
		t.Fatalf("%d pending after a full batch, want %d", n.pool.Len(), 2+api.MaxBatch)
	}

	for _, bad := range []string{"", "nope", "[]", `{"messages": {}}`, `{"messages": "x"}`, `{}`, `{"messages": null}`, `{"messages": [`} {
		wantError(t, n.do(http.MethodPost, "/messages", bad), http.StatusBadRequest, false)
	}
}

// A batch is counted before its elements are decoded: 1.5 million empty
// elements (4.5 MB) are refused as too many without a Submission made for
// each (hundreds of MB), whatever follows them.
func TestPostMessagesCountedBeforeDecoding(t *testing.T) {
	n := newNode(t)
	const elements = 1_500_000
	huge := `{"messages":[` + strings.Repeat("{},", elements-1) + `{}]}`
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := n.do(http.MethodPost, "/messages", huge)
	runtime.ReadMemStats(&after)
	wantError(t, r, http.StatusBadRequest, false)
	if want := fmt.Sprintf("%d messages, at most %d", elements, api.MaxBatch); !strings.Contains(string(r.body), want) {
		t.Errorf("answer %s, want the reason %q", r.body, want)
	}
	// The body itself is held a few times over (client, server, test);
	// decoding it would take about 100 bytes an element.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*uint64(len(huge)) {
		t.Errorf("refusing a batch of %d bytes allocated %d MB", len(huge), alloc>>20)
	}

	// However the field is spelt or repeated: a decoder would take the
	// last one, or match another case, after decoding the others.
	for _, tail := range []string{`,"messages":[]`, `,"messages":null`, `,"MESSAGES":[]`} {
		body := `{"messages":[` + strings.Repeat("{},", elements-1) + `{}]` + tail + `}`
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := n.do(http.MethodPost, "/messages", body)
		runtime.ReadMemStats(&after)
		wantError(t, r, http.StatusBadRequest, false)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*uint64(len(body)) {
			t.Errorf("refusing a batch ending in %q allocated %d MB", tail, alloc>>20)
		}
	}
	wantError(t, n.do(http.MethodPost, "/messages", `{"MESSAGES":[`+strings.Repeat("{},", api.MaxBatch)+`{}]}`), http.StatusBadRequest, false)
	if n.pool.Len() != 0 {
		t.Fatalf("%d pending after refused batches", n.pool.Len())
	}
}

func TestPostContentNotUTF8(t *testing.T) {
	n := newNode(t)
	bad := strings.Repeat("\xff", 200)
	raw := func(m chain.Message) string { // the content's bytes as they are, not escaped
		return strings.Replace(submission(m), `"content":"x"`, `"content":"`+bad+`"`, 1)
	}
	m := sign(1, bad)
	m.Content = "x"
	body := raw(m)
	if !strings.Contains(body, bad) {
		t.Fatalf("test body does not hold the raw bytes: %q", body)
	}
	r := n.do(http.MethodPost, "/message", body)
	wantError(t, r, http.StatusBadRequest, false)
	if !strings.Contains(string(r.body), "UTF-8") {
		t.Errorf("answer %s does not say UTF-8", r.body)
	}

	batch := `{"messages":[` + raw(m) + `,` + submission(sign(2, "fine")) + `]}`
	results := field[[]map[string]json.RawMessage](t, object(t, n.do(http.MethodPost, "/messages", batch), http.StatusOK), "results")
	if len(results) != 2 || field[int](t, results[0], "code") != http.StatusBadRequest || !strings.Contains(string(results[0]["error"]), "UTF-8") {
		t.Fatalf("batch results %v; want the first refused with 400 for UTF-8", results)
	}
	if _, ok := results[1]["code"]; ok {
		t.Fatalf("batch results %v; want the second accepted", results)
	}
	if n.pool.Len() != 1 {
		t.Fatalf("%d pending, want 1", n.pool.Len())
	}
}

func TestUnknownPath(t *testing.T) {
	n := newNode(t)
	for _, p := range []string{"/", "/nope", "/block", "/block/1/extra", "/healthz", "/blocks/1", "/health/"} {
		wantError(t, n.get(p), http.StatusNotFound, false)
	}
}

// A path not in clean form is not redirected, as ServeMux would do with a
// body that is not JSON: it is no route.
func TestUncleanPath(t *testing.T) {
	n := newNode(t)
	for _, p := range []string{"//health", "/./health", "/x/../health", "/block//1", "/blocks/.", "/block/1/.."} {
		wantError(t, n.get(p), http.StatusNotFound, false)
	}
}

func TestWrongMethod(t *testing.T) {
	n := newNode(t)
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodPost, "/health", "GET, HEAD"},
		{http.MethodPost, "/height", "GET, HEAD"},
		{http.MethodDelete, "/latest", "GET, HEAD"},
		{http.MethodPut, "/block/1", "GET, HEAD"},
		{http.MethodPost, "/blocks", "GET, HEAD"},
		{http.MethodPost, "/message/" + strings.Repeat("0", 64), "GET, HEAD"},
		{http.MethodGet, "/message", "POST"},
		{http.MethodGet, "/messages", "POST"},
		{http.MethodPut, "/message", "POST"},
	} {
		r := n.do(c.method, c.path, "")
		wantError(t, r, http.StatusMethodNotAllowed, false)
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

// A peer (no Submitter) forwards submissions to the leader and returns its
// answer as it is; 503 when the leader cannot be reached, 502 when its
// answer is not one.
func TestPeerForwardsSubmissions(t *testing.T) {
	leader := newNode(t)
	peer := httptest.NewServer(api.NewServer(api.Config{Chain: leader.chain, LeaderURL: leader.srv.URL + "/", MaxContent: maxContent}))
	t.Cleanup(peer.Close)
	c := peer.Client()

	m := sign(1, "via the peer")
	a := object(t, doURL(t, c, http.MethodPost, peer.URL+"/message", submission(m)), http.StatusAccepted)
	if field[string](t, a, "id") != m.ID().String() {
		t.Fatalf("forwarded answer %v", a)
	}
	if _, ok := leader.pool.Get(m.ID()); !ok {
		t.Fatal("the leader does not have the forwarded message")
	}
	e := wantError(t, doURL(t, c, http.MethodPost, peer.URL+"/message", submission(m)), http.StatusConflict, true)
	if field[string](t, e, "id") != m.ID().String() {
		t.Fatalf("forwarded 409 id %s", e["id"])
	}
	wantError(t, doURL(t, c, http.MethodPost, peer.URL+"/message", "{"), http.StatusBadRequest, false)
	r := object(t, doURL(t, c, http.MethodPost, peer.URL+"/messages", `{"messages":[`+submission(sign(2, "b"))+`]}`), http.StatusOK)
	if len(field[[]json.RawMessage](t, r, "results")) != 1 || leader.pool.Len() != 2 {
		t.Fatalf("forwarded batch: %v, %d pending", r, leader.pool.Len())
	}
	// A body too big for one message is refused by the peer itself, under
	// the limit the leader applies to one, not the limit of a batch: the
	// leader never sees it.
	var reached atomic.Int32
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		leader.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(counted.Close)
	strict := httptest.NewServer(api.NewServer(api.Config{Chain: leader.chain, LeaderURL: counted.URL, MaxContent: maxContent}))
	t.Cleanup(strict.Close)
	big := `{"content":"` + strings.Repeat("x", maxContent*6+4096) + `"}`
	wantError(t, doURL(t, strict.Client(), http.MethodPost, strict.URL+"/message", big), http.StatusRequestEntityTooLarge, false)
	if n := reached.Load(); n != 0 {
		t.Fatalf("an oversized single submission was forwarded (%d requests reached the leader)", n)
	}

	// The leader's answer is read whole before it is passed on; one larger
	// than any answer to a submission is a bad answer (502), not copied on.
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(bytes.Repeat([]byte(" "), 5<<20))
	}))
	t.Cleanup(huge.Close)
	relay := httptest.NewServer(api.NewServer(api.Config{Chain: leader.chain, LeaderURL: huge.URL, MaxContent: maxContent}))
	t.Cleanup(relay.Close)
	wantError(t, doURL(t, relay.Client(), http.MethodPost, relay.URL+"/message", submission(sign(5, "e"))), http.StatusBadGateway, false)

	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	orphan := httptest.NewServer(api.NewServer(api.Config{Chain: leader.chain, LeaderURL: gone.URL, MaxContent: maxContent}))
	t.Cleanup(orphan.Close)
	wantError(t, doURL(t, orphan.Client(), http.MethodPost, orphan.URL+"/message", submission(sign(3, "c"))), http.StatusServiceUnavailable, false)
	wantError(t, doURL(t, orphan.Client(), http.MethodPost, orphan.URL+"/messages", `{"messages":[]}`), http.StatusServiceUnavailable, false)

	none := httptest.NewServer(api.NewServer(api.Config{Chain: leader.chain, MaxContent: maxContent}))
	t.Cleanup(none.Close)
	wantError(t, doURL(t, none.Client(), http.MethodPost, none.URL+"/message", submission(sign(4, "d"))), http.StatusServiceUnavailable, false)
}

// A leader whose pending queue is full answers 503 with a JSON reason and
// Retry-After, and a batch marks each message it could not take with 503.
func TestSubmitToFullQueue(t *testing.T) {
	n := newNode(t, func(c *api.Config) {
		st, err := store.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		room := int64(maxContent + mempool.MessageOverhead) // one message
		pool, err := mempool.Open(st, mempool.Options{MaxContent: maxContent, MaxBytes: room, Now: func() uint64 { return 1 }})
		if err != nil {
			t.Fatal(err)
		}
		c.Submitter = pool
	})
	object(t, n.do(http.MethodPost, "/message", submission(sign(1, "fits"))), http.StatusAccepted)
	r := n.do(http.MethodPost, "/message", submission(sign(2, "no room")))
	e := wantError(t, r, http.StatusServiceUnavailable, false)
	if !strings.Contains(field[string](t, e, "error"), "full") {
		t.Errorf("reason %v does not say the queue is full", e)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	body := `{"messages": [` + submission(sign(3, "no room either")) + `]}`
	res := field[[]map[string]json.RawMessage](t, object(t, n.do(http.MethodPost, "/messages", body), http.StatusOK), "results")
	if len(res) != 1 || field[int](t, res[0], "code") != http.StatusServiceUnavailable {
		t.Fatalf("batch to a full queue: %v, want one result with code 503", res)
	}
}
