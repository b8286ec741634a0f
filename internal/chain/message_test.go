package chain_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// The message ID is BLAKE3(sender (32) || nonce as 8 bytes big-endian), and
// neither content nor timestamp changes it (SPEC "Identifiers").
func TestMessageIDFormat(t *testing.T) {
	senders := []chain.PublicKey{{}, publicKey(testKey(1)), publicKey(testKey(2))}
	for i := range senders[0] {
		senders[0][i] = byte(i)
	}
	nonces := []uint64{0, 1, 255, 256, 1 << 32, 0x0102030405060708, ^uint64(0)}
	for _, sender := range senders {
		for _, nonce := range nonces {
			pre := make([]byte, 0, 40)
			pre = append(pre, sender[:]...)
			for shift := 56; shift >= 0; shift -= 8 {
				pre = append(pre, byte(nonce>>shift))
			}
			want := chain.Hash(blake3.Sum256(pre))

			if got := chain.MessageID(sender, nonce); got != want {
				t.Fatalf("MessageID(%x, %d) = %s, want %s", sender[:], nonce, got, want)
			}
			for _, m := range []chain.Message{
				{Sender: sender, Nonce: nonce},
				{Sender: sender, Nonce: nonce, Content: "hello", Timestamp: 1},
				{Sender: sender, Nonce: nonce, Content: "other content", Timestamp: 1 << 40, Signature: chain.Signature{1, 2, 3}},
			} {
				if got := m.ID(); got != want {
					t.Fatalf("ID of %+v = %s, want %s", m, got, want)
				}
			}
		}
	}
}

// The sender signs "kimura/message/v1" || sender || nonce (8, BE) || content,
// exactly as SPEC spells it: the preimage is built here by hand.
func TestSignatureCoversSpecPreimage(t *testing.T) {
	key := testKey(3)
	m := chain.SignMessage(key, 0x0a0b0c0d0e0f1011, "héllo")
	pre := []byte("kimura/message/v1")
	pre = append(pre, m.Sender[:]...)
	pre = append(pre, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11)
	pre = append(pre, "héllo"...)
	if !ed25519.Verify(key.Public().(ed25519.PublicKey), pre, m.Signature[:]) {
		t.Fatal("signature does not verify over the SPEC preimage")
	}
	if got := chain.SigningBytes(m.Sender, m.Nonce, m.Content); string(got) != string(pre) {
		t.Fatalf("SigningBytes = %x, want %x", got, pre)
	}
	if m.Timestamp != 0 {
		t.Errorf("SignMessage stamped timestamp %d, want 0 for the leader to stamp", m.Timestamp)
	}
}

func TestSignMessageVerifies(t *testing.T) {
	key := testKey(4)
	for _, content := range []string{"", "hello", "日本語", string(make([]byte, 65536))} {
		m := chain.SignMessage(key, 7, content)
		if m.Sender != publicKey(key) {
			t.Fatalf("sender %x, want the key's public half", m.Sender[:])
		}
		if err := m.Verify(); err != nil {
			t.Fatalf("Verify of a signed message (%d bytes): %v", len(content), err)
		}
		// The timestamp is the leader's and not covered by the signature.
		m.Timestamp = 12345
		if err := m.Verify(); err != nil {
			t.Fatalf("Verify after stamping: %v", err)
		}
	}
}

func TestVerifyRejectsTampering(t *testing.T) {
	key := testKey(5)
	good := chain.SignMessage(key, 42, "original content")
	tamper := map[string]func(m *chain.Message){
		"content":       func(m *chain.Message) { m.Content = "original contenT" },
		"content added": func(m *chain.Message) { m.Content += "!" },
		"nonce":         func(m *chain.Message) { m.Nonce++ },
		"sender":        func(m *chain.Message) { m.Sender = publicKey(testKey(6)) },
		"sender bit":    func(m *chain.Message) { m.Sender[31] ^= 1 },
		"signature":     func(m *chain.Message) { m.Signature[0] ^= 0x80 },
		"signature end": func(m *chain.Message) { m.Signature[63] ^= 1 },
		"foreign signature": func(m *chain.Message) {
			m.Signature = chain.SignMessage(testKey(6), m.Nonce, m.Content).Signature
		},
	}
	for name, f := range tamper {
		t.Run(name, func(t *testing.T) {
			m := good
			f(&m)
			if err := m.Verify(); !errors.Is(err, chain.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

// Content must be UTF-8 even when the sender signed it as it is.
func TestVerifyRejectsInvalidUTF8(t *testing.T) {
	for _, content := range []string{"\xff", "ok\xc3", "\xed\xa0\x80" /* surrogate */} {
		m := chain.SignMessage(testKey(7), 1, content)
		if err := m.Verify(); !errors.Is(err, chain.ErrBadContent) {
			t.Fatalf("Verify(%q) = %v, want ErrBadContent", content, err)
		}
	}
}

// The message hash is BLAKE3 of the whole encoding, so it changes with every
// field, the timestamp included; the entry binds it to the ID.
func TestMessageHashCoversEveryField(t *testing.T) {
	m := chain.SignMessage(testKey(8), 9, "abc")
	m.Timestamp = 77
	if got, want := m.Hash(), chain.Hash(blake3.Sum256(m.Encode())); got != want {
		t.Fatalf("Hash = %s, want BLAKE3(Encode()) = %s", got, want)
	}
	base := m.Hash()
	for name, f := range map[string]func(m *chain.Message){
		"sender":    func(m *chain.Message) { m.Sender[0] ^= 1 },
		"nonce":     func(m *chain.Message) { m.Nonce ^= 1 },
		"content":   func(m *chain.Message) { m.Content = "abd" },
		"signature": func(m *chain.Message) { m.Signature[5] ^= 1 },
		"timestamp": func(m *chain.Message) { m.Timestamp ^= 1 },
	} {
		c := m
		f(&c)
		if c.Hash() == base {
			t.Errorf("changing the %s leaves the message hash unchanged", name)
		}
	}
	if e := chain.EntryOf(&m); e.ID != m.ID() || e.MessageHash != base {
		t.Errorf("EntryOf = %+v, want {ID: %s, MessageHash: %s}", e, m.ID(), base)
	}
}

func TestParseHash(t *testing.T) {
	h := chain.Sum([]byte("x"))
	got, err := chain.ParseHash(h.String())
	if err != nil || got != h {
		t.Fatalf("ParseHash(%s) = %s, %v", h, got, err)
	}
	for _, bad := range []string{"", h.String()[:63], h.String() + "0", "zz" + h.String()[2:], "AB" + h.String()[2:]} {
		if _, err := chain.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

// DecodeHex reads what encoding/hex writes, every byte value, and refuses
// every string with a byte that is not a lowercase hex digit, uppercase
// included, naming it.
func TestDecodeHex(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	got := make([]byte, len(all))
	if err := chain.DecodeHex(got, hex.EncodeToString(all)); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("DecodeHex of every byte value: %x, %v", got, err)
	}
	for c := range 256 {
		if strings.IndexByte("0123456789abcdef", byte(c)) >= 0 {
			continue
		}
		for _, at := range []int{0, 1, 5} {
			s := []byte("00112233")
			s[at] = byte(c)
			err := chain.DecodeHex(make([]byte, 4), string(s))
			if err == nil {
				t.Fatalf("DecodeHex(%q) accepted", s)
			}
			if want := fmt.Sprintf("offset %d", at); !strings.Contains(err.Error(), want) {
				t.Errorf("DecodeHex(%q) = %v, want it to name %s", s, err, want)
			}
		}
	}
}
