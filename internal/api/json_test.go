package api

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// TestWriteJSONMatchesEncodingJSON: answers are encoded with goccy/go-json
// for speed; clients were promised encoding/json's bytes, so every kind of
// answer must come out byte for byte as encoding/json writes it, tricky
// strings (HTML, control characters, invalid UTF-8, U+2028) and omitted
// fields included.
func TestWriteJSONMatchesEncodingJSON(t *testing.T) {
	h := chain.Sum([]byte("x"))
	height, index := uint64(7), uint32(3)
	tricky := "<a href='x'>&</a> \x00\x1f\x7f \xff\xfe bad, \u2028\u2029, é漢🙂, \t\n\\\""
	msg := Message{ID: h, Sender: HexBytes{1, 2}, Nonce: 9, Content: tricky, Signature: HexBytes{3}, Timestamp: 1, Status: StatusConfirmed,
		BlockHeight: &height, Index: &index, Proof: []chain.Hash{h, h}}
	for _, v := range []any{
		errorBody{Error: tricky},
		errorBody{Error: "duplicate", ID: &h},
		struct {
			Results []Result `json:"results"`
		}{[]Result{{ID: &h, Status: StatusPending}, {Error: tricky, Code: 400}, {ID: &h, Error: "duplicate", Code: 409}}},
		Message{ID: h, Content: "", Status: StatusPending},
		msg,
		Block{Height: 1, MessageIDs: []chain.Hash{h}},
		Block{Height: 2, MessageIDs: []chain.Hash{}, Messages: []Message{}},
		Block{Height: 3, MessageIDs: []chain.Hash{h}, Messages: []Message{msg}},
		Health{Status: "ok", Role: "peer", P2PAddrs: nil},
		Health{Status: "ok", Role: "leader", P2PAddrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/X"}},
		Height{Height: 1, Hash: h},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(v); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		writeJSON(rec, 200, v)
		if got := rec.Body.String(); got != want.String() {
			t.Errorf("%T:\n got %s\nwant %s", v, got, want.String())
		}
	}
}
