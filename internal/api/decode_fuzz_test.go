package api

import (
	"encoding/json"
	"reflect"
	"testing"

	gojson "github.com/goccy/go-json"
)

// The submit handlers decode with goccy/go-json first and fall back to
// encoding/json only when it fails, so goccy must never accept a body that
// encoding/json refuses, nor read a different message out of it: either
// would answer a submission that the contract (encoding/json's reading of
// the JSON) refuses, or accept another message than the one sent.
func FuzzDecodersAgree(f *testing.F) {
	for _, s := range []string{
		`{"sender":"ab","nonce":1,"content":"hi","signature":"cd"}`,
		`{"messages":[{"sender":"ab","nonce":1,"content":"hi","signature":"cd"},{}]}`,
		`{"SENDER":"ab","Nonce":2,"content":"a\u00e9\ud83d\ude00","signature":null}`,
		`{"sender":"ab","sender":"cd","nonce":18446744073709551615}`,
		`{"nonce":1e3}`, `{"nonce":-1}`, `{"nonce":1.0}`, `{"content":"\x"}`,
		`{"messages":[]} x`, `{"messages":null}`, `[{"sender":"a"}]`,
		`{"content":"\ud800"}`, "{\"content\":\"a\x00b\"}", "{\"content\":\"a\tb\"}",
		`{"nonce":01}`, `{"nonce":"1"}`, `{"nonce":-0}`, `{"nonce":1E+2}`, `{"sender":"a",}`,
		`{"messages":[{},]}`, `{"sender":'a'}`, `{"content":"\u00"}`, `{"nonce":true}`,
		`{"messages":[{"nonce":1}]}{}`, `{"messages":{"nonce":1}}`, ` {"sender":"a"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Not UTF-8 never reaches the decoders (errNotUTF8 refuses it first).
		if errNotUTF8(body) != nil {
			return
		}
		var fast, slow Submission
		if gojson.Unmarshal(body, &fast) == nil {
			if err := json.Unmarshal(body, &slow); err != nil {
				t.Fatalf("goccy accepts a submission encoding/json refuses (%v): %q", err, body)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("the decoders read different submissions from %q:\ngoccy %s\nstd   %s", body, show(fast), show(slow))
			}
		}
		var fastB, slowB struct {
			Messages []Submission `json:"messages"`
		}
		if gojson.Unmarshal(body, &fastB) == nil {
			if err := json.Unmarshal(body, &slowB); err != nil {
				t.Fatalf("goccy accepts a batch encoding/json refuses (%v): %q", err, body)
			}
			if !reflect.DeepEqual(fastB, slowB) {
				t.Fatalf("the decoders read different batches from %q", body)
			}
		}
	})
}

func show(s Submission) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// valuesAt is a hand-written scan that refuses oversized batches before they
// are decoded; it must never count fewer messages than a decoder finds.
func FuzzValuesAtBoundsTheDecoder(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{},{},{}]}`, `{"messages":[{"content":"a,\"b\\"},{}]}`,
		`{"a":[1,2],"messages":[{}]}`, `{"messages":[[1,2,3],[4]]}`,
		`{"messages":[{"x":"unterminated,`, `{"Messages":[{}],"messages":[{},{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			Messages []json.RawMessage `json:"messages"`
		}
		if json.Unmarshal(body, &v) != nil {
			return
		}
		if n := valuesAt(body, 2); n < len(v.Messages) {
			t.Fatalf("valuesAt(%q, 2) = %d, but encoding/json finds %d messages", body, n, len(v.Messages))
		}
	})
}
